//! `herald run`: load the files, register every subsystem's metrics, start
//! the admin endpoint and run the agent (only with the `agent` feature).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use tracing::{info, warn};

use super::RunArgs;
use crate::admin::{self, AdminListen, AdminServer, AdminState, Liveness, Readiness};
use crate::agent::{self, AgentSetup, SourceSetup};
use crate::config::{Config, Problem};
use crate::metrics::MetricsRegistry;
use crate::services::ServicesFile;
use crate::status::StatusBoard;

/// `herald run`: load the files, register every subsystem's metrics, start
/// the admin endpoint, then run the agent until it stops (SIGTERM, SIGINT,
/// or the end of a drain); the agent handles the signals.
pub(super) async fn run(args: RunArgs) -> anyhow::Result<()> {
    let started = SystemTime::now();
    let config = Config::load_with(&args.config, crate::bird::config_problems)
        .with_context(|| format!("{} is not a valid configuration", args.config.display()))?;
    log_warnings(&args.config, &config.warnings());
    let services = match &args.services {
        Some(path) => {
            let services = ServicesFile::load(path)
                .with_context(|| format!("{} is not a valid services file", path.display()))?;
            log_warnings(path, &services.warnings(&config));
            Some(services)
        }
        None => None,
    };
    let node_name = match args.node_name.filter(|name| !name.is_empty()) {
        Some(name) => name,
        None => host_name().context("no node name: pass --node-name or set NODE_NAME")?,
    };

    let mut registry = MetricsRegistry::new();
    let admin_metrics = admin::Metrics::register(registry.registry());
    let subsystems = agent::metrics::SubsystemMetrics::register(registry.registry());
    let readiness = Readiness::new();
    // Registered before the admin endpoint answers, so that /readyz is 503
    // ("not reported yet") while the agent starts, not 200 for want of any
    // condition; the subsystems take these same conditions over.
    if config.speaker == crate::config::SpeakerKind::Herald {
        readiness.register("peers");
    }
    if services.is_none() {
        readiness.register("kubernetes");
    }
    let liveness = Liveness::default();
    let status = StatusBoard::new(&node_name, &config, started);
    let (commands, admin_commands) = tokio::sync::mpsc::unbounded_channel();

    let mut admin = AdminServer::start(
        AdminListen {
            tcp: config.admin_listen,
            socket: args.admin_socket.clone(),
        },
        AdminState {
            metrics: Arc::new(registry),
            status: status.clone(),
            readiness: readiness.clone(),
            liveness: liveness.clone(),
            admin_metrics,
            commands: Some(commands),
        },
    )
    .await?;
    info!(
        node = %node_name,
        config = %args.config.display(),
        mode = if services.is_some() { "standalone" } else { "kubernetes" },
        admin = %admin.local_addr(),
        admin_socket = %admin.socket_path().display(),
        pools = config.pools.len(),
        peers = config.peers.len(),
        services = services.as_ref().map_or(0, |s| s.services.len()),
        "herald started"
    );
    let setup = AgentSetup {
        config,
        config_path: args.config.clone(),
        services_path: args.services.clone(),
        source: match services {
            Some(services) => SourceSetup::Standalone(services),
            None => SourceSetup::Kubernetes,
        },
        node_name,
        node_labels: args.node_labels.into_iter().collect::<BTreeMap<_, _>>(),
        status,
        readiness,
        liveness,
        metrics: subsystems,
        admin: admin_commands,
    };
    tokio::select! {
        result = agent::run(setup) => result?,
        error = admin.stopped() => return Err(error.into()),
    }
    admin.shutdown().await?;
    info!("stopped");
    Ok(())
}

fn log_warnings(file: &Path, warnings: &[Problem]) {
    for problem in warnings {
        warn!(file = %file.display(), field = %problem.path, "{}", problem.message);
    }
}

/// The kernel's host name (what Kubernetes uses as the node name unless told
/// otherwise).
fn host_name() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("cannot read /proc/sys/kernel/hostname")?;
    let name = name.trim();
    anyhow::ensure!(!name.is_empty(), "the host name is empty");
    Ok(name.to_string())
}
