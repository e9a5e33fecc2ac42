//! Prometheus metrics of the BIRD backend, registered by the subsystem
//! itself. The catalogue of names and help texts is in docs/bird-compat.md.
//!
//! Owns: metric families and their labels. Must not touch: the backend's
//! logic; the speaker records into these.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `connect`, `io`, `timeout`, `protocol`, `check`, `reload`, `write`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: String,
}

/// The BIRD backend's metric handles.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub control_connected: Gauge,
    pub errors: Family<ReasonLabels, Counter>,
    pub reloads: Counter,
    pub include_rejected: Counter,
    pub applies_unchanged: Counter,
    pub announcements: Gauge,
    pub last_reload: Gauge,
    pub bgp_established: Family<PeerLabels, Gauge>,
    pub bfd_up: Family<PeerLabels, Gauge>,
}

impl Metrics {
    /// Registers the families on the `herald`-prefixed registry.
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics::default();
        registry.register(
            "bird_control_connected",
            "Whether herald holds a working connection to BIRD's control socket (1) or not (0)",
            metrics.control_connected.clone(),
        );
        registry.register(
            "bird_errors",
            "Failures talking to BIRD, by reason",
            metrics.errors.clone(),
        );
        registry.register(
            "bird_reloads",
            "BIRD reconfigurations herald triggered that BIRD accepted",
            metrics.reloads.clone(),
        );
        registry.register(
            "bird_include_rejected",
            "Include files rejected by the check or by BIRD (the last good file was restored)",
            metrics.include_rejected.clone(),
        );
        registry.register(
            "bird_applies_unchanged",
            "Applies that rendered the file BIRD already runs, so no reload was needed",
            metrics.applies_unchanged.clone(),
        );
        registry.register(
            "bird_announcements",
            "Routes in the include file BIRD last accepted",
            metrics.announcements.clone(),
        );
        registry.register(
            "bird_last_reload_timestamp_seconds",
            "When BIRD last accepted a reload, in seconds since the Unix epoch",
            metrics.last_reload.clone(),
        );
        registry.register(
            "bird_bgp_established",
            "Whether BIRD's BGP session with the peer is Established (1) or not (0)",
            metrics.bgp_established.clone(),
        );
        registry.register(
            "bird_bfd_up",
            "Whether BIRD's BFD session with the peer is Up (1) or not (0)",
            metrics.bfd_up.clone(),
        );
        metrics
    }

    pub(crate) fn error(&self, reason: &str) {
        self.errors
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_served_under_the_documented_name() {
        let mut registry = crate::metrics::MetricsRegistry::new();
        let metrics = Metrics::register(registry.registry());
        metrics.error("connect");
        metrics
            .bgp_established
            .get_or_create(&PeerLabels { peer: "r1".into() })
            .set(1);
        metrics
            .bfd_up
            .get_or_create(&PeerLabels { peer: "r1".into() })
            .set(1);
        let text = registry.encode();
        let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/bird-compat.md"));
        for name in [
            "herald_bird_control_connected",
            "herald_bird_errors_total",
            "herald_bird_reloads_total",
            "herald_bird_include_rejected_total",
            "herald_bird_applies_unchanged_total",
            "herald_bird_announcements",
            "herald_bird_last_reload_timestamp_seconds",
            "herald_bird_bgp_established",
            "herald_bird_bfd_up",
        ] {
            assert!(text.contains(name), "{name} not served:\n{text}");
            assert!(
                doc.contains(&format!("| `{name}` |")),
                "{name} not in docs/bird-compat.md"
            );
        }
        assert!(text.contains("herald_bird_errors_total{reason=\"connect\"} 1"));
    }
}
