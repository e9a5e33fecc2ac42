//! Shared setup of the agent lab tests: an FRR router and a node running
//! the real `herald run` binary, on one link.
//!
//! ```text
//!   r1 (FRR: bgpd, bfdd)  eth1 192.0.2.1 ── veth ── eth1 192.0.2.2  h1 (herald run)
//! ```

#![allow(dead_code)]

use std::time::Duration;

use herald::status::StatusReport;
use herald_testnet::{Frr, Lab, Namespace, Process, wait_until};
use serde_json::Value;

pub const HERALD: &str = env!("CARGO_BIN_EXE_herald");
pub const ROUTER: &str = "192.0.2.1";
pub const NODE: &str = "192.0.2.2";
pub const ADMIN: &str = "127.0.0.1:9179";
/// Every wait in these tests is bounded by this.
pub const BOUND: Duration = Duration::from_secs(20);

/// The router and the node.
pub struct Pair {
    pub frr: Frr,
    pub node: Namespace,
}

pub fn pair(lab: &Lab) -> Pair {
    let r1 = lab.namespace("r1").unwrap();
    let h1 = lab.namespace("h1").unwrap();
    lab.veth(&r1, "eth1", &h1, "eth1").unwrap();
    r1.add_address("eth1", &format!("{ROUTER}/24")).unwrap();
    h1.add_address("eth1", &format!("{NODE}/24")).unwrap();
    Pair {
        frr: Frr::start(&r1).unwrap(),
        node: h1,
    }
}

/// FRR as the ToR: eBGP AS 64512 to herald (AS 64601) with BFD at
/// `bfd_ms` x 3, graceful restart helper, and RFC 8326 local-preference 0
/// for 65535:0.
pub fn frr_config(bfd_ms: u64, neighbor_extra: &str) -> String {
    format!(
        "bfd
 profile fast
  transmit-interval {bfd_ms}
  receive-interval {bfd_ms}
  detect-multiplier 3
 exit
exit
bgp community-list standard GSHUT permit graceful-shutdown
route-map FROM-HERALD permit 10
 match community GSHUT
 set local-preference 0
exit
route-map FROM-HERALD permit 20
exit
router bgp 64512
 bgp router-id {ROUTER}
 no bgp ebgp-requires-policy
 bgp graceful-restart
 neighbor {NODE} remote-as 64601
 neighbor {NODE} timers connect 1
 neighbor {NODE} bfd
 neighbor {NODE} bfd profile fast
{neighbor_extra}
 address-family ipv4 unicast
  neighbor {NODE} activate
  neighbor {NODE} route-map FROM-HERALD in
 exit-address-family
exit
"
    )
}

/// [`frr_config`] with a BFD peer that bgpd does not follow: herald's own
/// reaction to BFD (a Cease) is then the only thing that closes BGP.
pub fn frr_config_bfd_apart(bfd_ms: u64) -> String {
    frr_config(bfd_ms, "")
        .replace(
            &format!(" neighbor {NODE} bfd\n neighbor {NODE} bfd profile fast\n"),
            "",
        )
        .replacen(
            "exit\nexit\n",
            &format!("exit\n peer {NODE}\n  profile fast\n exit\nexit\n"),
            1,
        )
}

/// FRR's `show bgp neighbors NODE json` for herald.
pub fn frr_neighbor(frr: &Frr) -> Value {
    frr.vtysh_json(&format!("show bgp neighbors {NODE} json"))
        .map(|v| v[NODE].clone())
        .unwrap_or(Value::Null)
}

/// herald's config: one peer (r1) with BFD at `bfd_ms` x 3.
pub fn herald_config(bfd_ms: u64, extra: &str, peer_extra: &str) -> String {
    format!(
        "asn: 64601
router_id: {NODE}
interface: lo
admin_listen: {ADMIN}
pools:
  - name: public
    cidrs: [203.0.113.0/24]
    communities: [\"65000:100\"]
peers:
  - name: r1
    address: {ROUTER}
    asn: 64512
    hold_time: 9s
    graceful_restart: {{enabled: true, restart_time: 120s}}
    bfd: {{enabled: true, min_rx: {bfd_ms}ms, min_tx: {bfd_ms}ms, multiplier: 3{peer_extra}}}
{extra}"
    )
}

/// The admin socket of the herald in `node` (in the node's own directory,
/// so agents in parallel tests never meet).
pub fn admin_socket(node: &Namespace) -> String {
    node.dir().join("admin.sock").display().to_string()
}

/// Writes the files into the node's directory and starts `herald run`.
pub fn start_herald(node: &Namespace, config: &str, services: &str) -> Process {
    let dir = node.dir();
    std::fs::write(dir.join("herald.yaml"), config).unwrap();
    std::fs::write(dir.join("services.yaml"), services).unwrap();
    let config = dir.join("herald.yaml").display().to_string();
    let services = dir.join("services.yaml").display().to_string();
    node.spawn(
        "herald",
        HERALD,
        &[
            "run",
            "--config",
            &config,
            "--services",
            &services,
            "--node-name",
            "h1",
            "--admin-socket",
            &admin_socket(node),
        ],
    )
    .unwrap()
}

/// `herald status --json` against the agent in `node`.
pub fn status(node: &Namespace) -> Result<StatusReport, String> {
    let out = node
        .exec(
            HERALD,
            &["status", "--json", "--admin-socket", &admin_socket(node)],
        )
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))
}

/// The first path FRR has for `prefix`, once there is one.
pub fn frr_path(frr: &Frr, prefix: &str) -> Result<Value, String> {
    let v = frr
        .vtysh_json(&format!("show bgp ipv4 unicast {prefix} json"))
        .map_err(|e| e.to_string())?;
    match v["paths"].get(0) {
        Some(path) => Ok(path.clone()),
        None => Err(v.to_string()),
    }
}

/// Waits until FRR has no path for `prefix`.
pub fn wait_withdrawn(frr: &Frr, prefix: &str, timeout: Duration) {
    wait_until(
        timeout,
        Duration::from_millis(100),
        &format!("{prefix} withdrawn from FRR"),
        || match frr_path(frr, prefix) {
            Ok(path) => Err(path.to_string()),
            Err(_) => Ok(()),
        },
    )
    .unwrap();
}

/// Waits until `check` holds for FRR's path of `prefix`; returns it.
pub fn wait_path(frr: &Frr, prefix: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_until(BOUND, Duration::from_millis(100), what, || {
        let path = frr_path(frr, prefix)?;
        if check(&path) {
            Ok(path)
        } else {
            Err(path.to_string())
        }
    })
    .unwrap()
}

/// The standard communities of a path, as FRR lists them.
pub fn communities(path: &Value) -> String {
    path["community"]["string"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Is `address` on `lo` in the node?
pub fn on_lo(node: &Namespace, address: &str) -> bool {
    node.ip(&["-o", "addr", "show", "dev", "lo"])
        .unwrap_or_default()
        .contains(&format!(" {address}/"))
}
