//! Shared pieces of the BFD runtime tests: two network namespaces joined by
//! a veth pair, runtimes started inside them, a peer in a child process
//! (so it can be frozen with SIGSTOP), and bounded waits.
//!
//! Every namespace and process is removed on drop, also when a test panics.
//! Replace with herald-testnet's lab once it lands on main.

#![allow(dead_code)]

use std::fs::File;
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use herald::bfd::metrics::Metrics;
use herald::bfd::runtime::{BfdRuntime, RuntimeOptions, SessionStatus};
use nix::sched::{CloneFlags, setns};
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

/// Whether lab tests can run here; outside CI a missing prerequisite skips
/// the test with a printed reason, in CI it fails.
pub fn lab_available(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    let ip_works = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if root && ip_works {
        return true;
    }
    let reason = if root { "`ip` is missing" } else { "not root" };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: cannot run in CI: {reason}");
    }
    eprintln!("{test}: skipped: {reason}");
    false
}

fn run(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Two namespaces, `a` and `b`, joined by veth-a <-> veth-b, with
/// 192.0.2.1/24 + 2001:db8:bfd::1/64 on a and .2 / ::2 (and 192.0.2.3) on b.
pub struct Lab {
    pub a: String,
    pub b: String,
}

impl Lab {
    pub fn new() -> Lab {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let lab = Lab {
            a: format!("hbfd-{pid}-{n}-a"),
            b: format!("hbfd-{pid}-{n}-b"),
        };
        run(&["netns", "add", &lab.a]);
        run(&["netns", "add", &lab.b]);
        run(&[
            "-n", &lab.a, "link", "add", A_LINK, "type", "veth", "peer", "name", B_LINK, "netns",
            &lab.b,
        ]);
        for (ns, link, v4, v6) in [(&lab.a, A_LINK, A4, A6), (&lab.b, B_LINK, B4, B6)] {
            run(&["-n", ns, "link", "set", "lo", "up"]);
            run(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", link]);
            run(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                link,
                "nodad",
            ]);
            run(&["-n", ns, "link", "set", link, "up"]);
        }
        run(&[
            "-n",
            &lab.b,
            "addr",
            "add",
            &format!("{B4_STRANGER}/24"),
            "dev",
            B_LINK,
        ]);
        lab
    }

    /// Cut the link from a's side.
    pub fn link_down(&self) {
        run(&["-n", &self.a, "link", "set", A_LINK, "down"]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Run `f` on a thread that has entered namespace `ns`; threads `f` spawns
/// (the BFD runtime's) stay in it.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = File::open(format!("/run/netns/{ns}")).expect("open the namespace");
                setns(&file, CloneFlags::CLONE_NEWNET).expect("enter the namespace");
                f()
            })
            .join()
            .expect("namespace thread")
    })
}

pub fn runtime_in(ns: &str, metrics: &Metrics) -> BfdRuntime {
    let metrics = metrics.clone();
    in_netns(ns, move || {
        BfdRuntime::spawn(RuntimeOptions::default(), metrics)
    })
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
/// test binary must have a test named `child_peer_process` that calls
/// [`child_peer_main`].
pub struct ChildPeer {
    child: Child,
}

impl ChildPeer {
    pub fn start(ns: &str, spec: &str) -> ChildPeer {
        let exe = std::env::current_exe().expect("test binary path");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args(["child_peer_process", "--exact", "--ignored", "--nocapture"])
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
