//! The BGP session state machine driven the way the session task drives it,
//! with the fuzzer choosing everything the network and the clock do: byte
//! streams on both connections split at arbitrary points and framed as the
//! reader task frames them, connects and failures, timers fired in any order
//! and at any time, and the agent's commands. Well-formed messages from the
//! peer (an OPEN for the configured AS, KEEPALIVE, UPDATE, NOTIFICATION,
//! ROUTE-REFRESH) can be spliced into a stream, so the fuzzer reaches
//! Established and everything after it.
//!
//! Invariants, checked after every input:
//! - no panic;
//! - every timer is armed no earlier than now and no later than the longest
//!   wait the FSM may ask for (the OPEN hold time, the negotiated hold time,
//!   ConnectRetry, the largest backoff);
//! - Established only on a connection on which the FSM sent its OPEN and a
//!   KEEPALIVE and received an OPEN with the configured peer AS and then a
//!   KEEPALIVE, and only with a negotiated hold time the RFC allows (0 or
//!   at least 3, never above ours);
//! - messages are sent only on a connection that exists (the harness feeds
//!   connects, failures and frames only as the driver can: for a connect in
//!   flight, or a connection that exists);
//! - `state()` is Established exactly when `established()` is some.
#![no_main]

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use herald::bgp::fsm::{
    Action, Direction, Fsm, FsmConfig, GracefulRestart, Input, OPEN_HOLD_TIME, State, Timer,
};
use herald::bgp::packet::{
    AfiSafi, Capability, MAX_MESSAGE_LEN, Message, Notification, Open, RouteRefresh, Update,
    frame_len,
};
use libfuzzer_sys::fuzz_target;

/// Reads the fuzzer's bytes as a script; zeros once they run out.
struct Script<'a> {
    data: &'a [u8],
}

impl Script<'_> {
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((first, rest)) => {
                self.data = rest;
                *first
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    fn done(&self) -> bool {
        self.data.is_empty()
    }
}

/// What the harness knows about one connection, as the driver would.
#[derive(Default)]
struct Conn {
    open: bool,
    buf: Vec<u8>,
    sent_open: bool,
    sent_keepalive_after_open: bool,
    got_valid_open: bool,
    got_keepalive_after_open: bool,
}

struct Harness {
    fsm: Fsm,
    now: Instant,
    timers: HashMap<Timer, Instant>,
    conns: [Conn; 2],
    /// An outgoing connect is in flight (OpenTcp, not yet closed or done).
    connecting: bool,
    peer_as: u32,
    hold_time: u16,
    longest: Duration,
    /// Sessions that reached Established (printed with `BGP_FSM_REPORT`
    /// set, to see that the corpus gets there).
    ups: u32,
}

fn index(dir: Direction) -> usize {
    match dir {
        Direction::Outgoing => 0,
        Direction::Incoming => 1,
    }
}

fn direction(byte: u8) -> Direction {
    if byte & 1 == 0 {
        Direction::Outgoing
    } else {
        Direction::Incoming
    }
}

impl Harness {
    fn new(script: &mut Script) -> Harness {
        let flags = script.u8();
        let local_as = 64601;
        // The peer is eBGP or iBGP.
        let peer_as = if flags & 1 == 0 { 64512 } else { local_as };
        let mut cfg = FsmConfig::new(local_as, peer_as, Ipv4Addr::new(192, 0, 2, 2));
        // As config validation allows: 0, or 3 and above.
        cfg.hold_time = match script.u16() {
            1 | 2 => 3,
            h => h,
        };
        cfg.passive = flags & 2 != 0;
        cfg.extended_message = flags & 4 != 0;
        if flags & 8 != 0 {
            cfg.graceful_restart = Some(GracefulRestart {
                restart_time: 120,
                restarting: flags & 16 != 0,
                forwarding_preserved: flags & 16 != 0,
            });
        }
        cfg.connect_retry = Duration::from_millis(u64::from(script.u16()) + 1);
        cfg.backoff_initial = Duration::from_millis(u64::from(script.u16()) + 1);
        cfg.backoff_max = cfg.backoff_initial * u32::from(script.u8() % 64 + 1);
        cfg.jitter_seed = u64::from(script.u16());
        let longest = OPEN_HOLD_TIME
            .max(Duration::from_secs(u64::from(cfg.hold_time)))
            .max(cfg.connect_retry)
            .max(cfg.backoff_max);
        Harness {
            hold_time: cfg.hold_time,
            fsm: Fsm::new(cfg),
            now: Instant::now(),
            timers: HashMap::new(),
            conns: Default::default(),
            connecting: false,
            peer_as,
            longest,
            ups: 0,
        }
    }

    fn feed(&mut self, input: Input) {
        let mut pending = vec![input];
        while let Some(input) = pending.pop() {
            if let Input::TcpConnected(dir) = &input {
                self.conns[index(*dir)] = Conn {
                    open: true,
                    ..Conn::default()
                };
            }
            if matches!(
                input,
                Input::TcpConnected(Direction::Outgoing) | Input::TcpFailed(Direction::Outgoing)
            ) {
                self.connecting = false;
            }
            if let Input::Received(dir, message) = &input {
                let conn = &mut self.conns[index(*dir)];
                match message {
                    Message::Open(open) if open.asn() == self.peer_as && conn.sent_open => {
                        conn.got_valid_open = true;
                    }
                    Message::Keepalive if conn.got_valid_open => {
                        conn.got_keepalive_after_open = true;
                    }
                    _ => {}
                }
            }
            let actions = self.fsm.handle(self.now, input);
            for action in actions {
                if let Some(next) = self.check(action) {
                    pending.push(next);
                }
            }
            let state = self.fsm.state();
            assert_eq!(
                state == State::Established,
                self.fsm.established().is_some(),
                "state {state:?} and established() disagree"
            );
        }
    }

    /// Records one action, checks the invariants; a write to a closed
    /// connection comes back as its failure, as in the driver.
    fn check(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::OpenTcp => self.connecting = true,
            Action::CloseTcp(dir) => {
                self.conns[index(dir)] = Conn::default();
                if dir == Direction::Outgoing {
                    self.connecting = false;
                }
            }
            Action::Send(dir, message) => {
                let conn = &mut self.conns[index(dir)];
                assert!(
                    conn.open,
                    "sent {message:?} on {dir:?}, which has no connection"
                );
                match message {
                    Message::Open(_) => conn.sent_open = true,
                    Message::Keepalive if conn.got_valid_open => {
                        conn.sent_keepalive_after_open = true
                    }
                    _ => {}
                }
            }
            Action::ArmTimer(timer, at) => {
                assert!(at >= self.now, "{timer:?} armed in the past");
                assert!(
                    at - self.now <= self.longest,
                    "{timer:?} armed {:?} ahead, more than {:?}",
                    at - self.now,
                    self.longest
                );
                self.timers.insert(timer, at);
            }
            Action::CancelTimer(timer) => {
                self.timers.remove(&timer);
            }
            Action::StateChanged { .. } => {}
            Action::SessionUp(neg) => {
                self.ups += 1;
                let conn = &self.conns[index(neg.direction)];
                assert!(
                    conn.open
                        && conn.sent_open
                        && conn.got_valid_open
                        && conn.got_keepalive_after_open
                        && conn.sent_keepalive_after_open,
                    "Established on {:?} without a full OPEN/KEEPALIVE exchange",
                    neg.direction
                );
                assert_eq!(neg.peer_as, self.peer_as);
                assert!(!matches!(neg.hold_time, 1 | 2), "{neg:?}");
                assert!(neg.hold_time <= self.hold_time, "{neg:?}");
            }
            Action::SessionDown(_) | Action::UpdateReceived(_) => {}
            Action::RouteRefreshRequested(_) => {
                assert!(self.fsm.established().is_some());
            }
        }
        None
    }

    /// Appends `bytes` to a connection's stream and feeds every complete
    /// frame, as the reader task does; a framing or decoding error ends
    /// the stream.
    fn stream(&mut self, dir: Direction, bytes: &[u8]) {
        let i = index(dir);
        if !self.conns[i].open {
            return;
        }
        self.conns[i].buf.extend_from_slice(bytes);
        loop {
            let max = self
                .fsm
                .established()
                .map_or(MAX_MESSAGE_LEN, |n| n.max_message_len());
            let buf = &self.conns[i].buf;
            match frame_len(buf, max) {
                Ok(Some(len)) if buf.len() >= len => {
                    let frame: Vec<u8> = self.conns[i].buf.drain(..len).collect();
                    match Message::decode(&frame, max) {
                        Ok(message) => self.feed(Input::Received(dir, message)),
                        Err(error) => {
                            self.conns[i].buf.clear();
                            self.feed(Input::DecodeFailed(dir, error));
                            return;
                        }
                    }
                    if !self.conns[i].open {
                        return;
                    }
                }
                Ok(_) => return,
                Err(error) => {
                    self.conns[i].buf.clear();
                    self.feed(Input::DecodeFailed(dir, error.into()));
                    return;
                }
            }
        }
    }

    /// A well-formed message from the peer, chosen by the script.
    fn message(&self, script: &mut Script) -> Message {
        match script.u8() % 6 {
            0 | 1 => {
                let mut caps = vec![Capability::FourOctetAs(self.peer_as)];
                let flags = script.u8();
                if flags & 1 != 0 {
                    caps.push(Capability::Multiprotocol(AfiSafi::IPV4_UNICAST));
                }
                if flags & 2 != 0 {
                    caps.push(Capability::Multiprotocol(AfiSafi::IPV6_UNICAST));
                }
                if flags & 4 != 0 {
                    caps.push(Capability::RouteRefresh);
                }
                if flags & 8 != 0 {
                    caps.push(Capability::ExtendedMessage);
                }
                let asn = if flags & 16 != 0 { 64999 } else { self.peer_as };
                let id = if flags & 32 != 0 {
                    Ipv4Addr::new(192, 0, 2, 2)
                } else {
                    Ipv4Addr::new(192, 0, 2, 1)
                };
                Message::Open(Open::new(asn, script.u16(), id, caps))
            }
            2 => Message::Keepalive,
            3 => Message::Update(Box::new(Update::end_of_rib(AfiSafi::IPV4_UNICAST))),
            4 => Message::RouteRefresh(RouteRefresh::new(AfiSafi::IPV4_UNICAST)),
            _ => Message::Notification(Notification::new(6, script.u8() % 12, Vec::new())),
        }
    }

    fn step(&mut self, script: &mut Script) {
        match script.u8() % 12 {
            0 => self.now += Duration::from_millis(u64::from(script.u16())),
            1 => {
                // The earliest armed timer fires at its deadline.
                if let Some((&timer, &at)) = self.timers.iter().min_by_key(|(_, at)| **at) {
                    self.timers.remove(&timer);
                    self.now = self.now.max(at);
                    self.feed(Input::TimerExpired(timer));
                }
            }
            2 => {
                // Any timer, armed or not (a stale wake-up).
                let dir = direction(script.u8());
                let timer = match script.u8() % 4 {
                    0 => Timer::ConnectRetry,
                    1 => Timer::IdleHold,
                    2 => Timer::HoldTimer(dir),
                    _ => Timer::KeepaliveTimer(dir),
                };
                self.timers.remove(&timer);
                self.feed(Input::TimerExpired(timer));
            }
            3 => {
                // As the driver: an outgoing connection completes only while
                // its connect is in flight; an incoming one is handed over
                // only when the FSM takes one.
                let dir = direction(script.u8());
                let expected = match dir {
                    Direction::Outgoing => self.connecting,
                    Direction::Incoming => self.fsm.accepts_incoming(),
                };
                if expected {
                    self.feed(Input::TcpConnected(dir));
                }
            }
            4 => {
                // A connect that fails, or a connection the peer closes.
                let dir = direction(script.u8());
                let live =
                    self.conns[index(dir)].open || (dir == Direction::Outgoing && self.connecting);
                if live {
                    self.feed(Input::TcpFailed(dir));
                }
            }
            5 | 6 => {
                let dir = direction(script.u8());
                let n = usize::from(script.u8());
                let bytes = script.bytes(n).to_vec();
                self.stream(dir, &bytes);
            }
            7 | 8 => {
                // A well-formed message split at a point the script picks.
                let dir = direction(script.u8());
                let message = self.message(script);
                if let Ok(bytes) = message.to_bytes() {
                    let cut = usize::from(script.u16()) % (bytes.len() + 1);
                    self.stream(dir, &bytes[..cut]);
                    self.stream(dir, &bytes[cut..]);
                }
            }
            9 => self.feed(Input::ManualStart),
            10 => match script.u8() % 4 {
                0 => self.feed(Input::ManualStop {
                    communication: "fuzz".to_string(),
                }),
                1 => self.feed(Input::AdminReset {
                    communication: String::new(),
                }),
                2 => self.feed(Input::BfdDown),
                _ => self.feed(Input::PeerReachable),
            },
            _ => {
                let dir = direction(script.u8());
                if !self.conns[index(dir)].open {
                    return;
                }
                self.feed(Input::DecodeFailed(
                    dir,
                    herald::bgp::packet::DecodeError::from(
                        herald::bgp::packet::HeaderError::BadLength(1),
                    ),
                ));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut script = Script { data };
    let mut harness = Harness::new(&mut script);
    harness.feed(Input::ManualStart);
    let mut steps = 0;
    while !script.done() && steps < 10_000 {
        harness.step(&mut script);
        steps += 1;
    }
    if harness.ups > 0 && std::env::var_os("BGP_FSM_REPORT").is_some() {
        eprintln!("bgp_fsm: Established {} times", harness.ups);
    }
});
