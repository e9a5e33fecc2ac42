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
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::endpoints::SERVICE_NAME_LABEL;
use super::{
    Context, Desired, EndpointIndex, SelectionConfig, ServiceDecisions, Snapshot, excluded_by,
    merge,
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
#[derive(Debug)]
struct ServiceResult {
    /// `None` when the Service has no address.
    decisions: Option<ServiceDecisions>,
    contributions: Vec<(IpAddr, RouteAttributes)>,
}

/// The desired set, kept per Service.
#[derive(Debug, Default)]
pub struct IncrementalEvaluation {
    services: BTreeMap<Arc<ServiceKey>, ServiceResult>,
    /// Per address, the Services that contribute to it, in Service order
    /// (what they contribute is in their [`ServiceResult`]). The key is
    /// shared with `services`: nearly every address has one contributor.
    contributors: HashMap<IpAddr, Vec<Arc<ServiceKey>>>,
    /// Per address, the merged attributes: the announcements.
    announcements: BTreeMap<IpAddr, RouteAttributes>,
    /// The exclusion label the node carried at the last update.
    node_excluded: Option<String>,
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
    ///
    /// Returns whether the desired set changed. A Service decided the same
    /// as before keeps its shared decisions (the same `Arc`).
    pub fn update<'a>(
        &mut self,
        node: &Node,
        pools: &[PoolConfig],
        selection: &SelectionConfig,
        services: Vec<(ServiceKey, Option<&'a Service>)>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> bool {
        let node_name = node.metadata.name.as_deref().unwrap_or_default();
        let endpoints = EndpointIndex::build(slices, node_name);
        let excluded = excluded_by(node, selection);
        let selector = selection.selector();
        let mut changed = self.node_excluded != excluded;
        let context = Context {
            pools,
            selection,
            selector: selector.as_ref(),
            endpoints: &endpoints,
            excluded_by: excluded.as_deref(),
            node_addresses: super::node_addresses(node),
        };
        let mut touched: BTreeSet<IpAddr> = BTreeSet::new();
        let mut decisions = Vec::new();
        for (key, service) in services {
            let old = self.services.remove_entry(&key);
            let key = old
                .as_ref()
                .map(|(key, _)| key.clone())
                .unwrap_or_else(|| Arc::new(key));
            let old = old.map(|(_, result)| result);
            let mut result = ServiceResult {
                decisions: None,
                contributions: Vec::new(),
            };
            if let Some(service) = service {
                context.decide_service(service, &mut result.contributions, &mut decisions);
                result.decisions = match &old {
                    // Unchanged: keep sharing what was published before.
                    Some(ServiceResult {
                        decisions: Some(before),
                        ..
                    }) if **before == *decisions => Some(before.clone()),
                    _ if decisions.is_empty() => None,
                    _ => Some(ServiceDecisions::from(std::mem::take(&mut decisions))),
                };
                decisions.clear();
            }
            let old = old.unwrap_or(ServiceResult {
                decisions: None,
                contributions: Vec::new(),
            });
            changed |= !same_decisions(&old.decisions, &result.decisions);
            if old.contributions != result.contributions {
                for (address, _) in &old.contributions {
                    if let Some(keys) = self.contributors.get_mut(address) {
                        keys.retain(|k| **k != *key);
                    }
                    touched.insert(*address);
                }
                for (address, _) in &result.contributions {
                    let keys = self.contributors.entry(*address).or_default();
                    if let Err(at) = keys.binary_search(&key) {
                        keys.insert(at, key.clone());
                    }
                    touched.insert(*address);
                }
            }
            if service.is_some() {
                self.services.insert(key, result);
            }
        }
        for address in touched {
            changed |= self.merge_address(address);
        }
        self.node_excluded = excluded;
        changed
    }

    /// Merges the contributions to one address again, in Service order.
    /// Returns whether its announcement changed.
    fn merge_address(&mut self, address: IpAddr) -> bool {
        let keys = match self.contributors.get(&address) {
            Some(keys) if !keys.is_empty() => keys,
            _ => {
                self.contributors.remove(&address);
                return self.announcements.remove(&address).is_some();
            }
        };
        let mut merged = RouteAttributes::default();
        for key in keys {
            let contributions = self
                .services
                .get(key)
                .map(|result| result.contributions.as_slice())
                .unwrap_or_default();
            for (_, attributes) in contributions.iter().filter(|(a, _)| *a == address) {
                merge(&mut merged, attributes.clone());
            }
        }
        self.announcements.insert(address, merged.clone()) != Some(merged)
    }

    /// The desired set now. Costs one pointer copy per Service and one
    /// announcement copy per address: no decision is copied.
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
            services: self
                .services
                .values()
                .filter_map(|result| result.decisions.clone())
                .collect(),
            node_excluded: self.node_excluded.clone(),
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

/// Equal decisions, by pointer when shared.
fn same_decisions(a: &Option<ServiceDecisions>, b: &Option<ServiceDecisions>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
