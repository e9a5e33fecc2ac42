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
use crate::router::{RouterDriver, read_config, wait_answering, write_config};
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
        let config_path = write_config(
            ns,
            "bird",
            "bird.conf",
            config,
            "cannot write the BIRD configuration",
        )?;
        let dir = config_path.parent().unwrap_or(ns.dir()).to_path_buf();
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
        wait_answering(
            &bird.process,
            Duration::from_secs(10),
            Duration::from_millis(20),
            &format!("BIRD in {} to answer on its socket", ns.name()),
            || bird.birdc(&["show", "status"]).map_err(|e| e.to_string()),
        )?;
        Ok(bird)
    }

    /// Starts BIRD with the configuration in `file`.
    pub fn start_with_file(ns: &Namespace, file: &Path) -> Result<Bird> {
        Bird::start(
            ns,
            &read_config(file, "cannot read the BIRD configuration")?,
        )
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

    /// Waits until `birdc show route PREFIX` lists the prefix (in any table).
    pub fn wait_route(&self, prefix: &str, timeout: Duration) -> Result<String> {
        wait_until(
            timeout,
            Duration::from_millis(100),
            &format!("{prefix} in BIRD's tables on {}", self.ns.node()),
            || {
                let out = self
                    .birdc(&["show", "route", prefix])
                    .map_err(|e| e.to_string())?;
                if out.lines().any(|l| l.starts_with(prefix)) {
                    Ok(out)
                } else {
                    Err(out)
                }
            },
        )
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

impl RouterDriver for Bird {
    fn kind(&self) -> &'static str {
        "BIRD"
    }

    fn namespace(&self) -> &Namespace {
        &self.ns
    }

    fn processes(&self) -> Vec<&Process> {
        vec![&self.process]
    }

    fn wait_established(&self, protocol: &str, timeout: Duration) -> Result<()> {
        Bird::wait_established(self, protocol, timeout)
    }

    fn wait_route(&self, prefix: &str, timeout: Duration) -> Result<String> {
        Bird::wait_route(self, prefix, timeout)
    }
}

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(|source| LabError::Io {
        context: "cannot write the BIRD configuration",
        path: path.to_owned(),
        source,
    })
}

/// BFD timers for a generated BIRD speaker config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdTimers {
    /// Both the minimum receive and transmit interval, in milliseconds.
    pub interval_ms: u32,
    /// The detection multiplier.
    pub multiplier: u8,
}

/// A BIRD node that announces prefixes to one router over eBGP: the
/// reference speaker the lab puts where herald will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerConfig {
    pub router_id: String,
    pub local_as: u32,
    pub local_address: String,
    pub peer_address: String,
    pub peer_as: u32,
    /// The interface towards the router (for BFD).
    pub interface: String,
    /// IPv4 prefixes to announce (`203.0.113.10/32`).
    pub prefixes: Vec<String>,
    /// BFD on the session, or none.
    pub bfd: Option<BfdTimers>,
}

impl SpeakerConfig {
    /// Renders bird.conf: a static protocol holding the prefixes (as
    /// blackholes; BIRD exports no kernel routes here), BFD on the
    /// interface if asked, and the BGP session exporting only the statics.
    /// Connect retry and error wait are short so the session comes back in
    /// seconds after a fault.
    pub fn render(&self) -> String {
        self.render_with_graceful_restart(None)
    }

    /// [`SpeakerConfig::render`], with BGP graceful restart (RFC 4724) on
    /// the session when `restart_time` is given (`graceful restart on;
    /// graceful restart time N;`), as in the setup of our story: a router
    /// keeps this node's routes as stale when its session drops.
    pub fn render_with_graceful_restart(&self, restart_time: Option<Duration>) -> String {
        let mut conf = format!(
            "router id {};\nlog stderr all;\nprotocol device {{ scan time 1; }}\n",
            self.router_id
        );
        conf.push_str("protocol static announced {\n  ipv4;\n");
        for prefix in &self.prefixes {
            conf.push_str(&format!("  route {prefix} blackhole;\n"));
        }
        conf.push_str("}\n");
        if let Some(bfd) = self.bfd {
            conf.push_str(&format!(
                "protocol bfd {{\n  interface \"{}\" {{ min rx interval {ms} ms; \
                 min tx interval {ms} ms; multiplier {}; }};\n}}\n",
                self.interface,
                bfd.multiplier,
                ms = bfd.interval_ms
            ));
        }
        let graceful_restart = match restart_time {
            Some(time) => format!(
                "  graceful restart on;\n  graceful restart time {};\n",
                time.as_secs()
            ),
            None => String::new(),
        };
        conf.push_str(&format!(
            "protocol bgp uplink {{\n  local {} as {};\n  neighbor {} as {};\n  bfd {};\n  \
             connect retry time 1;\n  error wait time 1, 5;\n{graceful_restart}  \
             ipv4 {{ import all; export where proto = \"announced\"; }};\n}}\n",
            self.local_address,
            self.local_as,
            self.peer_address,
            self.peer_as,
            if self.bfd.is_some() { "on" } else { "off" }
        ));
        conf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speaker_config_announces_its_prefixes_with_bfd_on_the_session() {
        let conf = SpeakerConfig {
            router_id: "192.0.2.11".into(),
            local_as: 64601,
            local_address: "192.0.2.11".into(),
            peer_address: "192.0.2.1".into(),
            peer_as: 64512,
            interface: "eth1".into(),
            prefixes: vec!["203.0.113.10/32".into()],
            bfd: Some(BfdTimers {
                interval_ms: 100,
                multiplier: 3,
            }),
        }
        .render();
        assert!(conf.contains("route 203.0.113.10/32 blackhole;"), "{conf}");
        assert!(conf.contains("neighbor 192.0.2.1 as 64512;"), "{conf}");
        assert!(conf.contains("min rx interval 100 ms"), "{conf}");
        assert!(conf.contains("bfd on;"), "{conf}");
    }

    #[test]
    fn speaker_config_without_bfd_has_no_bfd_protocol() {
        let conf = SpeakerConfig {
            router_id: "192.0.2.11".into(),
            local_as: 64601,
            local_address: "192.0.2.11".into(),
            peer_address: "192.0.2.1".into(),
            peer_as: 64512,
            interface: "eth1".into(),
            prefixes: vec![],
            bfd: None,
        }
        .render();
        assert!(!conf.contains("protocol bfd"), "{conf}");
        assert!(conf.contains("bfd off;"), "{conf}");
        assert!(!conf.contains("graceful restart"), "{conf}");
    }

    #[test]
    fn speaker_config_with_graceful_restart_sets_it_on_the_session() {
        let conf = SpeakerConfig {
            router_id: "192.0.2.11".into(),
            local_as: 64601,
            local_address: "192.0.2.11".into(),
            peer_address: "192.0.2.1".into(),
            peer_as: 64512,
            interface: "eth1".into(),
            prefixes: vec!["203.0.113.10/32".into()],
            bfd: None,
        }
        .render_with_graceful_restart(Some(Duration::from_secs(120)));
        let session = &conf[conf.find("protocol bgp").unwrap()..];
        assert!(session.contains("graceful restart on;"), "{conf}");
        assert!(session.contains("graceful restart time 120;"), "{conf}");
    }
}
