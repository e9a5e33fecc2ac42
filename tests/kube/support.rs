//! What the Kubernetes tests share: a lab with the real API server alone in
//! a namespace (on its loopback, at 198.18.0.2, with a cuttable proxy in
//! front on port 6444), herald's Kubernetes source running in process
//! inside that namespace, and the objects the tests apply.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::config::PoolConfig;
use herald::kube::{KubeSource, Metrics, PolicyConfig};
use herald::policy::{Desired, SelectionConfig};
use herald_testnet::cluster::Cluster;
use herald_testnet::proxy::CutProxy;
use herald_testnet::{Lab, Namespace};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::sync::watch;

/// The node herald runs as.
pub const NODE: &str = "node-a";

/// Every wait is bounded; generous so a loaded CI machine does not flake.
pub const BOUND: Duration = Duration::from_secs(20);

/// The proxy's port, on the API server's address.
const PROXY_PORT: u16 = 6444;

/// A lab holding the API server, and the proxy herald's source talks to.
pub struct KubeLab {
    pub ns: Namespace,
    pub cluster: Arc<Cluster>,
    pub proxy: Arc<CutProxy>,
    // Last: the lab tears down the namespace after the rest is dropped.
    _lab: Lab,
}

impl KubeLab {
    /// The API server in a namespace of `lab`, the proxy in front of it,
    /// and Node `node-a`.
    pub fn start(lab: Lab) -> KubeLab {
        let ns = lab.namespace("api").expect("the API's namespace");
        let cluster = Cluster::start_local(&ns).expect("kube-apiserver and etcd");
        let listen = SocketAddr::new(cluster.socket_address().ip(), PROXY_PORT);
        let proxy = CutProxy::start(&ns, listen, cluster.socket_address()).expect("the proxy");
        cluster.apply_json(&node_object(NODE)).expect("the Node");
        KubeLab {
            ns,
            cluster: Arc::new(cluster),
            proxy: Arc::new(proxy),
            _lab: lab,
        }
    }

    /// Runs `test` on a tokio runtime whose threads are inside the API's
    /// namespace (so herald's client reaches 198.18.0.2 there); returns
    /// once it is done, resuming its panic here.
    pub fn run<F, Fut>(&self, test: F)
    where
        F: FnOnce(Arc<Cluster>, Arc<CutProxy>) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let cluster = Arc::clone(&self.cluster);
        let proxy = Arc::clone(&self.proxy);
        self.ns
            .run_in(move || {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a runtime")
                    .block_on(test(cluster, proxy))
            })
            .expect("enter the API's namespace");
        self.cluster.assert_nothing_forbidden();
    }
}

/// The pools every test uses.
pub fn policy() -> PolicyConfig {
    PolicyConfig {
        pools: vec![PoolConfig {
            name: "public".to_string(),
            cidrs: vec![
                "203.0.113.0/24".parse().unwrap(),
                "2001:db8:ffff::/64".parse().unwrap(),
            ],
            communities: vec!["65000:100".parse().unwrap()],
            ..PoolConfig::default()
        }],
        selection: SelectionConfig::default(),
    }
}

/// herald's client configuration from a kubeconfig (its ServiceAccount's).
pub async fn client_config(kubeconfig: &Path) -> kube::Config {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).expect("the kubeconfig");
    kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
        .await
        .expect("a client config")
}

/// What a test keeps beside its source: the config sender (the source
/// stops reading config when it is dropped) and the source's metrics.
pub struct Handles {
    pub _config: watch::Sender<PolicyConfig>,
    pub metrics: Metrics,
}

/// A Kubernetes source for `node` with herald's credentials, through
/// `proxy` when given.
pub async fn source(
    cluster: &Cluster,
    proxy: Option<&CutProxy>,
    node: &str,
) -> (KubeSource, Handles) {
    let kubeconfig = match proxy {
        Some(proxy) => cluster
            .kubeconfig_via(proxy.address(), "herald-via-proxy")
            .expect("a kubeconfig through the proxy"),
        None => cluster.kubeconfig().to_owned(),
    };
    let config = client_config(&kubeconfig).await;
    let (config_tx, config_rx) = watch::channel(policy());
    let metrics = Metrics::register(&mut Registry::default());
    let source = KubeSource::spawn(config, node, config_rx, metrics.clone()).expect("the source");
    (
        source,
        Handles {
            _config: config_tx,
            metrics,
        },
    )
}

pub fn node_object(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
}

/// A LoadBalancer Service with `annotations`; its address is written to
/// `status` separately ([`set_address`]), as a load-balancer controller
/// would.
pub fn service_object(name: &str, annotations: Value, policy: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": 8080}],
                 "selector": {"app": name}, "externalTrafficPolicy": policy},
    })
}

/// Applies `service_object` and sets its load-balancer address.
pub fn apply_service(cluster: &Cluster, name: &str, ip: &str, annotations: Value, policy: &str) {
    cluster
        .apply_json(&service_object(name, annotations, policy))
        .expect("kubectl apply");
    set_address(cluster, name, ip);
}

/// Writes `status.loadBalancer.ingress` of `default/NAME`.
pub fn set_address(cluster: &Cluster, name: &str, ip: &str) {
    cluster
        .set_load_balancer_ips("default", name, &[ip])
        .expect("kubectl patch --subresource=status");
}

pub fn slice_object(service: &str, node: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-abc"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["198.18.1.5"], "nodeName": node,
                       "conditions": {"ready": ready, "serving": ready, "terminating": false}}],
        "ports": [{"port": 8080, "protocol": "TCP"}],
    })
}

/// The addresses of the source's current desired set.
pub fn addresses(source: &KubeSource) -> Option<BTreeSet<IpAddr>> {
    source.desired().borrow().as_ref().map(|d| d.addresses())
}

/// Waits (bounded by `bound`) until the desired set satisfies `done`;
/// returns how long it took.
pub async fn wait(
    source: &KubeSource,
    what: &str,
    bound: Duration,
    done: impl Fn(Option<&Desired>) -> bool,
) -> Duration {
    let start = Instant::now();
    let mut rx = source.desired();
    let result = tokio::time::timeout(bound, rx.wait_for(|d| done(d.as_deref()))).await;
    assert!(
        matches!(result, Ok(Ok(_))),
        "{what}: not reached within {bound:?}; desired: {:?}; health: {:?}",
        addresses(source),
        source.report()
    );
    start.elapsed()
}

/// Waits until the desired set is exactly `want`.
pub async fn wait_for_addresses(source: &KubeSource, what: &str, want: &[&str]) -> Duration {
    let want: BTreeSet<IpAddr> = want.iter().map(|a| a.parse().unwrap()).collect();
    let took = wait(source, what, BOUND, |d| {
        d.is_some_and(|d| d.addresses() == want)
    })
    .await;
    println!("{what}: {took:?}");
    took
}

/// Every desired set handed out since recording began.
pub type Seen = Arc<Mutex<Vec<BTreeSet<IpAddr>>>>;

/// Records every desired set the source hands out, to check it never shrank.
pub fn record(source: &KubeSource) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut rx = source.desired();
    rx.mark_unchanged(); // record only what comes after this point
    let log = seen.clone();
    let task = tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            if let Some(d) = rx.borrow_and_update().as_ref() {
                log.lock().unwrap().push(d.addresses());
            }
        }
    });
    (seen, task)
}

pub fn never_shrank(seen: &[BTreeSet<IpAddr>], full: &BTreeSet<IpAddr>) {
    for (i, set) in seen.iter().enumerate() {
        assert!(set.is_superset(full), "desired set {i} shrank to {set:?}");
    }
}

/// The `events.k8s.io/v1` Events in namespace `default`.
pub fn events(cluster: &Cluster) -> Vec<Value> {
    cluster
        .get_json(&["events.v1.events.k8s.io", "-n", "default"])
        .expect("kubectl get events")["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}
