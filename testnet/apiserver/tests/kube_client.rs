//! The stand-in driven by the real kube 5 client: `runtime::watcher` (list + watch, pagination,
//! 410 relists, bookmarks, streaming lists), typed CRUD errors, `patch_status` with apply and
//! merge patches, and the events `Recorder`.

mod common;

use std::time::Duration;

use futures::{Stream, StreamExt};
use herald_apiserver::{Options, StandIn};
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, Event};
use serde_json::json;

/// Bound on every wait for a watcher event.
const BOUND: Duration = Duration::from_secs(20);

fn client(s: &StandIn) -> kube::Client {
    kube::Client::try_from(kube::Config::new(s.url().parse().unwrap())).expect("client")
}

fn fixture(s: &StandIn, name: &str) {
    s.apply_json(common::service(name)).expect("fixture");
}

fn label(s: &StandIn, name: &str, value: &str) {
    s.merge_patch(
        "v1",
        "Service",
        Some("default"),
        name,
        herald_apiserver::Part::Main,
        &json!({"metadata": {"labels": {"v": value}}}),
    )
    .expect("label");
}

async fn next<S>(stream: &mut S) -> Event<Service>
where
    S: Stream<Item = Result<Event<Service>, watcher::Error>> + Unpin,
{
    tokio::time::timeout(BOUND, stream.next())
        .await
        .expect("watcher event within the bound")
        .expect("stream continues")
        .expect("no watcher error")
}

/// Reads until `InitDone`; returns the names listed.
async fn initial_names<S>(stream: &mut S) -> Vec<String>
where
    S: Stream<Item = Result<Event<Service>, watcher::Error>> + Unpin,
{
    let mut names = Vec::new();
    loop {
        match next(stream).await {
            Event::Init => names.clear(),
            Event::InitApply(svc) => names.push(svc.metadata.name.unwrap()),
            Event::InitDone => return names,
            other => panic!("unexpected during init: {other:?}"),
        }
    }
}

/// Reads until the watcher restarts after a 410 and finishes its relist; returns the names.
async fn relist_after_410<S>(stream: &mut S) -> Vec<String>
where
    S: Stream<Item = Result<Event<Service>, watcher::Error>> + Unpin,
{
    let mut saw_410 = false;
    loop {
        let item = tokio::time::timeout(BOUND, stream.next())
            .await
            .expect("watcher event within the bound")
            .expect("stream continues");
        match item {
            Err(watcher::Error::WatchError(status)) if status.code == 410 => saw_410 = true,
            Err(e) => panic!("unexpected watcher error: {e}"),
            Ok(Event::Init) => {
                assert!(saw_410, "the relist follows an in-stream 410");
                return initial_names(stream).await;
            }
            Ok(Event::Apply(_) | Event::Delete(_)) => {}
            Ok(other) => panic!("unexpected: {other:?}"),
        }
    }
}

fn name_of(event: &Event<Service>) -> (&'static str, String) {
    match event {
        Event::Apply(s) => ("apply", s.metadata.name.clone().unwrap()),
        Event::Delete(s) => ("delete", s.metadata.name.clone().unwrap()),
        other => panic!("not a change: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_lists_then_follows_modifications_and_deletions() {
    let s = StandIn::start(Options::default()).unwrap();
    fixture(&s, "a");
    fixture(&s, "b");
    let api: Api<Service> = Api::default_namespaced(client(&s));
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    assert_eq!(initial_names(&mut stream).await, ["a", "b"]);
    label(&s, "a", "1");
    assert_eq!(name_of(&next(&mut stream).await), ("apply", "a".into()));
    s.delete("v1", "Service", Some("default"), "b").unwrap();
    assert_eq!(name_of(&next(&mut stream).await), ("delete", "b".into()));
    let log = s.requests();
    let list = log.iter().find(|r| !r.is_watch()).unwrap();
    assert!(list.query.contains("limit=500"), "{}", list.query);
    let watch = log.iter().find(|r| r.is_watch()).unwrap();
    assert!(
        watch.query.starts_with('&'),
        "kube sends ?&: {}",
        watch.query
    );
    assert!(watch.query.contains("allowWatchBookmarks=true"));
    assert!(watch.query.contains("resourceVersion="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_pages_through_long_lists_with_continue() {
    let s = StandIn::start(Options::default()).unwrap();
    for i in 0..5 {
        fixture(&s, &format!("svc-{i}"));
    }
    let api: Api<Service> = Api::default_namespaced(client(&s));
    let mut stream = watcher::watcher(api, watcher::Config::default().page_size(2)).boxed();
    assert_eq!(initial_names(&mut stream).await.len(), 5);
    let continues = s
        .requests()
        .iter()
        .filter(|r| r.query.contains("continue="))
        .count();
    assert_eq!(continues, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_relists_after_an_in_stream_410_and_sees_changes_it_missed() {
    let s = StandIn::start(Options::default()).unwrap();
    fixture(&s, "a");
    fixture(&s, "b");
    let api: Api<Service> = Api::default_namespaced(client(&s));
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    assert_eq!(initial_names(&mut stream).await, ["a", "b"]);
    // Changes the watch never delivers, then the history is gone and the watch expires.
    s.faults().pause_events();
    s.delete("v1", "Service", Some("default"), "a").unwrap();
    fixture(&s, "c");
    s.compact();
    s.faults().expire_watches();
    s.faults().resume_events();
    let relisted = relist_after_410(&mut stream).await;
    assert_eq!(relisted, ["b", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_relists_when_it_rewatches_from_a_compacted_resource_version() {
    let s = StandIn::start(Options::default()).unwrap();
    fixture(&s, "a");
    let api: Api<Service> = Api::default_namespaced(client(&s));
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    assert_eq!(initial_names(&mut stream).await, ["a"]);
    s.faults().pause_events();
    fixture(&s, "b");
    s.compact();
    // The watch ends cleanly; kube re-watches from its old RV, gets 200 + ERROR 410, relists.
    s.faults().end_watches();
    s.faults().resume_events();
    let relisted = relist_after_410(&mut stream).await;
    assert_eq!(relisted, ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_parses_bookmarks_and_rewatches_from_the_bookmark_resource_version() {
    let s = StandIn::start(Options {
        bookmark_interval: Duration::from_millis(100),
        ..Options::default()
    })
    .unwrap();
    fixture(&s, "a");
    let api: Api<Service> = Api::default_namespaced(client(&s));
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    assert_eq!(initial_names(&mut stream).await, ["a"]);
    // Only another resource changes: the Service watch learns the new RV from bookmarks alone.
    s.apply_json(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}))
        .unwrap();
    let target = format!("resourceVersion={}", s.resource_version());
    let faults = s.faults();
    let drive = tokio::spawn(async move {
        let mut stream = stream;
        // Errors would surface here if a bookmark failed to parse.
        while let Some(item) = stream.next().await {
            item.expect("no watcher error");
        }
    });
    common::eventually(BOUND, || {
        faults.end_watches();
        std::thread::sleep(Duration::from_millis(300));
        s.requests()
            .iter()
            .any(|r| r.is_watch() && r.query.contains(&target))
            .then_some(())
    });
    assert!(!drive.is_finished(), "the watcher keeps running");
    drive.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_with_streaming_lists_gets_initial_events_then_changes() {
    let s = StandIn::start(Options::default()).unwrap();
    fixture(&s, "a");
    fixture(&s, "b");
    let api: Api<Service> = Api::default_namespaced(client(&s));
    let mut stream = watcher::watcher(api, watcher::Config::default().streaming_lists()).boxed();
    assert_eq!(initial_names(&mut stream).await, ["a", "b"]);
    label(&s, "b", "1");
    assert_eq!(name_of(&next(&mut stream).await), ("apply", "b".into()));
    let log = s.requests();
    assert!(log.iter().all(|r| r.is_watch()), "no list request: {log:?}");
    assert!(log[0].query.contains("sendInitialEvents=true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_client_sees_kubernetes_errors_and_patches_status() {
    let s = StandIn::start(Options::default()).unwrap();
    let api: Api<Service> = Api::default_namespaced(client(&s));
    let svc: Service = serde_json::from_value(common::service("web")).unwrap();
    let created = api.create(&PostParams::default(), &svc).await.unwrap();
    let code = |e: kube::Error| match e {
        kube::Error::Api(s) => (s.code, s.reason),
        other => panic!("not an API error: {other}"),
    };
    let again = api.create(&PostParams::default(), &svc).await.unwrap_err();
    assert_eq!(code(again), (409, "AlreadyExists".into()));
    assert_eq!(
        code(api.get("nope").await.unwrap_err()),
        (404, "NotFound".into())
    );
    let mut changed = created.clone();
    changed
        .metadata
        .labels
        .get_or_insert_default()
        .insert("x".into(), "1".into());
    api.replace("web", &PostParams::default(), &changed)
        .await
        .unwrap();
    let stale = api
        .replace("web", &PostParams::default(), &created)
        .await
        .unwrap_err();
    assert_eq!(code(stale), (409, "Conflict".into()));

    let apply = json!({"apiVersion": "v1", "kind": "Service",
                       "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}});
    let pp = PatchParams::apply("herald").force();
    let patched = api
        .patch_status("web", &pp, &Patch::Apply(&apply))
        .await
        .unwrap();
    let ingress = patched
        .status
        .unwrap()
        .load_balancer
        .unwrap()
        .ingress
        .unwrap();
    assert_eq!(ingress[0].ip.as_deref(), Some("192.0.2.10"));
    let merge = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.11"}]}}});
    let patched = api
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&merge))
        .await
        .unwrap();
    assert_eq!(
        patched.metadata.generation,
        Some(1),
        "neither label nor status changes bump generation"
    );
    let deleted = api
        .delete("web", &DeleteParams::background())
        .await
        .unwrap();
    assert!(deleted.is_left(), "DELETE returns the object");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_posts_events_and_patches_a_series_on_repeats() {
    let s = StandIn::start(Options::default()).unwrap();
    let recorder = Recorder::new(
        client(&s),
        Reporter {
            controller: "herald".into(),
            instance: Some("n1".into()),
        },
    );
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Service".into()),
        name: Some("web".into()),
        namespace: Some("default".into()),
        ..ObjectReference::default()
    };
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: "AddressRefused".into(),
        note: Some("192.0.2.1 is outside every pool".into()),
        action: "Announce".into(),
        secondary: None,
    };
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();
    let events = s.list("events.k8s.io/v1", "Event", Some("default"));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["series"]["count"], 2);
    let methods: Vec<String> = s.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["POST", "PATCH"]);
}
