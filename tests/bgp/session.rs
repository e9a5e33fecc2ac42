//! End to end between two of herald's own sessions over loopback TCP (with
//! TCP MD5): announcements arrive with End-of-RIB, changes send only the
//! difference, graceful shutdown re-announces, BFD Down and an
//! administrative stop reach the peer as the right Cease, and the session
//! comes back after the short backoff. Also the listeners: a held peer's
//! connection (strict BFD mode) is closed at once; a socket binds only its
//! peers' local address, exists only while they do, and refuses (and
//! counts) other sources; a key file rotated in place reaches the socket,
//! and a removed peer's key leaves it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use herald::bgp::fsm::State;
use herald::bgp::listener::{Incoming, ListenPeer, Listeners};
use herald::bgp::metrics::Metrics;
use herald::bgp::session::{SessionConfig, SessionHandle, SessionStatus};
use herald::bgp::transport::Md5Key;
use herald::model::{Announcement, Community, RouteAttributes};

const A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const KEY: &[u8] = b"loopback md5 key";

fn config(name: &str, peer: SocketAddr, local_as: u32, peer_as: u32, id: [u8; 4]) -> SessionConfig {
    SessionConfig::new(name, peer, local_as, peer_as, Ipv4Addr::from(id))
        .hold_time(9)
        .md5_key(Some(KEY.to_vec()))
        .connect_retry(Duration::from_secs(5))
        .backoff(Duration::from_millis(200), Duration::from_secs(2))
}

async fn wait_for(
    handle: &SessionHandle,
    what: &str,
    mut done: impl FnMut(&SessionStatus) -> bool,
) {
    let mut rx = handle.watch_status();
    let waited = tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|s| done(s))).await;
    assert!(
        matches!(waited, Ok(Ok(_))),
        "{}: gave up waiting for {what}; status {:#?}",
        handle.name(),
        handle.status()
    );
}

fn announcements(v4: u32, v6: u32) -> Vec<Announcement> {
    let mut attributes = RouteAttributes::default();
    attributes.communities.insert(Community::new(65000, 100));
    (0..v4)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0xC612_0000 + i)))
        .chain((0..v6).map(|i| IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) + u128::from(i)))))
        .map(|address| Announcement {
            address,
            attributes: attributes.clone(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_herald_sessions_exchange_routes_and_ceases_over_loopback() {
    let metrics = Arc::new(Metrics::default());

    // B: passive, like a router waiting for herald.
    let b_cfg = config(
        "a",
        SocketAddr::new(IpAddr::V4(A), 179),
        65002,
        65001,
        [192, 0, 2, 2],
    )
    .passive();
    let b = SessionHandle::spawn(b_cfg, Arc::clone(&metrics));
    let table = Arc::new(RwLock::new(HashMap::from([(
        IpAddr::V4(A),
        Incoming::Session(b.incoming_sender()),
    )])));
    let mut listeners = Listeners::new(0, Arc::clone(&metrics), Arc::clone(&table));
    listeners
        .add_peer(
            IpAddr::V4(B),
            IpAddr::V4(A),
            ListenPeer {
                key: Some(Md5Key::Fixed(KEY.to_vec())),
                min_ttl: None,
            },
        )
        .unwrap();
    let port = listeners.local_addr(IpAddr::V4(B)).unwrap().port();

    // A: herald, connecting out from 127.0.0.1.
    let a_cfg = config(
        "b",
        SocketAddr::new(IpAddr::V4(B), port),
        65001,
        65002,
        [192, 0, 2, 1],
    )
    .source(IpAddr::V4(A))
    .next_hop_v6("2001:db8::1".parse().unwrap(), None);
    let a = SessionHandle::spawn(a_cfg, Arc::clone(&metrics));

    // Established before the agent said what to announce: End-of-RIB
    // waits for the initial announcements (RFC 4724 §4.1).
    wait_for(&b, "Established", |s| s.state == State::Established).await;
    wait_for(&a, "Established", |s| s.state == State::Established).await;
    assert!(b.status().end_of_rib_received.is_empty());
    let routes = announcements(1000, 10);
    a.announce(&routes);
    wait_for(&b, "1010 prefixes and End-of-RIB for both families", |s| {
        s.prefixes_received == 1010 && s.end_of_rib_received.len() == 2
    })
    .await;
    let status = a.status();
    assert_eq!(status.state, State::Established);
    assert_eq!(status.prefixes_announced, 1010);
    assert_eq!(status.hold_time, Some(9));

    // Only the difference: 10 withdrawals, nothing re-announced.
    a.announce(&routes[10..]);
    wait_for(&b, "10 withdrawals", |s| s.withdrawals_received == 10).await;
    assert_eq!(b.status().prefixes_received, 1010);

    // Graceful shutdown re-announces all 1000 remaining routes.
    a.set_graceful_shutdown(true);
    wait_for(&b, "1000 re-announcements", |s| s.prefixes_received == 2010).await;

    // BFD Down: A closes with Cease 10, B records it, and they meet again.
    a.bfd_down();
    wait_for(&b, "a BFD Down Cease", |s| {
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("BFD down (6/10)"))
    })
    .await;
    wait_for(&b, "Established again after BFD Down", |s| {
        s.state == State::Established && s.end_of_rib_received.len() == 2
    })
    .await;
    wait_for(&a, "Established again after BFD Down", |s| {
        s.state == State::Established
    })
    .await;
    assert_eq!(a.status().prefixes_announced, 1000);

    // An administrative stop carries its shutdown communication.
    a.stop("node drained for maintenance");
    wait_for(&b, "the shutdown communication", |s| {
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("node drained for maintenance"))
    })
    .await;
    wait_for(&a, "Idle", |s| s.state == State::Idle).await;
    drop(listeners);
}

#[tokio::test]
async fn the_listener_closes_a_connection_from_a_held_peer_at_once() {
    use tokio::io::AsyncReadExt;
    let table = Arc::new(RwLock::new(HashMap::from([(
        IpAddr::V4(A),
        Incoming::Held,
    )])));
    let metrics = Arc::new(Metrics::default());
    let mut listeners = Listeners::new(0, Arc::clone(&metrics), Arc::clone(&table));
    let open = ListenPeer {
        key: None,
        min_ttl: None,
    };
    listeners
        .add_peer(IpAddr::V4(B), IpAddr::V4(A), open)
        .unwrap();
    let port = listeners.local_addr(IpAddr::V4(B)).unwrap().port();

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(A), 0)).unwrap();
    let mut stream = socket
        .connect(SocketAddr::new(IpAddr::V4(B), port))
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
    // Closed without a byte: no OPEN, no NOTIFICATION (an Idle session's refusal).
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the held peer's connection was not closed: {read:?}"
    );
    assert_eq!(refused(&metrics, "held"), 1);
}

fn refused(metrics: &Metrics, reason: &str) -> u64 {
    metrics
        .connections_refused
        .get_or_create(&herald::bgp::metrics::RefusedLabels {
            reason: reason.to_string(),
        })
        .get()
}

/// Connects from `from` to `to` and reads: `Ok(0)`, an error or a timeout
/// all mean the listener did not keep the connection.
async fn closed_at_once(from: Ipv4Addr, to: SocketAddr) -> bool {
    use tokio::io::AsyncReadExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    let Ok(mut stream) = socket.connect(to).await else {
        return true;
    };
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
    matches!(read, Ok(Ok(0)) | Ok(Err(_)))
}

#[tokio::test]
async fn a_listener_binds_only_the_local_address_of_its_peers_and_refuses_other_sources() {
    const C: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
    let metrics = Arc::new(Metrics::default());
    let table = Arc::new(RwLock::new(HashMap::new()));
    let mut listeners = Listeners::new(0, Arc::clone(&metrics), Arc::clone(&table));
    assert!(
        listeners.bound().is_empty(),
        "nothing listens before a peer needs it"
    );
    let open = ListenPeer {
        key: None,
        min_ttl: None,
    };
    listeners
        .add_peer(IpAddr::V4(B), IpAddr::V4(A), open.clone())
        .unwrap();
    let bound = listeners.bound();
    assert_eq!(bound.len(), 1);
    assert_eq!(
        bound[0].ip(),
        IpAddr::V4(B),
        "bound to the local address only"
    );
    let port = bound[0].port();
    // Another local address of the node: nothing listens there.
    let elsewhere = tokio::net::TcpStream::connect(SocketAddr::new(IpAddr::V4(C), port)).await;
    assert!(elsewhere.is_err(), "{elsewhere:?}");
    // A host that is not the peer: closed at once, counted.
    assert!(closed_at_once(C, SocketAddr::new(IpAddr::V4(B), port)).await);
    assert!(closed_at_once(C, SocketAddr::new(IpAddr::V4(B), port)).await);
    assert_eq!(refused(&metrics, "not_a_peer"), 2);
    // The last peer gone: the socket closes.
    listeners.remove_peer(IpAddr::V4(A));
    assert!(listeners.bound().is_empty());
    let gone = tokio::net::TcpStream::connect(SocketAddr::new(IpAddr::V4(B), port)).await;
    assert!(gone.is_err(), "{gone:?}");
}

#[tokio::test]
async fn a_rotated_key_file_is_installed_on_the_listener_and_a_removed_peer_loses_its_key() {
    let dir = std::env::temp_dir().join(format!("herald-listener-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("key");
    std::fs::write(&file, b"first key").unwrap();
    let read = file.clone();
    let key = Md5Key::read(move || std::fs::read(&read).map_err(|e| e.to_string()));
    let metrics = Arc::new(Metrics::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let table = Arc::new(RwLock::new(HashMap::from([(
        IpAddr::V4(A),
        Incoming::Session(tx),
    )])));
    let mut listeners = Listeners::new(0, Arc::clone(&metrics), Arc::clone(&table));
    let spec = ListenPeer {
        key: Some(key),
        min_ttl: None,
    };
    listeners
        .add_peer(IpAddr::V4(B), IpAddr::V4(A), spec.clone())
        .unwrap();
    // A second peer keeps the socket open after A is removed.
    listeners
        .add_peer(
            IpAddr::V4(B),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)),
            spec.clone(),
        )
        .unwrap();
    let to = listeners.local_addr(IpAddr::V4(B)).unwrap();
    let options = |key: Option<&[u8]>| herald::bgp::transport::SocketOptions {
        ttl: herald::bgp::transport::TtlPolicy::new(1, false, false),
        md5_key: key.map(<[u8]>::to_vec),
        source: Some(IpAddr::V4(A)),
    };
    let connect = |key: Option<&'static [u8]>| async move {
        herald::bgp::transport::connect(to, &options(key), Duration::from_millis(1500)).await
    };
    connect(Some(b"first key"))
        .await
        .expect("the first key connects");
    assert!(rx.recv().await.is_some(), "handed to the session");
    assert!(connect(Some(b"second key")).await.is_err());

    std::fs::write(&file, b"second key").unwrap();
    tokio::time::sleep(herald::bgp::listener::KEY_REFRESH * 2).await;
    connect(Some(b"second key"))
        .await
        .expect("the rotated key connects without a restart");
    assert!(
        connect(Some(b"first key")).await.is_err(),
        "the old key no longer does"
    );

    // Removed: no key for A on the socket any more, so a connection without
    // one completes (and is refused by herald as not a peer).
    listeners.remove_peer(IpAddr::V4(A));
    connect(None)
        .await
        .expect("without a key installed the handshake completes");
    std::fs::remove_dir_all(&dir).ok();
}
