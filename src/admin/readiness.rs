//! `Readiness`: named conditions that subsystems register and keep current;
//! `/readyz` is 200 while every one holds and 503 listing those that do not.
//!
//! A condition starts not ready ("not reported yet"), so a subsystem that
//! registers and never reports keeps the agent unready, which is the safe
//! way round.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The set of readiness conditions. Cloning shares the same set.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    conditions: Arc<Mutex<BTreeMap<String, Condition>>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Condition {
    ready: bool,
    detail: String,
}

/// A subsystem's handle on its own condition.
#[derive(Clone, Debug)]
pub struct ReadinessCondition {
    name: String,
    readiness: Readiness,
}

/// The verdict of `/readyz`: every condition by name, split into those that
/// hold and those that fail (with their details).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadinessReport {
    pub ready: Vec<String>,
    pub failing: Vec<(String, String)>,
}

impl ReadinessReport {
    pub fn is_ready(&self) -> bool {
        self.failing.is_empty()
    }
}

impl Readiness {
    pub fn new() -> Self {
        Readiness::default()
    }

    /// Registers a condition (not ready until set) and returns its handle.
    /// Registering an existing name returns a handle on the same condition.
    pub fn register(&self, name: &str) -> ReadinessCondition {
        self.lock()
            .entry(name.to_string())
            .or_insert_with(|| Condition {
                ready: false,
                detail: "not reported yet".to_string(),
            });
        ReadinessCondition {
            name: name.to_string(),
            readiness: self.clone(),
        }
    }

    /// Every condition, sorted by name.
    pub fn report(&self) -> ReadinessReport {
        let mut report = ReadinessReport {
            ready: Vec::new(),
            failing: Vec::new(),
        };
        for (name, condition) in self.lock().iter() {
            if condition.ready {
                report.ready.push(name.clone());
            } else {
                report
                    .failing
                    .push((name.clone(), condition.detail.clone()));
            }
        }
        report
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Condition>> {
        self.conditions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl ReadinessCondition {
    /// The condition holds.
    pub fn set_ready(&self) {
        self.set(true, String::new());
    }

    /// The condition fails, for this reason (shown by /readyz).
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        self.set(false, reason.into());
    }

    fn set(&self, ready: bool, detail: String) {
        if let Some(condition) = self.readiness.lock().get_mut(&self.name) {
            *condition = Condition { ready, detail };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_conditions_means_ready() {
        assert!(Readiness::new().report().is_ready());
    }

    #[test]
    fn a_registered_condition_is_not_ready_until_it_reports() {
        let readiness = Readiness::new();
        let kube = readiness.register("kubernetes");
        let report = readiness.report();
        assert_eq!(
            report.failing,
            vec![("kubernetes".to_string(), "not reported yet".to_string())]
        );
        kube.set_ready();
        assert!(readiness.report().is_ready());
        assert_eq!(readiness.report().ready, vec!["kubernetes".to_string()]);
    }

    #[test]
    fn only_failing_conditions_are_listed_as_failing() {
        let readiness = Readiness::new();
        let a = readiness.register("bgp");
        let b = readiness.register("kubernetes");
        a.set_ready();
        b.set_not_ready("watch failed 30s ago");
        let report = readiness.report();
        assert!(!report.is_ready());
        assert_eq!(report.ready, vec!["bgp".to_string()]);
        assert_eq!(
            report.failing,
            vec![("kubernetes".to_string(), "watch failed 30s ago".to_string())]
        );
        // A second registration shares the condition.
        readiness.register("kubernetes").set_ready();
        assert!(readiness.report().is_ready());
    }
}
