//! The Kubernetes source's metrics (names and help texts are catalogued in
//! docs/kubernetes.md).
//!
//! Owns: registration and updates. Must not touch: anything else.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::policy::{Desired, Outcome, Refusal};
use crate::source::kube::health::Resource;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Handles to every metric of the source; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub watch_errors: Family<ResourceLabels, Counter>,
    pub relists: Family<ResourceLabels, Counter>,
    pub watch_healthy: Family<ResourceLabels, Gauge>,
    pub last_success: Family<ResourceLabels, Gauge<f64, AtomicU64>>,
    pub desired_updates: Counter,
    pub announced: Gauge,
    pub refused: Family<ReasonLabels, Gauge>,
    pub events_published: Counter,
    pub events_failed: Counter,
    pub api_answering: Gauge,
    pub node_weight_annotation_invalid: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them under `kube_` in `registry`,
    /// the agent's `herald`-prefixed registry
    /// ([`crate::metrics::MetricsRegistry::registry`]): `herald_kube_…`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Metrics::default();
        let kube = registry.sub_registry_with_prefix("kube");
        kube.register(
            "watch_errors",
            "Errors from the Kubernetes watches (list or watch failed, expired, cut)",
            metrics.watch_errors.clone(),
        );
        kube.register(
            "relists",
            "Complete lists stored by each watch (the first one and every relist)",
            metrics.relists.clone(),
        );
        kube.register(
            "watch_healthy",
            "1 while the watch has listed and has not failed since its last success",
            metrics.watch_healthy.clone(),
        );
        kube.register(
            "last_success_timestamp_seconds",
            "Unix time of the last successful event of each watch; time() minus this is the staleness",
            metrics.last_success.clone(),
        );
        kube.register(
            "desired_updates",
            "Desired sets handed to the agent",
            metrics.desired_updates.clone(),
        );
        kube.register(
            "announced_addresses",
            "Addresses this node must announce, per the last desired set",
            metrics.announced.clone(),
        );
        kube.register(
            "refused_addresses",
            "Addresses looked at and not announced, by reason, per the last desired set",
            metrics.refused.clone(),
        );
        kube.register(
            "events_published",
            "Kubernetes Events herald recorded",
            metrics.events_published.clone(),
        );
        kube.register(
            "events_failed",
            "Kubernetes Events herald could not record",
            metrics.events_failed.clone(),
        );
        kube.register(
            "api_answering",
            "1 while the API server answers herald's probe of its /readyz (every 5 s, 5 s timeout)",
            metrics.api_answering.clone(),
        );
        kube.register(
            "node_weight_annotation_invalid",
            "1 while this Node's herald.dev/node-weight annotation is set but not a weight from 1 to 1000 (kubernetes.node_weight applies)",
            metrics.node_weight_annotation_invalid.clone(),
        );
        for resource in Resource::ALL {
            let labels = ResourceLabels {
                resource: resource.as_str(),
            };
            let _ = metrics.watch_errors.get_or_create(&labels);
            let _ = metrics.relists.get_or_create(&labels);
            let _ = metrics.watch_healthy.get_or_create(&labels);
        }
        for reason in Refusal::CODES {
            let _ = metrics.refused.get_or_create(&ReasonLabels { reason });
        }
        metrics
    }

    /// Sets the address gauges from a desired set.
    pub fn observe_desired(&self, desired: &Desired) {
        self.desired_updates.inc();
        self.announced.set(desired.announcements.len() as i64);
        self.node_weight_annotation_invalid
            .set(i64::from(desired.node_weight_problem.is_some()));
        let mut counts = [0i64; Refusal::CODES.len()];
        for decision in desired.decisions() {
            if let Outcome::Refused(refusal) = &decision.outcome
                && let Some(i) = Refusal::CODES.iter().position(|c| *c == refusal.code())
            {
                counts[i] += 1;
            }
        }
        for (reason, count) in Refusal::CODES.iter().zip(counts) {
            self.refused
                .get_or_create(&ReasonLabels { reason })
                .set(count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exposed_with_its_labels_before_anything_happens() {
        let mut registry = crate::metrics::MetricsRegistry::new();
        let _metrics = Metrics::register(registry.registry());
        let text = registry.encode();
        for needle in [
            "herald_kube_watch_errors_total{resource=\"services\"} 0",
            "herald_kube_watch_errors_total{resource=\"endpointslices\"} 0",
            "herald_kube_relists_total{resource=\"node\"} 0",
            "herald_kube_watch_healthy{resource=\"node\"} 0",
            "herald_kube_refused_addresses{reason=\"OutsidePools\"} 0",
            "herald_kube_announced_addresses 0",
            "herald_kube_desired_updates_total 0",
            "herald_kube_api_answering 0",
            "herald_kube_node_weight_annotation_invalid 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
