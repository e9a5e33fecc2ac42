//! herald's protocol cores: what an announcement is ([`model`]), herald's
//! own BGP-4 speaker ([`bgp`]) and its own BFD ([`bfd`]).
//!
//! Owns: the two protocols, from the wire format to the tasks and thread
//! that run them. Must not touch: the config file, Kubernetes, netlink, or
//! the coupling of BFD to BGP (the agent's); see below.
//!
//! # The boundary
//!
//! This crate does not depend on herald's config file, on Kubernetes or on
//! netlink, and the compiler holds it to that: it is its own crate and does
//! not depend on the `herald` crate or on kube, k8s-openapi or rtnetlink.
//! The agent translates the user's config into the settings types here
//! (`bgp::session::SessionConfig`, `bfd::SessionConfig`) and couples BFD to
//! BGP; neither protocol module uses the other.
//!
//! Inside, the same rule as everywhere in herald: the state machines
//! ([`bgp::fsm`], [`bfd::session`]), the codecs ([`bgp::packet`],
//! [`bfd::packet`]) and the Adj-RIB-Out ([`bgp::rib_out`]) are pure (input
//! and the current time in, actions out; no tokio, no sockets, no clock).
//! Sockets, clocks and threads live in thin drivers at the edge: the BGP
//! session task and transport ([`bgp::session`], [`bgp::transport`]), which
//! run on tokio, and the BFD runtime thread ([`bfd::runtime`]), which runs
//! its own event loop.

// One layout for modules with children: `foo.rs` beside `foo/`, never
// `foo/mod.rs`; a module's unit tests, when they have their own file, are
// `foo/tests.rs`.
#![warn(clippy::mod_module_files)]

pub mod bfd;
pub mod bgp;
pub mod heartbeat;
pub mod model;
