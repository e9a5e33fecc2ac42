//! GoBGP inside a lab namespace: `gobgpd -f FILE -p --api-hosts
//! 127.0.0.1:PORT`, driven with `gobgp -p PORT` run in the same namespace
//! (the API listens on that namespace's loopback).
//!
//! GoBGP's default origin is INCOMPLETE, which loses best-path selection
//! against IGP routes from other speakers and breaks ECMP, so
//! [`Gobgp::add_route`] always says `origin igp`. GoBGP 3.10 has no BFD.

use std::path::Path;
use std::time::Duration;

use crate::error::Result;
use crate::netns::Namespace;
use crate::process::Process;
use crate::router::{RouterDriver, read_config, wait_answering, write_config};
use crate::wait::wait_until;

/// The gRPC API port the lab uses unless told otherwise (each namespace has
/// its own loopback, so every node can use the same port).
pub const DEFAULT_API_PORT: u16 = 50051;

/// One GoBGP daemon in a lab namespace.
#[derive(Debug)]
pub struct Gobgp {
    ns: Namespace,
    port: u16,
    process: Process,
}

impl Gobgp {
    /// Writes `config` (TOML) to the node's directory, starts gobgpd with its
    /// API on `127.0.0.1:api_port`, and waits until `gobgp global` answers.
    pub fn start(ns: &Namespace, config: &str, api_port: u16) -> Result<Gobgp> {
        let path = write_config(
            ns,
            "gobgp",
            "gobgpd.conf",
            config,
            "cannot write the GoBGP configuration",
        )?;
        let file = path.display().to_string();
        let api = format!("127.0.0.1:{api_port}");
        let process = ns.spawn(
            "gobgpd",
            "gobgpd",
            &[
                "-f",
                &file,
                "-t",
                "toml",
                "-p",
                "--pprof-disable",
                "--api-hosts",
                &api,
            ],
        )?;
        let gobgp = Gobgp {
            ns: ns.clone(),
            port: api_port,
            process,
        };
        wait_answering(
            &gobgp.process,
            Duration::from_secs(10),
            Duration::from_millis(50),
            &format!("gobgpd in {} to answer on {api}", ns.name()),
            || gobgp.gobgp(&["global"]).map_err(|e| e.to_string()),
        )?;
        Ok(gobgp)
    }

    /// Starts gobgpd with the TOML configuration in `file`.
    pub fn start_with_file(ns: &Namespace, file: &Path, api_port: u16) -> Result<Gobgp> {
        let config = read_config(file, "cannot read the GoBGP configuration")?;
        Gobgp::start(ns, &config, api_port)
    }

    /// The namespace gobgpd runs in.
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// The daemon's process, for signals and its log.
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// `gobgp -p PORT ARGS...` inside the namespace; returns the output.
    pub fn gobgp(&self, args: &[&str]) -> Result<String> {
        let port = self.port.to_string();
        let mut full = vec!["-p", port.as_str()];
        full.extend_from_slice(args);
        self.ns.exec("gobgp", &full)
    }

    /// `gobgp global rib add -a ipv4|ipv6 PREFIX origin igp`.
    pub fn add_route(&self, prefix: &str) -> Result<()> {
        let family = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        self.gobgp(&[
            "global", "rib", "add", "-a", family, prefix, "origin", "igp",
        ])
        .map(drop)
    }

    /// `gobgp global rib del -a ipv4|ipv6 PREFIX`.
    pub fn del_route(&self, prefix: &str) -> Result<()> {
        let family = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        self.gobgp(&["global", "rib", "del", "-a", family, prefix])
            .map(drop)
    }

    /// `gobgp neighbor`: the session table.
    pub fn neighbors(&self) -> Result<String> {
        self.gobgp(&["neighbor"])
    }

    /// Waits until `gobgp neighbor ADDR` reports the session established.
    pub fn wait_established(&self, neighbor: &str, timeout: Duration) -> Result<()> {
        wait_until(
            timeout,
            Duration::from_millis(100),
            &format!("GoBGP session {} -> {neighbor} established", self.ns.node()),
            || {
                let out = self
                    .gobgp(&["neighbor", neighbor])
                    .map_err(|e| e.to_string())?;
                if out.to_ascii_lowercase().contains("bgp state = established") {
                    Ok(())
                } else {
                    Err(out)
                }
            },
        )
    }
}

impl RouterDriver for Gobgp {
    fn kind(&self) -> &'static str {
        "GoBGP"
    }

    fn namespace(&self) -> &Namespace {
        &self.ns
    }

    fn processes(&self) -> Vec<&Process> {
        vec![&self.process]
    }

    fn wait_established(&self, neighbor: &str, timeout: Duration) -> Result<()> {
        Gobgp::wait_established(self, neighbor, timeout)
    }

    /// `gobgp global rib -a ipv4|ipv6 PREFIX` until it lists the prefix.
    fn wait_route(&self, prefix: &str, timeout: Duration) -> Result<String> {
        let family = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        wait_until(
            timeout,
            Duration::from_millis(100),
            &format!("{prefix} in GoBGP's RIB on {}", self.ns.node()),
            || {
                let out = self
                    .gobgp(&["global", "rib", "-a", family, prefix])
                    .map_err(|e| e.to_string())?;
                if out.contains(prefix) {
                    Ok(out)
                } else {
                    Err(out)
                }
            },
        )
    }
}
