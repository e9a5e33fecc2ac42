//! The BGP session finite state machine (RFC 4271 §8), pure: an input and
//! the current time in, a list of actions out. No sockets, tasks or clocks
//! live here; `session.rs` performs the actions.
//!
//! Owns: session state, the two possible connections to the peer (the one
//! we open, "outgoing", and the one the peer opens, "incoming") and their
//! collision resolution (§6.8), OPEN validation and capability negotiation,
//! the timers' deadlines, and connect-retry backoff. Must not touch: the
//! Adj-RIB-Out (routes are the session driver's business once the FSM says
//! the session is up) or any I/O.
//!
//! # Supported standards
//! - RFC 4271 §8 states Idle, Connect, Active, OpenSent, OpenConfirm,
//!   Established; §6.8 connection collision detection; §10 timer jitter
//! - RFC 5492 capability negotiation (Unsupported Capability, subcode 7)
//! - RFC 6793 4-octet AS (required of the peer; AS_TRANS in My AS)
//! - RFC 6286 §2.2 BGP Identifier checks
//! - RFC 4486 Cease subcodes, RFC 9003 shutdown communication, RFC 9384
//!   Cease "BFD Down", RFC 6608 FSM error subcodes
//! - RFC 4724 graceful restart capability (restarting speaker side)
//!
//! # Events
//! Inputs carry the RFC 4271 §8.1 event they stand for in their docs.
//! Optional session attributes herald implements: `PassiveTcpEstablishment`
//! (config `passive`), `DampPeerOscillations` (the Idle hold backoff), and
//! `CollisionDetectEstablishedState` false (a new connection that collides
//! with an Established one is closed).
//!
//! Connect-retry: after a failure the FSM rests in Idle for a backoff that
//! doubles with each consecutive failure (from `backoff_initial` to
//! `backoff_max`) and is jittered to 75-100 % as RFC 4271 §10 asks; an
//! administrative reset or a BFD Down rests only `backoff_initial`, since
//! the peer did nothing wrong. A session that stayed Established for
//! `STABLE_AFTER` resets the backoff, and so does BFD Up
//! ([`Input::PeerReachable`]), which also ends the rest at once.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::packet::{
    AfiSafi, Capability, DecodeError, GracefulRestartCapability, MAX_EXTENDED_MESSAGE_LEN,
    MAX_MESSAGE_LEN, Message, Notification, Open, OpenError, Update, cease, error_code,
};

/// RFC 4271 §8.2.2: "sets the HoldTimer to a large value ... A HoldTimer
/// value of 4 minutes is suggested" while waiting for the peer's OPEN.
pub const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);
/// An Established session that lasted this long resets the backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Which of the two possible TCP connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// We connected to the peer's port.
    Outgoing,
    /// The peer connected to our listener.
    Incoming,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::Outgoing => 0,
            Direction::Incoming => 1,
        }
    }

    fn other(self) -> Direction {
        match self {
            Direction::Outgoing => Direction::Incoming,
            Direction::Incoming => Direction::Outgoing,
        }
    }
}

/// RFC 4271 §8.2.2 session states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connect => "connect",
            State::Active => "active",
            State::OpenSent => "open_sent",
            State::OpenConfirm => "open_confirm",
            State::Established => "established",
        }
    }
}

/// The timers the driver runs on the FSM's behalf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// ConnectRetryTimer: bounds an outgoing connect and the passive wait.
    ConnectRetry,
    /// IdleHoldTimer (§8.1.1, DampPeerOscillations): the backoff in Idle.
    IdleHold,
    HoldTimer(Direction),
    KeepaliveTimer(Direction),
}

/// Graceful restart as the restarting speaker (RFC 4724).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GracefulRestart {
    /// Restart Time advertised, seconds (at most 4095).
    pub restart_time: u16,
    /// Set the R bit: this speaker has restarted. Cleared by the FSM after
    /// the first Established session.
    pub restarting: bool,
    /// The per-family F bit: forwarding state (the service addresses) was
    /// preserved across the restart.
    pub forwarding_preserved: bool,
}

/// What the FSM needs to know about the peer and ourselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsmConfig {
    pub local_as: u32,
    pub peer_as: u32,
    pub router_id: Ipv4Addr,
    /// Proposed hold time, seconds (0, or at least 3).
    pub hold_time: u16,
    pub families: Vec<AfiSafi>,
    /// Never connect out; wait for the peer (PassiveTcpEstablishment).
    pub passive: bool,
    /// Advertise RFC 8654 extended messages.
    pub extended_message: bool,
    pub graceful_restart: Option<GracefulRestart>,
    /// ConnectRetryTime: how long an outgoing connect or a passive wait
    /// lasts before the next attempt.
    pub connect_retry: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Seeds the jitter; different per peer so sessions do not march in step.
    pub jitter_seed: u64,
}

impl FsmConfig {
    /// Defaults for everything but the identities.
    pub fn new(local_as: u32, peer_as: u32, router_id: Ipv4Addr) -> Self {
        FsmConfig {
            local_as,
            peer_as,
            router_id,
            hold_time: 90,
            families: vec![AfiSafi::IPV4_UNICAST, AfiSafi::IPV6_UNICAST],
            passive: false,
            extended_message: false,
            graceful_restart: None,
            connect_retry: Duration::from_secs(30),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            jitter_seed: u64::from(u32::from(router_id)) ^ (u64::from(peer_as) << 32),
        }
    }

    fn internal(&self) -> bool {
        self.local_as == self.peer_as
    }
}

/// What both sides agreed in the OPEN exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub direction: Direction,
    pub peer_as: u32,
    pub peer_id: Ipv4Addr,
    /// Seconds; 0 means no keepalives and no hold timer.
    pub hold_time: u16,
    pub keepalive: Duration,
    /// Families both advertised.
    pub families: Vec<AfiSafi>,
    pub route_refresh: bool,
    /// RFC 8654 agreed: messages up to 65535 octets.
    pub extended_message: bool,
    /// The peer's graceful restart capability, if it sent one.
    pub peer_graceful_restart: Option<GracefulRestartCapability>,
    /// Capabilities the peer sent that herald does not use.
    pub peer_unknown_capabilities: Vec<u8>,
}

impl Negotiated {
    /// The largest message either side may send.
    pub fn max_message_len(&self) -> usize {
        if self.extended_message {
            MAX_EXTENDED_MESSAGE_LEN
        } else {
            MAX_MESSAGE_LEN
        }
    }

    pub fn internal(&self, local_as: u32) -> bool {
        self.peer_as == local_as
    }
}

/// Why a session (or an attempt at one) ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// HoldTimer_Expires (Event 10); we sent Hold Timer Expired.
    HoldTimerExpired,
    /// NotifMsg (Event 25).
    NotificationReceived(Notification),
    /// We found an error and sent this NOTIFICATION.
    NotificationSent(Notification),
    /// TcpConnectionFails (Event 18).
    TcpFailed,
    /// ManualStop (Event 2).
    AdminStop,
    /// An administrative reset (Cease 4).
    AdminReset,
    /// BFD declared the peer down (RFC 9384).
    BfdDown,
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownReason::HoldTimerExpired => f.write_str("hold timer expired"),
            DownReason::NotificationReceived(n) => write!(f, "received NOTIFICATION {n}"),
            DownReason::NotificationSent(n) => write!(f, "sent NOTIFICATION {n}"),
            DownReason::TcpFailed => f.write_str("TCP connection failed or closed"),
            DownReason::AdminStop => f.write_str("administrative stop"),
            DownReason::AdminReset => f.write_str("administrative reset"),
            DownReason::BfdDown => f.write_str("BFD down"),
        }
    }
}

/// An input to the FSM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// ManualStart (Event 1); with `passive`, ManualStart_with_PassiveTcpEstablishment (Event 4).
    ManualStart,
    /// ManualStop (Event 2): Cease/Administrative Shutdown with the RFC 9003
    /// communication; the session stays down until the next ManualStart.
    ManualStop { communication: String },
    /// An operator reset: Cease/Administrative Reset, then reconnect soon.
    AdminReset { communication: String },
    /// BFD reports the peer down: Cease subcode 10 (RFC 9384), reconnect soon.
    BfdDown,
    /// BFD reports the peer reachable again (Up after Down): a session
    /// resting in Idle, or still waiting for its outgoing connect, connects
    /// now and forgets its backoff. Its failures were the path's, which is
    /// back; waiting out a backoff grown while the link was down would keep
    /// the node out of the routers' ECMP set for nothing. Does nothing once
    /// a connection has exchanged an OPEN, or when stopped.
    PeerReachable,
    /// ConnectRetryTimer_Expires (9), HoldTimer_Expires (10),
    /// KeepaliveTimer_Expires (11), IdleHoldTimer_Expires (13).
    TimerExpired(Timer),
    /// Outgoing: Tcp_CR_Acked (Event 16). Incoming: TcpConnectionConfirmed
    /// (Event 17). The driver hands over an incoming connection only when
    /// [`Fsm::accepts_incoming`] says so.
    TcpConnected(Direction),
    /// TcpConnectionFails (Event 18): a connect failed, or the peer closed.
    TcpFailed(Direction),
    /// BGPOpen (19), NotifMsg (25), KeepAliveMsg (26), UpdateMsg (27), and
    /// ROUTE-REFRESH.
    Received(Direction, Message),
    /// BGPHeaderErr (21), BGPOpenMsgErr (22), UpdateMsgErr (28).
    DecodeFailed(Direction, DecodeError),
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Initiate the outgoing TCP connection.
    OpenTcp,
    /// Close a connection (after sending whatever was queued before it).
    CloseTcp(Direction),
    Send(Direction, Message),
    ArmTimer(Timer, Instant),
    CancelTimer(Timer),
    StateChanged {
        from: State,
        to: State,
    },
    /// Established: start sending routes.
    SessionUp(Negotiated),
    /// The session, or the attempt at one, ended.
    SessionDown(DownReason),
    /// A valid UPDATE arrived (counted, validated, never installed).
    UpdateReceived(Box<Update>),
    /// The peer asked for the Adj-RIB-Out of a family again (RFC 2918).
    RouteRefreshRequested(AfiSafi),
}

#[derive(Clone, Debug)]
enum Phase {
    Connecting,
    OpenSent,
    OpenConfirm(Negotiated),
    Established(Negotiated),
}

/// One BGP session's state machine.
#[derive(Debug)]
pub struct Fsm {
    cfg: FsmConfig,
    started: bool,
    idle_hold: bool,
    conns: [Option<Phase>; 2],
    failures: u32,
    established_at: Option<Instant>,
    rng: StdRng,
}

impl Fsm {
    pub fn new(cfg: FsmConfig) -> Self {
        let rng = StdRng::seed_from_u64(cfg.jitter_seed);
        Fsm {
            cfg,
            started: false,
            idle_hold: false,
            conns: [None, None],
            failures: 0,
            established_at: None,
            rng,
        }
    }

    pub fn config(&self) -> &FsmConfig {
        &self.cfg
    }

    /// The RFC state, derived from the most advanced connection.
    pub fn state(&self) -> State {
        let mut best = None;
        for phase in self.conns.iter().flatten() {
            let s = match phase {
                Phase::Connecting => State::Connect,
                Phase::OpenSent => State::OpenSent,
                Phase::OpenConfirm(_) => State::OpenConfirm,
                Phase::Established(_) => State::Established,
            };
            best = best.max(Some(s));
        }
        match best {
            Some(s) => s,
            None if self.started && !self.idle_hold => State::Active,
            None => State::Idle,
        }
    }

    /// The Established connection and what was negotiated on it.
    pub fn established(&self) -> Option<&Negotiated> {
        self.conns.iter().flatten().find_map(|p| match p {
            Phase::Established(n) => Some(n),
            _ => None,
        })
    }

    /// Whether a connection from the peer would be taken now: not in Idle
    /// (RFC 4271 §8.2.2: "any TCP connection attempts ... are refused"),
    /// not while one is already held, and not when Established (§6.8).
    pub fn accepts_incoming(&self) -> bool {
        self.started
            && !self.idle_hold
            && self.conns[Direction::Incoming.index()].is_none()
            && self.established().is_none()
    }

    /// Feeds one input; returns the actions to perform in order.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let before = self.state();
        let mut acts = Vec::new();
        match input {
            Input::ManualStart => {
                if !self.started {
                    self.started = true;
                    self.start_connecting(now, &mut acts);
                }
            }
            Input::ManualStop { communication } => {
                let n = Notification::cease_with_communication(
                    cease::ADMINISTRATIVE_SHUTDOWN,
                    &communication,
                );
                self.notify_open_connections(&n, &mut acts);
                self.started = false;
                self.go_idle(now, DownReason::AdminStop, Rest::None, &mut acts);
            }
            Input::AdminReset { communication } => {
                let n = Notification::cease_with_communication(
                    cease::ADMINISTRATIVE_RESET,
                    &communication,
                );
                self.notify_open_connections(&n, &mut acts);
                self.go_idle(now, DownReason::AdminReset, Rest::Short, &mut acts);
            }
            Input::BfdDown => {
                // RFC 9384 §3: "a BGP speaker ... that is closing the session
                // because BFD went down SHOULD send a NOTIFICATION with the
                // Cease code and the 'BFD Down' subcode".
                if self
                    .conns
                    .iter()
                    .flatten()
                    .any(|p| !matches!(p, Phase::Connecting))
                {
                    let n = Notification::new(error_code::CEASE, cease::BFD_DOWN, Vec::new());
                    self.notify_open_connections(&n, &mut acts);
                    self.go_idle(now, DownReason::BfdDown, Rest::Short, &mut acts);
                }
            }
            Input::PeerReachable => self.peer_reachable(now, &mut acts),
            Input::TimerExpired(timer) => self.timer_expired(now, timer, &mut acts),
            Input::TcpConnected(dir) => self.tcp_connected(now, dir, &mut acts),
            Input::TcpFailed(dir) => {
                if self.conns[dir.index()].is_some() {
                    self.drop_connection(now, dir, DownReason::TcpFailed, &mut acts);
                }
            }
            Input::Received(dir, message) => {
                if self.conns[dir.index()].is_some() {
                    self.received(now, dir, message, &mut acts);
                }
            }
            Input::DecodeFailed(dir, error) => {
                if self.conns[dir.index()].is_some() {
                    self.fail_with(now, dir, error.notification(), &mut acts);
                }
            }
        }
        let after = self.state();
        if after != before {
            acts.push(Action::StateChanged {
                from: before,
                to: after,
            });
        }
        acts
    }

    fn jittered(&mut self, base: Duration) -> Duration {
        // RFC 4271 §10: jitter "determined by multiplying the base value of
        // the appropriate timer by a random factor, which is uniformly
        // distributed in the range from 0.75 to 1.0".
        base.mul_f64(self.rng.random_range(0.75..=1.0))
    }

    fn start_connecting(&mut self, now: Instant, acts: &mut Vec<Action>) {
        self.idle_hold = false;
        if !self.cfg.passive {
            self.conns[Direction::Outgoing.index()] = Some(Phase::Connecting);
            acts.push(Action::OpenTcp);
        }
        let at = now + self.jittered(self.cfg.connect_retry);
        acts.push(Action::ArmTimer(Timer::ConnectRetry, at));
    }

    fn peer_reachable(&mut self, now: Instant, acts: &mut Vec<Action>) {
        let opened = self
            .conns
            .iter()
            .flatten()
            .any(|p| !matches!(p, Phase::Connecting));
        if !self.started || opened {
            return;
        }
        self.failures = 0;
        if self.idle_hold {
            acts.push(Action::CancelTimer(Timer::IdleHold));
        }
        // A connect still in flight may be waiting out SYN retransmissions
        // that backed off while the link was down: a new one goes now.
        if self.conns[Direction::Outgoing.index()].take().is_some() {
            acts.push(Action::CloseTcp(Direction::Outgoing));
        }
        self.start_connecting(now, acts);
    }

    fn timer_expired(&mut self, now: Instant, timer: Timer, acts: &mut Vec<Action>) {
        match timer {
            Timer::IdleHold => {
                if self.started && self.idle_hold {
                    self.start_connecting(now, acts);
                }
            }
            Timer::ConnectRetry => {
                let opened = self
                    .conns
                    .iter()
                    .flatten()
                    .any(|p| !matches!(p, Phase::Connecting));
                if !self.started || self.idle_hold || opened {
                    return;
                }
                // Connect state, Event 9: "drops the TCP connection, restarts
                // the ConnectRetryTimer, ... initiates a TCP connection".
                // Active state, Event 9: "initiates a TCP connection ...
                // changes its state to Connect".
                if self.conns[Direction::Outgoing.index()].take().is_some() {
                    acts.push(Action::CloseTcp(Direction::Outgoing));
                }
                self.start_connecting(now, acts);
            }
            Timer::HoldTimer(dir) => {
                // Armed only once a connection is up (OpenSent on): a late
                // expiry must not touch a connect in flight, which has no
                // socket to send the NOTIFICATION on.
                if matches!(&self.conns[dir.index()], Some(p) if !matches!(p, Phase::Connecting)) {
                    // §6.5: "If a system does not receive successive KEEPALIVE,
                    // UPDATE, and/or NOTIFICATION messages within the period
                    // specified in the Hold Time field of the OPEN message,
                    // then the NOTIFICATION message with the Hold Timer Expired
                    // Error Code is sent and the BGP connection is closed."
                    let n = Notification::new(error_code::HOLD_TIMER_EXPIRED, 0, Vec::new());
                    acts.push(Action::Send(dir, Message::Notification(n)));
                    self.drop_connection(now, dir, DownReason::HoldTimerExpired, acts);
                }
            }
            Timer::KeepaliveTimer(dir) => {
                if let Some(Phase::OpenConfirm(neg) | Phase::Established(neg)) =
                    &self.conns[dir.index()]
                {
                    let keepalive = neg.keepalive;
                    if !keepalive.is_zero() {
                        acts.push(Action::Send(dir, Message::Keepalive));
                        let at = now + self.jittered(keepalive);
                        acts.push(Action::ArmTimer(Timer::KeepaliveTimer(dir), at));
                    }
                }
            }
        }
    }

    fn our_open(&self) -> Open {
        let mut caps: Vec<Capability> = self
            .cfg
            .families
            .iter()
            .map(|f| Capability::Multiprotocol(*f))
            .collect();
        caps.push(Capability::RouteRefresh);
        if self.cfg.extended_message {
            caps.push(Capability::ExtendedMessage);
        }
        if let Some(gr) = &self.cfg.graceful_restart {
            caps.push(Capability::GracefulRestart(GracefulRestartCapability {
                restart_state: gr.restarting,
                notification: false,
                restart_time: gr.restart_time.min(4095),
                families: self
                    .cfg
                    .families
                    .iter()
                    .map(|f| (*f, gr.forwarding_preserved))
                    .collect(),
            }));
        }
        caps.push(Capability::FourOctetAs(self.cfg.local_as));
        Open::new(
            self.cfg.local_as,
            self.cfg.hold_time,
            self.cfg.router_id,
            caps,
        )
    }

    fn tcp_connected(&mut self, now: Instant, dir: Direction, acts: &mut Vec<Action>) {
        let slot = &self.conns[dir.index()];
        let expected = match dir {
            Direction::Outgoing => matches!(slot, Some(Phase::Connecting)),
            Direction::Incoming => self.accepts_incoming(),
        };
        if !expected {
            acts.push(Action::CloseTcp(dir));
            return;
        }
        // Connect/Active, Events 16/17: "sends an OPEN message to its peer,
        // sets the HoldTimer to a large value, and changes its state to
        // OpenSent". The ConnectRetryTimer stops.
        self.conns[dir.index()] = Some(Phase::OpenSent);
        acts.push(Action::CancelTimer(Timer::ConnectRetry));
        acts.push(Action::Send(dir, Message::Open(self.our_open())));
        acts.push(Action::ArmTimer(
            Timer::HoldTimer(dir),
            now + OPEN_HOLD_TIME,
        ));
    }

    fn received(&mut self, now: Instant, dir: Direction, message: Message, acts: &mut Vec<Action>) {
        let Some(phase) = self.conns[dir.index()].clone() else {
            return;
        };
        match (phase, message) {
            (_, Message::Notification(n)) => {
                self.drop_connection(now, dir, DownReason::NotificationReceived(n), acts);
            }
            (Phase::OpenSent, Message::Open(open)) => self.open_received(now, dir, open, acts),
            (Phase::OpenConfirm(neg), Message::Keepalive) => {
                // OpenConfirm, Event 26: "restarts the HoldTimer and changes
                // its state to Established".
                self.restart_hold(now, dir, &neg, acts);
                self.conns[dir.index()] = Some(Phase::Established(neg.clone()));
                self.established_at = Some(now);
                // §6.8: a connection that collides with an Established one is
                // closed.
                let other = dir.other();
                if let Some(p) = self.conns[other.index()].take() {
                    self.close_collided(other, &p, acts);
                }
                if let Some(gr) = &mut self.cfg.graceful_restart {
                    gr.restarting = false;
                }
                acts.push(Action::SessionUp(neg));
            }
            (Phase::Established(neg), Message::Keepalive) => {
                self.restart_hold(now, dir, &neg, acts);
            }
            (Phase::Established(neg), Message::Update(update)) => {
                self.restart_hold(now, dir, &neg, acts);
                acts.push(Action::UpdateReceived(update));
            }
            (Phase::Established(neg), Message::RouteRefresh(rr)) => {
                self.restart_hold(now, dir, &neg, acts);
                // RFC 2918 §4: "If a BGP speaker receives from its peer a
                // ROUTE-REFRESH message with the <AFI, SAFI> that the speaker
                // didn't advertise to the peer at the session establishment
                // time via capability advertisement, the speaker shall ignore
                // such a message."
                if rr.subtype == 0 && neg.families.contains(&rr.family) {
                    acts.push(Action::RouteRefreshRequested(rr.family));
                }
            }
            // RFC 6608 §4: an unexpected message is an FSM Error with the
            // subcode naming the state it arrived in.
            (Phase::OpenSent, _) => self.fsm_error(now, dir, 1, acts),
            (Phase::OpenConfirm(_), _) => self.fsm_error(now, dir, 2, acts),
            (Phase::Established(_), _) => self.fsm_error(now, dir, 3, acts),
            (Phase::Connecting, _) => {}
        }
    }

    fn fsm_error(&mut self, now: Instant, dir: Direction, subcode: u8, acts: &mut Vec<Action>) {
        let n = Notification::new(error_code::FSM, subcode, Vec::new());
        self.fail_with(now, dir, n, acts);
    }

    fn restart_hold(
        &mut self,
        now: Instant,
        dir: Direction,
        neg: &Negotiated,
        acts: &mut Vec<Action>,
    ) {
        if neg.hold_time > 0 {
            let at = now + Duration::from_secs(u64::from(neg.hold_time));
            acts.push(Action::ArmTimer(Timer::HoldTimer(dir), at));
        }
    }

    fn open_received(&mut self, now: Instant, dir: Direction, open: Open, acts: &mut Vec<Action>) {
        let neg = match self.validate_open(dir, &open) {
            Ok(neg) => neg,
            Err(e) => return self.fail_with(now, dir, e.notification(), acts),
        };
        // §6.8: "Upon receipt of an OPEN message, the local system MUST
        // examine all of its connections that are in the OpenConfirm state. A
        // BGP speaker MAY also examine connections in an OpenSent state if it
        // knows the BGP Identifier of the peer". The rule: "If the value of
        // the local BGP Identifier is less than the remote one, the local
        // system closes the BGP connection that already exists ... and
        // accepts the BGP connection initiated by the remote system.
        // Otherwise, the local system closes the newly created BGP connection
        // ... and continues to use the existing one": the connection opened
        // by the speaker with the higher identifier survives.
        let other = dir.other();
        if let Some(p @ (Phase::OpenSent | Phase::OpenConfirm(_))) = &self.conns[other.index()] {
            let keep = if u32::from(self.cfg.router_id) < u32::from(open.bgp_id) {
                Direction::Incoming
            } else {
                Direction::Outgoing
            };
            if keep == dir {
                let p = p.clone();
                self.conns[other.index()] = None;
                self.close_collided(other, &p, acts);
            } else {
                let p = self.conns[dir.index()].take().unwrap_or(Phase::OpenSent);
                self.close_collided(dir, &p, acts);
                return;
            }
        }
        // OpenSent, Event 19: "sends a KEEPALIVE message, sets a
        // KeepaliveTimer ..., sets the HoldTimer according to the negotiated
        // value ..., changes its state to OpenConfirm".
        acts.push(Action::Send(dir, Message::Keepalive));
        if neg.hold_time > 0 {
            let at = now + self.jittered(neg.keepalive);
            acts.push(Action::ArmTimer(Timer::KeepaliveTimer(dir), at));
        } else {
            acts.push(Action::CancelTimer(Timer::HoldTimer(dir)));
        }
        self.restart_hold(now, dir, &neg, acts);
        self.conns[dir.index()] = Some(Phase::OpenConfirm(neg));
    }

    /// Checks an OPEN against the configuration and negotiates.
    fn validate_open(&self, dir: Direction, open: &Open) -> Result<Negotiated, OpenError> {
        // RFC 4271 §6.2: "If the Autonomous System field of the OPEN message
        // is unacceptable, then the Error Subcode MUST be set to Bad Peer AS."
        if open.asn() != self.cfg.peer_as {
            return Err(OpenError::BadPeerAs(open.asn()));
        }
        // "An implementation MUST reject Hold Time values of one or two
        // seconds."
        if matches!(open.hold_time, 1 | 2) {
            return Err(OpenError::UnacceptableHoldTime(open.hold_time));
        }
        // RFC 6286 §2.2: "If the BGP Identifier field of the OPEN message is
        // zero, or if it is the same as the BGP Identifier of the local BGP
        // speaker and the message is from an internal peer, then the Error
        // Subcode is set to 'Bad BGP Identifier'."
        if open.bgp_id.is_unspecified()
            || (self.cfg.internal() && open.bgp_id == self.cfg.router_id)
        {
            return Err(OpenError::BadBgpIdentifier(open.bgp_id));
        }
        // herald encodes AS_PATH with 4-octet numbers only, so it needs the
        // peer to speak RFC 6793. RFC 5492 §3: a speaker that needs a
        // capability the peer lacks sends Unsupported Capability, and "the
        // message MUST contain the capability or capabilities that cause the
        // speaker to send the message".
        if !open
            .capabilities
            .iter()
            .any(|c| matches!(c, Capability::FourOctetAs(_)))
        {
            return Err(OpenError::UnsupportedCapability(vec![
                Capability::FourOctetAs(self.cfg.local_as),
            ]));
        }
        let mut peer_families: Vec<AfiSafi> = open
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(f) => Some(*f),
                _ => None,
            })
            .collect();
        // A peer that advertises no multiprotocol capability speaks IPv4
        // unicast only (RFC 4760 §1, RFC 4271).
        if peer_families.is_empty() {
            peer_families.push(AfiSafi::IPV4_UNICAST);
        }
        let families: Vec<AfiSafi> = self
            .cfg
            .families
            .iter()
            .copied()
            .filter(|f| peer_families.contains(f))
            .collect();
        if families.is_empty() {
            return Err(OpenError::UnsupportedCapability(
                self.cfg
                    .families
                    .iter()
                    .map(|f| Capability::Multiprotocol(*f))
                    .collect(),
            ));
        }
        let has = |want: fn(&Capability) -> bool| open.capabilities.iter().any(want);
        // §4.2: "the calculated value [of the Hold Time] ... is the smaller of
        // its configured Hold Time and the Hold Time received in the OPEN".
        let hold_time = self.cfg.hold_time.min(open.hold_time);
        Ok(Negotiated {
            direction: dir,
            peer_as: open.asn(),
            peer_id: open.bgp_id,
            hold_time,
            keepalive: Duration::from_secs(u64::from(hold_time / 3)),
            families,
            route_refresh: has(|c| matches!(c, Capability::RouteRefresh)),
            extended_message: self.cfg.extended_message
                && has(|c| matches!(c, Capability::ExtendedMessage)),
            peer_graceful_restart: open.capabilities.iter().find_map(|c| match c {
                Capability::GracefulRestart(gr) => Some(gr.clone()),
                _ => None,
            }),
            peer_unknown_capabilities: open
                .capabilities
                .iter()
                .filter_map(|c| match c {
                    Capability::Unknown { code, .. } => Some(*code),
                    _ => None,
                })
                .collect(),
        })
    }

    /// Closes the loser of a collision: "the local system closes the BGP
    /// connection ... by sending the NOTIFICATION message with the Error Code
    /// Cease" (subcode 7, RFC 4486).
    fn close_collided(&mut self, dir: Direction, phase: &Phase, acts: &mut Vec<Action>) {
        if !matches!(phase, Phase::Connecting) {
            let n = Notification::new(
                error_code::CEASE,
                cease::CONNECTION_COLLISION_RESOLUTION,
                Vec::new(),
            );
            acts.push(Action::Send(dir, Message::Notification(n)));
        }
        acts.push(Action::CancelTimer(Timer::HoldTimer(dir)));
        acts.push(Action::CancelTimer(Timer::KeepaliveTimer(dir)));
        acts.push(Action::CloseTcp(dir));
    }

    /// Sends `n` on every connection that has exchanged OPEN.
    fn notify_open_connections(&self, n: &Notification, acts: &mut Vec<Action>) {
        for dir in [Direction::Outgoing, Direction::Incoming] {
            if matches!(&self.conns[dir.index()], Some(p) if !matches!(p, Phase::Connecting)) {
                acts.push(Action::Send(dir, Message::Notification(n.clone())));
            }
        }
    }

    /// Sends `n` on `dir` and drops that connection.
    fn fail_with(&mut self, now: Instant, dir: Direction, n: Notification, acts: &mut Vec<Action>) {
        acts.push(Action::Send(dir, Message::Notification(n.clone())));
        self.drop_connection(now, dir, DownReason::NotificationSent(n), acts);
    }

    /// Drops one connection. If another connection is still being set up
    /// and this one was not Established, the session carries on with it;
    /// otherwise the session goes to Idle.
    fn drop_connection(
        &mut self,
        now: Instant,
        dir: Direction,
        reason: DownReason,
        acts: &mut Vec<Action>,
    ) {
        let Some(phase) = self.conns[dir.index()].take() else {
            return;
        };
        acts.push(Action::CancelTimer(Timer::HoldTimer(dir)));
        acts.push(Action::CancelTimer(Timer::KeepaliveTimer(dir)));
        acts.push(Action::CloseTcp(dir));
        let other_alive = self.conns[dir.other().index()].is_some();
        if other_alive && !matches!(phase, Phase::Established(_)) {
            return;
        }
        self.go_idle(now, reason, Rest::Backoff, acts);
    }

    /// Closes everything and rests in Idle; restarts automatically after
    /// the rest unless stopped.
    fn go_idle(&mut self, now: Instant, reason: DownReason, rest: Rest, acts: &mut Vec<Action>) {
        let was_idle = self.state() == State::Idle;
        for dir in [Direction::Outgoing, Direction::Incoming] {
            if self.conns[dir.index()].take().is_some() {
                acts.push(Action::CancelTimer(Timer::HoldTimer(dir)));
                acts.push(Action::CancelTimer(Timer::KeepaliveTimer(dir)));
                acts.push(Action::CloseTcp(dir));
            }
        }
        acts.push(Action::CancelTimer(Timer::ConnectRetry));
        if let Some(since) = self.established_at.take()
            && now.saturating_duration_since(since) >= STABLE_AFTER
        {
            self.failures = 0;
        }
        if !was_idle {
            acts.push(Action::SessionDown(reason));
        }
        if !self.started {
            self.idle_hold = false;
            acts.push(Action::CancelTimer(Timer::IdleHold));
            return;
        }
        let base = match rest {
            Rest::None | Rest::Short => self.cfg.backoff_initial,
            Rest::Backoff => {
                self.failures = self.failures.saturating_add(1);
                let doubled = self
                    .cfg
                    .backoff_initial
                    .saturating_mul(1u32 << (self.failures - 1).min(20));
                doubled.min(self.cfg.backoff_max)
            }
        };
        self.idle_hold = true;
        let at = now + self.jittered(base);
        acts.push(Action::ArmTimer(Timer::IdleHold, at));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rest {
    None,
    Short,
    Backoff,
}

#[cfg(test)]
mod tests;
