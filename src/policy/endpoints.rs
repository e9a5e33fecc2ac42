//! What the EndpointSlices say about each Service, reduced to the facts the
//! traffic policies need (and how many local endpoints serve, for weighted
//! ECMP), per address family.
//!
//! Owns: the reading of `conditions.ready`, `serving` and `terminating`
//! (discovery.k8s.io/v1). Must not touch: Service selection or pools.

use std::collections::HashMap;
use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The endpoint facts of one Service in one address family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointSummary {
    /// A ready endpoint runs on this node.
    pub ready_local: bool,
    /// A terminating endpoint that still serves runs on this node.
    pub serving_terminating_local: bool,
    /// A ready endpoint runs on another node (or on no node in particular).
    pub ready_elsewhere: bool,
    /// How many ready endpoints run on this node.
    pub ready_local_count: u32,
    /// How many terminating endpoints that still serve run on this node.
    pub serving_terminating_local_count: u32,
}

impl EndpointSummary {
    pub fn ready_anywhere(&self) -> bool {
        self.ready_local || self.ready_elsewhere
    }

    /// `externalTrafficPolicy: Local`: a ready local endpoint, or a local
    /// endpoint that is terminating but still serving while no ready endpoint
    /// exists anywhere else. The second case keeps traffic flowing to draining
    /// pods instead of blackholing it during a rollout to zero; as soon as a
    /// ready endpoint exists elsewhere the routers are sent there instead.
    pub fn local_policy_allows(&self) -> bool {
        self.ready_local || (self.serving_terminating_local && !self.ready_elsewhere)
    }

    /// This node's weight for `externalTrafficPolicy: Local` (weighted
    /// ECMP): the local endpoints that make [`local_policy_allows`] true,
    /// that is the ready ones, or the serving terminating ones while they
    /// alone keep the address announced; 0 when it is not allowed.
    ///
    /// [`local_policy_allows`]: Self::local_policy_allows
    pub fn local_weight(&self) -> u32 {
        if self.ready_local {
            self.ready_local_count
        } else if self.local_policy_allows() {
            self.serving_terminating_local_count
        } else {
            0
        }
    }

    fn add(&mut self, endpoint: &Endpoint, node: &str) {
        let conditions = endpoint.conditions.as_ref();
        // "A nil value should be interpreted as "true"" (ready, serving);
        // "A nil value should be interpreted as "false"" (terminating).
        let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
        let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
        let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
        let local = endpoint.node_name.as_deref() == Some(node);
        if ready && local {
            self.ready_local = true;
            self.ready_local_count = self.ready_local_count.saturating_add(1);
        } else if ready {
            self.ready_elsewhere = true;
        } else if local && serving && terminating {
            self.serving_terminating_local = true;
            self.serving_terminating_local_count =
                self.serving_terminating_local_count.saturating_add(1);
        }
    }
}

/// IPv4 or IPv6, as EndpointSlice `addressType` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn from_address_type(text: &str) -> Option<Self> {
        match text {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None, // FQDN slices carry no addresses a node can serve.
        }
    }
}

/// Endpoint facts for every Service, keyed by (namespace, service name,
/// family), borrowing the names from the slices.
#[derive(Debug, Default)]
pub struct EndpointIndex<'a> {
    summaries: HashMap<(&'a str, &'a str, Family), EndpointSummary>,
}

impl<'a> EndpointIndex<'a> {
    /// Reads every slice once. Slices without the service-name label belong to
    /// no Service herald can see and are skipped.
    pub fn build(slices: impl IntoIterator<Item = &'a EndpointSlice>, node: &str) -> Self {
        let mut summaries: HashMap<(&'a str, &'a str, Family), EndpointSummary> = HashMap::new();
        for slice in slices {
            let Some(family) = Family::from_address_type(&slice.address_type) else {
                continue;
            };
            let Some(service) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            else {
                continue;
            };
            let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
            let summary = summaries
                .entry((namespace, service.as_str(), family))
                .or_default();
            for endpoint in &slice.endpoints {
                summary.add(endpoint, node);
            }
        }
        EndpointIndex { summaries }
    }

    /// The facts for one Service and family (all false when it has no slices).
    pub fn summary(&self, namespace: &str, service: &str, family: Family) -> EndpointSummary {
        self.summaries
            .get(&(namespace, service, family))
            .copied()
            .unwrap_or_default()
    }
}
