//! deploy/rbac/clusterrole.yaml grants every cluster-wide Kubernetes API
//! call herald makes, and nothing beyond a short, deliberate list;
//! deploy/rbac/role.yaml (a Role in herald's namespace) grants the Lease
//! calls and nothing else; and the code builds `Api` handles only for the
//! types its call table declares.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use herald::kube::rbac::{API_CALLS, API_TYPES, NAMESPACED_CALLS};

type Grant = (String, String, String);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn granted() -> BTreeSet<Grant> {
    rules("deploy/rbac/clusterrole.yaml", "ClusterRole")
}

fn read_yaml(file: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

/// The (group, resource, verb) triples `file`'s rules grant (resource names
/// are checked separately).
fn rules(file: &str, kind: &str) -> BTreeSet<Grant> {
    let role = read_yaml(file);
    assert_eq!(role["kind"], kind);
    assert_eq!(role["apiVersion"], "rbac.authorization.k8s.io/v1");
    let mut grants = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        let list = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .unwrap_or_else(|| panic!("rule without {key}: {rule}"))
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        for group in list("apiGroups") {
            for resource in list("resources") {
                for verb in list("verbs") {
                    grants.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    grants
}

#[test]
fn the_lease_calls_are_granted_by_a_role_in_herald_s_namespace_only() {
    let role = read_yaml("deploy/rbac/role.yaml");
    assert_eq!(role["metadata"]["namespace"], "herald-system");
    let grants = rules("deploy/rbac/role.yaml", "Role");
    let calls: BTreeSet<Grant> = NAMESPACED_CALLS
        .iter()
        .map(|c| grant(c.group, c.resource, c.verb))
        .collect();
    assert_eq!(grants, calls, "the Role grants exactly the Lease calls");
    // Reading and renewing are limited to herald's Lease; `create` cannot
    // be limited by name (the API server checks it before the object has
    // one), so it is the only rule without `resourceNames`.
    for rule in role["rules"].as_array().unwrap() {
        let verbs: Vec<&str> = rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        if verbs == ["create"] {
            assert!(rule.get("resourceNames").is_none());
        } else {
            assert_eq!(
                rule["resourceNames"],
                serde_json::json!([herald::kube::lease::LEASE_NAME]),
                "{rule}"
            );
        }
    }
    // Bound to herald's ServiceAccount, in the same namespace.
    let binding = read_yaml("deploy/rbac/rolebinding.yaml");
    assert_eq!(binding["kind"], "RoleBinding");
    assert_eq!(binding["metadata"]["namespace"], "herald-system");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "herald", "namespace": "herald-system"}])
    );
    // And none of it cluster-wide.
    let cluster = granted();
    for call in NAMESPACED_CALLS {
        assert!(
            !cluster.contains(&grant(call.group, call.resource, call.verb)),
            "the ClusterRole grants {call:?} in every namespace"
        );
    }
    let kustomization =
        std::fs::read_to_string(root().join("deploy/rbac/kustomization.yaml")).unwrap();
    assert!(kustomization.contains("- role.yaml") && kustomization.contains("- rolebinding.yaml"));
}

fn grant(group: &str, resource: &str, verb: &str) -> Grant {
    (group.to_string(), resource.to_string(), verb.to_string())
}

#[test]
fn every_api_call_herald_makes_is_granted() {
    let grants = granted();
    for call in API_CALLS {
        assert!(
            grants.contains(&grant(call.group, call.resource, call.verb)),
            "deploy/rbac/clusterrole.yaml does not grant {call:?}"
        );
    }
}

#[test]
fn the_role_grants_nothing_beyond_the_calls_and_the_listed_extras() {
    // Deliberate extras: `get` on what herald watches (debugging with the
    // service account costs nothing) and core Events for older tooling.
    let extras: BTreeSet<Grant> = [
        grant("", "services", "get"),
        grant("", "nodes", "get"),
        grant("discovery.k8s.io", "endpointslices", "get"),
        grant("", "events", "create"),
        grant("", "events", "patch"),
    ]
    .into();
    let calls: BTreeSet<Grant> = API_CALLS
        .iter()
        .map(|c| grant(c.group, c.resource, c.verb))
        .collect();
    for g in granted() {
        assert!(
            calls.contains(&g) || extras.contains(&g),
            "the ClusterRole grants {g:?}, which herald does not use"
        );
        assert!(
            !g.0.contains('*') && !g.1.contains('*') && !g.2.contains('*'),
            "wildcard in {g:?}"
        );
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The type names in `Api::<T>` and `Api<T>` in a source text.
fn api_types(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for pattern in ["Api::<", "Api<"] {
        let mut rest = text;
        while let Some(at) = rest.find(pattern) {
            let before = rest[..at].chars().last();
            rest = &rest[at + pattern.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `MyApi<`
            }
            let end = rest.find('>').unwrap_or(rest.len());
            let name = rest[..end].rsplit("::").next().unwrap().trim().to_string();
            found.push(name);
        }
    }
    found
}

#[test]
fn the_code_builds_api_handles_only_for_declared_types() {
    let mut files = Vec::new();
    rust_files(&root().join("src/source/kube"), &mut files);
    rust_files(&root().join("src/policy"), &mut files);
    let declared: BTreeSet<&str> = API_TYPES.iter().map(|(t, _, _)| *t).collect();
    let mut used = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for name in api_types(&text) {
            if name == "K" {
                continue; // generic helpers
            }
            assert!(
                declared.contains(name.as_str()),
                "{} builds Api<{name}>, which src/source/kube/rbac.rs does not declare",
                file.display()
            );
            used.insert(name);
        }
        // Writes: Events (kube's Recorder, and the cluster-wide Events in
        // events.rs, which create and patch), the Lease (lease.rs, which
        // creates and replaces it) and the allocator's services/status
        // patch (allocate.rs); nothing else is written.
        let events_file = file.ends_with("src/source/kube/events.rs");
        let lease_file = file.ends_with("src/source/kube/lease.rs");
        let allocator_file = file.ends_with("src/source/kube/allocate.rs");
        for write in [
            ".create(",
            ".replace(",
            ".delete(",
            ".patch(",
            ".patch_status(",
        ] {
            let event_write = events_file && (write == ".create(" || write == ".patch(");
            let lease_write = lease_file && (write == ".create(" || write == ".replace(");
            let status_write = allocator_file && write == ".patch_status(";
            assert!(
                event_write || lease_write || status_write || !text.contains(write),
                "{} calls {write}: declare it in src/source/kube/rbac.rs and the ClusterRole",
                file.display()
            );
        }
        if text.contains("Recorder::new") {
            used.insert("Recorder".to_string());
        }
    }
    // Every declared type is really used, and each (but the Events herald
    // writes) is listed and watched.
    for (name, group, resource) in API_TYPES {
        assert!(used.contains(*name), "{name} is declared but never used");
        if (*group, *resource) == ("events.k8s.io", "events") {
            continue;
        }
        if (*group, *resource) == ("coordination.k8s.io", "leases") {
            for verb in ["get", "create", "update"] {
                assert!(
                    NAMESPACED_CALLS
                        .iter()
                        .any(|c| c.group == *group && c.resource == *resource && c.verb == verb),
                    "{name}: {verb} {group}/{resource} is not in NAMESPACED_CALLS"
                );
            }
            continue;
        }
        for verb in ["list", "watch"] {
            assert!(
                API_CALLS
                    .iter()
                    .any(|c| c.group == *group && c.resource == *resource && c.verb == verb),
                "{name} is watched but {verb} {group}/{resource} is not in API_CALLS"
            );
        }
    }
    assert!(
        used.contains("Recorder"),
        "the Events recorder is expected in src/source/kube"
    );
    for verb in ["create", "patch"] {
        assert!(
            API_CALLS
                .iter()
                .any(|c| c.group == "events.k8s.io" && c.resource == "events" && c.verb == verb)
        );
    }
}

#[test]
fn the_api_type_scanner_finds_both_spellings() {
    let text = "let a = Api::<Service>::all(c); fn f(x: Api<k8s::Node>) {} struct MyApi<T>;";
    assert_eq!(api_types(text), ["Service", "Node"]);
}
