//! Leftovers of labs whose test process died without tearing down (SIGKILL,
//! abort): namespaces and directories named `hlab-<pid>-...` whose `<pid>` no
//! longer exists. [`cleanup_stale`] removes them; [`crate::Lab::start`] calls
//! it, so a hard-killed run is cleaned by the next one. Labs of live processes
//! (other tests running in parallel) are never touched.

use std::path::Path;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::command;
use crate::lab::NAME_PREFIX;

/// The owning PID encoded in a harness name (`hlab-<pid>-...`), if it is one.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let pid = rest.split('-').next()?;
    pid.parse().ok()
}

fn is_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Kills every process left in namespace `name` (by PID, as listed by
/// `ip netns pids`), then deletes the namespace. Errors are ignored: the
/// namespace may already be gone.
pub(crate) fn remove_namespace(name: &str) {
    if let Ok(pids) = command::run("ip", &["netns", "pids", name]) {
        for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    if let Err(e) = command::run("ip", &["netns", "del", name]) {
        eprintln!("lab: could not delete namespace {name}: {e}");
    }
}

/// The names in `ip netns list` output (`name (id: 3)` or just `name`).
pub fn parse_netns_list(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Removes harness namespaces and lab directories whose owning process no
/// longer exists; returns the names removed.
pub fn cleanup_stale() -> Vec<String> {
    let mut removed = Vec::new();
    let listed = command::run("ip", &["netns", "list"]).unwrap_or_default();
    for name in parse_netns_list(&listed) {
        if owner_pid(&name).is_some_and(|pid| !is_alive(pid)) {
            remove_namespace(&name);
            removed.push(name);
        }
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner_pid(&name).is_some_and(|pid| !is_alive(pid))
                && std::fs::remove_dir_all(entry.path()).is_ok()
            {
                removed.push(entry.path().display().to_string());
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_reads_the_pid_from_harness_names_only() {
        assert_eq!(owner_pid("hlab-4242-0-r1"), Some(4242));
        assert_eq!(owner_pid("hlab-4242-0"), Some(4242));
        assert_eq!(owner_pid("r1"), None);
        assert_eq!(owner_pid("hlab-x-0-r1"), None);
        assert_eq!(owner_pid("frr-hlab-1-0"), None);
    }

    #[test]
    fn parse_netns_list_takes_the_name_before_the_id() {
        let listed = "hlab-1-0-r1 (id: 3)\nother\n\n";
        assert_eq!(parse_netns_list(listed), vec!["hlab-1-0-r1", "other"]);
    }

    #[test]
    fn own_process_is_alive_and_is_never_stale() {
        assert!(is_alive(std::process::id()));
    }
}
