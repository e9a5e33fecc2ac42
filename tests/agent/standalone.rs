//! `herald run` in standalone mode against FRR: the services file's
//! addresses go on `lo`, are announced with their communities, BFD comes up
//! beside BGP, /status explains every address, and a failing health check
//! withdraws its service.

use std::time::Duration;

use crate::support::*;
use herald::status::{BfdState, BgpState};
use herald_testnet::{lab_or_skip, wait_until};

const SERVICES: &str = "services:
  - name: web
    addresses: [203.0.113.10]
    communities: [\"65000:200\"]
  - name: outside
    addresses: [198.51.100.7]
";

#[test]
fn standalone_addresses_are_placed_then_announced_with_communities_and_bfd_is_up() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = pair(&lab);
    frr.configure(&frr_config(50, "")).unwrap();
    let herald = start_herald(&node, &herald_config(50, "", ""), SERVICES);

    frr.wait_bgp_established(NODE, BOUND).unwrap();
    let path = wait_path(&frr, "203.0.113.10/32", "203.0.113.10 from herald", |_| {
        true
    });
    assert_eq!(communities(&path), "65000:100 65000:200", "{path}");
    assert!(on_lo(&node, "203.0.113.10"));
    assert!(
        !on_lo(&node, "198.51.100.7"),
        "an address outside the pools was placed"
    );
    frr.wait_bfd_up(NODE, BOUND).unwrap();

    let report = wait_until(
        BOUND,
        Duration::from_millis(200),
        "/status complete",
        || {
            let report = status(&node)?;
            let bfd_up = report.bfd_sessions.iter().any(|s| {
                s.peer == "r1" && s.state == BfdState::Up && s.detection_time_us.is_some()
            });
            let peer_up = report.peers.iter().any(|p| {
                p.name == "r1" && p.state == BgpState::Established && p.prefixes_sent == 1
            });
            if bfd_up && peer_up {
                Ok(report)
            } else {
                Err(format!("{report:?}"))
            }
        },
    )
    .unwrap();
    let web = report
        .announcements
        .iter()
        .find(|a| a.address.to_string() == "203.0.113.10")
        .unwrap();
    assert_eq!(web.announced_to, vec!["r1".to_string()], "{report:?}");
    assert_eq!(web.reason, None);
    let outside = report
        .announcements
        .iter()
        .find(|a| a.address.to_string() == "198.51.100.7")
        .unwrap();
    assert!(outside.announced_to.is_empty());
    assert_eq!(
        outside.reason.as_deref(),
        Some("outside every configured pool")
    );
    herald.terminate().unwrap();
}

#[test]
fn a_failing_health_check_withdraws_the_service_and_a_passing_one_brings_it_back() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = pair(&lab);
    frr.configure(&frr_config(300, "")).unwrap();
    let flag = node.dir().join("web.ok");
    std::fs::write(&flag, "").unwrap();
    let services = format!(
        "services:
  - name: web
    addresses: [203.0.113.10]
    check:
      command: [\"/bin/sh\", \"-c\", \"test -e {}\"]
      interval: 200ms
      timeout: 150ms
      rise: 2
      fall: 2
",
        flag.display()
    );
    let herald = start_herald(&node, &herald_config(300, "", ""), &services);
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    wait_path(&frr, "203.0.113.10/32", "203.0.113.10 announced", |_| true);

    std::fs::remove_file(&flag).unwrap();
    wait_withdrawn(&frr, "203.0.113.10/32", BOUND);
    wait_until(
        BOUND,
        Duration::from_millis(100),
        "/status: health check failing",
        || {
            let report = status(&node)?;
            let web = &report.announcements[0];
            let failing = web
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("health check failing"));
            if failing && web.announced_to.is_empty() {
                Ok(())
            } else {
                Err(format!("{web:?}"))
            }
        },
    )
    .unwrap();
    // The session stayed up: the withdrawal was an UPDATE, not a reset.
    frr.wait_bgp_established(NODE, Duration::from_secs(1))
        .unwrap();
    // Withdrawn, then removed from the interface.
    wait_until(BOUND, Duration::from_millis(100), "address removed", || {
        if on_lo(&node, "203.0.113.10") {
            Err("still on lo".to_string())
        } else {
            Ok(())
        }
    })
    .unwrap();

    std::fs::write(&flag, "").unwrap();
    wait_path(&frr, "203.0.113.10/32", "203.0.113.10 back", |_| true);
    assert!(on_lo(&node, "203.0.113.10"));
    herald.terminate().unwrap();
}

#[test]
fn anti_flap_holds_a_withdrawal_for_withdraw_delay_and_status_says_so() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = pair(&lab);
    frr.configure(&frr_config(300, "")).unwrap();
    let flag = node.dir().join("web.ok");
    std::fs::write(&flag, "").unwrap();
    let services = format!(
        "services:
  - name: web
    addresses: [203.0.113.10]
    check:
      command: [\"/bin/sh\", \"-c\", \"test -e {}\"]
      interval: 200ms
      timeout: 150ms
      rise: 1
      fall: 1
",
        flag.display()
    );
    let config = herald_config(300, "anti_flap:\n  min_up: 0s\n  withdraw_delay: 4s\n", "");
    let herald = start_herald(&node, &config, &services);
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    wait_path(&frr, "203.0.113.10/32", "203.0.113.10 announced", |_| true);

    std::fs::remove_file(&flag).unwrap();
    let row = wait_until(
        BOUND,
        Duration::from_millis(100),
        "/status: withdrawal held",
        || {
            let report = status(&node)?;
            let web = report.announcements[0].clone();
            let held = web
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("withdrawal held by anti_flap"));
            if held {
                Ok(web)
            } else {
                Err(format!("{web:?}"))
            }
        },
    )
    .unwrap();
    assert_eq!(row.announced_to, vec!["r1".to_string()], "{row:?}");
    assert!(
        frr_path(&frr, "203.0.113.10/32").is_ok(),
        "withdrawn while held"
    );
    wait_withdrawn(&frr, "203.0.113.10/32", BOUND);
    herald.terminate().unwrap();
}
