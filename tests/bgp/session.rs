//! End to end between two of herald's own sessions over loopback TCP (with
//! TCP MD5): announcements arrive with End-of-RIB, changes send only the
//! difference, graceful shutdown re-announces, BFD Down and an
//! administrative stop reach the peer as the right Cease, and the session
//! comes back after the short backoff. Also: the listener closes a held
//! peer's connection (strict BFD mode) at once.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use herald::bgp::fsm::State;
use herald::bgp::metrics::Metrics;
use herald::bgp::session::{SessionConfig, SessionHandle, SessionStatus};
use herald::bgp::speaker::{Incoming, serve_listener};
use herald::bgp::transport::BgpListener;
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
    let listener = BgpListener::bind(SocketAddr::new(IpAddr::V4(B), 0)).unwrap();
    listener.set_md5_key(IpAddr::V4(A), KEY).unwrap();
    let port = listener.local_addr().unwrap().port();

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
    let server = tokio::spawn(serve_listener(listener, Arc::clone(&table)));

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
    server.abort();
}

#[tokio::test]
async fn the_listener_closes_a_connection_from_a_held_peer_at_once() {
    use tokio::io::AsyncReadExt;
    let listener = BgpListener::bind(SocketAddr::new(IpAddr::V4(B), 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let table = Arc::new(RwLock::new(HashMap::from([(
        IpAddr::V4(A),
        Incoming::Held,
    )])));
    let server = tokio::spawn(serve_listener(listener, Arc::clone(&table)));

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
    server.abort();
}
