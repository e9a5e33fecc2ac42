//! `speaker: bird`: the include file and reference configurations against
//! the real BIRD 2, and BIRD driven by herald in the lab. One test binary
//! for the theme.

mod agent;
mod compat;
mod lab;
