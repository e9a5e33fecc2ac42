//! What the lab's three routers (FRR, BIRD 2, GoBGP) have in common: one
//! trait, [`RouterDriver`], so a test or the topology deployment can drive
//! any of them the same way, and the start-up steps every driver takes
//! (write the config into the node's directory, start the daemon, wait
//! until it answers or report why it died).
//!
//! What this module owns: the trait and those helpers. What it must not
//! touch: anything a driver does in its own language (vtysh, birdc, gobgp);
//! each driver keeps its own methods for that.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{LabError, Result};
use crate::netns::Namespace;
use crate::process::Process;
use crate::wait::wait_until;

/// A router daemon (or FRR's group of daemons) running in a lab namespace.
pub trait RouterDriver {
    /// The daemon's name in messages: `FRR`, `BIRD`, `GoBGP`.
    fn kind(&self) -> &'static str;

    /// The namespace the router runs in.
    fn namespace(&self) -> &Namespace;

    /// Every process the router runs (FRR: zebra, staticd, bfdd, bgpd).
    fn processes(&self) -> Vec<&Process>;

    /// Fails with the log of the first daemon that has exited.
    fn ensure_running(&self) -> Result<()> {
        self.processes()
            .into_iter()
            .try_for_each(Process::ensure_running)
    }

    /// Waits until the BGP session with `neighbor` is Established.
    /// `neighbor` is the neighbour's address (FRR, GoBGP) or the name of
    /// the BGP protocol (BIRD).
    fn wait_established(&self, neighbor: &str, timeout: Duration) -> Result<()>;

    /// Waits until `prefix` is in the router's routing table and returns
    /// what the router says about it (its own text or JSON).
    fn wait_route(&self, prefix: &str, timeout: Duration) -> Result<String>;
}

/// Creates `<ns dir>/<subdir>` and writes `contents` to `file` in it;
/// returns the file's path. `what` names the daemon in errors.
pub(crate) fn write_config(
    ns: &Namespace,
    subdir: &str,
    file: &str,
    contents: &str,
    what: &'static str,
) -> Result<PathBuf> {
    let dir = ns.dir().join(subdir);
    std::fs::create_dir_all(&dir).map_err(|source| LabError::Io {
        context: what,
        path: dir.clone(),
        source,
    })?;
    let path = dir.join(file);
    std::fs::write(&path, contents).map_err(|source| LabError::Io {
        context: what,
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Reads a configuration file a test names (for `start_with_file`).
pub(crate) fn read_config(file: &Path, what: &'static str) -> Result<String> {
    std::fs::read_to_string(file).map_err(|source| LabError::Io {
        context: what,
        path: file.to_owned(),
        source,
    })
}

/// Waits (bounded) until `answers` succeeds for a daemon just started. If
/// the daemon died meanwhile, the error is its exit with its log, not the
/// last answer: that is what a test failing here needs to show.
pub(crate) fn wait_answering<T>(
    process: &Process,
    timeout: Duration,
    poll: Duration,
    what: &str,
    mut answers: impl FnMut() -> std::result::Result<T, String>,
) -> Result<T> {
    wait_until(timeout, poll, what, || {
        process.ensure_running().map_err(|e| e.to_string())?;
        answers()
    })
    .map_err(|e| match process.ensure_running() {
        Err(exited) => exited,
        Ok(()) => e,
    })
}
