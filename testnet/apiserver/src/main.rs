//! `herald-apiserver`: the Kubernetes API stand-in as a process, for scripts and the demo.
//!
//! ```text
//! herald-apiserver --listen 127.0.0.1:6443 --kubeconfig-out /tmp/kubeconfig
//! ```
//!
//! Faults are injected with `POST /_standin/faults` (see `Faults::apply_command`); the request
//! log is at `GET /_standin/requests`. The process runs until it is killed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use herald_apiserver::{Options, StandIn};

#[derive(Parser)]
#[command(
    version,
    about = "A stand-in Kubernetes API server for herald's tests and demos"
)]
struct Cli {
    /// Address to listen on (plain HTTP).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write a kubeconfig for kubectl and kube clients here.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Seconds between watch bookmarks.
    #[arg(long, default_value_t = 60)]
    bookmark_interval: u64,
    /// Changes kept in the history before watches from older resourceVersions get 410.
    #[arg(long, default_value_t = 50_000)]
    history_limit: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let standin = StandIn::start(Options {
        listen: cli.listen,
        bookmark_interval: Duration::from_secs(cli.bookmark_interval.max(1)),
        history_limit: cli.history_limit,
        ..Options::default()
    })?;
    if let Some(path) = &cli.kubeconfig_out {
        let dir = tempdir_beside(path)?;
        let written = standin.kubeconfig(&dir)?;
        std::fs::rename(&written, path)?;
        let _ = std::fs::remove_dir(&dir);
    }
    println!("{}", standin.url());
    loop {
        std::thread::park();
    }
}

/// A fresh directory next to `path`, so the kubeconfig can be renamed into place atomically.
fn tempdir_beside(path: &std::path::Path) -> std::io::Result<PathBuf> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let dir = parent.join(format!(".herald-apiserver-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
