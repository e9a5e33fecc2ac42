//! Path attributes (RFC 4271 §4.3, §5) and their RFC 7606 error handling.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::capability::AfiSafi;
use super::error::{AttributeError, AttributeFault, Disposition, UpdateError};
use super::prefix_wire_len;
use super::reader::Reader;
use crate::model::{Community, ExtendedCommunity, LargeCommunity};

/// Attribute flag bits (RFC 4271 §4.3).
pub mod attribute_flags {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Attribute type codes (IANA "BGP Path Attributes").
pub mod attribute_type {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    pub const LARGE_COMMUNITIES: u8 = 32;
}

use attribute_flags::{EXTENDED_LENGTH, OPTIONAL, TRANSITIVE};
use attribute_type as ty;

/// The Optional and Transitive bits each known attribute must carry.
fn expected_flags(type_code: u8) -> Option<u8> {
    match type_code {
        ty::ORIGIN | ty::AS_PATH | ty::NEXT_HOP | ty::LOCAL_PREF | ty::ATOMIC_AGGREGATE => {
            Some(TRANSITIVE)
        }
        ty::MULTI_EXIT_DISC | ty::MP_REACH_NLRI | ty::MP_UNREACH_NLRI => Some(OPTIONAL),
        ty::AGGREGATOR | ty::COMMUNITIES | ty::EXTENDED_COMMUNITIES | ty::LARGE_COMMUNITIES => {
            Some(OPTIONAL | TRANSITIVE)
        }
        _ => None,
    }
}

/// Octets taken by an attribute's flags, type and length: "the Extended
/// Length bit ... defines whether the Attribute Length is one octet (if set
/// to 0) or two octets (if set to 1)". herald sets it only when needed.
pub fn attribute_header_len(value_len: usize) -> usize {
    if value_len > 255 { 4 } else { 3 }
}

fn put_header(out: &mut Vec<u8>, flags: u8, type_code: u8, value_len: usize) {
    if value_len > 255 {
        out.push(flags | EXTENDED_LENGTH);
        out.push(type_code);
        out.extend_from_slice(&(value_len.min(65535) as u16).to_be_bytes());
    } else {
        out.push(flags & !EXTENDED_LENGTH);
        out.push(type_code);
        out.push(value_len as u8);
    }
}

/// ORIGIN (RFC 4271 §5.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

/// One AS_PATH segment (RFC 4271 §4.3, RFC 5065 confederation types), with
/// 4-octet AS numbers (RFC 6793).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AsSegment {
    Set(Vec<u32>),
    Sequence(Vec<u32>),
    ConfedSequence(Vec<u32>),
    ConfedSet(Vec<u32>),
}

impl AsSegment {
    fn parts(&self) -> (u8, &[u32]) {
        match self {
            AsSegment::Set(a) => (1, a),
            AsSegment::Sequence(a) => (2, a),
            AsSegment::ConfedSequence(a) => (3, a),
            AsSegment::ConfedSet(a) => (4, a),
        }
    }
}

/// AS_PATH: segments of type (1), count (1), count 4-octet ASNs.
///
/// ```text
/// +------------------------------+
/// | segment type | segment length|
/// +------------------------------+
/// | AS numbers (4 octets each)   |
/// ~                              ~
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AsPath {
    pub segments: Vec<AsSegment>,
}

impl AsPath {
    /// A path of one AS_SEQUENCE, or empty for iBGP-originated routes.
    pub fn sequence(asns: Vec<u32>) -> Self {
        if asns.is_empty() {
            return AsPath::default();
        }
        AsPath {
            segments: vec![AsSegment::Sequence(asns)],
        }
    }

    fn value_len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| {
                let n = s.parts().1.len();
                2 * n.div_ceil(255).max(1) + 4 * n
            })
            .sum()
    }

    fn encode_value(&self, out: &mut Vec<u8>) {
        for segment in &self.segments {
            let (kind, asns) = segment.parts();
            // A segment holds at most 255 ASNs; longer ones are split.
            for chunk in asns.chunks(255) {
                out.push(kind);
                out.push(chunk.len() as u8);
                for asn in chunk {
                    out.extend_from_slice(&asn.to_be_bytes());
                }
            }
        }
    }

    /// RFC 7606 §7.2: "An AS_PATH is considered malformed if an unrecognized
    /// segment type is encountered or if it contains a malformed segment. A
    /// segment is considered malformed if ... [it] would cause the length of
    /// the AS_PATH to be exceeded ... [or] has a Path Segment Length field of
    /// zero."
    fn decode_value(value: &[u8]) -> Option<AsPath> {
        let mut r = Reader::new(value);
        let mut segments = Vec::new();
        while !r.is_empty() {
            let kind = r.u8().ok()?;
            let count = r.u8().ok()?;
            if count == 0 {
                return None;
            }
            let mut asns = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                asns.push(r.u32().ok()?);
            }
            segments.push(match kind {
                1 => AsSegment::Set(asns),
                2 => AsSegment::Sequence(asns),
                3 => AsSegment::ConfedSequence(asns),
                4 => AsSegment::ConfedSet(asns),
                _ => return None,
            });
        }
        Some(AsPath { segments })
    }
}

/// The next hop in MP_REACH_NLRI: IPv4, or IPv6 global with an optional
/// link-local (RFC 2545 §3: "the length of the Next Hop ... is 32 ... if
/// the link-local address is included").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MpNextHop {
    V4(Ipv4Addr),
    V6 {
        global: Ipv6Addr,
        link_local: Option<Ipv6Addr>,
    },
}

impl MpNextHop {
    fn wire_len(&self) -> usize {
        match self {
            MpNextHop::V4(_) => 4,
            MpNextHop::V6 { link_local, .. } => 16 + 16 * usize::from(link_local.is_some()),
        }
    }
}

/// MP_REACH_NLRI (RFC 4760 §3), for IPv4 or IPv6 unicast.
///
/// ```text
/// +---------------------------------------------------------+
/// | Address Family Identifier (2 octets)                    |
/// +---------------------------------------------------------+
/// | Subsequent Address Family Identifier (1 octet)          |
/// +---------------------------------------------------------+
/// | Length of Next Hop Network Address (1 octet)            |
/// +---------------------------------------------------------+
/// | Network Address of Next Hop (variable)                  |
/// +---------------------------------------------------------+
/// | Reserved (1 octet)                                      |
/// +---------------------------------------------------------+
/// | Network Layer Reachability Information (variable)       |
/// +---------------------------------------------------------+
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MpReach {
    pub family: AfiSafi,
    pub next_hop: MpNextHop,
    pub nlri: Vec<IpNet>,
}

impl MpReach {
    /// Value octets before the NLRI: AFI, SAFI, next hop length, next hop,
    /// reserved.
    pub fn fixed_len(next_hop: &MpNextHop) -> usize {
        5 + next_hop.wire_len()
    }

    fn value_len(&self) -> usize {
        Self::fixed_len(&self.next_hop) + nlri_len(&self.nlri)
    }

    fn encode_value(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.family.afi.to_be_bytes());
        out.push(self.family.safi);
        out.push(self.next_hop.wire_len() as u8);
        match self.next_hop {
            MpNextHop::V4(a) => out.extend_from_slice(&a.octets()),
            MpNextHop::V6 { global, link_local } => {
                out.extend_from_slice(&global.octets());
                if let Some(ll) = link_local {
                    out.extend_from_slice(&ll.octets());
                }
            }
        }
        out.push(0);
        encode_prefixes(self.nlri.iter().copied(), out);
    }
}

/// MP_UNREACH_NLRI (RFC 4760 §4).
///
/// ```text
/// +---------------------------------------------------------+
/// | Address Family Identifier (2 octets)                    |
/// +---------------------------------------------------------+
/// | Subsequent Address Family Identifier (1 octet)          |
/// +---------------------------------------------------------+
/// | Withdrawn Routes (variable)                             |
/// +---------------------------------------------------------+
/// ```
///
/// An empty one is the End-of-RIB marker of its family (RFC 4724 §2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MpUnreach {
    pub family: AfiSafi,
    pub withdrawn: Vec<IpNet>,
}

impl MpUnreach {
    fn value_len(&self) -> usize {
        3 + nlri_len(&self.withdrawn)
    }

    fn encode_value(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.family.afi.to_be_bytes());
        out.push(self.family.safi);
        encode_prefixes(self.withdrawn.iter().copied(), out);
    }
}

/// An attribute herald does not interpret, kept as received (flags with
/// the Extended Length bit cleared; it is recomputed on encode).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Vec<u8>,
}

/// The path attributes of one UPDATE.
///
/// ```text
///  0                   1
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
/// +---------------+---------------+
/// |  Attr. Flags  |Attr. Type Code|
/// +---------------+---------------+
/// | Attr. Length (1 or 2 octets)  |
/// +-------------------------------+
/// | Attribute Value (variable)    |
/// +-------------------------------+
/// ```
///
/// Empty community lists mean "absent" (an empty COMMUNITIES attribute is
/// malformed, RFC 7606 §7.8).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathAttributes {
    pub origin: Option<Origin>,
    pub as_path: Option<AsPath>,
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    /// AGGREGATOR with a 4-octet AS (RFC 6793 §3).
    pub aggregator: Option<(u32, Ipv4Addr)>,
    pub communities: Vec<Community>,
    /// EXTENDED_COMMUNITIES (RFC 4360), each as its eight octets.
    pub extended_communities: Vec<ExtendedCommunity>,
    pub large_communities: Vec<LargeCommunity>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    /// Unrecognized optional attributes, transitive or not.
    pub unknown: Vec<RawAttribute>,
}

fn nlri_len(prefixes: &[IpNet]) -> usize {
    prefixes
        .iter()
        .map(|p| prefix_wire_len(p.prefix_len()))
        .sum()
}

/// Appends prefixes in NLRI form: length in bits, then the significant
/// octets (RFC 4271 §4.3).
pub fn encode_prefixes(prefixes: impl IntoIterator<Item = IpNet>, out: &mut Vec<u8>) {
    for prefix in prefixes {
        let len = prefix.prefix_len();
        let n = usize::from(len).div_ceil(8);
        out.push(len);
        match prefix.addr() {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..n]),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..n]),
        }
    }
}

/// Decodes NLRI of one address family; `None` when a prefix length exceeds
/// the family's width or the field ends inside a prefix.
pub fn decode_prefixes(bytes: &[u8], ipv6: bool) -> Option<Vec<IpNet>> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::with_capacity(bytes.len() / 2);
    while !r.is_empty() {
        let len = r.u8().ok()?;
        let significant = r.take(usize::from(len).div_ceil(8)).ok()?;
        let net = if ipv6 {
            let mut octets = [0u8; 16];
            octets
                .get_mut(..significant.len())?
                .copy_from_slice(significant);
            IpNet::V6(Ipv6Net::new(Ipv6Addr::from(octets), len).ok()?.trunc())
        } else {
            let mut octets = [0u8; 4];
            octets
                .get_mut(..significant.len())?
                .copy_from_slice(significant);
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(octets), len).ok()?.trunc())
        };
        out.push(net);
    }
    Some(out)
}

/// IPv4 NLRI or withdrawn routes, as in the UPDATE body.
pub fn decode_ipv4_prefixes(bytes: &[u8]) -> Option<Vec<Ipv4Net>> {
    decode_prefixes(bytes, false).map(|v| {
        v.into_iter()
            .filter_map(|p| match p {
                IpNet::V4(p) => Some(p),
                IpNet::V6(_) => None,
            })
            .collect()
    })
}

impl PathAttributes {
    /// Octets of the encoded attributes.
    pub fn encoded_len(&self) -> usize {
        let mut len = 0;
        let mut add = |value_len: usize| len += attribute_header_len(value_len) + value_len;
        if self.origin.is_some() {
            add(1);
        }
        if let Some(path) = &self.as_path {
            add(path.value_len());
        }
        if self.next_hop.is_some() {
            add(4);
        }
        if self.med.is_some() {
            add(4);
        }
        if self.local_pref.is_some() {
            add(4);
        }
        if self.atomic_aggregate {
            add(0);
        }
        if self.aggregator.is_some() {
            add(8);
        }
        if !self.communities.is_empty() {
            add(4 * self.communities.len());
        }
        if let Some(mp) = &self.mp_reach {
            add(mp.value_len());
        }
        if let Some(mp) = &self.mp_unreach {
            add(mp.value_len());
        }
        if !self.extended_communities.is_empty() {
            add(8 * self.extended_communities.len());
        }
        if !self.large_communities.is_empty() {
            add(12 * self.large_communities.len());
        }
        for raw in &self.unknown {
            add(raw.value.len());
        }
        len
    }

    /// Appends the attributes in ascending type order, as RFC 4271 §5 asks:
    /// "The sender of an UPDATE message SHOULD order path attributes within
    /// the UPDATE message in ascending order of attribute type."
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut unknown: Vec<&RawAttribute> = self.unknown.iter().collect();
        unknown.sort_by_key(|raw| raw.type_code);
        let mut unknown = unknown.into_iter().peekable();
        let mut flush_below = |type_code: u8, out: &mut Vec<u8>| {
            while let Some(raw) = unknown.next_if(|raw| raw.type_code < type_code) {
                put_header(out, raw.flags, raw.type_code, raw.value.len());
                out.extend_from_slice(&raw.value);
            }
        };
        if let Some(origin) = self.origin {
            put_header(out, TRANSITIVE, ty::ORIGIN, 1);
            out.push(origin as u8);
        }
        flush_below(ty::AS_PATH, out);
        if let Some(path) = &self.as_path {
            put_header(out, TRANSITIVE, ty::AS_PATH, path.value_len());
            path.encode_value(out);
        }
        flush_below(ty::NEXT_HOP, out);
        if let Some(nh) = self.next_hop {
            put_header(out, TRANSITIVE, ty::NEXT_HOP, 4);
            out.extend_from_slice(&nh.octets());
        }
        flush_below(ty::MULTI_EXIT_DISC, out);
        if let Some(med) = self.med {
            put_header(out, OPTIONAL, ty::MULTI_EXIT_DISC, 4);
            out.extend_from_slice(&med.to_be_bytes());
        }
        flush_below(ty::LOCAL_PREF, out);
        if let Some(lp) = self.local_pref {
            put_header(out, TRANSITIVE, ty::LOCAL_PREF, 4);
            out.extend_from_slice(&lp.to_be_bytes());
        }
        flush_below(ty::ATOMIC_AGGREGATE, out);
        if self.atomic_aggregate {
            put_header(out, TRANSITIVE, ty::ATOMIC_AGGREGATE, 0);
        }
        flush_below(ty::AGGREGATOR, out);
        if let Some((asn, addr)) = self.aggregator {
            put_header(out, OPTIONAL | TRANSITIVE, ty::AGGREGATOR, 8);
            out.extend_from_slice(&asn.to_be_bytes());
            out.extend_from_slice(&addr.octets());
        }
        flush_below(ty::COMMUNITIES, out);
        if !self.communities.is_empty() {
            put_header(
                out,
                OPTIONAL | TRANSITIVE,
                ty::COMMUNITIES,
                4 * self.communities.len(),
            );
            for c in &self.communities {
                out.extend_from_slice(&c.0.to_be_bytes());
            }
        }
        flush_below(ty::MP_REACH_NLRI, out);
        if let Some(mp) = &self.mp_reach {
            put_header(out, OPTIONAL, ty::MP_REACH_NLRI, mp.value_len());
            mp.encode_value(out);
        }
        flush_below(ty::MP_UNREACH_NLRI, out);
        if let Some(mp) = &self.mp_unreach {
            put_header(out, OPTIONAL, ty::MP_UNREACH_NLRI, mp.value_len());
            mp.encode_value(out);
        }
        flush_below(ty::EXTENDED_COMMUNITIES, out);
        if !self.extended_communities.is_empty() {
            let len = 8 * self.extended_communities.len();
            put_header(out, OPTIONAL | TRANSITIVE, ty::EXTENDED_COMMUNITIES, len);
            for c in &self.extended_communities {
                out.extend_from_slice(&c.0);
            }
        }
        flush_below(ty::LARGE_COMMUNITIES, out);
        if !self.large_communities.is_empty() {
            let len = 12 * self.large_communities.len();
            put_header(out, OPTIONAL | TRANSITIVE, ty::LARGE_COMMUNITIES, len);
            for c in &self.large_communities {
                out.extend_from_slice(&c.global_admin.to_be_bytes());
                out.extend_from_slice(&c.local_data_1.to_be_bytes());
                out.extend_from_slice(&c.local_data_2.to_be_bytes());
            }
        }
        flush_below(u8::MAX, out);
        // A raw attribute of type 255 sorts last and is not below MAX.
        for raw in unknown {
            put_header(out, raw.flags, raw.type_code, raw.value.len());
            out.extend_from_slice(&raw.value);
        }
    }

    /// Decodes the Path Attributes field. Malformed attributes that RFC 7606
    /// lets the session survive are returned beside the attributes, with
    /// their disposition; the rest end the session.
    pub fn decode(field: &[u8]) -> Result<(PathAttributes, Vec<AttributeError>), UpdateError> {
        let mut attrs = PathAttributes::default();
        let mut errors = Vec::new();
        let mut seen = [false; 256];
        let mut r = Reader::new(field);
        while !r.is_empty() {
            let start = r.rest();
            // RFC 7606 §4: when fewer octets remain than an attribute header,
            // or the attribute's length overruns the field, "the
            // 'treat-as-withdraw' approach MUST be used ... and the Total
            // Attribute Length MUST be relied upon to enable the beginning of
            // the NLRI field to be located."
            let Some((flags, type_code, value)) = read_attribute(&mut r) else {
                errors.push(AttributeError {
                    type_code: start.get(1).copied().unwrap_or(0),
                    fault: AttributeFault::AttributeList,
                    reason: "attribute overruns the path attributes field",
                    disposition: Disposition::TreatAsWithdraw,
                    data: Vec::new(),
                });
                break;
            };
            let whole = &start[..start.len() - r.remaining()];
            let fail = |fault, reason, disposition| AttributeError {
                type_code,
                fault,
                reason,
                disposition,
                data: whole.to_vec(),
            };
            // RFC 7606 §3 (g): "If the MP_REACH_NLRI attribute or the
            // MP_UNREACH_NLRI attribute appears more than once in the UPDATE
            // message, then a NOTIFICATION message MUST be sent with the Error
            // Subcode 'Malformed Attribute List'. If any other attribute ...
            // appears more than once ... all the occurrences of the attribute
            // other than the first one SHALL be discarded".
            if std::mem::replace(&mut seen[usize::from(type_code)], true) {
                if matches!(type_code, ty::MP_REACH_NLRI | ty::MP_UNREACH_NLRI) {
                    return Err(UpdateError::Attribute(fail(
                        AttributeFault::AttributeList,
                        "MP_REACH_NLRI or MP_UNREACH_NLRI appears twice",
                        Disposition::SessionReset,
                    )));
                }
                continue;
            }
            let Some(expected) = expected_flags(type_code) else {
                // RFC 4271 §6.3: "If any of the well-known mandatory attributes
                // are not recognized, then the Error Subcode MUST be set to
                // Unrecognized Well-known Attribute. The Data field MUST
                // contain the unrecognized attribute (type, length, and
                // value)."
                if flags & OPTIONAL == 0 {
                    return Err(UpdateError::UnrecognizedWellKnown {
                        type_code,
                        data: whole.to_vec(),
                    });
                }
                attrs.unknown.push(RawAttribute {
                    flags: flags & !EXTENDED_LENGTH,
                    type_code,
                    value: value.to_vec(),
                });
                continue;
            };
            // RFC 7606 §3 (c): "If the value of either the Optional or
            // Transitive bits in the Attribute Flags is in conflict with their
            // specified values, then the attribute MUST be treated as
            // malformed and the 'treat-as-withdraw' approach used".
            if flags & (OPTIONAL | TRANSITIVE) != expected {
                errors.push(fail(
                    AttributeFault::Flags,
                    "optional/transitive flags conflict with the attribute type",
                    Disposition::TreatAsWithdraw,
                ));
                continue;
            }
            if let Err(e) = attrs.decode_known(type_code, value) {
                let (fault, reason, disposition) = e;
                let error = fail(fault, reason, disposition);
                if disposition == Disposition::SessionReset {
                    return Err(UpdateError::Attribute(error));
                }
                errors.push(error);
            }
        }
        Ok((attrs, errors))
    }

    /// Decodes one recognized attribute's value into `self`.
    fn decode_known(
        &mut self,
        type_code: u8,
        value: &[u8],
    ) -> Result<(), (AttributeFault, &'static str, Disposition)> {
        use AttributeFault::*;
        use Disposition::*;
        let mut r = Reader::new(value);
        match type_code {
            // RFC 7606 §7.1: ORIGIN with a length other than 1 or an
            // undefined value: "treat-as-withdraw".
            ty::ORIGIN => {
                let [v] = *value else {
                    return Err((Length, "ORIGIN length is not 1", TreatAsWithdraw));
                };
                self.origin = Some(match v {
                    0 => Origin::Igp,
                    1 => Origin::Egp,
                    2 => Origin::Incomplete,
                    _ => return Err((InvalidOrigin, "undefined ORIGIN value", TreatAsWithdraw)),
                });
            }
            ty::AS_PATH => {
                let path = AsPath::decode_value(value).ok_or((
                    MalformedAsPath,
                    "malformed AS_PATH",
                    TreatAsWithdraw,
                ))?;
                self.as_path = Some(path);
            }
            // RFC 7606 §7.3: NEXT_HOP length other than 4 or a semantically
            // invalid address: "treat-as-withdraw".
            ty::NEXT_HOP => {
                let nh = exact_u32(&mut r, value, "NEXT_HOP length is not 4")?;
                let nh = Ipv4Addr::from(nh);
                if nh.is_unspecified() || nh.is_multicast() || nh.is_broadcast() {
                    return Err((
                        InvalidNextHop,
                        "NEXT_HOP is not a unicast address",
                        TreatAsWithdraw,
                    ));
                }
                self.next_hop = Some(nh);
            }
            // RFC 7606 §7.4, §7.5: MED and LOCAL_PREF of a length other than
            // 4: "treat-as-withdraw".
            ty::MULTI_EXIT_DISC => {
                self.med = Some(exact_u32(&mut r, value, "MULTI_EXIT_DISC length is not 4")?)
            }
            ty::LOCAL_PREF => {
                self.local_pref = Some(exact_u32(&mut r, value, "LOCAL_PREF length is not 4")?)
            }
            // RFC 7606 §7.6: ATOMIC_AGGREGATE length other than 0: "attribute
            // discard".
            ty::ATOMIC_AGGREGATE => {
                if !value.is_empty() {
                    return Err((Length, "ATOMIC_AGGREGATE length is not 0", AttributeDiscard));
                }
                self.atomic_aggregate = true;
            }
            // RFC 7606 §7.7: AGGREGATOR of the wrong length: "attribute
            // discard" (8 octets with 4-octet AS numbers).
            ty::AGGREGATOR => {
                if value.len() != 8 {
                    return Err((Length, "AGGREGATOR length is not 8", AttributeDiscard));
                }
                let asn = r
                    .u32()
                    .map_err(|_| (Length, "AGGREGATOR", AttributeDiscard))?;
                let addr = r
                    .ipv4()
                    .map_err(|_| (Length, "AGGREGATOR", AttributeDiscard))?;
                self.aggregator = Some((asn, addr));
            }
            // RFC 7606 §7.8: "The error handling of [RFC1997] is revised as
            // follows: o The Community attribute SHALL be considered malformed
            // if its length is not a non-zero multiple of 4. o An UPDATE
            // message with a malformed Community attribute SHALL be handled
            // using the approach of 'treat-as-withdraw'."
            ty::COMMUNITIES => {
                if value.is_empty() || !value.len().is_multiple_of(4) {
                    return Err((
                        Optional,
                        "COMMUNITIES length is not a non-zero multiple of 4",
                        TreatAsWithdraw,
                    ));
                }
                while let Ok(c) = r.u32() {
                    self.communities.push(Community(c));
                }
            }
            // RFC 7606 §7.14: "The error handling of [RFC4360] is revised
            // as follows: o The Extended Communities attribute SHALL be
            // considered malformed if its length is not a non-zero multiple
            // of 8. o An UPDATE message with a malformed Extended
            // Communities attribute SHALL be handled using the approach of
            // 'treat-as-withdraw'."
            ty::EXTENDED_COMMUNITIES => {
                if value.is_empty() || !value.len().is_multiple_of(8) {
                    return Err((
                        Optional,
                        "EXTENDED_COMMUNITIES length is not a non-zero multiple of 8",
                        TreatAsWithdraw,
                    ));
                }
                for chunk in value.chunks_exact(8) {
                    let mut octets = [0u8; 8];
                    octets.copy_from_slice(chunk);
                    self.extended_communities.push(ExtendedCommunity(octets));
                }
            }
            // RFC 8092 §6: "A Large Communities attribute SHALL be considered
            // malformed if the length of the Large Communities Attribute value
            // ... is either zero (0) or not a multiple of twelve (12)" ...
            // "treat-as-withdraw".
            ty::LARGE_COMMUNITIES => {
                if value.is_empty() || !value.len().is_multiple_of(12) {
                    return Err((
                        Optional,
                        "LARGE_COMMUNITIES length is not a non-zero multiple of 12",
                        TreatAsWithdraw,
                    ));
                }
                while let (Ok(a), Ok(b), Ok(c)) = (r.u32(), r.u32(), r.u32()) {
                    self.large_communities.push(LargeCommunity {
                        global_admin: a,
                        local_data_1: b,
                        local_data_2: c,
                    });
                }
            }
            ty::MP_REACH_NLRI => match decode_mp_reach(value)? {
                Some(mp) => self.mp_reach = Some(mp),
                None => self.unknown.push(RawAttribute {
                    flags: OPTIONAL,
                    type_code,
                    value: value.to_vec(),
                }),
            },
            ty::MP_UNREACH_NLRI => match decode_mp_unreach(value)? {
                Some(mp) => self.mp_unreach = Some(mp),
                None => self.unknown.push(RawAttribute {
                    flags: OPTIONAL,
                    type_code,
                    value: value.to_vec(),
                }),
            },
            _ => {}
        }
        Ok(())
    }
}

type Fault = (AttributeFault, &'static str, Disposition);

fn exact_u32(r: &mut Reader<'_>, value: &[u8], reason: &'static str) -> Result<u32, Fault> {
    let fault = (AttributeFault::Length, reason, Disposition::TreatAsWithdraw);
    if value.len() != 4 {
        return Err(fault);
    }
    r.u32().map_err(|_| fault)
}

/// Flags, type and value of the next attribute; `None` when it overruns.
fn read_attribute<'a>(r: &mut Reader<'a>) -> Option<(u8, u8, &'a [u8])> {
    let flags = r.u8().ok()?;
    let type_code = r.u8().ok()?;
    let len = if flags & EXTENDED_LENGTH != 0 {
        usize::from(r.u16().ok()?)
    } else {
        usize::from(r.u8().ok()?)
    };
    Some((flags, type_code, r.take(len).ok()?))
}

fn family_is_known(family: AfiSafi) -> bool {
    family == AfiSafi::IPV4_UNICAST || family == AfiSafi::IPV6_UNICAST
}

/// RFC 7606 §7.11: a malformed MP_REACH_NLRI (next hop length inconsistent,
/// NLRI unparseable) calls for "session reset" (herald does not implement
/// "AFI/SAFI disable"). Families other than IPv4/IPv6 unicast are kept raw.
fn decode_mp_reach(value: &[u8]) -> Result<Option<MpReach>, Fault> {
    let bad = |reason| (AttributeFault::Optional, reason, Disposition::SessionReset);
    let mut r = Reader::new(value);
    let afi = r.u16().map_err(|_| bad("MP_REACH_NLRI too short"))?;
    let safi = r.u8().map_err(|_| bad("MP_REACH_NLRI too short"))?;
    let family = AfiSafi { afi, safi };
    if !family_is_known(family) {
        return Ok(None);
    }
    let nh_len = r.u8().map_err(|_| bad("MP_REACH_NLRI too short"))?;
    let nh = r
        .take(usize::from(nh_len))
        .map_err(|_| bad("next hop overruns MP_REACH_NLRI"))?;
    let mut nh_reader = Reader::new(nh);
    let next_hop = match nh_len {
        4 => MpNextHop::V4(nh_reader.ipv4().map_err(|_| bad("next hop"))?),
        16 => MpNextHop::V6 {
            global: nh_reader.ipv6().map_err(|_| bad("next hop"))?,
            link_local: None,
        },
        32 => MpNextHop::V6 {
            global: nh_reader.ipv6().map_err(|_| bad("next hop"))?,
            link_local: Some(nh_reader.ipv6().map_err(|_| bad("next hop"))?),
        },
        _ => return Err(bad("MP_REACH_NLRI next hop length is not 4, 16 or 32")),
    };
    let _reserved = r
        .u8()
        .map_err(|_| bad("MP_REACH_NLRI lacks the reserved octet"))?;
    let nlri = decode_prefixes(r.rest(), afi == 2).ok_or(bad("MP_REACH_NLRI NLRI is malformed"))?;
    Ok(Some(MpReach {
        family,
        next_hop,
        nlri,
    }))
}

/// RFC 7606 §7.11 applies to MP_UNREACH_NLRI too.
fn decode_mp_unreach(value: &[u8]) -> Result<Option<MpUnreach>, Fault> {
    let bad = |reason| (AttributeFault::Optional, reason, Disposition::SessionReset);
    let mut r = Reader::new(value);
    let afi = r.u16().map_err(|_| bad("MP_UNREACH_NLRI too short"))?;
    let safi = r.u8().map_err(|_| bad("MP_UNREACH_NLRI too short"))?;
    let family = AfiSafi { afi, safi };
    if !family_is_known(family) {
        return Ok(None);
    }
    let withdrawn = decode_prefixes(r.rest(), afi == 2)
        .ok_or(bad("MP_UNREACH_NLRI withdrawn routes are malformed"))?;
    Ok(Some(MpUnreach { family, withdrawn }))
}
