//! The allocator's pure core at scale, without an API server: 10,000
//! LoadBalancer Services of herald's class over 100 namespaces, a quarter
//! sharing addresses, a tenth dual-stack. Prints the time of one computation
//! from scratch (a burst: every Service new), and of one computation where
//! every Service already carries its address and one is new (what the
//! controller does on each change once the cluster is allocated).
//!
//! Run: `cargo bench --bench allocation` (HERALD_BENCH_SERVICES=N to resize).

use std::collections::BTreeSet;
use std::time::Instant;

use herald::allocation::{
    FamilyPolicy, IpFamily, NamespaceLabels, ServiceInput, Verdict, allocate,
};
use herald::config::{AllocationConfig, PoolConfig};
use k8s_openapi::jiff::Timestamp;

fn service(i: usize) -> ServiceInput {
    let dual = i.is_multiple_of(10);
    ServiceInput {
        namespace: format!("ns-{}", i % 100),
        name: format!("svc-{i}"),
        uid: Some(format!("uid-{i}")),
        created: Some(Timestamp::from_second(1_700_000_000 + i as i64).unwrap()),
        load_balancer: true,
        class: Some("herald.dev/bgp".to_string()),
        families: if dual {
            vec![IpFamily::IPv4, IpFamily::IPv6]
        } else {
            vec![IpFamily::IPv4]
        },
        family_policy: if dual {
            FamilyPolicy::RequireDualStack
        } else {
            FamilyPolicy::SingleStack
        },
        shared_key: i.is_multiple_of(4).then(|| format!("key-{}", i % 400)),
        ports: BTreeSet::from([("TCP".to_string(), 80 + (i % 7) as i32)]),
        ..ServiceInput::default()
    }
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn main() {
    let count: usize = std::env::var("HERALD_BENCH_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let pools = vec![PoolConfig {
        name: "public".to_string(),
        cidrs: vec![
            "198.18.0.0/16".parse().unwrap(),
            "2001:db8:1::/112".parse().unwrap(),
        ],
        allocate: true,
        ..PoolConfig::default()
    }];
    let config = AllocationConfig {
        enabled: true,
        ..AllocationConfig::default()
    };
    let none = NamespaceLabels::new();
    let served = BTreeSet::new();
    let mut services: Vec<ServiceInput> = (0..count).map(service).collect();

    let runs = 11;
    let mut times = Vec::new();
    let mut allocation = None;
    for _ in 0..runs {
        let start = Instant::now();
        allocation = Some(allocate(&services, &pools, &none, &config, &served));
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let allocation = allocation.expect("at least one run");
    println!(
        "allocation: {count} Services ({} namespaces)",
        count.min(100)
    );
    println!(
        "  from scratch (every Service new): median {:.2} ms over {runs} runs (min {:.2}); {} in use",
        median(times.clone()),
        times.iter().copied().fold(f64::MAX, f64::min),
        allocation.pools[0].in_use
    );

    // Write the answer into the statuses, add one new Service, compute again.
    for (input, out) in services.iter_mut().zip(&allocation.services) {
        assert_eq!(
            input.name, out.name,
            "the bench's Services are in age order"
        );
        if let Verdict::Serve { addresses, .. } = &out.verdict {
            input.ingress = addresses.iter().map(|a| a.address.to_string()).collect();
        }
    }
    services.push(service(count));
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let again = allocate(&services, &pools, &none, &config, &served);
        times.push(start.elapsed().as_secs_f64() * 1e3);
        let new = again
            .services
            .iter()
            .filter(|s| matches!(&s.verdict, Verdict::Serve { addresses, .. } if addresses.iter().any(|a| a.new)))
            .count();
        assert_eq!(new, 1, "only the new Service gets a new address");
    }
    println!(
        "  all allocated, one new: median {:.2} ms over {runs} runs (min {:.2})",
        median(times.clone()),
        times.iter().copied().fold(f64::MAX, f64::min)
    );
}
