//! Prometheus metrics of the BGP sessions, registered by the subsystem
//! itself. The catalogue of names and help texts is in docs/bgp.md.
//!
//! Owns: metric families and their labels. Must not touch: session logic;
//! the session driver records into these.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::fsm::State;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    pub peer: String,
    /// open, update, notification, keepalive, route_refresh.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FamilyLabels {
    pub peer: String,
    /// ipv4_unicast or ipv6_unicast.
    pub family: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DispositionLabels {
    pub peer: String,
    /// RFC 7606: attribute_discard, treat_as_withdraw, session_reset.
    pub disposition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub peer: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// One of the `REFUSED_*` reasons.
    pub reason: String,
}

/// A connection to the listener from an address that is not a peer
/// accepted on that local address (`listen: false`, or not a peer at all).
pub const REFUSED_NOT_A_PEER: &str = "not_a_peer";
/// The peer's session is held until BFD is Up (`bfd.strict`).
pub const REFUSED_HELD: &str = "held";
/// The peer's session takes no connection now (Idle, one already taken,
/// or Established).
pub const REFUSED_SESSION_STATE: &str = "session_state";

/// The BGP metric families, shared by all sessions.
#[derive(Debug, Default)]
pub struct Metrics {
    pub session_state: Family<PeerLabels, Gauge>,
    pub established_transitions: Family<PeerLabels, Counter>,
    pub messages_sent: Family<MessageLabels, Counter>,
    pub messages_received: Family<MessageLabels, Counter>,
    pub prefixes_announced: Family<FamilyLabels, Gauge>,
    pub prefixes_unannounceable: Family<PeerLabels, Gauge>,
    pub malformed_updates: Family<DispositionLabels, Counter>,
    pub last_error: Family<ErrorLabels, Gauge>,
    pub connections_refused: Family<RefusedLabels, Counter>,
}

impl Metrics {
    /// Creates the families and registers them under `bgp_` on the agent's
    /// `herald`-prefixed registry, so the names are
    /// `herald_bgp_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics::default();
        let r = registry.sub_registry_with_prefix("bgp");
        r.register(
            "session_state",
            "BGP session state as in BGP4-MIB bgpPeerState: 1 idle, 2 connect, 3 active, 4 opensent, 5 openconfirm, 6 established",
            m.session_state.clone(),
        );
        r.register(
            "established_transitions",
            "Times the session reached Established",
            m.established_transitions.clone(),
        );
        r.register(
            "messages_sent",
            "BGP messages sent, by type",
            m.messages_sent.clone(),
        );
        r.register(
            "messages_received",
            "BGP messages received, by type",
            m.messages_received.clone(),
        );
        r.register(
            "prefixes_announced",
            "Prefixes in the peer's Adj-RIB-Out (announced to it), by address family",
            m.prefixes_announced.clone(),
        );
        r.register(
            "prefixes_unannounceable",
            "Desired prefixes that cannot be sent to the peer (family not agreed, no next hop of that family, attributes too large)",
            m.prefixes_unannounceable.clone(),
        );
        r.register(
            "malformed_updates",
            "Received UPDATEs with malformed attributes, by RFC 7606 disposition",
            m.malformed_updates.clone(),
        );
        r.register(
            "last_error",
            "1 for the reason the session last went down (one series per peer)",
            m.last_error.clone(),
        );
        r.register(
            "connections_refused",
            "Connections to the BGP listener closed at once, by reason: not_a_peer (the source is not a peer accepted on that local address), held (strict BFD waits for Up), session_state (the peer's session takes no connection now); no source label, the log names sources at most once a minute each",
            m.connections_refused.clone(),
        );
        m
    }

    pub(super) fn refused(&self, reason: &str) {
        self.connections_refused
            .get_or_create(&RefusedLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub(super) fn set_state(&self, peer: &str, state: State) {
        let value = match state {
            State::Idle => 1,
            State::Connect => 2,
            State::Active => 3,
            State::OpenSent => 4,
            State::OpenConfirm => 5,
            State::Established => 6,
        };
        self.session_state
            .get_or_create(&peer_labels(peer))
            .set(value);
    }

    pub(super) fn message(&self, peer: &str, kind: &str, sent: bool) {
        let labels = MessageLabels {
            peer: peer.to_string(),
            kind: kind.to_string(),
        };
        let family = if sent {
            &self.messages_sent
        } else {
            &self.messages_received
        };
        family.get_or_create(&labels).inc();
    }

    pub(super) fn set_last_error(&self, peer: &str, previous: Option<&str>, reason: &str) {
        if let Some(previous) = previous {
            self.last_error.remove(&ErrorLabels {
                peer: peer.to_string(),
                reason: previous.to_string(),
            });
        }
        self.last_error
            .get_or_create(&ErrorLabels {
                peer: peer.to_string(),
                reason: reason.to_string(),
            })
            .set(1);
    }
}

pub(super) fn peer_labels(peer: &str) -> PeerLabels {
    PeerLabels {
        peer: peer.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_metrics_appear_in_the_text_exposition() {
        let mut registry = Registry::with_prefix("herald");
        let m = Metrics::register(&mut registry);
        m.set_state("r1", State::Established);
        m.message("r1", "update", true);
        m.set_last_error("r1", None, "hold timer expired");
        m.set_last_error("r1", Some("hold timer expired"), "BFD down");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("herald_bgp_session_state{peer=\"r1\"} 6"),
            "{text}"
        );
        assert!(
            text.contains("herald_bgp_messages_sent_total{peer=\"r1\",kind=\"update\"} 1"),
            "{text}"
        );
        assert!(text.contains("reason=\"BFD down\"} 1"), "{text}");
        assert!(!text.contains("hold timer expired"), "{text}");
    }
}
