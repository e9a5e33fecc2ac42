//! The `allocation:` section of the configuration file: whether herald hands
//! out `type: LoadBalancer` addresses from its pools, and which Services are
//! its to serve.
//!
//! Owns: the shape, defaults and validation of these settings. Must not
//! touch: anything at run time (the allocator in `crate::allocation` and its
//! controller read the validated values).

use serde::{Deserialize, Serialize};

use super::kubernetes::{is_dns_subdomain, is_qualified_name};
use super::{LeaderElectionConfig, PoolConfig, Problem};

/// The `spec.loadBalancerClass` herald serves unless told otherwise.
pub const DEFAULT_LOAD_BALANCER_CLASS: &str = "herald.dev/bgp";
/// Where the allocation Lease lives when neither the config nor the
/// `POD_NAMESPACE` environment variable says.
pub const DEFAULT_LEASE_NAMESPACE: &str = "herald-system";

/// ```yaml
/// allocation:
///   enabled: true
///   load_balancer_class: herald.dev/bgp
///   claim_unclassed: false
///   lease_namespace: herald-system
///   leader_election: {lease_duration: 15s, renew_deadline: 10s, retry_period: 2s}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllocationConfig {
    /// Assign addresses from the pools that say `allocate: true`.
    #[serde(default)]
    pub enabled: bool,
    /// Services whose `spec.loadBalancerClass` is this are herald's.
    #[serde(default = "default_class")]
    pub load_balancer_class: String,
    /// Also serve `type: LoadBalancer` Services with no class.
    #[serde(default)]
    pub claim_unclassed: bool,
    /// The namespace of the allocation Lease; unset: `POD_NAMESPACE`, else
    /// [`DEFAULT_LEASE_NAMESPACE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_namespace: Option<String>,
    /// The Lease's timing (`super::leader_election`).
    #[serde(default)]
    pub leader_election: LeaderElectionConfig,
}

impl Default for AllocationConfig {
    fn default() -> Self {
        AllocationConfig {
            enabled: false,
            load_balancer_class: default_class(),
            claim_unclassed: false,
            lease_namespace: None,
            leader_election: LeaderElectionConfig::default(),
        }
    }
}

fn default_class() -> String {
    DEFAULT_LOAD_BALANCER_CLASS.to_string()
}

impl AllocationConfig {
    /// Whether a Service of this `spec.loadBalancerClass` is herald's to
    /// allocate for (and to announce without annotation).
    pub fn claims_class(&self, class: Option<&str>) -> bool {
        match class {
            Some(class) => class == self.load_balancer_class,
            None => self.claim_unclassed,
        }
    }

    /// The class the announcement policy selects by (rule 1 of
    /// `crate::policy`): `None` while allocation is off.
    #[cfg(feature = "agent")]
    pub fn allocated_class(&self) -> Option<super::kubernetes::AllocatedClass> {
        self.enabled.then(|| super::kubernetes::AllocatedClass {
            class: self.load_balancer_class.clone(),
            unclassed: self.claim_unclassed,
        })
    }

    /// The Lease's namespace: the configured one, else `pod_namespace` (the
    /// `POD_NAMESPACE` environment variable), else `herald-system`.
    pub fn lease_namespace(&self, pod_namespace: Option<&str>) -> String {
        self.lease_namespace
            .as_deref()
            .or(pod_namespace.filter(|n| !n.is_empty()))
            .unwrap_or(DEFAULT_LEASE_NAMESPACE)
            .to_string()
    }

    /// Every problem of the section, with its field path. Overlapping pools
    /// need no rule here: no two pools may overlap at all (`pools[].cidrs`),
    /// so every address belongs to exactly one pool and an allocation is
    /// never ambiguous.
    pub(crate) fn problems(&self, pools: &[PoolConfig]) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.enabled && !pools.iter().any(|pool| pool.allocate) {
            out.push(Problem::new(
                "allocation.enabled",
                "no pool says allocate: true, so there is nothing to allocate from; \
                 set it on a pool or turn allocation off",
            ));
        }
        if let Err(reason) = check_class(&self.load_balancer_class) {
            out.push(Problem::new("allocation.load_balancer_class", reason));
        }
        if let Some(namespace) = &self.lease_namespace
            && !super::validate::is_dns_label(namespace)
        {
            out.push(Problem::new(
                "allocation.lease_namespace",
                format!(
                    "{namespace:?} is not a namespace name (1-63 of [a-z0-9-], alphanumeric \
                     at both ends)"
                ),
            ));
        }
        out.extend(self.leader_election.problems("allocation.leader_election"));
        out
    }
}

/// Kubernetes requires a `spec.loadBalancerClass` to be a label-style name
/// with a domain prefix (`example.com/name`); an unprefixed one is refused by
/// the API server, so no Service could ever carry it.
fn check_class(class: &str) -> Result<(), String> {
    let Some((prefix, name)) = class.split_once('/') else {
        return Err(format!(
            "{class:?} has no domain prefix; Kubernetes accepts only prefixed classes such as \
             \"herald.dev/bgp\""
        ));
    };
    // A domain prefix, so it must have a dot (`herald.dev`, not `herald`).
    let prefix_ok = prefix.contains('.') && is_dns_subdomain(prefix);
    if prefix_ok && is_qualified_name(name) {
        Ok(())
    } else {
        Err(format!(
            "{class:?} is not a load balancer class: a DNS-subdomain prefix, '/', and a name \
             of 1-63 characters of [A-Za-z0-9._-], alphanumeric at both ends"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const BASE: &str = "asn: 64601\npools:\n  - {name: public, cidrs: [203.0.113.0/24]";

    fn problems(yaml: &str) -> Vec<String> {
        match Config::from_yaml(yaml) {
            Ok(_) => Vec::new(),
            Err(error) => error.to_string().lines().map(str::to_string).collect(),
        }
    }

    #[test]
    fn an_absent_section_takes_the_documented_defaults() {
        let config = Config::from_yaml(&format!("{BASE}}}\n")).unwrap();
        assert_eq!(config.allocation, AllocationConfig::default());
        assert!(!config.allocation.enabled);
        assert_eq!(config.allocation.load_balancer_class, "herald.dev/bgp");
        assert!(!config.allocation.claim_unclassed);
        assert!(!config.pools[0].allocate);
        assert_eq!(config.allocation.lease_namespace(None), "herald-system");
        assert_eq!(config.allocation.lease_namespace(Some("lb")), "lb");
    }

    #[test]
    fn every_field_parses() {
        let config = Config::from_yaml(&format!(
            "{BASE}, allocate: true}}\nallocation:\n  enabled: true\n  \
             load_balancer_class: example.com/lb\n  claim_unclassed: true\n  \
             lease_namespace: lb-system\n"
        ))
        .unwrap();
        let allocation = &config.allocation;
        assert!(allocation.enabled && allocation.claim_unclassed && config.pools[0].allocate);
        assert_eq!(allocation.lease_namespace(Some("other")), "lb-system");
        assert!(allocation.claims_class(Some("example.com/lb")));
        assert!(allocation.claims_class(None));
        assert!(!allocation.claims_class(Some("herald.dev/bgp")));
    }

    #[test]
    fn enabled_without_an_allocating_pool_is_refused_at_the_field() {
        let errors = problems(&format!("{BASE}}}\nallocation: {{enabled: true}}\n"));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("allocation.enabled") && e.contains("allocate: true")),
            "{errors:?}"
        );
        // Off, the same pools are fine.
        assert!(problems(&format!("{BASE}}}\nallocation: {{enabled: false}}\n")).is_empty());
    }

    #[test]
    fn bad_values_name_their_field() {
        for (yaml, field) in [
            ("load_balancer_class: bgp", "allocation.load_balancer_class"),
            (
                "load_balancer_class: herald.dev/",
                "allocation.load_balancer_class",
            ),
            (
                "load_balancer_class: Herald.dev/x",
                "allocation.load_balancer_class",
            ),
            ("lease_namespace: Herald", "allocation.lease_namespace"),
        ] {
            let errors = problems(&format!(
                "{BASE}, allocate: true}}\nallocation: {{enabled: true, {yaml}}}\n"
            ));
            assert!(
                errors.iter().any(|e| e.contains(field)),
                "{yaml}: {errors:?}"
            );
        }
        let err = Config::from_yaml(&format!("{BASE}}}\nallocation: {{enable: true}}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("enable"), "{err}");
    }

    #[test]
    fn overlapping_pools_are_refused_so_an_address_has_one_pool() {
        let errors = problems(
            "asn: 64601\npools:\n  - {name: a, cidrs: [203.0.113.0/24], allocate: true}\n  \
             - {name: b, cidrs: [203.0.113.128/25], allocate: true}\nallocation: {enabled: true}\n",
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("pools[1].cidrs[0]") && e.contains("overlaps")),
            "{errors:?}"
        );
    }
}
