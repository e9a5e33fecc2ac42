//! [`ServiceLab`]: the end-to-end lab on the `ecmp3` topology.
//! Router r1 (FRR: ECMP, BFD, local-preference 0 for GRACEFUL_SHUTDOWN),
//! three nodes that each serve HTTP on the service address and announce it
//! (herald, or BIRD for the baselines), a client behind r1, and, in
//! Kubernetes mode, kube-apiserver and etcd in `api` behind r1 with the Service,
//! its EndpointSlice and the Nodes applied by kubectl.
//!
//! What this module owns: the herald and BIRD configs it renders for the
//! nodes, the Kubernetes manifests of the scenario, and the order things
//! start in. Faults and measurements are the tests' (with
//! [`crate::traffic`] and [`crate::fib`]).
//!
//! ```text
//!   client 198.51.100.2 ── eth2 r1 (FRR, AS 64512) eth1 ── br-ecmp3 ── n1 192.0.2.11 (AS 64601)
//!                               eth3                              ├── n2 192.0.2.12 (AS 64602)
//!                                |                                └── n3 192.0.2.13 (AS 64603)
//!                          api 198.18.0.2:6443 (kube-apiserver) each: Responder on 203.0.113.10:80
//!                                                                     + herald (or BIRD)
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::{Ecmp3, NODE_AS_BASE, ROUTER_AS, SERVICE_V4};
use crate::bird::{BfdTimers, SpeakerConfig};
use crate::cluster::Cluster;
use crate::error::Result;
use crate::herald::{HeraldNode, HeraldOptions};
use crate::lab::Lab;
use crate::proxy::CutProxy;
use crate::traffic::{Load, LoadSpec, Responder, SERVICE_PORT};
use crate::wait::wait_until;
use crate::{Bird, Namespace};

/// Where kube-apiserver listens (on `api`, behind r1).
pub const API_ADDRESS: &str = "198.18.0.2";

/// The port of the cuttable proxy in front of the API server (same address).
pub const API_PROXY_PORT: u16 = 6444;

/// The admin endpoint of every herald node (each in its own namespace).
pub const ADMIN: &str = "127.0.0.1:9179";

/// The router's address on the nodes' bridge.
pub const ROUTER_ADDRESS: &str = "192.0.2.1";

/// BFD 50 ms x 3: a 150 ms detection time, fast enough to show BFD's point
/// and slow enough for a loaded 2-core lab machine.
pub const FAST_BFD: BfdTimers = BfdTimers {
    interval_ms: 50,
    multiplier: 3,
};

/// Where herald's desired announcements come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--services FILE` listing the service address.
    Standalone,
    /// The Kubernetes API: a Service with `externalIPs` and the annotation
    /// `herald.dev/advertise: "true"`, with this `externalTrafficPolicy`.
    Kubernetes(TrafficPolicy),
}

/// A Service's `externalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficPolicy {
    Cluster,
    Local,
}

impl TrafficPolicy {
    fn as_str(self) -> &'static str {
        match self {
            TrafficPolicy::Cluster => "Cluster",
            TrafficPolicy::Local => "Local",
        }
    }
}

/// How the herald nodes run.
#[derive(Debug, Clone)]
pub struct HeraldSetup {
    /// The herald binary (`env!("CARGO_BIN_EXE_herald")`).
    pub binary: PathBuf,
    pub source: Source,
    /// BFD beside the session, or none.
    pub bfd: Option<BfdTimers>,
    /// Graceful restart with this restart time, or off.
    pub graceful_restart: Option<Duration>,
    /// `drain.gshut_wait`.
    pub gshut_wait: Duration,
    /// Extra top-level YAML appended to every node's config (settings a
    /// scenario needs beyond these, such as anti-flap).
    pub extra_config: String,
    /// Nodes whose pods are ready at the start (Kubernetes mode).
    pub ready_on: Vec<String>,
    /// More CIDRs for the nodes' pool `lab` (besides 203.0.113.0/24).
    pub extra_pool_cidrs: Vec<String>,
    /// Kubernetes mode: herald reaches the API through a [`CutProxy`] (on
    /// the API's address, port [`API_PROXY_PORT`]) that the test can cut.
    pub api_through_proxy: bool,
    /// The pool `lab` says `allocate: true` (for `allocation.enabled` in
    /// `extra_config`).
    pub allocate: bool,
    /// The pool says `weighted_ecmp: true` (the link-bandwidth community).
    pub weighted_ecmp: bool,
}

impl HeraldSetup {
    /// The lab's usual setting: BFD 50 ms x 3, graceful restart 120 s,
    /// `gshut_wait` 5 s, a pod ready on every node.
    pub fn new(binary: impl Into<PathBuf>, source: Source) -> HeraldSetup {
        HeraldSetup {
            binary: binary.into(),
            source,
            bfd: Some(FAST_BFD),
            graceful_restart: Some(Duration::from_secs(120)),
            gshut_wait: Duration::from_secs(5),
            extra_config: String::new(),
            ready_on: NODES.iter().map(|n| n.to_string()).collect(),
            api_through_proxy: false,
            extra_pool_cidrs: Vec::new(),
            allocate: false,
            weighted_ecmp: false,
        }
    }

    /// Node `node`'s config YAML (the shape users write, see docs/configuration.md).
    /// The lab's Service uses `externalIPs`, so its pool and the Kubernetes
    /// source must say they take external addresses (off by default).
    pub fn config_for(&self, index: usize) -> String {
        let address = node_ip(index);
        let mut yaml = format!(
            "asn: {asn}\nrouter_id: {address}\ninterface: lo\nadmin_listen: {ADMIN}\n\
             pools:\n  - name: lab\n    cidrs: [{cidrs}]\n    allow_external_ips: true\n    \
             weighted_ecmp: {weighted}\n\
             {allocate}kubernetes:\n  address_kinds: [load-balancer, external]\n\
             peers:\n  - name: r1\n    address: {ROUTER_ADDRESS}\n    asn: {ROUTER_AS}\n    \
             hold_time: 9s\n",
            asn = NODE_AS_BASE + 1 + index as u32,
            cidrs = std::iter::once("203.0.113.0/24")
                .chain(self.extra_pool_cidrs.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(", "),
            allocate = if self.allocate {
                "    allocate: true\n"
            } else {
                ""
            },
            weighted = self.weighted_ecmp,
        );
        match self.graceful_restart {
            Some(time) => yaml.push_str(&format!(
                "    graceful_restart: {{enabled: true, restart_time: {}s}}\n",
                time.as_secs()
            )),
            None => yaml.push_str("    graceful_restart: {enabled: false}\n"),
        }
        match self.bfd {
            Some(bfd) => yaml.push_str(&format!(
                "    bfd: {{enabled: true, min_rx: {ms}ms, min_tx: {ms}ms, multiplier: {}, \
                 multihop: false}}\n",
                bfd.multiplier,
                ms = bfd.interval_ms
            )),
            None => yaml.push_str("    bfd: {enabled: false}\n"),
        }
        yaml.push_str(&format!(
            "drain:\n  gshut_wait: {}ms\n",
            self.gshut_wait.as_millis()
        ));
        yaml.push_str(&self.extra_config);
        yaml
    }
}

/// How the BIRD baseline nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BirdSetup {
    pub bfd: Option<BfdTimers>,
    /// Graceful restart with this restart time, or BIRD's default.
    pub graceful_restart: Option<Duration>,
}

/// The node names of `ecmp3`.
pub const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// Node `index`'s (0-based) address on the bridge.
pub fn node_ip(index: usize) -> String {
    format!("192.0.2.1{}", index + 1)
}

/// The service as the client reaches it.
pub fn service_target() -> SocketAddr {
    SocketAddr::new(SERVICE_V4.parse().expect("a literal"), SERVICE_PORT)
}

/// The end-to-end lab: `ecmp3`, a responder per node, herald or BIRD on the
/// nodes, and the Kubernetes API in Kubernetes mode.
#[derive(Debug)]
pub struct ServiceLab {
    pub ecmp: Ecmp3,
    pub responders: BTreeMap<String, Responder>,
    /// The herald nodes by node name (empty for a BIRD baseline).
    pub herald: BTreeMap<String, HeraldNode>,
    /// The Kubernetes API (Kubernetes mode).
    pub cluster: Option<Cluster>,
    /// The proxy between herald and the API, when the setup asked for it.
    pub api_proxy: Option<CutProxy>,
    setup: Option<HeraldSetup>,
}

impl ServiceLab {
    /// Deploys `ecmp3`, a responder per node, the Kubernetes API with the
    /// Service, its EndpointSlice and the Nodes (Kubernetes mode), and
    /// herald on every node. Does not wait for routes: see
    /// [`ServiceLab::settle`].
    pub fn with_herald(lab: &Lab, setup: HeraldSetup) -> Result<ServiceLab> {
        let ecmp = Ecmp3::deploy(lab)?;
        let responders = start_responders(&ecmp)?;
        let cluster = match setup.source {
            Source::Standalone => None,
            Source::Kubernetes(policy) => {
                let api = ecmp.net.ns("api")?;
                let cluster = Cluster::start(api, API_ADDRESS.parse().expect("a literal"))?;
                cluster.apply(&nodes_manifest())?;
                cluster.apply(&service_manifest(policy))?;
                let ready: Vec<&str> = setup.ready_on.iter().map(String::as_str).collect();
                cluster.apply(&endpoint_slice_manifest(&ready))?;
                Some(cluster)
            }
        };
        let mut api_proxy = None;
        let mut kubeconfig = cluster.as_ref().map(|c| c.kubeconfig().to_owned());
        if let (Some(cluster), true) = (&cluster, setup.api_through_proxy) {
            let listen = SocketAddr::new(cluster.socket_address().ip(), API_PROXY_PORT);
            let proxy = CutProxy::start(cluster.namespace(), listen, cluster.socket_address())?;
            kubeconfig = Some(cluster.kubeconfig_via(listen, "herald-via-proxy")?);
            api_proxy = Some(proxy);
        }
        let mut herald = BTreeMap::new();
        for (index, node) in NODES.iter().enumerate() {
            let ns = ecmp.net.ns(node)?;
            let mut env = Vec::new();
            if let Some(kubeconfig) = &kubeconfig {
                env.push(("KUBECONFIG".to_owned(), kubeconfig.display().to_string()));
            }
            let options = HeraldOptions {
                binary: setup.binary.clone(),
                config: setup.config_for(index),
                services: (setup.source == Source::Standalone).then(services_file),
                admin: ADMIN.parse().expect("a literal"),
                node_name: node.to_string(),
                env,
                extra_args: Vec::new(),
            };
            herald.insert(node.to_string(), HeraldNode::start(ns, options)?);
        }
        Ok(ServiceLab {
            ecmp,
            responders,
            herald,
            cluster,
            api_proxy,
            setup: Some(setup),
        })
    }

    /// Deploys `ecmp3` with BIRD on the nodes (the baselines): the service
    /// address on `lo`, a responder, and BIRD announcing the address.
    pub fn with_bird(lab: &Lab, setup: BirdSetup) -> Result<ServiceLab> {
        let mut ecmp = Ecmp3::deploy(lab)?;
        let responders = start_responders(&ecmp)?;
        for (index, node) in NODES.iter().enumerate() {
            let ns = ecmp.net.ns(node)?.clone();
            ns.add_address("lo", &format!("{SERVICE_V4}/32"))?;
            let address = node_ip(index);
            let config = SpeakerConfig {
                router_id: address.clone(),
                local_as: NODE_AS_BASE + 1 + index as u32,
                local_address: address,
                peer_address: ROUTER_ADDRESS.into(),
                peer_as: ROUTER_AS,
                interface: "eth1".into(),
                prefixes: vec![format!("{SERVICE_V4}/32")],
                bfd: setup.bfd,
            };
            let bird = Bird::start(
                &ns,
                &config.render_with_graceful_restart(setup.graceful_restart),
            )?;
            ecmp.speakers.insert(node.to_string(), bird);
        }
        Ok(ServiceLab {
            ecmp,
            responders,
            herald: BTreeMap::new(),
            cluster: None,
            api_proxy: None,
            setup: None,
        })
    }

    /// The herald setup this lab was started with.
    pub fn setup(&self) -> Option<&HeraldSetup> {
        self.setup.as_ref()
    }

    /// A node's namespace.
    pub fn ns(&self, node: &str) -> Result<&Namespace> {
        self.ecmp.net.ns(node)
    }

    /// The router's namespace.
    pub fn router_ns(&self) -> Result<&Namespace> {
        self.ecmp.net.ns("r1")
    }

    /// A node's next hop at r1.
    pub fn next_hop(&self, node: &str) -> Result<IpAddr> {
        self.ecmp.next_hop(node)
    }

    /// A herald node (panics if there is none by that name: a test bug).
    pub fn herald(&self, node: &str) -> &HeraldNode {
        &self.herald[node]
    }

    /// A herald node, mutably (restart, files).
    pub fn herald_mut(&mut self, node: &str) -> &mut HeraldNode {
        self.herald.get_mut(node).expect("a herald node")
    }

    /// The Kubernetes API (panics outside Kubernetes mode: a test bug).
    pub fn cluster(&self) -> &Cluster {
        self.cluster.as_ref().expect("a Kubernetes-mode lab")
    }

    /// The proxy between herald and the API (panics when the setup did not
    /// ask for one: a test bug).
    pub fn api_proxy(&self) -> &CutProxy {
        self.api_proxy
            .as_ref()
            .expect("a lab started with api_through_proxy")
    }

    /// Waits until r1 forwards the service over `count` next hops, every BGP
    /// session to them is Established and their BFD sessions are up (when
    /// the speakers run BFD); then waits out FRR 8.4's one early BFD
    /// re-registration (docs/lab.md) and checks again.
    pub fn settle(&self, count: usize, timeout: Duration) -> Result<()> {
        self.ecmp.wait_ecmp(count, timeout)?;
        std::thread::sleep(Duration::from_secs(2));
        self.ecmp.wait_ecmp(count, timeout)?;
        Ok(())
    }

    /// Waits until every BFD session at r1 towards the nodes is up.
    pub fn wait_bfd_up(&self, timeout: Duration) -> Result<()> {
        let router = self.ecmp.router()?;
        for index in 0..NODES.len() {
            router.wait_bfd_up(&node_ip(index), timeout)?;
        }
        Ok(())
    }

    /// Starts the client's steady stream of new connections (200 a second,
    /// 1 s timeouts) for at most `duration`.
    pub fn load(&self, duration: Duration) -> Result<Load> {
        self.load_with(LoadSpec::steady(service_target(), duration))
    }

    /// Starts the client with a custom spec.
    pub fn load_with(&self, spec: LoadSpec) -> Result<Load> {
        Ok(Load::start(self.ecmp.net.ns("client")?, spec))
    }

    /// Takes a node off the network the way the operators in our story did:
    /// `ip link set eth1 down` inside the node.
    pub fn node_link_down(&self, node: &str) -> Result<()> {
        self.ns(node)?.link_down("eth1")
    }

    /// Brings the node's link back (and its default route, which the
    /// kernel dropped with the link).
    pub fn node_link_up(&self, node: &str) -> Result<()> {
        let ns = self.ns(node)?;
        ns.link_up("eth1")?;
        let routes = ns.ip(&["route", "show", "default"])?;
        if routes.trim().is_empty() {
            ns.ip(&["route", "add", "default", "via", ROUTER_ADDRESS])?;
        }
        Ok(())
    }

    /// Applies an EndpointSlice in which the pod on each node of `ready_on`
    /// is ready and every other node's pod is not (Kubernetes mode).
    pub fn set_ready_pods(&self, ready_on: &[&str]) -> Result<String> {
        self.cluster().apply(&endpoint_slice_manifest(ready_on))
    }

    /// Waits until r1's BGP table has a path for the service from `node`
    /// that is not stale: after a graceful restart, herald re-announced and
    /// sent End-of-RIB (`show bgp ipv4 unicast PREFIX json`).
    pub fn wait_fresh_path(&self, node: &str, timeout: Duration) -> Result<()> {
        let router = self.ecmp.router()?;
        let peer = self.next_hop(node)?.to_string();
        let cmd = format!("show bgp ipv4 unicast {SERVICE_V4}/32 json");
        wait_until(
            timeout,
            Duration::from_millis(100),
            &format!("a fresh path from {node} at r1"),
            || {
                let table = router.vtysh_json(&cmd).map_err(|e| e.to_string())?;
                let fresh = table["paths"].as_array().is_some_and(|paths| {
                    paths
                        .iter()
                        .any(|p| p["peer"]["peerId"] == peer.as_str() && p["stale"] != true)
                });
                if fresh {
                    Ok(())
                } else {
                    Err(table.to_string())
                }
            },
        )
    }

    /// Waits until r1's FIB forwards the service over exactly the next hops
    /// of `nodes`.
    pub fn wait_next_hops(&self, nodes: &[&str], timeout: Duration) -> Result<()> {
        let mut want: Vec<IpAddr> = nodes
            .iter()
            .map(|n| self.next_hop(n))
            .collect::<Result<_>>()?;
        want.sort();
        let r1 = self.router_ns()?;
        wait_until(
            timeout,
            Duration::from_millis(20),
            &format!("r1 to forward {SERVICE_V4} over exactly {nodes:?}"),
            || match crate::fib::fib_next_hops(r1, SERVICE_V4) {
                Ok(mut hops) => {
                    hops.sort();
                    if hops == want {
                        Ok(())
                    } else {
                        Err(format!("next hops {hops:?}"))
                    }
                }
                Err(e) => Err(e.to_string()),
            },
        )
    }
}

fn start_responders(ecmp: &Ecmp3) -> Result<BTreeMap<String, Responder>> {
    let mut responders = BTreeMap::new();
    for node in NODES {
        let ns = ecmp.net.ns(node)?;
        responders.insert(
            node.to_owned(),
            Responder::start(ns, service_target(), node)?,
        );
    }
    Ok(responders)
}

/// The standalone services file: the service address, no health check.
pub fn services_file() -> String {
    format!("services:\n  - name: web\n    addresses: [{SERVICE_V4}]\n")
}

/// The three Nodes, labelled like a real cluster's.
pub fn nodes_manifest() -> String {
    NODES
        .iter()
        .map(|node| {
            format!(
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n  labels:\n    \
                 kubernetes.io/hostname: {node}\n    kubernetes.io/os: linux\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The Service `default/web`: the service address as an external IP,
/// selected by annotation, with `policy` as its `externalTrafficPolicy`.
pub fn service_manifest(policy: TrafficPolicy) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\n  \
         annotations:\n    herald.dev/advertise: \"true\"\nspec:\n  type: LoadBalancer\n  \
         externalTrafficPolicy: {}\n  externalIPs: [{SERVICE_V4}]\n  selector:\n    app: web\n  \
         ports:\n  - name: http\n    port: {SERVICE_PORT}\n    protocol: TCP\n",
        policy.as_str()
    )
}

/// The EndpointSlice of `default/web` with `pods[i]` ready pods on node
/// `NODES[i]` (and none on a node with 0; at least one pod in all), pod
/// addresses from 198.18.1.0/24 by node and pod.
pub fn endpoint_slice_counts_manifest(pods: [usize; 3]) -> String {
    let mut yaml = String::from(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-lab\n  \
         namespace: default\n  labels:\n    kubernetes.io/service-name: web\n\
         addressType: IPv4\nports:\n- name: http\n  port: 80\n  protocol: TCP\nendpoints:\n",
    );
    for (index, (node, count)) in NODES.iter().zip(pods).enumerate() {
        for pod in 0..count {
            yaml.push_str(&format!(
                "- addresses: [198.18.1.{}]\n  nodeName: {node}\n  conditions:\n    ready: true\n    \
                 serving: true\n    terminating: false\n",
                index * 50 + pod + 1
            ));
        }
    }
    yaml
}

/// The EndpointSlice of `default/web`: one pod per node, ready on the nodes
/// in `ready_on` and not ready (nor serving) on the others.
pub fn endpoint_slice_manifest(ready_on: &[&str]) -> String {
    let mut yaml = String::from(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-lab\n  \
         namespace: default\n  labels:\n    kubernetes.io/service-name: web\n\
         addressType: IPv4\nports:\n- name: http\n  port: 80\n  protocol: TCP\nendpoints:\n",
    );
    for (index, node) in NODES.iter().enumerate() {
        let ready = ready_on.contains(node);
        yaml.push_str(&format!(
            "- addresses: [198.18.1.{}]\n  nodeName: {node}\n  conditions:\n    ready: {ready}\n    \
             serving: {ready}\n    terminating: false\n",
            index + 1
        ));
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn herald_config_follows_the_contract_shape_for_each_node() {
        let setup = HeraldSetup::new("/bin/herald", Source::Standalone);
        let yaml = setup.config_for(1);
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(doc["asn"].as_u64(), Some(64602));
        assert_eq!(doc["router_id"].as_str(), Some("192.0.2.12"));
        assert_eq!(doc["admin_listen"].as_str(), Some(ADMIN));
        let peer = &doc["peers"][0];
        assert_eq!(peer["address"].as_str(), Some(ROUTER_ADDRESS));
        assert_eq!(peer["bfd"]["min_rx"].as_str(), Some("50ms"));
        assert_eq!(peer["bfd"]["multiplier"].as_u64(), Some(3));
        assert_eq!(
            peer["graceful_restart"]["restart_time"].as_str(),
            Some("120s")
        );
        assert_eq!(doc["drain"]["gshut_wait"].as_str(), Some("5000ms"));
    }

    #[test]
    fn herald_config_without_bfd_or_graceful_restart_turns_them_off() {
        let mut setup = HeraldSetup::new("/bin/herald", Source::Standalone);
        setup.bfd = None;
        setup.graceful_restart = None;
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&setup.config_for(0)).unwrap();
        assert_eq!(doc["peers"][0]["bfd"]["enabled"].as_bool(), Some(false));
        assert_eq!(
            doc["peers"][0]["graceful_restart"]["enabled"].as_bool(),
            Some(false)
        );
    }

    #[test]
    fn the_endpoint_slice_marks_only_the_named_nodes_ready() {
        let yaml = endpoint_slice_manifest(&["n2"]);
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        let endpoints = doc["endpoints"].as_sequence().unwrap();
        let ready: Vec<&str> = endpoints
            .iter()
            .filter(|e| e["conditions"]["ready"].as_bool() == Some(true))
            .map(|e| e["nodeName"].as_str().unwrap())
            .collect();
        assert_eq!(ready, ["n2"]);
        assert_eq!(
            doc["metadata"]["labels"]["kubernetes.io/service-name"].as_str(),
            Some("web")
        );
    }

    #[test]
    fn manifests_are_valid_yaml_documents() {
        for text in [
            nodes_manifest(),
            service_manifest(TrafficPolicy::Local),
            services_file(),
        ] {
            for doc in text.split("---\n") {
                let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(doc).unwrap();
                assert!(value.is_mapping(), "{doc}");
            }
        }
        assert!(service_manifest(TrafficPolicy::Local).contains("externalTrafficPolicy: Local"));
    }
}
