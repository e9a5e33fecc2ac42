//! The standalone services file (`--services FILE`): addresses to announce
//! on hosts without Kubernetes, with optional health checks (PRODUCT.md).
//!
//! Owns: the file's shape and validation. Must not touch: the health-check
//! runner or the agent; they receive validated values.
//!
//! (Validation and loading are being written by the foundation issue.)

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::duration;
use crate::model::AnyCommunity;

/// The whole services file.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesFile {
    pub services: Vec<ServiceConfig>,
}

/// One service: its addresses and how to tell it is healthy.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    pub addresses: Vec<IpAddr>,
    #[serde(default)]
    pub communities: Vec<AnyCommunity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub med: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    /// Withdraw while this check fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<HealthCheckConfig>,
}

/// A command run every `interval`: `rise` successes in a row make the
/// service healthy, `fall` failures in a row make it unhealthy.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    pub command: Vec<String>,
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    /// A run that takes longer than this counts as a failure.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_threshold")]
    pub rise: u32,
    #[serde(default = "default_threshold")]
    pub fall: u32,
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_threshold() -> u32 {
    2
}
