//! Watching the configuration file (and the standalone services file) for
//! changes: on SIGHUP, on [`ReloadSource::reload_now`], or when the file's
//! bytes change, the file is loaded and validated; a valid file is handed to
//! the agent, an invalid one is logged, counted and reported, and the last
//! good one stays in force: a typo in a ConfigMap edit must not take down
//! sessions that were running fine.
//!
//! ```text
//!  SIGHUP ----------\
//!  reload_now() -----+--> poll task: read the bytes, compare with the last
//!  every `poll` ----/     seen; changed (or asked): parse + validate
//!                              |-> Reload::Config / Reload::Services  --\
//!                              \-> Reload::Rejected {path, error}  ------+--> mpsc to the agent
//! ```
//!
//! Why polling the content: in Kubernetes the file is a ConfigMap volume,
//! which the kubelet updates by swapping a `..data` symlink to a new
//! directory; the file we opened never changes, so an inotify watch on it
//! sees nothing. Comparing the bytes every second costs one small read and
//! notices every kind of update (symlink swap, rename, in-place edit).
//!
//! Owns: the poll task, the SIGHUP handler it installs, and the reload
//! metrics. Must not touch: the running agent; applying a new file (see
//! [`crate::config::diff`]) is [`super`]'s job.

use std::path::{Path, PathBuf};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::config::{Config, ConfigError};
use crate::services::ServicesFile;

/// How often the files are read and compared.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How many reloads may wait for the agent; the poll task waits when full.
const QUEUE: usize = 8;

/// What the reload source reports.
#[derive(Debug)]
pub enum Reload {
    /// The configuration file changed (or a reload was asked for) and is
    /// valid.
    Config(Box<Config>),
    /// The services file changed (or a reload was asked for) and is valid.
    Services(ServicesFile),
    /// A file changed but cannot be used; the last good one stays in force.
    /// `error` names the field (`ConfigError::problems`).
    Rejected { path: PathBuf, error: ConfigError },
}

/// Which file a reload concerns (metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileKind {
    Config,
    Services,
}

impl FileKind {
    fn as_str(self) -> &'static str {
        match self {
            FileKind::Config => "config",
            FileKind::Services => "services",
        }
    }
}

/// Why the reload source could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot install the SIGHUP handler: {0}")]
    Signal(#[source] std::io::Error),
}

/// The running reload source; the task stops when this is dropped.
#[derive(Debug)]
pub struct ReloadSource {
    task: JoinHandle<()>,
    asked: mpsc::Sender<()>,
}

impl Drop for ReloadSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Settings of the reload source (tests shorten the poll).
#[derive(Clone, Debug)]
pub struct ReloadOptions {
    pub poll: Duration,
    /// Install a SIGHUP handler (the agent does; most tests do not).
    pub sighup: bool,
}

impl Default for ReloadOptions {
    fn default() -> Self {
        ReloadOptions {
            poll: POLL_INTERVAL,
            sighup: true,
        }
    }
}

impl ReloadSource {
    /// Starts watching `config_path` and, in standalone mode,
    /// `services_path`, every [`POLL_INTERVAL`] and on SIGHUP. The files'
    /// current bytes are the baseline: only later changes are reported, so
    /// load the files for the start before calling this.
    pub fn spawn(
        config_path: PathBuf,
        services_path: Option<PathBuf>,
        metrics: Metrics,
    ) -> Result<(ReloadSource, mpsc::Receiver<Reload>), ReloadError> {
        Self::spawn_with(
            config_path,
            services_path,
            metrics,
            ReloadOptions::default(),
        )
    }

    /// [`spawn`](Self::spawn) with explicit options.
    pub fn spawn_with(
        config_path: PathBuf,
        services_path: Option<PathBuf>,
        metrics: Metrics,
        options: ReloadOptions,
    ) -> Result<(ReloadSource, mpsc::Receiver<Reload>), ReloadError> {
        let hangup = if options.sighup {
            Some(signal(SignalKind::hangup()).map_err(ReloadError::Signal)?)
        } else {
            None
        };
        let mut files = vec![WatchedFile::new(FileKind::Config, config_path)];
        if let Some(path) = services_path {
            files.push(WatchedFile::new(FileKind::Services, path));
        }
        let (reloads_tx, reloads_rx) = mpsc::channel(QUEUE);
        let (asked_tx, asked_rx) = mpsc::channel(1);
        let task = tokio::spawn(poll(
            files,
            options.poll,
            hangup,
            asked_rx,
            reloads_tx,
            metrics,
        ));
        Ok((
            ReloadSource {
                task,
                asked: asked_tx,
            },
            reloads_rx,
        ))
    }

    /// Reads both files now and reports them even if unchanged (what SIGHUP
    /// does): an operator who asks for a reload gets an answer.
    pub fn reload_now(&self) {
        // A full queue means a reload is already pending: nothing to add.
        let _ = self.asked.try_send(());
    }
}

/// One file and the bytes last seen of it (`None`: unreadable or not read).
struct WatchedFile {
    kind: FileKind,
    path: PathBuf,
    seen: Option<Vec<u8>>,
}

impl WatchedFile {
    fn new(kind: FileKind, path: PathBuf) -> Self {
        let seen = std::fs::read(&path).ok();
        WatchedFile { kind, path, seen }
    }

    /// Reads the file; returns the reload to report, if any. `forced`
    /// reports even an unchanged file.
    fn check(&mut self, forced: bool) -> Option<Reload> {
        let read = std::fs::read(&self.path);
        let bytes = read.as_ref().ok();
        if !forced && bytes == self.seen.as_ref() {
            return None;
        }
        self.seen = bytes.cloned();
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(source) => {
                return Some(self.rejected(ConfigError::Read {
                    path: self.path.clone(),
                    source,
                }));
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        let parsed = match self.kind {
            FileKind::Config => Config::from_yaml_with(&text, crate::bird::config_problems)
                .map(|c| Reload::Config(Box::new(c))),
            FileKind::Services => ServicesFile::from_yaml(&text).map(Reload::Services),
        };
        Some(parsed.unwrap_or_else(|error| self.rejected(error)))
    }

    fn rejected(&self, error: ConfigError) -> Reload {
        Reload::Rejected {
            path: self.path.clone(),
            error,
        }
    }
}

async fn poll(
    mut files: Vec<WatchedFile>,
    every: Duration,
    mut hangup: Option<Signal>,
    mut asked: mpsc::Receiver<()>,
    reloads: mpsc::Sender<Reload>,
    metrics: Metrics,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut asked_open = true;
    loop {
        let forced = tokio::select! {
            _ = ticks.tick() => false,
            Some(()) = recv_signal(&mut hangup) => {
                tracing::info!("SIGHUP: reloading the configuration");
                true
            }
            request = asked.recv(), if asked_open => {
                asked_open = request.is_some();
                request.is_some()
            }
        };
        for file in &mut files {
            let Some(reload) = file.check(forced) else {
                continue;
            };
            report(file.kind, &file.path, &reload, &metrics);
            if reloads.send(reload).await.is_err() {
                return; // the agent is gone
            }
        }
    }
}

/// The next SIGHUP, or never when no handler was installed.
async fn recv_signal(hangup: &mut Option<Signal>) -> Option<()> {
    match hangup {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

fn report(kind: FileKind, path: &Path, reload: &Reload, metrics: &Metrics) {
    let result = match reload {
        Reload::Rejected { error, .. } => {
            for problem in error.problems() {
                tracing::error!(
                    file = %path.display(),
                    field = %problem.path,
                    error = %problem.message,
                    "new file rejected; the last good one stays in force"
                );
            }
            "rejected"
        }
        _ => {
            tracing::info!(file = %path.display(), "new file loaded");
            "loaded"
        }
    };
    metrics
        .reloads
        .get_or_create(&ReloadLabels {
            file: kind.as_str(),
            result,
        })
        .inc();
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `config` or `services`.
    pub file: &'static str,
    /// `loaded` or `rejected`.
    pub result: &'static str,
}

/// The reload source's metrics (catalogue: docs/metrics.md).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub reloads: Family<ReloadLabels, Counter>,
}

impl Metrics {
    /// Registers on the `herald`-prefixed registry.
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics::default();
        registry.register(
            "config_reloads",
            "Changed configuration or services files read, by file and result (loaded, or rejected and the last good one kept)",
            metrics.reloads.clone(),
        );
        metrics
    }

    /// How many reloads of `file` ended with `result` (for tests).
    pub fn count(&self, file: &'static str, result: &'static str) -> u64 {
        self.reloads
            .get_or_create(&ReloadLabels { file, result })
            .get()
    }
}

#[cfg(test)]
mod tests;
