//! Prints how the stand-in copes at herald's scale target: 10,000 Services and 10,000
//! EndpointSlices loaded as fixtures, then a full kube `watcher` initial list of each (paged
//! and streaming), and the process's resident memory. Figures are printed, never asserted.
//!
//! ```text
//! cargo run --release -p herald-apiserver --example scale [-- COUNT]
//! ```

use std::time::Instant;

use futures::StreamExt;
use herald_apiserver::{Options, StandIn};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use serde_json::json;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn initial_list<K>(api: kube::Api<K>, config: watcher::Config) -> usize
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut stream = watcher::watcher(api, config).boxed();
    let mut n = 0;
    while let Some(event) = stream.next().await {
        match event.expect("watcher") {
            Event::InitApply(_) => n += 1,
            Event::InitDone => return n,
            _ => {}
        }
    }
    n
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let s = StandIn::start(Options::default()).expect("start");
    let start = Instant::now();
    for i in 0..count {
        let name = format!("svc-{i}");
        let ip = format!("198.18.{}.{}", i / 256, i % 256);
        s.apply_json(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default",
                         "annotations": {"herald.dev/advertise": "true"}},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}))
            .expect("service");
        s.apply_json(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-x"), "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["192.0.2.10"], "nodeName": format!("node-{}", i % 10),
                           "conditions": {"ready": true, "serving": true, "terminating": false}}],
            "ports": [{"port": 80, "protocol": "TCP"}]}),
        )
        .expect("slice");
    }
    println!(
        "loaded {count} services + {count} slices in {:?}; rss {:.1} MiB",
        start.elapsed(),
        rss_mib()
    );
    let client = kube::Client::try_from(kube::Config::new(s.url().parse().unwrap())).unwrap();
    for (label, config) in [
        ("paged list (limit=500)", watcher::Config::default()),
        (
            "streaming list",
            watcher::Config::default().streaming_lists(),
        ),
    ] {
        let t = Instant::now();
        let svcs = initial_list(kube::Api::<Service>::all(client.clone()), config.clone()).await;
        let svc_time = t.elapsed();
        let t = Instant::now();
        let slices = initial_list(kube::Api::<EndpointSlice>::all(client.clone()), config).await;
        println!(
            "{label}: {svcs} services in {svc_time:?}, {slices} slices in {:?}; rss {:.1} MiB",
            t.elapsed(),
            rss_mib()
        );
    }
}
