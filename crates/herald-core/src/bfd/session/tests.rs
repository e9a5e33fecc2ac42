//! Unit tests of the session FSM: one per row of the RFC 5880 §6.8.6 state
//! table and one per timer rule, on an injected clock.

use std::sync::OnceLock;

use super::*;

const LOCAL: u32 = 0x1111_1111;
const REMOTE: u32 = 0x2222_2222;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Every test's time zero; only differences matter to the FSM.
fn t(offset_ms: u64) -> Instant {
    static ZERO: OnceLock<Instant> = OnceLock::new();
    *ZERO.get_or_init(Instant::now) + ms(offset_ms)
}

fn config(tx_ms: u64, rx_ms: u64, mult: u8) -> SessionConfig {
    SessionConfig {
        desired_min_tx: ms(tx_ms),
        required_min_rx: ms(rx_ms),
        detect_mult: mult,
    }
}

/// A packet from the peer: 50 ms x 3, addressed to us once it knows us.
fn from_peer(state: State) -> ControlPacket {
    ControlPacket {
        diag: Diagnostic::None,
        state,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: REMOTE,
        your_discriminator: if state == State::Down { 0 } else { LOCAL },
        desired_min_tx: ms(50),
        required_min_rx: ms(50),
        required_min_echo_rx: Duration::ZERO,
        auth: None,
    }
}

fn sent(actions: &[Action]) -> Vec<&ControlPacket> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn changes(actions: &[Action]) -> Vec<StateChange> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StateChanged(c) => Some(*c),
            _ => None,
        })
        .collect()
}

fn last_tx_deadline(actions: &[Action]) -> Option<Instant> {
    actions.iter().rev().find_map(|a| match a {
        Action::ArmTxTimer(at) => Some(*at),
        _ => None,
    })
}

fn last_detection_deadline(actions: &[Action]) -> Option<Instant> {
    actions.iter().rev().find_map(|a| match a {
        Action::ArmDetectionTimer(at) => Some(*at),
        _ => None,
    })
}

fn session(tx_ms: u64, rx_ms: u64, mult: u8) -> Session {
    let mut session = Session::new(config(tx_ms, rx_ms, mult), LOCAL, 7);
    session.handle(t(0), Input::Start);
    session
}

fn in_state(state: State) -> Session {
    let mut s = session(50, 50, 3);
    match state {
        State::Down => {}
        State::Init => {
            s.handle(t(1), Input::Received(from_peer(State::Down)));
        }
        State::Up => {
            s.handle(t(1), Input::Received(from_peer(State::Init)));
        }
        State::AdminDown => {
            s.handle(t(1), Input::AdminDown);
        }
    }
    assert_eq!(s.state(), state);
    s
}

/// Up, with the Poll for the configured intervals answered.
fn up_and_settled(tx_ms: u64, rx_ms: u64, mult: u8) -> Session {
    let mut s = session(tx_ms, rx_ms, mult);
    s.handle(t(1), Input::Received(from_peer(State::Init)));
    assert!(s.polling());
    s.handle(
        t(2),
        Input::Received(ControlPacket {
            final_: true,
            ..from_peer(State::Up)
        }),
    );
    assert!(!s.polling());
    s
}

fn receive(s: &mut Session, at_ms: u64, packet: ControlPacket) -> Vec<Action> {
    s.handle(t(at_ms), Input::Received(packet))
}

// ---- The state table of RFC 5880 §6.8.6 ----

#[test]
fn down_and_remote_down_goes_init() {
    let mut s = in_state(State::Down);
    let actions = receive(&mut s, 5, from_peer(State::Down));
    assert_eq!(s.state(), State::Init);
    let change = changes(&actions)[0];
    assert_eq!((change.old, change.new), (State::Down, State::Init));
    assert_eq!(change.cause, Cause::Handshake);
    // The change is announced at once, addressed to the peer.
    let packet = sent(&actions)[0];
    assert_eq!(packet.state, State::Init);
    assert_eq!(packet.your_discriminator, REMOTE);
}

#[test]
fn down_and_remote_init_goes_up() {
    let mut s = in_state(State::Down);
    let actions = receive(&mut s, 5, from_peer(State::Init));
    assert_eq!(s.state(), State::Up);
    assert_eq!(changes(&actions)[0].new, State::Up);
    assert_eq!(changes(&actions)[0].diag, Diagnostic::None);
}

#[test]
fn down_and_remote_up_stays_down() {
    let mut s = in_state(State::Down);
    let actions = receive(&mut s, 5, from_peer(State::Up));
    assert_eq!(s.state(), State::Down);
    assert!(changes(&actions).is_empty());
}

#[test]
fn down_and_remote_admin_down_stays_down() {
    let mut s = in_state(State::Down);
    let actions = receive(&mut s, 5, from_peer(State::AdminDown));
    assert_eq!(s.state(), State::Down);
    assert!(changes(&actions).is_empty());
}

#[test]
fn init_and_remote_down_stays_init() {
    let mut s = in_state(State::Init);
    let actions = receive(&mut s, 5, from_peer(State::Down));
    assert_eq!(s.state(), State::Init);
    assert!(changes(&actions).is_empty());
}

#[test]
fn init_and_remote_init_goes_up() {
    let mut s = in_state(State::Init);
    receive(&mut s, 5, from_peer(State::Init));
    assert_eq!(s.state(), State::Up);
}

#[test]
fn init_and_remote_up_goes_up() {
    let mut s = in_state(State::Init);
    receive(&mut s, 5, from_peer(State::Up));
    assert_eq!(s.state(), State::Up);
}

#[test]
fn init_and_remote_admin_down_goes_down_with_diag_3_as_neighbor_admin_down() {
    let mut s = in_state(State::Init);
    let actions = receive(&mut s, 5, from_peer(State::AdminDown));
    assert_eq!(s.state(), State::Down);
    let change = changes(&actions)[0];
    assert_eq!(change.diag, Diagnostic::NeighborSignaledSessionDown);
    assert_eq!(change.cause, Cause::NeighborAdminDown);
    assert!(!change.is_failure());
}

#[test]
fn up_and_remote_down_goes_down_with_diag_3() {
    let mut s = in_state(State::Up);
    let actions = receive(&mut s, 5, from_peer(State::Down));
    assert_eq!(s.state(), State::Down);
    let change = changes(&actions)[0];
    assert_eq!(change.diag, Diagnostic::NeighborSignaledSessionDown);
    assert_eq!(change.cause, Cause::NeighborSignaledDown);
    assert!(change.is_failure());
    assert_eq!(
        sent(&actions)[0].diag,
        Diagnostic::NeighborSignaledSessionDown
    );
}

#[test]
fn up_and_remote_init_stays_up() {
    let mut s = in_state(State::Up);
    let actions = receive(&mut s, 5, from_peer(State::Init));
    assert_eq!(s.state(), State::Up);
    assert!(changes(&actions).is_empty());
}

#[test]
fn up_and_remote_up_stays_up() {
    let mut s = in_state(State::Up);
    let actions = receive(&mut s, 5, from_peer(State::Up));
    assert_eq!(s.state(), State::Up);
    assert!(changes(&actions).is_empty());
}

#[test]
fn up_and_remote_admin_down_goes_down_with_diag_3_and_is_not_a_failure() {
    let mut s = in_state(State::Up);
    let actions = receive(&mut s, 5, from_peer(State::AdminDown));
    assert_eq!(s.state(), State::Down);
    let change = changes(&actions)[0];
    assert_eq!(change.old, State::Up);
    assert_eq!(change.diag, Diagnostic::NeighborSignaledSessionDown);
    assert_eq!(change.cause, Cause::NeighborAdminDown);
    assert!(
        !change.is_failure(),
        "RFC 5882 §4.2: AdminDown is no failure"
    );
}

#[test]
fn admin_down_discards_every_packet() {
    for remote in [State::AdminDown, State::Down, State::Init, State::Up] {
        let mut s = in_state(State::AdminDown);
        let actions = receive(&mut s, 5, from_peer(remote));
        assert_eq!(s.state(), State::AdminDown);
        assert_eq!(actions, vec![Action::Discarded("admin_down")]);
    }
}

#[test]
fn authenticated_packet_is_discarded_when_no_authentication_is_configured() {
    let mut s = in_state(State::Down);
    let packet = ControlPacket {
        auth: Some(crate::bfd::packet::Authentication::SimplePassword {
            key_id: 1,
            password: b"x".to_vec(),
        }),
        ..from_peer(State::Init)
    };
    let actions = receive(&mut s, 5, packet);
    assert_eq!(actions, vec![Action::Discarded("auth_not_configured")]);
    assert_eq!(s.state(), State::Down);
}

// ---- Blind spoofing: the peer's discriminator, once known ----

/// What a host on the link can forge without seeing the peer's packets:
/// the peer's address and TTL (checked by the runtime), any state, but not
/// the peer's My Discriminator.
fn forged(state: State, your_discriminator: u32) -> ControlPacket {
    ControlPacket {
        my_discriminator: 0x0bad_f00d,
        your_discriminator,
        ..from_peer(state)
    }
}

#[test]
fn a_forged_down_with_another_discriminator_never_changes_an_up_session() {
    for your_discriminator in [0, LOCAL] {
        for state in [State::Down, State::AdminDown, State::Init, State::Up] {
            let mut s = up_and_settled(50, 50, 3);
            let actions = receive(&mut s, 5, forged(state, your_discriminator));
            assert_eq!(actions, vec![Action::Discarded("discriminator_mismatch")]);
            assert_eq!(s.state(), State::Up);
            assert_eq!(s.remote_discriminator(), REMOTE);
            // The real peer's packets still count.
            let actions = receive(&mut s, 6, from_peer(State::Up));
            assert!(last_detection_deadline(&actions).is_some());
        }
    }
}

#[test]
fn a_forged_packet_does_not_replace_the_discriminator_of_an_init_session() {
    let mut s = in_state(State::Init);
    let actions = receive(&mut s, 5, forged(State::Down, 0));
    assert_eq!(actions, vec![Action::Discarded("discriminator_mismatch")]);
    assert_eq!(s.remote_discriminator(), REMOTE);
    receive(&mut s, 6, from_peer(State::Up));
    assert_eq!(s.state(), State::Up);
}

#[test]
fn a_restarted_peer_is_learnt_after_the_detection_time() {
    let mut s = up_and_settled(50, 50, 3);
    // The peer restarted with a new discriminator: ignored while Up...
    let restarted = ControlPacket {
        my_discriminator: 0x3333_3333,
        ..from_peer(State::Down)
    };
    receive(&mut s, 5, restarted.clone());
    assert_eq!(s.state(), State::Up);
    // ...until the Detection Time passes without the old one.
    s.handle(t(500), Input::DetectionTimerExpired);
    assert_eq!(s.state(), State::Down);
    receive(&mut s, 501, restarted);
    assert_eq!(s.state(), State::Init);
    assert_eq!(s.remote_discriminator(), 0x3333_3333);
}

#[test]
fn a_down_session_learns_a_new_discriminator() {
    let mut s = in_state(State::Up);
    receive(&mut s, 5, from_peer(State::Down));
    assert_eq!(s.state(), State::Down);
    let other = ControlPacket {
        my_discriminator: 0x4444_4444,
        ..from_peer(State::Down)
    };
    receive(&mut s, 6, other);
    assert_eq!(s.state(), State::Init);
    assert_eq!(s.remote_discriminator(), 0x4444_4444);
}

#[test]
fn going_up_clears_the_diagnostic() {
    let mut s = in_state(State::Up);
    receive(&mut s, 5, from_peer(State::Down));
    assert_eq!(s.local_diag(), Diagnostic::NeighborSignaledSessionDown);
    receive(&mut s, 6, from_peer(State::Init));
    assert_eq!(s.state(), State::Up);
    assert_eq!(s.local_diag(), Diagnostic::None);
}

// ---- Detection (§6.8.4) ----

#[test]
fn detection_timeout_in_up_goes_down_with_diag_1() {
    let mut s = in_state(State::Up);
    let actions = s.handle(t(500), Input::DetectionTimerExpired);
    assert_eq!(s.state(), State::Down);
    let change = changes(&actions)[0];
    assert_eq!(change.diag, Diagnostic::ControlDetectionTimeExpired);
    assert_eq!(change.cause, Cause::DetectionTimeExpired);
    assert!(change.is_failure());
    assert_eq!(
        sent(&actions)[0].diag,
        Diagnostic::ControlDetectionTimeExpired
    );
}

#[test]
fn detection_timeout_in_init_goes_down_with_diag_1() {
    let mut s = in_state(State::Init);
    let actions = s.handle(t(500), Input::DetectionTimerExpired);
    assert_eq!(s.state(), State::Down);
    assert_eq!(
        changes(&actions)[0].diag,
        Diagnostic::ControlDetectionTimeExpired
    );
    assert!(!changes(&actions)[0].is_failure(), "Init was never Up");
}

#[test]
fn detection_timeout_resets_the_remote_discriminator() {
    let mut s = in_state(State::Up);
    assert_eq!(s.remote_discriminator(), REMOTE);
    let actions = s.handle(t(500), Input::DetectionTimerExpired);
    assert_eq!(s.remote_discriminator(), 0);
    assert_eq!(sent(&actions)[0].your_discriminator, 0);
}

#[test]
fn detection_timeout_in_down_changes_no_state() {
    let mut s = in_state(State::Down);
    receive(&mut s, 1, from_peer(State::Up));
    let actions = s.handle(t(500), Input::DetectionTimerExpired);
    assert_eq!(s.state(), State::Down);
    assert!(changes(&actions).is_empty());
    assert_eq!(s.remote_discriminator(), 0);
}

#[test]
fn every_received_packet_restarts_the_detection_timer() {
    let mut s = up_and_settled(50, 50, 3);
    let first = last_detection_deadline(&receive(&mut s, 10, from_peer(State::Up)));
    let second = last_detection_deadline(&receive(&mut s, 40, from_peer(State::Up)));
    // Peer sends 50 ms x 3; our rx 50 ms: 150 ms.
    assert_eq!(first, Some(t(160)));
    assert_eq!(second, Some(t(190)));
}

#[test]
fn detection_time_is_their_mult_times_the_larger_of_our_rx_and_their_tx() {
    let mut s = up_and_settled(50, 20, 3);
    let packet = ControlPacket {
        desired_min_tx: ms(30),
        detect_mult: 4,
        ..from_peer(State::Up)
    };
    let actions = receive(&mut s, 10, packet);
    assert_eq!(s.negotiated().detection_time, Some(ms(120)));
    assert_eq!(last_detection_deadline(&actions), Some(t(130)));
    let slower_peer = ControlPacket {
        desired_min_tx: ms(10),
        detect_mult: 2,
        ..from_peer(State::Up)
    };
    receive(&mut s, 20, slower_peer);
    // Our RequiredMinRx (20 ms) is the larger now.
    assert_eq!(s.negotiated().detection_time, Some(ms(40)));
}

// ---- Transmission (§6.8.2, §6.8.3, §6.8.7) ----

#[test]
fn tx_interval_is_the_larger_of_our_desired_tx_and_their_required_rx() {
    let mut s = up_and_settled(20, 20, 3);
    assert_eq!(s.negotiated().tx_interval, Some(ms(50)), "their rx 50 wins");
    let packet = ControlPacket {
        required_min_rx: ms(10),
        ..from_peer(State::Up)
    };
    receive(&mut s, 10, packet);
    assert_eq!(s.negotiated().tx_interval, Some(ms(20)), "our tx 20 wins");
}

#[test]
fn desired_tx_is_at_least_one_second_while_not_up() {
    let mut s = Session::new(config(20, 20, 3), LOCAL, 1);
    let actions = s.handle(t(0), Input::Start);
    assert_eq!(sent(&actions)[0].desired_min_tx, SLOW_TX);
    assert_eq!(sent(&actions)[0].required_min_rx, ms(20));
    let deadline = last_tx_deadline(&actions).unwrap();
    assert!(deadline >= t(750) && deadline <= t(1000), "{deadline:?}");
    let actions = receive(&mut s, 5, from_peer(State::Down));
    assert_eq!(s.state(), State::Init);
    assert_eq!(sent(&actions)[0].desired_min_tx, SLOW_TX);
}

#[test]
fn going_up_polls_for_the_configured_tx_and_uses_it_at_once() {
    let mut s = session(20, 20, 3);
    let actions = receive(&mut s, 5, from_peer(State::Init));
    let packet = sent(&actions)[0];
    assert_eq!(packet.state, State::Up);
    assert_eq!(packet.desired_min_tx, ms(20));
    assert!(packet.poll && !packet.final_);
    // Faster TX is safe at once: max(20, their rx 50) = 50.
    assert_eq!(s.negotiated().tx_interval, Some(ms(50)));
    let next = last_tx_deadline(&actions).unwrap();
    assert!(next <= t(5) + ms(50), "{next:?}");
}

#[test]
fn going_down_returns_to_the_one_second_tx() {
    let mut s = up_and_settled(20, 20, 3);
    let actions = s.handle(t(100), Input::DetectionTimerExpired);
    assert_eq!(sent(&actions)[0].desired_min_tx, SLOW_TX);
    assert!(!sent(&actions)[0].poll);
    assert_eq!(s.negotiated().tx_interval, Some(SLOW_TX));
}

#[test]
fn poll_bit_stays_on_periodic_packets_until_final() {
    let mut s = session(20, 20, 3);
    receive(&mut s, 5, from_peer(State::Init));
    for at in [60, 120] {
        let actions = s.handle(t(at), Input::TxTimerExpired);
        assert!(sent(&actions)[0].poll, "packet at {at} ms");
    }
    receive(
        &mut s,
        130,
        ControlPacket {
            final_: true,
            ..from_peer(State::Up)
        },
    );
    let actions = s.handle(t(180), Input::TxTimerExpired);
    assert!(!sent(&actions)[0].poll);
}

#[test]
fn received_poll_is_answered_at_once_with_final_and_no_poll() {
    let mut s = up_and_settled(50, 50, 3);
    let before = s.handle(t(10), Input::TxTimerExpired);
    let scheduled = last_tx_deadline(&before);
    let actions = receive(
        &mut s,
        20,
        ControlPacket {
            poll: true,
            ..from_peer(State::Up)
        },
    );
    let answers = sent(&actions);
    assert_eq!(answers.len(), 1);
    assert!(answers[0].final_ && !answers[0].poll);
    // Outside the schedule: the periodic deadline is untouched.
    assert_eq!(last_tx_deadline(&actions), None);
    assert!(scheduled.is_some());
}

#[test]
fn poll_and_final_are_never_set_together() {
    // We are polling (just came Up) when the peer polls us.
    let mut s = session(20, 20, 3);
    receive(&mut s, 5, from_peer(State::Init));
    assert!(s.polling());
    let actions = receive(
        &mut s,
        6,
        ControlPacket {
            poll: true,
            ..from_peer(State::Up)
        },
    );
    let answer = sent(&actions)[0];
    assert!(answer.final_ && !answer.poll);
    assert!(s.polling(), "our own Poll continues on periodic packets");
}

fn final_from_peer(s: &mut Session, at_ms: u64) {
    receive(
        s,
        at_ms,
        ControlPacket {
            final_: true,
            ..from_peer(State::Up)
        },
    );
}

/// A peer that asks for nothing: our own values decide.
fn quiet_peer() -> ControlPacket {
    ControlPacket {
        desired_min_tx: ms(1),
        required_min_rx: ms(1),
        ..from_peer(State::Up)
    }
}

#[test]
fn slower_tx_takes_effect_only_after_final() {
    let mut s = up_and_settled(20, 20, 3);
    receive(&mut s, 3, quiet_peer());
    assert_eq!(s.negotiated().tx_interval, Some(ms(20)));
    let actions = s.handle(t(10), Input::ChangeParameters(config(100, 20, 3)));
    assert!(s.polling());
    assert_eq!(s.negotiated().tx_interval, Some(ms(20)), "not before Final");
    assert!(last_tx_deadline(&actions).is_none());
    let poll = s.handle(t(20), Input::TxTimerExpired);
    assert!(sent(&poll)[0].poll);
    assert_eq!(sent(&poll)[0].desired_min_tx, ms(100), "advertised at once");
    let next = last_tx_deadline(&poll).unwrap();
    assert!(next <= t(40), "still the old interval: {next:?}");
    receive(
        &mut s,
        25,
        ControlPacket {
            final_: true,
            ..quiet_peer()
        },
    );
    assert_eq!(s.negotiated().tx_interval, Some(ms(100)));
}

#[test]
fn faster_tx_takes_effect_at_once() {
    let mut s = up_and_settled(100, 20, 3);
    receive(&mut s, 3, quiet_peer());
    let before = s.handle(t(4), Input::TxTimerExpired);
    assert!(last_tx_deadline(&before).unwrap() > t(4) + ms(74));
    let actions = s.handle(t(10), Input::ChangeParameters(config(20, 20, 3)));
    assert!(s.polling());
    assert_eq!(s.negotiated().tx_interval, Some(ms(20)));
    let next = last_tx_deadline(&actions).expect("the pending packet moves earlier");
    assert!(next <= t(30), "{next:?}");
}

#[test]
fn faster_rx_takes_effect_only_after_final() {
    let mut s = up_and_settled(20, 100, 3);
    receive(&mut s, 3, quiet_peer());
    assert_eq!(s.negotiated().detection_time, Some(ms(300)));
    s.handle(t(10), Input::ChangeParameters(config(20, 10, 3)));
    assert_eq!(
        s.negotiated().detection_time,
        Some(ms(300)),
        "not before Final"
    );
    let actions = receive(
        &mut s,
        20,
        ControlPacket {
            final_: true,
            ..quiet_peer()
        },
    );
    assert_eq!(s.negotiated().detection_time, Some(ms(30)));
    assert_eq!(last_detection_deadline(&actions), Some(t(50)));
}

#[test]
fn slower_rx_takes_effect_at_once() {
    let mut s = up_and_settled(20, 10, 3);
    let armed = receive(&mut s, 3, quiet_peer());
    assert_eq!(last_detection_deadline(&armed), Some(t(33)));
    let actions = s.handle(t(10), Input::ChangeParameters(config(20, 100, 3)));
    assert!(s.polling());
    assert_eq!(s.negotiated().detection_time, Some(ms(300)));
    assert_eq!(last_detection_deadline(&actions), Some(t(310)));
}

#[test]
fn a_change_during_a_poll_takes_effect_after_a_second_final() {
    let mut s = up_and_settled(20, 20, 3);
    receive(&mut s, 3, quiet_peer());
    s.handle(t(10), Input::ChangeParameters(config(50, 20, 3)));
    s.handle(t(11), Input::ChangeParameters(config(80, 20, 3)));
    receive(
        &mut s,
        12,
        ControlPacket {
            final_: true,
            ..quiet_peer()
        },
    );
    assert!(s.polling(), "a second Poll covers the second change");
    assert_eq!(s.negotiated().tx_interval, Some(ms(20)));
    let poll = s.handle(t(20), Input::TxTimerExpired);
    assert!(sent(&poll)[0].poll);
    assert_eq!(sent(&poll)[0].desired_min_tx, ms(80));
    receive(
        &mut s,
        25,
        ControlPacket {
            final_: true,
            ..quiet_peer()
        },
    );
    assert!(!s.polling());
    assert_eq!(s.negotiated().tx_interval, Some(ms(80)));
}

#[test]
fn a_final_without_a_poll_changes_nothing() {
    let mut s = up_and_settled(20, 20, 3);
    let before = s.negotiated();
    final_from_peer(&mut s, 10);
    assert_eq!(s.negotiated(), before);
    assert!(!s.polling());
}

#[test]
fn parameter_change_while_down_takes_effect_without_a_poll() {
    let mut s = session(20, 20, 3);
    s.handle(t(10), Input::ChangeParameters(config(2000, 30, 5)));
    assert!(!s.polling());
    let actions = s.handle(t(900), Input::TxTimerExpired);
    let packet = sent(&actions)[0];
    assert_eq!(packet.desired_min_tx, ms(2000));
    assert_eq!(packet.required_min_rx, ms(30));
    assert_eq!(packet.detect_mult, 5);
    assert!(!packet.poll);
}

fn gaps(mult: u8) -> Vec<Duration> {
    let mut s = up_and_settled(100, 20, mult);
    receive(&mut s, 3, quiet_peer());
    let mut now = t(10);
    let mut gaps = Vec::new();
    for _ in 0..2000 {
        let actions = s.handle(now, Input::TxTimerExpired);
        assert_eq!(sent(&actions).len(), 1);
        let next = last_tx_deadline(&actions).unwrap();
        gaps.push(next - now);
        now = next;
    }
    gaps
}

#[test]
fn jitter_keeps_intervals_between_75_and_100_percent() {
    let gaps = gaps(3);
    assert!(gaps.iter().all(|g| *g >= ms(75) && *g <= ms(100)));
    // Really jittered: both ends of the range are reached.
    assert!(gaps.iter().any(|g| *g < ms(78)));
    assert!(gaps.iter().any(|g| *g > ms(97)));
}

#[test]
fn jitter_with_detect_mult_1_keeps_intervals_between_75_and_90_percent() {
    let gaps = gaps(1);
    assert!(gaps.iter().all(|g| *g >= ms(75) && *g <= ms(90)));
    assert!(gaps.iter().any(|g| *g > ms(87)));
}

#[test]
fn jitter_is_reproducible_from_the_seed() {
    assert_eq!(gaps(3), gaps(3));
}

#[test]
fn remote_required_rx_zero_stops_periodic_transmission() {
    let mut s = up_and_settled(20, 20, 3);
    let actions = receive(
        &mut s,
        10,
        ControlPacket {
            required_min_rx: Duration::ZERO,
            ..from_peer(State::Up)
        },
    );
    assert!(actions.contains(&Action::StopTxTimer));
    assert_eq!(s.negotiated().tx_interval, None);
    let actions = s.handle(t(30), Input::TxTimerExpired);
    assert!(sent(&actions).is_empty());
    // A Poll is still answered.
    let actions = receive(
        &mut s,
        40,
        ControlPacket {
            required_min_rx: Duration::ZERO,
            poll: true,
            ..from_peer(State::Up)
        },
    );
    assert!(sent(&actions)[0].final_);
    // And transmission resumes when the peer asks again.
    let actions = receive(&mut s, 50, from_peer(State::Up));
    assert!(last_tx_deadline(&actions).is_some());
}

#[test]
fn remote_demand_mode_with_both_up_stops_periodic_transmission() {
    let mut s = up_and_settled(20, 20, 3);
    let actions = receive(
        &mut s,
        10,
        ControlPacket {
            demand: true,
            ..from_peer(State::Up)
        },
    );
    assert!(actions.contains(&Action::StopTxTimer));
}

// ---- Administrative control (§6.8.16) ----

#[test]
fn admin_down_sends_diag_7_for_a_detection_time_then_stops() {
    let mut s = up_and_settled(20, 20, 3);
    receive(&mut s, 3, quiet_peer());
    let actions = s.handle(t(10), Input::AdminDown);
    let change = changes(&actions)[0];
    assert_eq!((change.old, change.new), (State::Up, State::AdminDown));
    assert_eq!(change.diag, Diagnostic::AdministrativelyDown);
    assert_eq!(change.cause, Cause::LocalAdminDown);
    assert!(!change.is_failure());
    assert!(actions.contains(&Action::StopDetectionTimer));
    let mut packets = sent(&actions).into_iter().cloned().collect::<Vec<_>>();
    let mut deadline = last_tx_deadline(&actions);
    while let Some(at) = deadline {
        assert!(at <= t(200), "bounded: {at:?}");
        let actions = s.handle(at, Input::TxTimerExpired);
        packets.extend(sent(&actions).into_iter().cloned());
        deadline = last_tx_deadline(&actions);
    }
    // 3 x 20 ms at 75-100 % intervals: the first packet and 2 to 4 more.
    assert!(
        (3..=5).contains(&packets.len()),
        "{} packets",
        packets.len()
    );
    for packet in &packets {
        assert_eq!(packet.state, State::AdminDown);
        assert_eq!(packet.diag, Diagnostic::AdministrativelyDown);
        assert_eq!(packet.desired_min_tx, ms(20), "the interval the peer knows");
    }
    // Done after a Detection Time (3 x 20 ms): nothing more goes out.
    let later = s.handle(t(500), Input::TxTimerExpired);
    assert!(sent(&later).is_empty());
    assert!(later.contains(&Action::StopTxTimer));
}

#[test]
fn admin_up_returns_to_down_and_starts_over() {
    let mut s = in_state(State::AdminDown);
    let actions = s.handle(t(20), Input::AdminUp);
    assert_eq!(s.state(), State::Down);
    let change = changes(&actions)[0];
    assert_eq!((change.old, change.new), (State::AdminDown, State::Down));
    assert_eq!(change.cause, Cause::LocalAdminUp);
    assert_eq!(sent(&actions)[0].state, State::Down);
    assert_eq!(sent(&actions)[0].your_discriminator, 0);
    receive(&mut s, 30, from_peer(State::Init));
    assert_eq!(s.state(), State::Up);
}

#[test]
fn start_sends_down_with_our_discriminator_and_arms_the_tx_timer() {
    let mut s = Session::new(config(50, 50, 3), LOCAL, 1);
    let actions = s.handle(t(0), Input::Start);
    let packet = sent(&actions)[0];
    assert_eq!(packet.state, State::Down);
    assert_eq!(packet.my_discriminator, LOCAL);
    assert_eq!(packet.your_discriminator, 0);
    assert_eq!(packet.detect_mult, 3);
    assert_eq!(packet.required_min_echo_rx, Duration::ZERO);
    assert!(last_tx_deadline(&actions).is_some());
}

#[test]
fn every_packet_the_session_sends_passes_the_reception_checks() {
    let mut s = session(20, 20, 3);
    let mut all = Vec::new();
    all.extend(receive(&mut s, 1, from_peer(State::Down)));
    all.extend(receive(&mut s, 2, from_peer(State::Up)));
    all.extend(s.handle(t(3), Input::TxTimerExpired));
    all.extend(s.handle(t(4), Input::AdminDown));
    for packet in sent(&all) {
        let bytes = packet.encode().unwrap();
        assert_eq!(ControlPacket::decode(&bytes).as_ref(), Ok(packet));
    }
}

#[test]
fn jitter_leaves_room_for_a_coalescing_window_below_the_deadline() {
    let mut s = up_and_settled(100, 20, 3);
    s = s.with_tx_coalescing(ms(5));
    receive(&mut s, 3, quiet_peer());
    let mut now = t(10);
    let mut gaps = Vec::new();
    for _ in 0..2000 {
        let actions = s.handle(now, Input::TxTimerExpired);
        let next = last_tx_deadline(&actions).unwrap();
        gaps.push(next - now);
        now = next;
    }
    // Drawn in 80-100 ms, so a packet sent 5 ms early still leaves at least
    // 75 ms after the previous one.
    assert!(
        gaps.iter().all(|g| *g >= ms(80) && *g <= ms(100)),
        "{gaps:?}"
    );
    assert!(gaps.iter().any(|g| *g < ms(82)));
    assert!(gaps.iter().any(|g| *g > ms(98)));
}

#[test]
fn the_coalescing_window_is_at_most_a_tenth_of_the_interval() {
    let mut s = up_and_settled(100, 20, 1).with_tx_coalescing(ms(50));
    receive(&mut s, 3, quiet_peer());
    assert_eq!(s.tx_coalescing_window(), ms(10));
    let mut now = t(10);
    for _ in 0..500 {
        let actions = s.handle(now, Input::TxTimerExpired);
        let next = last_tx_deadline(&actions).unwrap();
        // Detect Mult 1: 75-90 %, the floor raised by the 10 ms window.
        assert!(
            next - now >= ms(85) && next - now <= ms(90),
            "{:?}",
            next - now
        );
        now = next;
    }
}

#[test]
fn handle_into_appends_the_same_actions_handle_returns() {
    let mut a = session(20, 20, 3);
    let mut b = session(20, 20, 3);
    let mut actions = vec![Action::StopTxTimer];
    b.handle_into(t(0), Input::Start, &mut actions);
    let mut expected = vec![Action::StopTxTimer];
    expected.extend(a.handle(t(0), Input::Start));
    assert_eq!(actions, expected);
}

// ---- Authentication (§6.7) ----

fn keyed(key: &[u8]) -> Option<crate::bfd::auth::AuthConfig> {
    Some(
        crate::bfd::auth::AuthConfig::new(
            crate::bfd::auth::AuthType::MeticulousKeyedSha1,
            1,
            key.to_vec(),
        )
        .unwrap(),
    )
}

/// Two sessions that hand each other every packet they send, through the
/// codec, until neither sends more (bounded).
fn exchange(a: &mut Session, b: &mut Session, at_ms: u64, first: Vec<Action>) {
    let mut to_b: Vec<ControlPacket> = sent(&first).into_iter().cloned().collect();
    for _ in 0..10 {
        let mut to_a = Vec::new();
        for packet in to_b.drain(..) {
            let wire = ControlPacket::decode(&packet.encode().unwrap()).unwrap();
            to_a.extend(sent(&receive(b, at_ms, wire)).into_iter().cloned());
        }
        for packet in to_a {
            let wire = ControlPacket::decode(&packet.encode().unwrap()).unwrap();
            to_b.extend(sent(&receive(a, at_ms, wire)).into_iter().cloned());
        }
        if to_b.is_empty() {
            return;
        }
    }
}

#[test]
fn authenticated_sessions_sign_every_packet_and_come_up_together() {
    let mut a = Session::new(config(50, 50, 3), LOCAL, 1).with_auth(keyed(b"key"));
    let mut b = Session::new(config(50, 50, 3), REMOTE, 2).with_auth(keyed(b"key"));
    let first = a.handle(t(0), Input::Start);
    assert!(sent(&first).iter().all(|p| p.auth.is_some()));
    exchange(&mut a, &mut b, 1, first);
    let actions = b.handle(t(2), Input::TxTimerExpired);
    exchange(&mut b, &mut a, 2, actions);
    assert_eq!((a.state(), b.state()), (State::Up, State::Up));
}

#[test]
fn a_different_key_never_comes_up_and_says_why() {
    let mut a = Session::new(config(50, 50, 3), LOCAL, 1).with_auth(keyed(b"key"));
    let mut b = Session::new(config(50, 50, 3), REMOTE, 2).with_auth(keyed(b"other"));
    let first = a.handle(t(0), Input::Start);
    let packet = sent(&first)[0].clone();
    let actions = receive(&mut b, 1, packet);
    assert_eq!(actions, vec![Action::Discarded("auth_wrong_digest")]);
    assert_eq!(b.state(), State::Down);
}

#[test]
fn an_authenticated_up_session_ignores_packets_without_the_key() {
    let mut s = Session::new(config(50, 50, 3), LOCAL, 1).with_auth(keyed(b"key"));
    s.handle(t(0), Input::Start);
    let mut peer = crate::bfd::auth::Authenticator::new(keyed(b"key").unwrap(), 100);
    let mut signed = |state| {
        let mut packet = from_peer(state);
        peer.sign(&mut packet);
        ControlPacket::decode(&packet.encode().unwrap()).unwrap()
    };
    receive(&mut s, 1, signed(State::Init));
    assert_eq!(s.state(), State::Up);
    // The peer's own Down, unsigned: not believed.
    let actions = receive(&mut s, 2, from_peer(State::Down));
    assert_eq!(actions, vec![Action::Discarded("auth_missing")]);
    assert_eq!(s.state(), State::Up);
    // Signed, it is.
    receive(&mut s, 3, signed(State::Down));
    assert_eq!(s.state(), State::Down);
}

#[test]
fn a_key_change_keeps_the_session_and_applies_to_the_next_packet() {
    let mut s = Session::new(config(50, 50, 3), LOCAL, 1).with_auth(keyed(b"key"));
    s.handle(t(0), Input::Start);
    s.handle(t(1), Input::ChangeAuth(keyed(b"new")));
    assert!(s.auth().is_some());
    let actions = s.handle(t(2), Input::TxTimerExpired);
    let packet = sent(&actions)[0].clone();
    let mut checker = crate::bfd::auth::Authenticator::new(keyed(b"new").unwrap(), 0);
    assert_eq!(checker.verify(&packet), Ok(()));
    s.handle(t(3), Input::ChangeAuth(None));
    let actions = s.handle(t(4), Input::TxTimerExpired);
    assert_eq!(sent(&actions)[0].auth, None);
}

#[test]
fn a_recorded_packet_is_refused_until_twice_the_detection_time_of_silence() {
    let mut s = Session::new(config(50, 50, 3), LOCAL, 1).with_auth(keyed(b"key"));
    s.handle(t(0), Input::Start);
    let mut peer = crate::bfd::auth::Authenticator::new(keyed(b"key").unwrap(), 100);
    let mut signed = |state| {
        let mut packet = from_peer(state);
        peer.sign(&mut packet);
        ControlPacket::decode(&packet.encode().unwrap()).unwrap()
    };
    // What an attacker on the link records while the session is Up.
    let recorded = signed(State::Down);
    for at in 1..=5 {
        receive(&mut s, at, signed(State::Init));
    }
    assert_eq!(s.state(), State::Up);
    // The peer falls silent: Down after one Detection Time (3 x 50 ms).
    s.handle(t(200), Input::DetectionTimerExpired);
    assert_eq!(s.state(), State::Down);
    // Within the second Detection Time the old sequence number is still
    // remembered, so the replay is not believed...
    let actions = receive(&mut s, 300, recorded.clone());
    assert_eq!(actions, vec![Action::Discarded("auth_sequence")]);
    // ...and after twice the Detection Time of silence it is forgotten
    // (RFC 5880 section 6.8.1), as it must be for a restarted peer.
    let actions = receive(&mut s, 360, recorded);
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Discarded(_))),
        "{actions:?}"
    );
    assert_eq!(s.state(), State::Init);
}
