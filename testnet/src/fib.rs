//! Reading a router's kernel FIB and timing failover.
//!
//! The figure that matters to herald's users is how long a router keeps
//! forwarding to a dead node: the time from a fault to the node's next hop
//! leaving the router's kernel FIB. [`measure_withdrawal`] applies the fault
//! and polls `ip -n NS -j route show PREFIX` every [`FIB_POLL`] until the
//! next hop is gone, bounded by a timeout.

use std::net::IpAddr;
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
    fn next_hops_in_an_empty_table_is_empty() {
        assert!(next_hops_in(&json!([])).is_empty());
        assert!(next_hops_in(&json!([{"dst": "203.0.113.10", "dev": "lo"}])).is_empty());
    }
}
