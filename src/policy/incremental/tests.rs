//! Incremental evaluation equals full evaluation: random Services (shared
//! addresses, annotations valid and not, both traffic policies, dual-stack)
//! and slices change one at a time; after each change the incremental
//! result, updated with only the changed Services, must equal `evaluate`
//! over everything.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::*;
use crate::policy::AddressKind;
use crate::policy::evaluate;

const NODE: &str = "node-a";
const ADDRESSES: [&str; 7] = [
    "203.0.113.1",
    "203.0.113.2",
    "203.0.113.3",
    "2001:db8:ffff::1",
    "198.51.100.7",
    "192.0.2.1", // outside every pool
    "not-an-ip",
];

fn pools() -> Vec<PoolConfig> {
    vec![
        PoolConfig {
            name: "public".to_string(),
            cidrs: vec![
                "203.0.113.0/24".parse().unwrap(),
                "2001:db8:ffff::/64".parse().unwrap(),
            ],
            communities: vec!["65000:100".parse().unwrap()],
            allow_external_ips: true,
            allow_path_attributes: true,
            // Weights depend on the endpoints and add up over shared
            // addresses: the random sequences check that too.
            weighted_ecmp: true,
            ..PoolConfig::default()
        },
        PoolConfig {
            name: "internal".to_string(),
            cidrs: vec!["198.51.100.0/24".parse().unwrap()],
            communities: vec![],
            namespaces: vec!["a".to_string()],
            namespace_selector: Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        "tier".to_string(),
                        "trusted".to_string(),
                    )])),
                    ..Default::default()
                },
            ),
            ..PoolConfig::default()
        },
    ]
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn random_service(rng: &mut StdRng, key: &ServiceKey) -> Service {
    let mut annotations = serde_json::Map::new();
    let advertise = *pick(
        rng,
        &[
            Some("true"),
            Some("true"),
            Some("false"),
            None,
            Some("yes!"),
        ],
    );
    if let Some(value) = advertise {
        annotations.insert("herald.dev/advertise".into(), json!(value));
    }
    if rng.random_bool(0.3) {
        let communities = *pick(rng, &["65000:1", "65000:2", "65000:1,65000:3:4", "bad"]);
        annotations.insert("herald.dev/communities".into(), json!(communities));
    }
    if rng.random_bool(0.3) {
        let pref = *pick(rng, &["100", "200", "x"]);
        annotations.insert("herald.dev/local-pref".into(), json!(pref));
    }
    if rng.random_bool(0.2) {
        annotations.insert("herald.dev/med".into(), json!(*pick(rng, &["5", "7"])));
    }
    if rng.random_bool(0.2) {
        let kinds = *pick(
            rng,
            &["cluster,external,load-balancer", "external", "bogus"],
        );
        annotations.insert("herald.dev/address-kinds".into(), json!(kinds));
    }
    if rng.random_bool(0.9) {
        let key = *pick(rng, &["k1", "k1", "k1", "k1", "k1", "k1", "k2", ""]);
        annotations.insert("herald.dev/allow-shared-ip".into(), json!(key));
    }
    let created = *pick(
        rng,
        &[
            Some("2026-01-01T00:00:00Z"),
            Some("2026-01-01T00:00:00Z"),
            Some("2026-02-01T00:00:00Z"),
            None,
        ],
    );
    let ingress: Vec<_> = (0..rng.random_range(0..3))
        .map(|_| json!({"ip": *pick(rng, &ADDRESSES)}))
        .collect();
    let external: Vec<_> = (0..rng.random_range(0..2))
        .map(|_| json!(*pick(rng, &ADDRESSES)))
        .collect();
    let cluster = *pick(rng, &["198.51.100.50", "None", "2001:db8:ffff::50"]);
    serde_json::from_value(json!({
        "metadata": {
            "namespace": key.namespace, "name": key.name,
            "uid": format!("uid-{}-{}", key.namespace, key.name),
            "creationTimestamp": created,
            "labels": {"tier": *pick(rng, &["web", "db"])},
            "annotations": annotations,
        },
        "spec": {
            "type": *pick(rng, &["LoadBalancer", "ClusterIP"]),
            "clusterIPs": [cluster],
            "externalIPs": external,
            "externalTrafficPolicy": *pick(rng, &["Local", "Cluster"]),
            "internalTrafficPolicy": *pick(rng, &["Local", "Cluster"]),
        },
        "status": {"loadBalancer": {"ingress": ingress}},
    }))
    .unwrap()
}

fn random_slice(rng: &mut StdRng, namespace: &str, name: &str, service: &str) -> EndpointSlice {
    let endpoints: Vec<_> = (0..rng.random_range(0..3))
        .map(|_| {
            json!({
                "addresses": ["10.0.0.1"],
                "nodeName": *pick(rng, &[NODE, "node-b"]),
                "conditions": {
                    "ready": rng.random_bool(0.5),
                    "serving": rng.random_bool(0.7),
                    "terminating": rng.random_bool(0.3),
                },
            })
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {
            "namespace": namespace, "name": name,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": *pick(rng, &["IPv4", "IPv6", "FQDN"]),
        "endpoints": endpoints,
    }))
    .unwrap()
}

fn node(excluded: bool) -> Node {
    let labels = if excluded {
        json!({"node.kubernetes.io/exclude-from-external-load-balancers": ""})
    } else {
        json!({"rack": "r1"})
    };
    serde_json::from_value(json!({"metadata": {"name": NODE, "labels": labels}})).unwrap()
}

/// Namespace `b` carries `tier: trusted` or not; `a` never does.
fn namespaces(b_trusted: bool) -> NamespaceLabels {
    let b = if b_trusted {
        BTreeMap::from([("tier".to_string(), "trusted".to_string())])
    } else {
        BTreeMap::new()
    };
    BTreeMap::from([("a".to_string(), BTreeMap::new()), ("b".to_string(), b)])
}

struct World {
    services: BTreeMap<ServiceKey, Service>,
    slices: BTreeMap<(String, String), EndpointSlice>,
    node: Node,
    namespaces: NamespaceLabels,
    selection: SelectionConfig,
}

impl World {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            services: self.services.values().cloned().map(Arc::new).collect(),
            endpoint_slices: self.slices.values().cloned().map(Arc::new).collect(),
            node: Arc::new(self.node.clone()),
            namespaces: Arc::new(self.namespaces.clone()),
        }
    }

    /// Every slice of the given Services.
    fn slices_of(&self, keys: &[ServiceKey]) -> Vec<&EndpointSlice> {
        self.slices
            .values()
            .filter(|s| ServiceKey::of_slice(s).is_some_and(|k| keys.contains(&k)))
            .collect()
    }
}

fn service_names() -> Vec<ServiceKey> {
    ["a", "b"]
        .iter()
        .flat_map(|ns| (0..5).map(move |i| ServiceKey::new(ns, &format!("svc-{i}"))))
        .collect()
}

#[test]
fn incremental_updates_equal_full_evaluation_over_random_change_sequences() {
    let keys = service_names();
    // Guards against a generator that never announces or never shares an
    // address between Services (the comparison would then be trivial).
    let mut most_announced = 0;
    let mut shared_seen = 0;
    let mut unchanged_updates = 0;
    for seed in 0..20u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut world = World {
            services: BTreeMap::new(),
            slices: BTreeMap::new(),
            node: node(false),
            namespaces: namespaces(false),
            selection: SelectionConfig {
                address_kinds: [AddressKind::LoadBalancer, AddressKind::External].into(),
                max_addresses_per_service: 3,
                ..SelectionConfig::default()
            },
        };
        let mut incremental =
            IncrementalEvaluation::evaluate_all(&world.snapshot(), &pools(), &world.selection);
        let mut full_steps = 0;
        for step in 0..200 {
            // The Services this change concerns; None: everything.
            let changed: Option<Vec<ServiceKey>> = match rng.random_range(0..100) {
                0..45 => {
                    let key = pick(&mut rng, &keys).clone();
                    if rng.random_bool(0.15) {
                        world.services.remove(&key);
                    } else {
                        let service = random_service(&mut rng, &key);
                        world.services.insert(key.clone(), service);
                    }
                    Some(vec![key])
                }
                45..92 => {
                    // A slice is created, changed, deleted or moved to
                    // another Service (its label changes).
                    let owner = pick(&mut rng, &keys).clone();
                    let slice_name = format!("{}-{}", owner.name, rng.random_range(0..2));
                    let id = (owner.namespace.clone(), slice_name.clone());
                    let before = world.slices.get(&id).and_then(ServiceKey::of_slice);
                    let after = if rng.random_bool(0.15) {
                        world.slices.remove(&id);
                        None
                    } else {
                        let target = if rng.random_bool(0.1) {
                            pick(&mut rng, &keys[..5]).name.clone()
                        } else {
                            owner.name.clone()
                        };
                        let slice = random_slice(&mut rng, &owner.namespace, &slice_name, &target);
                        world.slices.insert(id, slice);
                        Some(ServiceKey::new(&owner.namespace, &target))
                    };
                    Some(before.into_iter().chain(after).collect())
                }
                92..96 => {
                    world.node = node(rng.random_bool(0.5));
                    world.namespaces = namespaces(rng.random_bool(0.5));
                    None
                }
                _ => {
                    world.selection.load_balancer_services = rng.random_bool(0.5);
                    None
                }
            };
            match changed {
                Some(keys) => {
                    let before = incremental.desired();
                    let services = keys
                        .iter()
                        .map(|k| (k.clone(), world.services.get(k)))
                        .collect();
                    let changed = incremental.update(
                        &world.node,
                        &world.namespaces,
                        &pools(),
                        &world.selection,
                        services,
                        world.slices_of(&keys),
                    );
                    let after = incremental.desired();
                    assert_eq!(
                        changed,
                        before != after,
                        "seed {seed}, step {step}: update reports a change iff there is one"
                    );
                    assert_untouched_services_shared(&before, &after, &keys);
                    if !changed {
                        unchanged_updates += 1;
                    }
                }
                None => {
                    full_steps += 1;
                    incremental = IncrementalEvaluation::evaluate_all(
                        &world.snapshot(),
                        &pools(),
                        &world.selection,
                    );
                }
            }
            let full = evaluate(&world.snapshot(), &pools(), &world.selection);
            most_announced = most_announced.max(full.announcements.len());
            let mut services_per_address: BTreeMap<&str, BTreeSet<&super::super::ServiceRef>> =
                BTreeMap::new();
            for decision in full.decisions() {
                if matches!(
                    decision.outcome,
                    super::super::Outcome::Announced { .. }
                        | super::super::Outcome::Refused(
                            super::super::Refusal::AddressInUse { .. }
                        )
                ) {
                    services_per_address
                        .entry(&decision.address)
                        .or_default()
                        .insert(&decision.service);
                }
            }
            if services_per_address.values().any(|s| s.len() > 1) {
                shared_seen += 1;
            }
            assert_eq!(
                incremental.desired(),
                full,
                "seed {seed}, step {step}: incremental and full evaluation differ"
            );
        }
        assert!(full_steps < 40, "the sequence is mostly incremental");
    }
    // Many Services claim the same few addresses and only the oldest (or
    // those it shares with) may announce one, so two at once is plenty.
    assert!(most_announced >= 2, "at most {most_announced} announced");
    assert!(
        unchanged_updates > 10,
        "only {unchanged_updates} updates changed nothing"
    );
    assert!(
        shared_seen > 10,
        "an address claimed by several Services (announced by each, or refused as \
         another's) in {shared_seen} steps"
    );
}

/// Every Service of `after` that the update did not name holds the very
/// decisions it held in `before` (shared, not decided again or copied),
/// unless a named Service took or gave up ownership of one of its addresses:
/// then only those decisions differ, to or from `AddressInUse`.
fn assert_untouched_services_shared(before: &Desired, after: &Desired, named: &[ServiceKey]) {
    let key = |decisions: &ServiceDecisions| {
        let service = &decisions[0].service;
        ServiceKey::new(&service.namespace, &service.name)
    };
    let before: BTreeMap<ServiceKey, &ServiceDecisions> =
        before.services.iter().map(|d| (key(d), d)).collect();
    for decisions in &after.services {
        let service = key(decisions);
        if named.contains(&service) {
            continue;
        }
        let held = before.get(&service).expect("an untouched Service stays");
        if Arc::ptr_eq(held, decisions) {
            continue;
        }
        let in_use = |o: &super::super::Outcome| {
            matches!(
                o,
                super::super::Outcome::Refused(super::super::Refusal::AddressInUse { .. })
            )
        };
        assert_eq!(held.len(), decisions.len(), "{service:?}");
        assert!(
            held.iter()
                .zip(decisions.iter())
                .any(|(a, b)| a.outcome != b.outcome),
            "{service:?}: equal decisions were copied instead of shared"
        );
        for (a, b) in held.iter().zip(decisions.iter()) {
            assert!(
                a == b || (a.address == b.address && (in_use(&a.outcome) || in_use(&b.outcome))),
                "{service:?} was not named by the update but {a:?} became {b:?}"
            );
        }
    }
}

fn web_service(ingress: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": "a", "name": "web",
                     "annotations": {"herald.dev/advertise": "true"}},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster"},
        "status": {"loadBalancer": {"ingress": [{"ip": ingress}]}},
    }))
    .unwrap()
}

#[test]
fn a_service_decided_again_the_same_keeps_its_shared_decisions_and_reports_no_change() {
    let key = ServiceKey::new("a", "web");
    let service = web_service("203.0.113.9");
    let selection = SelectionConfig::default();
    let mut evaluation = IncrementalEvaluation::default();
    let changed = evaluation.update(
        &node(false),
        &NamespaceLabels::default(),
        &pools(),
        &selection,
        vec![(key.clone(), Some(&service))],
        [],
    );
    assert!(changed, "a new Service with an address changes the set");
    let first = evaluation.desired();
    let changed = evaluation.update(
        &node(false),
        &NamespaceLabels::default(),
        &pools(),
        &selection,
        vec![(key.clone(), Some(&service))],
        [],
    );
    assert!(!changed, "the same Service decided again changes nothing");
    let second = evaluation.desired();
    assert!(Arc::ptr_eq(&first.services[0], &second.services[0]));

    let moved = web_service("203.0.113.10");
    let changed = evaluation.update(
        &node(false),
        &NamespaceLabels::default(),
        &pools(),
        &selection,
        vec![(key, Some(&moved))],
        [],
    );
    assert!(changed);
    let third = evaluation.desired();
    assert!(!Arc::ptr_eq(&second.services[0], &third.services[0]));
    assert_eq!(third.services[0][0].address, "203.0.113.10");
    assert_eq!(
        first.services[0][0].address, "203.0.113.9",
        "a published set is never modified"
    );
}

#[test]
fn a_deleted_service_leaves_no_decision_and_no_announcement() {
    let key = ServiceKey::new("a", "web");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"namespace": "a", "name": "web",
                     "annotations": {"herald.dev/advertise": "true"}},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster"},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}},
    }))
    .unwrap();
    let slice = random_slice(&mut StdRng::seed_from_u64(1), "a", "web-1", "web");
    let mut ready = slice.clone();
    ready.address_type = "IPv4".to_string();
    ready.endpoints = vec![serde_json::from_value(json!({"addresses": ["10.0.0.1"]})).unwrap()];
    let mut evaluation = IncrementalEvaluation::default();
    let selection = SelectionConfig::default();
    evaluation.update(
        &node(false),
        &NamespaceLabels::default(),
        &pools(),
        &selection,
        vec![(key.clone(), Some(&service))],
        [&ready],
    );
    assert_eq!(evaluation.desired().announcements.len(), 1);
    evaluation.update(
        &node(false),
        &NamespaceLabels::default(),
        &pools(),
        &selection,
        vec![(key, None)],
        [],
    );
    assert_eq!(evaluation.desired(), Desired::default());
    assert!(evaluation.is_empty());
}
