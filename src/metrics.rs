//! The one metrics registry, and the convention every subsystem follows to
//! add to it.
//!
//! Owns: the registry, the `herald_` prefix, `herald_build_info`, the
//! `process_*` metrics (read from /proc/self at scrape time), and encoding
//! to OpenMetrics text. Must not touch: any subsystem's metrics; each owns
//! its own.
//!
//! # The convention
//!
//! Each subsystem has a `Metrics` struct of cheap, cloneable handles and a
//! constructor that registers them:
//!
//! ```
//! use prometheus_client::metrics::counter::Counter;
//! use prometheus_client::registry::Registry;
//!
//! #[derive(Clone, Debug, Default)]
//! pub struct Metrics {
//!     pub updates_sent: Counter,
//! }
//!
//! impl Metrics {
//!     pub fn register(registry: &mut Registry) -> Metrics {
//!         let metrics = Metrics::default();
//!         registry.register(
//!             "bgp_updates_sent",
//!             "UPDATE messages sent to all peers",
//!             metrics.updates_sent.clone(),
//!         );
//!         metrics
//!     }
//! }
//!
//! let mut registry = herald::metrics::MetricsRegistry::new();
//! let bgp = Metrics::register(registry.registry());
//! bgp.updates_sent.inc();
//! assert!(registry.encode().contains("herald_bgp_updates_sent_total 1"));
//! ```
//!
//! `registry()` hands out the `herald`-prefixed registry, so names are
//! written without the prefix. Every metric name, type and help text is
//! listed in `docs/metrics.md`; a test compares that catalogue with what
//! `/metrics` serves, so add a row there with every new metric.

mod process;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use process::ProcessCollector;

/// The content type of `/metrics` (OpenMetrics 1.0 text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The agent's metrics: the `herald_` registry that subsystems register on,
/// and the unprefixed `process_*` metrics that every Prometheus exporter
/// serves under the same names.
#[derive(Debug)]
pub struct MetricsRegistry {
    herald: Registry,
    process: Registry,
}

impl MetricsRegistry {
    /// A registry holding `herald_build_info` and the process metrics.
    pub fn new() -> Self {
        let mut herald = Registry::with_prefix("herald");
        herald.register(
            "build",
            "Build information: the herald version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let mut process = Registry::default();
        process.register_collector(Box::new(ProcessCollector));
        MetricsRegistry { herald, process }
    }

    /// The `herald`-prefixed registry a subsystem's `Metrics::register`
    /// takes.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.herald
    }

    /// The whole exposition in OpenMetrics text, ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail, and our collectors skip what
        // they cannot read instead of failing.
        let encoded = encode_registry(&mut text, &self.herald)
            .and_then(|()| encode_registry(&mut text, &self.process))
            .and_then(|()| encode_eof(&mut text));
        if let Err(error) = encoded {
            tracing::error!(%error, "encoding metrics failed");
        }
        text
    }
}

impl Default for MetricsRegistry {
    fn default() -> Self {
        MetricsRegistry::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_holds_build_info_and_process_metrics() {
        let text = MetricsRegistry::new().encode();
        let build = format!(
            "herald_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&build), "{text}");
        assert!(
            text.contains("# TYPE process_resident_memory_bytes gauge"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn subsystem_metrics_are_prefixed_with_herald() {
        let mut registry = MetricsRegistry::new();
        let counter = prometheus_client::metrics::counter::Counter::<u64>::default();
        registry
            .registry()
            .register("example_events", "Example", counter.clone());
        counter.inc_by(3);
        let text = registry.encode();
        assert!(text.contains("herald_example_events_total 3"), "{text}");
    }
}
