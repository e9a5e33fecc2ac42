//! Reload with the real `herald run` against FRR: a BFD-only change is
//! applied to the running session (a Poll Sequence) and BGP stays up; an
//! invalid file is rejected and the last good one stays in force; a new
//! services file announces its new address without touching the session.

use std::time::Duration;

use crate::support::*;
use herald_testnet::{lab_or_skip, wait_until};

#[test]
fn a_reload_applies_bfd_and_services_changes_without_resetting_bgp_and_rejects_a_bad_file() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = pair(&lab);
    frr.configure(&frr_config(100, "")).unwrap();
    let services = "services:\n  - name: web\n    addresses: [203.0.113.10]\n";
    let herald = start_herald(&node, &herald_config(300, "", ""), services);
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    frr.wait_bfd_up(NODE, BOUND).unwrap();
    wait_path(&frr, "203.0.113.10/32", "203.0.113.10 announced", |_| true);
    let tx = |node: &herald_testnet::Namespace| {
        status(node)
            .ok()
            .and_then(|r| r.bfd_sessions.first().and_then(|s| s.tx_interval_us))
    };
    wait_until(
        BOUND,
        Duration::from_millis(100),
        "BFD tx 300 ms",
        || match tx(&node) {
            Some(300_000) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .unwrap();
    let established = frr_neighbor(&frr)["connectionsEstablished"].clone();

    // BFD intervals only: a Poll Sequence on the running session.
    std::fs::write(node.dir().join("herald.yaml"), herald_config(100, "", "")).unwrap();
    wait_until(
        BOUND,
        Duration::from_millis(100),
        "BFD tx 100 ms",
        || match tx(&node) {
            Some(100_000) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .unwrap();

    // An invalid file: rejected with the field, the last good one stays.
    std::fs::write(
        node.dir().join("herald.yaml"),
        herald_config(100, "", "").replace("asn: 64601", "asn: 0"),
    )
    .unwrap();
    wait_until(
        BOUND,
        Duration::from_millis(100),
        "the rejection logged",
        || {
            if herald.log().contains("reload rejected") {
                Ok(())
            } else {
                Err(herald.log())
            }
        },
    )
    .unwrap();
    assert!(herald.is_running());

    // A new services file: the new address is placed and announced.
    std::fs::write(
        node.dir().join("services.yaml"),
        "services:\n  - name: web\n    addresses: [203.0.113.10, 203.0.113.11]\n",
    )
    .unwrap();
    wait_path(&frr, "203.0.113.11/32", "203.0.113.11 announced", |_| true);
    assert!(on_lo(&node, "203.0.113.11"));

    frr.wait_bgp_established(NODE, Duration::from_secs(1))
        .unwrap();
    assert_eq!(
        frr_neighbor(&frr)["connectionsEstablished"],
        established,
        "a reload reset the BGP session: {}",
        herald.log()
    );
    herald.terminate().unwrap();
}

#[test]
fn a_peer_with_address_gateway_follows_the_default_route() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = pair(&lab);
    frr.configure(&frr_config(300, "")).unwrap();
    let config = herald_config(300, "", "").replace(
        &format!("    address: {ROUTER}\n"),
        "    address: gateway\n",
    );
    let services = "services:\n  - name: web\n    addresses: [203.0.113.10]\n";
    let herald = start_herald(&node, &config, services);
    wait_until(
        BOUND,
        Duration::from_millis(200),
        "r1 waits for a gateway",
        || {
            let report = status(&node)?;
            match report.peers.first() {
                Some(p) if p.last_error.as_deref() == Some("no default gateway") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .unwrap();
    // Retried every second, reported once: the row keeps the time the
    // reason appeared and the log does not repeat it every second.
    let first = status(&node).unwrap().peers[0].last_error_at;
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(status(&node).unwrap().peers[0].last_error_at, first);
    assert_eq!(
        herald
            .log()
            .matches("not started: no default gateway")
            .count(),
        1,
        "{}",
        herald.log()
    );
    node.ip(&["route", "add", "default", "via", ROUTER])
        .unwrap();
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    wait_path(&frr, "203.0.113.10/32", "203.0.113.10 announced", |_| true);
    let report = status(&node).unwrap();
    assert_eq!(report.peers[0].address, ROUTER);
    herald.terminate().unwrap();
}
