//! BFD authentication (RFC 5880 §6.7) against BIRD 2, which implements it
//! (FRR's bfdd does not): herald's runtime in one namespace, BIRD in the
//! other, joined by a veth pair.
//!
//! - Every keyed type (and Simple Password) comes Up with matching keys.
//! - A wrong key, key id or type keeps the session Down on both sides, and
//!   herald counts every refused packet by reason.
//! - A change of type or key done on both sides by reload (BIRD
//!   `configure`, herald `change_auth`, which is what the agent's reload
//!   calls) keeps the session Up; BIRD alone changing its key takes it
//!   Down, so the reloads are known to reach BIRD.
//! - A forged packet without the key, sent with the router's address and
//!   TTL 255, is dropped and counted, and the session stays Up.
//!
//! Built on herald-testnet's lab; needs root and BIRD (skipped with a
//! reason, or failed under CI=true).

use std::time::Duration;

use crate::attack::{Forgery, forge};
use crate::support::*;
use herald::bfd::SessionConfig;
use herald::bfd::auth::{AuthConfig, AuthType};
use herald::bfd::metrics::Metrics;
use herald::bfd::packet::State;
use herald::bfd::runtime::{BfdRuntime, SessionHandle, SessionSpec};
use herald_testnet::Bird;

const KEY: &str = "herald-bfd-key-1";
const OTHER_KEY: &str = "herald-bfd-key-2";

fn config() -> SessionConfig {
    SessionConfig {
        desired_min_tx: Duration::from_millis(50),
        required_min_rx: Duration::from_millis(50),
        detect_mult: 3,
    }
}

/// BIRD's words for a type.
fn bird_type(auth_type: AuthType) -> &'static str {
    match auth_type {
        AuthType::SimplePassword => "simple",
        AuthType::KeyedMd5 => "keyed md5",
        AuthType::MeticulousKeyedMd5 => "meticulous keyed md5",
        AuthType::KeyedSha1 => "keyed sha1",
        AuthType::MeticulousKeyedSha1 => "meticulous keyed sha1",
    }
}

/// BIRD in namespace a with one single-hop session to b, 50 ms x 3,
/// authenticated with `auth_type`, `key` and key id `key_id`.
fn bird_config(auth_type: AuthType, key_id: u8, key: &str) -> String {
    format!(
        "router id {A4};\n\
         protocol device {{}}\n\
         protocol bfd bfd1 {{\n\
         \x20 interface \"{A_LINK}\" {{\n\
         \x20   min rx interval 50 ms; min tx interval 50 ms; multiplier 3;\n\
         \x20   authentication {auth};\n\
         \x20   password \"{key}\" {{ id {key_id}; }};\n\
         \x20 }};\n\
         \x20 neighbor {peer} dev \"{A_LINK}\" local {A4};\n\
         }}\n",
        auth = bird_type(auth_type),
        peer = B4,
    )
}

fn auth(auth_type: AuthType, key_id: u8, key: &str) -> Option<AuthConfig> {
    Some(AuthConfig::new(auth_type, key_id, key.as_bytes().to_vec()).expect("a valid key"))
}

struct Herald {
    runtime: BfdRuntime,
    metrics: Metrics,
    session: SessionHandle,
}

/// herald's single-hop IPv4 session from b to BIRD on a.
fn herald_in(lab: &Lab, auth: Option<AuthConfig>) -> Herald {
    let metrics = Metrics::default();
    let runtime = runtime_in(&lab.b_ns, &metrics);
    let mut spec = SessionSpec::single_hop(ip(A4), config());
    spec.local = Some(ip(B4));
    spec.interface = Some(B_LINK.to_string());
    spec.auth = auth;
    let session = runtime.add_session(spec).expect("session");
    Herald {
        runtime,
        metrics,
        session,
    }
}

const REASONS: [&str; 6] = [
    "auth_missing",
    "auth_wrong_type",
    "auth_wrong_key_id",
    "auth_wrong_digest",
    "auth_sequence",
    "auth_not_configured",
];

impl Herald {
    fn drops(&self) -> String {
        REASONS
            .iter()
            .map(|r| (r, self.metrics.dropped_count(r)))
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{r}={n} "))
            .collect()
    }

    fn wait_up(&self, what: &str, bird: &Bird) {
        if let Err(status) = wait_status(&self.session.status, Duration::from_secs(20), |s| {
            s.state == State::Up
        }) {
            panic!(
                "{what}: {status:?}; drops: {}; BIRD: {}",
                self.drops(),
                bird.birdc(&["show", "bfd", "sessions"]).unwrap_or_default()
            );
        }
    }
}

fn bird_state(bird: &Bird) -> String {
    let text = bird.birdc(&["show", "bfd", "sessions"]).unwrap_or_default();
    text.lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.first() == Some(&B4)).then(|| fields.get(2).map(|s| s.to_string()))
        })
        .flatten()
        .unwrap_or_default()
}

#[test]
fn bird_and_herald_come_up_with_every_authentication_type() {
    let Some(lab) = Lab::start() else { return };
    let first = AuthType::MeticulousKeyedSha1;
    let bird = Bird::start(&lab.a_ns, &bird_config(first, 1, KEY)).expect("bird");
    let herald = herald_in(&lab, auth(first, 1, KEY));
    herald.wait_up("meticulous keyed sha1", &bird);
    assert!(
        wait_until(Duration::from_secs(10), || bird_state(&bird) == "Up"),
        "BIRD's view: {}",
        bird_state(&bird)
    );
    // The other types, each changed on both sides by reload.
    for auth_type in [
        AuthType::KeyedSha1,
        AuthType::MeticulousKeyedMd5,
        AuthType::KeyedMd5,
        AuthType::SimplePassword,
    ] {
        bird.reconfigure(&bird_config(auth_type, 1, KEY))
            .expect("bird configure");
        herald
            .runtime
            .change_auth(herald.session.id, auth(auth_type, 1, KEY))
            .expect("change_auth");
        // Up, with packets of the new type accepted for a while.
        std::thread::sleep(Duration::from_millis(500));
        herald.wait_up(auth_type.name(), &bird);
        let up_since = herald.session.status.borrow().transitions;
        std::thread::sleep(Duration::from_millis(500));
        let status = herald.session.status.borrow().clone();
        assert_eq!(status.state, State::Up, "{auth_type}: {status:?}");
        assert_eq!(
            status.transitions,
            up_since,
            "{auth_type}: flapped after coming Up; drops {}",
            herald.drops()
        );
        println!(
            "bfd_auth: {auth_type} Up with BIRD ({} transitions so far; drops {})",
            status.transitions,
            herald.drops()
        );
    }
    // A new key on both sides by reload: still Up.
    let last = AuthType::SimplePassword;
    bird.reconfigure(&bird_config(last, 1, OTHER_KEY))
        .expect("bird configure");
    herald
        .runtime
        .change_auth(herald.session.id, auth(last, 1, OTHER_KEY))
        .expect("change_auth");
    std::thread::sleep(Duration::from_millis(500));
    herald.wait_up("after the key change", &bird);
    // And BIRD alone going back to the old key takes the session down:
    // each reload above really reached BIRD.
    let wrong_before = herald.metrics.dropped_count("auth_wrong_digest");
    bird.reconfigure(&bird_config(last, 1, KEY))
        .expect("bird configure");
    if let Err(status) = wait_status(&herald.session.status, Duration::from_secs(5), |s| {
        s.state == State::Down
    }) {
        panic!("BIRD's new key did not take the session down: {status:?}");
    }
    assert!(herald.metrics.dropped_count("auth_wrong_digest") > wrong_before);
}

#[test]
fn a_wrong_key_key_id_or_type_keeps_the_session_down_and_is_counted() {
    let Some(lab) = Lab::start() else { return };
    let bird = Bird::start(
        &lab.a_ns,
        &bird_config(AuthType::MeticulousKeyedSha1, 1, KEY),
    )
    .expect("bird");
    for (what, ours, reason) in [
        (
            "wrong key",
            auth(AuthType::MeticulousKeyedSha1, 1, OTHER_KEY),
            "auth_wrong_digest",
        ),
        (
            "wrong key id",
            auth(AuthType::MeticulousKeyedSha1, 2, KEY),
            "auth_wrong_key_id",
        ),
        (
            "wrong type",
            auth(AuthType::MeticulousKeyedMd5, 1, KEY),
            "auth_wrong_type",
        ),
        ("no authentication", None, "auth_not_configured"),
    ] {
        let herald = herald_in(&lab, ours);
        // BIRD sends Down at 1 s while not Up: 3 s is three of its packets.
        std::thread::sleep(Duration::from_secs(3));
        let status = herald.session.status.borrow().clone();
        assert_eq!(status.state, State::Down, "{what}: {status:?}");
        assert_eq!(status.transitions, 0, "{what}: {status:?}");
        assert_ne!(bird_state(&bird), "Up", "{what}: BIRD came Up");
        assert!(
            herald.metrics.dropped_count(reason) >= 1,
            "{what}: nothing counted as {reason}; drops {}",
            herald.drops()
        );
        println!(
            "bfd_auth: {what}: Down on both sides; drops {}",
            herald.drops()
        );
        drop(herald);
    }
}

#[test]
fn a_forged_packet_without_the_key_is_dropped_counted_and_changes_nothing() {
    let Some(lab) = Lab::start() else { return };
    let auth_type = AuthType::MeticulousKeyedSha1;
    let bird = Bird::start(&lab.a_ns, &bird_config(auth_type, 1, KEY)).expect("bird");
    let herald = herald_in(&lab, auth(auth_type, 1, KEY));
    herald.wait_up("before the attack", &bird);
    let before = herald.session.status.borrow().transitions;
    let discriminator = herald.session.status.borrow().local_discriminator;
    // From the router's own namespace, with the router's address: the
    // strongest position short of holding the key.
    let sent = forge(
        &lab.a_ns,
        A4.parse().expect("a literal"),
        B4.parse().expect("a literal"),
        vec![
            Forgery {
                state: State::Down,
                your_discriminator: 0,
            },
            Forgery {
                state: State::Down,
                your_discriminator: discriminator,
            },
        ],
        20,
        Duration::from_secs(3),
    );
    std::thread::sleep(Duration::from_millis(300));
    let status = herald.session.status.borrow().clone();
    let missing = herald.metrics.dropped_count("auth_missing");
    println!(
        "bfd_auth: {sent} forged packets without the key: {missing} dropped as auth_missing; \
         session {:?}, transitions {before} -> {}",
        status.state, status.transitions
    );
    assert_eq!(status.state, State::Up);
    assert_eq!(
        status.transitions, before,
        "the forgeries changed the session"
    );
    assert!(missing >= sent, "{missing} of {sent} forgeries counted");
}
