//! Proof that the lab harness works: real FRR and BIRD in two namespaces peer
//! over eBGP with BFD, exchange a route, fail over when the link is cut and
//! recover when it is restored; and the harness leaves nothing behind, even
//! when a test panics.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use herald_testnet::scenario::{self, Ecmp3};
use herald_testnet::{Frr, Gobgp, Lab, Topology, fib, lab_or_skip};

const PREFIX: &str = "203.0.113.10/32";
const PREFIX_ADDR: &str = "203.0.113.10";

/// The proof: bfd-pair (testnet/topologies/bfd-pair.clab.yml) puts FRR r1
/// and BIRD b1 on a bridge. Downing b1's bridge port cuts the path without
/// r1 losing carrier, so only BFD (or, much later, the hold timer) notices.
#[test]
fn frr_and_bird_exchange_a_route_over_bgp_with_bfd_and_fail_over() {
    let lab = lab_or_skip!();
    let topology = Topology::shipped("bfd-pair").expect("bfd-pair parses");
    let net = lab.deploy(&topology).expect("bfd-pair deploys");
    let r1 = net.frr("r1").expect("r1 runs FRR");
    let b1 = net.bird("b1").expect("b1 runs BIRD");
    let switch = net.ns("br-bfdpair").expect("the bridge namespace");
    let nh: IpAddr = "192.0.2.2".parse().unwrap();

    r1.wait_bgp_established("192.0.2.2", Duration::from_secs(30))
        .expect("BGP up");
    b1.wait_established("r1", Duration::from_secs(10))
        .expect("BIRD sees the session");
    r1.wait_bfd_up("192.0.2.2", Duration::from_secs(30))
        .expect("BFD up");
    let routes = r1
        .wait_route_installed(PREFIX, Duration::from_secs(30))
        .expect("route in FRR's RIB");
    assert_eq!(routes[PREFIX][0]["protocol"], "bgp", "{routes}");
    assert!(b1.show_route().expect("birdc show route").contains(PREFIX));
    fib::wait_next_hop(r1.namespace(), PREFIX_ADDR, nh, Duration::from_secs(10))
        .expect("route in r1's kernel FIB");

    // FRR 8.4 may flap a new BFD session once right after BGP comes up
    // (docs/lab.md); let that pass so the measurement sees a settled session.
    std::thread::sleep(Duration::from_secs(2));
    fib::wait_next_hop(r1.namespace(), PREFIX_ADDR, nh, Duration::from_secs(30))
        .expect("route present before the fault");

    // BFD 100 ms x 3 detects in about 300 ms; allow 5 s more for a loaded machine.
    let withdrawal = fib::measure_withdrawal(
        r1.namespace(),
        PREFIX_ADDR,
        nh,
        Duration::from_millis(300) + Duration::from_secs(5),
        || switch.link_down("bfdpair-b1"),
    )
    .expect("the route leaves r1's FIB after the link is cut");
    println!(
        "failover (bridge port down, BFD 100 ms x 3): next hop gone from r1's FIB after {withdrawal:?}"
    );
    let bfd = r1
        .vtysh_json("show bfd peers json")
        .expect("show bfd peers");
    assert_eq!(
        herald_testnet::frr::bfd_peer_status(&bfd, "192.0.2.2").as_deref(),
        Some("down"),
        "BFD should have noticed: {bfd}"
    );

    switch.link_up("bfdpair-b1").expect("link restored");
    let recovery = fib::wait_next_hop(r1.namespace(), PREFIX_ADDR, nh, Duration::from_secs(60))
        .expect("the route comes back after the link is restored");
    println!("recovery (bridge port up): next hop back in r1's FIB after {recovery:?}");
}

/// ecmp3 with BIRD on the nodes: r1 spreads the service over three next
/// hops, and a frozen speaker (SIGSTOP: a hung node, TCP left open) drops
/// out of the ECMP set on BFD detection, then returns when thawed.
#[test]
fn ecmp3_spreads_over_three_nodes_and_drops_a_frozen_one() {
    let lab = lab_or_skip!();
    let scenario = Ecmp3::with_bird(&lab).expect("ecmp3 with BIRD speakers");
    let hops = scenario
        .wait_ecmp(3, Duration::from_secs(60))
        .expect("three ECMP next hops");
    for node in scenario.nodes() {
        let nh = scenario.next_hop(&node).expect("node address");
        assert!(hops.contains(&nh), "{node} ({nh}) missing from {hops:?}");
    }
    let r1 = scenario.net.ns("r1").expect("r1");
    let route = scenario
        .net
        .ns("client")
        .expect("client")
        .ip(&["route", "get", scenario::SERVICE_V4])
        .expect("the client has a route to the service");
    assert!(route.contains("via 198.51.100.1"), "{route}");

    std::thread::sleep(Duration::from_secs(2));
    scenario
        .wait_ecmp(3, Duration::from_secs(30))
        .expect("settled");
    let n2 = scenario.next_hop("n2").expect("n2 address");
    let speaker = scenario.speakers["n2"].process().clone();
    let withdrawal = fib::measure_withdrawal(
        r1,
        scenario::SERVICE_V4,
        n2,
        Duration::from_millis(300) + Duration::from_secs(5),
        || speaker.freeze(),
    )
    .expect("n2 leaves the ECMP set");
    println!(
        "failover (speaker SIGSTOP, BFD 100 ms x 3): n2 gone from r1's FIB after {withdrawal:?}"
    );
    let left = fib::fib_next_hops(r1, scenario::SERVICE_V4).expect("r1 FIB");
    assert_eq!(left.len(), 2, "the other two nodes stay: {left:?}");

    speaker.thaw().expect("SIGCONT");
    scenario
        .wait_ecmp(3, Duration::from_secs(60))
        .expect("n2 returns after it is thawed");
}

/// GoBGP announces a route added through its CLI (origin igp) to FRR.
#[test]
fn gobgp_announces_a_route_added_with_its_cli_to_frr() {
    let lab = lab_or_skip!();
    let r1 = lab.namespace("r1").expect("r1");
    let g1 = lab.namespace("g1").expect("g1");
    lab.veth(&r1, "eth1", &g1, "eth1").expect("veth");
    r1.add_address("eth1", "192.0.2.1/24").expect("r1 address");
    g1.add_address("eth1", "192.0.2.3/24").expect("g1 address");
    let frr = Frr::start(&r1).expect("FRR starts");
    frr.configure(
        "router bgp 64512\n bgp router-id 192.0.2.1\n no bgp ebgp-requires-policy\n \
         neighbor 192.0.2.3 remote-as 64701\n neighbor 192.0.2.3 timers connect 1\n",
    )
    .expect("FRR config");
    let gobgp = Gobgp::start(
        &g1,
        "[global.config]\n  as = 64701\n  router-id = \"192.0.2.3\"\n\n\
         [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"192.0.2.1\"\n    peer-as = 64512\n",
        herald_testnet::gobgp::DEFAULT_API_PORT,
    )
    .expect("gobgpd starts");
    gobgp
        .wait_established("192.0.2.1", Duration::from_secs(60))
        .expect("GoBGP session up");
    gobgp.add_route("203.0.113.20/32").expect("rib add");
    let routes = frr
        .wait_route_installed("203.0.113.20/32", Duration::from_secs(30))
        .expect("FRR installs GoBGP's route");
    assert_eq!(routes["203.0.113.20/32"][0]["protocol"], "bgp", "{routes}");
    assert!(
        gobgp
            .neighbors()
            .expect("gobgp neighbor")
            .contains("192.0.2.1")
    );
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
