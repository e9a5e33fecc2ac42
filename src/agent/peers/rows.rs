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
            // Held is a condition now, not an event: no age.
            let (last_error, last_error_at) = if peer.held {
                (Some("held until BFD is Up (bfd.strict)".to_string()), None)
            } else {
                (session.last_error.clone(), session.last_error_at)
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
                last_error_at,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::peers_ready;
    use crate::bgp::fsm::State;
    use crate::bgp::session::SessionStatus;
    use crate::bgp::speaker::{PeerStatus, PeerStatuses};

    fn statuses(states: &[(&str, State)]) -> PeerStatuses {
        states
            .iter()
            .map(|(name, state)| {
                let mut session = SessionStatus::new(*name, "192.0.2.1:179".parse().unwrap());
                session.state = *state;
                (
                    name.to_string(),
                    PeerStatus {
                        peer_as: 64512,
                        held: false,
                        session,
                    },
                )
            })
            .collect()
    }

    fn used(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn by_default_every_peer_of_this_node_must_be_established() {
        let both = used(&["r1", "r2"]);
        let one_up = statuses(&[("r1", State::Established), ("r2", State::Connect)]);
        let why = peers_ready(&both, &one_up, None).unwrap_err();
        assert_eq!(
            why,
            "1 of 2 BGP sessions Established (readiness.min_established_peers: unset, \
             every peer of this node); not yet: r2"
        );
        let all_up = statuses(&[("r1", State::Established), ("r2", State::Established)]);
        assert_eq!(peers_ready(&both, &all_up, None), Ok(()));
    }

    #[test]
    fn a_minimum_counts_only_this_nodes_peers() {
        let mine = used(&["r1", "r2"]);
        // r3 is Established but not selected for this node: it does not count.
        let states = statuses(&[
            ("r1", State::Established),
            ("r2", State::Idle),
            ("r3", State::Established),
        ]);
        assert_eq!(peers_ready(&mine, &states, Some(1)), Ok(()));
        assert!(peers_ready(&mine, &states, Some(2)).is_err());
        // More than the node has: never ready, and it says so.
        let why = peers_ready(&mine, &states, Some(3)).unwrap_err();
        assert!(why.starts_with("1 of 3 BGP sessions Established"), "{why}");
        assert_eq!(peers_ready(&mine, &states, Some(0)), Ok(()));
    }
}
