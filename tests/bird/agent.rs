//! `herald run` with `speaker: bird`, end to end: on the three nodes of
//! `ecmp3`, herald in Kubernetes mode (the real kube-apiserver behind r1,
//! herald with its ServiceAccount) decides the announcements and puts the
//! address on `lo`, and the node's BIRD (bird-compat/bird-node.conf)
//! announces it to FRR r1.
//!
//! A Service applied through the API reaches r1 as one route with
//! three ECMP next hops and the pool's community; `herald status` shows
//! BIRD's session and BFD session; deleting the Service withdraws it.

use std::path::Path;
use std::time::Duration;

use herald::status::{BfdState, BgpState, StatusReport};
use herald_testnet::cluster::Cluster;
use herald_testnet::scenario::{self, Ecmp3};
use herald_testnet::{Bird, Namespace, Process, lab_or_skip, wait_until};
use serde_json::{Value, json};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const ADMIN: &str = "127.0.0.1:9179";
const NODE_CONF: &str = include_str!("../../bird-compat/bird-node.conf");
const BOUND: Duration = Duration::from_secs(60);

fn node_object(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {}}})
}

fn service_object() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default",
                     "annotations": {"herald.dev/advertise": "true"}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": 8080}],
                 "selector": {"app": "web"}, "externalTrafficPolicy": "Cluster"},
    })
}

fn slice_object() -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-abc", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["198.18.1.5"], "nodeName": "n1",
                       "conditions": {"ready": true, "serving": true, "terminating": false}}],
        "ports": [{"port": 8080, "protocol": "TCP"}],
    })
}

/// One node: `herald run` and BIRD.
struct Node {
    ns: Namespace,
    herald: Process,
    _bird: Bird,
}

fn herald_config(dir: &Path, asn: u32, address: &str) -> String {
    format!(
        "asn: {asn}
router_id: {address}
interface: lo
admin_listen: {ADMIN}
speaker: bird
bird:
  control_socket: {socket}
  include_file: {include}
  coalesce: 200ms
pools:
  - name: public
    cidrs: [203.0.113.0/24]
    communities: [\"65000:100\"]
peers:
  - name: r1
    address: 192.0.2.1
    asn: {router}
    bfd: {{enabled: true, min_rx: 100ms, min_tx: 100ms, multiplier: 3}}
drain:
  gshut_wait: 2s
",
        socket = dir.join("bird").join("bird.ctl").display(),
        include = dir.join("herald.conf").display(),
        router = scenario::ROUTER_AS,
    )
}

fn start_node(scenario: &Ecmp3, cluster: &Cluster, index: u32, name: &str) -> Node {
    let ns = scenario.net.ns(name).unwrap().clone();
    let address = scenario.next_hop(name).unwrap().to_string();
    cluster.apply_json(&node_object(name)).unwrap();
    let dir = ns.dir().to_path_buf();
    let config_path = dir.join("herald.yaml");
    std::fs::write(
        &config_path,
        herald_config(&dir, scenario::NODE_AS_BASE + 1 + index, &address),
    )
    .unwrap();
    let env = format!("KUBECONFIG={}", cluster.kubeconfig().display());
    let herald = ns
        .spawn(
            "herald",
            "env",
            &[
                &env,
                HERALD,
                "run",
                "--config",
                config_path.to_str().unwrap(),
                "--node-name",
                name,
                "--admin-socket",
                &admin_socket(&ns),
            ],
        )
        .unwrap();
    // herald writes the include file at start; BIRD's config includes it.
    let include = dir.join("herald.conf");
    wait_until(
        BOUND,
        Duration::from_millis(50),
        "herald's include file",
        || {
            herald.ensure_running().map_err(|e| e.to_string())?;
            if include.exists() {
                Ok(())
            } else {
                Err(herald.log())
            }
        },
    )
    .unwrap();
    let conf = NODE_CONF
        .replace("192.0.2.11", &address)
        .replace("/etc/bird/herald.conf", include.to_str().unwrap())
        .replace("log syslog all;", "log stderr all;");
    let bird = Bird::start(&ns, &conf).unwrap();
    Node {
        ns,
        herald,
        _bird: bird,
    }
}

/// The admin socket of the herald in `node`.
fn admin_socket(node: &Namespace) -> String {
    node.dir().join("admin.sock").display().to_string()
}

fn status(node: &Namespace) -> Result<StatusReport, String> {
    let out = node
        .exec(
            HERALD,
            &["status", "--json", "--admin-socket", &admin_socket(node)],
        )
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))
}

fn on_lo(node: &Namespace, address: &str) -> bool {
    node.ip(&["-4", "addr", "show", "dev", "lo"])
        .is_ok_and(|out| out.contains(&format!("{address}/32")))
}

#[test]
fn a_service_applied_through_the_api_is_announced_by_bird_on_three_nodes_with_ecmp() {
    let lab = lab_or_skip!();
    let scenario = Ecmp3::deploy(&lab).expect("ecmp3 deploys");
    let cluster = Cluster::start(
        scenario.net.ns("api").unwrap(),
        scenario::service::API_ADDRESS.parse().unwrap(),
    )
    .expect("kube-apiserver behind r1");
    let nodes: Vec<Node> = scenario
        .nodes()
        .iter()
        .enumerate()
        .map(|(i, name)| start_node(&scenario, &cluster, i as u32, name))
        .collect();
    cluster.apply_json(&service_object()).unwrap();
    cluster
        .set_load_balancer_ips("default", "web", &[scenario::SERVICE_V4])
        .unwrap();
    cluster.apply_json(&slice_object()).unwrap();

    let hops = scenario
        .wait_ecmp(3, Duration::from_secs(90))
        .unwrap_or_else(|e| {
            for node in &nodes {
                eprintln!("{}:\n{}", node.ns.node(), node.herald.log());
            }
            panic!("three ECMP next hops: {e}")
        });
    println!("ECMP at r1 through BIRD driven by herald run: {hops:?}");
    let r1 = scenario.router().unwrap();
    let bgp = r1
        .vtysh(&format!(
            "show bgp ipv4 unicast {}/32 json",
            scenario::SERVICE_V4
        ))
        .unwrap();
    assert!(bgp.contains("65000:100"), "{bgp}");
    for node in &nodes {
        assert!(on_lo(&node.ns, scenario::SERVICE_V4), "herald placed it");
        let report = wait_until(BOUND, Duration::from_millis(200), "BIRD's rows", || {
            let report = status(&node.ns)?;
            let peer_up = report
                .peers
                .iter()
                .any(|p| p.name == "r1" && p.state == BgpState::Established);
            let bfd_up = report
                .bfd_sessions
                .iter()
                .any(|s| s.peer == "r1" && s.state == BfdState::Up);
            let announced = report
                .announcements
                .iter()
                .any(|a| a.address.to_string() == scenario::SERVICE_V4 && a.announced_to == ["r1"]);
            if peer_up && bfd_up && announced {
                Ok(report)
            } else {
                Err(format!("{report:?}"))
            }
        })
        .unwrap();
        assert_eq!(report.announcements[0].service, "default/web");
    }

    // n1 is excluded from load balancers: herald drains it through BIRD,
    // GRACEFUL_SHUTDOWN (65535:0) first, then the withdrawal.
    let n1 = scenario.next_hop("n1").unwrap().to_string();
    cluster
        .kubectl(&[
            "label",
            "node",
            "n1",
            "node.kubernetes.io/exclude-from-external-load-balancers=",
        ])
        .unwrap();
    wait_until(
        BOUND,
        Duration::from_millis(100),
        "65535:0 on n1's path",
        || {
            let bgp = r1
                .vtysh_json(&format!(
                    "show bgp ipv4 unicast {}/32 json",
                    scenario::SERVICE_V4
                ))
                .map_err(|e| e.to_string())?;
            let drained = bgp["paths"].as_array().into_iter().flatten().any(|path| {
                path.to_string().contains(&n1)
                    && path["community"]["string"]
                        .as_str()
                        .is_some_and(|c| c.contains("graceful-shutdown"))
            });
            if drained {
                Ok(())
            } else {
                Err(bgp.to_string())
            }
        },
    )
    .unwrap();
    let left = scenario
        .wait_ecmp(2, BOUND)
        .expect("n1 withdraws after gshut_wait");
    assert!(!left.iter().any(|h| h.to_string() == n1), "{left:?}");

    // The Service goes away: every node withdraws it.
    cluster
        .kubectl(&["-n", "default", "delete", "service", "web"])
        .unwrap();
    scenario
        .wait_ecmp(0, BOUND)
        .expect("the route leaves r1 when the Service is deleted");
    for node in nodes {
        node.herald.terminate().unwrap();
    }
    cluster.assert_nothing_forbidden();
}
