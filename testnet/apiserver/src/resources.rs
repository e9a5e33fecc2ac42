//! The resource table: every kind the stand-in serves, with the facts discovery, routing and
//! storage need (group, version, plural, kind, scope, short names, subresources).
//!
//! This module owns only static data. It must not touch storage or HTTP.

/// The verbs every served resource supports, as discovery lists them.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The verbs of a `/status` subresource.
pub const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

/// What happens to `.status` when an object is created through the main resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusOnCreate {
    /// The kind has no status, or the client may set it on create (Nodes: the kubelet registers
    /// a Node with its status).
    Keep,
    /// The server clears it, like kube-apiserver's `PrepareForCreate` for Services and
    /// DaemonSets: status is written only through `/status`.
    Reset,
    /// Namespaces start with `status.phase: Active`.
    NamespaceActive,
}

/// One served resource.
#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    /// URL name, e.g. `services`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Whether `/status` is a subresource (and the main resource therefore ignores `.status`).
    pub has_status: bool,
    pub status_on_create: StatusOnCreate,
    /// Discovery categories (`kubectl get all` reads `all`).
    pub categories: &'static [&'static str],
}

impl Resource {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The URL prefix of this group-version: `/api/v1` or `/apis/{group}/{version}`.
    pub fn group_version_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }
}

const fn resource(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> Resource {
    Resource {
        group,
        version,
        plural,
        singular,
        kind,
        namespaced,
        short_names,
        has_status: false,
        status_on_create: StatusOnCreate::Keep,
        categories: &[],
    }
}

const fn in_all(mut r: Resource) -> Resource {
    r.categories = &["all"];
    r
}

const fn with_status(mut r: Resource, on_create: StatusOnCreate) -> Resource {
    r.has_status = true;
    r.status_on_create = on_create;
    r
}

/// Every resource the stand-in serves. Core `events` and `events.k8s.io` events are stored
/// apart (a real server converts between them; herald and kube's `Recorder` use only the latter).
pub static RESOURCES: &[Resource] = &[
    with_status(
        resource(
            "",
            "v1",
            "namespaces",
            "namespace",
            "Namespace",
            false,
            &["ns"],
        ),
        StatusOnCreate::NamespaceActive,
    ),
    with_status(
        resource("", "v1", "nodes", "node", "Node", false, &["no"]),
        StatusOnCreate::Keep,
    ),
    with_status(
        in_all(resource(
            "",
            "v1",
            "services",
            "service",
            "Service",
            true,
            &["svc"],
        )),
        StatusOnCreate::Reset,
    ),
    resource("", "v1", "events", "event", "Event", true, &["ev"]),
    resource(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        &["cm"],
    ),
    resource(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
    ),
    resource(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        true,
        &[],
    ),
    resource(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        true,
        &["ev"],
    ),
    resource(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        &[],
    ),
    with_status(
        in_all(resource(
            "apps",
            "v1",
            "daemonsets",
            "daemonset",
            "DaemonSet",
            true,
            &["ds"],
        )),
        StatusOnCreate::Reset,
    ),
    resource(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        &[],
    ),
    resource(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        &[],
    ),
    resource(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "role",
        "Role",
        true,
        &[],
    ),
    resource(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        &[],
    ),
    // The Prometheus Operator's CRD, so deploy/overlays/prometheus applies. Stored without
    // schema validation (a real server would validate against the CRD's schema; the test
    // tests/deploy_manifests.rs checks the shape instead).
    resource(
        "monitoring.coreos.com",
        "v1",
        "servicemonitors",
        "servicemonitor",
        "ServiceMonitor",
        true,
        &["smon"],
    ),
];

/// Index into [`RESOURCES`]; cheap to copy and to order.
pub type ResourceId = usize;

/// The resource served at `group/version/plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<ResourceId> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of an object's `apiVersion` and `kind`.
pub fn find_kind(api_version: &str, kind: &str) -> Option<ResourceId> {
    RESOURCES
        .iter()
        .position(|r| r.api_version() == api_version && r.kind == kind)
}

/// The served groups in discovery order, each with its single version.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// The resources of one group-version.
pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static Resource> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_is_found_by_its_url_and_by_its_kind() {
        for (id, r) in RESOURCES.iter().enumerate() {
            assert_eq!(find(r.group, r.version, r.plural), Some(id));
            assert_eq!(find_kind(&r.api_version(), r.kind), Some(id));
        }
    }

    #[test]
    fn core_group_paths_use_api_and_others_use_apis() {
        let svc = &RESOURCES[find("", "v1", "services").unwrap()];
        assert_eq!(svc.group_version_path(), "/api/v1");
        assert_eq!(svc.api_version(), "v1");
        let eps = &RESOURCES[find("discovery.k8s.io", "v1", "endpointslices").unwrap()];
        assert_eq!(eps.group_version_path(), "/apis/discovery.k8s.io/v1");
        assert_eq!(eps.api_version(), "discovery.k8s.io/v1");
    }

    #[test]
    fn groups_start_with_the_core_group_and_have_no_duplicates() {
        let g = groups();
        assert_eq!(g[0], ("", "v1"));
        let mut sorted = g.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), g.len());
    }
}
