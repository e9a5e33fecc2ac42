//! Lab benchmark (ignored by default; prints, never asserts timings):
//! herald, BIRD 2 and GoBGP each announce 10,000 and 100,000 distinct /32s
//! from 198.18.0.0/15 to the same FRR router setup, in one run, and the
//! test prints the time from session start to all prefixes in FRR's RIB
//! and in r1's kernel FIB, and each speaker's peak RSS (VmHWM of its own
//! process).
//!
//! Run: `cargo test --release --test bgp -- --ignored --nocapture lab_bench:: --test-threads 1`
//!
//! - herald: its BGP speaker (`SessionHandle`) alone in a child process
//!   (this test binary re-executed under `ip netns exec`), so its RSS is
//!   its own. The clock starts when the child says it spawns the session,
//!   after it built its announcements.
//! - BIRD: the clock starts when `bird` is started with the routes in its
//!   config.
//! - GoBGP: the routes are loaded into gobgpd's global RIB first (`gobgp
//!   mrt inject global` from an MRT TABLE_DUMP_V2 file this test writes;
//!   see [`mrt_table_dump`] for its lost-tail workaround), then the clock
//!   starts when the neighbor is added (`gobgp neighbor add`).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::bgp::metrics::Metrics;
use herald::bgp::session::{SessionConfig, SessionHandle};
use herald::model::{Announcement, RouteAttributes};
use herald_testnet::bird::SpeakerConfig;
use herald_testnet::{Bird, Frr, Gobgp, Lab, Namespace, lab_or_skip, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const ROUTER: &str = "192.0.2.1";
const SPEAKER: &str = "192.0.2.2";
const SPEAKER_AS: u32 = 64601;
const ROUTER_AS: u32 = 64512;
const BOUND: Duration = Duration::from_secs(300);
/// Tells the re-executed test binary to be herald's speaker for N prefixes.
const CHILD_PREFIXES: &str = "HERALD_BGP_BENCH_PREFIXES";

fn pair(lab: &Lab) -> (Frr, Namespace) {
    let r1 = lab.namespace("r1").unwrap();
    let h1 = lab.namespace("h1").unwrap();
    lab.veth(&r1, "eth1", &h1, "eth1").unwrap();
    r1.add_address("eth1", "192.0.2.1/24").unwrap();
    h1.add_address("eth1", "192.0.2.2/24").unwrap();
    let frr = Frr::start(&r1).unwrap();
    frr.configure(&format!(
        "router bgp {ROUTER_AS}
 bgp router-id {ROUTER}
 no bgp ebgp-requires-policy
 neighbor {SPEAKER} remote-as {SPEAKER_AS}
 neighbor {SPEAKER} timers connect 1
exit
"
    ))
    .unwrap();
    (frr, h1)
}

fn prefixes(n: u32) -> impl Iterator<Item = Ipv4Addr> {
    (0..n).map(|i| Ipv4Addr::from(0xC612_0000 + i))
}

/// Times to RIB and FIB from `start`.
fn measure(frr: &Frr, n: u64, start: Instant) -> (Duration, Duration) {
    wait_until(
        BOUND,
        Duration::from_millis(50),
        "all prefixes in FRR's RIB",
        || {
            let summary = frr
                .vtysh_json("show bgp ipv4 unicast summary json")
                .map_err(|e| e.to_string())?;
            let received = summary["peers"][SPEAKER]["pfxRcd"].as_u64().unwrap_or(0);
            if received == n {
                Ok(())
            } else {
                Err(format!("{received} received"))
            }
        },
    )
    .unwrap();
    let rib = start.elapsed();
    wait_until(
        BOUND,
        Duration::from_millis(200),
        "all prefixes in r1's FIB",
        || {
            let routes = frr
                .namespace()
                .ip(&["-4", "route", "show", "proto", "bgp"])
                .map_err(|e| e.to_string())?;
            let installed = routes.lines().count() as u64;
            if installed == n {
                Ok(())
            } else {
                Err(format!("{installed} installed"))
            }
        },
    )
    .unwrap();
    (rib, start.elapsed())
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// One speaker's figures.
#[derive(Clone, Debug)]
struct Figure {
    speaker: &'static str,
    prefixes: u32,
    rib: Duration,
    fib: Duration,
    rss_kib: u64,
}

impl Figure {
    fn print(&self) {
        println!(
            "{:<7} {:>7} /32s: RIB {:>8.2?}  FIB {:>8.2?}  peak RSS {:.1} MB",
            self.speaker,
            self.prefixes,
            self.rib,
            self.fib,
            self.rss_kib as f64 / 1024.0
        );
    }
}

/// herald's speaker process, killed by PID on drop.
struct SpeakerProcess(Child);

impl Drop for SpeakerProcess {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

fn run_herald(lab: &Lab, n: u32) -> Figure {
    let (frr, h1) = pair(lab);
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = SpeakerProcess(
        Command::new("ip")
            .args(["netns", "exec", h1.name()])
            .arg(exe)
            .args([
                "lab_bench::herald_speaker_process",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_PREFIXES, n.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start herald's speaker process"),
    );
    // The child prints "spawning" once its announcements are built; the
    // clock starts there (bounded: the child exits or prints within BOUND).
    let stdout = child.0.stdout.take().expect("child stdout");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("herald speaker: spawning") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready_rx
        .recv_timeout(BOUND)
        .expect("herald's speaker process to start its session");
    let start = Instant::now();
    let (rib, fib) = measure(&frr, u64::from(n), start);
    Figure {
        speaker: "herald",
        prefixes: n,
        rib,
        fib,
        rss_kib: peak_rss_kib(child.0.id()),
    }
}

/// The body of herald's speaker process: announce `HERALD_BGP_BENCH_PREFIXES`
/// prefixes to the router, then wait to be killed (at most 10 minutes).
#[test]
#[ignore = "the speaker process of the lab benchmark, started by it"]
fn herald_speaker_process() {
    let Some(n) = std::env::var(CHILD_PREFIXES)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    else {
        return;
    };
    let announcements: Vec<Announcement> = prefixes(n)
        .map(|a| Announcement {
            address: IpAddr::V4(a),
            attributes: RouteAttributes::default(),
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let cfg = SessionConfig::new(
            "r1",
            SocketAddr::new(ROUTER.parse().unwrap(), 179),
            SPEAKER_AS,
            ROUTER_AS,
            SPEAKER.parse().unwrap(),
        )
        .connect_retry(Duration::from_secs(5))
        .backoff(Duration::from_millis(500), Duration::from_secs(2));
        println!("herald speaker: spawning");
        let session = SessionHandle::spawn(cfg, Arc::new(Metrics::default()));
        session.announce(&announcements);
        drop(announcements);
        tokio::time::sleep(Duration::from_secs(600)).await;
        drop(session);
    });
}

fn run_bird(lab: &Lab, n: u32) -> Figure {
    let (frr, h1) = pair(lab);
    let config = SpeakerConfig {
        router_id: SPEAKER.into(),
        local_as: SPEAKER_AS,
        local_address: SPEAKER.into(),
        peer_address: ROUTER.into(),
        peer_as: ROUTER_AS,
        interface: "eth1".into(),
        prefixes: prefixes(n).map(|a| format!("{a}/32")).collect(),
        bfd: None,
    }
    .render();
    let start = Instant::now();
    let bird = Bird::start(&h1, &config).unwrap();
    let (rib, fib) = measure(&frr, u64::from(n), start);
    Figure {
        speaker: "bird",
        prefixes: n,
        rib,
        fib,
        rss_kib: peak_rss_kib(bird.process().pid() as u32),
    }
}

/// Records padded onto the end of the MRT file: `gobgp mrt inject` (3.10)
/// silently loses the last few hundred records of a file, so the file ends
/// with this many repeats of its first records (re-adding a path GoBGP
/// has is a no-op). The benchmark checks the RIB holds exactly `n` routes
/// before the session starts.
const MRT_PADDING: u32 = 2048;

/// An MRT file (RFC 6396) with a TABLE_DUMP_V2 PEER_INDEX_TABLE and one
/// RIB_IPV4_UNICAST record per prefix: ORIGIN IGP (GoBGP's default,
/// INCOMPLETE, would lose to the other speakers), an empty AS_PATH and
/// NEXT_HOP 192.0.2.2.
fn mrt_table_dump(n: u32) -> Vec<u8> {
    const TABLE_DUMP_V2: u16 = 13;
    const PEER_INDEX_TABLE: u16 = 1;
    const RIB_IPV4_UNICAST: u16 = 2;
    fn record(out: &mut Vec<u8>, subtype: u16, body: &[u8]) {
        out.extend_from_slice(&0u32.to_be_bytes()); // timestamp
        out.extend_from_slice(&TABLE_DUMP_V2.to_be_bytes());
        out.extend_from_slice(&subtype.to_be_bytes());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
    }
    let speaker: Ipv4Addr = SPEAKER.parse().unwrap();
    let mut out = Vec::with_capacity((n + MRT_PADDING) as usize * 48);
    // Collector BGP ID, empty view name, one peer: type 2 (IPv4, 4-octet
    // AS), BGP ID, address, AS.
    let mut peers = Vec::new();
    peers.extend_from_slice(&speaker.octets());
    peers.extend_from_slice(&0u16.to_be_bytes());
    peers.extend_from_slice(&1u16.to_be_bytes());
    peers.push(0x02);
    peers.extend_from_slice(&speaker.octets());
    peers.extend_from_slice(&speaker.octets());
    peers.extend_from_slice(&SPEAKER_AS.to_be_bytes());
    record(&mut out, PEER_INDEX_TABLE, &peers);
    let mut attributes = vec![0x40, 1, 1, 0]; // ORIGIN IGP
    attributes.extend_from_slice(&[0x40, 2, 0]); // AS_PATH, empty
    attributes.extend_from_slice(&[0x40, 3, 4]); // NEXT_HOP
    attributes.extend_from_slice(&speaker.octets());
    let mut body = Vec::with_capacity(64);
    for sequence in 0..n + MRT_PADDING {
        let prefix = Ipv4Addr::from(0xC612_0000 + sequence % n);
        body.clear();
        body.extend_from_slice(&sequence.to_be_bytes());
        body.push(32);
        body.extend_from_slice(&prefix.octets());
        body.extend_from_slice(&1u16.to_be_bytes()); // one entry
        body.extend_from_slice(&0u16.to_be_bytes()); // peer index
        body.extend_from_slice(&0u32.to_be_bytes()); // originated
        body.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
        body.extend_from_slice(&attributes);
        record(&mut out, RIB_IPV4_UNICAST, &body);
    }
    out
}

fn run_gobgp(lab: &Lab, n: u32) -> Figure {
    let (frr, h1) = pair(lab);
    let config = format!(
        "[global.config]\n  as = {SPEAKER_AS}\n  router-id = \"{SPEAKER}\"\n  local-address-list = [\"{SPEAKER}\"]\n"
    );
    let gobgp = Gobgp::start(&h1, &config, herald_testnet::gobgp::DEFAULT_API_PORT).unwrap();
    let file = h1.dir().join("routes.mrt");
    std::fs::write(&file, mrt_table_dump(n)).unwrap();
    gobgp
        .gobgp(&["mrt", "inject", "global", &file.display().to_string()])
        .unwrap();
    let loaded = gobgp
        .gobgp(&["global", "rib", "summary", "-a", "ipv4"])
        .unwrap();
    assert!(
        loaded.contains(&format!("Destination: {n},")),
        "GoBGP's RIB before the session: {loaded}"
    );
    let start = Instant::now();
    gobgp
        .gobgp(&["neighbor", "add", ROUTER, "as", &ROUTER_AS.to_string()])
        .unwrap();
    let (rib, fib) = measure(&frr, u64::from(n), start);
    Figure {
        speaker: "gobgp",
        prefixes: n,
        rib,
        fib,
        rss_kib: peak_rss_kib(gobgp.process().pid() as u32),
    }
}

#[test]
fn mrt_dump_has_a_peer_table_and_one_record_per_prefix_plus_padding() {
    let dump = mrt_table_dump(3);
    // Peer index table: 12-octet header + 4 + 2 + 2 + (1 + 4 + 4 + 4).
    assert_eq!(&dump[4..8], &[0, 13, 0, 1]);
    let first = 12 + 21;
    // Then RIB records of 12 + 4 + 1 + 4 + 2 + 8 + 14 octets.
    let rib = 12 + 33;
    assert_eq!(dump.len(), first + rib * (3 + MRT_PADDING as usize));
    assert_eq!(&dump[first + 4..first + 8], &[0, 13, 0, 2]);
    // The first record announces 198.18.0.0/32; the fourth repeats it.
    assert_eq!(&dump[first + 16..first + 21], &[32, 198, 18, 0, 0]);
    let fourth = first + 3 * rib;
    assert_eq!(&dump[fourth + 16..fourth + 21], &[32, 198, 18, 0, 0]);
    assert_eq!(&dump[fourth + 12..fourth + 16], &3u32.to_be_bytes());
}

#[test]
#[ignore = "lab benchmark: run with --ignored --nocapture"]
fn speakers_announce_10k_and_100k_prefixes_to_frr() {
    let mut figures = Vec::new();
    for n in [10_000, 100_000] {
        for run in [run_herald, run_bird, run_gobgp] {
            let lab = lab_or_skip!();
            let figure = run(&lab, n);
            figure.print();
            figures.push(figure);
        }
    }
    println!(
        "\n| speaker | prefixes | RIB | FIB | peak RSS | RIB / BIRD | FIB / BIRD | RSS / BIRD |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for figure in &figures {
        let bird = figures
            .iter()
            .find(|f| f.speaker == "bird" && f.prefixes == figure.prefixes)
            .unwrap();
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        println!(
            "| {} | {} | {:.2} s | {:.2} s | {:.1} MB | {:.2} | {:.2} | {:.2} |",
            figure.speaker,
            figure.prefixes,
            figure.rib.as_secs_f64(),
            figure.fib.as_secs_f64(),
            figure.rss_kib as f64 / 1024.0,
            ratio(figure.rib.as_secs_f64(), bird.rib.as_secs_f64()),
            ratio(figure.fib.as_secs_f64(), bird.fib.as_secs_f64()),
            ratio(figure.rss_kib as f64, bird.rss_kib as f64),
        );
    }
}
