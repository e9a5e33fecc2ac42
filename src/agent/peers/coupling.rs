//! The BFD-BGP coupling, pure: what a BFD state change of a peer's session
//! means for its BGP session.
//!
//! Owns: the decision only. Must not touch: either protocol's internals; the
//! peers task calls the speaker's `bfd_down`, `hold` and `release`.
//!
//! # Supported standards
//! - RFC 5882 §4.2: "the BFD session going into AdminDown state ... MUST
//!   NOT be treated as a failure" — a peer's AdminDown leaves BGP alone
//!   ([`crate::bfd::session::StateChange::is_failure`]).
//! - RFC 9384: a BGP session closed because BFD went down "SHOULD" send a
//!   NOTIFICATION with Cease subcode 10, "BFD Down" (the FSM sends it on
//!   `bfd_down`).
//! - draft-ietf-idr-bgp-bfd-strict-mode (`bfd.strict`): BGP does not reach
//!   Established until BFD is Up; herald holds the session (no connection
//!   out, incoming ones refused) while BFD is not Up.
//! - BFD Up (from Down or Init) proves the path to the peer works: the BGP
//!   session connects at once instead of waiting out a reconnect backoff
//!   that grew while the link was down (in strict mode the release does
//!   the same).

use crate::bfd::packet::State;
use crate::bfd::session::StateChange;

/// What to do with the peer's BGP session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coupling {
    /// Close it now with Cease/BFD Down; it reconnects by itself unless
    /// also held.
    CeaseBfdDown,
    /// Strict mode: keep it from being established.
    Hold,
    /// Strict mode: BFD is Up, let it establish.
    Release,
    /// BFD is Up: connect now if the session is resting or connecting.
    ConnectNow,
}

/// The coupling actions for one BFD state change.
pub fn on_bfd_change(change: &StateChange, strict: bool) -> Vec<Coupling> {
    let mut actions = Vec::new();
    if change.is_failure() {
        actions.push(Coupling::CeaseBfdDown);
        if strict {
            actions.push(Coupling::Hold);
        }
    } else if change.new == State::Up && change.old != State::Up {
        actions.push(if strict {
            Coupling::Release
        } else {
            Coupling::ConnectNow
        });
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bfd::packet::Diagnostic;
    use crate::bfd::session::Cause;

    fn change(old: State, new: State, cause: Cause) -> StateChange {
        StateChange {
            old,
            new,
            diag: Diagnostic::None,
            cause,
        }
    }

    #[test]
    fn a_detection_timeout_closes_bgp_with_bfd_down() {
        let c = change(State::Up, State::Down, Cause::DetectionTimeExpired);
        assert_eq!(on_bfd_change(&c, false), vec![Coupling::CeaseBfdDown]);
    }

    #[test]
    fn the_peer_signalling_down_closes_bgp_with_bfd_down() {
        let c = change(State::Up, State::Down, Cause::NeighborSignaledDown);
        assert_eq!(on_bfd_change(&c, false), vec![Coupling::CeaseBfdDown]);
    }

    #[test]
    fn the_peer_going_admin_down_is_not_a_failure() {
        let c = change(State::Up, State::Down, Cause::NeighborAdminDown);
        assert!(on_bfd_change(&c, false).is_empty());
        assert!(on_bfd_change(&c, true).is_empty());
    }

    #[test]
    fn strict_mode_holds_bgp_after_a_failure_and_releases_it_when_bfd_is_up() {
        let down = change(State::Up, State::Down, Cause::DetectionTimeExpired);
        assert_eq!(
            on_bfd_change(&down, true),
            vec![Coupling::CeaseBfdDown, Coupling::Hold]
        );
        let up = change(State::Init, State::Up, Cause::Handshake);
        assert_eq!(on_bfd_change(&up, true), vec![Coupling::Release]);
        assert_eq!(on_bfd_change(&up, false), vec![Coupling::ConnectNow]);
    }

    #[test]
    fn the_handshake_before_up_changes_nothing() {
        let init = change(State::Down, State::Init, Cause::Handshake);
        assert!(on_bfd_change(&init, true).is_empty());
        assert!(on_bfd_change(&init, false).is_empty());
    }
}
