//! Writing the agent's `/status` rows: peers and announcements (BFD rows
//! are written by [`super::sessions`]).
//!
//! Owns: gathering the owner's state for [`super::report`] (pure) and writing
//! the result to the status board. Must not touch: any decision.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::SystemTime;

use super::Agent;
use super::report::{self, PeerView, RowContext};
use super::speaker::Speaker;
use crate::status::{PeerStatus, unix_seconds};

impl Agent {
    /// Writes the peer and announcement rows of `/status`.
    pub(super) fn publish(&mut self) {
        let now = unix_seconds(SystemTime::now());
        let mut views = Vec::new();
        if let Some(Speaker::Bird(bird)) = &self.speaker {
            bird.write_status(&self.status);
            views = bird
                .peers()
                .into_iter()
                .map(|p| PeerView {
                    families: bird.peer_families(&p.name),
                    name: p.name,
                    state: p.state,
                })
                .collect();
        }
        let statuses = self.speaker.as_ref().and_then(Speaker::statuses);
        if let Some(statuses) = statuses {
            for (name, peer) in statuses.borrow().iter() {
                let session = &peer.session;
                let state = report::bgp_state(session.state);
                let entry = self
                    .peer_since
                    .entry(name.clone())
                    .or_insert((session.state, now));
                if entry.0 != session.state {
                    *entry = (session.state, now);
                }
                let since = session.established_at.or(Some(entry.1));
                let last_error = if peer.held {
                    Some("held until BFD is Up (bfd.strict)".to_string())
                } else {
                    session.last_error.clone()
                };
                self.status.upsert_peer(PeerStatus {
                    name: name.clone(),
                    address: session.peer.ip().to_string(),
                    asn: peer.peer_as,
                    state,
                    since,
                    hold_time: session.hold_time,
                    prefixes_sent: session.prefixes_announced as u64,
                    last_error,
                });
                views.push(PeerView {
                    name: name.clone(),
                    state,
                    families: session.families.clone(),
                });
            }
        }
        let address_status = self.address_status.borrow().clone();
        let problem = |address: IpAddr| {
            address_status
                .addresses
                .iter()
                .find(|a| a.address == address)
                .and_then(|a| a.reason.clone())
        };
        let empty = BTreeSet::new();
        let announced = self.actual.announced.as_ref().unwrap_or(&empty);
        let effective = self
            .sourced
            .announcements
            .as_ref()
            .map(|_| self.drain.effective(&self.antiflap.announced()))
            .unwrap_or_default();
        let now = std::time::Instant::now();
        let held_list = self.antiflap.held();
        let held = |address: IpAddr| {
            held_list.iter().find(|h| h.address == address).map(|h| {
                format!(
                    "no longer desired; withdrawal held by anti_flap for {}s ({})",
                    h.until.saturating_duration_since(now).as_secs(),
                    h.reason.describe()
                )
            })
        };
        let drain = self.drain_status().map(|d| match d.seconds_left {
            Some(left) => format!(
                "announced with GRACEFUL_SHUTDOWN 65535:0, withdrawal in {left}s ({})",
                d.trigger
            ),
            None => format!("withdrawn after {}", d.trigger),
        });
        let pending = self
            .sourced
            .announcements
            .is_none()
            .then(|| self.source.waiting_for());
        let ctx = RowContext {
            announced,
            effective: &effective,
            placed: &self.actual.placed,
            placement_problem: &problem,
            held: &held,
            peers: &views,
            drain: drain.as_deref(),
            source_pending: pending,
        };
        let rows = report::announcement_rows(&self.sourced.candidates, &ctx);
        self.status.set_announcements(rows);
        let drain_status = self.drain_status();
        self.status.update(|r| r.drain = drain_status);
    }
}
