//! What a lab needs from the machine (root, iproute2, FRR, BIRD 2, GoBGP,
//! nftables), and what happens when something is missing: outside CI a lab
//! test prints a [`Skip`] and returns; with `CI=true` it fails loudly, so a
//! CI run can never pass by skipping its lab tests.

use std::fmt;
use std::path::Path;

/// The programs the lab runs, with the Debian package that ships each.
pub const REQUIRED_PROGRAMS: &[(&str, &str)] = &[
    ("/usr/sbin/ip", "iproute2"),
    ("/usr/lib/frr/zebra", "frr"),
    ("/usr/lib/frr/staticd", "frr"),
    ("/usr/lib/frr/bfdd", "frr"),
    ("/usr/lib/frr/bgpd", "frr"),
    ("/usr/bin/vtysh", "frr"),
    ("/usr/sbin/bird", "bird2"),
    ("/usr/sbin/birdc", "bird2"),
    ("/usr/bin/gobgpd", "gobgpd"),
    ("/usr/bin/gobgp", "gobgpd"),
    ("/usr/sbin/nft", "nftables"),
];

/// Why a lab test cannot run on this machine. Tests print it and return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// Every unmet requirement, one sentence each.
    pub reasons: Vec<String>,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lab test skipped: {} (run `sudo bash scripts/test`, which installs what is missing)",
            self.reasons.join("; ")
        )
    }
}

impl std::error::Error for Skip {}

/// Checks that this process can build labs: it runs as root and every
/// program in [`REQUIRED_PROGRAMS`] is installed.
pub fn check() -> Result<(), Skip> {
    let mut reasons = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        reasons.push("not running as root (network namespaces need it)".to_owned());
    }
    let mut missing_packages: Vec<&str> = Vec::new();
    for (program, package) in REQUIRED_PROGRAMS {
        if !Path::new(program).exists() && !missing_packages.contains(package) {
            missing_packages.push(package);
        }
    }
    if !missing_packages.is_empty() {
        reasons.push(format!(
            "missing packages: {} (apt-get install -y {})",
            missing_packages.join(", "),
            missing_packages.join(" ")
        ));
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Skip { reasons })
    }
}

/// True when the environment says this is a CI run (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true"))
}

/// [`check`], with the CI rule applied: under `CI=true` an unmet requirement
/// panics instead of skipping.
///
/// # Panics
/// When a requirement is missing and `CI=true`.
pub fn check_or_fail_in_ci() -> Result<(), Skip> {
    match check() {
        Ok(()) => Ok(()),
        Err(skip) if in_ci() => panic!("CI=true and the lab cannot run here: {skip}"),
        Err(skip) => Err(skip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_message_names_every_reason_and_the_fix() {
        let skip = Skip {
            reasons: vec!["not running as root".into(), "missing packages: frr".into()],
        };
        let text = skip.to_string();
        assert!(text.contains("not running as root"), "{text}");
        assert!(text.contains("missing packages: frr"), "{text}");
        assert!(text.contains("scripts/test"), "{text}");
    }

    #[test]
    fn every_required_program_names_its_package() {
        for (program, package) in REQUIRED_PROGRAMS {
            assert!(
                program.starts_with('/'),
                "{program} must be an absolute path"
            );
            assert!(!package.is_empty(), "{program} has no package");
        }
    }
}
