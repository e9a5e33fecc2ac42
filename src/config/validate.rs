//! The rules a parsed `Config` must satisfy, each reported with its field
//! path. Every rule runs; nothing stops at the first problem.
//!
//! Ranges come from the protocols, cited where applied, or from what the
//! routers we interoperate with accept (FRR, BIRD).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::{BfdConfig, Config, PeerAddress, PeerConfig, PoolConfig, Problem};
use crate::model::{AnyCommunity, Community};

/// AS_TRANS (RFC 6793): the 2-octet placeholder a 4-octet speaker puts in
/// places only 2 octets fit, such as the OPEN's My Autonomous System; it is
/// never a real AS.
pub const AS_TRANS: u32 = 23456;

/// The shortest BFD interval accepted. FRR's bfdd accepts 10 ms and up.
pub const BFD_MIN_INTERVAL: Duration = Duration::from_millis(10);
/// The longest BFD interval accepted (FRR's bfdd: 60000 ms).
pub const BFD_MAX_INTERVAL: Duration = Duration::from_secs(60);
/// The longest GRACEFUL_SHUTDOWN wait before withdrawing.
pub const GSHUT_WAIT_MAX: Duration = Duration::from_secs(600);
/// The longest anti-flap hold (`anti_flap.min_up`, `anti_flap.withdraw_delay`):
/// longer holds blackhole too long with `externalTrafficPolicy: Local`.
pub const ANTI_FLAP_MAX: Duration = Duration::from_secs(300);
/// The longest wait for a weight-only change (`anti_flap.weight_delay`).
pub const WEIGHT_DELAY_MAX: Duration = Duration::from_secs(5);
/// Linux `IFNAMSIZ` is 16 bytes including the terminating NUL.
pub const IFNAME_MAX: usize = 15;

/// Every error in `config`, in file order.
pub(crate) fn config_problems(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    check_asn(&mut out, "asn", config.asn);
    if let Some(id) = config.router_id {
        // RFC 6286 makes the BGP Identifier "a 4-octet, unsigned, non-zero
        // integer"; a multicast or broadcast address is never a router's.
        if id.is_unspecified() || id.is_multicast() || id.is_broadcast() {
            out.push(Problem::new(
                "router_id",
                format!("{id} cannot be a router id: use a unicast IPv4 address of this node"),
            ));
        }
    }
    if let Some(reason) = ifname_problem(&config.interface) {
        out.push(Problem::new("interface", reason));
    }
    if config.admin_listen.port() == 0 {
        out.push(Problem::new(
            "admin_listen",
            "port must not be 0 (`herald status` needs a known port)",
        ));
    }
    check_pools(&mut out, &config.pools);
    check_pools_against_own_addresses(&mut out, config);
    check_peers(&mut out, &config.peers);
    #[cfg(feature = "agent")]
    check_kubernetes(&mut out, config);
    out.extend(super::bird::problems(config));
    out.extend(config.allocation.problems(&config.pools));
    if config.drain.gshut_wait > GSHUT_WAIT_MAX {
        out.push(Problem::new(
            "drain.gshut_wait",
            format!(
                "must be at most 10m (got {}); routers move traffic away within seconds",
                humantime::format_duration(config.drain.gshut_wait)
            ),
        ));
    }
    for (field, value) in [
        ("anti_flap.min_up", config.anti_flap.min_up),
        ("anti_flap.withdraw_delay", config.anti_flap.withdraw_delay),
    ] {
        if value > ANTI_FLAP_MAX {
            out.push(Problem::new(
                field,
                format!(
                    "must be at most 5m (got {}); a held withdrawal blackholes traffic \
                     with externalTrafficPolicy: Local",
                    humantime::format_duration(value)
                ),
            ));
        }
    }
    if config.anti_flap.weight_delay > WEIGHT_DELAY_MAX {
        out.push(Problem::new(
            "anti_flap.weight_delay",
            format!(
                "must be at most 5s (got {}); a new endpoint's share of traffic waits for it",
                humantime::format_duration(config.anti_flap.weight_delay)
            ),
        ));
    }
    out
}

/// The `kubernetes:` section, checked by its owner against the pool names.
#[cfg(feature = "agent")]
fn check_kubernetes(out: &mut Vec<Problem>, config: &Config) {
    let pool_names: Vec<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
    if let Err(error) = config.kubernetes.validate(&pool_names) {
        // The selection errors name their own path: `kubernetes.x: why`.
        let text = error.to_string();
        let (path, message) = text.split_once(": ").unwrap_or(("kubernetes", &text));
        out.push(Problem::new(path, message));
    }
}

/// Findings that do not refuse the config.
pub(crate) fn config_warnings(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    if config.pools.is_empty() {
        out.push(Problem::new(
            "pools",
            "no pools: no address will ever be announced",
        ));
    }
    if config.peers.is_empty() {
        out.push(Problem::new(
            "peers",
            "no peers: addresses are placed on the interface but announced to nobody",
        ));
    }
    for (i, pool) in config.pools.iter().enumerate() {
        if pool.link_bandwidth_transitive.is_some() && !pool.weighted_ecmp {
            out.push(Problem::new(
                format!("pools[{i}].link_bandwidth_transitive"),
                "has no effect without weighted_ecmp: true (no link-bandwidth community is sent)",
            ));
        }
    }
    for (i, peer) in config.peers.iter().enumerate() {
        if let Err(error) = peer.read_password() {
            out.push(Problem::new(
                format!("peers[{i}].password_file"),
                format!("{error}; this peer will not start until the key can be read"),
            ));
        }
        if let Some(auth) = &peer.bfd.auth
            && let Err(error) = auth.read_key()
        {
            out.push(Problem::new(
                format!("peers[{i}].bfd.auth.key_file"),
                format!(
                    "{error}; this peer's BFD session will not start until the key can be read"
                ),
            ));
        }
        if peer.hold_time.is_zero() && !peer.bfd.enabled {
            out.push(Problem::new(
                format!("peers[{i}].hold_time"),
                "0s disables the hold timer and BFD is off: a dead peer is noticed only \
                 if TCP fails",
            ));
        }
        if peer.bfd.enabled && !peer.bfd.multihop && peer.ebgp_multihop > 1 {
            out.push(Problem::new(
                format!("peers[{i}].bfd.multihop"),
                "single-hop BFD (RFC 5881) needs a directly connected peer, but \
                 ebgp_multihop > 1 says it is further away; set bfd.multihop: true \
                 if it is",
            ));
        }
    }
    out.extend(super::bird::warnings(config));
    out
}

/// Local and peer AS numbers: not 0 (RFC 7607 proscribes AS 0 in the OPEN
/// and in AS paths) and not AS_TRANS.
pub(crate) fn check_asn(out: &mut Vec<Problem>, path: &str, asn: u32) {
    if asn == 0 {
        out.push(Problem::new(path, "must not be 0 (reserved, RFC 7607)"));
    } else if asn == AS_TRANS {
        out.push(Problem::new(
            path,
            "must not be 23456 (AS_TRANS, reserved by RFC 6793)",
        ));
    }
}

/// Why `name` is not a usable Linux interface name (`dev_valid_name` in
/// net/core/dev.c), or `None`.
pub(crate) fn ifname_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".to_string());
    }
    if name.len() > IFNAME_MAX {
        return Some(format!(
            "{name:?} is {} bytes; Linux interface names are at most {IFNAME_MAX}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Some(format!("{name:?} is not an interface name"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Some(format!(
            "{name:?} is not an interface name: no '/', ':' or whitespace allowed"
        ));
    }
    None
}

/// Communities that herald sets itself and that therefore must not be
/// configured: GRACEFUL_SHUTDOWN (RFC 8326) marks a draining node.
pub(crate) fn check_communities(out: &mut Vec<Problem>, path: &str, list: &[AnyCommunity]) {
    for (i, community) in list.iter().enumerate() {
        if *community == AnyCommunity::Standard(Community::GRACEFUL_SHUTDOWN) {
            out.push(Problem::new(
                format!("{path}[{i}]"),
                "65535:0 is GRACEFUL_SHUTDOWN (RFC 8326); herald adds it only while \
                 draining",
            ));
        }
    }
}

fn check_pools(out: &mut Vec<Problem>, pools: &[PoolConfig]) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, pool) in pools.iter().enumerate() {
        let path = format!("pools[{i}]");
        if pool.name.trim().is_empty() {
            out.push(Problem::new(format!("{path}.name"), "must not be empty"));
        } else if let Some(&first) = names.get(pool.name.as_str()) {
            out.push(Problem::new(
                format!("{path}.name"),
                format!("{:?} is already the name of pools[{first}]", pool.name),
            ));
        } else {
            names.insert(&pool.name, i);
        }
        if pool.cidrs.is_empty() {
            out.push(Problem::new(
                format!("{path}.cidrs"),
                "must list at least one CIDR",
            ));
        }
        for (j, cidr) in pool.cidrs.iter().enumerate() {
            if cidr.trunc() != *cidr {
                out.push(Problem::new(
                    format!("{path}.cidrs[{j}]"),
                    format!("{cidr} has host bits set; did you mean {}?", cidr.trunc()),
                ));
            }
            if let Some(reason) = special_range_problem(cidr) {
                out.push(Problem::new(format!("{path}.cidrs[{j}]"), reason));
            }
        }
        check_communities(out, &format!("{path}.communities"), &pool.communities);
        for (j, namespace) in pool.namespaces.iter().enumerate() {
            if !is_dns_label(namespace) {
                out.push(Problem::new(
                    format!("{path}.namespaces[{j}]"),
                    format!(
                        "{namespace:?} is not a namespace name (1-63 of [a-z0-9-], \
                         alphanumeric at both ends)"
                    ),
                ));
            }
        }
        #[cfg(feature = "agent")]
        for (field, selector) in [
            ("service_selector", &pool.service_selector),
            ("namespace_selector", &pool.namespace_selector),
        ] {
            if let Some(selector) = selector
                && let Err(error) = kube::core::Selector::try_from(selector.clone())
            {
                out.push(Problem::new(format!("{path}.{field}"), error.to_string()));
            }
        }
    }
    // Overlap: two CIDRs overlap exactly when one contains the other. Each
    // overlap is reported once, at the later CIDR, naming the earlier one.
    let all: Vec<(usize, usize, IpNet)> = pools
        .iter()
        .enumerate()
        .flat_map(|(i, pool)| pool.cidrs.iter().enumerate().map(move |(j, c)| (i, j, *c)))
        .collect();
    for (later, &(i, j, cidr)) in all.iter().enumerate() {
        let earlier = all[..later]
            .iter()
            .find(|(_, _, other)| other.contains(&cidr) || cidr.contains(other));
        if let Some(&(oi, oj, other)) = earlier {
            let whose = if oi == i {
                "another CIDR of the same pool".to_string()
            } else {
                format!("pool {:?}", pools[oi].name)
            };
            out.push(Problem::new(
                format!("pools[{i}].cidrs[{j}]"),
                format!(
                    "{cidr} of pool {:?} overlaps {other} of {whose} (pools[{oi}].cidrs[{oj}]); \
                     pools must not overlap",
                    pools[i].name
                ),
            ));
        }
    }
}

/// A Kubernetes namespace name: an RFC 1123 label.
pub(crate) fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Ranges no service address may come from, with the reason. A pool that
/// overlaps one of them (contains it or lies inside it) is refused: a tenant
/// whose Service got such an address would make the routers send that
/// traffic (or the node's own, or a whole address family's) to this node.
const SPECIAL_RANGES: &[(&str, &str)] = &[
    (
        "0.0.0.0/8",
        "holds the unspecified address 0.0.0.0 (\"this network\", RFC 1122)",
    ),
    ("::/128", "is the unspecified address"),
    (
        "127.0.0.0/8",
        "is loopback (RFC 1122): never routed off a host",
    ),
    ("::1/128", "is the loopback address"),
    ("169.254.0.0/16", "is link-local (RFC 3927): never routed"),
    ("fe80::/10", "is link-local (RFC 4291): never routed"),
    (
        "224.0.0.0/4",
        "is multicast (RFC 5771): not a unicast service address",
    ),
    (
        "ff00::/8",
        "is multicast (RFC 4291): not a unicast service address",
    ),
    ("255.255.255.255/32", "is the limited broadcast address"),
    (
        "::ffff:0:0/96",
        "holds IPv4-mapped addresses (RFC 4291), which bypass the IPv4 checks: write an IPv4 pool",
    ),
];

/// Why a pool CIDR can never hold service addresses, or `None`.
fn special_range_problem(cidr: &IpNet) -> Option<String> {
    if cidr.prefix_len() == 0 {
        return Some(format!(
            "{cidr} is a whole address family: a pool this wide lets any Service take any \
             address, the routers' and the nodes' included"
        ));
    }
    let cidr = cidr.trunc();
    SPECIAL_RANGES.iter().find_map(|(range, why)| {
        let range: IpNet = range.parse().expect("a valid built-in range");
        (range.contains(&cidr) || cidr.contains(&range))
            .then(|| format!("{cidr} overlaps {range}, which {why}"))
    })
}

/// Pools that hold an address of a peer or of this node: a Service given
/// that address would take over the router's or the node's own traffic.
/// Checked here: literal peer addresses and `router_id`. The node's own
/// addresses (its Node's `status.addresses`) are checked at run time by the
/// policy, and a `gateway` peer is known only once resolved.
fn check_pools_against_own_addresses(out: &mut Vec<Problem>, config: &Config) {
    let mut own: Vec<(String, IpAddr, &str)> = config
        .peers
        .iter()
        .enumerate()
        .filter_map(|(i, peer)| match peer.address {
            PeerAddress::Ip(ip) => Some((format!("peers[{i}].address"), ip, "a peer's address")),
            PeerAddress::Gateway => None,
        })
        .collect();
    if let Some(id) = config.router_id {
        own.push((
            "router_id".to_string(),
            IpAddr::V4(id),
            "this node's router id (one of its addresses)",
        ));
    }
    for (i, pool) in config.pools.iter().enumerate() {
        for (j, cidr) in pool.cidrs.iter().enumerate() {
            for (field, ip, what) in &own {
                if cidr.contains(ip) {
                    out.push(Problem::new(
                        format!("pools[{i}].cidrs[{j}]"),
                        format!(
                            "{cidr} of pool {:?} holds {ip}, {what} ({field}): a Service \
                             given it would take that traffic",
                            pool.name
                        ),
                    ));
                }
            }
        }
    }
}

fn check_peers(out: &mut Vec<Problem>, peers: &[PeerConfig]) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut addresses: HashMap<PeerAddress, usize> = HashMap::new();
    for (i, peer) in peers.iter().enumerate() {
        let path = format!("peers[{i}]");
        if peer.name.trim().is_empty() {
            out.push(Problem::new(format!("{path}.name"), "must not be empty"));
        } else if let Some(&first) = names.get(peer.name.as_str()) {
            out.push(Problem::new(
                format!("{path}.name"),
                format!("{:?} is already the name of peers[{first}]", peer.name),
            ));
        } else {
            names.insert(&peer.name, i);
        }
        if let PeerAddress::Ip(ip) = peer.address
            && let Some(reason) = peer_address_problem(ip)
        {
            out.push(Problem::new(format!("{path}.address"), reason));
        }
        if let Some(&first) = addresses.get(&peer.address) {
            out.push(Problem::new(
                format!("{path}.address"),
                format!(
                    "{} is already the address of peers[{first}] ({:?}); one session per \
                     address",
                    peer.address, peers[first].name
                ),
            ));
        } else {
            addresses.insert(peer.address, i);
        }
        check_asn(out, &format!("{path}.asn"), peer.asn);
        if peer.passive && peer.listen == Some(false) {
            out.push(Problem::new(
                format!("{path}.listen"),
                "false with passive: true: herald would neither connect nor accept a                  connection",
            ));
        }
        if peer.port == 0 {
            out.push(Problem::new(format!("{path}.port"), "must not be 0"));
        }
        check_hold_time(out, &format!("{path}.hold_time"), peer.hold_time);
        if peer.ebgp_multihop == 0 {
            out.push(Problem::new(
                format!("{path}.ebgp_multihop"),
                "must be from 1 (directly connected) to 255",
            ));
        }
        check_restart_time(
            out,
            &format!("{path}.graceful_restart.restart_time"),
            peer.graceful_restart.restart_time,
        );
        check_bfd(out, &format!("{path}.bfd"), &peer.bfd);
        check_node_selector(out, &format!("{path}.node_selector"), &peer.node_selector);
    }
}

fn peer_address_problem(ip: IpAddr) -> Option<String> {
    let bad = match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    bad.then(|| format!("{ip} is not a unicast address"))
}

/// RFC 4271 §4.2: "The Hold Time MUST be either zero or at least three
/// seconds"; the field is 16 bits of seconds.
fn check_hold_time(out: &mut Vec<Problem>, path: &str, hold: Duration) {
    if hold.subsec_nanos() != 0 {
        out.push(Problem::new(
            path,
            "must be whole seconds (the OPEN message carries seconds)",
        ));
    } else if (1..3).contains(&hold.as_secs()) {
        out.push(Problem::new(
            path,
            format!(
                "must be 0 or at least 3s (RFC 4271 4.2), got {}s",
                hold.as_secs()
            ),
        ));
    } else if hold.as_secs() > 65535 {
        out.push(Problem::new(
            path,
            "must be at most 65535s (a 16-bit field)",
        ));
    }
}

/// RFC 4724 §3: Restart Time is a 12-bit count of seconds.
fn check_restart_time(out: &mut Vec<Problem>, path: &str, time: Duration) {
    if time.subsec_nanos() != 0 {
        out.push(Problem::new(path, "must be whole seconds"));
    } else if !(1..=4095).contains(&time.as_secs()) {
        out.push(Problem::new(
            path,
            format!(
                "must be from 1s to 4095s (a 12-bit field, RFC 4724 3), got {}s",
                time.as_secs()
            ),
        ));
    }
}

fn check_bfd(out: &mut Vec<Problem>, path: &str, bfd: &BfdConfig) {
    match bfd.min_ttl {
        Some(_) if !bfd.multihop => out.push(Problem::new(
            format!("{path}.min_ttl"),
            "applies to multihop BFD only: single-hop BFD always requires TTL 255 \
             (RFC 5881); remove it or set bfd.multihop: true",
        )),
        Some(0) => out.push(Problem::new(
            format!("{path}.min_ttl"),
            "must be 1 to 255: 0 would accept packets from any distance",
        )),
        _ => {}
    }
    for (field, value) in [("min_rx", bfd.min_rx), ("min_tx", bfd.min_tx)] {
        let field_path = format!("{path}.{field}");
        if value < BFD_MIN_INTERVAL {
            out.push(Problem::new(
                field_path,
                format!(
                    "must be at least 10ms, got {}",
                    humantime::format_duration(value)
                ),
            ));
        } else if value > BFD_MAX_INTERVAL {
            out.push(Problem::new(
                field_path,
                format!(
                    "must be at most 60s, got {}",
                    humantime::format_duration(value)
                ),
            ));
        } else if value.subsec_nanos() % 1000 != 0 {
            out.push(Problem::new(
                field_path,
                "must be whole microseconds (BFD carries microseconds, RFC 5880 4.1)",
            ));
        }
    }
    // RFC 5880 §6.8.1 only forbids zero; 1 would declare a session down on a
    // single lost packet, and FRR's bfdd accepts 2..=255, so we do too.
    if bfd.multiplier < 2 {
        out.push(Problem::new(
            format!("{path}.multiplier"),
            format!(
                "must be from 2 to 255 (as FRR accepts; 1 drops the session on one lost \
                 packet), got {}",
                bfd.multiplier
            ),
        ));
    }
    if bfd.strict && !bfd.enabled {
        out.push(Problem::new(
            format!("{path}.strict"),
            "needs bfd.enabled: true (strict mode waits for BFD before BGP)",
        ));
    }
}

/// Kubernetes label syntax: keys `[prefix/]name`, the prefix a DNS subdomain
/// of at most 253 characters, the name and the value at most 63 characters of
/// `[A-Za-z0-9._-]` starting and ending alphanumeric (the value may be empty).
fn check_node_selector(out: &mut Vec<Problem>, path: &str, selector: &BTreeMap<String, String>) {
    for (key, value) in selector {
        let (prefix, name) = match key.rsplit_once('/') {
            Some((prefix, name)) => (Some(prefix), name),
            None => (None, key.as_str()),
        };
        let prefix_ok = prefix.is_none_or(is_dns_subdomain);
        if !prefix_ok || name.is_empty() || !is_label_value(name) {
            out.push(Problem::new(
                format!("{path}.{key}"),
                format!("{key:?} is not a Kubernetes label key"),
            ));
        }
        if !is_label_value(value) {
            out.push(Problem::new(
                format!("{path}.{key}"),
                format!(
                    "{value:?} is not a Kubernetes label value (at most 63 characters of \
                     [A-Za-z0-9._-], alphanumeric at both ends)"
                ),
            ));
        }
    }
}

fn is_label_value(text: &str) -> bool {
    if text.is_empty() {
        return true;
    }
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    text.len() <= 63
        && ends_ok(text.chars().next())
        && ends_ok(text.chars().last())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn is_dns_subdomain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|part| {
            !part.is_empty()
                && part.len() <= 63
                && !part.starts_with('-')
                && !part.ends_with('-')
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

#[cfg(test)]
mod tests;
