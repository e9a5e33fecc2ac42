//! The node's default gateway(s), IPv4 and IPv6, read from the main routing
//! table and followed as they change: what a peer with `address: gateway`
//! resolves to (a node that peers with its first-hop router need not know
//! the router's address, and keeps peering when DHCP moves it).
//!
//! Which gateways: per family, the unicast default routes (`0.0.0.0/0`,
//! `::/0`) of the main table that have a gateway; of those, the ones with the
//! lowest metric (higher metrics are backups the kernel does not use while
//! the best one exists). Every next hop of an ECMP default counts (a route
//! with `RTA_MULTIPATH`, or, as IPv6 may show them, several default routes
//! with the same metric), except next hops the kernel marks dead. An IPv4
//! default via an IPv6 next hop (RFC 5549, `via inet6`) lists that IPv6
//! address among the IPv4 gateways. Default routes through nexthop objects
//! (`ip route add default nhid N`) carry no gateway in the route itself and
//! are not followed.
//!
//! ```text
//!  kernel ── RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE ──> task: a default route of the
//!            (RTM_NEWROUTE / RTM_DELROUTE)                main table changed (or the
//!                                                         socket overran)?
//!                                                           -> dump both families again
//!                                                           -> default_gateways() (pure)
//!                                                           -> watch::Sender (only on change)
//! ```
//!
//! Re-reading the table on each relevant notification, instead of applying
//! the notification, keeps the result right whatever the kernel merges or
//! splits (IPv6 multipath routes arrive as one message or several).
//!
//! Owns: one notification socket and one request socket. Must not touch:
//! routes; it only reads.

use std::collections::BTreeSet;
use std::net::IpAddr;

use futures::StreamExt;
use futures::TryStreamExt;
use nix::sys::socket::{setsockopt, sockopt::RcvBufForce};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteNextHopFlags, RouteType, RouteVia,
};
use rtnetlink::sys::AsyncSocket;
use rtnetlink::{Handle, MulticastGroup, RouteMessageBuilder};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::NetlinkError;
use super::monitor::RECEIVE_BUFFER;

/// The main routing table's id (`RT_TABLE_MAIN`).
const MAIN_TABLE: u32 = RouteHeader::RT_TABLE_MAIN as u32;

/// One next hop of a default route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Gateway {
    /// The next hop's address (link-local for many IPv6 defaults).
    pub address: IpAddr,
    /// The interface it is reached through (needed for a link-local one).
    pub interface_index: u32,
    /// The route's metric (`RTA_PRIORITY`; 0 when absent).
    pub metric: u32,
}

/// The default gateways of both families, each sorted and without repeats.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DefaultGateways {
    pub ipv4: Vec<Gateway>,
    pub ipv6: Vec<Gateway>,
}

impl DefaultGateways {
    /// Every gateway, IPv4 defaults first.
    pub fn all(&self) -> impl Iterator<Item = &Gateway> {
        self.ipv4.iter().chain(&self.ipv6)
    }

    /// True when there is no default gateway in either family.
    pub fn is_empty(&self) -> bool {
        self.ipv4.is_empty() && self.ipv6.is_empty()
    }
}

/// The default gateways that `routes` (a dump of one or both families)
/// describe. Pure.
pub fn default_gateways(routes: &[RouteMessage]) -> DefaultGateways {
    let mut ipv4 = BTreeSet::new();
    let mut ipv6 = BTreeSet::new();
    for route in routes.iter().filter(|r| is_main_default(r)) {
        let family = if route.header.address_family == rtnetlink::packet_route::AddressFamily::Inet
        {
            &mut ipv4
        } else {
            &mut ipv6
        };
        family.extend(next_hops(route));
    }
    DefaultGateways {
        ipv4: lowest_metric(ipv4),
        ipv6: lowest_metric(ipv6),
    }
}

/// Is this a unicast default route of the main table?
fn is_main_default(route: &RouteMessage) -> bool {
    let table = route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table));
    let family = route.header.address_family;
    table == MAIN_TABLE
        && route.header.destination_prefix_length == 0
        && route.header.kind == RouteType::Unicast
        && (family == rtnetlink::packet_route::AddressFamily::Inet
            || family == rtnetlink::packet_route::AddressFamily::Inet6)
}

/// The live next hops of one route, with its metric.
fn next_hops(route: &RouteMessage) -> Vec<Gateway> {
    let metric = route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Priority(metric) => Some(*metric),
            _ => None,
        })
        .unwrap_or(0);
    let oif = route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(index) => Some(*index),
        _ => None,
    });
    let mut out = Vec::new();
    if let (Some(address), Some(interface_index)) = (gateway_in(&route.attributes), oif) {
        out.push(Gateway {
            address,
            interface_index,
            metric,
        });
    }
    for attribute in &route.attributes {
        if let RouteAttribute::MultiPath(hops) = attribute {
            for hop in hops {
                if hop.flags.contains(RouteNextHopFlags::Dead) {
                    continue;
                }
                if let Some(address) = gateway_in(&hop.attributes) {
                    out.push(Gateway {
                        address,
                        interface_index: hop.interface_index,
                        metric,
                    });
                }
            }
        }
    }
    out
}

/// `RTA_GATEWAY`, or `RTA_VIA` (a next hop of the other family).
fn gateway_in(attributes: &[RouteAttribute]) -> Option<IpAddr> {
    attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
        RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
        RouteAttribute::Via(RouteVia::Inet(ip)) => Some(IpAddr::V4(*ip)),
        RouteAttribute::Via(RouteVia::Inet6(ip)) => Some(IpAddr::V6(*ip)),
        _ => None,
    })
}

fn lowest_metric(gateways: BTreeSet<Gateway>) -> Vec<Gateway> {
    let Some(best) = gateways.iter().map(|g| g.metric).min() else {
        return Vec::new();
    };
    gateways.into_iter().filter(|g| g.metric == best).collect()
}

/// Follows the default gateways; the task stops when this is dropped.
pub struct GatewayWatch {
    gateways: watch::Receiver<DefaultGateways>,
    task: JoinHandle<()>,
}

impl Drop for GatewayWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GatewayWatch {
    /// Subscribes to route changes (`ip monitor route`), then reads the
    /// defaults (`ip route show table main default` and `ip -6 route show
    /// table main default`), so no change between the two is missed. Must be
    /// called inside a tokio runtime, in the network namespace to watch.
    pub async fn start() -> Result<GatewayWatch, NetlinkError> {
        let (mut monitor, _, mut notifications) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Ipv4Route,
            MulticastGroup::Ipv6Route,
        ])
        .map_err(|source| NetlinkError::Socket { source })?;
        let socket = monitor.socket_mut().socket_mut();
        if setsockopt(&*socket, RcvBufForce, &RECEIVE_BUFFER).is_err() {
            // Without CAP_NET_ADMIN: as much as net.core.rmem_max allows.
            let _ = socket.set_rx_buf_sz(RECEIVE_BUFFER);
        }
        let monitor = tokio::spawn(monitor);
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|source| NetlinkError::Socket { source })?;
        let connection = tokio::spawn(connection);
        let first = read(&handle).await?;
        let (sender, gateways) = watch::channel(first);
        let task = tokio::spawn(async move {
            let _sockets = (AbortOnDrop(monitor), AbortOnDrop(connection));
            while let Some((message, _)) = notifications.next().await {
                if !concerns_a_default(&message) {
                    continue;
                }
                // Take the rest of a burst before reading once.
                while notifications.try_recv().is_ok() {}
                match read(&handle).await {
                    Ok(now) => {
                        sender.send_if_modified(|current| {
                            let changed = *current != now;
                            if changed {
                                tracing::info!(gateways = ?now, "default gateways changed");
                                *current = now;
                            }
                            changed
                        });
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the default routes; keeping the last known gateways");
                    }
                }
            }
        });
        Ok(GatewayWatch { gateways, task })
    }

    /// The gateways, updated as they change.
    pub fn subscribe(&self) -> watch::Receiver<DefaultGateways> {
        self.gateways.clone()
    }

    /// The gateways now.
    pub fn current(&self) -> DefaultGateways {
        self.gateways.borrow().clone()
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An `RTM_NEWROUTE`/`RTM_DELROUTE` of a default route in the main table,
/// or an overrun (notifications were lost: read again).
fn concerns_a_default(message: &NetlinkMessage<RouteNetlinkMessage>) -> bool {
    match &message.payload {
        NetlinkPayload::InnerMessage(
            RouteNetlinkMessage::NewRoute(route) | RouteNetlinkMessage::DelRoute(route),
        ) => is_main_default(route),
        NetlinkPayload::Overrun(_) => true,
        _ => false,
    }
}

/// `ip route show table main` and `ip -6 route show table main`: every route
/// of both families (the kernel filters by table only with strict checking;
/// [`default_gateways`] filters here).
pub async fn read(handle: &Handle) -> Result<DefaultGateways, NetlinkError> {
    let v4 = RouteMessageBuilder::<std::net::Ipv4Addr>::new().build();
    let v6 = RouteMessageBuilder::<std::net::Ipv6Addr>::new().build();
    let mut routes = Vec::new();
    for request in [v4, v6] {
        let mut dump = handle.route().get(request).execute();
        while let Some(route) = dump
            .try_next()
            .await
            .map_err(|source| NetlinkError::RouteDump { source })?
        {
            routes.push(route);
        }
    }
    Ok(default_gateways(&routes))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use rtnetlink::packet_route::route::RouteNextHop;

    use super::*;

    fn v4(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn v6(text: &str) -> Ipv6Addr {
        text.parse().unwrap()
    }

    fn default_v4(gateway: &str, oif: u32, metric: Option<u32>) -> RouteMessage {
        let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(v4(gateway))
            .output_interface(oif);
        if let Some(metric) = metric {
            builder = builder.priority(metric);
        }
        builder.build()
    }

    fn default_v6(gateway: &str, oif: u32) -> RouteMessage {
        RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(v6(gateway))
            .output_interface(oif)
            .priority(1024)
            .build()
    }

    fn hop(gateway: IpAddr, oif: u32, flags: RouteNextHopFlags) -> RouteNextHop {
        let mut hop = RouteNextHop::default();
        hop.flags = flags;
        hop.interface_index = oif;
        hop.attributes = vec![RouteAttribute::Gateway(gateway.into())];
        hop
    }

    fn gw(address: &str, interface_index: u32, metric: u32) -> Gateway {
        Gateway {
            address: address.parse().unwrap(),
            interface_index,
            metric,
        }
    }

    #[test]
    fn no_default_route_means_no_gateway() {
        let subnet = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(v4("198.51.100.0"), 24)
            .output_interface(2)
            .build();
        assert!(default_gateways(&[subnet]).is_empty());
    }

    #[test]
    fn a_single_default_of_each_family_is_found() {
        let routes = [
            default_v4("198.51.100.1", 2, None),
            default_v6("fe80::1", 2),
        ];
        let found = default_gateways(&routes);
        assert_eq!(found.ipv4, vec![gw("198.51.100.1", 2, 0)]);
        assert_eq!(found.ipv6, vec![gw("fe80::1", 2, 1024)]);
        assert_eq!(found.all().count(), 2);
    }

    #[test]
    fn every_live_next_hop_of_an_ecmp_default_is_a_gateway() {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .multipath(vec![
                hop(
                    "198.51.100.1".parse().unwrap(),
                    2,
                    RouteNextHopFlags::empty(),
                ),
                hop("203.0.113.1".parse().unwrap(), 3, RouteNextHopFlags::Onlink),
                hop("192.0.2.1".parse().unwrap(), 4, RouteNextHopFlags::Dead),
            ])
            .build();
        assert_eq!(
            default_gateways(&[route]).ipv4,
            vec![gw("198.51.100.1", 2, 0), gw("203.0.113.1", 3, 0)]
        );
    }

    #[test]
    fn ipv6_ecmp_as_separate_routes_of_equal_metric_counts_every_one() {
        let routes = [default_v6("fe80::2", 3), default_v6("fe80::1", 2)];
        assert_eq!(
            default_gateways(&routes).ipv6,
            vec![gw("fe80::1", 2, 1024), gw("fe80::2", 3, 1024)]
        );
    }

    #[test]
    fn only_the_lowest_metric_defaults_count() {
        let routes = [
            default_v4("198.51.100.1", 2, Some(100)),
            default_v4("203.0.113.1", 3, Some(50)),
        ];
        assert_eq!(
            default_gateways(&routes).ipv4,
            vec![gw("203.0.113.1", 3, 50)]
        );
    }

    #[test]
    fn defaults_of_other_tables_and_other_types_are_ignored() {
        let other_table = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(v4("198.51.100.9"))
            .output_interface(2)
            .table_id(100)
            .build();
        let big_table = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(v4("198.51.100.8"))
            .output_interface(2)
            .table_id(1000)
            .build();
        let unreachable = RouteMessageBuilder::<Ipv4Addr>::new()
            .kind(RouteType::Unreachable)
            .build();
        let dev_only = RouteMessageBuilder::<Ipv4Addr>::new()
            .output_interface(2)
            .build();
        let found = default_gateways(&[other_table, big_table, unreachable, dev_only]);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn an_ipv4_default_via_an_ipv6_next_hop_lists_that_address() {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .via(v6("fe80::1"))
            .output_interface(2)
            .build();
        assert_eq!(default_gateways(&[route]).ipv4, vec![gw("fe80::1", 2, 0)]);
    }

    #[test]
    fn only_main_table_default_notifications_trigger_a_read() {
        let message = |route| NetlinkMessage::from(RouteNetlinkMessage::NewRoute(route));
        assert!(concerns_a_default(&message(default_v4(
            "198.51.100.1",
            2,
            None
        ))));
        let subnet = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(v4("198.51.100.0"), 24)
            .build();
        assert!(!concerns_a_default(&message(subnet)));
        let deleted = NetlinkMessage::from(RouteNetlinkMessage::DelRoute(default_v6("fe80::1", 2)));
        assert!(concerns_a_default(&deleted));
    }
}
