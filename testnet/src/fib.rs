//! Reading a router's kernel FIB and timing failover.
//!
//! The figure that matters to herald's users is how long a router keeps
//! forwarding to a dead node: the time from a fault to the node's next hop
//! leaving the router's kernel FIB. [`measure_withdrawal`] applies the fault
//! and polls `ip -n NS -j route show PREFIX` every [`FIB_POLL`] until the
//! next hop is gone, bounded by a timeout.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{LabError, Result};
use crate::netns::Namespace;
use crate::wait::wait_until;

/// How often the FIB is polled while timing (each poll is one `ip` run,
/// about 2-3 ms on the reference machine, so this is the resolution).
pub const FIB_POLL: Duration = Duration::from_millis(5);

/// The next hops of the routes for exactly `prefix` in the JSON printed by
/// `ip -j route show PREFIX`: one `gateway` per route, or the `nexthops` of a
/// multipath route.
pub fn next_hops_in(routes: &Value) -> Vec<IpAddr> {
    let mut hops = Vec::new();
    for route in routes.as_array().into_iter().flatten() {
        let gateways = std::iter::once(&route["gateway"]).chain(
            route["nexthops"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|hop| &hop["gateway"]),
        );
        hops.extend(
            gateways
                .filter_map(Value::as_str)
                .filter_map(|g| g.parse::<IpAddr>().ok()),
        );
    }
    hops
}

/// The next hops for `prefix` in namespace `ns`'s kernel FIB
/// (`ip -n NS -j route show PREFIX`, or `ip -6` for an IPv6 prefix).
pub fn fib_next_hops(ns: &Namespace, prefix: &str) -> Result<Vec<IpAddr>> {
    let mut args = vec![];
    if prefix.contains(':') {
        args.push("-6");
    }
    args.extend(["route", "show", prefix]);
    let out = ns.ip(&args_with_json(&args))?;
    if out.trim().is_empty() {
        return Ok(Vec::new());
    }
    let routes = crate::command::json(format!("ip -n {} -j route show {prefix}", ns.name()), out)?;
    Ok(next_hops_in(&routes))
}

/// The next hops for `prefix` in namespace `ns`'s kernel FIB with their
/// weights (`ip -j route show PREFIX`; a hop without `weight` has 1).
pub fn fib_weights(ns: &Namespace, prefix: &str) -> Result<Vec<(IpAddr, u64)>> {
    let mut args = vec![];
    if prefix.contains(':') {
        args.push("-6");
    }
    args.extend(["route", "show", prefix]);
    let out = ns.ip(&args_with_json(&args))?;
    if out.trim().is_empty() {
        return Ok(Vec::new());
    }
    let routes = crate::command::json(format!("ip -n {} -j route show {prefix}", ns.name()), out)?;
    Ok(weights_in(&routes))
}

/// [`fib_weights`] on the JSON of `ip -j route show PREFIX`.
pub fn weights_in(routes: &Value) -> Vec<(IpAddr, u64)> {
    let mut hops = Vec::new();
    for route in routes.as_array().into_iter().flatten() {
        let weight = |hop: &Value| hop["weight"].as_u64().unwrap_or(1);
        if let Some(gateway) = route["gateway"].as_str().and_then(|g| g.parse().ok()) {
            hops.push((gateway, weight(route)));
        }
        for hop in route["nexthops"].as_array().into_iter().flatten() {
            if let Some(gateway) = hop["gateway"].as_str().and_then(|g| g.parse().ok()) {
                hops.push((gateway, weight(hop)));
            }
        }
    }
    hops
}

fn args_with_json<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    full
}

/// Applies `fault`, then polls `ns`'s FIB every [`FIB_POLL`] until
/// `next_hop` no longer forwards `prefix`, and returns the time from the end
/// of `fault` to the first poll that saw it gone. Fails if the next hop was
/// not in the FIB before the fault, or is still there after `timeout`.
pub fn measure_withdrawal(
    ns: &Namespace,
    prefix: &str,
    next_hop: IpAddr,
    timeout: Duration,
    fault: impl FnOnce() -> Result<()>,
) -> Result<Duration> {
    let before = fib_next_hops(ns, prefix)?;
    if !before.contains(&next_hop) {
        return Err(LabError::Timeout {
            what: format!(
                "{next_hop} to forward {prefix} in {} before the fault",
                ns.name()
            ),
            after: Duration::ZERO,
            last: format!("next hops {before:?}"),
        });
    }
    fault()?;
    let start = Instant::now();
    wait_until(
        timeout,
        FIB_POLL,
        &format!(
            "{next_hop} to leave the FIB entry for {prefix} in {}",
            ns.name()
        ),
        || match fib_next_hops(ns, prefix) {
            Ok(hops) if !hops.contains(&next_hop) => Ok(start.elapsed()),
            Ok(hops) => Err(format!("next hops {hops:?}")),
            Err(e) => Err(e.to_string()),
        },
    )
}

/// Polls `ns`'s FIB every 10 ms until `next_hop` no longer forwards
/// `prefix`; returns how long that took from the call. For a fault applied
/// just before (and traffic measured meanwhile); [`measure_withdrawal`]
/// applies the fault itself and polls faster.
pub fn wait_until_gone(
    ns: &Namespace,
    prefix: &str,
    next_hop: IpAddr,
    timeout: Duration,
) -> Result<Duration> {
    let start = Instant::now();
    wait_until(
        timeout,
        Duration::from_millis(10),
        &format!(
            "{next_hop} to leave the FIB entry for {prefix} in {}",
            ns.name()
        ),
        || match fib_next_hops(ns, prefix) {
            Ok(hops) if !hops.contains(&next_hop) => Ok(start.elapsed()),
            Ok(hops) => Err(format!("next hops {hops:?}")),
            Err(e) => Err(e.to_string()),
        },
    )
}

/// One change a [`FibWatch`] saw: when, and the sorted next hops from then on.
pub type FibChange = (Instant, Vec<IpAddr>);

/// Watches `prefix` in a namespace's FIB from a background thread (one
/// `ip -j route show` every `interval`) and records every change of its
/// next hops, so a test can tell whether a route was lost at any moment
/// while traffic flowed (ECMP hides a lost path from the client: the other
/// nodes take its connections).
#[derive(Debug)]
pub struct FibWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<FibChange>>>,
}

impl FibWatch {
    /// Starts watching; the first entry is the state at the start.
    pub fn start(ns: &Namespace, prefix: &str, interval: Duration) -> FibWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let (ns, prefix, flag) = (ns.clone(), prefix.to_owned(), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut changes: Vec<FibChange> = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok(mut hops) = fib_next_hops(&ns, &prefix) {
                    hops.sort();
                    if changes.last().is_none_or(|(_, last)| *last != hops) {
                        changes.push((Instant::now(), hops));
                    }
                }
                std::thread::sleep(interval);
            }
            changes
        });
        FibWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops watching and returns every change: when, and the next hops from then on.
    pub fn stop(mut self) -> FibHistory {
        FibHistory {
            changes: self.finish(),
        }
    }

    fn finish(&mut self) -> Vec<FibChange> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for FibWatch {
    fn drop(&mut self) {
        self.finish();
    }
}

/// What a [`FibWatch`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FibHistory {
    /// Each change: when it was seen, and the sorted next hops from then on.
    pub changes: Vec<FibChange>,
}

impl FibHistory {
    /// The fewest next hops seen at any poll (`None` if nothing was read).
    pub fn fewest_next_hops(&self) -> Option<usize> {
        self.changes.iter().map(|(_, hops)| hops.len()).min()
    }

    /// How many times the next-hop set changed after the first reading.
    pub fn flaps(&self) -> usize {
        self.changes.len().saturating_sub(1)
    }
}

/// Waits until `next_hop` forwards `prefix` in `ns`'s FIB; returns how long
/// that took (the recovery time after a fault is undone).
pub fn wait_next_hop(
    ns: &Namespace,
    prefix: &str,
    next_hop: IpAddr,
    timeout: Duration,
) -> Result<Duration> {
    let start = Instant::now();
    wait_until(
        timeout,
        Duration::from_millis(20),
        &format!("{next_hop} to forward {prefix} in {}", ns.name()),
        || match fib_next_hops(ns, prefix) {
            Ok(hops) if hops.contains(&next_hop) => Ok(start.elapsed()),
            Ok(hops) => Err(format!("next hops {hops:?}")),
            Err(e) => Err(e.to_string()),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn next_hops_in_reads_a_single_path_route() {
        let routes = json!([{"dst": "203.0.113.10", "gateway": "192.0.2.2", "dev": "eth1",
            "protocol": "bgp", "metric": 20, "flags": []}]);
        assert_eq!(
            next_hops_in(&routes),
            vec!["192.0.2.2".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn next_hops_in_reads_every_path_of_a_multipath_route() {
        let routes = json!([{"dst": "203.0.113.10", "protocol": "bgp", "metric": 20,
        "nexthops": [
            {"gateway": "192.0.2.11", "dev": "eth1", "weight": 1, "flags": []},
            {"gateway": "192.0.2.12", "dev": "eth1", "weight": 1, "flags": []}
        ]}]);
        let hops = next_hops_in(&routes);
        assert_eq!(hops.len(), 2);
        assert!(hops.contains(&"192.0.2.12".parse().unwrap()));
    }

    #[test]
    fn a_fib_history_reports_the_fewest_next_hops_and_the_changes() {
        let t = Instant::now();
        let a: IpAddr = "192.0.2.11".parse().unwrap();
        let b: IpAddr = "192.0.2.12".parse().unwrap();
        let history = FibHistory {
            changes: vec![(t, vec![a, b]), (t, vec![a]), (t, vec![a, b])],
        };
        assert_eq!(history.fewest_next_hops(), Some(1));
        assert_eq!(history.flaps(), 2);
        let empty = FibHistory { changes: vec![] };
        assert_eq!(empty.fewest_next_hops(), None);
        assert_eq!(empty.flaps(), 0);
    }

    #[test]
    fn weights_in_reads_each_hop_s_weight_and_defaults_to_one() {
        let routes: Value = serde_json::from_str(
            r#"[{"dst":"203.0.113.10","protocol":"bgp","nexthops":[
                {"gateway":"192.0.2.11","dev":"eth1","weight":50},
                {"gateway":"192.0.2.12","dev":"eth1","weight":25},
                {"gateway":"192.0.2.13","dev":"eth1"}]}]"#,
        )
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            weights_in(&routes),
            vec![
                (ip("192.0.2.11"), 50),
                (ip("192.0.2.12"), 25),
                (ip("192.0.2.13"), 1)
            ]
        );
    }

    #[test]
    fn next_hops_in_an_empty_table_is_empty() {
        assert!(next_hops_in(&json!([])).is_empty());
        assert!(next_hops_in(&json!([{"dst": "203.0.113.10", "dev": "lo"}])).is_empty());
    }
}
