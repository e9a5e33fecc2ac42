//! Ownership: how herald marks the addresses it adds, so that a restarted
//! herald finds its own addresses and only its own.
//!
//! Two schemes:
//! - **`IFA_PROTO`** (the address protocol attribute): every address herald
//!   adds carries the protocol value [`HERALD_ADDRESS_PROTOCOL`] (0x68, "h").
//!   The kernel stores it and reports it in every dump and notification, for
//!   IPv4 and IPv6 alike. Addresses added by hand carry no protocol (0), and
//!   kernel-made ones carry 1..3 (`kernel_lo`, `kernel_ra`, `kernel_ll`).
//!   `ip addr add 203.0.113.10/32 dev lo proto 0x68` is the same request from
//!   iproute2 6.3 or later (Debian bookworm's iproute2 6.1 cannot set it).
//! - **Label** (IPv4 only, for kernels that ignore `IFA_PROTO`): IPv4
//!   addresses carry the label `<interface>:herald` (`lo:herald`). IPv6 has no
//!   labels, so under this scheme herald refuses IPv6 service addresses with a
//!   clear reason rather than add addresses it could not recognise later.
//!
//! Under the protocol scheme IPv4 addresses also get the label (when
//! `<interface>:herald` fits the kernel's 15 characters), so `ip addr` from
//! any iproute2 shows which addresses are herald's. Ownership is then decided
//! by the protocol alone.
//!
//! Which scheme works is probed once at start (see [`probe`]): herald adds a
//! probe address (`127.104.0.N/32` on `lo`, inside loopback's own 127/8)
//! carrying the protocol value, reads it back, and deletes it. A kernel that
//! does not know `IFA_PROTO` drops the attribute silently, so reading back is
//! the only reliable test.
//!
//! Must not touch: addresses without herald's mark.

use std::net::{IpAddr, Ipv4Addr};

use rtnetlink::Handle;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage, AddressProtocol};
use serde::Serialize;

use super::NetlinkError;
use super::kernel;

/// herald's `IFA_PROTO` value: 0x68, ASCII "h". Values 1..=3 are the
/// kernel's; anything else is free for user space to pick.
pub const HERALD_ADDRESS_PROTOCOL: u8 = 0x68;

/// The longest label the kernel stores (`IFNAMSIZ` - 1).
const MAX_LABEL_LEN: usize = 15;

/// Which scheme the operator asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnershipMode {
    /// Probe the kernel at start: `IFA_PROTO` where it works, else the label.
    #[default]
    Auto,
    /// `IFA_PROTO`, without probing (start fails if the kernel ignores it).
    Protocol,
    /// The IPv4 label only.
    Label,
}

/// The scheme in force, after the probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "scheme", rename_all = "snake_case")]
pub enum OwnershipScheme {
    /// Owned iff `IFA_PROTO` equals `protocol`. IPv4 addresses also get
    /// `label`, for people reading `ip addr`.
    Protocol { protocol: u8, label: Option<String> },
    /// Owned iff an IPv4 address carries `label`. No IPv6.
    Label { label: String },
}

impl OwnershipScheme {
    /// The protocol scheme for `interface`.
    pub fn protocol(interface: &str, protocol: u8) -> Self {
        OwnershipScheme::Protocol {
            protocol,
            label: label_for(interface),
        }
    }

    /// The label scheme for `interface`; fails when the label would not fit.
    pub fn label(interface: &str) -> Result<Self, NetlinkError> {
        let label = label_for(interface).ok_or_else(|| NetlinkError::LabelTooLong {
            interface: interface.to_string(),
        })?;
        Ok(OwnershipScheme::Label { label })
    }

    /// Does this address message carry herald's mark?
    pub fn owns(&self, message: &AddressMessage) -> bool {
        match self {
            OwnershipScheme::Protocol { protocol, .. } => message
                .attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Protocol(p) if u8::from(*p) == *protocol)),
            OwnershipScheme::Label { label } => {
                kernel::address_of(message).is_some_and(|(a, _)| a.is_ipv4())
                    && message
                        .attributes
                        .iter()
                        .any(|a| matches!(a, AddressAttribute::Label(l) if l == label))
            }
        }
    }

    /// Why herald cannot mark `address` under this scheme, if it cannot.
    pub fn cannot_mark(&self, address: IpAddr) -> Option<&'static str> {
        match (self, address) {
            (OwnershipScheme::Label { .. }, IpAddr::V6(_)) => Some(
                "this kernel ignores IFA_PROTO and IPv6 addresses have no label, \
                 so herald could not recognise the address as its own after a restart",
            ),
            _ => None,
        }
    }

    /// Add herald's mark to an `RTM_NEWADDR` request.
    pub fn mark(&self, message: &mut AddressMessage, address: IpAddr) {
        match self {
            OwnershipScheme::Protocol { protocol, label } => {
                message
                    .attributes
                    .push(AddressAttribute::Protocol(AddressProtocol::from(*protocol)));
                if let (Some(label), IpAddr::V4(_)) = (label, address) {
                    message
                        .attributes
                        .push(AddressAttribute::Label(label.clone()));
                }
            }
            OwnershipScheme::Label { label } => {
                message
                    .attributes
                    .push(AddressAttribute::Label(label.clone()));
            }
        }
    }

    /// The label to give an `RTM_DELADDR` request, so that under the label
    /// scheme the kernel deletes only the labelled (owned) address.
    pub fn delete_label(&self, address: IpAddr) -> Option<&str> {
        match (self, address) {
            (OwnershipScheme::Label { label }, IpAddr::V4(_)) => Some(label),
            _ => None,
        }
    }

    /// One line for logs: which scheme, which mark.
    pub fn describe(&self) -> String {
        match self {
            OwnershipScheme::Protocol { protocol, .. } => {
                format!("address protocol (IFA_PROTO) {protocol:#04x}")
            }
            OwnershipScheme::Label { label } => {
                format!("IPv4 label {label} (IFA_PROTO unsupported)")
            }
        }
    }
}

/// `<interface>:herald`, if it fits in the kernel's label size.
pub fn label_for(interface: &str) -> Option<String> {
    let label = format!("{interface}:herald");
    (label.len() <= MAX_LABEL_LEN).then_some(label)
}

/// Decide the scheme for `interface`: probe the kernel under
/// [`OwnershipMode::Auto`], check it under [`OwnershipMode::Protocol`].
pub async fn resolve(
    handle: &Handle,
    interface: &str,
    mode: OwnershipMode,
    protocol: u8,
) -> Result<OwnershipScheme, NetlinkError> {
    match mode {
        OwnershipMode::Label => OwnershipScheme::label(interface),
        OwnershipMode::Protocol => {
            if probe(handle, protocol).await? {
                Ok(OwnershipScheme::protocol(interface, protocol))
            } else {
                Err(NetlinkError::ProtocolUnsupported)
            }
        }
        OwnershipMode::Auto => {
            if probe(handle, protocol).await? {
                Ok(OwnershipScheme::protocol(interface, protocol))
            } else {
                tracing::warn!(
                    "kernel ignores IFA_PROTO; falling back to IPv4 labels, IPv6 service addresses refused"
                );
                OwnershipScheme::label(interface)
            }
        }
    }
}

/// Does the kernel keep `IFA_PROTO`? Adds a probe address on `lo`, reads it
/// back and deletes it:
///
/// ```text
/// ip addr add 127.104.0.N/32 dev lo proto 0x68
/// ip addr show dev lo            (look for proto 0x68 on 127.104.0.N)
/// ip addr del 127.104.0.N/32 dev lo
/// ```
///
/// `N` runs 1..=8 past addresses someone else uses; the probe deletes only
/// the address it added, or one carrying herald's protocol that an earlier
/// herald, killed mid-probe, left behind.
pub async fn probe(handle: &Handle, protocol: u8) -> Result<bool, NetlinkError> {
    let lo =
        kernel::link_index(handle, "lo")
            .await?
            .ok_or_else(|| NetlinkError::InterfaceNotFound {
                interface: "lo".to_string(),
            })?;
    let scheme = OwnershipScheme::Protocol {
        protocol,
        label: None,
    };
    for n in 1..=8u8 {
        let address = IpAddr::V4(Ipv4Addr::new(127, 104, 0, n));
        let added = match kernel::add_address(handle, lo, address, &scheme).await {
            Ok(outcome) => outcome == kernel::AddOutcome::Added,
            Err(source) => return Err(NetlinkError::Probe { source }),
        };
        let kept = kernel::dump_addresses(handle, lo)
            .await
            .map_err(|source| NetlinkError::Probe { source })?
            .iter()
            .any(|m| kernel::address_of(m) == Some((address, 32)) && scheme.owns(m));
        // Ours to delete: just added, or a probe address a herald killed
        // mid-probe left behind (it carries the protocol, so the kernel
        // keeps IFA_PROTO).
        if !added && !kept {
            continue;
        }
        kernel::remove_address(handle, lo, address, 32, None)
            .await
            .map_err(|source| NetlinkError::Probe { source })?;
        return Ok(kept);
    }
    tracing::warn!(
        "every IFA_PROTO probe address 127.104.0.1-8 is in use on lo; assuming no IFA_PROTO"
    );
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::AddressFamily;

    fn message(address: &str, attributes: Vec<AddressAttribute>) -> AddressMessage {
        let address: IpAddr = address.parse().unwrap();
        let mut m = AddressMessage::default();
        m.header.family = if address.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.prefix_len = if address.is_ipv4() { 32 } else { 128 };
        m.attributes.push(AddressAttribute::Local(address));
        m.attributes.extend(attributes);
        m
    }

    #[test]
    fn protocol_scheme_owns_only_addresses_with_herald_protocol() {
        let scheme = OwnershipScheme::protocol("lo", HERALD_ADDRESS_PROTOCOL);
        let ours = message(
            "2001:db8::1",
            vec![AddressAttribute::Protocol(AddressProtocol::Other(0x68))],
        );
        let kernels = message(
            "::1",
            vec![AddressAttribute::Protocol(AddressProtocol::Loopback)],
        );
        let by_hand = message("203.0.113.1", vec![]);
        let labelled_by_hand = message(
            "203.0.113.2",
            vec![AddressAttribute::Label("lo:herald".into())],
        );
        assert!(scheme.owns(&ours));
        assert!(!scheme.owns(&kernels));
        assert!(!scheme.owns(&by_hand));
        assert!(
            !scheme.owns(&labelled_by_hand),
            "the label alone does not make an address herald's"
        );
    }

    #[test]
    fn label_scheme_owns_only_labelled_ipv4_addresses() {
        let scheme = OwnershipScheme::label("lo").unwrap();
        assert!(scheme.owns(&message(
            "203.0.113.1",
            vec![AddressAttribute::Label("lo:herald".into())]
        )));
        assert!(!scheme.owns(&message(
            "203.0.113.1",
            vec![AddressAttribute::Label("lo".into())]
        )));
        assert!(!scheme.owns(&message("203.0.113.1", vec![])));
        assert!(scheme.cannot_mark("2001:db8::1".parse().unwrap()).is_some());
        assert!(scheme.cannot_mark("203.0.113.1".parse().unwrap()).is_none());
    }

    #[test]
    fn marked_messages_are_recognised_by_the_same_scheme() {
        for scheme in [
            OwnershipScheme::protocol("lo", HERALD_ADDRESS_PROTOCOL),
            OwnershipScheme::label("lo").unwrap(),
        ] {
            let address: IpAddr = "203.0.113.7".parse().unwrap();
            let mut m = message("203.0.113.7", vec![]);
            assert!(!scheme.owns(&m));
            scheme.mark(&mut m, address);
            assert!(scheme.owns(&m), "{}", scheme.describe());
        }
    }

    #[test]
    fn label_is_refused_when_it_would_not_fit_the_kernel_label_size() {
        assert_eq!(label_for("lo").as_deref(), Some("lo:herald"));
        assert_eq!(label_for("herald0").as_deref(), Some("herald0:herald"));
        assert_eq!(label_for("verylongname"), None);
        let err = OwnershipScheme::label("verylongname")
            .unwrap_err()
            .to_string();
        assert!(err.contains("verylongname"), "{err}");
        assert_eq!(
            OwnershipScheme::protocol("verylongname", 0x68),
            OwnershipScheme::Protocol {
                protocol: 0x68,
                label: None
            }
        );
    }
}
