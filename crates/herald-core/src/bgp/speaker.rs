//! herald's BGP speaker: one session task per peer, the passive listener
//! that hands each accepted connection to its peer's session, and one table
//! of every peer's status.
//!
//! Owns: the sessions ([`SessionHandle`]s), the listener and its table of
//! peer addresses ([`IncomingTable`]), what every session is told to
//! announce, and the status table ([`PeerStatuses`]) the sessions write
//! into. Must not touch: which peers to run or how they are configured (the
//! agent decides and hands over [`SessionConfig`]s), BFD (the agent calls
//! [`Speaker::bfd_down`], [`Speaker::hold`] and [`Speaker::release`]).
//!
//! ```text
//!   agent ── add_peer / remove_peer / hold / release / bfd_down ──┐
//!         ── announce(Arc<Routes>) / set_graceful_shutdown ───────┤
//!                                                                  v
//!   listener (TCP 179) ── IncomingTable ──> SessionHandle per peer ── sockets
//!                                                   │ StatusReport (typed)
//!                                                   v
//!                      watch<PeerStatuses> ──> whoever writes /status
//! ```

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::fsm::State;
use super::metrics::Metrics;
use super::session::{Routes, SessionConfig, SessionHandle, SessionStatus};
use super::transport::{self, BGP_PORT, BgpListener};

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

/// herald's own BGP speaker: a session task per peer and one listener.
pub struct Speaker {
    metrics: Arc<Metrics>,
    incoming: IncomingTable,
    listener: Option<JoinHandle<()>>,
    peers: BTreeMap<String, Peer>,
    /// What every session is told to announce (`None` before the first
    /// announce: a new session is not told anything, so it sends no
    /// End-of-RIB before the agent's first complete set).
    announced: Option<Arc<Routes>>,
    graceful_shutdown: bool,
    statuses: Arc<watch::Sender<PeerStatuses>>,
}

impl Speaker {
    /// The speaker, with the passive listener on port 179 of every address
    /// (both families). `keys` are the TCP MD5 keys of the peers, installed
    /// on the listener.
    pub fn start(metrics: Arc<Metrics>, keys: &[(IpAddr, Vec<u8>)]) -> Speaker {
        let incoming = Arc::new(RwLock::new(HashMap::new()));
        let listener = match BgpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, BGP_PORT)))
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
        Speaker {
            metrics,
            incoming,
            listener,
            peers: BTreeMap::new(),
            announced: None,
            graceful_shutdown: false,
            statuses: Arc::new(watch::channel(PeerStatuses::new()).0),
        }
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
    /// [`Speaker::release`] (strict BFD mode waits for BFD Up).
    pub fn add_peer(&mut self, config: SessionConfig, held: bool) {
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
    }

    /// The peer is no longer used: Cease "Peer De-configured" (the session
    /// task sends it when its handle is dropped) and forget it.
    pub fn remove_peer(&mut self, name: &str) {
        if let Some(peer) = self.peers.remove(name) {
            peer.generation.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut table) = self.incoming.write() {
                table.remove(&peer.config.peer.ip());
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
    pub async fn close_for_restart(mut self) {
        if let Some(listener) = self.listener.take() {
            listener.abort();
        }
        let closes: Vec<_> = self
            .peers
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
    pub async fn stop(mut self, text: &str) {
        if let Some(listener) = self.listener.take() {
            listener.abort();
        }
        let mut statuses = self.statuses.subscribe();
        for session in self.peers.values().filter_map(|p| p.session.as_ref()) {
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

impl Drop for Speaker {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.take() {
            listener.abort();
        }
    }
}

/// Where [`serve_listener`] sends a connection from a configured peer.
#[derive(Clone)]
pub enum Incoming {
    /// To the peer's session ([`SessionHandle::incoming_sender`]).
    Session(mpsc::UnboundedSender<TcpStream>),
    /// Nowhere: the peer is configured but its session is held (strict BFD
    /// mode waits for BFD Up), so the connection is closed, as an Idle
    /// session refuses one (RFC 4271 §8.2.2).
    Held,
}

/// The listener's table: peer address -> where its connections go.
pub type IncomingTable = Arc<std::sync::RwLock<HashMap<IpAddr, Incoming>>>;

/// Accepts connections on a [`transport::BgpListener`] and hands each to
/// the session of the peer it comes from; connections from addresses that
/// are not configured peers, or whose session is held, are closed at once.
pub async fn serve_listener(listener: transport::BgpListener, sessions: IncomingTable) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("BGP listener: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let target = sessions
            .read()
            .ok()
            .and_then(|map| map.get(&from.ip()).cloned());
        match target {
            Some(Incoming::Session(tx)) => {
                let _ = tx.send(stream);
            }
            Some(Incoming::Held) => tracing::info!(
                "refused a BGP connection from {from}: the session waits for BFD Up (bfd.strict)"
            ),
            None => tracing::info!("refused a BGP connection from {from}: not a configured peer"),
        }
    }
}
