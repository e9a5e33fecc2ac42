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
//!   signals (SIGTERM, SIGINT, SIGHUP), drain timer ───┘  ┌──────────────────┐
//!                                                        │  owner task      │
//!                                                        │  (Agent::run)    │
//!                                                        └──┬───────┬──────┬┘
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
pub mod health;
pub mod metrics;
pub mod peers;
pub mod reconcile;
pub mod report;
pub mod speaker;
pub mod standalone;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::admin::{AdminCommand, Readiness, ReadinessCondition};
use crate::bfd::runtime::{
    BfdRuntime, RuntimeOptions, SessionEvent as BfdEvent, SessionSpec, SessionStatus as BfdStatus,
};
use crate::config::{Config, PeerAddress, PeerConfig};
use crate::model::Announcement;
use crate::netlink::{AddressStatus, OwnershipMode, Placement, ServiceAddresses};
use crate::services::ServicesFile;
use crate::status::{
    BfdSessionStatus, DrainStatus, PeerStatus, SourceStatus, StatusBoard, unix_seconds,
};

use coupling::Coupling;
use drain::{Drain, DrainAction, DrainTrigger};
use health::{CheckReport, HealthState};
use reconcile::{Actual, Step};
use report::{Candidate, PeerView, RowContext};
use speaker::{HeraldSpeaker, PeerPlan, Speaker};

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
    #[error("cannot find the kubernetes api server (in-cluster service account or KUBECONFIG)")]
    KubeConfig(#[source] kube::config::InferConfigError),
    #[error("cannot start the kubernetes source")]
    Kube(#[source] kube::Error),
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
    /// A health check finished a run.
    Health(CheckReport),
    /// A BGP session's status changed (peer name).
    PeerStatus(String),
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

/// The source of desired announcements, as the owner holds it.
enum Source {
    Standalone {
        services: ServicesFile,
        health: BTreeMap<String, HealthState>,
        checks: Vec<JoinHandle<()>>,
    },
    Kubernetes {
        source: crate::kube::source::KubeSource,
        /// The pools and selection the source's policy runs with.
        #[allow(dead_code)]
        policy: watch::Sender<crate::kube::source::PolicyConfig>,
        desired: watch::Receiver<Option<Arc<crate::policy::Desired>>>,
        /// This Node's labels, for the peers' `node_selector`.
        labels: watch::Receiver<Option<BTreeMap<String, String>>>,
        readiness: ReadinessCondition,
        excluded: bool,
    },
}

/// The owner task's state.
struct Agent {
    config: Config,
    node_labels: BTreeMap<String, String>,
    status: StatusBoard,
    metrics: metrics::Metrics,
    source: Source,
    /// The source's desired set; `None` until its first complete one.
    desired: Option<BTreeSet<Announcement>>,
    candidates: Vec<Candidate>,
    addresses: ServiceAddresses,
    address_status: watch::Receiver<AddressStatus>,
    actual: Actual,
    speaker: Option<Speaker>,
    bfd: Option<BfdRuntime>,
    peer_bfd: BTreeMap<String, PeerBfd>,
    peer_since: BTreeMap<String, (&'static str, u64)>,
    /// Configured peers this node uses that are not started yet (the route
    /// to them is unknown).
    pending_peers: Vec<PeerConfig>,
    /// Names of the peers this node uses (started or pending).
    used_peers: BTreeSet<String>,
    drain: Drain,
    drain_timer: Option<Instant>,
    /// SIGTERM with drain: exit once the drain has withdrawn everything.
    exit_after_drain: bool,
    events: mpsc::UnboundedSender<AgentEvent>,
}

/// How long a removal waits for the withdrawal to be written to every peer.
const WITHDRAW_FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// Planned restart: the pause between closing BGP and BFD AdminDown.
const ADMIN_DOWN_AFTER_CLOSE: Duration = Duration::from_millis(100);

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
    } = setup;
    let mut term = signal(SignalKind::terminate()).map_err(|e| AgentError::Signal("SIGTERM", e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| AgentError::Signal("SIGINT", e))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| AgentError::Signal("SIGHUP", e))?;

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
        SourceSetup::Standalone(services) => {
            let (reports, mut report_rx) = mpsc::unbounded_channel();
            let checks = services
                .services
                .iter()
                .filter_map(|s| {
                    let check = s.check.clone()?;
                    Some(health::spawn_check(s.name.clone(), check, reports.clone()))
                })
                .collect();
            let forward = events.clone();
            tokio::spawn(async move {
                while let Some(report) = report_rx.recv().await {
                    if forward.send(AgentEvent::Health(report)).is_err() {
                        return;
                    }
                }
            });
            let health = services
                .services
                .iter()
                .filter_map(|s| {
                    let c = s.check.as_ref()?;
                    Some((s.name.clone(), HealthState::new(c.rise, c.fall)))
                })
                .collect();
            status.upsert_source(SourceStatus {
                name: "services-file".to_string(),
                healthy: true,
                last_update: Some(unix_seconds(SystemTime::now())),
                detail: None,
            });
            Source::Standalone {
                services,
                health,
                checks,
            }
        }
        SourceSetup::Kubernetes => {
            let kube_config = kube::Config::infer()
                .await
                .map_err(AgentError::KubeConfig)?;
            let (policy, policy_rx) = watch::channel(crate::kube::source::PolicyConfig {
                pools: config.pools.clone(),
                selection: config.kubernetes.clone(),
            });
            let source = crate::kube::source::KubeSource::spawn(
                kube_config,
                &node_name,
                policy_rx,
                metrics.kube.clone(),
            )
            .map_err(AgentError::Kube)?;
            let desired = source.desired();
            let labels = source.node_labels();
            Source::Kubernetes {
                source,
                policy,
                desired,
                labels,
                readiness: readiness.register("kubernetes"),
                excluded: false,
            }
        }
    };

    let mut agent = Agent {
        drain: Drain::new(config.drain.gshut_wait),
        config,
        node_labels,
        status,
        metrics: metrics.agent.clone(),
        source,
        desired: None,
        candidates: Vec::new(),
        addresses,
        address_status,
        actual: Actual::default(),
        speaker: None,
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
    if matches!(agent.source, Source::Standalone { .. }) {
        let labels = agent.node_labels.clone();
        agent.select_peers(&labels);
    }
    agent.refresh_source().await;
    agent.publish();

    let mut retry = tokio::time::interval(PEER_RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let drain_at = agent.drain_timer;
        let kube_desired = agent.kube_desired();
        let kube_labels = agent.kube_labels();
        tokio::select! {
            Some(()) = wait_changed(kube_labels) => agent.node_labels_changed(),
            Some(event) = event_rx.recv() => agent.handle(event).await,
            Ok(()) = agent.address_status.changed() => {
                agent.reconcile().await;
            }
            Some(()) = wait_changed(kube_desired) => agent.refresh_source().await,
            Some(command) = admin.recv() => agent.admin(command).await,
            _ = tokio::time::sleep_until(drain_at.unwrap_or_else(Instant::now)), if drain_at.is_some() => {
                agent.drain_timer = None;
                let actions = agent.drain.timer(Instant::now().into_std());
                agent.drain_actions(actions).await;
            }
            _ = retry.tick() => agent.tick().await,
            _ = hup.recv() => tracing::warn!("SIGHUP: configuration reload is not available in this build; restart herald to apply changes"),
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
    fn start_speaker(
        &mut self,
        restarted: bool,
        bgp: Arc<crate::bgp::metrics::Metrics>,
    ) -> Result<(), AgentError> {
        let literal: Vec<IpAddr> = self
            .config
            .peers
            .iter()
            .filter_map(|p| match p.address {
                PeerAddress::Ip(ip) => Some(ip),
                PeerAddress::Gateway => None,
            })
            .collect();
        let router_id = match self.config.router_id {
            Some(id) => id,
            None => peers::node_ipv4(&literal).ok_or(AgentError::NoRouterId)?,
        };
        let mut keys = Vec::new();
        for p in &self.config.peers {
            if let (PeerAddress::Ip(ip), Ok(Some(key))) = (p.address, p.read_password()) {
                keys.push((ip, key));
            }
        }
        let (changes, mut change_rx) = mpsc::unbounded_channel();
        let forward = self.events.clone();
        tokio::spawn(async move {
            while let Some(peer) = change_rx.recv().await {
                if forward.send(AgentEvent::PeerStatus(peer)).is_err() {
                    return;
                }
            }
        });
        tracing::info!(%router_id, "BGP speaker starting");
        self.speaker = Some(Speaker::Herald(HeraldSpeaker::start(
            self.config.asn,
            router_id,
            restarted,
            bgp,
            changes,
            &keys,
        )));
        Ok(())
    }

    /// Uses the peers whose `node_selector` matches `labels`: starts the
    /// new ones, removes those that no longer match.
    fn select_peers(&mut self, labels: &BTreeMap<String, String>) {
        self.node_labels = labels.clone();
        for peer in self.config.peers.clone() {
            let selected = peers::selects(&peer.node_selector, labels);
            let used = self.used_peers.contains(&peer.name);
            if selected && !used {
                tracing::info!(peer = %peer.name, "node_selector matches: using the peer");
                self.used_peers.insert(peer.name.clone());
                self.pending_peers.push(peer);
            } else if !selected && used {
                tracing::info!(peer = %peer.name, "node_selector no longer matches: removing the peer");
                self.remove_peer(&peer.name);
            } else if !selected {
                tracing::info!(peer = %peer.name, "not used by this node: node_selector does not match");
            }
        }
        self.start_pending_peers();
        self.publish();
    }

    fn remove_peer(&mut self, name: &str) {
        self.used_peers.remove(name);
        self.pending_peers.retain(|p| p.name != name);
        if let Some(speaker) = &mut self.speaker {
            speaker.remove_peer(name);
        }
        if let Some(bfd) = self.peer_bfd.remove(name) {
            bfd.forwarder.abort();
            if let Some(runtime) = &self.bfd
                && let Err(error) = runtime.remove_session(bfd.id)
            {
                tracing::warn!(peer = %name, "bfd: {error}");
            }
            self.status.remove_bfd_session(name);
        }
        self.peer_since.remove(name);
        self.status.remove_peer(name);
    }

    /// Starts every pending peer whose address and route are known.
    fn start_pending_peers(&mut self) {
        let pending = std::mem::take(&mut self.pending_peers);
        for peer in pending {
            if !self.start_peer(&peer) {
                self.pending_peers.push(peer);
            }
        }
    }

    /// Starts the BGP session (and BFD beside it); false to try again later.
    fn start_peer(&mut self, peer: &PeerConfig) -> bool {
        if let Some(Speaker::Bird(_)) = &self.speaker {
            // BIRD owns the sessions and their BFD; its rows come from the
            // read-back (`publish`).
            return true;
        }
        let address = match peer.address {
            PeerAddress::Ip(ip) => ip,
            PeerAddress::Gateway => {
                tracing::warn!(peer = %peer.name, "address: gateway is not followed in this build; the peer is not started");
                self.status.upsert_peer(PeerStatus {
                    name: peer.name.clone(),
                    address: "gateway".to_string(),
                    asn: peer.asn,
                    state: crate::status::BgpState::Idle,
                    since: None,
                    hold_time: None,
                    prefixes_sent: 0,
                    last_error: Some("address: gateway is not resolved yet".to_string()),
                });
                return true;
            }
        };
        let md5_key = match peer.read_password() {
            Ok(key) => key,
            Err(error) => {
                self.peer_not_started(peer, address, format!("{error}"));
                return false;
            }
        };
        let mut held = false;
        if peer.bfd.enabled {
            let route = match peers::route_to(address) {
                Ok(route) => route,
                Err(error) => {
                    self.peer_not_started(peer, address, format!("no route to the peer: {error}"));
                    return false;
                }
            };
            let Some(bfd) = &self.bfd else {
                return false;
            };
            let config = match crate::bfd::SessionConfig::from_config(&peer.bfd) {
                Ok(config) => config,
                Err(error) => {
                    self.peer_not_started(peer, address, error.to_string());
                    return true;
                }
            };
            let mut spec = if peer.bfd.multihop {
                SessionSpec::multihop(address, config)
            } else {
                let mut spec = SessionSpec::single_hop(address, config);
                spec.interface = route.interface.clone();
                spec
            };
            spec.local = Some(route.local);
            let handle = match bfd.add_session(spec.clone()) {
                Ok(handle) => handle,
                Err(error) => {
                    self.peer_not_started(peer, address, format!("bfd: {error}"));
                    return false;
                }
            };
            let status = handle.status.clone();
            let handle_id = handle.id;
            let forwarder = spawn_bfd_forwarder(peer.name.clone(), handle, self.events.clone());
            held = peer.bfd.strict;
            self.peer_bfd.insert(
                peer.name.clone(),
                PeerBfd {
                    id: handle_id,
                    spec,
                    status,
                    since: None,
                    strict: peer.bfd.strict,
                    forwarder,
                },
            );
            self.publish_bfd(&peer.name);
        }
        tracing::info!(peer = %peer.name, %address, bfd = peer.bfd.enabled, strict = held, "peer started");
        if let Some(speaker) = &mut self.speaker {
            speaker.add_peer(
                PeerPlan {
                    config: peer.clone(),
                    address,
                    md5_key,
                },
                held,
            );
        }
        true
    }

    fn peer_not_started(&self, peer: &PeerConfig, address: IpAddr, why: String) {
        tracing::warn!(peer = %peer.name, "not started: {why}");
        self.status.upsert_peer(PeerStatus {
            name: peer.name.clone(),
            address: address.to_string(),
            asn: peer.asn,
            state: crate::status::BgpState::Idle,
            since: None,
            hold_time: None,
            prefixes_sent: 0,
            last_error: Some(why),
        });
    }

    fn kube_labels(&self) -> Option<watch::Receiver<Option<BTreeMap<String, String>>>> {
        match &self.source {
            Source::Kubernetes { labels, .. } => Some(labels.clone()),
            Source::Standalone { .. } => None,
        }
    }

    /// Kubernetes mode: this Node's labels arrived or changed.
    fn node_labels_changed(&mut self) {
        let labels = match &mut self.source {
            Source::Kubernetes { labels, .. } => labels.borrow_and_update().clone(),
            Source::Standalone { .. } => return,
        };
        if let Some(labels) = labels {
            self.select_peers(&labels);
        }
    }

    fn kube_desired(&self) -> Option<watch::Receiver<Option<Arc<crate::policy::Desired>>>> {
        match &self.source {
            Source::Kubernetes { desired, .. } => Some(desired.clone()),
            Source::Standalone { .. } => None,
        }
    }

    async fn handle(&mut self, event: AgentEvent) {
        match event {
            AgentEvent::Health(report) => {
                let Source::Standalone { health, .. } = &mut self.source else {
                    return;
                };
                self.metrics.health_check(&report);
                if let Some(state) = health.get_mut(&report.service) {
                    if let Some(healthy) = state.record(&report.result) {
                        tracing::info!(service = %report.service, healthy, "health check verdict changed ({:?})", report.result);
                        self.refresh_source().await;
                    } else if state.healthy().is_some() && self.desired.is_none() {
                        self.refresh_source().await;
                    }
                }
            }
            AgentEvent::PeerStatus(_) => self.publish(),
            AgentEvent::Bfd { peer, event } => self.bfd_event(&peer, event),
            AgentEvent::BfdStatus(peer) => self.publish_bfd(&peer),
        }
    }

    fn bfd_event(&mut self, peer: &str, event: BfdEvent) {
        let change = event.change;
        tracing::info!(
            %peer,
            "BFD {} -> {} ({:?}, diag {})",
            change.old,
            change.new,
            change.cause,
            change.diag
        );
        let strict = match self.peer_bfd.get_mut(peer) {
            Some(bfd) => {
                bfd.since = Some(unix_seconds(SystemTime::now()));
                bfd.strict
            }
            None => false,
        };
        for action in coupling::on_bfd_change(&change, strict) {
            let Some(speaker) = &mut self.speaker else {
                return;
            };
            match action {
                Coupling::CeaseBfdDown => {
                    tracing::warn!(%peer, "BFD down: closing BGP with Cease/BFD Down (RFC 9384)");
                    speaker.bfd_down(peer);
                }
                Coupling::Hold => speaker.hold(peer),
                Coupling::Release => {
                    tracing::info!(%peer, "BFD up: BGP may establish (strict mode)");
                    speaker.release(peer);
                }
            }
        }
        self.publish_bfd(peer);
    }

    /// Recomputes the source's desired set and reconciles.
    async fn refresh_source(&mut self) {
        match &mut self.source {
            Source::Standalone {
                services, health, ..
            } => match standalone::desired(&self.config, services, health) {
                Some(out) => {
                    self.desired = Some(out.announcements);
                    self.candidates = out.candidates;
                }
                None => {
                    self.candidates = services
                        .services
                        .iter()
                        .flat_map(|s| {
                            s.addresses.iter().map(|a| Candidate {
                                address: *a,
                                service: s.name.clone(),
                                pool: self.config.pool_for(*a).map(|p| p.name.clone()),
                                refusal: None,
                            })
                        })
                        .collect();
                }
            },
            Source::Kubernetes {
                source,
                desired,
                readiness,
                excluded,
                ..
            } => {
                let report = source.report();
                if report.ready {
                    readiness.set_ready();
                } else {
                    readiness.set_not_ready(report.summary());
                }
                self.status.upsert_source(SourceStatus {
                    name: "kubernetes".to_string(),
                    healthy: report.ready,
                    last_update: report
                        .seconds_since_desired
                        .map(|s| unix_seconds(SystemTime::now()).saturating_sub(s as u64)),
                    detail: (!report.ready).then(|| report.summary()),
                });
                let current = desired.borrow_and_update().clone();
                let Some(current) = current else {
                    return;
                };
                let now_excluded = current
                    .refusals()
                    .any(|(_, r)| matches!(r, crate::policy::Refusal::NodeExcluded { .. }));
                let was_excluded = std::mem::replace(excluded, now_excluded);
                self.candidates = current
                    .decisions
                    .iter()
                    .filter_map(|d| {
                        let address = d.address.parse().ok()?;
                        let (pool, refusal) = match &d.outcome {
                            crate::policy::Outcome::Announced { pool } => {
                                (Some(pool.clone()), None)
                            }
                            crate::policy::Outcome::Refused(r) => (None, Some(r.to_string())),
                        };
                        Some(Candidate {
                            address,
                            service: d.service.to_string(),
                            pool,
                            refusal,
                        })
                    })
                    .collect();
                self.desired = Some(current.announcements.clone());
                if now_excluded && !was_excluded {
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
                if was_excluded && !now_excluded {
                    tracing::info!("the exclusion label is gone: serving again");
                    let actions = self.drain.exclusion_lifted();
                    self.drain_actions(actions).await;
                    return;
                }
            }
        }
        self.reconcile().await;
    }

    /// Plans and performs steps until the plan is empty.
    async fn reconcile(&mut self) {
        let Some(source_desired) = &self.desired else {
            self.publish();
            return;
        };
        let desired = self.drain.effective(source_desired);
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
        if let Source::Standalone { checks, .. } = &mut self.source {
            for check in checks.drain(..) {
                check.abort();
            }
        }
        for bfd in self.peer_bfd.values() {
            bfd.forwarder.abort();
        }
    }

    async fn tick(&mut self) {
        if !self.pending_peers.is_empty() {
            self.start_pending_peers();
        }
        if matches!(self.source, Source::Kubernetes { .. }) {
            self.refresh_kube_health();
        }
        self.publish();
    }

    fn refresh_kube_health(&mut self) {
        if let Source::Kubernetes {
            source, readiness, ..
        } = &self.source
        {
            let report = source.report();
            if report.ready {
                readiness.set_ready();
            } else {
                readiness.set_not_ready(report.summary());
            }
            self.status.upsert_source(SourceStatus {
                name: "kubernetes".to_string(),
                healthy: report.ready,
                last_update: report
                    .seconds_since_desired
                    .map(|s| unix_seconds(SystemTime::now()).saturating_sub(s as u64)),
                detail: (!report.ready).then(|| report.summary()),
            });
        }
    }

    fn publish_bfd(&mut self, peer: &str) {
        let Some(bfd) = self.peer_bfd.get(peer) else {
            return;
        };
        let status = bfd.status.borrow().clone();
        self.status.upsert_bfd_session(BfdSessionStatus {
            peer: peer.to_string(),
            local_address: bfd.spec.local,
            remote_address: bfd.spec.peer,
            multihop: bfd.spec.multihop,
            state: report::bfd_state(status.state),
            remote_state: Some(report::bfd_state(status.remote_state)),
            since: bfd.since,
            tx_interval_us: status.negotiated.tx_interval.map(|d| d.as_micros() as u64),
            detection_time_us: status
                .negotiated
                .detection_time
                .map(|d| d.as_micros() as u64),
            diagnostic: report::diagnostic(status.local_diag),
        });
    }

    /// Writes the peer and announcement rows of `/status`.
    fn publish(&mut self) {
        let now = unix_seconds(SystemTime::now());
        let mut views = Vec::new();
        if let Some(Speaker::Bird(bird)) = &self.speaker {
            bird.write_status(&self.status);
            views = bird
                .peers()
                .into_iter()
                .map(|p| PeerView {
                    families: bird.peer_families(&p.name),
                    name: p.name,
                    state: p.state,
                })
                .collect();
        }
        if let Some(speaker) = &self.speaker {
            for (plan, session, held) in speaker.peer_statuses() {
                let state = report::bgp_state(&session);
                let entry = self
                    .peer_since
                    .entry(plan.config.name.clone())
                    .or_insert((session.state, now));
                if entry.0 != session.state {
                    *entry = (session.state, now);
                }
                let since = session.established_at.or(Some(entry.1));
                let last_error = if held {
                    Some("held until BFD is Up (bfd.strict)".to_string())
                } else {
                    session.last_error.clone()
                };
                self.status.upsert_peer(PeerStatus {
                    name: plan.config.name.clone(),
                    address: plan.address.to_string(),
                    asn: plan.config.asn,
                    state,
                    since,
                    hold_time: session.hold_time,
                    prefixes_sent: session.prefixes_announced as u64,
                    last_error,
                });
                views.push(PeerView {
                    name: plan.config.name.clone(),
                    state,
                    families: session.families.clone(),
                });
            }
        }
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
            .desired
            .as_ref()
            .map(|d| self.drain.effective(d))
            .unwrap_or_default();
        let drain = self.drain_status().map(|d| match d.seconds_left {
            Some(left) => format!(
                "announced with GRACEFUL_SHUTDOWN 65535:0, withdrawal in {left}s ({})",
                d.trigger
            ),
            None => format!("withdrawn after {}", d.trigger),
        });
        let pending = match (&self.desired, &self.source) {
            (Some(_), _) => None,
            (None, Source::Standalone { .. }) => {
                Some("waiting for the first result of the health checks")
            }
            (None, Source::Kubernetes { .. }) => {
                Some("waiting for the Kubernetes source's first complete view")
            }
        };
        let ctx = RowContext {
            announced,
            effective: &effective,
            placed: &self.actual.placed,
            placement_problem: &problem,
            peers: &views,
            drain: drain.as_deref(),
            source_pending: pending,
        };
        let rows = report::announcement_rows(&self.candidates, &ctx);
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

/// Forwards a BFD session's state changes and status updates to the owner.
fn spawn_bfd_forwarder(
    peer: String,
    handle: crate::bfd::runtime::SessionHandle,
    events: mpsc::UnboundedSender<AgentEvent>,
) -> JoinHandle<()> {
    let crate::bfd::runtime::SessionHandle {
        events: mut changes,
        mut status,
        ..
    } = handle;
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                Some(event) = changes.recv() => AgentEvent::Bfd { peer: peer.clone(), event },
                Ok(()) = status.changed() => AgentEvent::BfdStatus(peer.clone()),
                else => return,
            };
            if events.send(event).is_err() {
                return;
            }
        }
    })
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
