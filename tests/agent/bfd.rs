//! The BFD-BGP coupling with the real `herald run` against FRR: the router
//! taking BFD AdminDown is not a failure (RFC 5882 §4.2), and strict mode
//! (draft-ietf-idr-bgp-bfd-strict-mode) keeps BGP from Established until BFD
//! is Up.

use std::time::Duration;

use crate::support::*;
use herald::status::{BfdState, BgpState};
use herald_testnet::{lab_or_skip, wait_until};

const SERVICES: &str = "services:
  - name: web
    addresses: [203.0.113.10]
";

/// herald's `/status` error for a peer that strict mode holds.
const HELD: &str = "held until BFD is Up (bfd.strict)";

#[test]
fn the_router_taking_bfd_admin_down_leaves_bgp_up() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = pair(&lab);
    frr.configure(&frr_config_bfd_apart(100)).unwrap();
    let herald = start_herald(&node, &herald_config(100, "", ""), SERVICES);
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    frr.wait_bfd_up(NODE, BOUND).unwrap();
    let established = frr_neighbor(&frr)["connectionsEstablished"].clone();

    frr.configure(&format!("bfd\n peer {NODE}\n  shutdown\n"))
        .unwrap();
    wait_until(
        BOUND,
        Duration::from_millis(100),
        "herald to see AdminDown",
        || {
            let report = status(&node)?;
            let session = report.bfd_sessions.first().cloned();
            match session {
                Some(s) if s.remote_state == Some(BfdState::AdminDown) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .unwrap();
    // Well past the detection time: BGP was not touched.
    std::thread::sleep(Duration::from_millis(600));
    frr.wait_bgp_established(NODE, Duration::from_secs(1))
        .unwrap();
    assert_eq!(
        frr_neighbor(&frr)["connectionsEstablished"],
        established,
        "the BGP session was reset"
    );
    assert!(!herald.log().contains("Cease/BFD Down"), "{}", herald.log());
    herald.terminate().unwrap();
}

#[test]
fn strict_mode_holds_bgp_until_bfd_is_up() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = pair(&lab);
    // The router's side of the hand-over, in the logs printed on failure.
    frr.log_events().unwrap();
    // No BFD on the router yet.
    let no_bfd = frr_config(100, "").replace(
        &format!(" neighbor {NODE} bfd\n neighbor {NODE} bfd profile fast\n"),
        "",
    );
    frr.configure(&no_bfd).unwrap();
    let herald = start_herald(&node, &herald_config(100, "", ", strict: true"), SERVICES);
    wait_until(
        BOUND,
        Duration::from_millis(200),
        "/status: r1 held",
        || {
            let report = status(&node)?;
            match report.peers.first() {
                Some(p) if p.last_error.as_deref() == Some(HELD) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .unwrap();
    // Several connect retries of FRR (timers connect 1) go by.
    std::thread::sleep(Duration::from_secs(3));
    let state = herald_testnet::frr::bgp_peer_state(
        &frr.vtysh_json("show bgp summary json").unwrap(),
        NODE,
    );
    assert_ne!(state.as_deref(), Some("Established"));

    frr.configure(&format!("bfd\n peer {NODE}\n  profile fast\n exit\nexit\n"))
        .unwrap();
    frr.wait_bfd_up(NODE, BOUND).unwrap();
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    // The first attempt may meet FRR still applying the new configuration
    // (bgpd's "config-pending hold" rejects the connection for about a
    // second); herald then retries. `last_error` keeps the reason of the
    // last going down, so the hold is gone when it no longer names it.
    wait_until(BOUND, Duration::from_millis(200), "/status: r1 up", || {
        let report = status(&node)?;
        match report.peers.first() {
            Some(p)
                if p.state == BgpState::Established && p.last_error.as_deref() != Some(HELD) =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .unwrap();
    assert!(
        !herald.log().contains("not a configured peer"),
        "a held peer's connection was refused as unknown:\n{}",
        herald.log()
    );
    herald.terminate().unwrap();
}

/// FRR runs multihop BFD (RFC 5883) toward a neighbour with `ttl-security`
/// (it no longer counts it as directly connected), so herald's peer with
/// GTSM pairs it with `bfd.multihop`; the routers' docs say so.
#[test]
fn gtsm_on_both_sides_pairs_with_multihop_bfd() {
    let lab = lab_or_skip!();
    let Pair { frr, node } = pair(&lab);
    frr.configure(&frr_config(
        100,
        &format!(" neighbor {NODE} ttl-security hops 1"),
    ))
    .unwrap();
    let config = herald_config(100, "", ", multihop: true").replace(
        "    hold_time: 9s\n",
        "    hold_time: 9s\n    ttl_security: true\n",
    );
    let herald = start_herald(&node, &config, SERVICES);
    frr.wait_bgp_established(NODE, BOUND).unwrap();
    frr.wait_bfd_up(NODE, BOUND).unwrap();
    wait_until(
        BOUND,
        Duration::from_millis(100),
        "herald's multihop BFD session Up",
        || {
            let report = status(&node)?;
            match report.bfd_sessions.first() {
                Some(s) if s.state == BfdState::Up => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .unwrap();
    let peers = frr.vtysh_json("show bfd peers json").unwrap();
    assert_eq!(peers[0]["multihop"], true, "{peers}");
    herald.terminate().unwrap();
}
