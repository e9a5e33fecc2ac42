//! herald's service addresses across a crash and a restart: the address
//! owner (examples/netlink_owner.rs: the address task alone, without BGP or a
//! source, so the test watches netlink and nothing else) runs inside a
//! network namespace, is SIGKILLed and started again, and the addresses
//! never leave the interface.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::{Netns, additions, deletions};
use nix::sys::signal::Signal;

const ADDRESSES: [&str; 2] = ["203.0.113.10", "2001:db8::10"];

/// target/<profile>/examples/netlink_owner, built on demand when this test
/// was built alone and the example is missing or stale (`cargo test`
/// without filters builds examples anyway).
fn owner_binary() -> PathBuf {
    // One build at a time when the tests run in parallel.
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _build = BUILD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = profile_dir.join("examples").join("netlink_owner");
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    // Missing, or older than this test (so older than the library it uses).
    if modified(&path) < modified(&exe) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        // Without the CARGO_* variables cargo sets for this test process:
        // build scripts that watch them would rebuild their crates twice.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with("CARGO_") && name != "CARGO_HOME" && name != "CARGO_TARGET_DIR" {
                build.env_remove(name);
            }
        }
        let status = build
            .args(["build", "--example", "netlink_owner"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build --example netlink_owner");
        assert!(
            status.success(),
            "cargo build --example netlink_owner failed"
        );
    }
    assert!(path.exists(), "{} missing", path.display());
    path
}

fn ready_status(line: &str) -> serde_json::Value {
    serde_json::from_str(line.trim_start_matches("ready ")).expect("status JSON")
}

#[test]
fn sigkill_and_restart_never_remove_the_addresses() {
    let Some(ns) = Netns::create("restart") else {
        return;
    };
    let binary = owner_binary();
    let binary = binary.to_str().unwrap();
    let args = ["lo", ADDRESSES[0], ADDRESSES[1]];
    let recording = ns.record();

    let mut first = ns.spawn(binary, &args);
    let status = ready_status(&first.wait_for_line("ready", Duration::from_secs(30)));
    assert_eq!(status["adds"], 2, "{status}");
    first.signal_and_wait(Signal::SIGKILL, Duration::from_secs(10));
    for address in ADDRESSES {
        assert!(ns.has("lo", address), "{address} survives SIGKILL");
    }

    let mut second = ns.spawn(binary, &args);
    let status = ready_status(&second.wait_for_line("ready", Duration::from_secs(30)));
    assert_eq!(
        status["netlink_writes"], 0,
        "adopted without a write: {status}"
    );
    assert_eq!(
        status["addresses"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    let exit = second.signal_and_wait(Signal::SIGTERM, Duration::from_secs(10));
    assert!(exit.success(), "SIGTERM is a clean stop: {exit:?}");
    for address in ADDRESSES {
        assert!(ns.has("lo", address), "{address} survives SIGTERM");
    }

    let events = recording.finish(&ns);
    for address in ADDRESSES {
        assert!(
            additions(&events, address) >= 1,
            "the recording saw {address} added"
        );
        assert_eq!(
            deletions(&events, address),
            0,
            "{address} disappeared in between"
        );
    }
}

#[test]
fn a_restarted_owner_with_fewer_addresses_removes_only_the_withdrawn_one() {
    let Some(ns) = Netns::create("withdraw") else {
        return;
    };
    let binary = owner_binary();
    let binary = binary.to_str().unwrap();
    let mut first = ns.spawn(binary, &["lo", ADDRESSES[0], ADDRESSES[1]]);
    first.wait_for_line("ready", Duration::from_secs(30));
    let exit = first.signal_and_wait(Signal::SIGTERM, Duration::from_secs(10));
    assert!(exit.success(), "SIGTERM is a clean stop: {exit:?}");

    let recording = ns.record();
    let mut second = ns.spawn(binary, &["lo", ADDRESSES[0]]);
    let status = ready_status(&second.wait_for_line("ready", Duration::from_secs(30)));
    assert_eq!(
        (status["adds"].as_u64(), status["removes"].as_u64()),
        (Some(0), Some(1)),
        "{status}"
    );
    let exit = second.signal_and_wait(Signal::SIGTERM, Duration::from_secs(10));
    assert!(exit.success(), "SIGTERM is a clean stop: {exit:?}");
    let events = recording.finish(&ns);
    assert_eq!(deletions(&events, ADDRESSES[0]), 0);
    assert_eq!(deletions(&events, ADDRESSES[1]), 1);
    assert!(ns.has("lo", ADDRESSES[0]));
    assert!(!ns.has("lo", ADDRESSES[1]));
}
