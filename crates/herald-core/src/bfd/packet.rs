//! The BFD Control packet (RFC 5880 §4): encode, decode and the reception
//! checks of §6.8.6 that need no session.
//!
//! Owns: the wire format. Must not touch: sessions, sockets or clocks; the
//! checks that need a session (does Your Discriminator match one, is
//! authentication in use) belong to the runtime and the session.
//!
//! The decoder never panics on any input: every read is bounds-checked and
//! every malformed packet is a typed [`DecodeError`] (fuzz target
//! `bfd_packet`, and `decode_never_panics_on_random_or_truncated_input`).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       My Discriminator                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Your Discriminator                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Desired Min TX Interval                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                   Required Min RX Interval                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Required Min Echo RX Interval                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! An optional Authentication Section (A bit set) follows:
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Auth Type   |   Auth Len    |    Authentication Data...     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! Simple Password (type 1, §4.2): Auth Key ID (1), Password (1-16).
//! Keyed / Meticulous Keyed MD5 (types 2/3, §4.3): Auth Key ID (1),
//!   Reserved (1), Sequence Number (4), Auth Key/Digest (16); Auth Len 24.
//! Keyed / Meticulous Keyed SHA1 (types 4/5, §4.4): Auth Key ID (1),
//!   Reserved (1), Sequence Number (4), Auth Key/Hash (20); Auth Len 28.
//! ```
//!
//! Intervals are in microseconds on the wire and [`Duration`] here.

use std::fmt;
use std::time::Duration;

/// Length of the mandatory section (no authentication).
pub const MANDATORY_LEN: usize = 24;
/// The only version this codec speaks (RFC 5880 §4.1: "This document defines
/// protocol version 1").
pub const VERSION: u8 = 1;

const FLAG_POLL: u8 = 0x20;
const FLAG_FINAL: u8 = 0x10;
const FLAG_CPI: u8 = 0x08;
const FLAG_AUTH: u8 = 0x04;
const FLAG_DEMAND: u8 = 0x02;
const FLAG_MULTIPOINT: u8 = 0x01;

/// Session state as carried in the Sta field (RFC 5880 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl State {
    fn from_bits(bits: u8) -> State {
        match bits & 0x3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    /// Lower-case name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            State::AdminDown => "admin_down",
            State::Down => "down",
            State::Init => "init",
            State::Up => "up",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Diagnostic code (RFC 5880 §4.1, 5 bits): why the session last changed
/// state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Diagnostic {
    /// 0 No Diagnostic.
    None,
    /// 1 Control Detection Time Expired.
    ControlDetectionTimeExpired,
    /// 2 Echo Function Failed.
    EchoFunctionFailed,
    /// 3 Neighbor Signaled Session Down.
    NeighborSignaledSessionDown,
    /// 4 Forwarding Plane Reset.
    ForwardingPlaneReset,
    /// 5 Path Down.
    PathDown,
    /// 6 Concatenated Path Down.
    ConcatenatedPathDown,
    /// 7 Administratively Down.
    AdministrativelyDown,
    /// 8 Reverse Concatenated Path Down.
    ReverseConcatenatedPathDown,
    /// 9-31: reserved for future use; kept so a packet round-trips.
    Reserved(u8),
}

impl Diagnostic {
    pub fn from_code(code: u8) -> Diagnostic {
        match code & 0x1f {
            0 => Diagnostic::None,
            1 => Diagnostic::ControlDetectionTimeExpired,
            2 => Diagnostic::EchoFunctionFailed,
            3 => Diagnostic::NeighborSignaledSessionDown,
            4 => Diagnostic::ForwardingPlaneReset,
            5 => Diagnostic::PathDown,
            6 => Diagnostic::ConcatenatedPathDown,
            7 => Diagnostic::AdministrativelyDown,
            8 => Diagnostic::ReverseConcatenatedPathDown,
            other => Diagnostic::Reserved(other),
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Diagnostic::None => 0,
            Diagnostic::ControlDetectionTimeExpired => 1,
            Diagnostic::EchoFunctionFailed => 2,
            Diagnostic::NeighborSignaledSessionDown => 3,
            Diagnostic::ForwardingPlaneReset => 4,
            Diagnostic::PathDown => 5,
            Diagnostic::ConcatenatedPathDown => 6,
            Diagnostic::AdministrativelyDown => 7,
            Diagnostic::ReverseConcatenatedPathDown => 8,
            Diagnostic::Reserved(code) => code & 0x1f,
        }
    }

    /// Lower-case name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Diagnostic::None => "none",
            Diagnostic::ControlDetectionTimeExpired => "control_detection_time_expired",
            Diagnostic::EchoFunctionFailed => "echo_function_failed",
            Diagnostic::NeighborSignaledSessionDown => "neighbor_signaled_session_down",
            Diagnostic::ForwardingPlaneReset => "forwarding_plane_reset",
            Diagnostic::PathDown => "path_down",
            Diagnostic::ConcatenatedPathDown => "concatenated_path_down",
            Diagnostic::AdministrativelyDown => "administratively_down",
            Diagnostic::ReverseConcatenatedPathDown => "reverse_concatenated_path_down",
            Diagnostic::Reserved(_) => "reserved",
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.as_str(), self.code())
    }
}

/// The optional Authentication Section (RFC 5880 §4.2-4.4), parsed but not
/// verified: herald runs sessions without authentication, and a packet with
/// the A bit set is then discarded by the session (§6.8.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authentication {
    /// Type 1 (§4.2): the password in clear, 1 to 16 bytes.
    SimplePassword { key_id: u8, password: Vec<u8> },
    /// Types 2 and 3 (§4.3).
    KeyedMd5 {
        meticulous: bool,
        key_id: u8,
        sequence: u32,
        digest: [u8; 16],
    },
    /// Types 4 and 5 (§4.4).
    KeyedSha1 {
        meticulous: bool,
        key_id: u8,
        sequence: u32,
        hash: [u8; 20],
    },
}

impl Authentication {
    /// The Auth Type code.
    pub fn auth_type(&self) -> u8 {
        match self {
            Authentication::SimplePassword { .. } => 1,
            Authentication::KeyedMd5 { meticulous, .. } => 2 + u8::from(*meticulous),
            Authentication::KeyedSha1 { meticulous, .. } => 4 + u8::from(*meticulous),
        }
    }

    /// The Auth Len: the whole section, type and length bytes included.
    pub fn len(&self) -> usize {
        match self {
            Authentication::SimplePassword { password, .. } => 3 + password.len(),
            Authentication::KeyedMd5 { .. } => 24,
            Authentication::KeyedSha1 { .. } => 28,
        }
    }

    /// Never true: a section holds at least its type and length bytes.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn decode(bytes: &[u8]) -> Result<Authentication, DecodeError> {
        let [auth_type, auth_len, ..] = *bytes else {
            return Err(DecodeError::AuthTruncated {
                available: bytes.len(),
            });
        };
        let auth_len = usize::from(auth_len);
        if auth_len > bytes.len() {
            return Err(DecodeError::AuthLengthExceedsPacket {
                auth_len,
                available: bytes.len(),
            });
        }
        let section = &bytes[..auth_len];
        match auth_type {
            1 => {
                // §4.2: "The password is a binary string, and MUST be from 1
                // to 16 bytes in length."
                if !(4..=19).contains(&auth_len) {
                    return Err(DecodeError::BadAuthLength {
                        auth_type,
                        auth_len,
                    });
                }
                Ok(Authentication::SimplePassword {
                    key_id: section[2],
                    password: section[3..].to_vec(),
                })
            }
            2 | 3 => {
                let (key_id, sequence, digest) = keyed(section, auth_type, 24)?;
                Ok(Authentication::KeyedMd5 {
                    meticulous: auth_type == 3,
                    key_id,
                    sequence,
                    digest,
                })
            }
            4 | 5 => {
                let (key_id, sequence, hash) = keyed(section, auth_type, 28)?;
                Ok(Authentication::KeyedSha1 {
                    meticulous: auth_type == 5,
                    key_id,
                    sequence,
                    hash,
                })
            }
            other => Err(DecodeError::UnknownAuthType(other)),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.auth_type());
        // Auth Len fits a byte: at most 28 by construction (a password longer
        // than 16 bytes is refused by `ControlPacket::encode`).
        out.push(self.len() as u8);
        match self {
            Authentication::SimplePassword { key_id, password } => {
                out.push(*key_id);
                out.extend_from_slice(password);
            }
            Authentication::KeyedMd5 {
                key_id,
                sequence,
                digest,
                ..
            } => {
                out.extend_from_slice(&[*key_id, 0]);
                out.extend_from_slice(&sequence.to_be_bytes());
                out.extend_from_slice(digest);
            }
            Authentication::KeyedSha1 {
                key_id,
                sequence,
                hash,
                ..
            } => {
                out.extend_from_slice(&[*key_id, 0]);
                out.extend_from_slice(&sequence.to_be_bytes());
                out.extend_from_slice(hash);
            }
        }
    }
}

/// Key ID, sequence number and digest of a keyed MD5/SHA1 section whose
/// Auth Len must be exactly `expected`.
fn keyed<const N: usize>(
    section: &[u8],
    auth_type: u8,
    expected: usize,
) -> Result<(u8, u32, [u8; N]), DecodeError> {
    if section.len() != expected {
        return Err(DecodeError::BadAuthLength {
            auth_type,
            auth_len: section.len(),
        });
    }
    let sequence = u32::from_be_bytes([section[4], section[5], section[6], section[7]]);
    let mut digest = [0u8; N];
    digest.copy_from_slice(&section[8..8 + N]);
    Ok((section[2], sequence, digest))
}

/// One BFD Control packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlPacket {
    pub diag: Diagnostic,
    pub state: State,
    /// P: the sender asks for verification of a parameter change.
    pub poll: bool,
    /// F: the answer to a Poll.
    pub final_: bool,
    /// C: Control Plane Independent.
    pub control_plane_independent: bool,
    /// D: Demand mode (herald never sets it).
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    pub desired_min_tx: Duration,
    pub required_min_rx: Duration,
    pub required_min_echo_rx: Duration,
    /// Present when the A bit is set.
    pub auth: Option<Authentication>,
}

/// Why a received packet was discarded before reaching a session: one
/// variant per reception check of RFC 5880 §6.8.6, plus malformed
/// authentication sections.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet of {0} bytes is shorter than the 24-byte mandatory section")]
    Truncated(usize),
    #[error("version {0} is not 1")]
    BadVersion(u8),
    #[error("length field {length} is below the minimum of {minimum}")]
    LengthTooShort { length: usize, minimum: usize },
    #[error("length field {length} exceeds the {payload}-byte payload")]
    LengthExceedsPayload { length: usize, payload: usize },
    #[error("detect mult is zero")]
    ZeroDetectMult,
    #[error("multipoint bit is set")]
    Multipoint,
    #[error("my discriminator is zero")]
    ZeroMyDiscriminator,
    #[error("your discriminator is zero while state is {0}")]
    ZeroYourDiscriminator(State),
    #[error("poll and final bits are both set")]
    PollAndFinal,
    #[error("authentication section of {available} bytes is truncated")]
    AuthTruncated { available: usize },
    #[error("auth len {auth_len} exceeds the {available} bytes left in the packet")]
    AuthLengthExceedsPacket { auth_len: usize, available: usize },
    #[error("auth len {auth_len} is invalid for auth type {auth_type}")]
    BadAuthLength { auth_type: u8, auth_len: usize },
    #[error("unknown auth type {0}")]
    UnknownAuthType(u8),
}

impl DecodeError {
    /// Short label for the `reason` of the drop counter.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Truncated(_) => "truncated",
            DecodeError::BadVersion(_) => "bad_version",
            DecodeError::LengthTooShort { .. } => "length_too_short",
            DecodeError::LengthExceedsPayload { .. } => "length_exceeds_payload",
            DecodeError::ZeroDetectMult => "zero_detect_mult",
            DecodeError::Multipoint => "multipoint",
            DecodeError::ZeroMyDiscriminator => "zero_my_discriminator",
            DecodeError::ZeroYourDiscriminator(_) => "zero_your_discriminator",
            DecodeError::PollAndFinal => "poll_and_final",
            DecodeError::AuthTruncated { .. }
            | DecodeError::AuthLengthExceedsPacket { .. }
            | DecodeError::BadAuthLength { .. }
            | DecodeError::UnknownAuthType(_) => "bad_auth_section",
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("simple password of {0} bytes is outside 1..=16")]
    BadPasswordLength(usize),
    #[error("{field} of {value:?} does not fit 32 bits of microseconds")]
    IntervalTooLarge {
        field: &'static str,
        value: Duration,
    },
}

fn micros(field: &'static str, value: Duration) -> Result<u32, EncodeError> {
    u32::try_from(value.as_micros()).map_err(|_| EncodeError::IntervalTooLarge { field, value })
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    // Callers check `bytes.len() >= MANDATORY_LEN` first.
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

impl ControlPacket {
    /// Decode a UDP payload, applying the reception checks of RFC 5880
    /// §6.8.6 that need no session, in the RFC's order.
    pub fn decode(payload: &[u8]) -> Result<ControlPacket, DecodeError> {
        if payload.len() < MANDATORY_LEN {
            return Err(DecodeError::Truncated(payload.len()));
        }
        // "If the version number is not correct (1), the packet MUST be
        // discarded."
        let version = payload[0] >> 5;
        if version != VERSION {
            return Err(DecodeError::BadVersion(version));
        }
        let flags = payload[1];
        let has_auth = flags & FLAG_AUTH != 0;
        let length = usize::from(payload[3]);
        // "If the Length field is less than the minimum correct value (24 if
        // the A bit is clear, or 26 if the A bit is set), the packet MUST be
        // discarded."
        let minimum = if has_auth { 26 } else { MANDATORY_LEN };
        if length < minimum {
            return Err(DecodeError::LengthTooShort { length, minimum });
        }
        // "If the Length field is greater than the payload of the
        // encapsulating protocol, the packet MUST be discarded."
        if length > payload.len() {
            return Err(DecodeError::LengthExceedsPayload {
                length,
                payload: payload.len(),
            });
        }
        // "If the Detect Mult field is zero, the packet MUST be discarded."
        let detect_mult = payload[2];
        if detect_mult == 0 {
            return Err(DecodeError::ZeroDetectMult);
        }
        // "If the Multipoint (M) bit is nonzero, the packet MUST be
        // discarded."
        if flags & FLAG_MULTIPOINT != 0 {
            return Err(DecodeError::Multipoint);
        }
        // "If the My Discriminator field is zero, the packet MUST be
        // discarded."
        let my_discriminator = be_u32(payload, 4);
        if my_discriminator == 0 {
            return Err(DecodeError::ZeroMyDiscriminator);
        }
        // "If the Your Discriminator field is zero and the State field is not
        // Down or AdminDown, the packet MUST be discarded."
        let your_discriminator = be_u32(payload, 8);
        let state = State::from_bits(flags >> 6);
        if your_discriminator == 0 && !matches!(state, State::Down | State::AdminDown) {
            return Err(DecodeError::ZeroYourDiscriminator(state));
        }
        // §6.5: "A BFD Control packet MUST NOT have both the Poll (P) and
        // Final (F) bits set." Such a packet is malformed; drop it.
        let poll = flags & FLAG_POLL != 0;
        let final_ = flags & FLAG_FINAL != 0;
        if poll && final_ {
            return Err(DecodeError::PollAndFinal);
        }
        let auth = if has_auth {
            Some(Authentication::decode(&payload[MANDATORY_LEN..length])?)
        } else {
            None
        };
        Ok(ControlPacket {
            diag: Diagnostic::from_code(payload[0]),
            state,
            poll,
            final_,
            control_plane_independent: flags & FLAG_CPI != 0,
            demand: flags & FLAG_DEMAND != 0,
            detect_mult,
            my_discriminator,
            your_discriminator,
            desired_min_tx: Duration::from_micros(be_u32(payload, 12).into()),
            required_min_rx: Duration::from_micros(be_u32(payload, 16).into()),
            required_min_echo_rx: Duration::from_micros(be_u32(payload, 20).into()),
            auth,
        })
    }

    /// Encode into a fresh buffer (24 bytes, plus the authentication section).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(MANDATORY_LEN);
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Encode into `out`, replacing what it held: a driver that reuses one
    /// buffer allocates nothing per packet. On error `out` is left empty.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.clear();
        if let Some(Authentication::SimplePassword { password, .. }) = &self.auth
            && !(1..=16).contains(&password.len())
        {
            return Err(EncodeError::BadPasswordLength(password.len()));
        }
        let desired_min_tx = micros("desired_min_tx", self.desired_min_tx)?;
        let required_min_rx = micros("required_min_rx", self.required_min_rx)?;
        let required_min_echo_rx = micros("required_min_echo_rx", self.required_min_echo_rx)?;
        let length = MANDATORY_LEN + self.auth.as_ref().map_or(0, Authentication::len);
        let mut flags = (self.state as u8) << 6;
        for (set, bit) in [
            (self.poll, FLAG_POLL),
            (self.final_, FLAG_FINAL),
            (self.control_plane_independent, FLAG_CPI),
            (self.auth.is_some(), FLAG_AUTH),
            (self.demand, FLAG_DEMAND),
        ] {
            if set {
                flags |= bit;
            }
        }
        out.reserve(length);
        out.push((VERSION << 5) | self.diag.code());
        out.push(flags);
        out.push(self.detect_mult);
        // At most 24 + 28.
        out.push(length as u8);
        out.extend_from_slice(&self.my_discriminator.to_be_bytes());
        out.extend_from_slice(&self.your_discriminator.to_be_bytes());
        out.extend_from_slice(&desired_min_tx.to_be_bytes());
        out.extend_from_slice(&required_min_rx.to_be_bytes());
        out.extend_from_slice(&required_min_echo_rx.to_be_bytes());
        if let Some(auth) = &self.auth {
            auth.encode(out);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A packet as FRR bfdd 8.4 sends it when a session starts: version 1,
    /// no diagnostic, Down, Detect Mult 3, its discriminator, Your
    /// Discriminator still 0, the 1 s slow-start intervals of §6.8.3 and a
    /// 50 ms echo receive interval. Built from the RFC layout.
    const FRR_DOWN: [u8; 24] = [
        0x20, 0x40, 0x03, 0x18, // vers 1 diag 0 | Down | mult 3 | len 24
        0x00, 0x00, 0x00, 0x07, // my discriminator 7
        0x00, 0x00, 0x00, 0x00, // your discriminator 0
        0x00, 0x0f, 0x42, 0x40, // desired min tx 1,000,000 us
        0x00, 0x0f, 0x42, 0x40, // required min rx 1,000,000 us
        0x00, 0x00, 0xc3, 0x50, // required min echo rx 50,000 us
    ];

    /// A packet as BIRD 2 sends it once Up with its defaults (rx 10 ms,
    /// tx 100 ms, multiplier 5), polling for a parameter change: Up, P set,
    /// no echo.
    const BIRD_UP_POLL: [u8; 24] = [
        0x20, 0xe0, 0x05, 0x18, // vers 1 diag 0 | Up, P | mult 5 | len 24
        0x9a, 0x3c, 0x11, 0x02, // my discriminator
        0x00, 0x00, 0x00, 0x07, // your discriminator 7
        0x00, 0x01, 0x86, 0xa0, // desired min tx 100,000 us
        0x00, 0x00, 0x27, 0x10, // required min rx 10,000 us
        0x00, 0x00, 0x00, 0x00, // no echo
    ];

    fn frr_down() -> ControlPacket {
        ControlPacket {
            diag: Diagnostic::None,
            state: State::Down,
            poll: false,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: 7,
            your_discriminator: 0,
            desired_min_tx: ms(1000),
            required_min_rx: ms(1000),
            required_min_echo_rx: ms(50),
            auth: None,
        }
    }

    #[test]
    fn frr_down_packet_decodes_and_encodes_to_the_same_bytes() {
        assert_eq!(ControlPacket::decode(&FRR_DOWN), Ok(frr_down()));
        assert_eq!(frr_down().encode().unwrap(), FRR_DOWN);
    }

    #[test]
    fn bird_up_poll_packet_decodes_and_encodes_to_the_same_bytes() {
        let expected = ControlPacket {
            state: State::Up,
            poll: true,
            detect_mult: 5,
            my_discriminator: 0x9a3c_1102,
            your_discriminator: 7,
            desired_min_tx: ms(100),
            required_min_rx: ms(10),
            required_min_echo_rx: Duration::ZERO,
            ..frr_down()
        };
        assert_eq!(ControlPacket::decode(&BIRD_UP_POLL), Ok(expected.clone()));
        assert_eq!(expected.encode().unwrap(), BIRD_UP_POLL);
    }

    #[test]
    fn admin_down_with_diag_7_and_final_round_trips() {
        let packet = ControlPacket {
            diag: Diagnostic::AdministrativelyDown,
            state: State::AdminDown,
            final_: true,
            your_discriminator: 9,
            ..frr_down()
        };
        let bytes = packet.encode().unwrap();
        assert_eq!(bytes[0], 0x27);
        assert_eq!(bytes[1], 0x10);
        assert_eq!(ControlPacket::decode(&bytes), Ok(packet));
    }

    #[test]
    fn every_authentication_type_round_trips() {
        let sections = [
            Authentication::SimplePassword {
                key_id: 1,
                password: b"secret".to_vec(),
            },
            Authentication::KeyedMd5 {
                meticulous: false,
                key_id: 2,
                sequence: 0x0102_0304,
                digest: [0xaa; 16],
            },
            Authentication::KeyedMd5 {
                meticulous: true,
                key_id: 3,
                sequence: 5,
                digest: [0xbb; 16],
            },
            Authentication::KeyedSha1 {
                meticulous: false,
                key_id: 4,
                sequence: 6,
                hash: [0xcc; 20],
            },
            Authentication::KeyedSha1 {
                meticulous: true,
                key_id: 5,
                sequence: 7,
                hash: [0xdd; 20],
            },
        ];
        for (auth, expected_type) in sections.into_iter().zip(1..) {
            let packet = ControlPacket {
                auth: Some(auth.clone()),
                ..frr_down()
            };
            let bytes = packet.encode().unwrap();
            assert_eq!(bytes[1] & FLAG_AUTH, FLAG_AUTH);
            assert_eq!(bytes[24], expected_type);
            assert_eq!(usize::from(bytes[3]), 24 + auth.len());
            assert_eq!(usize::from(bytes[25]), auth.len());
            assert_eq!(ControlPacket::decode(&bytes), Ok(packet));
        }
    }

    #[test]
    fn keyed_sha1_section_is_laid_out_as_in_rfc_5880_section_4_4() {
        let mut bytes = FRR_DOWN.to_vec();
        bytes[1] |= FLAG_AUTH;
        bytes[3] = 24 + 28;
        bytes.extend_from_slice(&[4, 28, 9, 0, 0, 0, 1, 0]);
        bytes.extend((1..=20).collect::<Vec<u8>>());
        let packet = ControlPacket::decode(&bytes).unwrap();
        let mut hash = [0u8; 20];
        hash.iter_mut().zip(1..).for_each(|(b, v)| *b = v);
        assert_eq!(
            packet.auth,
            Some(Authentication::KeyedSha1 {
                meticulous: false,
                key_id: 9,
                sequence: 256,
                hash
            })
        );
    }

    fn with(mut bytes: Vec<u8>, at: usize, value: u8) -> Vec<u8> {
        bytes[at] = value;
        bytes
    }

    #[test]
    fn each_reception_check_has_its_own_error() {
        let good = FRR_DOWN.to_vec();
        let cases: Vec<(Vec<u8>, DecodeError)> = vec![
            (good[..23].to_vec(), DecodeError::Truncated(23)),
            (with(good.clone(), 0, 0x40), DecodeError::BadVersion(2)),
            (
                with(good.clone(), 3, 23),
                DecodeError::LengthTooShort {
                    length: 23,
                    minimum: 24,
                },
            ),
            (
                with(with(good.clone(), 1, 0x44), 3, 25),
                DecodeError::LengthTooShort {
                    length: 25,
                    minimum: 26,
                },
            ),
            (
                with(good.clone(), 3, 30),
                DecodeError::LengthExceedsPayload {
                    length: 30,
                    payload: 24,
                },
            ),
            (with(good.clone(), 2, 0), DecodeError::ZeroDetectMult),
            (with(good.clone(), 1, 0x41), DecodeError::Multipoint),
            (with(good.clone(), 7, 0), DecodeError::ZeroMyDiscriminator),
            (
                with(good.clone(), 1, 0xc0),
                DecodeError::ZeroYourDiscriminator(State::Up),
            ),
            (
                with(good.clone(), 1, 0x80),
                DecodeError::ZeroYourDiscriminator(State::Init),
            ),
            (with(good.clone(), 1, 0x70), DecodeError::PollAndFinal),
        ];
        for (bytes, expected) in cases {
            assert_eq!(ControlPacket::decode(&bytes), Err(expected));
        }
    }

    #[test]
    fn zero_your_discriminator_is_accepted_in_down_and_admin_down() {
        let admin_down = with(FRR_DOWN.to_vec(), 1, 0x00);
        assert_eq!(
            ControlPacket::decode(&admin_down).map(|p| p.state),
            Ok(State::AdminDown)
        );
        assert!(ControlPacket::decode(&FRR_DOWN).is_ok());
    }

    #[test]
    fn malformed_authentication_sections_are_rejected_by_reason() {
        let base = |section: &[u8]| {
            let mut bytes = FRR_DOWN.to_vec();
            bytes[1] |= FLAG_AUTH;
            bytes[3] = (24 + section.len()) as u8;
            bytes.extend_from_slice(section);
            ControlPacket::decode(&bytes)
        };
        assert_eq!(
            base(&[1, 3, 0]),
            Err(DecodeError::BadAuthLength {
                auth_type: 1,
                auth_len: 3
            })
        );
        assert_eq!(
            base(&[2, 40, 0, 0]),
            Err(DecodeError::AuthLengthExceedsPacket {
                auth_len: 40,
                available: 4
            })
        );
        assert_eq!(
            base(&[2, 4, 0, 0]),
            Err(DecodeError::BadAuthLength {
                auth_type: 2,
                auth_len: 4
            })
        );
        assert_eq!(base(&[6, 2]), Err(DecodeError::UnknownAuthType(6)));
        assert!(base(&[1, 4, 0, b'x']).is_ok());
    }

    #[test]
    fn trailing_bytes_beyond_the_length_field_are_ignored() {
        let mut bytes = FRR_DOWN.to_vec();
        bytes.extend_from_slice(&[0xff; 8]);
        assert_eq!(ControlPacket::decode(&bytes), Ok(frr_down()));
    }

    #[test]
    fn reserved_diagnostics_round_trip() {
        let packet = ControlPacket {
            diag: Diagnostic::Reserved(31),
            ..frr_down()
        };
        let bytes = packet.encode().unwrap();
        assert_eq!(bytes[0], 0x3f);
        assert_eq!(ControlPacket::decode(&bytes), Ok(packet));
    }

    #[test]
    fn encode_refuses_bad_passwords_and_huge_intervals() {
        let long = ControlPacket {
            auth: Some(Authentication::SimplePassword {
                key_id: 0,
                password: vec![0; 17],
            }),
            ..frr_down()
        };
        assert_eq!(long.encode(), Err(EncodeError::BadPasswordLength(17)));
        let huge = ControlPacket {
            desired_min_tx: Duration::from_secs(5000),
            ..frr_down()
        };
        assert!(matches!(
            huge.encode(),
            Err(EncodeError::IntervalTooLarge {
                field: "desired_min_tx",
                ..
            })
        ));
    }

    #[test]
    fn decode_never_panics_on_random_or_truncated_input() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5880);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let len = rng.random_range(0..64);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            // Bias towards plausible headers so the deeper checks run too.
            if len > 3 && rng.random_bool(0.7) {
                bytes[0] = (bytes[0] & 0x1f) | 0x20;
                bytes[1] &= !FLAG_MULTIPOINT;
                bytes[3] = rng.random_range(24..=len.max(24) as u8);
            }
            if let Ok(packet) = ControlPacket::decode(&bytes) {
                accepted += 1;
                // Whatever decodes re-encodes to the same prefix.
                let again = packet.encode().unwrap();
                assert_eq!(ControlPacket::decode(&again), Ok(packet));
            }
        }
        for cut in 0..FRR_DOWN.len() {
            assert!(ControlPacket::decode(&FRR_DOWN[..cut]).is_err());
        }
        assert!(
            accepted > 0,
            "the random input never reached a success path"
        );
    }

    #[test]
    fn encode_into_reuses_one_buffer_and_matches_encode() {
        let mut buffer = vec![0xff; 100];
        let packet = frr_down();
        packet.encode_into(&mut buffer).unwrap();
        assert_eq!(buffer, packet.encode().unwrap());
        let capacity = buffer.capacity();
        let up = ControlPacket {
            state: State::Up,
            your_discriminator: 7,
            ..frr_down()
        };
        up.encode_into(&mut buffer).unwrap();
        assert_eq!(buffer, up.encode().unwrap());
        assert_eq!(buffer.capacity(), capacity, "no new allocation");
        let huge = ControlPacket {
            desired_min_tx: Duration::from_secs(5000),
            ..frr_down()
        };
        assert!(huge.encode_into(&mut buffer).is_err());
        assert!(buffer.is_empty());
    }
}
