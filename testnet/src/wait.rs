//! Bounded waiting: poll a condition until it holds or the time runs out.
//!
//! Every wait in the lab goes through [`wait_until`], so no loop in a test can
//! spin forever, and a timeout always says what was awaited and what was last
//! seen instead.

use std::fmt::Display;
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};

/// Polls `check` every `poll` until it returns `Ok`, for at most `timeout`.
///
/// `check` returns `Ok(value)` when the condition holds, or `Err(observed)`
/// with what it saw instead. On timeout the error names `what` and the last
/// `observed`, so a failing test shows, for example, the last
/// `show bgp summary json` rather than just "timed out". The condition is
/// checked at least once, and once more at the deadline.
pub fn wait_until<T, O: Display>(
    timeout: Duration,
    poll: Duration,
    what: &str,
    mut check: impl FnMut() -> std::result::Result<T, O>,
) -> Result<T> {
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        let last = match check() {
            Ok(value) => return Ok(value),
            Err(observed) => observed,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(LabError::Timeout {
                what: what.to_owned(),
                after: now - start,
                last: last.to_string(),
            });
        }
        std::thread::sleep(poll.min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_returns_the_value_once_the_condition_holds() {
        let mut calls = 0;
        let value = wait_until(
            Duration::from_secs(5),
            Duration::ZERO,
            "three calls",
            || {
                calls += 1;
                if calls == 3 { Ok(calls) } else { Err(calls) }
            },
        )
        .unwrap();
        assert_eq!(value, 3);
    }

    #[test]
    fn wait_until_reports_what_it_waited_for_and_the_last_observation() {
        let err = wait_until(
            Duration::from_millis(20),
            Duration::from_millis(5),
            "the route to 203.0.113.10",
            || Err::<(), _>("no route"),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("the route to 203.0.113.10"), "{text}");
        assert!(text.contains("no route"), "{text}");
    }

    #[test]
    fn wait_until_checks_at_least_once_even_with_a_zero_timeout() {
        let value = wait_until(Duration::ZERO, Duration::ZERO, "anything", || {
            Ok::<_, &str>(7)
        });
        assert_eq!(value.unwrap(), 7);
    }
}
