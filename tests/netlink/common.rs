//! A minimal network-namespace guard for the netlink tests (the full lab
//! harness lives in testnet/; these tests need only one namespace each).
//!
//! Every namespace gets a unique name (pid + counter) and is deleted by a
//! Drop guard on every path, panics included. Every wait is bounded.

#![allow(dead_code)]

use std::future::Future;
use std::net::IpAddr;
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use herald::netlink::{AddressEvent, AddressMonitor};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// An address the test adds last, so that the monitor knows it has seen
/// everything before it.
pub const MARKER: &str = "198.18.255.254";

/// A network namespace made by the test, deleted on drop.
pub struct Netns {
    pub name: String,
}

/// Can this process run lab tests? When `CI=true` a missing prerequisite is a
/// failure; elsewhere the test is skipped with the printed reason.
fn lab_unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("iproute2 (ip) is not installed".into());
    }
    None
}

impl Netns {
    /// Create a namespace with `lo` up, or `None` (skip) when the lab cannot
    /// run outside CI.
    pub fn create(test: &str) -> Option<Netns> {
        if let Some(reason) = lab_unavailable() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{test}: lab test cannot run: {reason}");
            }
            eprintln!("{test}: skipped: {reason}");
            return None;
        }
        let name = format!(
            "hd-nl-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        Some(ns)
    }

    /// `ip -n NS ARGS...`, which must succeed; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// `ip -n NS ARGS...`, whatever it answers.
    pub fn ip_output(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("run ip")
    }

    /// `ip netns exec NS PROGRAM ARGS...`, started.
    pub fn spawn(&self, program: &str, args: &[&str]) -> ChildGuard {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start a process in the namespace");
        ChildGuard(Some(child))
    }

    /// The addresses on `dev`: (address, prefix length, label).
    pub fn addresses(&self, dev: &str) -> Vec<(IpAddr, u8, Option<String>)> {
        let json = self.ip(&["-j", "addr", "show", "dev", dev]);
        let links: serde_json::Value = serde_json::from_str(&json).expect("ip -j output");
        let mut out = Vec::new();
        for link in links.as_array().into_iter().flatten() {
            for a in link["addr_info"].as_array().into_iter().flatten() {
                let address: IpAddr = a["local"]
                    .as_str()
                    .expect("local")
                    .parse()
                    .expect("address");
                let len = a["prefixlen"].as_u64().expect("prefixlen") as u8;
                out.push((address, len, a["label"].as_str().map(str::to_string)));
            }
        }
        out
    }

    /// Is `address` on `dev`?
    pub fn has(&self, dev: &str, address: &str) -> bool {
        let address: IpAddr = address.parse().unwrap();
        self.addresses(dev).iter().any(|(a, _, _)| *a == address)
    }

    /// Run `f` on a thread inside the namespace, on a current-thread tokio
    /// runtime of its own, and return its result (panics propagate).
    pub fn run<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            enter(&path);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(f())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Start recording address notifications inside the namespace. The
    /// subscription is in place when this returns.
    pub fn record(&self) -> Recording {
        let path = format!("/run/netns/{}", self.name);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            enter(&path);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut monitor = AddressMonitor::subscribe().expect("subscribe");
                ready_tx.send(()).unwrap();
                let marker: IpAddr = MARKER.parse().unwrap();
                let mut events = Vec::new();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                loop {
                    match tokio::time::timeout_at(deadline, monitor.next()).await {
                        Ok(Some(event)) => {
                            let is_marker = matches!(&event, AddressEvent::NewAddress { .. })
                                && event.address().map(|(a, _)| a) == Some(marker);
                            events.push(event);
                            if is_marker {
                                return events;
                            }
                        }
                        Ok(None) => panic!("monitor socket closed"),
                        Err(_) => panic!("the marker address never showed up in the recording"),
                    }
                }
            })
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("monitor subscribed");
        Recording { thread }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Notifications recorded inside a namespace.
pub struct Recording {
    thread: std::thread::JoinHandle<Vec<AddressEvent>>,
}

impl Recording {
    /// Add the marker address and return everything recorded before it.
    pub fn finish(self, ns: &Netns) -> Vec<AddressEvent> {
        ns.ip(&["addr", "add", &format!("{MARKER}/32"), "dev", "lo"]);
        self.thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// Deletions of `address` among the events.
pub fn deletions(events: &[AddressEvent], address: &str) -> usize {
    let address: IpAddr = address.parse().unwrap();
    events
        .iter()
        .filter(|e| {
            matches!(e, AddressEvent::DelAddress { .. })
                && e.address().map(|(a, _)| a) == Some(address)
        })
        .count()
}

/// Additions (and changes) of `address` among the events.
pub fn additions(events: &[AddressEvent], address: &str) -> usize {
    let address: IpAddr = address.parse().unwrap();
    events
        .iter()
        .filter(|e| {
            matches!(e, AddressEvent::NewAddress { .. })
                && e.address().map(|(a, _)| a) == Some(address)
        })
        .count()
}

/// A child process killed (by its pid) when dropped.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child")
    }

    /// Read stdout lines until one starts with `prefix`; bounded.
    pub fn wait_for_line(&mut self, prefix: &str, limit: Duration) -> String {
        use std::io::BufRead;
        let stdout = self.child().stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let prefix_owned = prefix.to_string();
        std::thread::spawn(move || {
            // Keep reading to the end, so the child never writes to a
            // closed pipe.
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with(&prefix_owned) {
                    let _ = tx.send(line);
                }
            }
        });
        rx.recv_timeout(limit)
            .unwrap_or_else(|_| panic!("no line starting with {prefix:?} within {limit:?}"))
    }

    /// Send `signal` and wait (bounded) for the exit.
    pub fn signal_and_wait(
        &mut self,
        signal: nix::sys::signal::Signal,
        limit: Duration,
    ) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child().id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal the child");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child().try_wait().expect("wait") {
                self.0 = None;
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "process did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn enter(path: &str) {
    let file = std::fs::File::open(path).expect("open the namespace");
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("enter the namespace");
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("run a command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}
