//! The Kubernetes API misbehaving while client traffic flows: the real
//! kube-apiserver (and its etcd) frozen, killed and restarted; herald's watch
//! streams cut by a proxy; etcd compacted while herald's watches are behind,
//! so it gets the real 410 Gone and relists; a Service deleted and created
//! again under its name; an EndpointSlice replaced by another. The promise
//! (static stability): nothing the API does withdraws a route that should
//! stay, so not one request fails where the Service did not change; and a
//! change made after the fault still reaches the router through every node.
//!
//! Every scenario also asserts that the API server refused herald nothing
//! (no 403 in its audit log): herald runs with the ServiceAccount and the
//! ClusterRole of deploy/.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use herald_testnet::fib;
use herald_testnet::frr_log::RouterEvent;
use herald_testnet::lab_or_skip;
use herald_testnet::scenario::service::{self, NODES};
use herald_testnet::scenario::{self, ServiceLab, TrafficPolicy};
use herald_testnet::traffic::TrafficReport;
use herald_testnet::wait::wait_until;
use serde_json::Value;

use crate::failover::{SETTLE, bfd_drop_evidence, herald_lab, kubernetes, report};

/// How long kube's watcher backoff may take to come back after a long
/// failure (its default backoff caps at about 30 s).
const RECONVERGE: Duration = Duration::from_secs(90);

/// The nodes r1 dropped because its own BFD session to them went Down
/// since `since` (r1's log): a BFD false drop on a loaded machine, not a
/// withdrawal by herald. Printed with the evidence, and tolerated.
fn bfd_false_drops(net: &ServiceLab, since: SystemTime) -> Vec<&'static str> {
    let router = net.ecmp.router().expect("r1's FRR");
    let dropped: Vec<&'static str> = NODES
        .iter()
        .filter(|node| {
            let hop = net.next_hop(node).expect("node address");
            router
                .event_time(RouterEvent::BfdDown, hop, since)
                .is_some()
        })
        .copied()
        .collect();
    for node in &dropped {
        println!("{}", bfd_drop_evidence(net, router, node));
    }
    dropped
}

/// Asserts r1 kept every next hop through the fault (allowing for BFD
/// false drops, which are not herald's withdrawals) and not one request
/// failed.
fn assert_no_withdrawal(
    net: &ServiceLab,
    fewest: usize,
    since: SystemTime,
    traffic: &TrafficReport,
) {
    let dropped = bfd_false_drops(net, since);
    assert!(
        fewest + dropped.len() >= NODES.len(),
        "a withdrawal during the API fault: r1 kept only {fewest} next hops, and its BFD went \
         Down only to {dropped:?}"
    );
    assert_eq!(traffic.failed(), 0, "{traffic}");
}

/// Sleeps `duration` while sampling r1's next hops for the service every
/// 200 ms; returns the fewest seen.
fn fewest_hops_during(net: &ServiceLab, duration: Duration) -> usize {
    let r1 = net.router_ns().expect("r1");
    let start = Instant::now();
    let mut fewest = usize::MAX;
    while start.elapsed() < duration {
        let hops = fib::fib_next_hops(r1, scenario::SERVICE_V4).expect("r1's FIB");
        fewest = fewest.min(hops.len());
        std::thread::sleep(Duration::from_millis(200));
    }
    fewest
}

/// The Events of `default/web` (`events.k8s.io/v1`).
fn web_events(net: &ServiceLab) -> Vec<Value> {
    let list = net
        .cluster()
        .get_json(&["events.v1.events.k8s.io", "-n", "default"])
        .expect("kubectl get events");
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["regarding"]["name"] == "web")
        .collect()
}

/// `Withdrawn` Events of `default/web`, as "reason: note".
fn withdrawals(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["reason"] == "Withdrawn")
        .map(|e| format!("{}: {}", e["reason"], e["note"]))
        .collect()
}

/// A node's `herald_kube_relists_total`, summed over resources.
fn relists(net: &ServiceLab, node: &str) -> f64 {
    let text = net.herald(node).metrics().expect("/metrics");
    text.lines()
        .filter(|l| l.starts_with("herald_kube_relists_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Proves the watches recovered: a second address added to the Service
/// (`externalIPs`) reaches r1's FIB through all three nodes. Returns how long
/// that took from `kubectl patch`.
fn a_change_reaches_r1_through_every_node(net: &ServiceLab, timeout: Duration) -> Duration {
    let second = "203.0.113.11";
    let patch = format!(
        r#"{{"spec":{{"externalIPs":["{}","{second}"]}}}}"#,
        scenario::SERVICE_V4
    );
    let start = Instant::now();
    net.cluster()
        .kubectl(&[
            "-n",
            "default",
            "patch",
            "service",
            "web",
            "--type=merge",
            "-p",
            &patch,
        ])
        .expect("kubectl patch");
    let r1 = net.router_ns().expect("r1");
    wait_until(
        timeout,
        Duration::from_millis(50),
        &format!("r1 to forward {second} over all three nodes"),
        || match fib::fib_next_hops(r1, second) {
            Ok(hops) if hops.len() == NODES.len() => Ok(()),
            Ok(hops) => Err(format!("next hops {hops:?}")),
            Err(e) => Err(e.to_string()),
        },
    )
    .expect("the change reaches r1 through every node");
    start.elapsed()
}

/// kube-apiserver frozen (SIGSTOP) for 30 s, then killed (SIGKILL) and
/// started again 5 s later: herald keeps announcing what it knew, r1 keeps
/// three next hops, not one request fails, herald records no `Withdrawn`
/// Event, `/readyz` says the API does not answer (a frozen server leaves
/// the watches open and silent: herald's probe of the API notices); and a
/// change made after the restart reaches r1 through all three nodes.
#[test]
fn herald_keeps_announcing_while_the_api_server_is_frozen_then_killed_and_restarted() {
    let lab = lab_or_skip!();
    let net = herald_lab(&lab, kubernetes(TrafficPolicy::Cluster), &NODES);
    net.ecmp
        .router()
        .expect("r1")
        .log_events()
        .expect("r1's event log");
    let load = net.load(Duration::from_secs(90)).expect("client");
    std::thread::sleep(Duration::from_secs(3));
    let fault = SystemTime::now();
    net.cluster().freeze_apiserver().expect("SIGSTOP");
    let fewest_frozen = fewest_hops_during(&net, Duration::from_secs(30));
    let readiness = net.herald("n1").get("/readyz").expect("/readyz");
    net.cluster().thaw_apiserver().expect("SIGCONT");
    let fewest_thawed = fewest_hops_during(&net, Duration::from_secs(5));
    net.cluster().kill_apiserver().expect("SIGKILL");
    let fewest_killed = fewest_hops_during(&net, Duration::from_secs(5));
    let restart = Instant::now();
    net.cluster()
        .restart_apiserver()
        .expect("kube-apiserver starts again");
    let restarted = restart.elapsed();
    let fewest_restarted = fewest_hops_during(&net, Duration::from_secs(5));
    let converged = a_change_reaches_r1_through_every_node(&net, RECONVERGE);
    let traffic = load.stop();
    let fewest = fewest_frozen
        .min(fewest_thawed)
        .min(fewest_killed)
        .min(fewest_restarted);
    report(
        "herald api frozen 30s then killed",
        &traffic,
        &format!(
            "; fewest next hops at r1: frozen {fewest_frozen}, thawed {fewest_thawed}, killed \
             {fewest_killed}, restarted {fewest_restarted}; n1 /readyz while frozen: HTTP {}; \
             kube-apiserver ready {} ms after its restart; a change after it reached r1 through \
             all three nodes in {} ms",
            readiness.status,
            restarted.as_millis(),
            converged.as_millis()
        ),
    );
    assert_no_withdrawal(&net, fewest, fault, &traffic);
    assert_eq!(
        readiness.status,
        503,
        "/readyz says the API server does not answer: {}",
        readiness.text()
    );
    let withdrawn = withdrawals(&web_events(&net));
    assert!(withdrawn.is_empty(), "herald withdrew: {withdrawn:?}");
    net.cluster().assert_nothing_forbidden();
}

/// herald reaches the API through a proxy that cuts every connection every
/// 3 s for a minute; then the proxy refuses herald while the Service is
/// changed, etcd is compacted and kube-apiserver restarts (its watch cache
/// starts after the compaction), so herald's watches come back behind and
/// get the real 410 Gone: every node relists. Not one request fails, r1
/// keeps three next hops, and a change afterwards reaches r1 through all
/// three nodes.
#[test]
fn herald_rides_out_cut_watch_streams_and_a_relist_after_compaction() {
    let lab = lab_or_skip!();
    let mut setup = kubernetes(TrafficPolicy::Cluster);
    setup.api_through_proxy = true;
    let net = herald_lab(&lab, setup, &NODES);
    net.ecmp
        .router()
        .expect("r1")
        .log_events()
        .expect("r1's event log");
    let load = net.load(Duration::from_secs(120)).expect("client");
    std::thread::sleep(Duration::from_secs(3));
    let fault = SystemTime::now();
    let mut cut = 0;
    let mut fewest = usize::MAX;
    let cutting = Instant::now();
    while cutting.elapsed() < Duration::from_secs(60) {
        cut += net.api_proxy().cut();
        fewest = fewest.min(fewest_hops_during(&net, Duration::from_secs(3)));
    }
    let before: BTreeMap<&str, f64> = NODES.iter().map(|n| (*n, relists(&net, n))).collect();
    net.api_proxy().refuse(true);
    net.api_proxy().cut();
    // Changes herald cannot see: the API's revision moves on.
    for round in 0..20 {
        net.cluster()
            .kubectl(&[
                "-n",
                "default",
                "annotate",
                "--overwrite",
                "service",
                "web",
                &format!("lab.herald.dev/round={round}"),
            ])
            .expect("kubectl annotate");
    }
    let revision = net.cluster().compact().expect("etcd compaction");
    net.cluster().kill_apiserver().expect("SIGKILL");
    net.cluster()
        .restart_apiserver()
        .expect("kube-apiserver starts again");
    fewest = fewest.min(fewest_hops_during(&net, Duration::from_secs(2)));
    net.api_proxy().refuse(false);
    let back = Instant::now();
    for node in NODES {
        wait_until(
            RECONVERGE,
            Duration::from_millis(500),
            &format!("herald on {node} to relist after the 410"),
            || {
                let now = relists(&net, node);
                if now > before[node] {
                    Ok(())
                } else {
                    Err(format!("relists {now}"))
                }
            },
        )
        .expect("a relist");
    }
    let relisted = back.elapsed();
    fewest = fewest.min(fewest_hops_during(&net, Duration::from_secs(2)));
    let converged = a_change_reaches_r1_through_every_node(&net, RECONVERGE);
    let traffic = load.stop();
    report(
        "herald api watches cut and relisted",
        &traffic,
        &format!(
            "; {cut} connections cut in 60 s; etcd compacted at revision {revision}; every node \
             relisted within {} ms of the API coming back; fewest next hops at r1 {fewest}; a \
             change afterwards reached r1 through all three nodes in {} ms",
            relisted.as_millis(),
            converged.as_millis()
        ),
    );
    assert!(cut >= 20, "the proxy cut only {cut} connections");
    assert_no_withdrawal(&net, fewest, fault, &traffic);
    let withdrawn = withdrawals(&web_events(&net));
    assert!(withdrawn.is_empty(), "herald withdrew: {withdrawn:?}");
    net.cluster().assert_nothing_forbidden();
}

/// With `externalTrafficPolicy: Local`: the Service's EndpointSlice is
/// replaced by another one with the same endpoints (created first, then
/// the old one deleted): no node withdraws and not one request fails. Then
/// the Service is deleted (every node withdraws, as it must) and created
/// again under the same name: every node announces again and records an
/// `Announcing` Event on the new Service (its new uid).
#[test]
fn herald_follows_a_replaced_endpoint_slice_and_a_service_created_again() {
    let lab = lab_or_skip!();
    let net = herald_lab(&lab, kubernetes(TrafficPolicy::Local), &NODES);
    net.ecmp
        .router()
        .expect("r1")
        .log_events()
        .expect("r1's event log");
    let cluster = net.cluster();
    let load = net.load(Duration::from_secs(60)).expect("client");
    std::thread::sleep(Duration::from_secs(3));
    let fault = SystemTime::now();
    let replacement =
        service::endpoint_slice_manifest(&NODES).replace("name: web-lab", "name: web-lab-2");
    cluster.apply(&replacement).expect("the new slice");
    cluster
        .kubectl(&["-n", "default", "delete", "endpointslice", "web-lab"])
        .expect("delete the old slice");
    let fewest = fewest_hops_during(&net, Duration::from_secs(5));
    let replaced = load.snapshot();
    assert_no_withdrawal(&net, fewest, fault, &replaced);

    let old_uid = cluster
        .get_json(&["-n", "default", "service", "web"])
        .expect("the Service")["metadata"]["uid"]
        .clone();
    let deleted = Instant::now();
    cluster
        .kubectl(&["-n", "default", "delete", "service", "web"])
        .expect("kubectl delete");
    net.wait_next_hops(&[], SETTLE)
        .expect("every node withdraws");
    let withdrawn = deleted.elapsed();
    let created = Instant::now();
    cluster
        .apply(&service::service_manifest(TrafficPolicy::Local))
        .expect("the Service again");
    net.wait_next_hops(&NODES, SETTLE)
        .expect("every node announces the new Service");
    let announced = created.elapsed();
    let traffic = load.stop();
    let new_uid = cluster
        .get_json(&["-n", "default", "service", "web"])
        .expect("the Service")["metadata"]["uid"]
        .clone();
    assert_ne!(old_uid, new_uid, "a new object");
    let deadline = Instant::now() + Duration::from_secs(30);
    let announcing = loop {
        let mut announcing: Vec<String> = web_events(&net)
            .into_iter()
            .filter(|e| e["reason"] == "Announcing" && e["regarding"]["uid"] == new_uid)
            .map(|e| e["note"].as_str().unwrap_or_default().to_owned())
            .collect();
        announcing.sort();
        if announcing.len() >= NODES.len() || Instant::now() > deadline {
            break announcing;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    report(
        "herald api slice replaced, service recreated",
        &traffic,
        &format!(
            "; slice replaced: {} requests, {} failed, fewest next hops {fewest}; service \
             deleted: r1 without a route after {} ms; created again: three next hops after {} ms",
            replaced.sent(),
            replaced.failed(),
            withdrawn.as_millis(),
            announced.as_millis()
        ),
    );
    assert_eq!(
        announcing,
        NODES
            .iter()
            .map(|n| format!(
                "node {n} announces {} (external) from pool lab",
                scenario::SERVICE_V4
            ))
            .collect::<Vec<_>>(),
        "one Announcing Event per node on the new Service"
    );
    cluster.assert_nothing_forbidden();
}

/// The lab's Kubernetes side: kube-apiserver behind r1 answers a node
/// (which reaches it through its default route via r1, as herald does)
/// with herald's own credentials, which may read Nodes and may not read
/// Secrets (RBAC from deploy/rbac).
#[test]
fn the_api_server_is_reachable_from_the_nodes_with_herald_s_service_account() {
    let lab = lab_or_skip!();
    let net = ServiceLab::with_herald(&lab, kubernetes(TrafficPolicy::Cluster))
        .expect("ecmp3 with the API and herald nodes");
    let cluster = net.cluster();
    let slices = cluster
        .kubectl(&["get", "endpointslices", "-n", "default", "-o", "name"])
        .expect("kubectl get");
    assert!(slices.contains("web-lab"), "{slices}");
    let n3 = net.ns("n3").expect("n3");
    let kubectl = cluster.kubectl_binary().display().to_string();
    let kubeconfig = cluster.kubeconfig().display().to_string();
    let home = n3.dir().display().to_string();
    let as_herald = |args: &[&str]| {
        let mut full = vec![
            "--kubeconfig",
            kubeconfig.as_str(),
            "--request-timeout",
            "20s",
        ];
        full.extend_from_slice(args);
        n3.exec_with_env(&[("HOME".to_owned(), home.clone())], &kubectl, &full)
    };
    let nodes = as_herald(&["get", "nodes", "-o", "name"]).expect("n3 reaches the API through r1");
    for node in NODES {
        assert!(nodes.contains(&format!("node/{node}")), "{nodes}");
    }
    let secrets =
        as_herald(&["auth", "can-i", "list", "secrets"]).unwrap_or_else(|e| format!("{e}"));
    assert!(secrets.contains("no"), "herald may list Secrets: {secrets}");
}

/// The lab's `herald_kube_refused_addresses{reason}` on `node`.
fn refused(net: &ServiceLab, node: &str, reason: &str) -> f64 {
    let text = net.herald(node).metrics().expect("/metrics");
    let series = format!("herald_kube_refused_addresses{{reason=\"{reason}\"");
    text.lines()
        .filter(|l| l.starts_with(&series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A tenant plays the attacker (the CVE-2020-8554 pattern): in its own
/// namespace `tenant-b`, a newer Service `steal` copies tenant A's address
/// (`default/web`: `externalTrafficPolicy: Local`, its one ready pod on n1)
/// into `spec.externalIPs`, asks for external addresses by annotation, and
/// has ready pods on every node. Without the ownership rule n2 and n3 would
/// announce A's address for B and r1 would spread A's traffic over three
/// nodes. herald refuses B's claim on every node (`AddressInUse`, the older
/// Service owns the address): r1 keeps exactly A's one next hop, B's
/// Service gets a Warning Event naming the owner, and every node's
/// `herald_kube_refused_addresses{reason="AddressInUse"}` counts it. The lab
/// pool says `allow_external_ips: true` (A's address is an external IP), so
/// this is the rule that stops B; a pool without it refuses B earlier
/// (`ExternalIPNotAllowed`, the policy's unit tests).
#[test]
fn a_tenant_copying_another_tenants_address_is_refused_and_r1_keeps_its_next_hops() {
    let lab = lab_or_skip!();
    let mut setup = kubernetes(TrafficPolicy::Local);
    setup.ready_on = vec!["n1".into()];
    let net = herald_lab(&lab, setup, &["n1"]);
    let cluster = net.cluster();
    cluster
        .kubectl(&["create", "namespace", "tenant-b"])
        .expect("the attacker's namespace");
    let attacker = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: steal\n  namespace: tenant-b\n  \
         annotations:\n    herald.dev/advertise: \"true\"\n    herald.dev/address-kinds: external\n\
         spec:\n  type: LoadBalancer\n  externalTrafficPolicy: Cluster\n  externalIPs: [{}]\n  \
         selector:\n    app: steal\n  ports:\n  - name: http\n    port: 80\n    protocol: TCP\n",
        scenario::SERVICE_V4
    );
    cluster.apply(&attacker).expect("the attacker's Service");
    let slice = service::endpoint_slice_manifest(&NODES)
        .replace("name: web-lab", "name: steal-lab")
        .replace("namespace: default", "namespace: tenant-b")
        .replace(
            "kubernetes.io/service-name: web",
            "kubernetes.io/service-name: steal",
        );
    cluster
        .apply(&slice)
        .expect("the attacker's ready pods on every node");

    // The refusal is visible: an Event on B's Service, and every node counts it.
    let event = wait_until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        "a Warning AddressInUse Event on tenant-b/steal",
        || {
            let list = cluster
                .get_json(&["events.v1.events.k8s.io", "-n", "tenant-b"])
                .map_err(|e| e.to_string())?;
            list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["regarding"]["name"] == "steal" && e["reason"] == "AddressInUse")
                .cloned()
                .ok_or_else(|| format!("events: {list}"))
        },
    )
    .expect("the attacker's Service gets an Event");
    assert_eq!(event["type"], "Warning", "{event}");
    let note = event["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("default/web"),
        "the Event names the owner: {note}"
    );
    for node in NODES {
        wait_until(
            Duration::from_secs(30),
            Duration::from_millis(200),
            &format!("{node} to count the refusal"),
            || match refused(&net, node, "AddressInUse") {
                n if n >= 1.0 => Ok(()),
                n => Err(format!("herald_kube_refused_addresses AddressInUse = {n}")),
            },
        )
        .expect("every node counts the refusal");
    }

    // r1 still forwards A's address over n1 alone, sampled for 5 s after
    // every node has decided.
    let r1 = net.router_ns().expect("r1");
    let n1 = net.next_hop("n1").expect("n1's address");
    let until = Instant::now() + Duration::from_secs(5);
    let mut samples = 0;
    while Instant::now() < until {
        let hops = fib::fib_next_hops(r1, scenario::SERVICE_V4).expect("r1's FIB");
        assert_eq!(hops, vec![n1], "r1 forwards A's address over A's node only");
        samples += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "e2e tenant attack: refused on {} nodes, r1 kept 1 next hop over {samples} samples; \
         event: {note}",
        NODES.len()
    );
    cluster.assert_nothing_forbidden();
}
