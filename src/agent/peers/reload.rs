//! Applying a reloaded configuration to the peers: sessions whose settings
//! did not change stay up; a peer whose BGP settings changed gets a new
//! session (and BFD beside it); BFD-only changes go to the BFD runtime (a
//! Poll Sequence for new intervals, RFC 5880 §6.8.3); a new `asn` or
//! `router_id` starts every session again. And following the default
//! gateway for peers with `address: gateway`.
//!
//! Owns: the `impl Peers` methods that turn a [`ConfigDiff`] into changes
//! of the running peers. Must not touch: the diff itself
//! (`crate::config::diff`), or what the rest of the config changes (the
//! agent applies it).

use std::collections::BTreeSet;

use super::{Peers, route, start_gateway_watch};
use crate::config::{BfdChange, Config, ConfigDiff, PeerAddress};

impl Peers {
    /// A new configuration: applies [`ConfigDiff::between`] the one in force
    /// and `new` to the peers.
    pub(super) async fn reload(&mut self, new: Config) {
        let diff = ConfigDiff::between(&self.config, &new);
        let restart_all = diff.restarts_every_session();
        for peer in &diff.peers_removed {
            if self.used_peers.contains(&peer.name) {
                self.remove_peer(&peer.name);
            }
        }
        for change in &diff.peers_changed {
            let name = change.name().to_string();
            if !self.used_peers.contains(&name) {
                continue;
            }
            if change.session || restart_all {
                // A new session (and BFD beside it) with the new settings:
                // select_peers below starts it again.
                self.remove_peer(&name);
                continue;
            }
            match change.bfd {
                BfdChange::None => {}
                BfdChange::Parameters => self.change_bfd_parameters(&name, &change.new),
                BfdChange::Session => {
                    self.stop_bfd(&name);
                    if change.new.bfd.enabled {
                        self.restart_bfd(&change.new);
                    }
                }
            }
        }
        if restart_all {
            let names: Vec<String> = self.used_peers.iter().cloned().collect();
            for name in names {
                self.remove_peer(&name);
            }
            match route::router_id(&new) {
                // The sessions started again below take the new identity.
                Some(router_id) => self.router_id = router_id,
                None => {
                    tracing::error!("configuration reloaded: no router id; keeping the old one")
                }
            }
        }
        self.gateways = start_gateway_watch(&new, self.gateways.take()).await;
        self.config = new;
        let labels = self.node_labels.clone();
        self.select_peers(&labels);
        self.refresh_bfd_keys();
    }

    /// Reads every running BFD session's key file again and gives the
    /// runtime the keys that changed, so a key rotated in its file (on both
    /// sides) takes effect at the next reload without restarting the
    /// session. A key that cannot be read keeps the one in use.
    fn refresh_bfd_keys(&mut self) {
        let Some(runtime) = &self.bfd else {
            return;
        };
        for peer in &self.config.peers {
            let Some(bfd) = self.peer_bfd.get_mut(&peer.name) else {
                continue;
            };
            match crate::agent::settings::bfd_auth(&peer.bfd) {
                Ok(auth) if auth != bfd.spec.auth => {
                    bfd.spec.auth = auth.clone();
                    match runtime.change_auth(bfd.id, auth) {
                        Ok(()) => tracing::info!(peer = %peer.name, "bfd: authentication changed"),
                        Err(error) => tracing::warn!(peer = %peer.name, "bfd: {error}"),
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(
                    peer = %peer.name,
                    "bfd: {error}; keeping the authentication in use"
                ),
            }
        }
    }

    /// New intervals or multiplier on a running BFD session: a Poll
    /// Sequence, BGP untouched.
    fn change_bfd_parameters(&mut self, name: &str, peer: &crate::config::PeerConfig) {
        let (Some(runtime), Some(bfd)) = (&self.bfd, self.peer_bfd.get_mut(name)) else {
            return;
        };
        match crate::agent::settings::bfd_session(&peer.bfd) {
            Ok(config) => {
                bfd.spec.config = config;
                if let Err(error) = runtime.change_parameters(bfd.id, config) {
                    tracing::warn!(peer = %name, "bfd: {error}");
                }
            }
            Err(error) => tracing::warn!(peer = %name, "bfd: {error}"),
        }
    }

    /// BFD enabled, or switched between single-hop and multihop, on a peer
    /// whose BGP session stays.
    fn restart_bfd(&mut self, peer: &crate::config::PeerConfig) {
        let address = match peer.address {
            PeerAddress::Ip(ip) => Some(ip),
            PeerAddress::Gateway => self.gateway_peers.get(&peer.name).copied(),
        };
        if let Some(address) = address
            && let Err(why) = self.start_bfd(peer, address)
        {
            tracing::warn!(peer = %peer.name, "bfd not started: {why}");
        }
    }

    /// The default gateway changed: peers with `address: gateway` that
    /// used another address start again toward the new one.
    pub(super) fn gateways_changed(&mut self) {
        let now = self.gateway_address();
        let moved: BTreeSet<String> = self
            .gateway_peers
            .iter()
            .filter(|(_, address)| Some(**address) != now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &moved {
            tracing::info!(peer = %name, gateway = ?now, "the default gateway changed: new session");
            self.remove_peer(name);
        }
        if !moved.is_empty() || !self.pending_peers.is_empty() {
            let labels = self.node_labels.clone();
            self.select_peers(&labels);
        }
    }
}
