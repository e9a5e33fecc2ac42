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
use crate::config::{BfdAuthType, BfdConfig, PeerConfig};

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

/// A peer's `bfd.auth` as the BFD session's authentication, with the key
/// read from its file now (so a key rotated in the file is used from the
/// next reload on); an error names the config field at fault.
pub fn bfd_auth(config: &BfdConfig) -> Result<Option<bfd::auth::AuthConfig>, String> {
    let Some(auth) = &config.auth else {
        return Ok(None);
    };
    let auth_type = match auth.auth_type {
        BfdAuthType::SimplePassword => bfd::auth::AuthType::SimplePassword,
        BfdAuthType::KeyedMd5 => bfd::auth::AuthType::KeyedMd5,
        BfdAuthType::MeticulousKeyedMd5 => bfd::auth::AuthType::MeticulousKeyedMd5,
        BfdAuthType::KeyedSha1 => bfd::auth::AuthType::KeyedSha1,
        BfdAuthType::MeticulousKeyedSha1 => bfd::auth::AuthType::MeticulousKeyedSha1,
    };
    let key = auth.read_key()?;
    bfd::auth::AuthConfig::new(auth_type, auth.key_id, key)
        .map(Some)
        .map_err(|error| format!("bfd.auth.{error}"))
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
            min_ttl: None,
            auth: None,
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
    fn bfd_auth_reads_the_key_file_and_names_the_field_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("bfd.key");
        std::fs::write(&key_file, "0123456789abcdef0123\n").unwrap();
        let mut config = bfd_config(50, 50, 3);
        assert_eq!(bfd_auth(&config).unwrap(), None);
        config.auth = Some(crate::config::BfdAuthConfig {
            auth_type: BfdAuthType::MeticulousKeyedSha1,
            key_id: 7,
            key_file: key_file.clone(),
        });
        let auth = bfd_auth(&config).unwrap().expect("authentication");
        assert_eq!(auth.auth_type(), bfd::auth::AuthType::MeticulousKeyedSha1);
        assert_eq!(auth.key_id(), 7);
        // The same 20 bytes are too long for MD5.
        config.auth.as_mut().unwrap().auth_type = BfdAuthType::KeyedMd5;
        let err = bfd_auth(&config).unwrap_err();
        assert!(
            err.starts_with("bfd.auth.key_file:") && err.contains("1 to 16"),
            "{err}"
        );
        config.auth.as_mut().unwrap().key_file = dir.path().join("missing");
        let err = bfd_auth(&config).unwrap_err();
        assert!(err.starts_with("bfd.auth.key_file:"), "{err}");
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
