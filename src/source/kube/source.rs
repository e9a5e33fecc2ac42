//! The running Kubernetes source: three watches into reflector stores, and one
//! task that turns the stores into the desired set.
//!
//! ```text
//!  watcher(Services)        --strip--> reflector store --\
//!  watcher(EndpointSlices)  --strip--> reflector store ----> change signal (coalesced)
//!  watcher(this Node)       --strip--> reflector store --/         |
//!  watcher(Namespaces)      --strip--> reflector store -/          |
//!        each also feeds SourceHealth + metrics                    v
//!                                       desired task: wait `debounce`, then if every
//!  config (pools, selection) --watch--> store has listed once and the Node is known:
//!                                       the changed Services -> IncrementalEvaluation -> Desired
//!                                         |-> watch channels (only on change): the policy's
//!                                         |   answer, and the same as `source::Desired` for the agent
//!                                         \-> EventLedger -> events channel -> EventPublisher
//! ```
//!
//! Incremental evaluation: each watch event names what changed (a Service, a
//! slice: see [`Dirty`]); the desired task decides again only the Services
//! named, directly or through their slices (a slice whose service-name label
//! changed names both its old and its new Service). Everything is decided
//! again when the Node changes, when the policy config changes, and after a
//! relist (the store was swapped whole).
//!
//! Static stability: nothing is handed to the agent before every watch has
//! completed its first list; after that, kube's reflector swaps a relist into
//! the store only at `InitDone` (the old contents stay readable until then),
//! and a failed watch leaves the store untouched while the watcher backs off.
//! So a watch failure or an API outage never shrinks the desired set: the last
//! one stays in the channel, and the source converges when the watches
//! succeed again. Health and staleness are in [`KubeSource::report`].
//!
//! Owns: the tasks and channels above. Must not touch: netlink or BGP.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector as reflect};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::PoolConfig;
use crate::policy::endpoints::SERVICE_NAME_LABEL;
use crate::policy::{
    Desired, IncrementalEvaluation, NamespaceLabels, Outcome, SelectionConfig, ServiceKey, Snapshot,
};
use crate::source::Candidate;
use crate::source::kube::events::{EventLedger, EventPublisher, PlannedEvent};
use crate::source::kube::health::{Resource, SourceHealth, SourceReport, WatchSignal};
use crate::source::kube::metrics::{Metrics, ResourceLabels};
use crate::source::kube::observe::ObserveLayer;
use crate::source::kube::slice_index::SliceIndex;
use crate::source::kube::strip;

/// What the policy needs from the configuration file; the agent sends a new
/// one on reload.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyConfig {
    pub pools: Vec<PoolConfig>,
    pub selection: SelectionConfig,
}

/// How many planned events may wait for the publisher before new ones are
/// dropped (and counted in `herald_kube_events_failed_total`).
const EVENT_QUEUE: usize = 1024;

/// The watch streams, as `kube::runtime::watcher` produces them.
pub type WatchStream<K> =
    std::pin::Pin<Box<dyn Stream<Item = watcher::Result<Event<K>>> + Send + 'static>>;

/// The Kubernetes source: owns its tasks (aborted on drop).
pub struct KubeSource {
    desired: watch::Receiver<Option<Arc<Desired>>>,
    source_desired: watch::Receiver<Arc<crate::source::Desired>>,
    node_labels: watch::Receiver<Option<std::collections::BTreeMap<String, String>>>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The watch streams of a source.
pub struct WatchStreams {
    pub services: WatchStream<Service>,
    pub slices: WatchStream<EndpointSlice>,
    pub nodes: WatchStream<Node>,
    /// Namespaces (their labels, for the pools' `namespace_selector`).
    pub namespaces: WatchStream<Namespace>,
}

/// What changed since the desired task last looked: filled by the watch
/// tasks (after the store holds the change), taken by the desired task.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    /// Decide everything again (Node changed, a store was relisted).
    all: bool,
    /// Services whose object changed or went away.
    services: HashSet<ServiceKey>,
    /// Slices (namespace, name) that changed or went away.
    slices: HashSet<(String, String)>,
}

impl Dirty {
    fn service(&mut self, event: &Event<Service>) {
        match event {
            Event::Apply(service) | Event::Delete(service) => {
                self.services.insert(ServiceKey::of_service(service));
            }
            Event::InitDone => self.all = true,
            Event::Init | Event::InitApply(_) => {}
        }
    }

    fn slice(&mut self, event: &Event<EndpointSlice>) {
        match event {
            Event::Apply(slice) | Event::Delete(slice) => {
                self.slices.insert((
                    slice.metadata.namespace.clone().unwrap_or_default(),
                    slice.metadata.name.clone().unwrap_or_default(),
                ));
            }
            Event::InitDone => self.all = true,
            Event::Init | Event::InitApply(_) => {}
        }
    }

    fn node(&mut self, event: &Event<Node>) {
        if matches!(event, Event::Apply(_) | Event::Delete(_) | Event::InitDone) {
            self.all = true;
        }
    }

    /// A Namespace's labels may change which pools its Services may use.
    fn namespace(&mut self, event: &Event<Namespace>) {
        if matches!(event, Event::Apply(_) | Event::Delete(_) | Event::InitDone) {
            self.all = true;
        }
    }
}

/// State the tasks (and the client middleware) share.
pub(crate) struct Shared {
    health: Mutex<SourceHealth>,
    dirty: Mutex<Dirty>,
    metrics: Metrics,
}

impl Shared {
    fn new(metrics: Metrics) -> Arc<Self> {
        Arc::new(Shared {
            health: Mutex::new(SourceHealth::default()),
            dirty: Mutex::new(Dirty::default()),
            metrics,
        })
    }

    fn mark(&self, mark: impl FnOnce(&mut Dirty)) {
        mark(&mut self.dirty.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn take_dirty(&self) -> Dirty {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn now() -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }

    pub(crate) fn observe(&self, resource: Resource, signal: WatchSignal, error: Option<&str>) {
        let healthy = {
            let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
            health.observe(resource, signal, error, Self::now());
            health.watch(resource).healthy()
        };
        let labels = ResourceLabels {
            resource: resource.as_str(),
        };
        let metrics = &self.metrics;
        metrics
            .watch_healthy
            .get_or_create(&labels)
            .set(i64::from(healthy));
        match signal {
            WatchSignal::Failed => {
                metrics.watch_errors.get_or_create(&labels).inc();
            }
            WatchSignal::ListDone => {
                metrics.relists.get_or_create(&labels).inc();
            }
            _ => {}
        }
        if signal != WatchSignal::Failed {
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default();
            metrics.last_success.get_or_create(&labels).set(unix);
        }
    }
}

impl KubeSource {
    /// Connects to the API server `config` describes (in-cluster service
    /// account or kubeconfig: `kube::Config::infer()`) and starts the watches.
    pub fn spawn(
        config: kube::Config,
        node: &str,
        policy: watch::Receiver<PolicyConfig>,
        metrics: Metrics,
    ) -> Result<Self, kube::Error> {
        let shared = Shared::new(metrics.clone());
        let client = kube::client::ClientBuilder::try_from(config)?
            .with_layer(&ObserveLayer {
                shared: shared.clone(),
            })
            .build();
        let services = watcher::watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .boxed();
        let slices = watcher::watcher(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default().labels(SERVICE_NAME_LABEL),
        )
        .default_backoff()
        .boxed();
        let nodes = watcher::watcher(
            Api::<Node>::all(client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={node}")),
        )
        .default_backoff()
        .boxed();
        let namespaces = watcher::watcher(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .boxed();
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let mut source = Self::start(
            WatchStreams {
                services,
                slices,
                nodes,
                namespaces,
            },
            node,
            policy,
            shared,
            Some(events_tx),
        );
        let publisher = EventPublisher::new(client.clone(), node);
        source
            .tasks
            .push(tokio::spawn(publish_events(publisher, events_rx, metrics)));
        source
            .tasks
            .push(tokio::spawn(probe_api(client, source.shared.clone())));
        Ok(source)
    }

    /// Runs the source on given watch streams (tests feed synthetic ones).
    /// Planned events go to `events` when given.
    pub fn from_streams(
        streams: WatchStreams,
        node: &str,
        policy: watch::Receiver<PolicyConfig>,
        metrics: Metrics,
        events: Option<mpsc::Sender<PlannedEvent>>,
    ) -> Self {
        Self::start(streams, node, policy, Shared::new(metrics), events)
    }

    fn start(
        streams: WatchStreams,
        node: &str,
        config: watch::Receiver<PolicyConfig>,
        shared: Arc<Shared>,
        events: Option<mpsc::Sender<PlannedEvent>>,
    ) -> Self {
        let WatchStreams {
            services,
            slices,
            nodes,
            namespaces,
        } = streams;
        // Capacity 1 and try_send: any number of changes while the desired
        // task is busy collapse into one pending signal.
        let (changed_tx, changed_rx) = mpsc::channel(1);
        let (service_store, service_writer) = reflector::store();
        let (slice_store, slice_writer) = reflector::store();
        let (node_store, node_writer) = reflector::store();
        let (namespace_store, namespace_writer) = reflector::store();
        let slice_node = node.to_string();
        let tasks = vec![
            tokio::spawn(reflect_into(
                Resource::Services,
                services,
                service_writer,
                strip::service,
                Dirty::service,
                shared.clone(),
                changed_tx.clone(),
            )),
            tokio::spawn(reflect_into(
                Resource::EndpointSlices,
                slices,
                slice_writer,
                move |s: &mut EndpointSlice| strip::endpoint_slice(s, &slice_node),
                Dirty::slice,
                shared.clone(),
                changed_tx.clone(),
            )),
            tokio::spawn(reflect_into(
                Resource::Node,
                nodes,
                node_writer,
                strip::node,
                Dirty::node,
                shared.clone(),
                changed_tx.clone(),
            )),
            tokio::spawn(reflect_into(
                Resource::Namespaces,
                namespaces,
                namespace_writer,
                strip::namespace,
                Dirty::namespace,
                shared.clone(),
                changed_tx,
            )),
        ];
        let (desired_tx, desired_rx) = watch::channel(None);
        let (source_desired_tx, source_desired_rx) = watch::channel(Arc::default());
        let (labels_tx, labels_rx) = watch::channel(None);
        let desired_task = DesiredTask {
            node_labels: labels_tx,
            node: node.to_string(),
            services: service_store,
            slices: slice_store,
            nodes: node_store,
            namespaces: namespace_store,
            namespace_labels: Arc::default(),
            shared: shared.clone(),
            desired: desired_tx,
            source_desired: source_desired_tx,
            events,
            ledger: EventLedger::new(node),
            evaluation: None,
            slice_index: SliceIndex::default(),
        };
        let mut tasks = tasks;
        tasks.push(tokio::spawn(desired_task.run(changed_rx, config)));
        KubeSource {
            desired: desired_rx,
            source_desired: source_desired_rx,
            node_labels: labels_rx,
            shared,
            tasks,
        }
    }

    /// The desired set: `None` until every watch has listed once, then the
    /// latest (kept through API outages).
    pub fn desired(&self) -> watch::Receiver<Option<Arc<Desired>>> {
        self.desired.clone()
    }

    /// The same desired set in the sources layer's terms (what the agent
    /// reads): announcements `None` until every watch has listed once.
    pub fn source_desired(&self) -> watch::Receiver<Arc<crate::source::Desired>> {
        self.source_desired.clone()
    }

    /// This Node's labels (for the peers' `node_selector`): `None` until
    /// the stores are complete and the Node is known, then the latest.
    pub fn node_labels(
        &self,
    ) -> watch::Receiver<Option<std::collections::BTreeMap<String, String>>> {
        self.node_labels.clone()
    }

    /// Health and staleness, for `/readyz` and `/status`.
    pub fn report(&self) -> SourceReport {
        self.shared
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .report(Shared::now())
    }
}

/// Feeds one watch into its store and reports what happened.
async fn reflect_into<K>(
    resource: Resource,
    stream: WatchStream<K>,
    writer: reflector::store::Writer<K>,
    strip: impl FnMut(&mut K) + Send + 'static,
    mark: fn(&mut Dirty, &Event<K>),
    shared: Arc<Shared>,
    changed: mpsc::Sender<()>,
) where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let mut stream = std::pin::pin!(reflect(writer, stream.modify(strip)));
    while let Some(item) = stream.next().await {
        let (signal, error) = match &item {
            Ok(Event::Init) => (WatchSignal::ListStarted, None),
            Ok(Event::InitApply(_)) => (WatchSignal::Listed, None),
            Ok(Event::InitDone) => (WatchSignal::ListDone, None),
            Ok(Event::Apply(_) | Event::Delete(_)) => (WatchSignal::Changed, None),
            Err(e) => (WatchSignal::Failed, Some(e.to_string())),
        };
        if let Some(error) = &error {
            tracing::warn!(resource = resource.as_str(), %error, "kubernetes watch failed; keeping the last known state");
        }
        shared.observe(resource, signal, error.as_deref());
        if let Ok(event) = &item {
            // The store already holds this change: mark it, then signal.
            shared.mark(|dirty| mark(dirty, event));
        }
        if matches!(signal, WatchSignal::ListDone | WatchSignal::Changed) {
            let _ = changed.try_send(());
        }
    }
}

/// The one task that reads the stores and produces the desired set.
struct DesiredTask {
    node: String,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    namespaces: Store<Namespace>,
    /// The Namespaces' labels as of the last complete evaluation.
    namespace_labels: Arc<NamespaceLabels>,
    shared: Arc<Shared>,
    desired: watch::Sender<Option<Arc<Desired>>>,
    source_desired: watch::Sender<Arc<crate::source::Desired>>,
    node_labels: watch::Sender<Option<std::collections::BTreeMap<String, String>>>,
    events: Option<mpsc::Sender<PlannedEvent>>,
    ledger: EventLedger,
    /// The per-Service results and the config they were computed with;
    /// `None` until the first complete evaluation (or after one was missed).
    evaluation: Option<(IncrementalEvaluation, PolicyConfig)>,
    /// Which Service each slice belongs to, and the reverse, as of the last
    /// evaluation.
    slice_index: SliceIndex,
}

impl DesiredTask {
    async fn run(
        mut self,
        mut changed: mpsc::Receiver<()>,
        mut config: watch::Receiver<PolicyConfig>,
    ) {
        let mut config_open = true;
        loop {
            tokio::select! {
                signal = changed.recv() => {
                    if signal.is_none() {
                        return; // every watch ended
                    }
                }
                result = config.changed(), if config_open => {
                    config_open = result.is_ok();
                }
            }
            let policy = config.borrow_and_update().clone();
            // Collect the rest of a burst: at most `debounce` after the first
            // change, however many follow.
            tokio::time::sleep(policy.selection.debounce).await;
            while changed.try_recv().is_ok() {}
            self.update(&policy);
        }
    }

    /// Evaluates the policy if the stores are complete (only the Services
    /// that changed, when it can); hands on a changed result.
    fn update(&mut self, policy: &PolicyConfig) {
        let dirty = self.shared.take_dirty();
        let synced = self
            .shared
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .all_synced();
        if !synced {
            self.evaluation = None;
            return;
        }
        let Some(node) = self.nodes.get(&ObjectRef::new(&self.node)) else {
            // Unknown node: keep the last desired set rather than guess.
            tracing::warn!(node = %self.node, "this node is not in the API; keeping the last desired set");
            self.evaluation = None;
            return;
        };
        let labels = node.metadata.labels.clone().unwrap_or_default();
        self.node_labels.send_if_modified(|current| {
            let changed = current.as_ref() != Some(&labels);
            if changed {
                *current = Some(labels);
            }
            changed
        });
        let incremental = !dirty.all
            && self
                .evaluation
                .as_ref()
                .is_some_and(|(_, evaluated_with)| evaluated_with == policy);
        if incremental {
            if !self.update_changed(&node, policy, dirty) {
                return;
            }
        } else {
            self.evaluate_all(node, policy);
        }
        let Some((evaluation, _)) = &self.evaluation else {
            return;
        };
        // Shares every Service's decisions with the evaluation: no copy.
        let desired = evaluation.desired();
        if !incremental && self.desired.borrow().as_deref() == Some(&desired) {
            return;
        }
        self.shared.metrics.observe_desired(&desired);
        let problem_before = self
            .desired
            .borrow()
            .as_ref()
            .and_then(|d| d.node_weight_problem.clone());
        if desired.node_weight_problem != problem_before {
            match &desired.node_weight_problem {
                Some(problem) => tracing::warn!(node = %self.node, "{problem}"),
                None if problem_before.is_some() => {
                    tracing::info!(node = %self.node, "the node weight annotation is valid again, or gone")
                }
                None => {}
            }
        }
        if let Some(events) = &self.events {
            for event in self.ledger.plan(&desired) {
                if events.try_send(event).is_err() {
                    self.shared.metrics.events_failed.inc();
                }
            }
        }
        self.source_desired
            .send_replace(Arc::new(source_desired(&desired)));
        self.desired.send_replace(Some(Arc::new(desired)));
        self.shared
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .desired_sent(Shared::now());
    }

    /// Decides every Service, and indexes which slices belong to which.
    fn evaluate_all(&mut self, node: Arc<Node>, policy: &PolicyConfig) {
        self.namespace_labels = Arc::new(
            self.namespaces
                .state()
                .iter()
                .map(|n| {
                    (
                        n.metadata.name.clone().unwrap_or_default(),
                        n.metadata.labels.clone().unwrap_or_default(),
                    )
                })
                .collect(),
        );
        let snapshot = Snapshot {
            services: self.services.state(),
            endpoint_slices: self.slices.state(),
            node,
            namespaces: self.namespace_labels.clone(),
        };
        self.slice_index.clear();
        for slice in &snapshot.endpoint_slices {
            if let Some(owner) = ServiceKey::of_slice(slice) {
                let name = slice.metadata.name.clone().unwrap_or_default();
                self.slice_index
                    .set((owner.namespace.clone(), name), Some(owner));
            }
        }
        let evaluation =
            IncrementalEvaluation::evaluate_all(&snapshot, &policy.pools, &policy.selection);
        self.evaluation = Some((evaluation, policy.clone()));
    }

    /// Decides again the Services named by `dirty`, directly or through
    /// their slices. False when the desired set did not change.
    fn update_changed(&mut self, node: &Node, policy: &PolicyConfig, dirty: Dirty) -> bool {
        let mut changed: BTreeSet<ServiceKey> = dirty.services.into_iter().collect();
        for (namespace, name) in dirty.slices {
            let now = self.slices.get(&ObjectRef::new(&name).within(&namespace));
            let owner_now = now.as_deref().and_then(ServiceKey::of_slice);
            if let Some(before) = self.slice_index.set((namespace, name), owner_now.clone()) {
                changed.insert(before);
            }
            changed.extend(owner_now);
        }
        if changed.is_empty() {
            return false;
        }
        let Some((evaluation, _)) = &mut self.evaluation else {
            return false;
        };
        let services: Vec<(ServiceKey, Option<Arc<Service>>)> = changed
            .into_iter()
            .map(|key| {
                let service = self
                    .services
                    .get(&ObjectRef::new(&key.name).within(&key.namespace));
                (key, service)
            })
            .collect();
        let slices: Vec<Arc<EndpointSlice>> = services
            .iter()
            .flat_map(|(key, _)| {
                self.slice_index.slices_of(key).iter().filter_map(|name| {
                    self.slices
                        .get(&ObjectRef::new(name).within(&key.namespace))
                })
            })
            .collect();
        evaluation.update(
            node,
            &self.namespace_labels,
            &policy.pools,
            &policy.selection,
            services
                .iter()
                .map(|(key, service)| (key.clone(), service.as_deref()))
                .collect(),
            slices.iter().map(|slice| &**slice),
        )
    }
}

/// The policy's answer in the sources layer's terms: each address typed
/// (text that is not an IP has no row: `/status` lists addresses; its
/// Event says what is wrong), the refusal in words, the node exclusion as
/// a flag.
fn source_desired(desired: &Desired) -> crate::source::Desired {
    crate::source::Desired {
        announcements: Some(desired.announcements.clone()),
        candidates: desired
            .decisions()
            .filter_map(|decision| {
                let (pool, refusal) = match &decision.outcome {
                    Outcome::Announced { pool } => (Some(pool.clone()), None),
                    Outcome::Refused(refusal) => (None, Some(refusal.to_string())),
                };
                Some(Candidate {
                    address: decision.ip?,
                    service: decision.service.to_string(),
                    pool,
                    refusal,
                })
            })
            .collect(),
        node_excluded: desired.node_excluded.is_some(),
    }
}

/// Records planned events one by one; a failure is logged and counted, never
/// retried (the next change reports again).
async fn publish_events(
    publisher: EventPublisher,
    mut events: mpsc::Receiver<PlannedEvent>,
    metrics: Metrics,
) {
    // Each kind of refusal is logged once at warn level (then at debug), so
    // an API server that refuses every Event does not flood the log.
    let mut logged = HashSet::new();
    while let Some(event) = events.recv().await {
        let mut attempt = 0;
        let outcome = loop {
            match publisher.publish(&event).await {
                Err(error) if attempt < EVENT_RETRIES && event_retry_can_succeed(&error) => {
                    attempt += 1;
                    tokio::time::sleep(EVENT_RETRY_PAUSE * 2u32.pow(attempt - 1)).await;
                }
                outcome => break outcome,
            }
        };
        match outcome {
            Ok(()) => {
                metrics.events_published.inc();
            }
            Err(error) => {
                metrics.events_failed.inc();
                if logged.insert(event_failure_kind(&error)) {
                    tracing::warn!(service = %event.service, reason = %event.reason, attempts = attempt + 1, %error,
                        "could not record a Kubernetes Event (further failures of this kind are logged at debug level)");
                } else {
                    tracing::debug!(service = %event.service, reason = %event.reason, %error, "could not record a Kubernetes Event");
                }
            }
        }
    }
}

/// How often herald asks the API server whether it answers, and how long it
/// waits for the answer.
const API_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
const API_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Asks the API server's `/readyz` every [`API_PROBE_INTERVAL`] (a request
/// every authenticated client may make: the default ClusterRole
/// `system:public-info-viewer`) and tells the source's health whether it
/// answered. Any answer but a 5xx counts as an answer: the server is
/// reachable (a 403 where that role was removed says so too). A 5xx from
/// `/readyz` means the server cannot serve fresh data (its etcd, say).
async fn probe_api(client: kube::Client, shared: Arc<Shared>) {
    let mut ticks = tokio::time::interval(API_PROBE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let started = Shared::now();
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .expect("a constant request");
        let outcome =
            match tokio::time::timeout(API_PROBE_TIMEOUT, client.request_text(request)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(kube::Error::Api(status))) if status.code < 500 => Ok(()),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err(format!(
                    "no answer to /readyz within {}s",
                    API_PROBE_TIMEOUT.as_secs()
                )),
            };
        let answered = outcome.is_ok();
        shared.metrics.api_answering.set(i64::from(answered));
        let mut health = shared.health.lock().unwrap_or_else(|p| p.into_inner());
        let was_answering = !health.api_unanswered();
        if !answered && was_answering {
            tracing::warn!(error = ?outcome, "the Kubernetes API server does not answer; announcing the last known desired set");
        } else if answered && !was_answering {
            tracing::info!("the Kubernetes API server answers again");
        }
        health.probed(outcome, started);
    }
}

/// How often an Event write that failed for a reason a retry can cure is
/// tried again, and the first pause (doubling after each try).
const EVENT_RETRIES: u32 = 3;
const EVENT_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

/// Whether writing the same Event again can succeed: the API server was busy
/// (429), failed (5xx) or could not be reached. A refusal of the Event
/// itself (400, 403, 404, 422) will be refused again.
fn event_retry_can_succeed(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        _ => true,
    }
}

/// What makes two Event failures "the same kind" for logging: the HTTP code
/// and reason, or the transport failure's kind.
fn event_failure_kind(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} {}", status.code, status.reason),
        other => other
            .to_string()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}

#[cfg(test)]
mod tests;
