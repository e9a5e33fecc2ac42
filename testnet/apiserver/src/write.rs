//! The write verbs of the store: create, update (PUT), patch, delete, deletecollection, and the
//! fixture write tests use, with kube-apiserver's rules:
//!
//! - create: 201; a taken name is 409 `AlreadyExists`; `generateName` gets a random suffix; the
//!   namespace of a namespaced kind must exist; server-managed metadata (`uid`,
//!   `creationTimestamp`, `generation`, `resourceVersion`) is set by the server; Services and
//!   DaemonSets lose `.status` (written only through `/status`).
//! - update and patch: a stale `metadata.resourceVersion` is 409 `Conflict`; the main resource
//!   keeps `.status` of kinds with a status subresource and `/status` changes only `.status`;
//!   a write that changes nothing keeps the resourceVersion and sends no event.
//! - delete: returns the object with the deletion's resourceVersion; `preconditions` in the
//!   body are checked; deleting a Namespace deletes its contents.
//!
//! This module owns those rules; storage internals are in [`crate::store`].

use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::patch::{self, PatchError};
use crate::resources::{RESOURCES, Resource, ResourceId, StatusOnCreate};
use crate::store::{ChangeType, ObjectKey, State, Store, now_rfc3339, object_rv, spec_changed};

/// The patch formats, by request Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply)
    Apply,
}

impl PatchKind {
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        match content_type.split(';').next().unwrap_or_default().trim() {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Main,
    Status,
}

fn patch_error(e: PatchError) -> ApiError {
    match e {
        PatchError::JsonPatch(_) => ApiError::new(422, "Invalid", e.to_string()),
        _ => ApiError::bad_request(e.to_string()),
    }
}

/// DNS-1123 subdomain (most kinds) or label (Services, Namespaces); RBAC names are path
/// segments.
fn validate_name(r: &Resource, name: &str) -> Result<(), &'static str> {
    if r.group == "rbac.authorization.k8s.io" {
        return if name.contains(['/', '%']) || name == "." || name == ".." {
            Err("may not contain '/' or '%' or be '.' or '..'")
        } else {
            Ok(())
        };
    }
    let label_only = matches!(r.kind, "Service" | "Namespace");
    let max = if label_only { 63 } else { 253 };
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.len() > max
        || !name.chars().all(ok_char)
        || (label_only && name.contains('.'))
        || !alnum(name.chars().next())
        || !alnum(name.chars().last())
    {
        return Err(
            "a lowercase RFC 1123 name must consist of lower case alphanumeric characters, \
             '-' or '.', and must start and end with an alphanumeric character",
        );
    }
    Ok(())
}

/// Checks `apiVersion`/`kind` of a request body against the URL's resource and fills them in.
fn check_type(r: &Resource, object: &mut Value) -> Result<(), ApiError> {
    if !object.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    let expected = r.api_version();
    match object["apiVersion"].as_str() {
        None | Some("") => {}
        Some(v) if v == expected => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version \
                 ({expected})"
            )));
        }
    }
    match object["kind"].as_str() {
        None | Some("") => {}
        Some(k) if k == r.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                r.kind
            )));
        }
    }
    object["apiVersion"] = json!(expected);
    object["kind"] = json!(r.kind);
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    Ok(())
}

/// Server defaults that clients and herald observe.
fn apply_defaults(st: &mut State, r: &Resource, object: &mut Value, old: Option<&Value>) {
    match r.kind {
        "Service" => default_service(st, object, old),
        "Namespace" => {
            let name = object["metadata"]["name"].clone();
            object["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
            if object["spec"]["finalizers"].is_null() {
                object["spec"]["finalizers"] = json!(["kubernetes"]);
            }
        }
        _ => {}
    }
}

fn default_service(st: &mut State, svc: &mut Value, old: Option<&Value>) {
    let spec = &mut svc["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    let old_spec = old.map(|o| &o["spec"]).unwrap_or(&Value::Null);
    for (field, default) in [
        ("type", "ClusterIP"),
        ("sessionAffinity", "None"),
        ("internalTrafficPolicy", "Cluster"),
        ("ipFamilyPolicy", "SingleStack"),
    ] {
        if spec[field].is_null() {
            spec[field] = json!(default);
        }
    }
    let ty = spec["type"].as_str().unwrap_or_default().to_string();
    let external = ty == "LoadBalancer" || ty == "NodePort";
    if external && spec["externalTrafficPolicy"].is_null() {
        spec["externalTrafficPolicy"] = json!("Cluster");
    }
    if ty == "LoadBalancer" && spec["allocateLoadBalancerNodePorts"].is_null() {
        spec["allocateLoadBalancerNodePorts"] = json!(true);
    }
    if ty != "ExternalName" {
        if spec["clusterIP"].as_str().unwrap_or_default().is_empty() {
            spec["clusterIP"] = match old_spec["clusterIP"].as_str() {
                Some(ip) if !ip.is_empty() => json!(ip),
                _ => {
                    // Allocated from 198.19.0.0/16, inside the benchmarking range the lab may use.
                    let n = st.next_cluster_ip;
                    st.next_cluster_ip = st.next_cluster_ip % 65_534 + 1;
                    json!(format!("198.19.{}.{}", n >> 8, n & 0xff))
                }
            };
        }
        if spec["clusterIPs"].is_null() {
            spec["clusterIPs"] = json!([spec["clusterIP"].clone()]);
        }
        if spec["ipFamilies"].is_null() {
            spec["ipFamilies"] = json!(["IPv4"]);
        }
    }
    if let Some(ports) = spec["ports"].as_array_mut() {
        for port in ports {
            if port["protocol"].is_null() {
                port["protocol"] = json!("TCP");
            }
            if port["targetPort"].is_null() {
                port["targetPort"] = port["port"].clone();
            }
            if external && port["nodePort"].is_null() {
                let kept = old_spec["ports"]
                    .as_array()
                    .and_then(|olds| olds.iter().find(|o| o["port"] == port["port"]))
                    .map(|o| o["nodePort"].clone())
                    .filter(|p| !p.is_null());
                port["nodePort"] = kept.unwrap_or_else(|| {
                    st.next_node_port = if st.next_node_port >= 32767 {
                        30000
                    } else {
                        st.next_node_port + 1
                    };
                    json!(st.next_node_port)
                });
            }
        }
    }
    if svc["status"].is_null() {
        svc["status"] = json!({"loadBalancer": {}});
    }
}

fn random_suffix(st: &mut State) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = st.next_uid().bytes().fold(0u64, |h, b| {
        h.wrapping_mul(1_099_511_628_211).wrapping_add(u64::from(b))
    });
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// Carries server-managed metadata from the stored object into a replacement.
fn keep_server_metadata(old: &Value, new: &mut Value) {
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
    ] {
        match old["metadata"].get(field) {
            Some(v) => new["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
}

impl Store {
    fn check_namespace(
        st: &State,
        r: &Resource,
        url_namespace: Option<&str>,
        object: &mut Value,
    ) -> Result<String, ApiError> {
        if !r.namespaced {
            if let Some(m) = object["metadata"].as_object_mut() {
                m.remove("namespace");
            }
            return Ok(String::new());
        }
        let body_ns = object["metadata"]["namespace"].as_str().unwrap_or_default();
        let ns = match url_namespace {
            Some(url) if !body_ns.is_empty() && body_ns != url => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on \
                     the request",
                ));
            }
            Some(url) => url.to_string(),
            None if !body_ns.is_empty() => body_ns.to_string(),
            None => return Err(ApiError::bad_request("a namespace is required")),
        };
        let ns_key = ObjectKey {
            resource: namespaces_id(),
            namespace: String::new(),
            name: ns.clone(),
        };
        match st.objects.get(&ns_key) {
            None => return Err(ApiError::not_found("namespaces", &ns)),
            Some(n) if !n["metadata"]["deletionTimestamp"].is_null() => {
                return Err(ApiError::new(
                    403,
                    "Forbidden",
                    format!(
                        "{} is forbidden: unable to create new content in namespace {ns} \
                         because it is being terminated",
                        r.plural
                    ),
                ));
            }
            Some(_) => {}
        }
        object["metadata"]["namespace"] = json!(ns);
        Ok(ns)
    }

    /// POST to a collection.
    pub fn create(
        &self,
        resource: ResourceId,
        namespace: Option<&str>,
        object: Value,
    ) -> Result<Value, ApiError> {
        self.create_object(resource, namespace, object, false)
    }

    fn create_object(
        &self,
        resource: ResourceId,
        namespace: Option<&str>,
        mut object: Value,
        keep_status: bool,
    ) -> Result<Value, ApiError> {
        let r = &RESOURCES[resource];
        check_type(r, &mut object)?;
        let (mut st, changes) = self.lock();
        let ns = Self::check_namespace(&st, r, namespace, &mut object)?;
        let name = match object["metadata"]["name"].as_str() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => match object["metadata"]["generateName"].as_str() {
                Some(prefix) if !prefix.is_empty() => {
                    format!("{prefix}{}", random_suffix(&mut st))
                }
                _ => {
                    return Err(ApiError::invalid(
                        r.kind,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ));
                }
            },
        };
        validate_name(r, &name)
            .map_err(|why| ApiError::invalid(r.kind, &name, format!("metadata.name: {why}")))?;
        let key = ObjectKey {
            resource,
            namespace: ns,
            name: name.clone(),
        };
        if st.objects.contains_key(&key) {
            return Err(ApiError::already_exists(r.plural, &name));
        }
        let meta = &mut object["metadata"];
        meta["name"] = json!(name);
        meta["uid"] = json!(st.next_uid());
        meta["creationTimestamp"] = json!(now_rfc3339());
        meta["generation"] = json!(1);
        if let Some(m) = meta.as_object_mut() {
            for server_owned in ["deletionTimestamp", "selfLink", "managedFields"] {
                m.remove(server_owned);
            }
        }
        match r.status_on_create {
            StatusOnCreate::Keep => {}
            StatusOnCreate::Reset if keep_status => {}
            StatusOnCreate::Reset => {
                if let Some(m) = object.as_object_mut() {
                    m.remove("status");
                }
            }
            StatusOnCreate::NamespaceActive => object["status"] = json!({"phase": "Active"}),
        }
        apply_defaults(&mut st, r, &mut object, None);
        Ok((*st.commit(changes, key, ChangeType::Added, object)).clone())
    }

    /// Stores `new` in place of the current object unless nothing changed.
    fn commit_update(
        st: &mut State,
        changes: &tokio::sync::broadcast::Sender<Arc<Change>>,
        r: &Resource,
        key: ObjectKey,
        old: &Value,
        mut new: Value,
    ) -> Value {
        apply_defaults(st, r, &mut new, Some(old));
        if &new == old {
            return old.clone();
        }
        if spec_changed(old, &new) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(0);
            new["metadata"]["generation"] = json!(generation + 1);
        }
        (*st.commit(changes, key, ChangeType::Modified, new)).clone()
    }

    fn existing(st: &State, key: &ObjectKey) -> Result<Value, ApiError> {
        st.objects
            .get(key)
            .map(|v| (**v).clone())
            .ok_or_else(|| ApiError::not_found(RESOURCES[key.resource].plural, &key.name))
    }

    /// PUT to an object or its `/status`.
    pub fn update(
        &self,
        key: &ObjectKey,
        part: Part,
        mut object: Value,
    ) -> Result<Value, ApiError> {
        let r = &RESOURCES[key.resource];
        check_type(r, &mut object)?;
        match object["metadata"]["name"].as_str() {
            Some(n) if n == key.name => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({})",
                    other.unwrap_or_default(),
                    key.name
                )));
            }
        }
        let (mut st, changes) = self.lock();
        let old = Self::existing(&st, key)?;
        let sent_rv = object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default();
        if !sent_rv.is_empty() && Some(sent_rv) != old["metadata"]["resourceVersion"].as_str() {
            return Err(ApiError::conflict(r.plural, &key.name));
        }
        let new = Self::combine(r, &old, object, part);
        Ok(Self::commit_update(
            &mut st,
            changes,
            r,
            key.clone(),
            &old,
            new,
        ))
    }

    /// The object a write produces: `/status` changes only `.status`; the main resource keeps
    /// the stored `.status` of kinds with a status subresource.
    fn combine(r: &Resource, old: &Value, mut written: Value, part: Part) -> Value {
        let new = match part {
            Part::Status => {
                let mut new = old.clone();
                new["status"] = written.get("status").cloned().unwrap_or(Value::Null);
                if new["status"].is_null()
                    && let Some(m) = new.as_object_mut()
                {
                    m.remove("status");
                }
                new
            }
            Part::Main => {
                if r.has_status
                    && let Some(m) = written.as_object_mut()
                {
                    match old.get("status") {
                        Some(s) => m.insert("status".to_string(), s.clone()),
                        None => m.remove("status"),
                    };
                }
                written
            }
        };
        let mut new = new;
        keep_server_metadata(old, &mut new);
        new
    }

    /// PATCH an object or its `/status`. Returns the object and whether it was created
    /// (server-side apply of an absent object creates it).
    pub fn patch(
        &self,
        key: &ObjectKey,
        part: Part,
        kind: PatchKind,
        body: &[u8],
        field_manager: Option<&str>,
    ) -> Result<(Value, bool), ApiError> {
        let r = &RESOURCES[key.resource];
        let document: Value = match kind {
            PatchKind::Apply => {
                if field_manager.is_none_or(str::is_empty) {
                    return Err(ApiError::invalid(
                        "PatchOptions.meta.k8s.io",
                        "",
                        "fieldManager: Required value: is required for apply patch",
                    ));
                }
                patch::parse_apply(body).map_err(patch_error)?
            }
            _ => serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid patch body: {e}")))?,
        };
        let exists = self.lock().0.objects.contains_key(key);
        if !exists && kind == PatchKind::Apply && part == Part::Main {
            let mut object = document;
            if object["metadata"]["name"].is_null() && object.is_object() {
                object["metadata"]["name"] = json!(key.name);
            }
            let ns = (!key.namespace.is_empty()).then_some(key.namespace.as_str());
            return self.create(key.resource, ns, object).map(|o| (o, true));
        }
        let (mut st, changes) = self.lock();
        let old = Self::existing(&st, key)?;
        let mut working = old.clone();
        match kind {
            PatchKind::Json => patch::json_patch(&mut working, &document).map_err(patch_error)?,
            PatchKind::Merge => patch::merge_patch(&mut working, &document),
            PatchKind::Strategic => {
                patch::strategic_merge_patch(&mut working, &document).map_err(patch_error)?
            }
            PatchKind::Apply => patch::apply_merge(&mut working, &document),
        }
        let stale = match kind {
            PatchKind::Json => object_rv(&working) != object_rv(&old),
            _ => document["metadata"]["resourceVersion"]
                .as_str()
                .is_some_and(|rv| Some(rv) != old["metadata"]["resourceVersion"].as_str()),
        };
        if stale {
            return Err(ApiError::conflict(r.plural, &key.name));
        }
        check_type(r, &mut working)?;
        let new = Self::combine(r, &old, working, part);
        Ok((
            Self::commit_update(&mut st, changes, r, key.clone(), &old, new),
            false,
        ))
    }

    /// DELETE an object; `options` is the optional `DeleteOptions` body.
    pub fn delete(&self, key: &ObjectKey, options: Option<&Value>) -> Result<Value, ApiError> {
        let r = &RESOURCES[key.resource];
        let (mut st, changes) = self.lock();
        let old = Self::existing(&st, key)?;
        if let Some(pre) = options.map(|o| &o["preconditions"]) {
            let mismatch = |field: &str| {
                pre[field]
                    .as_str()
                    .is_some_and(|want| Some(want) != old["metadata"][field].as_str())
            };
            if mismatch("resourceVersion") || mismatch("uid") {
                return Err(ApiError::conflict(r.plural, &key.name));
            }
        }
        if key.resource == namespaces_id() {
            // Like kube-apiserver: the Namespace turns Terminating; its contents go when the
            // namespace controller (here [`Store::finalize_namespace`]) runs.
            if !old["metadata"]["deletionTimestamp"].is_null() {
                return Ok(old);
            }
            let mut terminating = old.clone();
            terminating["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            terminating["status"]["phase"] = json!("Terminating");
            return Ok(
                (*st.commit(changes, key.clone(), ChangeType::Modified, terminating)).clone(),
            );
        }
        Ok((*st.commit(changes, key.clone(), ChangeType::Deleted, old)).clone())
    }

    /// The namespace controller's part of a Namespace deletion: deletes everything in a
    /// Terminating namespace, then the Namespace itself. Does nothing to a live namespace.
    pub fn finalize_namespace(&self, name: &str) {
        let (mut st, changes) = self.lock();
        let key = ObjectKey {
            resource: namespaces_id(),
            namespace: String::new(),
            name: name.to_string(),
        };
        let Some(ns) = st.objects.get(&key).map(|v| (**v).clone()) else {
            return;
        };
        if ns["metadata"]["deletionTimestamp"].is_null() {
            return;
        }
        let contents: Vec<(ObjectKey, Value)> = st
            .objects
            .iter()
            .filter(|(k, _)| RESOURCES[k.resource].namespaced && k.namespace == name)
            .map(|(k, v)| (k.clone(), (**v).clone()))
            .collect();
        for (k, v) in contents {
            st.commit(changes, k, ChangeType::Deleted, v);
        }
        st.commit(changes, key, ChangeType::Deleted, ns);
    }

    /// DELETE a collection: every object matching the selectors; returns the deleted list.
    pub fn delete_collection(
        &self,
        resource: ResourceId,
        namespace: Option<&str>,
        selectors: &crate::selectors::Selectors,
    ) -> Result<Value, ApiError> {
        let victims: Vec<Value> = self
            .objects(resource, namespace)
            .into_iter()
            .filter(|o| selectors.matches(o))
            .collect();
        let mut deleted = Vec::new();
        for v in victims {
            let key = ObjectKey {
                resource,
                namespace: v["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                name: v["metadata"]["name"].as_str().unwrap_or_default().into(),
            };
            match self.delete(&key, None) {
                Ok(o) => deleted.push(o),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let r = &RESOURCES[resource];
        Ok(json!({
            "kind": format!("{}List", r.kind),
            "apiVersion": r.api_version(),
            "metadata": {"resourceVersion": self.current_rv().to_string()},
            "items": deleted,
        }))
    }

    /// Fixture write for tests: creates or replaces the object named by its own `apiVersion`,
    /// `kind`, `metadata.namespace` and `metadata.name`, status included, in one change. A
    /// missing namespace is created first. Server rules that still apply: metadata, defaults,
    /// generation, no-op detection.
    pub fn put(&self, mut object: Value) -> Result<Value, ApiError> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let resource = crate::resources::find_kind(api_version, kind).ok_or_else(|| {
            ApiError::bad_request(format!("no resource for {api_version} {kind}"))
        })?;
        let r = &RESOURCES[resource];
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let namespace = if r.namespaced {
            let ns = object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string();
            object["metadata"]["namespace"] = json!(ns);
            ns
        } else {
            String::new()
        };
        if r.namespaced && self.namespace(&namespace).is_none() {
            let created = self.create(
                namespaces_id(),
                None,
                json!({"metadata": {"name": namespace}}),
            );
            match created {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        let key = ObjectKey {
            resource,
            namespace,
            name,
        };
        let ns = (!key.namespace.is_empty()).then(|| key.namespace.clone());
        let (mut st, changes) = self.lock();
        let Some(old) = st.objects.get(&key).map(|v| (**v).clone()) else {
            drop(st);
            return self.create_object(resource, ns.as_deref(), object, true);
        };
        check_type(r, &mut object)?;
        keep_server_metadata(&old, &mut object);
        Ok(Self::commit_update(&mut st, changes, r, key, &old, object))
    }

    /// The Namespace object, if it exists.
    pub fn namespace(&self, name: &str) -> Option<Value> {
        self.get(&ObjectKey {
            resource: namespaces_id(),
            namespace: String::new(),
            name: name.to_string(),
        })
        .ok()
    }
}

use crate::store::Change;

/// The id of the `namespaces` resource.
pub fn namespaces_id() -> ResourceId {
    crate::resources::find("", "v1", "namespaces").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    fn svc_id() -> ResourceId {
        find("", "v1", "services").unwrap()
    }

    fn store() -> Store {
        let s = Store::new(100, 100);
        s.create(
            namespaces_id(),
            None,
            json!({"metadata": {"name": "default"}}),
        )
        .unwrap();
        s
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            resource: svc_id(),
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn web() -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"ports": [{"port": 80}]},
               "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}})
    }

    #[test]
    fn create_sets_server_metadata_defaults_and_drops_service_status() {
        let s = store();
        let created = s.create(svc_id(), Some("default"), web()).unwrap();
        let meta = &created["metadata"];
        assert_eq!(meta["namespace"], "default");
        assert!(meta["uid"].as_str().is_some_and(|u| !u.is_empty()));
        assert!(meta["creationTimestamp"].is_string());
        assert_eq!(meta["generation"], 1);
        assert_eq!(meta["resourceVersion"], s.current_rv().to_string());
        assert_eq!(created["status"], json!({"loadBalancer": {}}));
        assert_eq!(created["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(created["spec"]["ports"][0]["targetPort"], 80);
        assert!(
            created["spec"]["clusterIP"]
                .as_str()
                .unwrap()
                .starts_with("198.19.")
        );
    }

    #[test]
    fn create_rejects_taken_names_missing_namespaces_and_bad_names() {
        let s = store();
        s.create(svc_id(), Some("default"), web()).unwrap();
        assert_eq!(
            s.create(svc_id(), Some("default"), web())
                .unwrap_err()
                .reason,
            "AlreadyExists"
        );
        assert_eq!(
            s.create(svc_id(), Some("nope"), web()).unwrap_err().code,
            404
        );
        let bad = json!({"metadata": {"name": "Web_1"}});
        assert_eq!(
            s.create(svc_id(), Some("default"), bad).unwrap_err().code,
            422
        );
        let nameless = json!({"metadata": {}});
        assert_eq!(
            s.create(svc_id(), Some("default"), nameless)
                .unwrap_err()
                .code,
            422
        );
        let wrong_kind = json!({"kind": "Node", "metadata": {"name": "x"}});
        assert_eq!(
            s.create(svc_id(), Some("default"), wrong_kind)
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn generate_name_gets_a_suffix() {
        let s = store();
        let o = s
            .create(
                svc_id(),
                Some("default"),
                json!({"metadata": {"generateName": "web-"}}),
            )
            .unwrap();
        let name = o["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    }

    #[test]
    fn stale_resource_version_on_update_is_a_conflict() {
        let s = store();
        let created = s.create(svc_id(), Some("default"), web()).unwrap();
        let mut first = created.clone();
        first["metadata"]["labels"] = json!({"a": "1"});
        s.update(&key("web"), Part::Main, first).unwrap();
        let mut stale = created;
        stale["metadata"]["labels"] = json!({"a": "2"});
        assert_eq!(
            s.update(&key("web"), Part::Main, stale).unwrap_err().reason,
            "Conflict"
        );
    }

    #[test]
    fn generation_bumps_on_spec_changes_only() {
        let s = store();
        s.create(svc_id(), Some("default"), web()).unwrap();
        let status = br#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.7"}]}}}"#;
        let (o, _) = s
            .patch(&key("web"), Part::Status, PatchKind::Merge, status, None)
            .unwrap();
        assert_eq!(o["metadata"]["generation"], 1);
        let labels = br#"{"metadata":{"labels":{"x":"y"}}}"#;
        let (o, _) = s
            .patch(&key("web"), Part::Main, PatchKind::Merge, labels, None)
            .unwrap();
        assert_eq!(o["metadata"]["generation"], 1);
        let spec = br#"{"spec":{"externalIPs":["192.0.2.9"]}}"#;
        let (o, _) = s
            .patch(&key("web"), Part::Main, PatchKind::Merge, spec, None)
            .unwrap();
        assert_eq!(o["metadata"]["generation"], 2);
    }

    #[test]
    fn status_writes_change_only_status_and_main_writes_keep_status() {
        let s = store();
        s.create(svc_id(), Some("default"), web()).unwrap();
        let both = br#"{"spec":{"type":"LoadBalancer"},"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.7"}]}}}"#;
        let (o, _) = s
            .patch(&key("web"), Part::Status, PatchKind::Merge, both, None)
            .unwrap();
        assert_eq!(o["spec"]["type"], "ClusterIP");
        assert_eq!(o["status"]["loadBalancer"]["ingress"][0]["ip"], "192.0.2.7");
        let (o, _) = s
            .patch(&key("web"), Part::Main, PatchKind::Merge, both, None)
            .unwrap();
        assert_eq!(o["spec"]["type"], "LoadBalancer");
        assert_eq!(o["status"]["loadBalancer"]["ingress"][0]["ip"], "192.0.2.7");
        let reset = br#"{"status":{"loadBalancer":{}}}"#;
        let (o, _) = s
            .patch(&key("web"), Part::Main, PatchKind::Merge, reset, None)
            .unwrap();
        assert_eq!(o["status"]["loadBalancer"]["ingress"][0]["ip"], "192.0.2.7");
    }

    #[test]
    fn a_no_op_patch_keeps_the_resource_version() {
        let s = store();
        let created = s.create(svc_id(), Some("default"), web()).unwrap();
        let before = s.current_rv();
        let same = br#"{"spec":{"type":"ClusterIP"}}"#;
        let (o, _) = s
            .patch(&key("web"), Part::Main, PatchKind::Merge, same, None)
            .unwrap();
        assert_eq!(
            o["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
        assert_eq!(s.current_rv(), before);
    }

    #[test]
    fn apply_requires_a_field_manager_and_creates_absent_objects() {
        let s = store();
        let body = b"apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n";
        let err = s
            .patch(&key("web"), Part::Main, PatchKind::Apply, body, None)
            .unwrap_err();
        assert_eq!(err.code, 422);
        let (o, created) = s
            .patch(&key("web"), Part::Main, PatchKind::Apply, body, Some("t"))
            .unwrap();
        assert!(created);
        assert_eq!(o["metadata"]["name"], "web");
    }

    #[test]
    fn delete_checks_preconditions_and_namespace_deletion_terminates_then_cascades() {
        let s = store();
        let created = s.create(svc_id(), Some("default"), web()).unwrap();
        let wrong = json!({"preconditions": {"uid": "nope"}});
        assert_eq!(s.delete(&key("web"), Some(&wrong)).unwrap_err().code, 409);
        let ns_key = ObjectKey {
            resource: namespaces_id(),
            namespace: String::new(),
            name: "default".into(),
        };
        let terminating = s.delete(&ns_key, None).unwrap();
        assert_eq!(terminating["status"]["phase"], "Terminating");
        assert!(
            s.get(&key("web")).is_ok(),
            "contents stay until the namespace is finalized"
        );
        let refused = s.create(
            svc_id(),
            Some("default"),
            json!({"metadata": {"name": "new"}}),
        );
        assert_eq!(refused.unwrap_err().code, 403);
        s.finalize_namespace("default");
        assert_eq!(s.get(&key("web")).unwrap_err().code, 404);
        assert!(s.is_empty());
        assert_ne!(
            created["metadata"]["resourceVersion"],
            s.current_rv().to_string()
        );
    }

    #[test]
    fn fixture_put_keeps_status_and_creates_the_namespace() {
        let s = Store::new(100, 100);
        let mut svc = web();
        svc["metadata"]["namespace"] = json!("team-a");
        let o = s.put(svc.clone()).unwrap();
        assert_eq!(o["status"]["loadBalancer"]["ingress"][0]["ip"], "192.0.2.1");
        assert!(s.namespace("team-a").is_some());
        let rv = s.current_rv();
        s.put(svc).unwrap();
        assert_eq!(s.current_rv(), rv, "an identical put is a no-op");
    }
}
