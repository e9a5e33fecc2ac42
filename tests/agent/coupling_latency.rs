//! How long a BFD failure waits for its Cease while the agent is busy: the
//! real `herald run` against a scripted router (a BGP speaker and a BFD peer
//! written with herald's own codecs, in the router's namespace), a services
//! file grown from 1 to 10,001 addresses (SIGHUP), and, while netlink is
//! still placing them, the router's BFD says Down. The figure is the time
//! from the router sending its Down to the router reading herald's
//! NOTIFICATION Cease/BFD Down (RFC 9384), both stamped by the test on one
//! clock.
//!
//! ```text
//!   r1: BGP peer (TCP 179) + BFD peer (UDP 3784)  192.0.2.1 ── veth ── 192.0.2.2  h1: herald run
//! ```
//!
//! A sibling scenario adds the router sending a 100,000-route table
//! (/32s, 800 per UPDATE) once the reconcile is under way; the Down goes out
//! when the router has written half of it. Each run prints how many of the
//! table's 125 UPDATEs herald had counted just after the Down
//! (`herald_bgp_messages_received_total{kind="update"}` from its /metrics).
//!
//! Ignored by default (up to a minute per run). `HERALD_BIN` runs another
//! herald binary (a release build, or an older one for a before/after
//! comparison) and `HERALD_COUPLING_RUNS` sets the repetitions (default 5):
//!
//! ```sh
//! cargo build --release --bin herald
//! HERALD_BIN=target/release/herald HERALD_COUPLING_RUNS=7 cargo test --test agent \
//!     coupling_latency -- --ignored --nocapture
//! ```
//!
//! (`coupling_latency::bfd_down_reaches_bgp_during_a_large_reconcile_and_a_full_table`
//! runs the table scenario alone.)

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use herald::bfd::packet::{ControlPacket, Diagnostic, State};
use herald::bgp::packet::{AfiSafi, Capability, MAX_MESSAGE_LEN, Message, Open, frame_len};
use herald_testnet::process::Signal;
use herald_testnet::{Lab, Namespace, Process, lab_or_skip, wait_until};

const ROUTER: &str = "192.0.2.1";
const NODE: &str = "192.0.2.2";
/// Addresses the services file grows by: the reconcile the BFD Down meets.
const BULK: u32 = 10_000;
/// The Down is sent once this many of the new addresses are on `lo`, so the
/// reconcile is under way (placing all of them takes seconds).
const PLACED_BEFORE_DOWN: usize = 500;
const BOUND: Duration = Duration::from_secs(60);
/// Routes in the table the router sends in the table scenario.
const TABLE: u32 = 100_000;
/// /32 NLRI per UPDATE: 5 bytes each, under 4,096 with the attributes.
const ROUTES_PER_UPDATE: u32 = 800;

#[test]
#[ignore = "a lab benchmark: about a minute per run; see the module doc"]
fn bfd_down_reaches_bgp_during_a_large_reconcile() {
    measure(0);
}

#[test]
#[ignore = "a lab benchmark: about a minute per run; see the module doc"]
fn bfd_down_reaches_bgp_during_a_large_reconcile_and_a_full_table() {
    measure(TABLE);
}

/// Runs the scenario `HERALD_COUPLING_RUNS` times with a router table of
/// `table` routes (0: none) and prints the figures.
fn measure(table: u32) {
    let binary = std::env::var("HERALD_BIN").unwrap_or(env!("CARGO_BIN_EXE_herald").to_string());
    let runs: usize = std::env::var("HERALD_COUPLING_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let mut latencies = Vec::new();
    for run in 0..runs {
        let lab = lab_or_skip!();
        let Some(sample) = one_run(&lab, &binary, table) else {
            // herald's BFD went down on its own (the test's peer starved on a
            // loaded machine): the Cease says nothing about the coupling.
            println!("run {run}: the Cease came before the Down was sent; run discarded");
            continue;
        };
        println!(
            "run {run}: BFD Down -> Cease read {:.1} ms ({} addresses on lo and {} of the table's UPDATEs read at the Down, {} prefixes announced before the Cease)",
            sample.latency.as_secs_f64() * 1e3,
            sample.placed_at_down,
            sample.updates_at_down,
            sample.announced_before_cease
        );
        latencies.push(sample.latency);
    }
    assert!(!latencies.is_empty(), "every run was discarded");
    latencies.sort();
    let runs = latencies.len();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{binary}: BFD Down -> Cease during a {BULK}-address reconcile and a {table}-route table: median {:.1} ms, min {:.1} ms, max {:.1} ms over {runs} runs",
        ms(latencies[latencies.len() / 2]),
        ms(latencies[0]),
        ms(latencies[latencies.len() - 1])
    );
}

struct Sample {
    latency: Duration,
    placed_at_down: usize,
    /// UPDATEs herald had counted when the Down was sent.
    updates_at_down: u32,
    announced_before_cease: usize,
}

/// One run; `None` when herald's BFD went down before the router's Down.
fn one_run(lab: &Lab, binary: &str, table: u32) -> Option<Sample> {
    let r1 = lab.namespace("r1").unwrap();
    let h1 = lab.namespace("h1").unwrap();
    lab.veth(&r1, "eth1", &h1, "eth1").unwrap();
    r1.add_address("eth1", &format!("{ROUTER}/24")).unwrap();
    h1.add_address("eth1", &format!("{NODE}/24")).unwrap();

    let router = Router::start(&r1, table);
    let herald = start_herald(&h1, binary);
    wait_until(BOUND, Duration::from_millis(50), "BGP and BFD up", || {
        if router.bgp_established.load(Ordering::SeqCst) && router.bfd_up.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(herald.log())
        }
    })
    .unwrap();

    std::fs::write(h1.dir().join("services.yaml"), services(BULK)).unwrap();
    herald.signal(Signal::SIGHUP).unwrap();
    let placed_at_down = wait_until(
        BOUND,
        Duration::from_millis(5),
        "the reconcile under way",
        || {
            let placed = bulk_on_lo(&h1);
            if placed >= PLACED_BEFORE_DOWN {
                Ok(placed)
            } else {
                Err(placed.to_string())
            }
        },
    )
    .unwrap();
    // The table starts now (herald reads 100,000 routes faster than it
    // places 500 addresses), and the Down once half of it is written.
    router.send_table.store(true, Ordering::SeqCst);
    wait_until(
        BOUND,
        Duration::from_micros(200),
        "half the table written",
        || {
            let sent = router.table_sent.load(Ordering::SeqCst);
            if sent >= table as usize / 2 {
                Ok(())
            } else {
                Err(sent.to_string())
            }
        },
    )
    .unwrap();
    router.signal_down.store(true, Ordering::SeqCst);
    // Read just after the Down left: how far herald was into the table.
    let updates_at_down = if table == 0 { 0 } else { updates_received(&h1) };
    let down_sent = router
        .down_sent
        .recv_timeout(BOUND)
        .expect("the Down was sent");
    let (cease_read, code, subcode) = router.cease.recv_timeout(BOUND).expect("a NOTIFICATION");
    assert_eq!((code, subcode), (6, 10), "Cease/BFD Down: {}", herald.log());
    let announced_before_cease = router.announced.load(Ordering::SeqCst);
    herald.terminate().unwrap();
    router.stop.store(true, Ordering::SeqCst);
    (cease_read > down_sent).then(|| Sample {
        latency: cease_read - down_sent,
        placed_at_down,
        updates_at_down,
        announced_before_cease,
    })
}

fn start_herald(node: &Namespace, binary: &str) -> Process {
    let config = format!(
        "asn: 64601
router_id: {NODE}
interface: lo
admin_listen: 127.0.0.1:9179
pools:
  - name: bench
    cidrs: [198.18.0.0/15]
peers:
  - name: r1
    address: {ROUTER}
    asn: 64512
    hold_time: 9s
    graceful_restart: {{enabled: false}}
    bfd: {{enabled: true, min_rx: 100ms, min_tx: 100ms, multiplier: 3}}
"
    );
    let dir = node.dir();
    std::fs::write(dir.join("herald.yaml"), config).unwrap();
    std::fs::write(dir.join("services.yaml"), services(0)).unwrap();
    let config = dir.join("herald.yaml").display().to_string();
    let services = dir.join("services.yaml").display().to_string();
    node.spawn(
        "herald",
        binary,
        &[
            "run",
            "--config",
            &config,
            "--services",
            &services,
            "--node-name",
            "h1",
            "--admin-socket",
            &node.dir().join("admin.sock").display().to_string(),
        ],
    )
    .unwrap()
}

/// One seed address, and `bulk` more from 198.18.0.0/15.
fn services(bulk: u32) -> String {
    let mut text = String::from("services:\n  - name: seed\n    addresses: [198.19.255.1]\n");
    if bulk > 0 {
        text.push_str("  - name: bulk\n    addresses:\n");
        for i in 0..bulk {
            text.push_str(&format!("      - {}\n", Ipv4Addr::from(0xC612_0000 + i)));
        }
    }
    text
}

/// The UPDATEs herald has received, from its /metrics (0 when it does
/// not answer).
fn updates_received(node: &Namespace) -> u32 {
    let text = node
        .run_in(|| {
            let mut stream = TcpStream::connect("127.0.0.1:9179").ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            stream
                .write_all(b"GET /metrics HTTP/1.0\r\nHost: herald\r\n\r\n")
                .ok()?;
            let mut text = String::new();
            stream.read_to_string(&mut text).ok()?;
            Some(text)
        })
        .ok()
        .flatten()
        .unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.starts_with("herald_bgp_messages_received_total{") && l.contains("kind=\"update\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u32
}

/// How many of the bulk addresses are on `lo` now.
fn bulk_on_lo(node: &Namespace) -> usize {
    node.ip(&["-4", "-o", "addr", "show", "dev", "lo"])
        .map(|out| out.lines().filter(|l| l.contains(" 198.18.")).count())
        .unwrap_or(0)
}

/// The scripted router: its threads run in its namespace until `stop`.
struct Router {
    bgp_established: Arc<AtomicBool>,
    bfd_up: Arc<AtomicBool>,
    signal_down: Arc<AtomicBool>,
    /// Set by the test: send the table now.
    send_table: Arc<AtomicBool>,
    /// Routes of the table written so far.
    table_sent: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    announced: Arc<AtomicUsize>,
    down_sent: mpsc::Receiver<Instant>,
    cease: mpsc::Receiver<(Instant, u8, u8)>,
}

impl Router {
    fn start(ns: &Namespace, table: u32) -> Router {
        let bgp_established = Arc::new(AtomicBool::new(false));
        let bfd_up = Arc::new(AtomicBool::new(false));
        let signal_down = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let announced = Arc::new(AtomicUsize::new(0));
        let send_table = Arc::new(AtomicBool::new(false));
        let table_sent = Arc::new(AtomicUsize::new(0));
        let (down_tx, down_sent) = mpsc::channel();
        let (cease_tx, cease) = mpsc::channel();
        let listener = ns
            .run_in(|| TcpListener::bind((ROUTER, 179)).unwrap())
            .unwrap();
        let peer = BgpPeer {
            established: bgp_established.clone(),
            announced: announced.clone(),
            stop: stop.clone(),
            cease: cease_tx,
            table,
            send_table: send_table.clone(),
            table_sent: table_sent.clone(),
        };
        std::thread::spawn(move || bgp_peer(listener, peer));
        let (up, down, stopped) = (bfd_up.clone(), signal_down.clone(), stop.clone());
        // The BFD peer's sockets are opened inside the thread, in r1.
        drop(ns.spawn_thread(move || bfd_peer(up, down, stopped, down_tx)));
        Router {
            bgp_established,
            bfd_up,
            signal_down,
            send_table,
            table_sent,
            stop,
            announced,
            down_sent,
            cease,
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The BGP side of the scripted router.
struct BgpPeer {
    established: Arc<AtomicBool>,
    announced: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    cease: mpsc::Sender<(Instant, u8, u8)>,
    /// Routes to send once `send_table` is set (0: none).
    table: u32,
    send_table: Arc<AtomicBool>,
    table_sent: Arc<AtomicUsize>,
}

/// Accepts herald's connection, answers its OPEN (AS 64512, hold 9 s),
/// keeps the session alive, sends the table when asked (a writer thread
/// owns every write, so reading herald's NOTIFICATION never waits behind
/// it), counts the prefixes herald announces and reports the first
/// NOTIFICATION with the moment it was read.
fn bgp_peer(listener: TcpListener, peer: BgpPeer) {
    let (mut stream, _) = listener.accept().unwrap();
    stream.set_nodelay(true).unwrap();
    let open = Open::new(
        64512,
        9,
        ROUTER.parse().unwrap(),
        vec![
            Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
            Capability::FourOctetAs(64512),
        ],
    );
    write_message(&mut stream, &Message::Open(open));
    write_message(&mut stream, &Message::Keepalive);
    let mut writer = stream.try_clone().unwrap();
    let (stop, send_table, table_sent, table) = (
        peer.stop.clone(),
        peer.send_table.clone(),
        peer.table_sent.clone(),
        peer.table,
    );
    std::thread::spawn(move || {
        let mut last_keepalive = Instant::now();
        let mut next_route = 0u32;
        while !stop.load(Ordering::SeqCst) {
            if last_keepalive.elapsed() > Duration::from_secs(1) {
                if writer
                    .write_all(&Message::Keepalive.to_bytes().unwrap())
                    .is_err()
                {
                    return;
                }
                last_keepalive = Instant::now();
            }
            if send_table.load(Ordering::SeqCst) && next_route < table {
                let count = ROUTES_PER_UPDATE.min(table - next_route);
                let update = table_update(next_route, count);
                if writer.write_all(&update.to_bytes().unwrap()).is_err() {
                    return;
                }
                next_route += count;
                table_sent.store(next_route as usize, Ordering::SeqCst);
            } else {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 16];
    while !peer.stop.load(Ordering::SeqCst) {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        while let Ok(Some(len)) = frame_len(&buf, MAX_MESSAGE_LEN) {
            if buf.len() < len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..len).collect();
            match Message::decode(&frame, MAX_MESSAGE_LEN) {
                Ok(Message::Keepalive) => peer.established.store(true, Ordering::SeqCst),
                Ok(Message::Update(update)) => {
                    peer.announced
                        .fetch_add(update.announced().count(), Ordering::SeqCst);
                }
                Ok(Message::Notification(n)) => {
                    let _ = peer.cease.send((Instant::now(), n.code, n.subcode));
                    return;
                }
                Ok(_) => {}
                Err(e) => panic!("herald sent a malformed message: {e}"),
            }
        }
    }
}

/// Routes `first..first + count` of the table: /32s counted up from
/// 198.18.0.0 (inside 198.18.0.0/15), next hop the router, AS_PATH 64512.
fn table_update(first: u32, count: u32) -> Message {
    use herald::bgp::packet::{AsPath, Origin, PathAttributes, Update};
    Message::Update(Box::new(Update {
        withdrawn: Vec::new(),
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(vec![64512])),
            next_hop: Some(ROUTER.parse().unwrap()),
            ..PathAttributes::default()
        },
        nlri: (first..first + count)
            .map(|i| ipnet::Ipv4Net::new(Ipv4Addr::from(0xC612_0000 + i), 32).unwrap())
            .collect(),
        errors: Vec::new(),
    }))
}

fn write_message(stream: &mut TcpStream, message: &Message) {
    stream.write_all(&message.to_bytes().unwrap()).unwrap();
}

/// A BFD peer (RFC 5880 §6.8.6 answers, asynchronous mode, 20 ms
/// transmissions, 100 ms x 3 advertised: a detection time of 300 ms leaves
/// room for a test thread that waits for a loaded CPU) that goes Down with
/// diagnostic 1
/// when `signal_down` is set, and reports when its first Down left.
fn bfd_peer(
    up: Arc<AtomicBool>,
    signal_down: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    down_sent: mpsc::Sender<Instant>,
) {
    let rx = UdpSocket::bind((ROUTER, 3784)).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
    // RFC 5881 §4: source port 49152-65535, TTL 255.
    let tx = UdpSocket::bind((ROUTER, 49152)).unwrap();
    tx.set_ttl(255).unwrap();
    let herald: SocketAddr = (NODE.parse::<Ipv4Addr>().unwrap(), 3784).into();
    let my_discriminator = 0x5eed;
    let their_discriminator = AtomicU32::new(0);
    let mut state = State::Down;
    let mut reported = false;
    let mut buf = [0u8; 512];
    let mut next_tx = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if let Ok((n, _)) = rx.recv_from(&mut buf)
            && let Ok(packet) = ControlPacket::decode(&buf[..n])
        {
            their_discriminator.store(packet.my_discriminator, Ordering::SeqCst);
            if !signal_down.load(Ordering::SeqCst) {
                state = match (state, packet.state) {
                    (State::Down, State::Down) => State::Init,
                    (State::Down | State::Init, State::Init | State::Up) => State::Up,
                    (State::Up, State::Down | State::AdminDown) => State::Down,
                    (current, _) => current,
                };
                up.store(
                    state == State::Up && packet.state == State::Up,
                    Ordering::SeqCst,
                );
            }
        }
        let down = signal_down.load(Ordering::SeqCst);
        if down {
            state = State::Down;
        }
        if Instant::now() >= next_tx || (down && !reported) {
            let packet = ControlPacket {
                diag: if down {
                    Diagnostic::from_code(1)
                } else {
                    Diagnostic::None
                },
                state,
                poll: false,
                final_: false,
                control_plane_independent: false,
                demand: false,
                detect_mult: 3,
                my_discriminator,
                your_discriminator: their_discriminator.load(Ordering::SeqCst),
                desired_min_tx: Duration::from_millis(100),
                required_min_rx: Duration::from_millis(100),
                required_min_echo_rx: Duration::ZERO,
                auth: None,
            };
            let _ = tx.send_to(&packet.encode().unwrap(), herald);
            if down && !reported {
                reported = true;
                let _ = down_sent.send(Instant::now());
            }
            next_tx = Instant::now() + Duration::from_millis(20);
        }
    }
}
