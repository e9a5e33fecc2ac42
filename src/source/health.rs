//! Health checks of the standalone services file: a command run every
//! `interval`, `rise` successes in a row make the service healthy, `fall`
//! failures in a row make it unhealthy.
//!
//! Owns: the rise/fall counting ([`HealthState`], pure), one runner task
//! per checked service ([`spawn_check`]) that runs the command with a
//! timeout, kills it when the timeout passes, and reports each run to the
//! file source, and the labels of the run counter ([`CheckLabels`]). Must
//! not touch: what a verdict means for announcements ([`super::file`]
//! decides).
//!
//! The first result decides at once (a service with a passing check is
//! announced after one run, a restarted agent does not withdraw a healthy
//! service while it counts to `rise`); from then on `rise` and `fall` apply.

use std::process::Stdio;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::services::HealthCheckConfig;

/// The verdict of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunResult {
    Passed,
    /// Exited with a failure status, or could not start.
    Failed(String),
    /// Still running at the timeout: killed.
    TimedOut,
}

impl RunResult {
    fn passed(&self) -> bool {
        matches!(self, RunResult::Passed)
    }
}

/// Rise/fall state of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthState {
    rise: u32,
    fall: u32,
    /// `None` until the first result.
    healthy: Option<bool>,
    /// Results in a row that disagree with `healthy`.
    streak: u32,
    last_failure: Option<String>,
}

impl HealthState {
    pub fn new(rise: u32, fall: u32) -> Self {
        HealthState {
            rise: rise.max(1),
            fall: fall.max(1),
            healthy: None,
            streak: 0,
            last_failure: None,
        }
    }

    /// `None` before the first result.
    pub fn healthy(&self) -> Option<bool> {
        self.healthy
    }

    /// Why the last run failed, while unhealthy.
    pub fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }

    /// Records one result; returns the new verdict when it changed.
    pub fn record(&mut self, result: &RunResult) -> Option<bool> {
        let passed = result.passed();
        if !passed {
            self.last_failure = Some(match result {
                RunResult::Failed(why) => why.clone(),
                RunResult::TimedOut => "timed out (killed)".to_string(),
                RunResult::Passed => unreachable!("checked above"),
            });
        }
        match self.healthy {
            None => {
                self.healthy = Some(passed);
                self.streak = 0;
                Some(passed)
            }
            Some(current) if current == passed => {
                self.streak = 0;
                None
            }
            Some(_) => {
                self.streak += 1;
                let needed = if passed { self.rise } else { self.fall };
                if self.streak >= needed {
                    self.healthy = Some(passed);
                    self.streak = 0;
                    Some(passed)
                } else {
                    None
                }
            }
        }
    }
}

/// Runs `command` once: passed on exit status 0, failed otherwise, killed
/// (and `TimedOut`) if still running after `timeout`.
pub async fn run_once(command: &[String], timeout: Duration) -> RunResult {
    let Some((program, args)) = command.split_first() else {
        return RunResult::Failed("no command".to_string());
    };
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => return RunResult::Failed(format!("cannot run {program}: {error}")),
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => RunResult::Passed,
        Ok(Ok(status)) => RunResult::Failed(format!("{program} {status}")),
        Ok(Err(error)) => RunResult::Failed(format!("waiting for {program}: {error}")),
        Err(_) => {
            // SIGKILL, then reap it so no zombie stays behind.
            let _ = child.kill().await;
            RunResult::TimedOut
        }
    }
}

/// The labels of `herald_agent_health_checks_total` (registered with the
/// agent's metrics; the name predates the sources layer and is kept).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub service: String,
    /// `passed`, `failed` or `timed_out`.
    pub result: String,
}

/// Counts one run in `metric`.
pub fn count(metric: &Family<CheckLabels, Counter>, report: &CheckReport) {
    let result = match report.result {
        RunResult::Passed => "passed",
        RunResult::Failed(_) => "failed",
        RunResult::TimedOut => "timed_out",
    };
    metric
        .get_or_create(&CheckLabels {
            service: report.service.clone(),
            result: result.to_string(),
        })
        .inc();
}

/// One run's result, for the file source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    pub service: String,
    pub result: RunResult,
}

/// Runs the check of `service` every `interval` until the task is aborted
/// or the receiver is gone.
pub fn spawn_check(
    service: String,
    check: HealthCheckConfig,
    reports: mpsc::UnboundedSender<CheckReport>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(check.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let result = run_once(&check.command, check.timeout).await;
            let report = CheckReport {
                service: service.clone(),
                result,
            };
            if reports.send(report).is_err() {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail() -> RunResult {
        RunResult::Failed("exit status: 1".to_string())
    }

    #[test]
    fn the_first_result_decides_at_once() {
        let mut up = HealthState::new(3, 3);
        assert_eq!(up.record(&RunResult::Passed), Some(true));
        let mut down = HealthState::new(3, 3);
        assert_eq!(down.record(&fail()), Some(false));
        assert_eq!(down.last_failure(), Some("exit status: 1"));
    }

    #[test]
    fn fall_failures_in_a_row_make_a_healthy_service_unhealthy() {
        let mut state = HealthState::new(2, 3);
        state.record(&RunResult::Passed);
        assert_eq!(state.record(&fail()), None);
        assert_eq!(state.record(&RunResult::TimedOut), None);
        assert_eq!(state.record(&fail()), Some(false));
        assert_eq!(state.healthy(), Some(false));
    }

    #[test]
    fn a_success_between_failures_restarts_the_fall_count() {
        let mut state = HealthState::new(2, 2);
        state.record(&RunResult::Passed);
        assert_eq!(state.record(&fail()), None);
        assert_eq!(state.record(&RunResult::Passed), None);
        assert_eq!(state.record(&fail()), None);
        assert_eq!(state.healthy(), Some(true));
        assert_eq!(state.record(&fail()), Some(false));
    }

    #[test]
    fn rise_successes_in_a_row_make_an_unhealthy_service_healthy() {
        let mut state = HealthState::new(2, 2);
        state.record(&fail());
        assert_eq!(state.record(&RunResult::Passed), None);
        assert_eq!(state.record(&fail()), None);
        assert_eq!(state.record(&RunResult::Passed), None);
        assert_eq!(state.record(&RunResult::Passed), Some(true));
    }

    #[test]
    fn a_timeout_counts_as_a_failure_with_its_reason() {
        let mut state = HealthState::new(1, 1);
        assert_eq!(state.record(&RunResult::TimedOut), Some(false));
        assert_eq!(state.last_failure(), Some("timed out (killed)"));
    }

    #[tokio::test]
    async fn a_command_is_judged_by_its_exit_status() {
        let t = Duration::from_secs(10);
        assert_eq!(run_once(&["true".to_string()], t).await, RunResult::Passed);
        assert!(matches!(
            run_once(&["false".to_string()], t).await,
            RunResult::Failed(_)
        ));
        assert!(matches!(
            run_once(&["/nonexistent/herald-check".to_string()], t).await,
            RunResult::Failed(why) if why.contains("cannot run")
        ));
    }

    #[tokio::test]
    async fn a_command_still_running_at_the_timeout_is_killed() {
        let command = ["sleep".to_string(), "30".to_string()];
        let result = run_once(&command, Duration::from_millis(50)).await;
        assert_eq!(result, RunResult::TimedOut);
    }
}
