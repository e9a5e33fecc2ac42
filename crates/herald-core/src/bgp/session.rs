//! One BGP session per peer as a tokio task: owns the peer's sockets and
//! timers, feeds the pure [`Fsm`], performs its actions, and keeps the
//! peer's [`AdjRibOut`] in step with the desired announcements.
//!
//! Owns: the session task, its connections and timers, the status it
//! publishes. Must not touch: what should be announced (the agent decides
//! and calls [`SessionHandle::announce`]), BFD internals (BFD only calls
//! [`SessionHandle::bfd_down`]).
//!
//! ```text
//!   agent ──Command──▶ ┌──────────────── session task ────────────────┐
//!  (announce, gshut,   │ Fsm (pure) ◀── inputs ── timers (deadlines)  │
//!   bfd down, stop,    │   │ actions                                  │
//!   incoming socket)   │   ▼                                          │
//!                      │ sockets: write half per connection           │
//!                      │ AdjRibOut ── UPDATEs ──▶ established socket  │
//!                      └──▲───────────────────────────────┬───────────┘
//!   reader task per connection: frames, decodes ──────────┘ status (watch),
//!   connect task: outgoing TCP                              StatusReport, metrics
//! ```
//!
//! # Supported standards
//! - RFC 4271 (through the FSM), RFC 2918 route refresh answered from the
//!   Adj-RIB-Out, RFC 4724 graceful restart as the restarting speaker: the
//!   capability with the configured restart time and forwarding bit, and
//!   after (re)start the initial announcements followed by End-of-RIB
//! - RFC 8326 graceful shutdown on request, RFC 9384 Cease on BFD Down
//! - Received UPDATEs are validated (RFC 7606) and counted, never installed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

mod config;

pub use config::SessionConfig;

use super::fsm::Direction;
use super::fsm::{Action, DownReason, Fsm, Input, Negotiated, State, Timer};
use super::metrics::{DispositionLabels, FamilyLabels, Metrics, peer_labels};
use super::packet::{
    AfiSafi, DecodeError, Disposition, MAX_MESSAGE_LEN, Message, Update, frame_len,
};
use super::rib_out::{AdjRibOut, ExportPolicy};
use super::transport;
use crate::model::{Announcement, RouteAttributes};

/// What a session reports about itself (for `/status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionStatus {
    pub name: String,
    /// Where the session connects.
    pub peer: SocketAddr,
    pub state: State,
    /// Unix time the session last reached Established.
    pub established_at: Option<u64>,
    pub hold_time: Option<u16>,
    pub families: Vec<String>,
    pub prefixes_announced: usize,
    pub prefixes_unannounceable: usize,
    pub graceful_shutdown: bool,
    pub updates_received: u64,
    /// Prefixes announced to us, summed over UPDATEs (not installed).
    pub prefixes_received: u64,
    pub withdrawals_received: u64,
    pub malformed_updates: u64,
    pub end_of_rib_received: Vec<String>,
    pub last_error: Option<String>,
    /// Unix time of `last_error`.
    pub last_error_at: Option<u64>,
}

impl SessionStatus {
    /// A session to `peer` that has not started: Idle, nothing counted.
    pub fn new(name: impl Into<String>, peer: SocketAddr) -> Self {
        SessionStatus {
            name: name.into(),
            peer,
            state: State::Idle,
            established_at: None,
            hold_time: None,
            families: Vec::new(),
            prefixes_announced: 0,
            prefixes_unannounceable: 0,
            graceful_shutdown: false,
            updates_received: 0,
            prefixes_received: 0,
            withdrawals_received: 0,
            malformed_updates: 0,
            end_of_rib_received: Vec::new(),
            last_error: None,
            last_error_at: None,
        }
    }
}

/// Where a session reports its status besides its own watch: called with
/// the new status after every change (the speaker keeps every peer's status
/// in one table this way).
pub type StatusReport = Box<dyn Fn(&SessionStatus) + Send + Sync>;

/// The desired routes of a session: prefix -> attributes. One allocation is
/// shared by every session the speaker runs.
pub type Routes = BTreeMap<IpNet, RouteAttributes>;

/// Requests to the session task.
#[derive(Debug)]
enum Command {
    Announce(Arc<Routes>),
    GracefulShutdown(bool),
    BfdDown,
    BfdUp,
    Start,
    Stop(String),
    Reset(String),
    Incoming(TcpStream),
    /// Answered once every command sent before it has been performed.
    Barrier(tokio::sync::oneshot::Sender<()>),
    /// Planned restart: FIN on every connection, no NOTIFICATION, end.
    CloseSilently(tokio::sync::oneshot::Sender<()>),
}

/// The agent's side of a session. Dropping it de-configures the peer: the
/// task sends Cease "Peer De-configured" and ends.
#[derive(Debug)]
pub struct SessionHandle {
    name: String,
    peer: SocketAddr,
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<SessionStatus>,
    task: JoinHandle<()>,
}

impl SessionHandle {
    /// Starts the session task (ManualStart right away).
    pub fn spawn(cfg: SessionConfig, metrics: Arc<Metrics>) -> Self {
        Self::spawn_with(cfg, metrics, None)
    }

    /// [`SessionHandle::spawn`], reporting every status change to `report`
    /// too.
    pub fn spawn_reporting(
        cfg: SessionConfig,
        metrics: Arc<Metrics>,
        report: StatusReport,
    ) -> Self {
        Self::spawn_with(cfg, metrics, Some(report))
    }

    fn spawn_with(cfg: SessionConfig, metrics: Arc<Metrics>, report: Option<StatusReport>) -> Self {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let initial = SessionStatus::new(cfg.name.clone(), cfg.peer);
        if let Some(report) = &report {
            report(&initial);
        }
        let (status_tx, status) = watch::channel(initial);
        let name = cfg.name.clone();
        let peer = cfg.peer;
        let driver = Driver::new(cfg, metrics, report, status_tx);
        let task = tokio::spawn(driver.run(command_rx));
        SessionHandle {
            name,
            peer,
            commands,
            status,
            task,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn send(&self, command: Command) {
        // The task ends only when this handle is dropped.
        let _ = self.commands.send(command);
    }

    /// Replaces the desired announcements; only the difference is sent.
    pub fn announce<'a>(&self, announcements: impl IntoIterator<Item = &'a Announcement>) {
        self.announce_routes(Arc::new(routes(announcements)));
    }

    /// [`SessionHandle::announce`] with the routes already built (and
    /// shared between sessions).
    pub fn announce_routes(&self, routes: Arc<Routes>) {
        self.send(Command::Announce(routes));
    }

    /// RFC 8326: re-announce everything with GRACEFUL_SHUTDOWN (or stop).
    pub fn set_graceful_shutdown(&self, on: bool) {
        self.send(Command::GracefulShutdown(on));
    }

    /// BFD declared the peer down: Cease "BFD Down", reconnect soon.
    pub fn bfd_down(&self) {
        self.send(Command::BfdDown);
    }

    /// BFD says the peer is reachable again: connect now instead of at the
    /// end of the backoff ([`Input::PeerReachable`]).
    pub fn bfd_up(&self) {
        self.send(Command::BfdUp);
    }

    /// Administrative stop with an RFC 9003 shutdown communication.
    pub fn stop(&self, communication: &str) {
        self.send(Command::Stop(communication.to_string()));
    }

    /// Administrative reset (Cease 4), then reconnect.
    pub fn reset(&self, communication: &str) {
        self.send(Command::Reset(communication.to_string()));
    }

    /// Starts again after [`SessionHandle::stop`].
    pub fn start(&self) {
        self.send(Command::Start);
    }

    /// Resolves once every command sent before has been performed: after
    /// [`SessionHandle::announce`], the resulting UPDATEs are written to the
    /// socket (the agent waits for this before it removes a withdrawn
    /// address from the interface). Resolves at once if the task is gone.
    pub async fn flushed(&self) {
        self.barrier().await;
    }

    /// [`SessionHandle::flushed`] as a future that does not borrow the
    /// handle: the barrier is queued now, the future resolves once the task
    /// reached it (or is gone).
    pub fn barrier(&self) -> impl Future<Output = ()> + Send + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Command::Barrier(tx));
        async move {
            let _ = rx.await;
        }
    }

    /// Planned restart: closes every connection with a FIN and no
    /// NOTIFICATION (so a graceful-restart helper keeps the routes, RFC 4724
    /// §4.2) and ends the task. Resolves once the FINs are handed to the
    /// kernel, after the commands sent before.
    pub fn close_silently(&self) -> impl Future<Output = ()> + Send + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Command::CloseSilently(tx));
        async move {
            let _ = rx.await;
        }
    }

    /// Hands over a connection the listener accepted from this peer.
    pub fn incoming(&self, stream: TcpStream) {
        self.send(Command::Incoming(stream));
    }

    pub fn status(&self) -> SessionStatus {
        self.status.borrow().clone()
    }

    /// Status updates, for waiting on a condition.
    pub fn watch_status(&self) -> watch::Receiver<SessionStatus> {
        self.status.clone()
    }

    /// Stops the task at once, without a NOTIFICATION (as a crash would).
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// Events from the connection tasks; `generation` tells stale ones apart.
#[derive(Debug)]
enum Wire {
    Connected(u64, Result<TcpStream, transport::TransportError>),
    Frame(Direction, u64, Result<Message, DecodeError>),
    Closed(Direction, u64),
}

#[derive(Debug)]
struct Connection {
    writer: OwnedWriteHalf,
    reader: JoinHandle<()>,
    max_len: Arc<AtomicUsize>,
    local: SocketAddr,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

struct Driver {
    cfg: SessionConfig,
    fsm: Fsm,
    metrics: Arc<Metrics>,
    report: Option<StatusReport>,
    status: watch::Sender<SessionStatus>,
    conns: [Option<Connection>; 2],
    generation: [u64; 2],
    connecting: Option<JoinHandle<()>>,
    timers: HashMap<Timer, std::time::Instant>,
    desired: Arc<Routes>,
    /// The agent has said what to announce at least once.
    desired_known: bool,
    /// Established before the first announce: End-of-RIB waits for it.
    end_of_rib_pending: bool,
    graceful_shutdown: bool,
    rib: Option<AdjRibOut>,
    wire_tx: mpsc::Sender<Wire>,
    wire_rx: mpsc::Receiver<Wire>,
    last_error: Option<String>,
}

fn slot(dir: Direction) -> usize {
    match dir {
        Direction::Outgoing => 0,
        Direction::Incoming => 1,
    }
}

fn family_name(f: AfiSafi) -> String {
    match f {
        AfiSafi::IPV4_UNICAST => "ipv4_unicast".into(),
        AfiSafi::IPV6_UNICAST => "ipv6_unicast".into(),
        other => format!("afi{}_safi{}", other.afi, other.safi),
    }
}

impl Driver {
    fn new(
        cfg: SessionConfig,
        metrics: Arc<Metrics>,
        report: Option<StatusReport>,
        status: watch::Sender<SessionStatus>,
    ) -> Self {
        let (wire_tx, wire_rx) = mpsc::channel(1024);
        metrics.set_state(&cfg.name, State::Idle);
        Driver {
            fsm: Fsm::new(cfg.fsm_config()),
            cfg,
            metrics,
            report,
            status,
            conns: [None, None],
            generation: [0, 0],
            connecting: None,
            timers: HashMap::new(),
            desired: Arc::default(),
            desired_known: false,
            end_of_rib_pending: false,
            graceful_shutdown: false,
            rib: None,
            wire_tx,
            wire_rx,
            last_error: None,
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        self.feed(Input::ManualStart).await;
        loop {
            let deadline = self.timers.values().min().copied();
            tokio::select! {
                // Commands first (Cease/BFD Down among them): while a peer
                // sends a full table the wire branch is always ready, and a
                // random pick would make a command wait behind UPDATEs.
                biased;
                command = commands.recv() => match command {
                    Some(Command::CloseSilently(done)) => {
                        // RFC 4724 §4.2: to a graceful-restart helper a TCP
                        // failure without NOTIFICATION is the restart.
                        for conn in self.conns.iter_mut() {
                            if let Some(mut conn) = conn.take() {
                                let _ = conn.writer.shutdown().await;
                            }
                        }
                        let _ = done.send(());
                        break;
                    }
                    Some(command) => self.command(command).await,
                    None => {
                        // The handle is gone: the peer was removed from config.
                        let n = super::packet::Notification::new(
                            super::packet::error_code::CEASE,
                            super::packet::cease::PEER_DECONFIGURED,
                            Vec::new(),
                        );
                        for dir in [Direction::Outgoing, Direction::Incoming] {
                            self.write(dir, &Message::Notification(n.clone())).await;
                        }
                        break;
                    }
                },
                Some(event) = self.wire_rx.recv() => self.wire(event).await,
                _ = tokio::time::sleep_until(Instant::from_std(deadline.unwrap_or_else(std::time::Instant::now))), if deadline.is_some() => {
                    let now = Instant::now().into_std();
                    let due: Vec<Timer> = self
                        .timers
                        .iter()
                        .filter(|(_, at)| **at <= now)
                        .map(|(t, _)| *t)
                        .collect();
                    for timer in due {
                        // An earlier timer of this batch may have cancelled
                        // this one or armed it again for later.
                        if self.timers.get(&timer).is_some_and(|at| *at <= now) {
                            self.timers.remove(&timer);
                            self.feed(Input::TimerExpired(timer)).await;
                        }
                    }
                }
            }
        }
        if let Some(task) = self.connecting.take() {
            task.abort();
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Announce(desired) => {
                self.desired = desired;
                self.desired_known = true;
                self.sync_routes().await;
            }
            Command::GracefulShutdown(on) => {
                self.graceful_shutdown = on;
                self.set_status(|s| s.graceful_shutdown = on);
                self.sync_routes().await;
            }
            Command::BfdDown => self.feed(Input::BfdDown).await,
            Command::BfdUp => self.feed(Input::PeerReachable).await,
            Command::Barrier(done) => {
                let _ = done.send(());
            }
            Command::CloseSilently(_) => unreachable!("handled in the task loop"),
            Command::Start => self.feed(Input::ManualStart).await,
            Command::Stop(text) => {
                self.feed(Input::ManualStop {
                    communication: text,
                })
                .await
            }
            Command::Reset(text) => {
                self.feed(Input::AdminReset {
                    communication: text,
                })
                .await
            }
            Command::Incoming(stream) => {
                if !self.fsm.accepts_incoming() {
                    // A configured peer, so no flood to rate-limit: the
                    // counter and a debug line.
                    self.metrics.refused(super::metrics::REFUSED_SESSION_STATE);
                    tracing::debug!(peer = %self.cfg.name, "refusing a connection from the peer in state {}", self.fsm.state().name());
                    return;
                }
                let peer = self.cfg.peer.ip();
                if let Err(e) = transport::apply_ttl_and_dscp(&stream, peer, self.cfg.ttl_policy())
                {
                    tracing::warn!(peer = %self.cfg.name, "incoming connection: {e}");
                    return;
                }
                self.adopt(Direction::Incoming, stream);
                self.feed(Input::TcpConnected(Direction::Incoming)).await;
            }
        }
    }

    async fn wire(&mut self, event: Wire) {
        match event {
            Wire::Connected(generation, result) => {
                if generation != self.generation[0] {
                    return;
                }
                self.connecting = None;
                match result {
                    Ok(stream) => {
                        self.adopt(Direction::Outgoing, stream);
                        self.feed(Input::TcpConnected(Direction::Outgoing)).await;
                    }
                    Err(e @ transport::TransportError::Md5KeyUnreadable { .. }) => {
                        tracing::warn!(peer = %self.cfg.name, "not connecting: {e}");
                        self.feed(Input::TcpFailed(Direction::Outgoing)).await;
                    }
                    Err(e) => {
                        tracing::info!(peer = %self.cfg.name, "{e}");
                        self.feed(Input::TcpFailed(Direction::Outgoing)).await;
                    }
                }
            }
            Wire::Frame(dir, generation, result) => {
                if generation != self.generation[slot(dir)] || self.conns[slot(dir)].is_none() {
                    return;
                }
                match result {
                    Ok(message) => {
                        self.metrics.message(&self.cfg.name, message.kind(), false);
                        self.feed(Input::Received(dir, message)).await;
                    }
                    Err(e) => {
                        tracing::warn!(peer = %self.cfg.name, "malformed message: {e}");
                        self.feed(Input::DecodeFailed(dir, e)).await;
                    }
                }
            }
            Wire::Closed(dir, generation) => {
                if generation == self.generation[slot(dir)] && self.conns[slot(dir)].is_some() {
                    self.feed(Input::TcpFailed(dir)).await;
                }
            }
        }
    }

    /// Takes a connected stream into a slot and starts its reader.
    fn adopt(&mut self, dir: Direction, stream: TcpStream) {
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
        let (reader, writer) = stream.into_split();
        self.generation[slot(dir)] += 1;
        let generation = self.generation[slot(dir)];
        let max_len = Arc::new(AtomicUsize::new(MAX_MESSAGE_LEN));
        let reader = tokio::spawn(read_messages(
            reader,
            dir,
            generation,
            Arc::clone(&max_len),
            self.wire_tx.clone(),
        ));
        self.conns[slot(dir)] = Some(Connection {
            writer,
            reader,
            max_len,
            local: SocketAddr::new(local.ip().to_canonical(), local.port()),
        });
    }

    /// Feeds the FSM and performs its actions, including the inputs the
    /// actions themselves produce (a failed write is TcpConnectionFails).
    async fn feed(&mut self, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let now = Instant::now().into_std();
            for action in self.fsm.handle(now, input) {
                if let Some(next) = self.perform(action).await {
                    inputs.push_back(next);
                }
            }
        }
    }

    async fn perform(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::OpenTcp => {
                self.generation[0] += 1;
                let generation = self.generation[0];
                let (peer, timeout) = (self.cfg.peer, self.cfg.connect_retry);
                // Read here, on every attempt: a key file rotated in place is
                // used from the next attempt on.
                let options = self.cfg.socket_options();
                let tx = self.wire_tx.clone();
                if let Some(old) = self.connecting.take() {
                    old.abort();
                }
                self.connecting = Some(tokio::spawn(async move {
                    let result = match options {
                        Ok(options) => transport::connect(peer, &options, timeout).await,
                        Err(error) => Err(error),
                    };
                    let _ = tx.send(Wire::Connected(generation, result)).await;
                }));
            }
            Action::CloseTcp(dir) => {
                self.generation[slot(dir)] += 1;
                if dir == Direction::Outgoing
                    && let Some(task) = self.connecting.take()
                {
                    task.abort();
                }
                if let Some(mut conn) = self.conns[slot(dir)].take() {
                    // FIN after whatever was written (a NOTIFICATION).
                    let _ = conn.writer.shutdown().await;
                }
            }
            Action::Send(dir, message) => {
                if !self.write(dir, &message).await {
                    return Some(Input::TcpFailed(dir));
                }
            }
            Action::ArmTimer(timer, at) => {
                self.timers.insert(timer, at);
            }
            Action::CancelTimer(timer) => {
                self.timers.remove(&timer);
            }
            Action::StateChanged { from, to } => {
                tracing::info!(peer = %self.cfg.name, "BGP state {} -> {}", from.name(), to.name());
                self.metrics.set_state(&self.cfg.name, to);
                self.set_status(|s| s.state = to);
            }
            Action::SessionUp(negotiated) => return self.session_up(negotiated).await,
            Action::SessionDown(reason) => self.session_down(reason),
            Action::UpdateReceived(update) => self.update_received(&update),
            Action::RouteRefreshRequested(family) => {
                if let Some(rib) = &self.rib {
                    let updates = rib.refresh(family);
                    tracing::info!(peer = %self.cfg.name, "route refresh for {}: resending {} UPDATEs", family_name(family), updates.len());
                    return self.send_updates(updates).await;
                }
            }
        }
        None
    }

    /// Changes the status, then tells the report (if any).
    fn set_status(&self, change: impl FnOnce(&mut SessionStatus)) {
        self.status.send_modify(change);
        if let Some(report) = &self.report {
            report(&self.status.borrow());
        }
    }

    /// How long a write may wait for the peer: the negotiated hold time,
    /// else the hold time used while waiting for an OPEN.
    fn write_limit(&self) -> Duration {
        match self.fsm.established() {
            Some(neg) if neg.hold_time > 0 => Duration::from_secs(u64::from(neg.hold_time)),
            _ => super::fsm::OPEN_HOLD_TIME,
        }
    }

    /// Encodes and writes one message; false when the connection failed.
    async fn write(&mut self, dir: Direction, message: &Message) -> bool {
        let limit = self.write_limit();
        let Some(conn) = &mut self.conns[slot(dir)] else {
            return true;
        };
        let bytes = match message.to_bytes() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(peer = %self.cfg.name, "not sent: {e}");
                return true;
            }
        };
        if let Err(e) = write_bounded(&mut conn.writer, &bytes, limit).await {
            tracing::info!(peer = %self.cfg.name, "write failed: {e}");
            return false;
        }
        self.metrics.message(&self.cfg.name, message.kind(), true);
        true
    }

    async fn session_up(&mut self, neg: Negotiated) -> Option<Input> {
        let dir = neg.direction;
        let local = self.conns[slot(dir)].as_ref().map(|c| {
            c.max_len.store(neg.max_message_len(), Ordering::Relaxed);
            c.local.ip()
        });
        let policy = ExportPolicy {
            local_as: self.cfg.local_as,
            internal: neg.internal(self.cfg.local_as),
            next_hop_v4: self.cfg.next_hop_v4.or(match local {
                Some(IpAddr::V4(a)) => Some(a),
                _ => None,
            }),
            next_hop_v6: self.cfg.next_hop_v6.or(match local {
                Some(IpAddr::V6(a)) if !a.is_unicast_link_local() => Some((a, None)),
                _ => None,
            }),
            families: neg.families.clone(),
            max_message_len: neg.max_message_len(),
        };
        tracing::info!(
            peer = %self.cfg.name,
            "established: peer AS {} id {}, hold {} s, families {:?}, extended messages {}",
            neg.peer_as, neg.peer_id, neg.hold_time, neg.families, neg.extended_message
        );
        let unix_now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let state = self.fsm.state();
        self.set_status(|s| {
            s.state = state;
            s.established_at = Some(unix_now);
            s.hold_time = Some(neg.hold_time);
            s.families = neg.families.iter().map(|f| family_name(*f)).collect();
            s.end_of_rib_received.clear();
        });
        self.metrics
            .established_transitions
            .get_or_create(&peer_labels(&self.cfg.name))
            .inc();
        // RFC 4724 §4.1 (restarting speaker): "Once the restarting speaker
        // has completed the initial update ... it MUST send an End-of-RIB
        // marker". The initial update is the agent's first desired set: if
        // it has not arrived yet, the marker waits for it, so a router never
        // drops herald's stale routes before their replacements are in.
        let mut rib = AdjRibOut::new(policy);
        let mut updates = rib.sync(&self.desired, self.graceful_shutdown);
        if self.desired_known {
            updates.extend(rib.end_of_rib());
        } else {
            self.end_of_rib_pending = true;
        }
        self.rib = Some(rib);
        self.record_rib();
        self.send_updates(updates).await
    }

    fn session_down(&mut self, reason: DownReason) {
        let text = reason.to_string();
        tracing::warn!(peer = %self.cfg.name, "session down: {text}");
        self.metrics
            .set_last_error(&self.cfg.name, self.last_error.as_deref(), &text);
        self.last_error = Some(text.clone());
        self.rib = None;
        self.end_of_rib_pending = false;
        self.record_rib();
        let state = self.fsm.state();
        let unix_now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.set_status(|s| {
            s.state = state;
            s.last_error = Some(text);
            s.last_error_at = Some(unix_now);
            s.end_of_rib_received.clear();
            s.established_at = None;
            s.hold_time = None;
            s.families.clear();
        });
    }

    fn update_received(&mut self, update: &Update) {
        let eor = update.end_of_rib_family();
        let announced = update.announced().count() as u64;
        let withdrawn = update.withdrawn_prefixes().count() as u64;
        if let Some(disposition) = update.disposition() {
            let label = match disposition {
                Disposition::AttributeDiscard => "attribute_discard",
                Disposition::TreatAsWithdraw => "treat_as_withdraw",
                Disposition::SessionReset => "session_reset",
            };
            for e in &update.errors {
                tracing::warn!(peer = %self.cfg.name, "malformed UPDATE ({label}): {e}");
            }
            self.metrics
                .malformed_updates
                .get_or_create(&DispositionLabels {
                    peer: self.cfg.name.clone(),
                    disposition: label.to_string(),
                })
                .inc();
        }
        let malformed = update.disposition().is_some();
        self.set_status(|s| {
            s.updates_received += 1;
            s.prefixes_received += announced;
            s.withdrawals_received += withdrawn;
            s.malformed_updates += u64::from(malformed);
            if let Some(f) = eor {
                s.end_of_rib_received.push(family_name(f));
            }
        });
    }

    /// Brings the peer's Adj-RIB-Out to the desired set.
    async fn sync_routes(&mut self) {
        let Some(rib) = &mut self.rib else {
            return;
        };
        let mut updates = rib.sync(&self.desired, self.graceful_shutdown);
        if self.desired_known && std::mem::take(&mut self.end_of_rib_pending) {
            updates.extend(rib.end_of_rib());
        }
        self.record_rib();
        if let Some(input) = self.send_updates(updates).await {
            self.feed(input).await;
        }
    }

    fn record_rib(&self) {
        for family in [AfiSafi::IPV4_UNICAST, AfiSafi::IPV6_UNICAST] {
            let n = self.rib.as_ref().map_or(0, |r| r.announced(family));
            self.metrics
                .prefixes_announced
                .get_or_create(&FamilyLabels {
                    peer: self.cfg.name.clone(),
                    family: family_name(family),
                })
                .set(n as i64);
        }
        let unannounceable = self.rib.as_ref().map_or(0, |r| r.unannounceable().len());
        self.metrics
            .prefixes_unannounceable
            .get_or_create(&peer_labels(&self.cfg.name))
            .set(unannounceable as i64);
        let announced = self.rib.as_ref().map_or(0, |r| {
            r.announced(AfiSafi::IPV4_UNICAST) + r.announced(AfiSafi::IPV6_UNICAST)
        });
        self.set_status(|s| {
            s.prefixes_announced = announced;
            s.prefixes_unannounceable = unannounceable;
        });
    }

    /// Writes UPDATEs on the Established connection, batched into large
    /// writes.
    async fn send_updates(&mut self, updates: Vec<Update>) -> Option<Input> {
        let dir = self.fsm.established()?.direction;
        let limit = self.write_limit();
        let conn = self.conns[slot(dir)].as_mut()?;
        let mut batch = Vec::with_capacity(256 * 1024);
        let count = updates.len();
        for update in updates {
            let message = Message::Update(Box::new(update));
            if let Err(e) = message.encode(&mut batch) {
                tracing::error!(peer = %self.cfg.name, "UPDATE not sent: {e}");
                continue;
            }
            if batch.len() >= 192 * 1024 {
                if write_bounded(&mut conn.writer, &batch, limit)
                    .await
                    .is_err()
                {
                    return Some(Input::TcpFailed(dir));
                }
                batch.clear();
            }
        }
        if !batch.is_empty()
            && write_bounded(&mut conn.writer, &batch, limit)
                .await
                .is_err()
        {
            return Some(Input::TcpFailed(dir));
        }
        self.metrics
            .messages_sent
            .get_or_create(&super::metrics::MessageLabels {
                peer: self.cfg.name.clone(),
                kind: "update".to_string(),
            })
            .inc_by(count as u64);
        None
    }
}

/// Writes all of `bytes` within `limit`: a peer that stops reading must not
/// stall the session task (and with it the hold and keepalive timers).
async fn write_bounded(
    writer: &mut OwnedWriteHalf,
    bytes: &[u8],
    limit: Duration,
) -> std::io::Result<()> {
    match tokio::time::timeout(limit, writer.write_all(bytes)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("peer accepted no data for {limit:?}"),
        )),
    }
}

/// Reads a connection: frames messages, decodes them, and reports each to
/// the session task. Stops at the first error or the end of the stream.
async fn read_messages(
    mut reader: OwnedReadHalf,
    dir: Direction,
    generation: u64,
    max_len: Arc<AtomicUsize>,
    tx: mpsc::Sender<Wire>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            let max = max_len.load(Ordering::Relaxed);
            match frame_len(&buf, max) {
                Ok(Some(len)) if buf.len() >= len => {
                    let frame = buf.split_to(len);
                    let result = Message::decode(&frame, max);
                    let fatal = result.is_err();
                    if tx.send(Wire::Frame(dir, generation, result)).await.is_err() || fatal {
                        return;
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    let _ = tx.send(Wire::Frame(dir, generation, Err(e.into()))).await;
                    return;
                }
            }
        }
        match reader.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = tx.send(Wire::Closed(dir, generation)).await;
                return;
            }
            Ok(_) => {}
        }
    }
}

impl SessionHandle {
    /// A sender for the speaker's listener table
    /// ([`serve_listener`](super::speaker::serve_listener)): connections sent
    /// here reach this session.
    pub fn incoming_sender(&self) -> mpsc::UnboundedSender<TcpStream> {
        let (tx, mut rx) = mpsc::unbounded_channel::<TcpStream>();
        // Weak, so that dropping the handle still ends the session.
        let commands = self.commands.downgrade();
        tokio::spawn(async move {
            while let Some(stream) = rx.recv().await {
                let Some(commands) = commands.upgrade() else {
                    break;
                };
                if commands.send(Command::Incoming(stream)).is_err() {
                    break;
                }
            }
        });
        tx
    }
}

/// The routes of `announcements`, as sessions take them.
pub fn routes<'a>(announcements: impl IntoIterator<Item = &'a Announcement>) -> Routes {
    announcements
        .into_iter()
        .map(|a| (a.prefix(), a.attributes.clone()))
        .collect()
}
