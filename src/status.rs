//! What the agent reports about itself: the `/status` JSON model and the
//! board subsystems write it on.
//!
//! Owns: the serde structs of `/status` (the same structs `herald status`
//! parses and renders as tables) and `StatusBoard`, the shared, lock-guarded
//! copy of the current report. Must not touch: how any subsystem works; each
//! writes only its own part (the BGP speaker its `PeerStatus` rows, BFD its
//! sessions, the reconciler the announcements, each source its
//! `SourceStatus`), and admin.rs only reads.
//!
//! Timestamps are seconds since the Unix epoch, so the JSON is stable and
//! `herald status` turns them into ages with its own clock.

mod table;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// The whole `/status` document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub node_name: String,
    pub version: String,
    pub started_at: u64,
    pub config: ConfigSummary,
    pub peers: Vec<PeerStatus>,
    pub bfd_sessions: Vec<BfdSessionStatus>,
    pub announcements: Vec<AnnouncementStatus>,
    /// Where desired announcements come from (Kubernetes, the services
    /// file) and whether each is current.
    pub sources: Vec<SourceStatus>,
    /// The drain in progress or done; absent while serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainStatus>,
    /// Who allocates addresses (the holder of the allocation Lease) and
    /// whether this pod does; absent when allocation is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_election: Option<LeaderElectionStatus>,
    /// The address allocator; absent unless `allocation.enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<AllocationStatus>,
}

/// The allocation Lease as this pod last saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderElectionStatus {
    /// This pod's identity in the Lease (`node/pod`).
    pub identity: String,
    /// The current holder, as last read; `None`: nobody, or not read yet.
    pub leader: Option<String>,
    /// Whether this pod leads (holds the Lease and renewed it within the
    /// renew deadline).
    pub leading: bool,
}

/// The address allocator as this pod sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationStatus {
    /// This pod holds the allocation Lease and allocates.
    pub leading: bool,
    /// The leader's list of Services is complete (it writes only then).
    pub synced: bool,
    /// herald's LoadBalancer Services, and those refused an address.
    pub services: u64,
    pub refused: u64,
    /// Each pool with `allocate: true`, as of the leader's last computation
    /// (sizes saturate at 2^64-1: an IPv6 /64 is larger).
    pub pools: Vec<AllocationPoolStatus>,
    /// The last status write that failed for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationPoolStatus {
    pub name: String,
    pub size: u64,
    pub in_use: u64,
}

/// A drain (RFC 8326 GRACEFUL_SHUTDOWN, wait, withdraw, remove).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainStatus {
    /// `graceful_shutdown` (announced with 65535:0, waiting) or `withdrawn`.
    pub phase: String,
    /// `admin_request`, `node_excluded` or `sigterm`.
    pub trigger: String,
    /// Seconds until the withdrawal, while waiting.
    pub seconds_left: Option<u64>,
}

/// The parts of the configuration an operator checks first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigSummary {
    pub asn: u32,
    pub router_id: Option<Ipv4Addr>,
    pub interface: String,
    pub admin_listen: SocketAddr,
    pub pools: Vec<PoolSummary>,
    /// The configured peers' names, in file order.
    pub peers: Vec<String>,
}

impl Default for ConfigSummary {
    fn default() -> Self {
        ConfigSummary {
            asn: 0,
            router_id: None,
            interface: String::new(),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            pools: Vec::new(),
            peers: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolSummary {
    pub name: String,
    pub cidrs: Vec<IpNet>,
}

impl From<&Config> for ConfigSummary {
    fn from(config: &Config) -> Self {
        ConfigSummary {
            asn: config.asn,
            router_id: config.router_id,
            interface: config.interface.clone(),
            admin_listen: config.admin_listen,
            pools: config
                .pools
                .iter()
                .map(|pool| PoolSummary {
                    name: pool.name.clone(),
                    cidrs: pool.cidrs.clone(),
                })
                .collect(),
            peers: config.peers.iter().map(|peer| peer.name.clone()).collect(),
        }
    }
}

/// BGP FSM states (RFC 4271 §8.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BgpState {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

/// One BGP peer as the speaker sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer's `name` in the config.
    pub name: String,
    /// The address in use (a literal, or the resolved gateway); the
    /// configured text (`gateway`) while unresolved.
    pub address: String,
    pub asn: u32,
    pub state: BgpState,
    /// When `state` was entered.
    pub since: Option<u64>,
    /// Negotiated hold time in seconds, once OPENs were exchanged.
    pub hold_time: Option<u16>,
    /// Prefixes currently advertised to this peer.
    pub prefixes_sent: u64,
    /// Why the session last went down or is not starting (a NOTIFICATION,
    /// a socket error, an unreadable key file).
    pub last_error: Option<String>,
    /// Unix time of `last_error`, where known (BIRD does not say when).
    #[serde(default)]
    pub last_error_at: Option<u64>,
}

/// BFD session states (RFC 5880 §4.1, "State").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BfdState {
    AdminDown,
    Down,
    Init,
    Up,
}

/// One BFD session beside a BGP peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BfdSessionStatus {
    /// The BGP peer this session guards.
    pub peer: String,
    pub local_address: Option<IpAddr>,
    pub remote_address: IpAddr,
    /// RFC 5883 multihop rather than RFC 5881 single-hop.
    pub multihop: bool,
    pub state: BfdState,
    pub remote_state: Option<BfdState>,
    /// When `state` was entered.
    pub since: Option<u64>,
    /// The negotiated transmit interval, in microseconds.
    pub tx_interval_us: Option<u64>,
    /// The detection time in force, in microseconds.
    pub detection_time_us: Option<u64>,
    /// The local diagnostic (RFC 5880 §4.1, "Diag") in words, e.g.
    /// "control detection time expired".
    pub diagnostic: Option<String>,
}

/// One address herald wants to announce, and what became of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnnouncementStatus {
    pub address: IpAddr,
    /// Who asked for it: `namespace/name` of a Service, or a services-file
    /// name.
    pub service: String,
    /// The pool that allows it; `None` when outside every pool.
    pub pool: Option<String>,
    /// Names of the peers it is currently advertised to.
    pub announced_to: Vec<String>,
    /// Why it is not announced (to some or all peers), in words.
    pub reason: Option<String>,
    /// Weighted ECMP: the weight the routers were sent (the link-bandwidth
    /// community in units of 1,000,000 bytes/s); `None` when the address
    /// carries none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// The weight the address will carry once `anti_flap.weight_delay` has
    /// passed, while it differs from `weight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_weight: Option<u32>,
}

/// A source of desired announcements and how current it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// `kubernetes` or `services-file`.
    pub name: String,
    /// Whether the source is current. A stale source keeps its last known
    /// announcements (static stability) and says so here and in /readyz.
    pub healthy: bool,
    /// When the source last delivered a complete, valid view.
    pub last_update: Option<u64>,
    /// What is wrong, or what it is doing.
    pub detail: Option<String>,
}

/// Seconds since the Unix epoch for `time` (0 before the epoch).
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

impl StatusReport {
    /// The report as readable tables (what `herald status` prints), with
    /// ages measured from `now`.
    pub fn render(&self, now: SystemTime) -> String {
        table::render(self, unix_seconds(now))
    }
}

/// The live report, shared by every subsystem (writers) and the admin
/// endpoint (reader). Cloning shares the same board.
#[derive(Clone, Debug)]
pub struct StatusBoard {
    report: Arc<RwLock<StatusReport>>,
}

impl StatusBoard {
    /// A board for this node with the config's summary and nothing else yet.
    pub fn new(node_name: &str, config: &Config, started_at: SystemTime) -> Self {
        let report = StatusReport {
            node_name: node_name.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: unix_seconds(started_at),
            config: ConfigSummary::from(config),
            ..StatusReport::default()
        };
        StatusBoard {
            report: Arc::new(RwLock::new(report)),
        }
    }

    /// A copy of the current report.
    pub fn snapshot(&self) -> StatusReport {
        self.report
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes the report under the lock. Keep `change` short: no I/O, no
    /// awaiting.
    pub fn update(&self, change: impl FnOnce(&mut StatusReport)) {
        change(&mut self.report.write().unwrap_or_else(PoisonError::into_inner));
    }

    /// A reloaded configuration.
    pub fn set_config(&self, config: &Config) {
        self.update(|report| report.config = ConfigSummary::from(config));
    }

    /// Adds or replaces the row of the peer with this name.
    pub fn upsert_peer(&self, peer: PeerStatus) {
        self.update(|report| upsert(&mut report.peers, peer, |a, b| a.name == b.name));
    }

    /// Removes the row of the peer with this name (a peer removed by a
    /// reload).
    pub fn remove_peer(&self, name: &str) {
        self.update(|report| report.peers.retain(|peer| peer.name != name));
    }

    /// Adds or replaces the BFD session of this peer and remote address.
    pub fn upsert_bfd_session(&self, session: BfdSessionStatus) {
        self.update(|report| {
            upsert(&mut report.bfd_sessions, session, |a, b| {
                a.peer == b.peer && a.remote_address == b.remote_address
            })
        });
    }

    /// Removes the BFD session of this peer.
    pub fn remove_bfd_session(&self, peer: &str) {
        self.update(|report| report.bfd_sessions.retain(|s| s.peer != peer));
    }

    /// Replaces every announcement row (the reconciler knows them all).
    pub fn set_announcements(&self, mut announcements: Vec<AnnouncementStatus>) {
        announcements.sort_by(|a, b| (a.address, &a.service).cmp(&(b.address, &b.service)));
        self.update(|report| report.announcements = announcements);
    }

    /// The allocation Lease's holder and whether this pod leads.
    pub fn set_leader_election(&self, status: LeaderElectionStatus) {
        self.update(|report| report.leader_election = Some(status));
    }

    /// The allocator's state (`None`: allocation is off).
    pub fn set_allocation(&self, allocation: Option<AllocationStatus>) {
        self.update(|report| report.allocation = allocation);
    }

    /// Adds or replaces the row of the source with this name.
    pub fn upsert_source(&self, source: SourceStatus) {
        self.update(|report| upsert(&mut report.sources, source, |a, b| a.name == b.name));
    }
}

fn upsert<T>(rows: &mut Vec<T>, row: T, same: impl Fn(&T, &T) -> bool) {
    match rows.iter_mut().find(|existing| same(existing, &row)) {
        Some(existing) => *existing = row,
        None => rows.push(row),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn peer(name: &str, state: BgpState) -> PeerStatus {
        PeerStatus {
            name: name.to_string(),
            address: "192.0.2.1".to_string(),
            asn: 64512,
            state,
            since: Some(1_000),
            hold_time: Some(9),
            prefixes_sent: 2,
            last_error: None,
            last_error_at: None,
        }
    }

    fn board() -> StatusBoard {
        let config = Config::from_yaml(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/herald.yaml"
        )))
        .unwrap();
        StatusBoard::new("node-a", &config, UNIX_EPOCH)
    }

    #[test]
    fn a_new_board_holds_the_node_version_and_config_summary() {
        let report = board().snapshot();
        assert_eq!(report.node_name, "node-a");
        assert_eq!(report.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(report.config.asn, 64601);
        assert_eq!(report.config.pools[0].name, "public");
        assert_eq!(report.config.peers, vec!["r1".to_string()]);
        assert!(report.peers.is_empty() && report.announcements.is_empty());
    }

    #[test]
    fn the_allocator_state_is_shown_only_when_allocation_is_on() {
        let board = board();
        let json = serde_json::to_value(board.snapshot()).unwrap();
        assert!(json.get("allocation").is_none(), "{json}");
        assert!(
            !board
                .snapshot()
                .render(SystemTime::now())
                .contains("Allocation")
        );
        board.set_allocation(Some(AllocationStatus {
            leading: true,
            synced: true,
            services: 3,
            refused: 1,
            pools: vec![AllocationPoolStatus {
                name: "public".to_string(),
                size: 254,
                in_use: 2,
            }],
            last_error: None,
        }));
        let report = board.snapshot();
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["allocation"]["pools"][0]["in_use"], 2);
        assert_eq!(json["allocation"]["leading"], true);
        let back: StatusReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
        let text = report.render(SystemTime::now());
        assert!(text.contains("Allocation"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.contains("public") && l.contains("254") && l.contains("yes")),
            "{text}"
        );
    }

    #[test]
    fn upserting_a_peer_replaces_its_row_and_keeps_the_others() {
        let board = board();
        board.upsert_peer(peer("r1", BgpState::Active));
        board.upsert_peer(peer("r2", BgpState::Idle));
        board.upsert_peer(peer("r1", BgpState::Established));
        let peers = board.snapshot().peers;
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].state, BgpState::Established);
        board.remove_peer("r1");
        assert_eq!(board.snapshot().peers[0].name, "r2");
    }

    #[test]
    fn the_report_round_trips_through_json() {
        let board = board();
        board.upsert_peer(peer("r1", BgpState::OpenSent));
        board.upsert_bfd_session(BfdSessionStatus {
            peer: "r1".to_string(),
            local_address: None,
            remote_address: "192.0.2.1".parse().unwrap(),
            multihop: false,
            state: BfdState::Init,
            remote_state: Some(BfdState::Down),
            since: None,
            tx_interval_us: Some(50_000),
            detection_time_us: Some(150_000),
            diagnostic: None,
        });
        board.set_announcements(vec![AnnouncementStatus {
            weight: None,
            pending_weight: None,
            address: "203.0.113.10".parse().unwrap(),
            service: "web".to_string(),
            pool: Some("public".to_string()),
            announced_to: vec!["r1".to_string()],
            reason: None,
        }]);
        board.upsert_source(SourceStatus {
            name: "services-file".to_string(),
            healthy: true,
            last_update: Some(5),
            detail: None,
        });
        let report = board.snapshot();
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains("\"state\":\"OpenSent\""), "{json}");
        let back: StatusReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
    }
}
