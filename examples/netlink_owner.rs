//! A tiny stand-in for herald's address handling, used by the restart tests
//! until the agent wires `herald run` itself:
//!
//! ```text
//! netlink_owner [--label] INTERFACE ADDRESS...
//! ```
//!
//! Starts the service-address task on INTERFACE, wants the ADDRESSes, prints
//! `ready <status as JSON>` once they are placed, and waits for SIGTERM or
//! SIGINT. On either it prints `stopping`, stops the task and exits 0,
//! leaving the addresses in place, exactly as herald does on a restart.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::{Context, bail};
use herald::netlink::{Metrics, OwnershipMode, ServiceAddresses};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let ownership = if args.first().map(String::as_str) == Some("--label") {
        args.remove(0);
        OwnershipMode::Label
    } else {
        OwnershipMode::Auto
    };
    let Some(interface) = args.first().cloned() else {
        bail!("usage: netlink_owner [--label] INTERFACE ADDRESS...");
    };
    let wanted = args[1..]
        .iter()
        .map(|a| {
            a.parse::<IpAddr>()
                .with_context(|| format!("{a:?} is not an IP address"))
        })
        .collect::<anyhow::Result<BTreeSet<IpAddr>>>()?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let addresses = ServiceAddresses::start(&interface, ownership, Metrics::default()).await?;
    let report = addresses.set_wanted(wanted).await?;
    if !report.failed.is_empty() {
        eprintln!("not placed: {:?}", report.failed);
    }
    println!("ready {}", serde_json::to_string(&addresses.snapshot())?);
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    println!("stopping");
    addresses.stop().await;
    Ok(())
}
