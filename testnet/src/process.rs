//! Long-running processes inside lab namespaces, tracked by PID.
//!
//! The lab owns every process it starts: the [`std::process::Child`] lives in
//! the lab's process table until the lab is torn down, so a PID is never
//! reaped behind the lab's back and a signal can never reach a recycled PID.
//! Output goes to a log file in the lab's directory, shown when a test fails.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal;
pub use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::command::render;
use crate::error::{LabError, Result};
use crate::lab::Shared;

/// How long [`Process::terminate`] and the lab's teardown wait after SIGTERM
/// before sending SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(3);

/// How long [`Process::spawn`] waits for `ip netns exec` to exec the program.
const EXEC_TIMEOUT: Duration = Duration::from_secs(5);

/// One entry in the lab's process table.
pub(crate) struct Tracked {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
    pub(crate) exit: Option<ExitStatus>,
}

impl Tracked {
    /// Reaps the child if it has exited; returns its status once it has.
    pub(crate) fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    pub(crate) fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }
}

/// A handle to a process the lab started. Cloning it is cheap; the process
/// itself belongs to the lab and is stopped when the lab is dropped.
#[derive(Clone)]
pub struct Process {
    pid: Pid,
    name: String,
    namespace: String,
    log: PathBuf,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("pid", &self.pid.as_raw())
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl Process {
    /// Starts `program args...` inside `namespace` (`ip netns exec NS program
    /// args...`, which execs the program, so the child's PID is the
    /// program's), with `env` added to the environment and stdout and
    /// stderr appended to a log file.
    pub(crate) fn spawn(
        shared: &Arc<Shared>,
        namespace: &str,
        name: &str,
        program: &str,
        args: &[&str],
        env: &[(String, String)],
    ) -> Result<Process> {
        let log = shared.log_path(namespace, name);
        let file = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|source| LabError::Io {
                context: "cannot create the log file",
                path: log.clone(),
                source,
            })?;
        let err_file = file.try_clone().map_err(|source| LabError::Io {
            context: "cannot duplicate the log file handle",
            path: log.clone(),
            source,
        })?;
        let mut full = vec!["netns", "exec", namespace, program];
        full.extend_from_slice(args);
        let child = Command::new("ip")
            .args(&full)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err_file)
            .spawn()
            .map_err(|source| LabError::Spawn {
                command: render("ip", &full),
                source,
            })?;
        let pid = Pid::from_raw(child.id() as i32);
        shared.processes().push(Tracked {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            child,
            log: log.clone(),
            exit: None,
        });
        let process = Process {
            pid,
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            log,
            shared: Arc::clone(shared),
        };
        // `ip netns exec` enters the namespace and then execs the program.
        // Return only once that exec happened, so signals sent right after
        // spawn reach the program and not the wrapper.
        if program != "ip" && !program.ends_with("/ip") {
            let _ = crate::wait::wait_until(
                EXEC_TIMEOUT,
                Duration::from_millis(1),
                &format!("{name} to start"),
                || {
                    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
                    let still_ip = exe.as_deref().and_then(Path::file_name)
                        == Some(std::ffi::OsStr::new("ip"));
                    if process.exit_status().is_some() || !still_ip {
                        Ok(())
                    } else {
                        Err("still in ip netns exec")
                    }
                },
            );
        }
        Ok(process)
    }

    pub(crate) fn from_tracked(tracked: &Tracked, shared: &Arc<Shared>) -> Process {
        Process {
            pid: tracked.pid(),
            name: tracked.name.clone(),
            namespace: tracked.namespace.clone(),
            log: tracked.log.clone(),
            shared: Arc::clone(shared),
        }
    }

    /// The process ID (the program's own, not a wrapper's).
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// The name given at spawn time (for example `bgpd`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kernel name of the namespace the process runs in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Where the process's stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log so far (empty if it cannot be read).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status, once the process has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut table = self.shared.processes();
        table
            .iter_mut()
            .find(|t| t.pid() == self.pid)
            .and_then(Tracked::poll_exit)
    }

    /// True until the process has exited. A stopped (SIGSTOP) process is running.
    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    /// Fails with the process's log if it has exited.
    pub fn ensure_running(&self) -> Result<()> {
        match self.exit_status() {
            None => Ok(()),
            Some(status) => Err(LabError::DaemonExited {
                daemon: self.name.clone(),
                namespace: self.namespace.clone(),
                status: status.to_string(),
                log_path: self.log.clone(),
                log: self.log(),
            }),
        }
    }

    /// Sends `sig`. Refuses once the process has been reaped, so a signal
    /// never reaches a PID the kernel has handed to someone else.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        let mut table = self.shared.processes();
        let running = table
            .iter_mut()
            .find(|t| t.pid() == self.pid)
            .is_some_and(|t| t.poll_exit().is_none());
        let failed = |source| LabError::Signal {
            name: self.name.clone(),
            pid: self.pid.as_raw(),
            signal: sig.to_string(),
            source,
        };
        if running {
            // The child is not reaped while we hold the table lock, so the
            // PID is still ours even if the process has just exited.
            signal::kill(self.pid, sig).map_err(failed)
        } else {
            Err(failed(nix::Error::ESRCH))
        }
    }

    /// SIGSTOP: the process freezes, its sockets stay open (a hung node).
    /// Returns once every thread of it is stopped: the signal is delivered
    /// asynchronously, so a thread running on the other core may still
    /// finish what it was doing (answer a request, send a packet) after
    /// `kill` returned.
    pub fn freeze(&self) -> Result<()> {
        self.signal(Signal::SIGSTOP)?;
        let deadline = Instant::now() + FREEZE_WAIT;
        loop {
            match threads_stopped(self.pid.as_raw()) {
                Some(true) => return Ok(()),
                // Gone: it cannot answer anything either.
                None => return Ok(()),
                Some(false) if Instant::now() >= deadline => {
                    return Err(LabError::Timeout {
                        what: format!("pid {} to stop after SIGSTOP", self.pid),
                        after: FREEZE_WAIT,
                        last: "a thread still running".into(),
                    });
                }
                Some(false) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    /// SIGCONT: undo [`Process::freeze`].
    pub fn thaw(&self) -> Result<()> {
        self.signal(Signal::SIGCONT)
    }

    /// SIGKILL, then wait (bounded) until it has exited.
    pub fn kill(&self) -> Result<ExitStatus> {
        self.signal(Signal::SIGKILL)?;
        self.wait_exit(TERM_GRACE)
    }

    /// SIGTERM (and SIGCONT, in case it is frozen); SIGKILL after [`TERM_GRACE`].
    pub fn terminate(&self) -> Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        let _ = self.signal(Signal::SIGCONT);
        match self.wait_exit(TERM_GRACE) {
            Ok(status) => Ok(status),
            Err(_) => self.kill(),
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus> {
        crate::wait::wait_until(
            timeout,
            Duration::from_millis(10),
            &format!("{} (pid {}) to exit", self.name, self.pid),
            || self.exit_status().ok_or("still running"),
        )
    }
}

/// Stops every process in the table: SIGTERM (and SIGCONT) to all, wait up to
/// [`TERM_GRACE`], then SIGKILL what is left and reap it.
pub(crate) fn stop_all(table: &mut [Tracked]) {
    for tracked in table.iter_mut() {
        if tracked.poll_exit().is_none() {
            let _ = signal::kill(tracked.pid(), Signal::SIGTERM);
            let _ = signal::kill(tracked.pid(), Signal::SIGCONT);
        }
    }
    let deadline = Instant::now() + TERM_GRACE;
    while Instant::now() < deadline && table.iter_mut().any(|t| t.poll_exit().is_none()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for tracked in table.iter_mut() {
        if tracked.poll_exit().is_none() {
            let _ = signal::kill(tracked.pid(), Signal::SIGKILL);
        }
    }
    let deadline = Instant::now() + TERM_GRACE;
    while Instant::now() < deadline && table.iter_mut().any(|t| t.poll_exit().is_none()) {
        std::thread::sleep(Duration::from_millis(10));
    }
    for tracked in table.iter_mut() {
        if tracked.poll_exit().is_none() {
            eprintln!(
                "lab: {} (pid {}) in {} did not exit after SIGKILL",
                tracked.name,
                tracked.pid(),
                tracked.namespace
            );
        }
    }
}

/// How long [`Process::freeze`] waits for every thread to stop.
const FREEZE_WAIT: Duration = Duration::from_secs(2);

/// Whether every thread of `pid` is in the stopped state (`T` in
/// `/proc/PID/task/TID/stat`); `None` when the process is gone.
fn threads_stopped(pid: i32) -> Option<bool> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut all = true;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // the thread just exited
        };
        // "tid (comm) S ...": comm may hold spaces and parentheses.
        let state = stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next());
        if !matches!(state, Some("T") | Some("t")) {
            all = false;
        }
    }
    Some(all)
}
