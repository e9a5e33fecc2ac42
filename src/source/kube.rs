//! The Kubernetes source: watches Services, EndpointSlices and this Node,
//! keeps them in small reflector stores, and hands the agent the desired set
//! the [`crate::policy`] computes from them, with Events on the Services and
//! health data for `/readyz`, `/status` and metrics.
//!
//! Owns: watchers and reflector stores, the Events herald records, and
//! staleness reporting. Must not touch: netlink or BGP; it only feeds the
//! agent.
//!
//! - [`allocate`]: the allocation controller (while this pod holds the
//!   Lease: Services -> [`crate::allocation`] -> `services/status`).
//! - [`source`]: the tasks (watch -> strip -> store -> policy -> channel).
//! - [`strip`]: what is kept of each object.
//! - [`slice_index`]: which slices belong to which Service.
//! - [`health`]: static stability bookkeeping (pure).
//! - [`events`]: which Events to record (pure) and recording them.
//! - [`metrics`]: the source's Prometheus metrics.
//! - [`observe`]: client middleware that sees watches re-established.
//! - [`lease`]: leader election for the allocator (a Lease in herald's
//!   namespace).
//! - [`rbac`]: every API call the module makes, checked against
//!   deploy/rbac/clusterrole.yaml by tests/kube/rbac.rs.

pub mod allocate;
pub mod events;
pub mod health;
pub mod lease;
pub mod metrics;
pub mod observe;
pub mod rbac;
pub mod slice_index;
pub mod source;
pub mod strip;

pub use health::{Resource, SourceReport, WatchReport};
pub use metrics::Metrics;
pub use source::{KubeSource, PolicyConfig, WatchStreams};
