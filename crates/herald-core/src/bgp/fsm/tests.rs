use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::*;
use crate::bgp::packet::{HeaderError, RouteRefresh};

const LOCAL_ID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

fn config() -> FsmConfig {
    let mut cfg = FsmConfig::new(65001, 65002, LOCAL_ID);
    cfg.hold_time = 9;
    cfg
}

fn peer_open(asn: u32, hold_time: u16, id: [u8; 4]) -> Message {
    Message::Open(Open::new(
        asn,
        hold_time,
        Ipv4Addr::from(id),
        vec![
            Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
            Capability::Multiprotocol(AfiSafi::IPV6_UNICAST),
            Capability::RouteRefresh,
        ],
    ))
}

struct Session {
    fsm: Fsm,
    now: Instant,
}

impl Session {
    fn new(cfg: FsmConfig) -> Self {
        Session {
            fsm: Fsm::new(cfg),
            now: Instant::now(),
        }
    }

    fn feed(&mut self, input: Input) -> Vec<Action> {
        self.fsm.handle(self.now, input)
    }

    fn after(&mut self, d: Duration) {
        self.now += d;
    }

    fn established(cfg: FsmConfig) -> Self {
        let mut s = Session::new(cfg);
        s.feed(Input::ManualStart);
        s.feed(Input::TcpConnected(Direction::Outgoing));
        s.feed(Input::Received(
            Direction::Outgoing,
            peer_open(65002, 30, [192, 0, 2, 20]),
        ));
        let acts = s.feed(Input::Received(Direction::Outgoing, Message::Keepalive));
        assert!(acts.iter().any(|a| matches!(a, Action::SessionUp(_))));
        assert_eq!(s.fsm.state(), State::Established);
        s
    }
}

fn sent(acts: &[Action]) -> Vec<(Direction, Message)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Send(d, m) => Some((*d, m.clone())),
            _ => None,
        })
        .collect()
}

fn notification(acts: &[Action]) -> Notification {
    sent(acts)
        .into_iter()
        .find_map(|(_, m)| match m {
            Message::Notification(n) => Some(n),
            _ => None,
        })
        .expect("a NOTIFICATION was sent")
}

fn armed(acts: &[Action], timer: Timer) -> Option<Instant> {
    acts.iter().rev().find_map(|a| match a {
        Action::ArmTimer(t, at) if *t == timer => Some(*at),
        _ => None,
    })
}

fn down_reason(acts: &[Action]) -> Option<DownReason> {
    acts.iter().find_map(|a| match a {
        Action::SessionDown(r) => Some(r.clone()),
        _ => None,
    })
}

#[test]
fn manual_start_connects_out_and_arms_connect_retry() {
    let mut s = Session::new(config());
    assert_eq!(s.fsm.state(), State::Idle);
    let acts = s.feed(Input::ManualStart);
    assert!(acts.contains(&Action::OpenTcp));
    assert!(armed(&acts, Timer::ConnectRetry).is_some());
    assert_eq!(s.fsm.state(), State::Connect);
    assert!(acts.contains(&Action::StateChanged {
        from: State::Idle,
        to: State::Connect
    }));
}

#[test]
fn passive_start_waits_in_active_without_connecting() {
    let mut cfg = config();
    cfg.passive = true;
    let mut s = Session::new(cfg);
    let acts = s.feed(Input::ManualStart);
    assert!(!acts.contains(&Action::OpenTcp));
    assert_eq!(s.fsm.state(), State::Active);
    assert!(s.fsm.accepts_incoming());
    let acts = s.feed(Input::TimerExpired(Timer::ConnectRetry));
    assert!(!acts.contains(&Action::OpenTcp));
    assert_eq!(s.fsm.state(), State::Active);
}

#[test]
fn incoming_connection_in_active_state_sends_open() {
    let mut cfg = config();
    cfg.passive = true;
    let mut s = Session::new(cfg);
    s.feed(Input::ManualStart);
    let acts = s.feed(Input::TcpConnected(Direction::Incoming));
    let msgs = sent(&acts);
    assert!(matches!(
        &msgs[..],
        [(Direction::Incoming, Message::Open(_))]
    ));
    assert_eq!(
        armed(&acts, Timer::HoldTimer(Direction::Incoming)),
        Some(s.now + OPEN_HOLD_TIME)
    );
    assert_eq!(s.fsm.state(), State::OpenSent);
}

#[test]
fn open_exchange_reaches_established() {
    let mut s = Session::new(config());
    s.feed(Input::ManualStart);
    let acts = s.feed(Input::TcpConnected(Direction::Outgoing));
    let Message::Open(ours) = &sent(&acts)[0].1 else {
        panic!("no OPEN")
    };
    assert_eq!(ours.asn(), 65001);
    assert_eq!(ours.hold_time, 9);
    assert_eq!(s.fsm.state(), State::OpenSent);
    let acts = s.feed(Input::Received(
        Direction::Outgoing,
        peer_open(65002, 30, [192, 0, 2, 20]),
    ));
    assert_eq!(sent(&acts), vec![(Direction::Outgoing, Message::Keepalive)]);
    assert_eq!(s.fsm.state(), State::OpenConfirm);
    let acts = s.feed(Input::Received(Direction::Outgoing, Message::Keepalive));
    let neg = acts
        .iter()
        .find_map(|a| match a {
            Action::SessionUp(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(neg.hold_time, 9, "the smaller of 9 and 30");
    assert_eq!(neg.keepalive, Duration::from_secs(3));
    assert_eq!(
        neg.families,
        vec![AfiSafi::IPV4_UNICAST, AfiSafi::IPV6_UNICAST]
    );
    assert!(neg.route_refresh);
    assert_eq!(neg.max_message_len(), 4096);
    assert_eq!(s.fsm.state(), State::Established);
}

#[test]
fn negotiated_hold_time_is_the_smaller_of_both() {
    let mut s = Session::new(config());
    s.feed(Input::ManualStart);
    s.feed(Input::TcpConnected(Direction::Outgoing));
    let acts = s.feed(Input::Received(
        Direction::Outgoing,
        peer_open(65002, 6, [192, 0, 2, 20]),
    ));
    assert_eq!(
        armed(&acts, Timer::HoldTimer(Direction::Outgoing)),
        Some(s.now + Duration::from_secs(6))
    );
    let ka = armed(&acts, Timer::KeepaliveTimer(Direction::Outgoing)).unwrap();
    assert!(ka <= s.now + Duration::from_secs(2) && ka >= s.now + Duration::from_millis(1500));
}

#[test]
fn hold_time_zero_runs_no_keepalive_or_hold_timer() {
    let mut s = Session::new(config());
    s.feed(Input::ManualStart);
    s.feed(Input::TcpConnected(Direction::Outgoing));
    let acts = s.feed(Input::Received(
        Direction::Outgoing,
        peer_open(65002, 0, [192, 0, 2, 20]),
    ));
    assert!(armed(&acts, Timer::KeepaliveTimer(Direction::Outgoing)).is_none());
    assert!(acts.contains(&Action::CancelTimer(Timer::HoldTimer(Direction::Outgoing))));
    assert_eq!(s.fsm.state(), State::OpenConfirm);
}

#[test]
fn hold_timer_expiry_sends_notification_and_returns_to_idle() {
    let mut s = Session::established(config());
    s.after(Duration::from_secs(9));
    let acts = s.feed(Input::TimerExpired(Timer::HoldTimer(Direction::Outgoing)));
    assert_eq!(notification(&acts), Notification::new(4, 0, vec![]));
    assert!(acts.contains(&Action::CloseTcp(Direction::Outgoing)));
    assert_eq!(down_reason(&acts), Some(DownReason::HoldTimerExpired));
    assert!(armed(&acts, Timer::IdleHold).is_some());
    assert_eq!(s.fsm.state(), State::Idle);
}

#[test]
fn keepalive_timer_sends_keepalive_and_rearms_with_jitter() {
    let mut s = Session::established(config());
    let acts = s.feed(Input::TimerExpired(Timer::KeepaliveTimer(
        Direction::Outgoing,
    )));
    assert_eq!(sent(&acts), vec![(Direction::Outgoing, Message::Keepalive)]);
    let at = armed(&acts, Timer::KeepaliveTimer(Direction::Outgoing)).unwrap();
    assert!(at >= s.now + Duration::from_millis(2250) && at <= s.now + Duration::from_secs(3));
}

#[test]
fn keepalive_and_update_restart_the_hold_timer() {
    let mut s = Session::established(config());
    s.after(Duration::from_secs(5));
    let acts = s.feed(Input::Received(Direction::Outgoing, Message::Keepalive));
    assert_eq!(
        armed(&acts, Timer::HoldTimer(Direction::Outgoing)),
        Some(s.now + Duration::from_secs(9))
    );
    s.after(Duration::from_secs(5));
    let acts = s.feed(Input::Received(
        Direction::Outgoing,
        Message::Update(Box::default()),
    ));
    assert_eq!(
        armed(&acts, Timer::HoldTimer(Direction::Outgoing)),
        Some(s.now + Duration::from_secs(9))
    );
    assert!(acts.iter().any(|a| matches!(a, Action::UpdateReceived(_))));
}

fn open_refused_with(open: Message) -> (Notification, State) {
    let mut s = Session::new(config());
    s.feed(Input::ManualStart);
    s.feed(Input::TcpConnected(Direction::Outgoing));
    let acts = s.feed(Input::Received(Direction::Outgoing, open));
    assert!(acts.contains(&Action::CloseTcp(Direction::Outgoing)));
    (notification(&acts), s.fsm.state())
}

#[test]
fn bad_peer_as_is_refused_with_open_error_subcode_2() {
    let (n, state) = open_refused_with(peer_open(65003, 30, [192, 0, 2, 20]));
    assert_eq!((n.code, n.subcode), (2, 2));
    assert_eq!(state, State::Idle);
}

#[test]
fn hold_time_of_one_or_two_seconds_is_refused_with_subcode_6() {
    for hold in [1, 2] {
        let (n, _) = open_refused_with(peer_open(65002, hold, [192, 0, 2, 20]));
        assert_eq!((n.code, n.subcode), (2, 6), "hold {hold}");
    }
}

#[test]
fn zero_bgp_identifier_is_refused_with_subcode_3() {
    let (n, _) = open_refused_with(peer_open(65002, 30, [0, 0, 0, 0]));
    assert_eq!((n.code, n.subcode), (2, 3));
}

#[test]
fn internal_peer_with_our_identifier_is_refused_with_subcode_3() {
    let mut cfg = config();
    cfg.peer_as = 65001;
    let mut s = Session::new(cfg);
    s.feed(Input::ManualStart);
    s.feed(Input::TcpConnected(Direction::Outgoing));
    let acts = s.feed(Input::Received(
        Direction::Outgoing,
        peer_open(65001, 30, LOCAL_ID.octets()),
    ));
    assert_eq!(notification(&acts).subcode, 3);
}

#[test]
fn missing_four_octet_as_capability_is_refused_with_subcode_7_naming_it() {
    let open = Open {
        my_as: 65002,
        hold_time: 30,
        bgp_id: Ipv4Addr::new(192, 0, 2, 20),
        capabilities: vec![Capability::Multiprotocol(AfiSafi::IPV4_UNICAST)],
    };
    let (n, _) = open_refused_with(Message::Open(open));
    assert_eq!((n.code, n.subcode), (2, 7));
    assert_eq!(n.data, vec![65, 4, 0, 0, 0xFD, 0xE9]);
}

#[test]
fn no_common_family_is_refused_with_unsupported_capability() {
    let open = Open::new(
        65002,
        30,
        Ipv4Addr::new(192, 0, 2, 20),
        vec![Capability::Multiprotocol(AfiSafi { afi: 25, safi: 70 })],
    );
    let (n, _) = open_refused_with(Message::Open(open));
    assert_eq!((n.code, n.subcode), (2, 7));
    assert_eq!(&n.data[..6], &[1, 4, 0, 1, 0, 1]);
}

#[test]
fn unexpected_update_in_open_sent_is_an_fsm_error() {
    let mut s = Session::new(config());
    s.feed(Input::ManualStart);
    s.feed(Input::TcpConnected(Direction::Outgoing));
    let acts = s.feed(Input::Received(
        Direction::Outgoing,
        Message::Update(Box::default()),
    ));
    assert_eq!(notification(&acts), Notification::new(5, 1, vec![]));
    assert_eq!(s.fsm.state(), State::Idle);
}

#[test]
fn open_in_established_is_an_fsm_error() {
    let mut s = Session::established(config());
    let acts = s.feed(Input::Received(
        Direction::Outgoing,
        peer_open(65002, 30, [192, 0, 2, 20]),
    ));
    assert_eq!(notification(&acts), Notification::new(5, 3, vec![]));
    assert!(matches!(
        down_reason(&acts),
        Some(DownReason::NotificationSent(_))
    ));
}

#[test]
fn decode_error_sends_its_notification_and_closes() {
    let mut s = Session::established(config());
    let acts = s.feed(Input::DecodeFailed(
        Direction::Outgoing,
        HeaderError::BadLength(5000).into(),
    ));
    assert_eq!(
        notification(&acts),
        Notification::new(1, 2, vec![0x13, 0x88])
    );
    assert!(acts.contains(&Action::CloseTcp(Direction::Outgoing)));
    assert_eq!(s.fsm.state(), State::Idle);
}

#[test]
fn notification_from_peer_returns_to_idle_and_backs_off() {
    let mut s = Session::established(config());
    let n = Notification::cease_with_communication(cease::ADMINISTRATIVE_SHUTDOWN, "bye");
    let acts = s.feed(Input::Received(
        Direction::Outgoing,
        Message::Notification(n.clone()),
    ));
    assert!(sent(&acts).is_empty(), "a NOTIFICATION is never answered");
    assert_eq!(
        down_reason(&acts),
        Some(DownReason::NotificationReceived(n))
    );
    assert!(armed(&acts, Timer::IdleHold).is_some());
    assert!(!s.fsm.accepts_incoming(), "Idle refuses connections");
    let acts = s.feed(Input::TimerExpired(Timer::IdleHold));
    assert!(acts.contains(&Action::OpenTcp));
    assert_eq!(s.fsm.state(), State::Connect);
}

#[test]
fn route_refresh_for_a_negotiated_family_is_requested_and_others_ignored() {
    let mut s = Session::established(config());
    let acts = s.feed(Input::Received(
        Direction::Outgoing,
        Message::RouteRefresh(RouteRefresh::new(AfiSafi::IPV6_UNICAST)),
    ));
    assert!(acts.contains(&Action::RouteRefreshRequested(AfiSafi::IPV6_UNICAST)));
    let acts = s.feed(Input::Received(
        Direction::Outgoing,
        Message::RouteRefresh(RouteRefresh::new(AfiSafi { afi: 1, safi: 128 })),
    ));
    assert!(
        !acts
            .iter()
            .any(|a| matches!(a, Action::RouteRefreshRequested(_)))
    );
    assert_eq!(s.fsm.state(), State::Established);
}

fn both_connections_in_open_sent(local_id: Ipv4Addr) -> Session {
    let mut cfg = config();
    cfg.router_id = local_id;
    let mut s = Session::new(cfg);
    s.feed(Input::ManualStart);
    s.feed(Input::TcpConnected(Direction::Outgoing));
    assert!(s.fsm.accepts_incoming());
    let acts = s.feed(Input::TcpConnected(Direction::Incoming));
    assert!(matches!(
        &sent(&acts)[..],
        [(Direction::Incoming, Message::Open(_))]
    ));
    s
}

#[test]
fn collision_keeps_connection_of_higher_router_id() {
    // Peer 192.0.2.20 is higher than us (192.0.2.10): its connection (our
    // incoming) survives, even though the OPEN came first on our outgoing.
    let mut s = both_connections_in_open_sent(LOCAL_ID);
    let acts = s.feed(Input::Received(
        Direction::Outgoing,
        peer_open(65002, 30, [192, 0, 2, 20]),
    ));
    assert_eq!(notification(&acts), Notification::new(6, 7, vec![]));
    assert_eq!(sent(&acts)[0].0, Direction::Outgoing);
    assert!(acts.contains(&Action::CloseTcp(Direction::Outgoing)));
    assert_eq!(s.fsm.state(), State::OpenSent);
    s.feed(Input::Received(
        Direction::Incoming,
        peer_open(65002, 30, [192, 0, 2, 20]),
    ));
    let acts = s.feed(Input::Received(Direction::Incoming, Message::Keepalive));
    assert_eq!(s.fsm.established().unwrap().direction, Direction::Incoming);
    assert!(acts.iter().any(|a| matches!(a, Action::SessionUp(_))));

    // We are higher (192.0.2.30): our outgoing connection survives and the
    // incoming one is closed as soon as the peer's identifier is known.
    let mut s = both_connections_in_open_sent(Ipv4Addr::new(192, 0, 2, 30));
    let acts = s.feed(Input::Received(
        Direction::Outgoing,
        peer_open(65002, 30, [192, 0, 2, 20]),
    ));
    assert_eq!(
        sent(&acts),
        vec![
            (
                Direction::Incoming,
                Message::Notification(Notification::new(6, 7, vec![]))
            ),
            (Direction::Outgoing, Message::Keepalive),
        ]
    );
    assert!(acts.contains(&Action::CloseTcp(Direction::Incoming)));
    assert_eq!(s.fsm.state(), State::OpenConfirm);
    // The other order: OPEN first on the incoming connection, which loses.
    let mut s = both_connections_in_open_sent(Ipv4Addr::new(192, 0, 2, 30));
    let acts = s.feed(Input::Received(
        Direction::Incoming,
        peer_open(65002, 30, [192, 0, 2, 20]),
    ));
    assert_eq!(
        sent(&acts),
        vec![(
            Direction::Incoming,
            Message::Notification(Notification::new(6, 7, vec![]))
        )]
    );
    assert_eq!(s.fsm.state(), State::OpenSent);
}

#[test]
fn incoming_connection_is_refused_while_established() {
    let mut s = Session::established(config());
    assert!(!s.fsm.accepts_incoming());
    let acts = s.feed(Input::TcpConnected(Direction::Incoming));
    assert_eq!(acts, vec![Action::CloseTcp(Direction::Incoming)]);
    assert_eq!(s.fsm.state(), State::Established);
}

#[test]
fn connect_retry_expiry_retries_the_outgoing_connection() {
    let mut s = Session::new(config());
    s.feed(Input::ManualStart);
    s.after(Duration::from_secs(30));
    let acts = s.feed(Input::TimerExpired(Timer::ConnectRetry));
    assert_eq!(acts[0], Action::CloseTcp(Direction::Outgoing));
    assert!(acts.contains(&Action::OpenTcp));
    assert!(armed(&acts, Timer::ConnectRetry).unwrap() > s.now);
}

#[test]
fn connect_failures_back_off_exponentially_with_jitter_up_to_the_maximum() {
    let mut cfg = config();
    cfg.backoff_initial = Duration::from_secs(1);
    cfg.backoff_max = Duration::from_secs(8);
    let mut s = Session::new(cfg);
    s.feed(Input::ManualStart);
    let mut rests = Vec::new();
    for _ in 0..6 {
        let acts = s.feed(Input::TcpFailed(Direction::Outgoing));
        assert_eq!(s.fsm.state(), State::Idle);
        let at = armed(&acts, Timer::IdleHold).unwrap();
        rests.push(at - s.now);
        s.now = at;
        let acts = s.feed(Input::TimerExpired(Timer::IdleHold));
        assert!(acts.contains(&Action::OpenTcp));
    }
    for (rest, base) in rests.iter().zip([1u64, 2, 4, 8, 8, 8]) {
        let base = Duration::from_secs(base);
        assert!(*rest >= base.mul_f64(0.75) && *rest <= base, "{rests:?}");
    }
}

#[test]
fn a_stable_session_resets_the_backoff() {
    let mut cfg = config();
    cfg.backoff_initial = Duration::from_secs(1);
    let mut s = Session::established(cfg);
    s.after(STABLE_AFTER);
    let acts = s.feed(Input::TcpFailed(Direction::Outgoing));
    assert!(armed(&acts, Timer::IdleHold).unwrap() <= s.now + Duration::from_secs(1));
}

#[test]
fn bfd_down_sends_cease_10_and_reconnects_after_a_short_rest() {
    let mut cfg = config();
    cfg.backoff_initial = Duration::from_millis(500);
    let mut s = Session::established(cfg);
    let acts = s.feed(Input::BfdDown);
    assert_eq!(notification(&acts), Notification::new(6, 10, vec![]));
    assert_eq!(down_reason(&acts), Some(DownReason::BfdDown));
    assert!(armed(&acts, Timer::IdleHold).unwrap() <= s.now + Duration::from_millis(500));
    assert_eq!(s.fsm.state(), State::Idle);
    s.after(Duration::from_millis(500));
    let acts = s.feed(Input::TimerExpired(Timer::IdleHold));
    assert!(acts.contains(&Action::OpenTcp));
}

#[test]
fn admin_stop_sends_cease_with_shutdown_communication_and_stays_idle() {
    let mut s = Session::established(config());
    let acts = s.feed(Input::ManualStop {
        communication: "node drained".into(),
    });
    let n = notification(&acts);
    assert_eq!((n.code, n.subcode), (6, 2));
    assert_eq!(n.shutdown_communication().as_deref(), Some("node drained"));
    assert_eq!(down_reason(&acts), Some(DownReason::AdminStop));
    assert!(armed(&acts, Timer::IdleHold).is_none());
    assert_eq!(s.fsm.state(), State::Idle);
    let acts = s.feed(Input::TimerExpired(Timer::IdleHold));
    assert!(acts.is_empty());
    let acts = s.feed(Input::ManualStart);
    assert!(acts.contains(&Action::OpenTcp));
}

#[test]
fn admin_reset_sends_cease_4_and_reconnects() {
    let mut s = Session::established(config());
    let acts = s.feed(Input::AdminReset {
        communication: String::new(),
    });
    assert_eq!(notification(&acts), Notification::new(6, 4, vec![]));
    assert!(armed(&acts, Timer::IdleHold).is_some());
}

#[test]
fn graceful_restart_bit_is_advertised_until_the_first_established_session() {
    let mut cfg = config();
    cfg.graceful_restart = Some(GracefulRestart {
        restart_time: 120,
        restarting: true,
        forwarding_preserved: true,
    });
    let gr_of = |acts: &[Action]| {
        sent(acts).into_iter().find_map(|(_, m)| match m {
            Message::Open(o) => o.capabilities.into_iter().find_map(|c| match c {
                Capability::GracefulRestart(gr) => Some(gr),
                _ => None,
            }),
            _ => None,
        })
    };
    let mut s = Session::new(cfg);
    s.feed(Input::ManualStart);
    let gr = gr_of(&s.feed(Input::TcpConnected(Direction::Outgoing))).unwrap();
    assert!(gr.restart_state);
    assert_eq!(gr.restart_time, 120);
    assert_eq!(
        gr.families,
        vec![(AfiSafi::IPV4_UNICAST, true), (AfiSafi::IPV6_UNICAST, true)]
    );
    s.feed(Input::Received(
        Direction::Outgoing,
        peer_open(65002, 30, [192, 0, 2, 20]),
    ));
    s.feed(Input::Received(Direction::Outgoing, Message::Keepalive));
    s.feed(Input::TcpFailed(Direction::Outgoing));
    s.feed(Input::TimerExpired(Timer::IdleHold));
    let gr = gr_of(&s.feed(Input::TcpConnected(Direction::Outgoing))).unwrap();
    assert!(!gr.restart_state);
}

#[test]
fn a_failed_second_connection_leaves_the_first_alone() {
    let mut s = both_connections_in_open_sent(LOCAL_ID);
    let acts = s.feed(Input::TcpFailed(Direction::Incoming));
    assert!(down_reason(&acts).is_none());
    assert_eq!(s.fsm.state(), State::OpenSent);
}

#[test]
fn peer_reachable_ends_a_grown_backoff_at_once() {
    let mut cfg = config();
    cfg.backoff_initial = Duration::from_secs(1);
    cfg.backoff_max = Duration::from_secs(60);
    let mut s = Session::new(cfg);
    s.feed(Input::ManualStart);
    // Four failed connects: the rest has grown to 8 s (jittered).
    for _ in 0..4 {
        let acts = s.feed(Input::TcpFailed(Direction::Outgoing));
        let at = armed(&acts, Timer::IdleHold).expect("resting");
        s.now = at;
        s.feed(Input::TimerExpired(Timer::IdleHold));
    }
    let acts = s.feed(Input::TcpFailed(Direction::Outgoing));
    let rest = armed(&acts, Timer::IdleHold).unwrap() - s.now;
    assert!(rest >= Duration::from_secs(12), "{rest:?}");
    assert_eq!(s.fsm.state(), State::Idle);

    let acts = s.feed(Input::PeerReachable);
    assert!(acts.contains(&Action::CancelTimer(Timer::IdleHold)));
    assert!(acts.contains(&Action::OpenTcp));
    assert_eq!(s.fsm.state(), State::Connect);
    // The backoff starts over: the next failure rests about 1 s.
    let acts = s.feed(Input::TcpFailed(Direction::Outgoing));
    assert!(armed(&acts, Timer::IdleHold).unwrap() - s.now <= Duration::from_secs(1));
}

#[test]
fn peer_reachable_restarts_a_connect_in_flight() {
    let mut s = Session::new(config());
    s.feed(Input::ManualStart);
    assert_eq!(s.fsm.state(), State::Connect);
    let acts = s.feed(Input::PeerReachable);
    let close = acts
        .iter()
        .position(|a| *a == Action::CloseTcp(Direction::Outgoing))
        .expect("the old attempt closed");
    let open = acts.iter().position(|a| *a == Action::OpenTcp).unwrap();
    assert!(close < open);
}

#[test]
fn peer_reachable_leaves_an_open_exchange_and_a_stopped_session_alone() {
    let mut s = Session::established(config());
    assert!(s.feed(Input::PeerReachable).is_empty());
    assert_eq!(s.fsm.state(), State::Established);

    let mut s = Session::new(config());
    s.feed(Input::ManualStart);
    s.feed(Input::TcpConnected(Direction::Outgoing));
    assert!(s.feed(Input::PeerReachable).is_empty());
    assert_eq!(s.fsm.state(), State::OpenSent);

    let mut s = Session::new(config());
    assert!(s.feed(Input::PeerReachable).is_empty());
    s.feed(Input::ManualStart);
    s.feed(Input::ManualStop {
        communication: String::new(),
    });
    assert!(s.feed(Input::PeerReachable).is_empty());
    assert_eq!(s.fsm.state(), State::Idle);
}

#[test]
fn a_late_hold_timer_leaves_a_connect_in_flight_alone() {
    let mut s = Session::new(config());
    s.feed(Input::ManualStart);
    assert_eq!(s.fsm.state(), State::Connect);
    let acts = s.feed(Input::TimerExpired(Timer::HoldTimer(Direction::Outgoing)));
    assert!(sent(&acts).is_empty(), "{acts:?}");
    assert_eq!(s.fsm.state(), State::Connect);
}
