//! One test per kind of change, each starting from the documented example
//! (examples/herald.yaml) with two peers.

use std::time::Duration;

use super::*;
use crate::config::PeerAddress;

fn two_peers() -> Config {
    let mut config = Config::from_yaml(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/herald.yaml"
    )))
    .unwrap();
    let mut r2 = config.peers[0].clone();
    r2.name = "r2".to_string();
    r2.address = PeerAddress::Ip("192.0.2.2".parse().unwrap());
    config.peers.push(r2);
    config
}

fn changed(edit: impl FnOnce(&mut Config)) -> ConfigDiff {
    let old = two_peers();
    let mut new = old.clone();
    edit(&mut new);
    new.validate().expect("the edited config stays valid");
    ConfigDiff::between(&old, &new)
}

fn only_change(diff: &ConfigDiff) -> &PeerChange {
    assert_eq!(diff.peers_changed.len(), 1, "{diff:?}");
    assert_eq!(diff.peers_unchanged, vec!["r2".to_string()]);
    &diff.peers_changed[0]
}

#[test]
fn identical_configs_differ_in_nothing() {
    let diff = ConfigDiff::between(&two_peers(), &two_peers());
    assert!(diff.is_empty(), "{diff:?}");
    assert_eq!(
        diff.peers_unchanged,
        vec!["r1".to_string(), "r2".to_string()]
    );
    assert!(diff.sessions_to_restart().is_empty());
    assert!(diff.summary().is_empty());
}

#[test]
fn a_new_peer_is_added_and_a_missing_one_removed() {
    let diff = changed(|c| {
        c.peers.remove(0);
        let mut r3 = c.peers[0].clone();
        r3.name = "r3".to_string();
        r3.address = PeerAddress::Ip("192.0.2.3".parse().unwrap());
        c.peers.push(r3);
    });
    assert_eq!(diff.peers_added.len(), 1);
    assert_eq!(diff.peers_added[0].name, "r3");
    assert_eq!(diff.peers_removed.len(), 1);
    assert_eq!(diff.peers_removed[0].name, "r1");
    assert_eq!(diff.peers_unchanged, vec!["r2".to_string()]);
    assert!(diff.peers_changed.is_empty());
    assert_eq!(
        diff.summary(),
        vec!["peer \"r3\" added", "peer \"r1\" removed"]
    );
}

#[test]
fn a_renamed_peer_is_one_removed_and_one_added() {
    let diff = changed(|c| c.peers[0].name = "tor-a".to_string());
    assert_eq!(diff.peers_added[0].name, "tor-a");
    assert_eq!(diff.peers_removed[0].name, "r1");
}

#[test]
fn reordering_peers_changes_nothing() {
    let diff = changed(|c| c.peers.reverse());
    assert!(diff.is_empty(), "{diff:?}");
}

#[test]
fn every_bgp_setting_of_a_peer_needs_a_new_session() {
    type Edit = fn(&mut PeerConfig);
    let edits: &[(&str, Edit)] = &[
        ("address", |p| {
            p.address = PeerAddress::Ip("192.0.2.9".parse().unwrap())
        }),
        ("address gateway", |p| p.address = PeerAddress::Gateway),
        ("asn", |p| p.asn = 64513),
        ("port", |p| p.port = 1179),
        ("hold_time", |p| p.hold_time = Duration::from_secs(30)),
        ("password_file", |p| p.password_file = None),
        ("ebgp_multihop", |p| p.ebgp_multihop = 2),
        ("ttl_security", |p| p.ttl_security = true),
        ("graceful_restart", |p| p.graceful_restart.enabled = false),
        ("bfd.strict", |p| p.bfd.strict = true),
    ];
    for (what, edit) in edits {
        let diff = changed(|c| edit(&mut c.peers[0]));
        let change = only_change(&diff);
        assert!(change.session, "{what}: {change:?}");
        assert_eq!(change.bfd, BfdChange::None, "{what}");
        assert!(!change.node_selector, "{what}");
        assert_eq!(diff.sessions_to_restart(), vec!["r1"], "{what}");
    }
}

#[test]
fn bfd_intervals_and_multiplier_change_parameters_and_bgp_stays_up() {
    type Edit = fn(&mut PeerConfig);
    let edits: &[Edit] = &[
        |p| p.bfd.min_rx = Duration::from_millis(100),
        |p| p.bfd.min_tx = Duration::from_millis(20),
        |p| p.bfd.multiplier = 5,
    ];
    for edit in edits {
        let diff = changed(|c| edit(&mut c.peers[0]));
        let change = only_change(&diff);
        assert!(!change.session, "{change:?}");
        assert_eq!(change.bfd, BfdChange::Parameters);
        assert!(diff.sessions_to_restart().is_empty());
        assert_eq!(
            diff.summary(),
            vec!["peer \"r1\" changed: BFD parameters (BGP stays up)"]
        );
    }
}

#[test]
fn enabling_disabling_or_switching_bfd_to_multihop_replaces_only_the_bfd_session() {
    type Edit = fn(&mut PeerConfig);
    let edits: &[Edit] = &[
        |p| p.bfd.enabled = false,
        |p| p.bfd.multihop = true,
        |p| {
            p.bfd.multihop = true;
            p.bfd.min_rx = Duration::from_millis(200);
        },
    ];
    for edit in edits {
        let diff = changed(|c| edit(&mut c.peers[0]));
        let change = only_change(&diff);
        assert!(!change.session, "{change:?}");
        assert_eq!(change.bfd, BfdChange::Session);
    }
}

#[test]
fn a_new_multihop_min_ttl_replaces_only_the_bfd_session() {
    let mut old = two_peers();
    old.peers[0].ebgp_multihop = 3;
    old.peers[0].bfd.multihop = true;
    let mut new = old.clone();
    new.peers[0].bfd.min_ttl = Some(250);
    new.validate().expect("valid");
    let diff = ConfigDiff::between(&old, &new);
    let change = only_change(&diff);
    assert!(!change.session, "{change:?}");
    assert_eq!(change.bfd, BfdChange::Session);
}

#[test]
fn bfd_parameters_of_a_disabled_bfd_session_need_nothing() {
    let old = {
        let mut c = two_peers();
        c.peers[0].bfd.enabled = false;
        c
    };
    let mut new = old.clone();
    new.peers[0].bfd.min_rx = Duration::from_millis(500);
    let diff = ConfigDiff::between(&old, &new);
    let change = only_change(&diff);
    assert_eq!(change.bfd, BfdChange::None);
    assert!(!change.session);
}

#[test]
fn a_node_selector_change_asks_to_recheck_the_peer_without_a_new_session() {
    let diff = changed(|c| {
        c.peers[0]
            .node_selector
            .insert("rack".to_string(), "r1".to_string());
    });
    let change = only_change(&diff);
    assert!(change.node_selector);
    assert!(!change.session);
    assert_eq!(change.bfd, BfdChange::None);
}

#[test]
fn a_new_local_asn_or_router_id_restarts_every_session() {
    let diff = changed(|c| c.asn = 64700);
    assert_eq!(diff.asn, Some((64601, 64700)));
    assert!(diff.restarts_every_session());
    assert_eq!(diff.sessions_to_restart(), vec!["r1", "r2"]);
    // The link-bandwidth community carries the local AS: the policy too.
    assert!(diff.policy_changed);

    let diff = changed(|c| c.router_id = None);
    assert_eq!(
        diff.router_id,
        Some((Some("192.0.2.11".parse().unwrap()), None))
    );
    assert_eq!(diff.sessions_to_restart(), vec!["r1", "r2"]);
    assert_eq!(
        diff.summary(),
        vec!["router_id 192.0.2.11 -> node address: every BGP session restarts"]
    );
}

#[test]
fn a_peer_change_and_a_global_restart_list_each_peer_once() {
    let diff = changed(|c| {
        c.asn = 64700;
        c.peers[1].bfd.multiplier = 4;
    });
    assert_eq!(diff.sessions_to_restart(), vec!["r2", "r1"]);
}

#[test]
fn a_new_interface_moves_the_addresses() {
    let diff = changed(|c| c.interface = "herald0".to_string());
    assert_eq!(
        diff.interface,
        Some(("lo".to_string(), "herald0".to_string()))
    );
    assert!(diff.sessions_to_restart().is_empty());
    assert!(!diff.policy_changed);
}

#[test]
fn pools_and_the_kubernetes_selection_re_evaluate_the_desired_set() {
    let diff = changed(|c| c.pools[0].communities.clear());
    assert!(diff.policy_changed);
    assert!(diff.sessions_to_restart().is_empty());
    #[cfg(feature = "agent")]
    {
        let diff = changed(|c| c.kubernetes.load_balancer_services = true);
        assert!(diff.policy_changed);
        assert!(diff.needs_restart.is_empty(), "{diff:?}");
    }
}

#[test]
fn anti_flap_and_drain_changes_carry_the_new_values() {
    let diff = changed(|c| {
        c.anti_flap.min_up = Duration::from_secs(1);
        c.drain.gshut_wait = Duration::from_secs(30);
    });
    assert_eq!(diff.anti_flap.unwrap().min_up, Duration::from_secs(1));
    assert_eq!(diff.drain.unwrap().gshut_wait, Duration::from_secs(30));
    assert!(diff.needs_restart.is_empty());
}

#[test]
fn a_new_admin_listen_address_needs_a_restart_and_says_so() {
    let diff = changed(|c| c.admin_listen = "127.0.0.1:9180".parse().unwrap());
    assert_eq!(diff.needs_restart.len(), 1);
    assert!(
        diff.needs_restart[0]
            .starts_with("admin_listen: the admin endpoint keeps listening on 127.0.0.1:9179"),
        "{:?}",
        diff.needs_restart
    );
    assert!(!diff.is_empty());
}

#[test]
fn changes_in_every_applied_field_are_not_reported_as_unknown() {
    // Every field the reload applies is neutralised; a change in one of them
    // alone must not count as unknown.
    let old = two_peers();
    let mut new = old.clone();
    new.asn = 1;
    new.router_id = None;
    new.interface = "x".into();
    new.admin_listen = "127.0.0.1:1".parse().unwrap();
    new.pools.clear();
    new.peers.clear();
    new.drain.gshut_wait = Duration::ZERO;
    new.anti_flap.min_up = Duration::ZERO;
    #[cfg(feature = "agent")]
    {
        new.kubernetes.load_balancer_services = true;
    }
    assert!(only_known_fields_differ(&old, &new));
}
