//! One BFD session as a pure state machine (RFC 5880 §6.8): an [`Input`] and
//! the current time in, a list of [`Action`]s out.
//!
//! Owns: the state variables of §6.8.1, the state table of §6.8.6, timer
//! negotiation (§6.8.2-§6.8.4), Poll/Final sequences (§6.5), transmission
//! rules and jitter (§6.8.7) and administrative control (§6.8.16). Must not
//! touch: sockets, clocks, threads or tokio. Time enters only as the `now`
//! argument and randomness only through the seed given to [`Session::new`],
//! so every behaviour is reproducible in tests.
//!
//! The driver (the runtime) keeps at most one transmit deadline and one
//! detection deadline per session, as the actions say, and feeds
//! [`Input::TxTimerExpired`] / [`Input::DetectionTimerExpired`] back when
//! they pass.
//!
//! Choices where the RFC leaves room, shared with BIRD and FRR bfdd:
//! - herald is always in the Active role and never uses Demand mode or the
//!   Echo function (Required Min Echo RX Interval is sent as 0).
//! - A state change is announced at once with an extra packet, so a session
//!   comes up in one round trip instead of waiting for the 1 s slow timer.
//! - Parameter changes while the session is not Up take effect at once, with
//!   no Poll: the "MUST NOT change until the Poll Sequence ... has
//!   terminated" rules of §6.8.3 apply "and bfd.SessionState is Up".
//! - A new change during a Poll Sequence runs a second Poll after the first
//!   one's Final, so every value takes effect only once the peer has
//!   acknowledged it.

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::SessionConfig;
use super::auth::{AuthConfig, Authenticator};
use super::packet::{ControlPacket, Diagnostic, State};

/// RFC 5880 §6.8.3: "When bfd.SessionState is not Up, the system MUST set
/// bfd.DesiredMinTxInterval to a value of not less than one second
/// (1,000,000 microseconds)."
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// What happens to a session.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The session was created: start transmitting.
    Start,
    /// A Control packet that passed the session-free checks of §6.8.6 and
    /// was demultiplexed to this session.
    Received(ControlPacket),
    /// The transmit deadline of the last [`Action::ArmTxTimer`] passed.
    TxTimerExpired,
    /// The deadline of the last [`Action::ArmDetectionTimer`] passed.
    DetectionTimerExpired,
    /// §6.8.16, disabling: planned shutdown.
    AdminDown,
    /// §6.8.16, enabling.
    AdminUp,
    /// New configured intervals or multiplier.
    ChangeParameters(SessionConfig),
    /// Authentication switched on, off, or to another key, key id or type
    /// (a reload). The session keeps its state: a peer that changes its key
    /// within a Detection Time keeps the session Up.
    ChangeAuth(Option<AuthConfig>),
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Transmit this packet now.
    Send(ControlPacket),
    /// Replace the transmit deadline.
    ArmTxTimer(Instant),
    /// No periodic transmission until a new [`Action::ArmTxTimer`].
    StopTxTimer,
    /// Replace the detection deadline.
    ArmDetectionTimer(Instant),
    StopDetectionTimer,
    /// The session changed state.
    StateChanged(StateChange),
    /// A packet for this session was discarded (reason for the counter).
    Discarded(&'static str),
}

/// Why a session changed state: what the agent acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The three-way handshake progressed (Down -> Init -> Up).
    Handshake,
    /// §6.8.4: no packet from the peer for a Detection Time (diag 1).
    DetectionTimeExpired,
    /// The peer said Down while we were Up (diag 3): it lost our packets.
    NeighborSignaledDown,
    /// The peer said AdminDown (diag 3). RFC 5882 §4.2: this "MUST NOT"
    /// be treated as a failure of the forwarding path.
    NeighborAdminDown,
    /// We were disabled (diag 7).
    LocalAdminDown,
    /// We were enabled again.
    LocalAdminUp,
}

/// One transition, with the local diagnostic sent from then on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub old: State,
    pub new: State,
    pub diag: Diagnostic,
    pub cause: Cause,
}

impl StateChange {
    /// True when a client (BGP) must treat this as a forwarding failure:
    /// the session left Up for any reason other than an administrative one
    /// (RFC 5882 §4.2: a peer's AdminDown is not a failure).
    pub fn is_failure(&self) -> bool {
        self.old == State::Up
            && self.new == State::Down
            && matches!(
                self.cause,
                Cause::DetectionTimeExpired | Cause::NeighborSignaledDown
            )
    }
}

/// The timer values currently in force, for metrics and status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// Interval between our periodic packets before jitter, or `None` while
    /// we must not transmit periodically.
    pub tx_interval: Option<Duration>,
    /// The interval the peer transmits at: max(our RequiredMinRx in force,
    /// its DesiredMinTx), known once it has sent a packet.
    pub rx_interval: Option<Duration>,
    /// Detection Time (§6.8.4), known once the peer has sent a packet.
    pub detection_time: Option<Duration>,
}

/// Progress of a Poll Sequence (§6.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Poll {
    Idle,
    /// Periodic packets carry P until a packet with F arrives.
    Active,
    /// As `Active`, and the values changed again after it started: another
    /// Poll runs after this one's Final.
    ActiveThenAgain,
}

/// The state variables of RFC 5880 §6.8.1 plus what herald needs to drive
/// the timers. Names follow the RFC's `bfd.*` variables.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    /// bfd.SessionState
    state: State,
    /// bfd.RemoteSessionState
    remote_state: State,
    /// bfd.LocalDiscr
    local_discr: u32,
    /// bfd.RemoteDiscr
    remote_discr: u32,
    /// bfd.LocalDiag
    local_diag: Diagnostic,
    /// bfd.DesiredMinTxInterval: the value we advertise.
    desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval: the value we advertise.
    required_min_rx: Duration,
    /// The DesiredMinTx our own transmit interval uses: lags
    /// `desired_min_tx` when it grew during a Poll (§6.8.3).
    tx_in_force: Duration,
    /// The RequiredMinRx our Detection Time uses: lags `required_min_rx`
    /// when it shrank during a Poll (§6.8.3).
    rx_in_force: Duration,
    /// bfd.RemoteMinRxInterval, "initialized to 1" (microsecond).
    remote_min_rx: Duration,
    /// Last received Desired Min TX Interval.
    remote_desired_min_tx: Duration,
    /// Last received Detect Mult; 0 until a packet arrives.
    remote_detect_mult: u8,
    /// bfd.RemoteDemandMode
    remote_demand: bool,
    poll: Poll,
    /// Transmit deadline the driver holds.
    tx_at: Option<Instant>,
    /// Detection deadline the driver holds.
    detect_at: Option<Instant>,
    /// While AdminDown: keep signalling it until this time (§6.8.16).
    admin_down_until: Option<Instant>,
    /// How much earlier than its deadline the driver may fire the transmit
    /// timer ([`Session::with_tx_coalescing`]).
    tx_coalescing: Duration,
    /// bfd.AuthType and the key (RFC 5880 §6.7); `None`: no authentication.
    auth: Option<Authenticator>,
    /// When bfd.AuthSeqKnown may be cleared: a Detection Time after the
    /// detection timer expired with nothing received, so twice the
    /// Detection Time of silence in all (§6.8.1). Checked lazily when a
    /// packet arrives, the only moment the sequence matters; a valid
    /// packet cancels it.
    forget_sequence_at: Option<Instant>,
    rng: SmallRng,
}

impl Session {
    /// A session in Down with `local_discr` (non-zero, unique: see
    /// [`super::discriminator::DiscriminatorPool`]). `seed` drives the
    /// transmit jitter.
    pub fn new(config: SessionConfig, local_discr: u32, seed: u64) -> Session {
        Session {
            state: State::Down,
            remote_state: State::Down,
            local_discr,
            remote_discr: 0,
            local_diag: Diagnostic::None,
            desired_min_tx: config.desired_min_tx.max(SLOW_TX),
            required_min_rx: config.required_min_rx,
            tx_in_force: config.desired_min_tx.max(SLOW_TX),
            rx_in_force: config.required_min_rx,
            remote_min_rx: Duration::from_micros(1),
            remote_desired_min_tx: Duration::ZERO,
            remote_detect_mult: 0,
            remote_demand: false,
            poll: Poll::Idle,
            tx_at: None,
            detect_at: None,
            admin_down_until: None,
            tx_coalescing: Duration::ZERO,
            auth: None,
            forget_sequence_at: None,
            rng: SmallRng::seed_from_u64(seed),
            config,
        }
    }

    /// Let the driver fire the transmit timer early, by up to `window` but
    /// never more than a tenth of the transmit interval (see
    /// [`Session::tx_coalescing_window`]), to send several sessions'
    /// packets in one wake-up. The jittered interval is then drawn at least
    /// that window above the 75 % floor of §6.8.7, so a packet sent that
    /// early still keeps it; the top of the range stays 100 % (90 % with
    /// Detect Mult 1).
    pub fn with_tx_coalescing(mut self, window: Duration) -> Session {
        self.tx_coalescing = window;
        self
    }

    /// How early the driver may fire the transmit timer now: the window
    /// given to [`Session::with_tx_coalescing`], capped at a tenth of the
    /// transmit interval so the jitter keeps most of its range.
    pub fn tx_coalescing_window(&self) -> Duration {
        self.tx_coalescing.min(self.tx_interval() / 10)
    }

    /// Authenticate every packet sent and require it of every packet
    /// received (RFC 5880 §6.7).
    pub fn with_auth(mut self, auth: Option<AuthConfig>) -> Session {
        self.set_auth(auth);
        self
    }

    /// The authentication in use.
    pub fn auth(&self) -> Option<&AuthConfig> {
        self.auth.as_ref().map(Authenticator::config)
    }

    fn set_auth(&mut self, auth: Option<AuthConfig>) {
        self.auth = match (self.auth.take(), auth) {
            (Some(mut current), Some(config)) => {
                current.set_config(config);
                Some(current)
            }
            // §6.8.1: bfd.XmitAuthSeq "MUST be initialized to a random
            // 32-bit value".
            (None, Some(config)) => Some(Authenticator::new(config, self.rng.random())),
            (_, None) => None,
        };
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    pub fn local_discriminator(&self) -> u32 {
        self.local_discr
    }

    pub fn remote_discriminator(&self) -> u32 {
        self.remote_discr
    }

    pub fn local_diag(&self) -> Diagnostic {
        self.local_diag
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// True while a Poll Sequence waits for its Final.
    pub fn polling(&self) -> bool {
        self.poll != Poll::Idle
    }

    /// The timers in force.
    pub fn negotiated(&self) -> Negotiated {
        let rx_interval = (self.remote_detect_mult != 0)
            .then(|| self.rx_in_force.max(self.remote_desired_min_tx));
        Negotiated {
            tx_interval: self.periodic_tx_allowed().then(|| self.tx_interval()),
            rx_interval,
            detection_time: rx_interval.map(|i| i * u32::from(self.remote_detect_mult)),
        }
    }

    /// Feed one input; the actions come back in the order to perform them.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let mut actions = Vec::new();
        self.handle_into(now, input, &mut actions);
        actions
    }

    /// As [`Session::handle`], appending the actions to `actions`, so a
    /// driver can reuse one vector for every input.
    pub fn handle_into(&mut self, now: Instant, input: Input, actions: &mut Vec<Action>) {
        match input {
            Input::Start => {
                self.transmit(now, false, actions);
                self.schedule_tx(now, actions);
            }
            Input::Received(packet) => self.receive(now, packet, actions),
            Input::TxTimerExpired => self.tx_timer_expired(now, actions),
            Input::DetectionTimerExpired => self.detection_timer_expired(now, actions),
            Input::AdminDown => self.admin_down(now, actions),
            Input::AdminUp => self.admin_up(now, actions),
            Input::ChangeParameters(config) => {
                self.config = config;
                self.update_intervals(now, actions);
            }
            Input::ChangeAuth(auth) => self.set_auth(auth),
        }
    }

    /// §6.8.6, from "If the Authentication Present (A) bit is set" on.
    fn receive(&mut self, now: Instant, packet: ControlPacket, actions: &mut Vec<Action>) {
        match &mut self.auth {
            // "If the A bit is set and no authentication is in use
            // (bfd.AuthType is zero), the packet MUST be discarded."
            None if packet.auth.is_some() => {
                actions.push(Action::Discarded("auth_not_configured"));
                return;
            }
            None => {}
            // "If the A bit is clear and authentication is in use
            // (bfd.AuthType is nonzero), the packet MUST be discarded." and
            // "If the A bit is set, the packet MUST be authenticated under
            // the rules of section 6.7".
            Some(auth) => {
                if self.forget_sequence_at.is_some_and(|at| now >= at) {
                    auth.forget_sequence();
                    self.forget_sequence_at = None;
                }
                if let Err(failure) = auth.verify(&packet) {
                    actions.push(Action::Discarded(failure.reason()));
                    return;
                }
                self.forget_sequence_at = None;
            }
        }
        // "If bfd.SessionState is AdminDown: Discard the packet". Checked
        // before the variables are updated: nothing here uses them while
        // AdminDown, and AdminUp starts from a clean Down.
        if self.state == State::AdminDown {
            actions.push(Action::Discarded("admin_down"));
            return;
        }
        // Once the peer's discriminator is known and the session is Init or
        // Up, a packet with another My Discriminator is not from the system
        // this session is talking to: a host on the link that forges the
        // peer's address cannot see the discriminator it would have to
        // copy, so such a packet never changes the session. A peer that
        // restarted (and drew a new discriminator) is then noticed by the
        // Detection Time, which also resets bfd.RemoteDiscr (§6.8.1) so the
        // new one is learnt: that delay is the price.
        if matches!(self.state, State::Init | State::Up)
            && self.remote_discr != 0
            && packet.my_discriminator != self.remote_discr
        {
            actions.push(Action::Discarded("discriminator_mismatch"));
            return;
        }
        // "Set bfd.RemoteDiscr to the value of My Discriminator."
        self.remote_discr = packet.my_discriminator;
        // "Set bfd.RemoteState to the value of the State (Sta) field."
        self.remote_state = packet.state;
        // "Set bfd.RemoteDemandMode to the value of the Demand (D) bit."
        self.remote_demand = packet.demand;
        let old_tx_interval = self.tx_interval();
        // "Set bfd.RemoteMinRxInterval to the value of Required Min RX
        // Interval."
        self.remote_min_rx = packet.required_min_rx;
        self.remote_desired_min_tx = packet.desired_min_tx;
        self.remote_detect_mult = packet.detect_mult;
        // "If a Poll Sequence is being transmitted by the local system and
        // the Final (F) bit in the received packet is set, the Poll Sequence
        // MUST be terminated."
        if packet.final_ {
            self.poll_terminated();
        }

        let old = self.state;
        let (new, diag, cause) = match (self.state, packet.state) {
            // AdminDown was discarded above.
            (State::AdminDown, _) => (old, self.local_diag, Cause::Handshake),
            // "If received state is AdminDown: If bfd.SessionState is not
            // Down: Set bfd.LocalDiag to 3 (Neighbor signaled session down),
            // Set bfd.SessionState to Down".
            (State::Down, State::AdminDown) => (old, self.local_diag, Cause::NeighborAdminDown),
            (State::Init | State::Up, State::AdminDown) => (
                State::Down,
                Diagnostic::NeighborSignaledSessionDown,
                Cause::NeighborAdminDown,
            ),
            // "If bfd.SessionState is Down: If received State is Down: Set
            // bfd.SessionState to Init".
            (State::Down, State::Down) => (State::Init, self.local_diag, Cause::Handshake),
            // "Else if received State is Init: Set bfd.SessionState to Up".
            (State::Down, State::Init) => (State::Up, Diagnostic::None, Cause::Handshake),
            // Down ignores a peer that claims Up: it has not seen us yet.
            (State::Down, State::Up) => (old, self.local_diag, Cause::Handshake),
            // "Else if bfd.SessionState is Init: If received State is Init or
            // Up: Set bfd.SessionState to Up".
            (State::Init, State::Init | State::Up) => {
                (State::Up, Diagnostic::None, Cause::Handshake)
            }
            (State::Init, State::Down) => (old, self.local_diag, Cause::Handshake),
            // "Else (bfd.SessionState is Up): If received State is Down: Set
            // bfd.LocalDiag to 3 (Neighbor signaled session down), Set
            // bfd.SessionState to Down".
            (State::Up, State::Down) => (
                State::Down,
                Diagnostic::NeighborSignaledSessionDown,
                Cause::NeighborSignaledDown,
            ),
            (State::Up, State::Init | State::Up) => (old, self.local_diag, Cause::Handshake),
        };

        // The Detection Time restarts with every accepted packet (§6.8.4).
        self.arm_detection(now, actions);
        if new != old {
            self.change_state(now, new, diag, cause, actions);
        } else {
            // A shorter interval (the peer lowered its RequiredMinRx) applies
            // to the pending packet; a longer one from the next packet on.
            if self.tx_interval() < old_tx_interval
                || self.tx_at.is_none()
                || !self.periodic_tx_allowed()
            {
                self.schedule_tx(now, actions);
            }
        }
        // "If the Poll (P) bit is set, send a BFD Control packet to the
        // remote system with the Poll (P) bit clear, and the Final (F) bit
        // set" and §6.8.7: "as soon as practicable, without respect to the
        // transmission timer or any other transmission limitations".
        if packet.poll {
            self.transmit(now, true, actions);
        }
    }

    fn tx_timer_expired(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.tx_at = None;
        if self.state == State::AdminDown && self.admin_down_until.is_none_or(|until| now >= until)
        {
            // §6.8.16 asked for "at least a Detection Time"; that is done.
            self.admin_down_until = None;
            actions.push(Action::StopTxTimer);
            return;
        }
        if !self.periodic_tx_allowed() {
            actions.push(Action::StopTxTimer);
            return;
        }
        self.transmit(now, false, actions);
        self.schedule_tx(now, actions);
    }

    /// §6.8.4: "If Demand mode is not active, and a period of time equal to
    /// the Detection Time passes without receiving a BFD Control packet from
    /// the remote system, and bfd.SessionState is Init or Up, the session has
    /// gone down -- the local system MUST set bfd.SessionState to Down and
    /// bfd.LocalDiag to 1 (Control Detection Time Expired)."
    fn detection_timer_expired(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.detect_at = None;
        // §6.8.1: bfd.AuthSeqKnown "MUST be set to zero after no packets
        // have been received on this session for at least twice the
        // Detection Time". Forgetting at this first expiry would let a
        // recorded packet with an old sequence number be believed again
        // one Detection Time early.
        if self.auth.is_some() && self.forget_sequence_at.is_none() {
            let detection = self
                .negotiated()
                .detection_time
                .unwrap_or(Duration::from_secs(1));
            self.forget_sequence_at = Some(now + detection);
        }
        // §6.8.1, bfd.RemoteDiscr: "If a period of a Detection Time passes
        // without the receipt of a valid, authenticated BFD packet from the
        // remote system, this variable MUST be set to zero."
        self.remote_discr = 0;
        self.remote_state = State::Down;
        self.remote_detect_mult = 0;
        self.remote_desired_min_tx = Duration::ZERO;
        self.remote_min_rx = Duration::from_micros(1);
        if matches!(self.state, State::Init | State::Up) {
            self.change_state(
                now,
                State::Down,
                Diagnostic::ControlDetectionTimeExpired,
                Cause::DetectionTimeExpired,
                actions,
            );
        }
    }

    /// §6.8.16: "Set bfd.SessionState to AdminDown, Set bfd.LocalDiag to an
    /// appropriate value" (7), and "BFD Control packets SHOULD be transmitted
    /// for at least a Detection Time after transitioning to AdminDown state".
    ///
    /// The Detection Time is the peer's for us: our Detect Mult times the
    /// interval we send at. The intervals stay as they were (not raised to
    /// the 1 s of §6.8.3), so the signal repeats within that time.
    fn admin_down(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.state == State::AdminDown {
            return;
        }
        let interval = self.tx_interval();
        self.admin_down_until = Some(now + interval * u32::from(self.config.detect_mult));
        let old = self.state;
        self.state = State::AdminDown;
        self.local_diag = Diagnostic::AdministrativelyDown;
        self.poll = Poll::Idle;
        self.detect_at = None;
        actions.push(Action::StopDetectionTimer);
        actions.push(Action::StateChanged(StateChange {
            old,
            new: State::AdminDown,
            diag: self.local_diag,
            cause: Cause::LocalAdminDown,
        }));
        self.transmit(now, false, actions);
        self.schedule_tx(now, actions);
    }

    /// §6.8.16: "If enabling session: Set bfd.SessionState to Down".
    fn admin_up(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.state != State::AdminDown {
            return;
        }
        self.admin_down_until = None;
        self.remote_discr = 0;
        self.remote_state = State::Down;
        self.remote_detect_mult = 0;
        self.change_state(
            now,
            State::Down,
            self.local_diag,
            Cause::LocalAdminUp,
            actions,
        );
    }

    fn change_state(
        &mut self,
        now: Instant,
        new: State,
        diag: Diagnostic,
        cause: Cause,
        actions: &mut Vec<Action>,
    ) {
        let old = self.state;
        self.state = new;
        self.local_diag = diag;
        actions.push(Action::StateChanged(StateChange {
            old,
            new,
            diag,
            cause,
        }));
        if new != State::Up {
            // A Poll is about Up-session timers; leaving Up ends it.
            self.poll = Poll::Idle;
        }
        self.update_intervals(now, actions);
        // Tell the peer at once (see the module doc), then keep the schedule.
        self.transmit(now, false, actions);
        self.schedule_tx(now, actions);
    }

    /// Recompute the advertised intervals from the configuration and the
    /// state, and decide when each takes effect (§6.8.3).
    fn update_intervals(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let desired_min_tx = if self.state == State::Up {
            self.config.desired_min_tx
        } else {
            self.config.desired_min_tx.max(SLOW_TX)
        };
        let required_min_rx = self.config.required_min_rx;
        if self.state == State::AdminDown {
            // Keep signalling at the interval the peer knows.
            return;
        }
        let old_tx_interval = self.tx_interval();
        let old_rx_in_force = self.rx_in_force;
        let changed =
            desired_min_tx != self.desired_min_tx || required_min_rx != self.required_min_rx;
        self.desired_min_tx = desired_min_tx;
        self.required_min_rx = required_min_rx;
        if self.state != State::Up {
            self.tx_in_force = desired_min_tx;
            self.rx_in_force = required_min_rx;
        } else if changed {
            self.start_poll();
        }
        if self.tx_interval() < old_tx_interval && self.tx_at.is_some() {
            self.schedule_tx(now, actions);
        }
        if self.rx_in_force != old_rx_in_force && self.detect_at.is_some() {
            self.arm_detection(now, actions);
        }
    }

    /// A parameter changed while Up.
    fn start_poll(&mut self) {
        // §6.8.3: "If either bfd.DesiredMinTxInterval is changed or
        // bfd.RequiredMinRxInterval is changed, a Poll Sequence MUST be
        // initiated". A faster TX and a slower RX are safe at once; "If
        // bfd.DesiredMinTxInterval is increased and bfd.SessionState is Up,
        // the actual transmission interval used MUST NOT change until the
        // Poll Sequence described above has terminated", and "If
        // bfd.RequiredMinRxInterval is reduced and bfd.SessionState is Up,
        // the previous value of bfd.RequiredMinRxInterval MUST be used when
        // calculating the Detection Time for the remote system until the Poll
        // Sequence described above has terminated."
        self.tx_in_force = self.tx_in_force.min(self.desired_min_tx);
        self.rx_in_force = self.rx_in_force.max(self.required_min_rx);
        self.poll = match self.poll {
            Poll::Idle => Poll::Active,
            Poll::Active | Poll::ActiveThenAgain => Poll::ActiveThenAgain,
        };
    }

    /// A Final arrived while polling (§6.5).
    fn poll_terminated(&mut self) {
        match self.poll {
            Poll::Idle => {}
            Poll::Active => {
                self.poll = Poll::Idle;
                self.tx_in_force = self.desired_min_tx;
                self.rx_in_force = self.required_min_rx;
            }
            Poll::ActiveThenAgain => self.poll = Poll::Active,
        }
    }

    /// §6.8.7: "A system MUST NOT periodically transmit BFD Control packets
    /// if bfd.RemoteMinRxInterval is zero", nor while the peer is in Demand
    /// mode with both sides Up.
    fn periodic_tx_allowed(&self) -> bool {
        if self.remote_min_rx.is_zero() {
            return false;
        }
        let remote_demand_active =
            self.remote_demand && self.state == State::Up && self.remote_state == State::Up;
        !remote_demand_active
    }

    /// §6.8.2/§6.8.7: "the larger of bfd.DesiredMinTxInterval and
    /// bfd.RemoteMinRxInterval", before jitter.
    fn tx_interval(&self) -> Duration {
        self.tx_in_force.max(self.remote_min_rx)
    }

    /// §6.8.7: "The periodic transmission of BFD Control packets MUST be
    /// jittered on a per-packet basis by up to 25%, that is, the interval
    /// MUST be reduced by a random value of 0 to 25%" and "If bfd.DetectMult
    /// is equal to 1, the interval between transmitted BFD Control packets
    /// MUST be no more than 90% of the negotiated transmission interval, and
    /// MUST be no less than 75% of the negotiated transmission interval."
    /// The floor is raised by the driver's coalescing window, which may
    /// send the packet that much early.
    fn jittered(&mut self, interval: Duration) -> Duration {
        let top_per_mille = if self.config.detect_mult == 1 {
            900
        } else {
            1000
        };
        let top = interval * top_per_mille / 1000;
        let window = self.tx_coalescing.min(interval / 10);
        let floor = (interval * 3 / 4 + window).min(top);
        let span = u64::try_from((top - floor).as_nanos()).unwrap_or(u64::MAX);
        floor + Duration::from_nanos(self.rng.random_range(0..=span))
    }

    fn schedule_tx(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.state == State::AdminDown && self.admin_down_until.is_none() {
            return;
        }
        if !self.periodic_tx_allowed() {
            if self.tx_at.take().is_some() {
                actions.push(Action::StopTxTimer);
            }
            return;
        }
        let at = now + self.jittered(self.tx_interval());
        self.tx_at = Some(at);
        actions.push(Action::ArmTxTimer(at));
    }

    fn arm_detection(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if let Some(detection_time) = self.negotiated().detection_time {
            let at = now + detection_time;
            self.detect_at = Some(at);
            actions.push(Action::ArmDetectionTimer(at));
        }
    }

    fn transmit(&mut self, _now: Instant, final_: bool, actions: &mut Vec<Action>) {
        let mut packet = ControlPacket {
            diag: self.local_diag,
            state: self.state,
            // §6.5: "A BFD Control packet MUST NOT have both the Poll (P) and
            // Final (F) bits set."
            poll: !final_ && self.poll != Poll::Idle,
            final_,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.config.detect_mult,
            my_discriminator: self.local_discr,
            your_discriminator: self.remote_discr,
            desired_min_tx: self.desired_min_tx,
            required_min_rx: self.required_min_rx,
            required_min_echo_rx: Duration::ZERO,
            auth: None,
        };
        if let Some(auth) = &mut self.auth {
            auth.sign(&mut packet);
        }
        actions.push(Action::Send(packet));
    }
}

#[cfg(test)]
mod tests;
