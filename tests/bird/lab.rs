//! `speaker: bird` in the lab: real BIRD 2 on the three nodes of `ecmp3`
//! (running bird-compat/bird-node.conf), each driven by a `BirdSpeaker`
//! through its control socket, and FRR as the router r1.
//!
//! - the service address reaches r1 over three ECMP next hops, with its
//!   pool community, and BFD drops a node whose link is cut well before the
//!   90 s hold timer could;
//! - a flood of 1,000 changes in 10 s costs a handful of BIRD reloads and
//!   ends in the right state at r1;
//! - BIRD killed and restarted mid-run: herald re-establishes control and
//!   r1 converges on what herald wants now;
//! - weighted ECMP: link bandwidths 2/1/1 rendered for BIRD reach r1,
//!   whose kernel route gets next-hop weights 50/25/25.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use herald::bird::{BirdSpeaker, Metrics};
use herald::config::Config;
use herald::metrics::MetricsRegistry;
use herald::model::{Announcement, Community, LinkBandwidth, RouteAttributes};
use herald::status::{BfdState, BgpState};
use herald_testnet::scenario::{self, Ecmp3};
use herald_testnet::{Bird, Namespace, fib, lab_or_skip, wait_until};

const NODE_CONF: &str = include_str!("../../bird-compat/bird-node.conf");

/// One node: herald's BIRD backend and the BIRD it drives.
struct Node {
    ns: Namespace,
    conf: String,
    speaker: BirdSpeaker,
    registry: MetricsRegistry,
    bird: Bird,
}

/// herald's config for node `index` (0-based) of ecmp3: AS 64601 + index,
/// r1 as its only peer with the router's BFD timers (100 ms x 3) and the
/// default 90 s hold time, so only BFD explains a fast withdrawal.
fn node_config(ns: &Namespace, index: u32, address: IpAddr, check: bool) -> Config {
    let dir = ns.dir();
    // The real BIRD parser as the check (BIRD's own `configure check`
    // otherwise): Bird::start keeps its config at bird/bird.conf.
    let check = if check {
        format!(
            ", check_command: [bird, -p, -c, {}]",
            dir.join("bird").join("bird.conf").display()
        )
    } else {
        String::new()
    };
    Config::from_yaml(&format!(
        "asn: {asn}\nrouter_id: {address}\nspeaker: bird\n\
         bird: {{control_socket: {socket}, include_file: {include}, coalesce: 500ms{check}}}\n\
         pools: [{{name: public, cidrs: [203.0.113.0/24], communities: ['65000:100']}}]\n\
         peers: [{{name: r1, address: 192.0.2.1, asn: {router}, \
         bfd: {{min_rx: 100ms, min_tx: 100ms, multiplier: 3}}}}]\n",
        asn = scenario::NODE_AS_BASE + 1 + index,
        socket = dir.join("bird").join("bird.ctl").display(),
        include = dir.join("herald.conf").display(),
        router = scenario::ROUTER_AS,
    ))
    .expect("node config")
}

/// Starts herald's backend first (it writes the include file), then BIRD
/// on bird-node.conf, in node `name`.
fn start_node(scenario: &Ecmp3, index: u32, name: &str, check: bool) -> Node {
    let ns = scenario.net.ns(name).expect("node namespace").clone();
    let address = scenario.next_hop(name).expect("node address");
    let config = node_config(&ns, index, address, check);
    let mut registry = MetricsRegistry::new();
    let metrics = Metrics::register(registry.registry());
    let speaker = BirdSpeaker::start(&config, metrics).expect("speaker starts");
    let conf = NODE_CONF
        .replace("192.0.2.11", &address.to_string())
        .replace(
            "/etc/bird/herald.conf",
            ns.dir().join("herald.conf").to_str().unwrap(),
        )
        .replace("log syslog all;", "log stderr all;");
    let bird = Bird::start(&ns, &conf).expect("BIRD starts on bird-node.conf");
    Node {
        ns,
        conf,
        speaker,
        registry,
        bird,
    }
}

fn service(address: &str) -> Announcement {
    let mut attributes = RouteAttributes::default();
    attributes.communities.insert(Community::new(65000, 100));
    Announcement {
        address: address.parse().unwrap(),
        attributes,
    }
}

/// The 203.0.113.0/24 host routes r1's kernel has from BGP.
fn r1_service_routes(r1: &Namespace) -> BTreeSet<String> {
    let routes = r1
        .ip_json(&["route", "show", "proto", "bgp"])
        .unwrap_or_default();
    routes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["dst"].as_str())
        .filter(|dst| dst.starts_with("203.0.113."))
        .map(|dst| dst.trim_end_matches("/32").to_string())
        .collect()
}

#[test]
fn bird_driven_by_herald_spreads_a_service_over_three_nodes_and_bfd_drops_a_cut_link() {
    let lab = lab_or_skip!();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _enter = runtime.enter();
    let scenario = Ecmp3::deploy(&lab).expect("ecmp3 deploys");
    let mut nodes = Vec::new();
    for (i, name) in scenario.nodes().iter().enumerate() {
        let node = start_node(&scenario, i as u32, name, false);
        node.ns
            .add_address("lo", &format!("{}/32", scenario::SERVICE_V4))
            .expect("service address on lo");
        // Driven from the library API: what the agent does in this mode.
        node.speaker
            .announce(&BTreeSet::from([service(scenario::SERVICE_V4)]));
        nodes.push(node);
    }
    let hops = scenario
        .wait_ecmp(3, Duration::from_secs(60))
        .expect("three ECMP next hops at r1");
    for name in scenario.nodes() {
        let nh = scenario.next_hop(&name).unwrap();
        assert!(hops.contains(&nh), "{name} ({nh}) missing from {hops:?}");
    }
    let r1 = scenario.router().expect("r1");
    let bgp = r1
        .vtysh(&format!(
            "show bgp ipv4 unicast {}/32 json",
            scenario::SERVICE_V4
        ))
        .expect("show bgp");
    assert!(
        bgp.contains("65000:100"),
        "the pool community reaches r1: {bgp}"
    );

    // Read-back: each backend sees BIRD's session and BFD session to r1.
    for node in &nodes {
        wait_until(
            Duration::from_secs(30),
            Duration::from_millis(200),
            "BIRD's session and BFD read back",
            || {
                let peers = node.speaker.peers();
                let bfd = node.speaker.bfd_sessions();
                let up = peers
                    .iter()
                    .any(|p| p.name == "r1" && p.state == BgpState::Established)
                    && bfd.iter().any(|s| {
                        s.peer == "r1"
                            && s.state == BfdState::Up
                            && s.tx_interval_us == Some(100_000)
                    });
                if up {
                    Ok(())
                } else {
                    Err(format!("{peers:?} {bfd:?}"))
                }
            },
        )
        .expect("read-back");
        assert!(
            node.registry
                .encode()
                .contains("herald_bird_bfd_up{peer=\"r1\"} 1")
        );
    }

    // FRR 8.4 may flap a new BFD session once (docs/lab.md); let it settle.
    std::thread::sleep(Duration::from_secs(2));
    scenario
        .wait_ecmp(3, Duration::from_secs(30))
        .expect("settled");
    let switch = scenario.net.ns("br-ecmp3").expect("the bridge");
    let n2 = scenario.next_hop("n2").unwrap();
    // BFD 100 ms x 3 detects in about 300 ms; the hold timer would take
    // 90 s. Allow 5 s more for a loaded machine.
    let withdrawal = fib::measure_withdrawal(
        r1.namespace(),
        scenario::SERVICE_V4,
        n2,
        Duration::from_millis(300) + Duration::from_secs(5),
        || switch.link_down("ecmp3-n2"),
    )
    .expect("n2 leaves the ECMP set on BFD detection");
    println!(
        "failover (BIRD driven by herald, bridge port down, BFD 100 ms x 3): n2 gone from \
         r1's FIB after {withdrawal:?}"
    );
    let bfd = r1.vtysh_json("show bfd peers json").expect("bfd peers");
    assert_eq!(
        herald_testnet::frr::bfd_peer_status(&bfd, &n2.to_string()).as_deref(),
        Some("down"),
        "{bfd}"
    );
    let left = scenario
        .wait_ecmp(2, Duration::from_secs(10))
        .expect("two left");
    assert!(!left.contains(&n2));
    // n2's backend reads the failure back from its BIRD: the session is
    // down, and BIRD drops the BFD session BGP had requested.
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        "n2's session down in the read-back",
        || {
            let peers = nodes[1].speaker.peers();
            let bfd = nodes[1].speaker.bfd_sessions();
            let down = peers
                .iter()
                .any(|p| p.name == "r1" && p.state != BgpState::Established)
                && !bfd
                    .iter()
                    .any(|s| s.peer == "r1" && s.state == BfdState::Up);
            if down {
                Ok(())
            } else {
                Err(format!("{peers:?} {bfd:?}"))
            }
        },
    )
    .expect("read-back of the failure");
    let metrics = nodes[1].registry.encode();
    assert!(
        metrics.contains("herald_bird_bgp_established{peer=\"r1\"} 0")
            && metrics.contains("herald_bird_bfd_up{peer=\"r1\"} 0"),
        "{metrics}"
    );

    switch.link_up("ecmp3-n2").expect("link back");
    scenario
        .wait_ecmp(3, Duration::from_secs(60))
        .expect("n2 returns");
    for node in nodes {
        runtime.block_on(node.speaker.stop());
    }
}

/// The backend renders the link-bandwidth community for BIRD, BIRD sends
/// it, and FRR weighs the next hops by it: 2,000,000 / 1,000,000 /
/// 1,000,000 bytes/s from n1 / n2 / n3 give r1 kernel weights 50/25/25.
#[test]
fn bird_driven_by_herald_sends_the_link_bandwidth_and_r1_weighs_its_next_hops() {
    let lab = lab_or_skip!();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _enter = runtime.enter();
    let scenario = Ecmp3::deploy(&lab).expect("ecmp3 deploys");
    let mut nodes = Vec::new();
    for (i, (name, units)) in scenario.nodes().iter().zip([2u32, 1, 1]).enumerate() {
        let node = start_node(&scenario, i as u32, name, true);
        node.ns
            .add_address("lo", &format!("{}/32", scenario::SERVICE_V4))
            .expect("service address on lo");
        let mut announcement = service(scenario::SERVICE_V4);
        announcement.attributes.link_bandwidth = Some(LinkBandwidth::new(
            scenario::NODE_AS_BASE + 1 + i as u32,
            units * 1_000_000,
            true,
        ));
        node.speaker.announce(&BTreeSet::from([announcement]));
        nodes.push(node);
    }
    scenario
        .wait_ecmp(3, Duration::from_secs(60))
        .expect("three ECMP next hops at r1");
    let r1 = scenario.router().expect("r1");
    let want: Vec<(IpAddr, u64)> = scenario
        .nodes()
        .iter()
        .zip([50, 25, 25])
        .map(|(name, weight)| (scenario.next_hop(name).unwrap(), weight))
        .collect();
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        "r1's kernel weights 50/25/25",
        || {
            let mut got = fib::fib_weights(r1.namespace(), scenario::SERVICE_V4)
                .map_err(|e| e.to_string())?;
            got.sort();
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    )
    .expect("weights in proportion to the link bandwidths");
    let bgp = r1
        .vtysh(&format!(
            "show bgp ipv4 unicast {}/32",
            scenario::SERVICE_V4
        ))
        .expect("show bgp");
    println!("weighted ECMP through BIRD: r1 kernel weights {want:?}; r1's paths:\n{bgp}");
    assert!(bgp.contains("LB:64601:2000000"), "{bgp}");

    // The most skewed weights herald sends (a node weight of 1000 beside
    // 1): FRR scales the weights to its own range; a node with the least
    // weight must stay a next hop rather than be rounded away.
    let mut skewed = service(scenario::SERVICE_V4);
    skewed.attributes.link_bandwidth = Some(LinkBandwidth::new(
        scenario::NODE_AS_BASE + 1,
        1000 * 1_000_000,
        true,
    ));
    nodes[0].speaker.announce(&BTreeSet::from([skewed]));
    let n1 = scenario.next_hop("n1").unwrap();
    let weights = wait_until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        "r1 to weigh n1 far above the others",
        || {
            let got = fib::fib_weights(r1.namespace(), scenario::SERVICE_V4)
                .map_err(|e| e.to_string())?;
            let n1_weight = got.iter().find(|(hop, _)| *hop == n1).map(|(_, w)| *w);
            if n1_weight.is_some_and(|w| w > 50) {
                Ok(got)
            } else {
                Err(format!("{got:?}"))
            }
        },
    )
    .expect("the skewed weights reach r1's kernel");
    println!("weighted ECMP through BIRD, 1000:1:1: r1 kernel weights {weights:?}");
    assert_eq!(weights.len(), 3, "every node stays a next hop: {weights:?}");
    assert!(weights.iter().all(|(_, w)| *w >= 1), "{weights:?}");
    for node in nodes {
        runtime.block_on(node.speaker.stop());
    }
}

#[test]
fn a_flood_of_1000_changes_in_10_s_costs_a_handful_of_reloads_and_converges() {
    let lab = lab_or_skip!();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _enter = runtime.enter();
    let scenario = Ecmp3::deploy(&lab).expect("ecmp3 deploys");
    let node = start_node(&scenario, 0, "n1", false);
    let r1 = scenario.net.ns("r1").expect("r1").clone();
    node.speaker
        .announce(&BTreeSet::from([service(scenario::SERVICE_V4)]));
    wait_until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        "the service at r1",
        || {
            let routes = r1_service_routes(&r1);
            if routes.contains(scenario::SERVICE_V4) {
                Ok(())
            } else {
                Err(format!("{routes:?}"))
            }
        },
    )
    .expect("initial state");
    let before = node.speaker.status().reloads;

    // 1,000 changes spread over 10 s, every set different from all the
    // others (so no reload is saved by a repeat): one address walks along
    // 203.0.113.20-219, another steps through .230-.234 every 200 changes.
    // On a slow machine the loop catches up instead of stretching the flood.
    let start = Instant::now();
    let mut last = BTreeSet::new();
    for i in 0..1000u32 {
        let due = start + Duration::from_millis(u64::from(i) * 10);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        last = BTreeSet::from([
            service(scenario::SERVICE_V4),
            service(&format!("203.0.113.{}", 20 + i % 200)),
            service(&format!("203.0.113.{}", 230 + i / 200)),
        ]);
        node.speaker.announce(&last);
    }
    let flood = start.elapsed();
    let wanted: BTreeSet<String> = last.iter().map(|a| a.address.to_string()).collect();
    let converged = wait_until(
        Duration::from_secs(60),
        Duration::from_millis(50),
        "r1 to hold exactly the last set",
        || {
            let routes = r1_service_routes(&r1);
            if routes == wanted {
                Ok(start.elapsed())
            } else {
                Err(format!("{routes:?}"))
            }
        },
    )
    .expect("r1 converges on the last set");
    let reloads = node.speaker.status().reloads - before;
    println!(
        "flood: 1000 changes in {flood:?}; BIRD reloaded {reloads} times; r1 held the final \
         set {converged:?} after the flood started"
    );
    let metrics = node.registry.encode();
    for line in metrics.lines().filter(|l| l.starts_with("herald_bird_")) {
        println!("  {line}");
    }
    let routes = node
        .bird
        .birdc(&["show", "route", "protocol", "herald4"])
        .expect("birdc");
    assert_eq!(
        routes.matches("blackhole").count(),
        3,
        "BIRD holds the last set only: {routes}"
    );
    // With bird.coalesce 500 ms BIRD reloads at most once per 2 s: about 6
    // for 10 s. A handful, not a thousand.
    assert!(
        (1..=8).contains(&reloads),
        "{reloads} reloads for 1000 changes"
    );
    runtime.block_on(node.speaker.stop());
}

#[test]
fn bird_restarted_mid_run_is_reconnected_and_converges() {
    let lab = lab_or_skip!();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _enter = runtime.enter();
    let scenario = Ecmp3::deploy(&lab).expect("ecmp3 deploys");
    let node = start_node(&scenario, 0, "n1", true);
    let r1 = scenario.net.ns("r1").expect("r1").clone();
    let first = BTreeSet::from([service(scenario::SERVICE_V4)]);
    node.speaker.announce(&first);
    let holds = |wanted: &[&str]| {
        let wanted: BTreeSet<String> = wanted.iter().map(|s| s.to_string()).collect();
        let r1 = r1.clone();
        move || {
            let routes = r1_service_routes(&r1);
            if routes == wanted {
                Ok(())
            } else {
                Err(format!("{routes:?}"))
            }
        }
    };
    wait_until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        "r1 holds the first set",
        holds(&[scenario::SERVICE_V4]),
    )
    .expect("first set");
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        "connected",
        || {
            if node.speaker.status().connected {
                Ok(())
            } else {
                Err(format!("{:?}", node.speaker.status()))
            }
        },
    )
    .expect("connected");

    // BIRD dies; herald wants more while it is gone.
    node.bird.process().kill().expect("SIGKILL BIRD");
    let second = BTreeSet::from([service(scenario::SERVICE_V4), service("203.0.113.11")]);
    node.speaker.announce(&second);
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        "herald to notice BIRD is gone",
        || {
            let status = node.speaker.status();
            if !status.connected && status.last_error.is_some() {
                Ok(status)
            } else {
                Err(format!("{status:?}"))
            }
        },
    )
    .map(|status| println!("while BIRD is down: {:?}", status.last_error))
    .expect("the failure is reported");

    // BIRD comes back on the same config and socket.
    let started = Instant::now();
    let _bird = Bird::start(&node.ns, &node.conf).expect("BIRD restarts");
    wait_until(
        Duration::from_secs(90),
        Duration::from_millis(100),
        "r1 holds the second set",
        holds(&[scenario::SERVICE_V4, "203.0.113.11"]),
    )
    .expect("state converges after BIRD's restart");
    println!(
        "BIRD restart: r1 held herald's current set {:?} after BIRD came back",
        started.elapsed()
    );
    let status = node.speaker.status();
    assert!(status.connected, "{status:?}");
    assert!(status.last_error.is_none(), "{status:?}");
    let metrics = node.registry.encode();
    assert!(
        metrics.contains("herald_bird_errors_total{reason=\"connect\"}")
            || metrics.contains("herald_bird_errors_total{reason=\"io\"}"),
        "{metrics}"
    );
    runtime.block_on(node.speaker.stop());
}
