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

/// A DNS subdomain as a label key's prefix may be: 1 to 253 characters of
/// `[a-z0-9.-]`.
pub(crate) fn is_dns_subdomain(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 253
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

/// The name part of a label key (or of any qualified name): 1 to 63
/// characters of `[A-Za-z0-9._-]`, alphanumeric at both ends.
pub(crate) fn is_qualified_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

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
