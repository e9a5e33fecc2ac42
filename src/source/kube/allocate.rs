//! The allocation controller: while this herald pod holds the allocation
//! Lease, it watches every Service, asks the allocator's pure core
//! ([`crate::allocation`]) which load-balancer addresses each of herald's
//! Services should carry, and writes the answer into
//! `status.loadBalancer.ingress`.
//!
//! ```text
//!  leader (watch<bool>, the Lease) ──┐
//!  config (pools, allocation) ───────┤
//!                                    v
//!  while leading:  watcher(Services, consistent list) ──> ServiceBook ─┐
//!                  watcher(Namespaces) ─────────────────> labels ──────┤
//!                                                                      v
//!                              allocation::allocate (pure) -> per Service: Serve / Release
//!                                      |-> PATCH services/{name}/status (resourceVersion
//!                                      |   precondition, at most WRITE_CONCURRENCY at a time;
//!                                      |   each write checks the Lease first)
//!                                      |-> Events (allocated, exhausted, outside every pool, ...)
//!                                      \-> metrics per pool, the report for /status
//! ```
//!
//! Owns: the watch while leading, the status writes, the allocation Events,
//! metrics and report. Must not touch: the announcement policy or the
//! source's stores (announcing the written addresses is the source's job,
//! as for any other load-balancer address), and the Lease itself (the
//! leader channel comes from the leader election).
//!
//! No address is handed out twice, also across a leader change:
//! - a new term starts with a fresh, consistent list (`resourceVersion=""`,
//!   read from etcd, not a watch cache), and nothing is written before it is
//!   complete; the allocator keeps every address already in a status before
//!   it hands out a new one;
//! - every write carries the `resourceVersion` it was computed from, so a
//!   write based on a stale view of that Service is refused (409) and
//!   computed again from the newer object;
//! - the answer of each write (the Service as stored) replaces the book's
//!   copy at once, and a watch event older than the copy is ignored, so the
//!   next computation already sees what this leader wrote;
//! - every write checks the leader channel just before it is sent, and the
//!   term ends (the book is dropped) the moment it turns false. The Lease
//!   timing (a holder stops renewing, and so writing, before anyone else may
//!   take over) makes the old leader's last write precede the new leader's
//!   list.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{LoadBalancerIngress, Namespace, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::allocation::{Allocation, NamespaceLabels, ServiceInput, Verdict, allocate};
use crate::config::{AllocationConfig, PoolConfig};
use crate::policy::ServiceRef;
use crate::source::kube::events::{EventPublisher, PlannedEvent};
use crate::status::{AllocationPoolStatus, AllocationStatus};

/// What the controller reads of the configuration; the agent sends a new
/// one on reload.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AllocatorConfig {
    pub pools: Vec<PoolConfig>,
    pub allocation: AllocationConfig,
}

/// How many status writes may be in flight at once.
const WRITE_CONCURRENCY: usize = 16;
/// How often one Service's write is tried again after a failure a retry
/// can cure (409, 429, 5xx, transport), and the first pause (doubling).
const WRITE_RETRIES: u32 = 5;
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How many planned Events may wait for the publisher before new ones are
/// dropped (and counted).
const EVENT_QUEUE: usize = 1024;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// The allocator's metrics (catalogued in docs/metrics.md).
#[derive(Clone, Debug, Default)]
pub struct AllocatorMetrics {
    pub pool_size: Family<PoolLabels, Gauge>,
    pub pool_in_use: Family<PoolLabels, Gauge>,
    pub refused_services: Gauge,
    pub status_writes: Family<ResultLabels, Counter>,
    pub events_failed: Counter,
}

impl AllocatorMetrics {
    /// Registers under `allocator_` in the agent's `herald` registry,
    /// beside the leader election's `herald_allocation_leader`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = AllocatorMetrics::default();
        let sub = registry.sub_registry_with_prefix("allocation");
        sub.register(
            "pool_size",
            "Addresses each pool with allocate: true can hand out (saturated at 2^63-1)",
            metrics.pool_size.clone(),
        );
        sub.register(
            "pool_in_use",
            "Distinct addresses of each allocating pool that Services carry, per the leader's last computation",
            metrics.pool_in_use.clone(),
        );
        sub.register(
            "refused_services",
            "herald's LoadBalancer Services that lack an address they asked for (exhausted pool, bad request, ...)",
            metrics.refused_services.clone(),
        );
        sub.register(
            "status_writes",
            "Writes of status.loadBalancer.ingress, by result (ok, conflict, failed)",
            metrics.status_writes.clone(),
        );
        sub.register(
            "events_failed",
            "Allocation Events herald could not record",
            metrics.events_failed.clone(),
        );
        for result in ["ok", "conflict", "failed"] {
            let _ = metrics
                .status_writes
                .get_or_create(&ResultLabels { result });
        }
        metrics
    }

    fn observe(&self, allocation: &Allocation) {
        for pool in &allocation.pools {
            let labels = PoolLabels {
                pool: pool.name.clone(),
            };
            let clamp = |n: u128| i64::try_from(n).unwrap_or(i64::MAX);
            self.pool_size.get_or_create(&labels).set(clamp(pool.size));
            self.pool_in_use
                .get_or_create(&labels)
                .set(clamp(pool.in_use));
        }
        let refused = allocation
            .services
            .iter()
            .filter(|s| {
                matches!(
                    s.verdict,
                    Verdict::Serve {
                        refusal: Some(_),
                        ..
                    }
                )
            })
            .count();
        self.refused_services.set(refused as i64);
    }
}

/// The running controller; its tasks stop when it is dropped.
pub struct AllocatorController {
    report: Arc<Mutex<AllocationStatus>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for AllocatorController {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl AllocatorController {
    /// Starts the controller: it allocates while `leader` reads true.
    /// `node` names this pod's Events' reporting instance.
    pub fn spawn(
        client: kube::Client,
        node: &str,
        config: watch::Receiver<AllocatorConfig>,
        leader: watch::Receiver<bool>,
        metrics: AllocatorMetrics,
    ) -> Self {
        let report = Arc::new(Mutex::new(AllocationStatus::default()));
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let publisher = EventPublisher::new(client.clone(), node);
        let controller = Controller {
            client,
            config,
            leader,
            metrics: metrics.clone(),
            report: report.clone(),
            events: events_tx,
        };
        AllocatorController {
            report,
            tasks: vec![
                tokio::spawn(controller.run()),
                tokio::spawn(publish_events(publisher, events_rx, metrics)),
            ],
        }
    }

    /// The state for `/status`.
    pub fn report(&self) -> AllocationStatus {
        self.report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

struct Controller {
    client: kube::Client,
    config: watch::Receiver<AllocatorConfig>,
    leader: watch::Receiver<bool>,
    metrics: AllocatorMetrics,
    report: Arc<Mutex<AllocationStatus>>,
    events: mpsc::Sender<PlannedEvent>,
}

/// One Service as the book holds it.
#[derive(Clone, Debug)]
struct Entry {
    resource_version: Option<String>,
    input: ServiceInput,
    /// The whole ingress, to keep what herald did not write when releasing.
    ingress: Vec<LoadBalancerIngress>,
}

impl Entry {
    fn of(service: &Service) -> Self {
        Entry {
            resource_version: service.metadata.resource_version.clone(),
            input: ServiceInput::from_service(service),
            ingress: service
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.clone())
                .unwrap_or_default(),
        }
    }

    /// Whether this copy is older than `other` (resource versions are
    /// etcd revisions in kube-apiserver; when either does not parse as a
    /// number, the newer arrival wins).
    fn older_than(&self, other: &Entry) -> bool {
        match (
            self.resource_version.as_deref().map(str::parse::<u64>),
            other.resource_version.as_deref().map(str::parse::<u64>),
        ) {
            (Some(Ok(mine)), Some(Ok(theirs))) => mine < theirs,
            _ => false,
        }
    }
}

type Key = (String, String);

/// What one leadership term knows: every Service and Namespace, and what
/// was reported.
#[derive(Default)]
struct Term {
    services: BTreeMap<Key, Entry>,
    /// A relist in progress: swapped in at its end.
    relisting: Option<BTreeMap<Key, Entry>>,
    services_synced: bool,
    namespaces: NamespaceLabels,
    namespaces_relisting: Option<NamespaceLabels>,
    namespaces_synced: bool,
    /// Services served this term that may need a release later.
    served: BTreeSet<String>,
    /// What was last reported per Service (refusal and mismatch notes).
    reported: HashMap<Key, Vec<String>>,
    /// Failed writes per Service, with the resource version they were for.
    failures: HashMap<Key, (Option<String>, u32)>,
    /// When to compute again for a retry.
    retry_at: Option<tokio::time::Instant>,
}

impl Term {
    fn service_event(&mut self, event: Event<Service>) {
        match event {
            Event::Init => self.relisting = Some(BTreeMap::new()),
            Event::InitApply(service) => {
                if let Some(map) = &mut self.relisting {
                    map.insert(key_of(&service), Entry::of(&service));
                }
            }
            Event::InitDone => {
                if let Some(mut map) = self.relisting.take() {
                    // A write of this leader that the list did not see yet
                    // (sent while the list was read) stays: forgetting it
                    // would offer its address to another Service.
                    for (key, entry) in map.iter_mut() {
                        if let Some(held) = self.services.get(key)
                            && entry.older_than(held)
                        {
                            *entry = held.clone();
                        }
                    }
                    self.services = map;
                }
                self.services_synced = true;
            }
            Event::Apply(service) => self.store(&service),
            Event::Delete(service) => {
                let key = key_of(&service);
                self.services.remove(&key);
                self.reported.remove(&key);
                self.failures.remove(&key);
                self.served.remove(&format!("{}/{}", key.0, key.1));
            }
        }
    }

    /// Keeps `service` unless the book already holds a newer copy (the
    /// answer of this leader's own write).
    fn store(&mut self, service: &Service) {
        let entry = Entry::of(service);
        let key = key_of(service);
        if self
            .services
            .get(&key)
            .is_none_or(|held| !entry.older_than(held))
        {
            self.services.insert(key, entry);
        }
    }

    fn namespace_event(&mut self, event: Event<Namespace>) {
        let labels = |n: &Namespace| {
            (
                n.metadata.name.clone().unwrap_or_default(),
                n.metadata.labels.clone().unwrap_or_default(),
            )
        };
        match event {
            Event::Init => self.namespaces_relisting = Some(NamespaceLabels::new()),
            Event::InitApply(n) => {
                if let Some(map) = &mut self.namespaces_relisting {
                    let (name, l) = labels(&n);
                    map.insert(name, l);
                }
            }
            Event::InitDone => {
                if let Some(map) = self.namespaces_relisting.take() {
                    self.namespaces = map;
                }
                self.namespaces_synced = true;
            }
            Event::Apply(n) => {
                let (name, l) = labels(&n);
                self.namespaces.insert(name, l);
            }
            Event::Delete(n) => {
                self.namespaces.remove(&labels(&n).0);
            }
        }
    }
}

fn key_of(service: &Service) -> Key {
    (
        service.metadata.namespace.clone().unwrap_or_default(),
        service.metadata.name.clone().unwrap_or_default(),
    )
}

/// One status write: the Service, the resource version it was computed
/// from, the ingress to write, and the Events to record once it is written.
struct Write {
    key: Key,
    resource_version: Option<String>,
    ingress: Vec<LoadBalancerIngress>,
    events: Vec<PlannedEvent>,
}

enum WriteOutcome {
    Written(Box<Service>),
    /// The Service changed or went away meanwhile: computed again from the
    /// watch's newer copy.
    Stale,
    /// Worth trying again later (429, 5xx, transport).
    Retry(String),
    /// Refused for good (400, 403, 422): retrying the same write cannot
    /// help.
    Failed(String),
    /// The Lease was lost before the write was sent.
    NotLeading,
}

impl Controller {
    async fn run(mut self) {
        loop {
            // Wait to lead. A closed channel ends the controller.
            if self.leader.wait_for(|leading| *leading).await.is_err() {
                return;
            }
            self.set_leading(true);
            tracing::info!("this herald pod allocates LoadBalancer addresses (it holds the Lease)");
            self.term().await;
            self.set_leading(false);
            tracing::info!("this herald pod no longer allocates (the Lease is lost or given up)");
        }
    }

    fn set_leading(&self, leading: bool) {
        let mut report = self.report.lock().unwrap_or_else(|p| p.into_inner());
        report.leading = leading;
        if !leading {
            report.synced = false;
        }
    }

    fn leading(&self) -> bool {
        *self.leader.borrow()
    }

    /// One leadership term: a fresh consistent list, then allocate on every
    /// change until the Lease is lost.
    async fn term(&mut self) {
        // `resourceVersion=""`: a consistent read, so this term sees every
        // write the previous leader made before it stopped.
        let consistent =
            watcher::Config::default().list_semantic(watcher::ListSemantic::MostRecent);
        let mut services =
            watcher::watcher(Api::<Service>::all(self.client.clone()), consistent.clone())
                .default_backoff()
                .boxed();
        let mut namespaces =
            watcher::watcher(Api::<Namespace>::all(self.client.clone()), consistent)
                .default_backoff()
                .boxed();
        let mut term = Term::default();
        let mut leader = self.leader.clone();
        loop {
            let mut dirty = false;
            let retry = term.retry_at;
            tokio::select! {
                biased;
                changed = leader.changed() => {
                    if changed.is_err() || !*leader.borrow_and_update() {
                        return;
                    }
                }
                event = services.next() => match event {
                    Some(Ok(event)) => { term.service_event(event); dirty = true; }
                    Some(Err(error)) => tracing::warn!(%error, "the allocator's Service watch failed; retrying with backoff"),
                    None => return,
                },
                event = namespaces.next() => match event {
                    Some(Ok(event)) => { term.namespace_event(event); dirty = true; }
                    Some(Err(error)) => tracing::warn!(%error, "the allocator's Namespace watch failed; retrying with backoff"),
                    None => return,
                },
                changed = self.config.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    dirty = true;
                }
                _ = sleep_until(retry), if retry.is_some() => {
                    term.retry_at = None;
                    dirty = true;
                }
            }
            // Take the rest of a burst that is already here, then compute
            // once for all of it.
            while let Some(Some(Ok(event))) = services.next().now_or_never() {
                term.service_event(event);
            }
            while let Some(Some(Ok(event))) = namespaces.next().now_or_never() {
                term.namespace_event(event);
            }
            if !dirty || !term.services_synced || !term.namespaces_synced {
                continue;
            }
            if !self.leading() {
                return;
            }
            self.report.lock().unwrap_or_else(|p| p.into_inner()).synced = true;
            self.reconcile(&mut term).await;
        }
    }

    /// Computes the allocation over the book and writes what differs.
    async fn reconcile(&mut self, term: &mut Term) {
        let config = self.config.borrow().clone();
        if !config.allocation.enabled {
            // Turned off by a reload: nothing is written (and nothing taken
            // back: the addresses stay with their Services).
            return;
        }
        let inputs: Vec<ServiceInput> = term.services.values().map(|e| e.input.clone()).collect();
        let allocation = allocate(
            &inputs,
            &config.pools,
            &term.namespaces,
            &config.allocation,
            &term.served,
        );
        self.metrics.observe(&allocation);
        let mut writes = Vec::new();
        let mut events = Vec::new();
        let mut ours = 0u64;
        let mut refused = 0u64;
        for service in &allocation.services {
            let key = (service.namespace.clone(), service.name.clone());
            let Some(entry) = term.services.get(&key) else {
                continue;
            };
            let reference = ServiceRef {
                namespace: service.namespace.clone(),
                name: service.name.clone(),
                uid: service.uid.clone(),
            };
            match &service.verdict {
                Verdict::Serve {
                    addresses,
                    refusal,
                    mismatches,
                } => {
                    ours += 1;
                    refused += u64::from(refusal.is_some());
                    term.served.insert(format!("{}/{}", key.0, key.1));
                    // Refusals and mismatches: reported when they change.
                    let notes: Vec<String> = refusal
                        .iter()
                        .map(|r| format!("{}\u{0}{r}", r.code()))
                        .chain(
                            mismatches
                                .iter()
                                .map(|m| format!("AddressMismatch\u{0}{m}")),
                        )
                        .collect();
                    if term.reported.get(&key) != Some(&notes) {
                        for note in &notes {
                            let (reason, text) = note.split_once('\u{0}').unwrap_or(("", note));
                            events.push(warning(&reference, reason, text));
                        }
                        term.reported.insert(key.clone(), notes);
                    }
                    let want: Vec<IpAddr> = addresses.iter().map(|a| a.address).collect();
                    let have: Vec<IpAddr> = entry
                        .ingress
                        .iter()
                        .filter_map(|i| i.ip.as_deref()?.trim().parse().ok())
                        .collect();
                    let hostnames = entry.ingress.iter().any(|i| i.ip.is_none());
                    if want == have && !hostnames {
                        continue;
                    }
                    let announced = addresses
                        .iter()
                        .filter(|a| a.new)
                        .map(|a| PlannedEvent {
                            service: reference.clone(),
                            warning: false,
                            reason: "AddressAllocated".to_string(),
                            action: "Allocate",
                            note: match &a.pool {
                                Some(pool) => format!("allocated {} from pool {pool}", a.address),
                                None => format!("allocated {}", a.address),
                            },
                            cluster_wide: false,
                        })
                        .collect();
                    writes.push(Write {
                        key,
                        resource_version: entry.resource_version.clone(),
                        ingress: want
                            .iter()
                            .map(|ip| LoadBalancerIngress {
                                ip: Some(ip.to_string()),
                                ..LoadBalancerIngress::default()
                            })
                            .collect(),
                        events: announced,
                    });
                }
                Verdict::Release { addresses } => {
                    let released: BTreeSet<String> =
                        addresses.iter().map(ToString::to_string).collect();
                    let kept: Vec<LoadBalancerIngress> = entry
                        .ingress
                        .iter()
                        .filter(|i| {
                            i.ip.as_deref()
                                .and_then(|ip| ip.trim().parse::<IpAddr>().ok())
                                .is_none_or(|ip| !released.contains(&ip.to_string()))
                        })
                        .cloned()
                        .collect();
                    writes.push(Write {
                        key,
                        resource_version: entry.resource_version.clone(),
                        ingress: kept,
                        events: vec![PlannedEvent {
                            service: reference,
                            warning: false,
                            reason: "AddressReleased".to_string(),
                            action: "Release",
                            note: format!(
                                "released {}: the Service is no longer a herald LoadBalancer",
                                addresses
                                    .iter()
                                    .map(ToString::to_string)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            cluster_wide: false,
                        }],
                    });
                }
            }
        }
        {
            let mut report = self.report.lock().unwrap_or_else(|p| p.into_inner());
            let clamp = |n: u128| u64::try_from(n).unwrap_or(u64::MAX);
            report.pools = allocation
                .pools
                .iter()
                .map(|pool| AllocationPoolStatus {
                    name: pool.name.clone(),
                    size: clamp(pool.size),
                    in_use: clamp(pool.in_use),
                })
                .collect();
            report.services = ours;
            report.refused = refused;
        }
        for event in events {
            self.record(event);
        }
        // Skip Services whose retries are spent at this resource version.
        writes.retain(|write| {
            term.failures
                .get(&write.key)
                .is_none_or(|(rv, count)| *rv != write.resource_version || *count < WRITE_RETRIES)
        });
        if writes.is_empty() {
            return;
        }
        let api: Api<Service> = Api::all(self.client.clone());
        let leader = self.leader.clone();
        let outcomes: Vec<(Write, WriteOutcome)> = futures::stream::iter(writes)
            .map(|write| {
                let api = api.clone();
                let leader = leader.clone();
                async move {
                    let outcome = write_status(&api, &leader, &write).await;
                    (write, outcome)
                }
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        for (write, outcome) in outcomes {
            match outcome {
                WriteOutcome::Written(service) => {
                    self.count("ok");
                    term.failures.remove(&write.key);
                    term.store(&service);
                    if matches!(
                        allocation.get(&write.key.0, &write.key.1),
                        Some(Verdict::Release { .. })
                    ) {
                        term.served
                            .remove(&format!("{}/{}", write.key.0, write.key.1));
                    }
                    for event in write.events {
                        self.record(event);
                    }
                }
                WriteOutcome::Stale => {
                    self.count("conflict");
                    self.note_failure(term, &write, None);
                }
                WriteOutcome::Retry(error) => {
                    self.count("failed");
                    self.note_failure(term, &write, Some(error));
                }
                WriteOutcome::Failed(error) => {
                    self.count("failed");
                    tracing::warn!(service = %format!("{}/{}", write.key.0, write.key.1), %error,
                        "could not write the Service's load-balancer status; not retried until it changes");
                    term.failures.insert(
                        write.key.clone(),
                        (write.resource_version.clone(), WRITE_RETRIES),
                    );
                    self.report
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .last_error = Some(error);
                }
                WriteOutcome::NotLeading => return,
            }
        }
    }

    /// Counts a failed write and schedules another computation, with a
    /// doubling pause, until the retries for this resource version are spent.
    fn note_failure(&self, term: &mut Term, write: &Write, error: Option<String>) {
        let entry = term
            .failures
            .entry(write.key.clone())
            .or_insert((write.resource_version.clone(), 0));
        if entry.0 != write.resource_version {
            *entry = (write.resource_version.clone(), 0);
        }
        entry.1 += 1;
        let pause = RETRY_PAUSE * 2u32.pow(entry.1.saturating_sub(1).min(6));
        if entry.1 >= WRITE_RETRIES
            && let Some(error) = &error
        {
            tracing::warn!(service = %format!("{}/{}", write.key.0, write.key.1), %error,
                "gave up writing the Service's load-balancer status after {WRITE_RETRIES} tries; tried again when it changes");
            self.report
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last_error = Some(error.clone());
        }
        let at = tokio::time::Instant::now() + pause;
        term.retry_at = Some(term.retry_at.map_or(at, |t| t.min(at)));
    }

    fn count(&self, result: &'static str) {
        self.metrics
            .status_writes
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    fn record(&self, event: PlannedEvent) {
        if self.events.try_send(event).is_err() {
            self.metrics.events_failed.inc();
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A Warning about a refusal or a mismatch.
fn warning(service: &ServiceRef, reason: &str, note: &str) -> PlannedEvent {
    PlannedEvent {
        service: service.clone(),
        warning: true,
        reason: reason.to_string(),
        action: "Allocate",
        note: note.to_string(),
        cluster_wide: false,
    }
}

/// `PATCH /api/v1/namespaces/{ns}/services/{name}/status`, a merge patch
/// that replaces `status.loadBalancer.ingress`, with the resource version
/// as a precondition (the API server answers 409 if the Service changed
/// since). Sent only while this pod still leads.
async fn write_status(
    api: &Api<Service>,
    leader: &watch::Receiver<bool>,
    write: &Write,
) -> WriteOutcome {
    if !*leader.borrow() {
        return WriteOutcome::NotLeading;
    }
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": write.resource_version},
        "status": {"loadBalancer": {"ingress": write.ingress}},
    });
    let namespaced: Api<Service> = Api::namespaced(api.clone().into_client(), &write.key.0);
    match namespaced
        .patch_status(&write.key.1, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(service) => WriteOutcome::Written(Box::new(service)),
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
            WriteOutcome::Stale
        }
        Err(kube::Error::Api(status)) if status.code == 429 || status.code >= 500 => {
            WriteOutcome::Retry(format!(
                "{} {}: {}",
                status.code, status.reason, status.message
            ))
        }
        Err(kube::Error::Api(status)) => WriteOutcome::Failed(format!(
            "{} {}: {}",
            status.code, status.reason, status.message
        )),
        Err(error) => WriteOutcome::Retry(error.to_string()),
    }
}

/// Records planned Events one by one; a failure is counted and logged at
/// debug level (the next change reports again).
async fn publish_events(
    publisher: EventPublisher,
    mut events: mpsc::Receiver<PlannedEvent>,
    metrics: AllocatorMetrics,
) {
    while let Some(event) = events.recv().await {
        if let Err(error) = publisher.publish(&event).await {
            metrics.events_failed.inc();
            tracing::debug!(service = %event.service, reason = %event.reason, %error, "could not record an allocation Event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, resource_version: &str, ingress: &[&str]) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "shop", "resourceVersion": resource_version},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "herald.dev/bgp"},
            "status": {"loadBalancer": {"ingress": ingress.iter().map(|ip| serde_json::json!({"ip": ip})).collect::<Vec<_>>()}},
        }))
        .unwrap()
    }

    fn ingress(term: &Term, name: &str) -> Vec<String> {
        term.services[&("shop".to_string(), name.to_string())]
            .input
            .ingress
            .clone()
    }

    #[test]
    fn the_book_never_goes_back_to_an_older_copy_of_a_service() {
        let mut term = Term::default();
        term.service_event(Event::Init);
        term.service_event(Event::InitApply(service("web", "10", &[])));
        assert!(
            !term.services_synced,
            "nothing is known before the list ends"
        );
        term.service_event(Event::InitDone);
        assert!(term.services_synced);
        // This leader's write came back as resourceVersion 12.
        term.store(&service("web", "12", &["203.0.113.1"]));
        // A watch event from before the write arrives late: ignored.
        term.service_event(Event::Apply(service("web", "11", &[])));
        assert_eq!(ingress(&term, "web"), ["203.0.113.1"]);
        // The event of the write itself, and newer ones, are taken.
        term.service_event(Event::Apply(service("web", "13", &["203.0.113.1"])));
        assert_eq!(
            term.services[&("shop".into(), "web".into())]
                .resource_version
                .as_deref(),
            Some("13")
        );
        // A relist read before a later write: the write is kept.
        term.store(&service("web", "20", &["203.0.113.2"]));
        term.service_event(Event::Init);
        term.service_event(Event::InitApply(service("web", "15", &["203.0.113.1"])));
        term.service_event(Event::InitApply(service("api", "16", &[])));
        term.service_event(Event::InitDone);
        assert_eq!(ingress(&term, "web"), ["203.0.113.2"]);
        assert!(term.services.contains_key(&("shop".into(), "api".into())));
        // A relist that no longer has a Service drops it.
        term.service_event(Event::Init);
        term.service_event(Event::InitApply(service("api", "21", &[])));
        term.service_event(Event::InitDone);
        assert_eq!(term.services.len(), 1);
        // Deleted: gone, with what was reported about it.
        term.reported
            .insert(("shop".into(), "api".into()), vec!["x".into()]);
        term.service_event(Event::Delete(service("api", "22", &[])));
        assert!(term.services.is_empty() && term.reported.is_empty());
    }
}
