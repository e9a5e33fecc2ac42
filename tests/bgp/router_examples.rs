//! The router configuration examples of docs/routers/ (FRR and BIRD), loaded
//! into the real daemons in the lab, with herald's own BGP speaker and BFD as
//! two nodes, over IPv4 and IPv6: the sessions come up through the example's
//! dynamic-neighbour ranges, BFD comes up with the example's profile, both
//! nodes' /32 and /128 become ECMP routes in the router's FIB, prefixes
//! outside the pool are refused, and a node that announces GRACEFUL_SHUTDOWN
//! (65535:0) gets local-preference 0 and leaves the ECMP sets while the other
//! keeps the service. With the link-bandwidth community herald sends for a
//! weighted pool (weights 2 and 1), the router's kernel route weights the
//! next hops 2:1 (FRR by itself, BIRD through the example's import filter).
//!
//! Topology: the examples' own addresses (documentation ranges), so the lab
//! substitutes nothing and the files load byte for byte as published:
//!
//! ```text
//!   r1: FRR or BIRD, AS 64512, br0 192.0.2.1/24 + 2001:db8:a::1/64
//!    |-- p1 ---- eth0  n1: herald, AS 64601, 192.0.2.11 + 2001:db8:a::11
//!    `-- p2 ---- eth0  n2: herald, AS 64601, 192.0.2.12 + 2001:db8:a::12
//! ```
//!
//! Each node runs one BGP session per family (as deploy/overlays/dual-stack
//! configures) and a BFD session beside each.
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
use herald::model::{Announcement, Community, LinkBandwidth, RouteAttributes};
use herald_testnet::fib::{fib_next_hops, fib_weights};
use herald_testnet::{Bird, Frr, Lab, Namespace, lab_or_skip, wait_until};

const ROUTER: &str = "192.0.2.1";
const ROUTER6: &str = "2001:db8:a::1";
const NODES: [&str; 2] = ["192.0.2.11", "192.0.2.12"];
const NODES6: [&str; 2] = ["2001:db8:a::11", "2001:db8:a::12"];
const SERVICE: &str = "203.0.113.10";
const SERVICE6: &str = "2001:db8:ffff::10";
const OUTSIDE_POOL: &str = "198.51.100.10";
const OUTSIDE_POOL6: &str = "2001:db8:eeee::10";
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

/// One BGP session of a node, on a thread inside the node's namespace.
struct Bgp {
    handle: Option<SessionHandle>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<herald_testnet::Result<()>>>,
}

impl Bgp {
    fn start(ns: &Namespace, router: &str, local: &str, router_id: &str) -> Bgp {
        let cfg = SessionConfig::new(
            format!("tor-{router}"),
            SocketAddr::new(ip(router), 179),
            64601,
            64512,
            router_id.parse().unwrap(),
        )
        .hold_time(9)
        .source(ip(local))
        .connect_retry(Duration::from_secs(2))
        .backoff(Duration::from_millis(500), Duration::from_secs(2));
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = ns.spawn_thread(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let handle = SessionHandle::spawn(cfg, Arc::new(Metrics::default()));
                handle_tx.send(handle).expect("hand over the session");
                let _ = stop_rx.await;
            });
        });
        let handle = handle_rx.recv_timeout(BOUND).expect("BGP session started");
        Bgp {
            handle: Some(handle),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn session(&self) -> &SessionHandle {
        self.handle.as_ref().expect("running")
    }
}

impl Drop for Bgp {
    fn drop(&mut self) {
        drop(self.handle.take());
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One herald node: a BGP and a BFD session to the router per family.
struct Node {
    v4: Bgp,
    v6: Bgp,
    bfd: Vec<herald::bfd::runtime::SessionHandle>,
    _bfd_runtime: BfdRuntime,
}

impl Node {
    fn start(ns: &Namespace, address: &str, address6: &str) -> Node {
        let v4 = Bgp::start(ns, ROUTER, address, address);
        let v6 = Bgp::start(ns, ROUTER6, address6, address);
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
        let bfd = [(ROUTER, address), (ROUTER6, address6)]
            .into_iter()
            .map(|(peer, local)| {
                let mut spec = SessionSpec::single_hop(ip(peer), config);
                spec.local = Some(ip(local));
                spec.interface = Some("eth0".to_string());
                runtime.add_session(spec).expect("BFD session")
            })
            .collect();
        Node {
            v4,
            v6,
            bfd,
            _bfd_runtime: runtime,
        }
    }

    fn sessions(&self) -> [&SessionHandle; 2] {
        [self.v4.session(), self.v6.session()]
    }

    fn wait_bfd_up(&self, node: &str) {
        for session in &self.bfd {
            wait_until(
                BOUND,
                Duration::from_millis(20),
                &format!("BFD {node} -> router Up"),
                || {
                    let now = session.status.borrow().clone();
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

    fn set_graceful_shutdown(&self, on: bool) {
        for session in self.sessions() {
            session.set_graceful_shutdown(on);
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
    router.add_address("br0", &format!("{ROUTER6}/64")).unwrap();
    let mut nodes = Vec::new();
    for (i, (address, address6)) in NODES.iter().zip(NODES6).enumerate() {
        let node = lab.namespace(&format!("n{}", i + 1)).unwrap();
        let port = format!("p{}", i + 1);
        lab.veth(&router, &port, &node, "eth0").unwrap();
        router.attach(&port, "br0").unwrap();
        node.add_address("eth0", &format!("{address}/24")).unwrap();
        node.add_address("eth0", &format!("{address6}/64")).unwrap();
        nodes.push(node);
    }
    router.enable_routing().unwrap();
    Rack { router, nodes }
}

fn start_nodes(rack: &Rack) -> Vec<Node> {
    rack.nodes
        .iter()
        .zip(NODES.iter().zip(NODES6))
        .map(|(ns, (address, address6))| Node::start(ns, address, address6))
        .collect()
}

fn announcement(address: &str, attributes: &RouteAttributes) -> Announcement {
    Announcement {
        address: address.parse().unwrap(),
        attributes: attributes.clone(),
    }
}

/// Both nodes announce SERVICE (and SERVICE6 over IPv6) and a prefix outside
/// the pool (which the router must refuse), with the same attributes: one
/// UPDATE carries both, so once the service has arrived the refused prefix
/// was processed too.
fn announce(nodes: &[Node]) {
    let mut attributes = RouteAttributes::default();
    attributes.communities.insert(Community::new(65000, 100));
    for node in nodes {
        node.v4.session().announce(&[
            announcement(OUTSIDE_POOL, &attributes),
            announcement(SERVICE, &attributes),
        ]);
        node.v6.session().announce(&[
            announcement(OUTSIDE_POOL6, &attributes),
            announcement(SERVICE6, &attributes),
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

/// One address family of the examples: its service and refused prefixes and
/// the nodes' addresses in it.
struct Family {
    afi: &'static str,
    service: String,
    outside: String,
    nodes: [&'static str; 2],
}

fn families() -> [Family; 2] {
    [
        Family {
            afi: "ipv4",
            service: format!("{SERVICE}/32"),
            outside: format!("{OUTSIDE_POOL}/32"),
            nodes: NODES,
        },
        Family {
            afi: "ipv6",
            service: format!("{SERVICE6}/128"),
            outside: format!("{OUTSIDE_POOL6}/128"),
            nodes: NODES6,
        },
    ]
}

/// Weighted ECMP through the example: n1 announces the service with the
/// link-bandwidth community (RFC 10005, transitive, as herald sends it for
/// a `weighted_ecmp` pool) of weight 2, n2 of weight 1, and the router's
/// kernel route must weight n1 twice as much; then n2 re-announces with
/// weight 2 and the weights even out. `router` names the daemon in output.
fn weighted_ecmp_follows_the_link_bandwidth(router: &str, ns: &Namespace, nodes: &[Node]) {
    let announce_weight = |node: &Node, weight: u32| {
        let mut attributes = RouteAttributes::default();
        attributes.communities.insert(Community::new(65000, 100));
        attributes.link_bandwidth = Some(LinkBandwidth::new(64601, weight * 1_000_000, true));
        node.v4
            .session()
            .announce(&[announcement(SERVICE, &attributes)]);
        node.v6
            .session()
            .announce(&[announcement(SERVICE6, &attributes)]);
    };
    for (weights, want) in [([2, 1], 2.0), ([2, 2], 1.0)] {
        for (node, weight) in nodes.iter().zip(weights) {
            announce_weight(node, weight);
        }
        for family in families() {
            let started = Instant::now();
            let seen = wait_until(
                BOUND,
                Duration::from_millis(50),
                &format!("{router}: {} weighted {weights:?}", family.service),
                || {
                    let mut hops = fib_weights(ns, &family.service).map_err(|e| e.to_string())?;
                    hops.sort();
                    let weight_of = |node: &str| {
                        hops.iter()
                            .find(|(hop, _)| *hop == ip(node))
                            .map(|(_, w)| *w as f64)
                    };
                    match (weight_of(family.nodes[0]), weight_of(family.nodes[1])) {
                        (Some(a), Some(b)) if (a / b - want).abs() < 0.1 => Ok(hops),
                        _ => Err(format!("{hops:?}")),
                    }
                },
            )
            .unwrap();
            println!(
                "{router}: {} link bandwidth {weights:?} -> kernel next-hop weights {seen:?} after {:?}",
                family.service,
                started.elapsed()
            );
        }
    }
}

/// FRR's paths for `prefix` (`show bgp AFI unicast PREFIX json`).
fn frr_paths(frr: &Frr, afi: &str, prefix: &str) -> Vec<serde_json::Value> {
    let table = frr
        .vtysh_json(&format!("show bgp {afi} unicast {prefix} json"))
        .unwrap();
    table["paths"].as_array().cloned().unwrap_or_default()
}

#[test]
fn the_frr_example_gives_ecmp_bfd_a_pool_filter_and_gshut_local_pref_zero() {
    let lab = lab_or_skip!();
    let rack = rack(&lab);
    let frr = Frr::start(&rack.router).unwrap();
    frr.configure(&example("frr.conf"))
        .expect("docs/routers/frr.conf loads into FRR unchanged");
    let nodes = start_nodes(&rack);
    for (node, (address, address6)) in nodes.iter().zip(NODES.iter().zip(NODES6)) {
        for peer in [*address, address6] {
            frr.wait_bgp_established(peer, BOUND).unwrap();
            frr.wait_bfd_up(peer, BOUND).unwrap();
        }
        node.wait_bfd_up(address);
    }
    announce(&nodes);

    for family in families() {
        // ECMP: one route, both nodes as next hops.
        let took = wait_fib(&rack.router, &family.service, &family.nodes);
        println!(
            "frr: {} ECMP route over both nodes after {took:?}",
            family.service
        );
        let paths = frr_paths(&frr, family.afi, &family.service);
        assert_eq!(paths.len(), 2, "{paths:?}");
        assert!(
            paths
                .iter()
                .all(|p| p["multipath"] == true || p["bestpath"]["overall"] == true),
            "both paths in the multipath set: {paths:?}"
        );
        // The pool filter refused the prefix outside the pool.
        assert!(
            frr_paths(&frr, family.afi, &family.outside).is_empty(),
            "{} must be refused by the import route-map",
            family.outside
        );
        assert!(
            fib_next_hops(&rack.router, &family.outside)
                .unwrap()
                .is_empty()
        );
    }

    // n2 drains: GRACEFUL_SHUTDOWN, local-preference 0, out of the ECMP sets.
    nodes[1].set_graceful_shutdown(true);
    for family in families() {
        let took = wait_fib(&rack.router, &family.service, &family.nodes[..1]);
        println!(
            "frr: n2 out of the {} ECMP set {took:?} after GRACEFUL_SHUTDOWN",
            family.afi
        );
        let paths = frr_paths(&frr, family.afi, &family.service);
        let path_from = |node: &str| {
            paths
                .iter()
                .find(|p| p["peer"]["peerId"] == node || p["nexthops"][0]["ip"] == node)
                .unwrap_or_else(|| panic!("no path from {node}: {paths:?}"))
        };
        let drained = path_from(family.nodes[1]);
        assert_eq!(drained["locPrf"], 0, "{drained}");
        assert!(
            drained["community"]["list"]
                .as_array()
                .is_some_and(|l| l.iter().any(|c| c == "gracefulShutdown" || c == "65535:0")),
            "{drained}"
        );
        assert_ne!(path_from(family.nodes[0])["locPrf"], 0, "{paths:?}");
    }

    // Back from the drain: both next hops again.
    nodes[1].set_graceful_shutdown(false);
    for family in families() {
        wait_fib(&rack.router, &family.service, &family.nodes);
    }

    weighted_ecmp_follows_the_link_bandwidth("frr", &rack.router, &nodes);
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
    let nodes = start_nodes(&rack);
    for (node, address) in nodes.iter().zip(NODES) {
        node.wait_bfd_up(address);
    }
    announce(&nodes);

    for family in families() {
        let took = wait_fib(&rack.router, &family.service, &family.nodes);
        println!(
            "bird: {} ECMP route over both nodes after {took:?}",
            family.service
        );
        let paths = bird_paths(&bird, &family.service);
        assert_eq!(paths.len(), 2, "{paths:?}");
        assert!(
            bird_paths(&bird, &family.outside).is_empty(),
            "{} must be refused by herald_in",
            family.outside
        );
        assert!(
            fib_next_hops(&rack.router, &family.outside)
                .unwrap()
                .is_empty()
        );
    }
    let protocols = bird.show_protocols().unwrap();
    for prefix in ["herald_", "herald6_"] {
        assert_eq!(
            protocols
                .lines()
                .filter(|l| l.starts_with(prefix) && l.contains("Established"))
                .count(),
            2,
            "two dynamic {prefix} sessions from the neighbor range:\n{protocols}"
        );
    }

    nodes[1].set_graceful_shutdown(true);
    for family in families() {
        let took = wait_fib(&rack.router, &family.service, &family.nodes[..1]);
        println!(
            "bird: n2 out of the {} ECMP set {took:?} after GRACEFUL_SHUTDOWN",
            family.afi
        );
        let paths = bird_paths(&bird, &family.service);
        let pref = |node: &str| {
            paths
                .iter()
                .find(|(hop, _)| *hop == ip(node))
                .unwrap_or_else(|| panic!("no path via {node}: {paths:?}"))
                .1
        };
        assert_eq!(pref(family.nodes[1]), Some(0), "{paths:?}");
        assert_ne!(pref(family.nodes[0]), Some(0), "{paths:?}");
    }

    nodes[1].set_graceful_shutdown(false);
    for family in families() {
        wait_fib(&rack.router, &family.service, &family.nodes);
    }

    weighted_ecmp_follows_the_link_bandwidth("bird", &rack.router, &nodes);
}
