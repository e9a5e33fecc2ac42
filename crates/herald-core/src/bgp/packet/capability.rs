//! Capabilities advertised in OPEN (RFC 5492).

use super::error::OpenError;
use super::reader::Reader;

/// An address family and subsequent address family (RFC 4760 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AfiSafi {
    pub afi: u16,
    pub safi: u8,
}

impl AfiSafi {
    pub const IPV4_UNICAST: AfiSafi = AfiSafi { afi: 1, safi: 1 };
    pub const IPV6_UNICAST: AfiSafi = AfiSafi { afi: 2, safi: 1 };
}

/// Capability codes (IANA "Capability Codes").
pub mod capability_code {
    pub const MULTIPROTOCOL: u8 = 1;
    pub const ROUTE_REFRESH: u8 = 2;
    pub const EXTENDED_MESSAGE: u8 = 6;
    pub const GRACEFUL_RESTART: u8 = 64;
    pub const FOUR_OCTET_AS: u8 = 65;
}

/// The graceful restart capability (RFC 4724 §3).
///
/// ```text
/// +--------------------------------------------------+
/// | Restart Flags (4 bits)                           |
/// +--------------------------------------------------+
/// | Restart Time in seconds (12 bits)                |
/// +--------------------------------------------------+
/// | Address Family Identifier (16 bits)              |
/// +--------------------------------------------------+
/// | Subsequent Address Family Identifier (8 bits)    |
/// +--------------------------------------------------+
/// | Flags for Address Family (8 bits)                |
/// +--------------------------------------------------+
/// | ...                                              |
/// ```
///
/// Restart flags: R (0x8, "Restart State") and N (0x4, RFC 8538
/// notification); per-family flag F (0x80, "Forwarding State").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GracefulRestartCapability {
    pub restart_state: bool,
    pub notification: bool,
    /// Seconds, at most 4095.
    pub restart_time: u16,
    /// Families with their forwarding-state bit.
    pub families: Vec<(AfiSafi, bool)>,
}

/// One capability (RFC 5492 §4).
///
/// ```text
/// +------------------------------+
/// | Capability Code (1 octet)    |
/// +------------------------------+
/// | Capability Length (1 octet)  |
/// +------------------------------+
/// | Capability Value (variable)  |
/// ~                              ~
/// +------------------------------+
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capability {
    /// RFC 4760 §8: AFI (2), reserved (1), SAFI (1).
    Multiprotocol(AfiSafi),
    /// RFC 2918 §2, empty value.
    RouteRefresh,
    /// RFC 8654 §3, empty value.
    ExtendedMessage,
    GracefulRestart(GracefulRestartCapability),
    /// RFC 6793 §3: the 4-octet AS number.
    FourOctetAs(u32),
    /// Anything else, kept as received.
    Unknown {
        code: u8,
        value: Vec<u8>,
    },
}

impl Capability {
    pub fn code(&self) -> u8 {
        match self {
            Capability::Multiprotocol(_) => capability_code::MULTIPROTOCOL,
            Capability::RouteRefresh => capability_code::ROUTE_REFRESH,
            Capability::ExtendedMessage => capability_code::EXTENDED_MESSAGE,
            Capability::GracefulRestart(_) => capability_code::GRACEFUL_RESTART,
            Capability::FourOctetAs(_) => capability_code::FOUR_OCTET_AS,
            Capability::Unknown { code, .. } => *code,
        }
    }

    fn value_len(&self) -> usize {
        match self {
            Capability::Multiprotocol(_) => 4,
            Capability::RouteRefresh | Capability::ExtendedMessage => 0,
            Capability::GracefulRestart(gr) => 2 + 4 * gr.families.len(),
            Capability::FourOctetAs(_) => 4,
            Capability::Unknown { value, .. } => value.len(),
        }
    }

    /// Encoded length: code, length, value.
    pub fn encoded_len(&self) -> usize {
        2 + self.value_len()
    }

    /// Appends code, length and value. A value over 255 octets cannot be
    /// framed; only `Unknown` could carry one and is cut to 255.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.code());
        out.push(self.value_len().min(255) as u8);
        match self {
            Capability::Multiprotocol(family) => {
                out.extend_from_slice(&family.afi.to_be_bytes());
                out.push(0);
                out.push(family.safi);
            }
            Capability::RouteRefresh | Capability::ExtendedMessage => {}
            Capability::GracefulRestart(gr) => {
                let flags =
                    (u16::from(gr.restart_state) << 15) | (u16::from(gr.notification) << 14);
                out.extend_from_slice(&(flags | (gr.restart_time & 0x0FFF)).to_be_bytes());
                for (family, forwarding) in &gr.families {
                    out.extend_from_slice(&family.afi.to_be_bytes());
                    out.push(family.safi);
                    out.push(if *forwarding { 0x80 } else { 0 });
                }
            }
            Capability::FourOctetAs(asn) => out.extend_from_slice(&asn.to_be_bytes()),
            Capability::Unknown { value, .. } => {
                out.extend_from_slice(&value[..value.len().min(255)])
            }
        }
    }

    /// Decodes the capabilities packed in one Capabilities optional
    /// parameter (RFC 5492 §4: a parameter may hold several).
    pub fn decode_all(value: &[u8], out: &mut Vec<Capability>) -> Result<(), OpenError> {
        let mut r = Reader::new(value);
        while !r.is_empty() {
            let code = r.u8().map_err(|_| malformed())?;
            let len = r.u8().map_err(|_| malformed())?;
            let value = r.take(usize::from(len)).map_err(|_| malformed())?;
            out.push(Capability::decode_one(code, value)?);
        }
        Ok(())
    }

    fn decode_one(code: u8, value: &[u8]) -> Result<Capability, OpenError> {
        let mut r = Reader::new(value);
        let cap = match code {
            capability_code::MULTIPROTOCOL if value.len() == 4 => {
                let afi = r.u16().map_err(|_| malformed())?;
                let _reserved = r.u8().map_err(|_| malformed())?;
                let safi = r.u8().map_err(|_| malformed())?;
                Capability::Multiprotocol(AfiSafi { afi, safi })
            }
            capability_code::ROUTE_REFRESH if value.is_empty() => Capability::RouteRefresh,
            capability_code::EXTENDED_MESSAGE if value.is_empty() => Capability::ExtendedMessage,
            capability_code::FOUR_OCTET_AS if value.len() == 4 => {
                Capability::FourOctetAs(r.u32().map_err(|_| malformed())?)
            }
            capability_code::GRACEFUL_RESTART if value.len() >= 2 && value.len() % 4 == 2 => {
                let word = r.u16().map_err(|_| malformed())?;
                let mut families = Vec::new();
                while !r.is_empty() {
                    let afi = r.u16().map_err(|_| malformed())?;
                    let safi = r.u8().map_err(|_| malformed())?;
                    let flags = r.u8().map_err(|_| malformed())?;
                    families.push((AfiSafi { afi, safi }, flags & 0x80 != 0));
                }
                Capability::GracefulRestart(GracefulRestartCapability {
                    restart_state: word & 0x8000 != 0,
                    notification: word & 0x4000 != 0,
                    restart_time: word & 0x0FFF,
                    families,
                })
            }
            capability_code::MULTIPROTOCOL
            | capability_code::ROUTE_REFRESH
            | capability_code::EXTENDED_MESSAGE
            | capability_code::FOUR_OCTET_AS
            | capability_code::GRACEFUL_RESTART => {
                return Err(OpenError::Malformed(
                    "capability value has the wrong length",
                ));
            }
            code => Capability::Unknown {
                code,
                value: value.to_vec(),
            },
        };
        Ok(cap)
    }
}

fn malformed() -> OpenError {
    OpenError::Malformed("capability overruns its optional parameter")
}
