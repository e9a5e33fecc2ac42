//! `allocation.leader_election`: the timing of the `coordination.k8s.io/v1`
//! Lease by which the herald pods choose the one allocator of a cluster.
//!
//! Owns: the timing fields' shape, defaults and validation. Must not touch: anything at run time; the elector
//! (`source::kube::lease`) applies them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Problem, duration};

/// The shortest lease accepted: the API server stores whole seconds.
pub const LEASE_DURATION_MIN: Duration = Duration::from_secs(2);
/// The longest lease accepted: after a leader dies without releasing, no
/// Service gets an address for up to this long.
pub const LEASE_DURATION_MAX: Duration = Duration::from_secs(300);
/// The shortest retry period accepted (each retry is an API call per pod).
pub const RETRY_PERIOD_MIN: Duration = Duration::from_millis(100);

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
                "allocation: {lease_namespace: lb, leader_election: {lease_duration: 4s, renew_deadline: 3s, retry_period: 500ms}}",
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
