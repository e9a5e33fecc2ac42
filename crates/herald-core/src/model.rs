//! The domain types every subsystem shares: what an announcement is and the
//! BGP attributes it may carry.
//!
//! Owns: value types and their text forms (`65000:100`, `65000:1:2`). Must not
//! touch: I/O of any kind.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// A standard community (RFC 1997): two 16-bit halves, written `65000:100`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Community(pub u32);

impl Community {
    /// GRACEFUL_SHUTDOWN, RFC 8326 §5: "65535:0".
    pub const GRACEFUL_SHUTDOWN: Community = Community(0xFFFF_0000);

    /// Builds a community from its two halves (`asn:value`).
    pub fn new(asn: u16, value: u16) -> Self {
        Community((u32::from(asn) << 16) | u32::from(value))
    }
}

/// A large community (RFC 8092): three 32-bit parts, written `65000:1:2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LargeCommunity {
    pub global_admin: u32,
    pub local_data_1: u32,
    pub local_data_2: u32,
}

/// Either kind of community, as users write them in config and annotations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnyCommunity {
    Standard(Community),
    Large(LargeCommunity),
}

/// Why a community string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommunityError {
    #[error("{0:?} is not a community: expected \"asn:value\" (standard) or \"asn:x:y\" (large)")]
    Shape(String),
    #[error("{text:?}: part {part:?} must be a number from 0 to {max}")]
    Part {
        text: String,
        part: String,
        max: u64,
    },
}

fn parse_part(text: &str, part: &str, max: u64) -> Result<u64, CommunityError> {
    part.parse::<u64>()
        .ok()
        .filter(|v| *v <= max)
        .ok_or_else(|| CommunityError::Part {
            text: text.to_string(),
            part: part.to_string(),
            max,
        })
}

impl FromStr for AnyCommunity {
    type Err = CommunityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.trim().split(':').collect();
        match parts.as_slice() {
            [asn, value] => {
                let asn = parse_part(text, asn, u64::from(u16::MAX))?;
                let value = parse_part(text, value, u64::from(u16::MAX))?;
                Ok(AnyCommunity::Standard(Community(
                    ((asn << 16) | value) as u32,
                )))
            }
            [global, one, two] => Ok(AnyCommunity::Large(LargeCommunity {
                global_admin: parse_part(text, global, u64::from(u32::MAX))? as u32,
                local_data_1: parse_part(text, one, u64::from(u32::MAX))? as u32,
                local_data_2: parse_part(text, two, u64::from(u32::MAX))? as u32,
            })),
            _ => Err(CommunityError::Shape(text.to_string())),
        }
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0 >> 16, self.0 & 0xFFFF)
    }
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.global_admin, self.local_data_1, self.local_data_2
        )
    }
}

impl fmt::Display for AnyCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyCommunity::Standard(c) => c.fmt(f),
            AnyCommunity::Large(c) => c.fmt(f),
        }
    }
}

impl Serialize for AnyCommunity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AnyCommunity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An extended community (RFC 4360 §2): eight octets, the first one or two
/// of them its type and sub-type.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Type high    |  Type low(*)  |                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+          Value                |
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ExtendedCommunity(pub [u8; 8]);

/// The link-bandwidth extended community (RFC 10005): a two-octet AS and
/// the bandwidth in bytes per second as an IEEE 754 single-precision float.
/// Routers that split traffic over several paths in proportion to it (FRR's
/// `bgp bestpath bandwidth`, weighted ECMP) give each next hop its share.
///
/// ```text
/// | type 0x00 (transitive) or 0x40 (non-transitive) | sub-type 0x04 |
/// | Global Administrator: 2-octet AS                                 |
/// | Local Administrator: bandwidth, 4-octet IEEE float, bytes/s      |
/// ```
///
/// The bandwidth is kept as a whole number of bytes per second, so the
/// attribute stays comparable and hashable; a float carries it exactly up
/// to 2^24 and within 1 part in 10^7 beyond.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct LinkBandwidth {
    /// The transitive form (type 0x00). Routers that drop non-transitive
    /// extended communities received over eBGP (FRR 8.4 does) need it.
    pub transitive: bool,
    /// The local AS when it fits in two octets, else AS_TRANS (23456), as
    /// the RFC asks of a four-octet AS.
    pub asn: u16,
    pub bytes_per_second: u32,
}

impl LinkBandwidth {
    /// "Type high" of the transitive and non-transitive two-octet-AS forms.
    pub const TRANSITIVE_TYPE: u8 = 0x00;
    pub const NON_TRANSITIVE_TYPE: u8 = 0x40;
    /// The link-bandwidth sub-type of both.
    pub const SUB_TYPE: u8 = 0x04;
    /// RFC 6793's AS_TRANS, for a local AS that needs four octets.
    pub const AS_TRANS: u16 = 23456;

    /// The community for `bytes_per_second`, carrying `local_as` (or
    /// AS_TRANS when it does not fit two octets).
    pub fn new(local_as: u32, bytes_per_second: u32, transitive: bool) -> Self {
        LinkBandwidth {
            transitive,
            asn: u16::try_from(local_as).unwrap_or(Self::AS_TRANS),
            bytes_per_second,
        }
    }

    pub fn to_extended(self) -> ExtendedCommunity {
        let mut octets = [0u8; 8];
        octets[0] = if self.transitive {
            Self::TRANSITIVE_TYPE
        } else {
            Self::NON_TRANSITIVE_TYPE
        };
        octets[1] = Self::SUB_TYPE;
        octets[2..4].copy_from_slice(&self.asn.to_be_bytes());
        octets[4..8].copy_from_slice(&(self.bytes_per_second as f32).to_be_bytes());
        ExtendedCommunity(octets)
    }

    /// The link bandwidth an extended community carries, if it is one (a
    /// negative, infinite or NaN bandwidth is not). Never panics.
    pub fn from_extended(community: ExtendedCommunity) -> Option<Self> {
        let [high, sub, a0, a1, b0, b1, b2, b3] = community.0;
        let transitive = match high {
            Self::TRANSITIVE_TYPE => true,
            Self::NON_TRANSITIVE_TYPE => false,
            _ => return None,
        };
        if sub != Self::SUB_TYPE {
            return None;
        }
        let bandwidth = f32::from_be_bytes([b0, b1, b2, b3]);
        if !bandwidth.is_finite() || bandwidth < 0.0 {
            return None;
        }
        Some(LinkBandwidth {
            transitive,
            asn: u16::from_be_bytes([a0, a1]),
            // `as` saturates at u32::MAX and rounds toward zero.
            bytes_per_second: bandwidth.round() as u32,
        })
    }
}

/// The BGP attributes an announcement carries beyond what the session adds
/// (AS_PATH, NEXT_HOP and ORIGIN come from the session).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RouteAttributes {
    pub communities: BTreeSet<Community>,
    pub large_communities: BTreeSet<LargeCommunity>,
    /// MULTI_EXIT_DISC (RFC 4271 §5.1.4).
    pub med: Option<u32>,
    /// LOCAL_PREF (RFC 4271 §5.1.5); sent to internal peers only.
    pub local_pref: Option<u32>,
    /// The link-bandwidth extended community (weighted ECMP), when the
    /// pool asks for it.
    pub link_bandwidth: Option<LinkBandwidth>,
}

impl RouteAttributes {
    /// Adds a community of either kind.
    pub fn add_community(&mut self, community: AnyCommunity) {
        match community {
            AnyCommunity::Standard(c) => {
                self.communities.insert(c);
            }
            AnyCommunity::Large(c) => {
                self.large_communities.insert(c);
            }
        }
    }
}

/// One host route this node must announce: a service address as a /32 or
/// /128, with its attributes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Announcement {
    pub address: IpAddr,
    pub attributes: RouteAttributes,
}

impl Announcement {
    /// The host prefix announced for this address (/32 or /128).
    pub fn prefix(&self) -> IpNet {
        IpNet::from(self.address)
    }
}

impl Serialize for Community {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for LargeCommunity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_and_large_communities_round_trip_through_text() {
        for text in [
            "65000:100",
            "0:0",
            "65535:65535",
            "65000:1:2",
            "4294967295:0:7",
        ] {
            let parsed: AnyCommunity = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
        assert_eq!(
            "65535:0".parse::<AnyCommunity>().unwrap(),
            AnyCommunity::Standard(Community::GRACEFUL_SHUTDOWN)
        );
    }

    #[test]
    fn malformed_communities_are_refused_with_the_reason() {
        for (text, needle) in [
            ("65536:1", "0 to 65535"),
            ("1:x", "\"x\""),
            ("1", "not a community"),
            ("1:2:3:4", "not a community"),
            ("4294967296:1:1", "0 to 4294967295"),
            ("", "not a community"),
        ] {
            let err = text.parse::<AnyCommunity>().unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn an_announcement_is_a_host_prefix() {
        let a = Announcement {
            address: "203.0.113.10".parse().unwrap(),
            attributes: RouteAttributes::default(),
        };
        assert_eq!(a.prefix().to_string(), "203.0.113.10/32");
        let b = Announcement {
            address: "2001:db8::10".parse().unwrap(),
            attributes: RouteAttributes::default(),
        };
        assert_eq!(b.prefix().to_string(), "2001:db8::10/128");
    }
}
