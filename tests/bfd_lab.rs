//! Interop in the lab: herald's BFD against FRR bfdd and BIRD 2 as the
//! router, over a veth pair between two network namespaces (a: the router,
//! b: herald). Single-hop IPv4 and IPv6 and multihop come Up, timers
//! negotiate to the slower side, a live interval change on either side
//! completes its Poll/Final with the new values in use on both sides, and
//! the router's AdminDown reaches herald as AdminDown, not as a failure
//! (FRR; BIRD 2.0 cannot send AdminDown, see the last test).
//!
//! Needs root, `ip`, FRR and BIRD; skipped with a printed reason otherwise
//! (failed when CI=true). Uses the private namespace guard in bfd_support
//! until herald-testnet's lab lands on main.

mod bfd_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bfd_support::*;
use herald::bfd::SessionConfig;
use herald::bfd::metrics::{Metrics, SessionLabels};
use herald::bfd::packet::State;
use herald::bfd::runtime::{BfdRuntime, SessionHandle, SessionSpec};
use herald::bfd::session::Cause;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const FRR_DIR: &str = "/usr/lib/frr";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(tx_ms: u64, rx_ms: u64, mult: u8) -> SessionConfig {
    SessionConfig {
        desired_min_tx: ms(tx_ms),
        required_min_rx: ms(rx_ms),
        detect_mult: mult,
    }
}

fn routers_available(test: &str) -> bool {
    if !lab_available(test) {
        return false;
    }
    let missing: Vec<&str> = [
        format!("{FRR_DIR}/zebra"),
        format!("{FRR_DIR}/bfdd"),
        "/usr/bin/vtysh".to_string(),
        "/usr/sbin/bird".to_string(),
        "/usr/sbin/birdc".to_string(),
    ]
    .iter()
    .filter(|p| !Path::new(p).exists())
    .map(|p| Path::new(p).file_name().unwrap().to_str().unwrap())
    .map(|s| Box::leak(s.to_string().into_boxed_str()) as &str)
    .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: cannot run in CI: missing {missing:?}");
    }
    eprintln!("{test}: skipped: missing {missing:?}");
    false
}

/// A daemon started under `ip netns exec` (which execs, so the PID is the
/// daemon's), killed by PID on drop.
struct Daemon(Child);

impl Daemon {
    fn start(ns: &str, program: &str, args: &[&str], log: &Path) -> Daemon {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        Daemon(child)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

fn wait_for_path(path: &Path) {
    assert!(
        wait_until(Duration::from_secs(10), || path.exists()),
        "{} never appeared",
        path.display()
    );
}

/// zebra + bfdd in namespace `ns`, with their sockets in a temporary dir.
struct Frr {
    dir: tempfile::TempDir,
    _daemons: Vec<Daemon>,
}

impl Frr {
    fn start(ns: &str) -> Frr {
        let dir = tempfile::Builder::new()
            .prefix("herald-frr-")
            .tempdir()
            .unwrap();
        let path = dir.path().to_str().unwrap().to_string();
        let empty = dir.path().join("empty.conf");
        std::fs::write(&empty, "").unwrap();
        let _ = Command::new("chown")
            .args(["-R", "frr:frr", &path])
            .status();
        let common = |pid: &str| {
            vec![
                "-i".to_string(),
                format!("{path}/{pid}.pid"),
                "-z".to_string(),
                format!("{path}/zserv.api"),
                "--vty_socket".to_string(),
                path.clone(),
                "-P".to_string(),
                "0".to_string(),
                "-u".to_string(),
                "frr".to_string(),
                "-g".to_string(),
                "frr".to_string(),
                "-f".to_string(),
                empty.to_str().unwrap().to_string(),
            ]
        };
        let zebra_args = common("zebra");
        let zebra = Daemon::start(
            ns,
            &format!("{FRR_DIR}/zebra"),
            &zebra_args.iter().map(String::as_str).collect::<Vec<_>>(),
            &dir.path().join("zebra.log"),
        );
        wait_for_path(&dir.path().join("zserv.api"));
        let mut bfdd_args = common("bfdd");
        bfdd_args.push("--bfdctl".to_string());
        bfdd_args.push(format!("{path}/bfdd.sock"));
        let bfdd = Daemon::start(
            ns,
            &format!("{FRR_DIR}/bfdd"),
            &bfdd_args.iter().map(String::as_str).collect::<Vec<_>>(),
            &dir.path().join("bfdd.log"),
        );
        wait_for_path(&dir.path().join("bfdd.vty"));
        Frr {
            dir,
            _daemons: vec![bfdd, zebra],
        }
    }

    /// Run vtysh commands (each one `-c`).
    fn vtysh(&self, commands: &[&str]) -> String {
        let mut command = Command::new("vtysh");
        command.arg("--vty_socket").arg(self.dir.path());
        for c in commands {
            command.arg("-c").arg(c);
        }
        let output = command.output().expect("run vtysh");
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            output.status.success(),
            "vtysh {commands:?}: {text} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        text
    }

    fn configure(&self, lines: &[&str]) {
        let mut commands = vec!["configure terminal"];
        commands.extend_from_slice(lines);
        self.vtysh(&commands);
    }

    /// `show bfd peers json`, the entry for (peer, multihop).
    fn peer(&self, peer: &str, multihop: bool) -> Option<serde_json::Value> {
        let text = self.vtysh(&["show bfd peers json"]);
        let peers: serde_json::Value = serde_json::from_str(&text).ok()?;
        peers
            .as_array()?
            .iter()
            .find_map(|p| (p["peer"] == peer && p["multihop"] == multihop).then(|| p.clone()))
    }
}

const FRR_SESSIONS: [&str; 3] = [
    "peer 192.0.2.2 local-address 192.0.2.1 interface veth-a",
    "peer 2001:db8:bfd::2 local-address 2001:db8:bfd::1 interface veth-a",
    "peer 192.0.2.2 multihop local-address 192.0.2.1",
];

fn frr_with_sessions(ns: &str, tx_ms: u64, rx_ms: u64, mult: u8) -> Frr {
    let frr = Frr::start(ns);
    let tx = format!("transmit-interval {tx_ms}");
    let rx = format!("receive-interval {rx_ms}");
    let mult = format!("detect-multiplier {mult}");
    let mut lines = vec!["bfd", "profile herald", &tx, &rx, &mult, "exit"];
    for session in FRR_SESSIONS {
        lines.extend_from_slice(&[session, "profile herald", "exit"]);
    }
    frr.configure(&lines);
    frr
}

/// BIRD 2 in namespace `ns`, with its control socket in a temporary dir.
struct Bird {
    dir: tempfile::TempDir,
    _daemon: Daemon,
}

fn bird_config(tx_ms: u64, rx_ms: u64, mult: u8) -> String {
    let timers =
        format!("min rx interval {rx_ms} ms; min tx interval {tx_ms} ms; multiplier {mult};");
    format!(
        "router id 192.0.2.1;\n\
         protocol device {{}}\n\
         protocol bfd bfd1 {{\n\
         \x20 interface \"{A_LINK}\" {{ {timers} }};\n\
         \x20 multihop {{ {timers} }};\n\
         \x20 neighbor {B4} dev \"{A_LINK}\" local {A4};\n\
         \x20 neighbor {B6} dev \"{A_LINK}\" local {A6};\n\
         \x20 neighbor {B4} local {A4} multihop;\n\
         }}\n"
    )
}

impl Bird {
    fn start(ns: &str, tx_ms: u64, rx_ms: u64, mult: u8) -> Bird {
        let dir = tempfile::Builder::new()
            .prefix("herald-bird-")
            .tempdir()
            .unwrap();
        let config = dir.path().join("bird.conf");
        std::fs::write(&config, bird_config(tx_ms, rx_ms, mult)).unwrap();
        let socket = dir.path().join("bird.ctl");
        let daemon = Daemon::start(
            ns,
            "/usr/sbin/bird",
            &[
                "-f",
                "-c",
                config.to_str().unwrap(),
                "-s",
                socket.to_str().unwrap(),
                "-P",
                dir.path().join("bird.pid").to_str().unwrap(),
            ],
            &dir.path().join("bird.log"),
        );
        wait_for_path(&socket);
        Bird {
            dir,
            _daemon: daemon,
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("bird.ctl")
    }

    fn birdc(&self, args: &[&str]) -> String {
        let output = Command::new("birdc")
            .arg("-s")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("run birdc");
        String::from_utf8_lossy(&output.stdout).to_string()
    }

    fn reconfigure(&self, tx_ms: u64, rx_ms: u64, mult: u8) {
        std::fs::write(
            self.dir.path().join("bird.conf"),
            bird_config(tx_ms, rx_ms, mult),
        )
        .unwrap();
        let out = self.birdc(&["configure"]);
        assert!(out.contains("Reconfigured"), "birdc configure: {out}");
    }

    /// `show bfd sessions`: (state, interval, timeout) of the line for
    /// `peer` whose interface column is `interface` ("---" for multihop).
    fn session(&self, peer: &str, interface: &str) -> Option<(String, String, String)> {
        let text = self.birdc(&["show", "bfd", "sessions"]);
        text.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() >= 5 && fields[0] == peer && fields[1] == interface {
                let n = fields.len();
                Some((
                    fields[2].to_string(),
                    fields[n - 2].to_string(),
                    fields[n - 1].to_string(),
                ))
            } else {
                None
            }
        })
    }
}

/// herald's three sessions (v4, v6 single-hop; v4 multihop) in namespace b.
struct Herald {
    runtime: BfdRuntime,
    metrics: Metrics,
    v4: SessionHandle,
    v6: SessionHandle,
    multihop: SessionHandle,
}

/// BIRD 2.0 sends multihop packets at the kernel's default TTL (64), not
/// 255, so a multihop session to BIRD must accept less than FRR's 254.
const BIRD_MULTIHOP_MIN_TTL: u8 = 60;

fn herald_in(lab: &Lab, config: SessionConfig) -> Herald {
    herald_with_min_ttl(lab, config, herald::bfd::runtime::DEFAULT_MULTIHOP_MIN_TTL)
}

fn herald_with_min_ttl(lab: &Lab, config: SessionConfig, min_ttl: u8) -> Herald {
    let metrics = Metrics::default();
    let runtime = runtime_in(&lab.b, &metrics);
    let single = |peer: &str, local: &str| {
        let mut spec = SessionSpec::single_hop(ip(peer), config);
        spec.local = Some(ip(local));
        spec.interface = Some(B_LINK.to_string());
        spec
    };
    let v4 = runtime.add_session(single(A4, B4)).unwrap();
    let v6 = runtime.add_session(single(A6, B6)).unwrap();
    let mut multihop = SessionSpec::multihop(ip(A4), config);
    multihop.local = Some(ip(B4));
    multihop.min_ttl = min_ttl;
    let multihop = runtime.add_session(multihop).unwrap();
    Herald {
        runtime,
        metrics,
        v4,
        v6,
        multihop,
    }
}

impl Herald {
    fn sessions(&self) -> [(&SessionHandle, &'static str); 3] {
        [
            (&self.v4, "single-hop IPv4"),
            (&self.v6, "single-hop IPv6"),
            (&self.multihop, "multihop IPv4"),
        ]
    }

    /// All three Up with no Poll pending, and `check` true, within 20 s
    /// (FRR and BIRD start at 1 s intervals, and FRR 8.4 may flap once).
    fn wait_all(&self, what: &str, check: impl Fn(&herald::bfd::runtime::SessionStatus) -> bool) {
        for (handle, name) in self.sessions() {
            if let Err(status) = wait_status(&handle.status, Duration::from_secs(20), |s| {
                s.state == State::Up && !s.polling && check(s)
            }) {
                panic!("{name}: {what}: {status:?}; drops: {}", self.drops());
            }
        }
    }

    /// Non-zero drop counters, for failure messages.
    fn drops(&self) -> String {
        [
            "ttl",
            "no_session",
            "unknown_discriminator",
            "zero_your_discriminator",
            "bad_version",
            "truncated",
            "auth_not_configured",
            "admin_down",
        ]
        .iter()
        .map(|r| (r, self.metrics.dropped_count(r)))
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| format!("{r}={n} "))
        .collect()
    }

    /// Packets received on the IPv4 single-hop session over `window`.
    fn received_over(&self, window: Duration) -> u64 {
        let labels = SessionLabels {
            peer: A4.to_string(),
            hop: "single_hop".to_string(),
        };
        let before = self.metrics.received.get_or_create(&labels).get();
        std::thread::sleep(window);
        self.metrics.received.get_or_create(&labels).get() - before
    }
}

fn negotiated(
    tx_ms: u64,
    detection_ms: u64,
) -> impl Fn(&herald::bfd::runtime::SessionStatus) -> bool {
    move |s| {
        s.negotiated.tx_interval == Some(ms(tx_ms))
            && s.negotiated.detection_time == Some(ms(detection_ms))
    }
}

#[test]
fn frr_sessions_come_up_and_negotiate_to_the_slower_side() {
    if !routers_available("frr_sessions_come_up") {
        return;
    }
    let lab = Lab::new();
    let frr = frr_with_sessions(&lab.a, 100, 100, 3);
    let started = Instant::now();
    let herald = herald_in(&lab, config(50, 50, 3));
    // herald sends at max(50, FRR rx 100); detects at 3 x max(50, FRR tx 100).
    herald.wait_all("Up at 100 ms / 300 ms", negotiated(100, 300));
    println!("FRR sessions Up in {:?}", started.elapsed());
    for (peer, multihop) in [(B4, false), (B6, false), (B4, true)] {
        let seen = wait_until(Duration::from_secs(10), || {
            frr.peer(peer, multihop).is_some_and(|p| {
                p["status"] == "up"
                    && p["remote-receive-interval"] == 50
                    && p["remote-transmit-interval"] == 50
                    && p["remote-detect-multiplier"] == 3
            })
        });
        assert!(seen, "FRR's view of {peer}: {:?}", frr.peer(peer, multihop));
    }
    assert_eq!(herald.metrics.dropped_count("ttl"), 0);
}

#[test]
fn frr_interval_changes_complete_a_poll_on_both_sides() {
    if !routers_available("frr_interval_changes") {
        return;
    }
    let lab = Lab::new();
    let frr = frr_with_sessions(&lab.a, 100, 100, 3);
    let herald = herald_in(&lab, config(50, 50, 3));
    herald.wait_all("Up", negotiated(100, 300));
    let fast = herald.received_over(ms(1500));

    // The router slows down live: FRR polls, herald answers with Final.
    frr.configure(&[
        "bfd",
        "profile herald",
        "transmit-interval 300",
        "receive-interval 200",
    ]);
    herald.wait_all("FRR's new intervals in use", negotiated(200, 900));
    let slow = herald.received_over(ms(1500));
    println!("packets from FRR in 1.5 s: {fast} at 100 ms, {slow} at 300 ms");
    assert!(fast >= 9 && slow <= 9 && slow < fast, "{fast} then {slow}");

    // herald slows down live: herald polls, FRR answers with Final.
    herald
        .runtime
        .change_parameters(herald.v4.id, config(250, 50, 3))
        .unwrap();
    herald.wait_all("herald's poll completed", |s| {
        s.negotiated.tx_interval.is_some()
    });
    let v4 = wait_status(&herald.v4.status, Duration::from_secs(10), |s| {
        !s.polling && s.negotiated.tx_interval == Some(ms(250))
    })
    .expect("herald's slower TX in force after the Final");
    assert_eq!(v4.state, State::Up);
    let seen = wait_until(Duration::from_secs(10), || {
        frr.peer(B4, false)
            .is_some_and(|p| p["remote-transmit-interval"] == 250 && p["status"] == "up")
    });
    assert!(seen, "FRR's view: {:?}", frr.peer(B4, false));
}

#[test]
fn frr_admin_down_is_reported_as_admin_down_not_as_a_failure() {
    if !routers_available("frr_admin_down") {
        return;
    }
    let lab = Lab::new();
    let frr = frr_with_sessions(&lab.a, 100, 100, 3);
    let mut herald = herald_in(&lab, config(50, 50, 3));
    herald.wait_all("Up", |_| true);
    while herald.v4.events.try_recv().is_ok() {}
    frr.configure(&["bfd", FRR_SESSIONS[0], "shutdown"]);
    wait_status(&herald.v4.status, Duration::from_secs(5), |s| {
        s.state == State::Down
    })
    .expect("herald sees FRR's AdminDown");
    let event = herald.v4.events.try_recv().expect("an event");
    assert_eq!(event.change.cause, Cause::NeighborAdminDown);
    assert!(!event.change.is_failure(), "RFC 5882 §4.2");
    // The other sessions are untouched.
    assert_eq!(herald.v6.status.borrow().state, State::Up);
    frr.configure(&["bfd", FRR_SESSIONS[0], "no shutdown"]);
    herald.wait_all("Up again after no shutdown", |_| true);
}

#[test]
fn bird_sessions_come_up_and_negotiate_to_the_slower_side() {
    if !routers_available("bird_sessions_come_up") {
        return;
    }
    let lab = Lab::new();
    let bird = Bird::start(&lab.a, 100, 100, 3);
    let started = Instant::now();
    let herald = herald_with_min_ttl(&lab, config(50, 50, 3), BIRD_MULTIHOP_MIN_TTL);
    herald.wait_all("Up at 100 ms / 300 ms", negotiated(100, 300));
    println!("BIRD sessions Up in {:?}", started.elapsed());
    // BIRD: Interval = max(its tx 100, our rx 50); Timeout = 3 x max(its rx
    // 100, our tx 50).
    for (peer, interface) in [(B4, A_LINK), (B6, A_LINK)] {
        let seen = wait_until(Duration::from_secs(10), || {
            bird.session(peer, interface)
                .is_some_and(|(state, interval, timeout)| {
                    state == "Up" && interval == "0.100" && timeout == "0.300"
                })
        });
        assert!(
            seen,
            "BIRD's view of {peer}: {}",
            bird.birdc(&["show", "bfd", "sessions"])
        );
    }
}

#[test]
fn bird_interval_changes_complete_a_poll_on_both_sides() {
    if !routers_available("bird_interval_changes") {
        return;
    }
    let lab = Lab::new();
    let bird = Bird::start(&lab.a, 100, 100, 3);
    let herald = herald_with_min_ttl(&lab, config(50, 50, 3), BIRD_MULTIHOP_MIN_TTL);
    herald.wait_all("Up", negotiated(100, 300));
    let fast = herald.received_over(ms(1500));
    bird.reconfigure(300, 200, 3);
    herald.wait_all("BIRD's new intervals in use", negotiated(200, 900));
    let slow = herald.received_over(ms(1500));
    println!("packets from BIRD in 1.5 s: {fast} at 100 ms, {slow} at 300 ms");
    assert!(fast >= 9 && slow <= 9 && slow < fast, "{fast} then {slow}");

    herald
        .runtime
        .change_parameters(herald.v4.id, config(250, 50, 3))
        .unwrap();
    wait_status(&herald.v4.status, Duration::from_secs(10), |s| {
        !s.polling && s.negotiated.tx_interval == Some(ms(250))
    })
    .expect("herald's slower TX in force after BIRD's Final");
    // BIRD's Timeout: 3 x max(its rx 200, our tx 250).
    let seen = wait_until(Duration::from_secs(10), || {
        bird.session(B4, A_LINK)
            .is_some_and(|(state, _, timeout)| state == "Up" && timeout == "0.750")
    });
    assert!(seen, "{}", bird.birdc(&["show", "bfd", "sessions"]));
}

/// BIRD 2.0 never signals AdminDown: `birdc disable` (and removing a
/// neighbor) frees the session silently. herald then sees, correctly, a
/// peer that stopped talking: a failure after the Detection Time. This test
/// pins that down so the router-side AdminDown case is covered by FRR.
#[test]
fn bird_disable_sends_no_admin_down_and_is_detected_as_a_timeout() {
    if !routers_available("bird_disable") {
        return;
    }
    let lab = Lab::new();
    let bird = Bird::start(&lab.a, 100, 100, 3);
    let mut herald = herald_with_min_ttl(&lab, config(50, 50, 3), BIRD_MULTIHOP_MIN_TTL);
    herald.wait_all("Up", |_| true);
    while herald.v4.events.try_recv().is_ok() {}
    let out = bird.birdc(&["disable", "bfd1"]);
    assert!(out.contains("disabled"), "birdc disable: {out}");
    wait_status(&herald.v4.status, Duration::from_secs(5), |s| {
        s.state == State::Down
    })
    .expect("herald notices BIRD went silent");
    let event = herald.v4.events.try_recv().expect("an event");
    assert_eq!(event.change.cause, Cause::DetectionTimeExpired);
    assert!(event.change.is_failure());
}
