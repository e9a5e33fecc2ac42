//! The announcement sink: where the reconciler's announcements go.
//!
//! Owns: [`Speaker`], an enum with one variant per way of speaking BGP.
//! [`Speaker::Herald`] runs herald's own sessions (one
//! [`bgp::session::SessionHandle`](crate::bgp::session::SessionHandle) per
//! peer plus the passive listener); a variant that drives a local BIRD
//! (issue 9) slots in beside it without touching the reconciler, which only
//! calls [`Speaker::announce`], [`Speaker::set_graceful_shutdown`] and the
//! peer controls. Must not touch: what is announced, netlink, BFD.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::bgp::metrics::Metrics as BgpMetrics;
use crate::bgp::session::{Incoming, IncomingTable, SessionHandle, SessionStatus, serve_listener};
use crate::bgp::transport::{BGP_PORT, BgpListener};
use crate::config::PeerConfig;
use crate::model::Announcement;

/// One peer as the agent hands it to the speaker.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerPlan {
    pub config: PeerConfig,
    /// The resolved address (a literal, or the gateway).
    pub address: IpAddr,
    /// TCP MD5 key from `password_file`.
    pub md5_key: Option<Vec<u8>>,
}

/// The sink of announcements. One variant per BGP speaker herald can drive.
pub enum Speaker {
    /// herald's own BGP sessions.
    Herald(HeraldSpeaker),
    /// The node's BIRD (`speaker: bird`): herald renders its include file
    /// and reloads it; BIRD owns the sessions and their BFD, so the peer
    /// controls are no-ops and the peer rows come from BIRD's read-back.
    Bird(crate::bird::BirdSpeaker),
}

impl Speaker {
    /// Every peer announces exactly `announcements`.
    pub fn announce(&mut self, announcements: &BTreeSet<Announcement>) {
        match self {
            Speaker::Herald(speaker) => speaker.announce(announcements),
            Speaker::Bird(bird) => bird.announce(announcements),
        }
    }

    /// Resolves once what was announced before is on the wire to every
    /// peer (at most `limit`: a peer that stopped reading must not stall
    /// the agent).
    pub async fn flushed(&self, limit: std::time::Duration) {
        match self {
            Speaker::Herald(speaker) => speaker.flushed(limit).await,
            Speaker::Bird(bird) => bird.flushed(limit).await,
        }
    }

    /// RFC 8326: everything re-announced with GRACEFUL_SHUTDOWN (or not).
    pub fn set_graceful_shutdown(&mut self, on: bool) {
        match self {
            Speaker::Herald(speaker) => speaker.set_graceful_shutdown(on),
            Speaker::Bird(bird) => bird.set_graceful_shutdown(on),
        }
    }

    /// Starts a session to `peer`; `held` keeps it from connecting until
    /// [`Speaker::release`] (strict BFD mode).
    pub fn add_peer(&mut self, peer: PeerPlan, held: bool) {
        match self {
            Speaker::Herald(speaker) => speaker.add_peer(peer, held),
            Speaker::Bird(_) => {}
        }
    }

    /// A new local AS or router id (a reload): sessions started from now on
    /// use it; the agent restarts the running ones.
    pub fn set_identity(&mut self, local_as: u32, router_id: Ipv4Addr) {
        match self {
            Speaker::Herald(speaker) => {
                speaker.local_as = local_as;
                speaker.router_id = router_id;
            }
            // BIRD's identity is its own; the reloaded config reaches it
            // whole through `BirdSpeaker::set_config`.
            Speaker::Bird(_) => {}
        }
    }

    /// The peer is no longer used (config or node labels changed): Cease
    /// "Peer De-configured" and forget it.
    pub fn remove_peer(&mut self, peer: &str) {
        match self {
            Speaker::Herald(speaker) => speaker.remove_peer(peer),
            Speaker::Bird(_) => {}
        }
    }

    /// BFD declared the peer down: close with Cease/BFD Down (RFC 9384).
    pub fn bfd_down(&mut self, peer: &str) {
        match self {
            Speaker::Herald(speaker) => speaker.bfd_down(peer),
            Speaker::Bird(_) => {}
        }
    }

    /// Keep the peer's session from being established.
    pub fn hold(&mut self, peer: &str) {
        match self {
            Speaker::Herald(speaker) => speaker.hold(peer),
            Speaker::Bird(_) => {}
        }
    }

    /// Let a held session establish.
    pub fn release(&mut self, peer: &str) {
        match self {
            Speaker::Herald(speaker) => speaker.release(peer),
            Speaker::Bird(_) => {}
        }
    }

    /// The status of every peer, by name.
    pub fn peer_statuses(&self) -> Vec<(PeerPlan, SessionStatus, bool)> {
        match self {
            Speaker::Herald(speaker) => speaker.peer_statuses(),
            Speaker::Bird(_) => Vec::new(),
        }
    }

    /// Planned restart: close every session without a NOTIFICATION, so the
    /// routers keep herald's routes as stale under graceful restart (RFC 4724
    /// §4.2: the helper treats a TCP failure as the restart).
    pub async fn close_for_restart(self) {
        match self {
            Speaker::Herald(speaker) => speaker.close_for_restart().await,
            // BIRD keeps announcing: a restart of herald loses no route.
            Speaker::Bird(bird) => bird.stop().await,
        }
    }

    /// Stopping for good: Cease/Administrative Shutdown with `text`.
    pub async fn stop(self, text: &str) {
        match self {
            Speaker::Herald(speaker) => speaker.stop(text).await,
            Speaker::Bird(bird) => bird.stop().await,
        }
    }
}

/// Where session status changes are reported: the peer's name.
pub type StatusChanges = mpsc::UnboundedSender<String>;

struct HeraldPeer {
    plan: PeerPlan,
    session: Option<SessionHandle>,
    forwarder: Option<JoinHandle<()>>,
}

/// herald's own BGP speaker: a session task per peer and one listener.
pub struct HeraldSpeaker {
    local_as: u32,
    router_id: Ipv4Addr,
    restarted: bool,
    metrics: Arc<BgpMetrics>,
    changes: StatusChanges,
    incoming: IncomingTable,
    listener: Option<JoinHandle<()>>,
    peers: BTreeMap<String, HeraldPeer>,
    announced: BTreeSet<Announcement>,
    /// The speaker was told what to announce at least once (before that a
    /// new session is not told anything, so it sends no End-of-RIB).
    announced_once: bool,
    graceful_shutdown: bool,
}

impl HeraldSpeaker {
    /// The speaker, with the passive listener on port 179 of every address
    /// (both families). `restarted` sets the Restart State bit of graceful
    /// restart (RFC 4724 §3) in every session's OPEN. `keys` are the TCP
    /// MD5 keys of the peers, installed on the listener.
    pub fn start(
        local_as: u32,
        router_id: Ipv4Addr,
        restarted: bool,
        metrics: Arc<BgpMetrics>,
        changes: StatusChanges,
        keys: &[(IpAddr, Vec<u8>)],
    ) -> HeraldSpeaker {
        let incoming = Arc::new(RwLock::new(HashMap::new()));
        let listener = match BgpListener::bind(SocketAddr::from((
            std::net::Ipv6Addr::UNSPECIFIED,
            BGP_PORT,
        )))
        .or_else(|_| BgpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, BGP_PORT))))
        {
            Ok(listener) => {
                for (peer, key) in keys {
                    if let Err(error) = listener.set_md5_key(*peer, key) {
                        tracing::warn!(%peer, "BGP listener: cannot set the TCP MD5 key: {error}");
                    }
                }
                Some(tokio::spawn(serve_listener(listener, incoming.clone())))
            }
            Err(error) => {
                tracing::warn!(
                    "BGP listener: {error}; herald connects to its peers but does not accept connections"
                );
                None
            }
        };
        HeraldSpeaker {
            local_as,
            router_id,
            restarted,
            metrics,
            changes,
            incoming,
            listener,
            peers: BTreeMap::new(),
            announced: BTreeSet::new(),
            announced_once: false,
            graceful_shutdown: false,
        }
    }

    fn announce(&mut self, announcements: &BTreeSet<Announcement>) {
        self.announced = announcements.clone();
        self.announced_once = true;
        for peer in self.peers.values() {
            if let Some(session) = &peer.session {
                session.announce(announcements);
            }
        }
    }

    async fn flushed(&self, limit: std::time::Duration) {
        let waits = self
            .peers
            .values()
            .filter_map(|p| p.session.as_ref())
            .map(SessionHandle::flushed);
        if tokio::time::timeout(limit, futures::future::join_all(waits))
            .await
            .is_err()
        {
            tracing::warn!("a BGP session did not take its UPDATEs within {limit:?}");
        }
    }

    fn set_graceful_shutdown(&mut self, on: bool) {
        self.graceful_shutdown = on;
        for peer in self.peers.values() {
            if let Some(session) = &peer.session {
                session.set_graceful_shutdown(on);
            }
        }
    }

    fn add_peer(&mut self, plan: PeerPlan, held: bool) {
        let name = plan.config.name.clone();
        let mut peer = HeraldPeer {
            plan,
            session: None,
            forwarder: None,
        };
        if held {
            set_held(&self.incoming, peer.plan.address);
        } else {
            self.spawn_session(&mut peer);
        }
        self.peers.insert(name, peer);
    }

    fn spawn_session(&self, peer: &mut HeraldPeer) {
        let cfg = super::settings::bgp_session(
            &peer.plan.config,
            peer.plan.address,
            self.local_as,
            self.router_id,
            peer.plan.md5_key.clone(),
            self.restarted,
        );
        let session = SessionHandle::spawn(cfg, self.metrics.clone(), None);
        if self.graceful_shutdown {
            session.set_graceful_shutdown(true);
        }
        if self.announced_once {
            session.announce(&self.announced);
        }
        if let Ok(mut table) = self.incoming.write() {
            table.insert(
                peer.plan.address,
                Incoming::Session(session.incoming_sender()),
            );
        }
        let mut status = session.watch_status();
        let changes = self.changes.clone();
        let name = peer.plan.config.name.clone();
        peer.forwarder = Some(tokio::spawn(async move {
            while status.changed().await.is_ok() {
                if changes.send(name.clone()).is_err() {
                    return;
                }
            }
        }));
        peer.session = Some(session);
        let _ = self.changes.send(peer.plan.config.name.clone());
    }

    fn remove_peer(&mut self, name: &str) {
        self.hold(name);
        if let Some(peer) = self.peers.remove(name)
            && let Ok(mut table) = self.incoming.write()
        {
            table.remove(&peer.plan.address);
        }
    }

    fn bfd_down(&mut self, name: &str) {
        if let Some(session) = self.peers.get(name).and_then(|p| p.session.as_ref()) {
            session.bfd_down();
        }
    }

    fn hold(&mut self, name: &str) {
        let Some(peer) = self.peers.get_mut(name) else {
            return;
        };
        set_held(&self.incoming, peer.plan.address);
        if let Some(forwarder) = peer.forwarder.take() {
            forwarder.abort();
        }
        // Dropping the handle ends the task after the commands already
        // queued (a BFD Down Cease goes out first).
        peer.session = None;
        let _ = self.changes.send(name.to_string());
    }

    fn release(&mut self, name: &str) {
        let Some(mut peer) = self.peers.remove(name) else {
            return;
        };
        if peer.session.is_none() {
            self.spawn_session(&mut peer);
        }
        self.peers.insert(name.to_string(), peer);
    }

    fn peer_statuses(&self) -> Vec<(PeerPlan, SessionStatus, bool)> {
        self.peers
            .values()
            .map(|peer| match &peer.session {
                Some(session) => (peer.plan.clone(), session.status(), false),
                None => (
                    peer.plan.clone(),
                    SessionStatus {
                        name: peer.plan.config.name.clone(),
                        peer: SocketAddr::new(peer.plan.address, peer.plan.config.port).to_string(),
                        state: "idle",
                        ..SessionStatus::default()
                    },
                    true,
                ),
            })
            .collect()
    }

    async fn close_for_restart(mut self) {
        if let Some(listener) = self.listener.take() {
            listener.abort();
        }
        let mut closes = Vec::new();
        for peer in self.peers.values_mut() {
            if let Some(forwarder) = peer.forwarder.take() {
                forwarder.abort();
            }
            if let Some(session) = &peer.session {
                closes.push(session.close_silently());
            }
        }
        // Bounded: a session stuck in a write gives up at its hold time;
        // the process exit closes its socket anyway.
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            futures::future::join_all(closes),
        )
        .await;
    }

    async fn stop(mut self, text: &str) {
        if let Some(listener) = self.listener.take() {
            listener.abort();
        }
        let mut waits = Vec::new();
        for peer in self.peers.values_mut() {
            if let Some(session) = &peer.session {
                session.stop(text);
                let mut status = session.watch_status();
                waits.push(async move {
                    let _ = status.wait_for(|s| s.state == "idle").await;
                });
            }
        }
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            futures::future::join_all(waits),
        )
        .await;
    }
}

/// Connections from `address` are refused as held (strict BFD mode).
fn set_held(incoming: &IncomingTable, address: IpAddr) {
    if let Ok(mut table) = incoming.write() {
        table.insert(address, Incoming::Held);
    }
}
