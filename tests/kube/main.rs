//! herald against the real Kubernetes API: kube-apiserver and etcd, built
//! from their Go modules (scripts/kube-bins), started by the lab in a
//! network namespace with TLS and RBAC on; herald uses the ServiceAccount
//! and ClusterRole of deploy/, so a permission it lacks is a 403 here.
//!
//! - [`source`]: the Kubernetes source in process, driven with kubectl:
//!   selection, annotation, deletion, readiness, node exclusion, Events;
//!   and API faults (cut watches, etcd frozen, a relist after compaction,
//!   herald cut off for 30 s) during which the desired set never shrinks.
//! - [`lease`]: leader election for the allocator: one leader, takeover
//!   after a kill and after a graceful stop, a tenant refused the Lease.
//! - [`rbac`]: the ClusterRole and the Role against the calls the code makes.
//! - [`allocate`]: the allocation controller: addresses written into the
//!   Services' status, a burst of 1,000, exhaustion and bad requests, and
//!   nothing written without the Lease.

mod allocate;
mod lease;
mod rbac;
mod source;
mod support;
