//! Proof that the lab harness works: real FRR and BIRD in two namespaces peer
//! over eBGP with BFD, exchange a route, fail over when the link is cut and
//! recover when it is restored; and the harness leaves nothing behind, even
//! when a test panics.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use herald_testnet::{Bird, Frr, Lab, fib, lab_or_skip};

const PREFIX: &str = "203.0.113.10/32";
const PREFIX_ADDR: &str = "203.0.113.10";

const R1_CONFIG: &str = "\
hostname r1
log stdout informational
!
bfd
 profile lab
  detect-multiplier 3
  receive-interval 100
  transmit-interval 100
 !
 peer 192.0.2.2 local-address 192.0.2.1 interface eth1
  profile lab
 !
!
router bgp 64512
 bgp router-id 192.0.2.1
 no bgp ebgp-requires-policy
 neighbor 192.0.2.2 remote-as 64601
 neighbor 192.0.2.2 timers connect 1
 neighbor 192.0.2.2 bfd profile lab
!
";

const B1_CONFIG: &str = r#"
router id 192.0.2.2;
log stderr all;
protocol device { scan time 1; }
protocol static announced {
  ipv4;
  route 203.0.113.10/32 blackhole;
}
protocol bfd {
  interface "eth1" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };
}
protocol bgp r1 {
  local 192.0.2.2 as 64601;
  neighbor 192.0.2.1 as 64512;
  bfd on;
  connect retry time 1;
  error wait time 1, 5;
  ipv4 { import all; export where proto = "announced"; };
}
"#;

/// r1 (FRR) and b1 (BIRD) on a switch namespace `sw` (bridge br0, ports
/// p-r1 and p-b1), so that downing b1's switch port cuts the path without
/// r1 seeing its own link go down: only BFD (or BGP) can notice.
struct Pair {
    r1: Frr,
    b1: Bird,
    sw: herald_testnet::Namespace,
}

fn build_pair(lab: &Lab) -> Pair {
    let sw = lab.namespace("sw").expect("sw namespace");
    let r1 = lab.namespace("r1").expect("r1 namespace");
    let b1 = lab.namespace("b1").expect("b1 namespace");
    sw.add_bridge("br0").expect("bridge");
    for (node, port) in [(&r1, "p-r1"), (&b1, "p-b1")] {
        lab.veth(node, "eth1", &sw, port).expect("veth");
        sw.attach(port, "br0").expect("attach");
    }
    r1.add_address("eth1", "192.0.2.1/24").expect("r1 address");
    b1.add_address("eth1", "192.0.2.2/24").expect("b1 address");
    r1.enable_routing().expect("r1 sysctls");
    let frr = Frr::start(&r1).expect("FRR starts");
    frr.configure(R1_CONFIG).expect("FRR takes its config");
    let bird = Bird::start(&b1, B1_CONFIG).expect("BIRD starts");
    Pair {
        r1: frr,
        b1: bird,
        sw,
    }
}

#[test]
fn frr_and_bird_exchange_a_route_over_bgp_with_bfd_and_fail_over() {
    let lab = lab_or_skip!();
    let pair = build_pair(&lab);
    let nh: IpAddr = "192.0.2.2".parse().unwrap();

    pair.r1
        .wait_bgp_established("192.0.2.2", Duration::from_secs(30))
        .expect("BGP up");
    pair.b1
        .wait_established("r1", Duration::from_secs(10))
        .expect("BIRD sees the session");
    pair.r1
        .wait_bfd_up("192.0.2.2", Duration::from_secs(30))
        .expect("BFD up");
    let routes = pair
        .r1
        .wait_route_installed(PREFIX, Duration::from_secs(30))
        .expect("route in FRR's RIB");
    assert_eq!(routes[PREFIX][0]["protocol"], "bgp", "{routes}");
    fib::wait_next_hop(
        pair.r1.namespace(),
        PREFIX_ADDR,
        nh,
        Duration::from_secs(10),
    )
    .expect("route in r1's kernel FIB");

    // FRR 8.4 re-registers the BFD session once after BGP first comes up
    // (lab.md); give that early flap time to pass before cutting the link.
    std::thread::sleep(Duration::from_secs(2));
    fib::wait_next_hop(
        pair.r1.namespace(),
        PREFIX_ADDR,
        nh,
        Duration::from_secs(30),
    )
    .expect("route back after FRR's early BFD flap");

    // BFD 100 ms x 3 detects in 300 ms; allow 5 s more for a loaded machine.
    let withdrawal = fib::measure_withdrawal(
        pair.r1.namespace(),
        PREFIX_ADDR,
        nh,
        Duration::from_millis(300) + Duration::from_secs(5),
        || pair.sw.link_down("p-b1"),
    )
    .expect("the route leaves r1's FIB after the link is cut");
    println!(
        "failover (switch port down, BFD 100 ms x 3): next hop gone from r1's FIB after {withdrawal:?}"
    );

    pair.sw.link_up("p-b1").expect("link restored");
    let recovery = fib::wait_next_hop(
        pair.r1.namespace(),
        PREFIX_ADDR,
        nh,
        Duration::from_secs(60),
    )
    .expect("the route comes back after the link is restored");
    println!("recovery (switch port up): next hop back in r1's FIB after {recovery:?}");
}

fn namespace_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn pid_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Builds a small lab with FRR running; returns its namespaces, PIDs and directory.
fn small_lab_with_daemons(lab: &Lab) -> (Vec<String>, Vec<i32>, std::path::PathBuf) {
    let a = lab.namespace("a").expect("namespace a");
    let b = lab.namespace("b").expect("namespace b");
    lab.veth(&a, "eth1", &b, "eth1").expect("veth");
    let frr = Frr::start(&a).expect("FRR starts");
    let sleeper = b.spawn("sleep", "sleep", &["600"]).expect("sleep starts");
    sleeper.freeze().expect("SIGSTOP");
    let names = lab.namespace_names();
    let pids = lab.pids();
    assert_eq!(names.len(), 2);
    assert_eq!(pids.len(), 5, "four FRR daemons and one sleeper");
    assert!(frr.daemon("bgpd").is_some_and(|p| p.is_running()));
    for name in &names {
        assert!(
            namespace_exists(name),
            "{name} should exist while the lab lives"
        );
    }
    (names, pids, lab.dir().to_owned())
}

fn assert_all_gone(names: &[String], pids: &[i32], dir: &Path) {
    for name in names {
        assert!(!namespace_exists(name), "namespace {name} left behind");
    }
    for pid in pids {
        assert!(!pid_exists(*pid), "process {pid} left behind");
    }
    assert!(!dir.exists(), "lab directory {} left behind", dir.display());
}

#[test]
fn dropping_the_lab_removes_namespaces_processes_and_files() {
    let lab = lab_or_skip!();
    let (names, pids, dir) = small_lab_with_daemons(&lab);
    drop(lab);
    assert_all_gone(&names, &pids, &dir);
}

#[test]
fn a_panicking_test_body_still_leaves_nothing_behind() {
    let lab = lab_or_skip!();
    let seen = std::sync::Mutex::new(None);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = lab;
        *seen.lock().unwrap() = Some(small_lab_with_daemons(&lab));
        panic!("a test body failing on purpose");
    }));
    assert!(outcome.is_err(), "the body should have panicked");
    let (names, pids, dir) = seen.into_inner().unwrap().expect("the body ran");
    assert_all_gone(&names, &pids, &dir);
}

#[test]
fn a_frozen_process_stays_alive_until_thawed_and_killed() {
    let lab = lab_or_skip!();
    let a = lab.namespace("a").expect("namespace a");
    let sleeper = a.spawn("sleep", "sleep", &["600"]).expect("sleep starts");
    sleeper.freeze().expect("SIGSTOP");
    let stat = format!("/proc/{}/stat", sleeper.pid());
    herald_testnet::wait_until(
        Duration::from_secs(5),
        Duration::from_millis(5),
        "SIGSTOP",
        || {
            let state = std::fs::read_to_string(&stat).unwrap_or_default();
            if state.contains(") T ") {
                Ok(())
            } else {
                Err(state)
            }
        },
    )
    .expect("the process is stopped");
    sleeper.thaw().expect("SIGCONT");
    assert!(sleeper.is_running());
    let status = sleeper.kill().expect("SIGKILL");
    assert!(!status.success());
    assert!(
        sleeper.signal(nix_sigterm()).is_err(),
        "a reaped process takes no signals"
    );
}

fn nix_sigterm() -> herald_testnet::process::Signal {
    herald_testnet::process::Signal::SIGTERM
}
