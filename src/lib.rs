//! herald: a Kubernetes node agent that announces service addresses over BGP,
//! with ECMP across nodes, and runs BFD beside every BGP session so that the
//! routers drop a dead node within the BFD detection time.
//!
//! # Data flow
//!
//! Data flows one way, top to bottom. A module uses the modules below it and
//! never the reverse.
//!
//! ```text
//!  sources                          Kubernetes (kube/)        standalone file (services)
//!  (what should be announced)       Services, EndpointSlices,  addresses + health checks
//!                                   this Node
//!                                          \                  /
//!                                           v                v
//!  policy (pure)                    desired announcements + the reason for every
//!                                   address that is not announced
//!                                                   |
//!                                                   v
//!  agent (the one owner of state)   reconciler: desired vs actual, in order:
//!                                   address on the interface before it is announced,
//!                                   withdrawn before it is removed
//!                                        /                        \
//!                                       v                          v
//!  effects                  netlink/ (service addresses      bgp/ (one session per peer:
//!                           on `lo` or a dummy link,         FSM, Adj-RIB-Out, sockets)
//!                           owned and repaired)                     ^   |
//!                                                                   |   | BFD Down -> Cease
//!                                                          bfd/ (own OS thread, own
//!                                                          runtime: packets, sessions)
//!
//!  beside all of it: config (the contract's types and validation), admin (HTTP:
//!  /livez /readyz /metrics /status), metrics (one registry, each subsystem
//!  registers its own).
//! ```
//!
//! Protocol cores (`bgp`, `bfd`) are pure state machines: input, current time
//! in, actions out. Sockets, clocks and tokio live in thin drivers at the edge.

// One layout for modules with children: `foo.rs` beside `foo/`, never
// `foo/mod.rs`; a module's unit tests, when they have their own file, are
// `foo/tests.rs`.
#![warn(clippy::mod_module_files)]

pub mod admin;
#[cfg(feature = "agent")]
pub mod agent;
pub mod annotations;
pub mod antiflap;
pub mod bird;
pub mod cli;
pub mod config;
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
pub use herald_core::{bfd, bgp, model};
/// The Kubernetes source, where it was before the sources layer held it.
#[cfg(feature = "agent")]
pub use source::kube;
