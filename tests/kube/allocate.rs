//! The allocation controller against the real API server: Services created
//! with kubectl (or the API) get an address from the pool, written into
//! their status with herald's own RBAC; a burst of 1,000 gets 1,000 distinct
//! addresses; an exhausted pool and a request outside every pool give their
//! Events and no address; nothing is written while the Lease is not held.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald::config::{AllocationConfig, PoolConfig};
use herald::kube::allocate::{AllocatorConfig, AllocatorController, AllocatorMetrics};
use herald_testnet::cluster::Cluster;
use herald_testnet::lab_or_skip;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, PostParams};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::support::*;

fn allocator_config(cidr: &str) -> AllocatorConfig {
    AllocatorConfig {
        pools: vec![PoolConfig {
            name: "public".to_string(),
            cidrs: vec![cidr.parse().unwrap()],
            allocate: true,
            ..PoolConfig::default()
        }],
        allocation: AllocationConfig {
            enabled: true,
            ..AllocationConfig::default()
        },
    }
}

/// A herald-class LoadBalancer Service in `default`.
fn lb_service(name: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": "herald.dev/bgp",
                 "ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": name}},
    })
}

/// The controller with herald's credentials, leading while `leader` says.
async fn controller(
    cluster: &Cluster,
    config: AllocatorConfig,
    leader: watch::Receiver<bool>,
) -> (AllocatorController, watch::Sender<AllocatorConfig>) {
    let client = kube::Client::try_from(client_config(cluster.kubeconfig()).await).unwrap();
    let (config_tx, config_rx) = watch::channel(config);
    let metrics = AllocatorMetrics::register(&mut Registry::default());
    (
        AllocatorController::spawn(client, NODE, config_rx, leader, metrics),
        config_tx,
    )
}

/// The load-balancer addresses of `default/name`, as kubectl shows them.
fn ingress(cluster: &Cluster, name: &str) -> Vec<String> {
    let service = cluster
        .get_json(&["service", "-n", "default", name])
        .expect("kubectl get service");
    service["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(String::from))
        .collect()
}

/// Polls (every 100 ms, at most `BOUND`) until `default/name` carries
/// exactly `want`.
async fn wait_ingress(cluster: &Cluster, name: &str, want: &[&str]) -> Duration {
    let start = Instant::now();
    loop {
        let got = ingress(cluster, name);
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < BOUND,
            "{name}: ingress {got:?}, want {want:?} within {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until an Event with `reason` and `note` is on `default/name`.
async fn wait_event(cluster: &Cluster, name: &str, reason: &str, note: &str) {
    let start = Instant::now();
    loop {
        let found = events(cluster)
            .iter()
            .any(|e| e["regarding"]["name"] == name && e["reason"] == reason && e["note"] == note);
        if found {
            return;
        }
        assert!(
            start.elapsed() < BOUND,
            "no {reason} Event {note:?} on {name}; events: {:#?}",
            events(cluster)
                .iter()
                .map(|e| (
                    e["regarding"]["name"].clone(),
                    e["reason"].clone(),
                    e["note"].clone()
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn a_service_created_with_kubectl_gets_an_address_only_while_the_lease_is_held() {
    let lab = KubeLab::start(lab_or_skip!());
    lab.run(|cluster, _| async move {
        let (leader_tx, leader_rx) = watch::channel(false);
        let (allocator, config) =
            controller(&cluster, allocator_config("203.0.113.0/24"), leader_rx).await;
        cluster.apply_json(&lb_service("web", json!({}))).unwrap();
        // Not leading: nothing is written.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(ingress(&cluster, "web"), Vec::<String>::new());
        assert!(!allocator.report().leading);

        leader_tx.send_replace(true);
        let took = wait_ingress(&cluster, "web", &["203.0.113.1"]).await;
        println!("leading -> address written: {took:?}");
        wait_event(
            &cluster,
            "web",
            "AddressAllocated",
            "allocated 203.0.113.1 from pool public",
        )
        .await;
        let report = allocator.report();
        assert!(report.leading && report.synced, "{report:?}");
        assert_eq!((report.pools[0].size, report.pools[0].in_use), (254, 1));

        // A Service of another class is left alone.
        let mut other = lb_service("other", json!({}));
        other["spec"]["loadBalancerClass"] = json!("example.com/lb");
        cluster.apply_json(&other).unwrap();
        // A requested address.
        cluster
            .apply_json(&lb_service(
                "pinned",
                json!({"herald.dev/load-balancer-ips": "203.0.113.77"}),
            ))
            .unwrap();
        wait_ingress(&cluster, "pinned", &["203.0.113.77"]).await;
        assert_eq!(ingress(&cluster, "other"), Vec::<String>::new());

        // The Lease lost: a new Service gets nothing.
        leader_tx.send_replace(false);
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.apply_json(&lb_service("late", json!({}))).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(ingress(&cluster, "late"), Vec::<String>::new());
        // Regained: the new term lists again, keeps what is assigned and
        // fills in the rest.
        leader_tx.send_replace(true);
        wait_ingress(&cluster, "late", &["203.0.113.2"]).await;
        assert_eq!(ingress(&cluster, "web"), ["203.0.113.1"]);

        // No longer a LoadBalancer: the API server itself clears the status
        // when the type changes (herald is not leading meanwhile, so it
        // cannot be herald).
        leader_tx.send_replace(false);
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster
            .kubectl(&[
                "-n",
                "default",
                "patch",
                "service",
                "web",
                "--type=merge",
                "-p",
                r#"{"spec":{"type":"ClusterIP","loadBalancerClass":null}}"#,
            ])
            .unwrap();
        wait_ingress(&cluster, "web", &[]).await;
        leader_tx.send_replace(true);

        // No longer herald's by the config (claim_unclassed turned off): the
        // address herald wrote is released, with an Event.
        let mut unclassed = lb_service("unclassed", json!({}));
        unclassed["spec"]
            .as_object_mut()
            .unwrap()
            .remove("loadBalancerClass");
        cluster.apply_json(&unclassed).unwrap();
        let mut claiming = allocator_config("203.0.113.0/24");
        claiming.allocation.claim_unclassed = true;
        config.send_replace(claiming.clone());
        wait_ingress(&cluster, "unclassed", &["203.0.113.1"]).await;
        claiming.allocation.claim_unclassed = false;
        config.send_replace(claiming);
        wait_ingress(&cluster, "unclassed", &[]).await;
        wait_event(
            &cluster,
            "unclassed",
            "AddressReleased",
            "released 203.0.113.1: the Service is no longer a herald LoadBalancer",
        )
        .await;
    });
}

#[test]
fn an_exhausted_pool_and_a_request_outside_every_pool_give_their_events_and_no_address() {
    let lab = KubeLab::start(lab_or_skip!());
    lab.run(|cluster, _| async move {
        let (_leader, leader_rx) = watch::channel(true);
        // A /30: two usable addresses.
        let (allocator, _config) =
            controller(&cluster, allocator_config("203.0.113.0/30"), leader_rx).await;
        for name in ["one", "two"] {
            cluster.apply_json(&lb_service(name, json!({}))).unwrap();
        }
        wait_ingress(&cluster, "one", &["203.0.113.1"]).await;
        wait_ingress(&cluster, "two", &["203.0.113.2"]).await;
        cluster.apply_json(&lb_service("three", json!({}))).unwrap();
        wait_event(
            &cluster,
            "three",
            "PoolExhausted",
            "pool public is exhausted (IPv4)",
        )
        .await;
        assert_eq!(ingress(&cluster, "three"), Vec::<String>::new());

        cluster
            .apply_json(&lb_service(
                "outside",
                json!({"herald.dev/load-balancer-ips": "192.0.2.50"}),
            ))
            .unwrap();
        wait_event(
            &cluster,
            "outside",
            "RequestedOutsidePools",
            "address 192.0.2.50 requested outside every pool",
        )
        .await;
        assert_eq!(ingress(&cluster, "outside"), Vec::<String>::new());
        let report = allocator.report();
        assert_eq!(report.refused, 2, "{report:?}");

        // Deleting one frees its address for the exhausted one.
        cluster
            .kubectl(&["-n", "default", "delete", "service", "one"])
            .unwrap();
        wait_ingress(&cluster, "three", &["203.0.113.1"]).await;
    });
}

#[test]
fn a_thousand_services_created_at_once_all_get_distinct_addresses() {
    const COUNT: usize = 1000;
    let lab = KubeLab::start(lab_or_skip!());
    lab.run(|cluster, _| async move {
        let (_leader, leader_rx) = watch::channel(true);
        let (allocator, _config) =
            controller(&cluster, allocator_config("198.19.0.0/20"), leader_rx).await;
        let admin =
            kube::Client::try_from(client_config(cluster.admin_kubeconfig()).await).unwrap();
        let api: Api<Service> = Api::namespaced(admin, "default");
        // Wait for the controller's first list before the burst.
        let start = Instant::now();
        while !allocator.report().synced {
            assert!(start.elapsed() < BOUND, "the allocator never listed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let start = Instant::now();
        let created: Vec<_> = futures::stream::iter(0..COUNT)
            .map(|i| {
                let api = api.clone();
                async move {
                    let service: Service =
                        serde_json::from_value(lb_service(&format!("burst-{i:04}"), json!({})))
                            .unwrap();
                    api.create(&PostParams::default(), &service).await
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let create_time = start.elapsed();
        assert!(created.iter().all(Result::is_ok), "a create failed");

        let bound = Duration::from_secs(180);
        let mut polls = 0;
        let addresses: BTreeMap<String, Vec<String>> = loop {
            polls += 1;
            let with = addressed(&api).await;
            if with.len() == COUNT {
                break with;
            }
            assert!(
                start.elapsed() < bound,
                "{} of {COUNT} Services have an address after {bound:?}",
                with.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let last = start.elapsed();
        let distinct: BTreeSet<&String> = addresses.values().flatten().collect();
        assert_eq!(distinct.len(), COUNT, "an address was handed out twice");
        assert!(addresses.values().all(|ips| ips.len() == 1));
        println!(
            "{COUNT} Services created in {create_time:?} (32 at a time); the last got its address \
             {last:?} after the first create ({polls} polls of 100 ms)"
        );
        let report = allocator.report();
        assert_eq!(report.pools[0].in_use, COUNT as u64, "{report:?}");
    });
}

#[test]
fn an_allocated_service_is_announced_without_any_annotation() {
    let lab = KubeLab::start(lab_or_skip!());
    lab.run(|cluster, _| async move {
        let (_leader, leader_rx) = watch::channel(true);
        let (_allocator, _config) =
            controller(&cluster, allocator_config("203.0.113.0/24"), leader_rx).await;
        // The source as the agent configures it with allocation enabled.
        let mut policy = policy();
        policy.selection.allocated_class = AllocationConfig {
            enabled: true,
            ..AllocationConfig::default()
        }
        .allocated_class();
        let (_policy_tx, policy_rx) = watch::channel(policy);
        let source = herald::kube::KubeSource::spawn(
            client_config(cluster.kubeconfig()).await,
            NODE,
            policy_rx,
            herald::kube::Metrics::register(&mut Registry::default()),
        )
        .unwrap();
        wait(&source, "the first desired set", BOUND, |d| d.is_some()).await;
        cluster
            .apply_json(&slice_object("web", NODE, true))
            .unwrap();
        cluster.apply_json(&lb_service("web", json!({}))).unwrap();
        let took = wait_for_addresses(&source, "allocated and announced", &["203.0.113.1"]).await;
        println!("kubectl apply -> allocated -> in the desired set: {took:?}");
        // Another class is neither allocated nor announced.
        let mut other = lb_service("other", json!({}));
        other["spec"]["loadBalancerClass"] = json!("example.com/lb");
        cluster.apply_json(&other).unwrap();
        cluster
            .apply_json(&slice_object("other", NODE, true))
            .unwrap();
        set_address(&cluster, "other", "203.0.113.200");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            addresses(&source),
            Some(BTreeSet::from(["203.0.113.1".parse().unwrap()]))
        );
    });
}

#[test]
fn a_leader_change_in_the_middle_of_a_burst_hands_out_no_address_twice() {
    const COUNT: usize = 400;
    let lab = KubeLab::start(lab_or_skip!());
    lab.run(|cluster, _| async move {
        // Two herald pods: a leads, b waits.
        let (leader_a, rx_a) = watch::channel(true);
        let (leader_b, rx_b) = watch::channel(false);
        let (a, _config_a) = controller(&cluster, allocator_config("198.19.0.0/20"), rx_a).await;
        let (b, _config_b) = controller(&cluster, allocator_config("198.19.0.0/20"), rx_b).await;
        let admin =
            kube::Client::try_from(client_config(cluster.admin_kubeconfig()).await).unwrap();
        let api: Api<Service> = Api::namespaced(admin, "default");
        let start = Instant::now();
        while !a.report().synced {
            assert!(start.elapsed() < BOUND, "a never listed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let start = Instant::now();
        let burst = {
            let api = api.clone();
            tokio::spawn(async move {
                futures::stream::iter(0..COUNT)
                    .map(|i| {
                        let api = api.clone();
                        async move {
                            let service: Service = serde_json::from_value(lb_service(
                                &format!("burst-{i:04}"),
                                json!({}),
                            ))
                            .unwrap();
                            api.create(&PostParams::default(), &service).await
                        }
                    })
                    .buffer_unordered(32)
                    .collect::<Vec<_>>()
                    .await
            })
        };
        // In the middle of the burst: a loses the Lease; b takes it over
        // a moment later (a Lease changes hands only after it expired).
        tokio::time::sleep(Duration::from_secs(2)).await;
        leader_a.send_replace(false);
        tokio::time::sleep(Duration::from_millis(500)).await;
        leader_b.send_replace(true);
        let handover = start.elapsed();
        let created = burst.await.unwrap();
        assert!(created.iter().all(Result::is_ok), "a create failed");
        let bound = Duration::from_secs(120);
        let addresses: BTreeMap<String, Vec<String>> = loop {
            let with = addressed(&api).await;
            if with.len() == COUNT {
                break with;
            }
            assert!(
                start.elapsed() < bound,
                "{} of {COUNT} addressed",
                with.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let distinct: BTreeSet<&String> = addresses.values().flatten().collect();
        assert_eq!(distinct.len(), COUNT, "an address was handed out twice");
        assert!(addresses.values().all(|ips| ips.len() == 1));
        let (ra, rb) = (a.report(), b.report());
        assert!(!ra.leading && rb.leading, "{ra:?} {rb:?}");
        assert_eq!(rb.pools[0].in_use, COUNT as u64);
        println!(
            "{COUNT} Services, leader changed {handover:?} into the burst: all {COUNT} distinct, \
             the last {:?} after the first create (a had written {} before it stopped)",
            start.elapsed(),
            ra.pools[0].in_use
        );
    });
}

/// A herald-class LoadBalancer Service in `namespace`.
fn lb_service_in(namespace: &str, name: &str, annotations: Value) -> Service {
    let mut object = lb_service(name, annotations);
    object["metadata"]["namespace"] = json!(namespace);
    serde_json::from_value(object).unwrap()
}

/// The Services `api` lists that carry a load-balancer address, by name.
async fn addressed(api: &Api<Service>) -> BTreeMap<String, Vec<String>> {
    let list = api.list(&ListParams::default()).await.unwrap();
    list.items
        .iter()
        .filter_map(|s| {
            let ips: Vec<String> = s
                .status
                .as_ref()?
                .load_balancer
                .as_ref()?
                .ingress
                .as_ref()?
                .iter()
                .filter_map(|i| i.ip.clone())
                .collect();
            (!ips.is_empty()).then(|| (s.metadata.name.clone().unwrap(), ips))
        })
        .collect()
}

/// A client for `namespace`'s ServiceAccount `tenant`, which may do
/// anything with Services in that namespace only (what a tenant owning its
/// Services has; the lab runs no controller that aggregates the built-in
/// `admin` role, so the Role is explicit).
async fn tenant_client(cluster: &Cluster, namespace: &str) -> kube::Client {
    cluster
        .kubectl(&["create", "namespace", namespace])
        .unwrap();
    cluster
        .kubectl(&["-n", namespace, "create", "serviceaccount", "tenant"])
        .unwrap();
    cluster
        .kubectl(&[
            "-n",
            namespace,
            "create",
            "role",
            "services",
            "--verb=get,list,watch,create,update,patch,delete",
            "--resource=services",
        ])
        .unwrap();
    cluster
        .kubectl(&[
            "-n",
            namespace,
            "create",
            "rolebinding",
            "tenant-services",
            "--role=services",
            &format!("--serviceaccount={namespace}:tenant"),
        ])
        .unwrap();
    let token = cluster
        .kubectl(&[
            "-n",
            namespace,
            "create",
            "token",
            "tenant",
            "--duration=1h",
        ])
        .unwrap();
    let path = cluster.kubeconfig_with_token(&token, namespace).unwrap();
    assert_ne!(
        std::fs::read_to_string(&path).unwrap(),
        std::fs::read_to_string(cluster.kubeconfig()).unwrap(),
        "the token was replaced"
    );
    kube::Client::try_from(client_config(&path).await).unwrap()
}

/// The `events.k8s.io/v1` Events in `namespace`.
fn events_in(cluster: &Cluster, namespace: &str) -> Vec<Value> {
    cluster
        .get_json(&["events.v1.events.k8s.io", "-n", namespace])
        .expect("kubectl get events")["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The tenant of `team-b` plays the attacker with its own token: it asks
/// for the address `team-a` holds, and for `team-a`'s pool by name. Both are
/// refused with a Warning Event (`PoolNotPermitted`) and no address; the
/// victim keeps its address; the tenant still gets one from the pool open
/// to it.
#[test]
fn a_tenant_never_gets_an_address_from_a_pool_it_may_not_use() {
    let lab = KubeLab::start(lab_or_skip!());
    lab.run(|cluster, _| async move {
        let config = AllocatorConfig {
            pools: vec![
                PoolConfig {
                    name: "team-a".to_string(),
                    cidrs: vec!["203.0.113.0/28".parse().unwrap()],
                    namespaces: vec!["team-a".to_string()],
                    allocate: true,
                    ..PoolConfig::default()
                },
                PoolConfig {
                    name: "shared".to_string(),
                    cidrs: vec!["198.51.100.0/28".parse().unwrap()],
                    allocate: true,
                    ..PoolConfig::default()
                },
            ],
            allocation: AllocationConfig {
                enabled: true,
                ..AllocationConfig::default()
            },
        };
        let (_leader, leader_rx) = watch::channel(true);
        let (_allocator, _config) = controller(&cluster, config, leader_rx).await;
        let tenant = tenant_client(&cluster, "team-b").await;
        cluster.kubectl(&["create", "namespace", "team-a"]).unwrap();
        let admin = kube::Client::try_from(client_config(cluster.admin_kubeconfig()).await).unwrap();
        Api::<Service>::namespaced(admin, "team-a")
            .create(&PostParams::default(), &lb_service_in("team-a", "victim", json!({})))
            .await
            .unwrap();
        let victim_address = || {
            let service = cluster
                .get_json(&["service", "-n", "team-a", "victim"])
                .unwrap();
            service["status"]["loadBalancer"]["ingress"][0]["ip"]
                .as_str()
                .map(String::from)
        };
        let start = Instant::now();
        while victim_address().as_deref() != Some("203.0.113.1") {
            assert!(start.elapsed() < BOUND, "the victim never got 203.0.113.1");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let theirs: Api<Service> = Api::namespaced(tenant, "team-b");
        for (name, annotations) in [
            ("steal", json!({"herald.dev/load-balancer-ips": "203.0.113.1"})),
            ("sneak", json!({"herald.dev/pool": "team-a"})),
            ("plain", json!({})),
        ] {
            theirs
                .create(&PostParams::default(), &lb_service_in("team-b", name, annotations))
                .await
                .unwrap_or_else(|e| panic!("the tenant may create Services: {e}"));
        }
        let refused = "pool team-a does not admit this Service (its namespaces, \
                       namespace_selector or service_selector)";
        let start = Instant::now();
        loop {
            let events = events_in(&cluster, "team-b");
            let has = |name: &str| {
                events.iter().any(|e| {
                    e["regarding"]["name"] == name
                        && e["reason"] == "PoolNotPermitted"
                        && e["note"] == refused
                })
            };
            if has("steal") && has("sneak") {
                break;
            }
            assert!(start.elapsed() < BOUND, "no PoolNotPermitted Events: {events:#?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let plain = loop {
            let service = cluster.get_json(&["service", "-n", "team-b", "plain"]).unwrap();
            if let Some(ip) = service["status"]["loadBalancer"]["ingress"][0]["ip"].as_str() {
                break ip.to_string();
            }
            assert!(start.elapsed() < BOUND, "the tenant's plain Service got nothing");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(plain, "198.51.100.1");
        for name in ["steal", "sneak"] {
            let service = cluster.get_json(&["service", "-n", "team-b", name]).unwrap();
            assert!(
                service["status"]["loadBalancer"]["ingress"].is_null()
                    || service["status"]["loadBalancer"]["ingress"] == json!([]),
                "{name}: {}",
                service["status"]
            );
        }
        assert_eq!(victim_address().as_deref(), Some("203.0.113.1"));
        println!("tenant team-b: a request for team-a's address and for its pool refused; its own Service got {plain}");
    });
}
