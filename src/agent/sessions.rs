//! The peers this node uses: starting each BGP session with its BFD
//! session beside it, removing them, and coupling BFD state changes to BGP.
//!
//! Owns: the `impl Agent` methods for peers (the state stays in the owner,
//! [`super::Agent`]). Must not touch: the reconcile order or the sources.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::coupling::{self, Coupling};
use super::speaker::Speaker;
use super::{Agent, AgentError, AgentEvent, PeerBfd, peers, report};
use crate::bfd::runtime::{SessionEvent as BfdEvent, SessionSpec};
use crate::config::{PeerAddress, PeerConfig};
use crate::status::{BfdSessionStatus, PeerStatus, unix_seconds};

impl Agent {
    pub(super) fn start_speaker(
        &mut self,
        restarted: bool,
        bgp: Arc<crate::bgp::metrics::Metrics>,
    ) -> Result<(), AgentError> {
        let router_id = peers::router_id(&self.config).ok_or(AgentError::NoRouterId)?;
        let mut keys = Vec::new();
        for p in &self.config.peers {
            if let (PeerAddress::Ip(ip), Ok(Some(key))) = (p.address, p.read_password()) {
                keys.push((ip, key));
            }
        }
        tracing::info!(%router_id, "BGP speaker starting");
        self.router_id = router_id;
        self.restarted = restarted;
        self.speaker = Some(Speaker::Herald(crate::bgp::speaker::Speaker::start(
            bgp, &keys,
        )));
        Ok(())
    }

    /// Uses the peers whose `node_selector` matches `labels`: starts the
    /// new ones, removes those that no longer match.
    pub(super) fn select_peers(&mut self, labels: &BTreeMap<String, String>) {
        self.node_labels = labels.clone();
        for peer in self.config.peers.clone() {
            let selected = peers::selects(&peer.node_selector, labels);
            let used = self.used_peers.contains(&peer.name);
            if selected && !used {
                tracing::info!(peer = %peer.name, "node_selector matches: using the peer");
                self.used_peers.insert(peer.name.clone());
                self.pending_peers.push(peer);
            } else if !selected && used {
                tracing::info!(peer = %peer.name, "node_selector no longer matches: removing the peer");
                self.remove_peer(&peer.name);
            } else if !selected {
                tracing::info!(peer = %peer.name, "not used by this node: node_selector does not match");
            }
        }
        self.start_pending_peers();
        self.publish();
    }

    pub(super) fn remove_peer(&mut self, name: &str) {
        self.used_peers.remove(name);
        self.pending_peers.retain(|p| p.name != name);
        self.gateway_peers.remove(name);
        if let Some(speaker) = &mut self.speaker {
            speaker.remove_peer(name);
        }
        self.stop_bfd(name);
        self.peer_since.remove(name);
        self.status.remove_peer(name);
    }

    /// Starts every pending peer whose address and route are known.
    pub(super) fn start_pending_peers(&mut self) {
        let pending = std::mem::take(&mut self.pending_peers);
        for peer in pending {
            if !self.start_peer(&peer) {
                self.pending_peers.push(peer);
            }
        }
    }

    /// Starts the BGP session (and BFD beside it); false to try again later.
    pub(super) fn start_peer(&mut self, peer: &PeerConfig) -> bool {
        if let Some(Speaker::Bird(_)) = &self.speaker {
            // BIRD owns the sessions and their BFD; its rows come from the
            // read-back (`publish`).
            return true;
        }
        let address = match peer.address {
            PeerAddress::Ip(ip) => ip,
            PeerAddress::Gateway => match self.gateway_address() {
                Some(ip) => {
                    self.gateway_peers.insert(peer.name.clone(), ip);
                    ip
                }
                None => {
                    self.status.upsert_peer(PeerStatus {
                        name: peer.name.clone(),
                        address: "gateway".to_string(),
                        asn: peer.asn,
                        state: crate::status::BgpState::Idle,
                        since: None,
                        hold_time: None,
                        prefixes_sent: 0,
                        last_error: Some("no default gateway".to_string()),
                    });
                    return false;
                }
            },
        };
        let md5_key = match peer.read_password() {
            Ok(key) => key,
            Err(error) => {
                self.peer_not_started(peer, address, format!("{error}"));
                return false;
            }
        };
        if peer.bfd.enabled
            && let Err(why) = self.start_bfd(peer, address)
        {
            self.peer_not_started(peer, address, why);
            return false;
        }
        let held = peer.bfd.enabled && peer.bfd.strict;
        tracing::info!(peer = %peer.name, %address, bfd = peer.bfd.enabled, strict = held, "peer started");
        if let Some(speaker) = &mut self.speaker {
            let session = super::settings::bgp_session(
                peer,
                address,
                self.config.asn,
                self.router_id,
                md5_key,
                self.restarted,
            );
            speaker.add_peer(session, held);
        }
        true
    }

    /// The address a peer with `address: gateway` uses now: the first IPv4
    /// default gateway, else the first IPv6 one that is not link-local.
    pub(super) fn gateway_address(&self) -> Option<IpAddr> {
        let gateways = self.gateways.as_ref()?.current();
        gateways.ipv4.first().map(|g| g.address).or_else(|| {
            gateways
                .ipv6
                .iter()
                .map(|g| g.address)
                .find(|a| !matches!(a, IpAddr::V6(v6) if v6.is_unicast_link_local()))
        })
    }

    /// Starts the BFD session beside `peer` (single-hop bound to the egress
    /// interface toward it, or multihop).
    pub(super) fn start_bfd(&mut self, peer: &PeerConfig, address: IpAddr) -> Result<(), String> {
        let route =
            peers::route_to(address).map_err(|error| format!("no route to the peer: {error}"))?;
        if self.bfd.is_none() {
            // No peer had BFD at start; a reload or a selected peer does.
            let runtime = crate::bfd::runtime::BfdRuntime::spawn(
                crate::bfd::runtime::RuntimeOptions::default(),
                self.bfd_metrics.clone(),
            )
            .map_err(|error| format!("cannot start bfd: {error}"))?;
            self.bfd = Some(runtime);
        }
        let Some(bfd) = &self.bfd else {
            return Err("bfd is not running".to_string());
        };
        let config = super::settings::bfd_session(&peer.bfd)?;
        let mut spec = if peer.bfd.multihop {
            SessionSpec::multihop(address, config)
        } else {
            let mut spec = SessionSpec::single_hop(address, config);
            spec.interface = route.interface.clone();
            spec
        };
        spec.local = Some(route.local);
        let handle = bfd
            .add_session(spec.clone())
            .map_err(|error| format!("bfd: {error}"))?;
        let status = handle.status.clone();
        let id = handle.id;
        let forwarder = spawn_bfd_forwarder(peer.name.clone(), handle, self.events.clone());
        self.peer_bfd.insert(
            peer.name.clone(),
            PeerBfd {
                id,
                spec,
                status,
                since: None,
                strict: peer.bfd.strict,
                forwarder,
            },
        );
        self.publish_bfd(&peer.name);
        Ok(())
    }

    /// Removes the BFD session beside `peer` (AdminDown to the peer).
    pub(super) fn stop_bfd(&mut self, name: &str) {
        if let Some(bfd) = self.peer_bfd.remove(name) {
            bfd.forwarder.abort();
            if let Some(runtime) = &self.bfd
                && let Err(error) = runtime.remove_session(bfd.id)
            {
                tracing::warn!(peer = %name, "bfd: {error}");
            }
            self.status.remove_bfd_session(name);
        }
    }

    pub(super) fn peer_not_started(&self, peer: &PeerConfig, address: IpAddr, why: String) {
        tracing::warn!(peer = %peer.name, "not started: {why}");
        self.status.upsert_peer(PeerStatus {
            name: peer.name.clone(),
            address: address.to_string(),
            asn: peer.asn,
            state: crate::status::BgpState::Idle,
            since: None,
            hold_time: None,
            prefixes_sent: 0,
            last_error: Some(why),
        });
    }

    pub(super) fn bfd_event(&mut self, peer: &str, event: BfdEvent) {
        let change = event.change;
        tracing::info!(
            %peer,
            "BFD {} -> {} ({:?}, diag {})",
            change.old,
            change.new,
            change.cause,
            change.diag
        );
        let strict = match self.peer_bfd.get_mut(peer) {
            Some(bfd) => {
                bfd.since = Some(unix_seconds(SystemTime::now()));
                bfd.strict
            }
            None => false,
        };
        for action in coupling::on_bfd_change(&change, strict) {
            let Some(speaker) = &mut self.speaker else {
                return;
            };
            match action {
                Coupling::CeaseBfdDown => {
                    tracing::warn!(%peer, "BFD down: closing BGP with Cease/BFD Down (RFC 9384)");
                    speaker.bfd_down(peer);
                }
                Coupling::Hold => speaker.hold(peer),
                Coupling::Release => {
                    tracing::info!(%peer, "BFD up: BGP may establish (strict mode)");
                    speaker.release(peer);
                }
            }
        }
        self.publish_bfd(peer);
    }

    pub(super) fn publish_bfd(&mut self, peer: &str) {
        let Some(bfd) = self.peer_bfd.get(peer) else {
            return;
        };
        let status = bfd.status.borrow().clone();
        self.status.upsert_bfd_session(BfdSessionStatus {
            peer: peer.to_string(),
            local_address: bfd.spec.local,
            remote_address: bfd.spec.peer,
            multihop: bfd.spec.multihop,
            state: report::bfd_state(status.state),
            remote_state: Some(report::bfd_state(status.remote_state)),
            since: bfd.since,
            tx_interval_us: status.negotiated.tx_interval.map(|d| d.as_micros() as u64),
            detection_time_us: status
                .negotiated
                .detection_time
                .map(|d| d.as_micros() as u64),
            diagnostic: report::diagnostic(status.local_diag),
        });
    }
}

/// Forwards a BFD session's state changes and status updates to the owner.
fn spawn_bfd_forwarder(
    peer: String,
    handle: crate::bfd::runtime::SessionHandle,
    events: mpsc::UnboundedSender<AgentEvent>,
) -> JoinHandle<()> {
    let crate::bfd::runtime::SessionHandle {
        events: mut changes,
        mut status,
        ..
    } = handle;
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                Some(event) = changes.recv() => AgentEvent::Bfd { peer: peer.clone(), event },
                Ok(()) = status.changed() => AgentEvent::BfdStatus(peer.clone()),
                else => return,
            };
            if events.send(event).is_err() {
                return;
            }
        }
    })
}
