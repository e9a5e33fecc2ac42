//! BFD metrics: per session state, negotiated timers, transitions with their
//! diagnostic, packets in/out/dropped and the largest gap between received
//! packets (how close a session came to a false failure).
//!
//! Owns: the metric families and their names. Must not touch: sessions; the
//! runtime writes to these handles. Clones share the same series.
//!
//! Catalogue (also in docs/bfd.md):
//! - `herald_bfd_session_state{peer,hop}`: 0 AdminDown, 1 Down, 2 Init, 3 Up.
//! - `herald_bfd_session_tx_interval_seconds{peer,hop}`: our interval before
//!   jitter (0 while we must not send periodically).
//! - `herald_bfd_session_rx_interval_seconds{peer,hop}`: the peer's.
//! - `herald_bfd_session_detection_time_seconds{peer,hop}`.
//! - `herald_bfd_session_max_rx_gap_seconds{peer,hop}`: the largest gap
//!   between two packets received while Up (kernel arrival stamps).
//! - `herald_bfd_session_max_tx_gap_seconds{peer,hop}`: the largest gap
//!   between two packets sent while Up (how late this thread ever was).
//! - `herald_bfd_session_transitions_total{peer,hop,from,to,diag}`.
//! - `herald_bfd_packets_received_total{peer,hop}` and
//!   `herald_bfd_packets_sent_total{peer,hop}`.
//! - `herald_bfd_packets_dropped_total{reason}`: every discarded packet,
//!   by the reception check that discarded it.
//! - `herald_bfd_send_errors_total{peer,hop}`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::packet::{Diagnostic, State};

/// Identifies one session in every per-session series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionLabels {
    pub peer: String,
    /// `single_hop` or `multihop`.
    pub hop: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub peer: String,
    pub hop: String,
    pub from: String,
    pub to: String,
    pub diag: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub reason: String,
}

type Seconds = Gauge<f64, AtomicU64>;

/// The BFD families; `Default` gives unregistered ones (tests).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub state: Family<SessionLabels, Gauge>,
    pub tx_interval: Family<SessionLabels, Seconds>,
    pub rx_interval: Family<SessionLabels, Seconds>,
    pub detection_time: Family<SessionLabels, Seconds>,
    pub max_rx_gap: Family<SessionLabels, Seconds>,
    pub max_tx_gap: Family<SessionLabels, Seconds>,
    pub transitions: Family<TransitionLabels, Counter>,
    pub received: Family<SessionLabels, Counter>,
    pub sent: Family<SessionLabels, Counter>,
    pub dropped: Family<DropLabels, Counter>,
    pub send_errors: Family<SessionLabels, Counter>,
}

impl Metrics {
    /// Create the families and register them under `bfd_` in `registry`, the
    /// agent's `herald`-prefixed registry, so the names read `herald_bfd_…`.
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics::default();
        let bfd = registry.sub_registry_with_prefix("bfd");
        bfd.register(
            "session_state",
            "BFD session state: 0 AdminDown, 1 Down, 2 Init, 3 Up",
            metrics.state.clone(),
        );
        bfd.register(
            "session_tx_interval_seconds",
            "Interval between our periodic packets before jitter",
            metrics.tx_interval.clone(),
        );
        bfd.register(
            "session_rx_interval_seconds",
            "Interval the peer transmits at",
            metrics.rx_interval.clone(),
        );
        bfd.register(
            "session_detection_time_seconds",
            "Detection Time: silence after which the session goes Down",
            metrics.detection_time.clone(),
        );
        bfd.register(
            "session_max_rx_gap_seconds",
            "Largest gap between two packets received while Up",
            metrics.max_rx_gap.clone(),
        );
        bfd.register(
            "session_max_tx_gap_seconds",
            "Largest gap between two packets sent while Up",
            metrics.max_tx_gap.clone(),
        );
        bfd.register(
            "session_transitions",
            "Session state changes, with the local diagnostic",
            metrics.transitions.clone(),
        );
        bfd.register(
            "packets_received",
            "Control packets accepted by a session",
            metrics.received.clone(),
        );
        bfd.register("packets_sent", "Control packets sent", metrics.sent.clone());
        bfd.register(
            "packets_dropped",
            "Control packets discarded, by reason",
            metrics.dropped.clone(),
        );
        bfd.register(
            "send_errors",
            "Control packets the kernel refused to send",
            metrics.send_errors.clone(),
        );
        metrics
    }

    /// Count one discarded packet.
    pub fn drop_packet(&self, reason: &str) {
        self.dropped
            .get_or_create(&DropLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Packets dropped for `reason` so far.
    pub fn dropped_count(&self, reason: &str) -> u64 {
        self.dropped
            .get_or_create(&DropLabels {
                reason: reason.to_string(),
            })
            .get()
    }

    pub fn set_state(&self, labels: &SessionLabels, state: State) {
        self.state.get_or_create(labels).set(state as i64);
    }

    pub fn transition(&self, labels: &SessionLabels, from: State, to: State, diag: Diagnostic) {
        self.transitions
            .get_or_create(&TransitionLabels {
                peer: labels.peer.clone(),
                hop: labels.hop.clone(),
                from: from.as_str().to_string(),
                to: to.as_str().to_string(),
                diag: diag.as_str().to_string(),
            })
            .inc();
    }

    pub fn set_timers(
        &self,
        labels: &SessionLabels,
        tx: Option<Duration>,
        rx: Option<Duration>,
        detection: Option<Duration>,
    ) {
        let secs = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64());
        self.tx_interval.get_or_create(labels).set(secs(tx));
        self.rx_interval.get_or_create(labels).set(secs(rx));
        self.detection_time
            .get_or_create(labels)
            .set(secs(detection));
    }

    /// Raise the largest observed gap if `gap` exceeds it.
    pub fn observe_rx_gap(&self, labels: &SessionLabels, gap: Duration) {
        let gauge = self.max_rx_gap.get_or_create(labels);
        if gap.as_secs_f64() > gauge.get() {
            gauge.set(gap.as_secs_f64());
        }
    }

    /// Forget a removed session's series (the transition counters stay:
    /// they are history).
    pub fn remove_session(&self, labels: &SessionLabels) {
        self.state.remove(labels);
        self.tx_interval.remove(labels);
        self.rx_interval.remove(labels);
        self.detection_time.remove(labels);
        self.max_rx_gap.remove(labels);
        self.max_tx_gap.remove(labels);
        self.received.remove(labels);
        self.sent.remove(labels);
        self.send_errors.remove(labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_metrics_appear_in_the_exposition_with_their_labels() {
        let mut registry = Registry::with_prefix("herald");
        let metrics = Metrics::register(&mut registry);
        let labels = SessionLabels {
            peer: "192.0.2.1".to_string(),
            hop: "single_hop".to_string(),
        };
        metrics.set_state(&labels, State::Up);
        metrics.transition(
            &labels,
            State::Up,
            State::Down,
            Diagnostic::ControlDetectionTimeExpired,
        );
        metrics.drop_packet("ttl");
        metrics.observe_rx_gap(&labels, Duration::from_millis(30));
        metrics.observe_rx_gap(&labels, Duration::from_millis(20));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"herald_bfd_session_state{peer="192.0.2.1",hop="single_hop"} 3"#),
            "{text}"
        );
        assert!(text.contains(r#"herald_bfd_session_transitions_total{peer="192.0.2.1",hop="single_hop",from="up",to="down",diag="control_detection_time_expired"} 1"#), "{text}");
        assert!(
            text.contains(r#"herald_bfd_packets_dropped_total{reason="ttl"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"herald_bfd_session_max_rx_gap_seconds{peer="192.0.2.1",hop="single_hop"} 0.03"#
            ),
            "{text}"
        );
        assert_eq!(metrics.dropped_count("ttl"), 1);
    }
}
