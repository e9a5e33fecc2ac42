//! herald's BGP speaker against FRR in the lab: eBGP IPv4 + IPv6 with
//! communities and large communities in FRR's JSON, a route refresh from
//! FRR answered, TCP MD5 (right key establishes, wrong key never does), GTSM
//! with `ttl-security hops 1`, and iBGP with LOCAL_PREF.
//!
//! Topology: namespace r1 (FRR, AS 64512, 192.0.2.1 and 2001:db8::1 on
//! eth1) and h1 (herald, AS 64601, 192.0.2.2 and 2001:db8::2), one veth.
//! herald runs in this test process on a thread that entered h1's network
//! namespace, with its own current-thread runtime.
//!
//! Needs root, iproute2 and FRR (herald-testnet checks); skipped with a
//! printed reason otherwise, failed when CI=true.

use std::fs::File;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use herald::bgp::fsm::State;
use herald::bgp::metrics::{MessageLabels, Metrics};
use herald::bgp::session::{SessionConfig, SessionHandle};
use herald::bgp::transport::Md5Key;
use herald::model::{Announcement, Community, LargeCommunity, RouteAttributes};
use herald_testnet::{Frr, Lab, Namespace, lab_or_skip, wait_until};
use nix::sched::{CloneFlags, setns};
use serde_json::Value;

const ROUTER: &str = "192.0.2.1";
const HERALD: &str = "192.0.2.2";
const BOUND: Duration = Duration::from_secs(30);

/// A herald session running inside a namespace.
struct HeraldIn {
    handle: Option<SessionHandle>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HeraldIn {
    fn start(ns: &Namespace, cfg: SessionConfig, metrics: Arc<Metrics>) -> HeraldIn {
        let path = format!("/run/netns/{}", ns.name());
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let file = File::open(&path).expect("namespace file");
            // Only this thread moves; its sockets live in the namespace.
            setns(&file, CloneFlags::CLONE_NEWNET).expect("enter the namespace");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let handle = SessionHandle::spawn(cfg, metrics);
                handle_tx.send(handle).expect("hand over the session");
                let _ = stop_rx.await;
            });
        });
        let handle = handle_rx.recv_timeout(BOUND).expect("session started");
        HeraldIn {
            handle: Some(handle),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn session(&self) -> &SessionHandle {
        self.handle.as_ref().expect("running")
    }
}

impl Drop for HeraldIn {
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

fn session_config(local_as: u32, peer_as: u32) -> SessionConfig {
    SessionConfig::new(
        "r1",
        SocketAddr::new(ROUTER.parse().unwrap(), 179),
        local_as,
        peer_as,
        HERALD.parse().unwrap(),
    )
    .hold_time(9)
    .next_hop_v6("2001:db8::2".parse().unwrap(), None)
    .connect_retry(Duration::from_secs(5))
    .backoff(Duration::from_millis(500), Duration::from_secs(2))
}

/// r1 (FRR) and h1 (herald's host) on one link.
fn pair(lab: &Lab) -> (Frr, Namespace) {
    let r1 = lab.namespace("r1").unwrap();
    let h1 = lab.namespace("h1").unwrap();
    lab.veth(&r1, "eth1", &h1, "eth1").unwrap();
    r1.add_address("eth1", "192.0.2.1/24").unwrap();
    r1.add_address("eth1", "2001:db8::1/64").unwrap();
    h1.add_address("eth1", "192.0.2.2/24").unwrap();
    h1.add_address("eth1", "2001:db8::2/64").unwrap();
    (Frr::start(&r1).unwrap(), h1)
}

fn frr_config(local_as: u32, herald_as: u32, neighbor_extra: &str) -> String {
    format!(
        "router bgp {local_as}
 bgp router-id {ROUTER}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor {HERALD} remote-as {herald_as}
 neighbor {HERALD} timers connect 1
{neighbor_extra}
 address-family ipv4 unicast
  neighbor {HERALD} activate
 exit-address-family
 address-family ipv6 unicast
  neighbor {HERALD} activate
 exit-address-family
exit
"
    )
}

fn service(address: &str, attributes: &RouteAttributes) -> Announcement {
    Announcement {
        address: address.parse().unwrap(),
        attributes: attributes.clone(),
    }
}

fn tagged() -> RouteAttributes {
    let mut a = RouteAttributes::default();
    a.communities.insert(Community::new(65000, 100));
    a.large_communities.insert(LargeCommunity {
        global_admin: 65000,
        local_data_1: 1,
        local_data_2: 2,
    });
    a
}

/// The first path FRR has for `prefix` (`show bgp <afi> unicast P json`).
fn frr_path(frr: &Frr, afi: &str, prefix: &str) -> Value {
    wait_until(
        BOUND,
        Duration::from_millis(200),
        &format!("{prefix} in FRR's BGP table"),
        || {
            let v = frr
                .vtysh_json(&format!("show bgp {afi} unicast {prefix} json"))
                .map_err(|e| e.to_string())?;
            match v["paths"].get(0) {
                Some(path) => Ok(path.clone()),
                None => Err(v.to_string()),
            }
        },
    )
    .unwrap()
}

fn counter(metrics: &Metrics, sent: bool, kind: &str) -> u64 {
    let labels = MessageLabels {
        peer: "r1".to_string(),
        kind: kind.to_string(),
    };
    let family = if sent {
        &metrics.messages_sent
    } else {
        &metrics.messages_received
    };
    family.get_or_create(&labels).get()
}

#[test]
fn herald_announces_ipv4_and_ipv6_with_communities_to_frr_and_answers_route_refresh() {
    let lab = lab_or_skip!();
    let (frr, h1) = pair(&lab);
    frr.configure(&frr_config(64512, 64601, "")).unwrap();
    let metrics = Arc::new(Metrics::default());
    let herald = HeraldIn::start(&h1, session_config(64601, 64512), Arc::clone(&metrics));
    let attrs = tagged();
    herald.session().announce(&[
        service("203.0.113.10", &attrs),
        service("2001:db8:ffff::10", &attrs),
    ]);
    frr.wait_bgp_established(HERALD, BOUND).unwrap();

    let v4 = frr_path(&frr, "ipv4", "203.0.113.10/32");
    assert_eq!(v4["community"]["string"], "65000:100", "{v4}");
    assert_eq!(v4["largeCommunity"]["string"], "65000:1:2", "{v4}");
    assert_eq!(v4["aspath"]["string"], "64601", "{v4}");
    assert_eq!(v4["nexthops"][0]["ip"], HERALD, "{v4}");
    let v6 = frr_path(&frr, "ipv6", "2001:db8:ffff::10/128");
    assert_eq!(v6["community"]["string"], "65000:100", "{v6}");
    assert_eq!(v6["largeCommunity"]["string"], "65000:1:2", "{v6}");
    assert_eq!(v6["nexthops"][0]["ip"], "2001:db8::2", "{v6}");
    frr.wait_route_installed("203.0.113.10/32", BOUND).unwrap();

    // FRR keeps no Adj-RIB-In copy, so "soft in" sends a ROUTE-REFRESH;
    // herald answers with its Adj-RIB-Out again.
    let updates_before = counter(&metrics, true, "update");
    frr.vtysh(&format!("clear bgp ipv4 unicast {HERALD} soft in"))
        .unwrap();
    wait_until(
        BOUND,
        Duration::from_millis(100),
        "a ROUTE-REFRESH answered",
        || {
            let refreshes = counter(&metrics, false, "route_refresh");
            let updates = counter(&metrics, true, "update");
            if refreshes >= 1 && updates > updates_before {
                Ok(())
            } else {
                Err(format!(
                    "{refreshes} refreshes received, {updates} UPDATEs sent"
                ))
            }
        },
    )
    .unwrap();
    assert_eq!(herald.session().status().state, State::Established);

    // A withdrawal reaches FRR.
    herald
        .session()
        .announce(&[service("2001:db8:ffff::10", &attrs)]);
    wait_until(
        BOUND,
        Duration::from_millis(200),
        "203.0.113.10/32 withdrawn",
        || {
            let v = frr
                .vtysh_json("show bgp ipv4 unicast 203.0.113.10/32 json")
                .map_err(|e| e.to_string())?;
            if v["paths"].as_array().is_none_or(|p| p.is_empty()) {
                Ok(())
            } else {
                Err(v.to_string())
            }
        },
    )
    .unwrap();
}

#[test]
fn tcp_md5_with_frr_right_key_establishes_and_wrong_key_never_does() {
    let lab = lab_or_skip!();
    let (frr, h1) = pair(&lab);
    frr.configure(&frr_config(
        64512,
        64601,
        &format!(" neighbor {HERALD} password herald-md5"),
    ))
    .unwrap();
    let metrics = Arc::new(Metrics::default());
    let mut wrong = session_config(64601, 64512);
    wrong.md5_key = Some(Md5Key::Fixed(b"not-the-key".to_vec()));
    let herald = HeraldIn::start(&h1, wrong, Arc::clone(&metrics));
    // Bounded negative check: several connect attempts, none gets through.
    let established = frr.wait_bgp_established(HERALD, Duration::from_secs(8));
    assert!(established.is_err(), "a wrong MD5 key must never establish");
    assert_ne!(herald.session().status().state, State::Established);
    drop(herald);

    let mut right = session_config(64601, 64512);
    right.md5_key = Some(Md5Key::Fixed(b"herald-md5".to_vec()));
    let herald = HeraldIn::start(&h1, right, metrics);
    frr.wait_bgp_established(HERALD, BOUND).unwrap();
    assert_eq!(herald.session().status().state, State::Established);
}

#[test]
fn gtsm_with_frr_ttl_security_hops_1_establishes_only_with_ttl_255() {
    let lab = lab_or_skip!();
    let (frr, h1) = pair(&lab);
    frr.configure(&frr_config(
        64512,
        64601,
        &format!(" neighbor {HERALD} ttl-security hops 1"),
    ))
    .unwrap();
    let metrics = Arc::new(Metrics::default());
    // Plain eBGP sends TTL 1, which FRR's IP_MINTTL 255 drops.
    let plain = HeraldIn::start(&h1, session_config(64601, 64512), Arc::clone(&metrics));
    assert!(
        frr.wait_bgp_established(HERALD, Duration::from_secs(6))
            .is_err()
    );
    drop(plain);

    let mut gtsm = session_config(64601, 64512);
    gtsm.ttl_security = true;
    let herald = HeraldIn::start(&h1, gtsm, metrics);
    frr.wait_bgp_established(HERALD, BOUND).unwrap();
    assert_eq!(herald.session().status().state, State::Established);
}

#[test]
fn ibgp_with_frr_carries_local_pref_and_an_empty_as_path() {
    let lab = lab_or_skip!();
    let (frr, h1) = pair(&lab);
    frr.configure(&frr_config(64601, 64601, "")).unwrap();
    let herald = HeraldIn::start(
        &h1,
        session_config(64601, 64601),
        Arc::new(Metrics::default()),
    );
    let mut preferred = tagged();
    preferred.local_pref = Some(200);
    herald.session().announce(&[
        service("203.0.113.10", &tagged()),
        service("203.0.113.11", &preferred),
    ]);
    frr.wait_bgp_established(HERALD, BOUND).unwrap();
    let plain = frr_path(&frr, "ipv4", "203.0.113.10/32");
    assert_eq!(plain["locPrf"], 100, "{plain}");
    assert_eq!(plain["aspath"]["length"], 0, "{plain}");
    let pref = frr_path(&frr, "ipv4", "203.0.113.11/32");
    assert_eq!(pref["locPrf"], 200, "{pref}");
}

#[test]
fn herald_announces_to_bird_2_with_communities() {
    let lab = lab_or_skip!();
    let r1 = lab.namespace("r1").unwrap();
    let h1 = lab.namespace("h1").unwrap();
    lab.veth(&r1, "eth1", &h1, "eth1").unwrap();
    r1.add_address("eth1", "192.0.2.1/24").unwrap();
    r1.add_address("eth1", "2001:db8::1/64").unwrap();
    h1.add_address("eth1", "192.0.2.2/24").unwrap();
    h1.add_address("eth1", "2001:db8::2/64").unwrap();
    let bird = herald_testnet::Bird::start(
        &r1,
        &format!(
            "router id {ROUTER};
protocol device {{ }}
protocol bgp herald {{
  local {ROUTER} as 64512;
  neighbor {HERALD} as 64601;
  ipv4 {{ import all; export none; }};
  ipv6 {{ import all; export none; }};
}}
"
        ),
    )
    .unwrap();
    let herald = HeraldIn::start(
        &h1,
        session_config(64601, 64512),
        Arc::new(Metrics::default()),
    );
    let attrs = tagged();
    herald.session().announce(&[
        service("203.0.113.10", &attrs),
        service("2001:db8:ffff::10", &attrs),
    ]);
    bird.wait_established("herald", BOUND).unwrap();
    for prefix in ["203.0.113.10/32", "2001:db8:ffff::10/128"] {
        let route = wait_until(
            BOUND,
            Duration::from_millis(200),
            &format!("{prefix} in BIRD"),
            || {
                let out = bird
                    .birdc(&["show", "route", "for", prefix, "all"])
                    .map_err(|e| e.to_string())?;
                if out.contains("BGP.community") {
                    Ok(out)
                } else {
                    Err(out)
                }
            },
        )
        .unwrap();
        assert!(route.contains("(65000,100)"), "{route}");
        assert!(route.contains("(65000, 1, 2)"), "{route}");
        assert!(route.contains("BGP.as_path: 64601"), "{route}");
    }
}

#[test]
fn herald_announces_to_gobgp_with_communities() {
    let lab = lab_or_skip!();
    let r1 = lab.namespace("r1").unwrap();
    let h1 = lab.namespace("h1").unwrap();
    lab.veth(&r1, "eth1", &h1, "eth1").unwrap();
    r1.add_address("eth1", "192.0.2.1/24").unwrap();
    h1.add_address("eth1", "192.0.2.2/24").unwrap();
    r1.add_address("eth1", "2001:db8::1/64").unwrap();
    h1.add_address("eth1", "2001:db8::2/64").unwrap();
    let gobgp = herald_testnet::Gobgp::start(
        &r1,
        &format!(
            "[global.config]
  as = 64512
  router-id = \"{ROUTER}\"

[[neighbors]]
  [neighbors.config]
    neighbor-address = \"{HERALD}\"
    peer-as = 64601
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = \"ipv4-unicast\"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = \"ipv6-unicast\"
"
        ),
        50051,
    )
    .unwrap();
    let herald = HeraldIn::start(
        &h1,
        session_config(64601, 64512),
        Arc::new(Metrics::default()),
    );
    let attrs = tagged();
    herald.session().announce(&[
        service("203.0.113.10", &attrs),
        service("2001:db8:ffff::10", &attrs),
    ]);
    gobgp.wait_established(HERALD, BOUND).unwrap();
    for (afi, prefix) in [
        ("ipv4", "203.0.113.10/32"),
        ("ipv6", "2001:db8:ffff::10/128"),
    ] {
        let rib = wait_until(
            BOUND,
            Duration::from_millis(200),
            &format!("{prefix} in GoBGP"),
            || {
                let out = gobgp
                    .gobgp(&["global", "rib", "-a", afi, prefix])
                    .map_err(|e| e.to_string())?;
                if out.contains("64601") {
                    Ok(out)
                } else {
                    Err(out)
                }
            },
        )
        .unwrap();
        assert!(rib.contains("65000:100"), "{rib}");
        assert!(rib.contains("65000:1:2"), "{rib}");
    }
}

#[test]
fn graceful_restart_keeps_routes_stale_in_frr_until_end_of_rib() {
    let lab = lab_or_skip!();
    let (frr, h1) = pair(&lab);
    let mut config = frr_config(64512, 64601, "");
    config = config.replace(
        " no bgp default ipv4-unicast\n",
        " no bgp default ipv4-unicast\n bgp graceful-restart\n",
    );
    frr.configure(&config).unwrap();
    let mut cfg = session_config(64601, 64512);
    cfg.graceful_restart = Some(herald::bgp::fsm::GracefulRestart {
        restart_time: 120,
        restarting: false,
        forwarding_preserved: false,
    });
    let attrs = tagged();
    let routes = [service("203.0.113.10", &attrs)];
    let herald = HeraldIn::start(&h1, cfg.clone(), Arc::new(Metrics::default()));
    herald.session().announce(&routes);
    frr.wait_bgp_established(HERALD, BOUND).unwrap();
    frr.wait_route_installed("203.0.113.10/32", BOUND).unwrap();

    // A crash: the task dies without a NOTIFICATION; the kernel closes the
    // socket, as it does for a SIGKILLed process.
    herald.session().abort();
    drop(herald);
    let stale = frr_path(&frr, "ipv4", "203.0.113.10/32");
    wait_until(
        BOUND,
        Duration::from_millis(100),
        "the route marked stale",
        || {
            let path = frr_path(&frr, "ipv4", "203.0.113.10/32");
            if path["stale"] == Value::Bool(true) {
                Ok(())
            } else {
                Err(path.to_string())
            }
        },
    )
    .unwrap();
    // Still forwarding meanwhile.
    frr.wait_route_installed("203.0.113.10/32", Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("route left the FIB during the restart: {e} ({stale})"));

    // The restarted herald sets R and F, re-announces, then End-of-RIB
    // clears the stale flag.
    cfg.graceful_restart = Some(herald::bgp::fsm::GracefulRestart {
        restart_time: 120,
        restarting: true,
        forwarding_preserved: true,
    });
    let herald = HeraldIn::start(&h1, cfg, Arc::new(Metrics::default()));
    herald.session().announce(&routes);
    frr.wait_bgp_established(HERALD, BOUND).unwrap();
    wait_until(
        BOUND,
        Duration::from_millis(100),
        "the stale flag cleared",
        || {
            let path = frr_path(&frr, "ipv4", "203.0.113.10/32");
            if path.get("stale").is_none() {
                Ok(())
            } else {
                Err(path.to_string())
            }
        },
    )
    .unwrap();
    frr.wait_route_installed("203.0.113.10/32", BOUND).unwrap();
}

#[test]
fn three_herald_nodes_give_frr_one_ecmp_route_with_three_next_hops() {
    let lab = lab_or_skip!();
    let net = lab
        .deploy(&herald_testnet::Topology::shipped("ecmp3").unwrap())
        .unwrap();
    let r1 = net.frr("r1").unwrap();
    let attrs = tagged();
    let mut nodes = Vec::new();
    for i in 1..=3u8 {
        let address = format!("192.0.2.1{i}");
        let mut cfg = session_config(64600 + u32::from(i), 64512);
        cfg.router_id = address.parse().unwrap();
        cfg.next_hop_v6 = None;
        let node = HeraldIn::start(
            net.ns(&format!("n{i}")).unwrap(),
            cfg,
            Arc::new(Metrics::default()),
        );
        node.session().announce(&[service("203.0.113.10", &attrs)]);
        nodes.push(node);
    }
    for i in 1..=3 {
        r1.wait_bgp_established(&format!("192.0.2.1{i}"), BOUND)
            .unwrap();
    }
    let hops = wait_until(
        BOUND,
        Duration::from_millis(200),
        "three next hops in r1's FIB",
        || {
            let mut hops = herald_testnet::fib::fib_next_hops(r1.namespace(), "203.0.113.10")
                .map_err(|e| e.to_string())?;
            hops.sort();
            if hops.len() == 3 {
                Ok(hops)
            } else {
                Err(format!("{hops:?}"))
            }
        },
    )
    .unwrap();
    let expected: Vec<std::net::IpAddr> = ["192.0.2.11", "192.0.2.12", "192.0.2.13"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(hops, expected);
}
