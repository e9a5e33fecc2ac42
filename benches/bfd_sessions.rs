//! Figure program (prints, asserts nothing about time): CPU used by a herald
//! BFD runtime holding 64 sessions at 20 ms x 3.
//!
//! Two network namespaces joined by a veth pair; the measured runtime runs
//! alone in a child process (this binary re-executed under `ip netns exec`)
//! with 64 single-hop sessions, one per local address, to a peer runtime in
//! this process, which does the same work in the other direction and is
//! printed as the reference. After all 128 sessions are Up, each round
//! reads the CPU the kernel counted for the measured process, for the peer's
//! `herald-bfd` thread and for the veth's NAPI threads; the median over the
//! rounds is the figure to quote on a shared machine.
//!
//! # Whose CPU it is: the veth's receive path
//!
//! A veth in its default mode queues a sent packet on the receiving
//! namespace's backlog, and the kernel processes it (IP, UDP, the receiving
//! socket's wake-up) in the softirq that runs when the sender's `sendto`
//! re-enables bottom halves: in the sender's context, charged to the sender
//! (this kernel has no IRQ time accounting). So each runtime pays for the
//! other's receive path, which it does not on a real NIC, where the
//! receiving host's interrupt and NAPI poll do that work. Each round is
//! therefore measured in both modes, one after the other:
//!
//! - `veth backlog`: the veth default, the method of the earlier figures;
//! - `threaded NAPI`: GRO on at both ends (`ethtool -K DEV gro on` puts a
//!   veth in NAPI mode; TSO off, as the veth hands a socket's packet to
//!   NAPI only then) and `/sys/class/net/DEV/threaded` set to 1, so each
//!   side's receive processing runs in its own kernel thread `napi/DEV-N`,
//!   as a NIC's does; the sender pays for its send down to the veth's ring
//!   and the wake-up of that thread. This is herald's own cost, the figure
//!   to quote. The NAPI threads' CPU is printed beside it.
//!
//! CPU is read two ways: the tick-sampled utime + stime of /proc/PID/stat
//! (the earlier figures' method, 10 ms resolution) and the scheduler's exact
//! run time from /proc/PID/task/TID/schedstat. Wake-ups are the voluntary
//! context switches of the measured process's threads, preemptions the
//! involuntary ones: in the NAPI mode each send wakes the receiver's NAPI
//! thread, which often takes the CPU from the sender at once (on a 2-core
//! machine), a switch a NIC does not cause; so that mode's figure is an
//! upper bound of herald's own cost.
//!
//! ```text
//! cargo bench --bench bfd_sessions                     # 5 rounds of 10 s per mode
//! HERALD_BFD_BENCH_ROUNDS=3 HERALD_BFD_BENCH_SECS=20 HERALD_BFD_BENCH_STRESS=1 cargo bench --bench bfd_sessions
//! ```
//! `HERALD_BFD_BENCH_STRESS=1` runs `stress-ng --cpu 2` during the window
//! and reports how many sessions flapped (the target is none).
//! `HERALD_BFD_BENCH_PIN=1` models two hosts on a 2-core machine: the
//! measured runtime and its side's NAPI thread (`veth-b`, its receive
//! path) on CPU 0, the peer runtime and its NAPI thread (`veth-a`) on CPU 1,
//! so a send wakes the receiver's NAPI thread on the other CPU instead of
//! being preempted by it (`taskset`). Without
//! `ethtool` only the `veth backlog` mode runs, and the bench says so.
//! Needs what herald-testnet's lab needs; prints why and exits otherwise.

#[path = "../tests/bfd_support/mod.rs"]
mod bfd_support;

use std::collections::BTreeSet;
use std::path::Path;
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
/// Time given to a change of the veth's mode before a round is measured.
const SETTLE: Duration = Duration::from_secs(1);

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

/// What the kernel counted for a set of threads so far: CPU time in clock
/// ticks (user + system, sampled), exact run time, and voluntary context
/// switches (the wake-ups).
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    ticks: u64,
    runtime: Duration,
    wakeups: u64,
    /// Involuntary context switches: another thread took the CPU.
    preemptions: u64,
}

impl Usage {
    /// One thread, from its /proc/PID/task/TID directory; zero if it is gone.
    fn of_task(task: &Path) -> Usage {
        let mut usage = Usage::default();
        if let Ok(stat) = std::fs::read_to_string(task.join("stat")) {
            // Fields after the parenthesised command: state is field 3,
            // utime 14, stime 15.
            let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
            let fields: Vec<&str> = after.split_whitespace().collect();
            let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            usage.ticks = field(11).unwrap_or(0) + field(12).unwrap_or(0);
        }
        if let Ok(schedstat) = std::fs::read_to_string(task.join("schedstat")) {
            let nanos = schedstat
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok());
            usage.runtime = Duration::from_nanos(nanos.unwrap_or(0));
        }
        if let Ok(status) = std::fs::read_to_string(task.join("status")) {
            let count = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0)
            };
            usage.wakeups = count("voluntary_ctxt_switches:");
            usage.preemptions = count("nonvoluntary_ctxt_switches:");
        }
        usage
    }

    /// The threads of process `pid` whose command `keep` accepts.
    fn of_process(pid: u32, keep: impl Fn(&str) -> bool) -> Usage {
        let mut total = Usage::default();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return total;
        };
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if keep(comm.trim()) {
                total = total.plus(Usage::of_task(&task.path()));
            }
        }
        total
    }

    /// Kernel threads, by PID.
    fn of_kernel_threads(pids: &[u32]) -> Usage {
        pids.iter().fold(Usage::default(), |total, pid| {
            total.plus(Usage::of_task(Path::new(&format!("/proc/{pid}"))))
        })
    }

    fn plus(self, other: Usage) -> Usage {
        Usage {
            ticks: self.ticks + other.ticks,
            runtime: self.runtime + other.runtime,
            wakeups: self.wakeups + other.wakeups,
            preemptions: self.preemptions + other.preemptions,
        }
    }

    fn since(self, before: Usage) -> Usage {
        Usage {
            ticks: self.ticks.saturating_sub(before.ticks),
            runtime: self.runtime.saturating_sub(before.runtime),
            wakeups: self.wakeups.saturating_sub(before.wakeups),
            preemptions: self.preemptions.saturating_sub(before.preemptions),
        }
    }
}

/// How the veth pair delivers a packet to the other namespace (see the
/// module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivery {
    Backlog,
    ThreadedNapi,
}

impl Delivery {
    fn name(self) -> &'static str {
        match self {
            Delivery::Backlog => "veth backlog",
            Delivery::ThreadedNapi => "threaded NAPI",
        }
    }
}

/// Put both ends of the lab's veth pair in `delivery` mode.
fn set_delivery(lab: &Lab, delivery: Delivery) -> Result<(), String> {
    for (ns, link) in [(&lab.a_ns, A_LINK), (&lab.b_ns, B_LINK)] {
        let threaded = format!("/sys/class/net/{link}/threaded");
        let result = match delivery {
            Delivery::ThreadedNapi => ns
                .exec("ethtool", &["-K", link, "gro", "on", "tso", "off"])
                .and_then(|_| ns.exec("sh", &["-c", &format!("echo 1 > {threaded}")])),
            Delivery::Backlog => ns
                // The kernel refuses the write while NAPI is already off.
                .exec(
                    "sh",
                    &[
                        "-c",
                        &format!("grep -qx 0 {threaded} || echo 0 > {threaded}"),
                    ],
                )
                .and_then(|_| ns.exec("ethtool", &["-K", link, "gro", "off", "tso", "on"])),
        };
        result.map_err(|e| format!("{} on {link}: {e}", delivery.name()))?;
    }
    Ok(())
}

/// PIDs of the kernel's NAPI threads of links named like the lab's
/// (`napi/veth-a-N`, `napi/veth-b-N`).
fn napi_threads() -> BTreeSet<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            [A_LINK, B_LINK]
                .iter()
                .any(|link| comm.trim().starts_with(&format!("napi/{link}-")))
                .then_some(pid)
        })
        .collect()
}

/// Run `taskset` with `args`; a failure is printed, the figures then say
/// less but are still right.
fn pin_to(args: &[&str]) {
    let status = Command::new("taskset")
        .args(args)
        .stdout(Stdio::null())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        println!("bfd_sessions: taskset {} failed", args.join(" "));
    }
}

/// Thread ids of process `pid` whose command is `name`.
fn threads_named(pid: u32, name: &str) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![];
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|c| c.trim() == name)
        })
        .filter_map(|task| task.file_name().to_str()?.parse().ok())
        .collect()
}

/// One round's figures, in % of one core (wake-ups and packets per second).
#[derive(Clone, Copy, Debug, Default)]
struct Round {
    herald_ticks: f64,
    herald_runtime: f64,
    herald_wakeups: f64,
    herald_preemptions: f64,
    peer_runtime: f64,
    napi_runtime: f64,
    packets: f64,
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
    let pin = std::env::var("HERALD_BFD_BENCH_PIN").as_deref() == Ok("1");
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
    let total = (window + SETTLE) * 2 * rounds as u32;
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
    let own = std::process::id();
    if pin {
        println!(
            "bfd_sessions: pinned: the measured runtime and napi/{B_LINK}-* on CPU 0, \
             the peer runtime and napi/{A_LINK}-* on CPU 1"
        );
        pin_to(&["-a", "-p", "-c", "0", &pid.to_string()]);
        for tid in threads_named(own, "herald-bfd") {
            pin_to(&["-p", "-c", "1", &tid.to_string()]);
        }
    }
    let mut modes = vec![Delivery::Backlog];
    match set_delivery(&lab, Delivery::ThreadedNapi)
        .and_then(|()| set_delivery(&lab, Delivery::Backlog))
    {
        Ok(()) => modes.push(Delivery::ThreadedNapi),
        Err(error) => println!(
            "bfd_sessions: only the veth backlog mode is measured ({error}; is ethtool installed?)"
        ),
    }
    let seconds_per_tick = 1.0 / clock_ticks_per_second() as f64;
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
    let mut figures: Vec<(Delivery, Vec<Round>)> = modes.iter().map(|&m| (m, vec![])).collect();
    for round in 1..=rounds {
        for (delivery, rounds_so_far) in &mut figures {
            let napi_before = napi_threads();
            if modes.len() > 1 {
                set_delivery(&lab, *delivery).expect("switch the veth mode");
            }
            // Let the switch settle (and its NAPI threads start).
            std::thread::sleep(SETTLE);
            let napi: Vec<u32> = match delivery {
                Delivery::ThreadedNapi => {
                    napi_threads().difference(&napi_before).copied().collect()
                }
                Delivery::Backlog => vec![],
            };
            if pin {
                for pid in &napi {
                    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"));
                    let cpu = match comm {
                        Ok(comm) if comm.starts_with(&format!("napi/{B_LINK}-")) => "0",
                        _ => "1",
                    };
                    pin_to(&["-p", "-c", cpu, &pid.to_string()]);
                }
            }
            let measure = || {
                (
                    Usage::of_process(pid, |_| true),
                    Usage::of_process(own, |comm| comm == "herald-bfd"),
                    Usage::of_kernel_threads(&napi),
                )
            };
            let (herald_before, peer_before, napi_usage_before) = measure();
            let received_before = received();
            let measured_from = Instant::now();
            std::thread::sleep(window);
            let (herald_after, peer_after, napi_usage_after) = measure();
            let seconds = measured_from.elapsed().as_secs_f64();
            let herald = herald_after.since(herald_before);
            let percent = |runtime: Duration| 100.0 * runtime.as_secs_f64() / seconds;
            let figures = Round {
                herald_ticks: 100.0 * herald.ticks as f64 * seconds_per_tick / seconds,
                herald_runtime: percent(herald.runtime),
                herald_wakeups: herald.wakeups as f64 / seconds,
                herald_preemptions: herald.preemptions as f64 / seconds,
                peer_runtime: percent(peer_after.since(peer_before).runtime),
                napi_runtime: percent(napi_usage_after.since(napi_usage_before).runtime),
                packets: (received() - received_before) as f64 / seconds,
            };
            println!(
                "bfd_sessions: round {round}/{rounds}, {:13}: herald {:.2} % of one core \
                 (ticks {:.2} %), {:.0} wake-ups/s, {:.0} preemptions/s; peer {:.2} %; NAPI threads {:.2} %; \
                 {:.0} packets/s each way; load {}",
                delivery.name(),
                figures.herald_runtime,
                figures.herald_ticks,
                figures.herald_wakeups,
                figures.herald_preemptions,
                figures.peer_runtime,
                figures.napi_runtime,
                figures.packets,
                load_average(),
            );
            rounds_so_far.push(figures);
        }
    }
    if modes.len() > 1 {
        set_delivery(&lab, Delivery::Backlog).expect("restore the veth mode");
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
    println!(
        "bfd_sessions: {SESSIONS} sessions at 20 ms x 3, {rounds} rounds of {} s per mode{}, medians:",
        window.as_secs(),
        if stress {
            ", under stress-ng --cpu 2"
        } else {
            ""
        },
    );
    for (delivery, rounds) in &figures {
        let median = |pick: fn(&Round) -> f64| spread(rounds.iter().map(pick).collect());
        let (runtime_min, runtime_median, runtime_max) = median(|r| r.herald_runtime);
        println!(
            "bfd_sessions:   {:13}: herald {runtime_median:.2} % of one core (min {runtime_min:.2}, \
             max {runtime_max:.2}; ticks {:.2} %), {:.0} wake-ups/s, {:.0} preemptions/s; peer {:.2} %; NAPI threads \
             {:.2} %; {:.0} packets/s each way",
            delivery.name(),
            median(|r| r.herald_ticks).1,
            median(|r| r.herald_wakeups).1,
            median(|r| r.herald_preemptions).1,
            median(|r| r.peer_runtime).1,
            median(|r| r.napi_runtime).1,
            median(|r| r.packets).1,
        );
    }
    println!("bfd_sessions: load average at the end: {}", load_average());
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
