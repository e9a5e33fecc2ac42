//! `herald run` in Kubernetes mode against the real kube-apiserver (with
//! etcd, RBAC on, herald using its ServiceAccount) and FRR: a Service applied
//! to the API is announced
//! with its pool's communities; the peer is used because its node_selector
//! matches this Node's labels; the node exclusion label drains the node
//! (GRACEFUL_SHUTDOWN, then withdrawal, then removal from `lo`).
//!
//! The API server runs in its own namespace, one veth away from the node
//! (herald reaches it at 198.18.0.2).

use std::time::Duration;

use crate::support::*;
use herald_testnet::cluster::Cluster;
use herald_testnet::{Namespace, Process, lab_or_skip, wait_until};
use serde_json::{Value, json};

fn node_object(labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "h1", "labels": labels}})
}

fn service_object(name: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default",
                     "annotations": {"herald.dev/advertise": "true"}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": 8080}],
                 "selector": {"app": name}, "externalTrafficPolicy": "Cluster"},
        "status": {"loadBalancer": {"ingress": [{"ip": ip}]}},
    })
}

fn slice_object(service: &str) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-abc"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["198.18.1.5"], "nodeName": "h1",
                       "conditions": {"ready": true, "serving": true, "terminating": false}}],
        "ports": [{"port": 8080, "protocol": "TCP"}],
    })
}

/// A Service with its load-balancer address in `status`, as a
/// load-balancer controller would write it.
fn apply_service(cluster: &Cluster, name: &str, ip: &str) {
    cluster.apply_json(&service_object(name, ip)).unwrap();
    cluster
        .set_load_balancer_ips("default", name, &[ip])
        .unwrap();
}

/// `herald run` in Kubernetes mode (KUBECONFIG: its ServiceAccount).
fn start_kube_herald(node: &Namespace, cluster: &Cluster, config: &str) -> Process {
    let dir = node.dir();
    std::fs::write(dir.join("herald.yaml"), config).unwrap();
    let env = format!("KUBECONFIG={}", cluster.kubeconfig().display());
    let config = dir.join("herald.yaml").display().to_string();
    node.spawn(
        "herald",
        "env",
        &[
            &env,
            HERALD,
            "run",
            "--config",
            &config,
            "--node-name",
            "h1",
            "--admin-socket",
            &admin_socket(node),
        ],
    )
    .unwrap()
}

#[test]
fn a_service_in_the_api_is_announced_and_the_exclusion_label_drains_the_node() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = pair(&lab);
    frr.configure(&frr_config(100, "")).unwrap();
    let cluster = Cluster::start_linked(&lab, &node).unwrap();
    cluster
        .apply_json(&node_object(json!({"rack": "a"})))
        .unwrap();
    apply_service(&cluster, "web", "203.0.113.20");
    cluster.apply_json(&slice_object("web")).unwrap();
    let config = herald_config(100, "drain:\n  gshut_wait: 2s\n", "").replace(
        "    hold_time: 9s\n",
        "    hold_time: 9s\n    node_selector: {rack: a}\n",
    );
    let herald = start_kube_herald(&node, &cluster, &config);

    frr.wait_bgp_established(NODE, BOUND).unwrap();
    let path = wait_path(&frr, "203.0.113.20/32", "203.0.113.20 announced", |_| true);
    assert_eq!(communities(&path), "65000:100", "{path}");
    assert!(on_lo(&node, "203.0.113.20"));
    let report = wait_until(BOUND, Duration::from_millis(200), "/status rows", || {
        let report = status(&node)?;
        let row = report
            .announcements
            .iter()
            .find(|a| a.address.to_string() == "203.0.113.20")
            .cloned();
        match row {
            Some(row) if row.announced_to == ["r1"] => Ok(report),
            _ => Err(format!("{report:?}")),
        }
    })
    .unwrap();
    assert_eq!(report.announcements[0].service, "default/web");
    assert!(
        report
            .sources
            .iter()
            .any(|s| s.name == "kubernetes" && s.healthy),
        "{:?}",
        report.sources
    );

    // The exclusion label: GRACEFUL_SHUTDOWN first, then the withdrawal.
    cluster
        .kubectl(&[
            "label",
            "node",
            "h1",
            "node.kubernetes.io/exclude-from-external-load-balancers=",
        ])
        .unwrap();
    wait_path(&frr, "203.0.113.20/32", "65535:0 on the path", |p| {
        communities(p).contains("graceful-shutdown")
    });
    assert!(on_lo(&node, "203.0.113.20"));
    wait_withdrawn(&frr, "203.0.113.20/32", BOUND);
    wait_until(BOUND, Duration::from_millis(100), "address removed", || {
        if on_lo(&node, "203.0.113.20") {
            Err("still on lo".to_string())
        } else {
            Ok(())
        }
    })
    .unwrap();
    let drain = status(&node).unwrap().drain.expect("draining");
    assert_eq!(drain.trigger, "node_excluded");

    // The label goes away: announced again, without 65535:0.
    cluster
        .kubectl(&[
            "label",
            "node",
            "h1",
            "node.kubernetes.io/exclude-from-external-load-balancers-",
        ])
        .unwrap();
    wait_path(&frr, "203.0.113.20/32", "announced again", |p| {
        !communities(p).contains("graceful-shutdown")
    });
    assert_eq!(status(&node).unwrap().drain, None);
    herald.terminate().unwrap();
    cluster.assert_nothing_forbidden();
}

#[test]
fn a_peer_whose_node_selector_does_not_match_is_not_used() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = pair(&lab);
    frr.configure(&frr_config(100, "")).unwrap();
    let cluster = Cluster::start_linked(&lab, &node).unwrap();
    cluster
        .apply_json(&node_object(json!({"rack": "b"})))
        .unwrap();
    let config = herald_config(100, "", "").replace(
        "    hold_time: 9s\n",
        "    hold_time: 9s\n    node_selector: {rack: a}\n",
    );
    let herald = start_kube_herald(&node, &cluster, &config);
    wait_until(
        BOUND,
        Duration::from_millis(200),
        "the peer reported unused",
        || {
            if herald.log().contains("not used by this node") {
                Ok(())
            } else {
                Err(herald.log())
            }
        },
    )
    .unwrap();
    assert!(status(&node).unwrap().peers.is_empty());
    // Relabelled to rack a: the peer is used from then on.
    cluster
        .kubectl(&["label", "--overwrite", "node", "h1", "rack=a"])
        .unwrap();
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    herald.terminate().unwrap();
    cluster.assert_nothing_forbidden();
}
