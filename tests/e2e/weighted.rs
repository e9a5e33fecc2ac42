//! Weighted ECMP with a real FRR router and client traffic: the nodes
//! announce the link-bandwidth community in proportion to their ready
//! endpoints (`externalTrafficPolicy: Local`), and r1 installs kernel
//! next-hop weights in that proportion, so new connections split by pod
//! rather than by node. The same run measures plain ECMP first (the pool
//! without `weighted_ecmp`) for comparison.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herald_testnet::process::Signal;
use herald_testnet::scenario::service::{self, NODES};
use herald_testnet::scenario::{self, ServiceLab, TrafficPolicy};
use herald_testnet::traffic::{LoadSpec, TrafficReport};
use herald_testnet::{fib, lab_or_skip};

use crate::failover::{SETTLE, herald_lab, kubernetes, report};

/// New connections per share measurement.
const CONNECTIONS: usize = 3000;
/// The largest distance of a measured share from its target, in points.
const SHARE_TOLERANCE: f64 = 0.05;
/// How long a test waits for r1's weights to follow a change at most (the
/// measured time is printed; the target is under 1 s).
const WEIGHT_BOUND: Duration = Duration::from_secs(5);

/// r1's kernel next-hop weights for the service, by node (nodes r1 does
/// not forward to are absent).
fn weights(net: &ServiceLab) -> BTreeMap<&'static str, u64> {
    let r1 = net.router_ns().expect("r1");
    let hops = fib::fib_weights(r1, scenario::SERVICE_V4).expect("ip -j route");
    NODES
        .iter()
        .filter_map(|node| {
            let hop = net.next_hop(node).expect("next hop");
            hops.iter()
                .find(|(gateway, _)| *gateway == hop)
                .map(|(_, weight)| (*node, *weight))
        })
        .collect()
}

/// Whether `weights` are in the proportion `want` (per node in NODES
/// order; 0: absent), within one point of the total.
fn in_proportion(weights: &BTreeMap<&str, u64>, want: [u64; 3]) -> bool {
    let total: u64 = weights.values().sum();
    let want_total: u64 = want.iter().sum();
    if total == 0 || weights.len() != want.iter().filter(|&&w| w > 0).count() {
        return false;
    }
    NODES.iter().zip(want).all(|(node, want)| {
        let got = weights.get(node).copied().unwrap_or(0) as f64 / total as f64;
        (got - want as f64 / want_total as f64).abs() <= 0.01
    })
}

/// Polls r1's weights every 10 ms until they are in proportion `want`;
/// returns how long that took from `since`.
fn wait_weights(net: &ServiceLab, want: [u64; 3], since: Instant, bound: Duration) -> Duration {
    let deadline = Instant::now() + bound;
    loop {
        let now = weights(net);
        if in_proportion(&now, want) {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "r1's weights {now:?} not in proportion {want:?} after {bound:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends [`CONNECTIONS`] new connections and returns the shares by node.
fn shares(net: &ServiceLab, scenario: &str) -> (TrafficReport, [f64; 3]) {
    let spec = LoadSpec::count(
        service::service_target(),
        CONNECTIONS,
        Duration::from_millis(4),
    );
    let traffic = net.load_with(spec).expect("client").finish();
    report(scenario, &traffic, "");
    assert_eq!(traffic.sent(), CONNECTIONS, "{traffic}");
    let shares = traffic.shares();
    let by_node = NODES.map(|node| shares.get(node).copied().unwrap_or(0.0));
    (traffic, by_node)
}

fn updates_sent(net: &ServiceLab, node: &str) -> f64 {
    net.herald(node)
        .metric(
            "herald_bgp_messages_sent_total",
            &[("peer", "r1"), ("kind", "update")],
        )
        .expect("metrics")
        .unwrap_or(0.0)
}

fn percent(shares: [f64; 3]) -> String {
    NODES
        .iter()
        .zip(shares)
        .map(|(node, share)| format!("{node} {:.1}%", share * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Endpoints 2/1/1 on n1/n2/n3 with `externalTrafficPolicy: Local`:
/// plain ECMP splits new connections by node (a third each); with
/// `weighted_ecmp` (switched on by a config reload) r1's kernel route has
/// weights 2:1:1 and the connections split 50/25/25 within 5 points. A pod
/// added on n2 moves the weights to 2:2:1 without a failed request and
/// without a withdrawal; a burst of weight changes costs few UPDATEs; the
/// last endpoint on n3 gone withdraws n3 as before.
#[test]
fn herald_weighted_ecmp_splits_new_connections_by_ready_endpoints() {
    let lab = lab_or_skip!();
    // BFD plays no part here; at 50 ms x 3 a starved CPU on a shared
    // machine drops every session at once and fails requests that say
    // nothing about weights, so the sessions rely on the hold timer.
    let mut setup = kubernetes(TrafficPolicy::Local);
    setup.bfd = None;
    let mut net = herald_lab(&lab, setup, &NODES);
    net.cluster()
        .apply(&service::endpoint_slice_counts_manifest([2, 1, 1]))
        .expect("kubectl apply");
    // Plain ECMP: the pool has no weighted_ecmp; r1 installs equal weights.
    std::thread::sleep(Duration::from_secs(1));
    let plain_weights = weights(&net);
    assert!(
        in_proportion(&plain_weights, [1, 1, 1]),
        "{plain_weights:?}"
    );
    let (_, plain) = shares(&net, "plain ecmp, endpoints 2/1/1");

    // Weighted ECMP, by a config reload on every node.
    let mut setup = net.setup().expect("a herald lab").clone();
    setup.weighted_ecmp = true;
    let reloaded = Instant::now();
    for (index, node) in NODES.iter().enumerate() {
        let herald = net.herald_mut(node);
        herald
            .write_config(&setup.config_for(index))
            .expect("config");
        herald.signal(Signal::SIGHUP).expect("SIGHUP");
    }
    let to_weighted = wait_weights(&net, [2, 1, 1], reloaded, SETTLE);
    let weighted_weights = weights(&net);
    let (_, weighted) = shares(&net, "weighted ecmp, endpoints 2/1/1");
    println!(
        "e2e weighted ecmp 2/1/1: r1 weights plain {plain_weights:?}, weighted \
         {weighted_weights:?} ({} ms after the reload); new connections plain: {}; weighted: {}",
        to_weighted.as_millis(),
        percent(plain),
        percent(weighted)
    );
    for (share, want) in weighted.iter().zip([0.50, 0.25, 0.25]) {
        assert!(
            (share - want).abs() <= SHARE_TOLERANCE,
            "weighted shares {} not within 5 points of 50/25/25",
            percent(weighted)
        );
    }

    // A pod added on n2, with traffic flowing: new weights, nothing fails,
    // n2's route is replaced, not withdrawn.
    let load = net.load(Duration::from_secs(6)).expect("client");
    std::thread::sleep(Duration::from_secs(1));
    let n2_updates = updates_sent(&net, "n2");
    let added = Instant::now();
    net.cluster()
        .apply(&service::endpoint_slice_counts_manifest([2, 2, 1]))
        .expect("kubectl apply");
    let to_new_weights = wait_weights(&net, [2, 2, 1], added, WEIGHT_BOUND);
    let traffic = load.finish();
    let n2_sent = updates_sent(&net, "n2") - n2_updates;
    report(
        "weighted ecmp, a pod added on n2",
        &traffic,
        &format!(
            "; r1 weights {:?} {} ms after kubectl apply; n2 sent {n2_sent} UPDATE(s)",
            weights(&net),
            to_new_weights.as_millis()
        ),
    );
    assert_eq!(traffic.failed(), 0, "{traffic}");
    assert_eq!(n2_sent, 1.0, "one re-announcement, no withdrawal");

    // A rollout on n1: its pod count climbs 3, 4, ... 12 as fast as
    // kubectl applies; anti_flap.weight_delay (500 ms) coalesces the
    // weight changes.
    let n1_updates = updates_sent(&net, "n1");
    let rollout = Instant::now();
    let steps = 10;
    for pods in 3..3 + steps {
        net.cluster()
            .apply(&service::endpoint_slice_counts_manifest([pods, 2, 1]))
            .expect("kubectl apply");
    }
    let applied = rollout.elapsed();
    wait_weights(&net, [2 + steps as u64, 2, 1], rollout, WEIGHT_BOUND);
    // Whatever was still waiting has gone out by now.
    std::thread::sleep(Duration::from_secs(1));
    let n1_sent = updates_sent(&net, "n1") - n1_updates;
    println!(
        "e2e weighted ecmp rollout: {steps} pod-count changes on n1 in {} ms gave {n1_sent} \
         UPDATE(s) from n1; r1 weights {:?}",
        applied.as_millis(),
        weights(&net)
    );
    assert!(
        n1_sent >= 1.0 && n1_sent < steps as f64,
        "{n1_sent} UPDATEs for {steps} changes"
    );

    // The last endpoint on n3 gone: n3 withdraws, as without weights.
    let gone = Instant::now();
    net.cluster()
        .apply(&service::endpoint_slice_counts_manifest([2 + steps, 2, 0]))
        .expect("kubectl apply");
    net.wait_next_hops(&["n1", "n2"], SETTLE)
        .expect("n3 withdraws");
    println!(
        "e2e weighted ecmp: n3 withdrawn {} ms after its last endpoint went; r1 weights {:?}",
        gone.elapsed().as_millis(),
        weights(&net)
    );
    let status = net.herald("n1").status().expect("status");
    let row = status["announcements"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|row| row["address"] == scenario::SERVICE_V4)
        .unwrap_or_else(|| panic!("no row for the service in {status}"));
    assert_eq!(row["weight"], 2 + steps as u64, "{status}");
    assert_eq!(
        net.herald("n1")
            .metric(
                "herald_agent_announcement_weight",
                &[("address", scenario::SERVICE_V4)]
            )
            .expect("metrics"),
        Some((2 + steps) as f64)
    );
}

/// `externalTrafficPolicy: Cluster` with `weighted_ecmp`: every node
/// carries the node weight (1 by default); the cluster admin's
/// `herald.dev/node-weight` annotation on n1 gives it 3 (r1: 3:1:1); an
/// annotation that is not a weight keeps the config's value and shows in
/// the metric.
#[test]
fn herald_weighted_ecmp_follows_the_node_weight_annotation_for_cluster_services() {
    let lab = lab_or_skip!();
    let mut setup = kubernetes(TrafficPolicy::Cluster);
    setup.bfd = None;
    setup.weighted_ecmp = true;
    let net = herald_lab(&lab, setup, &NODES);
    wait_weights(&net, [1, 1, 1], Instant::now(), SETTLE);
    let annotate = |node: &str, value: &str| {
        net.cluster()
            .kubectl(&[
                "annotate",
                "node",
                node,
                &format!("herald.dev/node-weight={value}"),
                "--overwrite",
            ])
            .expect("kubectl annotate")
    };
    let annotated = Instant::now();
    annotate("n1", "3");
    let took = wait_weights(&net, [3, 1, 1], annotated, WEIGHT_BOUND);
    println!(
        "e2e weighted ecmp, Cluster: herald.dev/node-weight=3 on n1 -> r1 weights {:?} after {} ms",
        weights(&net),
        took.as_millis()
    );
    let invalid = |node: &str| {
        net.herald(node)
            .metric("herald_kube_node_weight_annotation_invalid", &[])
            .expect("metrics")
    };
    assert_eq!(invalid("n2"), Some(0.0));
    annotate("n2", "heavy");
    herald_testnet::wait_until(
        WEIGHT_BOUND,
        Duration::from_millis(50),
        "n2 to report its annotation invalid",
        || match invalid("n2") {
            Some(1.0) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .expect("the invalid annotation is visible");
    assert!(
        net.herald("n2")
            .log()
            .contains("\"heavy\" is not a whole number"),
        "the reason is logged"
    );
    // Still 3:1:1: n2 keeps kubernetes.node_weight (1).
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        in_proportion(&weights(&net), [3, 1, 1]),
        "{:?}",
        weights(&net)
    );
}
