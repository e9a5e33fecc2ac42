//! UPDATE (RFC 4271 §4.3) and End-of-RIB (RFC 4724 §2).

use ipnet::{IpNet, Ipv4Net};

use super::attributes::{MpUnreach, attribute_type};
use super::attributes::{PathAttributes, decode_ipv4_prefixes, encode_prefixes};
use super::capability::AfiSafi;
use super::error::{AttributeError, AttributeFault, Disposition, UpdateError};
use super::prefix_wire_len;
use super::reader::Reader;

/// An UPDATE message.
///
/// ```text
/// +-----------------------------------------------------+
/// |   Withdrawn Routes Length (2 octets)                |
/// +-----------------------------------------------------+
/// |   Withdrawn Routes (variable)                       |
/// +-----------------------------------------------------+
/// |   Total Path Attribute Length (2 octets)            |
/// +-----------------------------------------------------+
/// |   Path Attributes (variable)                        |
/// +-----------------------------------------------------+
/// |   Network Layer Reachability Information (variable) |
/// +-----------------------------------------------------+
/// ```
///
/// IPv4 unicast travels in the withdrawn routes and NLRI fields; IPv6 in
/// MP_REACH_NLRI / MP_UNREACH_NLRI (RFC 4760).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    pub withdrawn: Vec<Ipv4Net>,
    pub attributes: PathAttributes,
    pub nlri: Vec<Ipv4Net>,
    /// Malformed attributes the session survives (RFC 7606); never encoded.
    pub errors: Vec<AttributeError>,
}

impl Update {
    /// The End-of-RIB marker of a family (RFC 4724 §2): "An UPDATE message
    /// with no reachable Network Layer Reachability Information (NLRI) and
    /// empty withdrawn NLRI is specified as the End-of-RIB marker ... For the
    /// IPv4 unicast address family, the End-of-RIB marker is an UPDATE
    /// message with the minimum length ... For any other address family, it
    /// is an UPDATE message that contains only the MP_UNREACH_NLRI attribute
    /// with no withdrawn routes for that <AFI, SAFI>."
    pub fn end_of_rib(family: AfiSafi) -> Update {
        if family == AfiSafi::IPV4_UNICAST {
            return Update::default();
        }
        Update {
            attributes: PathAttributes {
                mp_unreach: Some(MpUnreach {
                    family,
                    withdrawn: Vec::new(),
                }),
                ..PathAttributes::default()
            },
            ..Update::default()
        }
    }

    /// The family whose End-of-RIB this is, if it is one.
    pub fn end_of_rib_family(&self) -> Option<AfiSafi> {
        if !self.withdrawn.is_empty() || !self.nlri.is_empty() {
            return None;
        }
        if self.attributes == PathAttributes::default() {
            return Some(AfiSafi::IPV4_UNICAST);
        }
        match &self.attributes {
            PathAttributes {
                mp_unreach: Some(mp),
                ..
            } if mp.withdrawn.is_empty()
                && self.attributes
                    == (PathAttributes {
                        mp_unreach: Some(mp.clone()),
                        ..PathAttributes::default()
                    }) =>
            {
                Some(mp.family)
            }
            _ => None,
        }
    }

    /// The worst RFC 7606 disposition among the non-fatal errors.
    pub fn disposition(&self) -> Option<Disposition> {
        self.errors.iter().map(|e| e.disposition).max()
    }

    /// Prefixes this UPDATE announces, of both families.
    pub fn announced(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.nlri.iter().copied().map(IpNet::V4).chain(
            self.attributes
                .mp_reach
                .iter()
                .flat_map(|mp| mp.nlri.iter().copied()),
        )
    }

    /// Prefixes this UPDATE withdraws, of both families.
    pub fn withdrawn_prefixes(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.withdrawn.iter().copied().map(IpNet::V4).chain(
            self.attributes
                .mp_unreach
                .iter()
                .flat_map(|mp| mp.withdrawn.iter().copied()),
        )
    }

    pub(super) fn body_len(&self) -> usize {
        let prefixes =
            |p: &[Ipv4Net]| -> usize { p.iter().map(|p| prefix_wire_len(p.prefix_len())).sum() };
        4 + prefixes(&self.withdrawn) + self.attributes.encoded_len() + prefixes(&self.nlri)
    }

    pub(super) fn encode_body(&self, out: &mut Vec<u8>) {
        let withdrawn_len: usize = self
            .withdrawn
            .iter()
            .map(|p| prefix_wire_len(p.prefix_len()))
            .sum();
        out.extend_from_slice(&(withdrawn_len as u16).to_be_bytes());
        encode_prefixes(self.withdrawn.iter().copied().map(IpNet::V4), out);
        let attrs_len = self.attributes.encoded_len();
        out.extend_from_slice(&(attrs_len as u16).to_be_bytes());
        self.attributes.encode(out);
        encode_prefixes(self.nlri.iter().copied().map(IpNet::V4), out);
    }

    /// Decodes the UPDATE body (after the header).
    pub fn decode_body(body: &[u8]) -> Result<Update, UpdateError> {
        // RFC 7606 §5.1 (and RFC 4271 §6.3): "If the Withdrawn Routes Length
        // or Total Attribute Length is too large (i.e., if Withdrawn Routes
        // Length + Total Attribute Length + 23 exceeds the message Length),
        // then the Error Subcode MUST be set to Malformed Attribute List."
        let mut r = Reader::new(body);
        let list = |reason| UpdateError::MalformedAttributeList(reason);
        let withdrawn_len = r.u16().map_err(|_| list("no withdrawn routes length"))?;
        let withdrawn = r
            .take(usize::from(withdrawn_len))
            .map_err(|_| list("withdrawn routes length exceeds the message"))?;
        let attrs_len = r
            .u16()
            .map_err(|_| list("no total path attribute length"))?;
        let attrs = r
            .take(usize::from(attrs_len))
            .map_err(|_| list("total path attribute length exceeds the message"))?;
        let nlri = r.rest();

        // RFC 7606 §5.3: an unparseable NLRI or withdrawn routes field is a
        // "session reset" (Invalid Network Field).
        let withdrawn = decode_ipv4_prefixes(withdrawn).ok_or(UpdateError::InvalidNetworkField(
            "withdrawn routes are malformed",
        ))?;
        let nlri = decode_ipv4_prefixes(nlri)
            .ok_or(UpdateError::InvalidNetworkField("NLRI is malformed"))?;
        let (attributes, mut errors) = PathAttributes::decode(attrs)?;

        // RFC 7606 §3 (d): "If any of the well-known mandatory attributes are
        // not present in an UPDATE message, then 'treat-as-withdraw' MUST be
        // used." They are mandatory only when the UPDATE carries NLRI; NEXT_HOP
        // only for IPv4 NLRI (RFC 4760 §3).
        let has_ipv4_nlri = !nlri.is_empty();
        let has_mp_nlri = attributes
            .mp_reach
            .as_ref()
            .is_some_and(|mp| !mp.nlri.is_empty());
        if has_ipv4_nlri || has_mp_nlri {
            let mut missing = |present: bool, type_code: u8| {
                if !present {
                    errors.push(AttributeError {
                        type_code,
                        fault: AttributeFault::Missing,
                        reason: "well-known mandatory attribute missing",
                        disposition: Disposition::TreatAsWithdraw,
                        data: vec![type_code],
                    });
                }
            };
            missing(attributes.origin.is_some(), attribute_type::ORIGIN);
            missing(attributes.as_path.is_some(), attribute_type::AS_PATH);
            if has_ipv4_nlri {
                missing(attributes.next_hop.is_some(), attribute_type::NEXT_HOP);
            }
        }
        Ok(Update {
            withdrawn,
            attributes,
            nlri,
            errors,
        })
    }
}
