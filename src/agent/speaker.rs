//! The announcement sink: where the reconciler's announcements go.
//!
//! Owns: [`Speaker`], an enum with one variant per way of speaking BGP:
//! [`Speaker::Herald`] runs herald's own sessions
//! ([`bgp::speaker::Speaker`](crate::bgp::speaker::Speaker)), and
//! [`Speaker::Bird`] drives the node's BIRD. Must not touch: what is
//! announced, netlink, BFD.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::bgp::session::{SessionConfig, routes};
use crate::bgp::speaker::PeerStatuses;
use crate::model::Announcement;

/// The sink of announcements. One variant per BGP speaker herald can drive.
pub enum Speaker {
    /// herald's own BGP sessions.
    Herald(crate::bgp::speaker::Speaker),
    /// The node's BIRD (`speaker: bird`): herald renders its include file
    /// and reloads it; BIRD owns the sessions and their BFD, so the peer
    /// controls are no-ops and the peer rows come from BIRD's read-back.
    Bird(crate::bird::BirdSpeaker),
}

impl Speaker {
    /// Every peer announces exactly `announcements`.
    pub fn announce(&mut self, announcements: &BTreeSet<Announcement>) {
        match self {
            Speaker::Herald(speaker) => speaker.announce(Arc::new(routes(announcements))),
            Speaker::Bird(bird) => bird.announce(announcements),
        }
    }

    /// Resolves once what was announced before is on the wire to every
    /// peer (at most `limit`: a peer that stopped reading must not stall
    /// the agent).
    pub async fn flushed(&self, limit: Duration) {
        match self {
            Speaker::Herald(speaker) => {
                if tokio::time::timeout(limit, speaker.flushed())
                    .await
                    .is_err()
                {
                    tracing::warn!("a BGP session did not take its UPDATEs within {limit:?}");
                }
            }
            Speaker::Bird(bird) => bird.flushed(limit).await,
        }
    }

    /// RFC 8326: everything re-announced with GRACEFUL_SHUTDOWN (or not).
    pub fn set_graceful_shutdown(&mut self, on: bool) {
        match self {
            Speaker::Herald(speaker) => speaker.set_graceful_shutdown(on),
            Speaker::Bird(bird) => bird.set_graceful_shutdown(on),
        }
    }

    /// Starts a session; `held` keeps it from connecting until
    /// [`Speaker::release`] (strict BFD mode).
    pub fn add_peer(&mut self, config: SessionConfig, held: bool) {
        match self {
            Speaker::Herald(speaker) => speaker.add_peer(config, held),
            // BIRD's peers come from the config it renders.
            Speaker::Bird(_) => {}
        }
    }

    /// The peer is no longer used (config or node labels changed): Cease
    /// "Peer De-configured" and forget it.
    pub fn remove_peer(&mut self, peer: &str) {
        match self {
            Speaker::Herald(speaker) => speaker.remove_peer(peer),
            Speaker::Bird(_) => {}
        }
    }

    /// BFD declared the peer down: close with Cease/BFD Down (RFC 9384).
    pub fn bfd_down(&mut self, peer: &str) {
        match self {
            Speaker::Herald(speaker) => speaker.bfd_down(peer),
            Speaker::Bird(_) => {}
        }
    }

    /// Keep the peer's session from being established.
    pub fn hold(&mut self, peer: &str) {
        match self {
            Speaker::Herald(speaker) => speaker.hold(peer),
            Speaker::Bird(_) => {}
        }
    }

    /// Let a held session establish.
    pub fn release(&mut self, peer: &str) {
        match self {
            Speaker::Herald(speaker) => speaker.release(peer),
            Speaker::Bird(_) => {}
        }
    }

    /// Every peer's status (herald's own sessions only).
    pub fn statuses(&self) -> Option<watch::Receiver<PeerStatuses>> {
        match self {
            Speaker::Herald(speaker) => Some(speaker.statuses()),
            Speaker::Bird(_) => None,
        }
    }

    /// Planned restart: close every session without a NOTIFICATION, so the
    /// routers keep herald's routes as stale under graceful restart (RFC 4724
    /// §4.2: the helper treats a TCP failure as the restart).
    pub async fn close_for_restart(self) {
        match self {
            Speaker::Herald(speaker) => speaker.close_for_restart().await,
            // BIRD keeps announcing: a restart of herald loses no route.
            Speaker::Bird(bird) => bird.stop().await,
        }
    }

    /// Stopping for good: Cease/Administrative Shutdown with `text`.
    pub async fn stop(self, text: &str) {
        match self {
            Speaker::Herald(speaker) => speaker.stop(text).await,
            Speaker::Bird(bird) => bird.stop().await,
        }
    }
}
