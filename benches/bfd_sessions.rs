//! Figure program (prints, asserts nothing about time): CPU used by a herald
//! BFD runtime holding 64 sessions at 20 ms x 3.
//!
//! Two network namespaces joined by a veth pair; the measured runtime runs
//! alone in a child process (this binary re-executed under `ip netns exec`)
//! with 64 single-hop sessions, one per local address, to a peer runtime in
//! this process. After all 128 sessions are Up, the child's CPU time
//! (utime + stime from /proc/PID/stat) over each round gives the figure,
//! with the voluntary context switches of its threads (its wake-ups); the
//! median over the rounds is the figure to quote on a shared machine.
//!
//! ```text
//! cargo bench --bench bfd_sessions                     # 5 rounds of 10 s
//! HERALD_BFD_BENCH_ROUNDS=3 HERALD_BFD_BENCH_SECS=20 HERALD_BFD_BENCH_STRESS=1 cargo bench --bench bfd_sessions
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

/// What the kernel counted for a process so far: CPU time in clock ticks
/// (user, system) and voluntary context switches (the wake-ups) summed over
/// its threads.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    user_ticks: u64,
    system_ticks: u64,
    wakeups: u64,
}

impl Usage {
    fn of(pid: u32) -> Usage {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
        // Fields after the parenthesised command: state is field 3, utime
        // 14, stime 15 (whole process).
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let mut usage = Usage {
            user_ticks: fields[11].parse().unwrap(),
            system_ticks: fields[12].parse().unwrap(),
            wakeups: 0,
        };
        // /proc/PID/status counts the main thread only; sum every thread.
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("read tasks") {
            let path = task.expect("task entry").path().join("status");
            let Ok(status) = std::fs::read_to_string(path) else {
                continue;
            };
            usage.wakeups += status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
        usage
    }

    fn since(self, before: Usage) -> Usage {
        Usage {
            user_ticks: self.user_ticks - before.user_ticks,
            system_ticks: self.system_ticks - before.system_ticks,
            wakeups: self.wakeups - before.wakeups,
        }
    }
}

fn clock_ticks_per_second() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// (minimum, median, maximum) of a non-empty list.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[0],
        values[values.len() / 2],
        values[values.len() - 1],
    )
}

fn main() {
    if std::env::var(CHILD).is_ok() {
        child_main();
        return;
    }
    let env_number = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let window = Duration::from_secs(env_number("HERALD_BFD_BENCH_SECS", 10));
    let rounds = env_number("HERALD_BFD_BENCH_ROUNDS", 5).max(1) as usize;
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
    // Forget the start-up transitions; what arrives from here on is a flap.
    for handle in &mut handles {
        while handle.events.try_recv().is_ok() {}
    }
    let total = window * rounds as u32;
    let stressor = stress.then(|| {
        Killed(
            Command::new("stress-ng")
                .args(["--cpu", "2", "--timeout"])
                .arg(format!("{}s", total.as_secs() + 5))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start stress-ng"),
        )
    });
    let pid = child.0.id();
    println!("bfd_sessions: measured runtime is pid {pid} (attach perf here)");
    let ticks_per_second = clock_ticks_per_second() as f64;
    let (mut cpu, mut user, mut wakeups, mut packets) = (vec![], vec![], vec![], vec![]);
    let received = || -> u64 {
        (0..SESSIONS)
            .map(|i| {
                let labels = herald::bfd::metrics::SessionLabels {
                    peer: measured_address(i),
                    hop: "single_hop".to_string(),
                };
                metrics.received.get_or_create(&labels).get()
            })
            .sum()
    };
    for round in 1..=rounds {
        let before = Usage::of(pid);
        let received_before = received();
        let measured_from = Instant::now();
        std::thread::sleep(window);
        let usage = Usage::of(pid).since(before);
        let seconds = measured_from.elapsed().as_secs_f64();
        let percent = |ticks: u64| 100.0 * ticks as f64 / ticks_per_second / seconds;
        let round_cpu = percent(usage.user_ticks + usage.system_ticks);
        let round_user = percent(usage.user_ticks);
        let round_wakeups = usage.wakeups as f64 / seconds;
        let round_packets = (received() - received_before) as f64 / seconds;
        println!(
            "bfd_sessions: round {round}/{rounds}: {round_cpu:.2} % of one core \
             (user {round_user:.2} %, system {:.2} %), {round_wakeups:.0} wake-ups/s, \
             {round_packets:.0} packets/s sent by the measured runtime",
            round_cpu - round_user
        );
        cpu.push(round_cpu);
        user.push(round_user);
        wakeups.push(round_wakeups);
        packets.push(round_packets);
    }
    drop(stressor);
    let transitions_after: u64 = handles.iter().map(|h| h.status.borrow().transitions).sum();
    let mut flaps = std::collections::BTreeMap::<String, u32>::new();
    for handle in &mut handles {
        while let Ok(event) = handle.events.try_recv() {
            let change = event.change;
            *flaps
                .entry(format!(
                    "{} -> {} ({})",
                    change.old, change.new, change.diag
                ))
                .or_default() += 1;
        }
    }
    if !flaps.is_empty() {
        println!("bfd_sessions: transitions during the rounds, by kind: {flaps:?}");
    }
    let (cpu_min, cpu_median, cpu_max) = spread(cpu);
    let (_, user_median, _) = spread(user);
    let (_, wakeups_median, _) = spread(wakeups);
    let (_, packets_median, _) = spread(packets);
    println!(
        "bfd_sessions: {SESSIONS} sessions at 20 ms x 3, {rounds} rounds of {} s{}: CPU median \
         {cpu_median:.2} % of one core (min {cpu_min:.2}, max {cpu_max:.2}; user median \
         {user_median:.2} %), {wakeups_median:.0} wake-ups/s, {packets_median:.0} packets/s sent \
         (as many received); load average at the end: {}",
        window.as_secs(),
        if stress {
            ", under stress-ng --cpu 2"
        } else {
            ""
        },
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
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
        "bfd_sessions: session transitions during the rounds: {} (peer side); \
         largest gap between packets from the measured runtime: {:.1} ms (interval 20 ms, detection 60 ms)",
        transitions_after - transitions_before,
        largest_gap * 1000.0
    );
}
