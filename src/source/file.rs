//! The standalone source (`--services FILE`): the services file's
//! addresses, within the configured pools, while their health checks pass.
//!
//! ```text
//!  set_services / set_pools ──> FileSource task ──> watch<Arc<Desired>>
//!                                 ^      |
//!          CheckReport (one task  |      └─ desired(): pure
//!          per checked service) ──┘
//! ```
//!
//! Owns: the rules for the file's addresses ([`desired`], pure): an address
//! outside every pool is never announced (the pools are the security
//! boundary: a file may only name addresses the operator handed out); a
//! service whose check fails is withdrawn; attributes are the pool's
//! communities plus the service's, with its MED and LOCAL_PREF. And the task
//! that keeps the checks running and publishes the result. Must not touch:
//! the interface or BGP.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::health::{self, CheckLabels, CheckReport, HealthState};
use super::{Candidate, Desired};
use crate::config::PoolConfig;
use crate::model::{Announcement, RouteAttributes};
use crate::services::ServicesFile;

/// The desired set of `services` under `pools` with the health verdicts so
/// far. Until every check has its first result, nothing is announced
/// (`announcements` is `None`: announcing before would send End-of-RIB with
/// services missing that are healthy) and the candidates carry no refusal.
pub fn desired(
    pools: &[PoolConfig],
    services: &ServicesFile,
    health: &BTreeMap<String, HealthState>,
) -> Desired {
    let mut announcements = BTreeSet::new();
    let mut candidates = Vec::new();
    let mut complete = true;
    for service in &services.services {
        let verdict = match &service.check {
            None => Ok(()),
            Some(_) => match health.get(&service.name).and_then(HealthState::healthy) {
                None => {
                    complete = false;
                    Ok(())
                }
                Some(true) => Ok(()),
                Some(false) => Err(format!(
                    "health check failing: {}",
                    health
                        .get(&service.name)
                        .and_then(HealthState::last_failure)
                        .unwrap_or("failed")
                )),
            },
        };
        for address in &service.addresses {
            let pool = PoolConfig::find(pools, *address);
            let refusal = match (pool, &verdict) {
                (None, _) => Some("outside every configured pool".to_string()),
                (Some(_), Err(why)) => Some(why.clone()),
                (Some(pool), Ok(())) => {
                    let mut attributes = RouteAttributes {
                        med: service.med,
                        local_pref: service.local_pref,
                        ..RouteAttributes::default()
                    };
                    for community in pool.communities.iter().chain(&service.communities) {
                        attributes.add_community(*community);
                    }
                    announcements.insert(Announcement {
                        address: *address,
                        attributes,
                    });
                    None
                }
            };
            candidates.push(Candidate {
                address: *address,
                service: service.name.clone(),
                pool: pool.map(|p| p.name.clone()),
                refusal,
            });
        }
    }
    if !complete {
        for candidate in &mut candidates {
            candidate.refusal = None;
        }
    }
    Desired {
        announcements: complete.then_some(announcements),
        candidates,
        node_excluded: false,
    }
}

/// The running standalone source; its task and checks stop when it is
/// dropped.
pub struct FileSource {
    desired: watch::Receiver<Arc<Desired>>,
    inputs: mpsc::UnboundedSender<Input>,
    task: JoinHandle<()>,
}

enum Input {
    Services(ServicesFile),
    Pools(Vec<PoolConfig>),
}

impl Drop for FileSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FileSource {
    /// Starts a check per checked service and publishes the desired set
    /// (at once, and again whenever it changes). `checks` counts the runs.
    pub fn spawn(
        services: ServicesFile,
        pools: Vec<PoolConfig>,
        checks: Family<CheckLabels, Counter>,
    ) -> FileSource {
        let (reports, report_rx) = mpsc::unbounded_channel();
        let mut runner = Runner {
            services: ServicesFile { services: vec![] },
            pools,
            health: BTreeMap::new(),
            checks: Checks::default(),
            reports,
            metric: checks,
            desired: watch::channel(Arc::default()).0,
        };
        runner.set_services(services);
        let desired = runner.desired.subscribe();
        let (inputs, input_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(runner.run(input_rx, report_rx));
        FileSource {
            desired,
            inputs,
            task,
        }
    }

    pub fn desired(&self) -> watch::Receiver<Arc<Desired>> {
        self.desired.clone()
    }

    /// A reloaded services file: checks whose settings did not change keep
    /// running and keep their verdict; the others start again.
    pub fn set_services(&self, services: ServicesFile) {
        let _ = self.inputs.send(Input::Services(services));
    }

    /// Reloaded pools.
    pub fn set_pools(&self, pools: Vec<PoolConfig>) {
        let _ = self.inputs.send(Input::Pools(pools));
    }

    /// Stops the task and every check; the last desired set stays readable.
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// The check task of each service that has one, aborted when dropped.
#[derive(Default)]
struct Checks(BTreeMap<String, JoinHandle<()>>);

impl Drop for Checks {
    fn drop(&mut self) {
        for task in self.0.values() {
            task.abort();
        }
    }
}

/// The source task's state.
struct Runner {
    services: ServicesFile,
    pools: Vec<PoolConfig>,
    health: BTreeMap<String, HealthState>,
    checks: Checks,
    /// Where check tasks report (kept for checks a reload starts).
    reports: mpsc::UnboundedSender<CheckReport>,
    metric: Family<CheckLabels, Counter>,
    desired: watch::Sender<Arc<Desired>>,
}

impl Runner {
    async fn run(
        mut self,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        mut reports: mpsc::UnboundedReceiver<CheckReport>,
    ) {
        loop {
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(Input::Services(services)) => self.set_services(services),
                    Some(Input::Pools(pools)) => {
                        self.pools = pools;
                        self.publish();
                    }
                    None => return,
                },
                Some(report) = reports.recv() => self.report(report),
            }
        }
    }

    fn report(&mut self, report: CheckReport) {
        health::count(&self.metric, &report);
        let Some(state) = self.health.get_mut(&report.service) else {
            return; // a check the last reload removed
        };
        if let Some(healthy) = state.record(&report.result) {
            tracing::info!(service = %report.service, healthy, "health check verdict changed ({:?})", report.result);
            self.publish();
        } else if self.desired.borrow().announcements.is_none() {
            self.publish();
        }
    }

    /// Takes `file`, keeping the checks (and verdicts) whose settings did not
    /// change, and publishes.
    fn set_services(&mut self, file: ServicesFile) {
        let old: BTreeMap<&str, _> = self
            .services
            .services
            .iter()
            .map(|s| (s.name.as_str(), &s.check))
            .collect();
        let mut health = BTreeMap::new();
        let mut checks = Checks::default();
        for service in &file.services {
            let Some(check) = &service.check else {
                continue;
            };
            let unchanged = old.get(service.name.as_str()) == Some(&&Some(check.clone()));
            let kept = (
                self.health.remove(&service.name),
                self.checks.0.remove(&service.name),
            );
            let (state, task) = match kept {
                (Some(state), Some(task)) if unchanged => (state, task),
                (_, old_task) => {
                    if let Some(task) = old_task {
                        task.abort();
                    }
                    (
                        HealthState::new(check.rise, check.fall),
                        health::spawn_check(
                            service.name.clone(),
                            check.clone(),
                            self.reports.clone(),
                        ),
                    )
                }
            };
            health.insert(service.name.clone(), state);
            checks.0.insert(service.name.clone(), task);
        }
        // Checks of services that are gone stop here (`Checks::drop`).
        self.checks = checks;
        self.health = health;
        self.services = file;
        self.publish();
    }

    fn publish(&self) {
        let next = desired(&self.pools, &self.services, &self.health);
        self.desired.send_if_modified(|current| {
            let changed = **current != next;
            if changed {
                *current = Arc::new(next);
            }
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::Community;
    use crate::source::health::RunResult;

    fn pools() -> Vec<PoolConfig> {
        Config::from_yaml(
            "asn: 64601\npools:\n  - name: public\n    cidrs: [203.0.113.0/24]\n    communities: [\"65000:100\"]\n",
        )
        .unwrap()
        .pools
    }

    fn services(check: bool) -> ServicesFile {
        let check = if check {
            "    check: {command: [\"true\"]}\n"
        } else {
            ""
        };
        ServicesFile::from_yaml(&format!(
            "services:\n  - name: web\n    addresses: [203.0.113.10, 198.51.100.7]\n    communities: [\"65000:200\"]\n    med: 5\n{check}"
        ))
        .unwrap()
    }

    #[test]
    fn an_address_in_a_pool_carries_the_pool_and_service_communities() {
        let out = desired(&pools(), &services(false), &BTreeMap::new());
        let a = out.announcements.unwrap().into_iter().next().unwrap();
        assert_eq!(a.address.to_string(), "203.0.113.10");
        assert_eq!(
            a.attributes.communities,
            BTreeSet::from([Community::new(65000, 100), Community::new(65000, 200)])
        );
        assert_eq!(a.attributes.med, Some(5));
    }

    #[test]
    fn an_address_outside_every_pool_is_refused_with_the_reason() {
        let out = desired(&pools(), &services(false), &BTreeMap::new());
        assert_eq!(out.announcements.unwrap().len(), 1);
        let refused = &out.candidates[1];
        assert_eq!(refused.address.to_string(), "198.51.100.7");
        assert_eq!(
            refused.refusal.as_deref(),
            Some("outside every configured pool")
        );
        assert_eq!(refused.pool, None);
    }

    #[test]
    fn nothing_is_desired_until_every_check_has_a_first_result() {
        let out = desired(&pools(), &services(true), &BTreeMap::new());
        assert_eq!(out.announcements, None);
        assert_eq!(out.candidates.len(), 2, "the addresses are listed, waiting");
        assert!(out.candidates.iter().all(|c| c.refusal.is_none()));
    }

    #[test]
    fn a_failing_check_withdraws_the_service_and_says_why() {
        let mut health = BTreeMap::new();
        let mut state = HealthState::new(2, 2);
        state.record(&RunResult::Failed("exit status: 1".to_string()));
        health.insert("web".to_string(), state);
        let out = desired(&pools(), &services(true), &health);
        assert_eq!(out.announcements, Some(BTreeSet::new()));
        assert_eq!(
            out.candidates[0].refusal.as_deref(),
            Some("health check failing: exit status: 1")
        );
    }

    #[test]
    fn a_passing_check_announces_the_service() {
        let mut health = BTreeMap::new();
        let mut state = HealthState::new(2, 2);
        state.record(&RunResult::Passed);
        health.insert("web".to_string(), state);
        let out = desired(&pools(), &services(true), &health);
        assert_eq!(out.announcements.map(|a| a.len()), Some(1));
    }

    #[tokio::test]
    async fn the_task_publishes_once_the_first_checks_report_and_follows_reloads() {
        let source = FileSource::spawn(services(true), pools(), Family::default());
        let mut desired = source.desired();
        let first = desired
            .wait_for(|d| d.announcements.is_some())
            .await
            .unwrap()
            .clone();
        assert_eq!(first.announcements.as_ref().map(BTreeSet::len), Some(1));
        // A reload that drops the check announces at once, from the file.
        source.set_services(services(false));
        source.set_pools(Vec::new());
        let reloaded = desired
            .wait_for(|d| d.announcements.as_ref().is_some_and(BTreeSet::is_empty))
            .await
            .unwrap()
            .clone();
        assert_eq!(
            reloaded.candidates[0].refusal.as_deref(),
            Some("outside every configured pool")
        );
    }
}
