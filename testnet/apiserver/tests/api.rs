//! REST semantics over HTTP: CRUD status codes, metadata, generation, status subresource,
//! patches, lists with pagination, selectors, discovery and OpenAPI.

mod common;

use common::{get, post, request, send_json, service};
use herald_apiserver::{Options, StandIn};
use serde_json::{Value, json};

const SVCS: &str = "/api/v1/namespaces/default/services";

fn standin() -> StandIn {
    StandIn::start(Options::default()).expect("start")
}

#[test]
fn create_returns_201_with_server_metadata_and_a_taken_name_is_409_already_exists() {
    let s = standin();
    let r = post(s.addr(), SVCS, &service("web"));
    assert_eq!(r.status, 201);
    let o = r.json();
    let meta = &o["metadata"];
    for field in ["resourceVersion", "uid", "creationTimestamp"] {
        assert!(
            meta[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}"
        );
    }
    assert_eq!(meta["generation"], 1);
    let r = post(s.addr(), SVCS, &service("web"));
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["reason"], "AlreadyExists");
    assert_eq!(r.json()["kind"], "Status");
}

#[test]
fn get_of_a_missing_object_is_a_404_not_found_status() {
    let s = standin();
    let r = get(s.addr(), &format!("{SVCS}/nope"));
    assert_eq!(r.status, 404);
    let st = r.json();
    assert_eq!(
        (st["kind"].as_str(), st["reason"].as_str()),
        (Some("Status"), Some("NotFound"))
    );
    assert_eq!(st["code"], 404);
}

#[test]
fn put_with_a_stale_resource_version_is_409_conflict() {
    let s = standin();
    let created = post(s.addr(), SVCS, &service("web")).json();
    let mut fresh = created.clone();
    fresh["metadata"]["labels"]["v"] = json!("1");
    let r = send_json(
        s.addr(),
        "PUT",
        &format!("{SVCS}/web"),
        "application/json",
        &fresh,
    );
    assert_eq!(r.status, 200);
    let mut stale = created;
    stale["metadata"]["labels"]["v"] = json!("2");
    let r = send_json(
        s.addr(),
        "PUT",
        &format!("{SVCS}/web"),
        "application/json",
        &stale,
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["reason"], "Conflict");
}

#[test]
fn delete_returns_the_object_and_accepts_a_propagation_policy_body() {
    let s = standin();
    post(s.addr(), SVCS, &service("web"));
    let body =
        json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"});
    let r = send_json(
        s.addr(),
        "DELETE",
        &format!("{SVCS}/web"),
        "application/json",
        &body,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["metadata"]["name"], "web");
    assert_eq!(get(s.addr(), &format!("{SVCS}/web")).status, 404);
    let r = request(s.addr(), "DELETE", &format!("{SVCS}/web"), &[], b"").unwrap();
    assert_eq!(r.status, 404);
}

#[test]
fn namespaced_kinds_need_an_existing_namespace_and_cluster_kinds_have_none() {
    let s = standin();
    let mut svc = service("web");
    svc["metadata"].as_object_mut().unwrap().remove("namespace");
    let r = post(s.addr(), "/api/v1/namespaces/ghost/services", &svc);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["details"]["kind"], "namespaces");
    let mut svc = service("web");
    svc["metadata"]["namespace"] = json!("kube-system");
    let r = post(s.addr(), SVCS, &svc);
    assert_eq!(r.status, 400, "body namespace must match the URL");
    let r = post(
        s.addr(),
        "/api/v1/nodes",
        &json!({"metadata": {"name": "n1", "namespace": "x"}}),
    );
    assert_eq!(r.status, 201);
    assert!(r.json()["metadata"].get("namespace").is_none());
    assert_eq!(get(s.addr(), "/api/v1/namespaces/default").status, 200);
    assert_eq!(get(s.addr(), "/api/v1/namespaces/kube-system").status, 200);
}

#[test]
fn generation_bumps_on_spec_changes_but_not_on_status_or_metadata_changes() {
    let s = standin();
    post(s.addr(), SVCS, &service("web"));
    let merge = "application/merge-patch+json";
    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}});
    let o = send_json(
        s.addr(),
        "PATCH",
        &format!("{SVCS}/web/status"),
        merge,
        &status,
    )
    .json();
    assert_eq!(o["metadata"]["generation"], 1);
    let labels = json!({"metadata": {"labels": {"x": "y"}}});
    let o = send_json(s.addr(), "PATCH", &format!("{SVCS}/web"), merge, &labels).json();
    assert_eq!(o["metadata"]["generation"], 1);
    let spec = json!({"spec": {"externalTrafficPolicy": "Local"}});
    let o = send_json(s.addr(), "PATCH", &format!("{SVCS}/web"), merge, &spec).json();
    assert_eq!(o["metadata"]["generation"], 2);
}

#[test]
fn status_subresource_changes_only_status_and_main_resource_keeps_status() {
    let s = standin();
    let mut svc = service("web");
    svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.66"}]}});
    let created = post(s.addr(), SVCS, &svc).json();
    assert_eq!(
        created["status"],
        json!({"loadBalancer": {}}),
        "create drops Service status"
    );
    let merge = "application/merge-patch+json";
    let both = json!({"spec": {"type": "NodePort"},
                      "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}});
    let o = send_json(
        s.addr(),
        "PATCH",
        &format!("{SVCS}/web/status"),
        merge,
        &both,
    )
    .json();
    assert_eq!(o["spec"]["type"], "LoadBalancer");
    assert_eq!(o["status"]["loadBalancer"]["ingress"][0]["ip"], "192.0.2.1");
    let mut put = o.clone();
    put["status"] = json!({});
    let o = send_json(
        s.addr(),
        "PUT",
        &format!("{SVCS}/web"),
        "application/json",
        &put,
    )
    .json();
    assert_eq!(o["status"]["loadBalancer"]["ingress"][0]["ip"], "192.0.2.1");
    let got = get(s.addr(), &format!("{SVCS}/web/status")).json();
    assert_eq!(
        got["status"]["loadBalancer"]["ingress"][0]["ip"],
        "192.0.2.1"
    );
}

#[test]
fn a_no_op_patch_keeps_the_resource_version() {
    let s = standin();
    let created = post(s.addr(), SVCS, &service("web")).json();
    let before = s.resource_version();
    let same = json!({"metadata": {"labels": {"app": "web"}}});
    let o = send_json(
        s.addr(),
        "PATCH",
        &format!("{SVCS}/web"),
        "application/merge-patch+json",
        &same,
    )
    .json();
    assert_eq!(
        o["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    assert_eq!(s.resource_version(), before);
}

#[test]
fn json_patch_strategic_merge_patch_and_unknown_patch_types() {
    let s = standin();
    let mut svc = service("web");
    svc["spec"]["ports"] = json!([{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]);
    post(s.addr(), SVCS, &svc);
    let path = format!("{SVCS}/web");
    let jp = json!([{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}]);
    let o = send_json(s.addr(), "PATCH", &path, "application/json-patch+json", &jp).json();
    assert_eq!(o["metadata"]["annotations"]["a"], "b");
    let bad = json!([{"op": "test", "path": "/metadata/name", "value": "other"}]);
    assert_eq!(
        send_json(
            s.addr(),
            "PATCH",
            &path,
            "application/json-patch+json",
            &bad
        )
        .status,
        422
    );
    let smp = json!({"spec": {"$setElementOrder/ports": [{"port": 443}],
                              "ports": [{"$patch": "delete", "port": 80}]}});
    let o = send_json(
        s.addr(),
        "PATCH",
        &path,
        "application/strategic-merge-patch+json",
        &smp,
    )
    .json();
    let ports: Vec<&Value> = o["spec"]["ports"].as_array().unwrap().iter().collect();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["port"], 443);
    assert_eq!(
        ports[0]["name"], "https",
        "the kept port is merged, not replaced"
    );
    let r = send_json(s.addr(), "PATCH", &path, "text/plain", &json!({}));
    assert_eq!(r.status, 415);
}

#[test]
fn apply_patch_of_status_with_force_updates_status_and_bumps_the_rv() {
    let s = standin();
    let created = post(s.addr(), SVCS, &service("web")).json();
    let body = b"apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nstatus:\n  loadBalancer:\n    ingress:\n    - ip: 192.0.2.5\n";
    let path = format!("{SVCS}/web/status?fieldManager=herald&force=true");
    let r = request(
        s.addr(),
        "PATCH",
        &path,
        &[("Content-Type", "application/apply-patch+yaml")],
        body,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let o = r.json();
    assert_eq!(o["status"]["loadBalancer"]["ingress"][0]["ip"], "192.0.2.5");
    assert_ne!(
        o["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    let again = request(
        s.addr(),
        "PATCH",
        &path,
        &[("Content-Type", "application/apply-patch+yaml")],
        body,
    )
    .unwrap();
    assert_eq!(
        again.json()["metadata"]["resourceVersion"],
        o["metadata"]["resourceVersion"],
        "no-op apply keeps the RV"
    );
    let no_manager = request(
        s.addr(),
        "PATCH",
        &format!("{SVCS}/web/status"),
        &[("Content-Type", "application/apply-patch+yaml")],
        body,
    )
    .unwrap();
    assert_eq!(no_manager.status, 422);
}

#[test]
fn lists_paginate_with_limit_and_continue_and_carry_a_resource_version() {
    let s = standin();
    for i in 0..5 {
        post(s.addr(), SVCS, &service(&format!("svc-{i}")));
    }
    let first = get(s.addr(), &format!("{SVCS}?limit=2")).json();
    assert_eq!(first["kind"], "ServiceList");
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!rv.is_empty());
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert_eq!(first["metadata"]["remainingItemCount"], 3);
    // A write between pages does not show up: pages are served at the first page's RV.
    post(s.addr(), SVCS, &service("svc-9"));
    let mut names = Vec::new();
    let mut page = first;
    loop {
        for item in page["items"].as_array().unwrap() {
            assert!(item["metadata"]["resourceVersion"].is_string());
            names.push(item["metadata"]["name"].as_str().unwrap().to_string());
        }
        let Some(token) = page["metadata"]["continue"].as_str().map(str::to_string) else {
            break;
        };
        page = get(s.addr(), &format!("{SVCS}?limit=2&continue={token}")).json();
        assert_eq!(page["metadata"]["resourceVersion"], rv.as_str());
    }
    assert_eq!(names, ["svc-0", "svc-1", "svc-2", "svc-3", "svc-4"]);
    assert_eq!(
        get(s.addr(), SVCS).json()["items"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
}

#[test]
fn an_expired_continue_token_is_410() {
    let s = standin();
    for i in 0..3 {
        post(s.addr(), SVCS, &service(&format!("svc-{i}")));
    }
    let first = get(s.addr(), &format!("{SVCS}?limit=1")).json();
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    post(s.addr(), SVCS, &service("later"));
    s.compact();
    let r = get(s.addr(), &format!("{SVCS}?limit=1&continue={token}"));
    assert_eq!(r.status, 410);
    assert_eq!(r.json()["reason"], "Expired");
    assert_eq!(
        get(s.addr(), &format!("{SVCS}?limit=1&continue=zz")).status,
        400
    );
}

#[test]
fn label_and_field_selectors_filter_lists_and_unsupported_fields_are_400() {
    let s = standin();
    for (name, env) in [("a", "prod"), ("b", "dev"), ("c", "test")] {
        let mut svc = service(name);
        svc["metadata"]["labels"]["env"] = json!(env);
        post(s.addr(), SVCS, &svc);
    }
    let names = |q: &str| -> Vec<String> {
        let r = get(s.addr(), &format!("/api/v1/services?{q}"));
        assert_eq!(r.status, 200, "{q}");
        r.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("&labelSelector=env%3Dprod"), ["a"]);
    assert_eq!(names("labelSelector=env%3D%3Dprod"), ["a"]);
    assert_eq!(names("labelSelector=env%21%3Dprod"), ["b", "c"]);
    assert_eq!(names("labelSelector=env+in+%28dev%2Ctest%29"), ["b", "c"]);
    assert_eq!(names("labelSelector=env+notin+%28dev%29"), ["a", "c"]);
    assert_eq!(names("labelSelector=env"), ["a", "b", "c"]);
    assert_eq!(names("labelSelector=%21env"), Vec::<String>::new());
    assert_eq!(names("fieldSelector=metadata.name%3Db"), ["b"]);
    assert_eq!(
        names("fieldSelector=metadata.namespace%3Ddefault,metadata.name%21%3Db"),
        ["a", "c"]
    );
    let r = get(
        s.addr(),
        "/apis/discovery.k8s.io/v1/endpointslices?fieldSelector=spec.nodeName%3Dn1",
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("field label not supported")
    );
    post(
        s.addr(),
        "/api/v1/nodes",
        &json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}}),
    );
    post(
        s.addr(),
        "/api/v1/nodes",
        &json!({"metadata": {"name": "n2"}}),
    );
    let r = get(
        s.addr(),
        "/api/v1/nodes?fieldSelector=spec.unschedulable%3Dfalse",
    )
    .json();
    assert_eq!(r["items"][0]["metadata"]["name"], "n2");
    assert_eq!(r["items"].as_array().unwrap().len(), 1);
}

#[test]
fn events_leases_endpoint_slices_and_rbac_objects_are_served() {
    let s = standin();
    let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.1", "namespace": "default"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "reason": "Refused", "action": "Announce",
        "reportingController": "herald", "reportingInstance": "n1",
        "regarding": {"kind": "Service", "name": "web", "namespace": "default"}});
    assert_eq!(
        post(
            s.addr(),
            "/apis/events.k8s.io/v1/namespaces/default/events",
            &event
        )
        .status,
        201
    );
    let series = json!({"series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"}});
    let o = send_json(
        s.addr(),
        "PATCH",
        "/apis/events.k8s.io/v1/namespaces/default/events/web.1",
        "application/merge-patch+json",
        &series,
    )
    .json();
    assert_eq!(o["series"]["count"], 2);
    let core_event = json!({"metadata": {"name": "web.2"}, "involvedObject": {"kind": "Service", "name": "web"}, "reason": "X"});
    assert_eq!(
        post(s.addr(), "/api/v1/namespaces/default/events", &core_event).status,
        201
    );
    let r = get(
        s.addr(),
        "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dweb",
    )
    .json();
    assert_eq!(r["items"].as_array().unwrap().len(), 1);
    let lease = json!({"metadata": {"name": "herald"}, "spec": {"holderIdentity": "n1"}});
    assert_eq!(
        post(
            s.addr(),
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases",
            &lease
        )
        .status,
        201
    );
    let slice = json!({"metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["192.0.2.7"], "nodeName": "n1", "conditions": {"ready": true}}],
        "ports": [{"port": 80}]});
    assert_eq!(
        post(
            s.addr(),
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
            &slice
        )
        .status,
        201
    );
    let role = json!({"metadata": {"name": "herald:node"}, "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]}]});
    assert_eq!(
        post(
            s.addr(),
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            &role
        )
        .status,
        201
    );
    let ds = json!({"metadata": {"name": "herald"}, "spec": {"selector": {"matchLabels": {"app": "herald"}}}});
    assert_eq!(
        post(
            s.addr(),
            "/apis/apps/v1/namespaces/kube-system/daemonsets",
            &ds
        )
        .status,
        201
    );
    for cm_or_sa in [
        "/api/v1/namespaces/default/configmaps",
        "/api/v1/namespaces/default/serviceaccounts",
    ] {
        assert_eq!(
            post(s.addr(), cm_or_sa, &json!({"metadata": {"name": "x"}})).status,
            201
        );
    }
}

#[test]
fn aggregated_discovery_is_served_with_its_content_type_when_asked_for() {
    let s = standin();
    let accept =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    for path in ["/api", "/apis"] {
        let r = request(s.addr(), "GET", path, &[("Accept", accept)], b"").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
        );
        assert_eq!(r.json()["kind"], "APIGroupDiscoveryList");
    }
    let legacy = get(s.addr(), "/api").json();
    assert_eq!(legacy["kind"], "APIVersions");
    assert_eq!(get(s.addr(), "/apis").json()["kind"], "APIGroupList");
    let v1 = get(s.addr(), "/api/v1").json();
    assert_eq!(v1["kind"], "APIResourceList");
    assert!(
        v1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "services/status")
    );
    assert_eq!(
        get(s.addr(), "/apis/discovery.k8s.io/v1").json()["groupVersion"],
        "discovery.k8s.io/v1"
    );
    assert_eq!(
        get(s.addr(), "/apis/coordination.k8s.io").json()["kind"],
        "APIGroup"
    );
    assert_eq!(get(s.addr(), "/version").json()["major"], "1");
}

#[test]
fn openapi_v3_index_and_group_documents_are_served() {
    let s = standin();
    let idx = get(s.addr(), "/openapi/v3").json();
    let url = idx["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = get(s.addr(), &url).json();
    let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/services/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Service");
    assert_eq!(get(s.addr(), "/openapi/v3/apis/nope/v1").status, 404);
}

#[test]
fn protobuf_bodies_are_refused_with_415() {
    let s = standin();
    let r = request(
        s.addr(),
        "POST",
        SVCS,
        &[("Content-Type", "application/vnd.kubernetes.protobuf")],
        b"k8s\0",
    )
    .unwrap();
    assert_eq!(r.status, 415);
}

#[test]
fn fixture_helpers_write_status_and_read_back() {
    let s = standin();
    let mut svc = service("web");
    svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.3"}]}});
    s.apply_json(svc).unwrap();
    let got = s.get("v1", "Service", Some("default"), "web").unwrap();
    assert_eq!(
        got["status"]["loadBalancer"]["ingress"][0]["ip"],
        "192.0.2.3"
    );
    let over_http = get(s.addr(), &format!("{SVCS}/web")).json();
    assert_eq!(over_http, got);
    assert_eq!(s.list("v1", "Service", None).len(), 1);
    s.merge_patch(
        "v1",
        "Service",
        Some("default"),
        "web",
        herald_apiserver::Part::Status,
        &json!({"status": {"loadBalancer": {"ingress": null}}}),
    )
    .unwrap();
    assert!(
        s.get("v1", "Service", Some("default"), "web").unwrap()["status"]["loadBalancer"]
            .get("ingress")
            .is_none()
    );
    s.delete("v1", "Service", Some("default"), "web").unwrap();
    assert!(s.get("v1", "Service", Some("default"), "web").is_none());
}
