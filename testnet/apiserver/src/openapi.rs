//! A minimal OpenAPI v3 surface: the `/openapi/v3` index and one document per group-version,
//! just enough for kubectl 1.32. kubectl reads the `patch` operation of a kind's path to decide
//! whether the server validates fields itself (`x-kubernetes-group-version-kind` plus a
//! `fieldValidation` query parameter); when it does, kubectl sends `fieldValidation=Strict`
//! instead of validating on the client with a full schema, and `kubectl apply` computes its
//! strategic merge patches from its compiled-in types.
//!
//! This module owns these documents only; they carry no schemas.

use serde_json::{Map, Value, json};

use crate::resources::{self, Resource};

/// The index key of a group-version: `api/v1` or `apis/{group}/{version}`.
fn index_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`.
pub fn index() -> Value {
    let mut paths = Map::new();
    for (group, version) in resources::groups() {
        let key = index_key(group, version);
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash=0")}),
        );
    }
    json!({ "paths": paths })
}

fn operation(r: &Resource, action: &str) -> Value {
    let mut op = json!({
        "operationId": format!("{action}{}", r.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "responses": {"200": {"description": "OK"}},
    });
    if matches!(action, "patch" | "put" | "post") {
        op["parameters"] = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        ]);
    }
    if action == "patch" {
        op["parameters"]
            .as_array_mut()
            .into_iter()
            .for_each(|p| p.push(json!({"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}})));
    }
    op
}

/// `GET /openapi/v3/{api/v1 | apis/group/version}`.
pub fn group_version_document(key: &str) -> Option<Value> {
    let (group, version) = match key.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return None,
    };
    let mut paths = Map::new();
    for r in resources::in_group_version(group, version) {
        let base = r.group_version_path();
        let collection = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        paths.insert(
            collection.clone(),
            json!({"get": operation(r, "list"), "post": operation(r, "post")}),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({
                "get": operation(r, "get"),
                "put": operation(r, "put"),
                "patch": operation(r, "patch"),
                "delete": operation(r, "delete"),
            }),
        );
        if r.has_status {
            paths.insert(
                format!("{collection}/{{name}}/status"),
                json!({"get": operation(r, "get"), "put": operation(r, "put"), "patch": operation(r, "patch")}),
            );
        }
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_points_at_every_group_version() {
        let idx = index();
        assert_eq!(
            idx["paths"]["api/v1"]["serverRelativeURL"],
            "/openapi/v3/api/v1?hash=0"
        );
        assert!(idx["paths"]["apis/discovery.k8s.io/v1"].is_object());
    }

    #[test]
    fn patch_operations_carry_the_kind_and_field_validation() {
        let doc = group_version_document("api/v1").unwrap();
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/services/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Service");
        let params = patch["parameters"].as_array().unwrap();
        assert!(
            params
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
        );
        assert!(group_version_document("apis/nope/v1").is_none());
        assert!(group_version_document("garbage").is_none());
    }
}
