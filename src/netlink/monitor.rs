//! Address and link notifications from the kernel, as `ip monitor address
//! link` shows them: a netlink socket subscribed to the multicast groups
//! `RTNLGRP_IPV4_IFADDR`, `RTNLGRP_IPV6_IFADDR` and `RTNLGRP_LINK`.
//!
//! The kernel queues one notification per change, in the order the changes
//! happen, and sends those of a request before it acknowledges the request.
//! When the socket's receive buffer fills, the kernel drops notifications and
//! the socket reports `ENOBUFS`; this module turns that into
//! [`AddressEvent::Overrun`] so the owner re-reads the interface. The buffer
//! is raised to [`RECEIVE_BUFFER`] (with `SO_RCVBUFFORCE` where permitted) so
//! that a burst of 10,000 changes normally fits.
//!
//! Must not touch: anything; it only listens.

use std::net::IpAddr;

use futures::StreamExt;
use futures::channel::mpsc::UnboundedReceiver;
use nix::sys::socket::{setsockopt, sockopt::RcvBufForce};
use rtnetlink::MulticastGroup;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::sys::{AsyncSocket, SocketAddr};
use tokio::task::JoinHandle;

use super::NetlinkError;
use super::kernel;

/// Receive buffer asked for the notification socket: 8 MiB.
pub const RECEIVE_BUFFER: usize = 8 << 20;

/// One change the kernel reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressEvent {
    /// `RTM_NEWADDR`: an address appeared or changed (IPv6 sends a second
    /// one when its flags change, for example at the end of DAD).
    NewAddress { index: u32, message: AddressMessage },
    /// `RTM_DELADDR`: an address went away.
    DelAddress { index: u32, message: AddressMessage },
    /// `RTM_NEWLINK`: a link appeared or changed.
    NewLink {
        index: u32,
        name: Option<String>,
        up: bool,
    },
    /// `RTM_DELLINK`: a link went away.
    DelLink { index: u32, name: Option<String> },
    /// The kernel dropped notifications (`ENOBUFS`): re-read the state.
    Overrun,
}

impl AddressEvent {
    /// The address and prefix length of an address event.
    pub fn address(&self) -> Option<(IpAddr, u8)> {
        match self {
            AddressEvent::NewAddress { message, .. } | AddressEvent::DelAddress { message, .. } => {
                kernel::address_of(message)
            }
            _ => None,
        }
    }
}

/// A subscription to address and link notifications in the current network
/// namespace. Dropping it closes the socket.
pub struct AddressMonitor {
    events: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
    connection: JoinHandle<()>,
}

impl AddressMonitor {
    /// Subscribe (`ip monitor address link`). Notifications are queued from
    /// the moment this returns. Must be called inside a tokio runtime.
    pub fn subscribe() -> Result<Self, NetlinkError> {
        let (mut connection, _handle, events) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
            MulticastGroup::Link,
        ])
        .map_err(|source| NetlinkError::Socket { source })?;
        let socket = connection.socket_mut().socket_mut();
        if setsockopt(&*socket, RcvBufForce, &RECEIVE_BUFFER).is_err() {
            // Without CAP_NET_ADMIN: as much as net.core.rmem_max allows.
            let _ = socket.set_rx_buf_sz(RECEIVE_BUFFER);
        }
        let connection = tokio::spawn(connection);
        Ok(AddressMonitor { events, connection })
    }

    /// The next event; `None` when the socket has shut down.
    pub async fn next(&mut self) -> Option<AddressEvent> {
        loop {
            let (message, _) = self.events.next().await?;
            if let Some(event) = decode(message) {
                return Some(event);
            }
        }
    }

    /// The next event already received, without waiting.
    pub fn try_next(&mut self) -> Option<AddressEvent> {
        loop {
            let (message, _) = self.events.try_recv().ok()?;
            if let Some(event) = decode(message) {
                return Some(event);
            }
        }
    }
}

impl Drop for AddressMonitor {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

fn decode(message: NetlinkMessage<RouteNetlinkMessage>) -> Option<AddressEvent> {
    match message.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(message)) => {
            Some(AddressEvent::NewAddress {
                index: message.header.index,
                message,
            })
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(message)) => {
            Some(AddressEvent::DelAddress {
                index: message.header.index,
                message,
            })
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
            Some(AddressEvent::NewLink {
                index: link.header.index,
                name: kernel::link_name(&link).map(str::to_string),
                up: kernel::link_is_up(&link),
            })
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
            Some(AddressEvent::DelLink {
                index: link.header.index,
                name: kernel::link_name(&link).map(str::to_string),
            })
        }
        NetlinkPayload::Overrun(_) => Some(AddressEvent::Overrun),
        _ => None,
    }
}
