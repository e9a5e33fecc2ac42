//! `allocation.leader_election`: how the one allocator of a cluster is
//! chosen among the herald pods (a `coordination.k8s.io/v1` Lease), and the
//! temporary `allocation` section that carries it.
//!
//! Owns: the timing fields' shape, defaults and validation, and where the
//! Lease lives. Must not touch: anything at run time; the elector
//! (`source::kube::lease`) applies them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Problem, duration};

/// The namespace the Lease lives in when neither `allocation.lease_namespace`
/// nor the pod's own namespace (`POD_NAMESPACE`) says.
pub const DEFAULT_LEASE_NAMESPACE: &str = "herald-system";

/// The shortest lease accepted: the API server stores whole seconds.
pub const LEASE_DURATION_MIN: Duration = Duration::from_secs(2);
/// The longest lease accepted: after a leader dies without releasing, no
/// Service gets an address for up to this long.
pub const LEASE_DURATION_MAX: Duration = Duration::from_secs(300);
/// The shortest retry period accepted (each retry is an API call per pod).
pub const RETRY_PERIOD_MIN: Duration = Duration::from_millis(100);

/// The `allocation` section. Only what the elector reads; the allocator's
/// own fields (`load_balancer_class`, `claim_unclassed`) come with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllocationConfig {
    /// Whether this cluster's herald pods elect an allocator.
    #[serde(default)]
    pub enabled: bool,
    /// The namespace of the Lease; unset: `POD_NAMESPACE`, else
    /// `herald-system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_namespace: Option<String>,
    #[serde(default)]
    pub leader_election: LeaderElectionConfig,
}

impl AllocationConfig {
    /// The Lease's namespace: the configured one, else `pod_namespace` (the
    /// `POD_NAMESPACE` environment variable), else `herald-system`.
    pub fn lease_namespace(&self, pod_namespace: Option<&str>) -> String {
        self.lease_namespace
            .as_deref()
            .or(pod_namespace.filter(|ns| !ns.is_empty()))
            .unwrap_or(DEFAULT_LEASE_NAMESPACE)
            .to_string()
    }

    pub(crate) fn problems(&self, path: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        if let Some(ns) = &self.lease_namespace
            && !super::validate::is_dns_label(ns)
        {
            out.push(Problem::new(
                format!("{path}.lease_namespace"),
                format!(
                    "{ns:?} is not a namespace name (lowercase letters, digits and '-', at most 63)"
                ),
            ));
        }
        out.extend(
            self.leader_election
                .problems(&format!("{path}.leader_election")),
        );
        out
    }
}

/// The Lease's timing, as client-go names it. A leader renews every
/// `retry_period`; one that could not renew for `renew_deadline` stops
/// allocating; the others take the Lease over once they have seen it
/// unchanged for `lease_duration`. `renew_deadline < lease_duration` is what
/// makes two leaders impossible: the old one has stopped before anyone else
/// may start.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderElectionConfig {
    #[serde(default = "default_lease_duration", with = "duration")]
    pub lease_duration: Duration,
    #[serde(default = "default_renew_deadline", with = "duration")]
    pub renew_deadline: Duration,
    #[serde(default = "default_retry_period", with = "duration")]
    pub retry_period: Duration,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        LeaderElectionConfig {
            lease_duration: default_lease_duration(),
            renew_deadline: default_renew_deadline(),
            retry_period: default_retry_period(),
        }
    }
}

fn default_lease_duration() -> Duration {
    Duration::from_secs(15)
}

fn default_renew_deadline() -> Duration {
    Duration::from_secs(10)
}

fn default_retry_period() -> Duration {
    Duration::from_secs(2)
}

impl LeaderElectionConfig {
    /// Every broken rule, each named by its field under `path`.
    pub(crate) fn problems(&self, path: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        let show = |d: Duration| humantime::format_duration(d).to_string();
        if self.lease_duration < LEASE_DURATION_MIN
            || self.lease_duration > LEASE_DURATION_MAX
            || self.lease_duration.subsec_nanos() != 0
        {
            out.push(Problem::new(
                format!("{path}.lease_duration"),
                format!(
                    "must be whole seconds from 2s to 5m (got {}); the Lease stores whole seconds",
                    show(self.lease_duration)
                ),
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            out.push(Problem::new(
                format!("{path}.renew_deadline"),
                format!(
                    "must be shorter than lease_duration ({} >= {}): a leader must stop \
                     allocating before the others may take its Lease over",
                    show(self.renew_deadline),
                    show(self.lease_duration)
                ),
            ));
        }
        if self.retry_period < RETRY_PERIOD_MIN {
            out.push(Problem::new(
                format!("{path}.retry_period"),
                format!(
                    "must be at least 100ms (got {}); every pod calls the API server once per period",
                    show(self.retry_period)
                ),
            ));
        }
        if self.retry_period >= self.renew_deadline {
            out.push(Problem::new(
                format!("{path}.retry_period"),
                format!(
                    "must be shorter than renew_deadline ({} >= {}): a leader needs more than \
                     one try to renew before it steps down",
                    show(self.retry_period),
                    show(self.renew_deadline)
                ),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn problems(yaml: &str) -> Vec<String> {
        match Config::from_yaml(&format!("asn: 65001\n{yaml}")) {
            Ok(_) => Vec::new(),
            Err(crate::config::ConfigError::Invalid { problems }) => {
                problems.iter().map(|p| p.to_string()).collect()
            }
            Err(other) => vec![other.to_string()],
        }
    }

    #[test]
    fn defaults_are_client_gos() {
        let config = Config::from_yaml("asn: 65001\n").unwrap();
        let le = &config.allocation.leader_election;
        assert!(!config.allocation.enabled);
        assert_eq!(le.lease_duration, Duration::from_secs(15));
        assert_eq!(le.renew_deadline, Duration::from_secs(10));
        assert_eq!(le.retry_period, Duration::from_secs(2));
        assert!(le.problems("x").is_empty());
    }

    #[test]
    fn lease_namespace_falls_back_to_the_pod_then_herald_system() {
        let mut allocation = AllocationConfig::default();
        assert_eq!(allocation.lease_namespace(None), "herald-system");
        assert_eq!(allocation.lease_namespace(Some("")), "herald-system");
        assert_eq!(allocation.lease_namespace(Some("lb")), "lb");
        allocation.lease_namespace = Some("net".to_string());
        assert_eq!(allocation.lease_namespace(Some("lb")), "net");
    }

    #[test]
    fn each_rule_names_its_field() {
        let table: &[(&str, &[&str])] = &[
            (
                "allocation: {leader_election: {lease_duration: 10s, renew_deadline: 10s}}",
                &["allocation.leader_election.renew_deadline: must be shorter than lease_duration"],
            ),
            (
                "allocation: {leader_election: {renew_deadline: 2s}}",
                &["allocation.leader_election.retry_period: must be shorter than renew_deadline"],
            ),
            (
                "allocation: {leader_election: {lease_duration: 1500ms, renew_deadline: 1s, retry_period: 200ms}}",
                &["allocation.leader_election.lease_duration: must be whole seconds"],
            ),
            (
                "allocation: {leader_election: {lease_duration: 1h}}",
                &["allocation.leader_election.lease_duration: must be whole seconds from 2s to 5m"],
            ),
            (
                "allocation: {leader_election: {retry_period: 10ms}}",
                &["allocation.leader_election.retry_period: must be at least 100ms"],
            ),
            (
                "allocation: {lease_namespace: Herald_System}",
                &["allocation.lease_namespace: \"Herald_System\" is not a namespace name"],
            ),
            (
                "allocation: {enabled: true, lease_namespace: lb, leader_election: {lease_duration: 4s, renew_deadline: 3s, retry_period: 500ms}}",
                &[],
            ),
        ];
        for (yaml, expected) in table {
            let got = problems(yaml);
            assert_eq!(got.len(), expected.len(), "{yaml}: {got:?}");
            for (got, want) in got.iter().zip(expected.iter()) {
                assert!(
                    got.starts_with(want),
                    "{yaml}: {got:?} does not start with {want:?}"
                );
            }
        }
    }

    #[test]
    fn unknown_fields_are_refused_with_their_path() {
        let error = Config::from_yaml("asn: 65001\nallocation: {leader_election: {lease: 3s}}\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("allocation.leader_election"), "{error}");
    }
}
