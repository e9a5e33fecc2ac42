//! The agent's own metrics, and the registration of every subsystem's
//! metrics on the agent's registry.
//!
//! Owns: the `herald_agent_*` families. Must not touch: other subsystems'
//! families (each registers its own; [`SubsystemMetrics::register`] only
//! calls them).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::reconcile::Step;
use crate::source::health::CheckLabels;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AddressLabels {
    pub address: String,
}

/// `herald_agent_*`.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub reconcile_steps: Family<StepLabels, Counter>,
    pub announced: Gauge,
    pub health_checks: Family<CheckLabels, Counter>,
    pub drain_phase: Gauge,
    pub restarted: Gauge,
    /// Weighted ECMP: the weight each announced address carries, one
    /// series per address that carries one.
    pub announcement_weight: Family<AddressLabels, Gauge>,
}

impl Metrics {
    /// Registers under `agent_` on the `herald`-prefixed registry.
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics::default();
        let agent = registry.sub_registry_with_prefix("agent");
        agent.register(
            "reconcile_steps",
            "Reconcile steps performed: announce (to every peer) or place_addresses (netlink)",
            metrics.reconcile_steps.clone(),
        );
        agent.register(
            "announced_addresses",
            "Addresses every peer is told to announce",
            metrics.announced.clone(),
        );
        agent.register(
            "health_checks",
            "Health check runs of the services file by service and result (passed, failed, timed_out)",
            metrics.health_checks.clone(),
        );
        agent.register(
            "drain_phase",
            "Drain: 0 serving, 1 announcing with GRACEFUL_SHUTDOWN, 2 withdrawn",
            metrics.drain_phase.clone(),
        );
        agent.register(
            "restarted",
            "1 when herald found its addresses in place at start (a graceful restart)",
            metrics.restarted.clone(),
        );
        agent.register(
            "announcement_weight",
            "Weighted ECMP: the weight (link bandwidth in units of 1,000,000 bytes/s) each announced address carries",
            metrics.announcement_weight.clone(),
        );
        metrics
    }

    /// Sets one series per announced address that carries a weight and
    /// removes the series of the others (`before`: what was announced
    /// until now).
    pub fn weights(
        &self,
        before: Option<&std::collections::BTreeSet<crate::model::Announcement>>,
        now: &std::collections::BTreeSet<crate::model::Announcement>,
    ) {
        let labels = |address: std::net::IpAddr| AddressLabels {
            address: address.to_string(),
        };
        let mut kept = std::collections::HashSet::new();
        for announcement in now {
            if let Some(weight) = super::report::weight(announcement) {
                self.announcement_weight
                    .get_or_create(&labels(announcement.address))
                    .set(i64::from(weight));
                kept.insert(announcement.address);
            }
        }
        for announcement in before.into_iter().flatten() {
            if !kept.contains(&announcement.address) {
                self.announcement_weight
                    .remove(&labels(announcement.address));
            }
        }
    }

    pub fn step(&self, step: &Step) {
        let name = match step {
            Step::Announce(_) => "announce",
            Step::PlaceAddresses(_) => "place_addresses",
        };
        self.reconcile_steps
            .get_or_create(&StepLabels {
                step: name.to_string(),
            })
            .inc();
    }
}

/// Every subsystem's metrics, registered on the agent's registry.
#[derive(Clone, Debug)]
pub struct SubsystemMetrics {
    pub agent: Metrics,
    pub bgp: Arc<crate::bgp::metrics::Metrics>,
    pub bfd: crate::bfd::metrics::Metrics,
    pub netlink: crate::netlink::Metrics,
    pub kube: crate::source::kube::Metrics,
    pub antiflap: crate::antiflap::Metrics,
    pub reload: super::reload::Metrics,
    pub bird: crate::bird::Metrics,
    pub lease: crate::source::kube::lease::LeaseMetrics,
    pub allocation: crate::source::kube::allocate::AllocatorMetrics,
}

impl SubsystemMetrics {
    /// Registers every subsystem (in both modes, so `/metrics` always lists
    /// the same families).
    pub fn register(registry: &mut Registry) -> SubsystemMetrics {
        SubsystemMetrics {
            agent: Metrics::register(registry),
            bgp: Arc::new(crate::bgp::metrics::Metrics::register(registry)),
            bfd: crate::bfd::metrics::Metrics::register(registry),
            netlink: crate::netlink::Metrics::register(registry),
            kube: crate::source::kube::Metrics::register(registry),
            antiflap: crate::antiflap::Metrics::register(registry),
            reload: super::reload::Metrics::register(registry),
            bird: crate::bird::Metrics::register(registry),
            lease: crate::source::kube::lease::LeaseMetrics::register(registry),
            allocation: crate::source::kube::allocate::AllocatorMetrics::register(registry),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::model::{Announcement, LinkBandwidth, RouteAttributes};

    fn ann(address: &str, units: Option<u32>) -> Announcement {
        Announcement {
            address: address.parse().unwrap(),
            attributes: RouteAttributes {
                link_bandwidth: units.map(|u| LinkBandwidth::new(64601, u * 1_000_000, true)),
                ..RouteAttributes::default()
            },
        }
    }

    #[test]
    fn the_weight_series_follow_the_announced_set() {
        let mut registry = crate::metrics::MetricsRegistry::new();
        let metrics = Metrics::register(registry.registry());
        let first = BTreeSet::from([
            ann("203.0.113.10", Some(2)),
            ann("203.0.113.11", Some(1)),
            ann("198.51.100.1", None),
        ]);
        metrics.weights(None, &first);
        let text = registry.encode();
        assert!(
            text.contains("herald_agent_announcement_weight{address=\"203.0.113.10\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("herald_agent_announcement_weight{address=\"203.0.113.11\"} 1"),
            "{text}"
        );
        assert!(!text.contains("address=\"198.51.100.1\""), "{text}");
        let second = BTreeSet::from([ann("203.0.113.10", Some(3))]);
        metrics.weights(Some(&first), &second);
        let text = registry.encode();
        assert!(
            text.contains("herald_agent_announcement_weight{address=\"203.0.113.10\"} 3"),
            "{text}"
        );
        assert!(
            !text.contains("address=\"203.0.113.11\""),
            "withdrawn: {text}"
        );
    }
}
