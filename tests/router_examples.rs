//! The router configuration examples of docs/routers/ (FRR and BIRD), loaded
//! into the real daemons in the lab, with herald's own BGP speaker and BFD as
//! two nodes: the sessions come up through the example's dynamic-neighbour
//! range, BFD comes up with the example's profile, both nodes' /32 becomes one
//! ECMP route in the router's FIB, a prefix outside the pool is refused, and
//! a node that announces GRACEFUL_SHUTDOWN (65535:0) gets local-preference 0
//! and leaves the ECMP set while the other keeps the service.
//!
//! Topology: the examples' own addresses (documentation ranges), so the lab
//! substitutes nothing and the files load byte for byte as published:
//!
//! ```text
//!   r1: FRR or BIRD, AS 64512, br0 192.0.2.1/24
//!    |-- p1 ---- eth0  n1: herald, AS 64601, 192.0.2.11/24
//!    `-- p2 ---- eth0  n2: herald, AS 64601, 192.0.2.12/24
//! ```
//!
//! Needs root, iproute2, FRR and BIRD 2 (herald-testnet checks); skipped with
//! a printed reason otherwise, failed when CI=true.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use herald::bfd::SessionConfig as BfdConfig;
use herald::bfd::packet::State;
use herald::bfd::runtime::{BfdRuntime, RuntimeOptions, SessionSpec};
use herald::bgp::metrics::Metrics;
use herald::bgp::session::{SessionConfig, SessionHandle};
use herald::model::{Announcement, Community, RouteAttributes};
use herald_testnet::fib::fib_next_hops;
use herald_testnet::{Bird, Frr, Lab, Namespace, lab_or_skip, wait_until};

const ROUTER: &str = "192.0.2.1";
const NODES: [&str; 2] = ["192.0.2.11", "192.0.2.12"];
const SERVICE: &str = "203.0.113.10";
const OUTSIDE_POOL: &str = "198.51.100.10";
const BOUND: Duration = Duration::from_secs(30);

fn example(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs/routers")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// One herald node: a BGP session and a BFD session to the router, both
/// inside the node's namespace (threads that entered it).
struct Node {
    bgp: Option<SessionHandle>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<herald_testnet::Result<()>>>,
    bfd: Option<herald::bfd::runtime::SessionHandle>,
    _bfd_runtime: BfdRuntime,
}

impl Node {
    fn start(ns: &Namespace, address: &str) -> Node {
        let cfg = SessionConfig {
            name: "tor".to_string(),
            peer: SocketAddr::new(ip(ROUTER), 179),
            local_as: 64601,
            peer_as: 64512,
            router_id: address.parse().unwrap(),
            hold_time: 9,
            md5_key: None,
            source: Some(ip(address)),
            ebgp_multihop: 1,
            ttl_security: false,
            passive: false,
            extended_message: false,
            graceful_restart: None,
            next_hop_v4: None,
            next_hop_v6: None,
            connect_retry: Duration::from_secs(2),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(2),
        };
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = ns.spawn_thread(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let handle = SessionHandle::spawn(cfg, Arc::new(Metrics::default()), None);
                handle_tx.send(handle).expect("hand over the session");
                let _ = stop_rx.await;
            });
        });
        let bgp = handle_rx.recv_timeout(BOUND).expect("BGP session started");

        let metrics = herald::bfd::metrics::Metrics::default();
        let runtime = ns
            .run_in(move || BfdRuntime::spawn(RuntimeOptions::default(), metrics))
            .expect("enter the namespace")
            .expect("BFD runtime");
        // herald's example config: 50 ms x 3, as the router examples.
        let config = BfdConfig {
            desired_min_tx: Duration::from_millis(50),
            required_min_rx: Duration::from_millis(50),
            detect_mult: 3,
        };
        let mut spec = SessionSpec::single_hop(ip(ROUTER), config);
        spec.local = Some(ip(address));
        spec.interface = Some("eth0".to_string());
        let bfd = runtime.add_session(spec).expect("BFD session");
        Node {
            bgp: Some(bgp),
            stop: Some(stop),
            thread: Some(thread),
            bfd: Some(bfd),
            _bfd_runtime: runtime,
        }
    }

    fn bgp(&self) -> &SessionHandle {
        self.bgp.as_ref().expect("running")
    }

    fn wait_bfd_up(&self, node: &str) {
        let status = &self.bfd.as_ref().unwrap().status;
        wait_until(
            BOUND,
            Duration::from_millis(20),
            &format!("BFD {node} -> {ROUTER} Up"),
            || {
                let now = status.borrow().clone();
                if now.state == State::Up && now.remote_state == State::Up {
                    Ok(now.negotiated)
                } else {
                    Err(format!("{now:?}"))
                }
            },
        )
        .unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        drop(self.bgp.take());
        drop(self.bfd.take());
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The router namespace with its bridge, and the two node namespaces.
struct Rack {
    router: Namespace,
    nodes: Vec<Namespace>,
}

fn rack(lab: &Lab) -> Rack {
    let router = lab.namespace("r1").unwrap();
    router.add_bridge("br0").unwrap();
    router.add_address("br0", &format!("{ROUTER}/24")).unwrap();
    let mut nodes = Vec::new();
    for (i, address) in NODES.iter().enumerate() {
        let node = lab.namespace(&format!("n{}", i + 1)).unwrap();
        let port = format!("p{}", i + 1);
        lab.veth(&router, &port, &node, "eth0").unwrap();
        router.attach(&port, "br0").unwrap();
        node.add_address("eth0", &format!("{address}/24")).unwrap();
        nodes.push(node);
    }
    router.enable_routing().unwrap();
    Rack { router, nodes }
}

fn announcement(address: &str, attributes: &RouteAttributes) -> Announcement {
    Announcement {
        address: address.parse().unwrap(),
        attributes: attributes.clone(),
    }
}

/// Both nodes announce SERVICE and a prefix outside the pool (which the
/// router must refuse), with the same attributes: one UPDATE carries both, so
/// once SERVICE has arrived the refused prefix was processed too.
fn announce(nodes: &[Node]) {
    let mut attributes = RouteAttributes::default();
    attributes.communities.insert(Community::new(65000, 100));
    for node in nodes {
        node.bgp().announce(&[
            announcement(OUTSIDE_POOL, &attributes),
            announcement(SERVICE, &attributes),
        ]);
    }
}

/// Waits until the router's FIB route to `prefix` has exactly `want` as its
/// next hops.
fn wait_fib(router: &Namespace, prefix: &str, want: &[&str]) -> Duration {
    let start = Instant::now();
    let mut want: Vec<IpAddr> = want.iter().map(|a| ip(a)).collect();
    want.sort();
    wait_until(
        BOUND,
        Duration::from_millis(50),
        &format!("{prefix} via {want:?} in the router's FIB"),
        || {
            let mut hops = fib_next_hops(router, prefix).map_err(|e| e.to_string())?;
            hops.sort();
            if hops == want {
                Ok(())
            } else {
                Err(format!("{hops:?}"))
            }
        },
    )
    .unwrap();
    start.elapsed()
}

#[test]
fn the_frr_example_gives_ecmp_bfd_a_pool_filter_and_gshut_local_pref_zero() {
    let lab = lab_or_skip!();
    let rack = rack(&lab);
    let frr = Frr::start(&rack.router).unwrap();
    frr.configure(&example("frr.conf"))
        .expect("docs/routers/frr.conf loads into FRR unchanged");
    let nodes: Vec<Node> = rack
        .nodes
        .iter()
        .zip(NODES)
        .map(|(ns, address)| Node::start(ns, address))
        .collect();
    for (node, address) in nodes.iter().zip(NODES) {
        frr.wait_bgp_established(address, BOUND).unwrap();
        frr.wait_bfd_up(address, BOUND).unwrap();
        node.wait_bfd_up(address);
    }
    announce(&nodes);

    // ECMP: one route, both nodes as next hops.
    let took = wait_fib(&rack.router, &format!("{SERVICE}/32"), &NODES);
    println!("frr: ECMP route over both nodes after {took:?}");
    let table = frr
        .vtysh_json(&format!("show bgp ipv4 unicast {SERVICE}/32 json"))
        .unwrap();
    let paths = table["paths"].as_array().expect("paths");
    assert_eq!(paths.len(), 2, "{table}");
    assert!(
        paths
            .iter()
            .all(|p| p["multipath"] == true || p["bestpath"]["overall"] == true),
        "both paths in the multipath set: {table}"
    );

    // The pool filter refused the prefix outside 203.0.113.0/24.
    let outside = frr
        .vtysh_json(&format!("show bgp ipv4 unicast {OUTSIDE_POOL}/32 json"))
        .unwrap();
    assert!(
        outside["paths"].as_array().is_none_or(|p| p.is_empty()),
        "{OUTSIDE_POOL} must be refused by HERALD-IN: {outside}"
    );
    assert!(
        fib_next_hops(&rack.router, &format!("{OUTSIDE_POOL}/32"))
            .unwrap()
            .is_empty()
    );

    // n2 drains: GRACEFUL_SHUTDOWN, local-preference 0, out of the ECMP set.
    nodes[1].bgp().set_graceful_shutdown(true);
    let took = wait_fib(&rack.router, &format!("{SERVICE}/32"), &NODES[..1]);
    println!("frr: n2 out of the ECMP set {took:?} after GRACEFUL_SHUTDOWN");
    let table = frr
        .vtysh_json(&format!("show bgp ipv4 unicast {SERVICE}/32 json"))
        .unwrap();
    let paths = table["paths"].as_array().expect("paths");
    let path_from = |node: &str| {
        paths
            .iter()
            .find(|p| p["peer"]["peerId"] == node || p["nexthops"][0]["ip"] == node)
            .unwrap_or_else(|| panic!("no path from {node}: {table}"))
    };
    let drained = path_from(NODES[1]);
    assert_eq!(drained["locPrf"], 0, "{drained}");
    assert!(
        drained["community"]["list"]
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c == "gracefulShutdown" || c == "65535:0")),
        "{drained}"
    );
    assert_ne!(path_from(NODES[0])["locPrf"], 0, "{table}");

    // Back from the drain: both next hops again.
    nodes[1].bgp().set_graceful_shutdown(false);
    wait_fib(&rack.router, &format!("{SERVICE}/32"), &NODES);
}

/// BIRD's routes for `prefix` as (next hop, local-preference) pairs, from
/// `birdc show route PREFIX all`.
fn bird_paths(bird: &Bird, prefix: &str) -> Vec<(IpAddr, Option<u32>)> {
    let text = bird
        .birdc(&["show", "route", prefix, "all"])
        .unwrap_or_default();
    let mut paths: Vec<(Option<IpAddr>, Option<u32>)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("unicast [") {
            paths.push((None, None));
        } else if let (Some(last), Some(rest)) = (paths.last_mut(), line.strip_prefix("via ")) {
            last.0 = rest.split_whitespace().next().and_then(|a| a.parse().ok());
        } else if let (Some(last), Some(rest)) =
            (paths.last_mut(), line.strip_prefix("BGP.local_pref: "))
        {
            last.1 = rest.trim().parse().ok();
        }
    }
    paths
        .into_iter()
        .filter_map(|(hop, pref)| hop.map(|h| (h, pref)))
        .collect()
}

#[test]
fn the_bird_example_gives_ecmp_bfd_a_pool_filter_and_gshut_local_pref_zero() {
    let lab = lab_or_skip!();
    let rack = rack(&lab);
    let bird = Bird::start(&rack.router, &example("bird.conf"))
        .expect("docs/routers/bird.conf loads into BIRD unchanged");
    let nodes: Vec<Node> = rack
        .nodes
        .iter()
        .zip(NODES)
        .map(|(ns, address)| Node::start(ns, address))
        .collect();
    for (node, address) in nodes.iter().zip(NODES) {
        node.wait_bfd_up(address);
    }
    announce(&nodes);

    let took = wait_fib(&rack.router, &format!("{SERVICE}/32"), &NODES);
    println!("bird: ECMP route over both nodes after {took:?}");
    let protocols = bird.show_protocols().unwrap();
    assert_eq!(
        protocols
            .lines()
            .filter(|l| l.starts_with("herald_") && l.contains("Established"))
            .count(),
        2,
        "two dynamic sessions from the neighbor range:\n{protocols}"
    );
    let paths = bird_paths(&bird, &format!("{SERVICE}/32"));
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(
        bird_paths(&bird, &format!("{OUTSIDE_POOL}/32")).is_empty(),
        "{OUTSIDE_POOL} must be refused by herald_in"
    );
    assert!(
        fib_next_hops(&rack.router, &format!("{OUTSIDE_POOL}/32"))
            .unwrap()
            .is_empty()
    );

    nodes[1].bgp().set_graceful_shutdown(true);
    let took = wait_fib(&rack.router, &format!("{SERVICE}/32"), &NODES[..1]);
    println!("bird: n2 out of the ECMP set {took:?} after GRACEFUL_SHUTDOWN");
    let paths = bird_paths(&bird, &format!("{SERVICE}/32"));
    let pref = |node: &str| {
        paths
            .iter()
            .find(|(hop, _)| *hop == ip(node))
            .unwrap_or_else(|| panic!("no path via {node}: {paths:?}"))
            .1
    };
    assert_eq!(pref(NODES[1]), Some(0), "{paths:?}");
    assert_ne!(pref(NODES[0]), Some(0), "{paths:?}");

    nodes[1].bgp().set_graceful_shutdown(false);
    wait_fib(&rack.router, &format!("{SERVICE}/32"), &NODES);
}
