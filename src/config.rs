//! The agent's configuration file: the shape users write (documented field by
//! field in docs/configuration.md; renaming a field breaks their files), its
//! defaults, loading and validation.
//!
//! Owns: parsing the YAML (serde errors keep the field path and the line),
//! checking every value (`validate` reports every problem at once, each with
//! its field path such as `peers[1].bfd.min_rx`), and reading TCP MD5 key
//! files. Must not touch: anything at run time; other modules receive
//! validated values.
//!
//! The field-by-field reference, with ranges and defaults, is
//! `docs/configuration.md`; a unit test keeps it in step with these structs.

pub mod allocation;
pub mod bird;
pub mod diff;
mod error;
pub mod kubernetes;
pub mod leader_election;
mod password;
mod validate;

pub use allocation::AllocationConfig;
pub use bird::{BirdConfig, SpeakerKind};
pub use diff::{BfdChange, ConfigDiff, PeerChange};
pub(crate) use error::parse_yaml;
pub use error::{ConfigError, Problem};
pub use kubernetes::AddressKind;
pub use leader_election::LeaderElectionConfig;
pub(crate) use validate::check_communities;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::model::AnyCommunity;

/// The whole configuration file.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Local AS number (4-octet allowed, RFC 6793).
    pub asn: u32,
    /// BGP identifier; default: the node's IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_id: Option<Ipv4Addr>,
    /// Where service addresses go: `lo`, or a dummy link herald creates.
    #[serde(default = "default_interface")]
    pub interface: String,
    /// The TCP admin endpoint: /metrics /livez /readyz only (the admin
    /// socket serves /status and /drain).
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// CIDR allowlists; an address outside every pool is never announced.
    #[serde(default)]
    pub pools: Vec<PoolConfig>,
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    #[serde(default)]
    pub drain: DrainConfig,
    /// What `/readyz` requires of the BGP sessions.
    #[serde(default)]
    pub readiness: ReadinessConfig,
    /// Uplinks that get `arp_ignore=1`/`arp_announce=2` (and `all`), so the
    /// node does not answer ARP for service addresses (netlink::sysctl).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arp_hygiene: Vec<String>,
    /// Which Services the Kubernetes source selects and what their
    /// annotations may change.
    #[cfg(feature = "agent")]
    #[serde(default)]
    pub kubernetes: kubernetes::SelectionConfig,
    /// How long an announcement is held against readiness flaps
    /// (`crate::antiflap`).
    #[serde(default)]
    pub anti_flap: AntiFlapConfig,
    /// Who speaks BGP: herald itself, or the node's BIRD (docs/bird-compat.md).
    #[serde(default)]
    pub speaker: SpeakerKind,
    /// How herald reaches the node's BIRD when `speaker: bird`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bird: Option<BirdConfig>,
    /// Whether herald assigns LoadBalancer addresses from its pools.
    #[serde(default)]
    pub allocation: AllocationConfig,
}

fn default_interface() -> String {
    "lo".to_string()
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9179))
}

/// What `/readyz` requires of the BGP sessions, so that a rolling update
/// waits until the restarted node routes again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReadinessConfig {
    /// How many of the peers selected for this node must be Established;
    /// unset: every one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_established_peers: Option<u32>,
}

/// A named CIDR allowlist with the communities added to everything it holds,
/// and who may use it: the tenant boundary of the Kubernetes source.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub name: String,
    pub cidrs: Vec<IpNet>,
    #[serde(default)]
    pub communities: Vec<AnyCommunity>,
    /// Namespaces whose Services may take addresses from this pool; empty:
    /// every namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Services in namespaces whose labels match may take addresses from
    /// this pool too (with `namespaces`: either suffices; neither: every
    /// namespace).
    #[cfg(feature = "agent")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    /// Only Services whose labels match may take addresses from this pool
    /// (Kubernetes `LabelSelector`); absent: every Service.
    #[cfg(feature = "agent")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    /// Whether `spec.externalIPs` (which any Service owner may write) may
    /// take addresses from this pool; off: only load-balancer (and cluster)
    /// addresses.
    #[serde(default)]
    pub allow_external_ips: bool,
    /// Whether `herald.dev/local-pref` and `herald.dev/med` may be used on
    /// this pool's addresses (they steer traffic for every Service sharing
    /// an address, so they are off unless the pool says so).
    #[serde(default)]
    pub allow_path_attributes: bool,
    /// Weighted ECMP: every announcement from this pool carries the
    /// link-bandwidth extended community (RFC 10005), its value
    /// proportional to this node's share of the Service (its ready local
    /// endpoints with `externalTrafficPolicy: Local`, the node weight with
    /// `Cluster`), so that routers that honour it split traffic in that
    /// proportion instead of evenly per next hop.
    #[serde(default)]
    pub weighted_ecmp: bool,
    /// The transitive encoding of the link-bandwidth community (type 0x00)
    /// rather than the non-transitive one (0x40). Routers that drop a
    /// non-transitive extended community received over eBGP (FRR 8.4
    /// does) need the transitive form. Default
    /// ([`PoolConfig::link_bandwidth_transitive`]): transitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_bandwidth_transitive: Option<bool>,
    /// Whether the allocator may hand out this pool's addresses to
    /// `type: LoadBalancer` Services (with `allocation.enabled`).
    #[serde(default)]
    pub allocate: bool,
}

/// One BGP neighbour (with its BFD session).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub name: String,
    pub address: PeerAddress,
    pub asn: u32,
    #[serde(default = "default_bgp_port")]
    pub port: u16,
    /// Proposed hold time (RFC 4271 §4.2); keepalive is a third of it.
    #[serde(default = "default_hold_time", with = "duration")]
    pub hold_time: Duration,
    /// TCP MD5 (RFC 2385) key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// TTL of outgoing packets; 1 = directly connected.
    #[serde(default = "default_multihop")]
    pub ebgp_multihop: u8,
    /// GTSM (RFC 5082): send TTL 255, require 255 - (hops - 1) on receive.
    #[serde(default)]
    pub ttl_security: bool,
    /// Never connect to the peer; wait for its connection (needs the
    /// listener).
    #[serde(default)]
    pub passive: bool,
    /// Accept the peer's connections on TCP 179 of the node's address
    /// toward it. Default ([`PeerConfig::listens`]): only when `passive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<bool>,
    /// Node labels that must all match for this node to use the peer.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub graceful_restart: GracefulRestartConfig,
    #[serde(default)]
    pub bfd: BfdConfig,
}

impl PeerConfig {
    /// Whether herald accepts this peer's connections: `listen` if set,
    /// else only for a `passive` peer (an active one connects out, so a
    /// socket open to the link would serve nothing but other hosts).
    pub fn listens(&self) -> bool {
        self.listen.unwrap_or(self.passive)
    }
}

fn default_bgp_port() -> u16 {
    179
}

fn default_hold_time() -> Duration {
    Duration::from_secs(90)
}

fn default_multihop() -> u8 {
    1
}

/// A peer's address: a literal, or the node's default gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerAddress {
    Ip(IpAddr),
    /// The node's default gateway, resolved at run time and followed.
    Gateway,
}

impl FromStr for PeerAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "gateway" {
            return Ok(PeerAddress::Gateway);
        }
        text.parse()
            .map(PeerAddress::Ip)
            .map_err(|_| format!("{text:?} is neither an IP address nor \"gateway\""))
    }
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddress::Ip(ip) => ip.fmt(f),
            PeerAddress::Gateway => f.write_str("gateway"),
        }
    }
}

impl Serialize for PeerAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PeerAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Graceful restart (RFC 4724), herald as the restarting speaker.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GracefulRestartConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Restart Time advertised in the capability (12 bits: at most 4095 s).
    #[serde(default = "default_restart_time", with = "duration")]
    pub restart_time: Duration,
}

impl Default for GracefulRestartConfig {
    fn default() -> Self {
        GracefulRestartConfig {
            enabled: true,
            restart_time: default_restart_time(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_restart_time() -> Duration {
    Duration::from_secs(120)
}

/// The BFD session beside a peer's BGP session (RFC 5880/5881/5883).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BfdConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Required Min RX Interval we advertise.
    #[serde(default = "default_bfd_interval", with = "duration")]
    pub min_rx: Duration,
    /// Desired Min TX Interval we advertise.
    #[serde(default = "default_bfd_interval", with = "duration")]
    pub min_tx: Duration,
    /// Detect Mult.
    #[serde(default = "default_bfd_multiplier")]
    pub multiplier: u8,
    /// RFC 5883 multihop (UDP 4784) instead of RFC 5881 single-hop (3784).
    #[serde(default)]
    pub multihop: bool,
    /// Multihop only: the smallest TTL / Hop Limit a received packet may
    /// carry (RFC 5883 §5 leaves it to the operator). `None` is 254, one
    /// router in between, as FRR; a peer `n` routers away needs `255 - n`
    /// (or less, for a peer that does not send at 255). Single-hop always
    /// requires 255 (RFC 5881 §5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ttl: Option<u8>,
    /// RFC 5880 §6.7 authentication; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<BfdAuthConfig>,
    /// draft-ietf-idr-bgp-bfd-strict-mode: BGP reaches Established only
    /// while BFD is Up.
    #[serde(default)]
    pub strict: bool,
}

impl Default for BfdConfig {
    fn default() -> Self {
        BfdConfig {
            enabled: true,
            min_rx: default_bfd_interval(),
            min_tx: default_bfd_interval(),
            multiplier: default_bfd_multiplier(),
            multihop: false,
            min_ttl: None,
            auth: None,
            strict: false,
        }
    }
}

/// A BFD session's authentication: the type, the key id, and the file the
/// key is read from.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BfdAuthConfig {
    #[serde(rename = "type")]
    pub auth_type: BfdAuthType,
    /// Auth Key ID, 0 to 255: both ends must use the same.
    pub key_id: u8,
    /// The key, as written (one trailing newline is not part of it): 1 to
    /// 16 bytes, 20 for the SHA1 types.
    pub key_file: PathBuf,
}

/// RFC 5880 §4.1 Auth Types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BfdAuthType {
    SimplePassword,
    KeyedMd5,
    MeticulousKeyedMd5,
    KeyedSha1,
    MeticulousKeyedSha1,
}

impl BfdAuthType {
    /// The longest key the type takes (the password field, or the digest
    /// the key stands in for while hashing).
    pub fn max_key_len(self) -> usize {
        match self {
            BfdAuthType::KeyedSha1 | BfdAuthType::MeticulousKeyedSha1 => 20,
            _ => 16,
        }
    }
}

impl BfdAuthConfig {
    /// Reads the key: the file's bytes without one trailing newline. An
    /// error names the field and the file.
    pub fn read_key(&self) -> Result<Vec<u8>, String> {
        let path = self.key_file.display();
        let bytes = std::fs::read(&self.key_file)
            .map_err(|error| format!("bfd.auth.key_file: cannot read {path}: {error}"))?;
        let key = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let key = key.strip_suffix(b"\r").unwrap_or(key);
        let max = self.auth_type.max_key_len();
        if key.is_empty() || key.len() > max {
            return Err(format!(
                "bfd.auth.key_file: {path} holds a key of {} bytes; this type takes 1 to {max}",
                key.len()
            ));
        }
        Ok(key.to_vec())
    }
}

fn default_bfd_interval() -> Duration {
    Duration::from_millis(300)
}

fn default_bfd_multiplier() -> u8 {
    3
}

/// The drain sequence (RFC 8326 GRACEFUL_SHUTDOWN, wait, withdraw).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DrainConfig {
    #[serde(default = "default_gshut_wait", with = "duration")]
    pub gshut_wait: Duration,
    /// SIGTERM drains first (GRACEFUL_SHUTDOWN, wait, withdraw, remove)
    /// instead of a planned restart that keeps every route.
    #[serde(default)]
    pub on_sigterm: bool,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            gshut_wait: default_gshut_wait(),
            on_sigterm: false,
        }
    }
}

fn default_gshut_wait() -> Duration {
    Duration::from_secs(15)
}

/// Anti-flap (`crate::antiflap`): how long a withdrawal may be held back so
/// that a pod flapping readiness does not make the routers rehash their ECMP
/// sets every few seconds. Announcements are never delayed.
///
/// Holding a withdrawal has a price. With `externalTrafficPolicy: Local`,
/// kube-proxy drops traffic for a Service on a node without a ready local
/// endpoint, so every held withdrawal blackholes this node's share of new
/// connections for as long as it is held. The defaults are chosen for that
/// case:
///
/// - `withdraw_delay: 0s`: an address that was up for a while is withdrawn
///   the moment its endpoint goes away (pod moved, scaled down, drained):
///   the common case loses nothing.
/// - `min_up: 5s`: only an address announced less than 5 s ago is held, until
///   it has been up 5 s. A readiness flap then costs the routers at most one
///   announce and one withdraw per 5 s, and the blackhole it can cause is
///   bounded by 5 s and reaches only an endpoint that was ready for less than
///   that, i.e. one that is already flapping. Each ECMP change rehashes
///   established flows of every node, so bounding the rate protects more
///   connections than the few seconds of holding can cost.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AntiFlapConfig {
    /// The shortest time an announcement stays up once announced.
    #[serde(default = "default_min_up", with = "duration")]
    pub min_up: Duration,
    /// How long an address stays announced after it left the desired set.
    #[serde(default, with = "duration")]
    pub withdraw_delay: Duration,
    /// How long a change of only an announcement's weight (its
    /// link-bandwidth community) waits for further weight changes before
    /// it goes out: a rollout then costs the routers a few UPDATEs, not
    /// one per pod. Address announcements and withdrawals never wait for
    /// it.
    #[serde(default = "default_weight_delay", with = "duration")]
    pub weight_delay: Duration,
}

impl Default for AntiFlapConfig {
    fn default() -> Self {
        AntiFlapConfig {
            min_up: default_min_up(),
            withdraw_delay: Duration::ZERO,
            weight_delay: default_weight_delay(),
        }
    }
}

fn default_weight_delay() -> Duration {
    Duration::from_millis(500)
}

fn default_min_up() -> Duration {
    Duration::from_secs(5)
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, |_| Vec::new())
    }

    /// [`Config::load`], with the rules of a subsystem that reads the config
    /// (the BIRD backend's `config_problems`) checked beside the config's own.
    pub fn load_with(
        path: &Path,
        rules: impl Fn(&Config) -> Vec<Problem>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_yaml_with(&text, rules)
    }

    /// Parses and validates YAML text.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_with(text, |_| Vec::new())
    }

    /// [`Config::from_yaml`] with `rules` checked too: every problem of both
    /// is reported, in one error.
    pub fn from_yaml_with(
        text: &str,
        rules: impl Fn(&Config) -> Vec<Problem>,
    ) -> Result<Config, ConfigError> {
        let config: Config = error::parse_yaml(text)?;
        let mut problems = validate::config_problems(&config);
        problems.extend(rules(&config));
        error::into_result(problems)?;
        Ok(config)
    }

    /// Checks every rule and reports every broken one (not only the first),
    /// each with its field path. Reads no files.
    pub fn validate(&self) -> Result<(), ConfigError> {
        error::into_result(validate::config_problems(self))
    }

    /// Findings that do not stop the agent: key files that cannot be read
    /// now (the peer will not start until they can), settings that work but
    /// are probably not what was meant. Reads the key files.
    pub fn warnings(&self) -> Vec<Problem> {
        validate::config_warnings(self)
    }

    /// The effective configuration (defaults filled in) as YAML.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("the config serializes to YAML")
    }

    /// The pool whose CIDRs hold `address`, if any.
    pub fn pool_for(&self, address: IpAddr) -> Option<&PoolConfig> {
        PoolConfig::find(&self.pools, address)
    }
}

impl PoolConfig {
    /// The first of `pools` (config order) whose CIDRs hold `address`.
    pub fn find(pools: &[PoolConfig], address: IpAddr) -> Option<&PoolConfig> {
        pools
            .iter()
            .find(|pool| pool.cidrs.iter().any(|cidr| cidr.contains(&address)))
    }

    /// Whether the link-bandwidth community is sent in its transitive form:
    /// `link_bandwidth_transitive`, transitive when unset.
    pub fn link_bandwidth_transitive(&self) -> bool {
        self.link_bandwidth_transitive.unwrap_or(true)
    }
}

/// Durations written as strings (`50ms`, `9s`, `2m`).
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration ({e}); write it like \"50ms\", \"9s\" or \"2m\""
            ))
        })
    }
}

#[cfg(test)]
pub(crate) mod doc_tests {
    use serde_yaml_ng::Value;

    use super::Config;

    pub(crate) const DOC: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ));

    /// Every mapping key under `value`, as `parent.child` paths with `[]`
    /// for list elements.
    pub(crate) fn key_paths(value: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
        match value {
            Value::Mapping(map) => {
                for (key, child) in map {
                    let key = key.as_str().expect("string keys").to_string();
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    out.push((key, path.clone()));
                    key_paths(child, &path, out);
                }
            }
            Value::Sequence(items) => {
                for item in items {
                    key_paths(item, &format!("{prefix}[]"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_config_field_is_documented() {
        // The example sets every optional field, so every key serializes.
        let config = Config::from_yaml(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/herald.yaml"
        )))
        .unwrap();
        assert!(config.router_id.is_some() && config.peers[0].password_file.is_some());
        let mut keys = Vec::new();
        key_paths(&serde_yaml_ng::to_value(&config).unwrap(), "", &mut keys);
        assert!(keys.len() > 20, "{keys:?}");
        for (key, path) in keys {
            assert!(
                DOC.contains(&format!("| `{key}` |")),
                "docs/configuration.md has no table row for `{key}` ({path})"
            );
        }
    }
}
