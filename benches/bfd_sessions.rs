//! Figure program (prints, asserts nothing about time): CPU used by a herald
//! BFD runtime holding 64 sessions at 20 ms x 3, beside BIRD's and FRR
//! bfdd's CPU for the same 64 sessions in the same run.
//!
//! Two network namespaces joined by a veth pair. The measured speaker runs
//! alone in namespace `b` with one address (192.0.2.2) and 64 single-hop
//! sessions, one to each of 64 addresses (192.0.2.100-163) that a peer
//! runtime in this process holds in namespace `a`; the peer does the same
//! work in the other direction and is printed as the reference. The
//! measured speakers, one after the other in each round (the order turns
//! from round to round):
//!
//! - `herald`: herald's BFD runtime alone, in a child process (this binary
//!   re-executed under `ip netns exec`);
//! - `bird`: BIRD 2's `protocol bfd` with 64 `neighbor` entries (the whole
//!   `bird` process);
//! - `frr`: FRR's bfdd with 64 `peer` entries (the `bfdd` process only).
//!
//! After all 64 sessions are Up, each round reads the CPU the kernel counted
//! for the measured process, for the peer's `herald-bfd` thread and for the
//! veth's NAPI threads; the median over the rounds is the figure to quote on
//! a shared machine, and herald's ratio to each other speaker is the median
//! of the per-round ratios (same round, same mode).
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
//! cargo bench --bench bfd_sessions                     # 5 rounds of 10 s per mode and speaker
//! HERALD_BFD_BENCH_SPEAKERS=herald cargo bench --bench bfd_sessions   # herald only
//! HERALD_BFD_BENCH_ROUNDS=3 HERALD_BFD_BENCH_SECS=20 HERALD_BFD_BENCH_STRESS=1 cargo bench --bench bfd_sessions
//! ```
//! `HERALD_BFD_BENCH_STRESS=1` runs `stress-ng --cpu 2` during the window
//! and reports how many sessions flapped (the target is none).
//! `HERALD_BFD_BENCH_SPEAKERS` is a comma-separated list out of `herald`,
//! `bird` and `frr` (default: all three); a speaker that cannot start or
//! whose sessions do not come Up is reported and left out.
//! `HERALD_BFD_BENCH_PIN=1` models two hosts on a 2-core machine: the
//! measured speaker and its side's NAPI thread (`veth-b`, its receive
//! path) on CPU 0, the peer runtime and its NAPI thread (`veth-a`) on CPU 1,
//! so a send wakes the receiver's NAPI thread on the other CPU instead of
//! being preempted by it (`taskset`). Without
//! `ethtool` only the `veth backlog` mode runs, and the bench says so.
//! Needs what herald-testnet's lab needs; prints why and exits otherwise.

#[path = "../tests/bfd/support.rs"]
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
use herald_testnet::bird::Bird;
use herald_testnet::frr::{FRR_DAEMONS, Frr};
use herald_testnet::load_average;
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

/// 192.0.2.100 + i: the peer runtime's addresses, one per session.
fn peer_address(i: u8) -> String {
    format!("192.0.2.{}", 100 + u16::from(i))
}

/// The measured herald runtime: 64 sessions from B4 to the peer runtime's
/// addresses, until killed.
fn child_main() {
    let runtime =
        BfdRuntime::spawn(RuntimeOptions::default(), Metrics::default()).expect("child runtime");
    let mut handles = Vec::new();
    for i in 0..SESSIONS {
        let mut spec = SessionSpec::single_hop(ip(&peer_address(i)), config());
        spec.local = Some(ip(B4));
        spec.interface = Some(B_LINK.to_string());
        handles.push(runtime.add_session(spec).expect("child session"));
    }
    // Bounded: the parent kills this process long before.
    std::thread::sleep(Duration::from_secs(600));
}

/// A BFD implementation measured by this bench.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Speaker {
    Herald,
    Bird,
    Frr,
}

impl Speaker {
    fn name(self) -> &'static str {
        match self {
            Speaker::Herald => "herald",
            Speaker::Bird => "bird",
            Speaker::Frr => "frr",
        }
    }

    fn parse(name: &str) -> Option<Speaker> {
        [Speaker::Herald, Speaker::Bird, Speaker::Frr]
            .into_iter()
            .find(|s| s.name() == name.trim())
    }

    /// Starts the speaker in namespace `b` with its 64 sessions.
    fn start(self, lab: &Lab) -> Result<Running, String> {
        match self {
            Speaker::Herald => {
                let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                Command::new("ip")
                    .args(["netns", "exec", &lab.b])
                    .arg(exe)
                    .env(CHILD, "1")
                    .stdin(Stdio::null())
                    .spawn()
                    .map(|child| Running::Herald(Killed(child)))
                    .map_err(|e| format!("cannot start the measured runtime: {e}"))
            }
            Speaker::Bird => {
                let neighbors: String = (0..SESSIONS)
                    .map(|i| {
                        format!(
                            "  neighbor {} dev \"{B_LINK}\" local {B4};\n",
                            peer_address(i)
                        )
                    })
                    .collect();
                let config = format!(
                    "router id {B4};\nprotocol device {{ }}\nprotocol bfd {{\n  \
                     interface \"{B_LINK}\" {{ min rx interval 20 ms; min tx interval 20 ms; \
                     multiplier 3; }};\n{neighbors}}}\n"
                );
                Bird::start(&lab.b_ns, &config)
                    .map(Running::Bird)
                    .map_err(|e| format!("bird: {e}"))
            }
            Speaker::Frr => {
                let frr = Frr::start(&lab.b_ns).map_err(|e| format!("frr: {e}"))?;
                let peers: String = (0..SESSIONS)
                    .map(|i| {
                        format!(
                            " peer {} local-address {B4} interface {B_LINK}\n  \
                             transmit-interval 20\n  receive-interval 20\n  \
                             detect-multiplier 3\n exit\n",
                            peer_address(i)
                        )
                    })
                    .collect();
                frr.configure(&format!("bfd\n{peers}exit\n"))
                    .map_err(|e| format!("frr: {e}"))?;
                Ok(Running::Frr(frr))
            }
        }
    }
}

/// A started speaker; stopping it kills its processes by PID.
enum Running {
    Herald(Killed),
    Bird(Bird),
    Frr(Frr),
}

impl Running {
    /// The process whose CPU is the speaker's.
    fn pid(&self) -> u32 {
        match self {
            Running::Herald(child) => child.0.id(),
            Running::Bird(bird) => bird.process().pid() as u32,
            Running::Frr(frr) => frr.daemon("bfdd").map_or(0, |p| p.pid() as u32),
        }
    }

    fn stop(self) {
        match self {
            Running::Herald(child) => drop(child),
            Running::Bird(bird) => {
                let _ = bird.process().kill();
            }
            Running::Frr(frr) => {
                for daemon in FRR_DAEMONS {
                    if let Some(process) = frr.daemon(daemon) {
                        let _ = process.kill();
                    }
                }
            }
        }
    }
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
    speaker_ticks: f64,
    speaker_runtime: f64,
    speaker_wakeups: f64,
    speaker_preemptions: f64,
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
    let speakers_wanted =
        std::env::var("HERALD_BFD_BENCH_SPEAKERS").unwrap_or_else(|_| "herald,bird,frr".into());
    let mut speakers = Vec::new();
    for name in speakers_wanted.split(',').filter(|n| !n.trim().is_empty()) {
        match Speaker::parse(name) {
            Some(speaker) if !speakers.contains(&speaker) => speakers.push(speaker),
            Some(_) => {}
            None => {
                println!(
                    "bfd_sessions: HERALD_BFD_BENCH_SPEAKERS: unknown speaker {name:?} (herald, bird, frr)"
                );
                return;
            }
        }
    }
    let Some(lab) = Lab::start() else {
        println!("bfd_sessions: skipped (see above)");
        return;
    };
    for i in 0..SESSIONS {
        lab.a_ns
            .add_address(A_LINK, &format!("{}/24", peer_address(i)))
            .expect("ip addr add");
    }
    let metrics = Metrics::default();
    let peer = runtime_in(&lab.a_ns, &metrics);
    let mut handles = Vec::new();
    for i in 0..SESSIONS {
        let mut spec = SessionSpec::single_hop(ip(B4), config());
        spec.local = Some(ip(&peer_address(i)));
        spec.interface = Some(A_LINK.to_string());
        handles.push(peer.add_session(spec).expect("peer session"));
    }
    let rounds_total = (window + SETTLE) * 2 * (rounds * speakers.len()) as u32;
    let stressor = stress.then(|| {
        Killed(
            Command::new("stress-ng")
                .args(["--cpu", "2", "--timeout"])
                // Each speaker's start and handshake take a few seconds more.
                .arg(format!(
                    "{}s",
                    rounds_total.as_secs() + 10 * (rounds * speakers.len()) as u64
                ))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start stress-ng"),
        )
    });
    let own = std::process::id();
    if pin {
        println!(
            "bfd_sessions: pinned: the measured speaker and napi/{B_LINK}-* on CPU 0, \
             the peer runtime and napi/{A_LINK}-* on CPU 1"
        );
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
    let peer_labels = herald::bfd::metrics::SessionLabels {
        peer: B4.to_string(),
        hop: "single_hop".to_string(),
    };
    let received = || metrics.received.get_or_create(&peer_labels).get();
    let largest_gap = metrics.max_rx_gap.get_or_create(&peer_labels);
    // The peer's own largest send gap: a flap with a small one here was not
    // the peer sending late.
    let largest_peer_gap = metrics.max_tx_gap.get_or_create(&peer_labels);
    // (speaker, mode) -> one figure per round; a speaker that failed is left out.
    let mut figures: Vec<(Speaker, Delivery, Vec<Round>)> = Vec::new();
    let mut failed: Vec<(Speaker, String)> = Vec::new();
    let mut flaps = std::collections::BTreeMap::<String, u32>::new();
    // Speaker -> (largest gap the peer saw from it, largest gap the peer sent).
    let mut gaps = std::collections::BTreeMap::<&str, (f64, f64)>::new();
    for round in 1..=rounds {
        // The order turns, so no speaker always follows the same one.
        let order: Vec<Speaker> = (0..speakers.len())
            .map(|k| speakers[(k + round - 1) % speakers.len()])
            .filter(|s| !failed.iter().any(|(f, _)| f == s))
            .collect();
        for speaker in order {
            let running = match speaker.start(&lab) {
                Ok(running) => running,
                Err(error) => {
                    println!("bfd_sessions: {} left out: {error}", speaker.name());
                    failed.push((speaker, error));
                    continue;
                }
            };
            let started = Instant::now();
            let up = handles.iter().enumerate().try_for_each(|(i, handle)| {
                wait_status(&handle.status, Duration::from_secs(30), |s| {
                    s.state == State::Up && !s.polling
                })
                .map(|_| ())
                .map_err(|s| format!("session {i} never came Up: {s:?}"))
            });
            if let Err(error) = up {
                println!("bfd_sessions: {} left out: {error}", speaker.name());
                running.stop();
                failed.push((speaker, error));
                continue;
            }
            // What the peer saw settle during the start-up is not a flap.
            std::thread::sleep(SETTLE);
            println!(
                "bfd_sessions: round {round}/{rounds}: {} with {SESSIONS} sessions at 20 ms x 3, \
                 Up after {:?}",
                speaker.name(),
                started.elapsed()
            );
            let pid = running.pid();
            if pin {
                pin_to(&["-a", "-p", "-c", "0", &pid.to_string()]);
            }
            for &delivery in &modes {
                let napi_before = napi_threads();
                if modes.len() > 1 {
                    set_delivery(&lab, delivery).expect("switch the veth mode");
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
                for handle in &mut handles {
                    while handle.events.try_recv().is_ok() {}
                }
                largest_gap.set(0.0);
                largest_peer_gap.set(0.0);
                let measure = || {
                    (
                        Usage::of_process(pid, |_| true),
                        Usage::of_process(own, |comm| comm == "herald-bfd"),
                        Usage::of_kernel_threads(&napi),
                    )
                };
                let (speaker_before, peer_before, napi_usage_before) = measure();
                let received_before = received();
                let measured_from = Instant::now();
                std::thread::sleep(window);
                let (speaker_after, peer_after, napi_usage_after) = measure();
                let seconds = measured_from.elapsed().as_secs_f64();
                let used = speaker_after.since(speaker_before);
                let percent = |runtime: Duration| 100.0 * runtime.as_secs_f64() / seconds;
                let figure = Round {
                    speaker_ticks: 100.0 * used.ticks as f64 * seconds_per_tick / seconds,
                    speaker_runtime: percent(used.runtime),
                    speaker_wakeups: used.wakeups as f64 / seconds,
                    speaker_preemptions: used.preemptions as f64 / seconds,
                    peer_runtime: percent(peer_after.since(peer_before).runtime),
                    napi_runtime: percent(napi_usage_after.since(napi_usage_before).runtime),
                    packets: (received() - received_before) as f64 / seconds,
                };
                let mut window_flaps = 0;
                for handle in &mut handles {
                    while let Ok(event) = handle.events.try_recv() {
                        let change = event.change;
                        window_flaps += 1;
                        *flaps
                            .entry(format!(
                                "{}: {} -> {} ({})",
                                speaker.name(),
                                change.old,
                                change.new,
                                change.diag
                            ))
                            .or_default() += 1;
                    }
                }
                let gap = gaps.entry(speaker.name()).or_default();
                gap.0 = gap.0.max(largest_gap.get());
                gap.1 = gap.1.max(largest_peer_gap.get());
                println!(
                    "bfd_sessions: round {round}/{rounds}, {:6} {:13}: {:.2} % of one core \
                     (ticks {:.2} %), {:.0} wake-ups/s, {:.0} preemptions/s; peer {:.2} %; NAPI threads {:.2} %; \
                     {:.0} packets/s each way; {window_flaps} transitions at the peer; load {}",
                    speaker.name(),
                    delivery.name(),
                    figure.speaker_runtime,
                    figure.speaker_ticks,
                    figure.speaker_wakeups,
                    figure.speaker_preemptions,
                    figure.peer_runtime,
                    figure.napi_runtime,
                    figure.packets,
                    load_average(),
                );
                match figures
                    .iter_mut()
                    .find(|(s, d, _)| *s == speaker && *d == delivery)
                {
                    Some((_, _, list)) => list.push(figure),
                    None => figures.push((speaker, delivery, vec![figure])),
                }
            }
            if modes.len() > 1 {
                set_delivery(&lab, Delivery::Backlog).expect("restore the veth mode");
            }
            running.stop();
            // The next speaker's wait for Up must not see this one's
            // sessions: wait for the peer to time them out.
            for handle in &handles {
                let _ = wait_status(&handle.status, Duration::from_secs(5), |s| {
                    s.state != State::Up
                });
            }
        }
    }
    drop(stressor);
    if !flaps.is_empty() {
        println!("bfd_sessions: transitions at the peer during the windows, by kind: {flaps:?}");
    }
    println!(
        "bfd_sessions: {SESSIONS} sessions at 20 ms x 3, {rounds} rounds of {} s per mode and speaker{}, medians:",
        window.as_secs(),
        if stress {
            ", under stress-ng --cpu 2"
        } else {
            ""
        },
    );
    figures.sort_by_key(|(s, d, _)| (*d as u8, *s as u8));
    for (speaker, delivery, rounds) in &figures {
        let median = |pick: fn(&Round) -> f64| spread(rounds.iter().map(pick).collect());
        let (runtime_min, runtime_median, runtime_max) = median(|r| r.speaker_runtime);
        println!(
            "bfd_sessions:   {:13} {:6}: {runtime_median:.2} % of one core (min {runtime_min:.2}, \
             max {runtime_max:.2}; ticks {:.2} %), {:.0} wake-ups/s, {:.0} preemptions/s; peer {:.2} %; NAPI threads \
             {:.2} %; {:.0} packets/s each way ({:.1} us of CPU per packet sent or received); \
             largest gap between packets at the peer: received {:.1} ms, sent {:.1} ms",
            delivery.name(),
            speaker.name(),
            median(|r| r.speaker_ticks).1,
            median(|r| r.speaker_wakeups).1,
            median(|r| r.speaker_preemptions).1,
            median(|r| r.peer_runtime).1,
            median(|r| r.napi_runtime).1,
            median(|r| r.packets).1,
            median(|r| r.speaker_runtime * 10_000.0 / (2.0 * r.packets.max(1.0))).1,
            gaps.get(speaker.name()).map_or(0.0, |g| g.0) * 1000.0,
            gaps.get(speaker.name()).map_or(0.0, |g| g.1) * 1000.0,
        );
    }
    for &delivery in &modes {
        let herald = figures
            .iter()
            .find(|(s, d, _)| *s == Speaker::Herald && *d == delivery);
        for (other, _, theirs) in figures
            .iter()
            .filter(|(s, d, _)| *s != Speaker::Herald && *d == delivery)
        {
            let Some((_, _, ours)) = herald else { continue };
            // Paired by round: the same minute's load for both.
            let ratios: Vec<f64> = ours
                .iter()
                .zip(theirs)
                .map(|(h, o)| h.speaker_runtime / o.speaker_runtime)
                .collect();
            if ratios.is_empty() {
                continue;
            }
            let (low, median, high) = spread(ratios);
            println!(
                "bfd_sessions:   {:13}: herald / {} CPU {median:.2} (min {low:.2}, max {high:.2}), median of per-round ratios",
                delivery.name(),
                other.name()
            );
        }
    }
    for (speaker, error) in &failed {
        println!("bfd_sessions: {} not measured: {error}", speaker.name());
    }
    println!("bfd_sessions: load average at the end: {}", load_average());
}
