//! Every Kubernetes API call this module makes, as (API group, resource,
//! verb). tests/kube/rbac.rs checks that deploy/rbac/clusterrole.yaml grants
//! each cluster-wide one, deploy/rbac/role.yaml (herald's namespace only)
//! each of [`NAMESPACED_CALLS`], and that the code uses no other API types.
//!
//! Owns: the table. Keep it in step with [`crate::source::kube::source`],
//! [`crate::source::kube::events`], [`crate::source::kube::lease`] and
//! [`crate::source::kube::allocate`].

/// One API call: `group` is "" for the core group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiCall {
    pub group: &'static str,
    pub resource: &'static str,
    pub verb: &'static str,
}

const fn call(group: &'static str, resource: &'static str, verb: &'static str) -> ApiCall {
    ApiCall {
        group,
        resource,
        verb,
    }
}

/// The calls: the three watchers list and watch (kube's watcher never gets
/// single objects, but `get` is granted for `kubectl auth can-i`-style
/// debugging and costs nothing); kube's `Recorder` creates `events.k8s.io/v1`
/// Events and patches them to add a `series` on repeats, and the
/// cluster-wide refusal Events are created, or read and counted by patch
/// (no `get`).
pub const API_CALLS: &[ApiCall] = &[
    call("", "services", "list"),
    call("", "services", "watch"),
    // The allocation controller writes `status.loadBalancer.ingress`.
    call("", "services/status", "patch"),
    call("discovery.k8s.io", "endpointslices", "list"),
    call("discovery.k8s.io", "endpointslices", "watch"),
    call("", "nodes", "list"),
    call("", "nodes", "watch"),
    call("", "namespaces", "list"),
    call("", "namespaces", "watch"),
    call("events.k8s.io", "events", "create"),
    call("events.k8s.io", "events", "patch"),
];

/// The calls made only in herald's own namespace, granted by a Role there
/// (never cluster-wide): the allocation Lease, read, created once, and
/// renewed or released by `replace` (an HTTP PUT: the `update` verb).
pub const NAMESPACED_CALLS: &[ApiCall] = &[
    call("coordination.k8s.io", "leases", "get"),
    call("coordination.k8s.io", "leases", "create"),
    call("coordination.k8s.io", "leases", "update"),
];

/// The k8s-openapi types the module may build an `Api` for, with the
/// (group, resource) they address. A type not listed here must not appear in
/// in an `Api` handle in src/source/kube (checked by tests/kube/rbac.rs).
pub const API_TYPES: &[(&str, &str, &str)] = &[
    ("Service", "", "services"),
    ("EndpointSlice", "discovery.k8s.io", "endpointslices"),
    ("Node", "", "nodes"),
    ("Namespace", "", "namespaces"),
    ("EventObject", "events.k8s.io", "events"),
    ("Lease", "coordination.k8s.io", "leases"),
];
