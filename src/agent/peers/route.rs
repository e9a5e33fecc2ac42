//! Which peers this node uses and how it reaches them.
//!
//! Owns: the `node_selector` match (pure), the route lookup that gives the
//! local address and egress interface toward a peer (for single-hop BFD,
//! which is bound to that interface, RFC 5881 §4), and the node's IPv4
//! address as the default router id. Must not touch: sessions; the peers
//! task starts them with what this finds.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

/// `node_selector` semantics: every key must be present with the same value;
/// an empty selector selects every node.
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}

/// How this node reaches a peer, as the kernel's routing table says now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRoute {
    /// Our source address toward the peer.
    pub local: IpAddr,
    /// The interface that holds `local` (the egress interface of a directly
    /// connected peer).
    pub interface: Option<String>,
}

/// Asks the kernel for the route to `peer` without sending anything: a UDP
/// socket "connected" to it learns its source address (`ip route get`),
/// and the interface is the one that carries that address.
pub fn route_to(peer: IpAddr) -> io::Result<PeerRoute> {
    let bind: SocketAddr = match peer {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind)?;
    socket.connect(SocketAddr::new(peer, 9))?;
    let local = socket.local_addr()?.ip();
    Ok(PeerRoute {
        local,
        interface: interface_of(local),
    })
}

/// The interface holding `address`, if any.
fn interface_of(address: IpAddr) -> Option<String> {
    let addresses = nix::ifaddrs::getifaddrs().ok()?;
    for entry in addresses {
        let Some(storage) = entry.address else {
            continue;
        };
        let found = if let Some(v4) = storage.as_sockaddr_in() {
            IpAddr::V4(v4.ip()) == address
        } else if let Some(v6) = storage.as_sockaddr_in6() {
            IpAddr::V6(v6.ip()) == address
        } else {
            false
        };
        if found {
            return Some(entry.interface_name);
        }
    }
    None
}

/// The BGP router id: the configured one, else [`node_ipv4`] toward the
/// peers with a literal address (`address: gateway` peers are not known
/// yet when this is asked).
pub fn router_id(config: &crate::config::Config) -> Option<Ipv4Addr> {
    let literal: Vec<IpAddr> = config
        .peers
        .iter()
        .filter_map(|p| match p.address {
            crate::config::PeerAddress::Ip(ip) => Some(ip),
            crate::config::PeerAddress::Gateway => None,
        })
        .collect();
    config.router_id.or_else(|| node_ipv4(&literal))
}

/// The node's IPv4 address for the default router id: the source address
/// toward the first IPv4 peer, else the first global IPv4 address on an
/// interface that is up.
pub fn node_ipv4(peers: &[IpAddr]) -> Option<Ipv4Addr> {
    for peer in peers {
        if let IpAddr::V4(_) = peer
            && let Ok(PeerRoute {
                local: IpAddr::V4(v4),
                ..
            }) = route_to(*peer)
        {
            return Some(v4);
        }
    }
    let addresses = nix::ifaddrs::getifaddrs().ok()?;
    addresses
        .filter(|entry| entry.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP))
        .filter_map(|entry| entry.address?.as_sockaddr_in().map(|a| a.ip()))
        .find(|ip| !ip.is_loopback() && !ip.is_link_local() && !ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_empty_selector_selects_every_node() {
        assert!(selects(&BTreeMap::new(), &BTreeMap::new()));
        assert!(selects(&BTreeMap::new(), &labels(&[("rack", "a")])));
    }

    #[test]
    fn every_selector_label_must_match() {
        let selector = labels(&[("rack", "a"), ("zone", "1")]);
        assert!(selects(
            &selector,
            &labels(&[("rack", "a"), ("zone", "1"), ("x", "y")])
        ));
        assert!(!selects(&selector, &labels(&[("rack", "a")])));
        assert!(!selects(
            &selector,
            &labels(&[("rack", "b"), ("zone", "1")])
        ));
    }

    #[test]
    fn the_route_to_the_loopback_leaves_through_lo() {
        let route = route_to("127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(route.local, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(route.interface.as_deref(), Some("lo"));
    }
}
