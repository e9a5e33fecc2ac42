//! The standalone services file (`--services FILE`): addresses to announce
//! on hosts without Kubernetes (and in the demo), with optional health
//! checks.
//!
//! Owns: the file's shape, loading and validation (every problem, each with
//! its field path such as `services[0].check.timeout`). Must not touch: the
//! health-check runner or the agent; they receive validated values.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError, Problem, duration};
use crate::model::AnyCommunity;

/// The whole services file.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesFile {
    pub services: Vec<ServiceConfig>,
}

/// One service: its addresses and how to tell it is healthy.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    pub addresses: Vec<IpAddr>,
    #[serde(default)]
    pub communities: Vec<AnyCommunity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub med: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    /// Withdraw while this check fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<HealthCheckConfig>,
}

/// A command run every `interval`: `rise` successes in a row make the
/// service healthy, `fall` failures in a row make it unhealthy.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    pub command: Vec<String>,
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    /// A run that takes longer than this counts as a failure.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_threshold")]
    pub rise: u32,
    #[serde(default = "default_threshold")]
    pub fall: u32,
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_threshold() -> u32 {
    2
}

impl ServicesFile {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<ServicesFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ServicesFile::from_yaml(&text)
    }

    /// Parses and validates YAML text.
    pub fn from_yaml(text: &str) -> Result<ServicesFile, ConfigError> {
        let file: ServicesFile = crate::config::parse_yaml(text)?;
        file.validate()?;
        Ok(file)
    }

    /// Checks every rule and reports every broken one with its field path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid { problems })
        }
    }

    /// Addresses that are valid here but will not be announced under
    /// `config`: those outside every pool (the pools are the security
    /// boundary, so such an address is never announced; saying so at load
    /// time saves a search later).
    pub fn warnings(&self, config: &Config) -> Vec<Problem> {
        let mut out = Vec::new();
        for (i, service) in self.services.iter().enumerate() {
            for (j, address) in service.addresses.iter().enumerate() {
                if config.pool_for(*address).is_none() {
                    out.push(Problem::new(
                        format!("services[{i}].addresses[{j}]"),
                        format!("{address} is outside every pool; it will not be announced"),
                    ));
                }
            }
        }
        out
    }

    /// The effective file (defaults filled in) as YAML.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("the services file serializes to YAML")
    }

    fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut owners: HashMap<IpAddr, (usize, usize)> = HashMap::new();
        for (i, service) in self.services.iter().enumerate() {
            let path = format!("services[{i}]");
            if service.name.trim().is_empty() {
                out.push(Problem::new(format!("{path}.name"), "must not be empty"));
            } else if let Some(&first) = names.get(service.name.as_str()) {
                out.push(Problem::new(
                    format!("{path}.name"),
                    format!(
                        "{:?} is already the name of services[{first}]",
                        service.name
                    ),
                ));
            } else {
                names.insert(&service.name, i);
            }
            if service.addresses.is_empty() {
                out.push(Problem::new(
                    format!("{path}.addresses"),
                    "must list at least one address",
                ));
            }
            for (j, address) in service.addresses.iter().enumerate() {
                let address_path = format!("{path}.addresses[{j}]");
                if !is_unicast(*address) {
                    out.push(Problem::new(
                        &address_path,
                        format!("{address} is not a unicast address"),
                    ));
                }
                if let Some(&(oi, oj)) = owners.get(address) {
                    out.push(Problem::new(
                        &address_path,
                        format!(
                            "{address} is already listed at services[{oi}].addresses[{oj}] \
                             ({:?}); an address belongs to one service",
                            self.services[oi].name
                        ),
                    ));
                } else {
                    owners.insert(*address, (i, j));
                }
            }
            crate::config::check_communities(
                &mut out,
                &format!("{path}.communities"),
                &service.communities,
            );
            if let Some(check) = &service.check {
                check_health_check(&mut out, &format!("{path}.check"), check);
            }
        }
        out
    }
}

fn is_unicast(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

fn check_health_check(out: &mut Vec<Problem>, path: &str, check: &HealthCheckConfig) {
    match check.command.first() {
        None => out.push(Problem::new(
            format!("{path}.command"),
            "must name a program to run",
        )),
        Some(program) if program.trim().is_empty() => out.push(Problem::new(
            format!("{path}.command[0]"),
            "the program must not be empty",
        )),
        Some(_) => {}
    }
    if check.interval.is_zero() {
        out.push(Problem::new(
            format!("{path}.interval"),
            "must be greater than 0",
        ));
    }
    if check.timeout.is_zero() {
        out.push(Problem::new(
            format!("{path}.timeout"),
            "must be greater than 0",
        ));
    } else if check.timeout > check.interval && !check.interval.is_zero() {
        out.push(Problem::new(
            format!("{path}.timeout"),
            format!(
                "must not exceed interval ({}), got {}; a check must finish before the next \
                 one starts",
                humantime::format_duration(check.interval),
                humantime::format_duration(check.timeout)
            ),
        ));
    }
    for (field, value) in [("rise", check.rise), ("fall", check.fall)] {
        if value == 0 {
            out.push(Problem::new(
                format!("{path}.{field}"),
                "must be at least 1",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/services.yaml"
    ));

    fn example() -> ServicesFile {
        ServicesFile::from_yaml(EXAMPLE).expect("the documented example is valid")
    }

    #[test]
    fn every_services_file_field_is_documented_by_its_path() {
        let mut file = ServicesFile::from_yaml(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/services.yaml"
        )))
        .unwrap();
        file.services[0].med = Some(10);
        file.services[0].local_pref = Some(200);
        let mut keys = Vec::new();
        crate::config::doc_tests::key_paths(
            &serde_yaml_ng::to_value(&file).unwrap(),
            "",
            &mut keys,
        );
        for (_, path) in keys {
            assert!(
                crate::config::doc_tests::DOC.contains(&format!("| `{path}` |")),
                "docs/configuration.md has no table row for `{path}`"
            );
        }
    }

    fn check(file: &mut ServicesFile) -> &mut HealthCheckConfig {
        file.services[0].check.as_mut().unwrap()
    }

    fn second_service(file: &mut ServicesFile) -> &mut ServiceConfig {
        let mut service = file.services[0].clone();
        service.name = "api".to_string();
        service.addresses = vec!["203.0.113.20".parse().unwrap()];
        file.services.push(service);
        &mut file.services[1]
    }

    type Breakage = fn(&mut ServicesFile);

    const INVALID: &[(&str, Breakage, &str, &str)] = &[
        (
            "empty name",
            |f| f.services[0].name = String::new(),
            "services[0].name",
            "must not be empty",
        ),
        (
            "duplicate name",
            |f| second_service(f).name = "web".to_string(),
            "services[1].name",
            "already the name of services[0]",
        ),
        (
            "no addresses",
            |f| f.services[0].addresses.clear(),
            "services[0].addresses",
            "at least one address",
        ),
        (
            "address shared by two services",
            |f| {
                second_service(f)
                    .addresses
                    .push("2001:db8:ffff::10".parse().unwrap())
            },
            "services[1].addresses[1]",
            "already listed at services[0].addresses[1]",
        ),
        (
            "address listed twice in one service",
            |f| {
                f.services[0]
                    .addresses
                    .push("203.0.113.10".parse().unwrap())
            },
            "services[0].addresses[2]",
            "already listed at services[0].addresses[0]",
        ),
        (
            "multicast address",
            |f| f.services[0].addresses[0] = "239.1.1.1".parse().unwrap(),
            "services[0].addresses[0]",
            "not a unicast address",
        ),
        (
            "GRACEFUL_SHUTDOWN community",
            |f| f.services[0].communities = vec!["65535:0".parse().unwrap()],
            "services[0].communities[0]",
            "GRACEFUL_SHUTDOWN",
        ),
        (
            "empty command",
            |f| check(f).command.clear(),
            "services[0].check.command",
            "must name a program",
        ),
        (
            "empty program",
            |f| check(f).command[0] = String::new(),
            "services[0].check.command[0]",
            "must not be empty",
        ),
        (
            "zero interval",
            |f| check(f).interval = Duration::ZERO,
            "services[0].check.interval",
            "greater than 0",
        ),
        (
            "zero timeout",
            |f| check(f).timeout = Duration::ZERO,
            "services[0].check.timeout",
            "greater than 0",
        ),
        (
            "timeout longer than interval",
            |f| check(f).timeout = Duration::from_secs(2),
            "services[0].check.timeout",
            "must not exceed interval (1s), got 2s",
        ),
        (
            "rise 0",
            |f| check(f).rise = 0,
            "services[0].check.rise",
            "at least 1",
        ),
        (
            "fall 0",
            |f| check(f).fall = 0,
            "services[0].check.fall",
            "at least 1",
        ),
    ];

    #[test]
    fn the_product_example_is_valid_with_defaults_filled() {
        let file = example();
        let check = file.services[0].check.as_ref().unwrap();
        assert_eq!(check.timeout, Duration::from_secs(1));
        assert_eq!(check.rise, 2);
        assert_eq!(ServicesFile::from_yaml(&file.to_yaml()).unwrap(), file);
    }

    #[test]
    fn every_rule_reports_its_field_path() {
        for (what, breakage, path, fragment) in INVALID {
            let mut file = example();
            breakage(&mut file);
            let error = file.validate().expect_err(what).to_string();
            let expected = format!("{path}: ");
            assert!(
                error.contains(&expected) && error.contains(fragment),
                "{what}: expected {expected:?} and {fragment:?} in:\n{error}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_not_only_the_first() {
        let mut file = example();
        file.services[0].name = String::new();
        check(&mut file).rise = 0;
        check(&mut file).fall = 0;
        let error = file.validate().unwrap_err();
        assert_eq!(error.problems().len(), 3, "{error}");
    }

    #[test]
    fn serde_errors_name_the_field() {
        let error =
            ServicesFile::from_yaml("services:\n  - name: web\n    addresses: [203.0.113.300]\n")
                .unwrap_err()
                .to_string();
        assert!(error.starts_with("services[0].addresses[0]: "), "{error}");
        let error = ServicesFile::from_yaml(
            "services:\n  - name: web\n    addresses: [203.0.113.3]\n    check: {command: [x], intervl: 1s}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("unknown field `intervl`"), "{error}");
    }

    #[test]
    fn addresses_outside_every_pool_are_warnings() {
        let config = Config::from_yaml(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/herald.yaml"
        )))
        .unwrap();
        let mut file = example();
        assert_eq!(file.warnings(&config), vec![]);
        file.services[0]
            .addresses
            .push("198.51.100.7".parse().unwrap());
        let warnings = file.warnings(&config);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].path, "services[0].addresses[2]");
        assert!(warnings[0].message.contains("outside every pool"));
    }
}
