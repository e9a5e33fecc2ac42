//! Reloading the configuration and the services file: `watch` notices a
//! changed file (or SIGHUP) and validates it; the agent applies a valid one
//! as the difference to the one in force ([`ConfigDiff`]): pools and
//! selection go to the source, anti-flap and drain take their new values,
//! the peers (or BIRD's include file) follow through the announcement sink,
//! and a services file goes to the standalone source. An invalid file never
//! reaches here: the last good one stays in force.
//!
//! Owns: the `impl Agent` methods above and the reload source (`watch`).
//! Must not touch: the diff (`crate::config::diff`), or how the peers apply
//! theirs (`super::peers`).

mod watch;

pub use watch::{
    Metrics, POLL_INTERVAL, Reload, ReloadError, ReloadLabels, ReloadOptions, ReloadSource,
};

use super::Agent;
use crate::config::{Config, ConfigDiff};

impl Agent {
    pub(super) async fn reload(&mut self, reload: Reload) {
        match reload {
            Reload::Rejected { path, error } => {
                for problem in error.problems() {
                    tracing::error!(
                        file = %path.display(),
                        field = %problem.path,
                        "reload rejected, the last good file stays in force: {}",
                        problem.message
                    );
                }
            }
            Reload::Services(file) => {
                tracing::info!(services = file.services.len(), "services file reloaded");
                self.source.set_services(file);
            }
            Reload::Config(config) => self.reload_config(*config).await,
        }
    }

    /// A new configuration: applies [`ConfigDiff::between`] the one in force
    /// and `new`.
    async fn reload_config(&mut self, mut new: Config) {
        let diff = ConfigDiff::between(&self.config, &new);
        if diff.is_empty() {
            tracing::info!("configuration reloaded: nothing changed");
            return;
        }
        for line in diff.summary() {
            tracing::info!("configuration reloaded: {line}");
        }
        for change in &diff.needs_restart {
            tracing::warn!("configuration reloaded: {change}: takes effect when herald restarts");
        }
        if let Some((old, wanted)) = &diff.interface {
            tracing::warn!(
                "configuration reloaded: interface {old} -> {wanted} takes effect when herald restarts; the addresses stay on {old}"
            );
            new.interface = old.clone();
        }
        if let Some(anti_flap) = &diff.anti_flap {
            self.antiflap.set_config(anti_flap.clone());
        }
        if let Some(drain) = &diff.drain {
            self.drain.set_gshut_wait(drain.gshut_wait);
        }
        if diff.policy_changed {
            self.source.set_config(&new);
        }
        // The peers (herald's own sessions), or BIRD's include file, follow
        // the new config.
        self.sink.set_config(&new);
        self.config = new;
        self.status.set_config(&self.config);
        self.reconcile().await;
    }
}
