//! The flood benchmark (ignored; prints only): a host on the link floods
//! UDP 3784 of two nodes as fast as it can for a bounded time while each
//! node runs three single-hop sessions at 50 ms x 3 with one FRR router:
//! herald's runtime on node h, BIRD on node b, the same router, the same
//! flood, the same run.
//!
//! ```text
//!   r (FRR bfdd: .1 .11 .21) --+
//!   h (herald: .2 .12 .22)  ---+-- bridge (namespace sw)
//!   b (BIRD:   .3 .13 .23)  ---+
//!   f (flooder: .4)         ---+
//! ```
//!
//! Printed for each speaker: the sessions the router saw go down during
//! the flood (false drops: nothing failed but the flood), and for herald
//! its own view (state changes, the largest gap between two received
//! packets while Up, the flood packets it read and dropped). BIRD exposes
//! no receive gap; its false drops are what the router saw.
//!
//! ```text
//! cargo test --release --test bfd -- --ignored --nocapture flood::
//! HERALD_FLOOD_SECONDS=20 cargo test --release --test bfd -- --ignored --nocapture flood::
//! ```
//! Needs root, FRR and BIRD (skipped with a reason otherwise).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::support::*;
use herald::bfd::SessionConfig;
use herald::bfd::metrics::{Metrics, SessionLabels};
use herald::bfd::packet::{ControlPacket, Diagnostic, State};
use herald::bfd::runtime::{SessionHandle, SessionSpec};
use herald_testnet::{Bird, Frr, Namespace};

const ROUTER: [&str; 3] = ["192.0.2.1", "192.0.2.11", "192.0.2.21"];
const HERALD: [&str; 3] = ["192.0.2.2", "192.0.2.12", "192.0.2.22"];
const BIRD: [&str; 3] = ["192.0.2.3", "192.0.2.13", "192.0.2.23"];
const FLOODER: &str = "192.0.2.4";

/// The router's counters of sessions that went down, per peer address.
fn router_downs(frr: &Frr) -> std::collections::BTreeMap<String, u64> {
    let counters = frr
        .vtysh_json("show bfd peers counters json")
        .unwrap_or_default();
    counters
        .as_array()
        .map(|peers| {
            peers
                .iter()
                .filter_map(|p| {
                    let peer = p["peer"].as_str()?.to_string();
                    let down = p["session-down"].as_u64().unwrap_or(0);
                    Some((peer, down))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn downs_of(counts: &std::collections::BTreeMap<String, u64>, peers: &[&str]) -> u64 {
    peers.iter().filter_map(|p| counts.get(*p)).sum()
}

/// Sends BFD-looking packets (Down, a new My Discriminator each, from its
/// own address: what a pod can send) to UDP 3784 of every address in
/// `targets`, one thread per group (a node) round-robin over its
/// addresses, as fast as each thread can for `duration` (and at most 50
/// million packets each). Returns the number sent.
fn flood(ns: &Namespace, targets: Vec<Vec<String>>, duration: Duration) -> u64 {
    ns.run_in(move || {
        // Threads started here live in the flooder's namespace too.
        let threads: Vec<_> = targets
            .into_iter()
            .map(|group| std::thread::spawn(move || flood_from_here(&group, duration)))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("flooder thread"))
            .sum()
    })
    .expect("enter the flooder's namespace")
}

fn flood_from_here(targets: &[String], duration: Duration) -> u64 {
    let socket = UdpSocket::bind((FLOODER, 0)).expect("flooder socket");
    socket.set_ttl(255).expect("ttl");
    let destinations: Vec<SocketAddr> = targets
        .iter()
        .map(|t| SocketAddr::new(ip(t), 3784))
        .collect();
    let packet = ControlPacket {
        diag: Diagnostic::None,
        state: State::Down,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: 1,
        your_discriminator: 0,
        desired_min_tx: Duration::from_secs(1),
        required_min_rx: Duration::from_secs(1),
        required_min_echo_rx: Duration::ZERO,
        auth: None,
    };
    let mut bytes = packet.encode().expect("encode");
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < 50_000_000 {
        if sent.is_multiple_of(1024) && start.elapsed() >= duration {
            break;
        }
        // My Discriminator (bytes 4-7): a new one every packet.
        bytes[4..8].copy_from_slice(&((sent as u32) | 1).to_be_bytes());
        let to = destinations[sent as usize % destinations.len()];
        // A full queue somewhere (ENOBUFS) is part of a flood.
        let _ = socket.send_to(&bytes, to);
        sent += 1;
    }
    sent
}

fn frr_config() -> String {
    let mut config = String::from(
        "bfd\n profile flood\n  transmit-interval 50\n  receive-interval 50\n  \
         detect-multiplier 3\n exit\n",
    );
    for (node, router) in HERALD.iter().chain(BIRD.iter()).zip(ROUTER.iter().cycle()) {
        config.push_str(&format!(
            " peer {node} local-address {router} interface eth0\n  profile flood\n exit\n"
        ));
    }
    config
}

fn bird_config() -> String {
    let mut config = format!(
        "router id {};\nprotocol device {{}}\nprotocol bfd bfd1 {{\n  interface \"eth0\" {{ \
         min rx interval 50 ms; min tx interval 50 ms; multiplier 3; }};\n",
        BIRD[0]
    );
    for (local, router) in BIRD.iter().zip(ROUTER) {
        config.push_str(&format!(
            "  neighbor {router} dev \"eth0\" local {local};\n"
        ));
    }
    config.push_str("}\n");
    config
}

#[test]
#[ignore = "flood benchmark: run with --ignored --nocapture (about 1 minute)"]
fn flood_benchmark_herald_against_bird() {
    let Ok(lab) = herald_testnet::Lab::start() else {
        eprintln!("flood benchmark skipped: no lab here");
        return;
    };
    let seconds: u64 = std::env::var("HERALD_FLOOD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let switch = lab.namespace("sw").expect("sw");
    switch.add_bridge("br0").expect("bridge");
    let mut nodes = Vec::new();
    for (name, addresses) in [
        ("r", ROUTER.to_vec()),
        ("h", HERALD.to_vec()),
        ("b", BIRD.to_vec()),
        ("f", vec![FLOODER]),
    ] {
        let ns = lab.namespace(name).expect("namespace");
        let port = format!("p-{name}");
        lab.veth(&ns, "eth0", &switch, &port).expect("veth");
        switch.attach(&port, "br0").expect("attach");
        for address in addresses {
            ns.add_address("eth0", &format!("{address}/24"))
                .expect("address");
        }
        nodes.push(ns);
    }
    let (router_ns, herald_ns, bird_ns, flooder_ns) = (&nodes[0], &nodes[1], &nodes[2], &nodes[3]);
    let frr = Frr::start(router_ns).expect("frr");
    frr.configure(&frr_config()).expect("frr bfd");
    let bird = Bird::start(bird_ns, &bird_config()).expect("bird");
    let metrics = Metrics::default();
    let runtime = runtime_in(herald_ns, &metrics);
    let config = SessionConfig {
        desired_min_tx: Duration::from_millis(50),
        required_min_rx: Duration::from_millis(50),
        detect_mult: 3,
    };
    let sessions: Vec<SessionHandle> = HERALD
        .iter()
        .zip(ROUTER)
        .map(|(local, router)| {
            let mut spec = SessionSpec::single_hop(ip(router), config);
            spec.local = Some(ip(local));
            spec.interface = Some("eth0".to_string());
            runtime.add_session(spec).expect("session")
        })
        .collect();
    for (handle, router) in sessions.iter().zip(ROUTER) {
        if let Err(status) = wait_status(&handle.status, Duration::from_secs(30), |s| {
            s.state == State::Up && !s.polling
        }) {
            panic!("herald's session to {router} never came Up: {status:?}");
        }
    }
    let bird_up = wait_until(Duration::from_secs(30), || {
        let text = bird.birdc(&["show", "bfd", "sessions"]).unwrap_or_default();
        text.lines().filter(|l| l.contains(" Up ")).count() == 3
    });
    assert!(
        bird_up,
        "{}",
        bird.birdc(&["show", "bfd", "sessions"]).unwrap_or_default()
    );
    // Past the start-up, then measure from here.
    std::thread::sleep(Duration::from_secs(3));
    let gap = |router: &str| {
        let labels = SessionLabels {
            peer: router.to_string(),
            hop: "single_hop".to_string(),
        };
        metrics.max_rx_gap.get_or_create(&labels).get()
    };
    let gaps_before: Vec<f64> = ROUTER.iter().map(|r| gap(r)).collect();
    let transitions_before: Vec<u64> = sessions
        .iter()
        .map(|s| s.status.borrow().transitions)
        .collect();
    let downs_before = router_downs(&frr);
    println!(
        "bfd_flood: the router's counters of one peer: {}",
        frr.vtysh_json("show bfd peers counters json")
            .ok()
            .and_then(|v| v.as_array().and_then(|a| a.first().cloned()))
            .unwrap_or_default()
    );
    let no_session_before = metrics.dropped_count("no_session");

    let started = Instant::now();
    let targets: Vec<Vec<String>> = [HERALD, BIRD]
        .iter()
        .map(|node| node.iter().map(|s| s.to_string()).collect())
        .collect();
    let sent = flood(flooder_ns, targets, Duration::from_secs(seconds));
    let took = started.elapsed();
    // A Detection Time and more for a late Down to show.
    std::thread::sleep(Duration::from_secs(1));

    let downs_after = router_downs(&frr);
    let herald_false = downs_of(&downs_after, &HERALD) - downs_of(&downs_before, &HERALD);
    let bird_false = downs_of(&downs_after, &BIRD) - downs_of(&downs_before, &BIRD);
    let herald_changes: u64 = sessions
        .iter()
        .zip(&transitions_before)
        .map(|(s, before)| s.status.borrow().transitions - before)
        .sum();
    let gaps_after: Vec<f64> = ROUTER.iter().map(|r| gap(r)).collect();
    let read_and_dropped = metrics.dropped_count("no_session") - no_session_before;
    println!(
        "bfd_flood: {sent} flood packets in {took:.1?} ({:.0} pps, one flooder thread per node, \
         round-robin over its three addresses), 3 sessions each at 50 ms x 3 with FRR",
        sent as f64 / took.as_secs_f64()
    );
    println!(
        "bfd_flood: herald: {herald_false} session downs seen by the router, {herald_changes} \
         state changes of its own; largest receive gap while Up {:?} ms before the flood, \
         {:?} ms after; {read_and_dropped} flood packets read and dropped (no_session)",
        gaps_before
            .iter()
            .map(|g| (g * 1000.0).round())
            .collect::<Vec<_>>(),
        gaps_after
            .iter()
            .map(|g| (g * 1000.0).round())
            .collect::<Vec<_>>(),
    );
    println!(
        "bfd_flood: BIRD:   {bird_false} session downs seen by the router (BIRD exposes no \
         receive gap); BIRD now: {}",
        bird.birdc(&["show", "bfd", "sessions"])
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("192.0.2."))
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!("bfd_flood: router's down counters {downs_after:?} (before {downs_before:?})");
    drop(runtime);
}
