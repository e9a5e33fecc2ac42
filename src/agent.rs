//! The agent: the one owner of herald's desired and actual state. Sources
//! say what should be announced, the reconciler drives netlink and every BGP
//! peer in the right order, BFD is coupled to BGP, and SIGTERM, drain and
//! the admin endpoint are sequenced here.
//!
//! Owns: the owner task and its typed messages ([`AgentEvent`]), the peers
//! this node uses, the health checks of the services file, the drain and
//! planned-restart sequences, and the `/status` rows of peers, BFD sessions
//! and announcements. Must not touch: protocol internals (it uses the public
//! handles of `bgp`, `bfd`, `netlink` and `kube`).
//!
//! ```text
//!   services file ─ health check tasks ──CheckReport──┐
//!   KubeSource ── desired() watch ────────────────────┤
//!   ServiceAddresses ── status watch (placed) ────────┤
//!   BGP session tasks ── status watch ─ forwarder ────┤  AgentEvent / watches
//!   BFD thread ── SessionEvent ─ forwarder ───────────┤        │
//!   admin endpoint ── POST /drain ────────────────────┤        v
//!   ReloadSource (file change, SIGHUP) ── Reload ─────┤
//!   GatewayWatch (default route) ── watch ────────────┤
//!   signals (SIGTERM, SIGINT), drain + anti-flap timers┘ ┌──────────────────┐
//!                                                        │  owner task      │
//!                                                        │  (Agent::run)    │
//!                                                        └──┬───────┬──────┬┘
//!     desired -> AntiFlap (pure) -> Drain (pure) -> effective set    │      │
//!     reconcile::plan (pure) -> Step::PlaceAddresses ───────┘       │      │
//!       netlink: set_wanted (awaited, then re-read)                 │      │
//!     Step::Announce -> Speaker::Herald: SessionHandle per peer ────┘      │
//!     coupling::on_bfd_change (pure) -> bfd_down / hold / release          │
//!     StatusBoard rows (/status), metrics ─────────────────────────────────┘
//! ```
//!
//! # Lifecycle
//! - Start: netlink adopts herald's addresses; if some are there, this is a
//!   restart and every session's OPEN carries the graceful-restart Restart
//!   State bit (RFC 4724 §3). Nothing is placed or announced until the
//!   source delivers its first complete set; then the addresses are placed
//!   and the complete set is announced, then End-of-RIB.
//! - Planned restart (SIGTERM without `drain.on_sigterm`): every BGP
//!   connection is closed without a NOTIFICATION, so the routers keep the
//!   routes as stale (RFC 4724 §4.2), then BFD AdminDown goes to every peer
//!   (RFC 5882 §4.2: not a failure; after the close because FRR 8.4 does
//!   treat it as one); addresses stay on the interface.
//! - Drain (`POST /drain`, the node exclusion label, or SIGTERM with
//!   `drain.on_sigterm`): GRACEFUL_SHUTDOWN, wait, withdraw, remove
//!   ([`drain`]).

pub mod coupling;
pub mod drain;
pub mod metrics;
pub mod peers;
mod publish;
pub mod reconcile;
pub mod reload;
pub mod report;
mod sessions;
pub mod settings;
pub mod speaker;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::admin::{AdminCommand, Readiness};
use crate::antiflap::AntiFlap;
use crate::bfd::runtime::{
    BfdRuntime, RuntimeOptions, SessionEvent as BfdEvent, SessionSpec, SessionStatus as BfdStatus,
};
use crate::config::{Config, PeerAddress, PeerConfig};
use crate::netlink::gateway::GatewayWatch;
use crate::netlink::{AddressStatus, OwnershipMode, Placement, ServiceAddresses};
use crate::services::ServicesFile;
use crate::source::{Desired, Source, SourceError};
use crate::status::{DrainStatus, StatusBoard};

use drain::{Drain, DrainAction, DrainTrigger};
use reconcile::{Actual, Step};
use reload::{Reload, ReloadSource};
use speaker::Speaker;

/// The errors that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot manage the service addresses on {interface}")]
    Addresses {
        interface: String,
        #[source]
        source: Box<crate::netlink::NetlinkError>,
    },
    #[error("cannot start bfd")]
    Bfd(#[source] crate::bfd::BfdError),
    #[error("cannot watch signal {0}")]
    Signal(&'static str, #[source] std::io::Error),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(
        "no router id: set router_id in the config (the node has no IPv4 address to default to)"
    )]
    NoRouterId,
    #[error("cannot start the BIRD backend (speaker: bird)")]
    Bird(#[source] crate::bird::BirdError),
}

/// Where desired announcements come from.
pub enum SourceSetup {
    /// `--services FILE`.
    Standalone(ServicesFile),
    /// Services, EndpointSlices and this Node from the API server.
    Kubernetes,
}

/// Everything `herald run` hands the agent.
pub struct AgentSetup {
    pub config: Config,
    /// Where `config` came from (watched for changes, with SIGHUP).
    pub config_path: PathBuf,
    /// Standalone: where the services file came from (watched too).
    pub services_path: Option<PathBuf>,
    pub source: SourceSetup,
    pub node_name: String,
    /// This node's labels for `node_selector` (standalone: `--node-label`).
    pub node_labels: BTreeMap<String, String>,
    pub status: StatusBoard,
    pub readiness: Readiness,
    pub metrics: metrics::SubsystemMetrics,
    /// Requests from the admin endpoint (`POST /drain`).
    pub admin: mpsc::UnboundedReceiver<AdminCommand>,
}

/// Typed messages to the owner task.
#[derive(Debug)]
pub enum AgentEvent {
    /// A BFD session changed state.
    Bfd { peer: String, event: BfdEvent },
    /// A BFD session's status changed (intervals, remote state).
    BfdStatus(String),
}

/// The BFD session beside one peer.
struct PeerBfd {
    id: crate::bfd::runtime::SessionId,
    spec: SessionSpec,
    status: watch::Receiver<BfdStatus>,
    since: Option<u64>,
    strict: bool,
    forwarder: JoinHandle<()>,
}

/// The owner task's state.
struct Agent {
    config: Config,
    node_labels: BTreeMap<String, String>,
    status: StatusBoard,
    metrics: metrics::Metrics,
    source: Source,
    /// What the source published last (its announcements are `None` until
    /// its first complete view).
    sourced: Arc<Desired>,
    /// The source said this node carries an exclusion label.
    excluded: bool,
    addresses: ServiceAddresses,
    address_status: watch::Receiver<AddressStatus>,
    actual: Actual,
    speaker: Option<Speaker>,
    /// The BGP identifier herald's sessions use (`router_id`, else the
    /// node's IPv4 address).
    router_id: std::net::Ipv4Addr,
    /// herald found its addresses in place at start: sessions carry the
    /// graceful-restart R and F bits (RFC 4724 §3).
    restarted: bool,
    bfd: Option<BfdRuntime>,
    /// For starting the BFD runtime when a reload enables BFD.
    bfd_metrics: crate::bfd::metrics::Metrics,
    peer_bfd: BTreeMap<String, PeerBfd>,
    /// Since when each peer has been in its BGP state (Unix seconds).
    peer_since: BTreeMap<String, (crate::bgp::fsm::State, u64)>,
    /// Configured peers this node uses that are not started yet (the route
    /// to them is unknown).
    pending_peers: Vec<PeerConfig>,
    /// Names of the peers this node uses (started or pending).
    used_peers: BTreeSet<String>,
    /// Peers with `address: gateway` and the gateway they were started with.
    gateway_peers: BTreeMap<String, IpAddr>,
    /// The node's default gateways, while a peer uses `address: gateway`.
    gateways: Option<GatewayWatch>,
    /// Holds withdrawals back (min_up, withdraw_delay) between the source
    /// and the reconciler.
    antiflap: AntiFlap,
    /// When anti-flap releases the next held withdrawal.
    antiflap_timer: Option<Instant>,
    drain: Drain,
    drain_timer: Option<Instant>,
    /// SIGTERM with drain: exit once the drain has withdrawn everything.
    exit_after_drain: bool,
    events: mpsc::UnboundedSender<AgentEvent>,
}

/// How long a removal waits for the withdrawal to be written to every peer.
const WITHDRAW_FLUSH_LIMIT: Duration = Duration::from_secs(2);

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

/// Runs the agent until a planned stop. Returns after the stop sequence.
pub async fn run(setup: AgentSetup) -> Result<(), AgentError> {
    let AgentSetup {
        config,
        source,
        node_name,
        node_labels,
        status,
        readiness,
        metrics,
        mut admin,
        config_path,
        services_path,
    } = setup;
    let mut term = signal(SignalKind::terminate()).map_err(|e| AgentError::Signal("SIGTERM", e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| AgentError::Signal("SIGINT", e))?;
    // SIGHUP and file changes: the reload source (it installs the handler).
    let (_reload_source, mut reloads) =
        match ReloadSource::spawn(config_path, services_path, metrics.reload.clone()) {
            Ok((source, reloads)) => (Some(source), Some(reloads)),
            Err(error) => {
                tracing::warn!("configuration reload unavailable: {error}");
                (None, None)
            }
        };

    apply_arp_hygiene(&config);
    let addresses = ServiceAddresses::start(
        &config.interface,
        OwnershipMode::Auto,
        metrics.netlink.clone(),
    )
    .await
    .map_err(|source| AgentError::Addresses {
        interface: config.interface.clone(),
        source: Box::new(source),
    })?;
    let address_status = addresses.subscribe();
    let restarted = restart_detected(&addresses.snapshot());
    if restarted {
        tracing::info!(
            "herald's addresses are on {}: this is a restart; graceful restart Restart State bit set, addresses stay",
            config.interface
        );
    }
    metrics.agent.restarted.set(i64::from(restarted));

    let (events, mut event_rx) = mpsc::unbounded_channel();
    // With `speaker: bird`, BIRD runs BFD beside its own sessions.
    let herald_speaks = config.speaker == crate::bird::SpeakerKind::Herald;
    let bfd = if herald_speaks && config.peers.iter().any(|p| p.bfd.enabled) {
        Some(
            BfdRuntime::spawn(RuntimeOptions::default(), metrics.bfd.clone())
                .map_err(AgentError::Bfd)?,
        )
    } else {
        None
    };

    let source = match source {
        SourceSetup::Standalone(services) => Source::file(
            services,
            &config,
            node_labels.clone(),
            metrics.agent.health_checks.clone(),
        ),
        SourceSetup::Kubernetes => {
            Source::kubernetes(&node_name, &config, &readiness, metrics.kube.clone()).await?
        }
    };
    let mut source_desired = source.desired();
    let mut source_labels = source.node_labels();

    let gateways = if config
        .peers
        .iter()
        .any(|p| p.address == PeerAddress::Gateway)
    {
        match GatewayWatch::start().await {
            Ok(watch) => Some(watch),
            Err(error) => {
                tracing::warn!("cannot follow the default gateway: {error}");
                None
            }
        }
    } else {
        None
    };
    let mut agent = Agent {
        drain: Drain::new(config.drain.gshut_wait),
        antiflap: AntiFlap::with_metrics(config.anti_flap.clone(), metrics.antiflap.clone()),
        antiflap_timer: None,
        gateway_peers: BTreeMap::new(),
        gateways,
        bfd_metrics: metrics.bfd.clone(),
        config,
        node_labels,
        status,
        metrics: metrics.agent.clone(),
        source,
        sourced: Arc::default(),
        excluded: false,
        addresses,
        address_status,
        actual: Actual::default(),
        speaker: None,
        router_id: std::net::Ipv4Addr::UNSPECIFIED,
        restarted,
        bfd,
        peer_bfd: BTreeMap::new(),
        peer_since: BTreeMap::new(),
        pending_peers: Vec::new(),
        used_peers: BTreeSet::new(),
        drain_timer: None,
        exit_after_drain: false,
        events,
    };
    if herald_speaks {
        agent.start_speaker(restarted, metrics.bgp.clone())?;
    } else {
        let bird = crate::bird::BirdSpeaker::start(&agent.config, metrics.bird.clone())
            .map_err(AgentError::Bird)?;
        tracing::info!("speaker: bird: the node's BIRD announces what herald decides");
        agent.speaker = Some(Speaker::Bird(bird));
    }
    if let Some(labels) = source_labels.borrow_and_update().clone() {
        agent.select_peers(&labels);
    }
    agent.refresh_source(&mut source_desired).await;
    agent.publish();

    let mut peer_changes = agent.speaker.as_ref().and_then(Speaker::statuses);
    let mut retry = tokio::time::interval(PEER_RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let drain_at = agent.drain_timer;
        let antiflap_at = agent.antiflap_timer;
        let gateway_changes = agent.gateways.as_ref().map(GatewayWatch::subscribe);
        tokio::select! {
            Some(()) = next_change(&mut peer_changes) => agent.publish(),
            Ok(()) = source_labels.changed() => {
                if let Some(labels) = source_labels.borrow_and_update().clone() {
                    agent.select_peers(&labels);
                }
            }
            Some(event) = event_rx.recv() => agent.handle(event).await,
            Ok(()) = agent.address_status.changed() => {
                agent.reconcile().await;
            }
            Ok(()) = source_desired.changed() => agent.refresh_source(&mut source_desired).await,
            Some(command) = admin.recv() => agent.admin(command).await,
            _ = tokio::time::sleep_until(drain_at.unwrap_or_else(Instant::now)), if drain_at.is_some() => {
                agent.drain_timer = None;
                let actions = agent.drain.timer(Instant::now().into_std());
                agent.drain_actions(actions).await;
            }
            _ = tokio::time::sleep_until(antiflap_at.unwrap_or_else(Instant::now)), if antiflap_at.is_some() => {
                agent.antiflap_timer = None;
                agent.reconcile().await;
            }
            Some(reload) = next_reload(&mut reloads) => agent.reload(reload).await,
            Some(()) = wait_changed(gateway_changes) => agent.gateways_changed(),
            _ = retry.tick() => agent.tick().await,
            _ = term.recv() => {
                if agent.sigterm().await { break; }
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping as a planned restart");
                break;
            }
        }
        if agent.exit_after_drain && agent.drain_complete() {
            agent.stop_drained().await;
            return Ok(());
        }
    }
    agent.planned_restart().await;
    Ok(())
}

/// The next reload (never, without a reload source).
async fn next_reload(reloads: &mut Option<mpsc::Receiver<Reload>>) -> Option<Reload> {
    match reloads {
        Some(reloads) => reloads.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the watch has a value not seen yet (never, without a
/// watch).
async fn next_change<T>(receiver: &mut Option<watch::Receiver<T>>) -> Option<()> {
    match receiver {
        Some(receiver) => receiver.changed().await.ok(),
        None => std::future::pending().await,
    }
}

/// Resolves when the watch has a new value (never, without a watch).
async fn wait_changed<T>(receiver: Option<watch::Receiver<T>>) -> Option<()> {
    match receiver {
        Some(mut receiver) => receiver.changed().await.ok(),
        None => std::future::pending().await,
    }
}

/// herald-marked addresses on the interface at start: a restart.
pub fn restart_detected(status: &AddressStatus) -> bool {
    status
        .addresses
        .iter()
        .any(|a| a.placement == Placement::Owned)
}

fn apply_arp_hygiene(config: &Config) {
    if config.arp_hygiene.is_empty() {
        return;
    }
    match crate::netlink::apply_arp_hygiene(&config.arp_hygiene) {
        Ok(changes) => {
            for change in changes {
                tracing::info!(
                    path = %change.path.display(),
                    "ARP hygiene: {} -> {}",
                    change.previous,
                    change.value
                );
            }
        }
        Err(error) => tracing::warn!("ARP hygiene not applied: {error}"),
    }
}

impl Agent {
    async fn handle(&mut self, event: AgentEvent) {
        match event {
            AgentEvent::Bfd { peer, event } => self.bfd_event(&peer, event),
            AgentEvent::BfdStatus(peer) => self.publish_bfd(&peer),
        }
    }

    /// Takes the source's new desired set: a change of the node exclusion
    /// starts or ends a drain; anything else is reconciled.
    async fn refresh_source(&mut self, desired: &mut watch::Receiver<Arc<Desired>>) {
        self.sourced = desired.borrow_and_update().clone();
        self.source.publish_health(&self.status);
        let was_excluded = std::mem::replace(&mut self.excluded, self.sourced.node_excluded);
        if self.excluded && !was_excluded {
            tracing::info!("this node carries the exclusion label: draining");
            let announced = self.actual.announced.clone().unwrap_or_default();
            let actions = self.drain.start(
                Instant::now().into_std(),
                DrainTrigger::NodeExcluded,
                &announced,
            );
            self.drain_actions(actions).await;
            return;
        }
        if was_excluded && !self.excluded {
            tracing::info!("the exclusion label is gone: serving again");
            let actions = self.drain.exclusion_lifted();
            self.drain_actions(actions).await;
            return;
        }
        self.reconcile().await;
    }

    /// Plans and performs steps until the plan is empty.
    async fn reconcile(&mut self) {
        let Some(source_desired) = &self.sourced.announcements else {
            self.publish();
            return;
        };
        let held = self
            .antiflap
            .update(Instant::now().into_std(), source_desired);
        self.antiflap_timer = self.antiflap.next_deadline().map(Instant::from_std);
        let desired = self.drain.effective(&held);
        for _ in 0..8 {
            self.actual.placed = placed(&self.address_status.borrow_and_update());
            let steps = reconcile::plan(&desired, &self.actual);
            if steps.is_empty() {
                break;
            }
            for step in steps {
                self.metrics.step(&step);
                match step {
                    Step::Announce(set) => {
                        tracing::debug!(count = set.len(), "announcing");
                        if let Some(speaker) = &mut self.speaker {
                            speaker.announce(&set);
                        }
                        self.actual.announced = Some(set);
                    }
                    Step::PlaceAddresses(addresses) => {
                        let removing = self
                            .actual
                            .addresses_wanted
                            .as_ref()
                            .is_some_and(|old| !old.is_subset(&addresses));
                        if removing && let Some(speaker) = &self.speaker {
                            // Withdrawn from every peer (on the wire) before
                            // the address leaves the interface.
                            speaker.flushed(WITHDRAW_FLUSH_LIMIT).await;
                        }
                        match self.addresses.set_wanted(addresses.clone()).await {
                            Ok(report) => {
                                for failure in &report.failed {
                                    tracing::warn!(address = %failure.address, "not placed: {}", failure.reason);
                                }
                            }
                            Err(error) => {
                                tracing::error!("service addresses: {error}");
                                self.publish();
                                return;
                            }
                        }
                        self.actual.addresses_wanted = Some(addresses);
                    }
                }
            }
        }
        self.metrics
            .announced
            .set(self.actual.announced.as_ref().map_or(0, |a| a.len() as i64));
        self.publish();
    }

    async fn admin(&mut self, command: AdminCommand) {
        match command {
            AdminCommand::Drain(reply) => {
                let announced = self.actual.announced.clone().unwrap_or_default();
                tracing::info!("drain requested on the admin endpoint");
                let actions = self.drain.start(
                    Instant::now().into_std(),
                    DrainTrigger::AdminRequest,
                    &announced,
                );
                self.drain_actions(actions).await;
                let _ = reply.send(self.drain_status());
            }
        }
    }

    async fn drain_actions(&mut self, actions: Vec<DrainAction>) {
        for action in actions {
            match action {
                DrainAction::SetGracefulShutdown(on) => {
                    tracing::info!(on, "GRACEFUL_SHUTDOWN (RFC 8326) on every announcement");
                    if let Some(speaker) = &mut self.speaker {
                        speaker.set_graceful_shutdown(on);
                    }
                }
                DrainAction::ArmTimer(at) => self.drain_timer = Some(Instant::from_std(at)),
                DrainAction::Reconcile => self.reconcile().await,
            }
        }
        self.metrics.drain_phase.set(match self.drain.phase() {
            drain::DrainPhase::Serving => 0,
            drain::DrainPhase::GracefulShutdown { .. } => 1,
            drain::DrainPhase::Withdrawn { .. } => 2,
        });
        self.publish();
    }

    fn drain_status(&self) -> Option<DrainStatus> {
        self.drain
            .describe(Instant::now().into_std())
            .map(|(phase, trigger, left)| DrainStatus {
                phase,
                trigger: trigger.as_str().to_string(),
                seconds_left: left,
            })
    }

    /// SIGTERM: true to stop now (planned restart), false when a drain runs
    /// first.
    async fn sigterm(&mut self) -> bool {
        if self.exit_after_drain {
            tracing::warn!("second SIGTERM during the drain: stopping now");
            return true;
        }
        if !self.config.drain.on_sigterm {
            tracing::info!("SIGTERM: planned restart");
            return true;
        }
        tracing::info!("SIGTERM: draining first (drain.on_sigterm)");
        self.exit_after_drain = true;
        let announced = self.actual.announced.clone().unwrap_or_default();
        let actions =
            self.drain
                .start(Instant::now().into_std(), DrainTrigger::Sigterm, &announced);
        self.drain_actions(actions).await;
        false
    }

    fn drain_complete(&self) -> bool {
        self.drain.is_withdrawn()
            && self
                .actual
                .announced
                .as_ref()
                .is_none_or(BTreeSet::is_empty)
            && self.actual.placed.is_empty()
    }

    /// After a drain on SIGTERM: nothing is announced and the addresses are
    /// gone; tell BFD and BGP we are leaving for good.
    async fn stop_drained(mut self) {
        self.stop_checks();
        if let Some(bfd) = &self.bfd
            && let Err(error) = bfd.admin_down_all()
        {
            tracing::warn!("BFD AdminDown: {error}");
        }
        if let Some(speaker) = self.speaker.take() {
            speaker.stop("herald drained and stopping").await;
        }
        if let Some(bfd) = self.bfd.take() {
            tokio::task::spawn_blocking(move || bfd.shutdown())
                .await
                .ok();
        }
        self.addresses.stop().await;
        tracing::info!("drained and stopped");
    }

    /// SIGTERM without drain: BGP closed without a NOTIFICATION, then BFD
    /// AdminDown, addresses left in place.
    async fn planned_restart(mut self) {
        self.stop_checks();
        if let Some(speaker) = self.speaker.take() {
            speaker.close_for_restart().await;
        }
        if let Some(bfd) = &self.bfd {
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
        if let Some(bfd) = self.bfd.take() {
            tokio::task::spawn_blocking(move || bfd.shutdown())
                .await
                .ok();
        }
        self.addresses.stop().await;
        tracing::info!(
            "stopped for a restart: addresses stay, routers keep the routes under graceful restart"
        );
    }

    fn stop_checks(&mut self) {
        self.source.stop();
        for bfd in self.peer_bfd.values() {
            bfd.forwarder.abort();
        }
    }

    async fn tick(&mut self) {
        if !self.pending_peers.is_empty() {
            self.start_pending_peers();
        }
        self.source.publish_health(&self.status);
        self.publish();
    }
}

/// The addresses netlink says are on the interface.
fn placed(status: &AddressStatus) -> BTreeSet<IpAddr> {
    status
        .addresses
        .iter()
        .filter(|a| matches!(a.placement, Placement::Owned | Placement::PresentNotOwned))
        .map(|a| a.address)
        .collect()
}

/// A reply channel for admin commands.
pub type DrainReply = oneshot::Sender<Option<DrainStatus>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{AddressState, OwnershipScheme};

    fn address_status(placements: &[(&str, Placement)]) -> AddressStatus {
        AddressStatus {
            interface: "lo".to_string(),
            interface_index: Some(1),
            interface_up: true,
            ownership: OwnershipScheme::protocol("lo", crate::netlink::HERALD_ADDRESS_PROTOCOL),
            wanted_known: false,
            addresses: placements
                .iter()
                .map(|(address, placement)| AddressState {
                    address: address.parse().unwrap(),
                    wanted: false,
                    placement: *placement,
                    reason: None,
                })
                .collect(),
            adds: 0,
            removes: 0,
            repairs: 0,
            netlink_writes: 0,
            netlink_errors: 0,
        }
    }

    #[test]
    fn herald_marked_addresses_at_start_mean_a_restart() {
        let status = address_status(&[("203.0.113.10", Placement::Owned)]);
        assert!(restart_detected(&status));
    }

    #[test]
    fn an_interface_without_herald_addresses_is_a_fresh_start() {
        assert!(!restart_detected(&address_status(&[])));
        // An operator's address is not herald's: not a restart.
        let status = address_status(&[("203.0.113.10", Placement::PresentNotOwned)]);
        assert!(!restart_detected(&status));
    }

    #[test]
    fn placed_addresses_are_those_on_the_interface_owned_or_not() {
        let status = address_status(&[
            ("203.0.113.10", Placement::Owned),
            ("203.0.113.11", Placement::PresentNotOwned),
            ("203.0.113.12", Placement::Missing),
            ("203.0.113.13", Placement::Refused),
        ]);
        let expected: BTreeSet<IpAddr> = [
            "203.0.113.10".parse().unwrap(),
            "203.0.113.11".parse().unwrap(),
        ]
        .into();
        assert_eq!(placed(&status), expected);
    }
}
