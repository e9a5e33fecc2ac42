//! The user's configuration, translated into the settings the protocol cores
//! take: a peer's block into a BGP [`SessionConfig`], its `bfd` block into a
//! BFD [`bfd::SessionConfig`]. The cores know nothing of the config file;
//! this is the one place that maps it.
//!
//! Owns: the mapping and the defaults herald's own sessions run with
//! (ConnectRetry, backoff). Must not touch: validation of the file (config
//! does it) or running anything; pure.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::bfd;
use crate::bgp::fsm::GracefulRestart;
use crate::bgp::session::SessionConfig;
use crate::bgp::transport::Md5Key;
use crate::config::{BfdConfig, PeerConfig};

/// The BGP session of `peer` at `address` (its literal address, or the
/// gateway it resolved to). With a `password_file`, the key is read again
/// before every connection attempt (a rotated file needs no restart).
/// `listen` is the local address whose listener takes the peer's
/// connections (when [`PeerConfig::listens`]); `restarted` says herald
/// restarted with its service addresses in place, which sets the R and F
/// bits of RFC 4724.
pub fn bgp_session(
    peer: &PeerConfig,
    address: IpAddr,
    local_as: u32,
    router_id: Ipv4Addr,
    listen: Option<IpAddr>,
    restarted: bool,
) -> SessionConfig {
    let gr = &peer.graceful_restart;
    let mut session = SessionConfig::new(
        peer.name.clone(),
        SocketAddr::new(address, peer.port),
        local_as,
        peer.asn,
        router_id,
    )
    .hold_time(peer.hold_time.as_secs().min(u64::from(u16::MAX)) as u16)
    .ttl(peer.ebgp_multihop, peer.ttl_security)
    .graceful_restart(gr.enabled.then(|| GracefulRestart {
        // The capability's Restart Time has 12 bits.
        restart_time: gr.restart_time.as_secs().min(4095) as u16,
        restarting: restarted,
        forwarding_preserved: restarted,
    }))
    .connect_retry(Duration::from_secs(30))
    .backoff(Duration::from_secs(1), Duration::from_secs(60));
    if peer.password_file.is_some() {
        let peer = peer.clone();
        session = session.md5_key_from(Md5Key::read(move || match peer.read_password() {
            Ok(Some(key)) => Ok(key),
            Ok(None) => Err("password_file is no longer set".to_string()),
            Err(error) => Err(error.to_string()),
        }));
    }
    if let Some(local) = listen {
        session = session.listen(local);
    }
    if peer.passive {
        session = session.passive();
    }
    session
}

/// A peer's `bfd` block as the BFD session's settings; an error names the
/// config field at fault (`bfd.min_tx: ...`).
pub fn bfd_session(config: &BfdConfig) -> Result<bfd::SessionConfig, String> {
    bfd::SessionConfig {
        desired_min_tx: config.min_tx,
        required_min_rx: config.min_rx,
        detect_mult: config.multiplier,
    }
    .validated()
    .map_err(|error| match error {
        bfd::BfdError::InvalidConfig { field, reason } => {
            let field = match field {
                "desired_min_tx" => "min_tx",
                "required_min_rx" => "min_rx",
                _ => "multiplier",
            };
            format!("bfd.{field}: {reason}")
        }
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn bfd_config(min_rx_ms: u64, min_tx_ms: u64, multiplier: u8) -> BfdConfig {
        BfdConfig {
            enabled: true,
            min_rx: Duration::from_millis(min_rx_ms),
            min_tx: Duration::from_millis(min_tx_ms),
            multiplier,
            multihop: false,
            strict: false,
        }
    }

    #[test]
    fn the_bfd_session_takes_the_peer_bfd_block() {
        let config = bfd_session(&bfd_config(50, 20, 3)).unwrap();
        assert_eq!(config.required_min_rx, Duration::from_millis(50));
        assert_eq!(config.desired_min_tx, Duration::from_millis(20));
        assert_eq!(config.detect_mult, 3);
    }

    #[test]
    fn a_bfd_value_out_of_range_names_the_config_field() {
        let err = bfd_session(&bfd_config(50, 0, 3)).unwrap_err();
        assert!(err.starts_with("bfd.min_tx:"), "{err}");
        let err = bfd_session(&bfd_config(50, 20, 0)).unwrap_err();
        assert!(err.starts_with("bfd.multiplier:"), "{err}");
        let mut huge = bfd_config(50, 20, 3);
        huge.min_rx = Duration::from_secs(10_000);
        let err = bfd_session(&huge).unwrap_err();
        assert!(err.starts_with("bfd.min_rx:"), "{err}");
    }

    #[test]
    fn the_bgp_session_takes_the_peer_block_and_the_restart() {
        let config = Config::from_yaml(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/herald.yaml"
        )))
        .unwrap();
        let peer = &config.peers[0];
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        let session = bgp_session(
            peer,
            address,
            64601,
            Ipv4Addr::new(192, 0, 2, 11),
            None,
            true,
        );
        assert_eq!(session.listen, None);
        assert!(!session.passive);
        assert_eq!(session.name, peer.name);
        assert_eq!(session.peer, SocketAddr::new(address, peer.port));
        assert_eq!(session.peer_as, peer.asn);
        assert_eq!(u64::from(session.hold_time), peer.hold_time.as_secs());
        let gr = session.graceful_restart.expect("graceful restart is on");
        assert!(gr.restarting && gr.forwarding_preserved);
        assert_eq!(
            u64::from(gr.restart_time),
            peer.graceful_restart.restart_time.as_secs()
        );
    }
}
