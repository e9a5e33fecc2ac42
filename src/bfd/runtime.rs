//! The BFD runtime: one OS thread with its own current-thread tokio runtime
//! that owns every session, socket and timer, so nothing else in herald (a
//! slow Kubernetes watch, a big reconcile, a busy tokio pool) can delay a
//! BFD packet.
//!
//! Owns: the receive sockets, the per-session transmit sockets, the timer
//! queue, demultiplexing (RFC 5880 §6.3, RFC 5881 §3, RFC 5883 §3), the TTL
//! checks (RFC 5881 §5, RFC 5883 §5) and the metrics writes. Must not touch:
//! BGP; it reports state changes on each session's channels and the agent
//! decides what they mean.
//!
//! ```text
//!   agent (any thread)                      "herald-bfd" thread
//!   ------------------                      -------------------------------
//!   BfdRuntime::add_session ---Command---->  Driver { sessions, timers }
//!   change_parameters / remove /              |  select over:
//!   admin_down_all                            |   receive sockets 3784/4784
//!                                             |   (IPv4, IPv6)
//!   SessionHandle.events  <--SessionEvent---  |   the earliest timer
//!   SessionHandle.status  <--watch---------   |   commands
//!                                             v
//!                                  Session::handle(now, input) -> actions
//!                                  (send, arm timers, state changed)
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6, UdpSocket};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::Interest;
use tokio::sync::{mpsc, watch};

use super::discriminator::DiscriminatorPool;
use super::metrics::{Metrics, SessionLabels};
use super::packet::{ControlPacket, Diagnostic, State};
use super::session::{Action, Input, Negotiated, Session, StateChange};
use super::socket::{self, Datagram, TTL_MAX, TransmitEndpoint};
use super::{BfdError, SessionConfig};

/// RFC 5883 §5 leaves the multihop TTL check to the operator; FRR bfdd's
/// default minimum is 254 (one router in between).
pub const DEFAULT_MULTIHOP_MIN_TTL: u8 = 254;

/// Datagrams read per wake-up of one socket, so timers are never starved.
const RECEIVE_BURST: usize = 256;

/// How the runtime listens.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    pub single_hop_port: u16,
    pub multihop_port: u16,
    /// Open the IPv6 receive sockets too (a host without IPv6 says false).
    pub ipv6: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            single_hop_port: socket::SINGLE_HOP_PORT,
            multihop_port: socket::MULTIHOP_PORT,
            ipv6: true,
        }
    }
}

/// What the agent asks for: one session to one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSpec {
    pub peer: IpAddr,
    /// Source address of our packets; the kernel chooses when `None`.
    pub local: Option<IpAddr>,
    /// Single-hop: the interface to the peer (SO_BINDTODEVICE, and the
    /// demultiplexing key with the source address).
    pub interface: Option<String>,
    /// RFC 5883 multihop (UDP 4784) instead of RFC 5881 single-hop.
    pub multihop: bool,
    /// Multihop: the smallest TTL accepted.
    pub min_ttl: u8,
    pub config: SessionConfig,
}

impl SessionSpec {
    pub fn single_hop(peer: IpAddr, config: SessionConfig) -> SessionSpec {
        SessionSpec {
            peer,
            local: None,
            interface: None,
            multihop: false,
            min_ttl: TTL_MAX,
            config,
        }
    }

    pub fn multihop(peer: IpAddr, config: SessionConfig) -> SessionSpec {
        SessionSpec {
            multihop: true,
            min_ttl: DEFAULT_MULTIHOP_MIN_TTL,
            ..SessionSpec::single_hop(peer, config)
        }
    }

    fn labels(&self) -> SessionLabels {
        SessionLabels {
            peer: self.peer.to_string(),
            hop: if self.multihop {
                "multihop"
            } else {
                "single_hop"
            }
            .to_string(),
        }
    }

    fn describe(&self) -> String {
        let hop = if self.multihop {
            "multihop"
        } else {
            "single-hop"
        };
        match &self.interface {
            Some(interface) => format!("{hop} to {} on {interface}", self.peer),
            None => format!("{hop} to {}", self.peer),
        }
    }
}

/// A session, named by its local discriminator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionId(pub u32);

/// One state change of one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionEvent {
    pub id: SessionId,
    pub peer: IpAddr,
    pub change: StateChange,
    pub at: Instant,
}

/// The latest view of a session (for strict mode and /status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionStatus {
    pub state: State,
    pub remote_state: State,
    pub local_diag: Diagnostic,
    pub local_discriminator: u32,
    pub remote_discriminator: u32,
    pub negotiated: Negotiated,
    pub polling: bool,
    /// State changes so far: a quick Up -> Down -> Up still shows here.
    pub transitions: u64,
    pub last_change: Option<StateChange>,
}

/// What [`BfdRuntime::add_session`] gives back.
#[derive(Debug)]
pub struct SessionHandle {
    pub id: SessionId,
    /// Every state change, in order.
    pub events: mpsc::UnboundedReceiver<SessionEvent>,
    /// The latest status.
    pub status: watch::Receiver<SessionStatus>,
}

enum Command {
    Add(
        Box<SessionSpec>,
        std_mpsc::SyncSender<Result<SessionHandle, BfdError>>,
    ),
    Change(
        SessionId,
        SessionConfig,
        std_mpsc::SyncSender<Result<(), BfdError>>,
    ),
    Remove(SessionId, std_mpsc::SyncSender<Result<(), BfdError>>),
    AdminDownAll(std_mpsc::SyncSender<()>),
    Shutdown,
}

/// The handle the agent holds; dropping it stops the thread.
#[derive(Debug)]
pub struct BfdRuntime {
    commands: mpsc::UnboundedSender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Add(..) => "Add",
            Command::Change(..) => "Change",
            Command::Remove(..) => "Remove",
            Command::AdminDownAll(..) => "AdminDownAll",
            Command::Shutdown => "Shutdown",
        })
    }
}

impl BfdRuntime {
    /// Start the thread and open the receive sockets in the caller's
    /// network namespace. Fails if the IPv4 sockets cannot be bound.
    pub fn spawn(options: RuntimeOptions, metrics: Metrics) -> Result<BfdRuntime, BfdError> {
        let (commands, receiver) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std_mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("herald-bfd".to_string())
            .spawn(move || run(options, metrics, receiver, ready_tx))
            .map_err(|e| BfdError::io("spawn the bfd thread", e))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(BfdRuntime {
                commands,
                thread: Some(thread),
            }),
            Ok(Err(error)) => {
                let _ = thread.join();
                Err(error)
            }
            Err(_) => {
                let _ = thread.join();
                Err(BfdError::Stopped)
            }
        }
    }

    fn request<T>(
        &self,
        command: impl FnOnce(std_mpsc::SyncSender<T>) -> Command,
    ) -> Result<T, BfdError> {
        let (reply, answer) = std_mpsc::sync_channel(1);
        self.commands
            .send(command(reply))
            .map_err(|_| BfdError::Stopped)?;
        answer.recv().map_err(|_| BfdError::Stopped)
    }

    /// Create a session and start it. Blocks for the moment the BFD thread
    /// takes to open its socket (microseconds).
    pub fn add_session(&self, spec: SessionSpec) -> Result<SessionHandle, BfdError> {
        self.request(|reply| Command::Add(Box::new(spec), reply))?
    }

    /// New intervals or multiplier: a Poll Sequence when Up (RFC 5880 §6.8.3).
    pub fn change_parameters(&self, id: SessionId, config: SessionConfig) -> Result<(), BfdError> {
        self.request(|reply| Command::Change(id, config, reply))?
    }

    /// Tell the peer AdminDown (one packet) and forget the session.
    pub fn remove_session(&self, id: SessionId) -> Result<(), BfdError> {
        self.request(|reply| Command::Remove(id, reply))?
    }

    /// Planned shutdown: every session goes AdminDown (diag 7) and signals
    /// it for a Detection Time. Returns once the first packets are sent.
    pub fn admin_down_all(&self) -> Result<(), BfdError> {
        self.request(Command::AdminDownAll)
    }

    /// Stop the thread (sessions vanish without a word: use
    /// [`BfdRuntime::admin_down_all`] first for a planned shutdown).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for BfdRuntime {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    options: RuntimeOptions,
    metrics: Metrics,
    commands: mpsc::UnboundedReceiver<Command>,
    ready: std_mpsc::SyncSender<Result<(), BfdError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(BfdError::io("build the bfd runtime", error)));
            return;
        }
    };
    runtime.block_on(async move {
        let driver = match Driver::new(&options, metrics) {
            Ok(driver) => driver,
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        driver.run(commands).await;
    });
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Tx,
    Detection,
}

struct Listener {
    socket: tokio::net::UdpSocket,
    ipv6: bool,
    multihop: bool,
}

struct Entry {
    spec: SessionSpec,
    labels: SessionLabels,
    session: Session,
    socket: UdpSocket,
    port: u16,
    ifindex: Option<u32>,
    destination: SocketAddr,
    tx_at: Option<Instant>,
    detect_at: Option<Instant>,
    /// Last packet received while Up, for the largest-gap metric.
    last_rx_up: Option<Instant>,
    transitions: u64,
    last_change: Option<StateChange>,
    events: mpsc::UnboundedSender<SessionEvent>,
    status: watch::Sender<SessionStatus>,
}

impl Entry {
    fn status(&self) -> SessionStatus {
        SessionStatus {
            state: self.session.state(),
            remote_state: self.session.remote_state(),
            local_diag: self.session.local_diag(),
            local_discriminator: self.session.local_discriminator(),
            remote_discriminator: self.session.remote_discriminator(),
            negotiated: self.session.negotiated(),
            polling: self.session.polling(),
            transitions: self.transitions,
            last_change: self.last_change,
        }
    }
}

enum Wake {
    Readable(usize),
    Timer,
    Command(Option<Command>),
}

struct Driver {
    listeners: Vec<Listener>,
    sessions: HashMap<u32, Entry>,
    pool: DiscriminatorPool,
    ports: HashSet<u16>,
    timers: BinaryHeap<Reverse<(Instant, u32, Timer)>>,
    metrics: Metrics,
    rng: StdRng,
    buffer: Vec<u8>,
}

async fn readable(listener: Option<&Listener>) -> io::Result<()> {
    match listener {
        // Readiness is cleared by the drain's WouldBlock (`try_io`).
        Some(listener) => listener.socket.readable().await,
        None => std::future::pending().await,
    }
}

impl Driver {
    fn new(options: &RuntimeOptions, metrics: Metrics) -> Result<Driver, BfdError> {
        let mut listeners = Vec::new();
        let mut families = vec![false];
        if options.ipv6 {
            families.push(true);
        }
        for ipv6 in families {
            for (multihop, port) in [
                (false, options.single_hop_port),
                (true, options.multihop_port),
            ] {
                let family = if ipv6 { "IPv6" } else { "IPv4" };
                let opened =
                    socket::receive_socket(ipv6, port).and_then(tokio::net::UdpSocket::from_std);
                match opened {
                    Ok(socket) => listeners.push(Listener {
                        socket,
                        ipv6,
                        multihop,
                    }),
                    // A host without IPv6 still runs IPv4 sessions.
                    Err(error) if ipv6 => {
                        tracing::warn!(%error, port, "bfd: no {family} receive socket")
                    }
                    Err(error) => {
                        return Err(BfdError::io(
                            format!("bind the {family} bfd socket on udp port {port}"),
                            error,
                        ));
                    }
                }
            }
        }
        Ok(Driver {
            listeners,
            sessions: HashMap::new(),
            pool: DiscriminatorPool::default(),
            ports: HashSet::new(),
            timers: BinaryHeap::new(),
            metrics,
            rng: StdRng::from_os_rng(),
            buffer: vec![0; 512],
        })
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            let deadline = self
                .timers
                .peek()
                .map(|Reverse((at, _, _))| tokio::time::Instant::from_std(*at));
            let wake = {
                let sleep = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    _ = sleep => Wake::Timer,
                    r = readable(self.listeners.first()) => { log_readiness(r); Wake::Readable(0) }
                    r = readable(self.listeners.get(1)) => { log_readiness(r); Wake::Readable(1) }
                    r = readable(self.listeners.get(2)) => { log_readiness(r); Wake::Readable(2) }
                    r = readable(self.listeners.get(3)) => { log_readiness(r); Wake::Readable(3) }
                    command = commands.recv() => Wake::Command(command),
                }
            };
            match wake {
                Wake::Timer => self.fire_timers(),
                Wake::Readable(index) => self.drain(index),
                Wake::Command(None) | Wake::Command(Some(Command::Shutdown)) => return,
                Wake::Command(Some(command)) => self.command(command),
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Add(spec, reply) => {
                let _ = reply.send(self.add(*spec));
            }
            Command::Change(id, config, reply) => {
                let result = match self.sessions.contains_key(&id.0) {
                    true => {
                        self.input(id.0, Instant::now(), Input::ChangeParameters(config));
                        Ok(())
                    }
                    false => Err(BfdError::UnknownSession(id.0)),
                };
                let _ = reply.send(result);
            }
            Command::Remove(id, reply) => {
                let _ = reply.send(self.remove(id.0));
            }
            Command::AdminDownAll(reply) => {
                let now = Instant::now();
                let all: Vec<u32> = self.sessions.keys().copied().collect();
                for discriminator in all {
                    self.input(discriminator, now, Input::AdminDown);
                }
                let _ = reply.send(());
            }
            Command::Shutdown => {}
        }
    }

    fn add(&mut self, spec: SessionSpec) -> Result<SessionHandle, BfdError> {
        let spec = SessionSpec {
            config: spec.config.validated()?,
            ..spec
        };
        let ipv6 = spec.peer.is_ipv6();
        if let Some(local) = spec.local
            && local.is_ipv6() != ipv6
        {
            return Err(BfdError::Unsupported(format!(
                "local address {local} and peer {} are of different families",
                spec.peer
            )));
        }
        if !self
            .listeners
            .iter()
            .any(|l| l.ipv6 == ipv6 && l.multihop == spec.multihop)
        {
            return Err(BfdError::Unsupported(format!(
                "no receive socket for {}",
                spec.describe()
            )));
        }
        if self.sessions.values().any(|e| {
            e.spec.peer == spec.peer
                && e.spec.multihop == spec.multihop
                && e.spec.interface == spec.interface
                && e.spec.local == spec.local
        }) {
            return Err(BfdError::DuplicateSession(spec.describe()));
        }
        let ifindex = match &spec.interface {
            Some(name) => Some(
                socket::ifindex(name)
                    .map_err(|e| BfdError::io(format!("find interface {name}"), e))?,
            ),
            None => None,
        };
        let start = self.rng.random_range(socket::SOURCE_PORTS);
        let endpoint = TransmitEndpoint {
            ipv6,
            local: spec.local,
            interface: spec.interface.as_deref(),
            ifindex,
        };
        let (tx_socket, port) = socket::transmit_socket(&endpoint, &self.ports, start)
            .map_err(|e| BfdError::io(format!("open the socket for {}", spec.describe()), e))?;
        let discriminator = self.pool.allocate(&mut self.rng);
        self.ports.insert(port);
        let session = Session::new(spec.config, discriminator, self.rng.random());
        let destination_port = if spec.multihop {
            socket::MULTIHOP_PORT
        } else {
            socket::SINGLE_HOP_PORT
        };
        let destination = match spec.peer {
            IpAddr::V6(ip) => SocketAddr::V6(SocketAddrV6::new(
                ip,
                destination_port,
                0,
                socket::scope_for(ip, ifindex),
            )),
            ip => SocketAddr::new(ip, destination_port),
        };
        let (events_tx, events) = mpsc::unbounded_channel();
        let labels = spec.labels();
        let entry = Entry {
            labels,
            session,
            socket: tx_socket,
            port,
            ifindex,
            destination,
            tx_at: None,
            detect_at: None,
            last_rx_up: None,
            transitions: 0,
            last_change: None,
            events: events_tx,
            status: watch::channel(SessionStatus {
                state: State::Down,
                remote_state: State::Down,
                local_diag: Diagnostic::None,
                local_discriminator: discriminator,
                remote_discriminator: 0,
                negotiated: Negotiated::default(),
                polling: false,
                transitions: 0,
                last_change: None,
            })
            .0,
            spec,
        };
        let status = entry.status.subscribe();
        entry.status.send_replace(entry.status());
        self.metrics.set_state(&entry.labels, State::Down);
        tracing::info!(
            session = %entry.spec.describe(),
            discriminator,
            source_port = port,
            "bfd: session added"
        );
        self.sessions.insert(discriminator, entry);
        self.input(discriminator, Instant::now(), Input::Start);
        Ok(SessionHandle {
            id: SessionId(discriminator),
            events,
            status,
        })
    }

    fn remove(&mut self, discriminator: u32) -> Result<(), BfdError> {
        if !self.sessions.contains_key(&discriminator) {
            return Err(BfdError::UnknownSession(discriminator));
        }
        // One AdminDown packet so the peer does not see a failure.
        self.input(discriminator, Instant::now(), Input::AdminDown);
        if let Some(entry) = self.sessions.remove(&discriminator) {
            self.pool.release(discriminator);
            self.ports.remove(&entry.port);
            self.metrics.remove_session(&entry.labels);
            tracing::info!(session = %entry.spec.describe(), "bfd: session removed");
        }
        Ok(())
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, discriminator, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(entry) = self.sessions.get_mut(&discriminator) else {
                continue;
            };
            // Entries superseded by a later Arm or a Stop are skipped.
            let input = match timer {
                Timer::Tx if entry.tx_at == Some(at) => {
                    entry.tx_at = None;
                    Input::TxTimerExpired
                }
                Timer::Detection if entry.detect_at == Some(at) => {
                    entry.detect_at = None;
                    Input::DetectionTimerExpired
                }
                _ => continue,
            };
            self.input(discriminator, now, input);
        }
    }

    fn drain(&mut self, index: usize) {
        let Some(listener) = self.listeners.get(index) else {
            return;
        };
        let multihop = listener.multihop;
        for _ in 0..RECEIVE_BURST {
            let listener = &self.listeners[index];
            let received = listener.socket.try_io(Interest::READABLE, || {
                socket::receive(&listener.socket, &mut self.buffer)
            });
            match received {
                Ok(datagram) => self.dispatch(multihop, datagram),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) => {
                    tracing::warn!(%error, "bfd: receive failed");
                    return;
                }
            }
        }
    }

    /// Checks that need the transport, then demultiplexing, then the
    /// session.
    fn dispatch(&mut self, multihop: bool, datagram: Datagram) {
        let now = Instant::now();
        let ttl = datagram.ttl.unwrap_or(0);
        // RFC 5881 §5: "If BFD authentication is not in use on a session,
        // all BFD Control packets for the session [...] MUST be discarded if
        // the received TTL or Hop Limit is not equal to 255."
        if !multihop && ttl != TTL_MAX {
            self.metrics.drop_packet("ttl");
            tracing::debug!(source = %datagram.source, ttl, "bfd: dropped, ttl is not 255");
            return;
        }
        let payload = &self.buffer[..datagram.len.min(self.buffer.len())];
        let packet = match ControlPacket::decode(payload) {
            Ok(packet) => packet,
            Err(error) => {
                self.metrics.drop_packet(error.reason());
                tracing::debug!(source = %datagram.source, %error, "bfd: dropped");
                return;
            }
        };
        let Some(discriminator) = self.demultiplex(multihop, &datagram, &packet) else {
            let reason = if packet.your_discriminator == 0 {
                "no_session"
            } else {
                "unknown_discriminator"
            };
            self.metrics.drop_packet(reason);
            tracing::debug!(
                source = %datagram.source,
                your_discriminator = packet.your_discriminator,
                reason,
                "bfd: dropped"
            );
            return;
        };
        let Some(entry) = self.sessions.get_mut(&discriminator) else {
            return;
        };
        // RFC 5883 §5: multihop sessions check a minimum TTL instead.
        if multihop && ttl < entry.spec.min_ttl {
            self.metrics.drop_packet("ttl");
            return;
        }
        if entry.session.state() == State::Up {
            if let Some(last) = entry.last_rx_up {
                self.metrics.observe_rx_gap(&entry.labels, now - last);
            }
            entry.last_rx_up = Some(now);
        } else {
            entry.last_rx_up = None;
        }
        self.metrics.received.get_or_create(&entry.labels).inc();
        self.input(discriminator, now, Input::Received(packet));
    }

    /// RFC 5880 §6.8.6: "If the Your Discriminator field is nonzero, it MUST
    /// be used to select the session with which this BFD packet is
    /// associated. If no session is found, the packet MUST be discarded."
    /// With a zero Your Discriminator, RFC 5881 §3 selects by source address
    /// and interface, RFC 5883 §3 by source and destination address.
    fn demultiplex(
        &self,
        multihop: bool,
        datagram: &Datagram,
        packet: &ControlPacket,
    ) -> Option<u32> {
        let source = datagram.source.ip();
        if packet.your_discriminator != 0 {
            let entry = self.sessions.get(&packet.your_discriminator)?;
            // The discriminator must belong to a session with this peer and
            // of this kind; anything else is a spoof or a stale peer.
            return (entry.spec.peer == source && entry.spec.multihop == multihop)
                .then_some(packet.your_discriminator);
        }
        self.sessions.iter().find_map(|(discriminator, entry)| {
            let spec = &entry.spec;
            let matches = spec.peer == source
                && spec.multihop == multihop
                && if multihop {
                    spec.local.is_none() || spec.local == datagram.destination
                } else {
                    entry.ifindex.is_none() || entry.ifindex == datagram.ifindex
                };
            matches.then_some(*discriminator)
        })
    }

    /// Feed a session and perform its actions.
    fn input(&mut self, discriminator: u32, now: Instant, input: Input) {
        let Some(entry) = self.sessions.get_mut(&discriminator) else {
            return;
        };
        let actions = entry.session.handle(now, input);
        for action in actions {
            match action {
                Action::Send(packet) => match packet.encode() {
                    Ok(bytes) => match entry.socket.send_to(&bytes, entry.destination) {
                        Ok(_) => {
                            self.metrics.sent.get_or_create(&entry.labels).inc();
                        }
                        Err(error) => {
                            self.metrics.send_errors.get_or_create(&entry.labels).inc();
                            tracing::debug!(%error, peer = %entry.spec.peer, "bfd: send failed");
                        }
                    },
                    Err(error) => tracing::error!(%error, "bfd: cannot encode our own packet"),
                },
                Action::ArmTxTimer(at) => {
                    entry.tx_at = Some(at);
                    self.timers.push(Reverse((at, discriminator, Timer::Tx)));
                }
                Action::StopTxTimer => entry.tx_at = None,
                Action::ArmDetectionTimer(at) => {
                    entry.detect_at = Some(at);
                    self.timers
                        .push(Reverse((at, discriminator, Timer::Detection)));
                }
                Action::StopDetectionTimer => entry.detect_at = None,
                Action::StateChanged(change) => {
                    entry.transitions += 1;
                    entry.last_change = Some(change);
                    self.metrics
                        .transition(&entry.labels, change.old, change.new, change.diag);
                    self.metrics.set_state(&entry.labels, change.new);
                    tracing::info!(
                        session = %entry.spec.describe(),
                        from = %change.old,
                        to = %change.new,
                        diag = %change.diag,
                        cause = ?change.cause,
                        "bfd: session state changed"
                    );
                    let _ = entry.events.send(SessionEvent {
                        id: SessionId(discriminator),
                        peer: entry.spec.peer,
                        change,
                        at: now,
                    });
                }
                Action::Discarded(reason) => self.metrics.drop_packet(reason),
            }
        }
        let status = entry.status();
        let negotiated = status.negotiated;
        let changed = entry.status.send_if_modified(|current| {
            let changed = *current != status;
            if changed {
                *current = status;
            }
            changed
        });
        if changed {
            self.metrics.set_timers(
                &entry.labels,
                negotiated.tx_interval,
                negotiated.rx_interval,
                negotiated.detection_time,
            );
        }
    }
}

fn log_readiness(result: io::Result<()>) {
    if let Err(error) = result {
        tracing::warn!(%error, "bfd: socket readiness failed");
    }
}
