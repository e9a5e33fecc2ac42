//! BFD authentication (RFC 5880 §6.7): signing the packets a session sends
//! and checking the ones it receives, with the replay protection of the
//! sequence number.
//!
//! Owns: the key of one session, bfd.AuthType, bfd.RcvAuthSeq,
//! bfd.XmitAuthSeq and bfd.AuthSeqKnown (§6.8.1), the digests of Keyed and
//! Meticulous Keyed MD5 (§6.7.3) and SHA1 (§6.7.4), and Simple Password
//! (§6.7.2). Must not touch: sockets, clocks, the state machine; the
//! session calls [`Authenticator::sign`] for every packet it sends and
//! [`Authenticator::verify`] for every packet it receives, before anything
//! in the packet is believed.
//!
//! The digests come from RustCrypto's `md-5` and `sha1` crates. A digest is
//! computed over the whole packet with the key, zero-padded to the digest's
//! size, in the digest's place (§6.7.3: "the Auth Key/Digest field is
//! replaced with the key ... the MD5 digest of the entire packet is
//! calculated"). A received packet is checked by encoding it again: the
//! codec writes a decoded packet back byte for byte except in two places.
//! The section's Reserved byte, which §4.3/§4.4 say is "ignored on
//! receipt", is hashed as the zero a conforming sender sends. Bytes past
//! the authentication section (a Length larger than the section needs) are
//! left out, so such a packet fails the check: the safe way to fail.

use std::fmt;

use md5::Md5;
use sha1::{Digest, Sha1};

use super::BfdError;
use super::packet::{Authentication, ControlPacket};

/// The Auth Types herald speaks (RFC 5880 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthType {
    /// 1: the key in clear. Protects against nothing a listener on the link
    /// cannot read; offered for peers that have nothing else.
    SimplePassword,
    /// 2: MD5 digest; the sequence number may repeat.
    KeyedMd5,
    /// 3: MD5 digest; the sequence number grows with every packet.
    MeticulousKeyedMd5,
    /// 4: SHA1 digest; the sequence number may repeat.
    KeyedSha1,
    /// 5: SHA1 digest; the sequence number grows with every packet.
    MeticulousKeyedSha1,
}

impl AuthType {
    pub const ALL: [AuthType; 5] = [
        AuthType::SimplePassword,
        AuthType::KeyedMd5,
        AuthType::MeticulousKeyedMd5,
        AuthType::KeyedSha1,
        AuthType::MeticulousKeyedSha1,
    ];

    /// The Auth Type code on the wire.
    pub fn code(self) -> u8 {
        match self {
            AuthType::SimplePassword => 1,
            AuthType::KeyedMd5 => 2,
            AuthType::MeticulousKeyedMd5 => 3,
            AuthType::KeyedSha1 => 4,
            AuthType::MeticulousKeyedSha1 => 5,
        }
    }

    /// The name in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            AuthType::SimplePassword => "simple-password",
            AuthType::KeyedMd5 => "keyed-md5",
            AuthType::MeticulousKeyedMd5 => "meticulous-keyed-md5",
            AuthType::KeyedSha1 => "keyed-sha1",
            AuthType::MeticulousKeyedSha1 => "meticulous-keyed-sha1",
        }
    }

    pub fn from_name(name: &str) -> Option<AuthType> {
        AuthType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The longest key: the password field (§4.2: 1 to 16 bytes), or the
    /// digest the key stands in for while hashing (16 for MD5, 20 for SHA1).
    pub fn max_key_len(self) -> usize {
        match self {
            AuthType::SimplePassword | AuthType::KeyedMd5 | AuthType::MeticulousKeyedMd5 => 16,
            AuthType::KeyedSha1 | AuthType::MeticulousKeyedSha1 => 20,
        }
    }

    fn meticulous(self) -> bool {
        matches!(
            self,
            AuthType::MeticulousKeyedMd5 | AuthType::MeticulousKeyedSha1
        )
    }
}

impl fmt::Display for AuthType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a session authenticates with. The key never appears in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthConfig {
    auth_type: AuthType,
    key_id: u8,
    key: Vec<u8>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("auth_type", &self.auth_type)
            .field("key_id", &self.key_id)
            .field("key", &format_args!("<{} bytes>", self.key.len()))
            .finish()
    }
}

impl AuthConfig {
    /// A key of 1 to [`AuthType::max_key_len`] bytes; anything else is an
    /// error naming the `key` field.
    pub fn new(auth_type: AuthType, key_id: u8, key: Vec<u8>) -> Result<AuthConfig, BfdError> {
        if key.is_empty() || key.len() > auth_type.max_key_len() {
            return Err(BfdError::InvalidConfig {
                field: "key",
                reason: format!(
                    "{} takes a key of 1 to {} bytes, got {}",
                    auth_type,
                    auth_type.max_key_len(),
                    key.len()
                ),
            });
        }
        Ok(AuthConfig {
            auth_type,
            key_id,
            key,
        })
    }

    pub fn auth_type(&self) -> AuthType {
        self.auth_type
    }

    pub fn key_id(&self) -> u8 {
        self.key_id
    }

    /// The key padded with zeros to `N` bytes (`N` is at least the key's
    /// length, checked by [`AuthConfig::new`]).
    fn padded<const N: usize>(&self) -> [u8; N] {
        let mut padded = [0u8; N];
        let len = self.key.len().min(N);
        padded[..len].copy_from_slice(&self.key[..len]);
        padded
    }
}

/// Why a received packet failed authentication: the `reason` of the drop
/// counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// §6.8.6: "If the A bit is clear and authentication is in use (bfd.AuthType
    /// is nonzero), the packet MUST be discarded."
    Missing,
    /// §6.7.2-§6.7.4: "If the Auth Type field does not match bfd.AuthType".
    WrongType,
    /// The Auth Key ID names a key this session does not have.
    WrongKeyId,
    /// The digest (or password) does not match the key.
    WrongDigest,
    /// The sequence number is outside the window: a replay, or a sender
    /// that ran too far ahead.
    Sequence,
}

impl AuthFailure {
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::Missing => "auth_missing",
            AuthFailure::WrongType => "auth_wrong_type",
            AuthFailure::WrongKeyId => "auth_wrong_key_id",
            AuthFailure::WrongDigest => "auth_wrong_digest",
            AuthFailure::Sequence => "auth_sequence",
        }
    }
}

/// The authentication state of one session.
#[derive(Clone, Debug)]
pub struct Authenticator {
    config: AuthConfig,
    /// bfd.XmitAuthSeq: the next sequence number we send.
    xmit_seq: u32,
    /// bfd.RcvAuthSeq, meaningful while `seq_known`.
    rcv_seq: u32,
    /// bfd.AuthSeqKnown.
    seq_known: bool,
    /// Reused for the encodings hashed.
    scratch: Vec<u8>,
}

impl Authenticator {
    /// §6.8.1: bfd.XmitAuthSeq "MUST be initialized to a random 32-bit
    /// value": `initial_seq` is that value.
    pub fn new(config: AuthConfig, initial_seq: u32) -> Authenticator {
        Authenticator {
            config,
            xmit_seq: initial_seq,
            rcv_seq: 0,
            seq_known: false,
            scratch: Vec::with_capacity(64),
        }
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// A new key, key id or type (a reload): the sequence numbers go on, so
    /// a peer that changed its key too keeps accepting ours.
    pub fn set_config(&mut self, config: AuthConfig) {
        if config.auth_type != self.config.auth_type {
            self.seq_known = false;
        }
        self.config = config;
    }

    /// §6.8.1: bfd.AuthSeqKnown "MUST be set to zero after no packets have
    /// been received on this session for at least twice the Detection
    /// Time". The session calls this once that much silence has passed, so
    /// a peer that restarted its sequence is believed again after twice
    /// the Detection Time, and a replayed old packet is not believed
    /// before.
    pub fn forget_sequence(&mut self) {
        self.seq_known = false;
    }

    /// Adds the authentication section to a packet about to be sent.
    pub fn sign(&mut self, packet: &mut ControlPacket) {
        let key_id = self.config.key_id;
        let sequence = self.xmit_seq;
        // §6.7.3/§6.7.4: Meticulous "MUST" increment for every packet; the
        // plain Keyed types "MAY": herald does for both, which every
        // receiver's window accepts.
        self.xmit_seq = self.xmit_seq.wrapping_add(1);
        packet.auth = Some(match self.config.auth_type {
            AuthType::SimplePassword => Authentication::SimplePassword {
                key_id,
                password: self.config.key.clone(),
            },
            AuthType::KeyedMd5 | AuthType::MeticulousKeyedMd5 => Authentication::KeyedMd5 {
                meticulous: self.config.auth_type.meticulous(),
                key_id,
                sequence,
                digest: self.config.padded(),
            },
            AuthType::KeyedSha1 | AuthType::MeticulousKeyedSha1 => Authentication::KeyedSha1 {
                meticulous: self.config.auth_type.meticulous(),
                key_id,
                sequence,
                hash: self.config.padded(),
            },
        });
        // The key stands in the digest's place while hashing; the hash
        // then takes its place.
        match self.hash(packet) {
            Some(Computed::Md5(sum)) => {
                if let Some(Authentication::KeyedMd5 { digest, .. }) = &mut packet.auth {
                    *digest = sum;
                }
            }
            Some(Computed::Sha1(sum)) => {
                if let Some(Authentication::KeyedSha1 { hash, .. }) = &mut packet.auth {
                    *hash = sum;
                }
            }
            None => {}
        }
    }

    /// Checks a received packet (§6.7.2-§6.7.4) and, when it passes,
    /// remembers its sequence number. Nothing is remembered from a packet
    /// that fails.
    pub fn verify(&mut self, packet: &ControlPacket) -> Result<(), AuthFailure> {
        let Some(auth) = &packet.auth else {
            return Err(AuthFailure::Missing);
        };
        if auth.auth_type() != self.config.auth_type.code() {
            return Err(AuthFailure::WrongType);
        }
        match auth {
            Authentication::SimplePassword { key_id, password } => {
                if *key_id != self.config.key_id {
                    return Err(AuthFailure::WrongKeyId);
                }
                if !constant_time_eq(password, &self.config.key) {
                    return Err(AuthFailure::WrongDigest);
                }
                Ok(())
            }
            Authentication::KeyedMd5 {
                key_id,
                sequence,
                digest,
                ..
            } => self.verify_keyed(packet, *key_id, *sequence, digest),
            Authentication::KeyedSha1 {
                key_id,
                sequence,
                hash,
                ..
            } => self.verify_keyed(packet, *key_id, *sequence, hash),
        }
    }

    fn verify_keyed(
        &mut self,
        packet: &ControlPacket,
        key_id: u8,
        sequence: u32,
        received: &[u8],
    ) -> Result<(), AuthFailure> {
        if key_id != self.config.key_id {
            return Err(AuthFailure::WrongKeyId);
        }
        // "If bfd.AuthSeqKnown is 1, examine the Sequence Number field. For
        // Keyed MD5, if the sequence number lies outside of the range of
        // bfd.RcvAuthSeq to bfd.RcvAuthSeq+(3*Detect Mult) inclusive (when
        // treated as an unsigned 32-bit circular number space), the received
        // packet MUST be discarded. For Meticulous Keyed MD5, if the sequence
        // number lies outside of the range of bfd.RcvAuthSeq+1 to
        // bfd.RcvAuthSeq+(3*Detect Mult) inclusive ...". Detect Mult is the
        // sender's: it bounds how many of its packets may be lost in a row
        // before the session goes down.
        if self.seq_known {
            let ahead = sequence.wrapping_sub(self.rcv_seq);
            let window = 3 * u32::from(packet.detect_mult);
            let lowest = u32::from(self.config.auth_type.meticulous());
            if ahead < lowest || ahead > window {
                return Err(AuthFailure::Sequence);
            }
        }
        let mut expected = packet.clone();
        match &mut expected.auth {
            Some(Authentication::KeyedMd5 { digest, .. }) => *digest = self.config.padded(),
            Some(Authentication::KeyedSha1 { hash, .. }) => *hash = self.config.padded(),
            _ => return Err(AuthFailure::WrongType),
        }
        let matches = match self.hash(&expected) {
            Some(Computed::Md5(sum)) => constant_time_eq(&sum, received),
            Some(Computed::Sha1(sum)) => constant_time_eq(&sum, received),
            None => false,
        };
        if !matches {
            return Err(AuthFailure::WrongDigest);
        }
        self.rcv_seq = sequence;
        self.seq_known = true;
        Ok(())
    }

    /// The digest of `packet` as encoded, for the keyed types.
    fn hash(&mut self, packet: &ControlPacket) -> Option<Computed> {
        packet.encode_into(&mut self.scratch).ok()?;
        match packet.auth {
            Some(Authentication::KeyedMd5 { .. }) => {
                Some(Computed::Md5(Md5::digest(&self.scratch).into()))
            }
            Some(Authentication::KeyedSha1 { .. }) => {
                Some(Computed::Sha1(Sha1::digest(&self.scratch).into()))
            }
            _ => None,
        }
    }
}

enum Computed {
    Md5([u8; 16]),
    Sha1([u8; 20]),
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell an attacker how much of a forged digest was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
