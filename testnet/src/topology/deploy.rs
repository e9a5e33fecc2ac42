//! Realizing a [`Topology`] in a [`Lab`]: a namespace per node, a bridge in
//! each bridge node's namespace, a veth pair per link, the nodes' `exec`
//! commands once the links exist, then the daemons with their bound configs.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Daemon, Node, NodeKind, Topology};
use crate::error::{LabError, Result};
use crate::gobgp::DEFAULT_API_PORT;
use crate::lab::Lab;
use crate::netns::Namespace;
use crate::process::Process;
use crate::router::RouterDriver;
use crate::{Bird, Frr, Gobgp};

/// The daemon the lab started in a node.
#[derive(Debug)]
pub enum Router {
    Frr(Frr),
    Bird(Bird),
    Gobgp(Gobgp),
}

impl Router {
    /// The router through the interface all three share.
    pub fn driver(&self) -> &dyn RouterDriver {
        match self {
            Router::Frr(frr) => frr,
            Router::Bird(bird) => bird,
            Router::Gobgp(gobgp) => gobgp,
        }
    }
}

/// A realized topology: each node's namespace and daemon. The namespaces
/// and processes belong to the [`Lab`] and go away with it.
#[derive(Debug)]
pub struct Deployment {
    topology: Topology,
    namespaces: BTreeMap<String, Namespace>,
    routers: BTreeMap<String, Router>,
    /// herald processes started from the nodes' `cmd` (deploy_whole).
    heralds: BTreeMap<String, Process>,
}

impl Lab {
    /// Builds `topology` in this lab: namespaces (bridge nodes get a bridge
    /// named after the node), veth pairs with both ends up and bridge ends
    /// attached, each linux node's `exec` commands in file order, then FRR,
    /// BIRD or GoBGP where the image asks for one, started on the bound
    /// config. Plain hosts get no daemon: the test starts its own.
    pub fn deploy(&self, topology: &Topology) -> Result<Deployment> {
        let mut namespaces = BTreeMap::new();
        for node in topology.nodes.values() {
            let ns = self.namespace(&node.name)?;
            if node.kind == NodeKind::Bridge {
                ns.add_bridge(&node.name)?;
            }
            namespaces.insert(node.name.clone(), ns);
        }
        for link in &topology.links {
            let a = &namespaces[&link.a.node];
            let b = &namespaces[&link.b.node];
            self.veth(a, &link.a.interface, b, &link.b.interface)?;
            for end in [&link.a, &link.b] {
                if topology.nodes[&end.node].kind == NodeKind::Bridge {
                    namespaces[&end.node].attach(&end.interface, &end.node)?;
                }
            }
        }
        for node in topology.nodes.values() {
            run_exec(&namespaces[&node.name], node)?;
        }
        let mut routers = BTreeMap::new();
        for node in topology.nodes.values() {
            let ns = &namespaces[&node.name];
            let router = match &node.daemon {
                Daemon::Frr { config } => {
                    let frr = Frr::start(ns)?;
                    frr.configure_file(config)?;
                    Router::Frr(frr)
                }
                Daemon::Bird { config } => Router::Bird(Bird::start_with_file(ns, config)?),
                Daemon::Gobgp { config } => {
                    Router::Gobgp(Gobgp::start_with_file(ns, config, DEFAULT_API_PORT)?)
                }
                // The test starts herald (deploy_whole: the node's cmd).
                Daemon::Herald { .. } | Daemon::None => continue,
            };
            routers.insert(node.name.clone(), router);
        }
        Ok(Deployment {
            topology: topology.clone(),
            namespaces,
            routers,
            heralds: BTreeMap::new(),
        })
    }

    /// [`Lab::deploy`], then herald on every herald node, started from the
    /// node's `cmd` as containerlab would start the image: `herald` (the
    /// binary the tests built) stands for the image, bind targets in the
    /// arguments become their sources ([`Node::herald_args`]), and a node
    /// whose `cmd` names no `--admin-socket` gets one in its own folder (a
    /// container's /run is its own; these namespaces share the host's).
    pub fn deploy_whole(&self, topology: &Topology, herald: &Path) -> Result<Deployment> {
        let mut deployment = self.deploy(topology)?;
        let binary = herald.display().to_string();
        for node in topology.nodes.values() {
            let Some(mut args) = node.herald_args() else {
                continue;
            };
            if !args.iter().any(|a| a == "--admin-socket") {
                let dir = self.dir().join(&node.name);
                std::fs::create_dir_all(&dir).map_err(|source| LabError::Io {
                    context: "cannot create the node's folder",
                    path: dir.clone(),
                    source,
                })?;
                args.push("--admin-socket".to_owned());
                args.push(dir.join("admin.sock").display().to_string());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let process = deployment.namespaces[&node.name].spawn("herald", &binary, &args)?;
            deployment.heralds.insert(node.name.clone(), process);
        }
        Ok(deployment)
    }
}

fn run_exec(ns: &Namespace, node: &Node) -> Result<()> {
    let env: Vec<(String, String)> = node
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for words in &node.exec {
        let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
        ns.exec_with_env(&env, &words[0], &args)
            .map_err(|e| LabError::Node {
                node: node.name.clone(),
                message: format!("exec `{}`: {e}", words.join(" ")),
            })?;
    }
    Ok(())
}

impl Deployment {
    /// The herald process started on `node` by [`Lab::deploy_whole`].
    pub fn herald(&self, node: &str) -> Result<&Process> {
        self.heralds
            .get(node)
            .ok_or_else(|| self.not_a(node, "herald node"))
    }

    /// The topology this deployment realizes.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// A node's namespace.
    pub fn ns(&self, node: &str) -> Result<&Namespace> {
        self.namespaces.get(node).ok_or_else(|| LabError::Node {
            node: node.to_owned(),
            message: format!("not in topology {}", self.topology.name),
        })
    }

    /// A node's router, whichever daemon it runs.
    pub fn router(&self, node: &str) -> Result<&dyn RouterDriver> {
        match self.routers.get(node) {
            Some(router) => Ok(router.driver()),
            None => Err(self.not_a(node, "a router")),
        }
    }

    /// A node's FRR.
    pub fn frr(&self, node: &str) -> Result<&Frr> {
        match self.routers.get(node) {
            Some(Router::Frr(frr)) => Ok(frr),
            _ => Err(self.not_a(node, "an FRR router")),
        }
    }

    /// A node's BIRD.
    pub fn bird(&self, node: &str) -> Result<&Bird> {
        match self.routers.get(node) {
            Some(Router::Bird(bird)) => Ok(bird),
            _ => Err(self.not_a(node, "a BIRD node")),
        }
    }

    /// A node's GoBGP.
    pub fn gobgp(&self, node: &str) -> Result<&Gobgp> {
        match self.routers.get(node) {
            Some(Router::Gobgp(gobgp)) => Ok(gobgp),
            _ => Err(self.not_a(node, "a GoBGP node")),
        }
    }

    fn not_a(&self, node: &str, what: &str) -> LabError {
        LabError::Node {
            node: node.to_owned(),
            message: format!("is not {what} in topology {}", self.topology.name),
        }
    }
}
