//! A host on the link plays the attacker against herald's BFD: root in
//! another node's namespace, it forges BFD Control packets that claim to be
//! the router's (source address 192.0.2.1, TTL 255, a source port in the
//! RFC 5881 range) and says Down, 20 packets a second for 3 seconds. It
//! cannot see the router's packets to n1 (a switched link), so it does not
//! know the router's discriminator: it tries Your Discriminator 0 and, the
//! strongest blind guess there is, n1's own discriminator (as if it had
//! guessed it, a 1 in 2^32 chance).
//!
//! herald on n1 must keep its session Up and the router must keep n1's next
//! hop in its FIB all along; every forged packet is counted as a drop.
//!
//! Built on herald-testnet (`ecmp3`, `HeraldNode`, `FibWatch`); needs root,
//! FRR and the herald binary (skipped with a reason, or failed under
//! CI=true).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use herald::bfd::packet::{ControlPacket, Diagnostic, State};
use herald_testnet::bird::BfdTimers;
use herald_testnet::fib::{self, FibWatch};
use herald_testnet::scenario::service::{
    ADMIN, HeraldSetup, NODES, Source, node_ip, services_file,
};
use herald_testnet::scenario::{Ecmp3, SERVICE_V4};
use herald_testnet::{HeraldNode, HeraldOptions, Namespace, lab_or_skip};
use nix::sys::socket::{self, setsockopt, sockopt};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const ROUTER: &str = "192.0.2.1";
const SETTLE: Duration = Duration::from_secs(60);
/// The attack of the issue that found the weakness: 20 packets a second
/// for 3 seconds.
const RATE: u32 = 20;
const ATTACK: Duration = Duration::from_secs(3);

/// What the attacker sends each time.
#[derive(Clone, Copy, Debug)]
pub struct Forgery {
    pub state: State,
    pub your_discriminator: u32,
}

/// Sends `forgeries` in turn from namespace `ns` to `target` (UDP 3784),
/// claiming to come from `claimed` port 49999 with TTL 255, `rate` packets a
/// second for `duration`. `IP_TRANSPARENT` lets a root process send from an
/// address it does not own, as any root process on a host can. Returns the
/// number of packets sent.
pub fn forge(
    ns: &Namespace,
    claimed: Ipv4Addr,
    target: Ipv4Addr,
    forgeries: Vec<Forgery>,
    rate: u32,
    duration: Duration,
) -> u64 {
    ns.run_in(move || {
        let fd = socket::socket(
            socket::AddressFamily::Inet,
            socket::SockType::Datagram,
            socket::SockFlag::empty(),
            socket::SockProtocol::Udp,
        )
        .expect("udp socket");
        setsockopt(&fd, sockopt::IpTransparent, &true).expect("IP_TRANSPARENT");
        socket::bind(
            fd.as_raw_fd(),
            &socket::SockaddrIn::from(std::net::SocketAddrV4::new(claimed, 49999)),
        )
        .expect("bind the forged source");
        let socket = UdpSocket::from(fd);
        socket.set_ttl(255).expect("ttl");
        let destination = SocketAddr::new(IpAddr::V4(target), 3784);
        let gap = Duration::from_secs(1) / rate;
        let start = Instant::now();
        let mut sent = 0u64;
        // Bounded by time and by count.
        let most = u64::from(rate) * duration.as_secs().max(1) * 2;
        while start.elapsed() < duration && sent < most {
            let forgery = forgeries[sent as usize % forgeries.len()];
            let packet = ControlPacket {
                diag: Diagnostic::None,
                state: forgery.state,
                poll: false,
                final_: false,
                control_plane_independent: false,
                demand: false,
                detect_mult: 3,
                // Not the router's: the attacker cannot see it.
                my_discriminator: 0x5eed_0000 + sent as u32,
                your_discriminator: forgery.your_discriminator,
                desired_min_tx: Duration::from_millis(50),
                required_min_rx: Duration::from_millis(50),
                required_min_echo_rx: Duration::ZERO,
                auth: None,
            };
            let bytes = packet.encode().expect("encode");
            socket
                .send_to(&bytes, destination)
                .expect("send the forgery");
            sent += 1;
            std::thread::sleep(gap);
        }
        sent
    })
    .expect("enter the attacker's namespace")
}

/// The sum of every `herald_bfd_session_transitions_total` sample for the
/// router: each state change the session ever made.
fn transitions(node: &HeraldNode) -> f64 {
    let text = node.metrics().expect("metrics");
    text.lines()
        .filter(|line| {
            line.starts_with("herald_bfd_session_transitions_total{")
                && line.contains(&format!("peer=\"{ROUTER}\""))
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn dropped(node: &HeraldNode, reason: &str) -> f64 {
    node.metric("herald_bfd_packets_dropped_total", &[("reason", reason)])
        .expect("metrics")
        .unwrap_or(0.0)
}

/// herald on n1 alone (BFD 50 ms x 3 with the router), up and in r1's FIB.
fn herald_on_n1(ecmp: &Ecmp3, extra_peer_yaml: Option<&str>) -> HeraldNode {
    let timers = BfdTimers {
        interval_ms: 50,
        multiplier: 3,
    };
    ecmp.router()
        .expect("router")
        .configure(
            "bfd\n profile lab\n  transmit-interval 50\n  receive-interval 50\n  \
             detect-multiplier 3\n exit\nexit\n",
        )
        .expect("router bfd profile");
    let setup = HeraldSetup {
        bfd: Some(timers),
        graceful_restart: None,
        ..HeraldSetup::new(HERALD, Source::Standalone)
    };
    let mut config = setup.config_for(0);
    if let Some(extra) = extra_peer_yaml {
        config = config.replace(
            "    bfd: {enabled: true,",
            &format!("    bfd: {{{extra}enabled: true,"),
        );
    }
    HeraldNode::start(
        ecmp.net.ns(NODES[0]).expect("n1"),
        HeraldOptions {
            binary: HERALD.into(),
            config,
            services: Some(services_file()),
            admin: ADMIN.parse().expect("a literal"),
            node_name: NODES[0].to_string(),
            env: vec![],
            extra_args: vec![],
        },
    )
    .expect("herald on n1")
}

fn n1() -> IpAddr {
    node_ip(0).parse().expect("a literal")
}

fn router_ns(ecmp: &Ecmp3) -> &Namespace {
    ecmp.net.ns("r1").expect("r1")
}

/// Waits for n1 in r1's FIB with BFD Up, past FRR 8.4's one early BFD
/// re-registration flap (docs/lab.md).
fn settle(ecmp: &Ecmp3) {
    let router = ecmp.router().expect("router");
    fib::wait_next_hop(router_ns(ecmp), SERVICE_V4, n1(), SETTLE).expect("n1 in r1's FIB");
    router
        .wait_bfd_up(&node_ip(0), SETTLE)
        .expect("bfd up at r1");
    std::thread::sleep(Duration::from_secs(2));
    fib::wait_next_hop(router_ns(ecmp), SERVICE_V4, n1(), SETTLE)
        .expect("n1 in r1's FIB after the early flap");
    router
        .wait_bfd_up(&node_ip(0), SETTLE)
        .expect("bfd up at r1");
}

/// n1's local discriminator, as r1 knows it (its `remote-id`).
fn n1_discriminator(ecmp: &Ecmp3) -> u32 {
    let peers = ecmp
        .router()
        .expect("router")
        .vtysh_json("show bfd peers json")
        .expect("show bfd peers");
    peers
        .as_array()
        .and_then(|peers| {
            peers
                .iter()
                .find(|p| p["peer"].as_str() == Some(&node_ip(0)))
        })
        .and_then(|p| p["remote-id"].as_u64())
        .and_then(|id| u32::try_from(id).ok())
        .expect("r1's bfd peer n1 with a remote-id")
}

#[test]
fn forged_down_packets_from_another_node_leave_the_session_up_and_the_next_hop_in_place() {
    let lab = lab_or_skip!();
    let ecmp = Ecmp3::deploy(&lab).expect("ecmp3");
    let node = herald_on_n1(&ecmp, None);
    settle(&ecmp);
    let guessed = n1_discriminator(&ecmp);
    let before = transitions(&node);
    let dropped_before = dropped(&node, "discriminator_mismatch");

    let watch = FibWatch::start(router_ns(&ecmp), SERVICE_V4, Duration::from_millis(20));
    let forgeries = vec![
        Forgery {
            state: State::Down,
            your_discriminator: 0,
        },
        Forgery {
            state: State::Down,
            your_discriminator: guessed,
        },
        Forgery {
            state: State::AdminDown,
            your_discriminator: 0,
        },
        Forgery {
            state: State::Down,
            your_discriminator: 0x1234_5678,
        },
    ];
    let sent = forge(
        ecmp.net.ns(NODES[1]).expect("n2"),
        ROUTER.parse().expect("a literal"),
        node_ip(0).parse().expect("a literal"),
        forgeries,
        RATE,
        ATTACK,
    );
    // A Detection Time (150 ms) and more after the last forgery.
    std::thread::sleep(Duration::from_millis(500));
    let history = watch.stop();

    let after = transitions(&node);
    let dropped_after = dropped(&node, "discriminator_mismatch");
    let unknown = dropped(&node, "unknown_discriminator");
    println!(
        "bfd_attack: {sent} forged packets from n2; herald's session transitions {before} -> \
         {after}; dropped as discriminator_mismatch {dropped_before} -> {dropped_after}, \
         unknown_discriminator {unknown}; r1's FIB changes {:?}",
        history.changes
    );
    assert!(
        sent >= u64::from(RATE) * 2,
        "the attack ran ({sent} packets)"
    );
    assert_eq!(
        after,
        before,
        "herald's BFD session changed state under forged packets:\n{}",
        node.log()
    );
    assert!(
        history.changes.iter().all(|(_, hops)| hops.contains(&n1())),
        "r1 lost n1's next hop during the attack: {:?}",
        history.changes
    );
    // Every forgery is refused visibly: those that reach the session as a
    // mismatch, the random non-zero guess as an unknown discriminator.
    assert!(
        dropped_after - dropped_before >= (sent / 2) as f64,
        "forgeries not counted: {dropped_before} -> {dropped_after} of {sent}"
    );
    assert!(unknown >= 1.0, "the random guess was not counted");
    let router = ecmp.router().expect("router");
    router
        .wait_bfd_up(&node_ip(0), Duration::from_secs(1))
        .expect("r1's session to n1 still up");
}
