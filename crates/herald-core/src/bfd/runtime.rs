//! The BFD runtime: one OS thread with its own event loop (epoll through
//! mio, no tokio) that owns every session, socket and timer, so nothing
//! else in herald (a slow Kubernetes watch, a big reconcile, a busy tokio
//! pool) can delay a BFD packet.
//!
//! Owns: the receive sockets (wildcard ones per family and port, and one
//! per session connected to its peer, so the peer's packets never queue
//! behind other traffic to the BFD ports), the per-session transmit sockets, the timer
//! queue, demultiplexing (RFC 5880 §6.3, RFC 5881 §3, RFC 5883 §3), the TTL
//! checks (RFC 5881 §5, RFC 5883 §5) and the metrics writes. Must not touch:
//! BGP; it reports state changes on each session's channels and the agent
//! decides what they mean.
//!
//! ```text
//!   agent (any thread)                      "herald-bfd" thread
//!   ------------------                      -------------------------------
//!   BfdRuntime::add_session ---Command---->  Driver { sessions, timers }
//!   change_parameters / remove /  (+ wake)    |  waits for:
//!   admin_down_all                            |   receive sockets 3784/4784
//!                                             |   (IPv4, IPv6)
//!   SessionHandle.events  <--SessionEvent---  |   the earliest timer
//!   SessionHandle.status  <--watch---------   |   commands
//!                                             v
//!                                  Session::handle(now, input) -> actions
//!                                  (send, arm timers, state changed)
//! ```
//!
//! # How it stays cheap (64 sessions at 20 ms: 3,600 packets out and in
//! per second)
//!
//! - Wake-ups are a large part of the cost, so the loop makes few of
//!   them. A transmit timer may fire up to [`TX_COALESCING`] early (at most
//!   a tenth of its interval), so the wake-up for one deadline sends every
//!   packet due within that window; the sessions draw their jitter so that
//!   even an early packet keeps the 75 % lower bound of RFC 5880 §6.8.7
//!   ([`Session::with_tx_coalescing`](super::session::Session::with_tx_coalescing)). Detection timers never fire early.
//! - When a timer is due within `RX_DEFERRAL` (5 ms), the thread sleeps
//!   until it without listening to the sockets, and reads what arrived
//!   meanwhile in the same wake-up; otherwise it waits on the sockets. So
//!   received packets cost no wake-up of their own while sessions are busy
//!   (with 64 sessions at 20 ms a transmit deadline comes every few
//!   milliseconds: 5 ms covers nearly every gap, where 2 ms left a third of
//!   the wake-ups to packets), and are read at once while they are quiet.
//!   The price is up to 5 ms before a received packet is read: a Final
//!   answers a Poll "as soon as practicable" (RFC 5880 §6.8.7) that much
//!   later, and a peer's Down is seen that much later, against detection
//!   times of 30 ms and more; detection itself does not move (next point).
//! - Processing a packet late changes nothing: the kernel stamps each
//!   datagram on arrival (`SO_TIMESTAMPNS`) and the session is fed that
//!   time, so detection deadlines and the largest-gap metric follow the
//!   wire, and a packet that arrived after its session's detection deadline
//!   comes after the expiry.
//! - One `recvmmsg` reads up to [`socket::BATCH`] datagrams; packets are
//!   encoded into one reused buffer and actions collected in one reused
//!   vector; metric handles are looked up once per session, not per packet;
//!   the status watch is written only when the status changed; sessions
//!   and timers sit in maps hashed with one multiplication
//!   ([`DiscriminatorHasher`](super::timers::DiscriminatorHasher)), not
//!   SipHash.
//! - Each session keeps its own socket (its own source port: RFC 5881 §4
//!   says it SHOULD be unique), so transmissions cannot be batched with
//!   `sendmmsg`: one `send` per packet, the largest remaining cost. The
//!   socket is connected to the peer, so the kernel reuses its route
//!   instead of looking it up for every packet.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::Waker;
use tokio::sync::{mpsc, watch};

use super::auth::AuthConfig;
use super::metrics::{Metrics, SessionLabels};
use super::packet::{Diagnostic, State};
use super::session::{Negotiated, StateChange};
use super::socket::{self, TTL_MAX};
use super::{BfdError, SessionConfig};

mod driver;

use driver::Driver;

/// RFC 5883 §5 leaves the multihop TTL check to the operator; FRR bfdd's
/// default minimum is 254 (one router in between).
pub const DEFAULT_MULTIHOP_MIN_TTL: u8 = 254;

/// How much earlier than its deadline a transmit timer may fire, so that
/// one wake-up sends the packets of every session due within this window
/// (see the module doc); a session caps it at a tenth of its interval and
/// leaves that much room at the bottom of its jitter range, so RFC 5880
/// §6.8.7's 75 % still holds.
pub const TX_COALESCING: Duration = Duration::from_millis(2);

/// How the runtime listens.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    pub single_hop_port: u16,
    pub multihop_port: u16,
    /// Open the IPv6 receive sockets too (a host without IPv6 says false).
    pub ipv6: bool,
    /// Beaten by the thread's loop at least every [`HEARTBEAT_PERIOD`]
    /// while it runs, stopped when it ends.
    pub heartbeat: crate::heartbeat::Heartbeat,
}

/// The longest the BFD thread waits without beating its heartbeat (it
/// wakes that often even with no session and no packet).
pub const HEARTBEAT_PERIOD: Duration = Duration::from_secs(1);

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            single_hop_port: socket::SINGLE_HOP_PORT,
            multihop_port: socket::MULTIHOP_PORT,
            ipv6: true,
            heartbeat: crate::heartbeat::Heartbeat::new(),
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
    /// RFC 5880 §6.7 authentication, or none.
    pub auth: Option<AuthConfig>,
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
            auth: None,
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
    ChangeAuth(
        SessionId,
        Option<AuthConfig>,
        std_mpsc::SyncSender<Result<(), BfdError>>,
    ),
    Remove(SessionId, std_mpsc::SyncSender<Result<(), BfdError>>),
    AdminDownAll(std_mpsc::SyncSender<()>),
    Shutdown,
}

/// The handle the agent holds; dropping it stops the thread.
#[derive(Debug)]
pub struct BfdRuntime {
    commands: std_mpsc::Sender<Command>,
    /// Interrupts the thread's wait after a command was queued.
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Add(..) => "Add",
            Command::Change(..) => "Change",
            Command::ChangeAuth(..) => "ChangeAuth",
            Command::Remove(..) => "Remove",
            Command::AdminDownAll(..) => "AdminDownAll",
            Command::Shutdown => "Shutdown",
        })
    }
}

/// The nice value of the BFD thread. A BFD thread that waits for the CPU
/// behind busy neighbours sends late, and at 3 x 20 ms a peer declares the
/// session down after 60 ms: under `stress-ng --cpu 2` on the 2-core lab
/// machine, herald's largest send gaps at nice 0 were 85-93 ms (docs/bfd.md,
/// "Soak"). The thread sleeps between packets, so a higher weight costs the
/// node nothing but lets the scheduler run it promptly when a timer fires.
pub const BFD_THREAD_NICE: i32 = -10;

/// Gives the calling (BFD) thread [`BFD_THREAD_NICE`]. Lowering a nice value
/// needs CAP_SYS_NICE; without it the thread keeps the process's priority
/// and herald says so once.
fn raise_thread_priority() {
    let thread = rustix::thread::gettid();
    match rustix::process::setpriority_process(Some(thread), BFD_THREAD_NICE) {
        Ok(()) => tracing::debug!(nice = BFD_THREAD_NICE, "bfd: thread priority raised"),
        Err(error) => tracing::warn!(
            "bfd: cannot raise the BFD thread's priority to nice {BFD_THREAD_NICE} ({error}; needs CAP_SYS_NICE): BFD packets may be late on a busy node"
        ),
    }
}

impl BfdRuntime {
    /// Start the thread and open the receive sockets in the caller's
    /// network namespace. Fails if the IPv4 sockets cannot be bound.
    pub fn spawn(options: RuntimeOptions, metrics: Metrics) -> Result<BfdRuntime, BfdError> {
        let (commands, receiver) = std_mpsc::channel();
        let (ready_tx, ready_rx) = std_mpsc::sync_channel(1);
        // The thread opens the sockets; it starts in the caller's network
        // namespace.
        let thread = std::thread::Builder::new()
            .name("herald-bfd".to_string())
            .spawn(move || {
                raise_thread_priority();
                match Driver::new(&options, metrics, receiver) {
                    Ok(driver) => {
                        let _ = ready_tx.send(Ok(driver.waker.clone()));
                        driver.run();
                    }
                    Err(error) => {
                        let _ = ready_tx.send(Err(error));
                    }
                }
            })
            .map_err(|e| BfdError::io("spawn the bfd thread", e))?;
        match ready_rx.recv() {
            Ok(Ok(waker)) => Ok(BfdRuntime {
                commands,
                waker,
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

    fn send(&self, command: Command) -> Result<(), BfdError> {
        self.commands.send(command).map_err(|_| BfdError::Stopped)?;
        self.waker.wake().map_err(|_| BfdError::Stopped)
    }

    fn request<T>(
        &self,
        command: impl FnOnce(std_mpsc::SyncSender<T>) -> Command,
    ) -> Result<T, BfdError> {
        let (reply, answer) = std_mpsc::sync_channel(1);
        self.send(command(reply))?;
        answer.recv().map_err(|_| BfdError::Stopped)
    }

    /// Create a session and start it. Blocks for the moment the BFD thread
    /// takes to open its socket (at most a few milliseconds: the thread may
    /// be sleeping before a timer, see the module doc).
    pub fn add_session(&self, spec: SessionSpec) -> Result<SessionHandle, BfdError> {
        self.request(|reply| Command::Add(Box::new(spec), reply))?
    }

    /// New intervals or multiplier: a Poll Sequence when Up (RFC 5880 §6.8.3).
    pub fn change_parameters(&self, id: SessionId, config: SessionConfig) -> Result<(), BfdError> {
        self.request(|reply| Command::Change(id, config, reply))?
    }

    /// Authentication on, off, or with another key, key id or type, on a
    /// running session: it keeps its state, so a peer that changes its key
    /// too within a Detection Time keeps the session Up.
    pub fn change_auth(&self, id: SessionId, auth: Option<AuthConfig>) -> Result<(), BfdError> {
        self.request(|reply| Command::ChangeAuth(id, auth, reply))?
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
        let _ = self.send(Command::Shutdown);
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
