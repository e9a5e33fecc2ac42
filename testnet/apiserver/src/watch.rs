//! Watch streams: chunked, newline-delimited JSON events
//! (`{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}`) with kube-apiserver's
//! semantics:
//!
//! - a watch from a resourceVersion gets every change after it from the history; one older than
//!   the compaction point gets HTTP 200 and then an in-stream `ERROR` with a 410 `Expired`
//!   Status (an HTTP-level 410 would make kube 5 retry the same resourceVersion forever);
//! - a watch without a resourceVersion (or `0`) first gets the current state as synthetic
//!   `ADDED` events; `sendInitialEvents=true` ends them with a `BOOKMARK` annotated
//!   `k8s.io/initial-events-end: "true"`;
//! - with `allowWatchBookmarks=true`, a `BOOKMARK` (with `apiVersion` and `kind`, which kube
//!   needs to parse it) goes out every bookmark interval;
//! - label and field selectors filter events; an object that stops matching is sent as
//!   `DELETED` and one that starts matching as `ADDED`, like the real watch cache;
//! - the stream ends at `timeoutSeconds`, on [`crate::faults::WatchControl`], and when a watch
//!   falls so far behind that the broadcast buffer overflowed (in-stream 410).
//!
//! This module owns the event stream; storage is in [`crate::store`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::error::ApiError;
use crate::faults::{Faults, WatchControl};
use crate::resources::{RESOURCES, ResourceId};
use crate::selectors::Selectors;
use crate::store::{Change, ChangeType, Store, WatchFrom, WatchStart};

/// A parsed watch request.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub resource: ResourceId,
    pub namespace: Option<String>,
    pub selectors: Selectors,
    pub from: WatchFrom,
    /// `sendInitialEvents=true`: end the initial events with the initial-events-end bookmark.
    pub send_initial_events: bool,
    pub allow_bookmarks: bool,
    pub timeout: Duration,
    pub bookmark_interval: Duration,
}

#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    object: &'a Value,
}

fn line(event_type: &str, object: &Value) -> Bytes {
    let mut buf = serde_json::to_vec(&Event { event_type, object }).unwrap_or_default();
    buf.push(b'\n');
    Bytes::from(buf)
}

fn bookmark(resource: ResourceId, rv: u64, initial_events_end: bool) -> Value {
    let r = &RESOURCES[resource];
    let mut object = json!({
        "kind": r.kind,
        "apiVersion": r.api_version(),
        "metadata": {"resourceVersion": rv.to_string(), "creationTimestamp": null},
    });
    if initial_events_end {
        object["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    object
}

/// The event a change produces for this watch, if any.
fn event_for(req: &WatchRequest, change: &Change) -> Option<(&'static str, Value)> {
    if change.key.resource != req.resource
        || req
            .namespace
            .as_deref()
            .is_some_and(|ns| ns != change.key.namespace)
    {
        return None;
    }
    let now = req.selectors.matches(&change.object);
    let before = change
        .previous
        .as_deref()
        .is_some_and(|p| req.selectors.matches(p));
    match (change.change_type, before, now) {
        (ChangeType::Added, _, true) => Some(("ADDED", (*change.object).clone())),
        (ChangeType::Modified, true, true) => Some(("MODIFIED", (*change.object).clone())),
        (ChangeType::Modified, false, true) => Some(("ADDED", (*change.object).clone())),
        (ChangeType::Modified, true, false) => {
            // The object left the selection: DELETED with its last matching state, at this RV.
            let mut last = change.previous.as_deref().cloned().unwrap_or_default();
            last["metadata"]["resourceVersion"] = json!(change.rv.to_string());
            Some(("DELETED", last))
        }
        (ChangeType::Deleted, _, true) => Some(("DELETED", (*change.object).clone())),
        _ => None,
    }
}

/// Starts a watch and returns its response body; the stream runs in its own task and stops
/// when the client goes away. The watch is registered (store and faults) before this returns,
/// so a fault injected after the response started always reaches it.
pub fn start(store: Arc<Store>, faults: Faults, req: WatchRequest) -> Body {
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    let control = faults.state.watch_control.subscribe();
    let paused = faults.state.paused.subscribe();
    let start = store.watch(req.resource, req.namespace.as_deref(), req.from);
    tokio::spawn(run(faults, req, start, control, paused, tx));
    let stream =
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|b| b.map(Ok::<_, Infallible>)));
    Body::from_stream(stream)
}

async fn run(
    faults: Faults,
    req: WatchRequest,
    start: Result<WatchStart, ApiError>,
    mut control: broadcast::Receiver<WatchControl>,
    mut paused: watch::Receiver<bool>,
    tx: mpsc::Sender<Bytes>,
) {
    let start = match start {
        Ok(start) => start,
        Err(e) => {
            let _ = tx.send(line("ERROR", &e.to_status())).await;
            return;
        }
    };
    let deadline = Instant::now() + req.timeout;
    let mut last_rv = start.start_rv;
    for object in &start.initial {
        if req.selectors.matches(object) && tx.send(line("ADDED", object)).await.is_err() {
            return;
        }
    }
    if req.send_initial_events {
        let end = bookmark(req.resource, start.start_rv, true);
        if tx.send(line("BOOKMARK", &end)).await.is_err() {
            return;
        }
    }
    for change in &start.backlog {
        last_rv = change.rv;
        if let Some((t, object)) = event_for(&req, change)
            && tx.send(line(t, &object)).await.is_err()
        {
            return;
        }
    }
    let mut receiver = start.receiver;
    let mut ticker = tokio::time::interval_at(
        Instant::now() + req.bookmark_interval,
        req.bookmark_interval,
    );
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pending: Option<Arc<Change>> = None;
    loop {
        let out = tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep_until(deadline) => return,
            c = control.recv() => match c {
                Ok(WatchControl::End) | Err(RecvError::Closed) => return,
                Ok(WatchControl::Expire) => {
                    let status = ApiError::expired("The resourceVersion for the provided watch is too old.");
                    let _ = tx.send(line("ERROR", &status.to_status())).await;
                    return;
                }
                Err(RecvError::Lagged(_)) => None,
            },
            _ = ticker.tick() => (req.allow_bookmarks && !faults.bookmarks_stopped())
                .then(|| line("BOOKMARK", &bookmark(req.resource, last_rv, false))),
            r = receiver.recv(), if pending.is_none() => match r {
                Ok(change) => {
                    pending = Some(change);
                    None
                }
                Err(RecvError::Lagged(_)) => {
                    let status = ApiError::expired("the watch fell behind and its events were dropped");
                    let _ = tx.send(line("ERROR", &status.to_status())).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            resumed = async { paused.wait_for(|p| !p).await.is_ok() }, if pending.is_some() => {
                if !resumed {
                    return;
                }
                let change = pending.take();
                change.and_then(|c| {
                    last_rv = last_rv.max(c.rv);
                    event_for(&req, &c).map(|(t, object)| line(t, &object))
                })
            }
        };
        if let Some(bytes) = out
            && tx.send(bytes).await.is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;
    use crate::selectors::LabelSelector;
    use crate::store::ObjectKey;

    fn request(selector: &str) -> WatchRequest {
        WatchRequest {
            resource: find("", "v1", "services").unwrap(),
            namespace: Some("default".into()),
            selectors: Selectors {
                labels: LabelSelector::parse(selector).unwrap(),
                ..Selectors::default()
            },
            from: WatchFrom::After(0),
            send_initial_events: false,
            allow_bookmarks: true,
            timeout: Duration::from_secs(1),
            bookmark_interval: Duration::from_secs(1),
        }
    }

    fn change(change_type: ChangeType, before: Option<&str>, after: &str) -> Change {
        let obj = |app: &str| json!({"metadata": {"name": "a", "labels": {"app": app}}});
        Change {
            rv: 9,
            change_type,
            key: ObjectKey {
                resource: find("", "v1", "services").unwrap(),
                namespace: "default".into(),
                name: "a".into(),
            },
            object: Arc::new(obj(after)),
            previous: before.map(|b| Arc::new(obj(b))),
        }
    }

    #[test]
    fn objects_leaving_the_selection_are_sent_as_deleted_at_the_new_rv() {
        let req = request("app=web");
        let (t, object) =
            event_for(&req, &change(ChangeType::Modified, Some("web"), "db")).unwrap();
        assert_eq!(t, "DELETED");
        assert_eq!(object["metadata"]["labels"]["app"], "web");
        assert_eq!(object["metadata"]["resourceVersion"], "9");
        let (t, _) = event_for(&req, &change(ChangeType::Modified, Some("db"), "web")).unwrap();
        assert_eq!(t, "ADDED");
        assert!(event_for(&req, &change(ChangeType::Modified, Some("db"), "db")).is_none());
        let (t, _) = event_for(&req, &change(ChangeType::Modified, Some("web"), "web")).unwrap();
        assert_eq!(t, "MODIFIED");
    }

    #[test]
    fn other_resources_and_namespaces_are_not_sent() {
        let req = request("");
        let mut c = change(ChangeType::Added, None, "web");
        c.key.namespace = "other".into();
        assert!(event_for(&req, &c).is_none());
        c.key.namespace = "default".into();
        c.key.resource = find("", "v1", "nodes").unwrap();
        assert!(event_for(&req, &c).is_none());
    }

    #[test]
    fn bookmarks_carry_type_meta_and_the_initial_events_end_annotation() {
        let b = bookmark(find("", "v1", "services").unwrap(), 42, true);
        assert_eq!(b["kind"], "Service");
        assert_eq!(b["apiVersion"], "v1");
        assert_eq!(b["metadata"]["resourceVersion"], "42");
        assert_eq!(
            b["metadata"]["annotations"]["k8s.io/initial-events-end"],
            "true"
        );
        let line = line("BOOKMARK", &b);
        assert!(line.ends_with(b"\n"));
        let parsed: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed["type"], "BOOKMARK");
    }
}
