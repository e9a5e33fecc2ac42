//! OPEN (RFC 4271 §4.2) with capabilities (RFC 5492) and 4-octet AS
//! numbers (RFC 6793).

use std::net::Ipv4Addr;

use super::capability::Capability;
use super::error::OpenError;
use super::reader::Reader;

/// AS_TRANS (RFC 6793 §9): the 2-octet stand-in for a 4-octet AS.
pub const AS_TRANS: u16 = 23456;

/// Optional parameter type "Capabilities" (RFC 5492 §4).
const PARAM_CAPABILITIES: u8 = 2;

/// An OPEN message.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+
/// |    Version    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     My Autonomous System      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           Hold Time           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         BGP Identifier                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Opt Parm Len  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |             Optional Parameters (variable)                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Each optional parameter is type (1), length (1), value; herald sends one
/// Capabilities parameter (type 2) per capability, as most speakers do.
/// The version is always 4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    /// The 2-octet field: the AS, or AS_TRANS when it does not fit.
    pub my_as: u16,
    /// Seconds; 0 or at least 3.
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// An OPEN for `asn`, putting AS_TRANS in My AS when the AS needs four
    /// octets (RFC 6793 §4.1: "... it MUST use AS_TRANS in the My
    /// Autonomous System field") and always carrying the 4-octet AS
    /// capability ("a BGP speaker ... MUST also carry the capability").
    pub fn new(
        asn: u32,
        hold_time: u16,
        bgp_id: Ipv4Addr,
        mut capabilities: Vec<Capability>,
    ) -> Self {
        if !capabilities
            .iter()
            .any(|c| matches!(c, Capability::FourOctetAs(_)))
        {
            capabilities.push(Capability::FourOctetAs(asn));
        }
        Open {
            my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
            hold_time,
            bgp_id,
            capabilities,
        }
    }

    /// The sender's AS: from the 4-octet AS capability when present, else
    /// the My AS field.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(asn) => Some(*asn),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }

    fn params_len(&self) -> usize {
        self.capabilities.iter().map(|c| 2 + c.encoded_len()).sum()
    }

    pub(super) fn body_len(&self) -> usize {
        10 + self.params_len()
    }

    pub(super) fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(4);
        out.extend_from_slice(&self.my_as.to_be_bytes());
        out.extend_from_slice(&self.hold_time.to_be_bytes());
        out.extend_from_slice(&self.bgp_id.octets());
        // Our capabilities are few and small: far below 255 octets.
        out.push(self.params_len().min(255) as u8);
        for cap in &self.capabilities {
            out.push(PARAM_CAPABILITIES);
            out.push(cap.encoded_len() as u8);
            cap.encode(out);
        }
    }

    /// Decodes the OPEN body (after the header). Semantic checks that need
    /// configuration (peer AS, hold time, identifier collision) belong to the
    /// FSM; this checks what the message alone can show.
    pub fn decode_body(body: &[u8]) -> Result<Open, OpenError> {
        let short = |_| OpenError::Malformed("OPEN shorter than its fixed fields");
        let mut r = Reader::new(body);
        let version = r.u8().map_err(short)?;
        let my_as = r.u16().map_err(short)?;
        let hold_time = r.u16().map_err(short)?;
        let bgp_id = r.ipv4().map_err(short)?;
        let params_len = r.u8().map_err(short)?;
        // RFC 4271 §6.2: "If the version number in the Version field of the
        // received OPEN message is not supported, then the Error Subcode MUST
        // be set to Unsupported Version Number."
        if version != 4 {
            return Err(OpenError::UnsupportedVersion(version));
        }
        if usize::from(params_len) != r.remaining() {
            return Err(OpenError::Malformed(
                "optional parameters length disagrees with the message length",
            ));
        }
        let mut capabilities = Vec::new();
        while !r.is_empty() {
            let overrun = |_| OpenError::Malformed("optional parameter overruns the OPEN");
            let kind = r.u8().map_err(overrun)?;
            let len = r.u8().map_err(overrun)?;
            let value = r.take(usize::from(len)).map_err(overrun)?;
            // "If one of the Optional Parameters in the OPEN message is not
            // recognized, then the Error Subcode MUST be set to Unsupported
            // Optional Parameters." (RFC 9072's type 255 included.)
            if kind != PARAM_CAPABILITIES {
                return Err(OpenError::UnsupportedOptionalParameter(kind));
            }
            Capability::decode_all(value, &mut capabilities)?;
        }
        Ok(Open {
            my_as,
            hold_time,
            bgp_id,
            capabilities,
        })
    }
}
