//! The rtnetlink requests herald sends, each documented by the `ip` command it
//! replaces, with the kernel's idempotency answers folded into outcomes:
//! `EEXIST` on add and `EADDRNOTAVAIL`/`ENOENT`/`ENODEV` on delete are not
//! errors.
//!
//! Must not touch: anything but the addresses named in each request.

use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::{Handle, LinkDummy, LinkUnspec};

use super::NetlinkError;
use super::ownership::OwnershipScheme;

const ENOENT: i32 = 2;
const ENODEV: i32 = 19;
const EEXIST: i32 = 17;
const EADDRNOTAVAIL: i32 = 99;

/// What an add came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddOutcome {
    Added,
    /// The kernel already has this address (ours or someone's): not an
    /// error, but the caller must find out whose it is.
    AlreadyExists,
}

/// What a delete came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveOutcome {
    Removed,
    /// Already gone (or the interface is): the same end state.
    AlreadyGone,
}

/// The positive errno of a kernel NACK, if that is what `error` is.
pub fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => Some(message.raw_code().abs()),
        _ => None,
    }
}

/// The kernel's answer in words ("Operation not supported (os error 95)").
pub fn kernel_answer(error: &rtnetlink::Error) -> String {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.to_io().to_string(),
        other => other.to_string(),
    }
}

/// The address and prefix length an `RTM_NEWADDR`/`RTM_DELADDR` describes:
/// `IFA_LOCAL` where present (the local address on point-to-point links),
/// else `IFA_ADDRESS`.
pub fn address_of(message: &AddressMessage) -> Option<(IpAddr, u8)> {
    let local = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    local.or(address).map(|ip| (ip, message.header.prefix_len))
}

/// `ip link show dev NAME`: the interface index, or `None` if there is no
/// such interface.
pub async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, NetlinkError> {
    Ok(link(handle, name).await?.map(|l| l.header.index))
}

/// `ip link show dev NAME`.
pub async fn link(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, NetlinkError> {
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(e) if matches!(errno(&e), Some(ENODEV)) => Ok(None),
        Err(source) => Err(NetlinkError::Link {
            interface: name.to_string(),
            source,
        }),
    }
}

/// Is the link administratively up (`IFF_UP`)?
pub fn link_is_up(link: &LinkMessage) -> bool {
    link.header.flags.contains(LinkFlags::Up)
}

/// The interface name of a link message.
pub fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.as_str()),
        _ => None,
    })
}

/// `ip link add NAME type dummy`, then `ip link set NAME up`.
pub async fn create_dummy(handle: &Handle, name: &str) -> Result<(), NetlinkError> {
    handle
        .link()
        .add(LinkDummy::new(name).up().build())
        .execute()
        .await
        .map_err(|source| NetlinkError::CreateInterface {
            interface: name.to_string(),
            answer: kernel_answer(&source),
            source,
        })
}

/// `ip link set dev INDEX up`.
pub async fn set_up(handle: &Handle, name: &str, index: u32) -> Result<(), NetlinkError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|source| NetlinkError::Link {
            interface: name.to_string(),
            source,
        })
}

/// `ip addr show dev INDEX`: every address on one interface, both families.
///
/// The index in the request lets a kernel with strict checking filter the
/// dump itself; the filter here covers kernels that do not.
pub async fn dump_addresses(
    handle: &Handle,
    index: u32,
) -> Result<Vec<AddressMessage>, rtnetlink::Error> {
    let mut request = handle.address().get().set_link_index_filter(index);
    request.message_mut().header.index = index;
    request.execute().try_collect().await
}

/// A bare address message: family, prefix length, interface,
/// `IFA_LOCAL` and `IFA_ADDRESS`.
fn address_message(index: u32, address: IpAddr, prefix_len: u8) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = match address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    message.header.prefix_len = prefix_len;
    message.header.index = index;
    message.attributes.push(AddressAttribute::Local(address));
    message.attributes.push(AddressAttribute::Address(address));
    message
}

/// `ip addr add ADDRESS/32 dev IFACE proto 0x68 label IFACE:herald noprefixroute`
/// (IPv4), or `ip addr add ADDRESS/128 dev IFACE proto 0x68 nodad noprefixroute`
/// (IPv6).
///
/// - `nodad` (`IFA_F_NODAD`): a service address is shared by every node on
///   purpose, and on `lo` duplicate address detection only delays the
///   address; skip it.
/// - `noprefixroute` (`IFA_F_NOPREFIXROUTE`): the kernel's local-table route
///   is all local delivery needs; no extra main-table route.
/// - scope global (the default), so the address is usable as a source.
pub async fn add_address(
    handle: &Handle,
    index: u32,
    address: IpAddr,
    ownership: &OwnershipScheme,
) -> Result<AddOutcome, rtnetlink::Error> {
    let prefix_len = super::reconcile::host_prefix_len(address);
    let mut request = handle.address().add(index, address, prefix_len);
    let message = request.message_mut();
    *message = address_message(index, address, prefix_len);
    let mut flags = AddressFlags::Noprefixroute;
    if address.is_ipv6() {
        flags |= AddressFlags::Nodad;
        message.header.flags = AddressHeaderFlags::Nodad;
    }
    message.attributes.push(AddressAttribute::Flags(flags));
    ownership.mark(message, address);
    match request.execute().await {
        Ok(()) => Ok(AddOutcome::Added),
        Err(e) if errno(&e) == Some(EEXIST) => Ok(AddOutcome::AlreadyExists),
        Err(e) => Err(e),
    }
}

/// `ip addr del ADDRESS/PREFIX_LEN dev IFACE [label IFACE:herald]`.
///
/// With a label (the label scheme), the kernel deletes only an IPv4 address
/// carrying that label, so an unlabelled address an operator put back in the
/// meantime is left alone.
pub async fn remove_address(
    handle: &Handle,
    index: u32,
    address: IpAddr,
    prefix_len: u8,
    label: Option<&str>,
) -> Result<RemoveOutcome, rtnetlink::Error> {
    let mut message = address_message(index, address, prefix_len);
    if let Some(label) = label {
        message
            .attributes
            .push(AddressAttribute::Label(label.to_string()));
    }
    match handle.address().del(message).execute().await {
        Ok(()) => Ok(RemoveOutcome::Removed),
        Err(e) if matches!(errno(&e), Some(EADDRNOTAVAIL | ENOENT | ENODEV)) => {
            Ok(RemoveOutcome::AlreadyGone)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_of_prefers_the_local_address() {
        let mut m = AddressMessage::default();
        m.header.prefix_len = 32;
        m.attributes
            .push(AddressAttribute::Address("192.0.2.1".parse().unwrap()));
        assert_eq!(address_of(&m), Some(("192.0.2.1".parse().unwrap(), 32)));
        m.attributes
            .push(AddressAttribute::Local("203.0.113.1".parse().unwrap()));
        assert_eq!(address_of(&m), Some(("203.0.113.1".parse().unwrap(), 32)));
        assert_eq!(address_of(&AddressMessage::default()), None);
    }
}
