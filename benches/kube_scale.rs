//! The Kubernetes source at scale against the real kube-apiserver (with
//! etcd, RBAC on, herald using its ServiceAccount): 10,000 Services and
//! 10,000 EndpointSlices.
//!
//! Part 1, the source alone: the time to the first complete desired set, the
//! median time from one Service status change (a merge patch of
//! `status.loadBalancer`) to the desired set that contains the new address,
//! and the RSS of the process running the source. The changes are measured
//! twice: right after the first set, while the source records its startup
//! Events (one per announced address), and again once they are recorded.
//! The API server runs in a lab namespace; the source runs in a child
//! process (this same binary, re-executed inside that namespace) so that
//! its RSS is herald's alone.
//!
//! Part 2, end to end: the `ecmp3` lab (FRR router, three `herald run`
//! nodes) with the same 10,000 Services in the API, every one announced by
//! every node; then one `kubectl patch` of a Service's load-balancer address
//! at a time, timed until r1's kernel FIB forwards the new address over all
//! three nodes (median of at least 8).
//!
//! Run (root): `cargo bench --bench kube_scale` (HERALD_BENCH_SERVICES=N to
//! resize; HERALD_KUBE_SCALE_PART=1 or 2 runs one part;
//! HERALD_KUBE_SCALE_WRAP="heaptrack -o /tmp/kube" runs part 1's child under
//! a profiler, the words split on spaces).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use futures::StreamExt;

const NODE: &str = "node-0";
/// The child reads herald's kubeconfig from here, and the admin's.
const CHILD_ENV: &str = "HERALD_KUBE_SCALE_KUBECONFIG";
const ADMIN_ENV: &str = "HERALD_KUBE_SCALE_ADMIN";
/// Namespaces the Services are spread over.
const NAMESPACES: usize = 50;

/// Service `i`'s load-balancer address (198.19.0.0/17: outside the lab's
/// Service cluster IP range and away from its API address).
fn service_ip(i: usize) -> String {
    format!("198.19.{}.{}", i / 250, i % 250 + 1)
}

/// The address change number `round` moves a Service to.
fn changed_ip(round: usize) -> String {
    format!("198.19.{}.{}", 100 + round / 250, round % 250 + 1)
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).map(|v| v.parse().unwrap_or(0)))
        })
        .unwrap_or(0)
}

/// Kills the child on every path out of the parent.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let count: usize = std::env::var("HERALD_BENCH_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benchmarking { 10_000 } else { 50 });
    let rounds = if benchmarking { 21 } else { 3 };
    if let Ok(kubeconfig) = std::env::var(CHILD_ENV) {
        let admin = std::env::var(ADMIN_ENV).expect("the admin kubeconfig");
        return source(Path::new(&kubeconfig), Path::new(&admin), count, rounds);
    }
    if !nix::unistd::geteuid().is_root() {
        println!("kube_scale: skipped (the lab needs root: network namespaces)");
        return;
    }
    let part = std::env::var("HERALD_KUBE_SCALE_PART").unwrap_or_default();
    if part != "2" {
        source_alone(count);
    }
    if part != "1" {
        end_to_end(count, if benchmarking { 9 } else { 2 });
    }
}

/// A tokio runtime whose threads live in the namespace of the calling
/// thread (`Namespace::run_in` puts it there).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

async fn client(kubeconfig: &Path) -> kube::Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config =
        kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await
            .expect("client config");
    kube::Client::try_from(config).expect("client")
}

/// Stores `count` Services (annotated for herald, with their load-balancer
/// address in status) and as many EndpointSlices (three endpoints on
/// other nodes each), 32 requests in flight, as the admin.
async fn populate(admin: &Path, count: usize) {
    use k8s_openapi::api::core::v1::{Namespace, Node, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::{Api, Patch, PatchParams, PostParams};
    use serde_json::json;

    let client = client(admin).await;
    let post = PostParams::default();
    let nodes: Api<Node> = Api::all(client.clone());
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}});
    let _ = nodes
        .create(&post, &serde_json::from_value(node).unwrap())
        .await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for n in 0..NAMESPACES {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("ns-{n}")}});
        let _ = namespaces
            .create(&post, &serde_json::from_value(ns).unwrap())
            .await;
    }
    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let client = client.clone();
            let post = post.clone();
            async move {
                let name = format!("svc-{i}");
                let namespace = format!("ns-{}", i % NAMESPACES);
                let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
                let service = json!({
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": name, "namespace": namespace,
                                 "labels": {"app": name},
                                 "annotations": {"herald.dev/advertise": "true"}},
                    "spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
                             "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
                             "selector": {"app": name}},
                });
                services
                    .create(&post, &serde_json::from_value(service).unwrap())
                    .await
                    .expect("create a Service");
                let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": service_ip(i)}]}}});
                services
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await
                    .expect("a Service's status");
                let endpoints: Vec<_> = (0..3)
                    .map(|e| {
                        json!({"addresses": [format!("198.18.{}.{}", 100 + e * 40 + i / 250, i % 250 + 1)],
                               "nodeName": format!("node-{}", (i + e * 7) % 100),
                               "conditions": {"ready": true, "serving": true, "terminating": false}})
                    })
                    .collect();
                let slice = json!({
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": format!("{name}-abcde"), "namespace": namespace,
                                 "labels": {"kubernetes.io/service-name": name}},
                    "addressType": "IPv4",
                    "endpoints": endpoints,
                    "ports": [{"port": 8080, "protocol": "TCP"}],
                });
                Api::<EndpointSlice>::namespaced(client, &namespace)
                    .create(&post, &serde_json::from_value(slice).unwrap())
                    .await
                    .expect("create an EndpointSlice");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    println!(
        "kube_scale: {count} Services (with status) + {count} EndpointSlices stored in \
         kube-apiserver in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Part 1: the API server in a lab namespace, populated; the source in a
/// child process in that namespace.
fn source_alone(count: usize) {
    use herald_testnet::cluster::Cluster;

    let lab = herald_testnet::Lab::start().expect("the lab");
    let ns = lab.namespace("api").expect("a namespace");
    let cluster = Cluster::start_local(&ns).expect("kube-apiserver and etcd");
    println!(
        "kube_scale part 1: kube-apiserver {} in {}",
        cluster.server_version().unwrap_or_default(),
        ns.name()
    );
    let admin = cluster.admin_kubeconfig().to_owned();
    ns.run_in(move || runtime().block_on(populate(&admin, count)))
        .expect("enter the namespace");
    let exe = std::env::current_exe().unwrap();
    let wrap = std::env::var("HERALD_KUBE_SCALE_WRAP").unwrap_or_default();
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns.name()]);
    command.args(wrap.split_whitespace());
    let mut child = ChildGuard(
        command
            .arg(exe)
            .args(std::env::args().skip(1))
            .env(CHILD_ENV, cluster.kubeconfig())
            .env(ADMIN_ENV, cluster.admin_kubeconfig())
            .env("HERALD_BENCH_SERVICES", count.to_string())
            .spawn()
            .expect("child starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "the source process failed: {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the source process took over 900 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.assert_nothing_forbidden();
}

/// The child of part 1: herald's Kubernetes source, measured. It reads with
/// herald's ServiceAccount; the changes are written as the admin.
fn source(kubeconfig: &Path, admin: &Path, count: usize, rounds: usize) {
    use herald::config::PoolConfig;
    use herald::kube::{KubeSource, Metrics, PolicyConfig};
    use herald::policy::SelectionConfig;
    use prometheus_client::registry::Registry;

    runtime().block_on(async {
        let rss_before = rss_kib("VmRSS:");
        let policy = PolicyConfig {
            pools: vec![PoolConfig {
                name: "bench".to_string(),
                cidrs: vec!["198.19.0.0/17".parse().unwrap()],
                communities: vec![],
                ..PoolConfig::default()
            }],
            selection: SelectionConfig::default(),
        };
        let (_policy_tx, policy_rx) = tokio::sync::watch::channel(policy);
        let file = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .expect("client config");
        let metrics = Metrics::register(&mut Registry::default());
        let start = Instant::now();
        let source = KubeSource::spawn(config, NODE, policy_rx, metrics.clone()).unwrap();
        let mut desired = source.desired();
        tokio::time::timeout(
            Duration::from_secs(120),
            desired.wait_for(|d| d.as_ref().is_some_and(|d| d.announcements.len() == count)),
        )
        .await
        .expect("first complete desired set within 120 s")
        .unwrap();
        let first = start.elapsed();
        let rss_synced = rss_kib("VmRSS:");

        let admin = client(admin).await;
        // Right after the first set, the source records one `Announcing`
        // Event per address: the first changes are measured during that
        // burst, as a restarted herald would see them.
        let (latencies, round_trips) = changes(&admin, &mut desired, count, 0..rounds).await;
        println!("  first complete desired set: {:.2} s ({count} addresses)", first.as_secs_f64());
        print_changes("during the startup Events", &latencies, &round_trips);
        println!(
            "  source process RSS: {:.1} MiB at start, {:.1} MiB synced, {:.1} MiB after the changes, peak {:.1} MiB",
            rss_before as f64 / 1024.0,
            rss_synced as f64 / 1024.0,
            rss_kib("VmRSS:") as f64 / 1024.0,
            rss_kib("VmHWM:") as f64 / 1024.0,
        );
        // Then the steady state: once the startup Events are recorded (or
        // dropped: the queue holds 1,024).
        let recorded = Instant::now();
        let expected = count.min(1024) as u64;
        while metrics.events_published.get() < expected
            && metrics.events_published.get() + metrics.events_failed.get() < count as u64
            && recorded.elapsed() < Duration::from_secs(180)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "  startup Events: {} published, {} failed or dropped, {:.1} s after the first changes",
            metrics.events_published.get(),
            metrics.events_failed.get(),
            recorded.elapsed().as_secs_f64()
        );
        let (latencies, round_trips) =
            changes(&admin, &mut desired, count, rounds..2 * rounds).await;
        print_changes("steady (startup Events recorded)", &latencies, &round_trips);
        println!(
            "  source process RSS at the end: {:.1} MiB, peak {:.1} MiB",
            rss_kib("VmRSS:") as f64 / 1024.0,
            rss_kib("VmHWM:") as f64 / 1024.0,
        );
        println!("  health: {}", source.report().summary());
    });
}

/// Patches one Service's load-balancer address per round and waits for the
/// desired set that holds it: (latencies, PATCH round trips) in ms, sorted.
async fn changes(
    client: &kube::Client,
    desired: &mut tokio::sync::watch::Receiver<Option<std::sync::Arc<herald::policy::Desired>>>,
    count: usize,
    rounds: std::ops::Range<usize>,
) -> (Vec<f64>, Vec<f64>) {
    use k8s_openapi::api::core::v1::Service;
    use kube::api::{Api, Patch, PatchParams};

    let step = (count / rounds.len().max(1)).max(1);
    let mut latencies = Vec::new();
    let mut round_trips = Vec::new();
    for round in rounds {
        let i = round * step % count;
        let api: Api<Service> = Api::namespaced(client.clone(), &format!("ns-{}", i % NAMESPACES));
        let ip: std::net::IpAddr = changed_ip(round).parse().unwrap();
        let patch =
            serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": ip.to_string()}]}}});
        let changed = Instant::now();
        api.patch_status(
            &format!("svc-{i}"),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("status patch");
        round_trips.push(changed.elapsed().as_secs_f64() * 1000.0);
        tokio::time::timeout(
            Duration::from_secs(30),
            desired.wait_for(|d| {
                d.as_ref()
                    .is_some_and(|d| d.announcements.iter().any(|a| a.address == ip))
            }),
        )
        .await
        .expect("change seen within 30 s")
        .unwrap();
        latencies.push(changed.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    round_trips.sort_by(|a, b| a.total_cmp(b));
    (latencies, round_trips)
}

fn print_changes(when: &str, latencies: &[f64], round_trips: &[f64]) {
    println!(
        "  one Service change -> desired set, {when}: median {:.1} ms over {} changes (min {:.1}, max {:.1}; includes the PATCH round trip and the {} ms debounce)",
        latencies[latencies.len() / 2],
        latencies.len(),
        latencies[0],
        latencies[latencies.len() - 1],
        herald::policy::SelectionConfig::default()
            .debounce
            .as_millis(),
    );
    println!(
        "    of which the PATCH round trip alone: median {:.1} ms (min {:.1}, max {:.1})",
        round_trips[round_trips.len() / 2],
        round_trips[0],
        round_trips[round_trips.len() - 1],
    );
}

/// Part 2: `ecmp3` with three herald nodes and the 10,000 Services; one
/// `kubectl patch` at a time, timed to r1's FIB.
fn end_to_end(count: usize, rounds: usize) {
    use herald_testnet::scenario::{HeraldSetup, ServiceLab, Source, TrafficPolicy};

    let lab = herald_testnet::Lab::start().expect("the lab");
    let mut setup = HeraldSetup::new(
        PathBuf::from(env!("CARGO_BIN_EXE_herald")),
        Source::Kubernetes(TrafficPolicy::Cluster),
    );
    setup.extra_pool_cidrs = vec!["198.19.0.0/17".to_owned()];
    let net = ServiceLab::with_herald(&lab, setup).expect("ecmp3 with herald nodes");
    net.settle(3, Duration::from_secs(120))
        .expect("three next hops for the lab's Service");
    let cluster = net.cluster();
    println!(
        "kube_scale part 2: ecmp3, three herald nodes, kube-apiserver {}",
        cluster.server_version().unwrap_or_default()
    );
    let admin = cluster.admin_kubeconfig().to_owned();
    let api = cluster.namespace().clone();
    api.run_in(move || runtime().block_on(populate(&admin, count)))
        .expect("enter the namespace");
    let r1 = net.router_ns().expect("r1");
    let routes = |r1: &herald_testnet::Namespace| -> usize {
        r1.ip(&["-4", "route", "show", "proto", "bgp"])
            .map(|out| {
                out.lines()
                    .filter(|l| !l.starts_with(char::is_whitespace))
                    .count()
            })
            .unwrap_or(0)
    };
    let loaded = Instant::now();
    herald_testnet::wait::wait_until(
        Duration::from_secs(600),
        Duration::from_secs(1),
        "r1 to hold a route for every Service",
        || {
            let n = routes(r1);
            if n > count { Ok(n) } else { Err(n) }
        },
    )
    .expect("every Service routed at r1");
    println!(
        "  every node announced all {count} addresses: r1 holds them {:.1} s after the last write",
        loaded.elapsed().as_secs_f64()
    );
    let mut latencies = Vec::new();
    let mut kubectl_alone = Vec::new();
    for round in 0..rounds {
        let start = Instant::now();
        cluster
            .kubectl(&["get", "--raw", "/readyz"])
            .expect("kubectl get --raw /readyz");
        kubectl_alone.push(start.elapsed().as_secs_f64() * 1000.0);
        let i = (round * 997) % count;
        let ip = changed_ip(round);
        let patch = format!(r#"{{"status":{{"loadBalancer":{{"ingress":[{{"ip":"{ip}"}}]}}}}}}"#);
        let namespace = format!("ns-{}", i % NAMESPACES);
        let service = format!("svc-{i}");
        let start = Instant::now();
        cluster
            .kubectl(&[
                "-n",
                &namespace,
                "patch",
                "service",
                &service,
                "--subresource=status",
                "--type=merge",
                "-p",
                &patch,
            ])
            .expect("kubectl patch");
        herald_testnet::wait::wait_until(
            Duration::from_secs(60),
            Duration::from_millis(5),
            &format!("r1 to forward {ip} over three next hops"),
            || match herald_testnet::fib::fib_next_hops(r1, &ip) {
                Ok(hops) if hops.len() == 3 => Ok(()),
                Ok(hops) => Err(format!("{hops:?}")),
                Err(e) => Err(e.to_string()),
            },
        )
        .expect("the change reaches r1");
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    kubectl_alone.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  one kubectl patch -> r1's FIB through all three nodes: median {:.0} ms over {} patches \
         (min {:.0}, max {:.0}); a kubectl run that only asks /readyz takes {:.0} ms (median)",
        latencies[latencies.len() / 2],
        latencies.len(),
        latencies[0],
        latencies[latencies.len() - 1],
        kubectl_alone[kubectl_alone.len() / 2]
    );
    cluster.assert_nothing_forbidden();
}
