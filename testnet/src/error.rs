//! The lab's one error type.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while building, driving or observing a lab.
///
/// `Debug` prints the message (and its causes) rather than the struct, so a
/// test's `.expect("...")` shows a readable reason.
#[derive(thiserror::Error)]
pub enum LabError {
    /// A command could not be started at all (missing binary, no permission).
    #[error("could not run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },

    /// A command ran and exited non-zero.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },

    /// A command's output was not the JSON we asked for.
    #[error("`{command}` did not print valid JSON: {output}")]
    Json {
        command: String,
        output: String,
        #[source]
        source: serde_json::Error,
    },

    /// A file or directory operation failed.
    #[error("{context}: {}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A bounded wait ran out before its condition held.
    #[error("timed out after {after:?} waiting for {what}; last observed: {last}")]
    Timeout {
        what: String,
        after: Duration,
        last: String,
    },

    /// A daemon exited while the lab still needed it.
    #[error("{daemon} in namespace {namespace} exited ({status}); its log {}:\n{log}", log_path.display())]
    DaemonExited {
        daemon: String,
        namespace: String,
        status: String,
        log_path: PathBuf,
        log: String,
    },

    /// A containerlab topology file uses something the lab cannot realize, or is malformed.
    #[error("{}: {message}", file.display())]
    Topology { file: PathBuf, message: String },

    /// A topology node was asked for as something it is not (say, `frr("client")`).
    #[error("node {node}: {message}")]
    Node { node: String, message: String },

    /// A signal could not be delivered to a lab process.
    #[error("could not send {signal} to {name} (pid {pid})")]
    Signal {
        name: String,
        pid: i32,
        signal: String,
        #[source]
        source: nix::Error,
    },
}

impl std::fmt::Debug for LabError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = LabError> = std::result::Result<T, E>;
