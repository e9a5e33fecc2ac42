//! The config fields of the BIRD backend: `speaker: herald | bird` and the
//! `bird:` section, and the rules they must satisfy.
//!
//! Owns: the types and their validation (every problem named by its field
//! path, like the rest of `config`). Must not touch: anything at run time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{BfdConfig, Config, PeerAddress, Problem};

/// Who speaks BGP for this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpeakerKind {
    /// herald's own BGP sessions and BFD (the default).
    #[default]
    Herald,
    /// An existing BIRD 2 on the node announces what herald decides:
    /// herald renders an include file and reloads BIRD through its control
    /// socket (docs/bird-compat.md).
    Bird,
}

/// The `bird:` section: how herald reaches the node's BIRD.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BirdConfig {
    /// BIRD's control socket (`bird -s`, what `birdc -s` talks to).
    #[serde(default = "default_control_socket")]
    pub control_socket: PathBuf,
    /// The file herald writes and BIRD's configuration includes
    /// (`include "/etc/bird/herald.conf";`).
    #[serde(default = "default_include_file")]
    pub include_file: PathBuf,
    /// A command that checks BIRD's whole configuration after herald wrote
    /// the include file, e.g. `[bird, -p, -c, /etc/bird/bird.conf]`; exit
    /// status 0 accepts. Without it herald asks BIRD itself
    /// (`configure check` on the control socket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_command: Option<Vec<String>>,
    /// How long changes are gathered before BIRD is reloaded; also the
    /// shortest time between two reloads is `4 x` this.
    #[serde(default = "default_coalesce", with = "crate::config::duration")]
    pub coalesce: Duration,
}

impl Default for BirdConfig {
    fn default() -> Self {
        BirdConfig {
            control_socket: default_control_socket(),
            include_file: default_include_file(),
            check_command: None,
            coalesce: default_coalesce(),
        }
    }
}

fn default_control_socket() -> PathBuf {
    PathBuf::from("/run/bird/bird.ctl")
}

fn default_include_file() -> PathBuf {
    PathBuf::from("/etc/bird/herald.conf")
}

fn default_coalesce() -> Duration {
    Duration::from_millis(500)
}

/// The longest `bird.coalesce` accepted.
pub const COALESCE_MAX: Duration = Duration::from_secs(60);

/// Every problem of the `speaker` and `bird` fields of `config`.
pub(crate) fn problems(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    if config.speaker != SpeakerKind::Bird {
        return out;
    }
    let bird = config.bird.clone().unwrap_or_default();
    for (field, path) in [
        ("bird.control_socket", &bird.control_socket),
        ("bird.include_file", &bird.include_file),
    ] {
        if !path.is_absolute() {
            out.push(Problem::new(
                field,
                format!("{} must be an absolute path", path.display()),
            ));
        }
    }
    if bird.control_socket == bird.include_file {
        out.push(Problem::new(
            "bird.include_file",
            "must differ from bird.control_socket",
        ));
    }
    if bird.include_file.file_name().is_none() {
        out.push(Problem::new("bird.include_file", "must name a file"));
    }
    if let Some(command) = &bird.check_command
        && command
            .first()
            .is_none_or(|program| program.trim().is_empty())
    {
        out.push(Problem::new(
            "bird.check_command",
            "must name a program, e.g. [bird, -p, -c, /etc/bird/bird.conf]",
        ));
    }
    if bird.coalesce > COALESCE_MAX {
        out.push(Problem::new(
            "bird.coalesce",
            format!(
                "must be at most 60s, got {}",
                humantime::format_duration(bird.coalesce)
            ),
        ));
    }
    check_peers_for_bird(&mut out, config);
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

/// Findings that do not stop the agent.
pub(crate) fn warnings(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    if config.speaker == SpeakerKind::Herald && config.bird.is_some() {
        out.push(Problem::new(
            "bird",
            "is ignored while speaker is herald; set speaker: bird to use it",
        ));
    }
    if config.speaker == SpeakerKind::Bird {
        let bird = config.bird.clone().unwrap_or_default();
        if !Path::new(&bird.control_socket).exists() {
            out.push(Problem::new(
                "bird.control_socket",
                format!(
                    "{} does not exist (yet); herald retries until BIRD answers",
                    bird.control_socket.display()
                ),
            ));
        }
        for (i, peer) in config.peers.iter().enumerate() {
            if peer.password_file.is_some() {
                out.push(Problem::new(
                    format!("peers[{i}].password_file"),
                    "herald does not copy keys into BIRD's configuration: set `password` \
                     in the BIRD protocol itself",
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str =
        "asn: 64601\nrouter_id: 192.0.2.11\npools: [{name: p, cidrs: [203.0.113.0/24]}]\n";

    fn problems_of(extra: &str) -> Vec<String> {
        match Config::from_yaml(&format!("{BASE}{extra}")) {
            Ok(_) => Vec::new(),
            Err(error) => error.problems().iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn speaker_defaults_to_herald_and_bird_has_defaults() {
        let config = Config::from_yaml(BASE).unwrap();
        assert_eq!(config.speaker, SpeakerKind::Herald);
        let config = Config::from_yaml(&format!("{BASE}speaker: bird\n")).unwrap();
        assert_eq!(config.speaker, SpeakerKind::Bird);
        assert_eq!(config.bird, None);
        let config = Config::from_yaml(&format!(
            "{BASE}speaker: bird\nbird: {{control_socket: /run/b.ctl, check_command: [bird, -p]}}\n"
        ))
        .unwrap();
        let bird = config.bird.unwrap();
        assert_eq!(bird.control_socket, PathBuf::from("/run/b.ctl"));
        assert_eq!(bird.include_file, PathBuf::from("/etc/bird/herald.conf"));
        assert_eq!(bird.coalesce, Duration::from_millis(500));
    }

    #[test]
    fn an_unknown_speaker_or_bird_field_is_refused_with_its_path() {
        let problems = problems_of("speaker: gobgp\n");
        assert!(problems[0].starts_with("speaker:"), "{problems:?}");
        let problems = problems_of("speaker: bird\nbird: {socket: /x}\n");
        assert!(problems[0].starts_with("bird.socket:"), "{problems:?}");
    }

    #[test]
    fn bird_paths_must_be_absolute_and_distinct() {
        let problems = problems_of(
            "speaker: bird\nbird: {control_socket: bird.ctl, include_file: /a, check_command: []}\n",
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("bird.control_socket:")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("bird.check_command:")),
            "{problems:?}"
        );
        let problems = problems_of("speaker: bird\nbird: {control_socket: /a, include_file: /a}\n");
        assert!(
            problems.iter().any(|p| p.starts_with("bird.include_file:")),
            "{problems:?}"
        );
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
    fn multihop_bfd_without_a_router_id_is_refused_for_bird() {
        let yaml = "asn: 64601\nspeaker: bird\npeers:\n\
  - {name: a, address: 198.51.100.1, asn: 64512, ebgp_multihop: 3, bfd: {multihop: true}}\n";
        let problems = match Config::from_yaml(yaml) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems(),
        };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "peers[0].bfd.multihop");
    }

    #[test]
    fn every_bird_field_is_documented_by_its_path() {
        let doc = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/configuration.md"
        ));
        let config = Config::from_yaml(&format!(
            "{BASE}speaker: bird\nbird: {{check_command: [bird, -p]}}\n"
        ))
        .unwrap();
        let value = serde_yaml_ng::to_value(&config).unwrap();
        assert!(doc.contains("| `speaker` |"));
        let bird = value["bird"].as_mapping().expect("bird serializes");
        assert_eq!(bird.len(), 4);
        for key in bird.keys() {
            let row = format!("| `bird.{}` |", key.as_str().unwrap());
            assert!(doc.contains(&row), "docs/configuration.md has no row {row}");
        }
    }

    #[test]
    fn a_bird_section_without_speaker_bird_is_a_warning() {
        let config = Config::from_yaml(&format!("{BASE}bird: {{}}\n")).unwrap();
        assert!(
            config.warnings().iter().any(|w| w.path == "bird"),
            "{:?}",
            config.warnings()
        );
    }
}
