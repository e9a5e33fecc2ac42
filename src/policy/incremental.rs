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
    Claim, Claimant, Context, Decision, Desired, EndpointIndex, NamespaceLabels, Outcome, Refusal,
    SelectionConfig, ServiceDecisions, Snapshot, excluded_by, merge, owner_of,
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
    /// Its decisions before ownership.
    raw: Vec<Decision>,
    claims: Vec<Claim>,
    claimant: Claimant,
    /// The claimed addresses an older Service owns and does not share,
    /// with the refusal.
    denied: BTreeMap<IpAddr, Refusal>,
    /// The published decisions (`raw` with `denied` applied); `None` when
    /// the Service has no address.
    decisions: Option<ServiceDecisions>,
}

impl ServiceResult {
    /// The published decisions from `raw` and `denied`, keeping `before`
    /// (the same `Arc`) when they are equal.
    fn publish(&mut self, before: Option<ServiceDecisions>) {
        let mut decisions = self.raw.clone();
        for claim in &self.claims {
            if let Some(refusal) = self.denied.get(&claim.address) {
                decisions[claim.decision].outcome = Outcome::Refused(refusal.clone());
            }
        }
        self.decisions = match before {
            Some(before) if *before == *decisions => Some(before),
            _ if decisions.is_empty() => None,
            _ => Some(ServiceDecisions::from(decisions)),
        };
    }
}

/// The desired set, kept per Service.
#[derive(Debug, Default)]
pub struct IncrementalEvaluation {
    services: BTreeMap<Arc<ServiceKey>, ServiceResult>,
    /// Per address, the Services that claim it, in Service order (what they
    /// claim is in their [`ServiceResult`]). The key is shared with
    /// `services`: nearly every address has one claimant.
    contributors: HashMap<IpAddr, Vec<Arc<ServiceKey>>>,
    /// Per address, the merged attributes: the announcements.
    announcements: BTreeMap<IpAddr, RouteAttributes>,
    /// The exclusion label the node carried at the last update.
    node_excluded: Option<String>,
    /// Why the node's weight annotation was ignored at the last update.
    node_weight_problem: Option<String>,
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
            &snapshot.namespaces,
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
    /// `namespaces`,
    /// `pools` and `selection` must be those of the last `evaluate_all`.
    ///
    /// Returns whether the desired set changed. A Service decided the same
    /// as before keeps its shared decisions (the same `Arc`).
    pub fn update<'a>(
        &mut self,
        node: &Node,
        namespaces: &NamespaceLabels,
        pools: &[PoolConfig],
        selection: &SelectionConfig,
        services: Vec<(ServiceKey, Option<&'a Service>)>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> bool {
        let node_name = node.metadata.name.as_deref().unwrap_or_default();
        let endpoints = EndpointIndex::build(slices, node_name);
        let excluded = excluded_by(node, selection);
        let selector = selection.selector();
        let (node_weight, node_weight_problem) = super::node_weight(node, selection);
        let mut changed =
            self.node_excluded != excluded || self.node_weight_problem != node_weight_problem;
        let context = Context {
            pools,
            selection,
            selector: selector.as_ref(),
            endpoints: &endpoints,
            excluded_by: excluded.as_deref(),
            node_addresses: super::node_addresses(node),
            namespaces,
            pool_selectors: super::PoolSelectors::parse(pools),
            node_weight,
        };
        let mut touched: BTreeSet<IpAddr> = BTreeSet::new();
        // Services whose published decisions must be made again, with what
        // they published before.
        let mut republish: BTreeMap<Arc<ServiceKey>, Option<ServiceDecisions>> = BTreeMap::new();
        for (key, service) in services {
            let old = self.services.remove_entry(&key);
            let key = old
                .as_ref()
                .map(|(key, _)| key.clone())
                .unwrap_or_else(|| Arc::new(key));
            let old = old.map(|(_, result)| result);
            for claim in old.iter().flat_map(|old| &old.claims) {
                if let Some(keys) = self.contributors.get_mut(&claim.address) {
                    keys.retain(|k| **k != *key);
                }
                touched.insert(claim.address);
            }
            let before = old.and_then(|old| old.decisions);
            let Some(service) = service else {
                changed |= before.is_some();
                republish.remove(&key);
                continue;
            };
            let verdict = context.decide_service(service);
            for claim in &verdict.claims {
                let keys = self.contributors.entry(claim.address).or_default();
                if let Err(at) = keys.binary_search(&key) {
                    keys.insert(at, key.clone());
                }
                touched.insert(claim.address);
            }
            self.services.insert(
                key.clone(),
                ServiceResult {
                    raw: verdict.decisions,
                    claims: verdict.claims,
                    claimant: verdict.claimant,
                    denied: BTreeMap::new(),
                    decisions: None,
                },
            );
            // A key named twice keeps what was published before the first.
            republish.entry(key).or_insert(before);
        }
        for address in touched {
            changed |= self.merge_address(address, &mut republish);
        }
        for (key, before) in republish {
            if let Some(result) = self.services.get_mut(&key) {
                let was = before.clone();
                result.publish(before);
                changed |= !same_decisions(&was, &result.decisions);
            }
        }
        self.node_excluded = excluded;
        self.node_weight_problem = node_weight_problem;
        changed
    }

    /// Decides who owns one address again, and merges the announcements of
    /// the Services that may announce it, in Service order. A Service whose
    /// ownership of it changed is added to `republish`. Returns whether the
    /// announcement changed.
    fn merge_address(
        &mut self,
        address: IpAddr,
        republish: &mut BTreeMap<Arc<ServiceKey>, Option<ServiceDecisions>>,
    ) -> bool {
        let keys = match self.contributors.get(&address) {
            Some(keys) if !keys.is_empty() => keys,
            _ => {
                self.contributors.remove(&address);
                return self.announcements.remove(&address).is_some();
            }
        };
        let owner = owner_of(
            keys.iter()
                .filter_map(|key| self.services.get(key))
                .map(|result| &result.claimant),
        )
        .clone();
        let mut merged: Option<RouteAttributes> = None;
        for key in keys {
            let Some(result) = self.services.get_mut(key) else {
                continue;
            };
            let denial = (!owner.shares_with(&result.claimant)).then(|| owner.refusal());
            if result.denied.get(&address) != denial.as_ref() {
                match denial {
                    Some(refusal) => result.denied.insert(address, refusal),
                    None => result.denied.remove(&address),
                };
                republish
                    .entry(key.clone())
                    .or_insert_with(|| result.decisions.clone());
            }
            if result.denied.contains_key(&address) {
                continue;
            }
            for claim in result.claims.iter().filter(|c| c.address == address) {
                if matches!(
                    result.raw[claim.decision].outcome,
                    Outcome::Announced { .. }
                ) {
                    merge(
                        merged.get_or_insert_with(RouteAttributes::default),
                        claim.attributes.clone(),
                    );
                }
            }
        }
        match merged {
            Some(merged) => self.announcements.insert(address, merged.clone()) != Some(merged),
            None => self.announcements.remove(&address).is_some(),
        }
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
            node_weight_problem: self.node_weight_problem.clone(),
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
