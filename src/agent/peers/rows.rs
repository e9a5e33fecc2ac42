//! The peer and BFD rows of `/status`, written by the peers task from the
//! speaker's status table and the BFD sessions' status.
//!
//! Owns: the mapping to the `/status` model and the `since` bookkeeping of
//! BGP states. Must not touch: any decision.

use std::time::SystemTime;

use super::Peers;
use crate::agent::report;
use crate::status::{BfdSessionStatus, PeerStatus, unix_seconds};

impl Peers {
    /// Writes the row of every peer the speaker runs.
    pub(super) fn write_peer_rows(&mut self) {
        let now = unix_seconds(SystemTime::now());
        let statuses = self.speaker.statuses();
        for (name, peer) in statuses.borrow().iter() {
            let session = &peer.session;
            let entry = self
                .peer_since
                .entry(name.clone())
                .or_insert((session.state, now));
            if entry.0 != session.state {
                *entry = (session.state, now);
            }
            let last_error = if peer.held {
                Some("held until BFD is Up (bfd.strict)".to_string())
            } else {
                session.last_error.clone()
            };
            self.status.upsert_peer(PeerStatus {
                name: name.clone(),
                address: session.peer.ip().to_string(),
                asn: peer.peer_as,
                state: report::bgp_state(session.state),
                since: session.established_at.or(Some(entry.1)),
                hold_time: session.hold_time,
                prefixes_sent: session.prefixes_announced as u64,
                last_error,
            });
        }
        let verdict = peers_ready(
            &self.used_peers,
            &statuses.borrow(),
            self.config.readiness.min_established_peers,
        );
        match verdict {
            Ok(()) => self.ready.set_ready(),
            Err(why) => self.ready.set_not_ready(why),
        }
    }

    /// Writes the `/status` row of the BFD session beside `peer`.
    pub(super) fn write_bfd_row(&self, peer: &str) {
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

/// The `peers` condition of `/readyz`: at least `min` (default: all) of the
/// peers this node uses are Established.
pub(super) fn peers_ready(
    used: &std::collections::BTreeSet<String>,
    statuses: &crate::bgp::speaker::PeerStatuses,
    min: Option<u32>,
) -> Result<(), String> {
    let established: Vec<&String> = used
        .iter()
        .filter(|name| {
            statuses
                .get(*name)
                .is_some_and(|p| p.session.state == crate::bgp::fsm::State::Established)
        })
        .collect();
    let needed = min.map_or(used.len(), |m| m as usize);
    if established.len() >= needed {
        return Ok(());
    }
    let waiting: Vec<&str> = used
        .iter()
        .filter(|name| !established.contains(name))
        .map(String::as_str)
        .collect();
    Err(format!(
        "{} of {needed} BGP sessions Established (readiness.min_established_peers{}); not yet: {}",
        established.len(),
        if min.is_none() {
            ": unset, every peer of this node"
        } else {
            ""
        },
        if waiting.is_empty() {
            "-".to_string()
        } else {
            waiting.join(", ")
        },
    ))
}
