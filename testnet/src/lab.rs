//! The [`Lab`]: one test's set of namespaces, links and processes, and the
//! guarantee that all of it is gone when the lab is dropped.
//!
//! Names are unique per lab: `hlab-<pid>-<counter>` prefixes every namespace
//! and the lab's directory, so labs in parallel tests (and leftovers of a run
//! that was killed hard) never collide. Interfaces are created directly
//! inside their namespaces, so their names only need to be unique there and
//! nothing ever appears in the root namespace.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::command;
use crate::error::{LabError, Result};
use crate::netns::Namespace;
use crate::process::{self, Process, Tracked};
use crate::requirements::{self, Skip};
use crate::stale;

/// Prefix of every namespace and directory the harness creates.
pub const NAME_PREFIX: &str = "hlab-";

/// How many labs one test process runs at once unless `HERALD_LAB_PARALLEL`
/// says otherwise. Labs beyond this wait in [`Lab::start`]; it keeps a 2-core
/// machine from timing out BFD sessions when the test runner starts many lab
/// tests in parallel.
pub const DEFAULT_PARALLEL_LABS: usize = 2;

/// How long [`Lab::start`] waits for a free slot before panicking.
const SLOT_WAIT: Duration = Duration::from_secs(15 * 60);

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);
static SLOTS: Mutex<usize> = Mutex::new(0);
static SLOT_FREED: Condvar = Condvar::new();

/// State shared by the lab and every handle it gives out.
pub(crate) struct Shared {
    id: String,
    dir: PathBuf,
    namespaces: Mutex<Vec<String>>,
    processes: Mutex<Vec<Tracked>>,
}

impl Shared {
    pub(crate) fn processes(&self) -> MutexGuard<'_, Vec<Tracked>> {
        self.processes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn namespaces(&self) -> MutexGuard<'_, Vec<String>> {
        self.namespaces.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lab's directory for one node's files (configs, sockets, pid files).
    pub(crate) fn node_dir(&self, namespace: &str) -> PathBuf {
        let node = namespace
            .strip_prefix(&self.id)
            .map(|rest| rest.trim_start_matches('-'))
            .unwrap_or(namespace);
        self.dir.join(node)
    }

    /// A fresh log file path for a process called `name` in `namespace`.
    pub(crate) fn log_path(&self, namespace: &str, name: &str) -> PathBuf {
        let node_dir = self.node_dir(namespace);
        let node = node_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let base = format!("{}-{}", node.unwrap_or_default(), name);
        let logs = self.dir.join("logs");
        let mut candidate = logs.join(format!("{base}.log"));
        let mut n = 1;
        while candidate.exists() {
            n += 1;
            candidate = logs.join(format!("{base}.{n}.log"));
        }
        candidate
    }
}

/// Holds one of the process-wide lab slots; frees it on drop.
struct Slot;

impl Slot {
    fn acquire() -> Slot {
        let limit = std::env::var("HERALD_LAB_PARALLEL")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(DEFAULT_PARALLEL_LABS);
        let deadline = Instant::now() + SLOT_WAIT;
        let mut running = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= limit {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no lab slot became free in {SLOT_WAIT:?} ({limit} labs at once): \
                 does a test hold two labs at the same time?"
            );
            running = SLOT_FREED
                .wait_timeout(running, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *running += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        *running -= 1;
        SLOT_FREED.notify_one();
    }
}

/// One lab: namespaces, veth links, bridges and daemons, all torn down on drop
/// (processes stopped by PID, namespaces deleted, the directory removed),
/// also when the test panics. When it is dropped during a panic it first
/// prints the tail of every process log.
pub struct Lab {
    shared: Arc<Shared>,
    // Dropped after `Drop::drop` has torn the lab down.
    _slot: Slot,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab").field("id", &self.shared.id).finish()
    }
}

impl Lab {
    /// Checks the machine (root, packages), removes stale leftovers of dead
    /// test processes, waits for a free lab slot and creates the lab's
    /// directory.
    ///
    /// A test should hold one lab at a time: a second one waits for a slot
    /// that the first may be holding.
    ///
    /// # Panics
    /// When a requirement is missing and `CI=true` (see
    /// [`requirements::check_or_fail_in_ci`]), when the lab's directory
    /// cannot be created, or when no slot frees up within 15 minutes.
    pub fn start() -> std::result::Result<Lab, Skip> {
        requirements::check_or_fail_in_ci()?;
        stale::cleanup_stale();
        let slot = Slot::acquire();
        let id = format!(
            "{NAME_PREFIX}{}-{}",
            std::process::id(),
            LAB_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&id);
        if let Err(e) = std::fs::create_dir_all(dir.join("logs")) {
            panic!("cannot create the lab directory {}: {e}", dir.display());
        }
        Ok(Lab {
            shared: Arc::new(Shared {
                id,
                dir,
                namespaces: Mutex::new(Vec::new()),
                processes: Mutex::new(Vec::new()),
            }),
            _slot: slot,
        })
    }

    /// The lab's unique prefix, `hlab-<pid>-<counter>`.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The lab's directory (configs, sockets, logs); removed on drop.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The kernel names of the namespaces this lab created.
    pub fn namespace_names(&self) -> Vec<String> {
        self.shared.namespaces().clone()
    }

    /// The PIDs of every process this lab started (running or not).
    pub fn pids(&self) -> Vec<i32> {
        self.shared
            .processes()
            .iter()
            .map(|t| t.pid().as_raw())
            .collect()
    }

    /// Handles to every process this lab started.
    pub fn processes(&self) -> Vec<Process> {
        let table = self.shared.processes();
        table
            .iter()
            .map(|t| Process::from_tracked(t, &self.shared))
            .collect()
    }

    /// Creates namespace `<lab id>-<node>` with `lo` up, and a directory for
    /// the node's files.
    pub fn namespace(&self, node: &str) -> Result<Namespace> {
        if node.is_empty()
            || !node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(LabError::InvalidName {
                what: "node name",
                name: node.to_owned(),
                rule: "letters, digits, '-', '_' and '.' only",
            });
        }
        let name = format!("{}-{node}", self.shared.id);
        command::run("ip", &["netns", "add", &name])?;
        self.shared.namespaces().push(name.clone());
        let dir = self.shared.node_dir(&name);
        std::fs::create_dir_all(&dir).map_err(|source| LabError::Io {
            context: "cannot create the node directory",
            path: dir.clone(),
            source,
        })?;
        let ns = Namespace::new(name, node.to_owned(), dir, Arc::clone(&self.shared));
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Creates a veth pair with one end, `a_if`, in `a` and the other, `b_if`,
    /// in `b`, both up. Both ends are created in place (`ip -n A link add
    /// A_IF type veth peer name B_IF netns B`), never in the root namespace.
    pub fn veth(&self, a: &Namespace, a_if: &str, b: &Namespace, b_if: &str) -> Result<()> {
        for ifname in [a_if, b_if] {
            check_ifname(ifname)?;
        }
        a.ip(&[
            "link",
            "add",
            a_if,
            "type",
            "veth",
            "peer",
            "name",
            b_if,
            "netns",
            b.name(),
        ])?;
        a.link_up(a_if)?;
        b.link_up(b_if)?;
        Ok(())
    }

    /// Prints the last lines of every log file in the lab to stderr.
    pub fn print_logs(&self, last_lines: usize) {
        let logs = self.shared.dir.join("logs");
        let Ok(entries) = std::fs::read_dir(&logs) else {
            return;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(last_lines);
            eprintln!(
                "----- {} (last {} lines) -----",
                path.display(),
                lines.len() - from
            );
            for line in &lines[from..] {
                eprintln!("{line}");
            }
        }
    }

    fn teardown(&mut self) {
        process::stop_all(&mut self.shared.processes());
        for name in self.shared.namespaces().drain(..).rev() {
            stale::remove_namespace(&name);
        }
        if std::env::var_os("HERALD_LAB_KEEP").is_some() {
            eprintln!(
                "lab: HERALD_LAB_KEEP is set, keeping {}",
                self.shared.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.shared.dir);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("lab {} failed; process logs follow", self.shared.id);
            self.print_logs(60);
        }
        self.teardown();
    }
}

/// Linux interface names: 1 to 15 bytes, no '/', ':' or whitespace.
pub(crate) fn check_ifname(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 15
        && !name.contains(['/', ':'])
        && !name.contains(char::is_whitespace);
    if valid {
        Ok(())
    } else {
        Err(LabError::InvalidName {
            what: "interface name",
            name: name.to_owned(),
            rule: "1-15 bytes, no '/', ':' or whitespace",
        })
    }
}

/// The three load averages of /proc/loadavg ("1.20 0.95 0.80"), printed
/// beside figures measured on a shared machine.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernel_rules() {
        for good in ["eth1", "p-n1", "bfdpair-r1", "a23456789012345"] {
            assert!(check_ifname(good).is_ok(), "{good}");
        }
        for bad in ["", "a234567890123456", "eth/1", "eth:1", "eth 1"] {
            let err = check_ifname(bad).unwrap_err().to_string();
            assert!(err.contains("interface name"), "{bad}: {err}");
        }
    }

    #[test]
    fn node_directories_and_logs_are_named_after_the_node() {
        let shared = Shared {
            id: "hlab-1-0".into(),
            dir: PathBuf::from("/nonexistent/hlab-1-0"),
            namespaces: Mutex::new(Vec::new()),
            processes: Mutex::new(Vec::new()),
        };
        assert_eq!(
            shared.node_dir("hlab-1-0-r1"),
            PathBuf::from("/nonexistent/hlab-1-0/r1")
        );
        assert_eq!(
            shared.log_path("hlab-1-0-r1", "bgpd"),
            PathBuf::from("/nonexistent/hlab-1-0/logs/r1-bgpd.log")
        );
    }
}
