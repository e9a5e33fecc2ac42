//! The selection settings of the `kubernetes:` section (they name Kubernetes
//! types, so they exist only with the `agent` feature).
//!
//! Owns: their shape, defaults and validation. Must not touch: anything at
//! run time.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::Selector;
use serde::{Deserialize, Serialize};

use super::AddressKind;
use crate::model::{AnyCommunity, Community};

/// The label that makes Kubernetes' own service controller skip a node; herald
/// honours it too.
pub const EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS: &str =
    "node.kubernetes.io/exclude-from-external-load-balancers";

/// How Services are selected and what their annotations may change.
///
/// ```yaml
/// kubernetes:
///   load_balancer_services: false
///   service_selector: {matchLabels: {bgp: "true"}}
///   address_kinds: [load-balancer, external]
///   max_addresses_per_service: 8
///   node_weight: 1
///   cluster_policy_requires_ready_endpoint: true
///   node_exclusion_labels: [node.kubernetes.io/exclude-from-external-load-balancers]
///   debounce: 5ms
///   pool_annotations:
///     public: {communities: ["65000:200"], local_pref: true, med: true}
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SelectionConfig {
    /// Select every `type: LoadBalancer` Service, annotated or not.
    #[serde(default)]
    pub load_balancer_services: bool,
    /// Select every Service whose labels match (Kubernetes `LabelSelector`:
    /// `matchLabels`, `matchExpressions`). Absent: no label selection. An
    /// empty selector is refused because it would select every Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_selector: Option<LabelSelector>,
    /// Which addresses of a selected Service are considered when it has no
    /// `herald.dev/address-kinds` annotation.
    #[serde(default = "default_address_kinds")]
    pub address_kinds: BTreeSet<AddressKind>,
    /// `externalTrafficPolicy: Cluster`: announce only while the Service has
    /// at least one ready endpoint anywhere in the cluster.
    #[serde(default = "yes")]
    pub cluster_policy_requires_ready_endpoint: bool,
    /// A node that carries any of these labels (whatever the value) announces
    /// nothing.
    #[serde(default = "default_node_exclusion_labels")]
    pub node_exclusion_labels: Vec<String>,
    /// How long the watchers wait after a change for more changes before
    /// handing a new snapshot to the agent.
    #[serde(default = "default_debounce", with = "crate::config::duration")]
    pub debounce: std::time::Duration,
    /// What the per-service annotations may set, per pool name. A pool that is
    /// not listed gets [`PoolAnnotationPolicy::default`].
    #[serde(default)]
    pub pool_annotations: BTreeMap<String, PoolAnnotationPolicy>,
    /// The most addresses one Service may have announced; the ones after
    /// the first this many (in the order found) are refused.
    #[serde(default = "default_max_addresses_per_service")]
    pub max_addresses_per_service: usize,
    /// This node's weight for `externalTrafficPolicy: Cluster` Services in a
    /// pool with `weighted_ecmp` (the config is shared by every node: the
    /// Node annotation [`NODE_WEIGHT_ANNOTATION`] overrides it per node).
    #[serde(default = "default_node_weight")]
    pub node_weight: u32,
    /// The local AS (the file's top-level `asn`), which the link-bandwidth
    /// community carries. Not a field users write: whoever builds the
    /// policy's config from the file copies it in.
    #[serde(skip)]
    pub local_as: u32,
    /// The load-balancer class herald allocates for: not written under
    /// `kubernetes:` but taken from the `allocation:` section when it is
    /// enabled, so that a Service herald allocated for is announced without
    /// any annotation.
    #[serde(skip)]
    pub allocated_class: Option<AllocatedClass>,
}

/// Which `type: LoadBalancer` Services are herald's own by their
/// `spec.loadBalancerClass` (from `allocation.load_balancer_class` and
/// `allocation.claim_unclassed`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocatedClass {
    pub class: String,
    pub unclassed: bool,
}

impl AllocatedClass {
    /// Whether a LoadBalancer Service of this class is herald's.
    pub fn claims(&self, class: Option<&str>) -> bool {
        match class {
            Some(class) => class == self.class,
            None => self.unclassed,
        }
    }
}

/// The Node annotation with which a cluster admin sets one node's weight
/// (a whole number from 1 to [`MAX_NODE_WEIGHT`]); it overrides
/// `kubernetes.node_weight`. A value that is not one keeps the config's.
pub const NODE_WEIGHT_ANNOTATION: &str = "herald.dev/node-weight";

/// The largest node weight, and the largest endpoint count a weight
/// follows: with one unit of weight worth 1,000,000 bytes/s in the
/// link-bandwidth community, 4294 is the most a 32-bit value holds.
pub const MAX_NODE_WEIGHT: u32 = 1000;

impl Default for SelectionConfig {
    fn default() -> Self {
        SelectionConfig {
            load_balancer_services: false,
            service_selector: None,
            address_kinds: default_address_kinds(),
            cluster_policy_requires_ready_endpoint: true,
            node_exclusion_labels: default_node_exclusion_labels(),
            debounce: default_debounce(),
            pool_annotations: BTreeMap::new(),
            max_addresses_per_service: default_max_addresses_per_service(),
            node_weight: default_node_weight(),
            local_as: 0,
            allocated_class: None,
        }
    }
}

fn default_node_weight() -> u32 {
    1
}

fn default_max_addresses_per_service() -> usize {
    8
}

fn yes() -> bool {
    true
}

/// Load-balancer addresses only: they are assigned by the cluster's
/// load-balancer controller, while `spec.externalIPs` is written by whoever
/// owns the Service.
fn default_address_kinds() -> BTreeSet<AddressKind> {
    BTreeSet::from([AddressKind::LoadBalancer])
}

fn default_node_exclusion_labels() -> Vec<String> {
    vec![EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS.to_string()]
}

fn default_debounce() -> std::time::Duration {
    std::time::Duration::from_millis(5)
}

/// What `herald.dev/communities`, `herald.dev/local-pref` and `herald.dev/med`
/// may set on addresses of one pool.
///
/// "Within what the pool allows" means:
/// - a community from the annotation is accepted when it is listed in
///   `communities`; when `communities` is absent, any community is accepted
///   except the reserved ranges of RFC 1997 (`0:*` and `65535:*`, which hold
///   NO_EXPORT, BLACKHOLE and GRACEFUL_SHUTDOWN: a tenant must not be able to
///   blackhole or drain a prefix by annotation) and large communities whose
///   global administrator is a reserved AS number (0, RFC 7607; 4294967295,
///   RFC 7300);
/// - `local_pref` and `med` say whether those annotations may be used at all.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolAnnotationPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communities: Option<Vec<AnyCommunity>>,
    #[serde(default = "yes")]
    pub local_pref: bool,
    #[serde(default = "yes")]
    pub med: bool,
}

impl Default for PoolAnnotationPolicy {
    fn default() -> Self {
        PoolAnnotationPolicy {
            communities: None,
            local_pref: true,
            med: true,
        }
    }
}

impl PoolAnnotationPolicy {
    /// Whether an annotation may add this community to the pool's addresses.
    pub fn permits_community(&self, community: AnyCommunity) -> bool {
        match &self.communities {
            Some(list) => list.contains(&community),
            None => !is_reserved(community),
        }
    }
}

/// RFC 1997: "The community attribute values ranging from 0x0000000 through
/// 0x0000FFFF and 0xFFFF0000 through 0xFFFFFFFF are hereby reserved."
fn is_reserved(community: AnyCommunity) -> bool {
    match community {
        AnyCommunity::Standard(Community(value)) => value <= 0x0000_FFFF || value >= 0xFFFF_0000,
        AnyCommunity::Large(large) => large.global_admin == 0 || large.global_admin == u32::MAX,
    }
}

/// A setting in the `kubernetes:` section that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("kubernetes.service_selector: {0}")]
    Selector(String),
    #[error(
        "kubernetes.address_kinds: must name at least one of: {}",
        AddressKind::NAMES
    )]
    NoAddressKinds,
    #[error("kubernetes.node_exclusion_labels[{index}]: {reason}")]
    ExclusionLabel { index: usize, reason: String },
    #[error("kubernetes.debounce: {0:?} is longer than the 5s limit")]
    Debounce(std::time::Duration),
    #[error("kubernetes.pool_annotations.{0}: no pool has this name")]
    UnknownPool(String),
    #[error("kubernetes.max_addresses_per_service: must be at least 1")]
    NoAddressesPerService,
    #[error("kubernetes.node_weight: must be from 1 to {MAX_NODE_WEIGHT} (got {0})")]
    NodeWeight(u32),
}

impl SelectionConfig {
    /// Checks the settings against each other and against the pool names.
    pub fn validate(&self, pool_names: &[&str]) -> Result<(), SelectionError> {
        if let Some(selector) = &self.service_selector {
            let parsed = Selector::try_from(selector.clone())
                .map_err(|e| SelectionError::Selector(e.to_string()))?;
            if parsed.selects_all() {
                return Err(SelectionError::Selector(
                    "an empty selector would select every Service; remove it or add matchLabels/matchExpressions"
                        .to_string(),
                ));
            }
        }
        if self.address_kinds.is_empty() {
            return Err(SelectionError::NoAddressKinds);
        }
        for (index, label) in self.node_exclusion_labels.iter().enumerate() {
            if let Err(reason) = check_label_key(label) {
                return Err(SelectionError::ExclusionLabel { index, reason });
            }
        }
        if self.debounce > std::time::Duration::from_secs(5) {
            return Err(SelectionError::Debounce(self.debounce));
        }
        for name in self.pool_annotations.keys() {
            if !pool_names.contains(&name.as_str()) {
                return Err(SelectionError::UnknownPool(name.clone()));
            }
        }
        if self.max_addresses_per_service == 0 {
            return Err(SelectionError::NoAddressesPerService);
        }
        if !(1..=MAX_NODE_WEIGHT).contains(&self.node_weight) {
            return Err(SelectionError::NodeWeight(self.node_weight));
        }
        Ok(())
    }

    /// The parsed service selector (after [`SelectionConfig::validate`]).
    pub fn selector(&self) -> Option<Selector> {
        self.service_selector
            .clone()
            .and_then(|s| Selector::try_from(s).ok())
    }

    /// The annotation policy of the named pool.
    pub fn pool_policy(&self, pool: &str) -> &PoolAnnotationPolicy {
        static DEFAULT: PoolAnnotationPolicy = PoolAnnotationPolicy {
            communities: None,
            local_pref: true,
            med: true,
        };
        self.pool_annotations.get(pool).unwrap_or(&DEFAULT)
    }
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of 1 to
/// 63 characters from `[A-Za-z0-9._-]`, starting and ending alphanumeric.
fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !super::is_dns_subdomain(prefix)
    {
        return Err(format!("{key:?}: prefix {prefix:?} is not a DNS subdomain"));
    }
    if super::is_qualified_name(name) {
        Ok(())
    } else {
        Err(format!(
            "{key:?} is not a label key: the name must be 1-63 characters of [A-Za-z0-9._-], alphanumeric at both ends"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<SelectionConfig, String> {
        serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_section_takes_the_documented_defaults() {
        let config = parse("{}").unwrap();
        assert_eq!(config, SelectionConfig::default());
        assert!(!config.load_balancer_services);
        assert_eq!(
            config.address_kinds,
            BTreeSet::from([AddressKind::LoadBalancer])
        );
        assert_eq!(config.max_addresses_per_service, 8);
        assert_eq!(
            config.node_exclusion_labels,
            vec![EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS.to_string()]
        );
        assert!(config.cluster_policy_requires_ready_endpoint);
        config.validate(&[]).unwrap();
    }

    #[test]
    fn every_field_parses_from_yaml() {
        let config = parse(
            r#"
load_balancer_services: true
service_selector: {matchLabels: {bgp: "yes"}, matchExpressions: [{key: tier, operator: In, values: [web]}]}
address_kinds: [cluster]
cluster_policy_requires_ready_endpoint: false
node_exclusion_labels: [example.com/no-bgp]
debounce: 50ms
pool_annotations:
  public: {communities: ["65000:200", "65000:1:2"], med: false}
"#,
        )
        .unwrap();
        assert!(config.load_balancer_services);
        assert_eq!(config.address_kinds, BTreeSet::from([AddressKind::Cluster]));
        assert_eq!(config.debounce, std::time::Duration::from_millis(50));
        let public = config.pool_policy("public");
        assert!(!public.med && public.local_pref);
        assert!(public.permits_community("65000:200".parse().unwrap()));
        assert!(!public.permits_community("65000:201".parse().unwrap()));
        config.validate(&["public"]).unwrap();
        let selector = config.selector().unwrap();
        use kube::core::SelectorExt;
        let labels = BTreeMap::from([
            ("bgp".to_string(), "yes".to_string()),
            ("tier".to_string(), "web".to_string()),
        ]);
        assert!(selector.matches(&labels));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused_with_the_field_name() {
        let err = parse("load_balancer_service: true").unwrap_err();
        assert!(err.contains("load_balancer_service"), "{err}");
        let err = parse("address_kinds: [nodeport]").unwrap_err();
        assert!(err.contains("nodeport"), "{err}");
        let err = parse("debounce: soon").unwrap_err();
        assert!(err.contains("not a duration"), "{err}");
    }

    #[test]
    fn validation_names_the_field_at_fault() {
        let cases: Vec<(&str, &str)> = vec![
            ("service_selector: {}", "kubernetes.service_selector"),
            (
                "service_selector: {matchExpressions: [{key: a, operator: Sideways}]}",
                "kubernetes.service_selector",
            ),
            ("address_kinds: []", "kubernetes.address_kinds"),
            (
                "node_exclusion_labels: [ok, \"-bad\"]",
                "kubernetes.node_exclusion_labels[1]",
            ),
            (
                "node_exclusion_labels: [\"UPPER.example/x\"]",
                "kubernetes.node_exclusion_labels[0]",
            ),
            ("debounce: 10s", "kubernetes.debounce"),
            (
                "max_addresses_per_service: 0",
                "kubernetes.max_addresses_per_service",
            ),
            (
                "pool_annotations: {nowhere: {}}",
                "kubernetes.pool_annotations.nowhere",
            ),
        ];
        for (yaml, field) in cases {
            let config = parse(yaml).unwrap();
            let err = config.validate(&["public"]).unwrap_err().to_string();
            assert!(err.starts_with(field), "{yaml}: {err}");
        }
    }

    #[test]
    fn reserved_communities_need_an_explicit_listing() {
        let open = PoolAnnotationPolicy::default();
        for reserved in [
            "65535:666",
            "65535:0",
            "65535:65281",
            "0:5",
            "0:1:2",
            "4294967295:1:1",
        ] {
            assert!(
                !open.permits_community(reserved.parse().unwrap()),
                "{reserved}"
            );
        }
        for fine in ["65000:100", "1:0", "65534:65535", "65000:1:2"] {
            assert!(open.permits_community(fine.parse().unwrap()), "{fine}");
        }
        let listed = PoolAnnotationPolicy {
            communities: Some(vec!["65535:666".parse().unwrap()]),
            ..PoolAnnotationPolicy::default()
        };
        assert!(listed.permits_community("65535:666".parse().unwrap()));
    }

    #[test]
    fn address_kinds_read_and_print_the_same_names() {
        for kind in [
            AddressKind::LoadBalancer,
            AddressKind::External,
            AddressKind::Cluster,
        ] {
            assert_eq!(kind.as_str().parse::<AddressKind>().unwrap(), kind);
        }
        assert!("ClusterIP".parse::<AddressKind>().is_err());
    }
}
