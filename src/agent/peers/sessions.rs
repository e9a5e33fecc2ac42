//! Starting and removing the peers this node uses: each BGP session with
//! its BFD session beside it, and the coupling of BFD state changes to BGP.
//!
//! Owns: the `impl Peers` methods for peers and their sessions (the state
//! stays in [`super::Peers`]). Must not touch: what is announced.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::coupling::{self, Coupling};
use super::{BfdUpdate, PeerBfd, Peers, route};
use crate::bfd::runtime::SessionSpec;
use crate::config::{PeerAddress, PeerConfig};
use crate::status::{PeerStatus, unix_seconds};

impl Peers {
    /// Uses the peers whose `node_selector` matches `labels`: starts the
    /// new ones, removes those that no longer match.
    pub(super) fn select_peers(&mut self, labels: &BTreeMap<String, String>) {
        self.node_labels = labels.clone();
        for peer in self.config.peers.clone() {
            let selected = route::selects(&peer.node_selector, labels);
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
        self.write_peer_rows();
    }

    pub(super) fn remove_peer(&mut self, name: &str) {
        self.used_peers.remove(name);
        self.pending_peers.retain(|p| p.name != name);
        self.gateway_peers.remove(name);
        self.speaker.remove_peer(name);
        self.stop_bfd(name);
        self.peer_since.remove(name);
        self.not_started.remove(name);
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
        let address = match peer.address {
            PeerAddress::Ip(ip) => ip,
            PeerAddress::Gateway => match self.gateway_address() {
                Some(ip) => {
                    self.gateway_peers.insert(peer.name.clone(), ip);
                    ip
                }
                None => {
                    self.not_started_row(peer, "gateway".to_string(), "no default gateway".into());
                    return false;
                }
            },
        };
        // Read once here so that a peer whose key cannot be read is not
        // started (its row says why); the session reads it again before
        // every connection attempt.
        if let Err(error) = peer.read_password() {
            self.peer_not_started(peer, address, format!("{error}"));
            return false;
        }
        let listen = if peer.listens() {
            match route::route_to(address) {
                Ok(route) => Some(route.local),
                Err(error) => {
                    self.peer_not_started(
                        peer,
                        address,
                        format!("listen: no route to the peer, so no local address: {error}"),
                    );
                    return false;
                }
            }
        } else {
            None
        };
        if peer.bfd.enabled
            && let Err(why) = self.start_bfd(peer, address)
        {
            self.peer_not_started(peer, address, why);
            return false;
        }
        let held = peer.bfd.enabled && peer.bfd.strict;
        tracing::info!(peer = %peer.name, %address, bfd = peer.bfd.enabled, strict = held, ?listen, "peer started");
        let session = crate::agent::settings::bgp_session(
            peer,
            address,
            self.config.asn,
            self.router_id,
            listen,
            self.restarted,
        );
        if let Err(error) = self.speaker.add_peer(session, held) {
            self.stop_bfd(&peer.name);
            self.peer_not_started(peer, address, format!("listen: {error}"));
            return false;
        }
        self.not_started.remove(&peer.name);
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
            route::route_to(address).map_err(|error| format!("no route to the peer: {error}"))?;
        if self.bfd.is_none() {
            // No peer had BFD at start; a reload or a selected peer does.
            let runtime = crate::bfd::runtime::BfdRuntime::spawn(
                crate::bfd::runtime::RuntimeOptions {
                    heartbeat: self.bfd_heartbeat.clone(),
                    ..crate::bfd::runtime::RuntimeOptions::default()
                },
                self.bfd_metrics.clone(),
            )
            .map_err(|error| format!("cannot start bfd: {error}"))?;
            self.bfd = Some(runtime);
        }
        let Some(bfd) = &self.bfd else {
            return Err("bfd is not running".to_string());
        };
        let config = crate::agent::settings::bfd_session(&peer.bfd)?;
        let mut spec = if peer.bfd.multihop {
            let mut spec = SessionSpec::multihop(address, config);
            if let Some(min_ttl) = peer.bfd.min_ttl {
                spec.min_ttl = min_ttl;
            }
            spec
        } else {
            let mut spec = SessionSpec::single_hop(address, config);
            spec.interface = route.interface.clone();
            spec
        };
        spec.local = Some(route.local);
        spec.auth = crate::agent::settings::bfd_auth(&peer.bfd)?;
        let handle = bfd
            .add_session(spec.clone())
            .map_err(|error| format!("bfd: {error}"))?;
        let status = handle.status.clone();
        let id = handle.id;
        let forwarder = spawn_bfd_forwarder(peer.name.clone(), handle, self.bfd_events.clone());
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
        self.write_bfd_row(&peer.name);
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

    pub(super) fn peer_not_started(&mut self, peer: &PeerConfig, address: IpAddr, why: String) {
        self.not_started_row(peer, address.to_string(), why);
    }

    /// A peer that could not start is retried every second; its row and
    /// the log say so when the reason is new, and the log repeats it once
    /// a minute while it lasts. The row keeps the time the reason first
    /// appeared, so `herald status` shows how long it has lasted.
    fn not_started_row(&mut self, peer: &PeerConfig, address: String, why: String) {
        let now = Instant::now();
        if let Some(known) = self.not_started.get_mut(&peer.name)
            && known.why == why
        {
            if now.duration_since(known.logged_at) >= NOT_STARTED_LOG_EVERY {
                known.logged_at = now;
                tracing::warn!(peer = %peer.name, "still not started: {why}");
            }
            return;
        }
        tracing::warn!(peer = %peer.name, "not started: {why}");
        self.not_started.insert(
            peer.name.clone(),
            NotStarted {
                why: why.clone(),
                logged_at: now,
            },
        );
        self.status.upsert_peer(PeerStatus {
            name: peer.name.clone(),
            address,
            asn: peer.asn,
            state: crate::status::BgpState::Idle,
            since: None,
            hold_time: None,
            prefixes_sent: 0,
            last_error: Some(why),
            last_error_at: Some(unix_seconds(SystemTime::now())),
        });
    }

    /// A BFD session changed: the coupling acts on a state change, and the
    /// session's row is written.
    pub(super) fn bfd_update(&mut self, update: BfdUpdate) {
        let (peer, event) = match update {
            BfdUpdate::Changed { peer, event } => (peer, event),
            BfdUpdate::Status { peer } => {
                self.write_bfd_row(&peer);
                return;
            }
        };
        let peer = peer.as_str();
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
            match action {
                Coupling::CeaseBfdDown => {
                    tracing::warn!(%peer, "BFD down: closing BGP with Cease/BFD Down (RFC 9384)");
                    self.speaker.bfd_down(peer);
                }
                Coupling::Hold => self.speaker.hold(peer),
                Coupling::Release => {
                    tracing::info!(%peer, "BFD up: BGP may establish (strict mode)");
                    self.speaker.release(peer);
                }
                Coupling::ConnectNow => {
                    tracing::info!(%peer, "BFD up: BGP connects now if it was waiting");
                    self.speaker.bfd_up(peer);
                }
            }
        }
        self.write_bfd_row(peer);
    }
}

/// Forwards a BFD session's state changes and status updates to the peers
/// task.
fn spawn_bfd_forwarder(
    peer: String,
    handle: crate::bfd::runtime::SessionHandle,
    events: mpsc::UnboundedSender<BfdUpdate>,
) -> JoinHandle<()> {
    let crate::bfd::runtime::SessionHandle {
        events: mut changes,
        mut status,
        ..
    } = handle;
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                Some(event) = changes.recv() => BfdUpdate::Changed { peer: peer.clone(), event },
                Ok(()) = status.changed() => BfdUpdate::Status { peer: peer.clone() },
                else => return,
            };
            if events.send(event).is_err() {
                return;
            }
        }
    })
}

/// How often the log repeats that a peer still cannot start.
const NOT_STARTED_LOG_EVERY: Duration = Duration::from_secs(60);

/// Why a peer is not started, and when the log last said so.
pub(super) struct NotStarted {
    why: String,
    logged_at: Instant,
}
