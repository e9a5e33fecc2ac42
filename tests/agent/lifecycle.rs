//! The agent's promises against FRR, with the real `herald run`: BFD Down
//! closes BGP with Cease/BFD Down (RFC 9384); SIGTERM is a planned restart
//! under graceful restart (routes stay, stale, until herald is back and sends
//! End-of-RIB); a drain announces GRACEFUL_SHUTDOWN, then withdraws, then
//! removes the address, and `herald drain --cancel` brings it back; the TCP
//! admin port drains nothing.

use std::time::{Duration, Instant};

use crate::support::*;
use herald_testnet::{lab_or_skip, wait_until};
use serde_json::Value;

const SERVICES: &str = "services:
  - name: web
    addresses: [203.0.113.10]
";

#[test]
fn bfd_down_closes_bgp_with_cease_bfd_down() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = pair(&lab);
    frr.configure(&frr_config_bfd_apart(100)).unwrap();
    let herald = start_herald(&node, &herald_config(100, "", ""), SERVICES);
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    frr.wait_bfd_up(NODE, BOUND).unwrap();
    wait_path(&frr, "203.0.113.10/32", "203.0.113.10 announced", |_| true);

    // herald stops hearing FRR's BFD packets: its detection time expires.
    node.nft(
        "table inet herald_test {
  chain input {
    type filter hook input priority 0;
    udp dport 3784 drop
  }
}",
    )
    .unwrap();
    let neighbor = wait_until(
        BOUND,
        Duration::from_millis(100),
        "FRR to receive Cease/BFD Down",
        || {
            let n = frr_neighbor(&frr);
            if n.to_string().contains("BFD Down") {
                Ok(n)
            } else {
                Err(n.to_string())
            }
        },
    )
    .unwrap();
    println!(
        "FRR: lastNotificationReason {}, lastResetDueTo {}",
        neighbor["lastNotificationReason"], neighbor["lastResetDueTo"]
    );
    assert_eq!(
        neighbor["lastNotificationReason"],
        Value::from("Cease/BFD Down"),
        "{neighbor}"
    );
    assert!(
        herald.log().contains("closing BGP with Cease/BFD Down"),
        "{}",
        herald.log()
    );
    herald.terminate().unwrap();
}

#[test]
fn sigterm_keeps_routes_stale_in_frr_until_the_restarted_herald_sends_end_of_rib() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = pair(&lab);
    // BFD at 300 ms x 3: a loaded test machine must not fake a failure here.
    frr.configure(&frr_config(300, "")).unwrap();
    let config = herald_config(300, "", "");
    let herald = start_herald(&node, &config, SERVICES);
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    frr.wait_bfd_up(NODE, BOUND).unwrap();
    wait_path(&frr, "203.0.113.10/32", "203.0.113.10 announced", |_| true);

    let stopped = Instant::now();
    herald.terminate().unwrap();
    println!("herald exited {:?} after SIGTERM", stopped.elapsed());
    assert!(
        herald.log().contains("BFD AdminDown sent to every peer"),
        "{}",
        herald.log()
    );
    let stale = wait_until(
        BOUND,
        Duration::from_millis(100),
        "the route marked stale",
        || {
            let path = frr_path(&frr, "203.0.113.10/32");
            match path {
                Ok(p) if p["stale"] == Value::Bool(true) => Ok(p),
                other => Err(format!(
                    "{other:?}; FRR last reset: {}",
                    frr_neighbor(&frr)["lastResetDueTo"]
                )),
            }
        },
    );
    stale.unwrap();
    // Still in the FIB, and the address is still on the node.
    frr.wait_route_installed("203.0.113.10/32", Duration::from_secs(1))
        .unwrap();
    assert!(on_lo(&node, "203.0.113.10"));

    let restarted = start_herald(&node, &config, SERVICES);
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    wait_path(&frr, "203.0.113.10/32", "the stale flag cleared", |p| {
        p.get("stale").is_none()
    });
    frr.wait_route_installed("203.0.113.10/32", BOUND).unwrap();
    let report = status(&node).unwrap();
    assert!(
        restarted
            .log()
            .contains("this is a restart; graceful restart Restart State bit set"),
        "{}",
        restarted.log()
    );
    assert_eq!(report.announcements[0].announced_to, vec!["r1".to_string()]);
    restarted.terminate().unwrap();
}

#[test]
fn a_drain_announces_graceful_shutdown_then_withdraws_then_removes_the_address() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = pair(&lab);
    frr.configure(&frr_config(300, "")).unwrap();
    let config = herald_config(300, "drain:\n  gshut_wait: 3s\n", "");
    let herald = start_herald(&node, &config, SERVICES);
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    let path = wait_path(&frr, "203.0.113.10/32", "203.0.113.10 announced", |_| true);
    assert!(!communities(&path).contains("graceful-shutdown"), "{path}");

    let out = node
        .exec(HERALD, &["drain", "--admin-socket", &admin_socket(&node)])
        .unwrap();
    assert!(out.starts_with("draining:"), "{out}");
    let path = wait_path(&frr, "203.0.113.10/32", "65535:0 on the path", |p| {
        communities(p).contains("graceful-shutdown")
    });
    // RFC 8326 on the router: the route-map lowered the preference.
    assert_eq!(path["locPrf"], Value::from(0), "{path}");
    assert!(
        on_lo(&node, "203.0.113.10"),
        "removed before the withdrawal"
    );
    let report = status(&node).unwrap();
    let drain = report.drain.expect("/status shows the drain");
    assert_eq!(drain.phase, "graceful_shutdown");
    assert_eq!(drain.trigger, "admin_request");

    wait_withdrawn(&frr, "203.0.113.10/32", BOUND);
    wait_until(BOUND, Duration::from_millis(100), "address removed", || {
        if on_lo(&node, "203.0.113.10") {
            Err("still on lo".to_string())
        } else {
            Ok(())
        }
    })
    .unwrap();
    // The session stays up while drained.
    frr.wait_bgp_established(NODE, Duration::from_secs(1))
        .unwrap();
    let report = status(&node).unwrap();
    assert_eq!(report.drain.unwrap().phase, "withdrawn");

    // Undo it: the address comes back, then the route, without 65535:0.
    let out = node
        .exec(
            HERALD,
            &["drain", "--cancel", "--admin-socket", &admin_socket(&node)],
        )
        .unwrap();
    assert!(out.starts_with("drain cancelled:"), "{out}");
    let path = wait_path(&frr, "203.0.113.10/32", "203.0.113.10 back", |_| true);
    assert!(!communities(&path).contains("graceful-shutdown"), "{path}");
    assert!(
        on_lo(&node, "203.0.113.10"),
        "announced without the address"
    );
    assert_eq!(status(&node).unwrap().drain, None);
    // A second cancel says there is nothing to cancel.
    let refused = node.exec(
        HERALD,
        &["drain", "--cancel", "--admin-socket", &admin_socket(&node)],
    );
    let error = refused.unwrap_err().to_string();
    assert!(error.contains("HTTP 409: not draining"), "{error}");
    herald.terminate().unwrap();
}

/// The attacker: any process on the node (herald uses host networking), or
/// any pod when `admin_listen` is `0.0.0.0`, sends `POST /drain` to the TCP
/// port. It gets 404, and FRR keeps the route without GRACEFUL_SHUTDOWN
/// past the whole drain wait.
#[test]
fn post_drain_on_the_tcp_admin_port_withdraws_nothing() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = pair(&lab);
    frr.configure(&frr_config(300, "")).unwrap();
    let config = herald_config(300, "drain:\n  gshut_wait: 1s\n", "");
    let herald = start_herald(&node, &config, SERVICES);
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    wait_path(&frr, "203.0.113.10/32", "203.0.113.10 announced", |_| true);

    let admin: std::net::SocketAddr = ADMIN.parse().unwrap();
    for (method, path) in [("POST", "/drain"), ("DELETE", "/drain"), ("GET", "/status")] {
        let response = node
            .run_in(move || {
                herald_testnet::http::request(admin, method, path, b"", Duration::from_secs(5))
            })
            .unwrap()
            .unwrap();
        assert_eq!(response.status, 404, "{method} {path}: {}", response.text());
    }
    // Longer than the drain wait: a drain would have withdrawn by now.
    std::thread::sleep(Duration::from_secs(3));
    let path = frr_path(&frr, "203.0.113.10/32").expect("the route stays");
    assert!(!communities(&path).contains("graceful-shutdown"), "{path}");
    assert!(on_lo(&node, "203.0.113.10"));
    assert_eq!(status(&node).unwrap().drain, None);
    herald.terminate().unwrap();
}

#[test]
fn sigterm_with_drain_on_sigterm_drains_then_exits_without_the_address() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = pair(&lab);
    frr.configure(&frr_config(300, "")).unwrap();
    let config = herald_config(300, "drain:\n  gshut_wait: 2s\n  on_sigterm: true\n", "");
    let herald = start_herald(&node, &config, SERVICES);
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    wait_path(&frr, "203.0.113.10/32", "203.0.113.10 announced", |_| true);

    herald.signal(nix::sys::signal::Signal::SIGTERM).unwrap();
    wait_path(&frr, "203.0.113.10/32", "65535:0 on the path", |p| {
        communities(p).contains("graceful-shutdown")
    });
    assert!(herald.is_running(), "exited before the withdrawal");
    let status = herald.wait_exit(BOUND).unwrap();
    assert!(status.success(), "{status:?}: {}", herald.log());
    // Withdrawn for good (no stale route kept), and the address is gone.
    wait_withdrawn(&frr, "203.0.113.10/32", BOUND);
    assert!(!on_lo(&node, "203.0.113.10"));
    assert!(
        herald.log().contains("drained and stopped"),
        "{}",
        herald.log()
    );
}

/// `/readyz` waits for routing: herald is not ready while its only peer's
/// session is not Established (FRR has no neighbour for it yet), names the
/// peer, and turns ready once FRR is configured and the session comes up.
/// A rolling update of the DaemonSet waits on exactly this.
#[test]
fn readyz_is_false_until_the_router_session_is_established() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = pair(&lab);
    let herald = start_herald(&node, &herald_config(300, "", ""), SERVICES);
    let admin: std::net::SocketAddr = ADMIN.parse().unwrap();
    let readyz = || {
        node.run_in(move || {
            herald_testnet::http::request(admin, "GET", "/readyz", b"", Duration::from_secs(5))
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    };
    // The peers condition has reported (not just "not reported yet"), and
    // the peer is what it waits for.
    let body = wait_until(BOUND, Duration::from_millis(100), "peers reported", || {
        let response = readyz()?;
        let text = response.text();
        if text.contains("[-]peers failed: 0 of 1") {
            Ok((response.status, text))
        } else {
            Err(text)
        }
    })
    .unwrap();
    assert_eq!(body.0, 503, "{}", body.1);
    assert!(body.1.contains("not yet: r1"), "{}", body.1);
    // Still unready a while later: nothing times it into readiness.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(readyz().unwrap().status, 503);

    frr.configure(&frr_config(300, "")).unwrap();
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    let response = wait_until(BOUND, Duration::from_millis(100), "/readyz 200", || {
        let response = readyz()?;
        if response.status == 200 {
            Ok(response)
        } else {
            Err(response.text())
        }
    })
    .unwrap();
    assert!(
        response.text().contains("[+]peers ok"),
        "{}",
        response.text()
    );
    herald.terminate().unwrap();
}
