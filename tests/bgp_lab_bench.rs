//! Lab benchmark (ignored by default; prints, never asserts timings):
//! herald and BIRD 2 each announce 10,000 and 100,000 distinct /32s from
//! 198.18.0.0/15 to the same FRR router setup, and the test prints the time
//! from session start to all prefixes in FRR's RIB and in r1's kernel FIB,
//! and the speaker's peak RSS.
//!
//! Run: `cargo test --release --test bgp_lab_bench -- --ignored --nocapture --test-threads 1`
//!
//! herald runs inside this test process (on a thread in the node's
//! namespace), so its figure is the whole test process's peak RSS.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::bgp::metrics::Metrics;
use herald::bgp::session::{SessionConfig, SessionHandle};
use herald::model::{Announcement, RouteAttributes};
use herald_testnet::bird::SpeakerConfig;
use herald_testnet::{Bird, Frr, Lab, Namespace, lab_or_skip, wait_until};
use nix::sched::{CloneFlags, setns};

const ROUTER: &str = "192.0.2.1";
const SPEAKER: &str = "192.0.2.2";
const BOUND: Duration = Duration::from_secs(300);

fn pair(lab: &Lab) -> (Frr, Namespace) {
    let r1 = lab.namespace("r1").unwrap();
    let h1 = lab.namespace("h1").unwrap();
    lab.veth(&r1, "eth1", &h1, "eth1").unwrap();
    r1.add_address("eth1", "192.0.2.1/24").unwrap();
    h1.add_address("eth1", "192.0.2.2/24").unwrap();
    let frr = Frr::start(&r1).unwrap();
    frr.configure(&format!(
        "router bgp 64512
 bgp router-id {ROUTER}
 no bgp ebgp-requires-policy
 neighbor {SPEAKER} remote-as 64601
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

fn run_herald(n: u32) {
    let lab = lab_or_skip!();
    let (frr, h1) = pair(&lab);
    let path = format!("/run/netns/{}", h1.name());
    let announcements: Vec<Announcement> = prefixes(n)
        .map(|a| Announcement {
            address: IpAddr::V4(a),
            attributes: RouteAttributes::default(),
        })
        .collect();
    let (stop, stop_rx) = std::sync::mpsc::channel::<()>();
    let start = Instant::now();
    let thread = std::thread::spawn(move || {
        setns(File::open(&path).unwrap(), CloneFlags::CLONE_NEWNET).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let cfg = SessionConfig {
                name: "r1".into(),
                peer: SocketAddr::new(ROUTER.parse().unwrap(), 179),
                local_as: 64601,
                peer_as: 64512,
                router_id: SPEAKER.parse().unwrap(),
                hold_time: 90,
                md5_key: None,
                source: None,
                ebgp_multihop: 1,
                ttl_security: false,
                passive: false,
                extended_message: false,
                graceful_restart: None,
                next_hop_v4: None,
                next_hop_v6: None,
                connect_retry: Duration::from_secs(5),
                backoff_initial: Duration::from_millis(500),
                backoff_max: Duration::from_secs(2),
            };
            let session = SessionHandle::spawn(cfg, Arc::new(Metrics::default()), None);
            session.announce(&announcements);
            tokio::task::spawn_blocking(move || stop_rx.recv())
                .await
                .ok();
            drop(session);
        });
    });
    let (rib, fib) = measure(&frr, u64::from(n), start);
    let rss = peak_rss_kib(std::process::id());
    println!(
        "herald {n:>6} /32s: RIB {rib:>8.2?}  FIB {fib:>8.2?}  peak RSS {:.1} MB (whole test process)",
        rss as f64 / 1024.0
    );
    let _ = stop.send(());
    thread.join().unwrap();
}

fn run_bird(n: u32) {
    let lab = lab_or_skip!();
    let (frr, h1) = pair(&lab);
    let config = SpeakerConfig {
        router_id: SPEAKER.into(),
        local_as: 64601,
        local_address: SPEAKER.into(),
        peer_address: ROUTER.into(),
        peer_as: 64512,
        interface: "eth1".into(),
        prefixes: prefixes(n).map(|a| format!("{a}/32")).collect(),
        bfd: None,
    }
    .render();
    let start = Instant::now();
    let bird = Bird::start(&h1, &config).unwrap();
    let (rib, fib) = measure(&frr, u64::from(n), start);
    let rss = peak_rss_kib(bird.process().pid() as u32);
    println!(
        "bird   {n:>6} /32s: RIB {rib:>8.2?}  FIB {fib:>8.2?}  peak RSS {:.1} MB",
        rss as f64 / 1024.0
    );
}

#[test]
#[ignore = "lab benchmark: run with --ignored --nocapture"]
fn speakers_announce_10k_and_100k_prefixes_to_frr() {
    for n in [10_000, 100_000] {
        run_herald(n);
        run_bird(n);
    }
}
