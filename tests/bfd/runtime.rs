//! The BFD runtime over real sockets: two herald runtimes in two network
//! namespaces joined by a veth pair (herald-testnet's lab). Skipped with a
//! printed reason where the lab cannot run (failed when CI=true).

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use crate::support::*;
use herald::bfd::SessionConfig;
use herald::bfd::metrics::Metrics;
use herald::bfd::packet::{ControlPacket, Diagnostic, State};
use herald::bfd::runtime::{SessionHandle, SessionSpec};
use herald::bfd::session::Cause;
use nix::sys::signal::Signal;

fn config(tx_ms: u64, rx_ms: u64, mult: u8) -> SessionConfig {
    SessionConfig {
        desired_min_tx: Duration::from_millis(tx_ms),
        required_min_rx: Duration::from_millis(rx_ms),
        detect_mult: mult,
    }
}

fn single_hop(peer: &str, local: &str, link: &str, config: SessionConfig) -> SessionSpec {
    let mut spec = SessionSpec::single_hop(ip(peer), config);
    spec.local = Some(ip(local));
    spec.interface = Some(link.to_string());
    spec
}

fn wait_up(handle: &SessionHandle, what: &str) {
    if let Err(status) = wait_status(&handle.status, Duration::from_secs(10), |s| {
        s.state == State::Up && !s.polling
    }) {
        panic!("{what} did not come Up: {status:?}");
    }
}

/// The test binary as a BFD peer in a child process (see support.rs).
#[test]
#[ignore = "run by the other tests as a child process"]
fn child_peer_process() {
    child_peer_main();
}

#[test]
fn two_runtimes_come_up_single_hop_v4_v6_and_multihop() {
    let Some(lab) = Lab::start() else {
        return;
    };
    let (metrics_a, metrics_b) = (Metrics::default(), Metrics::default());
    let a = runtime_in(&lab.a_ns, &metrics_a);
    let b = runtime_in(&lab.b_ns, &metrics_b);
    let started = Instant::now();
    // a is faster than b: each direction negotiates to the slower side.
    let a4 = a
        .add_session(single_hop(B4, A4, A_LINK, config(20, 30, 3)))
        .unwrap();
    let b4 = b
        .add_session(single_hop(A4, B4, B_LINK, config(50, 40, 4)))
        .unwrap();
    let a6 = a
        .add_session(single_hop(B6, A6, A_LINK, config(20, 20, 3)))
        .unwrap();
    let b6 = b
        .add_session(single_hop(A6, B6, B_LINK, config(20, 20, 3)))
        .unwrap();
    let mut multihop_a = SessionSpec::multihop(ip(B4), config(30, 30, 3));
    multihop_a.local = Some(ip(A4));
    let mut multihop_b = SessionSpec::multihop(ip(A4), config(30, 30, 3));
    multihop_b.local = Some(ip(B4));
    let am = a.add_session(multihop_a).unwrap();
    let bm = b.add_session(multihop_b).unwrap();
    for (handle, what) in [
        (&a4, "a ipv4"),
        (&b4, "b ipv4"),
        (&a6, "a ipv6"),
        (&b6, "b ipv6"),
        (&am, "a multihop"),
        (&bm, "b multihop"),
    ] {
        wait_up(handle, what);
    }
    println!("six sessions Up in {:?}", started.elapsed());

    let a4_status = a4.status.borrow().clone();
    let b4_status = b4.status.borrow().clone();
    // a sends at max(a tx 20, b rx 40) = 40; b at max(b tx 50, a rx 30) = 50.
    assert_eq!(
        a4_status.negotiated.tx_interval,
        Some(Duration::from_millis(40))
    );
    assert_eq!(
        b4_status.negotiated.tx_interval,
        Some(Duration::from_millis(50))
    );
    // a detects with b's mult 4 x max(a rx 30, b tx 50) = 200 ms.
    assert_eq!(
        a4_status.negotiated.detection_time,
        Some(Duration::from_millis(200))
    );
    // b detects with a's mult 3 x max(b rx 40, a tx 20) = 120 ms.
    assert_eq!(
        b4_status.negotiated.detection_time,
        Some(Duration::from_millis(120))
    );
    assert_eq!(
        a4_status.remote_discriminator,
        b4_status.local_discriminator
    );
    assert_eq!(metrics_a.dropped_count("ttl"), 0);
}

#[test]
fn stopped_peer_is_detected_within_the_detection_time() {
    let Some(lab) = Lab::start() else {
        return;
    };
    let metrics = Metrics::default();
    let a = runtime_in(&lab.a_ns, &metrics);
    let mut a4 = a
        .add_session(single_hop(B4, A4, A_LINK, config(20, 20, 3)))
        .unwrap();
    let peer = ChildPeer::start(&lab.b, &format!("{A4},{B4},{B_LINK},20,20,3"));
    wait_up(&a4, "a towards the child peer");
    let detection = a4.status.borrow().negotiated.detection_time.unwrap();
    assert_eq!(detection, Duration::from_millis(60));
    // Drain the events of the bring-up.
    while a4.events.try_recv().is_ok() {}

    let stopped_at = Instant::now();
    peer.signal(Signal::SIGSTOP);
    let status = wait_status(&a4.status, Duration::from_secs(5), |s| {
        s.state == State::Down
    })
    .expect("the frozen peer is detected");
    let event = a4.events.try_recv().expect("a Down event");
    let took = event.at.saturating_duration_since(stopped_at);
    println!("frozen peer detected after {took:?} (detection time {detection:?})");
    assert_eq!(event.change.cause, Cause::DetectionTimeExpired);
    assert_eq!(status.local_diag, Diagnostic::ControlDetectionTimeExpired);
    assert!(event.change.is_failure());
    // Generous: the figure is printed, not asserted tightly.
    assert!(took < Duration::from_secs(2), "took {took:?}");
    peer.signal(Signal::SIGCONT);
    wait_up(&a4, "a after the peer thawed");
}

/// A raw Control packet from namespace b with the given TTL.
fn send_from_b(lab: &Lab, from: &str, ttl: u32, packet: &ControlPacket) {
    let bytes = packet.encode().unwrap();
    let from = from.to_string();
    lab.b_ns
        .run_in(move || {
            let socket = UdpSocket::bind((from.as_str(), 0)).unwrap();
            socket.set_ttl(ttl).unwrap();
            socket.send_to(&bytes, (A4, 3784)).unwrap();
        })
        .expect("enter namespace b");
}

fn packet(your_discriminator: u32, state: State) -> ControlPacket {
    ControlPacket {
        diag: Diagnostic::None,
        state,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: 0x0bad_cafe,
        your_discriminator,
        desired_min_tx: Duration::from_secs(1),
        required_min_rx: Duration::from_secs(1),
        required_min_echo_rx: Duration::ZERO,
        auth: None,
    }
}

#[test]
fn ttl_254_on_a_single_hop_session_is_dropped_and_counted() {
    let Some(lab) = Lab::start() else {
        return;
    };
    let metrics = Metrics::default();
    let a = runtime_in(&lab.a_ns, &metrics);
    let a4 = a
        .add_session(single_hop(B4, A4, A_LINK, config(50, 50, 3)))
        .unwrap();
    let ours = a4.status.borrow().local_discriminator;
    send_from_b(&lab, B4, 254, &packet(ours, State::Init));
    assert!(
        wait_until(Duration::from_secs(5), || metrics.dropped_count("ttl") == 1),
        "ttl drops: {}",
        metrics.dropped_count("ttl")
    );
    // The same packet with TTL 255 is accepted: Down + Init -> Up.
    send_from_b(&lab, B4, 255, &packet(ours, State::Init));
    wait_status(&a4.status, Duration::from_secs(5), |s| s.state == State::Up)
        .expect("the TTL 255 packet brings the session Up");
    assert_eq!(metrics.dropped_count("ttl"), 1);
}

#[test]
fn wrong_discriminators_are_dropped_and_counted() {
    let Some(lab) = Lab::start() else {
        return;
    };
    let metrics = Metrics::default();
    let a = runtime_in(&lab.a_ns, &metrics);
    let a4 = a
        .add_session(single_hop(B4, A4, A_LINK, config(50, 50, 3)))
        .unwrap();
    let ours = a4.status.borrow().local_discriminator;
    // Your Discriminator that no session has.
    send_from_b(
        &lab,
        B4,
        255,
        &packet(ours.wrapping_add(1).max(1), State::Init),
    );
    // Our discriminator, but from an address that is not the peer's.
    send_from_b(&lab, B4_STRANGER, 255, &packet(ours, State::Init));
    // Your Discriminator 0 from an address without a session.
    send_from_b(&lab, B4_STRANGER, 255, &packet(0, State::Down));
    // Your Discriminator 0 while Init fails the §6.8.6 check itself.
    let mut init_without_yours = packet(0, State::Down);
    init_without_yours.state = State::Init;
    let mut bytes = init_without_yours.encode().unwrap();
    bytes[1] = (bytes[1] & 0x3f) | (2 << 6);
    lab.b_ns
        .run_in(move || {
            let socket = UdpSocket::bind((B4, 0)).unwrap();
            socket.set_ttl(255).unwrap();
            socket.send_to(&bytes, (A4, 3784)).unwrap();
        })
        .expect("enter namespace b");
    let counted = wait_until(Duration::from_secs(5), || {
        metrics.dropped_count("unknown_discriminator") == 2
            && metrics.dropped_count("no_session") == 1
            && metrics.dropped_count("zero_your_discriminator") == 1
    });
    assert!(
        counted,
        "unknown {} no_session {} zero_yours {}",
        metrics.dropped_count("unknown_discriminator"),
        metrics.dropped_count("no_session"),
        metrics.dropped_count("zero_your_discriminator")
    );
    assert_eq!(a4.status.borrow().state, State::Down);
}

#[test]
fn parameter_change_polls_and_both_sides_use_the_new_interval() {
    let Some(lab) = Lab::start() else {
        return;
    };
    let (metrics_a, metrics_b) = (Metrics::default(), Metrics::default());
    let a = runtime_in(&lab.a_ns, &metrics_a);
    let b = runtime_in(&lab.b_ns, &metrics_b);
    let a4 = a
        .add_session(single_hop(B4, A4, A_LINK, config(20, 20, 3)))
        .unwrap();
    let b4 = b
        .add_session(single_hop(A4, B4, B_LINK, config(20, 20, 3)))
        .unwrap();
    wait_up(&a4, "a");
    wait_up(&b4, "b");
    a.change_parameters(a4.id, config(100, 20, 3)).unwrap();
    let a_after = wait_status(&a4.status, Duration::from_secs(5), |s| {
        !s.polling && s.negotiated.tx_interval == Some(Duration::from_millis(100))
    })
    .expect("a's Poll completes with the slower TX in force");
    let b_after = wait_status(&b4.status, Duration::from_secs(5), |s| {
        s.negotiated.detection_time == Some(Duration::from_millis(300))
    })
    .expect("b detects with a's new interval");
    assert_eq!(a_after.state, State::Up);
    assert_eq!(b_after.state, State::Up);
    assert_eq!(a_after.transitions, a4.status.borrow().transitions);
}

#[test]
fn admin_down_is_reported_to_the_peer_as_neighbor_admin_down() {
    let Some(lab) = Lab::start() else {
        return;
    };
    let (metrics_a, metrics_b) = (Metrics::default(), Metrics::default());
    let a = runtime_in(&lab.a_ns, &metrics_a);
    let b = runtime_in(&lab.b_ns, &metrics_b);
    let a4 = a
        .add_session(single_hop(B4, A4, A_LINK, config(20, 20, 3)))
        .unwrap();
    let mut b4 = b
        .add_session(single_hop(A4, B4, B_LINK, config(20, 20, 3)))
        .unwrap();
    wait_up(&a4, "a");
    wait_up(&b4, "b");
    while b4.events.try_recv().is_ok() {}
    a.admin_down_all().unwrap();
    let status = wait_status(&b4.status, Duration::from_secs(5), |s| {
        s.state == State::Down
    })
    .expect("b sees a go AdminDown");
    let event = b4.events.try_recv().expect("an event");
    assert_eq!(event.change.cause, Cause::NeighborAdminDown);
    assert!(!event.change.is_failure());
    assert_eq!(status.local_diag, Diagnostic::NeighborSignaledSessionDown);
    assert_eq!(a4.status.borrow().state, State::AdminDown);
}
