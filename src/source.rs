//! The sources of desired announcements, behind one interface: the
//! Kubernetes source ([`kube`]: Services, EndpointSlices and this Node
//! through [`crate::policy`]) and the standalone services file ([`file`](mod@file):
//! its addresses, the pools and the health checks). Either one publishes
//! the same typed [`Desired`] on one watch, and this node's labels on
//! another; the agent reads them and knows nothing of where they came from.
//!
//! ```text
//!  Kubernetes API ── kube::KubeSource ── policy::evaluate ──┐
//!                                                            ├─> watch<Arc<Desired>> ─> agent
//!  services file ─── file::FileSource ── health checks ─────┘   watch<node labels>  ─> agent
//!        ^                    ^
//!        └── set_services ────┴── set_config (pools, selection) <── agent (reload)
//! ```
//!
//! Owns: [`Desired`] and [`Candidate`], the [`Source`] handle, and the two
//! sources below it. Must not touch: netlink or BGP; what the agent does with
//! a desired set (reconcile order, anti-flap, drain) is the agent's.

pub mod file;
pub mod health;
pub mod kube;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::watch;

use crate::admin::{Readiness, ReadinessCondition};
use crate::config::Config;
use crate::model::Announcement;
use crate::services::ServicesFile;
use crate::status::{LeaderElectionStatus, SourceStatus, StatusBoard, unix_seconds};

/// What a source says this node should announce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// One announcement per address this node must announce; `None` until
    /// the source's first complete view (Kubernetes: every watch listed
    /// once; the file: every health check has a first result). Announcing
    /// before that would send End-of-RIB with addresses missing.
    pub announcements: Option<BTreeSet<Announcement>>,
    /// Every address the source looked at, announced or not, with why not.
    pub candidates: Vec<Candidate>,
    /// This node carries a node exclusion label: it must announce nothing,
    /// and the agent gets there through the drain sequence.
    pub node_excluded: bool,
}

/// One address a source looked at: the service that asked for it, its pool,
/// and why the source refused it (if it did).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub address: IpAddr,
    /// `namespace/name` for a Kubernetes Service, the name in the file.
    pub service: String,
    pub pool: Option<String>,
    /// Why the source does not announce it, in words for `/status`.
    pub refusal: Option<String>,
}

/// Why a source cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot find the kubernetes api server (in-cluster service account or KUBECONFIG)")]
    KubeConfig(#[source] ::kube::config::InferConfigError),
    #[error("cannot start the kubernetes source")]
    Kube(#[source] ::kube::Error),
}

/// The running source; its tasks stop when it is dropped.
pub struct Source {
    kind: Kind,
    desired: watch::Receiver<Arc<Desired>>,
    node_labels: watch::Receiver<Option<BTreeMap<String, String>>>,
}

enum Kind {
    File {
        source: file::FileSource,
        /// When the services file in force was loaded.
        loaded: SystemTime,
    },
    Kubernetes {
        source: kube::KubeSource,
        /// The pools and selection the policy runs with.
        policy: watch::Sender<kube::PolicyConfig>,
        readiness: ReadinessCondition,
        /// With `allocation.enabled`: this pod contending for the
        /// allocation Lease, and the allocator that writes while it holds
        /// it. Boxed: the File variant is much smaller.
        allocation: Option<Box<Allocation>>,
    },
}

/// The allocation side of the Kubernetes source: the election for the
/// Lease and the allocator, which writes only while the election says this
/// pod leads.
struct Allocation {
    election: kube::lease::LeaderElection,
    controller: kube::allocate::AllocatorController,
    config: watch::Sender<kube::allocate::AllocatorConfig>,
}

/// The metrics of the allocation side (registered by the agent with the
/// others).
pub struct AllocationMetrics {
    pub lease: kube::lease::LeaseMetrics,
    pub allocator: kube::allocate::AllocatorMetrics,
}

impl Source {
    /// The standalone source: `services` with its health checks, announced
    /// within `config`'s pools; `node_labels` are the `--node-label`s.
    /// `checks` counts each health-check run.
    pub fn file(
        services: ServicesFile,
        config: &Config,
        node_labels: BTreeMap<String, String>,
        checks: Family<health::CheckLabels, Counter>,
    ) -> Source {
        if config.allocation.enabled {
            tracing::warn!(
                "allocation.enabled is ignored with a services file: addresses are allocated \
                 only in Kubernetes mode"
            );
        }
        let source = file::FileSource::spawn(services, config.pools.clone(), checks);
        let desired = source.desired();
        for (i, pool) in config.pools.iter().enumerate() {
            if pool.weighted_ecmp {
                // The services file has no endpoints to count: said once,
                // rather than silently announcing without a weight.
                tracing::warn!(
                    pool = %pool.name,
                    "pools[{i}].weighted_ecmp applies to the Kubernetes source only: the services \
                     file's announcements carry no link bandwidth"
                );
            }
        }
        Source {
            kind: Kind::File {
                source,
                loaded: SystemTime::now(),
            },
            desired,
            node_labels: watch::channel(Some(node_labels)).1,
        }
    }

    /// The Kubernetes source for node `node`, with the API server found the
    /// standard way (in-cluster service account, else `KUBECONFIG`); it
    /// holds `/readyz` at not ready while its view is incomplete or stale.
    ///
    /// With `allocation.enabled` it also contends for the allocation Lease
    /// (in `allocation.lease_namespace`, else `POD_NAMESPACE`, else
    /// herald-system) as `NODE/POD_NAME` (the node alone without
    /// `POD_NAME`), and runs the address allocator, which writes only while
    /// this pod holds it.
    pub async fn kubernetes(
        node: &str,
        config: &Config,
        readiness: &Readiness,
        metrics: kube::Metrics,
        allocation_metrics: AllocationMetrics,
    ) -> Result<Source, SourceError> {
        let kube_config = ::kube::Config::infer()
            .await
            .map_err(SourceError::KubeConfig)?;
        let allocation = if config.allocation.enabled {
            let client =
                ::kube::Client::try_from(kube_config.clone()).map_err(SourceError::Kube)?;
            let pod = std::env::var("POD_NAME").ok();
            let pod_namespace = std::env::var("POD_NAMESPACE").ok();
            let namespace = config.allocation.lease_namespace(pod_namespace.as_deref());
            let election = kube::lease::LeaderElection::spawn(
                client.clone(),
                &namespace,
                &kube::lease::identity(node, pod.as_deref()),
                config.allocation.leader_election.clone(),
                allocation_metrics.lease,
            );
            let (config_tx, config_rx) = watch::channel(allocator_config(config));
            let controller = kube::allocate::AllocatorController::spawn(
                client,
                node,
                config_rx,
                election.leader(),
                allocation_metrics.allocator,
            );
            Some(Box::new(Allocation {
                election,
                controller,
                config: config_tx,
            }))
        } else {
            None
        };
        let (policy, policy_rx) = watch::channel(policy_config(config));
        let source = kube::KubeSource::spawn(kube_config, node, policy_rx, metrics)
            .map_err(SourceError::Kube)?;
        Ok(Source {
            desired: source.source_desired(),
            node_labels: source.node_labels(),
            kind: Kind::Kubernetes {
                source,
                policy,
                readiness: readiness.register("kubernetes"),
                allocation,
            },
        })
    }

    /// Stops contending for the allocation Lease: stops leading at once,
    /// then releases the Lease so another pod takes over at its next look
    /// (bounded by the election's call timeout). A stopping agent calls it
    /// before anything else.
    pub async fn release_leadership(&mut self) {
        if let Kind::Kubernetes { allocation, .. } = &mut self.kind
            && let Some(allocation) = allocation.take()
        {
            let Allocation {
                election,
                controller,
                ..
            } = *allocation;
            election.shutdown().await;
            drop(controller);
        }
    }

    /// The desired set, as the source last published it.
    pub fn desired(&self) -> watch::Receiver<Arc<Desired>> {
        self.desired.clone()
    }

    /// This node's labels (for the peers' `node_selector`): `None` until
    /// known.
    pub fn node_labels(&self) -> watch::Receiver<Option<BTreeMap<String, String>>> {
        self.node_labels.clone()
    }

    /// A reloaded configuration: the pools (and the Kubernetes selection)
    /// the source decides with.
    pub fn set_config(&self, config: &Config) {
        match &self.kind {
            Kind::File { source, .. } => source.set_pools(config.pools.clone()),
            Kind::Kubernetes {
                policy, allocation, ..
            } => {
                policy.send_if_modified(|current| {
                    let next = policy_config(config);
                    let changed = *current != next;
                    *current = next;
                    changed
                });
                match allocation {
                    Some(allocation) => {
                        allocation.config.send_if_modified(|current| {
                            let next = allocator_config(config);
                            let changed = *current != next;
                            *current = next;
                            changed
                        });
                    }
                    None if config.allocation.enabled => tracing::warn!(
                        "allocation.enabled by a reload: the allocator starts only with the \
                         agent; restart herald to allocate"
                    ),
                    None => {}
                }
            }
        }
    }

    /// A reloaded services file. Only the standalone source has one; the
    /// reload source watches a services file only in standalone mode.
    pub fn set_services(&mut self, services: ServicesFile) {
        match &mut self.kind {
            Kind::File { source, loaded } => {
                *loaded = SystemTime::now();
                source.set_services(services);
            }
            Kind::Kubernetes { .. } => {
                tracing::warn!("a services file was reloaded in Kubernetes mode; ignored");
            }
        }
    }

    /// Stops the health checks (a stopping agent must not run them any
    /// more); the Kubernetes watches end with the process.
    pub fn stop(&mut self) {
        if let Kind::File { source, .. } = &mut self.kind {
            source.stop();
        }
    }

    /// What `/status` says while the first complete view is awaited.
    pub fn waiting_for(&self) -> &'static str {
        match self.kind {
            Kind::File { .. } => "waiting for the first result of the health checks",
            Kind::Kubernetes { .. } => "waiting for the Kubernetes source's first complete view",
        }
    }

    /// Writes the source's `/status` row and, for Kubernetes, `/readyz`.
    pub fn publish_health(&self, status: &StatusBoard) {
        let row = match &self.kind {
            Kind::File { loaded, .. } => SourceStatus {
                name: "services-file".to_string(),
                healthy: true,
                last_update: Some(unix_seconds(*loaded)),
                detail: None,
            },
            Kind::Kubernetes {
                source,
                readiness,
                allocation,
                ..
            } => {
                if let Some(allocation) = allocation {
                    let state = allocation.election.state().borrow().clone();
                    status.set_leader_election(LeaderElectionStatus {
                        identity: state.identity,
                        leader: state.holder,
                        leading: state.leading,
                    });
                }
                status.set_allocation(allocation.as_ref().map(|a| a.controller.report()));
                let report = source.report();
                if report.ready {
                    readiness.set_ready();
                } else {
                    readiness.set_not_ready(report.summary());
                }
                SourceStatus {
                    name: "kubernetes".to_string(),
                    healthy: report.ready,
                    last_update: report
                        .seconds_since_desired
                        .map(|s| unix_seconds(SystemTime::now()).saturating_sub(s as u64)),
                    detail: (!report.ready).then(|| report.summary()),
                }
            }
        };
        status.upsert_source(row);
    }
}

fn allocator_config(config: &Config) -> kube::allocate::AllocatorConfig {
    kube::allocate::AllocatorConfig {
        pools: config.pools.clone(),
        allocation: config.allocation.clone(),
    }
}

fn policy_config(config: &Config) -> kube::PolicyConfig {
    let mut selection = config.kubernetes.clone();
    selection.local_as = config.asn;
    selection.allocated_class = config.allocation.allocated_class();
    kube::PolicyConfig {
        pools: config.pools.clone(),
        selection,
    }
}
