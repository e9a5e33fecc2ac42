//! The rules a config must follow for `speaker: bird` that come from BIRD
//! itself: peer names that stay distinct as BIRD symbols, BFD timers BIRD can
//! express, and what multihop BFD needs. The shapes of `speaker` and `bird:`
//! are `crate::config`'s.
//!
//! Owns: these cross-checks, run by whoever loads a config (`herald
//! check-config`, `herald run`, the agent's reload) through
//! `Config::from_yaml_with`. Must not touch: anything
//! at run time.

use std::collections::BTreeMap;

use crate::config::{BfdConfig, Config, PeerAddress, Problem, SpeakerKind};

/// Every problem of `config` that only BIRD's rules show (none unless
/// `speaker: bird`).
pub fn problems(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    if config.speaker == SpeakerKind::Bird {
        check_peers_for_bird(&mut out, config);
    }
    out
}

/// The peers as BIRD will see them: symbol names BIRD accepts, and BFD
/// timers BIRD can express. BIRD's `protocol bfd` sets timers per
/// interface pattern (one for all single-hop sessions here) and one
/// `multihop` block, not per neighbour, so every single-hop peer must
/// share its timers, and every multihop peer.
fn check_peers_for_bird(out: &mut Vec<Problem>, config: &Config) {
    let mut symbols: BTreeMap<String, usize> = BTreeMap::new();
    let mut single_hop: Option<(usize, &BfdConfig)> = None;
    let mut multihop: Option<(usize, &BfdConfig)> = None;
    for (i, peer) in config.peers.iter().enumerate() {
        let symbol = super::render::template_name(&peer.name);
        if let Some(first) = symbols.insert(symbol.clone(), i) {
            out.push(Problem::new(
                format!("peers[{i}].name"),
                format!(
                    "{:?} and peers[{first}].name both become the BIRD template {symbol}; \
                     rename one",
                    peer.name
                ),
            ));
        }
        if !peer.bfd.enabled {
            continue;
        }
        let slot = if peer.bfd.multihop {
            &mut multihop
        } else {
            &mut single_hop
        };
        match slot {
            None => *slot = Some((i, &peer.bfd)),
            Some((first, timers)) if !same_timers(timers, &peer.bfd) => {
                out.push(Problem::new(
                    format!("peers[{i}].bfd"),
                    format!(
                        "with speaker: bird every {} peer needs the same min_rx, min_tx and \
                         multiplier (BIRD sets BFD timers per interface, not per \
                         neighbour); peers[{first}].bfd differs",
                        if peer.bfd.multihop {
                            "multihop"
                        } else {
                            "single-hop"
                        }
                    ),
                ));
            }
            Some(_) => {}
        }
        if peer.bfd.auth.is_some() {
            out.push(Problem::new(
                format!("peers[{i}].bfd.auth"),
                "with speaker: bird, BFD authentication is configured in BIRD itself; \
                 remove bfd.auth",
            ));
        }
        if peer.bfd.min_ttl.is_some() {
            out.push(Problem::new(
                format!("peers[{i}].bfd.min_ttl"),
                "with speaker: bird the received TTL of multihop BFD is BIRD's to check \
                 (it has no setting for it); remove bfd.min_ttl",
            ));
        }
        let multihop_session = peer.bfd.multihop || peer.ebgp_multihop > 1;
        if multihop_session && config.router_id.is_none() {
            out.push(Problem::new(
                format!("peers[{i}].bfd.multihop"),
                "BIRD needs a local address for multihop BGP with BFD: set router_id \
                 (used as the session's local address)",
            ));
        }
        if peer.address == PeerAddress::Gateway && peer.bfd.multihop {
            out.push(Problem::new(
                format!("peers[{i}].address"),
                "gateway with multihop BFD: the gateway is directly connected; use \
                 single-hop BFD",
            ));
        }
    }
}

fn same_timers(a: &BfdConfig, b: &BfdConfig) -> bool {
    (a.min_rx, a.min_tx, a.multiplier) == (b.min_rx, b.min_tx, b.multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str =
        "asn: 64601\nrouter_id: 192.0.2.11\npools: [{name: p, cidrs: [203.0.113.0/24]}]\n";

    /// What `herald check-config` reports: the config's own rules, then
    /// BIRD's.
    fn problems_of(extra: &str) -> Vec<String> {
        match Config::from_yaml_with(&format!("{BASE}{extra}"), problems) {
            Ok(_) => Vec::new(),
            Err(error) => error.problems().iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn single_hop_peers_with_different_bfd_timers_are_refused_for_bird() {
        let peers = "peers:\n\
  - {name: a, address: 192.0.2.1, asn: 64512, bfd: {min_rx: 50ms, min_tx: 50ms}}\n\
  - {name: b, address: 192.0.2.2, asn: 64512, bfd: {min_rx: 100ms, min_tx: 50ms}}\n";
        assert!(
            problems_of(peers).is_empty(),
            "herald's own speaker allows it"
        );
        let problems = problems_of(&format!("speaker: bird\n{peers}"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("peers[1].bfd:"), "{problems:?}");
    }

    #[test]
    fn peer_names_that_collide_as_bird_symbols_are_refused() {
        let problems = problems_of(
            "speaker: bird\npeers:\n\
  - {name: tor-a, address: 192.0.2.1, asn: 64512}\n\
  - {name: tor_a, address: 192.0.2.2, asn: 64512}\n",
        );
        assert!(problems[0].starts_with("peers[1].name:"), "{problems:?}");
    }

    #[test]
    fn bfd_auth_and_min_ttl_are_refused_for_bird() {
        let peers = "peers:\n\
  - {name: a, address: 198.51.100.1, asn: 64512, ebgp_multihop: 3, bfd: {multihop: true, min_ttl: 250, auth: {type: keyed-sha1, key_id: 1, key_file: /k}}}\n";
        assert!(problems_of(peers).is_empty(), "herald's own BFD has both");
        let problems = problems_of(&format!("speaker: bird\n{peers}"));
        assert!(
            problems.iter().any(|p| p.starts_with("peers[0].bfd.auth:"))
                && problems
                    .iter()
                    .any(|p| p.starts_with("peers[0].bfd.min_ttl:")),
            "{problems:?}"
        );
    }

    #[test]
    fn multihop_bfd_without_a_router_id_is_refused_for_bird() {
        let yaml = "asn: 64601\nspeaker: bird\npeers:\n\
  - {name: a, address: 198.51.100.1, asn: 64512, ebgp_multihop: 3, bfd: {multihop: true}}\n";
        let problems = problems(&Config::from_yaml(yaml).unwrap());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "peers[0].bfd.multihop");
    }
}
