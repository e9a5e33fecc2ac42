//! A hostile peer speaking raw bytes over loopback TCP: malformed OPENs,
//! malformed UPDATEs and NOTIFICATIONs. herald must answer each with the
//! NOTIFICATION the RFCs prescribe (or none, where RFC 7606 keeps the
//! session), close, and come back with a new connection after its backoff;
//! it never crashes.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use herald::bgp::fsm::State;
use herald::bgp::metrics::Metrics;
use herald::bgp::packet::{AfiSafi, Capability, Message, Notification, Open};
use herald::bgp::session::{SessionConfig, SessionHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const BOUND: Duration = Duration::from_secs(10);

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xFF; 16];
    v.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    v.push(kind);
    v.extend_from_slice(body);
    v
}

fn valid_open(asn: u32, hold: u16) -> Vec<u8> {
    Message::Open(Open::new(
        asn,
        hold,
        Ipv4Addr::new(192, 0, 2, 99),
        vec![
            Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
            Capability::RouteRefresh,
        ],
    ))
    .to_bytes()
    .unwrap()
}

/// Reads one message: (type, body); `None` when herald closed the stream.
async fn read_message(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut header = [0u8; 19];
    timeout(BOUND, stream.read_exact(&mut header))
        .await
        .expect("herald spoke in time")
        .ok()?;
    let len = usize::from(u16::from_be_bytes([header[16], header[17]]));
    let mut body = vec![0u8; len - 19];
    timeout(BOUND, stream.read_exact(&mut body))
        .await
        .expect("body in time")
        .ok()?;
    Some((header[18], body))
}

/// Reads until a NOTIFICATION arrives, and then until the stream closes.
async fn expect_notification(stream: &mut TcpStream) -> Notification {
    loop {
        let (kind, body) = read_message(stream)
            .await
            .expect("a NOTIFICATION before the close");
        if kind == 3 {
            let n = Notification::new(body[0], body[1], body[2..].to_vec());
            assert!(
                read_message(stream).await.is_none(),
                "herald closes after {n}"
            );
            return n;
        }
    }
}

struct Hostile {
    listener: TcpListener,
    herald: SessionHandle,
}

impl Hostile {
    async fn new(local: Ipv4Addr) -> Self {
        let listener = TcpListener::bind((local, 0)).await.unwrap();
        let cfg = SessionConfig::new(
            format!("hostile-{local}"),
            listener.local_addr().unwrap(),
            65001,
            65002,
            Ipv4Addr::new(192, 0, 2, 1),
        )
        .hold_time(9)
        .source(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .connect_retry(Duration::from_secs(5))
        .backoff(Duration::from_millis(100), Duration::from_secs(1));
        let herald = SessionHandle::spawn(cfg, Arc::new(Metrics::default()));
        Hostile { listener, herald }
    }

    /// Accepts herald's next connection and reads its OPEN.
    async fn accept(&self) -> TcpStream {
        let (mut stream, _) = timeout(BOUND, self.listener.accept())
            .await
            .expect("herald (re)connects in time")
            .unwrap();
        let (kind, _) = read_message(&mut stream).await.expect("herald's OPEN");
        assert_eq!(kind, 1);
        stream
    }

    /// Accepts and completes the OPEN exchange.
    async fn establish(&self) -> TcpStream {
        let mut stream = self.accept().await;
        stream.write_all(&valid_open(65002, 9)).await.unwrap();
        stream.write_all(&frame(4, &[])).await.unwrap();
        let (kind, _) = read_message(&mut stream).await.unwrap();
        assert_eq!(kind, 4, "KEEPALIVE after our OPEN");
        let mut rx = self.herald.watch_status();
        timeout(BOUND, rx.wait_for(|s| s.state == State::Established))
            .await
            .unwrap()
            .unwrap();
        stream
    }
}

async fn after_open(local: Ipv4Addr, open: Vec<u8>) -> (Notification, Hostile) {
    let hostile = Hostile::new(local).await;
    let mut stream = hostile.accept().await;
    stream.write_all(&open).await.unwrap();
    let n = expect_notification(&mut stream).await;
    (n, hostile)
}

#[tokio::test]
async fn malformed_opens_get_open_message_errors_and_herald_reconnects() {
    let mut version3 = valid_open(65002, 9);
    version3[19] = 3;
    let (n, hostile) = after_open(Ipv4Addr::new(127, 0, 1, 1), version3).await;
    assert_eq!(n, Notification::new(2, 1, vec![0, 4]));
    // Backoff, then a fresh connection and OPEN.
    let _again = hostile.accept().await;
    assert!(
        hostile
            .herald
            .status()
            .last_error
            .unwrap()
            .contains("unsupported version")
    );

    let (n, _) = after_open(Ipv4Addr::new(127, 0, 1, 2), valid_open(65002, 2)).await;
    assert_eq!((n.code, n.subcode), (2, 6));
    let (n, _) = after_open(Ipv4Addr::new(127, 0, 1, 3), valid_open(65009, 9)).await;
    assert_eq!((n.code, n.subcode), (2, 2));
    let mut bad_marker = valid_open(65002, 9);
    bad_marker[0] = 0;
    let (n, _) = after_open(Ipv4Addr::new(127, 0, 1, 4), bad_marker).await;
    assert_eq!((n.code, n.subcode), (1, 1));
    let (n, _) = after_open(Ipv4Addr::new(127, 0, 1, 5), frame(9, &[])).await;
    assert_eq!(n, Notification::new(1, 3, vec![9]));
}

const GOOD_ATTRS: [u8; 20] = [
    0x40, 1, 1, 0, // ORIGIN
    0x40, 2, 6, 2, 1, 0, 0, 0xFD, 0xEA, // AS_PATH 65002
    0x40, 3, 4, 192, 0, 2, 99, // NEXT_HOP
];

fn update(attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0];
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(attrs);
    body.extend_from_slice(nlri);
    frame(2, &body)
}

async fn after_update(local: Ipv4Addr, message: Vec<u8>) -> Notification {
    let hostile = Hostile::new(local).await;
    let mut stream = hostile.establish().await;
    stream.write_all(&message).await.unwrap();
    let n = expect_notification(&mut stream).await;
    let _again = hostile.accept().await;
    n
}

#[tokio::test]
async fn malformed_updates_get_update_message_errors_and_herald_reconnects() {
    let mut unknown = GOOD_ATTRS.to_vec();
    unknown.extend_from_slice(&[0x40, 99, 1, 7]);
    let n = after_update(
        Ipv4Addr::new(127, 0, 2, 1),
        update(&unknown, &[32, 203, 0, 113, 10]),
    )
    .await;
    assert_eq!(n, Notification::new(3, 2, vec![0x40, 99, 1, 7]));

    let n = after_update(
        Ipv4Addr::new(127, 0, 2, 2),
        update(&GOOD_ATTRS, &[32, 203, 0]),
    )
    .await;
    assert_eq!((n.code, n.subcode), (3, 10));

    // Total path attribute length beyond the message.
    let mut overlong = update(&GOOD_ATTRS, &[]);
    overlong[21..23].copy_from_slice(&200u16.to_be_bytes());
    let n = after_update(Ipv4Addr::new(127, 0, 2, 3), overlong).await;
    assert_eq!((n.code, n.subcode), (3, 1));

    // MP_REACH_NLRI with a next hop length of 5.
    let mut bad_mp = GOOD_ATTRS[..13].to_vec();
    bad_mp.extend_from_slice(&[0x80, 14, 10, 0, 2, 1, 5, 1, 2, 3, 4, 5, 0]);
    let n = after_update(Ipv4Addr::new(127, 0, 2, 4), update(&bad_mp, &[])).await;
    assert_eq!((n.code, n.subcode), (3, 9));
}

#[tokio::test]
async fn treat_as_withdraw_keeps_the_session_and_counts_the_update() {
    let hostile = Hostile::new(Ipv4Addr::new(127, 0, 3, 1)).await;
    let mut stream = hostile.establish().await;
    let mut bad_origin = GOOD_ATTRS.to_vec();
    bad_origin[2] = 2;
    bad_origin.insert(4, 0);
    stream
        .write_all(&update(&bad_origin, &[32, 203, 0, 113, 10]))
        .await
        .unwrap();
    let mut rx = hostile.herald.watch_status();
    timeout(BOUND, rx.wait_for(|s| s.malformed_updates == 1))
        .await
        .unwrap()
        .unwrap();
    // Still up, and nothing was sent back for it.
    stream.write_all(&frame(4, &[])).await.unwrap();
    assert_eq!(hostile.herald.status().state, State::Established);
    assert!(hostile.herald.status().last_error.is_none());
}

#[tokio::test]
async fn a_notification_from_the_peer_is_not_answered_and_herald_reconnects() {
    let hostile = Hostile::new(Ipv4Addr::new(127, 0, 4, 1)).await;
    let mut stream = hostile.establish().await;
    stream.write_all(&frame(3, &[6, 4])).await.unwrap();
    // herald closes without answering with a NOTIFICATION.
    while let Some((kind, _)) = read_message(&mut stream).await {
        assert_ne!(kind, 3, "a NOTIFICATION is never answered with one");
    }
    let _again = hostile.accept().await;
    let last = hostile.herald.status().last_error.unwrap();
    assert!(last.contains("administrative reset"), "{last}");
}
