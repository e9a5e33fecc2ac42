//! The announcement sink: where the reconciler's announcements go. Two
//! speakers implement it: herald's own (the peers task,
//! [`super::peers::PeersHandle`], which runs a BGP session and a BFD session
//! per peer) and the node's BIRD (`speaker: bird`, below), which runs its
//! own sessions from the include file herald renders.
//!
//! Owns: the interface, and BIRD's side of it. Must not touch: what is
//! announced, netlink, or any peer's internals.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::BoxFuture;

use super::report::PeerView;
use crate::bird::BirdSpeaker;
use crate::config::Config;
use crate::model::Announcement;
use crate::status::StatusBoard;

/// What the reconciler needs of a BGP speaker.
pub trait AnnouncementSink: Send {
    /// Every peer announces exactly `announcements`.
    fn announce(&mut self, announcements: &BTreeSet<Announcement>);

    /// RFC 8326: everything re-announced with GRACEFUL_SHUTDOWN (or not).
    fn set_graceful_shutdown(&mut self, on: bool);

    /// Resolves once what was announced before is on the wire to every
    /// peer, or after `limit` (a peer that stopped reading must not stall
    /// the agent). The request is made at once; the future borrows nothing.
    fn flushed(&self, limit: Duration) -> BoxFuture<'static, ()>;

    /// A reloaded configuration: the peers follow it.
    fn set_config(&mut self, config: &Config);

    /// The peers as the announcement rows need them. A sink whose peer rows
    /// come from elsewhere (BIRD's read-back) writes them to `board` here.
    fn peers(&self, board: &StatusBoard) -> Vec<PeerView>;

    /// Planned restart: the routers keep herald's routes (graceful
    /// restart, RFC 4724 §4.2).
    fn close_for_restart(self: Box<Self>) -> BoxFuture<'static, ()>;

    /// Stopping for good after a drain: Cease "Administrative Shutdown"
    /// with `text` (RFC 9003).
    fn stop(self: Box<Self>, text: &'static str) -> BoxFuture<'static, ()>;
}

/// `speaker: bird`: herald renders BIRD's include file and reloads it; BIRD
/// owns the sessions and their BFD.
impl AnnouncementSink for BirdSpeaker {
    fn announce(&mut self, announcements: &BTreeSet<Announcement>) {
        BirdSpeaker::announce(self, announcements);
    }

    fn set_graceful_shutdown(&mut self, on: bool) {
        BirdSpeaker::set_graceful_shutdown(self, on);
    }

    fn flushed(&self, limit: Duration) -> BoxFuture<'static, ()> {
        Box::pin(BirdSpeaker::flushed(self, limit))
    }

    fn set_config(&mut self, config: &Config) {
        // Peers, timers and paths of the include file follow the reloaded
        // config (it re-renders; BIRD reloads if it changed).
        BirdSpeaker::set_config(self, config);
    }

    fn peers(&self, board: &StatusBoard) -> Vec<PeerView> {
        self.write_status(board);
        BirdSpeaker::peers(self)
            .into_iter()
            .map(|p| PeerView {
                families: self.peer_families(&p.name),
                name: p.name,
                state: p.state,
            })
            .collect()
    }

    fn close_for_restart(self: Box<Self>) -> BoxFuture<'static, ()> {
        // BIRD keeps announcing: a restart of herald loses no route.
        Box::pin(BirdSpeaker::stop(*self))
    }

    fn stop(self: Box<Self>, _text: &'static str) -> BoxFuture<'static, ()> {
        // BIRD's sessions are BIRD's: it keeps them.
        Box::pin(BirdSpeaker::stop(*self))
    }
}
