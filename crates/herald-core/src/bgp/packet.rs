//! The BGP-4 wire codec: every message herald sends or receives, as typed
//! values with an `encode`/`decode` pair.
//!
//! Owns: bytes <-> messages, and the mapping of every decode error to the
//! NOTIFICATION code/subcode the RFCs prescribe (RFC 7606 dispositions for
//! path attributes). Must not touch: sockets, timers or session state; what a
//! decoded message means for the session is the FSM's business.
//!
//! **Decoders never panic on any input.** Every read is bounds-checked through
//! [`Reader`]; the fuzz targets `bgp_message`, `bgp_open` and `bgp_update`
//! and the unit test `decoders_survive_random_and_truncated_input` hold the
//! code to it.
//!
//! # Supported standards
//! - RFC 4271 §4 (message formats), §6 (error handling and NOTIFICATION codes)
//! - RFC 4760 MP_REACH_NLRI / MP_UNREACH_NLRI for IPv4 and IPv6 unicast
//! - RFC 2545 IPv6 next hop: global, optionally followed by link-local
//! - RFC 5492 capabilities; unknown capabilities are kept as raw bytes
//! - RFC 6793 4-octet AS numbers (AS_PATH always 4-octet: herald requires the
//!   capability) and AS_TRANS
//! - RFC 2918 ROUTE-REFRESH (and its capability)
//! - RFC 4724 graceful restart capability and End-of-RIB markers
//! - RFC 8654 extended messages (capability and 65535-octet limit)
//! - RFC 1997 COMMUNITIES, RFC 8092 LARGE_COMMUNITIES
//! - RFC 7606 revised UPDATE error handling (treat-as-withdraw, attribute
//!   discard, session reset)
//! - RFC 4486 Cease subcodes, RFC 9003 shutdown communication, RFC 9384
//!   Cease subcode 10 "BFD Down", RFC 6608 FSM error subcodes
//!
//! Left out: RFC 9072 extended optional parameters length (refused as an
//! unsupported optional parameter), ADD-PATH, 2-octet AS_PATH encoding.

mod attributes;
mod capability;
mod error;
mod notification;
mod open;
mod reader;
mod route_refresh;
mod update;

pub use attributes::{
    AsPath, AsSegment, MpNextHop, MpReach, MpUnreach, Origin, PathAttributes, RawAttribute,
    attribute_flags, attribute_header_len, attribute_type,
};
pub use capability::{AfiSafi, Capability, GracefulRestartCapability};
pub use error::{
    AttributeError, DecodeError, Disposition, HeaderError, OpenError, RouteRefreshError,
    UpdateError,
};
pub use notification::{Notification, cease, error_code};
pub use open::{AS_TRANS, Open};
pub use reader::Reader;
pub use route_refresh::RouteRefresh;
pub use update::Update;

/// Length of the fixed header: marker (16), length (2), type (1).
pub const HEADER_LEN: usize = 19;
/// Largest message without RFC 8654 (RFC 4271 §4.1).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Largest message once RFC 8654 extended messages are agreed.
pub const MAX_EXTENDED_MESSAGE_LEN: usize = 65535;

/// Message type codes (RFC 4271 §4.1, RFC 2918 §3).
pub mod message_type {
    pub const OPEN: u8 = 1;
    pub const UPDATE: u8 = 2;
    pub const NOTIFICATION: u8 = 3;
    pub const KEEPALIVE: u8 = 4;
    pub const ROUTE_REFRESH: u8 = 5;
}

/// One BGP message.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                                                               |
/// +                                                               +
/// |                           Marker                              |
/// +                                                               +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          Length               |      Type     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// KEEPALIVE is the header alone (RFC 4271 §4.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    /// Boxed: an UPDATE is far larger than the other messages.
    Update(Box<Update>),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

impl Message {
    /// The message's name, for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Open(_) => "open",
            Message::Update(_) => "update",
            Message::Notification(_) => "notification",
            Message::Keepalive => "keepalive",
            Message::RouteRefresh(_) => "route_refresh",
        }
    }

    fn type_code(&self) -> u8 {
        match self {
            Message::Open(_) => message_type::OPEN,
            Message::Update(_) => message_type::UPDATE,
            Message::Notification(_) => message_type::NOTIFICATION,
            Message::Keepalive => message_type::KEEPALIVE,
            Message::RouteRefresh(_) => message_type::ROUTE_REFRESH,
        }
    }

    /// The encoded length, header included.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Message::Open(open) => open.body_len(),
                Message::Update(update) => update.body_len(),
                Message::Notification(n) => n.body_len(),
                Message::Keepalive => 0,
                Message::RouteRefresh(_) => 4,
            }
    }

    /// Appends the encoded message to `out`.
    ///
    /// The caller keeps messages within the negotiated size (the Adj-RIB-Out
    /// packs UPDATEs to fit); a message over 65535 octets cannot be framed at
    /// all and is refused rather than wrapped.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let len = self.encoded_len();
        if len > MAX_EXTENDED_MESSAGE_LEN {
            return Err(EncodeError::TooLong { len });
        }
        out.reserve(len);
        out.extend_from_slice(&[0xFF; 16]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.push(self.type_code());
        match self {
            Message::Open(open) => open.encode_body(out),
            Message::Update(update) => update.encode_body(out),
            Message::Notification(n) => n.encode_body(out),
            Message::Keepalive => {}
            Message::RouteRefresh(r) => r.encode_body(out),
        }
        Ok(())
    }

    /// Encodes into a fresh buffer.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out)?;
        Ok(out)
    }

    /// Decodes one complete message (header included), as framed by
    /// [`frame_len`]. `max_len` is 4096, or 65535 after RFC 8654.
    pub fn decode(frame: &[u8], max_len: usize) -> Result<Message, DecodeError> {
        let (len, kind) = check_header(frame, max_len)?;
        let Some(body) = frame.get(HEADER_LEN..len) else {
            return Err(HeaderError::BadLength(len as u16).into());
        };
        match kind {
            message_type::OPEN => Ok(Message::Open(Open::decode_body(body)?)),
            message_type::UPDATE => Ok(Message::Update(Box::new(Update::decode_body(body)?))),
            message_type::NOTIFICATION => {
                Ok(Message::Notification(Notification::decode_body(body)))
            }
            message_type::KEEPALIVE => Ok(Message::Keepalive),
            message_type::ROUTE_REFRESH => {
                Ok(Message::RouteRefresh(RouteRefresh::decode_body(body)?))
            }
            other => Err(HeaderError::BadType(other).into()),
        }
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {len} octets exceeds the 65535-octet BGP length field")]
    TooLong { len: usize },
}

/// How many octets the message at the start of `buf` occupies, once its
/// header has arrived: `Ok(None)` while fewer than 19 octets are buffered.
/// Validates the header (RFC 4271 §6.1) so a stream reader never waits for a
/// length that can only be garbage.
pub fn frame_len(buf: &[u8], max_len: usize) -> Result<Option<usize>, HeaderError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    check_header(buf, max_len).map(|(len, _)| Some(len))
}

/// RFC 4271 §6.1: marker all ones, else Connection Not Synchronized; length
/// within 19..=max and at least the type's minimum ("if the Length field of
/// the message header is less than 19 or greater than 4096, or ... the length
/// of an OPEN message is less than the minimum length ... then the Error
/// Subcode MUST be set to Bad Message Length"); a known type, else Bad
/// Message Type.
fn check_header(buf: &[u8], max_len: usize) -> Result<(usize, u8), HeaderError> {
    let mut r = Reader::new(buf);
    let marker = r.take(16).map_err(|_| HeaderError::BadLength(0))?;
    if marker.iter().any(|&b| b != 0xFF) {
        return Err(HeaderError::NotSynchronized);
    }
    let len = r.u16().map_err(|_| HeaderError::BadLength(0))?;
    let kind = r.u8().map_err(|_| HeaderError::BadLength(len))?;
    let min = match kind {
        message_type::OPEN => 29,
        message_type::UPDATE => 23,
        message_type::NOTIFICATION => 21,
        message_type::KEEPALIVE => 19,
        message_type::ROUTE_REFRESH => 23,
        other => return Err(HeaderError::BadType(other)),
    };
    // KEEPALIVE is exactly the header; ROUTE-REFRESH length errors get
    // their own code (RFC 7313 §5), checked by its decoder.
    let fixed = kind == message_type::KEEPALIVE;
    let len_usize = usize::from(len);
    if len_usize < min || len_usize > max_len || (fixed && len_usize != min) {
        return Err(HeaderError::BadLength(len));
    }
    Ok((len_usize, kind))
}

/// The number of octets an IP prefix occupies in NLRI: a length octet and
/// the significant octets (RFC 4271 §4.3).
pub fn prefix_wire_len(prefix_len: u8) -> usize {
    1 + usize::from(prefix_len).div_ceil(8)
}

#[cfg(test)]
mod tests;
