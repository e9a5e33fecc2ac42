//! herald's BFD over real sockets: two herald runtimes, interop with FRR
//! bfdd and BIRD, node failure with ECMP, and the soak benchmark. One test
//! binary for the theme.

mod support;

mod attack;
mod auth;
mod failover;
mod flood;
mod lab;
mod runtime;
mod soak;
