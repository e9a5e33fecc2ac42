//! The allocator end to end: three herald nodes in Kubernetes mode with
//! `allocation.enabled` elect one allocator (the Lease); a Service of
//! herald's class created with kubectl gets an address from the pool and
//! FRR r1 routes it through every node; the leader's herald killed (SIGKILL
//! by PID) in the middle of a burst of Services: every Service still gets
//! exactly one address, all distinct.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use herald_testnet::cluster::Cluster;
use herald_testnet::lab_or_skip;
use herald_testnet::scenario::service::NODES;
use herald_testnet::scenario::{ServiceLab, TrafficPolicy};
use herald_testnet::wait::wait_until;

use crate::failover::{SETTLE, kubernetes};
use crate::leader::wait_holder;

/// How many Services the burst creates.
const BURST: usize = 100;

/// A Service of herald's class (no annotation), `Cluster` policy.
fn service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n\
         spec:\n  type: LoadBalancer\n  loadBalancerClass: herald.dev/bgp\n  \
         externalTrafficPolicy: Cluster\n  selector:\n    app: {name}\n  ports:\n  \
         - name: http\n    port: 80\n    protocol: TCP\n"
    )
}

/// One ready endpoint of `name` on every node.
fn slice(name: &str) -> String {
    let mut yaml = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-lab\n  \
         namespace: default\n  labels:\n    kubernetes.io/service-name: {name}\n\
         addressType: IPv4\nports:\n- name: http\n  port: 80\n  protocol: TCP\nendpoints:\n"
    );
    for (index, node) in NODES.iter().enumerate() {
        yaml.push_str(&format!(
            "- addresses: [198.18.2.{}]\n  nodeName: {node}\n  conditions:\n    ready: true\n",
            index + 1
        ));
    }
    yaml
}

/// The load-balancer addresses of every Service in `default`, by name.
fn addresses(cluster: &Cluster) -> BTreeMap<String, Vec<String>> {
    cluster
        .load_balancer_addresses("default")
        .expect("kubectl get services")
}

#[test]
fn an_allocated_address_is_routed_through_every_node_and_a_killed_leader_loses_none() {
    let lab = lab_or_skip!();
    let mut setup = kubernetes(TrafficPolicy::Cluster);
    setup.allocate = true;
    setup.extra_config = "allocation:\n  enabled: true\n  leader_election:\n    \
                          lease_duration: 4s\n    renew_deadline: 3s\n    retry_period: 500ms\n"
        .to_string();
    let net = ServiceLab::with_herald(&lab, setup).expect("ecmp3 with herald nodes");
    let cluster = net.cluster();
    let (leader, _) = wait_holder(cluster, &NODES, SETTLE);

    // kubectl apply -> an address from the pool -> r1 routes it over every node.
    let start = Instant::now();
    cluster.apply(&slice("alloc")).expect("the EndpointSlice");
    cluster.apply(&service("alloc")).expect("the Service");
    let address: IpAddr =
        wait_until(
            SETTLE,
            Duration::from_millis(50),
            "an address",
            || match addresses(cluster).get("alloc").map(Vec::as_slice) {
                Some([ip]) => Ok(ip.parse::<IpAddr>().map_err(|e| e.to_string())?),
                other => Err(format!("{other:?}")),
            },
        )
        .expect("the Service gets an address");
    let allocated = start.elapsed();
    let mut want: Vec<IpAddr> = NODES.iter().map(|n| net.next_hop(n).unwrap()).collect();
    want.sort();
    let r1 = net.router_ns().expect("r1");
    wait_until(
        SETTLE,
        Duration::from_millis(20),
        "r1 routes it over every node",
        || {
            let mut hops = herald_testnet::fib::fib_next_hops(r1, &address.to_string())
                .map_err(|e| e.to_string())?;
            hops.sort();
            if hops == want {
                Ok(())
            } else {
                Err(format!("next hops {hops:?}"))
            }
        },
    )
    .expect("ECMP over the three nodes");
    println!(
        "e2e allocation: {address} written {allocated:?} after kubectl apply (leader {leader}); \
         r1 routes it over all three nodes {:?} after the apply",
        start.elapsed()
    );
    assert!(address.to_string().starts_with("203.0.113."), "{address}");

    // A burst, and the leader killed in its middle.
    let manifest: String = (0..BURST)
        .map(|i| service(&format!("burst-{i:03}")))
        .collect::<Vec<_>>()
        .join("---\n");
    let start = Instant::now();
    let killed_at = std::thread::scope(|scope| {
        let apply = scope.spawn(|| cluster.apply(&manifest));
        std::thread::sleep(Duration::from_millis(1500));
        net.herald(&leader).kill().expect("SIGKILL the leader");
        let killed_at = start.elapsed();
        apply
            .join()
            .expect("kubectl apply")
            .expect("the burst applied");
        killed_at
    });
    let created = start.elapsed();
    let others: Vec<&str> = NODES.iter().copied().filter(|n| *n != leader).collect();
    let (next, _) = wait_holder(cluster, &others, SETTLE);
    let all = wait_until(
        Duration::from_secs(120),
        Duration::from_millis(200),
        "every burst Service addressed",
        || {
            let all = addresses(cluster);
            let done = all
                .iter()
                .filter(|(name, ips)| name.starts_with("burst-") && !ips.is_empty())
                .count();
            if done == BURST {
                Ok(all)
            } else {
                Err(format!("{done} of {BURST}"))
            }
        },
    )
    .expect("every Service of the burst gets an address");
    let last = start.elapsed();
    let mut seen = BTreeSet::new();
    for (name, ips) in all
        .iter()
        .filter(|(n, _)| n.starts_with("burst-") || *n == "alloc")
    {
        assert_eq!(ips.len(), 1, "{name}: {ips:?}");
        assert!(
            seen.insert(ips[0].clone()),
            "{} handed out twice ({name})",
            ips[0]
        );
    }
    println!(
        "e2e allocation burst: {BURST} Services applied in {created:?}, leader {leader} \
         SIGKILLed {killed_at:?} in, {next} took over; all {BURST} distinct, the last \
         addressed {last:?} after the apply began (lease_duration 4s)"
    );
}
