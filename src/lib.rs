//! herald: a Kubernetes node agent that announces service addresses over BGP,
//! with ECMP across nodes, and runs BFD beside every BGP session so that the
//! routers drop a dead node within the BFD detection time.
//!
//! # Data flow
//!
//! ```text
//!  source/ (one interface:          Kubernetes (source/kube/):        standalone file (source/file):
//!  what should be announced)        Services, EndpointSlices, Node     addresses, pools,
//!                                   -> policy (pure)                   health checks
//!                                   (with allocation: the Lease holder
//!                                   writes status.loadBalancer.ingress
//!                                   from allocation (pure), which the
//!                                   policy then reads like any address)
//!                                                \                    /
//!                                                 v                  v
//!                                   Desired (typed: IpAddr, reasons, node exclusion) on one watch
//!                                                          |
//!                                                          v
//!  agent (the one owner of state)   anti-flap -> drain -> reconcile: an address is on the
//!                                   interface before it is announced, withdrawn before it is
//!                                   removed
//!                                        /                                   \
//!                                       v                                     v
//!  effects               netlink/ (service addresses         AnnouncementSink
//!                        on `lo` or a dummy link,              herald: agent::peers, its own task:
//!                        owned and repaired)                     bgp speaker (a session per peer)
//!                                                                bfd runtime (own OS thread)
//!                                                                BFD Down -> Cease, not via the agent
//!                                                              BIRD: bird/ (include file, birdc)
//! ```
//!
//! # Layers
//!
//! A module uses the layers below it and never the ones above:
//!
//! 1. `cli` (and `main.rs`): arguments, logging, `herald run`, `check-config`,
//!    `status`, `drain`.
//! 2. `agent`: the owner task and its sub-owner `agent::peers`.
//! 3. The edges: `source` (`source::kube`, `source::file`), `netlink`,
//!    `bird`.
//! 4. Pure pieces and shared types: `policy`, `allocation` (the address
//!    allocator's rules), `election` (the allocation Lease's rules),
//!    `annotations`, `antiflap`,
//!    `services`, `status`, `admin` (the HTTP server and `Readiness`),
//!    `metrics`.
//! 5. `config`: the config file's types and validation. A leaf: it imports
//!    only `model`.
//! 6. The protocol cores, their own crate (`herald-core`, re-exported here as
//!    `model`, `bgp`, `bfd`): they cannot see the config file, Kubernetes or
//!    netlink. Their state machines and codecs are pure (input and the
//!    current time in, actions out); sockets, clocks and tokio live in thin
//!    drivers at their edge.

// One layout for modules with children: `foo.rs` beside `foo/`, never
// `foo/mod.rs`; a module's unit tests, when they have their own file, are
// `foo/tests.rs`.
#![warn(clippy::mod_module_files)]

pub mod admin;
#[cfg(feature = "agent")]
pub mod agent;
#[cfg(feature = "agent")]
pub mod allocation;
pub mod annotations;
pub mod antiflap;
pub mod bird;
pub mod cli;
pub mod config;
pub mod election;
pub mod metrics;
#[cfg(feature = "agent")]
pub mod netlink;
#[cfg(feature = "agent")]
pub mod policy;
pub mod services;
#[cfg(feature = "agent")]
pub mod source;
pub mod status;

// The protocol cores are their own crate (no config, Kubernetes or netlink
// inside, checked by the compiler); their paths stay `herald::bgp`, ...
pub use herald_core::{bfd, bgp, heartbeat, model};
/// The Kubernetes source, where it was before the sources layer held it.
#[cfg(feature = "agent")]
pub use source::kube;
