//! The command line: `herald run`, `herald check-config`, `herald status`,
//! `herald drain`, `herald --version`.
//!
//! Owns: argument parsing, logging setup, process exit codes, and the `run`
//! sequence (load config, register every subsystem's metrics, start the
//! admin endpoint, run the agent until it stops, stop the endpoint). Must
//! not touch: protocol or reconciliation logic; `run` only builds the shared
//! pieces (metrics registry, status board, readiness) and hands them to the
//! agent (`crate::agent`), which handles the signals.

mod admin_client;
#[cfg(feature = "agent")]
mod run;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Config, ConfigError, Problem};
use crate::services::ServicesFile;
use crate::status::StatusReport;

pub use admin_client::{ClientError, HttpResponse, parse_response};

/// How long `herald status` waits for the agent.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about = "Announces Kubernetes service addresses over BGP, with BFD beside every session"
)]
pub struct Cli {
    /// Log line format (the level comes from RUST_LOG, default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent.
    Run(RunArgs),
    /// Validate a config file (and a services file) and print the effective
    /// configuration, defaults filled in.
    CheckConfig(CheckConfigArgs),
    /// Show peers, BFD sessions and announcements of the running agent
    /// (through its admin socket).
    Status(StatusArgs),
    /// Drain the running agent: re-announce with GRACEFUL_SHUTDOWN
    /// (65535:0), wait drain.gshut_wait, withdraw, remove the addresses.
    /// `--cancel` undoes a drain started this way.
    Drain(DrainArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Standalone mode: announce the services in this file instead of
    /// watching Kubernetes.
    #[arg(long, value_name = "FILE")]
    pub services: Option<PathBuf>,
    /// This node's name (default: the host name).
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
    /// Standalone mode: a label of this node for the peers'
    /// node_selector (repeatable). In Kubernetes mode the Node's labels
    /// are used.
    #[arg(long = "node-label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub node_labels: Vec<(String, String)>,
    /// The admin Unix socket to create (mode 0600, its directory 0700 when
    /// herald creates it): `/status` and `/drain` are served only there.
    #[arg(long, value_name = "PATH", default_value = crate::admin::DEFAULT_ADMIN_SOCKET)]
    pub admin_socket: PathBuf,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The agent's admin socket.
    #[arg(long, value_name = "PATH", default_value = crate::admin::DEFAULT_ADMIN_SOCKET)]
    pub admin_socket: PathBuf,
    /// Undo a drain started by `herald drain`: serve and announce again.
    #[arg(long)]
    pub cancel: bool,
    /// Gone: the TCP admin_listen serves no /drain; kept to say so.
    #[arg(long, value_name = "ADDR", hide = true)]
    pub admin: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The configuration file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// A services file to check as well (and against the config's pools).
    #[arg(long, value_name = "FILE")]
    pub services: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The agent's admin socket.
    #[arg(long, value_name = "PATH", default_value = crate::admin::DEFAULT_ADMIN_SOCKET)]
    pub admin_socket: PathBuf,
    /// Gone: the TCP admin_listen serves no /status; kept to say so.
    #[arg(long, value_name = "ADDR", hide = true)]
    pub admin: Option<String>,
    /// Print the JSON of /status instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Entry point called by `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    if matches!(cli.command, Command::Run(_)) {
        exit_on_panic();
    }
    match cli.command {
        Command::CheckConfig(args) => check_config(&args),
        Command::Run(args) => block_on(run(args)).map_or_else(fail, |()| ExitCode::SUCCESS),
        Command::Status(args) => block_on(status(&args)).unwrap_or_else(fail),
        Command::Drain(args) => block_on(drain(&args)).unwrap_or_else(fail),
    }
}

/// The exit code of `herald run` after a panic anywhere in the process.
pub const PANIC_EXIT_CODE: i32 = 70;

/// A panic in any task or thread ends the process, with its message: tokio
/// would otherwise catch a panicking task and carry on without its BGP
/// session, listener or desired-set task, and a dead BFD thread would leave
/// every BFD peer unable to start. Exiting lets the kubelet restart herald,
/// and since the addresses stay on the interface the restart is a graceful
/// restart for the routers.
fn exit_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        tracing::error!(
            thread = name,
            "panic: {info}; exiting so that herald is restarted"
        );
        default_hook(info);
        std::process::exit(PANIC_EXIT_CODE);
    }));
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn block_on<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?
        .block_on(future)
}

/// Prints the error with its causes and fails.
fn fail(error: anyhow::Error) -> ExitCode {
    eprintln!("herald: {error:#}");
    ExitCode::FAILURE
}

/// `herald check-config FILE [--services FILE]`: the effective config on
/// stdout and exit 0, or every error on stderr and exit 1. Warnings go to
/// stderr either way.
fn check_config(args: &CheckConfigArgs) -> ExitCode {
    let mut errors = 0;
    let config = match Config::load_with(&args.file, crate::bird::config_problems) {
        Ok(config) => {
            print_problems("warning", &args.file, &config.warnings());
            Some(config)
        }
        Err(error) => {
            errors += report_error(&args.file, &error);
            None
        }
    };
    let services = match &args.services {
        None => None,
        Some(path) => match ServicesFile::load(path) {
            Ok(services) => {
                if let Some(config) = &config {
                    print_problems("warning", path, &services.warnings(config));
                }
                Some(services)
            }
            Err(error) => {
                errors += report_error(path, &error);
                None
            }
        },
    };
    if errors > 0 {
        eprintln!(
            "herald: {errors} {} found",
            if errors == 1 { "error" } else { "errors" }
        );
        return ExitCode::FAILURE;
    }
    let mut text = String::new();
    if let Some(config) = config {
        text.push_str(&format!(
            "# {}: valid; the effective configuration, defaults filled in\n{}",
            args.file.display(),
            config.to_yaml()
        ));
    }
    if let (Some(services), Some(path)) = (services, &args.services) {
        text.push_str(&format!(
            "---\n# {}: valid\n{}",
            path.display(),
            services.to_yaml()
        ));
    }
    print_stdout(&text).map_or_else(fail, |()| ExitCode::SUCCESS)
}

/// Writes `text` to stdout; a reader that went away (`| head`) is not an
/// error.
fn print_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(error).context("cannot write to stdout")
        }
        _ => Ok(()),
    }
}

/// Prints each problem of `error` as `error: FILE: path: message`; returns
/// how many.
fn report_error(file: &Path, error: &ConfigError) -> usize {
    let problems = error.problems();
    print_problems("error", file, &problems);
    problems.len()
}

fn print_problems(level: &str, file: &Path, problems: &[Problem]) {
    for problem in problems {
        if problem.path.is_empty() {
            eprintln!("{level}: {}: {}", file.display(), problem.message);
        } else {
            eprintln!("{level}: {}: {problem}", file.display());
        }
    }
}

/// `--admin ADDR` named the TCP listener, which no longer serves `/status`
/// or `/drain`: say so instead of ignoring it.
fn refuse_tcp_admin(admin: Option<&String>) -> anyhow::Result<()> {
    match admin {
        Some(addr) => anyhow::bail!(
            "--admin {addr}: the TCP admin_listen serves only /metrics, /livez and /readyz; \
             /status and /drain are on the admin Unix socket: use --admin-socket PATH \
             (default {})",
            crate::admin::DEFAULT_ADMIN_SOCKET
        ),
        None => Ok(()),
    }
}

/// Sends one request to the admin socket; `None` (after saying so) when no
/// agent answers.
async fn admin_request(
    socket: &Path,
    method: &str,
    path: &str,
) -> anyhow::Result<Option<HttpResponse>> {
    match admin_client::request(socket, method, path, STATUS_TIMEOUT).await {
        Ok(response) => Ok(Some(response)),
        Err(error @ ClientError::Connect { .. }) => {
            eprintln!("herald is not running: {error}");
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

/// `herald status`: GET /status and print it.
async fn status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    refuse_tcp_admin(args.admin.as_ref())?;
    let socket = args.admin_socket.display();
    let Some(response) = admin_request(&args.admin_socket, "GET", "/status").await? else {
        return Ok(ExitCode::FAILURE);
    };
    if response.status != 200 {
        anyhow::bail!(
            "{socket} answered /status with HTTP {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body).trim()
        );
    }
    let report: StatusReport = serde_json::from_slice(&response.body)
        .with_context(|| format!("{socket} answered /status with a body herald cannot read"))?;
    let text = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.render(SystemTime::now())
    };
    print_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// `herald drain`: POST /drain and print the drain's status;
/// `herald drain --cancel`: DELETE /drain.
async fn drain(args: &DrainArgs) -> anyhow::Result<ExitCode> {
    refuse_tcp_admin(args.admin.as_ref())?;
    let (method, expected, done) = if args.cancel {
        ("DELETE", 200, "drain cancelled")
    } else {
        ("POST", 202, "draining")
    };
    let Some(response) = admin_request(&args.admin_socket, method, "/drain").await? else {
        return Ok(ExitCode::FAILURE);
    };
    let body = String::from_utf8_lossy(&response.body);
    if response.status != expected {
        anyhow::bail!(
            "{} answered {method} /drain with HTTP {}: {}",
            args.admin_socket.display(),
            response.status,
            body.trim()
        );
    }
    print_stdout(&format!("{done}: {}\n", body.trim()))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "agent")]
use run::run;

/// Without the `agent` feature there is nothing to run (the fuzz build).
#[cfg(not(feature = "agent"))]
async fn run(_args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("this build has no agent (built without the \"agent\" feature)")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_config_services_and_node_name() {
        let cli = Cli::try_parse_from([
            "herald",
            "run",
            "--config",
            "c.yaml",
            "--services",
            "s.yaml",
            "--node-name",
            "n1",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.log_format, LogFormat::Json);
        let Command::Run(args) = cli.command else {
            panic!("not run");
        };
        assert_eq!(args.config, PathBuf::from("c.yaml"));
        assert_eq!(args.services, Some(PathBuf::from("s.yaml")));
        assert_eq!(args.node_name.as_deref(), Some("n1"));
        assert!(args.node_labels.is_empty());
    }

    #[test]
    fn node_labels_are_repeatable_key_value_pairs() {
        let cli = Cli::try_parse_from([
            "herald",
            "run",
            "--config",
            "c.yaml",
            "--node-label",
            "rack=a",
            "--node-label",
            "zone=1",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run");
        };
        assert_eq!(
            args.node_labels,
            vec![
                ("rack".to_string(), "a".to_string()),
                ("zone".to_string(), "1".to_string())
            ]
        );
        let error = Cli::try_parse_from(["herald", "run", "--config", "c", "--node-label", "x"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("KEY=VALUE"), "{error}");
    }

    #[test]
    fn status_and_drain_default_to_the_default_admin_socket() {
        let cli = Cli::try_parse_from(["herald", "status"]).unwrap();
        let Command::Status(args) = cli.command else {
            panic!("not status");
        };
        assert_eq!(args.admin_socket, PathBuf::from("/run/herald/admin.sock"));
        assert!(!args.json);
        let cli = Cli::try_parse_from(["herald", "drain", "--cancel"]).unwrap();
        let Command::Drain(args) = cli.command else {
            panic!("not drain");
        };
        assert_eq!(args.admin_socket, PathBuf::from("/run/herald/admin.sock"));
        assert!(args.cancel);
        let cli = Cli::try_parse_from(["herald", "run", "--config", "c", "--admin-socket", "/x/s"])
            .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run");
        };
        assert_eq!(args.admin_socket, PathBuf::from("/x/s"));
    }

    #[test]
    fn the_old_tcp_admin_option_is_refused_with_the_way_to_the_socket() {
        let error = refuse_tcp_admin(Some(&"127.0.0.1:9179".to_string()))
            .unwrap_err()
            .to_string();
        assert!(error.contains("--admin-socket PATH"), "{error}");
        assert!(error.contains("/run/herald/admin.sock"), "{error}");
    }

    #[test]
    fn run_without_config_is_refused() {
        let error = Cli::try_parse_from(["herald", "run"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--config"), "{error}");
    }
}
