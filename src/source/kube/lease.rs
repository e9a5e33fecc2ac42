//! Leader election for the address allocator: one herald pod in the cluster
//! holds the `coordination.k8s.io/v1` Lease `herald-allocator` in herald's
//! namespace, and only that pod writes addresses. [`LeaderElection`]
//! publishes `true` on its watch channel while this process holds the Lease.
//!
//! Owns: the thin driver (read the Lease, write what [`election`] decides,
//! with `resourceVersion` so that of two contenders one wins; bound every
//! call; step down at the deadline; release on a graceful stop), the
//! conversion between the Lease object and [`Record`], and the election's
//! metrics. Must not touch: Services or addresses (the allocator does,
//! reading the channel), or any Lease but its own.
//!
//! Written here rather than taken from a crate: the guarantee that matters
//! (the leader stops writing before anyone else may start, measured on each
//! pod's own monotonic clock, every API call bounded by a timeout that
//! cannot outlast the deadline) is the whole module, and it is kept as a
//! pure core that the table tests drive.

pub mod election;

use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use election::{Decision, Election, Now, Record};

use crate::config::LeaderElectionConfig;

/// The Lease's name; one per cluster (in the lease namespace).
pub const LEASE_NAME: &str = "herald-allocator";

/// Who this process is in the Lease: the node name, and the pod name when
/// known (two pods on one node during a rolling update must differ).
pub fn identity(node: &str, pod: Option<&str>) -> String {
    match pod.filter(|pod| !pod.is_empty()) {
        Some(pod) => format!("{node}/{pod}"),
        None => node.to_string(),
    }
}

/// What `/status` shows: who holds the Lease as last seen, and whether this
/// process leads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderState {
    pub identity: String,
    pub holder: Option<String>,
    pub leading: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// `get`, `create`, `replace` (`release` for the one on a graceful stop).
    pub call: &'static str,
    /// `conflict`, `forbidden`, `timeout`, `error`.
    pub reason: &'static str,
}

/// The election's metrics (catalogued in docs/metrics.md).
#[derive(Clone, Debug, Default)]
pub struct LeaseMetrics {
    pub leader: Gauge,
    pub transitions: Counter,
    pub failures: Family<FailureLabels, Counter>,
}

impl LeaseMetrics {
    /// Registers under `allocator_` in herald's registry:
    /// `herald_allocation_leader`, ...
    pub fn register(registry: &mut Registry) -> LeaseMetrics {
        let metrics = LeaseMetrics::default();
        let sub = registry.sub_registry_with_prefix("allocation");
        sub.register(
            "leader",
            "1 while this pod holds the allocation Lease and may assign addresses",
            metrics.leader.clone(),
        );
        sub.register(
            "leader_transitions",
            "Times this pod started or stopped leading the allocation",
            metrics.transitions.clone(),
        );
        sub.register(
            "lease_failures",
            "Lease API calls that failed, by call and reason (conflict: another pod wrote first)",
            metrics.failures.clone(),
        );
        metrics
    }
}

/// The running election; dropping it aborts the task without releasing the
/// Lease (as a killed process would): call [`LeaderElection::shutdown`] to
/// hand the Lease over at once.
pub struct LeaderElection {
    leader: watch::Receiver<bool>,
    state: watch::Receiver<LeaderState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl LeaderElection {
    /// Starts contending for the Lease `LEASE_NAME` in `namespace` as
    /// `identity`.
    pub fn spawn(
        client: kube::Client,
        namespace: &str,
        identity: &str,
        timing: LeaderElectionConfig,
        metrics: LeaseMetrics,
    ) -> LeaderElection {
        let (leader_tx, leader) = watch::channel(false);
        let (state_tx, state) = watch::channel(LeaderState {
            identity: identity.to_string(),
            ..LeaderState::default()
        });
        let (stop, stop_rx) = oneshot::channel();
        let driver = Driver {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            call_timeout: call_timeout(&timing),
            retry_period: timing.retry_period,
            election: Election::new(identity, timing),
            resource_version: None,
            leader_tx,
            state_tx,
            metrics,
        };
        LeaderElection {
            leader,
            state,
            stop: Some(stop),
            task: Some(tokio::spawn(driver.run(stop_rx))),
        }
    }

    /// `true` while this process holds the Lease; the allocator writes only
    /// while it reads `true`.
    pub fn leader(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// The holder as last seen and whether this process leads.
    pub fn state(&self) -> watch::Receiver<LeaderState> {
        self.state.clone()
    }

    /// Stops contending: publishes `false` first, then releases the Lease
    /// (holder empty) if this process holds it, so the next contender takes
    /// over at its next look. Bounded by the call timeout.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LeaderElection {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Each API call's bound: long enough for a loaded API server, short enough
/// that a leader gets at least two tries before its deadline.
fn call_timeout(timing: &LeaderElectionConfig) -> Duration {
    (timing.renew_deadline / 2).max(timing.retry_period)
}

struct Driver {
    api: Api<Lease>,
    namespace: String,
    call_timeout: Duration,
    retry_period: Duration,
    election: Election,
    /// The resourceVersion last read or written.
    resource_version: Option<String>,
    leader_tx: watch::Sender<bool>,
    state_tx: watch::Sender<LeaderState>,
    metrics: LeaseMetrics,
}

enum CallError {
    Timeout,
    Api(kube::Error),
}

impl CallError {
    fn reason(&self) -> &'static str {
        match self {
            CallError::Timeout => "timeout",
            CallError::Api(kube::Error::Api(status)) if status.code == 409 => "conflict",
            CallError::Api(kube::Error::Api(status)) if status.code == 403 => "forbidden",
            CallError::Api(_) => "error",
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout => f.write_str("no answer within the call timeout"),
            CallError::Api(error) => error.fmt(f),
        }
    }
}

fn now() -> Now {
    Now {
        mono: Instant::now(),
        wall: SystemTime::now(),
    }
}

impl Driver {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        info!(
            identity = self.election.identity(),
            namespace = %self.namespace,
            lease = LEASE_NAME,
            "contending for the allocation lease"
        );
        loop {
            let round = Instant::now();
            self.round().await;
            self.publish();
            let next = round + self.retry_period;
            loop {
                let step_down = self.step_down_at();
                tokio::select! {
                    _ = &mut stop => {
                        self.release().await;
                        return;
                    }
                    _ = tokio::time::sleep_until(next.into()) => break,
                    _ = sleep_until_opt(step_down) => self.publish(),
                }
            }
        }
    }

    /// One look at the Lease, and the write it calls for.
    async fn round(&mut self) {
        let api = self.api.clone();
        let read = match self
            .call("get", async move { api.get_opt(LEASE_NAME).await })
            .await
        {
            Ok(read) => read,
            Err(()) => return,
        };
        self.resource_version = read
            .as_ref()
            .and_then(|lease| lease.metadata.resource_version.clone());
        let record = read.as_ref().map(record_of);
        let decision = self.election.decide(record.as_ref(), now());
        let (call, record) = match decision {
            Decision::Wait { .. } => return,
            Decision::Create(record) => ("create", record),
            Decision::Acquire(record) | Decision::Renew(record) => ("replace", record),
        };
        let lease = self.lease_of(&record);
        let api = self.api.clone();
        let sent = Instant::now();
        let written = if call == "create" {
            self.call(call, async move {
                api.create(&PostParams::default(), &lease).await
            })
            .await
        } else {
            self.call(call, async move {
                api.replace(LEASE_NAME, &PostParams::default(), &lease)
                    .await
            })
            .await
        };
        match written {
            Ok(stored) => {
                self.resource_version = stored.metadata.resource_version.clone();
                self.election
                    .written(record_of(&stored), sent, Instant::now());
            }
            Err(()) => self.election.conflict(),
        }
    }

    /// Runs one API call bounded by the call timeout; while it runs, a
    /// leader whose deadline passes publishes `false` at that moment.
    /// Failures are counted and logged here.
    async fn call<T>(
        &mut self,
        call: &'static str,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, ()> {
        let deadline = Instant::now() + self.call_timeout;
        tokio::pin!(fut);
        let result = loop {
            let step_down = self.step_down_at();
            tokio::select! {
                result = &mut fut => break result.map_err(CallError::Api),
                _ = tokio::time::sleep_until(deadline.into()) => break Err(CallError::Timeout),
                _ = sleep_until_opt(step_down) => self.publish(),
            }
        };
        result.map_err(|error| {
            let reason = error.reason();
            self.metrics
                .failures
                .get_or_create(&FailureLabels { call, reason })
                .inc();
            if reason == "conflict" {
                info!(
                    call,
                    "the allocation lease changed under this write: re-reading"
                );
            } else {
                warn!(call, %error, "allocation lease call failed");
            }
        })
    }

    /// When a leader must publish `false` unless it renews before.
    fn step_down_at(&self) -> Option<Instant> {
        self.election
            .leader_until()
            .filter(|_| *self.leader_tx.borrow())
    }

    fn publish(&self) {
        let leading = self.election.is_leader(Instant::now());
        let changed = self.leader_tx.send_if_modified(|current| {
            let changed = *current != leading;
            *current = leading;
            changed
        });
        if changed {
            self.metrics.transitions.inc();
            self.metrics.leader.set(i64::from(leading));
            if leading {
                info!(
                    identity = self.election.identity(),
                    "leading the allocation"
                );
            } else {
                warn!(
                    identity = self.election.identity(),
                    "stopped leading the allocation"
                );
            }
        }
        let holder = self.election.holder().map(str::to_string);
        self.state_tx.send_if_modified(|state| {
            let changed = state.holder != holder || state.leading != leading;
            state.holder = holder;
            state.leading = leading;
            changed
        });
    }

    /// Publishes `false`, then writes the Lease free if this process holds
    /// it, at the resourceVersion it last wrote (a Lease someone else wrote
    /// meanwhile is left alone: 409).
    async fn release(&mut self) {
        let record = self.election.release(now());
        self.publish();
        let Some(record) = record else { return };
        let lease = self.lease_of(&record);
        let api = self.api.clone();
        let released = self
            .call("release", async move {
                api.replace(LEASE_NAME, &PostParams::default(), &lease)
                    .await
            })
            .await;
        if released.is_ok() {
            info!(
                identity = self.election.identity(),
                "released the allocation lease"
            );
        }
    }

    fn lease_of(&self, record: &Record) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(LEASE_NAME.to_string()),
                namespace: Some(self.namespace.clone()),
                resource_version: self.resource_version.clone(),
                labels: Some([("app.kubernetes.io/name".to_string(), "herald".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(record.holder.clone()),
                lease_duration_seconds: Some(record.lease_duration_seconds),
                acquire_time: record.acquire_time.and_then(micro_time),
                renew_time: record.renew_time.and_then(micro_time),
                lease_transitions: Some(record.transitions),
                ..LeaseSpec::default()
            }),
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The election's view of a Lease object; missing fields read as empty.
pub fn record_of(lease: &Lease) -> Record {
    let spec = lease.spec.clone().unwrap_or_default();
    Record {
        holder: spec.holder_identity.unwrap_or_default(),
        lease_duration_seconds: spec.lease_duration_seconds.unwrap_or(0),
        acquire_time: spec.acquire_time.map(|t| SystemTime::from(t.0)),
        renew_time: spec.renew_time.map(|t| SystemTime::from(t.0)),
        transitions: spec.lease_transitions.unwrap_or(0),
    }
}

fn micro_time(at: SystemTime) -> Option<MicroTime> {
    k8s_openapi::jiff::Timestamp::try_from(at)
        .ok()
        .map(MicroTime)
}
