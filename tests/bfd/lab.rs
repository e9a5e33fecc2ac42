//! Interop in the lab: herald's BFD against FRR bfdd and BIRD 2 as the
//! router, over a veth pair between two network namespaces (a: the router,
//! b: herald). Single-hop IPv4 and IPv6 and multihop come Up, timers
//! negotiate to the slower side, a live interval change on either side
//! completes its Poll/Final with the new values in use on both sides, and
//! the router's AdminDown reaches herald as AdminDown, not as a failure
//! (FRR; BIRD 2.0 cannot send AdminDown, see the last test).
//!
//! Built on herald-testnet's lab (namespaces, FRR, BIRD, cleanup); needs
//! root, FRR and BIRD, and is skipped with a printed reason otherwise
//! (failed when CI=true).

use std::time::{Duration, Instant};

use crate::support::*;
use herald::bfd::SessionConfig;
use herald::bfd::metrics::{Metrics, SessionLabels};
use herald::bfd::packet::State;
use herald::bfd::runtime::{BfdRuntime, SessionHandle, SessionSpec};
use herald::bfd::session::Cause;
use herald_testnet::{Bird, Frr, Lab, Namespace, lab_or_skip};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(tx_ms: u64, rx_ms: u64, mult: u8) -> SessionConfig {
    SessionConfig {
        desired_min_tx: ms(tx_ms),
        required_min_rx: ms(rx_ms),
        detect_mult: mult,
    }
}

/// The router (a) and herald's node (b) of a lab, joined by a veth pair
/// with 192.0.2.1/24 + 2001:db8:bfd::1/64 on a and .2 / ::2 on b.
struct Pair {
    router: Namespace,
    node: Namespace,
    // Dropped last: deletes the namespaces and stops the routers.
    _lab: Lab,
}

fn pair(lab: Lab) -> Pair {
    let router = lab.namespace("r1").unwrap();
    let node = lab.namespace("n1").unwrap();
    lab.veth(&router, A_LINK, &node, B_LINK).unwrap();
    for (ns, link, v4, v6) in [(&router, A_LINK, A4, A6), (&node, B_LINK, B4, B6)] {
        ns.add_address(link, &format!("{v4}/24")).unwrap();
        ns.add_address(link, &format!("{v6}/64")).unwrap();
    }
    Pair {
        router,
        node,
        _lab: lab,
    }
}

/// A JSON entry of FRR's `show bfd peers json` for (peer, multihop).
fn frr_peer(frr: &Frr, peer: &str, multihop: bool) -> Option<serde_json::Value> {
    let peers = frr.vtysh_json("show bfd peers json").ok()?;
    peers
        .as_array()?
        .iter()
        .find(|p| p["peer"] == peer && p["multihop"] == multihop)
        .cloned()
}

const FRR_SESSIONS: [&str; 3] = [
    "peer 192.0.2.2 local-address 192.0.2.1 interface veth-a",
    "peer 2001:db8:bfd::2 local-address 2001:db8:bfd::1 interface veth-a",
    "peer 192.0.2.2 multihop local-address 192.0.2.1",
];

fn frr_profile(tx_ms: u64, rx_ms: u64, mult: u8) -> String {
    format!(
        "bfd\n profile herald\n  transmit-interval {tx_ms}\n  receive-interval {rx_ms}\n  detect-multiplier {mult}\n exit\n"
    )
}

fn frr_with_sessions(ns: &Namespace, tx_ms: u64, rx_ms: u64, mult: u8) -> Frr {
    let frr = Frr::start(ns).unwrap();
    let mut config = frr_profile(tx_ms, rx_ms, mult);
    for session in FRR_SESSIONS {
        config.push_str(&format!(" {session}\n  profile herald\n exit\n"));
    }
    frr.configure(&config).unwrap();
    frr
}

fn bird_config(tx_ms: u64, rx_ms: u64, mult: u8) -> String {
    let timers =
        format!("min rx interval {rx_ms} ms; min tx interval {tx_ms} ms; multiplier {mult};");
    format!(
        "router id 192.0.2.1;\n\
         protocol device {{}}\n\
         protocol bfd bfd1 {{\n\
         \x20 interface \"{A_LINK}\" {{ {timers} }};\n\
         \x20 multihop {{ {timers} }};\n\
         \x20 neighbor {B4} dev \"{A_LINK}\" local {A4};\n\
         \x20 neighbor {B6} dev \"{A_LINK}\" local {A6};\n\
         \x20 neighbor {B4} local {A4} multihop;\n\
         }}\n"
    )
}

/// `show bfd sessions`: (state, interval, timeout) of the line for `peer`
/// whose interface column is `interface` ("---" for multihop).
fn bird_session(bird: &Bird, peer: &str, interface: &str) -> Option<(String, String, String)> {
    let text = bird.birdc(&["show", "bfd", "sessions"]).ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let n = fields.len();
        (n >= 5 && fields[0] == peer && fields[1] == interface).then(|| {
            (
                fields[2].to_string(),
                fields[n - 2].to_string(),
                fields[n - 1].to_string(),
            )
        })
    })
}

fn bird_sessions(bird: &Bird) -> String {
    bird.birdc(&["show", "bfd", "sessions"]).unwrap_or_default()
}

/// herald's three sessions (v4, v6 single-hop; v4 multihop) in namespace b.
struct Herald {
    runtime: BfdRuntime,
    metrics: Metrics,
    v4: SessionHandle,
    v6: SessionHandle,
    multihop: SessionHandle,
}

/// BIRD 2.0 sends multihop packets at the kernel's default TTL (64), not
/// 255, so a multihop session to BIRD must accept less than FRR's 254.
const BIRD_MULTIHOP_MIN_TTL: u8 = 60;

fn herald_in(lab: &Pair, config: SessionConfig) -> Herald {
    herald_with_min_ttl(lab, config, herald::bfd::runtime::DEFAULT_MULTIHOP_MIN_TTL)
}

fn herald_with_min_ttl(lab: &Pair, config: SessionConfig, min_ttl: u8) -> Herald {
    let metrics = Metrics::default();
    let runtime = runtime_in(&lab.node, &metrics);
    let single = |peer: &str, local: &str| {
        let mut spec = SessionSpec::single_hop(ip(peer), config);
        spec.local = Some(ip(local));
        spec.interface = Some(B_LINK.to_string());
        spec
    };
    let v4 = runtime.add_session(single(A4, B4)).unwrap();
    let v6 = runtime.add_session(single(A6, B6)).unwrap();
    let mut multihop = SessionSpec::multihop(ip(A4), config);
    multihop.local = Some(ip(B4));
    multihop.min_ttl = min_ttl;
    let multihop = runtime.add_session(multihop).unwrap();
    Herald {
        runtime,
        metrics,
        v4,
        v6,
        multihop,
    }
}

impl Herald {
    fn sessions(&self) -> [(&SessionHandle, &'static str); 3] {
        [
            (&self.v4, "single-hop IPv4"),
            (&self.v6, "single-hop IPv6"),
            (&self.multihop, "multihop IPv4"),
        ]
    }

    /// All three Up with no Poll pending, and `check` true, within 20 s
    /// (FRR and BIRD start at 1 s intervals, and FRR 8.4 may flap once).
    fn wait_all(&self, what: &str, check: impl Fn(&herald::bfd::runtime::SessionStatus) -> bool) {
        for (handle, name) in self.sessions() {
            if let Err(status) = wait_status(&handle.status, Duration::from_secs(20), |s| {
                s.state == State::Up && !s.polling && check(s)
            }) {
                panic!("{name}: {what}: {status:?}; drops: {}", self.drops());
            }
        }
    }

    /// Non-zero drop counters, for failure messages.
    fn drops(&self) -> String {
        [
            "ttl",
            "no_session",
            "unknown_discriminator",
            "zero_your_discriminator",
            "bad_version",
            "truncated",
            "auth_not_configured",
            "admin_down",
        ]
        .iter()
        .map(|r| (r, self.metrics.dropped_count(r)))
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| format!("{r}={n} "))
        .collect()
    }

    /// Packets received on the IPv4 single-hop session over `window`.
    fn received_over(&self, window: Duration) -> u64 {
        let labels = SessionLabels {
            peer: A4.to_string(),
            hop: "single_hop".to_string(),
        };
        let before = self.metrics.received.get_or_create(&labels).get();
        std::thread::sleep(window);
        self.metrics.received.get_or_create(&labels).get() - before
    }
}

fn negotiated(
    tx_ms: u64,
    detection_ms: u64,
) -> impl Fn(&herald::bfd::runtime::SessionStatus) -> bool {
    move |s| {
        s.negotiated.tx_interval == Some(ms(tx_ms))
            && s.negotiated.detection_time == Some(ms(detection_ms))
    }
}

#[test]
fn frr_sessions_come_up_and_negotiate_to_the_slower_side() {
    let lab = pair(lab_or_skip!());
    let frr = frr_with_sessions(&lab.router, 100, 100, 3);
    let started = Instant::now();
    let herald = herald_in(&lab, config(50, 50, 3));
    // herald sends at max(50, FRR rx 100); detects at 3 x max(50, FRR tx 100).
    herald.wait_all("Up at 100 ms / 300 ms", negotiated(100, 300));
    println!("FRR sessions Up in {:?}", started.elapsed());
    for (peer, multihop) in [(B4, false), (B6, false), (B4, true)] {
        let seen = wait_until(Duration::from_secs(10), || {
            frr_peer(&frr, peer, multihop).is_some_and(|p| {
                p["status"] == "up"
                    && p["remote-receive-interval"] == 50
                    && p["remote-transmit-interval"] == 50
                    && p["remote-detect-multiplier"] == 3
            })
        });
        assert!(
            seen,
            "FRR's view of {peer}: {:?}",
            frr_peer(&frr, peer, multihop)
        );
    }
    assert_eq!(herald.metrics.dropped_count("ttl"), 0);
}

#[test]
fn frr_interval_changes_complete_a_poll_on_both_sides() {
    let lab = pair(lab_or_skip!());
    let frr = frr_with_sessions(&lab.router, 100, 100, 3);
    let herald = herald_in(&lab, config(50, 50, 3));
    herald.wait_all("Up", negotiated(100, 300));
    let fast = herald.received_over(ms(1500));

    // The router slows down live: FRR polls, herald answers with Final.
    frr.configure(&frr_profile(300, 200, 3)).unwrap();
    herald.wait_all("FRR's new intervals in use", negotiated(200, 900));
    let slow = herald.received_over(ms(1500));
    println!("packets from FRR in 1.5 s: {fast} at 100 ms, {slow} at 300 ms");
    assert!(fast >= 9 && slow <= 9 && slow < fast, "{fast} then {slow}");

    // herald slows down live: herald polls, FRR answers with Final.
    herald
        .runtime
        .change_parameters(herald.v4.id, config(250, 50, 3))
        .unwrap();
    herald.wait_all("herald's poll completed", |s| {
        s.negotiated.tx_interval.is_some()
    });
    let v4 = wait_status(&herald.v4.status, Duration::from_secs(10), |s| {
        !s.polling && s.negotiated.tx_interval == Some(ms(250))
    })
    .expect("herald's slower TX in force after the Final");
    assert_eq!(v4.state, State::Up);
    let seen = wait_until(Duration::from_secs(10), || {
        frr_peer(&frr, B4, false)
            .is_some_and(|p| p["remote-transmit-interval"] == 250 && p["status"] == "up")
    });
    assert!(seen, "FRR's view: {:?}", frr_peer(&frr, B4, false));
}

#[test]
fn frr_admin_down_is_reported_as_admin_down_not_as_a_failure() {
    let lab = pair(lab_or_skip!());
    let frr = frr_with_sessions(&lab.router, 100, 100, 3);
    let mut herald = herald_in(&lab, config(50, 50, 3));
    herald.wait_all("Up", |_| true);
    while herald.v4.events.try_recv().is_ok() {}
    frr.configure(&format!("bfd\n {}\n  shutdown\n", FRR_SESSIONS[0]))
        .unwrap();
    wait_status(&herald.v4.status, Duration::from_secs(5), |s| {
        s.state == State::Down
    })
    .expect("herald sees FRR's AdminDown");
    let event = herald.v4.events.try_recv().expect("an event");
    assert_eq!(event.change.cause, Cause::NeighborAdminDown);
    assert!(!event.change.is_failure(), "RFC 5882 §4.2");
    // The other sessions are untouched.
    assert_eq!(herald.v6.status.borrow().state, State::Up);
    frr.configure(&format!("bfd\n {}\n  no shutdown\n", FRR_SESSIONS[0]))
        .unwrap();
    herald.wait_all("Up again after no shutdown", |_| true);
}

#[test]
fn bird_sessions_come_up_and_negotiate_to_the_slower_side() {
    let lab = pair(lab_or_skip!());
    let bird = Bird::start(&lab.router, &bird_config(100, 100, 3)).unwrap();
    let started = Instant::now();
    let herald = herald_with_min_ttl(&lab, config(50, 50, 3), BIRD_MULTIHOP_MIN_TTL);
    herald.wait_all("Up at 100 ms / 300 ms", negotiated(100, 300));
    println!("BIRD sessions Up in {:?}", started.elapsed());
    // BIRD: Interval = max(its tx 100, our rx 50); Timeout = 3 x max(its rx
    // 100, our tx 50).
    for (peer, interface) in [(B4, A_LINK), (B6, A_LINK)] {
        let seen = wait_until(Duration::from_secs(10), || {
            bird_session(&bird, peer, interface).is_some_and(|(state, interval, timeout)| {
                state == "Up" && interval == "0.100" && timeout == "0.300"
            })
        });
        assert!(seen, "BIRD's view of {peer}: {}", bird_sessions(&bird));
    }
}

#[test]
fn bird_interval_changes_complete_a_poll_on_both_sides() {
    let lab = pair(lab_or_skip!());
    let bird = Bird::start(&lab.router, &bird_config(100, 100, 3)).unwrap();
    let herald = herald_with_min_ttl(&lab, config(50, 50, 3), BIRD_MULTIHOP_MIN_TTL);
    herald.wait_all("Up", negotiated(100, 300));
    let fast = herald.received_over(ms(1500));
    bird.reconfigure(&bird_config(300, 200, 3)).unwrap();
    herald.wait_all("BIRD's new intervals in use", negotiated(200, 900));
    let slow = herald.received_over(ms(1500));
    println!("packets from BIRD in 1.5 s: {fast} at 100 ms, {slow} at 300 ms");
    assert!(fast >= 9 && slow <= 9 && slow < fast, "{fast} then {slow}");

    herald
        .runtime
        .change_parameters(herald.v4.id, config(250, 50, 3))
        .unwrap();
    wait_status(&herald.v4.status, Duration::from_secs(10), |s| {
        !s.polling && s.negotiated.tx_interval == Some(ms(250))
    })
    .expect("herald's slower TX in force after BIRD's Final");
    // BIRD's Timeout: 3 x max(its rx 200, our tx 250).
    let seen = wait_until(Duration::from_secs(10), || {
        bird_session(&bird, B4, A_LINK)
            .is_some_and(|(state, _, timeout)| state == "Up" && timeout == "0.750")
    });
    assert!(seen, "{}", bird_sessions(&bird));
}

/// BIRD 2.0 never signals AdminDown: `birdc disable` (and removing a
/// neighbor) frees the session silently. herald then sees, correctly, a
/// peer that stopped talking: a failure after the Detection Time. This test
/// pins that down so the router-side AdminDown case is covered by FRR.
#[test]
fn bird_disable_sends_no_admin_down_and_is_detected_as_a_timeout() {
    let lab = pair(lab_or_skip!());
    let bird = Bird::start(&lab.router, &bird_config(100, 100, 3)).unwrap();
    let mut herald = herald_with_min_ttl(&lab, config(50, 50, 3), BIRD_MULTIHOP_MIN_TTL);
    herald.wait_all("Up", |_| true);
    while herald.v4.events.try_recv().is_ok() {}
    let out = bird.birdc(&["disable", "bfd1"]).unwrap();
    assert!(out.contains("disabled"), "birdc disable: {out}");
    wait_status(&herald.v4.status, Duration::from_secs(5), |s| {
        s.state == State::Down
    })
    .expect("herald notices BIRD went silent");
    let event = herald.v4.events.try_recv().expect("an event");
    assert_eq!(event.change.cause, Cause::DetectionTimeExpired);
    assert!(event.change.is_failure());
}
