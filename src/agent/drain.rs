//! The drain sequence (RFC 8326), pure: re-announce
//! everything with GRACEFUL_SHUTDOWN, wait `drain.gshut_wait` so the routers
//! move traffic away, withdraw, then remove the addresses.
//!
//! Owns: the phases and what each means for the announced set. Must not
//! touch: sessions, netlink or clocks; time comes in as an argument and the
//! agent performs the [`DrainAction`]s. Withdrawal and removal go through
//! the ordinary reconcile (an empty desired set), so their order is the
//! reconciler's: withdrawn from every peer, then removed.
//!
//! RFC 8326 §4: "the GRACEFUL_SHUTDOWN community ... SHOULD be attached to
//! the paths to be withdrawn", and the receiver lowers their preference, so
//! traffic leaves the node before the paths do.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::model::Announcement;

/// What started a drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainTrigger {
    /// `POST /drain` (`herald drain`).
    AdminRequest,
    /// This Node got the exclusion label.
    NodeExcluded,
    /// SIGTERM with `drain.on_sigterm: true`.
    Sigterm,
}

impl DrainTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            DrainTrigger::AdminRequest => "admin_request",
            DrainTrigger::NodeExcluded => "node_excluded",
            DrainTrigger::Sigterm => "sigterm",
        }
    }
}

/// Where the drain stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DrainPhase {
    Serving,
    /// Announcing `frozen` with GRACEFUL_SHUTDOWN until `until`.
    GracefulShutdown {
        trigger: DrainTrigger,
        until: Instant,
        frozen: BTreeSet<Announcement>,
    },
    /// Nothing announced, addresses removed (or being removed).
    Withdrawn {
        trigger: DrainTrigger,
    },
}

/// What the agent does for the drain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DrainAction {
    /// `SessionHandle::set_graceful_shutdown` on every peer.
    SetGracefulShutdown(bool),
    /// Call [`Drain::timer`] at this instant.
    ArmTimer(Instant),
    /// Reconcile again: the effective desired set changed.
    Reconcile,
}

/// The drain state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drain {
    phase: DrainPhase,
    gshut_wait: Duration,
}

impl Drain {
    pub fn new(gshut_wait: Duration) -> Self {
        Drain {
            phase: DrainPhase::Serving,
            gshut_wait,
        }
    }

    pub fn phase(&self) -> &DrainPhase {
        &self.phase
    }

    /// A reload may change the wait; a drain in progress keeps its deadline.
    pub fn set_gshut_wait(&mut self, wait: Duration) {
        self.gshut_wait = wait;
    }

    pub fn is_serving(&self) -> bool {
        self.phase == DrainPhase::Serving
    }

    /// Drained: nothing announced any more.
    pub fn is_withdrawn(&self) -> bool {
        matches!(self.phase, DrainPhase::Withdrawn { .. })
    }

    /// Starts draining what is announced now. A drain in progress goes on
    /// (a SIGTERM during an admin drain does not restart the wait).
    pub fn start(
        &mut self,
        now: Instant,
        trigger: DrainTrigger,
        announced: &BTreeSet<Announcement>,
    ) -> Vec<DrainAction> {
        if !self.is_serving() {
            return Vec::new();
        }
        if announced.is_empty() || self.gshut_wait.is_zero() {
            self.phase = DrainPhase::Withdrawn { trigger };
            return vec![DrainAction::Reconcile];
        }
        let until = now + self.gshut_wait;
        self.phase = DrainPhase::GracefulShutdown {
            trigger,
            until,
            frozen: announced.clone(),
        };
        vec![
            DrainAction::SetGracefulShutdown(true),
            DrainAction::ArmTimer(until),
            DrainAction::Reconcile,
        ]
    }

    /// The timer armed by [`Drain::start`]: withdraw once the wait is over.
    pub fn timer(&mut self, now: Instant) -> Vec<DrainAction> {
        match &self.phase {
            DrainPhase::GracefulShutdown { trigger, until, .. } if now >= *until => {
                self.phase = DrainPhase::Withdrawn { trigger: *trigger };
                vec![DrainAction::Reconcile]
            }
            DrainPhase::GracefulShutdown { until, .. } => vec![DrainAction::ArmTimer(*until)],
            _ => Vec::new(),
        }
    }

    /// The node exclusion label went away: serve again (only a drain the
    /// label started; an admin or SIGTERM drain stays).
    pub fn exclusion_lifted(&mut self) -> Vec<DrainAction> {
        let by_label = match &self.phase {
            DrainPhase::GracefulShutdown { trigger, .. } | DrainPhase::Withdrawn { trigger } => {
                *trigger == DrainTrigger::NodeExcluded
            }
            DrainPhase::Serving => false,
        };
        if !by_label {
            return Vec::new();
        }
        self.phase = DrainPhase::Serving;
        vec![
            DrainAction::SetGracefulShutdown(false),
            DrainAction::Reconcile,
        ]
    }

    /// `herald drain --cancel`: undo a drain that `herald drain` started,
    /// in either phase; serve (and announce) again without
    /// GRACEFUL_SHUTDOWN. A drain the exclusion label or SIGTERM started is
    /// not the admin's to cancel: the reason comes back instead.
    pub fn cancel_admin(&mut self) -> Result<Vec<DrainAction>, String> {
        let trigger = match &self.phase {
            DrainPhase::Serving => return Err("not draining".to_string()),
            DrainPhase::GracefulShutdown { trigger, .. } | DrainPhase::Withdrawn { trigger } => {
                *trigger
            }
        };
        match trigger {
            DrainTrigger::AdminRequest => {
                self.phase = DrainPhase::Serving;
                Ok(vec![
                    DrainAction::SetGracefulShutdown(false),
                    DrainAction::Reconcile,
                ])
            }
            DrainTrigger::NodeExcluded => Err(
                "this drain follows the node's exclusion label \
                 (node.kubernetes.io/exclude-from-external-load-balancers); remove the label to serve again"
                    .to_string(),
            ),
            DrainTrigger::Sigterm => {
                Err("herald is draining to stop (SIGTERM); it cannot be cancelled".to_string())
            }
        }
    }

    /// What the reconciler announces, given the source's desired set.
    pub fn effective(&self, desired: &BTreeSet<Announcement>) -> BTreeSet<Announcement> {
        match &self.phase {
            DrainPhase::Serving => desired.clone(),
            DrainPhase::GracefulShutdown { frozen, .. } => frozen.clone(),
            DrainPhase::Withdrawn { .. } => BTreeSet::new(),
        }
    }

    /// For `/status`: the phase in words and the seconds left of the wait.
    pub fn describe(&self, now: Instant) -> Option<(String, DrainTrigger, Option<u64>)> {
        match &self.phase {
            DrainPhase::Serving => None,
            DrainPhase::GracefulShutdown { trigger, until, .. } => Some((
                "graceful_shutdown".to_string(),
                *trigger,
                Some(until.saturating_duration_since(now).as_secs()),
            )),
            DrainPhase::Withdrawn { trigger } => Some(("withdrawn".to_string(), *trigger, None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RouteAttributes;

    fn announced() -> BTreeSet<Announcement> {
        BTreeSet::from([Announcement {
            address: "203.0.113.10".parse().unwrap(),
            attributes: RouteAttributes::default(),
        }])
    }

    #[test]
    fn a_drain_first_announces_with_graceful_shutdown_until_the_wait_is_over() {
        let now = Instant::now();
        let mut drain = Drain::new(Duration::from_secs(15));
        let actions = drain.start(now, DrainTrigger::AdminRequest, &announced());
        assert_eq!(
            actions,
            vec![
                DrainAction::SetGracefulShutdown(true),
                DrainAction::ArmTimer(now + Duration::from_secs(15)),
                DrainAction::Reconcile,
            ]
        );
        // The source may shrink meanwhile: the drain keeps what it froze.
        assert_eq!(drain.effective(&BTreeSet::new()), announced());
    }

    #[test]
    fn the_wait_ends_in_withdrawing_everything() {
        let now = Instant::now();
        let mut drain = Drain::new(Duration::from_secs(15));
        drain.start(now, DrainTrigger::Sigterm, &announced());
        assert_eq!(
            drain.timer(now + Duration::from_secs(1)),
            vec![DrainAction::ArmTimer(now + Duration::from_secs(15))]
        );
        assert!(!drain.is_withdrawn());
        assert_eq!(
            drain.timer(now + Duration::from_secs(15)),
            vec![DrainAction::Reconcile]
        );
        assert!(drain.is_withdrawn());
        assert!(drain.effective(&announced()).is_empty());
    }

    #[test]
    fn a_node_with_nothing_announced_is_drained_at_once() {
        let mut drain = Drain::new(Duration::from_secs(15));
        let actions = drain.start(Instant::now(), DrainTrigger::NodeExcluded, &BTreeSet::new());
        assert_eq!(actions, vec![DrainAction::Reconcile]);
        assert!(drain.is_withdrawn());
    }

    #[test]
    fn a_second_trigger_does_not_restart_the_wait() {
        let now = Instant::now();
        let mut drain = Drain::new(Duration::from_secs(15));
        drain.start(now, DrainTrigger::AdminRequest, &announced());
        let later = now + Duration::from_secs(10);
        assert!(
            drain
                .start(later, DrainTrigger::Sigterm, &announced())
                .is_empty()
        );
        assert_eq!(
            drain.timer(now + Duration::from_secs(15)),
            vec![DrainAction::Reconcile]
        );
    }

    #[test]
    fn lifting_the_exclusion_label_serves_again_without_graceful_shutdown() {
        let now = Instant::now();
        let mut drain = Drain::new(Duration::from_secs(15));
        drain.start(now, DrainTrigger::NodeExcluded, &announced());
        assert_eq!(
            drain.exclusion_lifted(),
            vec![
                DrainAction::SetGracefulShutdown(false),
                DrainAction::Reconcile
            ]
        );
        assert!(drain.is_serving());
        assert_eq!(drain.effective(&announced()), announced());
    }

    #[test]
    fn an_admin_drain_can_be_cancelled_in_either_phase() {
        let now = Instant::now();
        let mut drain = Drain::new(Duration::from_secs(15));
        drain.start(now, DrainTrigger::AdminRequest, &announced());
        assert_eq!(
            drain.cancel_admin(),
            Ok(vec![
                DrainAction::SetGracefulShutdown(false),
                DrainAction::Reconcile
            ])
        );
        assert!(drain.is_serving());
        assert_eq!(drain.effective(&announced()), announced());
        // After the wait: withdrawn, then cancelled, serving again.
        drain.start(now, DrainTrigger::AdminRequest, &announced());
        drain.timer(now + Duration::from_secs(15));
        assert!(drain.is_withdrawn());
        assert!(drain.cancel_admin().is_ok());
        assert_eq!(drain.effective(&announced()), announced());
        // A stale timer after the cancel does nothing.
        assert!(drain.timer(now + Duration::from_secs(30)).is_empty());
        assert!(drain.is_serving());
    }

    #[test]
    fn only_an_admin_drain_can_be_cancelled() {
        let mut drain = Drain::new(Duration::from_secs(15));
        assert_eq!(drain.cancel_admin(), Err("not draining".to_string()));
        drain.start(Instant::now(), DrainTrigger::NodeExcluded, &announced());
        let why = drain.cancel_admin().unwrap_err();
        assert!(why.contains("exclusion label"), "{why}");
        assert!(!drain.is_serving());
        let mut drain = Drain::new(Duration::from_secs(15));
        drain.start(Instant::now(), DrainTrigger::Sigterm, &announced());
        let why = drain.cancel_admin().unwrap_err();
        assert!(why.contains("SIGTERM"), "{why}");
        assert!(!drain.is_serving());
    }

    #[test]
    fn lifting_the_label_does_not_end_an_admin_drain() {
        let mut drain = Drain::new(Duration::from_secs(15));
        drain.start(Instant::now(), DrainTrigger::AdminRequest, &announced());
        assert!(drain.exclusion_lifted().is_empty());
        assert!(!drain.is_serving());
    }
}
