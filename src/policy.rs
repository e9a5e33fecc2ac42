//! The core decision of herald: given the cluster's Services, EndpointSlices
//! and this Node, which addresses this node must announce right now, with
//! which BGP attributes, and for every other address it looked at, why not.
//!
//! Owns: the selection rules below, as one pure function, [`evaluate`]. Must
//! not touch: I/O, clocks or tokio; the Kubernetes source hands it a
//! [`Snapshot`] and the agent reconciles the result.
//!
//! # The rules, in the order they are applied to each address
//! 1. Selection: `herald.dev/advertise: "true"`, or the config selects the
//!    Service (`load_balancer_services`, `service_selector`, or, with
//!    `allocation.enabled`, a `type: LoadBalancer` Service of herald's
//!    `load_balancer_class`, or of no class with `claim_unclassed`: herald
//!    allocated its address, so it announces it without annotation);
//!    `herald.dev/advertise: "false"` always opts out. Unselected Services
//!    yield [`Refusal::NotSelected`] for their requested addresses.
//! 2. A malformed `herald.dev/advertise` or `herald.dev/address-kinds` refuses
//!    every address of the Service ([`Refusal::InvalidAnnotation`]).
//! 3. Address kinds: `load-balancer` (`status.loadBalancer.ingress[].ip`;
//!    an ingress with only a hostname has no address), `external`
//!    (`spec.externalIPs`), `cluster` (`spec.clusterIPs`), from
//!    `herald.dev/address-kinds` or the config.
//! 4. Pools, the security boundary: an address outside every pool is never
//!    announced ([`Refusal::OutsidePools`]). The first pool (config order)
//!    that contains the address gives its communities. An address that is
//!    one of this node's own (`status.addresses`) is never announced
//!    ([`Refusal::NodeAddress`]); the config check refuses pools holding a
//!    peer's address or the router id, but the node's addresses are only
//!    known here.
//! 5. Attribute annotations (`herald.dev/communities`, `local-pref`, `med`)
//!    must parse and be permitted by the pool
//!    ([`PoolAnnotationPolicy`]); otherwise the address is refused
//!    rather than announced with attributes the user did not ask for.
//! 6. A node carrying an exclusion label announces nothing.
//! 7. Traffic policy, per address family (IPv4 addresses look at `IPv4`
//!    slices, IPv6 at `IPv6`): `Local` needs a ready endpoint on this node (a
//!    terminating-but-serving one counts only while no ready endpoint exists
//!    elsewhere); `Cluster` needs a ready endpoint anywhere (configurable).
//!    Load-balancer and external addresses follow `externalTrafficPolicy`,
//!    cluster addresses follow `internalTrafficPolicy`.
//!
//! Several Services may share an address: it is announced once, with the
//! union of their communities; LOCAL_PREF and MED come from the first Service
//! in (namespace, name) order that sets them.
//!
//! # Weighted ECMP
//! An address from a pool with `weighted_ecmp` carries the link-bandwidth
//! community: [`WEIGHT_UNIT`] bytes/s times this node's weight, which is
//! the number of local endpoints that make rule 7 announce it (ready ones,
//! or the serving terminating ones while they alone hold it) when the
//! address follows a `Local` policy, and the node weight when it follows
//! `Cluster` (`kubernetes.node_weight`, or this Node's
//! `herald.dev/node-weight` annotation when that holds a valid weight; an
//! invalid one is reported in [`Desired::node_weight_problem`]). Services
//! sharing an address add their weights: the routers then split the
//! address's traffic in proportion to what every node serves of all of
//! them. The AS in the community is the config's local AS.

pub use crate::annotations;
pub mod endpoints;
pub mod incremental;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::core::SelectorExt;
use serde::Serialize;

use crate::config::PoolConfig;
use crate::model::{Announcement, LinkBandwidth, RouteAttributes};

pub use crate::config::kubernetes::{
    AddressKind, AllocatedClass, MAX_NODE_WEIGHT, NODE_WEIGHT_ANNOTATION, PoolAnnotationPolicy,
    SelectionConfig, SelectionError,
};

/// The link bandwidth one unit of weight stands for, in bytes per second
/// (8 Mbit/s): routers read the community as a bandwidth and split in
/// proportion, so only ratios matter, and a unit this large keeps a
/// router that rounds to whole Mbit/s (FRR does) from rounding a weight
/// of 1 to nothing. 4294 units fill the 32 bits the value saturates at.
pub const WEIGHT_UNIT: u32 = 1_000_000;
pub use annotations::{AnnotationError, ServiceAnnotations};
pub use endpoints::{EndpointIndex, EndpointSummary, Family};
pub use incremental::{IncrementalEvaluation, ServiceKey};

/// Everything the policy reads from Kubernetes at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub services: Vec<Arc<Service>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// This node (its name and labels).
    pub node: Arc<Node>,
    /// Every Namespace's labels, for the pools' `namespace_selector`.
    pub namespaces: Arc<NamespaceLabels>,
}

/// Labels per Namespace name.
pub type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

/// A Service, named for Events and `/status`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Why an address that was looked at is not announced by this node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    /// Neither the annotation nor the config selects the Service.
    NotSelected,
    /// The Service has this address, but not of a kind it asked for.
    KindNotRequested,
    /// The field holds text that is not an IP address.
    InvalidAddress,
    /// No configured pool contains the address (the security boundary).
    OutsidePools,
    /// The address is one of this node's own (its Node's `status.addresses`):
    /// announcing it would draw the node's own traffic to a Service.
    NodeAddress,
    /// `externalTrafficPolicy: Local` (or `internalTrafficPolicy: Local`) and
    /// no ready endpoint runs on this node.
    NoReadyLocalEndpoint,
    /// `Cluster` policy and no ready endpoint runs anywhere.
    NoReadyEndpoint,
    /// This node carries the exclusion label.
    NodeExcluded { label: String },
    /// An annotation is malformed or asks for more than the pool permits.
    InvalidAnnotation {
        annotation: &'static str,
        detail: String,
    },
    /// The pool lists the namespaces that may use it, and the Service's is
    /// not one of them.
    PoolNamespaceNotPermitted { pool: String },
    /// The pool's `service_selector` does not match the Service's labels.
    PoolServiceNotSelected { pool: String },
    /// An external IP (`spec.externalIPs`, written by the Service's owner)
    /// in a pool without `allow_external_ips: true`.
    ExternalIPNotAllowed { pool: String },
    /// `herald.dev/local-pref` or `herald.dev/med` on a pool without
    /// `allow_path_attributes: true`.
    PathAttributesNotAllowed {
        annotation: &'static str,
        pool: String,
    },
    /// The Service already has `max_addresses_per_service` addresses.
    TooManyAddresses { limit: usize },
    /// An older Service owns the address and does not share it with this
    /// one (another namespace, or no common `herald.dev/allow-shared-ip`).
    AddressInUse { owner: String },
}

impl Refusal {
    /// A CamelCase reason for Kubernetes Events and a stable metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotSelected => "NotSelected",
            Refusal::KindNotRequested => "AddressKindNotRequested",
            Refusal::InvalidAddress => "InvalidAddress",
            Refusal::OutsidePools => "OutsidePools",
            Refusal::NodeAddress => "NodeAddress",
            Refusal::NoReadyLocalEndpoint => "NoReadyLocalEndpoint",
            Refusal::NoReadyEndpoint => "NoReadyEndpoint",
            Refusal::NodeExcluded { .. } => "NodeExcluded",
            Refusal::InvalidAnnotation { .. } => "InvalidAnnotation",
            Refusal::PoolNamespaceNotPermitted { .. } => "PoolNamespaceNotPermitted",
            Refusal::PoolServiceNotSelected { .. } => "PoolServiceNotSelected",
            Refusal::ExternalIPNotAllowed { .. } => "ExternalIPNotAllowed",
            Refusal::PathAttributesNotAllowed { .. } => "PathAttributesNotAllowed",
            Refusal::TooManyAddresses { .. } => "TooManyAddresses",
            Refusal::AddressInUse { .. } => "AddressInUse",
        }
    }

    /// Every code, for metrics that list each reason.
    pub const CODES: [&'static str; 15] = [
        "NotSelected",
        "AddressKindNotRequested",
        "InvalidAddress",
        "OutsidePools",
        "NodeAddress",
        "NoReadyLocalEndpoint",
        "NoReadyEndpoint",
        "NodeExcluded",
        "InvalidAnnotation",
        "PoolNamespaceNotPermitted",
        "PoolServiceNotSelected",
        "ExternalIPNotAllowed",
        "PathAttributesNotAllowed",
        "TooManyAddresses",
        "AddressInUse",
    ];

    fn invalid(error: AnnotationError) -> Self {
        Refusal::InvalidAnnotation {
            annotation: error.annotation,
            detail: error.reason,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotSelected => f.write_str(
                "not selected: no herald.dev/advertise: \"true\" and the config does not select it",
            ),
            Refusal::KindNotRequested => f.write_str("this address kind was not requested"),
            Refusal::InvalidAddress => f.write_str("not an IP address"),
            Refusal::OutsidePools => f.write_str("outside every configured pool"),
            Refusal::NodeAddress => {
                f.write_str("one of this node's own addresses (its Node's status.addresses)")
            }
            Refusal::NoReadyLocalEndpoint => {
                f.write_str("traffic policy Local and no ready endpoint on this node")
            }
            Refusal::NoReadyEndpoint => {
                f.write_str("traffic policy Cluster and no ready endpoint anywhere")
            }
            Refusal::NodeExcluded { label } => write!(f, "this node carries the label {label}"),
            Refusal::InvalidAnnotation { annotation, detail } => {
                write!(f, "annotation {annotation}: {detail}")
            }
            Refusal::PoolNamespaceNotPermitted { pool } => write!(
                f,
                "pool {pool} does not permit this Service's namespace (its namespaces \
                 and namespace_selector)"
            ),
            Refusal::PoolServiceNotSelected { pool } => write!(
                f,
                "pool {pool} has a service_selector that does not match this Service's labels"
            ),
            Refusal::ExternalIPNotAllowed { pool } => write!(
                f,
                "spec.externalIPs may not take addresses from pool {pool} \
                 (it does not say allow_external_ips: true)"
            ),
            Refusal::PathAttributesNotAllowed { annotation, pool } => write!(
                f,
                "annotation {annotation}: pool {pool} does not say allow_path_attributes: true"
            ),
            Refusal::TooManyAddresses { limit } => write!(
                f,
                "the Service already has {limit} addresses (kubernetes.max_addresses_per_service)"
            ),
            Refusal::AddressInUse { owner } => write!(
                f,
                "the address belongs to {owner}, an older Service; it may be shared only \
                 in the same namespace with the same {} key",
                annotations::ALLOW_SHARED_IP
            ),
        }
    }
}

/// What became of one address of one Service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Announced { pool: String },
    Refused(Refusal),
}

/// One (Service, address, kind) the policy looked at and what it decided.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Decision {
    pub service: ServiceRef,
    /// The address as an IP (canonical text), or the text as found when it is
    /// not one.
    pub address: String,
    /// The address, when the text is one.
    #[serde(skip)]
    pub ip: Option<IpAddr>,
    pub kind: AddressKind,
    pub outcome: Outcome,
}

/// The decisions about the addresses of one Service, in the order the
/// addresses were found. Shared, never copied: the incremental evaluation
/// that made them, every desired set published since and the Event ledger
/// hold the same allocation, so a change decides one Service again and
/// copies no other Service's decisions.
pub type ServiceDecisions = Arc<[Decision]>;

/// The policy's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// One announcement per address this node must announce.
    pub announcements: BTreeSet<Announcement>,
    /// Every address looked at, announced or not: one entry per Service that
    /// has an address, in (namespace, name) order. Comparing two desired
    /// sets compares shared entries by pointer first (`Arc`'s `PartialEq`).
    pub services: Vec<ServiceDecisions>,
    /// The exclusion label this node carries, if any (rule 6): every address
    /// it would otherwise announce is refused with
    /// [`Refusal::NodeExcluded`].
    pub node_excluded: Option<String>,
    /// Why this Node's `herald.dev/node-weight` annotation is ignored (the
    /// config's `kubernetes.node_weight` applies), when it is.
    pub node_weight_problem: Option<String>,
}

impl Desired {
    /// The announced addresses.
    pub fn addresses(&self) -> BTreeSet<IpAddr> {
        self.announcements.iter().map(|a| a.address).collect()
    }

    /// Every decision, in (service, address) order.
    pub fn decisions(&self) -> impl Iterator<Item = &Decision> {
        self.services.iter().flat_map(|service| service.iter())
    }

    /// Refused decisions, for Events and metrics.
    pub fn refusals(&self) -> impl Iterator<Item = (&Decision, &Refusal)> {
        self.decisions().filter_map(|d| match &d.outcome {
            Outcome::Refused(r) => Some((d, r)),
            Outcome::Announced { .. } => None,
        })
    }
}

/// Decides what this node announces. Pure: same inputs, same answer.
pub fn evaluate(snapshot: &Snapshot, pools: &[PoolConfig], selection: &SelectionConfig) -> Desired {
    let node_name = snapshot.node.metadata.name.as_deref().unwrap_or_default();
    let endpoints = EndpointIndex::build(snapshot.endpoint_slices.iter().map(|s| &**s), node_name);
    let excluded_by = excluded_by(&snapshot.node, selection);
    let selector = selection.selector();
    let (node_weight, node_weight_problem) = node_weight(&snapshot.node, selection);

    let mut services: Vec<&Service> = snapshot.services.iter().map(|s| &**s).collect();
    services.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });

    let context = Context {
        pools,
        selection,
        selector: selector.as_ref(),
        endpoints: &endpoints,
        excluded_by: excluded_by.as_deref(),
        node_addresses: node_addresses(&snapshot.node),
        namespaces: &snapshot.namespaces,
        pool_selectors: PoolSelectors::parse(pools),
        node_weight,
    };
    let mut verdicts: Vec<Verdict> = services
        .into_iter()
        .map(|service| context.decide_service(service))
        .collect();
    // Who claims each address, in Service order.
    let mut claimants: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
    for (i, verdict) in verdicts.iter().enumerate() {
        for claim in &verdict.claims {
            let list = claimants.entry(claim.address).or_default();
            if list.last() != Some(&i) {
                list.push(i);
            }
        }
    }
    let mut by_address: BTreeMap<IpAddr, RouteAttributes> = BTreeMap::new();
    for (address, list) in claimants {
        let owner = owner_of(list.iter().map(|&i| &verdicts[i].claimant));
        let owner = owner.clone();
        for i in list {
            let verdict = &mut verdicts[i];
            let allowed = owner.shares_with(&verdict.claimant);
            for claim in verdict.claims.iter().filter(|c| c.address == address) {
                let decision = &mut verdict.decisions[claim.decision];
                if !allowed {
                    decision.outcome = Outcome::Refused(owner.refusal());
                } else if matches!(decision.outcome, Outcome::Announced { .. }) {
                    merge(
                        by_address.entry(address).or_default(),
                        claim.attributes.clone(),
                    );
                }
            }
        }
    }
    Desired {
        announcements: by_address
            .into_iter()
            .map(|(address, attributes)| Announcement {
                address,
                attributes,
            })
            .collect(),
        services: verdicts
            .into_iter()
            .filter(|v| !v.decisions.is_empty())
            .map(|v| ServiceDecisions::from(v.decisions))
            .collect(),
        node_excluded: excluded_by,
        node_weight_problem,
    }
}

/// This node's weight for `Cluster` Services: the Node's
/// `herald.dev/node-weight` annotation when it holds a whole number from 1
/// to [`MAX_NODE_WEIGHT`], else `kubernetes.node_weight`, with the reason
/// the annotation was not used when it is set but invalid.
pub fn node_weight(node: &Node, selection: &SelectionConfig) -> (u32, Option<String>) {
    let Some(text) = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NODE_WEIGHT_ANNOTATION))
    else {
        return (selection.node_weight, None);
    };
    match text.trim().parse::<u32>() {
        Ok(weight) if (1..=MAX_NODE_WEIGHT).contains(&weight) => (weight, None),
        _ => {
            // Bounded: the value is the cluster admin's, but keep a log line
            // short whatever it holds.
            let shown: String = text.chars().take(64).collect();
            (
                selection.node_weight,
                Some(format!(
                    "annotation {NODE_WEIGHT_ANNOTATION}: {shown:?} is not a whole number from \
                     1 to {MAX_NODE_WEIGHT}; using kubernetes.node_weight ({})",
                    selection.node_weight
                )),
            )
        }
    }
}

/// One Service's claim on an address: the address passed every check that
/// depends only on the Service and the config (rules 1 to 5), so the Service
/// takes part in deciding who owns it, whatever its endpoints say.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Claim {
    address: IpAddr,
    /// Where its decision is in the Service's decisions.
    decision: usize,
    attributes: RouteAttributes,
}

/// A Service as the ownership rule sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Claimant {
    /// `metadata.creationTimestamp`; a Service without one counts as the
    /// newest.
    created: Option<k8s_openapi::jiff::Timestamp>,
    namespace: String,
    name: String,
    /// `herald.dev/allow-shared-ip`, when set and not empty.
    shared_key: Option<String>,
}

impl Claimant {
    fn of(service: &Service) -> Self {
        let meta = &service.metadata;
        Claimant {
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            shared_key: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(annotations::ALLOW_SHARED_IP))
                .map(|key| key.trim().to_string())
                .filter(|key| !key.is_empty()),
        }
    }

    /// Oldest first; equal times by (namespace, name), so every node picks
    /// the same owner.
    fn age_key(&self) -> (bool, Option<k8s_openapi::jiff::Timestamp>, &str, &str) {
        (
            self.created.is_none(),
            self.created,
            &self.namespace,
            &self.name,
        )
    }

    /// Whether this owner lets `other` announce its address too: itself,
    /// or a Service of the same namespace with the same sharing key.
    fn shares_with(&self, other: &Claimant) -> bool {
        (self.namespace == other.namespace && self.name == other.name)
            || (self.namespace == other.namespace
                && self.shared_key.is_some()
                && self.shared_key == other.shared_key)
    }

    fn refusal(&self) -> Refusal {
        Refusal::AddressInUse {
            owner: format!("{}/{}", self.namespace, self.name),
        }
    }
}

/// The owner of an address among the Services that claim it: the oldest.
fn owner_of<'a>(claimants: impl Iterator<Item = &'a Claimant>) -> &'a Claimant {
    claimants
        .min_by(|a, b| a.age_key().cmp(&b.age_key()))
        .expect("an address in the claim index has a claimant")
}

/// What [`Context::decide_service`] found for one Service, before ownership.
#[derive(Debug)]
struct Verdict {
    /// Its decisions; a claimed address that is otherwise announceable says
    /// `Announced` until ownership refuses it.
    decisions: Vec<Decision>,
    claims: Vec<Claim>,
    claimant: Claimant,
}

/// The first configured exclusion label this node carries.
fn excluded_by(node: &Node, selection: &SelectionConfig) -> Option<String> {
    let labels = node.metadata.labels.as_ref()?;
    selection
        .node_exclusion_labels
        .iter()
        .find(|label| labels.contains_key(*label))
        .cloned()
}

struct Context<'a> {
    pools: &'a [PoolConfig],
    selection: &'a SelectionConfig,
    selector: Option<&'a kube::core::Selector>,
    endpoints: &'a EndpointIndex<'a>,
    excluded_by: Option<&'a str>,
    /// This node's own addresses.
    node_addresses: BTreeSet<IpAddr>,
    namespaces: &'a NamespaceLabels,
    pool_selectors: PoolSelectors,
    /// This node's weight for `Cluster` Services ([`node_weight`]).
    node_weight: u32,
}

/// The pools' selectors, parsed once per evaluation: (namespace, service)
/// per pool name. Validated at load; one that does not parse selects
/// nothing.
#[derive(Default)]
struct PoolSelectors(
    BTreeMap<String, (Option<kube::core::Selector>, Option<kube::core::Selector>)>,
);

impl PoolSelectors {
    fn parse(pools: &[PoolConfig]) -> Self {
        let parse = |s: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>| {
            s.clone().map(|s| {
                kube::core::Selector::try_from(s).unwrap_or_else(|_| {
                    // `key in ()` matches no label set.
                    kube::core::Selector::from(kube::core::Expression::In(
                        "herald.dev/invalid-selector".to_string(),
                        Default::default(),
                    ))
                })
            })
        };
        PoolSelectors(
            pools
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        (parse(&p.namespace_selector), parse(&p.service_selector)),
                    )
                })
                .collect(),
        )
    }
}

/// The addresses in a Node's `status.addresses` (every type that holds an
/// IP; host names are skipped).
fn node_addresses(node: &Node) -> BTreeSet<IpAddr> {
    node.status
        .as_ref()
        .and_then(|status| status.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|address| address.address.trim().parse().ok())
        .collect()
}

/// The addresses of a Service, by kind, as text.
fn addresses_of(service: &Service) -> Vec<(AddressKind, &str)> {
    let mut found = Vec::new();
    if let Some(ingress) = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
    {
        // An ingress with only a hostname carries no address to announce.
        found.extend(
            ingress
                .iter()
                .filter_map(|i| i.ip.as_deref())
                .map(|ip| (AddressKind::LoadBalancer, ip)),
        );
    }
    if let Some(spec) = service.spec.as_ref() {
        if let Some(external) = spec.external_ips.as_ref() {
            found.extend(
                external
                    .iter()
                    .map(|ip| (AddressKind::External, ip.as_str())),
            );
        }
        let cluster: Vec<&str> = match (&spec.cluster_ips, &spec.cluster_ip) {
            (Some(ips), _) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
            (_, Some(ip)) => vec![ip.as_str()],
            _ => Vec::new(),
        };
        // Headless Services have clusterIP "None": no address at all.
        found.extend(
            cluster
                .into_iter()
                .filter(|ip| !ip.is_empty() && *ip != "None")
                .map(|ip| (AddressKind::Cluster, ip)),
        );
    }
    found
}

impl Context<'_> {
    /// Rules 1 to 7 for every address of one Service: its decisions and
    /// its claims (ownership between Services is decided by the caller).
    fn decide_service(&self, service: &Service) -> Verdict {
        let reference = ServiceRef {
            namespace: service.metadata.namespace.clone().unwrap_or_default(),
            name: service.metadata.name.clone().unwrap_or_default(),
            uid: service.metadata.uid.clone(),
        };
        let mut verdict = Verdict {
            decisions: Vec::new(),
            claims: Vec::new(),
            claimant: Claimant::of(service),
        };
        let empty = BTreeMap::new();
        let parsed =
            ServiceAnnotations::parse(service.metadata.annotations.as_ref().unwrap_or(&empty));
        let addresses = addresses_of(service);
        let mut record = |address: &str, kind: AddressKind, outcome: Outcome| {
            let ip = address.trim().parse().ok();
            verdict.decisions.push(Decision {
                service: reference.clone(),
                address: ip.map_or_else(|| address.to_string(), |ip: IpAddr| ip.to_string()),
                ip,
                kind,
                outcome,
            });
            verdict.decisions.len() - 1
        };

        let kinds = match (&parsed.advertise, &parsed.address_kinds) {
            (Err(e), _) | (_, Err(e)) => {
                for (kind, address) in addresses {
                    record(address, kind, Outcome::Refused(Refusal::invalid(e.clone())));
                }
                return verdict;
            }
            (Ok(_), Ok(Some(kinds))) => kinds,
            (Ok(_), Ok(None)) => &self.selection.address_kinds,
        };
        if !self.selected(
            service,
            parsed.advertise == Ok(Some(true)),
            parsed.advertise == Ok(Some(false)),
        ) {
            for (kind, address) in addresses.into_iter().filter(|(k, _)| kinds.contains(k)) {
                record(address, kind, Outcome::Refused(Refusal::NotSelected));
            }
            return verdict;
        }
        let limit = self.selection.max_addresses_per_service;
        let mut claimed: BTreeSet<IpAddr> = BTreeSet::new();
        for (kind, text) in addresses {
            let outcome = match self.claim_address(service, &parsed, kinds, kind, text) {
                Ok((address, _, _)) if !claimed.contains(&address) && claimed.len() >= limit => {
                    Outcome::Refused(Refusal::TooManyAddresses { limit })
                }
                Ok((address, pool, attributes)) => {
                    claimed.insert(address);
                    let outcome = match self.node_allows(service, kind, address) {
                        Ok(()) => Outcome::Announced {
                            pool: pool.to_string(),
                        },
                        Err(refusal) => Outcome::Refused(refusal),
                    };
                    let decision = record(text, kind, outcome);
                    verdict.claims.push(Claim {
                        address,
                        decision,
                        attributes,
                    });
                    continue;
                }
                Err(refusal) => Outcome::Refused(refusal),
            };
            record(text, kind, outcome);
        }
        verdict
    }

    fn selected(&self, service: &Service, opted_in: bool, opted_out: bool) -> bool {
        if opted_out {
            return false;
        }
        if opted_in {
            return true;
        }
        let is_load_balancer =
            service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
        if self.selection.load_balancer_services && is_load_balancer {
            return true;
        }
        let class = service
            .spec
            .as_ref()
            .and_then(|s| s.load_balancer_class.as_deref());
        if is_load_balancer
            && self
                .selection
                .allocated_class
                .as_ref()
                .is_some_and(|allocated| allocated.claims(class))
        {
            return true;
        }
        match self.selector {
            Some(selector) => {
                let empty = BTreeMap::new();
                selector.matches(service.metadata.labels.as_ref().unwrap_or(&empty))
            }
            None => false,
        }
    }

    /// Rules 3 to 5 for one address of a selected Service: whether it may
    /// claim the address, from which pool and with which attributes.
    fn claim_address(
        &self,
        service: &Service,
        parsed: &ServiceAnnotations,
        kinds: &BTreeSet<AddressKind>,
        kind: AddressKind,
        text: &str,
    ) -> Result<(IpAddr, &str, RouteAttributes), Refusal> {
        if !kinds.contains(&kind) {
            return Err(Refusal::KindNotRequested);
        }
        let address: IpAddr = text.trim().parse().map_err(|_| Refusal::InvalidAddress)?;
        let pool = PoolConfig::find(self.pools, address).ok_or(Refusal::OutsidePools)?;
        if self.node_addresses.contains(&address) {
            return Err(Refusal::NodeAddress);
        }
        self.pool_permits(pool, service, kind)?;
        let mut attributes = self.attributes(pool, parsed)?;
        if pool.weighted_ecmp {
            let weight = self.weight(service, kind, address);
            attributes.link_bandwidth = Some(LinkBandwidth::new(
                self.selection.local_as,
                weight.saturating_mul(WEIGHT_UNIT),
                pool.link_bandwidth_transitive(),
            ));
        }
        Ok((address, pool.name.as_str(), attributes))
    }

    /// The pool's tenant rules: which namespaces and Services may use it,
    /// and whether external IPs may.
    fn pool_permits(
        &self,
        pool: &PoolConfig,
        service: &Service,
        kind: AddressKind,
    ) -> Result<(), Refusal> {
        let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
        let (namespace_selector, service_selector) = self
            .pool_selectors
            .0
            .get(&pool.name)
            .map(|(n, s)| (n.as_ref(), s.as_ref()))
            .unwrap_or_default();
        let empty = BTreeMap::new();
        let restricted = !pool.namespaces.is_empty() || namespace_selector.is_some();
        let listed = pool.namespaces.iter().any(|n| n == namespace);
        let selected = namespace_selector
            .is_some_and(|s| s.matches(self.namespaces.get(namespace).unwrap_or(&empty)));
        if restricted && !listed && !selected {
            return Err(Refusal::PoolNamespaceNotPermitted {
                pool: pool.name.clone(),
            });
        }
        if let Some(selector) = service_selector {
            let matches = selector.matches(service.metadata.labels.as_ref().unwrap_or(&empty));
            if !matches {
                return Err(Refusal::PoolServiceNotSelected {
                    pool: pool.name.clone(),
                });
            }
        }
        if kind == AddressKind::External && !pool.allow_external_ips {
            return Err(Refusal::ExternalIPNotAllowed {
                pool: pool.name.clone(),
            });
        }
        Ok(())
    }

    /// Rules 6 and 7: what this node and the endpoints say.
    fn node_allows(
        &self,
        service: &Service,
        kind: AddressKind,
        address: IpAddr,
    ) -> Result<(), Refusal> {
        if let Some(label) = self.excluded_by {
            return Err(Refusal::NodeExcluded {
                label: label.to_string(),
            });
        }
        self.traffic_policy_allows(service, kind, address)
    }

    /// The pool's communities plus what the annotations add, if permitted.
    fn attributes(
        &self,
        pool: &PoolConfig,
        parsed: &ServiceAnnotations,
    ) -> Result<RouteAttributes, Refusal> {
        let requested = parsed
            .attributes
            .as_ref()
            .map_err(|e| Refusal::invalid(e.clone()))?;
        let permitted = self.selection.pool_policy(&pool.name);
        let mut attributes = RouteAttributes::default();
        for community in &pool.communities {
            attributes.add_community(*community);
        }
        for community in &requested.communities {
            if !permitted.permits_community(*community) {
                return Err(Refusal::InvalidAnnotation {
                    annotation: annotations::COMMUNITIES,
                    detail: format!(
                        "community {community} is not permitted in pool {}",
                        pool.name
                    ),
                });
            }
            attributes.add_community(*community);
        }
        for (annotation, requested) in [
            (annotations::LOCAL_PREF, requested.local_pref),
            (annotations::MED, requested.med),
        ] {
            if requested.is_some() && !pool.allow_path_attributes {
                return Err(Refusal::PathAttributesNotAllowed {
                    annotation,
                    pool: pool.name.clone(),
                });
            }
        }
        if requested.local_pref.is_some() && !permitted.local_pref {
            return Err(Refusal::InvalidAnnotation {
                annotation: annotations::LOCAL_PREF,
                detail: format!("pool {} does not permit setting LOCAL_PREF", pool.name),
            });
        }
        if requested.med.is_some() && !permitted.med {
            return Err(Refusal::InvalidAnnotation {
                annotation: annotations::MED,
                detail: format!("pool {} does not permit setting MED", pool.name),
            });
        }
        attributes.local_pref = requested.local_pref;
        attributes.med = requested.med;
        Ok(attributes)
    }

    /// This node's weight for one address of a Service (weighted ECMP):
    /// its local endpoints under a `Local` policy, the node weight under
    /// `Cluster`. Only meaningful when rule 7 announces the address.
    fn weight(&self, service: &Service, kind: AddressKind, address: IpAddr) -> u32 {
        if traffic_policy(service, kind) == Some("Local") {
            self.endpoints
                .summary(
                    service.metadata.namespace.as_deref().unwrap_or_default(),
                    service.metadata.name.as_deref().unwrap_or_default(),
                    Family::of(address),
                )
                .local_weight()
        } else {
            self.node_weight
        }
    }

    fn traffic_policy_allows(
        &self,
        service: &Service,
        kind: AddressKind,
        address: IpAddr,
    ) -> Result<(), Refusal> {
        let policy = traffic_policy(service, kind);
        let summary = self.endpoints.summary(
            service.metadata.namespace.as_deref().unwrap_or_default(),
            service.metadata.name.as_deref().unwrap_or_default(),
            Family::of(address),
        );
        if policy == Some("Local") {
            if summary.local_policy_allows() {
                Ok(())
            } else {
                Err(Refusal::NoReadyLocalEndpoint)
            }
        } else if self.selection.cluster_policy_requires_ready_endpoint && !summary.ready_anywhere()
        {
            Err(Refusal::NoReadyEndpoint)
        } else {
            Ok(())
        }
    }
}

/// The traffic policy an address of this kind follows: load-balancer and
/// external addresses `externalTrafficPolicy`, cluster addresses
/// `internalTrafficPolicy`.
fn traffic_policy(service: &Service, kind: AddressKind) -> Option<&str> {
    let spec = service.spec.as_ref();
    match kind {
        AddressKind::LoadBalancer | AddressKind::External => {
            spec.and_then(|s| s.external_traffic_policy.as_deref())
        }
        AddressKind::Cluster => spec.and_then(|s| s.internal_traffic_policy.as_deref()),
    }
}

/// Adds one Service's attributes to an address's: communities are united,
/// the first LOCAL_PREF and MED stay, link bandwidths (weights) add up.
fn merge(into: &mut RouteAttributes, from: RouteAttributes) {
    into.communities.extend(from.communities);
    into.large_communities.extend(from.large_communities);
    into.local_pref = into.local_pref.or(from.local_pref);
    into.med = into.med.or(from.med);
    into.link_bandwidth = match (into.link_bandwidth, from.link_bandwidth) {
        (Some(mut sum), Some(more)) => {
            sum.bytes_per_second = sum.bytes_per_second.saturating_add(more.bytes_per_second);
            Some(sum)
        }
        (one, other) => one.or(other),
    };
}
