//! Figure program (prints, asserts nothing about time): CPU used by a herald
//! BFD runtime holding 64 sessions at 20 ms x 3.
//!
//! Two network namespaces joined by a veth pair; the measured runtime runs
//! alone in a child process (this binary re-executed under `ip netns exec`)
//! with 64 single-hop sessions, one per local address, to a peer runtime in
//! this process. After all 128 sessions are Up, the child's CPU time
//! (utime + stime from /proc/PID/stat) over the window gives the figure.
//!
//! ```text
//! cargo bench --bench bfd_sessions                     # 64 sessions, 20 s
//! HERALD_BFD_BENCH_SECS=60 HERALD_BFD_BENCH_STRESS=1 cargo bench --bench bfd_sessions
//! ```
//! `HERALD_BFD_BENCH_STRESS=1` runs `stress-ng --cpu 2` during the window
//! and reports how many sessions flapped (the target is none).
//! Needs what herald-testnet's lab needs; prints why and exits otherwise.

#[path = "../tests/bfd_support/mod.rs"]
mod bfd_support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bfd_support::*;
use herald::bfd::SessionConfig;
use herald::bfd::metrics::Metrics;
use herald::bfd::packet::State;
use herald::bfd::runtime::{BfdRuntime, RuntimeOptions, SessionSpec};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const SESSIONS: u8 = 64;
const CHILD: &str = "HERALD_BFD_BENCH_CHILD";

fn config() -> SessionConfig {
    SessionConfig {
        desired_min_tx: Duration::from_millis(20),
        required_min_rx: Duration::from_millis(20),
        detect_mult: 3,
    }
}

/// 192.0.2.100 + i: the measured side's local addresses.
fn measured_address(i: u8) -> String {
    format!("192.0.2.{}", 100 + u16::from(i))
}

/// The measured side: 64 sessions towards the peer runtime, until killed.
fn child_main() {
    let runtime =
        BfdRuntime::spawn(RuntimeOptions::default(), Metrics::default()).expect("child runtime");
    let mut handles = Vec::new();
    for i in 0..SESSIONS {
        let mut spec = SessionSpec::single_hop(ip(A4), config());
        spec.local = Some(ip(&measured_address(i)));
        spec.interface = Some(B_LINK.to_string());
        handles.push(runtime.add_session(spec).expect("child session"));
    }
    // Bounded: the parent kills this process long before.
    std::thread::sleep(Duration::from_secs(600));
}

struct Killed(Child);

impl Drop for Killed {
    /// SIGTERM first (stress-ng then stops its workers), SIGKILL after 2 s.
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.0.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = kill(pid, Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the parenthesised command: state is field 3, utime 14,
    // stime 15.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_second() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn main() {
    if std::env::var(CHILD).is_ok() {
        child_main();
        return;
    }
    let window = Duration::from_secs(
        std::env::var("HERALD_BFD_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
    );
    let stress = std::env::var("HERALD_BFD_BENCH_STRESS").as_deref() == Ok("1");
    let Some(lab) = Lab::start() else {
        println!("bfd_sessions: skipped (see above)");
        return;
    };
    for i in 0..SESSIONS {
        lab.b_ns
            .add_address(B_LINK, &format!("{}/24", measured_address(i)))
            .expect("ip addr add");
    }
    let metrics = Metrics::default();
    let peer = runtime_in(&lab.a_ns, &metrics);
    let mut handles = Vec::new();
    for i in 0..SESSIONS {
        let mut spec = SessionSpec::single_hop(ip(&measured_address(i)), config());
        spec.local = Some(ip(A4));
        spec.interface = Some(A_LINK.to_string());
        handles.push(peer.add_session(spec).expect("peer session"));
    }
    let exe = std::env::current_exe().unwrap();
    let child = Killed(
        Command::new("ip")
            .args(["netns", "exec", &lab.b])
            .arg(exe)
            .env(CHILD, "1")
            .stdin(Stdio::null())
            .spawn()
            .expect("start the measured runtime"),
    );
    let started = Instant::now();
    for (i, handle) in handles.iter().enumerate() {
        wait_status(&handle.status, Duration::from_secs(30), |s| {
            s.state == State::Up && !s.polling
        })
        .unwrap_or_else(|s| panic!("session {i} never came Up: {s:?}"));
    }
    println!(
        "bfd_sessions: {SESSIONS} sessions at 20 ms x 3 Up after {:?}",
        started.elapsed()
    );
    let transitions_before: u64 = handles.iter().map(|h| h.status.borrow().transitions).sum();
    let stressor = stress.then(|| {
        Killed(
            Command::new("stress-ng")
                .args(["--cpu", "2", "--timeout"])
                .arg(format!("{}s", window.as_secs() + 5))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start stress-ng"),
        )
    });
    let pid = child.0.id();
    let ticks_before = cpu_ticks(pid);
    let measured_from = Instant::now();
    std::thread::sleep(window);
    let ticks = cpu_ticks(pid) - ticks_before;
    let elapsed = measured_from.elapsed();
    drop(stressor);
    let transitions_after: u64 = handles.iter().map(|h| h.status.borrow().transitions).sum();
    let cpu_seconds = ticks as f64 / clock_ticks_per_second() as f64;
    let percent = 100.0 * cpu_seconds / elapsed.as_secs_f64();
    println!(
        "bfd_sessions: measured runtime used {cpu_seconds:.2} s CPU in {:.1} s = {percent:.2} % of one core \
         ({SESSIONS} sessions at 20 ms: about 3,600 packets/s sent and as many received){}",
        elapsed.as_secs_f64(),
        if stress {
            ", under stress-ng --cpu 2"
        } else {
            ""
        }
    );
    let largest_gap = (0..SESSIONS)
        .map(|i| {
            let labels = herald::bfd::metrics::SessionLabels {
                peer: measured_address(i),
                hop: "single_hop".to_string(),
            };
            metrics.max_rx_gap.get_or_create(&labels).get()
        })
        .fold(0.0, f64::max);
    println!(
        "bfd_sessions: session transitions during the window: {} (peer side); \
         largest gap between packets from the measured runtime: {:.1} ms (interval 20 ms, detection 60 ms)",
        transitions_after - transitions_before,
        largest_gap * 1000.0
    );
}
