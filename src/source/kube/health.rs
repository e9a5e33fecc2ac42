//! Static stability bookkeeping: how fresh each watch is, whether it has ever
//! completed a list, what went wrong last, and whether the API server
//! answers at all. Data for `/readyz`, `/status` and the metrics.
//!
//! Why a separate probe of the API server: a watch on a frozen or
//! partitioned API server (TCP open, nothing answering) fails nothing and
//! yields nothing until the client's read timeout, about five minutes
//! later; the watches alone would call the source healthy all that time.
//!
//! Owns: the per-watch state machine fed by watcher events and errors. Pure:
//! the caller passes the current time. Must not touch: the stores or the
//! desired set (keeping the last desired set is the source's job; this only
//! reports).

use std::time::{Duration, Instant};

use serde::Serialize;

/// The three watches herald runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Services,
    EndpointSlices,
    Node,
    /// Namespaces, for the pools' `namespace_selector`.
    Namespaces,
}

impl Resource {
    pub const ALL: [Resource; 4] = [
        Resource::Services,
        Resource::EndpointSlices,
        Resource::Node,
        Resource::Namespaces,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Services => "services",
            Resource::EndpointSlices => "endpointslices",
            Resource::Node => "node",
            Resource::Namespaces => "namespaces",
        }
    }

    fn index(self) -> usize {
        match self {
            Resource::Services => 0,
            Resource::EndpointSlices => 1,
            Resource::Node => 2,
            Resource::Namespaces => 3,
        }
    }
}

/// What a watch stream yielded, reduced to what health needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchSignal {
    /// A relist started (`Event::Init`).
    ListStarted,
    /// An object arrived during a relist (`Event::InitApply`).
    Listed,
    /// The relist completed (`Event::InitDone`): the store is whole again.
    ListDone,
    /// A live change (`Event::Apply` / `Event::Delete`).
    Changed,
    /// The watch or list failed; the watcher backs off and retries.
    Failed,
    /// The API server answered a list or watch request with success (seen
    /// by the client middleware; a re-established watch yields no event).
    Answered,
}

/// One watch's state.
#[derive(Clone, Debug, Default)]
pub struct WatchHealth {
    synced: bool,
    relisting: bool,
    last_success: Option<Instant>,
    failing_since: Option<Instant>,
    last_error: Option<String>,
    errors: u64,
    relists: u64,
}

impl WatchHealth {
    /// Applies one signal; `error` is the text of a failure.
    pub fn observe(&mut self, signal: WatchSignal, error: Option<&str>, now: Instant) {
        match signal {
            WatchSignal::Failed => {
                self.errors += 1;
                self.failing_since.get_or_insert(now);
                self.last_error = error.map(str::to_string);
                return;
            }
            WatchSignal::ListStarted => {
                self.relisting = true;
            }
            WatchSignal::ListDone => {
                self.relisting = false;
                self.synced = true;
                self.relists += 1;
            }
            WatchSignal::Listed | WatchSignal::Changed | WatchSignal::Answered => {}
        }
        self.last_success = Some(now);
        self.failing_since = None;
    }

    /// At least one complete list has been stored.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Synced, not in the middle of a relist, and no failure since the last
    /// success.
    pub fn healthy(&self) -> bool {
        self.synced && !self.relisting && self.failing_since.is_none()
    }

    pub fn errors(&self) -> u64 {
        self.errors
    }

    pub fn report(&self, resource: Resource, now: Instant) -> WatchReport {
        WatchReport {
            resource,
            synced: self.synced,
            relisting: self.relisting,
            healthy: self.healthy(),
            seconds_since_success: self
                .last_success
                .map(|t| now.saturating_duration_since(t).as_secs_f64()),
            failing_for_seconds: self
                .failing_since
                .map(|t| now.saturating_duration_since(t).as_secs_f64()),
            last_error: self.last_error.clone(),
            errors: self.errors,
            relists: self.relists,
        }
    }
}

/// One watch, as `/status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WatchReport {
    pub resource: Resource,
    pub synced: bool,
    pub relisting: bool,
    pub healthy: bool,
    pub seconds_since_success: Option<f64>,
    pub failing_for_seconds: Option<f64>,
    pub last_error: Option<String>,
    pub errors: u64,
    pub relists: u64,
}

/// The whole Kubernetes source, as `/readyz` and `/status` show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourceReport {
    /// Every watch has listed once and none is failing.
    pub ready: bool,
    /// A desired set has been produced at least once.
    pub synced: bool,
    /// How long the announced state may lag the cluster: the time since the
    /// oldest ongoing failure began (0 when healthy, absent before the first
    /// sync).
    pub stale_for_seconds: Option<f64>,
    /// Seconds since the last desired set was handed to the agent.
    pub seconds_since_desired: Option<f64>,
    pub watches: Vec<WatchReport>,
    /// How long the API server has not answered herald's probe (its
    /// `/readyz`), and why; absent while it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_unanswered_for_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_error: Option<String>,
}

impl SourceReport {
    /// One line for `/readyz` bodies and logs.
    pub fn summary(&self) -> String {
        if self.ready {
            return "kubernetes: watches healthy".to_string();
        }
        let failing: Vec<String> = self
            .watches
            .iter()
            .filter(|w| !w.healthy)
            .map(|w| match (&w.last_error, w.synced) {
                (Some(error), _) if w.failing_for_seconds.is_some() => format!(
                    "{} failing for {:.0}s ({error})",
                    w.resource.as_str(),
                    w.failing_for_seconds.unwrap_or_default()
                ),
                (_, false) => format!("{} not listed yet", w.resource.as_str()),
                _ => format!("{} relisting", w.resource.as_str()),
            })
            .collect();
        let mut failing = failing;
        if let Some(seconds) = self.api_unanswered_for_seconds {
            failing.insert(
                0,
                format!(
                    "the API server has not answered for {seconds:.0}s ({})",
                    self.api_error.as_deref().unwrap_or("no answer")
                ),
            );
        }
        let keeping = if self.synced {
            "; announcing the last known desired set"
        } else {
            ""
        };
        format!("kubernetes: {}{keeping}", failing.join(", "))
    }
}

/// Health of the three watches, of the API server itself (the probe), and
/// when the last desired set went out.
#[derive(Clone, Debug, Default)]
pub struct SourceHealth {
    watches: [WatchHealth; 4],
    last_desired: Option<Instant>,
    /// When the probe that began the current run of unanswered probes
    /// started, and the last reason.
    api_failing_since: Option<Instant>,
    api_error: Option<String>,
}

impl SourceHealth {
    pub fn observe(
        &mut self,
        resource: Resource,
        signal: WatchSignal,
        error: Option<&str>,
        now: Instant,
    ) {
        self.watches[resource.index()].observe(signal, error, now);
    }

    /// The outcome of one probe of the API server, started at `started`:
    /// `Err` when it did not answer (a timeout, a refused connection, a
    /// 5xx from `/readyz`).
    pub fn probed(&mut self, outcome: Result<(), String>, started: Instant) {
        match outcome {
            Ok(()) => {
                self.api_failing_since = None;
                self.api_error = None;
            }
            Err(error) => {
                self.api_failing_since.get_or_insert(started);
                self.api_error = Some(error);
            }
        }
    }

    /// Whether the API server failed the last probe.
    pub fn api_unanswered(&self) -> bool {
        self.api_failing_since.is_some()
    }

    pub fn desired_sent(&mut self, now: Instant) {
        self.last_desired = Some(now);
    }

    pub fn watch(&self, resource: Resource) -> &WatchHealth {
        &self.watches[resource.index()]
    }

    /// Every watch has completed a list: the stores are complete.
    pub fn all_synced(&self) -> bool {
        self.watches.iter().all(WatchHealth::synced)
    }

    pub fn report(&self, now: Instant) -> SourceReport {
        let watches: Vec<WatchReport> = Resource::ALL
            .iter()
            .map(|r| self.watches[r.index()].report(*r, now))
            .collect();
        let stale_for = if self.last_desired.is_none() {
            None
        } else {
            let oldest = self
                .watches
                .iter()
                .filter_map(|w| w.failing_since)
                .chain(self.api_failing_since)
                .min();
            Some(oldest.map_or(Duration::ZERO, |t| now.saturating_duration_since(t)))
        };
        SourceReport {
            ready: self.watches.iter().all(WatchHealth::healthy) && !self.api_unanswered(),
            api_unanswered_for_seconds: self
                .api_failing_since
                .map(|t| now.saturating_duration_since(t).as_secs_f64()),
            api_error: self.api_error.clone(),
            synced: self.last_desired.is_some(),
            stale_for_seconds: stale_for.map(|d| d.as_secs_f64()),
            seconds_since_desired: self
                .last_desired
                .map(|t| now.saturating_duration_since(t).as_secs_f64()),
            watches,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(health: &mut SourceHealth, at: Instant) {
        for r in Resource::ALL {
            health.observe(r, WatchSignal::ListStarted, None, at);
            health.observe(r, WatchSignal::ListDone, None, at);
        }
        health.desired_sent(at);
    }

    #[test]
    fn a_new_source_is_neither_ready_nor_synced() {
        let now = Instant::now();
        let report = SourceHealth::default().report(now);
        assert!(!report.ready && !report.synced);
        assert_eq!(report.stale_for_seconds, None);
        assert!(
            report.summary().contains("services not listed yet"),
            "{}",
            report.summary()
        );
    }

    #[test]
    fn complete_lists_make_the_source_ready() {
        let t0 = Instant::now();
        let mut health = SourceHealth::default();
        listed(&mut health, t0);
        let report = health.report(t0 + Duration::from_secs(3));
        assert!(report.ready && report.synced);
        assert_eq!(report.stale_for_seconds, Some(0.0));
        assert_eq!(report.seconds_since_desired, Some(3.0));
        assert_eq!(report.summary(), "kubernetes: watches healthy");
    }

    #[test]
    fn staleness_counts_from_the_first_failure_until_a_success() {
        let t0 = Instant::now();
        let mut health = SourceHealth::default();
        listed(&mut health, t0);
        let t1 = t0 + Duration::from_secs(10);
        health.observe(
            Resource::Services,
            WatchSignal::Failed,
            Some("connection refused"),
            t1,
        );
        health.observe(
            Resource::Services,
            WatchSignal::Failed,
            Some("connection refused"),
            t1 + Duration::from_secs(5),
        );
        let report = health.report(t1 + Duration::from_secs(30));
        assert!(!report.ready);
        assert_eq!(report.stale_for_seconds, Some(30.0));
        let services = &report.watches[0];
        assert_eq!(services.errors, 2);
        assert_eq!(services.failing_for_seconds, Some(30.0));
        assert!(
            report
                .summary()
                .contains("services failing for 30s (connection refused)")
                && report.summary().contains("last known desired set"),
            "{}",
            report.summary()
        );
        // The watcher relists after the outage: healthy again only at ListDone.
        let t2 = t1 + Duration::from_secs(31);
        health.observe(Resource::Services, WatchSignal::ListStarted, None, t2);
        assert!(
            !health.report(t2).ready,
            "a relist in progress is not ready"
        );
        health.observe(Resource::Services, WatchSignal::ListDone, None, t2);
        let report = health.report(t2);
        assert!(report.ready);
        assert_eq!(report.stale_for_seconds, Some(0.0));
        assert_eq!(report.watches[0].relists, 2);
    }

    #[test]
    fn a_watch_answered_again_after_a_failure_is_healthy_without_a_relist() {
        // kube's watcher yields nothing when it re-establishes a quiet watch;
        // the client middleware reports the successful answer instead.
        let t0 = Instant::now();
        let mut health = SourceHealth::default();
        listed(&mut health, t0);
        health.observe(Resource::Node, WatchSignal::Failed, Some("connect"), t0);
        assert!(!health.report(t0).ready);
        health.observe(
            Resource::Node,
            WatchSignal::Answered,
            None,
            t0 + Duration::from_secs(5),
        );
        let report = health.report(t0 + Duration::from_secs(6));
        assert!(report.ready, "{report:?}");
        assert_eq!(report.watches[2].relists, 1);
        assert_eq!(report.watches[2].seconds_since_success, Some(1.0));
    }

    #[test]
    fn an_answer_before_the_first_list_does_not_make_a_watch_synced() {
        let now = Instant::now();
        let mut health = SourceHealth::default();
        health.observe(Resource::Services, WatchSignal::Answered, None, now);
        assert!(!health.watch(Resource::Services).synced());
        assert!(!health.report(now).ready);
    }

    #[test]
    fn an_api_server_that_does_not_answer_makes_the_source_stale_and_not_ready() {
        // A frozen API server: every watch still looks healthy.
        let t0 = Instant::now();
        let mut health = SourceHealth::default();
        listed(&mut health, t0);
        let t1 = t0 + Duration::from_secs(10);
        health.probed(Err("no answer within 5s".to_string()), t1);
        health.probed(
            Err("no answer within 5s".to_string()),
            t1 + Duration::from_secs(10),
        );
        let report = health.report(t1 + Duration::from_secs(20));
        assert!(!report.ready, "{report:?}");
        assert_eq!(report.stale_for_seconds, Some(20.0));
        assert_eq!(report.api_unanswered_for_seconds, Some(20.0));
        assert!(
            report
                .summary()
                .contains("the API server has not answered for 20s (no answer within 5s)"),
            "{}",
            report.summary()
        );
        health.probed(Ok(()), t1 + Duration::from_secs(25));
        let report = health.report(t1 + Duration::from_secs(26));
        assert!(report.ready, "{report:?}");
        assert_eq!(report.stale_for_seconds, Some(0.0));
        assert_eq!(report.api_unanswered_for_seconds, None);
    }

    #[test]
    fn the_oldest_failure_sets_the_staleness() {
        let t0 = Instant::now();
        let mut health = SourceHealth::default();
        listed(&mut health, t0);
        health.observe(
            Resource::Node,
            WatchSignal::Failed,
            Some("500"),
            t0 + Duration::from_secs(1),
        );
        health.observe(
            Resource::Services,
            WatchSignal::Failed,
            Some("500"),
            t0 + Duration::from_secs(4),
        );
        let report = health.report(t0 + Duration::from_secs(11));
        assert_eq!(report.stale_for_seconds, Some(10.0));
    }
}
