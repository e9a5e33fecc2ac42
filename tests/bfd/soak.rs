//! Soak benchmark (ignored by default; prints, asserts no timing): three
//! herald BFD runtimes, one on each node of the `ecmp3` lab, keep a
//! 20 ms x 3 session with FRR bfdd on the router for two minutes while
//! `stress-ng --cpu 2` saturates both cores, and the test prints the false
//! session drops on both sides and the largest gaps between packets,
//! against the 60 ms detection time.
//!
//! ```text
//! cargo test --release --test bfd -- --ignored --nocapture soak::
//! HERALD_BFD_SOAK_SECS=30 HERALD_BFD_SOAK_STRESS=0 cargo test --release --test bfd -- --ignored --nocapture soak::
//! ```
//!
//! - herald's side: state transitions of each session during the soak,
//!   the largest gap between packets received from FRR (stamped by the
//!   kernel on arrival) and between packets herald sent, and every dropped
//!   packet by reason.
//! - FRR's side: `session-down` of `show bfd peers counters json`.
//!
//! Needs root, FRR and stress-ng (herald-testnet's lab rules: skipped with
//! a reason, or failed under CI=true).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::wait_status;
use herald::bfd::SessionConfig;
use herald::bfd::metrics::{Metrics, SessionLabels};
use herald::bfd::packet::State;
use herald::bfd::runtime::{BfdRuntime, RuntimeOptions, SessionHandle, SessionSpec};
use herald_testnet::load_average;
use herald_testnet::scenario::{Ecmp3, node_address};
use herald_testnet::{Frr, lab_or_skip};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const ROUTER: &str = "192.0.2.1";
const INTERVAL_MS: u64 = 20;
const MULTIPLIER: u8 = 3;

/// `session-down` per peer address, from FRR.
fn frr_session_downs(frr: &Frr) -> BTreeMap<String, u64> {
    let counters = frr
        .vtysh_json("show bfd peers counters json")
        .expect("show bfd peers counters json");
    counters
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|peer| {
            Some((
                peer["peer"].as_str()?.to_string(),
                peer["session-down"].as_u64()?,
            ))
        })
        .collect()
}

/// stress-ng, stopped by PID on drop (SIGTERM, then SIGKILL).
struct Stressor(Child);

impl Drop for Stressor {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.0.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = kill(pid, Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

struct Node {
    name: String,
    address: IpAddr,
    labels: SessionLabels,
    /// This node's runtime only, so each row has its own gaps.
    metrics: Metrics,
    handle: SessionHandle,
    // Dropped after the handle: stops the BFD thread.
    _runtime: BfdRuntime,
}

#[test]
#[ignore = "soak benchmark: run with --ignored --nocapture (about 2.5 minutes)"]
fn sessions_with_frr_at_20ms_survive_two_saturated_minutes() {
    let seconds: u64 = std::env::var("HERALD_BFD_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let stress = std::env::var("HERALD_BFD_SOAK_STRESS").as_deref() != Ok("0");
    if stress && Command::new("stress-ng").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "stress-ng is not installed"
        );
        eprintln!("soak skipped: stress-ng is not installed");
        return;
    }
    let lab = lab_or_skip!();
    let scenario = Ecmp3::deploy(&lab).expect("deploy ecmp3");
    let frr = scenario.router().expect("router");
    // The shipped profile is 100 ms x 3; make it 20 ms x 3.
    frr.configure(&format!(
        "bfd\n profile lab\n  transmit-interval {INTERVAL_MS}\n  receive-interval {INTERVAL_MS}\n  detect-multiplier {MULTIPLIER}\n exit\nexit\n"
    ))
    .expect("set FRR's bfd profile");
    let config = SessionConfig {
        desired_min_tx: Duration::from_millis(INTERVAL_MS),
        required_min_rx: Duration::from_millis(INTERVAL_MS),
        detect_mult: MULTIPLIER,
    };
    let nodes: Vec<Node> = scenario
        .nodes()
        .into_iter()
        .map(|name| {
            let ns = scenario.net.ns(&name).expect("node namespace").clone();
            let address = node_address(&ns).expect("node address");
            let metrics = Metrics::default();
            let runtime_metrics = metrics.clone();
            let runtime = ns
                .run_in(move || BfdRuntime::spawn(RuntimeOptions::default(), runtime_metrics))
                .expect("enter the node namespace")
                .expect("spawn the bfd runtime");
            let mut spec = SessionSpec::single_hop(ROUTER.parse().unwrap(), config);
            spec.local = Some(address);
            spec.interface = Some("eth1".to_string());
            let handle = runtime.add_session(spec).expect("add the session");
            Node {
                name,
                address,
                labels: SessionLabels {
                    peer: ROUTER.to_string(),
                    hop: "single_hop".to_string(),
                },
                metrics,
                handle,
                _runtime: runtime,
            }
        })
        .collect();
    for node in &nodes {
        wait_status(&node.handle.status, Duration::from_secs(30), |s| {
            s.state == State::Up
                && !s.polling
                && s.negotiated.tx_interval == Some(config.desired_min_tx)
        })
        .unwrap_or_else(|s| panic!("{}: session never came Up at 20 ms: {s:?}", node.name));
    }
    // Let the last Poll settle, then start counting from zero.
    std::thread::sleep(Duration::from_secs(2));
    let transitions_before: Vec<u64> = nodes
        .iter()
        .map(|n| n.handle.status.borrow().transitions)
        .collect();
    let frr_before = frr_session_downs(frr);
    // The largest gaps so far include the slow start: count from here.
    for node in &nodes {
        node.metrics.max_rx_gap.get_or_create(&node.labels).set(0.0);
        node.metrics.max_tx_gap.get_or_create(&node.labels).set(0.0);
    }
    let dropped_before: Vec<_> = nodes.iter().map(|n| metrics_dropped(&n.metrics)).collect();
    let stressor = stress.then(|| {
        Stressor(
            Command::new("stress-ng")
                .args(["--cpu", "2", "--timeout"])
                .arg(format!("{}s", seconds + 5))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start stress-ng"),
        )
    });
    let started = Instant::now();
    let window = Duration::from_secs(seconds);
    while started.elapsed() < window {
        std::thread::sleep(Duration::from_secs(10).min(window.saturating_sub(started.elapsed())));
        let flaps: u64 = nodes
            .iter()
            .zip(&transitions_before)
            .map(|(n, before)| n.handle.status.borrow().transitions - before)
            .sum();
        println!(
            "bfd_soak: {:>4.0} s: herald transitions so far {flaps}, load {}",
            started.elapsed().as_secs_f64(),
            load_average()
        );
    }
    drop(stressor);
    let frr_after = frr_session_downs(frr);
    let detection = Duration::from_millis(INTERVAL_MS) * u32::from(MULTIPLIER);
    println!(
        "bfd_soak: {} sessions herald <-> FRR bfdd at {INTERVAL_MS} ms x {MULTIPLIER} \
         (detection {detection:?}), {seconds} s{}:",
        nodes.len(),
        if stress {
            " under stress-ng --cpu 2"
        } else {
            ""
        }
    );
    for ((node, before), dropped_before) in
        nodes.iter().zip(&transitions_before).zip(&dropped_before)
    {
        let status = node.handle.status.borrow().clone();
        let key = node.address.to_string();
        let frr_downs =
            frr_after.get(&key).copied().unwrap_or(0) - frr_before.get(&key).copied().unwrap_or(0);
        let dropped = metrics_dropped(&node.metrics)
            .into_iter()
            .filter_map(|(reason, count)| {
                let delta = count - dropped_before.get(&reason).copied().unwrap_or(0);
                (delta > 0).then(|| format!("{reason} {delta}"))
            })
            .collect::<Vec<_>>();
        println!(
            "bfd_soak:   {} ({}): herald transitions {}, FRR session-down {frr_downs}, \
             largest gap received from FRR {:.1} ms, largest gap herald sent {:.1} ms, \
             dropped {}, state now {}",
            node.name,
            node.address,
            status.transitions - before,
            node.metrics.max_rx_gap.get_or_create(&node.labels).get() * 1000.0,
            node.metrics.max_tx_gap.get_or_create(&node.labels).get() * 1000.0,
            if dropped.is_empty() {
                "none".to_string()
            } else {
                dropped.join(", ")
            },
            status.state
        );
    }
}

/// Every drop reason herald counts, with its count.
fn metrics_dropped(metrics: &Metrics) -> BTreeMap<String, u64> {
    [
        "ttl",
        "unknown_discriminator",
        "no_session",
        "zero_your_discriminator",
        "bad_version",
        "truncated",
        "length_too_short",
        "length_exceeds_payload",
        "zero_detect_mult",
        "multipoint",
        "zero_my_discriminator",
        "poll_and_final",
        "bad_auth_section",
        "auth_not_configured",
        "admin_down",
    ]
    .into_iter()
    .map(|reason| (reason.to_string(), metrics.dropped_count(reason)))
    .collect()
}
