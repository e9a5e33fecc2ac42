//! The agent as users run it: `herald run` in a lab namespace, against FRR
//! or a scripted router. One test binary for the theme (each binary links
//! the whole crate, so fewer binaries build and link faster).

mod support;

mod bfd;
mod coupling_latency;
mod kubernetes;
mod lifecycle;
mod listener;
mod privileges;
mod reload;
mod standalone;
