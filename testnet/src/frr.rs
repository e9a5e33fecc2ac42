//! FRR inside a lab namespace: zebra, staticd, bfdd and bgpd with their own
//! sockets, pid files and config directory, driven through `vtysh
//! --vty_socket`.
//!
//! Each router gets a private directory (owned by `frr`, since the daemons
//! drop to that user): pid files (`-i`), zebra's zserv socket (`-z`), the vty
//! sockets (`--vty_socket`), bfdd's control socket (`--bfdctl`). No TCP vty
//! (`-P 0`). Nothing here touches `/var/run/frr`, so a system-wide FRR that
//! the Debian package may have started in the root namespace is neither
//! disturbed nor relied on.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::command;
use crate::error::{LabError, Result};
use crate::frr_log::{self, RouterEvent};
use crate::netns::Namespace;
use crate::process::Process;
use crate::router::{RouterDriver, read_config, wait_answering};
use crate::wait::wait_until;

/// The FRR daemons the lab starts, in start order (zebra first: the others
/// connect to its zserv socket).
pub const FRR_DAEMONS: [&str; 4] = ["zebra", "staticd", "bfdd", "bgpd"];

/// Where Debian installs the FRR daemons.
pub const FRR_BIN_DIR: &str = "/usr/lib/frr";

/// How long a daemon may take to create its sockets.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// One FRR router (zebra, staticd, bfdd, bgpd) in a lab namespace.
#[derive(Debug)]
pub struct Frr {
    ns: Namespace,
    dir: PathBuf,
    daemons: Vec<Process>,
}

impl Frr {
    /// Starts zebra, waits for its zserv socket, then staticd, bfdd and
    /// bgpd, and waits until every daemon's vty socket exists. The router
    /// starts with an empty configuration; see [`Frr::configure`].
    pub fn start(ns: &Namespace) -> Result<Frr> {
        let dir = ns.dir().join("frr");
        create_frr_dir(&dir)?;
        let empty = dir.join("empty.conf");
        write_frr_file(&empty, "")?;
        let dir_s = dir.display().to_string();
        let zserv = format!("{dir_s}/zserv.api");
        let bfdctl = format!("{dir_s}/bfdd.sock");
        let empty_s = empty.display().to_string();
        let mut frr = Frr {
            ns: ns.clone(),
            dir: dir.clone(),
            daemons: Vec::new(),
        };
        for daemon in FRR_DAEMONS {
            let pid_file = format!("{dir_s}/{daemon}.pid");
            let mut args = vec![
                "-u",
                "frr",
                "-g",
                "frr",
                "-P",
                "0",
                "-i",
                &pid_file,
                "-z",
                &zserv,
                "--vty_socket",
                &dir_s,
                "-f",
                &empty_s,
            ];
            if daemon == "bfdd" {
                args.extend(["--bfdctl", &bfdctl]);
            }
            let program = format!("{FRR_BIN_DIR}/{daemon}");
            // UTC log stamps (crate::frr_log reads them).
            let tz = [("TZ".to_string(), "UTC0".to_string())];
            let process = ns.spawn_with_env(daemon, &program, &args, &tz)?;
            frr.daemons.push(process.clone());
            let mut sockets = vec![dir.join(format!("{daemon}.vty"))];
            if daemon == "zebra" {
                sockets.push(dir.join("zserv.api"));
            }
            wait_answering(
                &process,
                STARTUP_TIMEOUT,
                Duration::from_millis(20),
                &format!("{daemon} in {} to create its sockets", ns.name()),
                || match sockets.iter().find(|s| !s.exists()) {
                    Some(missing) => Err(format!("{} missing", missing.display())),
                    None => Ok(()),
                },
            )?;
        }
        Ok(frr)
    }

    /// The namespace the router runs in.
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// The router's socket and config directory (for `vtysh --vty_socket`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process of one daemon (`"bgpd"`), for signals and logs.
    pub fn daemon(&self, name: &str) -> Option<&Process> {
        self.daemons.iter().find(|p| p.name() == name)
    }

    /// Makes the daemons log, with microsecond stamps, what
    /// [`Frr::event_time`] reads: BFD session state changes and BGP
    /// neighbour changes (see [`crate::frr_log`]).
    pub fn log_events(&self) -> Result<()> {
        self.configure(frr_log::EVENT_LOG_CONFIG)
    }

    /// When the router logged `event` for `peer`, the first time at or after
    /// `after`; needs [`Frr::log_events`].
    pub fn event_time(
        &self,
        event: RouterEvent,
        peer: IpAddr,
        after: SystemTime,
    ) -> Option<SystemTime> {
        let log = self.daemon(event.daemon())?.log();
        frr_log::first_event(&log, event, peer, after)
    }

    /// Applies a configuration (frr.conf syntax) with `vtysh --vty_socket DIR
    /// -f FILE`. Fails if vtysh reports an error for any line.
    pub fn configure(&self, config: &str) -> Result<()> {
        let path = self.next_config_path();
        write_frr_file(&path, config)?;
        self.apply(&path)
    }

    /// Applies a configuration file (copied into the router's directory first).
    pub fn configure_file(&self, file: &Path) -> Result<()> {
        self.configure(&read_config(file, "cannot read the FRR configuration")?)
    }

    fn next_config_path(&self) -> PathBuf {
        let mut n = 1;
        loop {
            let path = self.dir.join(format!("frr.{n}.conf"));
            if !path.exists() {
                return path;
            }
            n += 1;
        }
    }

    fn apply(&self, path: &Path) -> Result<()> {
        self.ensure_running()?;
        let dir = self.dir.display().to_string();
        let file = path.display().to_string();
        let args = ["--vty_socket", dir.as_str(), "-f", file.as_str()];
        let out = command::output("vtysh", &args)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // vtysh -f reports bad lines on stdout/stderr ("% Unknown command",
        // "line N: ..."), and exits non-zero for most of them.
        let complaint = stdout
            .lines()
            .chain(stderr.lines())
            .find(|l| l.starts_with('%') || l.starts_with("line "));
        if out.status.success() && complaint.is_none() {
            return Ok(());
        }
        Err(LabError::Command {
            command: command::render("vtysh", &args),
            status: out.status.to_string(),
            stderr: format!("{}\n{}", stdout.trim(), stderr.trim()),
        })
    }

    /// `vtysh --vty_socket DIR -c CMD`; returns the output.
    pub fn vtysh(&self, cmd: &str) -> Result<String> {
        let dir = self.dir.display().to_string();
        command::run("vtysh", &["--vty_socket", &dir, "-c", cmd])
    }

    /// `vtysh --vty_socket DIR -c CMD` for a command ending in `json`, parsed.
    pub fn vtysh_json(&self, cmd: &str) -> Result<Value> {
        let stdout = self.vtysh(cmd)?;
        command::json(format!("vtysh -c '{cmd}' in {}", self.ns.name()), stdout)
    }

    /// Waits until the BGP session with `peer` is Established
    /// (`show bgp summary json`, any address family).
    pub fn wait_bgp_established(&self, peer: &str, timeout: Duration) -> Result<()> {
        wait_until(
            timeout,
            Duration::from_millis(100),
            &format!("BGP session {} -> {peer} Established", self.ns.node()),
            || {
                let summary = self
                    .vtysh_json("show bgp summary json")
                    .map_err(|e| e.to_string())?;
                let state = bgp_peer_state(&summary, peer);
                if state.as_deref() == Some("Established") {
                    Ok(())
                } else {
                    Err(format!("state {state:?} in {summary}"))
                }
            },
        )
    }

    /// Waits until the BFD session with `peer` is up (`show bfd peers json`).
    pub fn wait_bfd_up(&self, peer: &str, timeout: Duration) -> Result<()> {
        wait_until(
            timeout,
            Duration::from_millis(100),
            &format!("BFD session {} -> {peer} up", self.ns.node()),
            || {
                let peers = self
                    .vtysh_json("show bfd peers json")
                    .map_err(|e| e.to_string())?;
                if bfd_peer_status(&peers, peer).as_deref() == Some("up") {
                    Ok(())
                } else {
                    Err(peers.to_string())
                }
            },
        )
    }

    /// Waits until `prefix` is in zebra's RIB and installed in the kernel
    /// (`show ip route PREFIX json`, or `show ipv6 route` for IPv6), and
    /// returns its entries.
    pub fn wait_route_installed(&self, prefix: &str, timeout: Duration) -> Result<Value> {
        let family = if prefix.contains(':') { "ipv6" } else { "ip" };
        let cmd = format!("show {family} route {prefix} json");
        wait_until(
            timeout,
            Duration::from_millis(100),
            &format!("{prefix} installed on {}", self.ns.node()),
            || {
                let routes = self.vtysh_json(&cmd).map_err(|e| e.to_string())?;
                let installed =
                    routes
                        .get(prefix)
                        .and_then(Value::as_array)
                        .is_some_and(|entries| {
                            entries.iter().any(|e| e["installed"] == Value::Bool(true))
                        });
                if installed {
                    Ok(routes)
                } else {
                    Err(routes.to_string())
                }
            },
        )
    }
}

impl RouterDriver for Frr {
    fn kind(&self) -> &'static str {
        "FRR"
    }

    fn namespace(&self) -> &Namespace {
        &self.ns
    }

    fn processes(&self) -> Vec<&Process> {
        self.daemons.iter().collect()
    }

    fn wait_established(&self, neighbor: &str, timeout: Duration) -> Result<()> {
        self.wait_bgp_established(neighbor, timeout)
    }

    /// Waits until zebra installed `prefix` (see
    /// [`Frr::wait_route_installed`]); returns its JSON.
    fn wait_route(&self, prefix: &str, timeout: Duration) -> Result<String> {
        self.wait_route_installed(prefix, timeout)
            .map(|routes| routes.to_string())
    }
}

/// The state of `peer` in `show bgp summary json` (any address family).
pub fn bgp_peer_state(summary: &Value, peer: &str) -> Option<String> {
    summary.as_object()?.values().find_map(|family| {
        family
            .get("peers")?
            .get(peer)?
            .get("state")?
            .as_str()
            .map(str::to_owned)
    })
}

/// The status (`up`, `down`, `init`) of `peer` in `show bfd peers json`.
pub fn bfd_peer_status(peers: &Value, peer: &str) -> Option<String> {
    peers
        .as_array()?
        .iter()
        .find(|p| p["peer"] == peer)?
        .get("status")?
        .as_str()
        .map(str::to_owned)
}

fn create_frr_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| LabError::Io {
        context: "cannot create the FRR directory",
        path: dir.to_owned(),
        source,
    })?;
    chown_frr(dir)
}

fn write_frr_file(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(|source| LabError::Io {
        context: "cannot write the FRR file",
        path: path.to_owned(),
        source,
    })?;
    chown_frr(path)
}

/// Gives a path to the `frr` user and group, which the daemons run as.
fn chown_frr(path: &Path) -> Result<()> {
    let io = |source: std::io::Error| LabError::Io {
        context: "cannot chown to frr:frr",
        path: path.to_owned(),
        source,
    };
    let user = nix::unistd::User::from_name("frr")
        .map_err(|e| io(e.into()))?
        .ok_or_else(|| io(std::io::Error::other("no user frr (is FRR installed?)")))?;
    let group = nix::unistd::Group::from_name("frr")
        .map_err(|e| io(e.into()))?
        .ok_or_else(|| io(std::io::Error::other("no group frr (is FRR installed?)")))?;
    std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(group.gid.as_raw())).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bgp_peer_state_finds_the_peer_in_any_address_family() {
        let summary = json!({
            "ipv4Unicast": {"peers": {"192.0.2.2": {"state": "Established"}}},
            "ipv6Unicast": {"peers": {"2001:db8::2": {"state": "Active"}}}
        });
        assert_eq!(
            bgp_peer_state(&summary, "192.0.2.2").as_deref(),
            Some("Established")
        );
        assert_eq!(
            bgp_peer_state(&summary, "2001:db8::2").as_deref(),
            Some("Active")
        );
        assert_eq!(bgp_peer_state(&summary, "192.0.2.9"), None);
    }

    #[test]
    fn bfd_peer_status_reads_the_status_of_the_named_peer() {
        let peers = json!([
            {"peer": "192.0.2.3", "status": "down"},
            {"peer": "192.0.2.2", "status": "up"}
        ]);
        assert_eq!(bfd_peer_status(&peers, "192.0.2.2").as_deref(), Some("up"));
        assert_eq!(
            bfd_peer_status(&peers, "192.0.2.3").as_deref(),
            Some("down")
        );
        assert_eq!(bfd_peer_status(&json!({}), "192.0.2.2"), None);
    }
}
