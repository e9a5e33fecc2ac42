//! The `kubernetes:` section of the configuration file: which Services herald
//! considers, which of their addresses, and what per-service annotations may
//! change.
//!
//! Owns: the shape, defaults and validation of these settings, and the names
//! of the address kinds (also what `herald.dev/address-kinds` holds). Must
//! not touch: anything at run time; the policy applies them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[cfg(feature = "agent")]
mod selection;

#[cfg(feature = "agent")]
pub use selection::{
    AllocatedClass, EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS, MAX_NODE_WEIGHT, NODE_WEIGHT_ANNOTATION,
    PoolAnnotationPolicy, SelectionConfig, SelectionError,
};

/// Where an address of a Service comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressKind {
    /// `status.loadBalancer.ingress[].ip`.
    LoadBalancer,
    /// `spec.externalIPs`.
    External,
    /// `spec.clusterIPs` (only when asked for).
    Cluster,
}

impl AddressKind {
    /// The names users write in config and in `herald.dev/address-kinds`.
    pub const NAMES: &'static str = "load-balancer, external, cluster";

    pub fn as_str(self) -> &'static str {
        match self {
            AddressKind::LoadBalancer => "load-balancer",
            AddressKind::External => "external",
            AddressKind::Cluster => "cluster",
        }
    }

    /// The Service field the address was read from.
    pub fn field(self) -> &'static str {
        match self {
            AddressKind::LoadBalancer => "status.loadBalancer.ingress[].ip",
            AddressKind::External => "spec.externalIPs",
            AddressKind::Cluster => "spec.clusterIPs",
        }
    }
}

impl fmt::Display for AddressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AddressKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "load-balancer" => Ok(AddressKind::LoadBalancer),
            "external" => Ok(AddressKind::External),
            "cluster" => Ok(AddressKind::Cluster),
            other => Err(format!(
                "{other:?} is not an address kind (expected one of: {})",
                AddressKind::NAMES
            )),
        }
    }
}
