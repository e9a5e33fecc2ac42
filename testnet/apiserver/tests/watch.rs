//! Watch semantics over raw HTTP: history replay, in-stream 410, bookmarks, streaming lists,
//! timeouts, selectors, and the watch faults (expire, end, cut, stop bookmarks, pause, lag).

mod common;

use std::time::Duration;

use common::{End, Watch, post, send_json, service};
use herald_apiserver::{Options, StandIn};
use serde_json::json;

const SVCS: &str = "/api/v1/namespaces/default/services";
const MERGE: &str = "application/merge-patch+json";

fn standin_with(bookmark_interval: Duration) -> StandIn {
    StandIn::start(Options {
        bookmark_interval,
        ..Options::default()
    })
    .expect("start")
}

fn standin() -> StandIn {
    standin_with(Duration::from_secs(3600))
}

fn label(s: &StandIn, name: &str, value: &str) {
    let patch = json!({"metadata": {"labels": {"v": value}}});
    let r = send_json(s.addr(), "PATCH", &format!("{SVCS}/{name}"), MERGE, &patch);
    assert_eq!(r.status, 200);
}

#[test]
fn a_watch_from_a_resource_version_replays_history_after_it_then_follows_live() {
    let s = standin();
    post(s.addr(), SVCS, &service("a"));
    let rv = s.resource_version();
    label(&s, "a", "1");
    post(s.addr(), SVCS, &service("b"));
    let mut w = Watch::open(
        s.addr(),
        &format!("{SVCS}?&watch=true&resourceVersion={rv}"),
    );
    assert_eq!(w.status, 200);
    let e = w.next_change().unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("MODIFIED"), Some("a"))
    );
    assert_eq!(e["object"]["kind"], "Service");
    assert_eq!(e["object"]["apiVersion"], "v1");
    let e = w.next_change().unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("b"))
    );
    let r = common::request(s.addr(), "DELETE", &format!("{SVCS}/a"), &[], b"").unwrap();
    assert_eq!(r.status, 200);
    let e = w.next_change().unwrap();
    assert_eq!(e["type"], "DELETED");
    assert_eq!(
        e["object"]["metadata"]["resourceVersion"],
        s.resource_version().to_string()
    );
}

#[test]
fn a_watch_without_resource_version_starts_with_the_current_state() {
    let s = standin();
    post(s.addr(), SVCS, &service("a"));
    let mut w = Watch::open(s.addr(), &format!("{SVCS}?watch=1"));
    let e = w.next_change().unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("a"))
    );
    post(s.addr(), SVCS, &service("b"));
    assert_eq!(w.next_change().unwrap()["object"]["metadata"]["name"], "b");
}

#[test]
fn a_too_old_resource_version_is_http_200_then_an_in_stream_410_expired() {
    let s = standin();
    post(s.addr(), SVCS, &service("a"));
    let old = s.resource_version();
    label(&s, "a", "1");
    s.compact();
    let mut w = Watch::open(
        s.addr(),
        &format!("{SVCS}?watch=true&resourceVersion={old}"),
    );
    assert_eq!(w.status, 200);
    let e = w.next().unwrap();
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["kind"], "Status");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert_eq!(w.drain().0, End::Clean);
}

#[test]
fn a_short_history_expires_old_resource_versions_on_its_own() {
    let s = StandIn::start(Options {
        history_limit: 3,
        ..Options::default()
    })
    .unwrap();
    post(s.addr(), SVCS, &service("a"));
    let old = s.resource_version();
    for i in 0..5 {
        label(&s, "a", &i.to_string());
    }
    let mut w = Watch::open(
        s.addr(),
        &format!("{SVCS}?watch=true&resourceVersion={old}"),
    );
    assert_eq!(w.next().unwrap()["object"]["code"], 410);
}

#[test]
fn periodic_bookmarks_carry_api_version_kind_and_the_latest_resource_version() {
    let s = standin_with(Duration::from_millis(100));
    post(s.addr(), SVCS, &service("a"));
    let rv = s.resource_version();
    let mut w = Watch::open(
        s.addr(),
        &format!("{SVCS}?watch=true&allowWatchBookmarks=true&resourceVersion={rv}"),
    );
    // Another resource changes: the bookmark RV moves past it.
    post(
        s.addr(),
        "/api/v1/nodes",
        &json!({"metadata": {"name": "n1"}}),
    );
    let latest = s.resource_version().to_string();
    let bookmark = common::eventually(Duration::from_secs(10), || {
        let e = w.next().unwrap();
        (e["type"] == "BOOKMARK" && e["object"]["metadata"]["resourceVersion"] == latest.as_str())
            .then_some(e)
    });
    assert_eq!(bookmark["object"]["kind"], "Service");
    assert_eq!(bookmark["object"]["apiVersion"], "v1");
}

#[test]
fn no_bookmarks_are_sent_unless_asked_for() {
    let s = standin_with(Duration::from_millis(20));
    let mut w = Watch::open(
        s.addr(),
        &format!("{SVCS}?watch=true&resourceVersion=1&timeoutSeconds=1"),
    );
    let (end, events) = w.drain();
    assert_eq!(end, End::Clean);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn stopped_bookmarks_stop_and_resume() {
    let s = standin_with(Duration::from_millis(20));
    s.faults().stop_bookmarks();
    let mut w = Watch::open(
        s.addr(),
        &format!("{SVCS}?watch=true&allowWatchBookmarks=true&resourceVersion=1&timeoutSeconds=1"),
    );
    let (end, events) = w.drain();
    assert_eq!(end, End::Clean);
    assert!(events.is_empty(), "bookmarks while stopped: {events:?}");
    s.faults().resume_bookmarks();
    let mut w = Watch::open(
        s.addr(),
        &format!("{SVCS}?watch=true&allowWatchBookmarks=true&resourceVersion=1"),
    );
    assert_eq!(w.next().unwrap()["type"], "BOOKMARK");
}

#[test]
fn send_initial_events_streams_the_list_and_ends_it_with_an_annotated_bookmark() {
    let s = standin();
    post(s.addr(), SVCS, &service("a"));
    post(s.addr(), SVCS, &service("b"));
    let rv = s.resource_version().to_string();
    let mut w = Watch::open(
        s.addr(),
        &format!(
            "{SVCS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
        ),
    );
    let a = w.next().unwrap();
    let b = w.next().unwrap();
    assert_eq!(
        (a["type"].as_str(), b["type"].as_str()),
        (Some("ADDED"), Some("ADDED"))
    );
    let end = w.next().unwrap();
    assert_eq!(end["type"], "BOOKMARK");
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(end["object"]["metadata"]["resourceVersion"], rv.as_str());
    label(&s, "a", "1");
    assert_eq!(w.next_change().unwrap()["type"], "MODIFIED");
}

#[test]
fn watches_end_cleanly_at_timeout_seconds_and_the_connection_stays_usable() {
    let s = standin();
    let mut w = Watch::open_keep_alive(
        s.addr(),
        &format!("{SVCS}?watch=true&timeoutSeconds=1&resourceVersion=1"),
    );
    assert_eq!(w.drain().0, End::Clean);
    assert_eq!(w.get_after_end(SVCS), 200);
}

#[test]
fn status_patches_send_modified_and_no_op_patches_send_nothing() {
    let s = standin();
    post(s.addr(), SVCS, &service("a"));
    let rv = s.resource_version();
    let mut w = Watch::open(s.addr(), &format!("{SVCS}?watch=true&resourceVersion={rv}"));
    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}});
    for _ in 0..2 {
        let r = send_json(
            s.addr(),
            "PATCH",
            &format!("{SVCS}/a/status"),
            MERGE,
            &status,
        );
        assert_eq!(r.status, 200);
    }
    label(&s, "a", "after");
    let e = w.next_change().unwrap();
    assert_eq!(e["type"], "MODIFIED");
    assert_eq!(
        e["object"]["status"]["loadBalancer"]["ingress"][0]["ip"],
        "192.0.2.1"
    );
    assert_eq!(e["object"]["metadata"]["generation"], 1);
    let e = w.next_change().unwrap();
    assert_eq!(
        e["object"]["metadata"]["labels"]["v"], "after",
        "the repeated status patch was a no-op and sent nothing"
    );
}

#[test]
fn selectors_filter_watches_and_objects_leaving_the_selection_are_deleted() {
    let s = standin();
    let mut svc = service("a");
    svc["metadata"]["labels"]["v"] = json!("on");
    post(s.addr(), SVCS, &svc);
    let mut w = Watch::open(s.addr(), &format!("{SVCS}?watch=true&labelSelector=v%3Don"));
    assert_eq!(w.next_change().unwrap()["type"], "ADDED");
    post(s.addr(), SVCS, &service("other"));
    label(&s, "a", "off");
    let e = w.next_change().unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("DELETED"), Some("a"))
    );
    label(&s, "a", "on");
    assert_eq!(w.next_change().unwrap()["type"], "ADDED");
    let mut by_name = Watch::open(
        s.addr(),
        &format!("{SVCS}?watch=true&fieldSelector=metadata.name%3Dother"),
    );
    assert_eq!(
        by_name.next_change().unwrap()["object"]["metadata"]["name"],
        "other"
    );
    let bad = common::get(
        s.addr(),
        &format!("{SVCS}?watch=true&fieldSelector=spec.type%3DLoadBalancer"),
    );
    assert_eq!(bad.status, 400);
}

#[test]
fn expire_watches_sends_an_in_stream_410_to_every_open_watch() {
    let s = standin();
    let mut w1 = Watch::open(s.addr(), &format!("{SVCS}?watch=true&resourceVersion=1"));
    let mut w2 = Watch::open(s.addr(), "/api/v1/nodes?watch=true&resourceVersion=1");
    common::eventually(Duration::from_secs(10), || {
        (s.requests().iter().filter(|r| r.is_watch()).count() == 2).then_some(())
    });
    s.faults().expire_watches();
    for w in [&mut w1, &mut w2] {
        let e = w.next().unwrap();
        assert_eq!(
            (e["type"].as_str(), e["object"]["code"].as_u64()),
            (Some("ERROR"), Some(410))
        );
        assert_eq!(w.drain().0, End::Clean);
    }
}

#[test]
fn end_watches_ends_streams_cleanly_and_cut_connections_aborts_them() {
    let s = standin();
    let mut w = Watch::open(s.addr(), &format!("{SVCS}?watch=true&resourceVersion=1"));
    common::eventually(Duration::from_secs(10), || {
        (!s.requests().is_empty()).then_some(())
    });
    s.faults().end_watches();
    assert_eq!(w.drain(), (End::Clean, vec![]));
    let mut w = Watch::open(s.addr(), &format!("{SVCS}?watch=true&resourceVersion=1"));
    common::eventually(Duration::from_secs(10), || {
        (s.requests().len() == 2).then_some(())
    });
    s.faults().cut_connections();
    assert_eq!(w.drain().0, End::Cut);
}

#[test]
fn paused_events_are_held_back_and_delivered_in_order_on_resume() {
    let s = standin_with(Duration::from_millis(50));
    post(s.addr(), SVCS, &service("a"));
    let rv = s.resource_version();
    let mut w = Watch::open(
        s.addr(),
        &format!("{SVCS}?watch=true&allowWatchBookmarks=true&resourceVersion={rv}"),
    );
    assert_eq!(w.next().unwrap()["type"], "BOOKMARK", "the watch is live");
    s.faults().pause_events();
    label(&s, "a", "1");
    label(&s, "a", "2");
    // While paused only bookmarks arrive, and they do not claim the held-back changes.
    for _ in 0..3 {
        let e = w.next().unwrap();
        assert_eq!(e["type"], "BOOKMARK");
        assert_eq!(e["object"]["metadata"]["resourceVersion"], rv.to_string());
    }
    s.faults().resume_events();
    let first = w.next_change().unwrap();
    let second = w.next_change().unwrap();
    assert_eq!(first["object"]["metadata"]["labels"]["v"], "1");
    assert_eq!(second["object"]["metadata"]["labels"]["v"], "2");
}

#[test]
fn a_watch_that_falls_behind_the_buffer_gets_an_in_stream_410() {
    let s = StandIn::start(Options {
        watch_buffer: 16,
        ..Options::default()
    })
    .unwrap();
    post(s.addr(), SVCS, &service("a"));
    let rv = s.resource_version();
    let mut w = Watch::open(s.addr(), &format!("{SVCS}?watch=true&resourceVersion={rv}"));
    common::eventually(Duration::from_secs(10), || {
        (s.requests().iter().any(|r| r.is_watch())).then_some(())
    });
    s.faults().pause_events();
    for i in 0..40 {
        label(&s, "a", &i.to_string());
    }
    s.faults().resume_events();
    let (_, events) = w.drain();
    let last = events.last().expect("events");
    assert_eq!(last["type"], "ERROR");
    assert_eq!(last["object"]["code"], 410);
}
