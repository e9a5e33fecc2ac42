//! The config fields of the BIRD backend: `speaker: herald | bird` and the
//! `bird:` section, their defaults, and the rules they satisfy on their own.
//!
//! Owns: the shapes and their field checks (every problem named by its field
//! path, like the rest of `config`). Must not touch: anything at run time, or
//! how BIRD names and times peers: the checks of the peers against BIRD's
//! rules are the BIRD backend's `config_problems`, run by whoever loads a
//! config.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, Problem};

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
    #[serde(default = "default_coalesce", with = "super::duration")]
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
pub(super) fn problems(config: &Config) -> Vec<Problem> {
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
    out
}

/// Findings that do not stop the agent.
pub(super) fn warnings(config: &Config) -> Vec<Problem> {
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
    use std::path::PathBuf;
    use std::time::Duration;

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
