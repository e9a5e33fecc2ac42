//! Patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902), the subset of
//! Kubernetes strategic merge patch that kubectl sends, and the subset of server-side apply that
//! kube's `patch_status` with `Patch::Apply` sends.
//!
//! Strategic merge patch subset: maps merge recursively, `null` deletes a key, lists with a
//! known merge key merge element by element (`ports` by `port` in a Service spec and by
//! `containerPort` in containers, `conditions` by `type`, Node `addresses` by `type`, `taints`
//! by `key`, `containers` by `name`, ...), other lists are replaced. Directives:
//! `$patch: replace|delete|merge`, `$setElementOrder/<field>`, `$retainKeys` and
//! `$deleteFromPrimitiveList/<field>`. Merge keys come from a fixed table keyed by field path,
//! not from an OpenAPI schema.
//!
//! Server-side apply subset: the applied configuration is merged into the live object with the
//! same list rules; field ownership (`managedFields`) is not tracked, so a field dropped from a
//! later apply is not removed.
//!
//! This module owns pure value transformations; it never panics on any patch document.

use serde_json::{Map, Value};

/// Why a patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("invalid json patch: {0}")]
    JsonPatchDocument(#[source] serde_json::Error),
    #[error("json patch failed: {0}")]
    JsonPatch(#[source] json_patch::PatchError),
    #[error("the patch must be a JSON object")]
    NotAnObject,
    #[error("unknown strategic merge patch directive $patch: {0}")]
    UnknownDirective(String),
    #[error("invalid apply configuration: {0}")]
    ApplyDocument(#[source] serde_yaml_ng::Error),
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// RFC 6902 JSON patch from its JSON document.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(PatchError::JsonPatchDocument)?;
    json_patch::patch(target, &ops).map_err(PatchError::JsonPatch)
}

/// The merge key of the list at `path` (field names from the object root, list indices
/// omitted), if it merges element by element.
fn merge_key(path: &[String]) -> Option<&'static str> {
    let last = path.last()?.as_str();
    let in_container = path.iter().any(|p| {
        matches!(
            p.as_str(),
            "containers" | "initContainers" | "ephemeralContainers"
        )
    });
    match last {
        "ports" if in_container => Some("containerPort"),
        "ports" if path.len() == 2 && path[0] == "spec" => Some("port"),
        "conditions" => Some("type"),
        "addresses" if path.len() == 2 && path[0] == "status" => Some("type"),
        "taints" => Some("key"),
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "ownerReferences" => Some("uid"),
        "hostAliases" => Some("ip"),
        _ => None,
    }
}

/// Primitive lists that strategic merge patch merges as sets.
fn merges_as_set(path: &[String]) -> bool {
    path.len() == 2 && path[0] == "metadata" && path[1] == "finalizers"
}

/// Kubernetes strategic merge patch (the subset described in the module doc).
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::NotAnObject);
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let mut path = Vec::new();
    if let Value::Object(t) = target {
        smp_map(t, patch, &mut path)?;
    }
    Ok(())
}

fn directive(v: &Value) -> Option<&str> {
    v.get("$patch").and_then(Value::as_str)
}

/// Removes directives from a value that is inserted where nothing existed.
fn smp_fresh(patch: &Value, path: &mut Vec<String>) -> Result<Value, PatchError> {
    match patch {
        Value::Object(p) => {
            let mut fresh = Map::new();
            smp_map(&mut fresh, p, path)?;
            Ok(Value::Object(fresh))
        }
        Value::Array(p) => {
            let mut fresh = Vec::new();
            smp_list(&mut fresh, p, path)?;
            Ok(Value::Array(fresh))
        }
        other => Ok(other.clone()),
    }
}

fn smp_map(
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<(), PatchError> {
    match patch.get("$patch").and_then(Value::as_str) {
        None | Some("merge") => {}
        Some("replace") => {
            target.clear();
            let rest: Map<String, Value> = patch
                .iter()
                .filter(|(k, _)| k.as_str() != "$patch")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            return smp_map(target, &rest, path);
        }
        Some("delete") => {
            target.clear();
            return Ok(());
        }
        Some(other) => return Err(PatchError::UnknownDirective(other.to_string())),
    }
    let mut orders = Vec::new();
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$setElementOrder/") {
            orders.push((field.to_string(), value));
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(gone)) = (target.get_mut(field), value) {
                list.retain(|v| !gone.contains(v));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() || directive(value) == Some("delete") {
            target.remove(key);
            continue;
        }
        path.push(key.clone());
        let fresh = match (target.get_mut(key), value) {
            (Some(Value::Object(t)), Value::Object(p)) => {
                smp_map(t, p, path)?;
                None
            }
            (Some(Value::Array(t)), Value::Array(p)) => {
                smp_list(t, p, path)?;
                None
            }
            (_, v) => Some(smp_fresh(v, path)?),
        };
        if let Some(fresh) = fresh {
            target.insert(key.clone(), fresh);
        }
        path.pop();
    }
    for (field, order) in orders {
        path.push(field.clone());
        if let (Some(Value::Array(list)), Value::Array(order)) = (target.get_mut(&field), order) {
            apply_order(list, order, merge_key(path));
        }
        path.pop();
    }
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        target.retain(|k, _| keep.iter().any(|r| r.as_str() == Some(k)));
    }
    Ok(())
}

fn smp_list(
    target: &mut Vec<Value>,
    patch: &[Value],
    path: &mut Vec<String>,
) -> Result<(), PatchError> {
    if patch
        .iter()
        .any(|p| p.is_object() && directive(p) == Some("replace"))
    {
        *target = patch
            .iter()
            .filter(|p| directive(p) != Some("replace"))
            .cloned()
            .collect();
        return Ok(());
    }
    let key = merge_key(path).filter(|_| patch.iter().all(Value::is_object));
    let Some(key) = key else {
        if merges_as_set(path) {
            for p in patch {
                if !target.contains(p) {
                    target.push(p.clone());
                }
            }
        } else {
            *target = patch
                .iter()
                .map(|p| smp_fresh(p, path))
                .collect::<Result<_, _>>()?;
        }
        return Ok(());
    };
    for p in patch {
        let id = &p[key];
        let existing = target.iter().position(|t| &t[key] == id);
        match (directive(p), existing) {
            (Some("delete"), Some(i)) => {
                target.remove(i);
            }
            (Some("delete"), None) => {}
            (_, Some(i)) => {
                if let (Value::Object(t), Value::Object(pm)) = (&mut target[i], p) {
                    smp_map(t, pm, path)?;
                }
            }
            (_, None) => target.push(smp_fresh(p, path)?),
        }
    }
    Ok(())
}

/// `$setElementOrder`: elements named in `order` come first, in that order; the others keep
/// their relative order after them.
fn apply_order(list: &mut Vec<Value>, order: &[Value], key: Option<&str>) {
    let id = |v: &Value| -> Value {
        match key {
            Some(k) if v.is_object() => v[k].clone(),
            _ => v.clone(),
        }
    };
    let mut rest = std::mem::take(list);
    for o in order {
        let want = id(o);
        if let Some(i) = rest.iter().position(|v| id(v) == want) {
            list.push(rest.remove(i));
        }
    }
    list.append(&mut rest);
}

/// Parses an `application/apply-patch+yaml` body (YAML or JSON).
pub fn parse_apply(body: &[u8]) -> Result<Value, PatchError> {
    serde_yaml_ng::from_slice(body).map_err(PatchError::ApplyDocument)
}

/// Server-side apply, without field ownership: maps merge, keyed lists merge by key, other
/// values replace.
pub fn apply_merge(target: &mut Value, applied: &Value) {
    let mut path = Vec::new();
    apply_value(target, applied, &mut path);
}

fn apply_value(target: &mut Value, applied: &Value, path: &mut Vec<String>) {
    match (target, applied) {
        (Value::Object(t), Value::Object(a)) => {
            for (k, v) in a {
                path.push(k.clone());
                match t.get_mut(k) {
                    Some(existing) => apply_value(existing, v, path),
                    None => {
                        t.insert(k.clone(), v.clone());
                    }
                }
                path.pop();
            }
        }
        (Value::Array(t), Value::Array(a)) => {
            let key = merge_key(path).filter(|_| a.iter().all(Value::is_object));
            match key {
                Some(key) => {
                    for v in a {
                        match t.iter_mut().find(|e| e[key] == v[key]) {
                            Some(existing) => apply_value(existing, v, path),
                            None => t.push(v.clone()),
                        }
                    }
                }
                None => *t = a.clone(),
            }
        }
        (t, a) => *t = a.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(target: Value, patch: Value) -> Value {
        let mut t = target;
        strategic_merge_patch(&mut t, &patch).unwrap();
        t
    }

    #[test]
    fn kubectl_apply_port_change_removes_the_old_port() {
        // The patch kubectl 1.32 sends when a Service's only port changes from 80 to 8080.
        let live = json!({"spec": {"type": "ClusterIP", "ports": [
            {"port": 80, "protocol": "TCP", "targetPort": 80}]}});
        let patch = json!({"spec": {
            "$setElementOrder/ports": [{"port": 8080}],
            "ports": [{"port": 8080, "targetPort": 8080}, {"$patch": "delete", "port": 80}]}});
        let out = smp(live, patch);
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 8080, "targetPort": 8080}])
        );
        assert_eq!(out["spec"]["type"], "ClusterIP");
    }

    #[test]
    fn keyed_list_elements_merge_instead_of_replacing_the_list() {
        let live = json!({"spec": {"ports": [
            {"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}});
        let out = smp(
            live,
            json!({"spec": {"ports": [{"port": 443, "nodePort": 30443}]}}),
        );
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "name": "http"}, {"port": 443, "name": "https", "nodePort": 30443}])
        );
    }

    #[test]
    fn set_element_order_reorders_merged_elements() {
        let live = json!({"status": {"conditions": [{"type": "A"}, {"type": "B"}]}});
        let out = smp(
            live,
            json!({"status": {"$setElementOrder/conditions": [{"type": "B"}, {"type": "A"}],
                   "conditions": [{"type": "C"}]}}),
        );
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "B"}, {"type": "A"}, {"type": "C"}])
        );
    }

    #[test]
    fn conditions_addresses_and_taints_merge_by_their_keys() {
        let live = json!({
            "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.1"}],
                       "conditions": [{"type": "Ready", "status": "False"}]}});
        let out = smp(
            live,
            json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]},
                   "status": {"addresses": [{"type": "Hostname", "address": "n1"}],
                              "conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        assert_eq!(out["spec"]["taints"].as_array().unwrap().len(), 2);
        assert_eq!(out["status"]["addresses"].as_array().unwrap().len(), 2);
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}])
        );
    }

    #[test]
    fn containers_merge_by_name_and_their_ports_by_container_port() {
        let live = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "x:1", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "y:1"}]}}}});
        let out = smp(
            live,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "a", "image": "x:2", "ports": [{"containerPort": 81}]}]}}}}),
        );
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "x:2");
        assert_eq!(containers[0]["ports"].as_array().unwrap().len(), 2);
        assert_eq!(containers[1]["name"], "b");
    }

    #[test]
    fn lists_without_a_merge_key_are_replaced() {
        // EndpointSlice ports and endpoints are atomic lists.
        let live = json!({"ports": [{"port": 80}], "endpoints": [{"addresses": ["192.0.2.1"]}]});
        let out = smp(
            live,
            json!({"ports": [{"port": 81}], "endpoints": [{"addresses": ["192.0.2.2"]}]}),
        );
        assert_eq!(out["ports"], json!([{"port": 81}]));
        assert_eq!(out["endpoints"], json!([{"addresses": ["192.0.2.2"]}]));
    }

    #[test]
    fn null_deletes_keys_and_patch_directives_replace_or_delete_maps() {
        let live = json!({"metadata": {"labels": {"a": "1", "b": "2"}},
                          "spec": {"selector": {"x": "1", "y": "2"}}});
        let out = smp(
            live,
            json!({"metadata": {"labels": {"a": null}},
                   "spec": {"selector": {"$patch": "replace", "z": "3"}}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(out["spec"]["selector"], json!({"z": "3"}));
        let out = smp(out, json!({"spec": {"selector": {"$patch": "delete"}}}));
        assert!(out["spec"].get("selector").is_none());
    }

    #[test]
    fn retain_keys_and_primitive_list_directives_are_honoured() {
        let live = json!({"metadata": {"finalizers": ["a", "b"]},
                          "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {}}}});
        let out = smp(
            live,
            json!({"metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]},
                   "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn unknown_directives_are_rejected() {
        let mut t = json!({});
        assert!(strategic_merge_patch(&mut t, &json!({"spec": {"$patch": "frobnicate"}})).is_err());
        assert!(strategic_merge_patch(&mut t, &json!([1])).is_err());
    }

    #[test]
    fn merge_patch_replaces_lists_and_deletes_nulls() {
        let mut t = json!({"spec": {"ports": [{"port": 80}, {"port": 443}]}, "x": 1});
        merge_patch(
            &mut t,
            &json!({"spec": {"ports": [{"port": 81}]}, "x": null}),
        );
        assert_eq!(t, json!({"spec": {"ports": [{"port": 81}]}}));
    }

    #[test]
    fn json_patch_applies_operations_and_reports_failures() {
        let mut t = json!({"metadata": {"labels": {"a": "1"}}});
        json_patch(
            &mut t,
            &json!([{"op": "add", "path": "/metadata/labels/b", "value": "2"},
                    {"op": "remove", "path": "/metadata/labels/a"}]),
        )
        .unwrap();
        assert_eq!(t, json!({"metadata": {"labels": {"b": "2"}}}));
        assert!(json_patch(&mut t, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        assert!(json_patch(&mut t, &json!({"op": "add"})).is_err());
    }

    #[test]
    fn apply_merges_status_and_replaces_atomic_lists() {
        let mut live = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]},
                                         "conditions": [{"type": "A", "status": "True"}]}});
        let applied = parse_apply(
            b"status:\n  loadBalancer:\n    ingress:\n    - ip: 192.0.2.9\n  conditions:\n  - type: B\n    status: \"False\"\n",
        )
        .unwrap();
        apply_merge(&mut live, &applied);
        assert_eq!(
            live["status"]["loadBalancer"]["ingress"],
            json!([{"ip": "192.0.2.9"}])
        );
        assert_eq!(live["status"]["conditions"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn patchers_never_panic_on_arbitrary_documents() {
        let docs = [
            json!(null),
            json!([]),
            json!({"$patch": 1}),
            json!({"a": {"$patch": "delete"}, "$setElementOrder/a": 3}),
            json!({"spec": {"ports": [1, {"$patch": "delete"}, null]}}),
            json!({"spec": {"ports": {"$patch": "replace"}, "$setElementOrder/ports": [null]}}),
            json!({"$retainKeys": "x", "$deleteFromPrimitiveList/a": [1]}),
            json!({"status": {"conditions": [[]], "addresses": [{"type": []}]}}),
        ];
        for target in &docs {
            for patch in &docs {
                let mut t = target.clone();
                let _ = strategic_merge_patch(&mut t, patch);
                let mut t = target.clone();
                apply_merge(&mut t, patch);
                let mut t = target.clone();
                let _ = json_patch(&mut t, patch);
                merge_patch(&mut t, patch);
            }
        }
        assert!(parse_apply(b"\xff\xfe: [").is_err());
    }
}
