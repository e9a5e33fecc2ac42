//! The Kubernetes source in process against the real API server, driven by
//! kubectl where a user would use kubectl: selection, annotation, deletion,
//! readiness, node exclusion, Events; and faults (cut watches, etcd frozen,
//! a relist after etcd compaction, herald cut off from the API for 30 s)
//! during which the desired set must never shrink.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use herald::kube::Resource;
use herald_testnet::lab_or_skip;
use serde_json::{Value, json};

use crate::support::*;

fn advertise() -> Value {
    json!({"herald.dev/advertise": "true"})
}

#[test]
fn kubectl_apply_annotate_and_delete_drive_the_desired_set() {
    let lab = KubeLab::start(lab_or_skip!());
    lab.run(|cluster, _| async move {
        let (source, _config) = source(&cluster, None, NODE).await;
        wait(&source, "the first desired set", BOUND, |d| d.is_some()).await;
        cluster
            .apply_json(&slice_object("web", NODE, true))
            .unwrap();
        cluster
            .apply_json(&service_object("web", advertise(), "Cluster"))
            .unwrap();
        // kubectl apply does not write status; the load-balancer controller
        // would. Write it as that controller does.
        set_address(&cluster, "web", "203.0.113.10");
        let took = wait_for_addresses(&source, "applied", &["203.0.113.10"]).await;
        println!("kubectl apply + status -> desired: {took:?}");

        let annotate = |value: &str| {
            cluster
                .kubectl(&[
                    "-n",
                    "default",
                    "annotate",
                    "--overwrite",
                    "service",
                    "web",
                    &format!("herald.dev/advertise={value}"),
                ])
                .unwrap();
        };
        annotate("false");
        wait_for_addresses(&source, "annotated off", &[]).await;
        annotate("true");
        wait_for_addresses(&source, "annotated on", &["203.0.113.10"]).await;
        cluster
            .kubectl(&["-n", "default", "delete", "service", "web", "--wait=false"])
            .unwrap();
        wait_for_addresses(&source, "deleted", &[]).await;
    });
}

#[test]
fn readiness_flips_drive_a_local_service_and_node_exclusion_withdraws_everything() {
    let lab = KubeLab::start(lab_or_skip!());
    lab.run(|cluster, _| async move {
        cluster.apply_json(&node_object("node-b")).unwrap();
        apply_service(&cluster, "web", "203.0.113.10", advertise(), "Local");
        apply_service(&cluster, "api", "203.0.113.11", advertise(), "Cluster");
        cluster
            .apply_json(&slice_object("web", NODE, false))
            .unwrap();
        cluster
            .apply_json(&slice_object("api", "node-b", true))
            .unwrap();
        let (source, _config) = source(&cluster, None, NODE).await;
        wait_for_addresses(&source, "local endpoint not ready", &["203.0.113.11"]).await;
        cluster
            .apply_json(&slice_object("web", NODE, true))
            .unwrap();
        wait_for_addresses(
            &source,
            "local endpoint ready",
            &["203.0.113.10", "203.0.113.11"],
        )
        .await;
        cluster
            .apply_json(&slice_object("web", "node-b", true))
            .unwrap();
        wait_for_addresses(&source, "endpoint moved to another node", &["203.0.113.11"]).await;
        cluster
            .apply_json(&slice_object("web", NODE, true))
            .unwrap();
        wait_for_addresses(&source, "endpoint back", &["203.0.113.10", "203.0.113.11"]).await;

        let label = |label: &str| {
            cluster.kubectl(&["label", "node", NODE, label]).unwrap();
        };
        label("node.kubernetes.io/exclude-from-external-load-balancers=true");
        wait_for_addresses(&source, "node excluded", &[]).await;
        label("node.kubernetes.io/exclude-from-external-load-balancers-");
        wait_for_addresses(
            &source,
            "node included again",
            &["203.0.113.10", "203.0.113.11"],
        )
        .await;
    });
}

/// Two announced Services, and the source watching them through the proxy.
async fn populated(
    cluster: &herald_testnet::cluster::Cluster,
    proxy: &herald_testnet::proxy::CutProxy,
) -> (herald::kube::KubeSource, Handles) {
    for (name, ip) in [("web", "203.0.113.10"), ("api", "203.0.113.11")] {
        apply_service(cluster, name, ip, advertise(), "Cluster");
        cluster.apply_json(&slice_object(name, NODE, true)).unwrap();
    }
    let (source, config) = source(cluster, Some(proxy), NODE).await;
    wait_for_addresses(&source, "populated", &["203.0.113.10", "203.0.113.11"]).await;
    (source, config)
}

fn relists(source: &herald::kube::KubeSource) -> u64 {
    source.report().watches.iter().map(|w| w.relists).sum()
}

/// Cut watch streams, etcd frozen for 3 s (lists and writes time out), and
/// a real 410 Gone: herald cut off while the revision moves on, etcd is
/// compacted and kube-apiserver restarts, so its watches come back behind
/// and relist. The desired set never shrinks, and a change afterwards
/// still arrives.
#[test]
fn cut_watches_a_frozen_etcd_and_a_relist_after_compaction_never_shrink_the_desired_set() {
    let lab = KubeLab::start(lab_or_skip!());
    lab.run(|cluster, proxy| async move {
        let (source, _config) = populated(&cluster, &proxy).await;
        let full = addresses(&source).unwrap();
        let (seen, recorder) = record(&source);
        let relists_before = relists(&source);
        for round in 0..3 {
            proxy.cut();
            tokio::time::sleep(Duration::from_millis(500)).await;
            cluster.freeze_etcd().unwrap();
            tokio::time::sleep(Duration::from_secs(3)).await;
            proxy.cut();
            cluster.thaw_etcd().unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(addresses(&source).as_ref(), Some(&full), "round {round}");
        }
        // The 410: herald cannot see the API while it moves on.
        proxy.refuse(true);
        proxy.cut();
        for round in 0..10 {
            cluster
                .kubectl(&[
                    "-n",
                    "default",
                    "annotate",
                    "--overwrite",
                    "service",
                    "web",
                    &format!("lab.herald.dev/round={round}"),
                ])
                .unwrap();
        }
        cluster.compact().unwrap();
        cluster.restart_apiserver().unwrap();
        proxy.refuse(false);
        let start = Instant::now();
        while relists(&source) <= relists_before {
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "no relist after the compaction: {:?}",
                source.report()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("relisted {:?} after the API came back", start.elapsed());
        assert_eq!(addresses(&source).as_ref(), Some(&full));
        // A change after the faults still arrives: the watches recovered.
        cluster
            .kubectl(&["-n", "default", "delete", "service", "api"])
            .unwrap();
        let want: BTreeSet<IpAddr> = BTreeSet::from(["203.0.113.10".parse().unwrap()]);
        let took = wait(
            &source,
            "convergence after the faults",
            Duration::from_secs(90),
            |d| d.is_some_and(|d| d.addresses() == want),
        )
        .await;
        println!("converged after faults: {took:?}");
        recorder.abort();
        let seen = seen.lock().unwrap().clone();
        // Every set handed out is the full one, or the converged one after
        // the real deletion.
        let before_deletion: Vec<BTreeSet<IpAddr>> =
            seen.into_iter().filter(|s| *s != want).collect();
        never_shrank(&before_deletion, &full);
    });
}

/// herald cannot reach the API for 30 s (the proxy refuses it) while a
/// Service is deleted: the desired set stays, the source reports itself
/// stale and not ready; when the API is reachable again it converges and
/// is ready.
#[test]
fn thirty_seconds_without_the_api_keep_the_desired_set_and_converge_after() {
    let lab = KubeLab::start(lab_or_skip!());
    lab.run(|cluster, proxy| async move {
        let (source, _config) = populated(&cluster, &proxy).await;
        let full = addresses(&source).unwrap();
        let (seen, recorder) = record(&source);
        proxy.refuse(true);
        proxy.cut();
        let cut = Instant::now();
        while source
            .report()
            .watches
            .iter()
            .any(|w| w.resource == Resource::Services && w.healthy)
        {
            assert!(
                cut.elapsed() < Duration::from_secs(10),
                "the Services watch survived the cut: {:?}",
                source.report()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A change made while herald cannot see it.
        cluster
            .kubectl(&["-n", "default", "delete", "service", "api"])
            .unwrap();
        let outage = Instant::now();
        while outage.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert_eq!(
                addresses(&source).as_ref(),
                Some(&full),
                "withdrawn during the outage"
            );
        }
        let report = source.report();
        assert!(!report.ready, "{report:?}");
        assert!(
            report.stale_for_seconds.unwrap_or_default() > 20.0,
            "{report:?}"
        );
        assert_eq!(
            seen.lock().unwrap().len(),
            0,
            "nothing handed out during the outage"
        );
        proxy.refuse(false);
        // kube's default backoff may wait up to about 30 s before retrying.
        let start = Instant::now();
        wait(
            &source,
            "convergence after the outage",
            Duration::from_secs(90),
            |d| d.is_some_and(|d| d.addresses().len() == 1),
        )
        .await;
        println!("converged {:?} after the API came back", start.elapsed());
        recorder.abort();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !source.report().ready && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let report = source.report();
        assert!(report.ready, "{report:?}");
        assert_eq!(report.stale_for_seconds, Some(0.0));
        println!("ready again {:?} after the API came back", start.elapsed());
    });
}

/// Events are recorded once: an `OutsidePools` Warning on the Service that
/// asks for an address outside every pool, `Announcing` on the announced
/// one; a relist (kube-apiserver restarted: its watch cache starts anew, so
/// herald's watches get 410 and relist) records nothing new. The real API
/// server validates every Event (`events.k8s.io/v1`): none was refused.
#[test]
fn events_are_recorded_on_the_service_once() {
    let lab = KubeLab::start(lab_or_skip!());
    lab.run(|cluster, proxy| async move {
        let (source, handles) = populated(&cluster, &proxy).await;
        apply_service(&cluster, "outside", "192.0.2.10", advertise(), "Cluster");
        let deadline = Instant::now() + BOUND;
        let found = loop {
            let found = events(&cluster);
            let done = found.iter().any(|e| e["reason"] == "OutsidePools")
                && found.iter().any(|e| e["reason"] == "Announcing");
            if done || Instant::now() > deadline {
                break found;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let reasons: Vec<String> = found
            .iter()
            .map(|e| {
                format!(
                    "{}:{}",
                    e["regarding"]["name"].as_str().unwrap_or("?"),
                    e["reason"].as_str().unwrap_or("?")
                )
            })
            .collect();
        assert!(
            reasons.contains(&"outside:OutsidePools".to_string()),
            "{reasons:?}"
        );
        assert!(
            reasons.contains(&"web:Announcing".to_string()),
            "{reasons:?}"
        );
        let relists_before = relists(&source);
        cluster.restart_apiserver().unwrap();
        let start = Instant::now();
        while relists(&source) <= relists_before {
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "no relist after the restart: {:?}",
                source.report()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = events(&cluster);
        assert_eq!(
            after.len(),
            found.len(),
            "a relist recorded events: {after:#?}"
        );
        assert_eq!(
            handles.metrics.events_failed.get(),
            0,
            "the API server refused an Event"
        );
    });
}

#[test]
fn two_nodes_share_one_refusal_event_and_each_records_its_own_announcement() {
    let lab = KubeLab::start(lab_or_skip!());
    lab.run(|cluster, _| async move {
        cluster.apply_json(&node_object("node-b")).unwrap();
        apply_service(&cluster, "web", "203.0.113.10", advertise(), "Cluster");
        cluster
            .apply_json(&slice_object("web", NODE, true))
            .unwrap();
        apply_service(&cluster, "outside", "192.0.2.10", advertise(), "Cluster");
        let mut sources = Vec::new();
        for node in [NODE, "node-b"] {
            sources.push(source(&cluster, None, node).await);
        }
        // Both nodes refuse 192.0.2.10 and announce 203.0.113.10 (Cluster
        // policy).
        let summary = |events: &[Value]| -> (Vec<Value>, Vec<String>) {
            let refusals = events
                .iter()
                .filter(|e| e["reason"] == "OutsidePools")
                .cloned()
                .collect();
            let mut announcing: Vec<String> = events
                .iter()
                .filter(|e| e["reason"] == "Announcing")
                .map(|e| e["note"].as_str().unwrap_or_default().to_string())
                .collect();
            announcing.sort();
            (refusals, announcing)
        };
        let deadline = Instant::now() + BOUND;
        let (refusals, announcing) = loop {
            let (refusals, announcing) = summary(&events(&cluster));
            let counted = refusals.len() == 1 && refusals[0]["series"]["count"] == 2;
            if (counted && announcing.len() == 2) || Instant::now() > deadline {
                break (refusals, announcing);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(
            refusals.len(),
            1,
            "one OutsidePools Event for the cluster: {refusals:#?}"
        );
        let refusal = &refusals[0];
        assert_eq!(refusal["series"]["count"], 2, "{refusal:#}");
        assert_eq!(refusal["regarding"]["name"], "outside");
        assert_eq!(refusal["reportingInstance"], "herald-cluster");
        assert!(
            refusal["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("outside.herald.")),
            "{refusal:#}"
        );
        assert_eq!(
            announcing,
            [
                "node node-a announces 203.0.113.10 (load-balancer) from pool public",
                "node node-b announces 203.0.113.10 (load-balancer) from pool public",
            ],
            "one Announcing Event per node"
        );
        drop(sources);
    });
}

/// The real API server refuses an Event whose note is over 1 KiB. A Service
/// whose annotation is long and invalid still gets its `InvalidAnnotation`
/// Warning: herald shortens the note to fit, and no Event is refused.
#[test]
fn a_long_invalid_annotation_still_gets_its_warning_event() {
    let lab = KubeLab::start(lab_or_skip!());
    lab.run(|cluster, _| async move {
        let long = format!("65000:{}", "9".repeat(3000));
        apply_service(
            &cluster,
            "noisy",
            "203.0.113.12",
            json!({"herald.dev/advertise": "true", "herald.dev/communities": long}),
            "Cluster",
        );
        let (_source, handles) = source(&cluster, None, NODE).await;
        let deadline = Instant::now() + BOUND;
        let warning = loop {
            let warning = events(&cluster)
                .into_iter()
                .find(|e| e["reason"] == "InvalidAnnotation");
            if warning.is_some() || Instant::now() > deadline {
                break warning;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let failed = handles.metrics.events_failed.get();
        let warning = warning.unwrap_or_else(|| {
            panic!("no InvalidAnnotation Event ({failed} Events refused by the API server)")
        });
        let note = warning["note"].as_str().unwrap_or_default();
        assert!(note.len() <= 1024, "{} bytes: {note}", note.len());
        assert!(note.contains("herald.dev/communities"), "{note}");
        assert_eq!(failed, 0, "Events refused by the API server");
    });
}
