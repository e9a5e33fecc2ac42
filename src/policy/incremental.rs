//! The policy kept up to date one Service at a time: when a Service or its
//! EndpointSlices change, only that Service is decided again, and only the
//! addresses it had or has are merged again. The answer is exactly what
//! [`evaluate`](super::evaluate) gives for the same objects (a test checks
//! this over random change sequences), at a cost that does not grow with the
//! number of Services.
//!
//! What may be updated this way: a Service's object, or any of its slices.
//! Everything else the decision reads (this Node's labels, the pools, the
//! selection config) concerns every Service: build a new one with
//! [`IncrementalEvaluation::evaluate_all`].
//!
//! Owns: per-Service results and the per-address merge. Pure, like the rest
//! of the policy: no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::endpoints::SERVICE_NAME_LABEL;
use super::{
    Context, Decision, Desired, EndpointIndex, SelectionConfig, Snapshot, excluded_by, merge,
};
use crate::config::PoolConfig;
use crate::model::{Announcement, RouteAttributes};

/// A Service by namespace and name: the order in which the policy decides
/// Services and merges shared addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        ServiceKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// The Service's own key.
    pub fn of_service(service: &Service) -> Self {
        ServiceKey::new(
            service.metadata.namespace.as_deref().unwrap_or_default(),
            service.metadata.name.as_deref().unwrap_or_default(),
        )
    }

    /// The Service a slice belongs to (its `kubernetes.io/service-name`
    /// label), if it names one.
    pub fn of_slice(slice: &EndpointSlice) -> Option<Self> {
        let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        Some(ServiceKey::new(
            slice.metadata.namespace.as_deref().unwrap_or_default(),
            service,
        ))
    }
}

/// What one Service decided.
#[derive(Debug, Default)]
struct ServiceResult {
    decisions: Vec<Decision>,
    contributions: Vec<(IpAddr, RouteAttributes)>,
}

/// The desired set, kept per Service.
#[derive(Debug, Default)]
pub struct IncrementalEvaluation {
    services: BTreeMap<ServiceKey, ServiceResult>,
    /// Per address, what each Service contributes to it (in its order).
    contributors: HashMap<IpAddr, BTreeMap<ServiceKey, Vec<RouteAttributes>>>,
    /// Per address, the merged attributes: the announcements.
    announcements: BTreeMap<IpAddr, RouteAttributes>,
}

impl IncrementalEvaluation {
    /// Decides every Service of `snapshot` (what [`evaluate`](super::evaluate)
    /// does), keeping the per-Service results for later updates.
    pub fn evaluate_all(
        snapshot: &Snapshot,
        pools: &[PoolConfig],
        selection: &SelectionConfig,
    ) -> Self {
        let mut evaluation = IncrementalEvaluation::default();
        let services: Vec<(ServiceKey, Option<&Service>)> = snapshot
            .services
            .iter()
            .map(|s| (ServiceKey::of_service(s), Some(&**s)))
            .collect();
        evaluation.update(
            &snapshot.node,
            pools,
            selection,
            services,
            snapshot.endpoint_slices.iter().map(|s| &**s),
        );
        evaluation
    }

    /// Decides the given Services again: `Some` is the Service as it is now,
    /// `None` means it is gone. `slices` must hold every slice of each of
    /// these Services (slices of other Services are ignored). `node`,
    /// `pools` and `selection` must be those of the last `evaluate_all`.
    pub fn update<'a>(
        &mut self,
        node: &Node,
        pools: &[PoolConfig],
        selection: &SelectionConfig,
        services: Vec<(ServiceKey, Option<&'a Service>)>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) {
        let node_name = node.metadata.name.as_deref().unwrap_or_default();
        let endpoints = EndpointIndex::build(slices, node_name);
        let excluded = excluded_by(node, selection);
        let selector = selection.selector();
        let context = Context {
            pools,
            selection,
            selector: selector.as_ref(),
            endpoints: &endpoints,
            excluded_by: excluded.as_deref(),
        };
        let mut touched: BTreeSet<IpAddr> = BTreeSet::new();
        for (key, service) in services {
            if let Some(old) = self.services.remove(&key) {
                for (address, _) in old.contributions {
                    if let Some(by_service) = self.contributors.get_mut(&address) {
                        by_service.remove(&key);
                    }
                    touched.insert(address);
                }
            }
            let Some(service) = service else {
                continue;
            };
            let mut result = ServiceResult::default();
            context.decide_service(service, &mut result.contributions, &mut result.decisions);
            for (address, attributes) in &result.contributions {
                self.contributors
                    .entry(*address)
                    .or_default()
                    .entry(key.clone())
                    .or_default()
                    .push(attributes.clone());
                touched.insert(*address);
            }
            self.services.insert(key, result);
        }
        for address in touched {
            self.merge_address(address);
        }
    }

    /// Merges the contributions to one address again, in Service order.
    fn merge_address(&mut self, address: IpAddr) {
        let Some(by_service) = self.contributors.get(&address) else {
            self.announcements.remove(&address);
            return;
        };
        if by_service.is_empty() {
            self.contributors.remove(&address);
            self.announcements.remove(&address);
            return;
        }
        let mut merged = RouteAttributes::default();
        for attributes in by_service.values().flatten() {
            merge(&mut merged, attributes.clone());
        }
        self.announcements.insert(address, merged);
    }

    /// The desired set now.
    pub fn desired(&self) -> Desired {
        Desired {
            announcements: self
                .announcements
                .iter()
                .map(|(address, attributes)| Announcement {
                    address: *address,
                    attributes: attributes.clone(),
                })
                .collect(),
            decisions: self
                .services
                .values()
                .flat_map(|result| result.decisions.iter().cloned())
                .collect(),
        }
    }

    /// How many Services are held.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

#[cfg(test)]
#[path = "incremental_tests.rs"]
mod tests;
