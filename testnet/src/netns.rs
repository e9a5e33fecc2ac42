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
        Process::spawn(&self.shared, &self.name, name, program, args, &[])
    }

    /// [`Namespace::spawn`] with extra environment variables (`KUBECONFIG`,
    /// `RUST_LOG`) for the program.
    pub fn spawn_with_env(
        &self,
        name: &str,
        program: &str,
        args: &[&str],
        env: &[(String, String)],
    ) -> Result<Process> {
        Process::spawn(&self.shared, &self.name, name, program, args, env)
    }

    /// Runs `f` on a new OS thread that has entered this namespace
    /// (`setns(2)` on that thread only; the rest of the test process stays
    /// where it is). Sockets `f` opens, and threads it spawns (a tokio
    /// runtime built inside `f`, say), live in the namespace: this is how a
    /// test runs herald's own code as a lab node, in process.
    pub fn spawn_thread<T, F>(&self, f: F) -> std::thread::JoinHandle<Result<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let path = Path::new("/run/netns").join(&self.name);
        std::thread::spawn(move || {
            let io = |source| crate::LabError::Io {
                context: "cannot enter the namespace",
                path: path.clone(),
                source,
            };
            let file = std::fs::File::open(&path).map_err(io)?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| io(e.into()))?;
            Ok(f())
        })
    }

    /// [`Namespace::spawn_thread`] and wait for the result. A panic in `f`
    /// is resumed on the calling thread.
    pub fn run_in<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.spawn_thread(f).join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
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

    /// Loads an nftables script into this namespace (`nft -f FILE`), for
    /// faults links and signals cannot make: silent loss of one peer's
    /// packets, TTL rewrites. Remove it with a script such as
    /// `delete table inet lab`.
    pub fn nft(&self, script: &str) -> Result<()> {
        let mut n = 1;
        let path = loop {
            let candidate = self.dir.join(format!("nft-{n}.nft"));
            if !candidate.exists() {
                break candidate;
            }
            n += 1;
        };
        std::fs::write(&path, script).map_err(|source| crate::LabError::Io {
            context: "cannot write the nftables script",
            path: path.clone(),
            source,
        })?;
        self.exec("nft", &["-f", &path.display().to_string()])
            .map(drop)
    }

    /// `ip link set PORT nomaster`: the port leaves its bridge but both veth
    /// ends keep carrier, so nothing is signalled (a silent switch failure).
    pub fn detach(&self, port: &str) -> Result<()> {
        self.ip(&["link", "set", port, "nomaster"]).map(drop)
    }
}
