//! The address allocator's pure core: given every Service (stripped to what
//! allocation reads) and the pools, which load-balancer addresses each of
//! herald's Services should carry, or why it cannot have them.
//!
//! Owns: the allocation rules below, as one pure function, [`allocate`].
//! Must not touch: I/O, clocks or tokio. The controller
//! (`crate::source::kube::allocate`) feeds it the Services it watches and
//! writes the answer into `status.loadBalancer.ingress`; the announcement
//! policy (`crate::policy`) then treats those addresses like any other.
//!
//! # The rules
//! 1. herald's Services: `type: LoadBalancer` and `spec.loadBalancerClass`
//!    equal to `allocation.load_balancer_class`, or no class with
//!    `allocation.claim_unclassed`. Every other Service is left alone, except
//!    that a Service that is no longer a LoadBalancer, or that the caller
//!    says herald served before, has the addresses of herald's allocating
//!    pools removed from its status ([`Verdict::Release`]).
//! 2. Order: oldest first (`metadata.creationTimestamp`, a Service without
//!    one counts as the newest), then namespace and name. Two computations
//!    over the same Services agree, whichever herald pod makes them.
//! 3. Rebuild before allocating: every address a Service of herald's
//!    already carries is kept, in that order, before any new one is handed
//!    out, so a new leader never hands out an address that is in use; an
//!    address in the status of any other Service (another controller's), or
//!    in any Service's `spec.externalIPs`, is never handed out either. A kept
//!    address that no longer fits the pools (the pool changed, lost
//!    `allocate`, or no longer admits the Service) stays and is reported as a
//!    [`Mismatch`]; it is dropped only when the Service itself asks for
//!    other addresses, no longer wants that family, or an older Service holds
//!    it without sharing (then it is replaced).
//! 4. Requests: `herald.dev/load-balancer-ips` (comma-separated, one address
//!    per family), else the deprecated `spec.loadBalancerIP`; the address
//!    must lie in a pool that says `allocate: true` and admits the Service
//!    (its `namespaces`, `namespace_selector` and `service_selector`: a
//!    tenant never gets an address from a pool it may not use), and be free
//!    or shareable. `herald.dev/pool` restricts the choice to one pool.
//! 5. Sharing (`herald.dev/allow-shared-ip`): Services of one namespace with
//!    the same key may carry the same address when no (protocol, port) of one
//!    is a (protocol, port) of the other. A Service with a key first looks for
//!    such an address before taking a fresh one.
//! 6. Families, from `spec.ipFamilies` and `spec.ipFamilyPolicy`:
//!    `SingleStack` gets an address of the first family; `RequireDualStack`
//!    gets one of each family or, if one cannot be had, none new at all;
//!    `PreferDualStack` gets what is available.
//! 7. Fresh addresses come from the admitted pools in config order, lowest
//!    free address first. IPv4 CIDRs shorter than /31 skip their network and
//!    broadcast addresses, IPv6 CIDRs shorter than /127 their Subnet-Router
//!    anycast address (RFC 4291 §2.6.1): clients and routers treat those
//!    specially.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::jiff::Timestamp;
use kube::core::{Selector, SelectorExt};
use serde::Serialize;

use crate::annotations;
use crate::config::{AllocationConfig, PoolConfig};

/// Labels per Namespace name (for the pools' `namespace_selector`).
pub type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum IpFamily {
    IPv4,
    IPv6,
}

impl IpFamily {
    pub fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(_) => IpFamily::IPv4,
            IpAddr::V6(_) => IpFamily::IPv6,
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "IPv4" => Some(IpFamily::IPv4),
            "IPv6" => Some(IpFamily::IPv6),
            _ => None,
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::IPv4 => "IPv4",
            IpFamily::IPv6 => "IPv6",
        })
    }
}

/// `spec.ipFamilyPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FamilyPolicy {
    #[default]
    SingleStack,
    PreferDualStack,
    RequireDualStack,
}

/// What the allocator reads of a Service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceInput {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
    /// `spec.type` is `LoadBalancer`.
    pub load_balancer: bool,
    /// `spec.loadBalancerClass`.
    pub class: Option<String>,
    /// `spec.ipFamilies`, in order (the API server fills it in).
    pub families: Vec<IpFamily>,
    pub family_policy: FamilyPolicy,
    pub labels: BTreeMap<String, String>,
    /// `herald.dev/pool`.
    pub pool: Option<String>,
    /// `herald.dev/load-balancer-ips`, as written.
    pub requested_ips: Option<String>,
    /// `spec.loadBalancerIP` (deprecated by Kubernetes, still honoured).
    pub load_balancer_ip: Option<String>,
    /// `herald.dev/allow-shared-ip`, when set and not empty.
    pub shared_key: Option<String>,
    /// `spec.ports[]` as (protocol, port).
    pub ports: BTreeSet<(String, i32)>,
    /// `status.loadBalancer.ingress[].ip`, as written.
    pub ingress: Vec<String>,
    /// `spec.externalIPs`, as written (never handed out to another Service).
    pub external_ips: Vec<String>,
}

impl ServiceInput {
    /// Reads what the allocator needs from a Service.
    pub fn from_service(service: &Service) -> Self {
        let meta = &service.metadata;
        let annotation = |key: &str| {
            meta.annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let spec = service.spec.as_ref();
        ServiceInput {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone(),
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            load_balancer: spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"),
            class: spec.and_then(|s| s.load_balancer_class.clone()),
            families: spec
                .and_then(|s| s.ip_families.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|f| IpFamily::parse(f))
                .collect(),
            family_policy: match spec.and_then(|s| s.ip_family_policy.as_deref()) {
                Some("PreferDualStack") => FamilyPolicy::PreferDualStack,
                Some("RequireDualStack") => FamilyPolicy::RequireDualStack,
                _ => FamilyPolicy::SingleStack,
            },
            labels: meta.labels.clone().unwrap_or_default(),
            pool: annotation(annotations::POOL),
            requested_ips: annotation(annotations::LOAD_BALANCER_IPS),
            load_balancer_ip: spec
                .and_then(|s| s.load_balancer_ip.clone())
                .map(|ip| ip.trim().to_string())
                .filter(|ip| !ip.is_empty()),
            shared_key: annotation(annotations::ALLOW_SHARED_IP),
            ports: spec
                .and_then(|s| s.ports.as_ref())
                .into_iter()
                .flatten()
                .map(|p| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.port))
                .collect(),
            external_ips: spec
                .and_then(|s| s.external_ips.clone())
                .unwrap_or_default(),
            ingress: service
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.clone())
                .collect(),
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The families it should have an address of, by rule 6.
    fn wanted_families(&self) -> Vec<IpFamily> {
        let first = self.families.first().copied().unwrap_or(IpFamily::IPv4);
        match self.family_policy {
            FamilyPolicy::SingleStack => vec![first],
            FamilyPolicy::PreferDualStack | FamilyPolicy::RequireDualStack => {
                let mut families = self.families.clone();
                families.dedup();
                if families.is_empty() {
                    families.push(first);
                }
                families
            }
        }
    }

    /// The order of rule 2.
    fn age_key(&self) -> (bool, Option<Timestamp>, &str, &str) {
        (
            self.created.is_none(),
            self.created,
            &self.namespace,
            &self.name,
        )
    }
}

/// Why a Service does not get (all) the addresses it asked for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum AllocationRefusal {
    /// Every admitted pool of the family has no free address.
    Exhausted {
        pools: Vec<String>,
        family: IpFamily,
    },
    /// No pool with `allocate: true` holds addresses of this family and
    /// admits the Service.
    NoPool { family: IpFamily },
    /// `herald.dev/pool` names no configured pool.
    UnknownPool { pool: String },
    /// The pool exists but does not say `allocate: true`.
    PoolNotAllocating { pool: String },
    /// The pool's `namespaces`/`namespace_selector`/`service_selector`
    /// do not admit the Service.
    PoolNotPermitted { pool: String },
    /// A requested address lies in no pool at all.
    OutsidePools { address: IpAddr },
    /// An older Service holds the requested address and does not share it.
    AddressTaken { address: IpAddr, owner: String },
    /// A request that cannot be read or cannot be met as written.
    InvalidRequest { field: &'static str, detail: String },
}

impl AllocationRefusal {
    /// CamelCase, for Event reasons and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            AllocationRefusal::Exhausted { .. } => "PoolExhausted",
            AllocationRefusal::NoPool { .. } => "NoAllocatingPool",
            AllocationRefusal::UnknownPool { .. } => "UnknownPool",
            AllocationRefusal::PoolNotAllocating { .. } => "PoolNotAllocating",
            AllocationRefusal::PoolNotPermitted { .. } => "PoolNotPermitted",
            AllocationRefusal::OutsidePools { .. } => "RequestedOutsidePools",
            AllocationRefusal::AddressTaken { .. } => "AddressTaken",
            AllocationRefusal::InvalidRequest { .. } => "InvalidRequest",
        }
    }
}

impl fmt::Display for AllocationRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocationRefusal::Exhausted { pools, family } => match pools.as_slice() {
                [pool] => write!(f, "pool {pool} is exhausted ({family})"),
                pools => write!(f, "pools {} are exhausted ({family})", pools.join(", ")),
            },
            AllocationRefusal::NoPool { family } => write!(
                f,
                "no pool with allocate: true holds {family} addresses and admits this Service"
            ),
            AllocationRefusal::UnknownPool { pool } => write!(
                f,
                "annotation {}: no pool is named {pool:?}",
                annotations::POOL
            ),
            AllocationRefusal::PoolNotAllocating { pool } => {
                write!(f, "pool {pool} does not say allocate: true")
            }
            AllocationRefusal::PoolNotPermitted { pool } => write!(
                f,
                "pool {pool} does not admit this Service (its namespaces, namespace_selector \
                 or service_selector)"
            ),
            AllocationRefusal::OutsidePools { address } => {
                write!(f, "address {address} requested outside every pool")
            }
            AllocationRefusal::AddressTaken { address, owner } => write!(
                f,
                "address {address} belongs to {owner}, an older Service that does not share \
                 it with this one (same namespace, same {} key, no common port)",
                annotations::ALLOW_SHARED_IP
            ),
            AllocationRefusal::InvalidRequest { field, detail } => write!(f, "{field}: {detail}"),
        }
    }
}

/// An address a Service keeps although it no longer fits (rule 3).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "mismatch", rename_all = "snake_case")]
pub enum Mismatch {
    /// No pool with `allocate: true` holds it (any more).
    OutsideAllocatingPools { address: IpAddr },
    /// Its pool no longer admits the Service.
    PoolNotPermitted { address: IpAddr, pool: String },
    /// It is not from the pool `herald.dev/pool` names.
    OtherPool {
        address: IpAddr,
        pool: Option<String>,
        requested: String,
    },
    /// An older Service holds it and does not share: it was replaced.
    Replaced { address: IpAddr, owner: String },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::OutsideAllocatingPools { address } => write!(
                f,
                "keeps {address}, which no pool with allocate: true holds any more (an \
                 assigned address is never moved)"
            ),
            Mismatch::PoolNotPermitted { address, pool } => write!(
                f,
                "keeps {address}, although pool {pool} no longer admits this Service (an \
                 assigned address is never moved)"
            ),
            Mismatch::OtherPool {
                address,
                pool,
                requested,
            } => write!(
                f,
                "keeps {address} from {}, although {} asks for pool {requested} (an assigned \
                 address is never moved)",
                pool.as_deref()
                    .map_or("no pool".to_string(), |p| format!("pool {p}")),
                annotations::POOL
            ),
            Mismatch::Replaced { address, owner } => write!(
                f,
                "had {address}, which the older {owner} holds without sharing it; replaced"
            ),
        }
    }
}

/// One address a Service should carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Assigned {
    pub address: IpAddr,
    /// Its pool (any pool, allocating or not); `None`: outside every pool.
    pub pool: Option<String>,
    /// Handed out by this computation (it was not in the status).
    pub new: bool,
}

/// What should become of one Service's load-balancer status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// herald's: `status.loadBalancer.ingress` should hold exactly these.
    Serve {
        addresses: Vec<Assigned>,
        /// Why it has fewer than it asked for.
        refusal: Option<AllocationRefusal>,
        mismatches: Vec<Mismatch>,
    },
    /// Not herald's (any more): remove these addresses from its status.
    Release { addresses: Vec<IpAddr> },
}

/// One Service's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAllocation {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub verdict: Verdict,
}

/// How full one allocating pool is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolUsage {
    pub name: String,
    /// Addresses it can hand out (saturating: an IPv6 /64 is huge).
    pub size: u128,
    /// Distinct addresses of the pool that Services carry.
    pub in_use: u128,
}

/// The allocator's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocation {
    /// herald's Services (in rule 2 order), then the Services to release.
    pub services: Vec<ServiceAllocation>,
    /// Every pool with `allocate: true`, in config order.
    pub pools: Vec<PoolUsage>,
}

impl Allocation {
    /// The verdict of one Service.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&Verdict> {
        self.services
            .iter()
            .find(|s| s.namespace == namespace && s.name == name)
            .map(|s| &s.verdict)
    }
}

/// A Service that carries an address.
#[derive(Clone, Debug)]
struct Holder {
    namespace: String,
    name: String,
    shared_key: Option<String>,
    ports: BTreeSet<(String, i32)>,
}

impl Holder {
    fn of(service: &ServiceInput) -> Self {
        Holder {
            namespace: service.namespace.clone(),
            name: service.name.clone(),
            shared_key: service.shared_key.clone(),
            ports: service.ports.clone(),
        }
    }

    /// Rule 5: whether `other` may carry this holder's address too.
    fn shares_with(&self, other: &Holder) -> bool {
        self.namespace == other.namespace
            && self.shared_key.is_some()
            && self.shared_key == other.shared_key
            && self.ports.is_disjoint(&other.ports)
    }
}

/// The pools and the selectors, parsed once.
struct Pools<'a> {
    all: &'a [PoolConfig],
    selectors: Vec<(Option<Selector>, Option<Selector>)>,
    namespaces: &'a NamespaceLabels,
}

impl<'a> Pools<'a> {
    fn new(all: &'a [PoolConfig], namespaces: &'a NamespaceLabels) -> Self {
        // A selector that does not parse (refused at load) admits nothing.
        let parse = |s: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>| {
            s.clone().map(|s| {
                Selector::try_from(s).unwrap_or_else(|_| {
                    Selector::from(kube::core::Expression::In(
                        "herald.dev/invalid-selector".to_string(),
                        Default::default(),
                    ))
                })
            })
        };
        Pools {
            all,
            selectors: all
                .iter()
                .map(|p| (parse(&p.namespace_selector), parse(&p.service_selector)))
                .collect(),
            namespaces,
        }
    }

    fn index_of(&self, address: IpAddr) -> Option<usize> {
        self.all
            .iter()
            .position(|pool| pool.cidrs.iter().any(|cidr| cidr.contains(&address)))
    }

    /// The pool's tenant rules admit the Service.
    fn admits(&self, index: usize, service: &ServiceInput) -> bool {
        let pool = &self.all[index];
        let (namespace_selector, service_selector) = &self.selectors[index];
        let empty = BTreeMap::new();
        let restricted = !pool.namespaces.is_empty() || namespace_selector.is_some();
        let listed = pool.namespaces.contains(&service.namespace);
        let selected = namespace_selector
            .as_ref()
            .is_some_and(|s| s.matches(self.namespaces.get(&service.namespace).unwrap_or(&empty)));
        if restricted && !listed && !selected {
            return false;
        }
        service_selector
            .as_ref()
            .is_none_or(|s| s.matches(&service.labels))
    }
}

/// Where the search for a free address in one CIDR stands: every usable
/// address before `next` is held (within one computation addresses are only
/// ever taken, so the search never goes back).
#[derive(Clone, Copy, Debug)]
struct Cursor {
    next: u128,
    last: u128,
    /// `next` went past `last` (kept apart: `last` may be `u128::MAX`).
    done: bool,
}

/// The usable addresses of a CIDR as (first, last), by rule 7.
fn usable_range(cidr: &IpNet) -> Option<(u128, u128)> {
    let (first, last) = match cidr {
        IpNet::V4(net) => {
            let first = u128::from(u32::from(net.network()));
            let last = u128::from(u32::from(net.broadcast()));
            if net.prefix_len() < 31 {
                (first + 1, last - 1)
            } else {
                (first, last)
            }
        }
        IpNet::V6(net) => {
            let first = u128::from(net.network());
            let last = u128::from(net.broadcast());
            if net.prefix_len() < 127 {
                (first + 1, last)
            } else {
                (first, last)
            }
        }
    };
    (first <= last).then_some((first, last))
}

fn to_ip(value: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(value as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(value))
    }
}

fn usable(cidr: &IpNet, address: IpAddr) -> bool {
    let value = match address {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    usable_range(cidr).is_some_and(|(first, last)| (first..=last).contains(&value))
}

/// Who holds each address, as the computation goes.
struct Book<'a> {
    pools: Pools<'a>,
    holders: BTreeMap<IpAddr, Vec<Holder>>,
    /// The addresses held by Services with a sharing key, per (namespace,
    /// key): where a Service with that key looks first (rule 5).
    shared: HashMap<(String, String), BTreeSet<IpAddr>>,
    cursors: HashMap<(usize, usize), Cursor>,
}

impl Book<'_> {
    /// Whether `service` may carry `address` beside its current holders;
    /// `Err(owner)` names the first holder that does not share.
    fn may_hold(&self, address: IpAddr, service: &Holder) -> Result<(), String> {
        for holder in self.holders.get(&address).into_iter().flatten() {
            if holder.namespace == service.namespace && holder.name == service.name {
                continue;
            }
            if !holder.shares_with(service) {
                return Err(format!("{}/{}", holder.namespace, holder.name));
            }
        }
        Ok(())
    }

    fn take(&mut self, address: IpAddr, service: &Holder) {
        let list = self.holders.entry(address).or_default();
        if !list
            .iter()
            .any(|h| h.namespace == service.namespace && h.name == service.name)
        {
            list.push(service.clone());
        }
        if let Some(key) = &service.shared_key {
            self.shared
                .entry((service.namespace.clone(), key.clone()))
                .or_default()
                .insert(address);
        }
    }

    /// The lowest free usable address of the family in pool `index`.
    fn free_in(&mut self, index: usize, family: IpFamily) -> Option<IpAddr> {
        let all = self.pools.all;
        let pool = &all[index];
        for (c, cidr) in pool.cidrs.iter().enumerate() {
            let v4 = matches!(cidr, IpNet::V4(_));
            if (family == IpFamily::IPv4) != v4 {
                continue;
            }
            let Some((first, last)) = usable_range(cidr) else {
                continue;
            };
            let cursor = self.cursors.entry((index, c)).or_insert(Cursor {
                next: first,
                last,
                done: false,
            });
            while !cursor.done {
                let address = to_ip(cursor.next, v4);
                if !self.holders.contains_key(&address) {
                    return Some(address);
                }
                if cursor.next >= cursor.last {
                    cursor.done = true;
                } else {
                    cursor.next += 1;
                }
            }
        }
        None
    }
}

/// The requested addresses of a Service (rule 4): `None` when it asks for
/// none, else one per family, or why the request cannot be read.
fn requested(service: &ServiceInput) -> Result<Option<Vec<IpAddr>>, AllocationRefusal> {
    let (field, text) = match (&service.requested_ips, &service.load_balancer_ip) {
        (Some(text), _) => (annotations::LOAD_BALANCER_IPS, text),
        (None, Some(text)) => ("spec.loadBalancerIP", text),
        (None, None) => return Ok(None),
    };
    let invalid = |detail: String| AllocationRefusal::InvalidRequest { field, detail };
    let mut out: Vec<IpAddr> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let address: IpAddr = part
            .parse()
            .map_err(|_| invalid(format!("{part:?} is not an IP address")))?;
        if out
            .iter()
            .any(|a| IpFamily::of(*a) == IpFamily::of(address))
        {
            return Err(invalid(format!(
                "more than one {} address; at most one per family",
                IpFamily::of(address)
            )));
        }
        out.push(address);
    }
    if out.is_empty() {
        return Err(invalid("no address".to_string()));
    }
    let wanted = service.wanted_families();
    if let Some(address) = out.iter().find(|a| !wanted.contains(&IpFamily::of(**a))) {
        return Err(invalid(format!(
            "{address} is an {} address, but the Service's ipFamilies/ipFamilyPolicy ask \
             for {}",
            IpFamily::of(*address),
            wanted
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" and ")
        )));
    }
    Ok(Some(out))
}

/// Computes every Service's load-balancer addresses. Pure: same inputs, same
/// answer. `served_before` names (`namespace/name`) Services herald
/// allocated for earlier that are not its any more (class or config
/// changed): their addresses from allocating pools are released.
pub fn allocate(
    services: &[ServiceInput],
    pools: &[PoolConfig],
    namespaces: &NamespaceLabels,
    config: &AllocationConfig,
    served_before: &BTreeSet<String>,
) -> Allocation {
    let mut ours: Vec<&ServiceInput> = services
        .iter()
        .filter(|s| s.load_balancer && config.claims_class(s.class.as_deref()))
        .collect();
    ours.sort_by(|a, b| a.age_key().cmp(&b.age_key()));
    let mut book = Book {
        pools: Pools::new(pools, namespaces),
        holders: BTreeMap::new(),
        shared: HashMap::new(),
        cursors: HashMap::new(),
    };

    // Rule 3: what each Service keeps, oldest first.
    let mut plans: Vec<ServicePlan> = Vec::with_capacity(ours.len());
    for service in &ours {
        plans.push(keep(&mut book, service));
    }
    for (service, plan) in ours.iter().zip(&plans) {
        let holder = Holder {
            shared_key: None,
            ..Holder::of(service)
        };
        for address in &plan.leaving {
            book.take(*address, &holder);
        }
    }
    // Addresses other controllers (or herald, before a Service stopped
    // being its own) wrote on Services that are not herald's are taken
    // too: never handed out again, never shared. In namespace/name order,
    // so a refusal names the same holder whatever the input order.
    let mut others: Vec<&ServiceInput> = services.iter().collect();
    others.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for service in &others {
        if service.load_balancer && config.claims_class(service.class.as_deref()) {
            continue;
        }
        let holder = Holder {
            shared_key: None,
            ..Holder::of(service)
        };
        for address in service.ingress.iter().filter_map(|t| t.trim().parse().ok()) {
            book.take(address, &holder);
        }
    }
    // External IPs (`spec.externalIPs`, written by Service owners) of every
    // Service: an allocated address that is also someone's external IP would
    // be announced for two Services.
    for service in &others {
        let holder = Holder {
            shared_key: None,
            ..Holder::of(service)
        };
        for address in service
            .external_ips
            .iter()
            .filter_map(|t| t.trim().parse().ok())
        {
            book.take(address, &holder);
        }
    }
    // Rules 4 to 7: what is missing.
    for (service, plan) in ours.iter().zip(&mut plans) {
        complete(&mut book, service, plan);
    }

    let mut out = Allocation {
        services: ours
            .iter()
            .zip(plans)
            .map(|(service, plan)| ServiceAllocation {
                namespace: service.namespace.clone(),
                name: service.name.clone(),
                uid: service.uid.clone(),
                verdict: Verdict::Serve {
                    addresses: plan.addresses,
                    refusal: plan.refusal,
                    mismatches: plan.mismatches,
                },
            })
            .collect(),
        pools: Vec::new(),
    };
    // Rule 1: release what herald wrote on Services that are not its own
    // (in namespace/name order, whatever the input order).
    for service in &others {
        if service.load_balancer && config.claims_class(service.class.as_deref()) {
            continue;
        }
        if service.load_balancer && !served_before.contains(&service.key()) {
            continue;
        }
        let addresses: Vec<IpAddr> = service
            .ingress
            .iter()
            .filter_map(|text| text.trim().parse().ok())
            .filter(|address| {
                book.pools
                    .index_of(*address)
                    .is_some_and(|i| pools[i].allocate)
            })
            .collect();
        if !addresses.is_empty() {
            out.services.push(ServiceAllocation {
                namespace: service.namespace.clone(),
                name: service.name.clone(),
                uid: service.uid.clone(),
                verdict: Verdict::Release { addresses },
            });
        }
    }
    out.pools = pools
        .iter()
        .enumerate()
        .filter(|(_, pool)| pool.allocate)
        .map(|(index, pool)| PoolUsage {
            name: pool.name.clone(),
            size: pool
                .cidrs
                .iter()
                .filter_map(usable_range)
                .fold(0u128, |sum, (first, last)| {
                    sum.saturating_add((last - first).saturating_add(1))
                }),
            in_use: book
                .holders
                .keys()
                .filter(|address| {
                    book.pools.index_of(**address) == Some(index)
                        && pool.cidrs.iter().any(|c| usable(c, **address))
                })
                .count() as u128,
        })
        .collect();
    out
}

/// One Service's addresses as the computation goes.
#[derive(Debug, Default)]
struct ServicePlan {
    addresses: Vec<Assigned>,
    refusal: Option<AllocationRefusal>,
    mismatches: Vec<Mismatch>,
    /// Addresses in its status it gives up: still taken in this
    /// computation, so none is handed to another Service before the status
    /// that drops it is written.
    leaving: Vec<IpAddr>,
    /// The request, read once.
    request: Option<Result<Option<Vec<IpAddr>>, AllocationRefusal>>,
}

/// Rule 3 for one Service: which of its current addresses it keeps.
fn keep(book: &mut Book<'_>, service: &ServiceInput) -> ServicePlan {
    let holder = Holder::of(service);
    let request = requested(service);
    let wanted = service.wanted_families();
    let mut plan = ServicePlan::default();
    for text in &service.ingress {
        let Ok(address) = text.trim().parse::<IpAddr>() else {
            continue; // not an address: herald's status holds only addresses
        };
        let family = IpFamily::of(address);
        if !wanted.contains(&family)
            || plan
                .addresses
                .iter()
                .any(|a| IpFamily::of(a.address) == family)
        {
            plan.leaving.push(address);
            continue;
        }
        // The Service asks for other addresses: it gets them.
        if let Ok(Some(requested)) = &request
            && !requested.contains(&address)
        {
            plan.leaving.push(address);
            continue;
        }
        if let Err(owner) = book.may_hold(address, &holder) {
            plan.mismatches.push(Mismatch::Replaced { address, owner });
            continue;
        }
        let index = book.pools.index_of(address);
        let pool = index.map(|i| book.pools.all[i].name.clone());
        match index {
            Some(i) if book.pools.all[i].allocate => {
                if !book.pools.admits(i, service) {
                    plan.mismatches.push(Mismatch::PoolNotPermitted {
                        address,
                        pool: book.pools.all[i].name.clone(),
                    });
                } else if let Some(requested) = &service.pool
                    && *requested != book.pools.all[i].name
                {
                    plan.mismatches.push(Mismatch::OtherPool {
                        address,
                        pool: pool.clone(),
                        requested: requested.clone(),
                    });
                }
            }
            _ => plan
                .mismatches
                .push(Mismatch::OutsideAllocatingPools { address }),
        }
        book.take(address, &holder);
        plan.addresses.push(Assigned {
            address,
            pool,
            new: false,
        });
    }
    plan.request = Some(request);
    plan
}

/// Rules 4 to 7 for one Service: the addresses it is missing.
fn complete(book: &mut Book<'_>, service: &ServiceInput, plan: &mut ServicePlan) {
    let holder = Holder::of(service);
    let have: BTreeSet<IpFamily> = plan
        .addresses
        .iter()
        .map(|a| IpFamily::of(a.address))
        .collect();
    let request = plan.request.take().unwrap_or(Ok(None));
    let missing: Vec<IpFamily> = match &request {
        Err(refusal) => {
            plan.refusal = Some(refusal.clone());
            return;
        }
        Ok(Some(addresses)) => addresses
            .iter()
            .map(|a| IpFamily::of(*a))
            .filter(|f| !have.contains(f))
            .collect(),
        Ok(None) => service
            .wanted_families()
            .into_iter()
            .filter(|f| !have.contains(f))
            .collect(),
    };
    if missing.is_empty() {
        return;
    }
    // A named pool must exist, allocate and admit the Service.
    let named = match &service.pool {
        None => None,
        Some(name) => match book.pools.all.iter().position(|p| p.name == *name) {
            None => {
                plan.refusal = Some(AllocationRefusal::UnknownPool { pool: name.clone() });
                return;
            }
            Some(i) if !book.pools.all[i].allocate => {
                plan.refusal = Some(AllocationRefusal::PoolNotAllocating { pool: name.clone() });
                return;
            }
            Some(i) if !book.pools.admits(i, service) => {
                plan.refusal = Some(AllocationRefusal::PoolNotPermitted { pool: name.clone() });
                return;
            }
            Some(i) => Some(i),
        },
    };
    let mut found: Vec<Assigned> = Vec::new();
    let mut refusals: Vec<AllocationRefusal> = Vec::new();
    for family in missing {
        let result = match &request {
            Ok(Some(addresses)) => {
                let address = *addresses
                    .iter()
                    .find(|a| IpFamily::of(**a) == family)
                    .expect("a missing family comes from the request");
                take_requested(book, service, &holder, named, address)
            }
            _ => take_fresh(book, service, &holder, named, family),
        };
        match result {
            Ok(assigned) => {
                // Taken now, so the next family (and Service) sees it.
                book.take(assigned.address, &holder);
                found.push(assigned);
            }
            Err(refusal) => refusals.push(refusal),
        }
    }
    // RequireDualStack and explicit requests: every family or none new.
    let require_all =
        service.family_policy == FamilyPolicy::RequireDualStack || matches!(request, Ok(Some(_)));
    if let Some(first) = refusals.into_iter().next() {
        if require_all {
            for assigned in found.drain(..) {
                release(book, assigned.address, &holder);
            }
            plan.refusal = Some(first);
        } else if service.family_policy != FamilyPolicy::PreferDualStack
            || (plan.addresses.is_empty() && found.is_empty())
        {
            plan.refusal = Some(first);
        }
    }
    plan.addresses.extend(found);
}

fn release(book: &mut Book<'_>, address: IpAddr, holder: &Holder) {
    if let Some(list) = book.holders.get_mut(&address) {
        list.retain(|h| !(h.namespace == holder.namespace && h.name == holder.name));
        if let Some(key) = &holder.shared_key
            && !list
                .iter()
                .any(|h| h.namespace == holder.namespace && h.shared_key.as_ref() == Some(key))
            && let Some(set) = book
                .shared
                .get_mut(&(holder.namespace.clone(), key.clone()))
        {
            set.remove(&address);
        }
        if list.is_empty() {
            book.holders.remove(&address);
        }
    }
    // The cursors may have passed it: let them look again.
    let all = book.pools.all;
    for ((index, c), cursor) in book.cursors.iter_mut() {
        let cidr = &all[*index].cidrs[*c];
        if cidr.contains(&address) {
            let value = match address {
                IpAddr::V4(a) => u128::from(u32::from(a)),
                IpAddr::V6(a) => u128::from(a),
            };
            if cursor.done || value < cursor.next {
                cursor.next = value;
                cursor.done = false;
            }
        }
    }
}

/// Rule 4: one requested address.
fn take_requested(
    book: &mut Book<'_>,
    service: &ServiceInput,
    holder: &Holder,
    named: Option<usize>,
    address: IpAddr,
) -> Result<Assigned, AllocationRefusal> {
    let index = book
        .pools
        .index_of(address)
        .ok_or(AllocationRefusal::OutsidePools { address })?;
    let pool = &book.pools.all[index];
    if !pool.allocate {
        return Err(AllocationRefusal::PoolNotAllocating {
            pool: pool.name.clone(),
        });
    }
    if named.is_some_and(|n| n != index) {
        return Err(AllocationRefusal::InvalidRequest {
            field: annotations::LOAD_BALANCER_IPS,
            detail: format!(
                "{address} is in pool {}, not in the pool {} names",
                pool.name,
                annotations::POOL
            ),
        });
    }
    if !book.pools.admits(index, service) {
        return Err(AllocationRefusal::PoolNotPermitted {
            pool: pool.name.clone(),
        });
    }
    book.may_hold(address, holder)
        .map_err(|owner| AllocationRefusal::AddressTaken { address, owner })?;
    Ok(Assigned {
        address,
        pool: Some(pool.name.clone()),
        new: true,
    })
}

/// Rules 5 and 7: a shareable address, else the lowest free one.
fn take_fresh(
    book: &mut Book<'_>,
    service: &ServiceInput,
    holder: &Holder,
    named: Option<usize>,
    family: IpFamily,
) -> Result<Assigned, AllocationRefusal> {
    let candidates: Vec<usize> = match named {
        Some(index) => vec![index],
        None => (0..book.pools.all.len())
            .filter(|&i| book.pools.all[i].allocate && book.pools.admits(i, service))
            .collect(),
    };
    let of_family: Vec<usize> = candidates
        .into_iter()
        .filter(|&i| {
            book.pools.all[i]
                .cidrs
                .iter()
                .any(|c| IpFamily::of(c.network()) == family)
        })
        .collect();
    if of_family.is_empty() {
        return Err(AllocationRefusal::NoPool { family });
    }
    if let Some(key) = &holder.shared_key {
        let shared = book
            .shared
            .get(&(holder.namespace.clone(), key.clone()))
            .into_iter()
            .flatten()
            .copied()
            .filter(|address| IpFamily::of(*address) == family)
            .find(|address| {
                book.may_hold(*address, holder).is_ok()
                    && book
                        .pools
                        .index_of(*address)
                        .is_some_and(|i| of_family.contains(&i))
            });
        if let Some(address) = shared {
            let index = book.pools.index_of(address).expect("checked above");
            return Ok(Assigned {
                address,
                pool: Some(book.pools.all[index].name.clone()),
                new: true,
            });
        }
    }
    for &index in &of_family {
        if let Some(address) = book.free_in(index, family) {
            return Ok(Assigned {
                address,
                pool: Some(book.pools.all[index].name.clone()),
                new: true,
            });
        }
    }
    Err(AllocationRefusal::Exhausted {
        pools: of_family
            .iter()
            .map(|&i| book.pools.all[i].name.clone())
            .collect(),
        family,
    })
}
