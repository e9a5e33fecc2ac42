use super::*;
use crate::topology::shipped_dir;

/// A directory with the bind sources the test topologies refer to.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "r1/frr.conf",
        "r1/daemons",
        "b1/bird.conf",
        "g1/gobgpd.conf",
        "h/x.yaml",
    ] {
        let path = dir.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }
    dir
}

const BASE: &str = r#"
name: t
topology:
  nodes:
    sw:
      kind: bridge
    r1:
      kind: linux
      image: quay.io/frrouting/frr:8.4.4
      binds: [r1/frr.conf:/etc/frr/frr.conf, "r1/daemons:/etc/frr/daemons:ro"]
      exec: [ip addr add 192.0.2.1/24 dev eth1, sysctl -w net.ipv4.ip_forward=1]
    b1:
      kind: linux
      image: pierky/bird:2.0.8
      binds: [b1/bird.conf:/etc/bird/bird.conf]
    g1:
      kind: linux
      image: jauderho/gobgp:v3.10.0
      binds: [g1/gobgpd.conf:/etc/gobgp/gobgpd.conf]
    h:
      kind: linux
      image: nicolaka/netshoot:v0.13
      binds: [h/x.yaml:/etc/herald/config.yaml]
      env: {A: 1, B: "two", C: true}
      labels: {role: node}
  links:
    - endpoints: ["r1:eth1", "sw:p-r1"]
    - endpoints: ["b1:eth1", "sw:p-b1"]
    - endpoints: ["g1:eth1", "h:eth1"]
"#;

fn parse_in(dir: &tempfile::TempDir, text: &str) -> Result<Topology> {
    Topology::parse(&dir.path().join("t.clab.yml"), text)
}

/// Parses BASE with `from` replaced by `to`, expecting an error that
/// contains every one of `expected` and the file name.
fn rejects(from: &str, to: &str, expected: &[&str]) {
    let dir = fixture();
    assert!(BASE.contains(from), "fixture lacks {from:?}");
    let text = BASE.replacen(from, to, 1);
    let err = parse_in(&dir, &text)
        .expect_err("should be rejected")
        .to_string();
    assert!(err.contains("t.clab.yml"), "no file name in: {err}");
    for part in expected {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
}

#[test]
fn shipped_topologies_all_parse() {
    let mut seen = 0;
    for entry in std::fs::read_dir(shipped_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".clab.yml") {
            Topology::load(&path).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(
        seen >= 3,
        "expected bfd-pair, ecmp3 and two-tors, found {seen} topologies"
    );
}

#[test]
fn bfd_pair_is_an_frr_router_and_a_bird_node_on_a_bridge() {
    let topo = Topology::shipped("bfd-pair").unwrap();
    assert_eq!(topo.name, "bfd-pair");
    assert!(matches!(
        topo.node("r1").unwrap().daemon,
        Daemon::Frr { .. }
    ));
    assert!(matches!(
        topo.node("b1").unwrap().daemon,
        Daemon::Bird { .. }
    ));
    assert_eq!(topo.node("br-bfdpair").unwrap().kind, NodeKind::Bridge);
    assert_eq!(topo.links.len(), 2);
}

/// The herald nodes of a shipped topology: each runs `herald run` with its
/// own config and the shared services file, both bound from the
/// topology's folder (so the lab runs what containerlab would).
fn herald_nodes(topo: &Topology) -> Vec<&Node> {
    let speakers: Vec<&Node> = topo
        .nodes
        .values()
        .filter(|n| n.labels.get("role").map(String::as_str) == Some("node"))
        .collect();
    for node in &speakers {
        let args = node.herald_args().expect("a herald node");
        let config = node.bind_source("/etc/herald/herald.yaml").unwrap();
        let services = node.bind_source("/etc/herald/services.yaml").unwrap();
        assert!(config.ends_with(format!("{}/herald.yaml", node.name)));
        let expected = [
            "run".to_string(),
            "--config".into(),
            config.display().to_string(),
            "--services".into(),
            services.display().to_string(),
            "--node-name".into(),
            node.name.clone(),
        ];
        assert_eq!(args, expected, "{}", node.name);
    }
    speakers
}

#[test]
fn ecmp3_has_three_herald_nodes_a_router_a_client_and_an_api_host() {
    let topo = Topology::shipped("ecmp3").unwrap();
    assert_eq!(herald_nodes(&topo).len(), 3);
    assert!(matches!(
        topo.node("r1").unwrap().daemon,
        Daemon::Frr { .. }
    ));
    assert!(topo.node("client").is_some());
    assert_eq!(topo.node("api").unwrap().daemon, Daemon::None);
    assert_eq!(topo.links.len(), 6);
}

#[test]
fn two_tors_has_two_frr_routers_and_three_herald_nodes_on_one_bridge() {
    let topo = Topology::shipped("two-tors").unwrap();
    assert_eq!(herald_nodes(&topo).len(), 3);
    for router in ["r1", "r2"] {
        assert!(matches!(
            topo.node(router).unwrap().daemon,
            Daemon::Frr { .. }
        ));
    }
    assert_eq!(topo.node("br-2tor").unwrap().kind, NodeKind::Bridge);
    assert_eq!(topo.links.len(), 7);
}

#[test]
fn a_herald_node_takes_its_arguments_from_cmd_with_bind_targets_mapped() {
    let dir = fixture();
    let text = BASE.replacen(
        "      image: nicolaka/netshoot:v0.13\n",
        "      image: registry.example/herald-lab:0.1.0\n      cmd: run --config /etc/herald/config.yaml --node-name h\n",
        1,
    );
    let topo = parse_in(&dir, &text).unwrap();
    let h = topo.node("h").unwrap();
    assert_eq!(
        h.daemon,
        Daemon::Herald {
            args: [
                "run",
                "--config",
                "/etc/herald/config.yaml",
                "--node-name",
                "h"
            ]
            .map(String::from)
            .to_vec()
        }
    );
    let config = dir.path().join("h/x.yaml").display().to_string();
    assert_eq!(
        h.herald_args().unwrap(),
        ["run", "--config", config.as_str(), "--node-name", "h"]
    );
    assert_eq!(topo.node("r1").unwrap().herald_args(), None);
}

#[test]
fn a_herald_node_needs_a_cmd_that_runs_herald_and_only_herald_takes_one() {
    rejects(
        "      image: nicolaka/netshoot:v0.13\n",
        "      image: herald:0.1.0\n",
        &["nodes.h", "cmd", "herald's arguments"],
    );
    rejects(
        "      image: nicolaka/netshoot:v0.13\n",
        "      image: herald:0.1.0\n      cmd: status\n",
        &["nodes.h", "cmd `status`", "run"],
    );
    rejects(
        "      image: nicolaka/netshoot:v0.13\n",
        "      image: nicolaka/netshoot:v0.13\n      cmd: run\n",
        &["nodes.h", "only herald nodes take a cmd"],
    );
}

#[test]
fn the_fixture_parses_with_daemons_binds_env_and_exec() {
    let dir = fixture();
    let topo = parse_in(&dir, BASE).unwrap();
    let r1 = topo.node("r1").unwrap();
    assert_eq!(
        r1.daemon,
        Daemon::Frr {
            config: dir.path().join("r1/frr.conf")
        }
    );
    assert!(r1.binds[1].read_only);
    assert_eq!(
        r1.exec[0],
        ["ip", "addr", "add", "192.0.2.1/24", "dev", "eth1"]
    );
    assert!(matches!(
        topo.node("g1").unwrap().daemon,
        Daemon::Gobgp { .. }
    ));
    let h = topo.node("h").unwrap();
    assert_eq!(h.daemon, Daemon::None);
    assert_eq!(h.env["A"], "1");
    assert_eq!(h.env["C"], "true");
    assert_eq!(
        h.bind_source("/etc/herald/config.yaml"),
        Some(dir.path().join("h/x.yaml").as_path())
    );
}

#[test]
fn rejects_an_unknown_top_level_key_such_as_mgmt() {
    rejects("name: t\n", "name: t\nmgmt: {network: lab}\n", &["mgmt"]);
}

#[test]
fn rejects_topology_kinds_and_defaults() {
    rejects(
        "  nodes:\n",
        "  kinds: {linux: {image: x}}\n  nodes:\n",
        &["kinds"],
    );
    rejects(
        "  nodes:\n",
        "  defaults: {kind: linux}\n  nodes:\n",
        &["defaults"],
    );
}

#[test]
fn rejects_node_keys_the_lab_cannot_honour() {
    for key in [
        "mgmt-ipv4: 172.20.20.2",
        "startup-config: x.cfg",
        "cmd: sleep 1",
        "sysctls: {a: 1}",
    ] {
        let name = key.split(':').next().unwrap();
        rejects(
            "      labels: {role: node}\n",
            &format!("      {key}\n"),
            &[name],
        );
    }
}

#[test]
fn rejects_an_unsupported_kind() {
    rejects(
        "kind: bridge",
        "kind: nokia_srlinux",
        &["sw", "nokia_srlinux", "linux", "bridge"],
    );
}

#[test]
fn rejects_a_linux_node_without_an_image() {
    rejects(
        "      image: nicolaka/netshoot:v0.13\n",
        "",
        &["h", "image"],
    );
}

#[test]
fn rejects_a_bridge_with_an_image() {
    rejects(
        "      kind: bridge\n",
        "      kind: bridge\n      image: x\n",
        &["sw", "bridge"],
    );
}

#[test]
fn rejects_exec_commands_other_than_ip_and_sysctl() {
    rejects(
        "sysctl -w net.ipv4.ip_forward=1",
        "vtysh -b",
        &["r1", "vtysh -b", "ip", "sysctl"],
    );
}

#[test]
fn rejects_an_unterminated_quote_in_exec() {
    rejects(
        "ip addr add 192.0.2.1/24 dev eth1",
        "ip link set 'eth1",
        &["r1", "quote"],
    );
}

#[test]
fn rejects_a_bind_whose_source_is_missing() {
    rejects(
        "b1/bird.conf:",
        "b1/missing.conf:",
        &["b1", "missing.conf", "does not exist"],
    );
}

#[test]
fn rejects_a_bind_with_an_unknown_mode() {
    rejects(
        "r1/daemons:/etc/frr/daemons:ro",
        "r1/daemons:/etc/frr/daemons:z",
        &["mode `z`"],
    );
}

#[test]
fn rejects_a_router_image_without_its_config_bind() {
    rejects(
        "binds: [r1/frr.conf:/etc/frr/frr.conf, ",
        "binds: [",
        &["r1", "/etc/frr/frr.conf"],
    );
    rejects(
        "b1/bird.conf:/etc/bird/bird.conf",
        "b1/bird.conf:/etc/bird.conf",
        &["b1", "/etc/bird.conf"],
    );
}

#[test]
fn rejects_the_extended_link_format() {
    rejects(
        "    - endpoints: [\"g1:eth1\", \"h:eth1\"]\n",
        "    - type: veth\n      endpoints: [\"g1:eth1\", \"h:eth1\"]\n",
        &["type"],
    );
}

#[test]
fn rejects_links_that_do_not_name_two_known_endpoints() {
    rejects(
        "[\"g1:eth1\", \"h:eth1\"]",
        "[\"g1:eth1\"]",
        &["links[2]", "exactly two"],
    );
    rejects(
        "\"h:eth1\"",
        "\"zz:eth1\"",
        &["links[2]", "no node named `zz`"],
    );
    rejects("\"h:eth1\"", "\"h\"", &["NODE:INTERFACE"]);
    rejects(
        "\"h:eth1\"",
        "\"h:an-interface-name-too-long\"",
        &["interface name"],
    );
}

#[test]
fn rejects_eth0_which_is_containerlab_management() {
    rejects("\"h:eth1\"", "\"h:eth0\"", &["eth0", "management"]);
}

#[test]
fn rejects_an_endpoint_used_twice() {
    rejects(
        "\"h:eth1\"",
        "\"r1:eth1\"",
        &["r1:eth1", "more than one link"],
    );
}

#[test]
fn rejects_env_values_that_are_not_scalars() {
    rejects("A: 1,", "A: [1],", &["env.A"]);
}

#[test]
fn split_words_handles_quotes_and_escapes() {
    assert_eq!(
        split_words("ip  addr add\t192.0.2.1/24").unwrap(),
        ["ip", "addr", "add", "192.0.2.1/24"]
    );
    assert_eq!(
        split_words(r#"a 'b c' "d \"e\"" f\ g ''"#).unwrap(),
        ["a", "b c", "d \"e\"", "f g", ""]
    );
    assert!(split_words("a \"b").is_err());
    assert!(split_words("a \\").is_err());
    assert!(split_words("   ").unwrap().is_empty());
}
