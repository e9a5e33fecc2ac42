//! `Liveness`: the loops whose progress `/livez` checks. A loop registers
//! its [`Heartbeat`]; `/livez` fails (503, naming it) once a running loop's
//! last beat is older than the bound, so the kubelet restarts a herald whose
//! owner task or BFD thread is stuck instead of trusting a process that
//! merely answers HTTP.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use crate::heartbeat::Heartbeat;

/// How old a running loop's last beat may be before `/livez` fails. Both
/// loops beat at least once a second when healthy (the owner task's tick,
/// the BFD thread's longest wait); the margin covers a reconcile of tens of
/// thousands of addresses, which holds the owner task for a few seconds.
pub const LIVENESS_BOUND: Duration = Duration::from_secs(20);

/// The registered heartbeats. Cloning shares the same set.
#[derive(Clone, Debug)]
pub struct Liveness {
    beats: Arc<Mutex<BTreeMap<String, Heartbeat>>>,
    bound: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness::new(LIVENESS_BOUND)
    }
}

impl Liveness {
    pub fn new(bound: Duration) -> Self {
        Liveness {
            beats: Arc::default(),
            bound,
        }
    }

    /// Registers (or replaces) the heartbeat named `name`.
    pub fn register(&self, name: &str, heartbeat: Heartbeat) {
        self.beats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), heartbeat);
    }

    /// The loops that made no progress within the bound, with how long.
    pub fn stuck(&self, now: Instant) -> Vec<(String, Duration)> {
        self.beats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|(name, beat)| {
                beat.age(now)
                    .filter(|age| *age > self.bound)
                    .map(|age| (name.clone(), age))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_is_stuck_once_its_last_beat_is_older_than_the_bound() {
        let liveness = Liveness::new(Duration::from_secs(20));
        let agent = Heartbeat::new();
        let bfd = Heartbeat::new();
        liveness.register("agent", agent.clone());
        liveness.register("bfd", bfd.clone());
        // Never beaten: not running, not stuck.
        assert!(liveness.stuck(Instant::now()).is_empty());
        agent.beat();
        bfd.beat();
        assert!(liveness.stuck(Instant::now()).is_empty());
        let later = Instant::now() + Duration::from_secs(21);
        let stuck: Vec<String> = liveness.stuck(later).into_iter().map(|(n, _)| n).collect();
        assert_eq!(stuck, vec!["agent".to_string(), "bfd".to_string()]);
        // A loop that ended on purpose is not stuck.
        bfd.stop();
        let stuck: Vec<String> = liveness.stuck(later).into_iter().map(|(n, _)| n).collect();
        assert_eq!(stuck, vec!["agent".to_string()]);
    }
}
