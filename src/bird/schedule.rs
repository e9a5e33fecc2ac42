//! When to reload BIRD: coalescing bursts of changes, pacing reloads, and
//! backing off while BIRD cannot be reached. Pure: the current time comes
//! in with every call; no clock, no tokio.
//!
//! Owns: the decision "apply now, or at which instant". Must not touch:
//! rendering, files or sockets; the speaker asks `next_apply` and reports
//! what happened.
//!
//! Rules:
//! - A change is applied once no further change came for `settle`, but never
//!   later than `max_delay` after the first unapplied change, so a
//!   continuous stream of changes still converges.
//! - Two applies start at least `min_interval` apart: a flood of changes
//!   costs at most one BIRD reload per `min_interval`.
//! - A failed apply that may succeed later (BIRD down, socket missing) is
//!   retried after a backoff that doubles from `backoff_initial` up to
//!   `backoff_max`; a success resets it. A rejected include file is not
//!   retried: the same input would be rejected again, so it waits for the
//!   next change.

use std::time::{Duration, Instant};

/// The timing rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulePolicy {
    pub settle: Duration,
    pub max_delay: Duration,
    pub min_interval: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl SchedulePolicy {
    /// The policy for a `bird.coalesce` window: settle for it, apply at the
    /// latest after twice it, reload at most once per four times it.
    pub fn from_coalesce(coalesce: Duration) -> Self {
        SchedulePolicy {
            settle: coalesce,
            max_delay: coalesce * 2,
            min_interval: coalesce * 4,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// How an apply ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// BIRD runs the new file (or it was already running it).
    Applied,
    /// BIRD could not be reached or did not answer: retry with backoff.
    Unreachable,
    /// BIRD (or the check command) refused the file: wait for a change.
    Rejected,
}

/// The reload schedule of one BIRD.
#[derive(Clone, Debug)]
pub struct ReloadSchedule {
    policy: SchedulePolicy,
    /// The first change not yet applied, and the latest one.
    first_change: Option<Instant>,
    last_change: Option<Instant>,
    /// When the last apply started.
    last_apply: Option<Instant>,
    /// Not before this instant (backoff after a failure).
    retry_at: Option<Instant>,
    backoff: Duration,
    in_flight: bool,
}

impl ReloadSchedule {
    pub fn new(policy: SchedulePolicy) -> Self {
        ReloadSchedule {
            policy,
            first_change: None,
            last_change: None,
            last_apply: None,
            retry_at: None,
            backoff: policy.backoff_initial,
            in_flight: false,
        }
    }

    /// Something that may change the rendered file arrived.
    pub fn changed(&mut self, now: Instant) {
        self.first_change.get_or_insert(now);
        self.last_change = Some(now);
    }

    /// Whether a change waits to be applied.
    pub fn pending(&self) -> bool {
        self.first_change.is_some()
    }

    /// When the pending change should be applied (`None`: nothing pending,
    /// or an apply is running). An instant at or before `now` means now.
    pub fn next_apply(&self) -> Option<Instant> {
        if self.in_flight {
            return None;
        }
        let first = self.first_change?;
        let last = self.last_change.unwrap_or(first);
        let mut at = (last + self.policy.settle).min(first + self.policy.max_delay);
        if let Some(previous) = self.last_apply {
            at = at.max(previous + self.policy.min_interval);
        }
        if let Some(retry) = self.retry_at {
            at = at.max(retry);
        }
        Some(at)
    }

    /// Whether to apply at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next_apply().is_some_and(|at| at <= now)
    }

    /// An apply starts now; the changes so far are taken by it.
    pub fn started(&mut self, now: Instant) {
        self.in_flight = true;
        self.last_apply = Some(now);
        self.first_change = None;
        self.last_change = None;
    }

    /// The apply that `started` ended with `outcome`.
    pub fn finished(&mut self, now: Instant, outcome: ApplyOutcome) {
        self.in_flight = false;
        match outcome {
            ApplyOutcome::Applied | ApplyOutcome::Rejected => {
                self.backoff = self.policy.backoff_initial;
                self.retry_at = None;
            }
            ApplyOutcome::Unreachable => {
                // What the failed apply took is still to be done.
                self.first_change.get_or_insert(now);
                self.last_change.get_or_insert(now);
                self.retry_at = Some(now + self.backoff);
                self.backoff = (self.backoff * 2).min(self.policy.backoff_max);
            }
        }
    }

    /// The delay the next failure will wait.
    pub fn current_backoff(&self) -> Duration {
        self.backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> SchedulePolicy {
        SchedulePolicy {
            settle: 100 * MS,
            max_delay: 400 * MS,
            min_interval: 2000 * MS,
            backoff_initial: 500 * MS,
            backoff_max: 4000 * MS,
        }
    }

    /// Drives the schedule through a list of change instants (ms after
    /// `t0`), applying whenever it is due, on a 1 ms clock; returns the
    /// instants (ms) at which applies started.
    fn run(changes: &[u64], until_ms: u64, outcome: ApplyOutcome) -> Vec<u64> {
        let t0 = Instant::now();
        let mut schedule = ReloadSchedule::new(policy());
        let mut applies = Vec::new();
        let mut next_change = changes.iter().peekable();
        for ms in 0..=until_ms {
            let now = t0 + Duration::from_millis(ms);
            while next_change.next_if(|c| **c == ms).is_some() {
                schedule.changed(now);
            }
            if schedule.due(now) {
                schedule.started(now);
                applies.push(ms);
                schedule.finished(now, outcome);
            }
        }
        applies
    }

    #[test]
    fn a_single_change_is_applied_after_the_settle_time() {
        assert_eq!(run(&[10], 5000, ApplyOutcome::Applied), vec![110]);
    }

    #[test]
    fn a_burst_is_applied_once_after_it_settles() {
        let burst: Vec<u64> = (0..50).map(|i| 1000 + i * 5).collect();
        assert_eq!(run(&burst, 5000, ApplyOutcome::Applied), vec![1345]);
    }

    #[test]
    fn a_continuous_flood_is_paced_to_one_apply_per_min_interval() {
        // 1,000 changes in 10 s, one every 10 ms.
        let flood: Vec<u64> = (0..1000).map(|i| i * 10).collect();
        let applies = run(&flood, 20_000, ApplyOutcome::Applied);
        // First after max_delay, then every min_interval, then one last
        // apply for the tail of the flood.
        assert_eq!(applies, vec![400, 2400, 4400, 6400, 8400, 10400]);
    }

    #[test]
    fn an_unreachable_bird_is_retried_with_doubling_backoff() {
        let applies = run(&[0], 14_000, ApplyOutcome::Unreachable);
        // Paced by min_interval (2 s) until the backoff (0.5, 1, 2, 4 s,
        // capped at 4 s) is longer.
        assert_eq!(applies, vec![100, 2100, 4100, 6100, 10100]);
    }

    #[test]
    fn a_success_resets_the_backoff() {
        let t0 = Instant::now();
        let mut schedule = ReloadSchedule::new(policy());
        schedule.changed(t0);
        for _ in 0..3 {
            schedule.started(t0);
            schedule.finished(t0, ApplyOutcome::Unreachable);
        }
        assert_eq!(schedule.current_backoff(), 4000 * MS);
        assert!(schedule.pending(), "the failed change is still to be done");
        schedule.started(t0);
        schedule.finished(t0, ApplyOutcome::Applied);
        assert_eq!(schedule.current_backoff(), 500 * MS);
        assert!(!schedule.pending());
        assert_eq!(schedule.next_apply(), None);
    }

    #[test]
    fn a_rejected_file_is_not_retried_until_something_changes() {
        assert_eq!(run(&[0], 10_000, ApplyOutcome::Rejected), vec![100]);
        assert_eq!(
            run(&[0, 5000], 10_000, ApplyOutcome::Rejected),
            vec![100, 5100]
        );
    }

    #[test]
    fn nothing_is_due_while_an_apply_runs() {
        let t0 = Instant::now();
        let mut schedule = ReloadSchedule::new(policy());
        schedule.changed(t0);
        schedule.started(t0 + 100 * MS);
        schedule.changed(t0 + 150 * MS);
        assert!(!schedule.due(t0 + 10_000 * MS));
        schedule.finished(t0 + 200 * MS, ApplyOutcome::Applied);
        assert_eq!(schedule.next_apply(), Some(t0 + 2100 * MS));
    }
}
