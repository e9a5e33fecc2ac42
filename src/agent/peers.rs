//! The peers sub-owner: its own task owns every peer this node uses, its BGP
//! session (herald's [`Speaker`]) and the BFD session beside it, and couples
//! the two. The agent hands it announcements and reloaded configs through
//! [`PeersHandle`] and never waits for it, and it never waits for the
//! agent: a BFD Down reaches BGP while the agent is busy placing thousands
//! of addresses.
//!
//! ```text
//!   agent ── PeersHandle (AnnouncementSink) ──Command──┐
//!   source ── node labels (watch) ─────────────────────┤
//!   GatewayWatch (default route) ── watch ─────────────┤
//!   BFD thread ── per-session events ─ forwarder ──────┤
//!   speaker ── watch<PeerStatuses> ────────────────────┤
//!   retry tick (peers whose route is unknown) ─────────┘
//!                                                      v
//!                                          ┌─────────────────────┐
//!                                          │  peers task (Peers) │
//!                                          └──┬──────────┬───────┘
//!     coupling::on_bfd_change (pure) ─> bfd_down / hold / release
//!     Speaker (one session per peer, listener) ── announce, gshut
//!     BfdRuntime ── add / change / remove sessions, AdminDown
//!     StatusBoard: the peer and BFD rows of /status
//! ```
//!
//! Owns: which peers run ([`route::selects`] on the node's labels), their
//! sessions (BGP and BFD), the coupling ([`coupling`]), applying a reloaded
//! config to them (`reload`), the stop sequences of BGP and BFD, and the
//! peer and BFD rows of `/status`. Must not touch: what is announced (the
//! agent decides), netlink, the sources.

pub mod coupling;
mod reload;
pub mod route;
mod rows;
mod sessions;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::AgentError;
use super::report::{self, PeerView};
use super::sink::AnnouncementSink;
use crate::bfd::runtime::{BfdRuntime, RuntimeOptions, SessionId, SessionSpec};
use crate::bfd::runtime::{SessionEvent as BfdEvent, SessionStatus as BfdStatus};
use crate::bgp::session::{Routes, routes};
use crate::bgp::speaker::{PeerStatuses, Speaker};
use crate::config::{Config, PeerAddress, PeerConfig};
use crate::model::Announcement;
use crate::netlink::gateway::GatewayWatch;
use crate::status::StatusBoard;

/// Planned restart: the pause between closing BGP and BFD AdminDown. BFD
/// keeps sending Up meanwhile, so the router's bgpd has this long to take
/// the TCP close (and enter graceful-restart helper mode) before its bfdd
/// reports Down. 100 ms leaves a loaded router little room (the lab's r1 on
/// a busy 2-core machine sometimes handled BFD Down first during restarts);
/// a second costs nothing: it is well inside the DaemonSet's termination
/// grace period.
const ADMIN_DOWN_AFTER_CLOSE: Duration = Duration::from_secs(1);

/// How often peers whose route is unknown are tried again.
const PEER_RETRY: Duration = Duration::from_secs(1);

/// What the peers task needs to start.
pub struct PeersSetup {
    pub config: Config,
    /// herald found its addresses in place: sessions carry the graceful
    /// restart R and F bits (RFC 4724 §3).
    pub restarted: bool,
    /// This node's labels, for the peers' `node_selector` (`None` until
    /// the source knows them).
    pub node_labels: watch::Receiver<Option<BTreeMap<String, String>>>,
    pub status: StatusBoard,
    pub bgp_metrics: Arc<crate::bgp::metrics::Metrics>,
    pub bfd_metrics: crate::bfd::metrics::Metrics,
    /// The `peers` condition of `/readyz` is registered here.
    pub readiness: crate::admin::Readiness,
    /// The BFD thread's heartbeat is registered here.
    pub liveness: crate::admin::Liveness,
}

/// Requests from the agent.
enum Command {
    Announce(Arc<Routes>),
    GracefulShutdown(bool),
    /// Answered with a future that resolves once everything announced
    /// before is on the wire.
    Flush(oneshot::Sender<BoxFuture<'static, ()>>),
    Config(Box<Config>),
    /// Planned restart; answered when done, then the task ends.
    CloseForRestart(oneshot::Sender<()>),
    /// Stopping for good (after a drain); answered when done, then the
    /// task ends.
    Stop(&'static str, oneshot::Sender<()>),
}

/// The agent's side of the peers task: its announcement sink.
pub struct PeersHandle {
    commands: mpsc::UnboundedSender<Command>,
    statuses: watch::Receiver<PeerStatuses>,
    task: JoinHandle<()>,
}

impl PeersHandle {
    /// Starts herald's speaker (listening only for peers that `listen`), the BFD thread if
    /// a peer uses BFD, and the peers task.
    pub async fn spawn(setup: PeersSetup) -> Result<PeersHandle, AgentError> {
        let router_id = route::router_id(&setup.config).ok_or(AgentError::NoRouterId)?;
        let bfd_heartbeat = crate::admin::Heartbeat::new();
        setup.liveness.register("bfd", bfd_heartbeat.clone());
        let ready = setup.readiness.register("peers");
        let bfd = if setup.config.peers.iter().any(|p| p.bfd.enabled) {
            Some(
                BfdRuntime::spawn(
                    RuntimeOptions {
                        heartbeat: bfd_heartbeat.clone(),
                        ..RuntimeOptions::default()
                    },
                    setup.bfd_metrics.clone(),
                )
                .map_err(AgentError::Bfd)?,
            )
        } else {
            None
        };
        tracing::info!(%router_id, "BGP speaker starting");
        let speaker = Speaker::start(setup.bgp_metrics);
        let statuses = speaker.statuses();
        let gateways = start_gateway_watch(&setup.config, None).await;
        let (bfd_events, bfd_event_rx) = mpsc::unbounded_channel();
        let peers = Peers {
            config: setup.config,
            router_id,
            restarted: setup.restarted,
            node_labels: BTreeMap::new(),
            speaker,
            bfd,
            bfd_metrics: setup.bfd_metrics,
            bfd_heartbeat,
            ready,
            bfd_events,
            peer_bfd: BTreeMap::new(),
            peer_since: BTreeMap::new(),
            pending_peers: Vec::new(),
            not_started: BTreeMap::new(),
            used_peers: BTreeSet::new(),
            gateway_peers: BTreeMap::new(),
            gateways,
            status: setup.status,
        };
        let (commands, command_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(peers.run(command_rx, bfd_event_rx, setup.node_labels));
        Ok(PeersHandle {
            commands,
            statuses,
            task,
        })
    }

    /// Every peer's BGP status; changes whenever a session's does.
    pub fn statuses(&self) -> watch::Receiver<PeerStatuses> {
        self.statuses.clone()
    }

    fn send(&self, command: Command) {
        // The task ends only on CloseForRestart or Stop, which consume the
        // handle.
        let _ = self.commands.send(command);
    }

    /// Sends a command that ends the task and waits for both.
    fn finish(
        self: Box<Self>,
        command: impl FnOnce(oneshot::Sender<()>) -> Command,
    ) -> BoxFuture<'static, ()> {
        let (done, wait) = oneshot::channel();
        self.send(command(done));
        Box::pin(async move {
            let _ = wait.await;
            let _ = self.task.await;
        })
    }
}

impl AnnouncementSink for PeersHandle {
    fn announce(&mut self, announcements: &BTreeSet<Announcement>) {
        self.send(Command::Announce(Arc::new(routes(announcements))));
    }

    fn set_graceful_shutdown(&mut self, on: bool) {
        self.send(Command::GracefulShutdown(on));
    }

    fn flushed(&self, limit: Duration) -> BoxFuture<'static, ()> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Flush(reply));
        Box::pin(async move {
            let wait = async move {
                if let Ok(flushed) = answer.await {
                    flushed.await;
                }
            };
            if tokio::time::timeout(limit, wait).await.is_err() {
                tracing::warn!("a BGP session did not take its UPDATEs within {limit:?}");
            }
        })
    }

    fn set_config(&mut self, config: &Config) {
        self.send(Command::Config(Box::new(config.clone())));
    }

    fn peers(&self, _board: &StatusBoard) -> Vec<PeerView> {
        // The peers task writes the peer rows itself.
        self.statuses
            .borrow()
            .iter()
            .map(|(name, peer)| PeerView {
                name: name.clone(),
                state: report::bgp_state(peer.session.state),
                families: peer.session.families.clone(),
            })
            .collect()
    }

    fn close_for_restart(self: Box<Self>) -> BoxFuture<'static, ()> {
        self.finish(Command::CloseForRestart)
    }

    fn stop(self: Box<Self>, text: &'static str) -> BoxFuture<'static, ()> {
        self.finish(|done| Command::Stop(text, done))
    }
}

/// One BFD session's change, as its forwarder hands it to the task.
#[derive(Debug)]
enum BfdUpdate {
    /// A state change (the coupling acts on it).
    Changed { peer: String, event: BfdEvent },
    /// New intervals or remote state (the `/status` row changes).
    Status { peer: String },
}

/// The BFD session beside one peer.
struct PeerBfd {
    id: SessionId,
    spec: SessionSpec,
    status: watch::Receiver<BfdStatus>,
    /// When the session last changed state (Unix seconds).
    since: Option<u64>,
    strict: bool,
    forwarder: JoinHandle<()>,
}

/// The peers task's state.
struct Peers {
    config: Config,
    /// The BGP identifier (`router_id`, else the node's IPv4 address).
    router_id: Ipv4Addr,
    restarted: bool,
    node_labels: BTreeMap<String, String>,
    speaker: Speaker,
    bfd: Option<BfdRuntime>,
    /// For starting the BFD thread when a reload enables BFD.
    bfd_metrics: crate::bfd::metrics::Metrics,
    /// The BFD thread's heartbeat (registered for `/livez`).
    bfd_heartbeat: crate::admin::Heartbeat,
    /// The `peers` condition of `/readyz`.
    ready: crate::admin::ReadinessCondition,
    /// Where the BFD forwarders report.
    bfd_events: mpsc::UnboundedSender<BfdUpdate>,
    peer_bfd: BTreeMap<String, PeerBfd>,
    /// Since when each peer has been in its BGP state (Unix seconds).
    peer_since: BTreeMap<String, (crate::bgp::fsm::State, u64)>,
    /// Configured peers this node uses that are not started yet (the route
    /// to them is unknown).
    pending_peers: Vec<PeerConfig>,
    /// Peers that could not start, with the reason last reported.
    not_started: BTreeMap<String, sessions::NotStarted>,
    /// Names of the peers this node uses (started or pending).
    used_peers: BTreeSet<String>,
    /// Peers with `address: gateway` and the gateway they were started with.
    gateway_peers: BTreeMap<String, IpAddr>,
    /// The node's default gateways, while a peer uses `address: gateway`.
    gateways: Option<GatewayWatch>,
    status: StatusBoard,
}

impl Peers {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut bfd: mpsc::UnboundedReceiver<BfdUpdate>,
        mut labels: watch::Receiver<Option<BTreeMap<String, String>>>,
    ) {
        let mut statuses = self.speaker.statuses();
        if let Some(known) = labels.borrow_and_update().clone() {
            self.select_peers(&known);
        }
        let mut retry = tokio::time::interval(PEER_RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut labels_open = true;
        loop {
            let gateway_changes = self.gateways.as_ref().map(GatewayWatch::subscribe);
            tokio::select! {
                // In this order, not at random: a BFD state change (a Cease
                // to send) never waits behind status rows or commands when a
                // router's full table keeps them coming.
                biased;
                Some(update) = bfd.recv() => self.bfd_update(update),
                command = commands.recv() => match command {
                    Some(Command::Announce(routes)) => self.speaker.announce(routes),
                    Some(Command::GracefulShutdown(on)) => self.speaker.set_graceful_shutdown(on),
                    Some(Command::Flush(reply)) => {
                        let _ = reply.send(Box::pin(self.speaker.flushed()));
                    }
                    Some(Command::Config(config)) => self.reload(*config).await,
                    Some(Command::CloseForRestart(done)) => {
                        self.close_for_restart().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(Command::Stop(text, done)) => {
                        self.stop(text).await;
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                Ok(()) = statuses.changed() => self.write_peer_rows(),
                changed = labels.changed(), if labels_open => match changed {
                    Ok(()) => {
                        if let Some(known) = labels.borrow_and_update().clone() {
                            self.select_peers(&known);
                        }
                    }
                    Err(_) => labels_open = false,
                },
                Some(()) = wait_changed(gateway_changes) => self.gateways_changed(),
                _ = retry.tick() => {
                    if !self.pending_peers.is_empty() {
                        self.start_pending_peers();
                    }
                    // `since` of a state moves on its own: keep it fresh.
                    self.write_peer_rows();
                }
            }
        }
    }

    /// SIGTERM without drain: every BGP connection closed without a
    /// NOTIFICATION, then (after [`ADMIN_DOWN_AFTER_CLOSE`]) BFD AdminDown.
    async fn close_for_restart(self) {
        let (speaker, bfd) = self.into_sessions();
        speaker.close_for_restart().await;
        if let Some(bfd) = &bfd {
            // BGP first: FRR 8.4 tears BGP down (Cease/BFD Down, no graceful
            // restart) when AdminDown reaches bgpd before the TCP close,
            // although RFC 5882 §4.2 says AdminDown "MUST NOT" count as a
            // failure. The pause lets the routers take the close first.
            tokio::time::sleep(ADMIN_DOWN_AFTER_CLOSE).await;
            // Returns once the AdminDown packets are on the wire.
            match bfd.admin_down_all() {
                Ok(()) => tracing::info!("BFD AdminDown sent to every peer"),
                Err(error) => tracing::warn!("BFD AdminDown: {error}"),
            }
        }
        shutdown_bfd(bfd).await;
    }

    /// Leaving for good after a drain: BFD AdminDown, then Cease with `text`.
    async fn stop(self, text: &str) {
        let (speaker, bfd) = self.into_sessions();
        if let Some(bfd) = &bfd
            && let Err(error) = bfd.admin_down_all()
        {
            tracing::warn!("BFD AdminDown: {error}");
        }
        speaker.stop(text).await;
        shutdown_bfd(bfd).await;
    }

    /// The speaker and the BFD thread, for a stop sequence; BFD events are
    /// no longer forwarded.
    fn into_sessions(self) -> (Speaker, Option<BfdRuntime>) {
        for session in self.peer_bfd.values() {
            session.forwarder.abort();
        }
        (self.speaker, self.bfd)
    }
}

/// Stops the BFD thread (joined off the async threads).
async fn shutdown_bfd(bfd: Option<BfdRuntime>) {
    if let Some(bfd) = bfd {
        tokio::task::spawn_blocking(move || bfd.shutdown())
            .await
            .ok();
    }
}

/// Follows the default gateway when a peer of `config` uses `address:
/// gateway` and nothing follows it yet (`current`).
async fn start_gateway_watch(
    config: &Config,
    current: Option<GatewayWatch>,
) -> Option<GatewayWatch> {
    if current.is_some()
        || !config
            .peers
            .iter()
            .any(|p| p.address == PeerAddress::Gateway)
    {
        return current;
    }
    match GatewayWatch::start().await {
        Ok(watch) => Some(watch),
        Err(error) => {
            tracing::warn!("cannot follow the default gateway: {error}");
            None
        }
    }
}

/// Resolves when the watch has a new value (never, without a watch).
async fn wait_changed<T>(receiver: Option<watch::Receiver<T>>) -> Option<()> {
    match receiver {
        Some(mut receiver) => receiver.changed().await.ok(),
        None => std::future::pending().await,
    }
}
