//! Proof that the lab harness works: real FRR and BIRD in two namespaces peer
//! over eBGP with BFD, exchange a route, fail over when the link is cut and
//! recover when it is restored; and the harness leaves nothing behind, even
//! when a test panics.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use herald_testnet::scenario::{self, Ecmp3};
use herald_testnet::{Frr, Gobgp, Lab, RouterDriver, Topology, fib, lab_or_skip};

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

    // Both ends, through the interface every lab router shares.
    for (node, neighbor) in [("r1", "192.0.2.2"), ("b1", "r1")] {
        let router = net.router(node).expect("a router");
        router
            .wait_established(neighbor, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{} on {node}: BGP not up: {e}", router.kind()));
    }
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

    // `birdc configure` with a new config: b1 announces a second prefix.
    let bound = topology
        .node("b1")
        .unwrap()
        .bind_source("/etc/bird/bird.conf");
    let config = std::fs::read_to_string(bound.expect("b1 binds its bird.conf")).unwrap();
    let more = config.replace(
        "route 203.0.113.10/32 blackhole;",
        "route 203.0.113.10/32 blackhole;\n  route 203.0.113.11/32 blackhole;",
    );
    assert_ne!(
        config, more,
        "the shipped bird.conf announces 203.0.113.10/32"
    );
    b1.reconfigure(&more).expect("birdc configure");
    b1.wait_route("203.0.113.11/32", Duration::from_secs(10))
        .expect("BIRD has the new static route");
    r1.wait_route_installed("203.0.113.11/32", Duration::from_secs(30))
        .expect("r1 learns the new prefix");
}

/// ecmp3 with BIRD on the nodes: r1 spreads the service over three next
/// hops; a frozen speaker (SIGSTOP: a hung node, TCP left open) and a
/// silenced one (r1 drops its packets with nftables, links stay up) each
/// leave the ECMP set on BFD detection and return when the fault ends.
#[test]
fn ecmp3_spreads_over_three_nodes_and_drops_a_frozen_or_silenced_one() {
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
    let left = scenario
        .wait_ecmp(2, Duration::from_secs(30))
        .expect("the other two nodes stay");
    assert!(!left.contains(&n2), "n2 is gone: {left:?}");

    speaker.thaw().expect("SIGCONT");
    scenario
        .wait_ecmp(3, Duration::from_secs(60))
        .expect("n2 returns after it is thawed");

    // Silent loss: r1 drops everything from n3 (nftables), both links stay up.
    let n3 = scenario.next_hop("n3").expect("n3 address");
    let drop_n3 = format!(
        "table inet lab {{\n  chain input {{\n    type filter hook input priority 0;\n    ip saddr {n3} drop\n  }}\n}}\n"
    );
    let withdrawal = fib::measure_withdrawal(
        r1,
        scenario::SERVICE_V4,
        n3,
        Duration::from_millis(300) + Duration::from_secs(5),
        || r1.nft(&drop_n3),
    )
    .expect("n3 leaves the ECMP set when its packets are dropped");
    println!(
        "failover (nftables drop at r1, BFD 100 ms x 3): n3 gone from r1's FIB after {withdrawal:?}"
    );
    r1.nft("delete table inet lab").expect("nft delete");
    scenario
        .wait_ecmp(3, Duration::from_secs(60))
        .expect("n3 returns once its packets pass again");
}

/// The herald binary these tests built: it stands for the herald images
/// when a topology runs whole.
const HERALD: &str = env!("CARGO_BIN_EXE_herald");

const NODES: [&str; 3] = ["192.0.2.11", "192.0.2.12", "192.0.2.13"];

/// A shipped topology runs as containerlab would run it: herald started on
/// every herald node from the node's `cmd`, with its bound config and
/// services file. Each of `routers` then has BGP and BFD up to all three
/// nodes and forwards the service over the three of them in its kernel FIB.
fn runs_whole(name: &str, routers: &[&str]) {
    let lab = lab_or_skip!();
    let topology = Topology::shipped(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let net = lab
        .deploy_whole(&topology, Path::new(HERALD))
        .unwrap_or_else(|e| panic!("{name} deploys whole: {e}"));
    for router in routers {
        let frr = net.frr(router).expect("an FRR router");
        for node in NODES {
            frr.wait_bgp_established(node, Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("{name}: {router} to {node}: BGP not up: {e}"));
            frr.wait_bfd_up(node, Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("{name}: {router} to {node}: BFD not up: {e}"));
        }
        let hops = herald_testnet::wait::wait_until(
            Duration::from_secs(60),
            Duration::from_millis(100),
            &format!("three next hops for {PREFIX_ADDR} in {router}'s FIB"),
            || match fib::fib_next_hops(frr.namespace(), PREFIX_ADDR) {
                Ok(hops) if hops.len() == 3 => Ok(hops),
                Ok(hops) => Err(format!("next hops {hops:?}")),
                Err(e) => Err(e.to_string()),
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        for node in NODES {
            let node: IpAddr = node.parse().unwrap();
            assert!(
                hops.contains(&node),
                "{name}: {router} lacks {node}: {hops:?}"
            );
        }
    }
    for node in ["n1", "n2", "n3"] {
        let herald = net.herald(node).expect("herald runs on the node");
        assert!(herald.is_running(), "{name}: herald on {node} exited");
    }
}

#[test]
fn ecmp3_runs_whole_from_its_file_with_herald_on_every_node() {
    runs_whole("ecmp3", &["r1"]);
}

#[test]
fn two_tors_runs_whole_with_every_node_peering_with_both_routers() {
    runs_whole("two-tors", &["r1", "r2"]);
}

/// Every herald node's bound config and services file of the shipped
/// topologies passes `herald check-config`, without warnings.
#[test]
fn the_shipped_topologies_herald_configs_pass_check_config() {
    let mut checked = 0;
    for name in ["ecmp3", "two-tors"] {
        let topology = Topology::shipped(name).unwrap();
        for node in topology
            .nodes
            .values()
            .filter(|n| n.herald_args().is_some())
        {
            let config = node.bind_source("/etc/herald/herald.yaml").unwrap();
            let services = node.bind_source("/etc/herald/services.yaml").unwrap();
            let output = std::process::Command::new(HERALD)
                .arg("check-config")
                .arg(config)
                .arg("--services")
                .arg(services)
                .output()
                .expect("run herald check-config");
            assert!(
                output.status.success() && output.stderr.is_empty(),
                "{name}/{}: {}",
                node.name,
                String::from_utf8_lossy(&output.stderr)
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
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
    RouterDriver::wait_route(&gobgp, "203.0.113.20/32", Duration::from_secs(10))
        .expect("the route in GoBGP's own RIB");
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

/// Code run with `run_in` lives in the namespace: it can bind an address
/// that exists only there and reach a listener in the peer namespace,
/// while the test's own thread cannot bind that address.
#[test]
fn run_in_puts_a_thread_and_its_sockets_in_the_namespace() {
    let lab = lab_or_skip!();
    let a = lab.namespace("a").expect("namespace a");
    let b = lab.namespace("b").expect("namespace b");
    lab.veth(&a, "eth1", &b, "eth1").expect("veth");
    a.add_address("eth1", "198.51.100.1/24").expect("a address");
    b.add_address("eth1", "198.51.100.2/24").expect("b address");
    assert!(
        std::net::TcpListener::bind("198.51.100.2:0").is_err(),
        "198.51.100.2 must not exist in the test's own namespace"
    );
    let listener = b
        .run_in(|| std::net::TcpListener::bind("198.51.100.2:0"))
        .expect("enter b")
        .expect("198.51.100.2 exists in b");
    let port = listener.local_addr().unwrap().port();
    let peer = a
        .run_in(move || {
            let stream = std::net::TcpStream::connect(("198.51.100.2", port))?;
            stream.local_addr()
        })
        .expect("enter a")
        .expect("a reaches b over the veth");
    assert_eq!(peer.ip().to_string(), "198.51.100.1");
    let (_, from) = listener.accept().expect("accept");
    assert_eq!(from, peer);
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

/// Leftovers of a test process that died without tearing down (its PID is
/// gone) are removed by `cleanup_stale`, processes inside them included.
#[test]
fn cleanup_stale_removes_namespaces_of_dead_test_processes() {
    let _lab = lab_or_skip!();
    let mut gone = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let dead_pid = gone.id();
    gone.wait().expect("reap true");
    let name = format!("hlab-{dead_pid}-0-stale");
    let dir = std::env::temp_dir().join(format!("hlab-{dead_pid}-0"));
    std::fs::create_dir_all(&dir).expect("stale dir");
    let status = std::process::Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .expect("ip netns add");
    assert!(status.success());
    let mut leftover = std::process::Command::new("ip")
        .args(["netns", "exec", &name, "sleep", "600"])
        .spawn()
        .expect("a process left in the stale namespace");
    herald_testnet::wait_until(
        Duration::from_secs(5),
        Duration::from_millis(10),
        "sleep in the namespace",
        || {
            let pids = std::process::Command::new("ip")
                .args(["netns", "pids", &name])
                .output()
                .unwrap();
            if pids.stdout.is_empty() {
                Err("no pid yet")
            } else {
                Ok(())
            }
        },
    )
    .expect("the leftover runs");

    let removed = herald_testnet::cleanup_stale();
    assert!(removed.contains(&name), "{name} not in {removed:?}");
    assert!(!namespace_exists(&name), "stale namespace survived");
    assert!(!dir.exists(), "stale directory survived");
    let status = herald_testnet::wait_until(
        Duration::from_secs(5),
        Duration::from_millis(10),
        "the leftover to die",
        || leftover.try_wait().unwrap().ok_or("still running"),
    )
    .expect("the leftover process was killed");
    assert!(!status.success());
}
