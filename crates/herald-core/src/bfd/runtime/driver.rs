//! The BFD thread's event loop: the sessions, their sockets and timers,
//! demultiplexing and the transport checks (see the parent module for the
//! why and the how-it-stays-cheap notes).
//!
//! Owns: everything on the "herald-bfd" thread. Must not touch: anything
//! outside it; it answers [`Command`]s and reports on each session's
//! channels.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant, SystemTime};

use mio::unix::SourceFd;
use mio::{Events, Poll, Token, Waker};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};

use super::{
    Command, HEARTBEAT_PERIOD, RuntimeOptions, SessionEvent, SessionHandle, SessionId, SessionSpec,
    SessionStatus, TX_COALESCING,
};
use crate::bfd::BfdError;
use crate::bfd::discriminator::DiscriminatorPool;
use crate::bfd::metrics::{Metrics, SessionLabels};
use crate::bfd::packet::{ControlPacket, DecodeError, Diagnostic, State};
use crate::bfd::session::{Action, Input, Negotiated, Session, StateChange};
use crate::bfd::socket::{self, Datagram, ReceiveBatch, TTL_MAX, TransmitEndpoint};
use crate::bfd::timers::{DiscriminatorMap, TimerQueue};

/// The smallest window any session has (a tenth of the 10 ms minimum
/// interval): a wait for a transmit deadline may end this early.
const TX_COALESCING_MIN: Duration = Duration::from_millis(1);

/// How long received packets may wait to be read when a timer is due
/// within this time anyway: the thread then sleeps until the timer instead
/// of waking for each packet (see the module doc).
const RX_DEFERRAL: Duration = Duration::from_millis(5);

/// Batches read from one socket per wake-up (of [`socket::BATCH`]
/// datagrams each), so timers are never starved by a flood.
const RECEIVE_BATCHES: usize = 8;

/// The event-loop token of the command waker; the wildcard receive
/// sockets use their index, a session's own receive socket
/// `PEER_TOKENS + its discriminator`.
const COMMANDS: Token = Token(usize::MAX);
const PEER_TOKENS: usize = 1 << 40;

/// A session's two timers, the keys of the timer queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Timer {
    Tx(u32),
    Detection(u32),
}

/// Where a wake-up's datagrams come from.
#[derive(Clone, Copy)]
enum Source {
    /// The wildcard listener at this index.
    Listener(usize),
    /// The session with this local discriminator, on its own socket.
    Peer(u32),
}

struct Listener {
    socket: UdpSocket,
    /// `None` only while [`Driver::drain`] uses it.
    batch: Option<ReceiveBatch>,
    ipv6: bool,
    multihop: bool,
}

type Seconds = Gauge<f64, AtomicU64>;

struct Entry {
    spec: SessionSpec,
    labels: SessionLabels,
    session: Session,
    socket: UdpSocket,
    /// The session's own receive socket (see
    /// [`socket::peer_receive_socket`]): the peer's packets queue here,
    /// apart from anything else sent to the BFD ports. `None` when it could
    /// not be opened; the wildcard sockets then take the peer's packets.
    receiver: Option<UdpSocket>,
    /// Its reused read buffers; `None` only while it is drained.
    receiver_batch: Option<ReceiveBatch>,
    /// `socket` is connected to `destination` (see [`Entry::send`]).
    connected: bool,
    port: u16,
    ifindex: Option<u32>,
    destination: SocketAddr,
    /// The detection deadline the session asked for (also in the queue).
    detect_at: Option<Instant>,
    /// Arrival of the last packet received while Up, for the largest gap.
    last_rx_up: Option<Instant>,
    /// The last packet we sent while Up, for the largest gap we left.
    last_tx_up: Option<Instant>,
    transitions: u64,
    last_change: Option<StateChange>,
    events: mpsc::UnboundedSender<SessionEvent>,
    status: watch::Sender<SessionStatus>,
    /// What `status` holds, to publish only changes.
    published: SessionStatus,
    // Metric handles, looked up once.
    received: Counter,
    sent: Counter,
    send_errors: Counter,
    max_rx_gap: Seconds,
    max_tx_gap: Seconds,
}

impl Entry {
    /// Send one datagram to the peer. A connected socket spares the kernel
    /// a route lookup per packet. It also reports an ICMP error from the
    /// peer (port unreachable while its BFD is not running) on the next
    /// send, which fails once with ECONNREFUSED without sending: that send
    /// is retried once.
    fn send(&self, bytes: &[u8]) -> io::Result<usize> {
        if !self.connected {
            return self.socket.send_to(bytes, self.destination);
        }
        match self.socket.send(bytes) {
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                self.socket.send(bytes)
            }
            result => result,
        }
    }

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

pub(super) struct Driver {
    poll: Poll,
    pub(super) waker: Arc<Waker>,
    commands: std_mpsc::Receiver<Command>,
    listeners: Vec<Listener>,
    sessions: DiscriminatorMap<u32, Entry>,
    pool: DiscriminatorPool,
    ports: HashSet<u16>,
    timers: TimerQueue<Timer>,
    metrics: Metrics,
    rng: StdRng,
    /// Reused for every packet sent.
    encoded: Vec<u8>,
    /// Reused for every session input.
    actions: Vec<Action>,
    /// Beaten every turn of the loop (`/livez` reads it).
    heartbeat: crate::heartbeat::Heartbeat,
}

/// Whether the loop goes on.
enum Flow {
    Continue,
    Stop,
}

impl Driver {
    pub(super) fn new(
        options: &RuntimeOptions,
        metrics: Metrics,
        commands: std_mpsc::Receiver<Command>,
    ) -> Result<Driver, BfdError> {
        let poll = Poll::new().map_err(|e| BfdError::io("create the bfd event loop", e))?;
        let waker = Waker::new(poll.registry(), COMMANDS)
            .map_err(|e| BfdError::io("create the bfd command waker", e))?;
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
                let opened = socket::receive_socket(ipv6, port).and_then(|socket| {
                    poll.registry().register(
                        &mut SourceFd(&socket.as_raw_fd()),
                        Token(listeners.len()),
                        mio::Interest::READABLE,
                    )?;
                    Ok(socket)
                });
                match opened {
                    Ok(socket) => listeners.push(Listener {
                        socket,
                        batch: Some(ReceiveBatch::default()),
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
            poll,
            waker: Arc::new(waker),
            commands,
            listeners,
            sessions: DiscriminatorMap::default(),
            pool: DiscriminatorPool::default(),
            ports: HashSet::new(),
            timers: TimerQueue::default(),
            metrics,
            rng: StdRng::from_os_rng(),
            encoded: Vec::with_capacity(64),
            actions: Vec::with_capacity(8),
            heartbeat: options.heartbeat.clone(),
        })
    }

    /// The loop: wait, read, fire, until told to stop.
    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(16);
        loop {
            self.heartbeat.beat();
            let now = Instant::now();
            let timeout = match self.timers.earliest() {
                None => None,
                Some((_, at)) if at <= now => Some(Duration::ZERO),
                Some((timer, at)) => {
                    let left = at - now;
                    if left <= RX_DEFERRAL {
                        // Due soon: sleep without listening to the sockets
                        // (a precise sleep, not epoll's milliseconds); what
                        // arrives meanwhile is read next, stamped with its
                        // arrival time.
                        std::thread::sleep(left);
                        Some(Duration::ZERO)
                    } else {
                        match timer {
                            // epoll rounds up to whole milliseconds: this
                            // wakes within the coalescing window before
                            // the deadline, and the timer fires then.
                            Timer::Tx(_) => Some(left - TX_COALESCING_MIN),
                            // Never early: wake a little before, then sleep
                            // precisely (above).
                            Timer::Detection(_) => Some(left - RX_DEFERRAL),
                        }
                    }
                }
            };
            // Wake at least every HEARTBEAT_PERIOD, so an idle thread still
            // shows it is alive.
            let timeout = Some(timeout.map_or(HEARTBEAT_PERIOD, |t| t.min(HEARTBEAT_PERIOD)));
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(%error, "bfd: event loop wait failed");
                    std::thread::sleep(Duration::from_millis(1));
                }
                continue;
            }
            // The peers' own sockets first: whatever floods the wildcard
            // sockets is read after the peers' packets.
            for event in events.iter() {
                if let Some(discriminator) = peer_token(event.token()) {
                    self.drain_peer(discriminator);
                }
            }
            for event in events.iter() {
                if event.token() != COMMANDS && peer_token(event.token()).is_none() {
                    self.drain(event.token().0);
                }
            }
            if let Flow::Stop = self.commands() {
                self.heartbeat.stop();
                return;
            }
            self.fire_timers();
        }
    }

    /// Perform every queued command.
    fn commands(&mut self) -> Flow {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Shutdown) | Err(std_mpsc::TryRecvError::Disconnected) => {
                    return Flow::Stop;
                }
                Ok(command) => self.command(command),
                Err(std_mpsc::TryRecvError::Empty) => return Flow::Continue,
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
            Command::ChangeAuth(id, auth, reply) => {
                let result = match self.sessions.get_mut(&id.0) {
                    Some(entry) => {
                        entry.spec.auth = auth.clone();
                        self.input(id.0, Instant::now(), Input::ChangeAuth(auth));
                        Ok(())
                    }
                    None => Err(BfdError::UnknownSession(id.0)),
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
        let session = Session::new(spec.config, discriminator, self.rng.random())
            .with_tx_coalescing(TX_COALESCING)
            .with_auth(spec.auth.clone());
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
        // Without a route to the peer yet, stay unconnected and let each
        // send find one.
        let connected = match tx_socket.connect(destination) {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(%error, session = %spec.describe(), "bfd: socket not connected");
                false
            }
        };
        let receiver = self.open_receiver(&spec, &endpoint, discriminator);
        let (events_tx, events) = mpsc::unbounded_channel();
        let labels = spec.labels();
        let initial = SessionStatus {
            state: State::Down,
            remote_state: State::Down,
            local_diag: Diagnostic::None,
            local_discriminator: discriminator,
            remote_discriminator: 0,
            negotiated: Negotiated::default(),
            polling: false,
            transitions: 0,
            last_change: None,
        };
        let (status_tx, status) = watch::channel(initial.clone());
        let entry = Entry {
            received: self.metrics.received.get_or_create(&labels).clone(),
            sent: self.metrics.sent.get_or_create(&labels).clone(),
            send_errors: self.metrics.send_errors.get_or_create(&labels).clone(),
            max_rx_gap: self.metrics.max_rx_gap.get_or_create(&labels).clone(),
            max_tx_gap: self.metrics.max_tx_gap.get_or_create(&labels).clone(),
            labels,
            session,
            socket: tx_socket,
            receiver,
            receiver_batch: Some(ReceiveBatch::default()),
            connected,
            port,
            ifindex,
            destination,
            detect_at: None,
            last_rx_up: None,
            last_tx_up: None,
            transitions: 0,
            last_change: None,
            events: events_tx,
            status: status_tx,
            published: initial,
            spec,
        };
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
        self.timers.stop(Timer::Tx(discriminator));
        self.timers.stop(Timer::Detection(discriminator));
        if let Some(entry) = self.sessions.remove(&discriminator) {
            if let Some(receiver) = &entry.receiver {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&receiver.as_raw_fd()));
            }
            self.pool.release(discriminator);
            self.ports.remove(&entry.port);
            self.metrics.remove_session(&entry.labels);
            tracing::info!(session = %entry.spec.describe(), "bfd: session removed");
        }
        Ok(())
    }

    /// Fire every detection timer that is due and every transmit timer due
    /// within its session's coalescing window. The queue is ordered by
    /// deadline and the windows differ a little, so this stops at the first
    /// timer that is not due; a later one due within its window fires at
    /// the next wake-up, still before its deadline.
    fn fire_timers(&mut self) {
        let now = Instant::now();
        let mut drained = false;
        while let Some((timer, at)) = self.timers.earliest() {
            let due = match timer {
                Timer::Tx(discriminator) => {
                    let window = self
                        .sessions
                        .get(&discriminator)
                        .map_or(Duration::ZERO, |e| e.session.tx_coalescing_window());
                    at <= now + window
                }
                Timer::Detection(_) => at <= now,
            };
            if !due {
                return;
            }
            if matches!(timer, Timer::Detection(_)) && !drained {
                // A packet already queued in a socket must count before a
                // detection timer fires (when this thread was late, both
                // are due at once); its arrival time decides which came
                // first (see `dispatch`). It may move this timer: look again.
                self.drain_all();
                drained = true;
                continue;
            }
            self.timers.pop_if(|_, _| true);
            match timer {
                Timer::Tx(discriminator) => {
                    self.input(discriminator, now, Input::TxTimerExpired);
                }
                Timer::Detection(discriminator) => {
                    if let Some(entry) = self.sessions.get_mut(&discriminator) {
                        entry.detect_at = None;
                    }
                    self.input(discriminator, now, Input::DetectionTimerExpired);
                }
            }
        }
    }

    fn drain_all(&mut self) {
        let peers: Vec<u32> = self
            .sessions
            .iter()
            .filter(|(_, entry)| entry.receiver.is_some())
            .map(|(discriminator, _)| *discriminator)
            .collect();
        for discriminator in peers {
            self.drain_peer(discriminator);
        }
        for index in 0..self.listeners.len() {
            self.drain(index);
        }
    }

    /// Opens and registers a session's own receive socket; on failure the
    /// session runs on the wildcard sockets alone, and says so.
    fn open_receiver(
        &self,
        spec: &SessionSpec,
        endpoint: &TransmitEndpoint<'_>,
        discriminator: u32,
    ) -> Option<UdpSocket> {
        let port = self
            .listeners
            .iter()
            .find(|l| l.ipv6 == endpoint.ipv6 && l.multihop == spec.multihop)
            .and_then(|l| l.socket.local_addr().ok())?
            .port();
        let opened = socket::peer_receive_socket(endpoint, port, spec.peer).and_then(|socket| {
            self.poll.registry().register(
                &mut SourceFd(&socket.as_raw_fd()),
                Token(PEER_TOKENS + discriminator as usize),
                mio::Interest::READABLE,
            )?;
            Ok(socket)
        });
        match opened {
            Ok(socket) => Some(socket),
            Err(error) => {
                tracing::warn!(
                    %error,
                    session = %spec.describe(),
                    "bfd: no receive socket of its own; the peer's packets share the wildcard socket"
                );
                None
            }
        }
    }

    /// Read what is queued on a session's own receive socket.
    fn drain_peer(&mut self, discriminator: u32) {
        let Some(entry) = self.sessions.get_mut(&discriminator) else {
            return;
        };
        let multihop = entry.spec.multihop;
        // Taken out while its datagrams are dispatched (no copy, no
        // allocation), put back after.
        let Some(mut batch) = entry.receiver_batch.take() else {
            return;
        };
        self.receive_batches(&mut batch, multihop, Source::Peer(discriminator));
        if let Some(entry) = self.sessions.get_mut(&discriminator) {
            entry.receiver_batch = Some(batch);
        }
    }

    /// Read what is queued on listener `index`.
    fn drain(&mut self, index: usize) {
        let Some(mut batch) = self.listeners.get_mut(index).and_then(|l| l.batch.take()) else {
            return;
        };
        let multihop = self.listeners[index].multihop;
        self.receive_batches(&mut batch, multihop, Source::Listener(index));
        self.listeners[index].batch = Some(batch);
    }

    /// The socket a wake-up reads from; `None` once it is gone (a session
    /// dispatch can remove its own session).
    fn source_socket(&self, source: Source) -> Option<&UdpSocket> {
        match source {
            Source::Listener(index) => self.listeners.get(index).map(|l| &l.socket),
            Source::Peer(discriminator) => self
                .sessions
                .get(&discriminator)
                .and_then(|e| e.receiver.as_ref()),
        }
    }

    /// Up to [`RECEIVE_BATCHES`] batches from `source`, each datagram
    /// dispatched as it comes.
    fn receive_batches(&mut self, batch: &mut ReceiveBatch, multihop: bool, source: Source) {
        for _ in 0..RECEIVE_BATCHES {
            let Some(socket) = self.source_socket(source) else {
                break;
            };
            let count = match batch.receive(socket) {
                Ok(count) => count,
                Err(error) => {
                    tracing::warn!(%error, "bfd: receive failed");
                    break;
                }
            };
            // The kernel's arrival stamps are wall-clock time; the
            // sessions run on the monotonic clock.
            let (now, wall) = (Instant::now(), SystemTime::now());
            for (datagram, payload) in batch.datagrams() {
                let arrival = arrival(datagram.received_at, now, wall);
                self.dispatch(multihop, datagram, ControlPacket::decode(payload), arrival);
            }
            if count < socket::BATCH {
                break;
            }
        }
    }

    /// Checks that need the transport, then demultiplexing, then the
    /// session.
    fn dispatch(
        &mut self,
        multihop: bool,
        datagram: &Datagram,
        decoded: Result<ControlPacket, DecodeError>,
        arrival: Instant,
    ) {
        let ttl = datagram.ttl.unwrap_or(0);
        // RFC 5881 §5 (no authentication in use): "All received BFD Control
        // packets that are demultiplexed to the session MUST be discarded if
        // the received TTL or Hop Limit is not equal to 255." Every
        // single-hop session requires 255, so the check runs before
        // demultiplexing.
        if !multihop && ttl != TTL_MAX {
            self.metrics.drop_packet("ttl");
            tracing::debug!(source = %datagram.source, ttl, "bfd: dropped, ttl is not 255");
            return;
        }
        let packet = match decoded {
            Ok(packet) => packet,
            Err(error) => {
                self.metrics.drop_packet(error.reason());
                tracing::debug!(source = %datagram.source, %error, "bfd: dropped");
                return;
            }
        };
        let Some(discriminator) = self.demultiplex(multihop, datagram, &packet) else {
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
        // The gap first: the expiry below would hide the very gap that
        // caused it.
        if entry.session.state() == State::Up
            && let Some(last) = entry.last_rx_up
        {
            raise(&entry.max_rx_gap, arrival.saturating_duration_since(last));
        }
        // The packet was read late, after its session's Detection Time had
        // run out: the expiry came first (RFC 5880 §6.8.4 counts time
        // without packets, so the packet's arrival decides, not our
        // reading).
        if let Some(deadline) = entry.detect_at
            && deadline < arrival
        {
            entry.detect_at = None;
            self.timers.stop(Timer::Detection(discriminator));
            self.input(discriminator, deadline, Input::DetectionTimerExpired);
        }
        let Some(entry) = self.sessions.get_mut(&discriminator) else {
            return;
        };
        entry.last_rx_up = (entry.session.state() == State::Up).then_some(arrival);
        entry.received.inc();
        self.input(discriminator, arrival, Input::Received(packet));
    }

    /// RFC 5880 §6.8.6: "If the Your Discriminator field is nonzero, it MUST
    /// be used to select the session with which this BFD packet is
    /// associated. If no session is found, the packet MUST be discarded."
    /// With a zero Your Discriminator, RFC 5881 §3 selects by source address
    /// and interface, RFC 5883 §3 by source and destination address. On both
    /// paths the packet must also have come the way the session's own
    /// packets come ([`transport_matches`]): a discriminator guessed (or
    /// seen) by a host elsewhere does not let it reach a session through
    /// another interface or to another local address.
    fn demultiplex(
        &self,
        multihop: bool,
        datagram: &Datagram,
        packet: &ControlPacket,
    ) -> Option<u32> {
        if packet.your_discriminator != 0 {
            let entry = self.sessions.get(&packet.your_discriminator)?;
            return transport_matches(entry, multihop, datagram)
                .then_some(packet.your_discriminator);
        }
        self.sessions.iter().find_map(|(discriminator, entry)| {
            transport_matches(entry, multihop, datagram).then_some(*discriminator)
        })
    }

    /// Feed a session and perform its actions.
    fn input(&mut self, discriminator: u32, now: Instant, input: Input) {
        let Some(entry) = self.sessions.get_mut(&discriminator) else {
            return;
        };
        let mut actions = std::mem::take(&mut self.actions);
        entry.session.handle_into(now, input, &mut actions);
        for action in actions.drain(..) {
            match action {
                Action::Send(packet) => match packet.encode_into(&mut self.encoded) {
                    Ok(()) => match entry.send(&self.encoded) {
                        Ok(_) => {
                            entry.sent.inc();
                            if packet.state == State::Up {
                                if let Some(last) = entry.last_tx_up {
                                    raise(&entry.max_tx_gap, now.saturating_duration_since(last));
                                }
                                entry.last_tx_up = Some(now);
                            } else {
                                entry.last_tx_up = None;
                            }
                        }
                        Err(error) => {
                            entry.send_errors.inc();
                            tracing::debug!(%error, peer = %entry.spec.peer, "bfd: send failed");
                        }
                    },
                    Err(error) => {
                        tracing::error!(%error, "bfd: cannot encode our own packet");
                    }
                },
                Action::ArmTxTimer(at) => {
                    self.timers.arm(Timer::Tx(discriminator), at);
                }
                Action::StopTxTimer => {
                    self.timers.stop(Timer::Tx(discriminator));
                }
                Action::ArmDetectionTimer(at) => {
                    entry.detect_at = Some(at);
                    self.timers.arm(Timer::Detection(discriminator), at);
                }
                Action::StopDetectionTimer => {
                    entry.detect_at = None;
                    self.timers.stop(Timer::Detection(discriminator));
                }
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
                Action::Discarded(reason) => {
                    self.metrics.drop_packet(reason);
                }
            };
        }
        self.actions = actions;
        // Publish only changes: in steady state a packet changes nothing.
        let status = entry.status();
        if status != entry.published {
            if status.negotiated != entry.published.negotiated {
                let negotiated = status.negotiated;
                self.metrics.set_timers(
                    &entry.labels,
                    negotiated.tx_interval,
                    negotiated.rx_interval,
                    negotiated.detection_time,
                );
            }
            entry.status.send_replace(status.clone());
            entry.published = status;
        }
    }
}

/// Whether `datagram` came the way `entry`'s peer's packets come: from the
/// peer's address, to the port of the session's kind, to the session's
/// local address when it has one (so sessions that share a peer and an
/// interface stay apart), and for single-hop on the session's interface.
/// The receive sockets are wildcards, so without these checks a packet
/// that reached the host any other way would be taken for the peer's.
fn transport_matches(entry: &Entry, multihop: bool, datagram: &Datagram) -> bool {
    let spec = &entry.spec;
    spec.peer == datagram.source.ip()
        && spec.multihop == multihop
        && (spec.local.is_none() || spec.local == datagram.destination)
        && (multihop || entry.ifindex.is_none() || entry.ifindex == datagram.ifindex)
}

/// The session a token of a session's own receive socket stands for.
fn peer_token(token: Token) -> Option<u32> {
    token
        .0
        .checked_sub(PEER_TOKENS)
        .and_then(|d| u32::try_from(d).ok())
}

/// Raise a largest-gap gauge to `gap` if it is larger (one atomic read in
/// the common case).
fn raise(gauge: &Seconds, gap: Duration) {
    let seconds = gap.as_secs_f64();
    if seconds > gauge.get() {
        gauge.set(seconds);
    }
}

/// Received stamps older than this are taken for a wall-clock step, not for
/// a late read.
const MAX_STAMP_AGE: Duration = Duration::from_secs(10);

/// The monotonic time a datagram stamped `stamp` (wall clock, by the
/// kernel) arrived at, from one reading of both clocks. Without a stamp, or
/// with one the wall clock contradicts, the reading time.
fn arrival(stamp: Option<SystemTime>, now: Instant, wall: SystemTime) -> Instant {
    match stamp.and_then(|stamp| wall.duration_since(stamp).ok()) {
        Some(age) if age <= MAX_STAMP_AGE => now.checked_sub(age).unwrap_or(now),
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_goes_back_by_the_age_of_the_stamp() {
        let now = Instant::now();
        let wall = SystemTime::now();
        let stamp = wall - Duration::from_micros(1500);
        assert_eq!(
            arrival(Some(stamp), now, wall),
            now - Duration::from_micros(1500)
        );
    }

    #[test]
    fn arrival_is_the_reading_time_without_a_believable_stamp() {
        let now = Instant::now();
        let wall = SystemTime::now();
        assert_eq!(arrival(None, now, wall), now);
        // A stamp in the future: the wall clock stepped back.
        assert_eq!(arrival(Some(wall + Duration::from_secs(1)), now, wall), now);
        // A stamp from long ago: the wall clock stepped forward.
        assert_eq!(
            arrival(Some(wall - Duration::from_secs(60)), now, wall),
            now
        );
    }
}
