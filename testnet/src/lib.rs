//! herald's network-namespace lab: real FRR, BIRD 2 and GoBGP routers in
//! network namespaces, linked by veth pairs and Linux bridges, for herald's
//! integration tests and the demo.
//!
//! What this crate owns: namespaces named `hlab-<pid>-<counter>-<node>`, the
//! links and bridges inside them, the daemons it starts there (tracked by
//! PID), and a directory `$TMPDIR/hlab-<pid>-<counter>` for configs, sockets
//! and logs. What it must not touch: anything in the root namespace (no
//! interface or route is ever created there), and any process it did not
//! start, in particular a system-wide FRR the Debian package may run.
//!
//! ```text
//!  Lab::start()            root? packages? (Skip, or panic under CI=true)
//!     |                    cleanup_stale(): leftovers of dead test processes
//!     v
//!  Lab ── namespace("r1") ──> Namespace ── ip / sysctl / exec / spawn ──> Process (PID, log)
//!      ── veth(a, "eth1", b, "eth1")
//!      ── deploy(&Topology) ──> Deployment: a containerlab file realized here
//!                                  Frr (zebra, staticd, bfdd, bgpd; vtysh_json)
//!                                  Bird (birdc), Gobgp (gobgp -p PORT); all three are
//!                                  RouterDriver (namespace, processes, wait_established, wait_route)
//!  wait_until(timeout, poll, what, check)     bounded polling with the last observation
//!  fib::measure_withdrawal(ns, prefix, nh, ..)  fault -> next hop gone from the kernel FIB
//!  HeraldNode::start(ns, options)   the herald binary in a namespace; /status, signals, restart
//!  traffic::Responder / Load        HTTP on the service address; new connections, timed
//!  drop(Lab)               SIGTERM, SIGKILL after 3 s, delete namespaces, remove the directory
//! ```
//!
//! A lab test starts with [`lab_or_skip!`], which returns from the test with
//! a printed reason when the machine cannot run labs (not root, a package
//! missing), except under `CI=true`, where it panics: CI never passes by
//! skipping. At most [`lab::DEFAULT_PARALLEL_LABS`] labs run at once per test
//! process (`HERALD_LAB_PARALLEL` changes it).

// One layout for modules with children: `foo.rs` beside `foo/`, never
// `foo/mod.rs`; a module's unit tests, when they have their own file, are
// `foo/tests.rs`.
#![warn(clippy::mod_module_files)]

pub mod bird;
pub mod cluster;
mod command;
pub mod error;
pub mod fib;
pub mod frr;
pub mod frr_log;
pub mod gobgp;
pub mod herald;
pub mod http;
pub mod lab;
pub mod netns;
pub mod process;
pub mod proxy;
pub mod requirements;
pub mod router;
pub mod scenario;
pub mod stale;
pub mod timeline;
pub mod topology;
pub mod traffic;
pub mod wait;

pub use bird::Bird;
pub use error::{LabError, Result};
pub use frr::Frr;
pub use gobgp::Gobgp;
pub use herald::{HeraldNode, HeraldOptions};
pub use lab::{Lab, load_average};
pub use netns::Namespace;
pub use process::Process;
pub use requirements::Skip;
pub use router::RouterDriver;
pub use stale::cleanup_stale;
pub use topology::{Deployment, Topology};
pub use wait::wait_until;

/// Starts a [`Lab`], or prints why it cannot run here and returns from the
/// calling test. Under `CI=true` a missing requirement panics instead.
///
/// ```no_run
/// # fn test() {
/// let lab = herald_testnet::lab_or_skip!();
/// let r1 = lab.namespace("r1").unwrap();
/// # }
/// ```
#[macro_export]
macro_rules! lab_or_skip {
    () => {
        match $crate::Lab::start() {
            Ok(lab) => lab,
            Err(skip) => {
                eprintln!("lab test skipped: {skip}");
                return;
            }
        }
    };
}
