//! The address task: the one owner of the service addresses on the
//! interface, and [`ServiceAddresses`], the handle the agent holds.
//!
//! # Counting
//! The task's view of the interface (model plus in-flight requests) lives in
//! `view.rs`. Adds, removes and repairs are counted on the kernel's
//! acknowledgements, never on notifications, so the one or two
//! `RTM_NEWADDR`s an IPv6 add produces (the second when DAD flags change)
//! update the view but count nothing.
//!
//! A notification that deletes an owned, wanted address that the task did not
//! delete itself is a removal by someone else: the next pass puts it back and
//! counts a repair. An `ENOBUFS` overrun, a link coming (back) up and a
//! periodic timer make the task re-read the interface.
//!
//! Must not touch: addresses without herald's mark; the interface's state
//! after start.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use futures::StreamExt;
use rtnetlink::Handle;
use rtnetlink::packet_route::address::AddressMessage;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::NetlinkError;
use super::kernel::{self, AddOutcome, RemoveOutcome};
use super::link::{self, ServiceInterface};
use super::metrics::{Metrics, Operation};
use super::monitor::{AddressEvent, AddressMonitor};
use super::ownership::{self, HERALD_ADDRESS_PROTOCOL, OwnershipMode, OwnershipScheme};
use super::reconcile::{self, AddressRequest, host_prefix_len, unusable_reason};
use super::view::{InFlight, InterfaceView, Key};

/// Requests in flight at once; the kernel serialises them anyway, this only
/// saves round trips.
const CONCURRENT_REQUESTS: usize = 64;

/// Notifications applied before a reconcile pass, at most.
const EVENT_BATCH: usize = 16_384;

/// How the address task is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressOptions {
    /// `lo`, an existing interface, or a dummy interface to create.
    pub interface: String,
    pub ownership: OwnershipMode,
    /// The `IFA_PROTO` value marking herald's addresses.
    pub protocol: u8,
    /// How often to re-read the interface as a safety net for missed
    /// notifications.
    pub resync_interval: Duration,
}

impl AddressOptions {
    /// Defaults: automatic ownership probe, protocol 0x68, re-read every 5 min.
    pub fn new(interface: &str) -> Self {
        AddressOptions {
            interface: interface.to_string(),
            ownership: OwnershipMode::Auto,
            protocol: HERALD_ADDRESS_PROTOCOL,
            resync_interval: Duration::from_secs(300),
        }
    }
}

/// Where one address stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// On the interface with herald's mark.
    Owned,
    /// On the interface without herald's mark (an operator's): left alone.
    PresentNotOwned,
    /// Wanted but not on the interface (see `reason`).
    Missing,
    /// Wanted but never placed (see `reason`).
    Refused,
}

/// One address in [`AddressStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AddressState {
    pub address: IpAddr,
    pub wanted: bool,
    pub placement: Placement,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A snapshot for `/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AddressStatus {
    pub interface: String,
    pub interface_index: Option<u32>,
    pub interface_up: bool,
    pub ownership: OwnershipScheme,
    /// False until the agent first calls `set_wanted`: until then owned
    /// addresses are adopted and nothing is removed.
    pub wanted_known: bool,
    /// Wanted addresses, and owned addresses that are not wanted (yet).
    pub addresses: Vec<AddressState>,
    pub adds: u64,
    pub removes: u64,
    pub repairs: u64,
    /// Add and remove requests sent to the kernel.
    pub netlink_writes: u64,
    pub netlink_errors: u64,
}

impl AddressStatus {
    /// Is `address` on the interface (owned or an operator's)? The agent
    /// announces an address only once this holds.
    pub fn is_placed(&self, address: IpAddr) -> bool {
        self.addresses.iter().any(|a| {
            a.address == address
                && matches!(a.placement, Placement::Owned | Placement::PresentNotOwned)
        })
    }
}

/// A wanted address the last pass could not place, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AddressFailure {
    pub address: IpAddr,
    pub reason: String,
}

/// What one `set_wanted` or `remove_all_owned` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PassReport {
    pub added: usize,
    pub removed: usize,
    pub failed: Vec<AddressFailure>,
}

enum Command {
    SetWanted(BTreeSet<IpAddr>, oneshot::Sender<PassReport>),
    RemoveAllOwned(oneshot::Sender<PassReport>),
}

/// The agent's handle on the service addresses. Dropping it (or [`stop`])
/// ends the task and leaves every address in place.
///
/// [`stop`]: ServiceAddresses::stop
pub struct ServiceAddresses {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<AddressStatus>,
    task: JoinHandle<()>,
}

impl ServiceAddresses {
    /// Start on `interface` with the given ownership mode and default options.
    pub async fn start(
        interface: &str,
        ownership: OwnershipMode,
        metrics: Metrics,
    ) -> Result<Self, NetlinkError> {
        let mut options = AddressOptions::new(interface);
        options.ownership = ownership;
        Self::start_with(options, metrics).await
    }

    /// Start: probe the ownership scheme, prepare the interface, subscribe to
    /// notifications, read the interface, and spawn the address task. Must be
    /// called inside a tokio runtime, in the network namespace to manage.
    pub async fn start_with(
        options: AddressOptions,
        metrics: Metrics,
    ) -> Result<Self, NetlinkError> {
        let (connection, handle, _) = rtnetlink::new_connection_with_strict_check()
            .map_err(|source| NetlinkError::Socket { source })?;
        let connection = AbortOnDrop(tokio::spawn(connection));
        let scheme = ownership::resolve(
            &handle,
            &options.interface,
            options.ownership,
            options.protocol,
        )
        .await?;
        let interface = link::prepare(&handle, &options.interface).await?;
        // Subscribe before the dump, so that no change falls between them.
        let monitor = AddressMonitor::subscribe()?;
        let messages = kernel::dump_addresses(&handle, interface.index)
            .await
            .map_err(|source| NetlinkError::Dump {
                interface: interface.name.clone(),
                source,
            })?;
        let mut task = AddressTask::new(handle, connection, interface, scheme, metrics);
        task.view = InterfaceView::from_dump(messages.iter().filter_map(|m| task.present_of(m)));
        let (owned, others): (Vec<_>, Vec<_>) = task.view.modelled().partition(|&(_, owned)| owned);
        tracing::info!(
            interface = %task.interface.name,
            ownership = %task.scheme.describe(),
            adopted = owned.len(),
            others = others.len(),
            "service addresses: adopted owned addresses, nothing removed until the wanted set is known"
        );
        let (status_tx, status) = watch::channel(task.status());
        task.status_tx = Some(status_tx);
        task.publish();
        let (commands, rx) = mpsc::channel(16);
        let task = tokio::spawn(task.run(rx, monitor, options.resync_interval));
        Ok(ServiceAddresses {
            commands,
            status,
            task,
        })
    }

    /// Make the interface carry exactly `wanted` among herald's addresses.
    /// Returns when the pass is done. Addresses that cannot be service
    /// addresses are refused (reported in `failed` and in the status).
    pub async fn set_wanted(&self, wanted: BTreeSet<IpAddr>) -> Result<PassReport, NetlinkError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::SetWanted(wanted, tx))
            .await
            .map_err(|_| NetlinkError::TaskStopped)?;
        rx.await.map_err(|_| NetlinkError::TaskStopped)
    }

    /// Drain: remove every owned address and want none from now on.
    pub async fn remove_all_owned(&self) -> Result<PassReport, NetlinkError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::RemoveAllOwned(tx))
            .await
            .map_err(|_| NetlinkError::TaskStopped)?;
        rx.await.map_err(|_| NetlinkError::TaskStopped)
    }

    /// The latest status.
    pub fn snapshot(&self) -> AddressStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every new status.
    pub fn subscribe(&self) -> watch::Receiver<AddressStatus> {
        self.status.clone()
    }

    /// End the task, leaving every address in place.
    pub async fn stop(self) {
        let ServiceAddresses { commands, task, .. } = self;
        drop(commands);
        let _ = task.await;
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct AddressTask {
    handle: Handle,
    /// The request socket's connection, alive as long as the task.
    _connection: AbortOnDrop,
    interface: ServiceInterface,
    interface_present: bool,
    scheme: OwnershipScheme,
    metrics: Metrics,
    status_tx: Option<watch::Sender<AddressStatus>>,
    /// `None` until the agent first says what it wants.
    wanted: Option<BTreeSet<IpAddr>>,
    refused: BTreeMap<IpAddr, String>,
    /// The kernel's addresses on the interface, with in-flight requests.
    view: InterfaceView,
    /// Owned, wanted addresses someone else removed: the next add is a repair.
    repairing: BTreeSet<IpAddr>,
    /// The last error per address.
    failures: BTreeMap<IpAddr, String>,
    adds: u64,
    removes: u64,
    repairs: u64,
    writes: u64,
    errors: u64,
}

impl AddressTask {
    fn new(
        handle: Handle,
        connection: AbortOnDrop,
        interface: ServiceInterface,
        scheme: OwnershipScheme,
        metrics: Metrics,
    ) -> Self {
        AddressTask {
            handle,
            _connection: connection,
            interface,
            interface_present: true,
            scheme,
            metrics,
            status_tx: None,
            wanted: None,
            refused: BTreeMap::new(),
            view: InterfaceView::default(),
            repairing: BTreeSet::new(),
            failures: BTreeMap::new(),
            adds: 0,
            removes: 0,
            repairs: 0,
            writes: 0,
            errors: 0,
        }
    }

    fn present_of(&self, message: &AddressMessage) -> Option<(Key, bool)> {
        kernel::address_of(message).map(|key| (key, self.scheme.owns(message)))
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        monitor: AddressMonitor,
        resync_every: Duration,
    ) {
        let mut monitor = Some(monitor);
        let mut resync = tokio::time::interval(resync_every);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await;
        loop {
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    if let Some(m) = monitor.as_mut() {
                        self.drain_events(m, None).await;
                    }
                    let (wanted, reply) = match command {
                        Command::SetWanted(wanted, reply) => (wanted, reply),
                        Command::RemoveAllOwned(reply) => {
                            tracing::info!(interface = %self.interface.name, "drain: removing every owned service address");
                            (BTreeSet::new(), reply)
                        }
                    };
                    let report = self.set_wanted(wanted).await;
                    let _ = reply.send(report);
                }
                event = next_event(&mut monitor) => {
                    match (event, monitor.as_mut()) {
                        (Some(event), Some(m)) => {
                            self.drain_events(m, Some(event)).await;
                            self.converge().await;
                        }
                        _ => {
                            tracing::error!("address notification socket closed; re-reading the interface periodically");
                            self.error(Operation::Monitor);
                            monitor = None;
                        }
                    }
                }
                _ = resync.tick() => {
                    if monitor.is_none() {
                        monitor = AddressMonitor::subscribe().inspect_err(|_| self.error(Operation::Monitor)).ok();
                    }
                    self.resync().await;
                    self.converge().await;
                }
            }
        }
        tracing::info!(interface = %self.interface.name, "service address task stopped; addresses left in place");
    }

    /// Apply `first` and every event already queued (bounded), re-reading the
    /// interface afterwards if any of them asked for it.
    async fn drain_events(&mut self, monitor: &mut AddressMonitor, first: Option<AddressEvent>) {
        let mut must_resync = false;
        let mut event = first.or_else(|| monitor.try_next());
        let mut applied = 0;
        while let Some(e) = event {
            must_resync |= self.apply(e);
            applied += 1;
            if applied >= EVENT_BATCH {
                break;
            }
            event = monitor.try_next();
        }
        if must_resync {
            self.resync().await;
        }
    }

    /// Apply one notification to the model. Returns true when the interface
    /// must be re-read.
    fn apply(&mut self, event: AddressEvent) -> bool {
        match event {
            AddressEvent::NewAddress { index, message } if index == self.interface.index => {
                if let Some((key, owned)) = self.present_of(&message) {
                    self.view.apply_new(key, owned);
                }
                false
            }
            AddressEvent::DelAddress { index, message } if index == self.interface.index => {
                if let Some((key, _)) = self.present_of(&message) {
                    let deletion = self.view.apply_del(key);
                    if !deletion.ours
                        && deletion.was_owned
                        && self.is_wanted(key.0)
                        && key.1 == host_prefix_len(key.0)
                    {
                        tracing::warn!(address = %key.0, interface = %self.interface.name, "owned service address removed by someone else; putting it back");
                        self.repairing.insert(key.0);
                    }
                }
                false
            }
            AddressEvent::NewLink { index, name, up } => {
                if index == self.interface.index {
                    let came_up = up && !self.interface.up;
                    self.interface.up = up;
                    if !up {
                        tracing::warn!(interface = %self.interface.name, "interface went down");
                    }
                    came_up
                } else if name.as_deref() == Some(self.interface.name.as_str()) {
                    tracing::warn!(interface = %self.interface.name, index, "interface is back with a new index");
                    self.interface.index = index;
                    self.interface.up = up;
                    self.interface_present = true;
                    true
                } else {
                    false
                }
            }
            AddressEvent::DelLink { index, .. } if index == self.interface.index => {
                tracing::error!(interface = %self.interface.name, "interface removed; service addresses cannot be placed until it is back");
                self.interface_present = false;
                self.view.clear();
                false
            }
            AddressEvent::Overrun => {
                tracing::warn!(
                    "address notifications overran the socket buffer; re-reading the interface"
                );
                self.error(Operation::Monitor);
                true
            }
            _ => false,
        }
    }

    fn is_wanted(&self, address: IpAddr) -> bool {
        self.wanted.as_ref().is_some_and(|w| w.contains(&address))
    }

    /// Re-read the interface. The dump is newer than every acknowledged
    /// request, so nothing is in flight afterwards.
    async fn resync(&mut self) {
        if !self.interface_present {
            return;
        }
        match kernel::dump_addresses(&self.handle, self.interface.index).await {
            Ok(messages) => {
                let fresh: BTreeMap<Key, bool> =
                    messages.iter().filter_map(|m| self.present_of(m)).collect();
                for p in self.view.present() {
                    let key = (p.address, p.prefix_len);
                    if p.owned
                        && p.is_host()
                        && !fresh.contains_key(&key)
                        && self.is_wanted(p.address)
                    {
                        tracing::warn!(address = %p.address, "owned service address vanished unnoticed; putting it back");
                        self.repairing.insert(p.address);
                    }
                }
                self.view.replace(fresh);
            }
            Err(e) => {
                tracing::warn!(interface = %self.interface.name, error = %kernel::kernel_answer(&e), "cannot read the interface's addresses");
                self.error(Operation::Dump);
            }
        }
    }

    async fn set_wanted(&mut self, wanted: BTreeSet<IpAddr>) -> PassReport {
        self.refused.clear();
        for &address in &wanted {
            if let Some(reason) = unusable_reason(address) {
                self.refused
                    .insert(address, format!("{address} is {reason}"));
            } else if let Some(reason) = self.scheme.cannot_mark(address) {
                self.refused.insert(address, reason.to_string());
            }
        }
        for (address, reason) in &self.refused {
            tracing::warn!(%address, reason, "service address refused");
        }
        self.wanted = Some(wanted);
        let mut report = self.converge().await;
        report.failed.extend(
            self.refused
                .iter()
                .map(|(&address, reason)| AddressFailure {
                    address,
                    reason: reason.clone(),
                }),
        );
        report
    }

    /// One reconcile pass: compute the requests, send them, fold the answers
    /// into the task's view.
    async fn converge(&mut self) -> PassReport {
        let mut report = PassReport::default();
        let wanted: BTreeSet<IpAddr> = match &self.wanted {
            Some(wanted) if self.interface_present => wanted
                .iter()
                .filter(|a| !self.refused.contains_key(a))
                .copied()
                .collect(),
            _ => {
                self.publish();
                return report;
            }
        };
        let requests = reconcile::reconcile(&wanted, &self.view.present());
        if !requests.is_empty() {
            self.writes += requests.len() as u64;
            for _ in &requests {
                self.metrics.write();
            }
            let (handle, index, scheme) = (&self.handle, self.interface.index, &self.scheme);
            let answers: Vec<(AddressRequest, Result<Answer, rtnetlink::Error>)> = futures::stream::iter(requests)
                .map(|request| async move { (request, send(handle, index, scheme, request).await) })
                .buffer_unordered(CONCURRENT_REQUESTS)
                .collect()
                .await;
            for (request, answer) in answers {
                self.fold(request, answer, &mut report);
            }
        }
        self.publish();
        report
    }

    fn fold(
        &mut self,
        request: AddressRequest,
        answer: Result<Answer, rtnetlink::Error>,
        report: &mut PassReport,
    ) {
        let (key, operation) = match request {
            AddressRequest::Add(address) => ((address, host_prefix_len(address)), Operation::Add),
            AddressRequest::Remove {
                address,
                prefix_len,
            } => ((address, prefix_len), Operation::Remove),
        };
        let address = key.0;
        let in_flight = match answer {
            Ok(Answer::Added) => {
                self.adds += 1;
                self.metrics.add();
                report.added += 1;
                if self.repairing.remove(&address) {
                    self.repairs += 1;
                    self.metrics.repair();
                    tracing::warn!(%address, interface = %self.interface.name, "repaired: owned service address put back");
                } else {
                    tracing::debug!(%address, "service address added");
                }
                InFlight::Added
            }
            Ok(Answer::Exists) => InFlight::Exists,
            Ok(Answer::Removed) => {
                self.removes += 1;
                self.metrics.remove();
                report.removed += 1;
                tracing::debug!(%address, "service address removed");
                InFlight::Removed
            }
            Ok(Answer::Gone) => InFlight::Gone,
            Err(e) => {
                let answer = kernel::kernel_answer(&e);
                tracing::warn!(%address, operation = operation.as_str(), answer, "netlink request failed");
                self.error(operation);
                let reason = format!(
                    "{} failed: the kernel answered: {answer}",
                    operation.as_str()
                );
                report.failed.push(AddressFailure {
                    address,
                    reason: reason.clone(),
                });
                self.failures.insert(address, reason);
                return;
            }
        };
        self.failures.remove(&address);
        self.view.record(key, in_flight);
    }

    fn error(&mut self, operation: Operation) {
        self.errors += 1;
        self.metrics.error(operation);
    }

    fn status(&self) -> AddressStatus {
        let present = self.view.present();
        let mut addresses: BTreeMap<IpAddr, AddressState> = present
            .iter()
            .filter(|p| p.owned)
            .map(|p| {
                let state = AddressState {
                    address: p.address,
                    wanted: false,
                    placement: Placement::Owned,
                    reason: None,
                };
                (p.address, state)
            })
            .collect();
        let empty = BTreeSet::new();
        let wanted = self.wanted.as_ref().unwrap_or(&empty);
        let not_owned = reconcile::present_not_owned(wanted, &present);
        for &address in wanted {
            let entry = addresses.entry(address).or_insert(AddressState {
                address,
                wanted: true,
                placement: Placement::Missing,
                reason: None,
            });
            entry.wanted = true;
            if let Some(reason) = self.refused.get(&address) {
                entry.placement = Placement::Refused;
                entry.reason = Some(reason.clone());
            } else if entry.placement != Placement::Owned && not_owned.contains(&address) {
                entry.placement = Placement::PresentNotOwned;
            } else if entry.placement == Placement::Missing {
                let reason = self.failures.get(&address).cloned();
                entry.reason =
                    Some(reason.unwrap_or_else(|| "not on the interface yet".to_string()));
            }
        }
        AddressStatus {
            interface: self.interface.name.clone(),
            interface_index: self.interface_present.then_some(self.interface.index),
            interface_up: self.interface_present && self.interface.up,
            ownership: self.scheme.clone(),
            wanted_known: self.wanted.is_some(),
            addresses: addresses.into_values().collect(),
            adds: self.adds,
            removes: self.removes,
            repairs: self.repairs,
            netlink_writes: self.writes,
            netlink_errors: self.errors,
        }
    }

    fn publish(&self) {
        let status = self.status();
        let count = |placement| {
            status
                .addresses
                .iter()
                .filter(|a| a.placement == placement)
                .count()
        };
        self.metrics.set_owned(count(Placement::Owned));
        self.metrics
            .set_present_unowned(count(Placement::PresentNotOwned));
        if let Some(tx) = &self.status_tx {
            tx.send_replace(status);
        }
    }
}

/// The kernel's answer to one request, idempotency folded in.
enum Answer {
    Added,
    Exists,
    Removed,
    Gone,
}

async fn send(
    handle: &Handle,
    index: u32,
    scheme: &OwnershipScheme,
    request: AddressRequest,
) -> Result<Answer, rtnetlink::Error> {
    Ok(match request {
        AddressRequest::Add(address) => {
            match kernel::add_address(handle, index, address, scheme).await? {
                AddOutcome::Added => Answer::Added,
                AddOutcome::AlreadyExists => Answer::Exists,
            }
        }
        AddressRequest::Remove {
            address,
            prefix_len,
        } => {
            let label = scheme.delete_label(address);
            match kernel::remove_address(handle, index, address, prefix_len, label).await? {
                RemoveOutcome::Removed => Answer::Removed,
                RemoveOutcome::AlreadyGone => Answer::Gone,
            }
        }
    })
}

async fn next_event(monitor: &mut Option<AddressMonitor>) -> Option<AddressEvent> {
    match monitor {
        Some(m) => m.next().await,
        None => std::future::pending().await,
    }
}
