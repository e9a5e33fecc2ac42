//! ROUTE-REFRESH (RFC 2918 §3).

use super::capability::AfiSafi;
use super::error::RouteRefreshError;

/// A ROUTE-REFRESH message: the peer asks for the Adj-RIB-Out of one family
/// again.
///
/// ```text
///  0       7      15      23      31
/// +-------+-------+-------+-------+
/// |      AFI      | Res.  | SAFI  |
/// +-------+-------+-------+-------+
/// ```
///
/// The reserved octet is the RFC 7313 message subtype; 0 is a plain
/// refresh request, which is all herald advertises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteRefresh {
    pub family: AfiSafi,
    pub subtype: u8,
}

impl RouteRefresh {
    pub fn new(family: AfiSafi) -> Self {
        RouteRefresh { family, subtype: 0 }
    }

    pub(super) fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.family.afi.to_be_bytes());
        out.push(self.subtype);
        out.push(self.family.safi);
    }

    /// RFC 7313 §5: "If the length, excluding the fixed-size message header,
    /// of the received ROUTE-REFRESH message with Message Subtype 0 is not
    /// 4, then the BGP speaker MUST send a NOTIFICATION message with the
    /// Error Code of 'ROUTE-REFRESH Message Error' and the subcode of
    /// 'Invalid Message Length'."
    pub(super) fn decode_body(body: &[u8]) -> Result<RouteRefresh, RouteRefreshError> {
        match *body {
            [afi_hi, afi_lo, subtype, safi] => Ok(RouteRefresh {
                family: AfiSafi {
                    afi: u16::from_be_bytes([afi_hi, afi_lo]),
                    safi,
                },
                subtype,
            }),
            _ => Err(RouteRefreshError::InvalidLength(body.len())),
        }
    }
}
