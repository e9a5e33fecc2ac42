//! Decode errors, each mapped to the NOTIFICATION it calls for (RFC 4271
//! §6, RFC 5492 §3, RFC 6793, RFC 7606).

use std::net::Ipv4Addr;

use super::capability::Capability;
use super::notification::{Notification, error_code};

/// Everything that can be wrong with a received message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message header error: {0}")]
    Header(#[from] HeaderError),
    #[error("OPEN message error: {0}")]
    Open(#[from] OpenError),
    #[error("UPDATE message error: {0}")]
    Update(#[from] UpdateError),
    #[error("ROUTE-REFRESH message error: {0}")]
    RouteRefresh(#[from] RouteRefreshError),
}

impl DecodeError {
    /// The NOTIFICATION to send before closing the connection.
    pub fn notification(&self) -> Notification {
        match self {
            DecodeError::Header(e) => e.notification(),
            DecodeError::Open(e) => e.notification(),
            DecodeError::Update(e) => e.notification(),
            DecodeError::RouteRefresh(e) => e.notification(),
        }
    }
}

/// RFC 4271 §6.1 Message Header Error (code 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("marker is not all ones (connection not synchronized)")]
    NotSynchronized,
    #[error("bad message length {0}")]
    BadLength(u16),
    #[error("bad message type {0}")]
    BadType(u8),
}

impl HeaderError {
    /// "the Data field MUST contain the erroneous Length field" (subcode 2),
    /// "the Data field MUST contain the erroneous Type field" (subcode 3).
    pub fn notification(&self) -> Notification {
        let code = error_code::MESSAGE_HEADER;
        match self {
            HeaderError::NotSynchronized => Notification::new(code, 1, Vec::new()),
            HeaderError::BadLength(len) => Notification::new(code, 2, len.to_be_bytes().to_vec()),
            HeaderError::BadType(kind) => Notification::new(code, 3, vec![*kind]),
        }
    }
}

/// RFC 4271 §6.2 OPEN Message Error (code 2), with RFC 5492's Unsupported
/// Capability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("malformed OPEN: {0}")]
    Malformed(&'static str),
    #[error("unsupported version number {0}")]
    UnsupportedVersion(u8),
    #[error("bad peer AS {0}")]
    BadPeerAs(u32),
    #[error("bad BGP identifier {0}")]
    BadBgpIdentifier(Ipv4Addr),
    #[error("unsupported optional parameter type {0}")]
    UnsupportedOptionalParameter(u8),
    #[error("unacceptable hold time {0}")]
    UnacceptableHoldTime(u16),
    #[error("unsupported capability: {0:?}")]
    UnsupportedCapability(Vec<Capability>),
}

impl OpenError {
    pub fn notification(&self) -> Notification {
        let code = error_code::OPEN_MESSAGE;
        match self {
            OpenError::Malformed(_) => Notification::new(code, 0, Vec::new()),
            // "the Data field is a 2-octet unsigned integer, which indicates
            // the largest, locally-supported version number"
            OpenError::UnsupportedVersion(_) => Notification::new(code, 1, vec![0, 4]),
            OpenError::BadPeerAs(_) => Notification::new(code, 2, Vec::new()),
            OpenError::BadBgpIdentifier(_) => Notification::new(code, 3, Vec::new()),
            OpenError::UnsupportedOptionalParameter(_) => Notification::new(code, 4, Vec::new()),
            OpenError::UnacceptableHoldTime(_) => Notification::new(code, 6, Vec::new()),
            // RFC 5492 §3: "The message MUST contain the capability or
            // capabilities that cause the speaker to send the message."
            OpenError::UnsupportedCapability(caps) => {
                let mut data = Vec::new();
                for cap in caps {
                    cap.encode(&mut data);
                }
                Notification::new(code, 7, data)
            }
        }
    }
}

/// What RFC 7606 §2 says to do with an UPDATE carrying a malformed
/// attribute, from mildest to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Disposition {
    /// "attribute discard": drop the attribute, process the rest.
    AttributeDiscard,
    /// "treat-as-withdraw": the UPDATE's routes are withdrawn, the session
    /// stays up.
    TreatAsWithdraw,
    /// "session reset": NOTIFICATION and close.
    SessionReset,
}

/// Which rule a path attribute broke (UPDATE error subcodes, RFC 4271 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeFault {
    /// Subcode 4.
    Flags,
    /// Subcode 5.
    Length,
    /// Subcode 6.
    InvalidOrigin,
    /// Subcode 8.
    InvalidNextHop,
    /// Subcode 9.
    Optional,
    /// Subcode 11.
    MalformedAsPath,
    /// Subcode 3; the data is the missing type code.
    Missing,
    /// Subcode 1, RFC 7606 §3 (g): a second MP_REACH/MP_UNREACH, or an
    /// attribute overrunning the attribute field.
    AttributeList,
}

impl AttributeFault {
    fn subcode(self) -> u8 {
        match self {
            AttributeFault::AttributeList => 1,
            AttributeFault::Missing => 3,
            AttributeFault::Flags => 4,
            AttributeFault::Length => 5,
            AttributeFault::InvalidOrigin => 6,
            AttributeFault::InvalidNextHop => 8,
            AttributeFault::Optional => 9,
            AttributeFault::MalformedAsPath => 11,
        }
    }
}

/// One malformed path attribute and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("attribute type {type_code}: {reason} ({disposition:?})")]
pub struct AttributeError {
    pub type_code: u8,
    pub fault: AttributeFault,
    pub reason: &'static str,
    pub disposition: Disposition,
    /// The NOTIFICATION data: the whole attribute (type, length, value) as
    /// RFC 4271 §6.3 asks, or the missing type code.
    pub data: Vec<u8>,
}

impl AttributeError {
    pub fn notification(&self) -> Notification {
        Notification::new(
            error_code::UPDATE_MESSAGE,
            self.fault.subcode(),
            self.data.clone(),
        )
    }
}

/// An UPDATE the session cannot survive (RFC 7606 "session reset").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// Subcode 1: the field lengths contradict the message length (RFC 7606
    /// §5.1 keeps "session reset" for these).
    #[error("malformed attribute list: {0}")]
    MalformedAttributeList(&'static str),
    /// Subcode 2, data = the attribute.
    #[error("unrecognized well-known attribute type {type_code}")]
    UnrecognizedWellKnown { type_code: u8, data: Vec<u8> },
    /// Subcode 10: NLRI or withdrawn routes cannot be parsed (RFC 7606 §5.3).
    #[error("invalid network field: {0}")]
    InvalidNetworkField(&'static str),
    #[error("{0}")]
    Attribute(AttributeError),
}

impl UpdateError {
    pub fn notification(&self) -> Notification {
        let code = error_code::UPDATE_MESSAGE;
        match self {
            UpdateError::MalformedAttributeList(_) => Notification::new(code, 1, Vec::new()),
            UpdateError::UnrecognizedWellKnown { data, .. } => {
                Notification::new(code, 2, data.clone())
            }
            UpdateError::InvalidNetworkField(_) => Notification::new(code, 10, Vec::new()),
            UpdateError::Attribute(e) => e.notification(),
        }
    }
}

/// RFC 7313 §5 ROUTE-REFRESH Message Error (code 7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteRefreshError {
    #[error("invalid message length {0}")]
    InvalidLength(usize),
}

impl RouteRefreshError {
    pub fn notification(&self) -> Notification {
        match self {
            RouteRefreshError::InvalidLength(_) => {
                Notification::new(error_code::ROUTE_REFRESH_MESSAGE, 1, Vec::new())
            }
        }
    }
}
