//! Applying a reloaded configuration or services file, and following the
//! default gateway for peers with `address: gateway`.
//!
//! Owns: the `impl Agent` methods that turn a [`ConfigDiff`] into changes of
//! the running agent: sessions whose settings did not change stay up; a peer
//! whose BGP settings changed gets a new session; BFD-only changes go to the
//! BFD runtime (a Poll Sequence for new intervals, RFC 5880 §6.8.3); pools
//! and selection re-evaluate the desired set; anti-flap and drain take their
//! new values. An invalid file never reaches here: the reload source rejects
//! it and the last good one stays in force. The reload source itself, the
//! task that notices changed files, is [`watch`]. Must not touch: the diff
//! (`crate::config::diff`).

use std::collections::BTreeSet;

mod watch;

pub use watch::{
    Metrics, POLL_INTERVAL, Reload, ReloadError, ReloadLabels, ReloadOptions, ReloadSource,
};

use super::speaker::Speaker;
use super::{Agent, peers};
use crate::config::{BfdChange, Config, ConfigDiff, PeerAddress};

impl Agent {
    pub(super) async fn reload(&mut self, reload: Reload) {
        match reload {
            Reload::Rejected { path, error } => {
                for problem in error.problems() {
                    tracing::error!(
                        file = %path.display(),
                        field = %problem.path,
                        "reload rejected, the last good file stays in force: {}",
                        problem.message
                    );
                }
            }
            Reload::Services(file) => {
                tracing::info!(services = file.services.len(), "services file reloaded");
                self.source.set_services(file);
            }
            Reload::Config(config) => self.reload_config(*config).await,
        }
    }

    /// A new configuration: applies [`ConfigDiff::between`] the one in force
    /// and `new`.
    async fn reload_config(&mut self, mut new: Config) {
        let diff = ConfigDiff::between(&self.config, &new);
        if diff.is_empty() {
            tracing::info!("configuration reloaded: nothing changed");
            return;
        }
        for line in diff.summary() {
            tracing::info!("configuration reloaded: {line}");
        }
        for change in &diff.needs_restart {
            tracing::warn!("configuration reloaded: {change}: takes effect when herald restarts");
        }
        if let Some((old, wanted)) = &diff.interface {
            tracing::warn!(
                "configuration reloaded: interface {old} -> {wanted} takes effect when herald restarts; the addresses stay on {old}"
            );
            new.interface = old.clone();
        }
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
            match peers::router_id(&new) {
                // The sessions started again below take the new identity.
                Some(router_id) => self.router_id = router_id,
                None => {
                    tracing::error!("configuration reloaded: no router id; keeping the old one")
                }
            }
        }
        if let Some(anti_flap) = &diff.anti_flap {
            self.antiflap.set_config(anti_flap.clone());
        }
        if let Some(drain) = &diff.drain {
            self.drain.set_gshut_wait(drain.gshut_wait);
        }
        if diff.policy_changed {
            self.source.set_config(&new);
        }
        if new.peers.iter().any(|p| p.address == PeerAddress::Gateway) && self.gateways.is_none() {
            match crate::netlink::gateway::GatewayWatch::start().await {
                Ok(watch) => self.gateways = Some(watch),
                Err(error) => tracing::warn!("cannot follow the default gateway: {error}"),
            }
        }
        self.config = new;
        if let Some(Speaker::Bird(bird)) = &self.speaker {
            // Peers, timers and paths of BIRD's include file follow the
            // reloaded config (it re-renders; BIRD reloads if it changed).
            bird.set_config(&self.config);
        }
        self.status.set_config(&self.config);
        let labels = self.node_labels.clone();
        self.select_peers(&labels);
        self.reconcile().await;
    }

    /// New intervals or multiplier on a running BFD session: a Poll
    /// Sequence, BGP untouched.
    fn change_bfd_parameters(&mut self, name: &str, peer: &crate::config::PeerConfig) {
        let (Some(runtime), Some(bfd)) = (&self.bfd, self.peer_bfd.get_mut(name)) else {
            return;
        };
        match super::settings::bfd_session(&peer.bfd) {
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
