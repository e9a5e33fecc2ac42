//! The policy at scale, without an API server: 10,000 Services and 10,000
//! EndpointSlices (3 endpoints each over 100 nodes), stripped as the watchers
//! strip them. Prints the time of one full evaluation (what a Node or config
//! change costs), of one incremental update after one Service changed (what
//! a Service or slice change costs, with building the whole desired set), the
//! stripping ratio, and the RSS growth of holding the stores.
//!
//! Run: `cargo bench --bench kube_policy` (HERALD_BENCH_SERVICES=N to resize).

use std::sync::Arc;
use std::time::Instant;

use herald::config::PoolConfig;
use herald::kube::strip;
use herald::policy::{IncrementalEvaluation, SelectionConfig, ServiceKey, Snapshot, evaluate};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

const NODE: &str = "node-0";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|v| v.parse().unwrap_or(0)))
        })
        .unwrap_or(0)
}

fn service(i: usize) -> Service {
    let local = i.is_multiple_of(2);
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("svc-{i}"), "namespace": format!("ns-{}", i % 50),
            "uid": format!("00000000-0000-0000-0000-{i:012}"), "resourceVersion": "1",
            "labels": {"app": format!("app-{i}"), "team": "shop"},
            "annotations": {
                "herald.dev/advertise": if i % 4 == 3 { "false" } else { "true" },
                "kubectl.kubernetes.io/last-applied-configuration": "x".repeat(600),
            },
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:labels": {}}, "f:spec": {"f:ports": {}}}}],
        },
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": format!("198.18.{}.{}", i / 250, i % 250),
            "clusterIPs": [format!("198.18.{}.{}", i / 250, i % 250)],
            "externalTrafficPolicy": if local { "Local" } else { "Cluster" },
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30000 + (i % 2000)}],
            "selector": {"app": format!("app-{i}")},
        },
        "status": {"loadBalancer": {"ingress": [
            {"ip": format!("198.19.{}.{}", i / 250, i % 250), "ipMode": "VIP"},
        ]}},
    }))
    .unwrap()
}

fn slice(i: usize, nodes: usize) -> EndpointSlice {
    let endpoints: Vec<_> = (0..3)
        .map(|e| {
            let node = (i * 7 + e * 13) % nodes;
            json!({
                "addresses": [format!("10.{}.{}.{}", e, i / 250, i % 250)],
                "nodeName": format!("node-{node}"),
                "zone": "z1",
                "targetRef": {"kind": "Pod", "name": format!("pod-{i}-{e}"), "namespace": format!("ns-{}", i % 50)},
                "conditions": {"ready": e != 2, "serving": true, "terminating": e == 2},
            })
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("svc-{i}-abcde"), "namespace": format!("ns-{}", i % 50),
            "labels": {"kubernetes.io/service-name": format!("svc-{i}"),
                       "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
            "resourceVersion": "1",
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }))
    .unwrap()
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: stay tiny then.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let count: usize = std::env::var("HERALD_BENCH_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benchmarking { 10_000 } else { 100 });
    let nodes = 100;

    let rss_start = rss_kib();
    let raw_bytes: usize = (0..count.min(100))
        .map(|i| {
            serde_json::to_vec(&service(i)).unwrap().len()
                + serde_json::to_vec(&slice(i, nodes)).unwrap().len()
        })
        .sum();
    let mut services = Vec::with_capacity(count);
    let mut slices = Vec::with_capacity(count);
    let build = Instant::now();
    for i in 0..count {
        let mut s = service(i);
        strip::service(&mut s);
        services.push(Arc::new(s));
        let mut e = slice(i, nodes);
        strip::endpoint_slice(&mut e, NODE);
        slices.push(Arc::new(e));
    }
    let build_time = build.elapsed();
    let stripped_bytes: usize = (0..count.min(100))
        .map(|i| {
            serde_json::to_vec(&*services[i]).unwrap().len()
                + serde_json::to_vec(&*slices[i]).unwrap().len()
        })
        .sum();
    let rss_stores = rss_kib();

    let node: Node =
        serde_json::from_value(json!({"metadata": {"name": NODE, "labels": {}}})).unwrap();
    let snapshot = Snapshot {
        services,
        endpoint_slices: slices,
        node: Arc::new(node),
        namespaces: Arc::default(),
    };
    let pools = vec![PoolConfig {
        name: "bench".to_string(),
        cidrs: vec!["198.18.0.0/15".parse().unwrap()],
        communities: vec!["65000:100".parse().unwrap()],
        ..PoolConfig::default()
    }];
    let selection = SelectionConfig::default();

    let runs = if benchmarking { 21 } else { 3 };
    let mut times = Vec::new();
    let mut desired = evaluate(&snapshot, &pools, &selection);
    for _ in 0..runs {
        let start = Instant::now();
        desired = evaluate(&snapshot, &pools, &selection);
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let refused = desired.refusals().count();
    println!("kube_policy: {count} Services, {count} EndpointSlices, {nodes} nodes");
    println!(
        "  strip: {:.1} KiB -> {:.1} KiB per 100 Service+slice pairs ({:.0}x smaller); build+strip {:.0} ms",
        raw_bytes as f64 / 1024.0,
        stripped_bytes as f64 / 1024.0,
        raw_bytes as f64 / stripped_bytes.max(1) as f64,
        build_time.as_secs_f64() * 1000.0
    );
    println!(
        "  stores: RSS +{:.1} MiB (total {:.1} MiB)",
        (rss_stores.saturating_sub(rss_start)) as f64 / 1024.0,
        rss_stores as f64 / 1024.0
    );
    println!(
        "  evaluate: median {:.2} ms over {runs} runs (min {:.2}, max {:.2}); {} announced, {refused} refused",
        median(times.clone()),
        times.iter().cloned().fold(f64::INFINITY, f64::min),
        times.iter().cloned().fold(0.0, f64::max),
        desired.announcements.len(),
    );
    assert!(
        !desired.announcements.is_empty(),
        "the bench must announce something"
    );

    // One Service changes (its load-balancer address moves): decide it
    // again, with its slice, and build the whole desired set.
    let mut incremental = IncrementalEvaluation::evaluate_all(&snapshot, &pools, &selection);
    let mut times = Vec::new();
    for run in 0..runs {
        let i = (run * 997) % count;
        let mut changed = service(i);
        changed.status = serde_json::from_value(json!({"loadBalancer": {"ingress": [
            {"ip": format!("198.19.{}.{}", run / 250, run % 250 + 1)},
        ]}}))
        .unwrap();
        strip::service(&mut changed);
        let key = ServiceKey::of_service(&changed);
        let start = Instant::now();
        incremental.update(
            &snapshot.node,
            &snapshot.namespaces,
            &pools,
            &selection,
            vec![(key, Some(&changed))],
            [&*snapshot.endpoint_slices[i]],
        );
        let desired = incremental.desired();
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        assert!(!desired.announcements.is_empty());
    }
    println!(
        "  one Service changed, incremental update + desired set: median {:.2} ms over {runs} runs (min {:.2}, max {:.2})",
        median(times.clone()),
        times.iter().cloned().fold(f64::INFINITY, f64::min),
        times.iter().cloned().fold(0.0, f64::max),
    );
}
