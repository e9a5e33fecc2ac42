//! herald's BGP listener with the real `herald run` against FRR, played as
//! a host on the link would: nothing listens for an active peer; a passive
//! peer is accepted only on the node's address toward it; GTSM on the
//! listening socket keeps a far host from completing a handshake; TCP MD5
//! keys follow `address: gateway`, reloads and key files rotated in place,
//! without a restart of herald.
//!
//! ```text
//!   r1 (FRR) eth1 192.0.2.1, 198.51.100.1   ── veth ──   eth1 192.0.2.2, 198.51.100.2  h1 (herald)
//!            + 192.0.2.3: a host on the link that is not a peer
//! ```

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::support::*;
use herald::bgp::transport::{SocketOptions, TransportError, TtlPolicy, connect};
use herald_testnet::{Frr, Namespace, Process, http, lab_or_skip, wait_until};

/// A host on r1's link that is not a peer of herald.
const STRANGER: &str = "192.0.2.3";

/// What a TCP connection attempt to herald's BGP port got.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// RST: nothing listens there.
    Refused,
    /// The handshake completed.
    Completed,
    /// No answer: the SYN was dropped.
    NoAnswer,
}

/// Connects from `source` in `ns` to `to` with IP TTL `ttl`.
fn probe(ns: &Namespace, source: &str, to: SocketAddr, ttl: u8) -> Probe {
    let source: IpAddr = source.parse().unwrap();
    ns.run_in(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let options = SocketOptions {
            ttl: TtlPolicy {
                send: ttl,
                min_receive: None,
            },
            md5_key: None,
            source: Some(source),
        };
        match runtime.block_on(connect(to, &options, Duration::from_secs(3))) {
            Ok(_) => Probe::Completed,
            Err(TransportError::ConnectTimeout { .. }) => Probe::NoAnswer,
            Err(TransportError::Connect { source, .. })
                if source.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                Probe::Refused
            }
            Err(other) => panic!("probe to {to}: {other}"),
        }
    })
    .unwrap()
}

/// The node's listening TCP sockets on port 179, as `ss` lists them.
fn listening_179(node: &Namespace) -> Vec<String> {
    node.exec("ss", &["-Hltn", "sport = :179"])
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().nth(3).map(str::to_string))
        .collect()
}

/// The node's TCP sockets on port 179 with r1 at the other end (a
/// completed or completing handshake).
fn connected_to_router(node: &Namespace) -> Vec<String> {
    let filter = format!("sport = :179 and dst {ROUTER}");
    node.exec("ss", &["-Htn", "state", "all", &filter])
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `herald_bgp_connections_refused_total{reason}` from herald's /metrics.
fn refused(node: &Namespace, reason: &str) -> u64 {
    let text = node
        .run_in(|| {
            http::request(
                ADMIN.parse().unwrap(),
                "GET",
                "/metrics",
                b"",
                Duration::from_secs(5),
            )
            .map(|r| r.text())
            .unwrap_or_default()
        })
        .unwrap();
    let series = format!("herald_bgp_connections_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn with_link_addresses(lab: &herald_testnet::Lab) -> Pair {
    let pair = pair(lab);
    let r1 = pair.frr.namespace();
    r1.add_address("eth1", &format!("{STRANGER}/24")).unwrap();
    r1.add_address("eth1", "198.51.100.1/24").unwrap();
    pair.node.add_address("eth1", "198.51.100.2/24").unwrap();
    pair
}

/// herald's config with r1's peer block extended by `peer_extra` lines
/// (each indented four spaces).
fn config_with(peer_extra: &str) -> String {
    herald_config(300, "", "").replace(
        "    hold_time: 9s\n",
        &format!("    hold_time: 9s\n{peer_extra}"),
    )
}

fn services() -> &'static str {
    "services:\n  - name: web\n    addresses: [203.0.113.10]\n"
}

fn bgp_port(address: &str) -> SocketAddr {
    SocketAddr::new(address.parse().unwrap(), 179)
}

fn established_count(frr: &Frr) -> u64 {
    frr_neighbor(frr)["connectionsEstablished"]
        .as_u64()
        .unwrap_or(0)
}

/// r1's state of its session with herald.
fn frr_state(frr: &Frr) -> Option<String> {
    herald_testnet::frr::bgp_peer_state(&frr.vtysh_json("show bgp summary json").ok()?, NODE)
}

fn wait_refused(node: &Namespace, reason: &str, at_least: u64) {
    wait_until(
        BOUND,
        Duration::from_millis(200),
        "the refusal counted",
        || match refused(node, reason) {
            n if n >= at_least => Ok(()),
            n => Err(format!("{reason}: {n}")),
        },
    )
    .unwrap();
}

#[test]
fn the_listener_exists_only_for_a_passive_peer_and_only_on_the_address_toward_it() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = with_link_addresses(&lab);
    frr.configure(&frr_config(300, "")).unwrap();

    // An active peer (the default): herald connects out and listens nowhere.
    let herald = start_herald(&node, &config_with(""), services());
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    assert!(
        listening_179(&node).is_empty(),
        "{:?}",
        listening_179(&node)
    );
    assert_eq!(
        probe(frr.namespace(), STRANGER, bgp_port(NODE), 64),
        Probe::Refused
    );

    // Passive: herald waits for r1, on 192.0.2.2:179 only.
    std::fs::write(
        node.dir().join("herald.yaml"),
        config_with("    passive: true\n"),
    )
    .unwrap();
    wait_until(
        BOUND,
        Duration::from_millis(100),
        "the listener",
        || match listening_179(&node).as_slice() {
            [one] if one == &format!("{NODE}:179") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .unwrap();
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    wait_path(
        &frr,
        "203.0.113.10/32",
        "announced over r1's connection",
        |_| true,
    );
    let report = status(&node).unwrap();
    assert_eq!(report.peers[0].state, herald::status::BgpState::Established);
    // The node's other address: nothing listens there.
    assert_eq!(
        probe(
            frr.namespace(),
            "198.51.100.1",
            bgp_port("198.51.100.2"),
            64
        ),
        Probe::Refused
    );
    // A host on the link that is not a peer: closed at once, counted.
    let before = refused(&node, "not_a_peer");
    assert_eq!(
        probe(frr.namespace(), STRANGER, bgp_port(NODE), 64),
        Probe::Completed
    );
    wait_refused(&node, "not_a_peer", before + 1);
    // One log line per source and minute, however many connections.
    for _ in 0..5 {
        probe(frr.namespace(), STRANGER, bgp_port(NODE), 64);
    }
    wait_refused(&node, "not_a_peer", before + 6);
    let lines = herald
        .log()
        .matches(&format!("refused a BGP connection from {STRANGER}:"))
        .count();
    assert_eq!(lines, 1, "{}", herald.log());
    herald.terminate().unwrap();
}

#[test]
fn gtsm_on_the_listener_keeps_a_far_host_from_completing_the_handshake() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = with_link_addresses(&lab);
    // r1 without ttl-security: eBGP to a directly connected peer goes out
    // with TTL 1.
    frr.configure(&frr_config(300, "")).unwrap();
    let herald = start_herald(
        &node,
        &config_with("    passive: true\n    ttl_security: true\n"),
        services(),
    );
    wait_until(
        BOUND,
        Duration::from_millis(100),
        "the listener",
        || match listening_179(&node).len() {
            1 => Ok(()),
            n => Err(format!("{n}")),
        },
    )
    .unwrap();
    // TTL 254 is one hop too far for GTSM with ebgp_multihop 1: the kernel
    // drops the SYN, so not even the handshake completes; at 255 it does
    // (and herald closes the stranger's connection).
    assert_eq!(
        probe(frr.namespace(), STRANGER, bgp_port(NODE), 254),
        Probe::NoAnswer
    );
    assert_eq!(
        probe(frr.namespace(), STRANGER, bgp_port(NODE), 255),
        Probe::Completed
    );
    // r1 itself at TTL 1 keeps trying (connect timer 1 s) and never gets a
    // connection: no socket on herald's side ever leaves LISTEN.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let connected = connected_to_router(&node);
        assert!(connected.is_empty(), "a handshake completed: {connected:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ne!(frr_state(&frr).as_deref(), Some("Established"));
    // r1 with GTSM: established.
    frr.configure(&format!(
        "router bgp 64512\n neighbor {NODE} ttl-security hops 1\nexit\n"
    ))
    .unwrap();
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    herald.terminate().unwrap();
}

/// Waits until FRR has established more than `before` sessions and is
/// Established now.
fn wait_established_again(frr: &Frr, before: u64, what: &str) {
    wait_until(
        Duration::from_secs(40),
        Duration::from_millis(200),
        what,
        || {
            let n = established_count(frr);
            if n > before && frr_state(frr).as_deref() == Some("Established") {
                Ok(())
            } else {
                Err(format!("{n} established so far; {:?}", frr_state(frr)))
            }
        },
    )
    .unwrap();
}

/// Rotates r1's key on both sides (herald's file first, then FRR) and
/// waits for FRR to establish again; then resets the session from FRR, so
/// the last connection is surely made with the new key on both sides (one
/// that slipped in before FRR took the new key cannot count). herald keeps
/// running throughout.
fn rotate(frr: &Frr, herald: &Process, key_file: &std::path::Path, key: &str) {
    let before = established_count(frr);
    std::fs::write(key_file, format!("{key}\n")).unwrap();
    frr.configure(&format!(
        "router bgp 64512\n neighbor {NODE} password {key}\nexit\n"
    ))
    .unwrap();
    wait_established_again(frr, before, "established again with the rotated key");
    let before = established_count(frr);
    frr.vtysh(&format!("clear bgp {NODE}")).unwrap();
    wait_established_again(
        frr,
        before,
        "established again after a reset, with the new key",
    );
    assert!(herald.is_running());
}

#[test]
fn a_tcp_md5_key_rotated_on_both_sides_takes_effect_without_restarting_herald() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = with_link_addresses(&lab);
    let key_file = node.dir().join("r1.key");
    std::fs::write(&key_file, "first-key\n").unwrap();
    frr.configure(&frr_config(
        300,
        &format!(" neighbor {NODE} password first-key"),
    ))
    .unwrap();
    let password = format!("    password_file: {}\n", key_file.display());
    // Active: herald reads the file before every connection attempt.
    let herald = start_herald(&node, &config_with(&password), services());
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    let pid = herald.pid();
    rotate(&frr, &herald, &key_file, "second-key");

    // Passive: the listener reads the file again and installs the new key.
    std::fs::write(
        node.dir().join("herald.yaml"),
        config_with(&format!("{password}    passive: true\n")),
    )
    .unwrap();
    wait_until(
        BOUND,
        Duration::from_millis(100),
        "the listener",
        || match listening_179(&node).len() {
            1 => Ok(()),
            n => Err(format!("{n}")),
        },
    )
    .unwrap();
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    rotate(&frr, &herald, &key_file, "third-key");
    assert_eq!(herald.pid(), pid);
    assert!(
        herald.log().contains("TCP MD5 key changed; installed"),
        "{}",
        herald.log()
    );
    herald.terminate().unwrap();
}

#[test]
fn a_gateway_peer_gets_its_key_on_the_listener() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = with_link_addresses(&lab);
    let key_file = node.dir().join("r1.key");
    std::fs::write(&key_file, "gateway-key\n").unwrap();
    frr.configure(&frr_config(
        300,
        &format!(" neighbor {NODE} password gateway-key"),
    ))
    .unwrap();
    let config = config_with(&format!(
        "    password_file: {}\n    passive: true\n",
        key_file.display()
    ))
    .replace(
        &format!("    address: {ROUTER}\n"),
        "    address: gateway\n",
    );
    let herald = start_herald(&node, &config, services());
    // No gateway yet: nothing listens.
    std::thread::sleep(Duration::from_secs(2));
    assert!(listening_179(&node).is_empty());
    node.ip(&["route", "add", "default", "via", ROUTER])
        .unwrap();
    // r1 connects with its key; the kernel takes the SYN only because the
    // gateway's key is on the listener.
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    // And a SYN from the gateway without the key never completes.
    let tcp = probe(frr.namespace(), ROUTER, bgp_port(NODE), 64);
    assert_eq!(tcp, Probe::NoAnswer);
    herald.terminate().unwrap();
}

#[test]
fn a_peer_added_by_a_reload_gets_its_key_and_a_removed_one_loses_it() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = with_link_addresses(&lab);
    let key_file = node.dir().join("r1.key");
    std::fs::write(&key_file, "reload-key\n").unwrap();
    frr.configure(&frr_config(
        300,
        &format!(" neighbor {NODE} password reload-key"),
    ))
    .unwrap();
    // A second passive peer (no router behind it) keeps the listening
    // socket open after r1 is removed, so the test sees r1's key go.
    let other = "    passive: true\n";
    let keep = format!(
        "  - name: spare\n    address: 192.0.2.9\n    asn: 64513\n    bfd: {{enabled: false}}\n{other}"
    );
    let without_r1 = format!(
        "asn: 64601\nrouter_id: {NODE}\ninterface: lo\nadmin_listen: {ADMIN}\npools:\n  - name: public\n    cidrs: [203.0.113.0/24]\npeers:\n{keep}"
    );
    let herald = start_herald(&node, &without_r1, services());
    wait_until(
        BOUND,
        Duration::from_millis(100),
        "the listener",
        || match listening_179(&node).len() {
            1 => Ok(()),
            n => Err(format!("{n}")),
        },
    )
    .unwrap();
    // Without r1's key on the socket, a plain SYN from r1 completes.
    assert_eq!(
        probe(frr.namespace(), ROUTER, bgp_port(NODE), 64),
        Probe::Completed
    );

    // The reload adds r1 (passive, with a key): FRR establishes.
    let with_r1 = config_with(&format!(
        "    password_file: {}\n    passive: true\n",
        key_file.display()
    ));
    let with_both = format!("{with_r1}{keep}");
    std::fs::write(node.dir().join("herald.yaml"), &with_both).unwrap();
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    assert_eq!(
        probe(frr.namespace(), ROUTER, bgp_port(NODE), 64),
        Probe::NoAnswer,
        "r1's key is on the listener: a SYN without it is dropped"
    );

    // The reload removes r1: its key leaves the socket.
    std::fs::write(node.dir().join("herald.yaml"), &without_r1).unwrap();
    wait_until(
        BOUND,
        Duration::from_millis(300),
        "r1's key removed",
        || match probe(frr.namespace(), ROUTER, bgp_port(NODE), 64) {
            Probe::Completed => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .unwrap();
    herald.terminate().unwrap();
}
