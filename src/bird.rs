//! `speaker: bird`: herald decides what the node announces, and the node's
//! existing BIRD 2 speaks BGP (and BFD) for it.
//!
//! Many clusters already run BIRD on every node (Calico does), peering with
//! the ToR routers; a second speaker from the same address would collide.
//! In this mode herald does everything except speak BGP: the same policy
//! decides the announcements, netlink puts the addresses on the interface,
//! and this module has BIRD announce them.
//!
//! Owns: the include file herald writes for BIRD (`render`), the birdc line
//! protocol on BIRD's control socket (`reply`, `control`), reading BIRD's
//! protocol and BFD tables back (`show`), when to reload (`schedule`), the
//! driver task that does it (`speaker`), its metrics, and the checks a
//! config must pass for BIRD (`config`; the fields' shapes are
//! `crate::config`'s).
//! Must not touch: BIRD's own configuration file (only the include file),
//! BIRD processes, netlink, or herald's own BGP and BFD.
//!
//! ```text
//!  agent ── announce(&set) ──> BirdSpeaker ─ commands ─> driver task (one owner)
//!                                                           │ ReloadSchedule (pure: coalesce,
//!                                                           │ pace, back off)
//!                                                           v
//!                       render::include_file(config, set) ── text
//!                          unchanged from what BIRD runs? ── done
//!                          write atomically (tmp + rename) ── include_file
//!                          check: check_command, or `configure check`
//!                             rejected -> restore the last good file, report
//!                          `configure` on the control socket ── BIRD reloads
//!  every second: `show protocols all`, `show bfd sessions`
//!                 -> peers() / bfd_sessions() / metrics / StatusBoard
//! ```
//!
//! # Supported interfaces
//! - BIRD 2.0 control socket protocol (`nest/cli.c`, `doc/reply_codes`);
//!   tested against BIRD 2.0.12.
//! - BIRD 2.0 configuration language for the include file: `protocol
//!   static`, `protocol bfd`, `template bgp` with per-peer `bfd { }`
//!   options (BIRD 2.0.9 and later).

mod config;
pub mod control;
pub mod metrics;
pub mod render;
pub mod reply;
pub mod schedule;
pub mod show;
pub mod speaker;

use std::io;
use std::path::PathBuf;

pub use crate::config::{BirdConfig, SpeakerKind};
pub use config::problems as config_problems;
pub use metrics::Metrics;
pub use speaker::{BirdSpeaker, BirdStatus};

/// Everything that goes wrong talking to BIRD or writing its include file.
#[derive(Debug, thiserror::Error)]
pub enum BirdError {
    #[error(
        "cannot connect to BIRD's control socket {}: {source} (is BIRD running, and is \
         bird.control_socket its `-s` path?)",
        path.display()
    )]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("BIRD's control socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("BIRD's control socket {}: no answer to {what} in time", path.display())]
    Timeout { path: PathBuf, what: String },
    #[error("BIRD closed its control socket {}", path.display())]
    Closed { path: PathBuf },
    #[error("BIRD's control socket {} is out of step", path.display())]
    Protocol {
        path: PathBuf,
        #[source]
        source: reply::ReplyError,
    },
    #[error("BIRD's control socket {}: unexpected answer to {command}: {reply}", path.display())]
    Unexpected {
        path: PathBuf,
        command: String,
        reply: String,
    },
    #[error("BIRD refused {command:?}: {code:04} {message}")]
    Refused {
        command: String,
        code: u16,
        message: String,
    },
    #[error("cannot write the include file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the check command {command:?} rejected the include file: {detail}")]
    CheckRejected { command: String, detail: String },
    #[error("cannot run the check command {command:?}: {source}")]
    CheckRun {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("the BIRD speaker has stopped")]
    Stopped,
}

impl BirdError {
    /// A short label for the `reason` of `herald_bird_errors_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            BirdError::Connect { .. } => "connect",
            BirdError::Io { .. } | BirdError::Closed { .. } => "io",
            BirdError::Timeout { .. } => "timeout",
            BirdError::Protocol { .. } | BirdError::Unexpected { .. } => "protocol",
            BirdError::Refused { .. } => "refused",
            BirdError::Write { .. } => "write",
            BirdError::CheckRejected { .. } | BirdError::CheckRun { .. } => "check",
            BirdError::Stopped => "stopped",
        }
    }

    /// Whether the file itself was judged bad (retrying the same file is
    /// pointless), as opposed to BIRD or the file system being unavailable.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            BirdError::Refused { .. }
                | BirdError::CheckRejected { .. }
                | BirdError::CheckRun { .. }
        )
    }
}
