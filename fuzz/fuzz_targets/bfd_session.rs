//! Fuzz the BFD session state machine: random sequences of received
//! packets (through the real decoder, then the runtime's demultiplexing
//! rule), clock steps with the timers firing as the runtime fires them,
//! administrative changes and parameter changes.
//!
//! Invariants, checked after every input:
//! - no panic (arithmetic overflow included: run with `-a`);
//! - timers bounded: every transmit deadline lies after `now` and within
//!   the largest interval the session may use, every detection deadline
//!   within 255 times the largest receive interval;
//! - every packet the session sends encodes and passes the receiver's
//!   checks (RFC 5880 §6.8.6) when decoded;
//! - Up only from a valid three-way handshake: the session enters Up only
//!   on a received Init (from Down) or Init/Up (from Init) addressed to it,
//!   and from Init only from the peer whose Down moved it to Init;
//! - once Init or Up with the peer's discriminator known, a packet with
//!   another My Discriminator changes nothing;
//! - with authentication (RFC 5880 §6.7, chosen by the first byte), a packet
//!   unsigned or signed with another key changes nothing.
#![no_main]

use std::time::{Duration, Instant};

use herald::bfd::SessionConfig;
use herald::bfd::auth::{AuthConfig, AuthType, Authenticator};
use herald::bfd::packet::{ControlPacket, State};
use herald::bfd::session::{Action, Input, SLOW_TX, Session};
use libfuzzer_sys::fuzz_target;

const LOCAL: u32 = 0x0102_0304;
/// The largest interval the 32-bit microsecond fields carry.
const MAX_WIRE: Duration = Duration::from_micros(u32::MAX as u64);

/// Reads the fuzzer's bytes; zeros once they run out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((first, rest)) => {
                self.0 = rest;
                *first
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// An interval: mostly small and realistic, sometimes anything.
    fn micros(&mut self) -> u32 {
        match self.u8() % 4 {
            0 => u32::from(self.u8()) * 1000,
            1 => u32::from(self.u16()) * 10,
            2 => 1_000_000,
            _ => self.u32(),
        }
    }

    fn config(&mut self) -> Option<SessionConfig> {
        SessionConfig {
            desired_min_tx: Duration::from_micros(self.micros().into()),
            required_min_rx: Duration::from_micros(self.micros().into()),
            detect_mult: self.u8(),
        }
        .validated()
        .ok()
    }
}

/// The harness's view: what it fed and what the session asked for.
struct Harness {
    session: Session,
    now: Instant,
    tx_at: Option<Instant>,
    detect_at: Option<Instant>,
    /// The largest Required Min RX and Desired Min TX any accepted packet
    /// carried, and the largest configured intervals: the bounds of the
    /// timers.
    max_remote_rx: Duration,
    max_remote_tx: Duration,
    max_config_tx: Duration,
    max_config_rx: Duration,
    /// My Discriminator of the packet that moved the session to Init.
    init_peer: Option<u32>,
}

fn auth(key: &[u8]) -> AuthConfig {
    AuthConfig::new(AuthType::MeticulousKeyedSha1, 1, key.to_vec()).expect("a key")
}

impl Harness {
    /// Feeds a packet that must change nothing (a forgery).
    fn feed_refused(&mut self, packet: ControlPacket) {
        let state = self.session.state();
        let remote = self.session.remote_discriminator();
        let actions = self.session.handle(self.now, Input::Received(packet));
        assert!(
            matches!(actions.as_slice(), [Action::Discarded(_)]),
            "a forgery was not refused: {actions:?}"
        );
        assert_eq!(self.session.state(), state);
        assert_eq!(self.session.remote_discriminator(), remote);
    }

    fn feed(&mut self, input: Input) {
        let before = self.session.state();
        let remote_before = self.session.remote_discriminator();
        let received = match &input {
            Input::Received(packet) => Some(packet.clone()),
            _ => None,
        };
        let actions = self.session.handle(self.now, input);
        let mut changed_to = None;
        for action in &actions {
            match action {
                Action::Send(packet) => {
                    let bytes = packet.encode().expect("our packet encodes");
                    let decoded = ControlPacket::decode(&bytes)
                        .unwrap_or_else(|e| panic!("our packet {packet:?} fails {e}"));
                    assert_eq!(&decoded, packet);
                    assert_eq!(packet.my_discriminator, LOCAL);
                }
                Action::ArmTxTimer(at) => {
                    assert!(*at > self.now, "transmit deadline not in the future");
                    let bound = SLOW_TX
                        .max(self.max_config_tx)
                        .max(self.max_remote_rx);
                    assert!(
                        *at - self.now <= bound,
                        "transmit deadline {:?} beyond {bound:?}",
                        *at - self.now
                    );
                    self.tx_at = Some(*at);
                }
                Action::StopTxTimer => self.tx_at = None,
                Action::ArmDetectionTimer(at) => {
                    assert!(*at >= self.now);
                    let bound = self.max_config_rx.max(self.max_remote_tx) * 255;
                    assert!(
                        *at - self.now <= bound,
                        "detection deadline {:?} beyond {bound:?}",
                        *at - self.now
                    );
                    self.detect_at = Some(*at);
                }
                Action::StopDetectionTimer => self.detect_at = None,
                Action::StateChanged(change) => {
                    assert_ne!(change.old, change.new);
                    changed_to = Some(change.new);
                }
                Action::Discarded(_) => {}
            }
        }
        let after = self.session.state();
        if after == State::Up && before != State::Up {
            // Up only from a valid three-way handshake.
            let packet = received.as_ref().expect("Up only on a received packet");
            assert_eq!(packet.your_discriminator, LOCAL, "Up from a packet not for us");
            match before {
                State::Down => assert_eq!(packet.state, State::Init),
                State::Init => {
                    assert!(matches!(packet.state, State::Init | State::Up));
                    assert_eq!(
                        Some(packet.my_discriminator),
                        self.init_peer,
                        "Up from Init with another peer than the one that said Down"
                    );
                }
                _ => panic!("Up from {before:?}"),
            }
        }
        if after == State::Init && before != State::Init {
            let packet = received.as_ref().expect("Init only on a received packet");
            assert_eq!(packet.state, State::Down);
            self.init_peer = Some(packet.my_discriminator);
        }
        if let Some(packet) = &received
            && matches!(before, State::Init | State::Up)
            && remote_before != 0
            && packet.my_discriminator != remote_before
        {
            assert_eq!(changed_to, None, "a stranger's packet changed the session");
            assert_eq!(self.session.remote_discriminator(), remote_before);
        }
        assert_eq!(changed_to.unwrap_or(after), after);
    }

    /// Moves the clock and fires what is due, earliest first, as the
    /// runtime does.
    fn advance(&mut self, step: Duration) {
        let until = self.now + step;
        // Bounded: each firing re-arms at least 0.75 ms later, and a step
        // is at most 65 s.
        for _ in 0..200_000 {
            let next = match (self.tx_at, self.detect_at) {
                (Some(tx), Some(detect)) if detect <= tx => Some((detect, false)),
                (Some(tx), _) => Some((tx, true)),
                (None, Some(detect)) => Some((detect, false)),
                (None, None) => None,
            };
            match next {
                Some((at, tx)) if at <= until => {
                    self.now = at;
                    if tx {
                        self.tx_at = None;
                        self.feed(Input::TxTimerExpired);
                    } else {
                        self.detect_at = None;
                        self.feed(Input::DetectionTimerExpired);
                    }
                }
                _ => break,
            }
        }
        self.now = until;
    }
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = Bytes(data);
    let Some(config) = bytes.config() else {
        return;
    };
    let seed = u64::from(bytes.u32());
    let peer = bytes.u32() | 1;
    let authenticated = bytes.u8() & 1 == 1;
    let mut signer = Authenticator::new(auth(b"key"), bytes.u32());
    let mut forger = Authenticator::new(auth(b"not the key"), bytes.u32());
    let mut harness = Harness {
        session: Session::new(config, LOCAL, seed)
            .with_auth(authenticated.then(|| auth(b"key"))),
        now: Instant::now(),
        tx_at: None,
        detect_at: None,
        max_remote_rx: Duration::from_micros(1),
        max_remote_tx: Duration::ZERO,
        max_config_tx: config.desired_min_tx,
        max_config_rx: config.required_min_rx,
        init_peer: None,
    };
    harness.feed(Input::Start);
    for _ in 0..512 {
        if bytes.0.is_empty() {
            break;
        }
        match bytes.u8() % 8 {
            0 | 1 => {
                let step = Duration::from_millis(u64::from(bytes.u16()));
                harness.advance(step);
            }
            2..=4 => {
                // A packet as it comes off the wire.
                let mut raw = [0u8; 24];
                raw[0] = (1 << 5) | (bytes.u8() & 0x1f);
                raw[1] = bytes.u8() & !0x04;
                raw[2] = bytes.u8();
                raw[3] = 24;
                let my = match bytes.u8() % 4 {
                    0 => bytes.u32(),
                    _ => peer,
                };
                let your = match bytes.u8() % 4 {
                    0 => 0,
                    1 => bytes.u32(),
                    _ => LOCAL,
                };
                raw[4..8].copy_from_slice(&my.to_be_bytes());
                raw[8..12].copy_from_slice(&your.to_be_bytes());
                raw[12..16].copy_from_slice(&bytes.micros().to_be_bytes());
                raw[16..20].copy_from_slice(&bytes.micros().to_be_bytes());
                let Ok(packet) = ControlPacket::decode(&raw) else {
                    continue;
                };
                // The runtime's demultiplexing: a non-zero Your
                // Discriminator must be this session's.
                if packet.your_discriminator != 0 && packet.your_discriminator != LOCAL {
                    continue;
                }
                if harness.session.state() != State::AdminDown {
                    harness.max_remote_rx = harness.max_remote_rx.max(packet.required_min_rx);
                    harness.max_remote_tx = harness.max_remote_tx.max(packet.desired_min_tx);
                }
                assert!(packet.required_min_rx <= MAX_WIRE);
                if authenticated {
                    // Through the codec, as it would arrive.
                    let wire = |mut packet: ControlPacket, by: &mut Authenticator| {
                        by.sign(&mut packet);
                        ControlPacket::decode(&packet.encode().expect("encodes"))
                            .expect("a signed packet decodes")
                    };
                    match bytes.u8() % 4 {
                        0 => harness.feed_refused(packet),
                        1 => harness.feed_refused(wire(packet, &mut forger)),
                        _ => {
                            let signed = wire(packet, &mut signer);
                            harness.feed(Input::Received(signed));
                        }
                    }
                    continue;
                }
                harness.feed(Input::Received(packet));
            }
            5 => harness.feed(Input::AdminDown),
            6 => harness.feed(Input::AdminUp),
            _ => {
                if let Some(config) = bytes.config() {
                    harness.max_config_tx = harness.max_config_tx.max(config.desired_min_tx);
                    harness.max_config_rx = harness.max_config_rx.max(config.required_min_rx);
                    harness.feed(Input::ChangeParameters(config));
                }
            }
        }
    }
});
