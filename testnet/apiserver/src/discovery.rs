//! Discovery documents: `/version`, the legacy `/api`, `/apis`, `/apis/{group}`, `/api/v1` and
//! `/apis/{group}/{version}` documents, and the aggregated `APIGroupDiscoveryList` for `/api`
//! and `/apis` when the `Accept` header asks for it (kubectl 1.32 does, and then skips the
//! per-group requests).
//!
//! This module owns these documents only; they are derived from [`crate::resources`].

use serde_json::{Value, json};

use crate::resources::{self, RESOURCES, Resource, STATUS_VERBS, VERBS};

/// The Content-Type of an aggregated discovery response, by version.
pub fn aggregated_content_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

/// The aggregated discovery version the `Accept` header asks for (`v2` or `v2beta1`), if any.
pub fn wants_aggregated(accept: &str) -> Option<&'static str> {
    for range in accept.split(',') {
        let params: Vec<&str> = range.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if has("g=apidiscovery.k8s.io") && has("as=APIGroupDiscoveryList") {
            if has("v=v2") {
                return Some("v2");
            }
            if has("v=v2beta1") {
                return Some("v2beta1");
            }
        }
    }
    None
}

/// `GET /version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-herald-standin",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn kind_ref(r: &Resource) -> Value {
    json!({"group": r.group, "version": r.version, "kind": r.kind})
}

fn aggregated_resource(r: &Resource) -> Value {
    let mut doc = json!({
        "resource": r.plural,
        "responseKind": kind_ref(r),
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": VERBS,
    });
    if !r.short_names.is_empty() {
        doc["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        doc["categories"] = json!(r.categories);
    }
    if r.has_status {
        doc["subresources"] = json!([{
            "subresource": "status",
            "responseKind": kind_ref(r),
            "verbs": STATUS_VERBS,
        }]);
    }
    doc
}

fn aggregated_group(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = resources::in_group_version(group, version)
        .map(aggregated_resource)
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !group.is_empty() {
        metadata["name"] = json!(group);
    }
    json!({
        "metadata": metadata,
        "versions": [{"version": version, "resources": resources, "freshness": "Current"}],
    })
}

/// The aggregated document for `/api` (`core == true`) or `/apis`.
pub fn aggregated(core: bool, discovery_version: &str) -> Value {
    let items: Vec<Value> = resources::groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, v)| aggregated_group(g, v))
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{discovery_version}"),
        "metadata": {},
        "items": items,
    })
}

/// Legacy `GET /api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_doc(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

/// Legacy `GET /apis`.
pub fn group_list() -> Value {
    let groups: Vec<Value> = resources::groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| group_doc(g, v))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// Legacy `GET /apis/{group}`.
pub fn group(group: &str) -> Option<Value> {
    let (_, version) = resources::groups()
        .into_iter()
        .find(|(g, _)| !g.is_empty() && *g == group)?;
    let mut doc = group_doc(group, version);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// Legacy `GET /api/v1` or `GET /apis/{group}/{version}`.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in resources::in_group_version(group, version) {
        let mut doc = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": VERBS,
        });
        if !r.short_names.is_empty() {
            doc["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            doc["categories"] = json!(r.categories);
        }
        resources.push(doc);
        if r.has_status {
            resources.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": STATUS_VERBS,
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version)
        .map(Resource::api_version)?;
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_accept_header_selects_aggregated_v2() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
                       application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,\
                       application/json";
        assert_eq!(wants_aggregated(kubectl), Some("v2"));
        assert_eq!(
            wants_aggregated(
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            ),
            Some("v2beta1")
        );
        assert_eq!(wants_aggregated("application/json, */*"), None);
    }

    #[test]
    fn aggregated_core_document_lists_services_with_status() {
        let doc = aggregated(true, "v2");
        assert_eq!(doc["kind"], "APIGroupDiscoveryList");
        let items = doc["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        let resources = items[0]["versions"][0]["resources"].as_array().unwrap();
        let svc = resources
            .iter()
            .find(|r| r["resource"] == "services")
            .unwrap();
        assert_eq!(svc["scope"], "Namespaced");
        assert_eq!(svc["shortNames"], json!(["svc"]));
        assert_eq!(svc["subresources"][0]["subresource"], "status");
        let apis = aggregated(false, "v2");
        let names: Vec<&str> = apis["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"discovery.k8s.io") && names.contains(&"events.k8s.io"));
    }

    #[test]
    fn legacy_resource_lists_carry_what_kubectl_needs() {
        let doc = resource_list("", "v1").unwrap();
        assert_eq!(doc["groupVersion"], "v1");
        let resources = doc["resources"].as_array().unwrap();
        let svc = resources.iter().find(|r| r["name"] == "services").unwrap();
        for field in ["singularName", "namespaced", "kind", "verbs", "shortNames"] {
            assert!(!svc[field].is_null(), "{field}");
        }
        assert!(resources.iter().any(|r| r["name"] == "services/status"));
        let slices = resource_list("discovery.k8s.io", "v1").unwrap();
        assert_eq!(slices["groupVersion"], "discovery.k8s.io/v1");
        assert!(resource_list("nope", "v1").is_none());
        assert_eq!(group("apps").unwrap()["preferredVersion"]["version"], "v1");
        assert!(group_list()["groups"].as_array().unwrap().len() >= 5);
    }
}
