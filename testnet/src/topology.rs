//! containerlab topology files (`*.clab.yml`): the subset the lab realizes.
//!
//! Our users run these files unchanged with `containerlab deploy`; the lab
//! reads the same file and builds it with namespaces and veth pairs
//! ([`crate::Lab::deploy`]). Exactly this subset of containerlab's schema is
//! accepted, and anything else is rejected with an error naming the key and
//! the file, because silently ignoring a key would make the lab differ from
//! what containerlab builds:
//!
//! ```yaml
//! name: NAME
//! topology:
//!   nodes:
//!     NODE:
//!       kind: linux | bridge
//!       image: IMAGE            # linux only; picks the daemon (below)
//!       binds: [SRC:DST[:ro|rw]]  # SRC relative to the file; finds the daemon config
//!       exec: [COMMAND]         # `ip ...` or `sysctl ...`, run after the links exist
//!       cmd: ARGS               # herald nodes only: herald's arguments (`run --config ...`)
//!       env: {KEY: VALUE}       # environment for exec commands
//!       labels: {KEY: VALUE}    # kept, for tests to read
//!   links:
//!     - endpoints: ["NODE:IFNAME", "NODE:IFNAME"]
//! ```
//!
//! The daemon is chosen from the image name: `frr` (started with the bind
//! whose target is `/etc/frr/frr.conf`), `bird` (`/etc/bird/bird.conf`),
//! `gobgp` (a target named `gobgpd.conf`); any other image is a plain host
//! whose daemon, if any, the test starts itself. A node of the `herald` or
//! `herald-lab` image runs herald with the node's `cmd` as its arguments:
//! [`crate::Lab::deploy`] leaves it to the test (which starts herald with a
//! config of its own), [`crate::Lab::deploy_whole`] starts it the way
//! containerlab does, with the freshly built binary for the image and each
//! argument that names a bind target replaced by the bind's source (a
//! namespace shares the host's files; a container would see the bind). A
//! `bridge` node is a Linux bridge; containerlab expects it to exist on the
//! host before deploy, the lab puts it in a namespace of its own.
//!
//! Not supported (rejected): top-level `mgmt`, `prefix`, `settings`;
//! `topology.kinds`, `defaults`, `groups`; node keys other than those above
//! (`mgmt-ipv4`, `startup-config`, `sysctls`, `network-mode`, ...), and
//! `cmd` on anything but a herald node;
//! kinds other than `linux` and `bridge`; the extended link format; `eth0`
//! on a linux node (containerlab's management interface).

mod deploy;
mod parse;

pub use deploy::{Deployment, Router};
pub use parse::split_words;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::Result;

/// Where the shipped topologies live (`testnet/topologies`).
pub fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies")
}

/// A parsed and checked topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The `name:` of the lab.
    pub name: String,
    /// The file it was read from.
    pub file: PathBuf,
    /// Nodes by name.
    pub nodes: BTreeMap<String, Node>,
    /// Point-to-point links, in file order.
    pub links: Vec<Link>,
}

/// One node of a topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
    /// The container image (linux nodes).
    pub image: Option<String>,
    /// What the lab starts in this node.
    pub daemon: Daemon,
    pub binds: Vec<Bind>,
    /// `exec` commands, split into words.
    pub exec: Vec<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

impl Node {
    /// The host file bound to `target` in the container, if any (for
    /// example the herald config of a host node).
    pub fn bind_source(&self, target: &str) -> Option<&Path> {
        self.binds
            .iter()
            .find(|b| b.target == target)
            .map(|b| b.source.as_path())
    }

    /// A herald node's arguments as the lab runs them: every argument that
    /// names a bind target becomes the bind's source on this host. `None`
    /// for other nodes.
    pub fn herald_args(&self) -> Option<Vec<String>> {
        let Daemon::Herald { args } = &self.daemon else {
            return None;
        };
        Some(
            args.iter()
                .map(|arg| match self.bind_source(arg) {
                    Some(source) => source.display().to_string(),
                    None => arg.clone(),
                })
                .collect(),
        )
    }
}

/// The containerlab kinds the lab realizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A container: here, a network namespace.
    Linux,
    /// A Linux bridge: here, a namespace holding a bridge named after the node.
    Bridge,
}

/// The daemon a linux node runs, chosen from its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Daemon {
    /// FRR (zebra, staticd, bfdd, bgpd) with this frr.conf.
    Frr { config: PathBuf },
    /// BIRD 2 with this bird.conf.
    Bird { config: PathBuf },
    /// GoBGP with this gobgpd.conf (TOML).
    Gobgp { config: PathBuf },
    /// herald, with these arguments (the node's `cmd`, as written).
    Herald { args: Vec<String> },
    /// Nothing: a host, or a node whose daemon the test starts itself.
    None,
}

/// A `binds:` entry: a host file (resolved against the topology's
/// directory) mounted at `target` in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

/// A veth pair between two endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub a: Endpoint,
    pub b: Endpoint,
}

/// `NODE:IFNAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub node: String,
    pub interface: String,
}

impl Topology {
    /// Reads and checks a topology file.
    pub fn load(file: impl AsRef<Path>) -> Result<Topology> {
        parse::load(file.as_ref())
    }

    /// Reads a shipped topology by name (`testnet/topologies/<name>.clab.yml`).
    pub fn shipped(name: &str) -> Result<Topology> {
        Topology::load(shipped_dir().join(format!("{name}.clab.yml")))
    }

    /// Parses topology text as if read from `file` (binds resolve against
    /// `file`'s directory).
    pub fn parse(file: &Path, text: &str) -> Result<Topology> {
        parse::parse(file, text)
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }
}
