//! ARP hygiene for service addresses on `lo` (or a dummy interface).
//!
//! Linux is a "weak host": by default (`arp_ignore=0`) it answers an ARP
//! request for any local address on any interface, so a node with
//! 203.0.113.10 on `lo` answers "who has 203.0.113.10" on its uplink, and the
//! routers' ECMP (which must reach every node by its own next hop) competes
//! with a node that claims the service address itself. The fix LVS direct
//! routing deployments use on every real server:
//!
//! - `net.ipv4.conf.<uplink>.arp_ignore = 1`: answer only for addresses
//!   configured on the interface the request came in on.
//! - `net.ipv4.conf.<uplink>.arp_announce = 2`: in the ARP requests the node
//!   sends, always use the best local address for the target as the source,
//!   never a service address from `lo`.
//!
//! The kernel applies the larger of `all` and the interface's value, so both
//! are set. IPv6 needs no equivalent: the kernel answers neighbour
//! solicitations only for addresses on the receiving interface.
//!
//! Writes go to `/proc/sys`, which the kernel resolves in the writer's
//! network namespace. Must not touch: any other sysctl, any interface not
//! named.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::NetlinkError;
use super::link::invalid_name_reason;

/// Where the IPv4 per-interface settings live.
pub const IPV4_CONF: &str = "/proc/sys/net/ipv4/conf";

/// The settings, as (name, value).
pub const ARP_SETTINGS: [(&str, &str); 2] = [("arp_ignore", "1"), ("arp_announce", "2")];

/// One sysctl herald changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SysctlChange {
    pub path: PathBuf,
    pub previous: String,
    pub value: String,
}

/// Set `arp_ignore=1` and `arp_announce=2` on `all` and on each uplink in the
/// current network namespace. Values already in place are not rewritten.
/// Returns what changed.
pub fn apply_arp_hygiene(uplinks: &[String]) -> Result<Vec<SysctlChange>, NetlinkError> {
    apply_arp_hygiene_under(Path::new(IPV4_CONF), uplinks)
}

/// [`apply_arp_hygiene`] against another directory (for tests).
pub fn apply_arp_hygiene_under(
    conf: &Path,
    uplinks: &[String],
) -> Result<Vec<SysctlChange>, NetlinkError> {
    for uplink in uplinks {
        if let Some(reason) = invalid_name_reason(uplink) {
            return Err(NetlinkError::InvalidInterfaceName {
                interface: uplink.clone(),
                reason,
            });
        }
        if uplink == "all" || uplink == "default" || !conf.join(uplink).is_dir() {
            return Err(NetlinkError::UplinkNotFound {
                interface: uplink.clone(),
            });
        }
    }
    let mut changes = Vec::new();
    for target in std::iter::once("all").chain(uplinks.iter().map(String::as_str)) {
        for (name, value) in ARP_SETTINGS {
            let path = conf.join(target).join(name);
            let previous = std::fs::read_to_string(&path)
                .map_err(|source| NetlinkError::Sysctl {
                    path: path.clone(),
                    source,
                })?
                .trim()
                .to_string();
            if previous == value {
                continue;
            }
            std::fs::write(&path, value).map_err(|source| NetlinkError::Sysctl {
                path: path.clone(),
                source,
            })?;
            tracing::info!(path = %path.display(), previous, value, "ARP hygiene for service addresses");
            changes.push(SysctlChange {
                path,
                previous,
                value: value.to_string(),
            });
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_conf(interfaces: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for interface in interfaces {
            std::fs::create_dir(dir.path().join(interface)).unwrap();
            for (name, _) in ARP_SETTINGS {
                std::fs::write(dir.path().join(interface).join(name), "0\n").unwrap();
            }
        }
        dir
    }

    fn read(dir: &Path, interface: &str, name: &str) -> String {
        std::fs::read_to_string(dir.join(interface).join(name))
            .unwrap()
            .trim()
            .to_string()
    }

    #[test]
    fn arp_hygiene_sets_all_and_each_uplink_then_changes_nothing_on_a_second_run() {
        let conf = fake_conf(&["all", "eth0", "eth1", "eth2"]);
        let uplinks = vec!["eth0".to_string(), "eth1".to_string()];
        let changes = apply_arp_hygiene_under(conf.path(), &uplinks).unwrap();
        assert_eq!(changes.len(), 6);
        for interface in ["all", "eth0", "eth1"] {
            assert_eq!(read(conf.path(), interface, "arp_ignore"), "1");
            assert_eq!(read(conf.path(), interface, "arp_announce"), "2");
        }
        assert_eq!(
            read(conf.path(), "eth2", "arp_ignore"),
            "0",
            "an interface not named is untouched"
        );
        assert!(changes.iter().all(|c| c.previous == "0"));
        assert!(
            apply_arp_hygiene_under(conf.path(), &uplinks)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn arp_hygiene_names_an_uplink_that_does_not_exist_and_writes_nothing() {
        let conf = fake_conf(&["all", "eth0"]);
        let err =
            apply_arp_hygiene_under(conf.path(), &["eth0".into(), "eth9".into()]).unwrap_err();
        assert!(err.to_string().contains("eth9"), "{err}");
        assert_eq!(read(conf.path(), "all", "arp_ignore"), "0");
        let err = apply_arp_hygiene_under(conf.path(), &["../x".into()]).unwrap_err();
        assert!(err.to_string().contains("../x"), "{err}");
    }
}
