//! Metrics of the service-address subsystem. Names and help texts are
//! catalogued in docs/netlink.md.

use std::fmt::Write;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The netlink request that failed.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Operation {
    /// `RTM_NEWADDR`
    Add,
    /// `RTM_DELADDR`
    Remove,
    /// `RTM_GETADDR` dump
    Dump,
    /// The notification socket (subscribe, or `ENOBUFS` overrun).
    Monitor,
}

impl Operation {
    /// The label value: `add`, `remove`, `dump`, `monitor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Add => "add",
            Operation::Remove => "remove",
            Operation::Dump => "dump",
            Operation::Monitor => "monitor",
        }
    }
}

impl EncodeLabelValue for Operation {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: Operation,
}

/// Handles to the metrics; clones share the same series.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    owned: Gauge,
    present_unowned: Gauge,
    adds: Counter,
    removes: Counter,
    repairs: Counter,
    writes: Counter,
    errors: Family<OperationLabels, Counter>,
}

impl Metrics {
    /// Create the metrics and register them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Metrics::default();
        registry.register(
            "herald_netlink_addresses_owned",
            "Service addresses on the interface that carry herald's ownership mark",
            metrics.owned.clone(),
        );
        registry.register(
            "herald_netlink_addresses_present_unowned",
            "Wanted service addresses already on the interface without herald's mark (left alone)",
            metrics.present_unowned.clone(),
        );
        registry.register(
            "herald_netlink_address_adds",
            "Service addresses herald added (repairs included)",
            metrics.adds.clone(),
        );
        registry.register(
            "herald_netlink_address_removes",
            "Owned service addresses herald removed",
            metrics.removes.clone(),
        );
        registry.register(
            "herald_netlink_address_repairs",
            "Owned, wanted addresses someone else removed that herald put back",
            metrics.repairs.clone(),
        );
        registry.register(
            "herald_netlink_writes",
            "Address add and remove requests sent to the kernel",
            metrics.writes.clone(),
        );
        registry.register(
            "herald_netlink_errors",
            "Netlink requests that failed, by operation",
            metrics.errors.clone(),
        );
        metrics
    }

    pub(crate) fn set_owned(&self, n: usize) {
        self.owned.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub(crate) fn set_present_unowned(&self, n: usize) {
        self.present_unowned
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub(crate) fn add(&self) {
        self.adds.inc();
    }

    pub(crate) fn remove(&self) {
        self.removes.inc();
    }

    pub(crate) fn repair(&self) {
        self.repairs.inc();
    }

    pub(crate) fn write(&self) {
        self.writes.inc();
    }

    pub(crate) fn error(&self, operation: Operation) {
        self.errors
            .get_or_create(&OperationLabels { operation })
            .inc();
    }

    /// Repairs counted so far (for tests and /status).
    pub fn repairs(&self) -> u64 {
        self.repairs.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn registered_metrics_appear_in_the_text_exposition() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.set_owned(3);
        metrics.repair();
        metrics.error(Operation::Remove);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(text.contains("herald_netlink_addresses_owned 3"), "{text}");
        assert!(
            text.contains("herald_netlink_address_repairs_total 1"),
            "{text}"
        );
        assert!(
            text.contains("herald_netlink_errors_total{operation=\"remove\"} 1"),
            "{text}"
        );
    }
}
