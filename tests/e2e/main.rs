//! The end-to-end lab: traffic through an FRR router to a service
//! address served by three nodes, faults injected while it flows.
//!
//! Each scenario prints requests sent, failed and the longest gap without a
//! success; it asserts the promised outcomes (counts, shares) and
//! only generous bounds on durations, printing the measured figure.
//! docs/failover.md has the table of figures and the commands.

mod allocate;
mod api;
mod failover;
mod leader;
mod weighted;
