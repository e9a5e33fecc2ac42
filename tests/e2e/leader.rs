//! herald processes electing the allocator: three herald nodes in
//! Kubernetes mode with `allocation.enabled` contend for the Lease with the
//! ServiceAccount and Role of deploy/; exactly one leads (the Lease, each
//! node's `/status` and `herald_allocation_leader` agree); the leader's
//! process killed (SIGKILL by PID, no release) -> another leads once the
//! Lease expired; the next leader stopped with SIGTERM -> it releases the
//! Lease and the last node leads within about a retry period. And the
//! allocation itself: a burst of 200 Services with the leader's herald
//! SIGKILLed in the middle; every Service gets exactly one address and no
//! two the same.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use herald_testnet::cluster::{Cluster, HERALD_NAMESPACE};
use herald_testnet::lab_or_skip;
use herald_testnet::scenario::service::NODES;
use herald_testnet::scenario::{ServiceLab, TrafficPolicy};
use herald_testnet::wait::wait_until;

use crate::failover::{SETTLE, kubernetes};

const LEASE_DURATION: Duration = Duration::from_secs(4);
const RETRY_PERIOD: Duration = Duration::from_millis(500);

/// The Lease's holder as the API server has it ("" when free or absent).
pub(crate) fn holder(cluster: &Cluster) -> String {
    cluster
        .get_json(&["lease", "herald-allocator", "-n", HERALD_NAMESPACE])
        .map(|lease| {
            lease["spec"]["holderIdentity"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

/// Waits (bounded) until the Lease is held by one of `candidates`;
/// returns it and how long that took.
pub(crate) fn wait_holder(
    cluster: &Cluster,
    candidates: &[&str],
    bound: Duration,
) -> (String, Duration) {
    let start = Instant::now();
    let held = wait_until(bound, Duration::from_millis(50), "a Lease holder", || {
        let now = holder(cluster);
        if candidates.contains(&now.as_str()) {
            Ok(now)
        } else {
            Err(format!("holder {now:?}"))
        }
    })
    .expect("the Lease is held");
    (held, start.elapsed())
}

/// Every running node's `/status` and metric say `leader` leads and no one
/// else does (bounded: followers see a change at their next look).
fn agree_on(net: &ServiceLab, running: &[&str], leader: &str) {
    for node in running {
        net.herald(node)
            .wait_for(SETTLE, "leader_election in /status", |status| {
                let election = &status["leader_election"];
                let leading = election["leading"].as_bool() == Some(true);
                if election["leader"].as_str() == Some(leader) && leading == (*node == leader) {
                    Ok(())
                } else {
                    Err(format!("{election}"))
                }
            })
            .expect("/status names the leader");
        let gauge = net
            .herald(node)
            .metric("herald_allocation_leader", &[])
            .expect("/metrics")
            .expect("herald_allocation_leader");
        assert_eq!(gauge, f64::from(u8::from(*node == leader)), "{node}");
    }
}

#[test]
fn herald_nodes_elect_one_allocator_and_replace_a_killed_or_stopped_leader() {
    let lab = lab_or_skip!();
    let mut setup = kubernetes(TrafficPolicy::Cluster);
    setup.allocate = true;
    setup.extra_config = format!(
        "allocation:\n  enabled: true\n  leader_election:\n    lease_duration: {}s\n    \
         renew_deadline: 3s\n    retry_period: {}ms\n",
        LEASE_DURATION.as_secs(),
        RETRY_PERIOD.as_millis()
    );
    let net = ServiceLab::with_herald(&lab, setup).expect("ecmp3 with herald nodes");
    let cluster = net.cluster();
    let (first, took) = wait_holder(cluster, &NODES, SETTLE);
    println!("e2e leader election: {first} leads {took:?} after the lab was up");
    agree_on(&net, &NODES, &first);

    // SIGKILL by PID: no release; the others wait out the Lease.
    let killed = Instant::now();
    net.herald(&first).kill().expect("SIGKILL the leader");
    let others: Vec<&str> = NODES.iter().copied().filter(|n| *n != first).collect();
    let (second, _) = wait_holder(cluster, &others, SETTLE);
    let takeover = killed.elapsed();
    println!(
        "e2e leader killed: {second} holds the Lease {takeover:?} after the SIGKILL \
         (lease_duration {LEASE_DURATION:?}, retry_period {RETRY_PERIOD:?})"
    );
    assert!(
        takeover >= LEASE_DURATION - 2 * RETRY_PERIOD,
        "taken over after {takeover:?}, before the Lease expired"
    );
    agree_on(&net, &others, &second);

    // SIGTERM: the leader releases the Lease on its way out.
    let last: Vec<&str> = others.iter().copied().filter(|n| *n != second).collect();
    let stopping = Instant::now();
    assert!(
        net.herald(&second)
            .stop(Duration::from_secs(20))
            .expect("SIGTERM"),
        "herald exits on SIGTERM"
    );
    let (third, _) = wait_holder(cluster, &last, SETTLE);
    let handover = stopping.elapsed();
    println!("e2e leader stopped (SIGTERM): {third} holds the Lease {handover:?} after the signal");
    assert!(
        handover < LEASE_DURATION,
        "the handover waited for the Lease to expire: {handover:?}"
    );
    assert!(
        net.herald(&second)
            .log()
            .contains("released the allocation lease"),
        "the stopping leader released the Lease"
    );
    agree_on(&net, &last, &third);
}

/// The burst Services (`burst-NNN`) and their load-balancer addresses.
fn burst_addresses(cluster: &Cluster) -> BTreeMap<String, Vec<String>> {
    let mut all = cluster
        .load_balancer_addresses("default")
        .expect("kubectl get services");
    all.retain(|name, _| name.starts_with("burst-"));
    all
}

fn burst_manifest(range: std::ops::Range<usize>) -> String {
    range
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: burst-{i:03}\n  namespace: default\n\
                 spec:\n  type: LoadBalancer\n  loadBalancerClass: herald.dev/bgp\n  ports:\n  \
                 - {{port: 80, targetPort: 8080}}\n  selector: {{app: burst-{i:03}}}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

#[test]
fn a_burst_with_the_leader_killed_in_the_middle_gives_every_service_one_distinct_address() {
    const COUNT: usize = 200;
    const CHUNK: usize = 20;
    let lab = lab_or_skip!();
    let mut setup = kubernetes(TrafficPolicy::Cluster);
    setup.allocate = true;
    setup.extra_pool_cidrs = vec!["198.51.100.0/24".to_string()];
    setup.extra_config = format!(
        "allocation:\n  enabled: true\n  leader_election:\n    lease_duration: {}s\n    \
         renew_deadline: 3s\n    retry_period: {}ms\n",
        LEASE_DURATION.as_secs(),
        RETRY_PERIOD.as_millis()
    );
    let net = ServiceLab::with_herald(&lab, setup).expect("ecmp3 with herald nodes");
    let cluster = net.cluster();
    let (leader, _) = wait_holder(cluster, &NODES, SETTLE);
    agree_on(&net, &NODES, &leader);

    let start = Instant::now();
    let (killed_at, addressed_at_kill, new_leader, failover) = std::thread::scope(|scope| {
        let burst = scope.spawn(|| {
            for chunk in 0..COUNT / CHUNK {
                cluster
                    .apply(&burst_manifest(chunk * CHUNK..(chunk + 1) * CHUNK))
                    .expect("kubectl apply");
            }
            start.elapsed()
        });
        // In the middle: once the leader has written some addresses and
        // Services are still being created.
        let addressed = wait_until(
            SETTLE,
            Duration::from_millis(20),
            "the first addresses",
            || {
                let n = burst_addresses(cluster)
                    .values()
                    .filter(|ips| !ips.is_empty())
                    .count();
                if n >= CHUNK {
                    Ok(n)
                } else {
                    Err(format!("{n} addressed"))
                }
            },
        )
        .expect("the leader allocates");
        let killed_at = start.elapsed();
        net.herald(&leader)
            .kill()
            .expect("SIGKILL the leader by PID");
        let killed = Instant::now();
        let others: Vec<&str> = NODES.iter().copied().filter(|n| *n != leader).collect();
        let (new_leader, _) = wait_holder(cluster, &others, SETTLE);
        let failover = killed.elapsed();
        let created_in = burst.join().expect("the burst");
        println!(
            "e2e burst: {COUNT} Services created in {created_in:?} ({CHUNK} per kubectl apply)"
        );
        (killed_at, addressed, new_leader, failover)
    });

    let bound = Duration::from_secs(120);
    let addresses = wait_until(
        bound,
        Duration::from_millis(100),
        "every Service addressed",
        || {
            let addresses = burst_addresses(cluster);
            let done = addresses.values().filter(|ips| !ips.is_empty()).count();
            if addresses.len() == COUNT && done == COUNT {
                Ok(addresses)
            } else {
                Err(format!("{done} of {COUNT} addressed"))
            }
        },
    )
    .expect("every Service gets an address");
    let last = start.elapsed();
    for (name, ips) in &addresses {
        assert_eq!(ips.len(), 1, "{name} has {ips:?}");
    }
    let distinct: BTreeSet<&String> = addresses.values().flatten().collect();
    assert_eq!(distinct.len(), COUNT, "an address was handed out twice");
    for ip in &distinct {
        assert!(
            ip.starts_with("203.0.113.") || ip.starts_with("198.51.100."),
            "{ip} is outside the pool"
        );
    }
    println!(
        "e2e burst with the leader killed: {leader} SIGKILLed {killed_at:?} into the burst with \
         {addressed_at_kill} of {COUNT} addressed; {new_leader} held the Lease {failover:?} later \
         (lease_duration {LEASE_DURATION:?}); the last Service got its address {last:?} after the \
         burst began; {COUNT} addresses, all distinct, one each{}",
        if distinct.contains(&herald_testnet::scenario::SERVICE_V4.to_string()) {
            format!(
                "; note: {} (the lab Service's external IP) was handed out",
                herald_testnet::scenario::SERVICE_V4
            )
        } else {
            String::new()
        }
    );
    agree_on(
        &net,
        &NODES
            .iter()
            .copied()
            .filter(|n| *n != leader)
            .collect::<Vec<_>>(),
        &new_leader,
    );
}
