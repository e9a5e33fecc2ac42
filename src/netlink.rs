//! Service addresses on the node's interface: herald puts each announced
//! address on `lo` (or a dummy interface it creates) as a /32 or /128, marks
//! it as its own, puts it back if someone removes it, and leaves it in place
//! across its own restarts.
//!
//! Owns: the addresses herald adds (marked, see [`ownership`]), and only
//! those. Must not touch: addresses an operator added (even one equal to a
//! wanted address: that one is reported as "present, not owned" and left
//! alone), routes, other interfaces, anything BGP.
//!
//! # Tasks
//!
//! ```text
//!  agent ── ServiceAddresses::set_wanted / remove_all_owned ──┐ (mpsc, reply by oneshot)
//!                                                            v
//!  kernel ── RTNLGRP_IPV4_IFADDR, ─► AddressMonitor ─► address task (one owner of state:
//!            RTNLGRP_IPV6_IFADDR,    (monitor.rs)       wanted set, kernel model, in-flight
//!            RTNLGRP_LINK                               requests, counters)
//!                                                            │ reconcile(wanted, present)  (pure, reconcile.rs)
//!                                                            v
//!  kernel ◄── RTM_NEWADDR / RTM_DELADDR (kernel.rs) ◄── requests, up to 64 in flight
//!                                                            │
//!  /status ◄── watch::Receiver<AddressStatus> ◄──────────────┘  metrics (metrics.rs)
//! ```
//!
//! # Lifecycle
//! - Start: find (or create) the interface, probe the ownership scheme once,
//!   subscribe to notifications, then read the interface. Until the agent
//!   first says what it wants, herald adopts every owned address and removes
//!   nothing: a restarted herald never flaps its addresses.
//! - Run: every change of the wanted set, every notification that touches
//!   the interface and a periodic re-read end in one reconcile pass.
//! - Stop (SIGTERM, crash, dropping the handle): addresses stay. Only
//!   [`ServiceAddresses::remove_all_owned`] (drain) or a smaller wanted set
//!   removes them.

pub mod gateway;
pub mod kernel;
pub mod link;
pub mod metrics;
pub mod monitor;
pub mod ownership;
pub mod reconcile;
pub mod service;
pub mod sysctl;
pub mod view;

use std::path::PathBuf;

pub use metrics::Metrics;
pub use monitor::{AddressEvent, AddressMonitor};
pub use ownership::{HERALD_ADDRESS_PROTOCOL, OwnershipMode, OwnershipScheme};
pub use reconcile::{AddressRequest, PresentAddress, reconcile};
pub use service::{
    AddressOptions, AddressState, AddressStatus, PassReport, Placement, ServiceAddresses,
};
pub use sysctl::{SysctlChange, apply_arp_hygiene};

/// Everything that can go wrong with service addresses.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink route socket")]
    Socket {
        #[source]
        source: std::io::Error,
    },
    #[error("interface {interface:?} is not a valid interface name: {reason}")]
    InvalidInterfaceName {
        interface: String,
        reason: &'static str,
    },
    #[error("interface {interface} does not exist")]
    InterfaceNotFound { interface: String },
    #[error(
        "cannot create dummy interface {interface} for service addresses: the kernel answered: {answer} (use interface: lo where the kernel has no dummy link type)"
    )]
    CreateInterface {
        interface: String,
        answer: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("netlink request about interface {interface} failed")]
    Link {
        interface: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot read the addresses of interface {interface}")]
    Dump {
        interface: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("probing the kernel for address protocol (IFA_PROTO) support failed")]
    Probe {
        #[source]
        source: rtnetlink::Error,
    },
    #[error(
        "ownership: protocol was asked for, but this kernel does not keep the address protocol (IFA_PROTO); use ownership auto or label"
    )]
    ProtocolUnsupported,
    #[error(
        "interface {interface}: the ownership label {interface}:herald would exceed the kernel's 15 characters; use a shorter interface name"
    )]
    LabelTooLong { interface: String },
    #[error("uplink {interface} does not exist in this network namespace")]
    UplinkNotFound { interface: String },
    #[error("cannot set {}", path.display())]
    Sysctl {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the service address task has stopped")]
    TaskStopped,
    #[error("cannot read the routing table")]
    RouteDump {
        #[source]
        source: rtnetlink::Error,
    },
}
