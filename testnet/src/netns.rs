//! [`Namespace`]: one lab node's network namespace, and the `ip`/`sysctl`
//! operations tests perform in it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::command;
use crate::error::Result;
use crate::lab::Shared;
use crate::process::Process;

/// A network namespace created by a [`crate::Lab`]. Cheap to clone; the lab
/// deletes the namespace when it is dropped.
#[derive(Clone)]
pub struct Namespace {
    name: String,
    node: String,
    dir: PathBuf,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .finish()
    }
}

impl Namespace {
    pub(crate) fn new(name: String, node: String, dir: PathBuf, shared: Arc<Shared>) -> Self {
        Namespace {
            name,
            node,
            dir,
            shared,
        }
    }

    /// The kernel name (`hlab-<pid>-<n>-<node>`), for `ip -n` and `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node name the test gave (`r1`).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// This node's directory in the lab directory (configs, sockets, pid files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ip -n NS ARGS...`; returns stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        command::run("ip", &full)
    }

    /// `ip -n NS -j ARGS...`, parsed as JSON.
    pub fn ip_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut full = vec!["-n", self.name.as_str(), "-j"];
        full.extend_from_slice(args);
        let stdout = command::run("ip", &full)?;
        command::json(command::render("ip", &full), stdout)
    }

    /// `ip netns exec NS PROGRAM ARGS...` to completion; returns stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut full = vec!["netns", "exec", self.name.as_str(), program];
        full.extend_from_slice(args);
        command::run("ip", &full)
    }

    /// `ip netns exec NS PROGRAM ARGS...` with extra environment variables.
    pub fn exec_with_env(
        &self,
        env: &[(String, String)],
        program: &str,
        args: &[&str],
    ) -> Result<String> {
        let mut full = vec!["netns", "exec", self.name.as_str(), "env"];
        let assignments: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        full.extend(assignments.iter().map(String::as_str));
        full.push(program);
        full.extend_from_slice(args);
        command::run("ip", &full)
    }

    /// Starts a long-running process in this namespace, tracked by PID, with
    /// its output in the lab's log directory. `name` labels it in logs.
    pub fn spawn(&self, name: &str, program: &str, args: &[&str]) -> Result<Process> {
        Process::spawn(&self.shared, &self.name, name, program, args)
    }

    /// `sysctl -w KEY=VALUE` inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec("sysctl", &["-q", "-w", &format!("{key}={value}")])
            .map(drop)
    }

    /// Makes the namespace a router: IPv4 and IPv6 forwarding on, and the L4
    /// multipath hash (`fib_multipath_hash_policy=1`) for both families, so
    /// new connections spread over ECMP next hops.
    pub fn enable_routing(&self) -> Result<()> {
        self.sysctl("net.ipv4.ip_forward", "1")?;
        self.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        self.sysctl("net.ipv4.fib_multipath_hash_policy", "1")?;
        self.sysctl("net.ipv6.fib_multipath_hash_policy", "1")
    }

    /// `ip addr add CIDR dev DEV`, with `nodad` for IPv6 so the address is
    /// usable at once.
    pub fn add_address(&self, dev: &str, cidr: &str) -> Result<()> {
        let mut args = vec!["addr", "add", cidr, "dev", dev];
        if cidr.contains(':') {
            args.push("nodad");
        }
        self.ip(&args).map(drop)
    }

    /// `ip link set DEV up`.
    pub fn link_up(&self, dev: &str) -> Result<()> {
        self.ip(&["link", "set", dev, "up"]).map(drop)
    }

    /// `ip link set DEV down`.
    pub fn link_down(&self, dev: &str) -> Result<()> {
        self.ip(&["link", "set", dev, "down"]).map(drop)
    }

    /// `ip link add NAME type bridge` and up.
    pub fn add_bridge(&self, name: &str) -> Result<()> {
        crate::lab::check_ifname(name)?;
        self.ip(&["link", "add", name, "type", "bridge"])?;
        self.link_up(name)
    }

    /// `ip link set PORT master BRIDGE`.
    pub fn attach(&self, port: &str, bridge: &str) -> Result<()> {
        self.ip(&["link", "set", port, "master", bridge]).map(drop)
    }

    /// `ip link set PORT nomaster`: the port leaves its bridge but both veth
    /// ends keep carrier, so nothing is signalled (a silent switch failure).
    pub fn detach(&self, port: &str) -> Result<()> {
        self.ip(&["link", "set", port, "nomaster"]).map(drop)
    }
}
