//! `BirdSpeaker`: the driver task that keeps the node's BIRD announcing
//! what herald wants, and reads back what BIRD does.
//!
//! Owns: the task, its connection to BIRD's control socket, the include
//! file on disk (written atomically; the last file BIRD accepted is put back
//! when a new one is rejected), and the observed peers and BFD sessions.
//! Must not touch: BIRD's main configuration, BIRD's process, netlink.
//!
//! The task is the one owner of this state; [`BirdSpeaker`] talks to it
//! through a channel and reads the observed state under a lock.
//!
//! Failure behaviour:
//! - BIRD down or its socket missing: the error is reported (status,
//!   `herald_bird_errors_total`, `herald_bird_control_connected 0`), and the
//!   task reconnects with a backoff doubling from 0.5 s to 30 s. After every
//!   (re)connect it reloads BIRD once, so a BIRD that restarted converges.
//! - An include file the check or BIRD rejects: the last good file is
//!   written back, the reason is reported (`BirdStatus::rejected`,
//!   `herald_bird_include_rejected_total`), and the same text is not tried
//!   again; the next change is.
//! - Stopping the speaker leaves BIRD as it is: it keeps announcing the
//!   last state, and a new speaker changes nothing until its first
//!   `announce` (a restart of herald loses no route). A drain is an
//!   `announce` of the empty set before stopping.

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::control::{ControlSocket, DEFAULT_TIMEOUT};
use super::reply::code;
use super::schedule::{ApplyOutcome, ReloadSchedule, SchedulePolicy};
use super::{BirdConfig, BirdError, Metrics, render, show};
use crate::config::{Config, PeerAddress};
use crate::model::{Announcement, Community};
use crate::status::{BfdSessionStatus, BfdState, BgpState, PeerStatus, StatusBoard, unix_seconds};

/// How often BIRD's protocols and BFD sessions are read back.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
const CONNECT_BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(30);
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// What the BIRD backend reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BirdStatus {
    /// Whether herald holds a working control connection.
    pub connected: bool,
    /// BIRD's greeting on the last connection (`BIRD 2.0.12 ready.`).
    pub bird_version: Option<String>,
    /// Reloads BIRD accepted since herald started.
    pub reloads: u64,
    /// When BIRD last accepted a reload (Unix seconds).
    pub last_reload: Option<u64>,
    /// Routes in the file BIRD last accepted.
    pub announcements: usize,
    /// Whether a change waits to be applied.
    pub pending: bool,
    /// The last failure talking to BIRD, cleared by the next success.
    pub last_error: Option<String>,
    /// Why the last rendered file was rejected, cleared when a file is
    /// accepted.
    pub rejected: Option<String>,
}

#[derive(Debug, Default)]
struct Observed {
    status: BirdStatus,
    peers: Vec<PeerStatus>,
    /// The families each peer's session carries (channels UP), by name.
    families: HashMap<String, Vec<String>>,
    bfd_sessions: Vec<BfdSessionStatus>,
}

enum Command {
    Announce(BTreeSet<Announcement>),
    GracefulShutdown(bool),
    Flush(oneshot::Sender<()>),
    Config(Box<Config>),
    Stop(oneshot::Sender<()>),
}

/// The handle the agent drives. Cheap to share behind an `Arc`; dropping it
/// stops the task.
#[derive(Debug)]
pub struct BirdSpeaker {
    commands: mpsc::UnboundedSender<Command>,
    observed: Arc<RwLock<Observed>>,
    task: Option<JoinHandle<()>>,
}

impl BirdSpeaker {
    /// Starts the driver task for `config` (which must have `speaker:
    /// bird`; a missing `bird:` section means its defaults). Writes an
    /// include file with nothing announced if none exists yet, so a BIRD
    /// started after herald finds the file it includes. Must be called
    /// inside a tokio runtime.
    pub fn start(config: &Config, metrics: Metrics) -> Result<BirdSpeaker, BirdError> {
        BirdSpeaker::start_with_policy(config, metrics, None)
    }

    /// [`BirdSpeaker::start`] with explicit timing rules instead of the ones
    /// derived from `bird.coalesce` (tests).
    pub fn start_with_policy(
        config: &Config,
        metrics: Metrics,
        policy: Option<SchedulePolicy>,
    ) -> Result<BirdSpeaker, BirdError> {
        let bird = config.bird.clone().unwrap_or_default();
        let empty = render::include_file(config, &BTreeSet::new());
        let last_good = match std::fs::read_to_string(&bird.include_file) {
            Ok(existing) => existing,
            Err(_) => {
                write_atomically(&bird.include_file, &empty)?;
                empty
            }
        };
        let observed = Arc::new(RwLock::new(Observed::default()));
        let (commands, receiver) = mpsc::unbounded_channel();
        let policy = policy.unwrap_or_else(|| SchedulePolicy::from_coalesce(bird.coalesce));
        let driver = Driver {
            config: config.clone(),
            bird,
            desired: BTreeSet::new(),
            announced_once: false,
            graceful_shutdown: false,
            schedule: ReloadSchedule::new(policy),
            control: None,
            running: None,
            last_good,
            rejected: None,
            observed: observed.clone(),
            metrics,
            connect_backoff: CONNECT_BACKOFF_INITIAL,
            next_poll: Instant::now(),
            since: HashMap::new(),
            gauged: BTreeSet::new(),
        };
        let task = tokio::spawn(driver.run(receiver));
        Ok(BirdSpeaker {
            commands,
            observed,
            task: Some(task),
        })
    }

    /// Makes `announcements` the complete set BIRD announces. Returns at
    /// once; bursts are coalesced and BIRD is reloaded only when the
    /// rendered file changes.
    pub fn announce(&self, announcements: &BTreeSet<Announcement>) {
        let _ = self.commands.send(Command::Announce(announcements.clone()));
    }

    /// Resolves once BIRD runs the last announced set (a pending change
    /// is applied now, without waiting out the coalescing window), or after
    /// `limit`, or at once if BIRD cannot be reached. The agent waits on it
    /// between withdrawing an address and removing it from the interface.
    /// The request is made at once; the future borrows nothing.
    pub fn flushed(&self, limit: Duration) -> impl Future<Output = ()> + Send + 'static {
        let (done, wait) = oneshot::channel();
        let sent = self.commands.send(Command::Flush(done)).is_ok();
        async move {
            if sent {
                let _ = tokio::time::timeout(limit, wait).await;
            }
        }
    }

    /// RFC 8326: every route carries GRACEFUL_SHUTDOWN (65535:0) while
    /// `on`, so the routers move traffic away before a drain withdraws.
    pub fn set_graceful_shutdown(&self, on: bool) {
        let _ = self.commands.send(Command::GracefulShutdown(on));
    }

    /// A reloaded configuration: peers, timers and paths are re-read and
    /// the file is re-rendered.
    pub fn set_config(&self, config: &Config) {
        let _ = self
            .commands
            .send(Command::Config(Box::new(config.clone())));
    }

    /// BIRD's BGP protocols as herald peers, from the last read-back.
    pub fn peers(&self) -> Vec<PeerStatus> {
        self.read(|o| o.peers.clone())
    }

    /// The families (`ipv4_unicast`, `ipv6_unicast`) BIRD's session with
    /// the peer called `name` carries, from the last read-back.
    pub fn peer_families(&self, name: &str) -> Vec<String> {
        self.read(|o| o.families.get(name).cloned().unwrap_or_default())
    }

    /// BIRD's BFD sessions, from the last read-back.
    pub fn bfd_sessions(&self) -> Vec<BfdSessionStatus> {
        self.read(|o| o.bfd_sessions.clone())
    }

    /// The backend's own state.
    pub fn status(&self) -> BirdStatus {
        self.read(|o| o.status.clone())
    }

    /// Replaces the board's peer and BFD rows with BIRD's: in this mode
    /// BIRD owns the sessions, so its view is the whole picture.
    pub fn write_status(&self, board: &StatusBoard) {
        let (peers, bfd) = self.read(|o| (o.peers.clone(), o.bfd_sessions.clone()));
        board.update(|report| {
            report.peers = peers;
            report.bfd_sessions = bfd;
        });
    }

    /// Stops the task and waits for it. BIRD keeps what it announces.
    pub async fn stop(mut self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Stop(done)).is_ok() {
            let _ = wait.await;
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Observed) -> T) -> T {
        f(&self.observed.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for BirdSpeaker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Driver {
    config: Config,
    bird: BirdConfig,
    desired: BTreeSet<Announcement>,
    /// Whether the agent said what to announce yet. Until then BIRD keeps
    /// what it runs: after a restart of herald, the file of the previous
    /// run stays in force until the source's first complete set.
    announced_once: bool,
    /// RFC 8326 GRACEFUL_SHUTDOWN on every route (a drain).
    graceful_shutdown: bool,
    schedule: ReloadSchedule,
    control: Option<ControlSocket>,
    /// The text BIRD runs, as far as herald knows (`None` after a
    /// reconnect: BIRD may have restarted).
    running: Option<String>,
    /// The last text BIRD accepted (or the file found at start): what is
    /// written back when a new file is rejected.
    last_good: String,
    /// The last text that was rejected; not tried again.
    rejected: Option<String>,
    observed: Arc<RwLock<Observed>>,
    metrics: Metrics,
    connect_backoff: Duration,
    next_poll: Instant,
    /// Each peer's and BFD session's state, and when herald saw it change
    /// (`None`: unchanged since herald first looked), by name.
    since: HashMap<String, (String, Option<u64>)>,
    /// Peers with a per-peer gauge set by the last read-back.
    gauged: BTreeSet<String>,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            let apply_at = self
                .schedule
                .next_apply()
                .filter(|_| self.announced_once)
                .map(to_tokio);
            self.observe(|o| o.status.pending = self.schedule.pending());
            tokio::select! {
                command = commands.recv() => match command {
                    None => break,
                    Some(Command::Stop(done)) => {
                        // The last word reaches BIRD: after a drain that is
                        // the empty set.
                        if self.announced_once && self.schedule.pending() {
                            self.apply().await;
                        }
                        let _ = done.send(());
                        break;
                    }
                    Some(Command::Announce(set)) => {
                        self.desired = set;
                        self.announced_once = true;
                        self.schedule.changed(std::time::Instant::now());
                    }
                    Some(Command::Flush(done)) => {
                        if self.announced_once && self.schedule.pending() {
                            self.apply().await;
                        }
                        let _ = done.send(());
                    }
                    Some(Command::GracefulShutdown(on)) => {
                        self.graceful_shutdown = on;
                        self.schedule.changed(std::time::Instant::now());
                    }
                    Some(Command::Config(config)) => {
                        self.bird = config.bird.clone().unwrap_or_default();
                        self.config = *config;
                        self.schedule.changed(std::time::Instant::now());
                    }
                },
                () = sleep_until_opt(apply_at) => self.apply().await,
                () = tokio::time::sleep_until(self.next_poll) => self.poll().await,
            }
        }
        self.metrics.control_connected.set(0);
    }

    /// Renders, and if the text differs from what BIRD runs: write, check,
    /// reload.
    async fn apply(&mut self) {
        let now = std::time::Instant::now();
        self.schedule.started(now);
        let text = render::include_file(&self.config, &self.announced());
        let outcome = if self.running.as_ref() == Some(&text) {
            self.metrics.applies_unchanged.inc();
            ApplyOutcome::Applied
        } else if self.rejected.as_ref() == Some(&text) {
            ApplyOutcome::Rejected
        } else {
            match self.load(&text).await {
                Ok(()) => {
                    self.accepted(text);
                    ApplyOutcome::Applied
                }
                Err(error) if error.is_rejection() => {
                    self.reject(text, &error);
                    ApplyOutcome::Rejected
                }
                Err(error) => {
                    self.failed(&error);
                    ApplyOutcome::Unreachable
                }
            }
        };
        self.schedule.finished(std::time::Instant::now(), outcome);
    }

    /// The routes to render: the desired set, with GRACEFUL_SHUTDOWN added
    /// during a drain.
    fn announced(&self) -> BTreeSet<Announcement> {
        if !self.graceful_shutdown {
            return self.desired.clone();
        }
        self.desired
            .iter()
            .map(|announcement| {
                let mut announcement = announcement.clone();
                announcement
                    .attributes
                    .communities
                    .insert(Community::GRACEFUL_SHUTDOWN);
                announcement
            })
            .collect()
    }

    async fn load(&mut self, text: &str) -> Result<(), BirdError> {
        self.connect().await?;
        let path = self.bird.include_file.clone();
        write_atomically(&path, text)?;
        let result = self.check_and_reload().await;
        if result.is_err() {
            // Never leave an unchecked or rejected file where BIRD reads it
            // at its next start.
            if let Err(error) = write_atomically(&path, &self.last_good) {
                self.failed(&error);
            }
        }
        result
    }

    async fn check_and_reload(&mut self) -> Result<(), BirdError> {
        match self.bird.check_command.clone() {
            Some(command) => run_check(&command).await?,
            None => {
                self.control_command("configure check").await?;
            }
        }
        let reply = self.control_command("configure").await?;
        match reply.code() {
            code::RECONFIGURED
            | code::RECONFIGURATION_IN_PROGRESS
            | code::RECONFIGURATION_QUEUED
            | code::RECONFIGURATION_REPLACED => Ok(()),
            _ => Err(BirdError::Unexpected {
                path: self.bird.control_socket.clone(),
                command: "configure".to_string(),
                reply: reply.text(),
            }),
        }
    }

    /// One command on the control connection; an I/O failure drops the
    /// connection so the next step reconnects.
    async fn control_command(&mut self, command: &str) -> Result<super::reply::Reply, BirdError> {
        let control = match self.control.as_mut() {
            Some(control) => control,
            None => {
                return Err(BirdError::Closed {
                    path: self.bird.control_socket.clone(),
                });
            }
        };
        let result = control.command_ok(command).await;
        if let Err(error) = &result
            && !matches!(error, BirdError::Refused { .. })
        {
            self.disconnected();
        }
        result
    }

    async fn connect(&mut self) -> Result<(), BirdError> {
        if self.control.is_some() {
            return Ok(());
        }
        let control = ControlSocket::connect(&self.bird.control_socket, DEFAULT_TIMEOUT).await?;
        tracing::info!(
            socket = %self.bird.control_socket.display(),
            greeting = control.greeting(),
            "connected to BIRD's control socket"
        );
        let greeting = control.greeting().to_string();
        self.control = Some(control);
        self.connect_backoff = CONNECT_BACKOFF_INITIAL;
        self.metrics.control_connected.set(1);
        // BIRD may have restarted and read whatever file was on disk:
        // reload once so it runs exactly the desired state.
        self.running = None;
        self.schedule.changed(std::time::Instant::now());
        self.observe(|o| {
            o.status.connected = true;
            o.status.bird_version = Some(greeting);
        });
        Ok(())
    }

    fn disconnected(&mut self) {
        self.control = None;
        self.running = None;
        self.metrics.control_connected.set(0);
        self.observe(|o| o.status.connected = false);
    }

    fn accepted(&mut self, text: String) {
        let count = self.desired.len();
        let now = unix_seconds(SystemTime::now());
        tracing::info!(routes = count, file = %self.bird.include_file.display(), "BIRD reloaded");
        self.metrics.reloads.inc();
        self.metrics.announcements.set(count as i64);
        self.metrics.last_reload.set(now as i64);
        self.last_good = text.clone();
        self.running = Some(text);
        self.rejected = None;
        self.observe(|o| {
            o.status.reloads += 1;
            o.status.last_reload = Some(now);
            o.status.announcements = count;
            o.status.rejected = None;
            o.status.last_error = None;
        });
    }

    fn reject(&mut self, text: String, error: &BirdError) {
        tracing::error!(
            %error,
            file = %self.bird.include_file.display(),
            "BIRD rejected herald's include file; the last good file stays in force"
        );
        self.metrics.include_rejected.inc();
        self.metrics.error(error.reason());
        self.rejected = Some(text);
        let message = error.to_string();
        self.observe(|o| {
            o.status.rejected = Some(message.clone());
            o.status.last_error = Some(message);
        });
    }

    fn failed(&mut self, error: &BirdError) {
        tracing::warn!(%error, "BIRD backend");
        self.metrics.error(error.reason());
        let message = error.to_string();
        self.observe(|o| o.status.last_error = Some(message));
    }

    /// Reads BIRD's protocols and BFD sessions, connecting first when
    /// needed (with backoff while it fails).
    async fn poll(&mut self) {
        if self.control.is_none()
            && let Err(error) = self.connect().await
        {
            self.failed(&error);
            self.disconnected();
            self.next_poll = Instant::now() + self.connect_backoff;
            self.connect_backoff = (self.connect_backoff * 2).min(CONNECT_BACKOFF_MAX);
            return;
        }
        self.next_poll = Instant::now() + POLL_INTERVAL;
        let protocols = match self.control_command("show protocols all").await {
            Ok(reply) => show::protocols(&reply),
            Err(error) => {
                self.failed(&error);
                return;
            }
        };
        // With no BFD protocol BIRD answers with an error: no sessions.
        let sessions = match self.control_command("show bfd sessions").await {
            Ok(reply) => show::bfd_sessions(&reply),
            Err(BirdError::Refused { .. }) => Vec::new(),
            Err(error) => {
                self.failed(&error);
                return;
            }
        };
        let names = peer_names(&self.config);
        let lookup = |address: IpAddr| names.get(&address).cloned();
        let mut peers = show::peer_statuses(&protocols, &lookup);
        // peer_statuses keeps the order of the BGP protocols.
        let families: HashMap<String, Vec<String>> = peers
            .iter()
            .map(|p| p.name.clone())
            .zip(protocols.iter().filter_map(|p| p.bgp.as_ref()))
            .map(|(name, bgp)| (name, bgp.families.clone()))
            .collect();
        let mut bfd = show::bfd_session_statuses(&sessions, &lookup);
        let now = unix_seconds(SystemTime::now());
        // A session BIRD no longer lists (a BGP-requested BFD session goes
        // when its BGP session goes down) reads 0, not its last value.
        for gone in std::mem::take(&mut self.gauged) {
            self.metrics
                .bgp_established
                .get_or_create(&super::metrics::PeerLabels { peer: gone.clone() })
                .set(0);
            self.metrics
                .bfd_up
                .get_or_create(&super::metrics::PeerLabels { peer: gone })
                .set(0);
        }
        self.gauged.extend(peers.iter().map(|p| p.name.clone()));
        self.gauged.extend(bfd.iter().map(|s| s.peer.clone()));
        for peer in &mut peers {
            peer.since = self.since(
                format!("bgp {}", peer.name),
                format!("{:?}", peer.state),
                now,
            );
            self.metrics
                .bgp_established
                .get_or_create(&super::metrics::PeerLabels {
                    peer: peer.name.clone(),
                })
                .set(i64::from(peer.state == BgpState::Established));
        }
        for session in &mut bfd {
            session.since = self.since(
                format!("bfd {} {}", session.peer, session.remote_address),
                format!("{:?}", session.state),
                now,
            );
            self.metrics
                .bfd_up
                .get_or_create(&super::metrics::PeerLabels {
                    peer: session.peer.clone(),
                })
                .set(i64::from(session.state == BfdState::Up));
        }
        self.observe(|o| {
            o.peers = peers;
            o.families = families;
            o.bfd_sessions = bfd;
        });
    }

    /// When `key` entered `state`: `None` while it has been in that state
    /// since herald first looked (BIRD's own times are local wall-clock
    /// text without a zone).
    fn since(&mut self, key: String, state: String, now: u64) -> Option<u64> {
        match self.since.get(&key) {
            Some((seen, at)) if *seen == state => *at,
            Some(_) => {
                self.since.insert(key, (state, Some(now)));
                Some(now)
            }
            None => {
                self.since.insert(key, (state, None));
                None
            }
        }
    }

    fn observe(&self, f: impl FnOnce(&mut Observed)) {
        f(&mut self
            .observed
            .write()
            .unwrap_or_else(PoisonError::into_inner));
    }
}

/// Configured peers by address, to name BIRD's protocols after them.
fn peer_names(config: &Config) -> HashMap<IpAddr, String> {
    config
        .peers
        .iter()
        .filter_map(|peer| match peer.address {
            PeerAddress::Ip(address) => Some((address, peer.name.clone())),
            PeerAddress::Gateway => None,
        })
        .collect()
}

async fn run_check(command: &[String]) -> Result<(), BirdError> {
    let display = command.join(" ");
    let (program, args) = command
        .split_first()
        .ok_or_else(|| BirdError::CheckRejected {
            command: display.clone(),
            detail: "empty command".to_string(),
        })?;
    let output = tokio::time::timeout(
        CHECK_TIMEOUT,
        tokio::process::Command::new(program)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| BirdError::CheckRejected {
        command: display.clone(),
        detail: format!("no verdict within {}s", CHECK_TIMEOUT.as_secs()),
    })?
    .map_err(|source| BirdError::CheckRun {
        command: display.clone(),
        source,
    })?;
    if output.status.success() {
        return Ok(());
    }
    let mut detail = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if detail.is_empty() {
        detail = String::from_utf8_lossy(&output.stdout).trim().to_string();
    }
    Err(BirdError::CheckRejected {
        command: display,
        detail: format!("{} ({})", detail, output.status),
    })
}

/// Writes `text` to `path` so that a reader sees the old or the new file,
/// never a mix: a temporary file in the same directory, synced, renamed
/// over `path`.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), BirdError> {
    let error = |source| BirdError::Write {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.herald-tmp"));
    let mut file = std::fs::File::create(&temporary).map_err(error)?;
    file.write_all(text.as_bytes()).map_err(error)?;
    file.sync_all().map_err(error)?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(error)?;
    if let Some(dir) = path.parent()
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn to_tokio(at: std::time::Instant) -> Instant {
    Instant::from_std(at)
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.conf");
        write_atomically(&path, "first\n").unwrap();
        write_atomically(&path, "second\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[tokio::test]
    async fn start_writes_an_include_file_with_nothing_announced_when_there_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let include = dir.path().join("herald.conf");
        let config = Config::from_yaml(&format!(
            "asn: 64601\nspeaker: bird\nbird: {{control_socket: {}, include_file: {}}}\n",
            dir.path().join("missing.ctl").display(),
            include.display()
        ))
        .unwrap();
        let speaker = BirdSpeaker::start(&config, Metrics::default()).unwrap();
        let text = std::fs::read_to_string(&include).unwrap();
        assert_eq!(text, render::include_file(&config, &BTreeSet::new()));
        speaker.stop().await;
        // An existing file (a previous run's) is left as it is.
        std::fs::write(&include, "# previous\n").unwrap();
        let speaker = BirdSpeaker::start(&config, Metrics::default()).unwrap();
        speaker.stop().await;
        assert_eq!(std::fs::read_to_string(&include).unwrap(), "# previous\n");
    }

    #[test]
    fn writing_into_a_missing_directory_names_the_file() {
        let error = write_atomically(Path::new("/nonexistent-herald-dir/x.conf"), "x")
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent-herald-dir/x.conf"), "{error}");
    }
}
