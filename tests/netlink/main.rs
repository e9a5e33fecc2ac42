//! The service addresses and the default-gateway watch against a real
//! kernel, each test in a network namespace of its own. One test binary
//! for the theme.

mod common;

mod addresses;
mod gateway;
mod restart;
