//! Shared pieces of the BFD runtime tests: two network namespaces joined by
//! a veth pair, runtimes started inside them, a peer in a child process
//! (so it can be frozen with SIGSTOP), and bounded waits.
//!
//! Namespaces come from herald-testnet's lab (removed on drop, also when a
//! test panics); the child peer is killed by PID on drop.

#![allow(dead_code)]

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herald::bfd::metrics::Metrics;
use herald::bfd::runtime::{BfdRuntime, RuntimeOptions, SessionStatus};
use herald_testnet::Namespace;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::watch;

pub const A4: &str = "192.0.2.1";
pub const B4: &str = "192.0.2.2";
/// A second address on B that no session knows.
pub const B4_STRANGER: &str = "192.0.2.3";
pub const A6: &str = "2001:db8:bfd::1";
pub const B6: &str = "2001:db8:bfd::2";
pub const A_LINK: &str = "veth-a";
pub const B_LINK: &str = "veth-b";

pub fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Two namespaces of a herald-testnet lab, `a` and `b`, joined by
/// veth-a <-> veth-b, with 192.0.2.1/24 + 2001:db8:bfd::1/64 on a and .2 /
/// ::2 (and 192.0.2.3) on b. The lab deletes them on drop.
pub struct Lab {
    /// Kernel names of the namespaces, for `ip -n` and setns.
    pub a: String,
    pub b: String,
    pub a_ns: Namespace,
    pub b_ns: Namespace,
    _lab: herald_testnet::Lab,
}

impl Lab {
    /// The lab, or `None` with the reason printed when this machine cannot
    /// run it (under CI=true that panics instead: herald-testnet's rule).
    pub fn start() -> Option<Lab> {
        let lab = match herald_testnet::Lab::start() {
            Ok(lab) => lab,
            Err(skip) => {
                eprintln!("{skip}");
                return None;
            }
        };
        let a_ns = lab.namespace("a").expect("namespace a");
        let b_ns = lab.namespace("b").expect("namespace b");
        lab.veth(&a_ns, A_LINK, &b_ns, B_LINK).expect("veth pair");
        for (ns, v4, v6) in [(&a_ns, A4, A6), (&b_ns, B4, B6)] {
            let link = if ns.node() == "a" { A_LINK } else { B_LINK };
            ns.add_address(link, &format!("{v4}/24"))
                .expect("ipv4 address");
            ns.add_address(link, &format!("{v6}/64"))
                .expect("ipv6 address");
        }
        b_ns.add_address(B_LINK, &format!("{B4_STRANGER}/24"))
            .expect("second ipv4 address");
        Some(Lab {
            a: a_ns.name().to_string(),
            b: b_ns.name().to_string(),
            a_ns,
            b_ns,
            _lab: lab,
        })
    }
}

/// A BFD runtime whose thread (and sockets) live in namespace `ns`.
pub fn runtime_in(ns: &Namespace, metrics: &Metrics) -> BfdRuntime {
    let metrics = metrics.clone();
    ns.run_in(move || BfdRuntime::spawn(RuntimeOptions::default(), metrics))
        .expect("enter the namespace")
        .expect("spawn the bfd runtime")
}

/// Poll `status` until `predicate` holds, at most `limit`; the status seen
/// last is returned either way.
pub fn wait_status(
    status: &watch::Receiver<SessionStatus>,
    limit: Duration,
    predicate: impl Fn(&SessionStatus) -> bool,
) -> Result<SessionStatus, SessionStatus> {
    let deadline = Instant::now() + limit;
    loop {
        let current = status.borrow().clone();
        if predicate(&current) {
            return Ok(current);
        }
        if Instant::now() >= deadline {
            return Err(current);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Poll `condition` until it holds, at most `limit`.
pub fn wait_until(limit: Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    condition()
}

/// The environment variable that turns a test binary into a BFD peer.
pub const CHILD_SPEC: &str = "HERALD_BFD_CHILD_SPEC";

/// A herald BFD runtime in its own process inside namespace `ns`, killed
/// by PID on drop. `spec` is `peer,local,interface,tx_ms,rx_ms,mult`; the
/// test binary must have one test whose name ends in `child_peer_process`
/// (in any module) that calls [`child_peer_main`].
pub struct ChildPeer {
    child: Child,
}

impl ChildPeer {
    pub fn start(ns: &str, spec: &str) -> ChildPeer {
        let exe = std::env::current_exe().expect("test binary path");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args(["child_peer_process", "--ignored", "--nocapture"])
            .env(CHILD_SPEC, spec)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the child peer");
        ChildPeer { child }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal the child peer");
    }
}

impl Drop for ChildPeer {
    fn drop(&mut self) {
        let _ = kill(self.pid(), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The body of the child peer: one session as `HERALD_BFD_CHILD_SPEC`
/// says, kept for at most two minutes.
pub fn child_peer_main() {
    let Ok(spec) = std::env::var(CHILD_SPEC) else {
        return;
    };
    let fields: Vec<&str> = spec.split(',').collect();
    let [peer, local, interface, tx, rx, mult] = fields[..] else {
        panic!("bad {CHILD_SPEC}: {spec}");
    };
    let ms = |v: &str| Duration::from_millis(v.parse().unwrap());
    let config = herald::bfd::SessionConfig {
        desired_min_tx: ms(tx),
        required_min_rx: ms(rx),
        detect_mult: mult.parse().unwrap(),
    };
    let runtime =
        BfdRuntime::spawn(RuntimeOptions::default(), Metrics::default()).expect("child runtime");
    let mut session = herald::bfd::runtime::SessionSpec::single_hop(ip(peer), config);
    session.local = Some(ip(local));
    session.interface = Some(interface.to_string());
    let _handle = runtime.add_session(session).expect("child session");
    std::thread::sleep(Duration::from_secs(120));
}
