//! herald's BGP speaker: one session task per peer, the listening sockets
//! for the peers that may connect to herald, and one table of every peer's
//! status.
//!
//! Owns: the sessions ([`SessionHandle`]s), the [`Listeners`] and their
//! table of peer addresses ([`IncomingTable`]), what every session is told to
//! announce, and the status table ([`PeerStatuses`]) the sessions write
//! into. Must not touch: which peers to run or how they are configured (the
//! agent decides and hands over [`SessionConfig`]s), BFD (the agent calls
//! [`Speaker::bfd_down`], [`Speaker::hold`] and [`Speaker::release`]).
//!
//! ```text
//!   agent ── add_peer / remove_peer / hold / release / bfd_down / bfd_up ┐
//!         ── announce(Arc<Routes>) / set_graceful_shutdown ───────┤
//!                                                                  v
//!   listeners (TCP 179 of the local addresses of `listen` peers)
//!     ── IncomingTable ──> SessionHandle per peer ── sockets
//!                                                   │ StatusReport (typed)
//!                                                   v
//!                      watch<PeerStatuses> ──> whoever writes /status
//! ```

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use super::fsm::State;
pub use super::listener::{Incoming, IncomingTable};
use super::listener::{ListenPeer, Listeners};
use super::metrics::Metrics;
use super::session::{Routes, SessionConfig, SessionHandle, SessionStatus};
use super::transport::{BGP_PORT, TransportError};

/// One peer as the speaker reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub peer_as: u32,
    /// Strict BFD mode holds the peer: no session runs (no connection out,
    /// the peer's connections are refused) until it is released.
    pub held: bool,
    /// The session's own status; Idle with nothing counted while held.
    pub session: SessionStatus,
}

/// Every peer's status, by name.
pub type PeerStatuses = BTreeMap<String, PeerStatus>;

struct Peer {
    config: SessionConfig,
    session: Option<SessionHandle>,
    /// Which session may write the peer's row: a session replaced by hold
    /// and release (its task still sending a Cease) must not overwrite the
    /// new one's status.
    generation: Arc<AtomicU64>,
}

/// herald's own BGP speaker: a session task per peer and the listeners.
pub struct Speaker {
    metrics: Arc<Metrics>,
    incoming: IncomingTable,
    listeners: Listeners,
    peers: BTreeMap<String, Peer>,
    /// What every session is told to announce (`None` before the first
    /// announce: a new session is not told anything, so it sends no
    /// End-of-RIB before the agent's first complete set).
    announced: Option<Arc<Routes>>,
    graceful_shutdown: bool,
    statuses: Arc<watch::Sender<PeerStatuses>>,
}

impl Speaker {
    /// The speaker, listening nowhere until a peer with
    /// [`SessionConfig::listen`] is added.
    pub fn start(metrics: Arc<Metrics>) -> Speaker {
        Speaker::start_on_port(metrics, BGP_PORT)
    }

    /// [`Speaker::start`] with the listeners on `port` (tests use 0).
    pub fn start_on_port(metrics: Arc<Metrics>, port: u16) -> Speaker {
        let incoming: IncomingTable = Arc::new(RwLock::new(HashMap::new()));
        Speaker {
            listeners: Listeners::new(port, metrics.clone(), incoming.clone()),
            metrics,
            incoming,
            peers: BTreeMap::new(),
            announced: None,
            graceful_shutdown: false,
            statuses: Arc::new(watch::channel(PeerStatuses::new()).0),
        }
    }

    /// Where the listener for the local address `local` listens, if one
    /// does.
    pub fn listening_on(&self, local: std::net::IpAddr) -> Option<std::net::SocketAddr> {
        self.listeners.local_addr(local)
    }

    /// Every peer's status; changes whenever a session's does.
    pub fn statuses(&self) -> watch::Receiver<PeerStatuses> {
        self.statuses.subscribe()
    }

    /// Every session announces exactly `routes` (only the difference goes
    /// on the wire).
    pub fn announce(&mut self, routes: Arc<Routes>) {
        for session in self.peers.values().filter_map(|p| p.session.as_ref()) {
            session.announce_routes(routes.clone());
        }
        self.announced = Some(routes);
    }

    /// Resolves once everything sent to the sessions before is on the wire
    /// (or their tasks are gone). Does not borrow the speaker; bound it with
    /// a timeout: a peer that stopped reading holds its session up to its
    /// hold time.
    pub fn flushed(&self) -> impl Future<Output = ()> + Send + 'static {
        let barriers: Vec<_> = self
            .peers
            .values()
            .filter_map(|p| p.session.as_ref())
            .map(SessionHandle::barrier)
            .collect();
        async move {
            // Every barrier is queued already: waiting in turn takes as
            // long as the slowest.
            for barrier in barriers {
                barrier.await;
            }
        }
    }

    /// RFC 8326: everything re-announced with GRACEFUL_SHUTDOWN (or not).
    pub fn set_graceful_shutdown(&mut self, on: bool) {
        self.graceful_shutdown = on;
        for session in self.peers.values().filter_map(|p| p.session.as_ref()) {
            session.set_graceful_shutdown(on);
        }
    }

    /// Starts a session with `config`; `held` keeps it from running until
    /// [`Speaker::release`] (strict BFD mode waits for BFD Up). With
    /// [`SessionConfig::listen`], the peer's connections are accepted on
    /// that local address (its MD5 key and GTSM floor installed on the
    /// socket); an error there (the address cannot be bound, the key file
    /// cannot be read) starts nothing.
    pub fn add_peer(&mut self, config: SessionConfig, held: bool) -> Result<(), TransportError> {
        if let Some(local) = config.listen {
            self.listeners.add_peer(
                local,
                config.peer.ip(),
                ListenPeer {
                    key: config.md5_key.clone(),
                    min_ttl: config.ttl_policy().min_receive,
                },
            )?;
        }
        let name = config.name.clone();
        let mut peer = Peer {
            config,
            session: None,
            generation: Arc::default(),
        };
        if held {
            self.set_held(&name, &peer);
        } else {
            self.spawn_session(&name, &mut peer);
        }
        self.peers.insert(name, peer);
        Ok(())
    }

    /// The peer is no longer used: Cease "Peer De-configured" (the session
    /// task sends it when its handle is dropped) and forget it.
    pub fn remove_peer(&mut self, name: &str) {
        if let Some(peer) = self.peers.remove(name) {
            peer.generation.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut table) = self.incoming.write() {
                table.remove(&peer.config.peer.ip());
            }
            if peer.config.listen.is_some() {
                self.listeners.remove_peer(peer.config.peer.ip());
            }
        }
        self.statuses
            .send_if_modified(|table| table.remove(name).is_some());
    }

    /// BFD declared the peer down: close with Cease/BFD Down (RFC 9384);
    /// the session reconnects by itself.
    pub fn bfd_down(&self, name: &str) {
        if let Some(session) = self.peers.get(name).and_then(|p| p.session.as_ref()) {
            session.bfd_down();
        }
    }

    /// BFD is Up again after a failure: the session connects now instead
    /// of waiting out its backoff.
    pub fn bfd_up(&self, name: &str) {
        if let Some(session) = self.peers.get(name).and_then(|p| p.session.as_ref()) {
            session.bfd_up();
        }
    }

    /// Keeps the peer's session from being established: the session ends
    /// (after the commands queued before, so a BFD Down Cease goes out
    /// first) and the peer's connections are refused.
    pub fn hold(&mut self, name: &str) {
        let Some(mut peer) = self.peers.remove(name) else {
            return;
        };
        peer.session = None;
        self.set_held(name, &peer);
        self.peers.insert(name.to_string(), peer);
    }

    /// Lets a held peer's session run.
    pub fn release(&mut self, name: &str) {
        let Some(mut peer) = self.peers.remove(name) else {
            return;
        };
        if peer.session.is_none() {
            self.spawn_session(name, &mut peer);
        }
        self.peers.insert(name.to_string(), peer);
    }

    fn spawn_session(&self, name: &str, peer: &mut Peer) {
        let generation = peer.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let current = peer.generation.clone();
        let statuses = self.statuses.clone();
        let key = name.to_string();
        let peer_as = peer.config.peer_as;
        let report = Box::new(move |status: &SessionStatus| {
            if current.load(Ordering::SeqCst) != generation {
                return;
            }
            statuses.send_modify(|table| {
                table.insert(
                    key.clone(),
                    PeerStatus {
                        peer_as,
                        held: false,
                        session: status.clone(),
                    },
                );
            });
        });
        let session =
            SessionHandle::spawn_reporting(peer.config.clone(), self.metrics.clone(), report);
        if self.graceful_shutdown {
            session.set_graceful_shutdown(true);
        }
        if let Some(routes) = &self.announced {
            session.announce_routes(routes.clone());
        }
        if let Ok(mut table) = self.incoming.write() {
            table.insert(
                peer.config.peer.ip(),
                Incoming::Session(session.incoming_sender()),
            );
        }
        peer.session = Some(session);
    }

    /// Connections from the peer are refused as held, and its row says so.
    fn set_held(&self, name: &str, peer: &Peer) {
        peer.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut table) = self.incoming.write() {
            table.insert(peer.config.peer.ip(), Incoming::Held);
        }
        self.statuses.send_modify(|table| {
            table.insert(
                name.to_string(),
                PeerStatus {
                    peer_as: peer.config.peer_as,
                    held: true,
                    session: SessionStatus::new(name, peer.config.peer),
                },
            );
        });
    }

    /// Planned restart: closes every session without a NOTIFICATION, so the
    /// routers keep herald's routes as stale under graceful restart (RFC
    /// 4724 §4.2: the helper treats a TCP failure as the restart).
    pub async fn close_for_restart(self) {
        let Speaker {
            listeners, peers, ..
        } = self;
        drop(listeners);
        let closes: Vec<_> = peers
            .values()
            .filter_map(|p| p.session.as_ref())
            .map(SessionHandle::close_silently)
            .collect();
        // Bounded: a session stuck in a write gives up at its hold time;
        // the process exit closes its socket anyway.
        let _ = tokio::time::timeout(Duration::from_secs(2), async move {
            for close in closes {
                close.await;
            }
        })
        .await;
    }

    /// Stopping for good: Cease/Administrative Shutdown with `text` (RFC
    /// 9003) on every session; waits (at most 2 s) until they are Idle.
    pub async fn stop(self, text: &str) {
        let Speaker {
            listeners,
            peers,
            statuses,
            ..
        } = self;
        drop(listeners);
        let mut statuses = statuses.subscribe();
        for session in peers.values().filter_map(|p| p.session.as_ref()) {
            session.stop(text);
        }
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            statuses.wait_for(|table| {
                table
                    .values()
                    .all(|p| p.held || p.session.state == State::Idle)
            }),
        )
        .await;
    }
}
