//! The Kubernetes source against the API stand-in (testnet/apiserver), driven
//! by kubectl where a user would use kubectl: selection, annotation, deletion,
//! readiness, node exclusion; and faults (410 expiry, 500s, cut watches, a
//! 30 s outage) during which the desired set must never shrink spuriously.
//!
//! kubectl (Debian package `kubectl`) is needed for the kubectl tests: outside
//! CI they skip with a printed reason when it is missing; with CI=true they
//! fail.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::config::PoolConfig;
use herald::kube::{KubeSource, Metrics, PolicyConfig};
use herald::policy::{Desired, SelectionConfig};
use herald_apiserver::{Options, StandIn};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::sync::watch;

const NODE: &str = "node-a";
/// Every wait is bounded; generous so a loaded CI machine does not flake.
const BOUND: Duration = Duration::from_secs(10);

struct Lab {
    standin: StandIn,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    source: KubeSource,
    _config: watch::Sender<PolicyConfig>,
}

fn policy() -> PolicyConfig {
    PolicyConfig {
        pools: vec![PoolConfig {
            name: "public".to_string(),
            cidrs: vec![
                "203.0.113.0/24".parse().unwrap(),
                "2001:db8:ffff::/64".parse().unwrap(),
            ],
            communities: vec!["65000:100".parse().unwrap()],
        }],
        selection: SelectionConfig::default(),
    }
}

fn node_object(labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": labels}})
}

fn service_object(name: &str, ip: &str, annotations: Value, policy: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": 8080}],
                 "selector": {"app": name}, "externalTrafficPolicy": policy,
                 "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"]},
        "status": {"loadBalancer": {"ingress": [{"ip": ip}]}},
    })
}

fn slice_object(service: &str, node: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-abc"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.5"], "nodeName": node,
                       "conditions": {"ready": ready, "serving": ready, "terminating": false}}],
        "ports": [{"port": 8080, "protocol": "TCP"}],
    })
}

async fn lab() -> Lab {
    let standin = StandIn::start(Options {
        bookmark_interval: Duration::from_secs(1),
        ..Options::default()
    })
    .unwrap();
    standin.apply_json(node_object(json!({}))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = standin.kubeconfig(dir.path()).unwrap();
    let config = kube::Config::new(standin.url().parse().unwrap());
    let (config_tx, config_rx) = watch::channel(policy());
    let metrics = Metrics::register(&mut Registry::default());
    let source = KubeSource::spawn(config, NODE, config_rx, metrics).unwrap();
    let lab = Lab {
        standin,
        dir,
        kubeconfig,
        source,
        _config: config_tx,
    };
    lab.wait("the first desired set", |d| d.is_some()).await;
    lab
}

impl Lab {
    fn addresses(&self) -> Option<BTreeSet<IpAddr>> {
        self.source
            .desired()
            .borrow()
            .as_ref()
            .map(|d| d.addresses())
    }

    /// Waits (bounded) until the desired set satisfies `done`; returns how
    /// long it took.
    async fn wait(&self, what: &str, done: impl Fn(Option<&Desired>) -> bool) -> Duration {
        let start = Instant::now();
        let mut rx = self.source.desired();
        let result = tokio::time::timeout(BOUND, rx.wait_for(|d| done(d.as_deref()))).await;
        assert!(
            matches!(result, Ok(Ok(_))),
            "{what}: not reached within {BOUND:?}; desired: {:?}; health: {:?}",
            self.addresses(),
            self.source.report()
        );
        start.elapsed()
    }

    async fn wait_for_addresses(&self, what: &str, want: &[&str]) -> Duration {
        let want: BTreeSet<IpAddr> = want.iter().map(|a| a.parse().unwrap()).collect();
        let took = self
            .wait(what, |d| d.is_some_and(|d| d.addresses() == want))
            .await;
        println!("{what}: {took:?}");
        took
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) {
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args);
        let output = match stdin {
            Some(text) => {
                let path = self.dir.path().join("manifest.json");
                std::fs::write(&path, text).unwrap();
                command.arg("-f").arg(&path).output()
            }
            None => command.output(),
        }
        .expect("kubectl runs");
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn kubectl_available() -> bool {
    let found = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true and kubectl is missing (apt-get install kubectl)");
        }
        eprintln!("skipping: kubectl is not installed");
    }
    found
}

/// Every desired set handed out since recording began.
type Seen = Arc<Mutex<Vec<BTreeSet<IpAddr>>>>;

/// Records every desired set the source hands out, to check it never shrank.
fn record(source: &KubeSource) -> (Seen, tokio::task::JoinHandle<()>) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_annotate_and_delete_drive_the_desired_set() {
    if !kubectl_available() {
        return;
    }
    let lab = lab().await;
    lab.standin
        .apply_json(slice_object("web", NODE, true))
        .unwrap();
    let manifest = service_object(
        "web",
        "203.0.113.10",
        json!({"herald.dev/advertise": "true"}),
        "Cluster",
    );
    lab.kubectl(&["apply"], Some(&manifest.to_string()));
    // kubectl apply does not write status; the load-balancer controller
    // would. Write it as that controller does.
    let mut with_status = lab
        .standin
        .get("v1", "Service", Some("default"), "web")
        .unwrap();
    with_status["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}});
    lab.standin.apply_json(with_status).unwrap();
    let took = lab.wait_for_addresses("applied", &["203.0.113.10"]).await;
    println!("kubectl apply + status -> desired: {took:?}");

    lab.kubectl(
        &[
            "annotate",
            "--overwrite",
            "service",
            "web",
            "herald.dev/advertise=false",
        ],
        None,
    );
    lab.wait_for_addresses("annotated off", &[]).await;
    lab.kubectl(
        &[
            "annotate",
            "--overwrite",
            "service",
            "web",
            "herald.dev/advertise=true",
        ],
        None,
    );
    lab.wait_for_addresses("annotated on", &["203.0.113.10"])
        .await;
    lab.kubectl(&["delete", "service", "web", "--wait=false"], None);
    lab.wait_for_addresses("deleted", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_flips_drive_a_local_service_and_node_exclusion_withdraws_everything() {
    if !kubectl_available() {
        return;
    }
    let lab = lab().await;
    let advertise = json!({"herald.dev/advertise": "true"});
    lab.standin
        .apply_json(service_object(
            "web",
            "203.0.113.10",
            advertise.clone(),
            "Local",
        ))
        .unwrap();
    lab.standin
        .apply_json(service_object("api", "203.0.113.11", advertise, "Cluster"))
        .unwrap();
    lab.standin
        .apply_json(slice_object("web", NODE, false))
        .unwrap();
    lab.standin
        .apply_json(slice_object("api", "node-b", true))
        .unwrap();
    lab.wait_for_addresses("local endpoint not ready", &["203.0.113.11"])
        .await;
    lab.standin
        .apply_json(slice_object("web", NODE, true))
        .unwrap();
    lab.wait_for_addresses("local endpoint ready", &["203.0.113.10", "203.0.113.11"])
        .await;
    lab.standin
        .apply_json(slice_object("web", "node-b", true))
        .unwrap();
    lab.wait_for_addresses("endpoint moved to another node", &["203.0.113.11"])
        .await;
    lab.standin
        .apply_json(slice_object("web", NODE, true))
        .unwrap();
    lab.wait_for_addresses("endpoint back", &["203.0.113.10", "203.0.113.11"])
        .await;

    lab.kubectl(
        &[
            "label",
            "node",
            NODE,
            "node.kubernetes.io/exclude-from-external-load-balancers=true",
        ],
        None,
    );
    lab.wait_for_addresses("node excluded", &[]).await;
    lab.kubectl(
        &[
            "label",
            "node",
            NODE,
            "node.kubernetes.io/exclude-from-external-load-balancers-",
        ],
        None,
    );
    lab.wait_for_addresses("node included again", &["203.0.113.10", "203.0.113.11"])
        .await;
}

async fn populated_lab() -> Lab {
    let lab = lab().await;
    let advertise = json!({"herald.dev/advertise": "true"});
    for (name, ip) in [("web", "203.0.113.10"), ("api", "203.0.113.11")] {
        lab.standin
            .apply_json(service_object(name, ip, advertise.clone(), "Cluster"))
            .unwrap();
        lab.standin
            .apply_json(slice_object(name, NODE, true))
            .unwrap();
    }
    lab.wait_for_addresses("populated", &["203.0.113.10", "203.0.113.11"])
        .await;
    lab
}

fn never_shrank(seen: &[BTreeSet<IpAddr>], full: &BTreeSet<IpAddr>) {
    for (i, set) in seen.iter().enumerate() {
        assert!(set.is_superset(full), "desired set {i} shrank to {set:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_expiry_errors_and_cuts_never_shrink_the_desired_set() {
    let lab = populated_lab().await;
    let full = lab.addresses().unwrap();
    let (seen, recorder) = record(&lab.source);
    let faults = lab.standin.faults();
    for round in 0..3 {
        lab.standin.compact();
        faults.expire_watches(); // in-stream 410: relist
        tokio::time::sleep(Duration::from_millis(300)).await;
        faults.fail_next(5, 500);
        faults.cut_connections();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(lab.addresses().as_ref(), Some(&full), "round {round}");
    }
    // A change after the faults still arrives: the watches recovered.
    lab.standin
        .delete("v1", "Service", Some("default"), "api")
        .unwrap();
    // After 15 failed requests kube's backoff may wait up to 30 s.
    let want: BTreeSet<IpAddr> = BTreeSet::from(["203.0.113.10".parse().unwrap()]);
    let start = Instant::now();
    let mut rx = lab.source.desired();
    let converged = tokio::time::timeout(
        Duration::from_secs(60),
        rx.wait_for(|d| d.as_ref().is_some_and(|d| d.addresses() == want)),
    )
    .await;
    assert!(
        converged.is_ok(),
        "no convergence after the faults: {:?}",
        lab.source.report()
    );
    println!("converged after faults: {:?}", start.elapsed());
    recorder.abort();
    let seen = seen.lock().unwrap().clone();
    // Every set handed out is the full one, or the converged one after the
    // real deletion (the recorder may or may not have seen that one).
    let before_deletion: Vec<BTreeSet<IpAddr>> = seen.into_iter().filter(|s| *s != want).collect();
    never_shrank(&before_deletion, &full);
    let report = lab.source.report();
    assert!(
        report.watches.iter().map(|w| w.relists).sum::<u64>() > 3,
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thirty_second_outage_keeps_the_desired_set_and_converges_after() {
    let lab = populated_lab().await;
    let full = lab.addresses().unwrap();
    let (seen, recorder) = record(&lab.source);
    let faults = lab.standin.faults();
    faults.go_down();
    // The stand-in cuts open connections asynchronously: wait until herald's
    // Services watch has failed, so the change below cannot travel on a
    // watch that is still open.
    let cut = Instant::now();
    while lab
        .source
        .report()
        .watches
        .iter()
        .any(|w| w.resource == herald::kube::Resource::Services && w.healthy)
    {
        assert!(
            cut.elapsed() < Duration::from_secs(10),
            "the Services watch survived the outage: {:?}",
            lab.source.report()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Changes made while herald cannot see them.
    lab.standin
        .delete("v1", "Service", Some("default"), "api")
        .unwrap();
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            lab.addresses().as_ref(),
            Some(&full),
            "withdrawn during the outage"
        );
    }
    let report = lab.source.report();
    assert!(!report.ready, "{report:?}");
    assert!(
        report.stale_for_seconds.unwrap_or_default() > 20.0,
        "{report:?}"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        0,
        "nothing handed out during the outage"
    );
    faults.come_up();
    // kube's default backoff may wait up to about 30 s before retrying.
    let start = Instant::now();
    let mut rx = lab.source.desired();
    let converged = tokio::time::timeout(
        Duration::from_secs(90),
        rx.wait_for(|d| d.as_ref().is_some_and(|d| d.addresses().len() == 1)),
    )
    .await;
    assert!(
        converged.is_ok(),
        "no convergence after the outage: {:?}",
        lab.source.report()
    );
    println!("converged {:?} after the API came back", start.elapsed());
    recorder.abort();
    // The other watches may still be in backoff; each relists in turn.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lab.source.report().ready && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = lab.source.report();
    assert!(report.ready, "{report:?}");
    assert_eq!(report.stale_for_seconds, Some(0.0));
    println!("ready again {:?} after the API came back", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_recorded_on_the_service_once() {
    let lab = populated_lab().await;
    lab.standin
        .apply_json(service_object(
            "outside",
            "192.0.2.10",
            json!({"herald.dev/advertise": "true"}),
            "Cluster",
        ))
        .unwrap();
    let deadline = Instant::now() + BOUND;
    let events = loop {
        let events = lab
            .standin
            .list("events.k8s.io/v1", "Event", Some("default"));
        if events.iter().any(|e| e["reason"] == "OutsidePools") || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reasons: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["regarding"]["name"].as_str().unwrap_or("?"),
                e["reason"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert!(
        reasons.contains(&"outside:OutsidePools".to_string()),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"web:Announcing".to_string()),
        "{reasons:?}"
    );
    // A relist re-reads everything: no new events.
    let before = events.len();
    lab.standin.compact();
    lab.standin.faults().expire_watches();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = lab
        .standin
        .list("events.k8s.io/v1", "Event", Some("default"))
        .len();
    assert_eq!(after, before, "a relist recorded events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_refusal_event_and_each_records_its_own_announcement() {
    let standin = StandIn::start(Options::default()).unwrap();
    for node in ["node-a", "node-b"] {
        standin
            .apply_json(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}))
            .unwrap();
    }
    let advertise = json!({"herald.dev/advertise": "true"});
    standin
        .apply_json(service_object(
            "web",
            "203.0.113.10",
            advertise.clone(),
            "Cluster",
        ))
        .unwrap();
    standin
        .apply_json(slice_object("web", "node-a", true))
        .unwrap();
    standin
        .apply_json(service_object(
            "outside",
            "192.0.2.10",
            advertise,
            "Cluster",
        ))
        .unwrap();
    let mut sources = Vec::new();
    for node in ["node-a", "node-b"] {
        let config = kube::Config::new(standin.url().parse().unwrap());
        let (config_tx, config_rx) = watch::channel(policy());
        let metrics = Metrics::register(&mut Registry::default());
        sources.push((
            KubeSource::spawn(config, node, config_rx, metrics).unwrap(),
            config_tx,
        ));
    }
    // Both nodes refuse 192.0.2.10 and announce 203.0.113.10 (Cluster policy).
    let summary = |events: &[Value]| -> (Vec<Value>, Vec<String>) {
        let refusals = events
            .iter()
            .filter(|e| e["reason"] == "OutsidePools")
            .cloned()
            .collect();
        let mut announcing: Vec<String> = events
            .iter()
            .filter(|e| e["reason"] == "Announcing")
            .map(|e| e["note"].as_str().unwrap_or_default().to_string())
            .collect();
        announcing.sort();
        (refusals, announcing)
    };
    let deadline = Instant::now() + BOUND;
    let (refusals, announcing) = loop {
        let events = standin.list("events.k8s.io/v1", "Event", Some("default"));
        let (refusals, announcing) = summary(&events);
        let counted = refusals.len() == 1 && refusals[0]["series"]["count"] == 2;
        if (counted && announcing.len() == 2) || Instant::now() > deadline {
            break (refusals, announcing);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        refusals.len(),
        1,
        "one OutsidePools Event for the cluster: {refusals:#?}"
    );
    let refusal = &refusals[0];
    assert_eq!(refusal["series"]["count"], 2, "{refusal:#}");
    assert_eq!(refusal["regarding"]["name"], "outside");
    assert_eq!(refusal["reportingInstance"], "herald-cluster");
    assert!(
        refusal["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("outside.herald.")),
        "{refusal:#}"
    );
    assert_eq!(
        announcing,
        [
            "node node-a announces 203.0.113.10 (load-balancer) from pool public",
            "node node-b announces 203.0.113.10 (load-balancer) from pool public",
        ],
        "one Announcing Event per node"
    );
}
