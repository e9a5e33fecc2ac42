//! Least privilege, measured: `herald run` as a non-root user (uid and gid
//! 65532, no supplementary groups) holding only the capabilities the
//! DaemonSet grants, as ambient capabilities (`setpriv`), against FRR. The
//! BGP session comes up, BFD comes Up (single-hop, bound to the interface),
//! the address is placed and announced, and the BFD thread gets its
//! priority; without NET_ADMIN the address cannot be placed, which shows
//! the test really runs without root.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::support::*;
use herald_testnet::{Namespace, Process, lab_or_skip, wait_until};

const SERVICES: &str = "services:
  - name: web
    addresses: [203.0.113.10]
";

/// What deploy/base/daemonset.yaml adds (tests/deploy_manifests.rs checks
/// the manifest against the same list).
pub const DEPLOY_CAPABILITIES: &[&str] = &["NET_ADMIN", "NET_BIND_SERVICE", "SYS_NICE"];

const UID: u32 = 65532;

/// How the non-root process gets its capabilities.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grant {
    /// Ambient capabilities (`setpriv --ambient-caps`).
    Ambient,
    /// File capabilities on a copy of the binary (`setcap ...+ep`), what
    /// the image carries; the bounding set (the container's
    /// `capabilities.add`) limits them.
    File,
}

/// Starts herald as uid 65532 with `caps`, its files in a directory of its
/// own.
fn start_unprivileged(node: &Namespace, caps: &[&str], grant: Grant) -> Process {
    let dir = node.dir().join("nonroot");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("herald.yaml"),
        herald_config(300, "drain:\n  gshut_wait: 1s\n", ""),
    )
    .unwrap();
    std::fs::write(dir.join("services.yaml"), SERVICES).unwrap();
    for path in [
        dir.join("herald.yaml"),
        dir.join("services.yaml"),
        dir.clone(),
    ] {
        std::os::unix::fs::chown(&path, Some(UID), Some(UID)).unwrap();
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let list: Vec<String> = caps
        .iter()
        .map(|c| format!("+{}", c.to_lowercase()))
        .collect();
    let list = list.join(",");
    let config = dir.join("herald.yaml").display().to_string();
    let services = dir.join("services.yaml").display().to_string();
    let socket = dir.join("run/admin.sock").display().to_string();
    let uid = UID.to_string();
    // Inheritable and ambient must both hold a capability for it to survive
    // the exec; the bounding set keeps nothing else.
    let set = if list.is_empty() {
        "-all".to_string()
    } else {
        format!("-all,{list}")
    };
    let mut args: Vec<String> = vec![
        "--reuid".into(),
        uid.clone(),
        "--regid".into(),
        uid,
        "--clear-groups".into(),
    ];
    let mut binary = env!("CARGO_BIN_EXE_herald").to_string();
    match grant {
        Grant::Ambient => args.extend([
            "--inh-caps".into(),
            set.clone(),
            "--ambient-caps".into(),
            set.clone(),
            "--bounding-set".into(),
            set,
        ]),
        Grant::File => {
            let bin_dir = node.dir().join("bin");
            std::fs::create_dir_all(&bin_dir).unwrap();
            let copy = bin_dir.join("herald");
            std::fs::copy(&binary, &copy).unwrap();
            let file_caps = format!(
                "{}+ep",
                caps.iter()
                    .map(|c| format!("cap_{}", c.to_lowercase()))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let status = std::process::Command::new("setcap")
                .arg(&file_caps)
                .arg(&copy)
                .status()
                .expect("setcap (libcap2-bin)");
            assert!(status.success(), "setcap {file_caps}");
            binary = copy.display().to_string();
            args.extend([
                "--inh-caps".into(),
                "-all".into(),
                "--bounding-set".into(),
                set,
            ]);
        }
    }
    args.extend(
        [
            binary.as_str(),
            "run",
            "--config",
            &config,
            "--services",
            &services,
            "--node-name",
            "h1",
            "--admin-socket",
            &socket,
        ]
        .map(str::to_string),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    node.spawn("herald", "setpriv", &args).unwrap()
}

#[test]
fn herald_runs_as_non_root_with_only_the_deployed_capabilities() {
    for grant in [Grant::Ambient, Grant::File] {
        runs_unprivileged(grant);
    }
}

fn runs_unprivileged(grant: Grant) {
    let lab = lab_or_skip!();
    let Pair { frr, node } = pair(&lab);
    frr.configure(&frr_config(300, "")).unwrap();
    let herald = start_unprivileged(&node, DEPLOY_CAPABILITIES, grant);
    frr.wait_bgp_established(NODE, BOUND)
        .unwrap_or_else(|e| panic!("{e}: {}", herald.log()));
    frr.wait_bfd_up(NODE, BOUND)
        .unwrap_or_else(|e| panic!("{e}: {}", herald.log()));
    wait_path(&frr, "203.0.113.10/32", "203.0.113.10 announced", |_| true);
    assert!(on_lo(&node, "203.0.113.10"));
    let log = herald.log();
    assert!(
        !log.contains("cannot raise the BFD thread's priority"),
        "{log}"
    );
    // Exactly the deployed capabilities are effective, and it is not root.
    assert_eq!(effective_capabilities(&herald), DEPLOY_CAPABILITIES_MASK);
    let status = std::fs::read_to_string(format!("/proc/{}/status", herald.pid())).unwrap();
    assert!(
        status.contains(&format!("Uid:\t{UID}\t{UID}\t{UID}\t{UID}")),
        "{status}"
    );
    herald.terminate().unwrap();
}

#[test]
fn without_net_admin_the_address_cannot_be_placed() {
    cannot_place(&["NET_BIND_SERVICE", "SYS_NICE"], Grant::Ambient);
}

/// `CapEff` of the process, as /proc shows it (hex).
fn effective_capabilities(process: &Process) -> String {
    let status = std::fs::read_to_string(format!("/proc/{}/status", process.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:\t"))
        .unwrap()
        .to_string()
}

/// NET_ADMIN (12), NET_BIND_SERVICE (10), SYS_NICE (23).
const DEPLOY_CAPABILITIES_MASK: &str = "0000000000801400";

fn cannot_place(caps: &[&str], grant: Grant) {
    let lab = lab_or_skip!();
    let Pair { frr, node } = pair(&lab);
    frr.configure(&frr_config(300, "")).unwrap();
    let herald = start_unprivileged(&node, caps, grant);
    // herald refuses to start (netlink needs NET_ADMIN) or runs without
    // the address: either way 203.0.113.10 is never placed or announced.
    let outcome = wait_until(BOUND, Duration::from_millis(200), "herald gives up", || {
        if !herald.is_running() {
            return Ok("exited".to_string());
        }
        let log = herald.log();
        if log.contains("ermission") || log.contains("not permitted") {
            Ok(log)
        } else {
            Err(log)
        }
    })
    .unwrap();
    assert!(!on_lo(&node, "203.0.113.10"), "{outcome}");
    assert!(frr_path(&frr, "203.0.113.10/32").is_err(), "{outcome}");
    if herald.is_running() {
        herald.terminate().unwrap();
    }
}
