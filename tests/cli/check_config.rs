//! `herald check-config` as a user runs it: the built binary, real files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use herald::config::Config;
use herald::services::ServicesFile;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

fn check_config(args: &[&Path]) -> Output {
    Command::new(HERALD)
        .arg("check-config")
        .arg(args[0])
        .args(args[1..].iter().flat_map(|p| [Path::new("--services"), p]))
        .output()
        .expect("run herald")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `content` to a fresh file in `dir` and returns its path.
fn write(dir: &tempfile::TempDir, name: &str, content: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn the_product_example_is_accepted_and_printed_with_defaults() {
    let output = check_config(&[&example("herald.yaml")]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "stderr:\n{stderr}");
    // The printed effective config is itself a valid config equal to the file.
    let printed = Config::from_yaml(&stdout).expect("stdout is a valid config");
    assert_eq!(printed, Config::load(&example("herald.yaml")).unwrap());
    assert!(
        stdout.contains("strict: false"),
        "defaults are filled in:\n{stdout}"
    );
    // /etc/herald/r1.key does not exist here: a warning, not an error.
    assert!(
        stderr.contains("warning:") && stderr.contains("peers[0].password_file"),
        "{stderr}"
    );
    assert!(!stderr.contains("error:"), "{stderr}");
}

#[test]
fn the_product_example_services_file_is_accepted() {
    let output = check_config(&[&example("herald.yaml"), &example("services.yaml")]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let services_part = stdout.split("\n---\n").nth(1).expect("a second document");
    let printed = ServicesFile::from_yaml(services_part).expect("a valid services file");
    assert_eq!(printed.services[0].name, "web");
    assert!(services_part.contains("timeout: 1s"), "{services_part}");
}

/// (replace this, with this, the field path expected on stderr)
const CONFIG_CASES: &[(&str, &str, &str)] = &[
    ("asn: 64601", "asn: 23456", "asn: "),
    ("asn: 64601", "asn: 0", "asn: "),
    ("router_id: 192.0.2.11", "router_id: 0.0.0.0", "router_id: "),
    (
        "interface: lo",
        "interface: a-very-long-name0",
        "interface: ",
    ),
    ("127.0.0.1:9179", "127.0.0.1:0", "admin_listen: "),
    ("203.0.113.0/24,", "203.0.113.1/24,", "pools[0].cidrs[0]: "),
    (
        "[\"65000:100\"]",
        "[\"65535:0\"]",
        "pools[0].communities[0]: ",
    ),
    // Pools that can never hold service addresses, each with its reason.
    (
        "203.0.113.0/24,",
        "0.0.0.0/0,",
        "pools[0].cidrs[0]: 0.0.0.0/0 is a whole address family",
    ),
    (
        "\"2001:db8:ffff::/64\"",
        "\"::/0\"",
        "pools[0].cidrs[1]: ::/0 is a whole address family",
    ),
    (
        "203.0.113.0/24,",
        "224.0.0.0/4,",
        "pools[0].cidrs[0]: 224.0.0.0/4 overlaps 224.0.0.0/4, which is multicast",
    ),
    (
        "203.0.113.0/24,",
        "127.0.0.0/8,",
        "pools[0].cidrs[0]: 127.0.0.0/8 overlaps 127.0.0.0/8, which is loopback",
    ),
    (
        "203.0.113.0/24,",
        "169.254.0.0/16,",
        "pools[0].cidrs[0]: 169.254.0.0/16 overlaps 169.254.0.0/16, which is link-local",
    ),
    (
        "\"2001:db8:ffff::/64\"",
        "\"::/128\"",
        "pools[0].cidrs[1]: ::/128 overlaps ::/128, which is the unspecified address",
    ),
    // A pool holding a peer's address, or this node's router id.
    (
        "address: 192.0.2.1 ",
        "address: 203.0.113.1 ",
        "pools[0].cidrs[0]: 203.0.113.0/24 of pool \"public\" holds 203.0.113.1, a peer's address (peers[0].address)",
    ),
    (
        "router_id: 192.0.2.11",
        "router_id: 203.0.113.11",
        "pools[0].cidrs[0]: 203.0.113.0/24 of pool \"public\" holds 203.0.113.11, this node's router id",
    ),
    ("asn: 64512", "asn: 23456", "peers[0].asn: "),
    ("port: 179", "port: 0", "peers[0].port: "),
    ("hold_time: 9s", "hold_time: 2s", "peers[0].hold_time: "),
    ("hold_time: 9s", "hold_time: 1500ms", "peers[0].hold_time: "),
    (
        "ebgp_multihop: 1",
        "ebgp_multihop: 0",
        "peers[0].ebgp_multihop: ",
    ),
    (
        "restart_time: 120s",
        "restart_time: 4096s",
        "peers[0].graceful_restart.restart_time: ",
    ),
    ("min_rx: 50ms", "min_rx: 5ms", "peers[0].bfd.min_rx: "),
    ("min_tx: 50ms", "min_tx: 61s", "peers[0].bfd.min_tx: "),
    (
        "multiplier: 3",
        "multiplier: 1",
        "peers[0].bfd.multiplier: ",
    ),
    ("gshut_wait: 15s", "gshut_wait: 11m", "drain.gshut_wait: "),
    (
        "node_selector: {}",
        "node_selector: {\"bad key\": x}",
        "peers[0].node_selector.bad key: ",
    ),
    // Parse errors: the path and the line.
    ("min_tx: 50ms", "min_tx: 5x", "peers[0].bfd.min_tx: "),
    (
        "address: 192.0.2.1",
        "address: router1",
        "peers[0].address: ",
    ),
    (
        "ttl_security: false",
        "ttl_securty: false",
        "peers[0].ttl_securty: ",
    ),
    ("asn: 64601", "asn: many", "asn: "),
];

#[test]
fn each_invalid_config_is_refused_with_the_field_path() {
    let base = std::fs::read_to_string(example("herald.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (from, to, path) in CONFIG_CASES {
        assert!(base.contains(from), "{from:?} is not in the example");
        let file = write(&dir, "herald.yaml", &base.replacen(from, to, 1));
        let output = check_config(&[&file]);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{to:?} was accepted");
        assert_eq!(output.status.code(), Some(1), "{to:?}");
        assert!(
            stderr.contains(&format!("error: {}: {path}", file.display())),
            "{to:?}: expected {path:?} in:\n{stderr}"
        );
        assert!(output.stdout.is_empty(), "{to:?}: nothing on stdout");
    }
}

#[test]
fn every_error_is_listed_not_only_the_first() {
    let base = std::fs::read_to_string(example("herald.yaml")).unwrap();
    let extra_peers = "  - name: r1\n    address: 192.0.2.1\n    asn: 64512\n  \
                       - name: r3\n    address: 192.0.2.3\n    asn: 64512\n    \
                       bfd: {min_rx: 9ms}\ndrain:";
    let broken = base
        .replacen("asn: 64601", "asn: 23456", 1)
        .replacen("hold_time: 9s", "hold_time: 1s", 1)
        .replacen("min_rx: 50ms", "min_rx: 1ms", 1)
        .replacen("drain:", extra_peers, 1);
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "herald.yaml", &broken);
    let output = check_config(&[&file]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    for path in [
        "asn: ",
        "peers[0].hold_time: ",
        "peers[0].bfd.min_rx: ",
        "peers[1].name: ",
        "peers[1].address: ",
        "peers[2].bfd.min_rx: must be at least 10ms",
    ] {
        assert!(stderr.contains(path), "{path:?} missing from:\n{stderr}");
    }
    assert!(stderr.contains("herald: 6 errors found"), "{stderr}");
}

#[test]
fn overlapping_pools_name_both_pools() {
    let base = std::fs::read_to_string(example("herald.yaml")).unwrap();
    let broken = base.replacen(
        "peers:",
        "  - name: inner\n    cidrs: [203.0.113.128/25]\npeers:",
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let output = check_config(&[&write(&dir, "herald.yaml", &broken)]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("pools[1].cidrs[0]: 203.0.113.128/25 of pool \"inner\" overlaps 203.0.113.0/24 of pool \"public\""),
        "{stderr}"
    );
}

/// (replace this, with this, the field path expected on stderr)
const SERVICES_CASES: &[(&str, &str, &str)] = &[
    ("name: web", "name: \"\"", "services[0].name: "),
    (
        "addresses: [203.0.113.10, \"2001:db8:ffff::10\"]",
        "addresses: []",
        "services[0].addresses: ",
    ),
    (
        "addresses: [203.0.113.10, \"2001:db8:ffff::10\"]",
        "addresses: [203.0.113.10, 203.0.113.10]",
        "services[0].addresses[1]: ",
    ),
    (
        "command: [\"/bin/sh\", \"-c\", \"test -e /run/web.ok\"]",
        "command: []",
        "services[0].check.command: ",
    ),
    (
        "interval: 1s",
        "interval: 0s",
        "services[0].check.interval: ",
    ),
    (
        "interval: 1s",
        "interval: 1s\n      timeout: 3s",
        "services[0].check.timeout: ",
    ),
    ("rise: 2", "rise: 0", "services[0].check.rise: "),
    ("fall: 2", "fall: 0", "services[0].check.fall: "),
    (
        "addresses: [203.0.113.10,",
        "addresses: [203.0.113.300,",
        "services[0].addresses[0]: ",
    ),
    ("fall: 2", "fail: 2", "services[0].check.fail: "),
];

#[test]
fn each_invalid_services_file_is_refused_with_the_field_path() {
    let base = std::fs::read_to_string(example("services.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (from, to, path) in SERVICES_CASES {
        assert!(base.contains(from), "{from:?} is not in the example");
        let file = write(&dir, "services.yaml", &base.replacen(from, to, 1));
        let output = check_config(&[&example("herald.yaml"), &file]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{to:?} was accepted");
        assert!(
            stderr.contains(&format!("error: {}: {path}", file.display())),
            "{to:?}: expected {path:?} in:\n{stderr}"
        );
    }
}

#[test]
fn a_duplicate_service_and_an_address_outside_the_pools() {
    let base = std::fs::read_to_string(example("services.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let duplicate = base.clone() + "  - name: web\n    addresses: [203.0.113.10]\n";
    let output = check_config(&[
        &example("herald.yaml"),
        &write(&dir, "dup.yaml", &duplicate),
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("services[1].name: "), "{stderr}");
    assert!(stderr.contains("services[1].addresses[0]: "), "{stderr}");

    let outside = base + "  - name: api\n    addresses: [198.51.100.7]\n";
    let output = check_config(&[
        &example("herald.yaml"),
        &write(&dir, "outside.yaml", &outside),
    ]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning:")
            && stderr.contains("services[1].addresses[0]: 198.51.100.7 is outside every pool"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let output = check_config(&[Path::new("/nonexistent/herald.yaml")]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("cannot read /nonexistent/herald.yaml"),
        "{stderr}"
    );
}

#[test]
fn version_prints_the_crate_version() {
    let output = Command::new(HERALD).arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        text(&output.stdout).trim(),
        format!("herald {}", env!("CARGO_PKG_VERSION"))
    );
}
