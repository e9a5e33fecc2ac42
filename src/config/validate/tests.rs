//! Table-driven tests: one row per rule, each starting from the documented
//! example (examples/herald.yaml) and breaking one thing.

use std::time::Duration;

use super::*;
use crate::config::{ConfigError, GracefulRestartConfig};

const EXAMPLE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/herald.yaml"));

fn example() -> Config {
    Config::from_yaml(EXAMPLE).expect("the documented example is valid")
}

fn second_peer(config: &mut Config) -> &mut PeerConfig {
    let mut peer = config.peers[0].clone();
    peer.name = "r2".to_string();
    peer.address = PeerAddress::Ip("192.0.2.2".parse().unwrap());
    config.peers.push(peer);
    &mut config.peers[1]
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

type Breakage = fn(&mut Config);

/// (what is broken, how, the field path, a fragment of the message)
const INVALID: &[(&str, Breakage, &str, &str)] = &[
    ("asn 0", |c| c.asn = 0, "asn", "must not be 0"),
    ("asn AS_TRANS", |c| c.asn = 23456, "asn", "AS_TRANS"),
    (
        "router id 0.0.0.0",
        |c| c.router_id = Some("0.0.0.0".parse().unwrap()),
        "router_id",
        "cannot be a router id",
    ),
    (
        "multicast router id",
        |c| c.router_id = Some("224.0.0.5".parse().unwrap()),
        "router_id",
        "cannot be a router id",
    ),
    (
        "broadcast router id",
        |c| c.router_id = Some("255.255.255.255".parse().unwrap()),
        "router_id",
        "cannot be a router id",
    ),
    (
        "empty interface",
        |c| c.interface = String::new(),
        "interface",
        "must not be empty",
    ),
    (
        "16-byte interface",
        |c| c.interface = "herald-services0".to_string(),
        "interface",
        "at most 15",
    ),
    (
        "interface with slash",
        |c| c.interface = "eth/0".to_string(),
        "interface",
        "not an interface name",
    ),
    (
        "interface with space",
        |c| c.interface = "eth 0".to_string(),
        "interface",
        "not an interface name",
    ),
    (
        "admin port 0",
        |c| c.admin_listen.set_port(0),
        "admin_listen",
        "must not be 0",
    ),
    (
        "empty pool name",
        |c| c.pools[0].name = " ".to_string(),
        "pools[0].name",
        "must not be empty",
    ),
    (
        "duplicate pool name",
        |c| {
            let mut pool = c.pools[0].clone();
            pool.cidrs = vec!["198.51.100.0/24".parse().unwrap()];
            c.pools.push(pool);
        },
        "pools[1].name",
        "already the name of pools[0]",
    ),
    (
        "pool without CIDRs",
        |c| c.pools[0].cidrs.clear(),
        "pools[0].cidrs",
        "at least one CIDR",
    ),
    (
        "CIDR with host bits",
        |c| c.pools[0].cidrs[0] = "203.0.113.1/24".parse().unwrap(),
        "pools[0].cidrs[0]",
        "203.0.113.1/24 has host bits set; did you mean 203.0.113.0/24",
    ),
    (
        "overlapping pools",
        |c| {
            c.pools.push(PoolConfig {
                name: "inner".to_string(),
                cidrs: vec!["203.0.113.128/25".parse().unwrap()],
                communities: vec![],
                ..PoolConfig::default()
            })
        },
        "pools[1].cidrs[0]",
        "203.0.113.128/25 of pool \"inner\" overlaps 203.0.113.0/24 of pool \"public\"",
    ),
    (
        "overlap inside one pool",
        |c| c.pools[0].cidrs.push("2001:db8:ffff::/48".parse().unwrap()),
        "pools[0].cidrs[2]",
        "overlaps 2001:db8:ffff::/64 of another CIDR of the same pool",
    ),
    (
        "GRACEFUL_SHUTDOWN in a pool",
        |c| c.pools[0].communities.push("65535:0".parse().unwrap()),
        "pools[0].communities[1]",
        "GRACEFUL_SHUTDOWN",
    ),
    (
        "empty peer name",
        |c| c.peers[0].name = String::new(),
        "peers[0].name",
        "must not be empty",
    ),
    (
        "duplicate peer name",
        |c| second_peer(c).name = "r1".to_string(),
        "peers[1].name",
        "already the name of peers[0]",
    ),
    (
        "duplicate peer address",
        |c| second_peer(c).address = PeerAddress::Ip("192.0.2.1".parse().unwrap()),
        "peers[1].address",
        "already the address of peers[0]",
    ),
    (
        "two gateway peers",
        |c| {
            c.peers[0].address = PeerAddress::Gateway;
            second_peer(c).address = PeerAddress::Gateway;
        },
        "peers[1].address",
        "gateway is already the address",
    ),
    (
        "multicast peer address",
        |c| c.peers[0].address = PeerAddress::Ip("ff02::5".parse().unwrap()),
        "peers[0].address",
        "not a unicast address",
    ),
    (
        "unspecified peer address",
        |c| c.peers[0].address = PeerAddress::Ip("0.0.0.0".parse().unwrap()),
        "peers[0].address",
        "not a unicast address",
    ),
    (
        "peer asn 0",
        |c| second_peer(c).asn = 0,
        "peers[1].asn",
        "must not be 0",
    ),
    (
        "peer asn AS_TRANS",
        |c| c.peers[0].asn = 23456,
        "peers[0].asn",
        "AS_TRANS",
    ),
    (
        "port 0",
        |c| c.peers[0].port = 0,
        "peers[0].port",
        "must not be 0",
    ),
    (
        "hold time 1s",
        |c| c.peers[0].hold_time = secs(1),
        "peers[0].hold_time",
        "0 or at least 3s",
    ),
    (
        "hold time 2s",
        |c| c.peers[0].hold_time = secs(2),
        "peers[0].hold_time",
        "0 or at least 3s",
    ),
    (
        "hold time over 16 bits",
        |c| c.peers[0].hold_time = secs(65536),
        "peers[0].hold_time",
        "at most 65535s",
    ),
    (
        "hold time with milliseconds",
        |c| c.peers[0].hold_time = ms(4500),
        "peers[0].hold_time",
        "whole seconds",
    ),
    (
        "ebgp_multihop 0",
        |c| c.peers[0].ebgp_multihop = 0,
        "peers[0].ebgp_multihop",
        "from 1",
    ),
    (
        "restart time 0",
        |c| c.peers[0].graceful_restart.restart_time = secs(0),
        "peers[0].graceful_restart.restart_time",
        "from 1s to 4095s",
    ),
    (
        "restart time over 12 bits",
        |c| c.peers[0].graceful_restart.restart_time = secs(4096),
        "peers[0].graceful_restart.restart_time",
        "12-bit",
    ),
    (
        "restart time with milliseconds",
        |c| c.peers[0].graceful_restart.restart_time = ms(1500),
        "peers[0].graceful_restart.restart_time",
        "whole seconds",
    ),
    (
        "bfd min_rx below 10ms",
        |c| second_peer(c).bfd.min_rx = ms(9),
        "peers[1].bfd.min_rx",
        "must be at least 10ms",
    ),
    (
        "bfd min_tx below 10ms",
        |c| c.peers[0].bfd.min_tx = ms(5),
        "peers[0].bfd.min_tx",
        "must be at least 10ms",
    ),
    (
        "bfd min_rx above 60s",
        |c| c.peers[0].bfd.min_rx = secs(61),
        "peers[0].bfd.min_rx",
        "at most 60s",
    ),
    (
        "bfd interval with nanoseconds",
        |c| c.peers[0].bfd.min_tx = Duration::new(0, 50_000_001),
        "peers[0].bfd.min_tx",
        "whole microseconds",
    ),
    (
        "bfd min_ttl on a single-hop session",
        |c| c.peers[0].bfd.min_ttl = Some(254),
        "peers[0].bfd.min_ttl",
        "multihop BFD only",
    ),
    (
        "bfd min_ttl 0",
        |c| {
            c.peers[0].ebgp_multihop = 2;
            c.peers[0].bfd.multihop = true;
            c.peers[0].bfd.min_ttl = Some(0);
        },
        "peers[0].bfd.min_ttl",
        "1 to 255",
    ),
    (
        "bfd multiplier 1",
        |c| c.peers[0].bfd.multiplier = 1,
        "peers[0].bfd.multiplier",
        "from 2 to 255",
    ),
    (
        "bfd multiplier 0",
        |c| c.peers[0].bfd.multiplier = 0,
        "peers[0].bfd.multiplier",
        "from 2 to 255",
    ),
    (
        "strict bfd while disabled",
        |c| {
            c.peers[0].bfd.enabled = false;
            c.peers[0].bfd.strict = true;
        },
        "peers[0].bfd.strict",
        "needs bfd.enabled",
    ),
    (
        "a passive peer that is not listened to",
        |c| {
            c.peers[0].passive = true;
            c.peers[0].listen = Some(false);
        },
        "peers[0].listen",
        "neither connect nor accept",
    ),
    (
        "bad node selector key",
        |c| {
            c.peers[0]
                .node_selector
                .insert("Rack Name".to_string(), "a".to_string());
        },
        "peers[0].node_selector.Rack Name",
        "not a Kubernetes label key",
    ),
    (
        "bad node selector value",
        |c| {
            c.peers[0]
                .node_selector
                .insert("topology.kubernetes.io/zone".to_string(), "-a".to_string());
        },
        "peers[0].node_selector.topology.kubernetes.io/zone",
        "not a Kubernetes label value",
    ),
    (
        "gshut wait over 10 minutes",
        |c| c.drain.gshut_wait = secs(601),
        "drain.gshut_wait",
        "at most 10m",
    ),
    (
        "anti-flap minimum up time over 5 minutes",
        |c| c.anti_flap.min_up = secs(301),
        "anti_flap.min_up",
        "at most 5m",
    ),
    (
        "anti-flap withdraw delay over 5 minutes",
        |c| c.anti_flap.withdraw_delay = secs(301),
        "anti_flap.withdraw_delay",
        "blackholes traffic",
    ),
    (
        "weight delay over 5 seconds",
        |c| c.anti_flap.weight_delay = ms(5001),
        "anti_flap.weight_delay",
        "at most 5s",
    ),
];

/// [`INVALID`]'s rules for the `kubernetes` section (feature `agent`).
#[cfg(feature = "agent")]
const INVALID_KUBERNETES: &[(&str, Breakage, &str, &str)] = &[
    (
        "annotation policy for a pool that does not exist",
        |c| {
            c.kubernetes
                .pool_annotations
                .insert("nosuch".to_string(), Default::default());
        },
        "kubernetes.pool_annotations.nosuch",
        "no pool has this name",
    ),
    (
        "no address kinds",
        |c| c.kubernetes.address_kinds.clear(),
        "kubernetes.address_kinds",
        "at least one",
    ),
    (
        "node weight 0",
        |c| c.kubernetes.node_weight = 0,
        "kubernetes.node_weight",
        "must be from 1 to 1000 (got 0)",
    ),
    (
        "node weight over the maximum",
        |c| c.kubernetes.node_weight = 1001,
        "kubernetes.node_weight",
        "must be from 1 to 1000 (got 1001)",
    ),
];
#[cfg(not(feature = "agent"))]
const INVALID_KUBERNETES: &[(&str, Breakage, &str, &str)] = &[];

#[test]
fn the_product_example_is_valid() {
    let config = example();
    assert_eq!(config_problems(&config), vec![]);
    assert_eq!(config.peers[0].bfd.min_rx, ms(50));
    assert_eq!(config.peers[0].hold_time, secs(9));
}

#[test]
fn every_rule_reports_its_field_path() {
    for (what, breakage, path, fragment) in INVALID.iter().chain(INVALID_KUBERNETES) {
        let mut config = example();
        breakage(&mut config);
        let error = config.validate().expect_err(what).to_string();
        let expected = format!("{path}: ");
        assert!(
            error.contains(&expected) && error.contains(fragment),
            "{what}: expected {expected:?} and {fragment:?} in:\n{error}"
        );
    }
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let mut config = example();
    for (_, breakage, _, _) in INVALID.iter().take(3) {
        breakage(&mut config);
    }
    config.peers[0].bfd.min_rx = ms(1);
    config.peers[0].hold_time = secs(2);
    let problems = config_problems(&config);
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"asn"), "{paths:?}");
    assert!(paths.contains(&"router_id"), "{paths:?}");
    assert!(paths.contains(&"peers[0].bfd.min_rx"), "{paths:?}");
    assert!(paths.contains(&"peers[0].hold_time"), "{paths:?}");
}

#[test]
fn boundary_values_are_accepted() {
    let mut config = example();
    config.asn = u32::MAX;
    config.peers[0].asn = 1;
    config.peers[0].hold_time = secs(0);
    config.peers[0].ebgp_multihop = 255;
    config.peers[0].ttl_security = true;
    config.peers[0].graceful_restart = GracefulRestartConfig {
        enabled: true,
        restart_time: secs(4095),
    };
    config.peers[0].bfd.min_rx = ms(10);
    config.peers[0].bfd.min_tx = secs(60);
    config.peers[0].bfd.multiplier = 255;
    config.drain.gshut_wait = secs(600);
    config.anti_flap.min_up = secs(300);
    config.anti_flap.withdraw_delay = secs(300);
    config.anti_flap.weight_delay = secs(5);
    #[cfg(feature = "agent")]
    {
        config.kubernetes.node_weight = 1000;
    }
    config.pools[0].weighted_ecmp = true;
    config.pools[0].link_bandwidth_transitive = Some(false);
    config.interface = "herald-svc01234".to_string();
    let mut peer = second_peer(&mut config).clone();
    peer.hold_time = secs(3);
    peer.graceful_restart.restart_time = secs(1);
    peer.bfd.multiplier = 2;
    config.peers[1] = peer;
    config.peers.last_mut().unwrap().node_selector.insert(
        "topology.kubernetes.io/zone".to_string(),
        "rack-1".to_string(),
    );
    assert_eq!(config_problems(&config), vec![]);
}

#[test]
fn serde_errors_name_the_field_and_the_line() {
    for (yaml, field, fragment) in [
        (
            "asn: 1\npeers:\n  - name: r1\n    address: 192.0.2.1\n    asn: 2\n    bfd: {min_rx: 5x}\n",
            "peers[0].bfd.min_rx",
            "line 6",
        ),
        (
            "asn: 1\npools:\n  - name: p\n    cidrs: [203.0.113.0/33]\n",
            "pools[0].cidrs[0]",
            "line 4",
        ),
        (
            "asn: 1\npools:\n  - name: p\n    cidrs: [203.0.113.0/24]\n    communities: [\"65536:1\"]\n",
            "pools[0].communities[0]",
            "0 to 65535",
        ),
        (
            "asn: 1\npeers:\n  - name: r1\n    adress: 192.0.2.1\n    asn: 2\n",
            "peers[0].adress",
            "unknown field `adress`",
        ),
        (
            "asn: 1\npeers:\n  - name: r1\n    address: router1\n    asn: 2\n",
            "peers[0].address",
            "neither an IP address nor \"gateway\"",
        ),
        ("asn: -1\n", "asn", "line 1"),
    ] {
        let error = Config::from_yaml(yaml).unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(error, ConfigError::Parse { .. }),
            "{yaml}: not a parse error: {text}"
        );
        assert!(
            text.starts_with(&format!("{field}: ")) && text.contains(fragment),
            "{yaml}: expected {field:?} and {fragment:?} in {text:?}"
        );
        // The path is said once, not again by serde_yaml_ng.
        assert_eq!(text.matches(field).count(), 1, "{text}");
    }
}

#[test]
fn an_empty_file_is_refused_with_a_reason() {
    let error = Config::from_yaml("  \n").unwrap_err().to_string();
    assert!(error.contains("empty"), "{error}");
}

#[test]
fn weighted_ecmp_defaults_off_and_transitive_and_a_lone_encoding_is_a_warning() {
    let config = Config::from_yaml(
        "asn: 64601\npools: [{name: p, cidrs: [203.0.113.0/24]}]\n\
         peers: [{name: r1, address: gateway, asn: 64512}]",
    )
    .unwrap();
    assert!(!config.pools[0].weighted_ecmp);
    assert!(config.pools[0].link_bandwidth_transitive());
    let mut config = example();
    config.pools[0].link_bandwidth_transitive = Some(false);
    assert!(!config.pools[0].link_bandwidth_transitive());
    let text: Vec<String> = config.warnings().iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|w| w.starts_with("pools[0].link_bandwidth_transitive: ")
                && w.contains("without weighted_ecmp")),
        "{text:?}"
    );
    config.pools[0].weighted_ecmp = true;
    let text: Vec<String> = config.warnings().iter().map(ToString::to_string).collect();
    assert!(
        !text.iter().any(|w| w.contains("link_bandwidth_transitive")),
        "{text:?}"
    );
    assert!(config.validate().is_ok());
}

#[test]
fn unreadable_key_files_and_far_single_hop_bfd_are_warnings() {
    let mut config = example();
    config.peers[0].ebgp_multihop = 2;
    let warnings = config.warnings();
    let text: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|w| w.starts_with("peers[0].password_file: ") && w.contains("/etc/herald/r1.key")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|w| w.starts_with("peers[0].bfd.multihop: ")),
        "{text:?}"
    );
    assert!(config.validate().is_ok());
}

#[test]
fn bfd_auth_parses_every_type_and_refuses_an_unknown_one() {
    for name in [
        "simple-password",
        "keyed-md5",
        "meticulous-keyed-md5",
        "keyed-sha1",
        "meticulous-keyed-sha1",
    ] {
        let yaml = format!(
            "asn: 64601\npeers: [{{name: r1, address: 192.0.2.1, asn: 64512, bfd: {{auth: \
             {{type: {name}, key_id: 1, key_file: /etc/herald/bfd.key}}}}}}]"
        );
        let config = Config::from_yaml(&yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
        let auth = config.peers[0].bfd.auth.as_ref().expect("auth");
        assert_eq!(auth.key_id, 1);
        // The key file does not exist here: a warning, not a refusal.
        assert!(
            config
                .warnings()
                .iter()
                .any(|w| w.to_string().starts_with("peers[0].bfd.auth.key_file: ")),
            "{name}"
        );
    }
    let error = Config::from_yaml(
        "asn: 64601\npeers: [{name: r1, address: 192.0.2.1, asn: 64512, bfd: {auth: \
         {type: sha256, key_id: 1, key_file: /k}}}]",
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("sha256"), "{error}");
}

#[test]
fn only_a_passive_peer_is_listened_to_unless_listen_says_otherwise() {
    let peer = |extra: &str| {
        Config::from_yaml(&format!(
            "asn: 64601\npeers: [{{name: r1, address: 192.0.2.1, asn: 64512{extra}}}]"
        ))
        .unwrap()
        .peers
        .remove(0)
    };
    assert!(!peer("").listens());
    assert!(peer(", passive: true").listens());
    assert!(peer(", listen: true").listens());
    assert!(!peer(", listen: false").listens());
    assert!(peer(", passive: true, listen: true").listens());
}

#[test]
fn defaults_fill_every_optional_field() {
    let config =
        Config::from_yaml("asn: 64601\npeers: [{name: r1, address: gateway, asn: 64512}]").unwrap();
    assert_eq!(config.interface, "lo");
    assert_eq!(config.admin_listen.to_string(), "127.0.0.1:9179");
    let peer = &config.peers[0];
    assert_eq!(peer.port, 179);
    assert_eq!(peer.hold_time, secs(90));
    assert_eq!(peer.ebgp_multihop, 1);
    assert!(!peer.passive && peer.listen.is_none() && !peer.listens());
    assert_eq!(peer.graceful_restart.restart_time, secs(120));
    assert_eq!(peer.bfd.min_rx, ms(300));
    assert_eq!(peer.bfd.multiplier, 3);
    assert_eq!(config.drain.gshut_wait, secs(15));
    assert_eq!(config.anti_flap.min_up, secs(5));
    assert_eq!(config.anti_flap.withdraw_delay, secs(0));
    assert_eq!(config.anti_flap.weight_delay, ms(500));
    #[cfg(feature = "agent")]
    assert_eq!(config.kubernetes.node_weight, 1);
    // The effective config parses back to the same value.
    assert_eq!(Config::from_yaml(&config.to_yaml()).unwrap(), config);
}

#[test]
fn a_peer_without_failure_detection_is_a_warning() {
    let mut config = example();
    config.peers[0].hold_time = secs(0);
    config.peers[0].bfd.enabled = false;
    assert!(config.validate().is_ok());
    let text: Vec<String> = config.warnings().iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|w| w.starts_with("peers[0].hold_time: 0s disables")),
        "{text:?}"
    );
    // The example itself warns only about its key file.
    let example_warnings = example().warnings();
    assert_eq!(example_warnings.len(), 1, "{example_warnings:?}");
}

#[test]
fn a_pool_holding_a_peer_or_the_router_id_is_refused_naming_both() {
    let mut config = example();
    config.peers[0].address = PeerAddress::Ip("203.0.113.1".parse().unwrap());
    let text: Vec<String> = config_problems(&config)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        text.iter().any(|p| p.starts_with("pools[0].cidrs[0]: 203.0.113.0/24 of pool \"public\" holds 203.0.113.1, a peer's address (peers[0].address)")),
        "{text:?}"
    );
    let mut config = example();
    config.router_id = Some("203.0.113.7".parse().unwrap());
    let text: Vec<String> = config_problems(&config)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        text.iter().any(|p| p.starts_with("pools[0].cidrs[0]: ")
            && p.contains("203.0.113.7, this node's router id (one of its addresses) (router_id)")),
        "{text:?}"
    );
    // A peer at `gateway` is resolved at run time: nothing to check here.
    let mut config = example();
    config.peers[0].address = PeerAddress::Gateway;
    assert_eq!(config_problems(&config), vec![]);
}

#[test]
fn pools_that_can_never_hold_service_addresses_are_refused_with_the_reason() {
    let cases = [
        ("0.0.0.0/0", "whole address family"),
        ("::/0", "whole address family"),
        ("224.0.0.0/4", "multicast"),
        ("239.1.0.0/16", "multicast"),
        ("ff02::/16", "multicast"),
        ("127.0.0.0/8", "loopback"),
        ("127.0.0.1/32", "loopback"),
        ("::1/128", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("fe80::/64", "link-local"),
        ("0.0.0.0/32", "unspecified"),
        ("::/128", "unspecified"),
        ("255.255.255.255/32", "broadcast"),
        ("::ffff:127.0.0.0/104", "IPv4-mapped"),
    ];
    for (cidr, reason) in cases {
        let mut config = example();
        config.pools[0].cidrs = vec![cidr.parse().unwrap()];
        let problems = config_problems(&config);
        assert!(
            problems
                .iter()
                .any(|p| p.path == "pools[0].cidrs[0]" && p.message.contains(reason)),
            "{cidr}: {problems:?}"
        );
    }
    for fine in [
        "198.18.0.0/15",
        "2001:db8::/32",
        "203.0.113.0/24",
        "198.51.100.0/24",
    ] {
        let mut config = example();
        config.pools[0].cidrs = vec![fine.parse().unwrap()];
        assert_eq!(config_problems(&config), vec![], "{fine}");
    }
}

#[test]
fn the_printed_effective_config_loads_back_to_the_same_value() {
    let mut config = example();
    config.pools[0].name = "true".to_string();
    config.pools[0]
        .communities
        .push("4294967295:0:7".parse().unwrap());
    config.peers[0].bfd.min_tx = Duration::new(0, 50_001_000);
    config.peers[0].graceful_restart.restart_time = secs(4095);
    config.drain.gshut_wait = Duration::new(61, 500_000_000);
    config.anti_flap.withdraw_delay = ms(1500);
    config.peers[0].node_selector.insert(
        "topology.kubernetes.io/zone".to_string(),
        "0123".to_string(),
    );
    config.peers[0].address = PeerAddress::Gateway;
    assert_eq!(config_problems(&config), vec![]);
    let printed = config.to_yaml();
    assert_eq!(Config::from_yaml(&printed).unwrap(), config, "{printed}");
}
