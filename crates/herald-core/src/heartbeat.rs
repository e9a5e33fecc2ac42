//! [`Heartbeat`]: a loop's proof of progress, written by the loop and read
//! by whoever judges liveness (herald's `/livez`).
//!
//! Owns: the shared timestamp. Must not touch: what counts as too old (the
//! reader decides). A heartbeat that never beat, or that its loop stopped on
//! purpose, reads as "not running", so a loop that is not expected to run
//! (no BFD session configured) is not taken for a stuck one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Cloning shares the same heartbeat.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    origin: Instant,
    /// Nanoseconds after `origin` of the last beat, plus one; 0: not running.
    last: Arc<AtomicU64>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::new()
    }
}

impl Heartbeat {
    pub fn new() -> Self {
        Heartbeat {
            origin: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The loop made progress now.
    pub fn beat(&self) {
        let nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last.store(nanos.saturating_add(1), Ordering::Relaxed);
    }

    /// The loop ended on purpose.
    pub fn stop(&self) {
        self.last.store(0, Ordering::Relaxed);
    }

    /// How long ago the last beat was, at `now`; `None` when not running.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        match self.last.load(Ordering::Relaxed) {
            0 => None,
            stored => {
                let at = self.origin + Duration::from_nanos(stored - 1);
                Some(now.saturating_duration_since(at))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_not_running_until_it_beats_and_after_it_stops() {
        let heartbeat = Heartbeat::new();
        assert_eq!(heartbeat.age(Instant::now()), None);
        heartbeat.beat();
        let shared = heartbeat.clone();
        let later = Instant::now() + Duration::from_secs(5);
        let age = shared.age(later).unwrap();
        assert!(
            age >= Duration::from_secs(5) && age < Duration::from_secs(6),
            "{age:?}"
        );
        heartbeat.stop();
        assert_eq!(shared.age(later), None);
    }
}
