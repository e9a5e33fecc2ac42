//! What one session runs with: [`SessionConfig`], its defaults and setters,
//! and what the session derives from it (the FSM's settings, the socket
//! options).
//!
//! Owns: the session's settings. Must not touch: the user's config file
//! (the agent maps it onto these).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::bgp::fsm::{FsmConfig, GracefulRestart};
use crate::bgp::transport::{Md5Key, SocketOptions, TransportError, TtlPolicy};

/// Everything one session needs. The agent builds it from a peer's
/// configuration; tests build it with [`SessionConfig::new`] and the setters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// The peer's name in config, logs and metrics.
    pub name: String,
    /// Address and port to connect to (the `gateway` already resolved).
    pub peer: SocketAddr,
    pub local_as: u32,
    pub peer_as: u32,
    pub router_id: Ipv4Addr,
    /// Proposed hold time, whole seconds (0 or at least 3).
    pub hold_time: u16,
    /// TCP MD5 key (the agent reads `password_file` again before every
    /// connection attempt).
    pub md5_key: Option<Md5Key>,
    pub source: Option<IpAddr>,
    /// Accept the peer's connections on port 179 of this local address (the
    /// speaker's listener); `None`: the peer's connections are refused.
    pub listen: Option<IpAddr>,
    pub ebgp_multihop: u8,
    pub ttl_security: bool,
    /// Wait for the peer to connect; never connect out.
    pub passive: bool,
    pub extended_message: bool,
    pub graceful_restart: Option<GracefulRestart>,
    /// NEXT_HOP for IPv4 routes; default: our address on the session if it
    /// is IPv4.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Global IPv6 next hop (and link-local); default: our address on the
    /// session if it is IPv6.
    pub next_hop_v6: Option<(Ipv6Addr, Option<Ipv6Addr>)>,
    pub connect_retry: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl SessionConfig {
    /// A session named `name` from `local_as` (identifier `router_id`) to
    /// `peer_as` at `peer`, with the defaults the setters below change: hold
    /// time 90 s (RFC 4271 §10's suggestion), no TCP MD5, the kernel's
    /// source address, TTL 1 without GTSM, active, no extended messages, no
    /// graceful restart, next hops from the session's local address, a
    /// ConnectRetry of 30 s and reconnect backoff from 1 s to 60 s.
    pub fn new(
        name: impl Into<String>,
        peer: SocketAddr,
        local_as: u32,
        peer_as: u32,
        router_id: Ipv4Addr,
    ) -> Self {
        SessionConfig {
            name: name.into(),
            peer,
            local_as,
            peer_as,
            router_id,
            hold_time: 90,
            md5_key: None,
            source: None,
            listen: None,
            ebgp_multihop: 1,
            ttl_security: false,
            passive: false,
            extended_message: false,
            graceful_restart: None,
            next_hop_v4: None,
            next_hop_v6: None,
            connect_retry: Duration::from_secs(30),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }

    /// Proposed hold time in whole seconds (0, or at least 3).
    pub fn hold_time(mut self, seconds: u16) -> Self {
        self.hold_time = seconds;
        self
    }

    /// TCP MD5 (RFC 2385) with a fixed `key`.
    pub fn md5_key(mut self, key: Option<Vec<u8>>) -> Self {
        self.md5_key = key.map(Md5Key::Fixed);
        self
    }

    /// TCP MD5 (RFC 2385) with a key read again before every connection
    /// attempt.
    pub fn md5_key_from(mut self, key: Md5Key) -> Self {
        self.md5_key = Some(key);
        self
    }

    /// Accept the peer's connections on port 179 of `local` (the speaker's
    /// listener binds it).
    pub fn listen(mut self, local: IpAddr) -> Self {
        self.listen = Some(local);
        self
    }

    /// Connect from `address`.
    pub fn source(mut self, address: IpAddr) -> Self {
        self.source = Some(address);
        self
    }

    /// TTL of outgoing packets (1: directly connected) and GTSM (RFC 5082).
    pub fn ttl(mut self, ebgp_multihop: u8, ttl_security: bool) -> Self {
        self.ebgp_multihop = ebgp_multihop;
        self.ttl_security = ttl_security;
        self
    }

    /// Wait for the peer to connect; never connect out.
    pub fn passive(mut self) -> Self {
        self.passive = true;
        self
    }

    /// Offer RFC 8654 extended messages.
    pub fn extended_message(mut self) -> Self {
        self.extended_message = true;
        self
    }

    /// Graceful restart (RFC 4724) as the restarting speaker.
    pub fn graceful_restart(mut self, graceful_restart: Option<GracefulRestart>) -> Self {
        self.graceful_restart = graceful_restart;
        self
    }

    /// The global IPv6 next hop (and link-local) of IPv6 routes.
    pub fn next_hop_v6(mut self, global: Ipv6Addr, link_local: Option<Ipv6Addr>) -> Self {
        self.next_hop_v6 = Some((global, link_local));
        self
    }

    /// How long an outgoing connection may take (ConnectRetryTime).
    pub fn connect_retry(mut self, limit: Duration) -> Self {
        self.connect_retry = limit;
        self
    }

    /// The reconnect backoff after a failed session: `initial`, doubling up
    /// to `max`.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max;
        self
    }

    pub(super) fn fsm_config(&self) -> FsmConfig {
        let mut cfg = FsmConfig::new(self.local_as, self.peer_as, self.router_id);
        cfg.hold_time = self.hold_time;
        cfg.passive = self.passive;
        cfg.extended_message = self.extended_message;
        cfg.graceful_restart = self.graceful_restart.clone();
        cfg.connect_retry = self.connect_retry;
        cfg.backoff_initial = self.backoff_initial;
        cfg.backoff_max = self.backoff_max;
        cfg.jitter_seed ^= self.peer.port() as u64
            ^ u64::from(match self.peer.ip() {
                IpAddr::V4(a) => u32::from(a),
                IpAddr::V6(a) => a.to_bits() as u32,
            });
        cfg
    }

    pub(super) fn internal(&self) -> bool {
        self.local_as == self.peer_as
    }

    /// TTL and GTSM toward the peer.
    pub fn ttl_policy(&self) -> TtlPolicy {
        TtlPolicy::new(self.ebgp_multihop, self.ttl_security, self.internal())
    }

    /// The options of the next connection attempt, with the MD5 key as of
    /// now (a rotated key file is read here).
    pub(super) fn socket_options(&self) -> Result<SocketOptions, TransportError> {
        let md5_key = match &self.md5_key {
            Some(key) => Some(key.current(self.peer.ip())?),
            None => None,
        };
        Ok(SocketOptions {
            ttl: self.ttl_policy(),
            md5_key,
            source: self.source,
        })
    }
}
