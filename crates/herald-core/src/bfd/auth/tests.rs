//! Vectors (digests computed apart from this code, with Python's hashlib,
//! over the packet laid out by hand from RFC 5880 §4.3/§4.4) and the
//! receive rules of §6.7.

use std::time::Duration;

use super::*;
use crate::bfd::packet::{Diagnostic, State};

/// Up, A bit, Detect Mult 3, discriminators 0x11111111 / 0x22222222,
/// 50 ms both ways, no echo.
fn packet() -> ControlPacket {
    ControlPacket {
        diag: Diagnostic::None,
        state: State::Up,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: 0x1111_1111,
        your_discriminator: 0x2222_2222,
        desired_min_tx: Duration::from_millis(50),
        required_min_rx: Duration::from_millis(50),
        required_min_echo_rx: Duration::ZERO,
        auth: None,
    }
}

const HEADER: [u8; 24] = [
    0x20, 0xc4, 0x03, 0x00, // vers 1 | Up, A | mult 3 | length (per type)
    0x11, 0x11, 0x11, 0x11, // my discriminator
    0x22, 0x22, 0x22, 0x22, // your discriminator
    0x00, 0x00, 0xc3, 0x50, // desired min tx 50,000 us
    0x00, 0x00, 0xc3, 0x50, // required min rx 50,000 us
    0x00, 0x00, 0x00, 0x00, // no echo
];

/// The key `secret`, key id 1, sequence 0x01020304: the digest of each type.
const VECTORS: [(AuthType, &[u8]); 4] = [
    (
        AuthType::KeyedMd5,
        &[
            0x2e, 0xdb, 0x66, 0x49, 0x95, 0x57, 0xb1, 0x6e, 0x05, 0x38, 0xaf, 0x83, 0x86, 0x27,
            0x0f, 0x7b,
        ],
    ),
    (
        AuthType::MeticulousKeyedMd5,
        &[
            0xe3, 0xa3, 0xf2, 0x24, 0xb3, 0x2c, 0xac, 0x98, 0xc0, 0x05, 0xa4, 0xc8, 0xb6, 0x52,
            0x64, 0xf1,
        ],
    ),
    (
        AuthType::KeyedSha1,
        &[
            0x3f, 0x03, 0xf1, 0x0d, 0x99, 0x9b, 0x02, 0x1a, 0xd9, 0x75, 0xa4, 0xca, 0x66, 0x29,
            0xc9, 0xaa, 0x63, 0xc5, 0x61, 0x8e,
        ],
    ),
    (
        AuthType::MeticulousKeyedSha1,
        &[
            0xfe, 0x5a, 0x5f, 0xe1, 0x9c, 0x13, 0xaa, 0xdc, 0x54, 0x8d, 0xe7, 0x90, 0x15, 0x9e,
            0x2b, 0x3f, 0xba, 0xdf, 0x21, 0xd8,
        ],
    ),
];

fn config(auth_type: AuthType) -> AuthConfig {
    AuthConfig::new(auth_type, 1, b"secret".to_vec()).unwrap()
}

/// The wire bytes of a packet signed with `secret`, key id 1, sequence
/// 0x01020304.
fn expected_wire(auth_type: AuthType, digest: &[u8]) -> Vec<u8> {
    let auth_len = 8 + digest.len();
    let mut wire = HEADER.to_vec();
    wire[3] = (24 + auth_len) as u8;
    wire.extend_from_slice(&[
        auth_type.code(),
        auth_len as u8,
        1,
        0,
        0x01,
        0x02,
        0x03,
        0x04,
    ]);
    wire.extend_from_slice(digest);
    wire
}

#[test]
fn signed_packets_match_the_vectors_byte_for_byte() {
    for (auth_type, digest) in VECTORS {
        let mut signer = Authenticator::new(config(auth_type), 0x0102_0304);
        let mut sent = packet();
        signer.sign(&mut sent);
        assert_eq!(
            sent.encode().unwrap(),
            expected_wire(auth_type, digest),
            "{auth_type}"
        );
    }
}

#[test]
fn the_vectors_verify_and_a_changed_byte_anywhere_does_not() {
    for (auth_type, digest) in VECTORS {
        let wire = expected_wire(auth_type, digest);
        let received = ControlPacket::decode(&wire).unwrap();
        assert_eq!(
            Authenticator::new(config(auth_type), 7).verify(&received),
            Ok(()),
            "{auth_type}"
        );
        // Byte 27 is the section's Reserved byte, "ignored on receipt"
        // (§4.3, §4.4): the check hashes it as zero, as it was sent.
        for index in (0..wire.len()).filter(|i| *i != 27) {
            let mut tampered = wire.clone();
            tampered[index] ^= 0x01;
            // Some changes make the packet malformed: the decoder refuses
            // those before authentication.
            let Ok(tampered) = ControlPacket::decode(&tampered) else {
                continue;
            };
            assert!(
                Authenticator::new(config(auth_type), 7)
                    .verify(&tampered)
                    .is_err(),
                "{auth_type}: byte {index} changed and still verified"
            );
        }
    }
}

#[test]
fn simple_password_carries_the_key_and_checks_it() {
    let mut signer = Authenticator::new(config(AuthType::SimplePassword), 0);
    let mut sent = packet();
    signer.sign(&mut sent);
    let wire = sent.encode().unwrap();
    assert_eq!(&wire[24..], &[1, 9, 1, b's', b'e', b'c', b'r', b'e', b't']);
    let received = ControlPacket::decode(&wire).unwrap();
    let mut receiver = Authenticator::new(config(AuthType::SimplePassword), 0);
    assert_eq!(receiver.verify(&received), Ok(()));
    let other = AuthConfig::new(AuthType::SimplePassword, 1, b"secreT".to_vec()).unwrap();
    assert_eq!(
        Authenticator::new(other, 0).verify(&received),
        Err(AuthFailure::WrongDigest)
    );
}

/// One packet signed with `sender`, checked with `receiver`.
fn exchange(sender: &AuthConfig, receiver: &AuthConfig) -> Result<(), AuthFailure> {
    let mut signer = Authenticator::new(sender.clone(), 99);
    let mut sent = packet();
    signer.sign(&mut sent);
    let received = ControlPacket::decode(&sent.encode().unwrap()).unwrap();
    Authenticator::new(receiver.clone(), 0).verify(&received)
}

#[test]
fn a_wrong_key_key_id_or_type_is_refused_by_reason() {
    for auth_type in AuthType::ALL {
        let ours = config(auth_type);
        let wrong_key = AuthConfig::new(auth_type, 1, b"secrets".to_vec()).unwrap();
        let wrong_id = AuthConfig::new(auth_type, 2, b"secret".to_vec()).unwrap();
        assert_eq!(exchange(&ours, &ours), Ok(()), "{auth_type}");
        assert_eq!(
            exchange(&wrong_key, &ours),
            Err(AuthFailure::WrongDigest),
            "{auth_type}"
        );
        assert_eq!(
            exchange(&wrong_id, &ours),
            Err(AuthFailure::WrongKeyId),
            "{auth_type}"
        );
        for other in AuthType::ALL.into_iter().filter(|t| *t != auth_type) {
            assert_eq!(
                exchange(&config(other), &ours),
                Err(AuthFailure::WrongType),
                "{other} to {auth_type}"
            );
        }
    }
}

#[test]
fn a_packet_without_authentication_is_refused_when_it_is_in_use() {
    let mut receiver = Authenticator::new(config(AuthType::KeyedSha1), 0);
    assert_eq!(receiver.verify(&packet()), Err(AuthFailure::Missing));
}

/// Signed packets from one sender, decoded as received.
fn stream(auth_type: AuthType, count: usize) -> Vec<ControlPacket> {
    let mut signer = Authenticator::new(config(auth_type), u32::MAX - 2);
    (0..count)
        .map(|_| {
            let mut sent = packet();
            signer.sign(&mut sent);
            ControlPacket::decode(&sent.encode().unwrap()).unwrap()
        })
        .collect()
}

#[test]
fn meticulous_types_refuse_a_replayed_packet() {
    for auth_type in [AuthType::MeticulousKeyedMd5, AuthType::MeticulousKeyedSha1] {
        // The sequence wraps from u32::MAX to 0 inside the stream.
        let packets = stream(auth_type, 5);
        let mut receiver = Authenticator::new(config(auth_type), 0);
        for packet in &packets {
            assert_eq!(receiver.verify(packet), Ok(()), "{auth_type}");
        }
        assert_eq!(
            receiver.verify(&packets[4]),
            Err(AuthFailure::Sequence),
            "{auth_type}: the same packet twice"
        );
        assert_eq!(
            receiver.verify(&packets[1]),
            Err(AuthFailure::Sequence),
            "{auth_type}: an older packet"
        );
    }
}

#[test]
fn keyed_types_accept_a_repeated_sequence_but_not_an_older_one() {
    for auth_type in [AuthType::KeyedMd5, AuthType::KeyedSha1] {
        let packets = stream(auth_type, 3);
        let mut receiver = Authenticator::new(config(auth_type), 0);
        assert_eq!(receiver.verify(&packets[1]), Ok(()));
        assert_eq!(receiver.verify(&packets[1]), Ok(()), "{auth_type}: repeat");
        assert_eq!(
            receiver.verify(&packets[0]),
            Err(AuthFailure::Sequence),
            "{auth_type}: older"
        );
    }
}

#[test]
fn a_sequence_too_far_ahead_is_refused_until_the_sequence_is_forgotten() {
    let auth_type = AuthType::MeticulousKeyedSha1;
    // Detect Mult 3: a window of 9 packets.
    let packets = stream(auth_type, 12);
    let mut receiver = Authenticator::new(config(auth_type), 0);
    assert_eq!(receiver.verify(&packets[0]), Ok(()));
    assert_eq!(receiver.verify(&packets[9]), Ok(()), "9 ahead: inside");
    assert_eq!(
        receiver.verify(&packets[0]),
        Err(AuthFailure::Sequence),
        "far behind"
    );
    let mut receiver = Authenticator::new(config(auth_type), 0);
    assert_eq!(receiver.verify(&packets[0]), Ok(()));
    assert_eq!(
        receiver.verify(&packets[10]),
        Err(AuthFailure::Sequence),
        "10 ahead: outside"
    );
    receiver.forget_sequence();
    assert_eq!(receiver.verify(&packets[10]), Ok(()));
}

#[test]
fn a_failed_packet_leaves_the_sequence_as_it_was() {
    let auth_type = AuthType::MeticulousKeyedMd5;
    let packets = stream(auth_type, 3);
    let mut receiver = Authenticator::new(config(auth_type), 0);
    assert_eq!(receiver.verify(&packets[0]), Ok(()));
    let mut forged = packets[2].clone();
    forged.state = State::Down;
    assert_eq!(receiver.verify(&forged), Err(AuthFailure::WrongDigest));
    assert_eq!(receiver.verify(&packets[1]), Ok(()));
}

#[test]
fn keys_outside_the_types_length_are_refused_naming_the_key() {
    for auth_type in AuthType::ALL {
        let longest = auth_type.max_key_len();
        assert!(AuthConfig::new(auth_type, 1, vec![b'k'; longest]).is_ok());
        for bad in [0, longest + 1] {
            let error = AuthConfig::new(auth_type, 1, vec![b'k'; bad]).unwrap_err();
            assert!(error.to_string().starts_with("key: "), "{error}");
        }
    }
}

#[test]
fn the_key_never_shows_in_debug_output() {
    let text = format!("{:?}", config(AuthType::KeyedSha1));
    assert!(!text.contains("secret"), "{text}");
}

#[test]
fn names_round_trip() {
    for auth_type in AuthType::ALL {
        assert_eq!(AuthType::from_name(auth_type.name()), Some(auth_type));
    }
    assert_eq!(AuthType::from_name("sha1"), None);
}
