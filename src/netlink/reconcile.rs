//! Pure reconciliation: the wanted service addresses and what the kernel has
//! on the interface in, the minimal list of add and remove requests out.
//!
//! No sockets, no tokio, no clock: the address task in `service.rs` performs
//! the requests this module computes.
//!
//! # Rules
//! - A wanted address that the interface already carries as a host address
//!   (/32, /128) owned by herald: nothing to do (this is how a restarted herald
//!   adopts its addresses without a remove/add flap).
//! - A wanted address that the interface carries *unowned* (an operator put it
//!   there, with any prefix length): nothing to do. The address is local, so
//!   traffic for it is delivered; herald does not take it over and never
//!   removes it. It is reported as "present, not owned".
//! - A wanted address that is absent: add it as a host address.
//! - An owned address that is not wanted, or owned with a prefix length that
//!   is not a host length: remove it.
//! - Unowned addresses that are not wanted are none of herald's business.

use std::collections::BTreeSet;
use std::net::IpAddr;

/// One address as the kernel reports it on the configured interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PresentAddress {
    pub address: IpAddr,
    pub prefix_len: u8,
    /// Marked as herald's (see `ownership.rs`).
    pub owned: bool,
}

impl PresentAddress {
    /// Is this a /32 (IPv4) or /128 (IPv6), the only shape herald adds?
    pub fn is_host(&self) -> bool {
        self.prefix_len == host_prefix_len(self.address)
    }
}

/// A change to make on the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressRequest {
    /// `ip addr add ADDRESS/32|128 dev IFACE` with herald's ownership mark.
    Add(IpAddr),
    /// `ip addr del ADDRESS/PREFIX_LEN dev IFACE` of an owned address.
    Remove { address: IpAddr, prefix_len: u8 },
}

/// 32 for IPv4, 128 for IPv6.
pub fn host_prefix_len(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Why an address can never be a service address, or `None` when it can.
///
/// Service addresses are unicast addresses a router can send traffic to:
/// not unspecified, loopback, multicast, broadcast or IPv6 link-local.
pub fn unusable_reason(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(a) if a.is_unspecified() => Some("the unspecified address"),
        IpAddr::V4(a) if a.is_loopback() => Some("a loopback address"),
        IpAddr::V4(a) if a.is_multicast() => Some("a multicast address"),
        IpAddr::V4(a) if a.is_broadcast() => Some("the broadcast address"),
        IpAddr::V6(a) if a.is_unspecified() => Some("the unspecified address"),
        IpAddr::V6(a) if a.is_loopback() => Some("a loopback address"),
        IpAddr::V6(a) if a.is_multicast() => Some("a multicast address"),
        IpAddr::V6(a) if a.is_unicast_link_local() => Some("a link-local address"),
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => Some("an IPv4-mapped IPv6 address"),
        _ => None,
    }
}

/// The minimal requests that turn `present` into `wanted`.
///
/// Adds come first (in address order), then removes (in address order), so
/// that a service moving between addresses never has a moment with neither.
pub fn reconcile(wanted: &BTreeSet<IpAddr>, present: &[PresentAddress]) -> Vec<AddressRequest> {
    let satisfied: BTreeSet<IpAddr> = present
        .iter()
        .filter(|p| !p.owned || p.is_host())
        .map(|p| p.address)
        .collect();
    let adds = wanted
        .iter()
        .filter(|a| !satisfied.contains(a))
        .map(|&a| AddressRequest::Add(a));
    let removes: BTreeSet<AddressRequest> = present
        .iter()
        .filter(|p| p.owned && (!p.is_host() || !wanted.contains(&p.address)))
        .map(|p| AddressRequest::Remove {
            address: p.address,
            prefix_len: p.prefix_len,
        })
        .collect();
    adds.chain(removes).collect()
}

/// Wanted addresses that the interface carries without herald's mark.
pub fn present_not_owned(
    wanted: &BTreeSet<IpAddr>,
    present: &[PresentAddress],
) -> BTreeSet<IpAddr> {
    present
        .iter()
        .filter(|p| !p.owned && wanted.contains(&p.address))
        .map(|p| p.address)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn owned(s: &str, len: u8) -> PresentAddress {
        PresentAddress {
            address: ip(s),
            prefix_len: len,
            owned: true,
        }
    }

    fn foreign(s: &str, len: u8) -> PresentAddress {
        PresentAddress {
            address: ip(s),
            prefix_len: len,
            owned: false,
        }
    }

    fn add(s: &str) -> AddressRequest {
        AddressRequest::Add(ip(s))
    }

    fn remove(s: &str, len: u8) -> AddressRequest {
        AddressRequest::Remove {
            address: ip(s),
            prefix_len: len,
        }
    }

    struct Case {
        name: &'static str,
        wanted: &'static [&'static str],
        present: Vec<PresentAddress>,
        expected: Vec<AddressRequest>,
    }

    #[test]
    fn reconcile_issues_the_minimal_requests_for_every_case_in_the_table() {
        let cases = vec![
            Case {
                name: "nothing wanted, nothing present",
                wanted: &[],
                present: vec![],
                expected: vec![],
            },
            Case {
                name: "wanted and absent are added, both families",
                wanted: &["203.0.113.10", "2001:db8::10"],
                present: vec![],
                expected: vec![add("203.0.113.10"), add("2001:db8::10")],
            },
            Case {
                name: "wanted and owned are kept (adoption after a restart)",
                wanted: &["203.0.113.10", "2001:db8::10"],
                present: vec![owned("203.0.113.10", 32), owned("2001:db8::10", 128)],
                expected: vec![],
            },
            Case {
                name: "owned and no longer wanted are removed",
                wanted: &["203.0.113.10"],
                present: vec![owned("203.0.113.10", 32), owned("203.0.113.11", 32)],
                expected: vec![remove("203.0.113.11", 32)],
            },
            Case {
                name: "unowned and unwanted are never touched",
                wanted: &[],
                present: vec![
                    foreign("127.0.0.1", 8),
                    foreign("203.0.113.99", 32),
                    foreign("::1", 128),
                ],
                expected: vec![],
            },
            Case {
                name: "wanted but present unowned is neither added nor removed",
                wanted: &["203.0.113.10"],
                present: vec![foreign("203.0.113.10", 32)],
                expected: vec![],
            },
            Case {
                name: "wanted but present unowned with another prefix length is left alone",
                wanted: &["2001:db8::10"],
                present: vec![foreign("2001:db8::10", 64)],
                expected: vec![],
            },
            Case {
                name: "owned with a non-host prefix is replaced by a host address",
                wanted: &["203.0.113.10"],
                present: vec![owned("203.0.113.10", 24)],
                expected: vec![add("203.0.113.10"), remove("203.0.113.10", 24)],
            },
            Case {
                name: "a mixed interface gets adds first, then removes, each in order",
                wanted: &["203.0.113.12", "203.0.113.10", "2001:db8::1"],
                present: vec![
                    owned("2001:db8::2", 128),
                    foreign("127.0.0.1", 8),
                    owned("203.0.113.10", 32),
                    owned("203.0.113.9", 32),
                ],
                expected: vec![
                    add("203.0.113.12"),
                    add("2001:db8::1"),
                    remove("203.0.113.9", 32),
                    remove("2001:db8::2", 128),
                ],
            },
            Case {
                name: "drain: nothing wanted removes every owned address and only those",
                wanted: &[],
                present: vec![
                    owned("203.0.113.10", 32),
                    foreign("203.0.113.11", 32),
                    owned("2001:db8::10", 128),
                ],
                expected: vec![remove("203.0.113.10", 32), remove("2001:db8::10", 128)],
            },
        ];
        for case in cases {
            let wanted: BTreeSet<IpAddr> = case.wanted.iter().map(|s| ip(s)).collect();
            assert_eq!(
                reconcile(&wanted, &case.present),
                case.expected,
                "case: {}",
                case.name
            );
        }
    }

    #[test]
    fn reconcile_of_ten_thousand_adopted_addresses_issues_no_request() {
        let wanted: BTreeSet<IpAddr> = (0..10_000u32)
            .map(|i| IpAddr::from(std::net::Ipv4Addr::from(0xc612_0000 + i)))
            .collect();
        let present: Vec<PresentAddress> = wanted
            .iter()
            .map(|&address| PresentAddress {
                address,
                prefix_len: 32,
                owned: true,
            })
            .collect();
        assert!(reconcile(&wanted, &present).is_empty());
    }

    #[test]
    fn reconcile_applied_to_its_own_result_reaches_a_fixed_point() {
        let wanted: BTreeSet<IpAddr> = ["203.0.113.1", "203.0.113.2", "2001:db8::3"]
            .iter()
            .map(|s| ip(s))
            .collect();
        let mut present = vec![
            owned("203.0.113.2", 32),
            owned("203.0.113.7", 32),
            foreign("203.0.113.1", 24),
        ];
        for request in reconcile(&wanted, &present) {
            match request {
                AddressRequest::Add(address) => present.push(PresentAddress {
                    address,
                    prefix_len: host_prefix_len(address),
                    owned: true,
                }),
                AddressRequest::Remove {
                    address,
                    prefix_len,
                } => present.retain(|p| !(p.address == address && p.prefix_len == prefix_len)),
            }
        }
        assert!(reconcile(&wanted, &present).is_empty());
        assert_eq!(
            present_not_owned(&wanted, &present),
            [ip("203.0.113.1")].into()
        );
    }

    #[test]
    fn unusable_reason_rejects_addresses_that_cannot_be_service_addresses() {
        for bad in [
            "0.0.0.0",
            "127.0.0.2",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "ff02::1",
            "fe80::1",
            "::ffff:192.0.2.1",
        ] {
            assert!(unusable_reason(ip(bad)).is_some(), "{bad} accepted");
        }
        for good in ["203.0.113.10", "198.18.0.1", "2001:db8::10"] {
            assert_eq!(unusable_reason(ip(good)), None, "{good} rejected");
        }
    }
}
