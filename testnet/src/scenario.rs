//! Ready-made scenarios on the shipped topologies, shared by the lab tests
//! and `scripts/demo`.
//!
//! [`Ecmp3`] is the reference setup of docs/lab.md: router r1 (FRR) with
//! three nodes announcing one service address, spread with ECMP.
//! [`service::ServiceLab`] builds the end-to-end lab on it: traffic to the
//! service address, herald (or BIRD, for the baselines) on the nodes, and
//! a real Kubernetes API server (kube-apiserver and etcd) behind the router.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::bird::{BfdTimers, SpeakerConfig};
use crate::error::{LabError, Result};
use crate::fib;
use crate::lab::Lab;
use crate::topology::{Deployment, Topology};
use crate::wait::wait_until;
use crate::{Bird, Frr, Namespace};

pub mod service;

pub use service::{BirdSetup, HeraldSetup, ServiceLab, Source, TrafficPolicy};

/// The service address the nodes announce.
pub const SERVICE_V4: &str = "203.0.113.10";
/// r1's AS in the shipped topologies.
pub const ROUTER_AS: u32 = 64512;
/// The AS of the first node; node i (in name order) has `NODE_AS_BASE + i`.
pub const NODE_AS_BASE: u32 = 64600;
/// The BFD timers of the shipped router configs.
pub const LAB_BFD: BfdTimers = BfdTimers {
    interval_ms: 100,
    multiplier: 3,
};

/// The `ecmp3` topology, deployed.
#[derive(Debug)]
pub struct Ecmp3 {
    /// The realized topology (namespaces r1, n1..n3, client, br-ecmp3).
    pub net: Deployment,
    /// The BIRD speaker of each node, when started with [`Ecmp3::with_bird`].
    pub speakers: BTreeMap<String, Bird>,
}

impl Ecmp3 {
    /// Deploys `ecmp3` with no speaker on the nodes: the test starts its own.
    pub fn deploy(lab: &Lab) -> Result<Ecmp3> {
        let net = lab.deploy(&Topology::shipped("ecmp3")?)?;
        Ok(Ecmp3 {
            net,
            speakers: BTreeMap::new(),
        })
    }

    /// Deploys `ecmp3`, puts the service address on every node's `lo` and
    /// starts a BIRD speaker on every node announcing it (BFD as the router
    /// expects it: [`LAB_BFD`]).
    pub fn with_bird(lab: &Lab) -> Result<Ecmp3> {
        let mut scenario = Ecmp3::deploy(lab)?;
        for (i, node) in scenario.nodes().into_iter().enumerate() {
            let ns = scenario.net.ns(&node)?.clone();
            ns.add_address("lo", &format!("{SERVICE_V4}/32"))?;
            let address = node_address(&ns)?.to_string();
            let config = SpeakerConfig {
                router_id: address.clone(),
                local_as: NODE_AS_BASE + 1 + i as u32,
                local_address: address,
                peer_address: "192.0.2.1".into(),
                peer_as: ROUTER_AS,
                interface: "eth1".into(),
                prefixes: vec![format!("{SERVICE_V4}/32")],
                bfd: Some(LAB_BFD),
            };
            let bird = Bird::start(&ns, &config.render())?;
            scenario.speakers.insert(node, bird);
        }
        Ok(scenario)
    }

    /// The node names (label `role: node`), in name order.
    pub fn nodes(&self) -> Vec<String> {
        self.net
            .topology()
            .nodes
            .values()
            .filter(|n| n.labels.get("role").map(String::as_str) == Some("node"))
            .map(|n| n.name.clone())
            .collect()
    }

    /// The router.
    pub fn router(&self) -> Result<&Frr> {
        self.net.frr("r1")
    }

    /// A node's address on the bridge (its next hop at r1).
    pub fn next_hop(&self, node: &str) -> Result<IpAddr> {
        node_address(self.net.ns(node)?)
    }

    /// Waits until r1's kernel FIB forwards the service address over exactly
    /// `count` next hops; returns them.
    pub fn wait_ecmp(&self, count: usize, timeout: Duration) -> Result<Vec<IpAddr>> {
        let r1 = self.net.ns("r1")?;
        wait_until(
            timeout,
            Duration::from_millis(100),
            &format!("{count} ECMP next hops for {SERVICE_V4} in r1's FIB"),
            || match fib::fib_next_hops(r1, SERVICE_V4) {
                Ok(hops) if hops.len() == count => Ok(hops),
                Ok(hops) => Err(format!("next hops {hops:?}")),
                Err(e) => Err(e.to_string()),
            },
        )
    }
}

/// The first IPv4 address on `eth1` (`ip -j -4 addr show dev eth1`).
pub fn node_address(ns: &Namespace) -> Result<IpAddr> {
    let out = ns.ip_json(&["-4", "addr", "show", "dev", "eth1"])?;
    out.as_array()
        .into_iter()
        .flatten()
        .flat_map(|link| link["addr_info"].as_array().into_iter().flatten())
        .find_map(|a| a["local"].as_str()?.parse().ok())
        .ok_or_else(|| LabError::Node {
            node: ns.node().to_owned(),
            message: format!("no IPv4 address on eth1: {out}"),
        })
}
