//! BIRD 2 inside a lab namespace: `bird -f -c FILE -s SOCKET -P PIDFILE`,
//! driven with `birdc -s SOCKET`.
//!
//! The control socket is a file in the node's directory, so `birdc` reaches
//! it from the root namespace; the daemon itself runs in the node's
//! namespace and in the foreground (`-f`), so its PID is the one the lab
//! tracks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::command;
use crate::error::{LabError, Result};
use crate::netns::Namespace;
use crate::process::Process;
use crate::wait::wait_until;

/// One BIRD 2 daemon in a lab namespace.
#[derive(Debug)]
pub struct Bird {
    ns: Namespace,
    config: PathBuf,
    socket: PathBuf,
    process: Process,
}

impl Bird {
    /// Writes `config` to the node's directory, starts BIRD on it and waits
    /// until `birdc show status` answers.
    pub fn start(ns: &Namespace, config: &str) -> Result<Bird> {
        let dir = ns.dir().join("bird");
        std::fs::create_dir_all(&dir).map_err(|source| LabError::Io {
            context: "cannot create the BIRD directory",
            path: dir.clone(),
            source,
        })?;
        let config_path = dir.join("bird.conf");
        write(&config_path, config)?;
        let socket = dir.join("bird.ctl");
        let pid_file = dir.join("bird.pid");
        let (c, s, p) = (
            config_path.display().to_string(),
            socket.display().to_string(),
            pid_file.display().to_string(),
        );
        let process = ns.spawn("bird", "bird", &["-f", "-c", &c, "-s", &s, "-P", &p])?;
        let bird = Bird {
            ns: ns.clone(),
            config: config_path,
            socket,
            process,
        };
        wait_until(
            Duration::from_secs(10),
            Duration::from_millis(20),
            &format!("BIRD in {} to answer on its socket", ns.name()),
            || {
                bird.process.ensure_running().map_err(|e| e.to_string())?;
                bird.birdc(&["show", "status"]).map_err(|e| e.to_string())
            },
        )
        .map_err(|e| match bird.process.ensure_running() {
            Err(exited) => exited,
            Ok(()) => e,
        })?;
        Ok(bird)
    }

    /// Starts BIRD with the configuration in `file`.
    pub fn start_with_file(ns: &Namespace, file: &Path) -> Result<Bird> {
        let config = std::fs::read_to_string(file).map_err(|source| LabError::Io {
            context: "cannot read the BIRD configuration",
            path: file.to_owned(),
            source,
        })?;
        Bird::start(ns, &config)
    }

    /// The namespace BIRD runs in.
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// The daemon's process, for signals and its log.
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// The control socket (`birdc -s`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `birdc -s SOCKET ARGS...`; returns the output.
    pub fn birdc(&self, args: &[&str]) -> Result<String> {
        let socket = self.socket.display().to_string();
        let mut full = vec!["-s", socket.as_str()];
        full.extend_from_slice(args);
        command::run("birdc", &full)
    }

    /// `birdc show route` (all tables).
    pub fn show_route(&self) -> Result<String> {
        self.birdc(&["show", "route"])
    }

    /// `birdc show protocols`.
    pub fn show_protocols(&self) -> Result<String> {
        self.birdc(&["show", "protocols"])
    }

    /// `birdc configure`: re-reads the configuration file. Fails unless BIRD
    /// says it reconfigured (a syntax error leaves the old config running).
    pub fn configure(&self) -> Result<()> {
        let out = self.birdc(&["configure"])?;
        if out.contains("Reconfigured") || out.contains("Reconfiguration in progress") {
            Ok(())
        } else {
            Err(LabError::Command {
                command: "birdc configure".into(),
                status: "rejected".into(),
                stderr: out,
            })
        }
    }

    /// Replaces the configuration file with `config` and runs [`Bird::configure`].
    pub fn reconfigure(&self, config: &str) -> Result<()> {
        write(&self.config, config)?;
        self.configure()
    }

    /// Waits until protocol `name` shows `Established` in `birdc show protocols`.
    pub fn wait_established(&self, name: &str, timeout: Duration) -> Result<()> {
        wait_until(
            timeout,
            Duration::from_millis(100),
            &format!("BIRD protocol {name} in {} Established", self.ns.node()),
            || {
                let out = self
                    .birdc(&["show", "protocols", name])
                    .map_err(|e| e.to_string())?;
                if out.contains("Established") {
                    Ok(())
                } else {
                    Err(out)
                }
            },
        )
    }
}

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(|source| LabError::Io {
        context: "cannot write the BIRD configuration",
        path: path.to_owned(),
        source,
    })
}
