//! The source on synthetic watch streams, with a paused clock: static
//! stability, convergence, debouncing and event de-duplication.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use futures::channel::mpsc::{UnboundedSender, unbounded};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::*;

const NODE: &str = "node-a";

type Tx<K> = UnboundedSender<watcher::Result<Event<K>>>;

struct Feed {
    services: Tx<Service>,
    slices: Tx<EndpointSlice>,
    nodes: Tx<Node>,
    /// Listed at start (one Namespace, `default`); kept open.
    namespaces: Tx<k8s_openapi::api::core::v1::Namespace>,
    config: watch::Sender<PolicyConfig>,
    events: mpsc::Receiver<PlannedEvent>,
    metrics: Metrics,
    source: KubeSource,
}

fn policy() -> PolicyConfig {
    PolicyConfig {
        pools: vec![PoolConfig {
            name: "public".to_string(),
            cidrs: vec!["203.0.113.0/24".parse().unwrap()],
            communities: vec![],
            ..PoolConfig::default()
        }],
        selection: SelectionConfig::default(),
    }
}

fn start() -> Feed {
    let (services, services_rx) = unbounded();
    let (slices, slices_rx) = unbounded();
    let (nodes, nodes_rx) = unbounded();
    let (namespaces, namespaces_rx) = unbounded();
    list(
        &namespaces,
        vec![serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap()],
    );
    let (config, config_rx) = watch::channel(policy());
    let (events_tx, events) = mpsc::channel(64);
    let metrics = Metrics::register(&mut Registry::default());
    let source = KubeSource::from_streams(
        WatchStreams {
            services: services_rx.boxed(),
            slices: slices_rx.boxed(),
            nodes: nodes_rx.boxed(),
            namespaces: namespaces_rx.boxed(),
        },
        NODE,
        config_rx,
        metrics.clone(),
        Some(events_tx),
    );
    Feed {
        services,
        slices,
        nodes,
        namespaces,
        config,
        events,
        metrics,
        source,
    }
}

fn service(name: &str, ip: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "generation": 1, "resourceVersion": "1",
                     "annotations": {"herald.dev/advertise": "true"}},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.1"},
        "status": {"loadBalancer": {"ingress": [{"ip": ip}]}},
    }))
    .unwrap()
}

fn slice(service: &str, ready: bool) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{service}-1"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": NODE,
                       "conditions": {"ready": ready, "serving": ready, "terminating": false}}],
    }))
    .unwrap()
}

fn node(labels: &[(&str, &str)]) -> Node {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    serde_json::from_value(json!({"metadata": {"name": NODE, "labels": labels}})).unwrap()
}

fn list<K>(tx: &Tx<K>, objects: Vec<K>) {
    tx.unbounded_send(Ok(Event::Init)).unwrap();
    for object in objects {
        tx.unbounded_send(Ok(Event::InitApply(object))).unwrap();
    }
    tx.unbounded_send(Ok(Event::InitDone)).unwrap();
}

fn fail<K>(tx: &Tx<K>) {
    tx.unbounded_send(Err(watcher::Error::NoResourceVersion))
        .unwrap();
}

/// Lets every task run to idle; the paused clock jumps over the debounce.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn desired(feed: &Feed) -> Option<BTreeSet<IpAddr>> {
    feed.source
        .desired()
        .borrow()
        .as_ref()
        .map(|d| d.addresses())
}

fn ips(list: &[&str]) -> Option<BTreeSet<IpAddr>> {
    Some(list.iter().map(|a| a.parse().unwrap()).collect())
}

fn drain_events(feed: &mut Feed) -> Vec<String> {
    let mut reasons = Vec::new();
    while let Ok(event) = feed.events.try_recv() {
        reasons.push(format!("{}:{}", event.service.name, event.reason));
    }
    reasons
}

fn listed_feed() -> Feed {
    let feed = start();
    list(
        &feed.services,
        vec![
            service("web", "203.0.113.10"),
            service("api", "203.0.113.11"),
        ],
    );
    list(&feed.slices, vec![slice("web", true), slice("api", true)]);
    list(&feed.nodes, vec![node(&[])]);
    feed
}

#[tokio::test(start_paused = true)]
async fn nothing_is_desired_until_every_watch_has_listed() {
    let feed = start();
    list(&feed.services, vec![service("web", "203.0.113.10")]);
    list(&feed.nodes, vec![node(&[])]);
    // The slices list is still in progress: with an empty slice store the
    // policy would see zero endpoints and announce nothing.
    feed.slices.unbounded_send(Ok(Event::Init)).unwrap();
    settle().await;
    assert_eq!(desired(&feed), None, "the slices have not been listed");
    assert!(!feed.source.report().ready);
    list(&feed.slices, vec![slice("web", true)]);
    settle().await;
    assert_eq!(desired(&feed), ips(&["203.0.113.10"]));
    let report = feed.source.report();
    assert!(report.ready && report.synced, "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn a_relist_in_progress_never_shrinks_the_desired_set() {
    let feed = listed_feed();
    settle().await;
    assert_eq!(desired(&feed), ips(&["203.0.113.10", "203.0.113.11"]));
    // The services watch expired (410) and relists; half the list is in.
    feed.services.unbounded_send(Ok(Event::Init)).unwrap();
    feed.services
        .unbounded_send(Ok(Event::InitApply(service("api", "203.0.113.11"))))
        .unwrap();
    // Meanwhile another watch changes something, which re-evaluates.
    feed.slices
        .unbounded_send(Ok(Event::Apply(slice("api", true))))
        .unwrap();
    settle().await;
    assert_eq!(desired(&feed), ips(&["203.0.113.10", "203.0.113.11"]));
    assert!(!feed.source.report().ready, "relisting is reported");
    // The relist completes without "web": it really was deleted.
    feed.services.unbounded_send(Ok(Event::InitDone)).unwrap();
    settle().await;
    assert_eq!(desired(&feed), ips(&["203.0.113.11"]));
    assert!(feed.source.report().ready);
}

#[tokio::test(start_paused = true)]
async fn an_outage_keeps_the_last_desired_set_reports_staleness_and_converges() {
    let feed = listed_feed();
    settle().await;
    let before = desired(&feed);
    for _ in 0..5 {
        fail(&feed.services);
        fail(&feed.slices);
        fail(&feed.nodes);
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
    assert_eq!(
        desired(&feed),
        before,
        "nothing withdrawn during the outage"
    );
    let report = feed.source.report();
    assert!(!report.ready);
    assert!(report.stale_for_seconds.unwrap() >= 30.0, "{report:?}");
    assert_eq!(report.watches[0].errors, 5);
    assert!(
        report.summary().contains("last known desired set"),
        "{}",
        report.summary()
    );
    // The API returns; the watchers relist what changed meanwhile.
    list(&feed.services, vec![service("web", "203.0.113.12")]);
    list(&feed.slices, vec![slice("web", true)]);
    list(&feed.nodes, vec![node(&[])]);
    settle().await;
    assert_eq!(desired(&feed), ips(&["203.0.113.12"]));
    let report = feed.source.report();
    assert!(report.ready);
    assert_eq!(report.stale_for_seconds, Some(0.0));
}

#[tokio::test(start_paused = true)]
async fn a_status_only_change_reaches_the_desired_set() {
    let feed = listed_feed();
    settle().await;
    // Same generation, new status: a generation filter would miss it.
    let moved = service("web", "203.0.113.20");
    assert_eq!(moved.metadata.generation, Some(1));
    feed.services
        .unbounded_send(Ok(Event::Apply(moved)))
        .unwrap();
    settle().await;
    assert_eq!(desired(&feed), ips(&["203.0.113.11", "203.0.113.20"]));
}

#[tokio::test(start_paused = true)]
async fn a_changed_service_is_published_sharing_every_other_services_decisions() {
    let feed = listed_feed();
    settle().await;
    let before = feed.source.desired().borrow().clone().unwrap();
    let updates = feed.metrics.desired_updates.get();
    feed.services
        .unbounded_send(Ok(Event::Apply(service("web", "203.0.113.20"))))
        .unwrap();
    settle().await;
    let after = feed.source.desired().borrow().clone().unwrap();
    assert_eq!(feed.metrics.desired_updates.get(), updates + 1);
    // Services in name order: api, web.
    assert_eq!(after.services.len(), 2);
    assert!(
        Arc::ptr_eq(&before.services[0], &after.services[0]),
        "api did not change: its decisions are the same allocation"
    );
    assert!(!Arc::ptr_eq(&before.services[1], &after.services[1]));
    assert_eq!(after.services[1][0].address, "203.0.113.20");

    // The same object again (a resync): nothing is published.
    feed.services
        .unbounded_send(Ok(Event::Apply(service("web", "203.0.113.20"))))
        .unwrap();
    settle().await;
    assert_eq!(feed.metrics.desired_updates.get(), updates + 1);
    assert!(Arc::ptr_eq(
        &after,
        feed.source.desired().borrow().as_ref().unwrap()
    ));
}

#[tokio::test(start_paused = true)]
async fn readiness_flips_and_node_exclusion_are_followed() {
    let feed = listed_feed();
    settle().await;
    feed.slices
        .unbounded_send(Ok(Event::Apply(slice("web", false))))
        .unwrap();
    settle().await;
    assert_eq!(desired(&feed), ips(&["203.0.113.11"]));
    feed.nodes
        .unbounded_send(Ok(Event::Apply(node(&[(
            "node.kubernetes.io/exclude-from-external-load-balancers",
            "true",
        )]))))
        .unwrap();
    settle().await;
    assert_eq!(desired(&feed), ips(&[]));
}

#[tokio::test(start_paused = true)]
async fn the_agent_view_types_addresses_and_flags_the_node_exclusion() {
    let feed = start();
    assert_eq!(feed.source.source_desired().borrow().announcements, None);
    list(
        &feed.services,
        vec![
            service("web", "203.0.113.10"),
            service("odd", "not-an-address"),
            service("far", "198.51.100.1"),
        ],
    );
    list(&feed.slices, vec![slice("web", true), slice("far", true)]);
    list(&feed.nodes, vec![node(&[])]);
    settle().await;
    let view = feed.source.source_desired().borrow().clone();
    assert_eq!(
        view.announcements.as_ref().map(|a| a.len()),
        Some(1),
        "{view:?}"
    );
    assert!(!view.node_excluded);
    // The text that is no address has no row; the others keep their order
    // (the cluster IPs, a kind not asked for, are left out here).
    let rows: Vec<(String, String, Option<&str>)> = view
        .candidates
        .iter()
        .filter(|c| c.address.to_string() != "10.96.0.1")
        .map(|c| {
            (
                c.service.clone(),
                c.address.to_string(),
                c.refusal.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "default/far".to_string(),
                "198.51.100.1".to_string(),
                Some("outside every configured pool")
            ),
            ("default/web".to_string(), "203.0.113.10".to_string(), None),
        ]
    );
    feed.nodes
        .unbounded_send(Ok(Event::Apply(node(&[(
            "node.kubernetes.io/exclude-from-external-load-balancers",
            "true",
        )]))))
        .unwrap();
    settle().await;
    let view = feed.source.source_desired().borrow().clone();
    assert!(view.node_excluded);
    assert_eq!(view.announcements, Some(BTreeSet::new()));
}

#[tokio::test(start_paused = true)]
async fn a_slice_moved_to_another_service_updates_both_services() {
    let feed = listed_feed();
    settle().await;
    feed.slices
        .unbounded_send(Ok(Event::Apply(slice("api", false))))
        .unwrap();
    settle().await;
    assert_eq!(desired(&feed), ips(&["203.0.113.10"]));
    // web's slice now says it belongs to api: web has no endpoint left, api
    // has a ready one (incremental evaluation must revisit both).
    let mut moved = slice("web", true);
    moved.metadata.labels = Some(
        [(SERVICE_NAME_LABEL.to_string(), "api".to_string())]
            .into_iter()
            .collect(),
    );
    feed.slices.unbounded_send(Ok(Event::Apply(moved))).unwrap();
    settle().await;
    assert_eq!(desired(&feed), ips(&["203.0.113.11"]));
}

#[tokio::test(start_paused = true)]
async fn deleted_slices_and_services_are_followed_one_by_one() {
    let feed = listed_feed();
    settle().await;
    feed.slices
        .unbounded_send(Ok(Event::Delete(slice("web", true))))
        .unwrap();
    settle().await;
    assert_eq!(desired(&feed), ips(&["203.0.113.11"]));
    feed.services
        .unbounded_send(Ok(Event::Delete(service("api", "203.0.113.11"))))
        .unwrap();
    settle().await;
    assert_eq!(desired(&feed), ips(&[]));
    // Recreated: its slice is still in the store.
    feed.services
        .unbounded_send(Ok(Event::Apply(service("api", "203.0.113.11"))))
        .unwrap();
    settle().await;
    assert_eq!(desired(&feed), ips(&["203.0.113.11"]));
}

#[tokio::test(start_paused = true)]
async fn a_deleted_node_object_keeps_the_last_desired_set() {
    let feed = listed_feed();
    settle().await;
    let before = desired(&feed);
    feed.nodes
        .unbounded_send(Ok(Event::Delete(node(&[]))))
        .unwrap();
    settle().await;
    assert_eq!(desired(&feed), before);
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_changes_yields_one_update_with_the_last_state() {
    let feed = listed_feed();
    settle().await;
    let updates = feed.metrics.desired_updates.get();
    for i in 0..100 {
        let ip = format!("203.0.113.{}", 100 + i);
        feed.services
            .unbounded_send(Ok(Event::Apply(service("web", &ip))))
            .unwrap();
    }
    settle().await;
    assert_eq!(feed.metrics.desired_updates.get(), updates + 1);
    assert_eq!(desired(&feed), ips(&["203.0.113.11", "203.0.113.199"]));
}

#[tokio::test(start_paused = true)]
async fn events_are_recorded_once_and_not_on_resync() {
    let mut feed = listed_feed();
    settle().await;
    let mut first = drain_events(&mut feed);
    first.sort();
    assert_eq!(first, ["api:Announcing", "web:Announcing"]);
    // A full relist with identical objects: no new events.
    list(
        &feed.services,
        vec![
            service("web", "203.0.113.10"),
            service("api", "203.0.113.11"),
        ],
    );
    list(&feed.slices, vec![slice("web", true), slice("api", true)]);
    settle().await;
    assert!(drain_events(&mut feed).is_empty());
    feed.slices
        .unbounded_send(Ok(Event::Apply(slice("web", false))))
        .unwrap();
    settle().await;
    assert_eq!(drain_events(&mut feed), ["web:Withdrawn"]);
}

#[tokio::test(start_paused = true)]
async fn a_config_reload_is_applied_to_the_stored_state() {
    let feed = listed_feed();
    settle().await;
    let mut narrower = policy();
    narrower.pools[0].cidrs = vec!["203.0.113.10/32".parse().unwrap()];
    feed.config.send_replace(narrower);
    settle().await;
    assert_eq!(desired(&feed), ips(&["203.0.113.10"]));
    let refused = feed.source.desired().borrow().clone().unwrap();
    assert!(
        refused
            .refusals()
            .any(|(d, r)| d.address == "203.0.113.11" && r.code() == "OutsidePools")
    );
}

#[tokio::test(start_paused = true)]
async fn metrics_follow_watch_health() {
    let feed = listed_feed();
    settle().await;
    let labels = ResourceLabels {
        resource: "services",
    };
    assert_eq!(feed.metrics.watch_healthy.get_or_create(&labels).get(), 1);
    assert_eq!(feed.metrics.relists.get_or_create(&labels).get(), 1);
    fail(&feed.services);
    settle().await;
    assert_eq!(feed.metrics.watch_healthy.get_or_create(&labels).get(), 0);
    assert_eq!(feed.metrics.watch_errors.get_or_create(&labels).get(), 1);
    assert_eq!(feed.metrics.announced.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn node_labels_are_published_once_the_node_is_known_and_follow_it() {
    let feed = start();
    let labels = feed.source.node_labels();
    list(&feed.services, vec![]);
    list(&feed.slices, vec![]);
    settle().await;
    assert_eq!(*labels.borrow(), None, "the node has not been listed");
    list(&feed.nodes, vec![node(&[("rack", "a")])]);
    settle().await;
    let expected: BTreeMap<String, String> = [("rack".to_string(), "a".to_string())].into();
    assert_eq!(labels.borrow().as_ref(), Some(&expected));
    feed.nodes
        .unbounded_send(Ok(Event::Apply(node(&[("rack", "b")]))))
        .unwrap();
    settle().await;
    assert_eq!(
        labels.borrow().as_ref().and_then(|l| l.get("rack")),
        Some(&"b".to_string())
    );
}

#[test]
fn only_a_busy_failing_or_unreachable_api_server_is_worth_a_second_event_write() {
    use super::event_retry_can_succeed;
    let status = |code: u16| {
        kube::Error::Api(
            kube::core::Status::failure("refused", "Reason")
                .with_code(code)
                .boxed(),
        )
    };
    assert!(event_retry_can_succeed(&status(429)));
    assert!(event_retry_can_succeed(&status(500)));
    assert!(event_retry_can_succeed(&status(504)));
    for code in [400, 403, 404, 409, 422] {
        assert!(!event_retry_can_succeed(&status(code)), "{code}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_namespace_label_change_moves_its_services_in_and_out_of_a_pool() {
    let feed = listed_feed();
    let mut restricted = policy();
    restricted.pools[0].namespace_selector =
        Some(serde_json::from_value(json!({"matchLabels": {"tier": "trusted"}})).unwrap());
    feed.config.send_replace(restricted);
    settle().await;
    assert_eq!(desired(&feed), ips(&[]), "default is not labelled trusted");
    let labelled: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(
        json!({"metadata": {"name": "default", "labels": {"tier": "trusted"}}}),
    )
    .unwrap();
    feed.namespaces
        .unbounded_send(Ok(Event::Apply(labelled)))
        .unwrap();
    settle().await;
    assert_eq!(desired(&feed), ips(&["203.0.113.10", "203.0.113.11"]));
    let plain: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
    feed.namespaces
        .unbounded_send(Ok(Event::Apply(plain)))
        .unwrap();
    settle().await;
    assert_eq!(desired(&feed), ips(&[]));
}
