//! The agent as users run it: `herald run` in a lab namespace, against FRR
//! or a scripted router. One test binary for the theme (each binary links
//! the whole crate, so fewer binaries build and link faster).

#[path = "../agent_support/mod.rs"]
mod agent_support;

mod bfd;
mod coupling_latency;
mod lifecycle;
mod reload;
mod standalone;
