//! The Kubernetes source at scale against the API stand-in: 10,000 Services
//! and 10,000 EndpointSlices. Prints the time to the first complete desired
//! set, the median time from one Service status change (a merge patch of
//! `status.loadBalancer`) to the desired set that contains the new address,
//! and the RSS of the process running the source. The changes are measured
//! twice: right after the first set, while the source records its startup
//! Events (one per announced address), and again once they are recorded.
//!
//! The stand-in runs in this process; the source runs in a child process (this
//! same binary, re-executed) so that its RSS is herald's alone.
//!
//! Run: `cargo bench --bench kube_scale` (HERALD_BENCH_SERVICES=N to resize;
//! HERALD_KUBE_SCALE_WRAP="heaptrack -o /tmp/kube" runs the child under a
//! profiler, the words split on spaces).

use std::process::{Child, Command};
use std::time::{Duration, Instant};

const NODE: &str = "node-0";
const CHILD_ENV: &str = "HERALD_KUBE_SCALE_URL";

fn service_ip(i: usize) -> String {
    format!("198.18.{}.{}", i / 250, i % 250 + 1)
}

fn changed_ip(round: usize) -> String {
    format!("198.19.{}.{}", round / 250, round % 250 + 1)
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
    match std::env::var(CHILD_ENV) {
        Ok(url) => source(&url, count, if benchmarking { 21 } else { 3 }),
        Err(_) => stand_in(count),
    }
}

/// The parent: a populated stand-in, and the child pointed at it.
fn stand_in(count: usize) {
    use herald_apiserver::{Options, StandIn};
    use serde_json::json;

    let standin = StandIn::start(Options {
        history_limit: 4 * count + 1000,
        ..Options::default()
    })
    .expect("stand-in starts");
    standin
        .apply_json(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}))
        .unwrap();
    let populate = Instant::now();
    for i in 0..count {
        let name = format!("svc-{i}");
        let namespace = format!("ns-{}", i % 50);
        standin
            .apply_json(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": namespace,
                             "labels": {"app": name},
                             "annotations": {"herald.dev/advertise": "true"}},
                "spec": {"type": "LoadBalancer", "clusterIP": format!("10.96.{}.{}", i / 250, i % 250),
                         "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
                         "selector": {"app": name}},
                "status": {"loadBalancer": {"ingress": [{"ip": service_ip(i)}]}},
            }))
            .unwrap();
        let endpoints: Vec<_> = (0..3)
            .map(|e| {
                json!({"addresses": [format!("10.{e}.{}.{}", i / 250, i % 250)],
                       "nodeName": format!("node-{}", (i + e * 7) % 100),
                       "conditions": {"ready": true, "serving": true, "terminating": false}})
            })
            .collect();
        standin
            .apply_json(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": format!("{name}-abcde"), "namespace": namespace,
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": [{"port": 8080, "protocol": "TCP"}],
            }))
            .unwrap();
    }
    println!(
        "kube_scale: {count} Services + {count} EndpointSlices stored in the stand-in in {:.1} s",
        populate.elapsed().as_secs_f64()
    );
    let exe = std::env::current_exe().unwrap();
    let wrap = std::env::var("HERALD_KUBE_SCALE_WRAP").unwrap_or_default();
    let mut command = match wrap.split_whitespace().collect::<Vec<_>>().split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(exe);
            command
        }
        None => Command::new(exe),
    };
    let mut child = ChildGuard(
        command
            .args(std::env::args().skip(1))
            .env(CHILD_ENV, standin.url())
            .env("HERALD_BENCH_SERVICES", count.to_string())
            .spawn()
            .expect("child starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "the source process failed: {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the source process took over 600 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The child: herald's Kubernetes source, measured.
fn source(url: &str, count: usize, rounds: usize) {
    use herald::config::PoolConfig;
    use herald::kube::{KubeSource, Metrics, PolicyConfig};
    use herald::policy::SelectionConfig;
    use prometheus_client::registry::Registry;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let rss_before = rss_kib("VmRSS:");
        let policy = PolicyConfig {
            pools: vec![PoolConfig {
                name: "bench".to_string(),
                cidrs: vec!["198.18.0.0/15".parse().unwrap()],
                communities: vec![],
            }],
            selection: SelectionConfig::default(),
        };
        let (_policy_tx, policy_rx) = tokio::sync::watch::channel(policy);
        let config = kube::Config::new(url.parse().unwrap());
        let metrics = Metrics::register(&mut Registry::default());
        let start = Instant::now();
        let source = KubeSource::spawn(config.clone(), NODE, policy_rx, metrics.clone()).unwrap();
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

        let client = kube::Client::try_from(config).unwrap();
        // Right after the first set, the source records one `Announcing`
        // Event per address (10,000 POSTs): the first changes are measured
        // during that burst, as a restarted herald would see them.
        let (latencies, round_trips) = changes(&client, &mut desired, count, 0..rounds).await;
        println!("  first complete desired set: {:.2} s ({count} addresses)", first.as_secs_f64());
        print_changes("during the startup Events", &latencies, &round_trips);
        println!(
            "  source process RSS: {:.1} MiB at start, {:.1} MiB synced, {:.1} MiB after the changes, peak {:.1} MiB",
            rss_before as f64 / 1024.0,
            rss_synced as f64 / 1024.0,
            rss_kib("VmRSS:") as f64 / 1024.0,
            rss_kib("VmHWM:") as f64 / 1024.0,
        );
        // Then the steady state: once every startup Event is recorded.
        let recorded = Instant::now();
        while metrics.events_published.get() + metrics.events_failed.get() < count as u64
            && recorded.elapsed() < Duration::from_secs(180)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "  startup Events recorded: {} published, {} failed, {:.1} s after the first changes",
            metrics.events_published.get(),
            metrics.events_failed.get(),
            recorded.elapsed().as_secs_f64()
        );
        let (latencies, round_trips) =
            changes(&client, &mut desired, count, rounds..2 * rounds).await;
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
        let api: Api<Service> = Api::namespaced(client.clone(), &format!("ns-{}", i % 50));
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
