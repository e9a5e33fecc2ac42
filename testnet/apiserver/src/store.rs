//! The object store: every object as a JSON value in one ordered map, one global
//! resourceVersion counter, a bounded change history with a compaction point, and a broadcast
//! channel that fans changes out to watches.
//!
//! Semantics follow kube-apiserver over etcd: every write takes the next resourceVersion;
//! `metadata.generation` bumps only when something outside `metadata` and `status` changes;
//! a write that changes nothing keeps the resourceVersion and sends no event; lists can be served
//! at any resourceVersion still in the history (by undoing newer changes), and anything older
//! than the compaction point is `410 Expired`.
//!
//! This module owns object state and its rules; HTTP, selectors in URLs and faults live
//! elsewhere. Write rules per verb are in [`crate::write`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::resources::{RESOURCES, ResourceId};
use crate::selectors::Selectors;

/// Where an object lives: resource, namespace (empty for cluster-scoped) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub resource: ResourceId,
    pub namespace: String,
    pub name: String,
}

/// The type of a stored change, as watch events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One committed write.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub change_type: ChangeType,
    pub key: ObjectKey,
    /// The object after the change; for a deletion, its last state with the deletion's RV.
    pub object: Arc<Value>,
    /// The object before the change, if it existed.
    pub previous: Option<Arc<Value>>,
}

/// Options for list requests.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub selectors: Selectors,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchFrom {
    /// Synthetic ADDED events for the current state first (no resourceVersion, `0`, or
    /// `sendInitialEvents=true`).
    CurrentState,
    /// Every change after this resourceVersion.
    After(u64),
}

/// What a new watch needs: what to send first and where live changes come from.
pub struct WatchStart {
    /// Current objects of the watched resource (for [`WatchFrom::CurrentState`]).
    pub initial: Vec<Arc<Value>>,
    /// Changes from the history after the requested resourceVersion, all resources.
    pub backlog: Vec<Arc<Change>>,
    /// The resourceVersion the watch is consistent with before any live change.
    pub start_rv: u64,
    pub receiver: broadcast::Receiver<Arc<Change>>,
}

pub(crate) struct State {
    pub(crate) rv: u64,
    pub(crate) objects: BTreeMap<ObjectKey, Arc<Value>>,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    /// Every change with an RV above this is in `history`.
    compacted: u64,
    next_uid: u64,
    pub(crate) next_cluster_ip: u32,
    pub(crate) next_node_port: u32,
}

/// The store. Cheap to share behind an `Arc`.
pub struct Store {
    state: Mutex<State>,
    changes: broadcast::Sender<Arc<Change>>,
}

/// Now as RFC 3339 in UTC, second precision, as Kubernetes timestamps are written.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// The object's `metadata.resourceVersion` as a number, if it has one.
pub fn object_rv(object: &Value) -> Option<u64> {
    object["metadata"]["resourceVersion"].as_str()?.parse().ok()
}

impl State {
    pub(crate) fn next_uid(&mut self) -> String {
        self.next_uid += 1;
        format!(
            "5ad1e7a0-0000-4000-8000-{:012x}",
            self.next_uid & 0xffff_ffff_ffff
        )
    }

    /// Commits a write: takes the next RV, stores or removes the object, records and
    /// broadcasts the change.
    pub(crate) fn commit(
        &mut self,
        changes: &broadcast::Sender<Arc<Change>>,
        key: ObjectKey,
        change_type: ChangeType,
        mut object: Value,
    ) -> Arc<Value> {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let object = Arc::new(object);
        let previous = if change_type == ChangeType::Deleted {
            self.objects.remove(&key)
        } else {
            self.objects.insert(key.clone(), object.clone())
        };
        let change = Arc::new(Change {
            rv: self.rv,
            change_type,
            key,
            object: object.clone(),
            previous,
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        // No receivers is fine: nobody watches.
        let _ = changes.send(change);
        object
    }

    fn range(
        &self,
        resource: ResourceId,
        namespace: Option<&str>,
    ) -> impl Iterator<Item = (&ObjectKey, &Arc<Value>)> {
        let start = ObjectKey {
            resource,
            namespace: namespace.unwrap_or_default().to_string(),
            name: String::new(),
        };
        self.objects.range(start..).take_while(move |(k, _)| {
            k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns)
        })
    }

    /// The objects of one resource (and namespace) as they were at `rv`.
    fn snapshot(
        &self,
        resource: ResourceId,
        namespace: Option<&str>,
        rv: u64,
    ) -> Result<BTreeMap<ObjectKey, Arc<Value>>, ApiError> {
        if rv < self.compacted {
            return Err(ApiError::expired(format!(
                "too old resource version: {rv} ({})",
                self.compacted
            )));
        }
        let mut snap: BTreeMap<ObjectKey, Arc<Value>> = self
            .range(resource, namespace)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let in_scope =
            |k: &ObjectKey| k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns);
        for change in self.history.iter().rev().take_while(|c| c.rv > rv) {
            if !in_scope(&change.key) {
                continue;
            }
            match &change.previous {
                Some(prev) => snap.insert(change.key.clone(), prev.clone()),
                None => snap.remove(&change.key),
            };
        }
        Ok(snap)
    }
}

impl Store {
    pub fn new(history_limit: usize, watch_buffer: usize) -> Self {
        let (changes, _) = broadcast::channel(watch_buffer.max(16));
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        Self {
            state: Mutex::new(State {
                rv: 0,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                history_limit: history_limit.max(1),
                compacted: 0,
                next_uid: u64::from(seed) << 20,
                next_cluster_ip: 1,
                next_node_port: 30000,
            }),
            changes,
        }
    }

    pub(crate) fn lock(&self) -> (MutexGuard<'_, State>, &broadcast::Sender<Arc<Change>>) {
        let guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        (guard, &self.changes)
    }

    /// The latest resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().0.rv
    }

    /// Drops the whole history: watches and continue tokens from any earlier RV get 410.
    pub fn compact(&self) {
        let (mut st, _) = self.lock();
        st.history.clear();
        st.compacted = st.rv;
    }

    /// Number of stored objects, all resources.
    pub fn len(&self) -> usize {
        self.lock().0.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, key: &ObjectKey) -> Result<Value, ApiError> {
        let (st, _) = self.lock();
        st.objects
            .get(key)
            .map(|v| (**v).clone())
            .ok_or_else(|| ApiError::not_found(RESOURCES[key.resource].plural, &key.name))
    }

    /// A list document (`<Kind>List`) for one resource, paginated.
    pub fn list(
        &self,
        resource: ResourceId,
        namespace: Option<&str>,
        query: &ListQuery,
    ) -> Result<Value, ApiError> {
        let (st, _) = self.lock();
        let (rv, after) = match &query.continue_token {
            Some(token) => {
                let decoded = unhex(token).ok_or_else(|| {
                    ApiError::bad_request("continue key is not valid: incorrect encoding")
                })?;
                let mut parts = decoded.splitn(3, '\n');
                let (Some(rv), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(ApiError::bad_request("continue key is not valid"));
                };
                let rv: u64 = rv
                    .parse()
                    .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
                if rv < st.compacted {
                    return Err(ApiError::expired(
                        "The provided continue parameter is too old to display a consistent \
                         list result. You can start a new list without the continue parameter.",
                    ));
                }
                (rv, Some((ns.to_string(), name.to_string())))
            }
            None => (self.list_rv(&st, query)?, None),
        };
        let snap = st.snapshot(resource, namespace, rv)?;
        drop(st);
        let mut items = Vec::new();
        let mut continue_at = None;
        let mut remaining = 0usize;
        let limit = query.limit.filter(|l| *l > 0);
        for (key, object) in &snap {
            if let Some((ns, name)) = &after
                && (key.namespace.as_str(), key.name.as_str()) <= (ns.as_str(), name.as_str())
            {
                continue;
            }
            if !query.selectors.matches(object) {
                continue;
            }
            if continue_at.is_some() {
                remaining += 1;
                continue;
            }
            let mut item = (**object).clone();
            if let Value::Object(m) = &mut item {
                m.remove("apiVersion");
                m.remove("kind");
            }
            items.push(item);
            if limit.is_some_and(|l| items.len() >= l) {
                continue_at = Some(key.clone());
            }
        }
        let r = &RESOURCES[resource];
        let mut metadata = json!({ "resourceVersion": rv.to_string() });
        if let Some(key) = continue_at.filter(|_| remaining > 0) {
            metadata["continue"] = json!(hex(&format!("{rv}\n{}\n{}", key.namespace, key.name)));
            metadata["remainingItemCount"] = json!(remaining);
        }
        Ok(json!({
            "kind": format!("{}List", r.kind),
            "apiVersion": r.api_version(),
            "metadata": metadata,
            "items": items,
        }))
    }

    /// The resourceVersion a list without a continue token is served at.
    fn list_rv(&self, st: &State, query: &ListQuery) -> Result<u64, ApiError> {
        let requested = match query.resource_version.as_deref() {
            None | Some("") | Some("0") => return Ok(st.rv),
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version {v:?}")))?,
        };
        match query.resource_version_match.as_deref() {
            Some("Exact") => Ok(requested),
            _ if requested > st.rv => Err(ApiError::new(
                504,
                "Timeout",
                format!(
                    "Too large resource version: {requested}, current: {}",
                    st.rv
                ),
            )),
            _ => Ok(st.rv),
        }
    }

    /// Registers a watch atomically with what it must send first.
    pub fn watch(
        &self,
        resource: ResourceId,
        namespace: Option<&str>,
        from: WatchFrom,
    ) -> Result<WatchStart, ApiError> {
        let (st, changes) = self.lock();
        let receiver = changes.subscribe();
        match from {
            WatchFrom::CurrentState => Ok(WatchStart {
                initial: st
                    .range(resource, namespace)
                    .map(|(_, v)| v.clone())
                    .collect(),
                backlog: Vec::new(),
                start_rv: st.rv,
                receiver,
            }),
            WatchFrom::After(rv) => {
                if rv < st.compacted {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {rv} ({})",
                        st.compacted
                    )));
                }
                Ok(WatchStart {
                    initial: Vec::new(),
                    backlog: st.history.iter().filter(|c| c.rv > rv).cloned().collect(),
                    start_rv: rv,
                    receiver,
                })
            }
        }
    }

    /// All objects of a resource in a namespace (or all namespaces), current state.
    pub fn objects(&self, resource: ResourceId, namespace: Option<&str>) -> Vec<Value> {
        let (st, _) = self.lock();
        st.range(resource, namespace)
            .map(|(_, v)| (**v).clone())
            .collect()
    }
}

/// `a` and `b` differ outside `metadata` and `status` (a spec change: generation bumps).
pub fn spec_changed(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    strip(a) != strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let ts = now_rfc3339();
        assert_eq!(ts.len(), 20, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
        assert!(ts.as_str() > "2024-01-01T00:00:00Z", "{ts}");
    }

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let token = hex("12\ndefault\nweb");
        assert_eq!(unhex(&token).as_deref(), Some("12\ndefault\nweb"));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("é1"), None);
    }

    #[test]
    fn spec_changes_are_told_apart_from_metadata_and_status_changes() {
        let a = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": 1}, "status": {}});
        let b = json!({"metadata": {"labels": {"a": "2"}}, "spec": {"x": 1}, "status": {"y": 1}});
        let c = json!({"metadata": {}, "spec": {"x": 2}});
        assert!(!spec_changed(&a, &b));
        assert!(spec_changed(&a, &c));
    }
}
