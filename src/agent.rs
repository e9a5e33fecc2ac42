//! The agent: the one owner of herald's desired and actual state. A source
//! says what should be announced; the reconciler drives netlink and the
//! announcement sink in the right order; SIGTERM, drain, reload and the
//! admin endpoint are sequenced here. The peers (BGP and BFD sessions and
//! their coupling) have their own task, [`peers`], so nothing the owner
//! awaits can delay a BFD Down on its way to BGP.
//!
//! Owns: the owner task, the drain and planned-restart sequences, and the
//! announcement rows of `/status`. Must not touch: protocol internals (it
//! uses the public handles of `source`, `netlink` and the sink), or the
//! peers' state (the peers task owns it).
//!
//! ```text
//!   source ── watch<Arc<Desired>> (typed, one for both sources) ──┐
//!   ServiceAddresses ── status watch (placed) ────────────────────┤
//!   sink ── peer statuses (watch) ────────────────────────────────┤
//!   admin socket ── POST/DELETE /drain ───────────────────────────┤
//!   ReloadSource (file change, SIGHUP) ── Reload ─────────────────┤
//!   signals (SIGTERM, SIGINT), drain + anti-flap timers, tick ────┘
//!                                                                  v
//!                                                    ┌──────────────────────┐
//!                                                    │ owner task (Agent)   │
//!                                                    └───┬──────────────┬───┘
//!     desired -> AntiFlap (pure) -> Drain (pure) -> effective set       │
//!     reconcile::plan (pure) -> Step::PlaceAddresses ───┘                │
//!       netlink: set_wanted (awaited, then re-read)                      │
//!     Step::Announce -> AnnouncementSink ─────────────────────────────────┘
//!        herald: PeersHandle ─Command─> peers task (own loop: sessions,
//!                BFD events -> coupling -> Cease/BFD Down, peer rows)
//!        BIRD:   BirdSpeaker (include file, birdc)
//!     StatusBoard announcement rows (/status), metrics
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

pub mod drain;
pub mod metrics;
pub mod peers;
pub mod reconcile;
pub mod reload;
pub mod report;
pub mod settings;
pub mod sink;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, Interval};

use crate::admin::{AdminCommand, Heartbeat, Liveness, Readiness};
use crate::antiflap::AntiFlap;
use crate::bgp::speaker::PeerStatuses;
use crate::config::Config;
use crate::netlink::{AddressStatus, OwnershipMode, Placement, ServiceAddresses};
use crate::services::ServicesFile;
use crate::source::{Desired, Source, SourceError};
use crate::status::{DrainStatus, StatusBoard};

use drain::{Drain, DrainAction, DrainTrigger};
use peers::{PeersHandle, PeersSetup};
use reconcile::{Actual, Step};
use reload::{Reload, ReloadSource};
use report::RowContext;
use sink::AnnouncementSink;

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
    /// `/livez`: the owner task and the BFD thread register heartbeats.
    pub liveness: Liveness,
    pub metrics: metrics::SubsystemMetrics,
    /// Requests from the admin socket (`POST /drain`, `DELETE /drain`).
    pub admin: mpsc::UnboundedReceiver<AdminCommand>,
}

/// The owner task's state.
struct Agent {
    config: Config,
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
    /// Where announcements go: herald's own peers task, or BIRD.
    sink: Box<dyn AnnouncementSink>,
    /// Holds withdrawals back (min_up, withdraw_delay) between the source
    /// and the reconciler.
    antiflap: AntiFlap,
    /// When anti-flap releases the next held withdrawal.
    antiflap_timer: Option<Instant>,
    drain: Drain,
    drain_timer: Option<Instant>,
    /// SIGTERM with drain: exit once the drain has withdrawn everything.
    exit_after_drain: bool,
    /// Beaten every turn of the owner loop (`/livez`).
    heartbeat: Heartbeat,
}

/// What the owner task waits on besides its own timers.
struct Inputs {
    term: Signal,
    int: Signal,
    /// Keeps the reload task running.
    _reload_source: Option<ReloadSource>,
    reloads: Option<mpsc::Receiver<Reload>>,
    admin: mpsc::UnboundedReceiver<AdminCommand>,
    source_desired: watch::Receiver<Arc<Desired>>,
    /// herald's own peers (none with `speaker: bird`).
    peer_statuses: Option<watch::Receiver<PeerStatuses>>,
    tick: Interval,
}

/// How long a removal waits for the withdrawal to be written to every peer.
const WITHDRAW_FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// How often the source's health and the rows of `/status` are refreshed.
const TICK: Duration = Duration::from_secs(1);

/// Runs the agent until a planned stop. Returns after the stop sequence.
pub async fn run(setup: AgentSetup) -> Result<(), AgentError> {
    let (agent, inputs) = Agent::start(setup).await?;
    agent.serve(inputs).await;
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
    /// Everything before the loop: signals, the reload source, the
    /// interface, the source, the sink; then the first reconcile.
    async fn start(setup: AgentSetup) -> Result<(Agent, Inputs), AgentError> {
        let AgentSetup {
            config,
            source,
            node_name,
            node_labels,
            status,
            readiness,
            liveness,
            metrics,
            admin,
            config_path,
            services_path,
        } = setup;
        let heartbeat = Heartbeat::new();
        liveness.register("agent", heartbeat.clone());
        let term = signal(SignalKind::terminate()).map_err(|e| AgentError::Signal("SIGTERM", e))?;
        let int = signal(SignalKind::interrupt()).map_err(|e| AgentError::Signal("SIGINT", e))?;
        // SIGHUP and file changes: the reload source (it installs the handler).
        let (reload_source, reloads) =
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

        let source = match source {
            SourceSetup::Standalone(services) => Source::file(
                services,
                &config,
                node_labels,
                metrics.agent.health_checks.clone(),
            ),
            SourceSetup::Kubernetes => {
                Source::kubernetes(
                    &node_name,
                    &config,
                    &readiness,
                    metrics.kube.clone(),
                    crate::source::AllocationMetrics {
                        lease: metrics.lease.clone(),
                        allocator: metrics.allocation.clone(),
                    },
                )
                .await?
            }
        };
        let (sink, peer_statuses): (Box<dyn AnnouncementSink>, _) =
            if config.speaker == crate::config::SpeakerKind::Herald {
                let peers = PeersHandle::spawn(PeersSetup {
                    config: config.clone(),
                    restarted,
                    node_labels: source.node_labels(),
                    status: status.clone(),
                    bgp_metrics: metrics.bgp.clone(),
                    bfd_metrics: metrics.bfd.clone(),
                    readiness: readiness.clone(),
                    liveness: liveness.clone(),
                })
                .await?;
                let statuses = peers.statuses();
                (Box::new(peers), Some(statuses))
            } else {
                // BIRD runs the sessions and the BFD beside them.
                let bird = crate::bird::BirdSpeaker::start(&config, metrics.bird.clone())
                    .map_err(AgentError::Bird)?;
                tracing::info!("speaker: bird: the node's BIRD announces what herald decides");
                (Box::new(bird), None)
            };
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let inputs = Inputs {
            term,
            int,
            _reload_source: reload_source,
            reloads,
            admin,
            source_desired: source.desired(),
            peer_statuses,
            tick,
        };
        let agent = Agent {
            drain: Drain::new(config.drain.gshut_wait),
            antiflap: AntiFlap::with_metrics(config.anti_flap.clone(), metrics.antiflap.clone()),
            antiflap_timer: None,
            config,
            status,
            metrics: metrics.agent.clone(),
            source,
            sourced: Arc::default(),
            excluded: false,
            addresses,
            address_status,
            actual: Actual::default(),
            sink,
            drain_timer: None,
            exit_after_drain: false,
            heartbeat,
        };
        Ok((agent, inputs))
    }

    /// The owner loop, until a planned stop; then the stop sequence.
    async fn serve(mut self, mut inputs: Inputs) {
        self.refresh_source(&mut inputs.source_desired).await;
        loop {
            // Every input, and the tick at least once a second, comes
            // through here: a loop stuck in one step stops beating.
            self.heartbeat.beat();
            let drain_at = self.drain_timer;
            let antiflap_at = self.antiflap_timer;
            tokio::select! {
                Ok(()) = inputs.source_desired.changed() => {
                    self.refresh_source(&mut inputs.source_desired).await;
                }
                Ok(()) = self.address_status.changed() => self.reconcile().await,
                Some(()) = next_change(&mut inputs.peer_statuses) => self.publish(),
                Some(command) = inputs.admin.recv() => self.admin(command).await,
                _ = tokio::time::sleep_until(drain_at.unwrap_or_else(Instant::now)), if drain_at.is_some() => {
                    self.drain_timer = None;
                    let actions = self.drain.timer(Instant::now().into_std());
                    self.drain_actions(actions).await;
                }
                _ = tokio::time::sleep_until(antiflap_at.unwrap_or_else(Instant::now)), if antiflap_at.is_some() => {
                    self.antiflap_timer = None;
                    self.reconcile().await;
                }
                Some(reload) = next_reload(&mut inputs.reloads) => self.reload(reload).await,
                _ = inputs.tick.tick() => {
                    self.source.publish_health(&self.status);
                    self.publish();
                }
                _ = inputs.term.recv() => {
                    if self.sigterm().await { break; }
                }
                _ = inputs.int.recv() => {
                    tracing::info!("SIGINT: stopping as a planned restart");
                    break;
                }
            }
            self.heartbeat.beat();
            if self.exit_after_drain && self.drain_complete() {
                self.heartbeat.stop();
                self.stop_drained().await;
                return;
            }
        }
        self.heartbeat.stop();
        self.planned_restart().await;
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
                        self.sink.announce(&set);
                        self.metrics.weights(self.actual.announced.as_ref(), &set);
                        self.actual.announced = Some(set);
                    }
                    Step::PlaceAddresses(addresses) => {
                        let removing = self
                            .actual
                            .addresses_wanted
                            .as_ref()
                            .is_some_and(|old| !old.is_subset(&addresses));
                        if removing {
                            // Withdrawn from every peer (on the wire) before
                            // the address leaves the interface.
                            self.sink.flushed(WITHDRAW_FLUSH_LIMIT).await;
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
            AdminCommand::CancelDrain(reply) => {
                let answer = self.cancel_drain().await;
                let _ = reply.send(answer.map(|()| self.drain_status()));
            }
        }
    }

    /// `DELETE /drain`: serve again after an admin drain.
    async fn cancel_drain(&mut self) -> Result<(), String> {
        if self.exit_after_drain {
            return Err("herald is draining to stop (SIGTERM); it cannot be cancelled".to_string());
        }
        if self.excluded {
            // The admin drain came first, but the label would drain again
            // at once: say so rather than flap the routes.
            return Err(
                "this node carries the exclusion label \
                 (node.kubernetes.io/exclude-from-external-load-balancers); remove it to serve again"
                    .to_string(),
            );
        }
        let actions = self.drain.cancel_admin()?;
        tracing::info!("drain cancelled on the admin socket: serving again");
        self.drain_timer = None;
        self.drain_actions(actions).await;
        Ok(())
    }

    async fn drain_actions(&mut self, actions: Vec<DrainAction>) {
        for action in actions {
            match action {
                DrainAction::SetGracefulShutdown(on) => {
                    tracing::info!(on, "GRACEFUL_SHUTDOWN (RFC 8326) on every announcement");
                    self.sink.set_graceful_shutdown(on);
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
        self.source.release_leadership().await;
        self.source.stop();
        self.sink.stop("herald drained and stopping").await;
        self.addresses.stop().await;
        tracing::info!("drained and stopped");
    }

    /// SIGTERM without drain: BGP closed without a NOTIFICATION, then BFD
    /// AdminDown, addresses left in place.
    async fn planned_restart(mut self) {
        self.source.release_leadership().await;
        self.source.stop();
        self.sink.close_for_restart().await;
        self.addresses.stop().await;
        tracing::info!(
            "stopped for a restart: addresses stay, routers keep the routes under graceful restart"
        );
    }

    /// Writes the announcement rows of `/status` (and, with BIRD, its peer
    /// rows).
    fn publish(&mut self) {
        let views = self.sink.peers(&self.status);
        let address_status = self.address_status.borrow().clone();
        let problem = |address: IpAddr| {
            address_status
                .addresses
                .iter()
                .find(|a| a.address == address)
                .and_then(|a| a.reason.clone())
        };
        let empty = BTreeSet::new();
        let announced = self.actual.announced.as_ref().unwrap_or(&empty);
        let effective = self
            .sourced
            .announcements
            .as_ref()
            .map(|_| self.drain.effective(&self.antiflap.announced()))
            .unwrap_or_default();
        let now = std::time::Instant::now();
        let held_list = self.antiflap.held();
        let held = |address: IpAddr| {
            held_list.iter().find(|h| h.address == address).map(|h| {
                format!(
                    "no longer desired; withdrawal held by anti_flap for {}s ({})",
                    h.until.saturating_duration_since(now).as_secs(),
                    h.reason.describe()
                )
            })
        };
        let drain = self.drain_status().map(|d| match d.seconds_left {
            Some(left) => format!(
                "announced with GRACEFUL_SHUTDOWN 65535:0, withdrawal in {left}s ({})",
                d.trigger
            ),
            None => format!("withdrawn after {}", d.trigger),
        });
        let pending = self
            .sourced
            .announcements
            .is_none()
            .then(|| self.source.waiting_for());
        let wanted = self.sourced.announcements.as_ref().unwrap_or(&empty);
        let ctx = RowContext {
            announced,
            effective: &effective,
            wanted,
            placed: &self.actual.placed,
            placement_problem: &problem,
            held: &held,
            peers: &views,
            drain: drain.as_deref(),
            source_pending: pending,
        };
        let rows = report::announcement_rows(&self.sourced.candidates, &ctx);
        self.status.set_announcements(rows);
        let drain_status = self.drain_status();
        self.status.update(|r| r.drain = drain_status);
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
