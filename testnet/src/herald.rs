//! [`HeraldNode`]: the herald binary as a lab node, `herald run` inside a
//! lab namespace, observed through its admin endpoint.
//!
//! What this module owns: the node's config and services files (written to
//! its own directory in the lab), the herald process it starts (tracked by
//! PID in the lab's process table, one log file per start), and HTTP
//! requests to the admin endpoint from inside the namespace. What it must
//! not touch: herald's state itself (only its files, signals and the admin
//! endpoint), or any process it did not start.
//!
//! ```text
//!  HeraldNode::start(ns, HeraldOptions { binary, config, services, admin, node_name, env })
//!     writes <lab>/<node>/herald/config.yaml (+ services.yaml)
//!     spawns `ip netns exec NS herald run --config .. [--services ..] --node-name ..`
//!     waits (bounded) until GET /livez answers 200
//!  metrics() / get() / post() on /livez /readyz /metrics: HTTP/1.1 from inside NS
//!  status() / drain() / cancel_drain() / admin()       HTTP/1.1 on the admin socket
//!                                                      (<lab>/<node>/herald/admin.sock)
//!  signal(SIGSTOP | SIGCONT | SIGTERM | SIGKILL)      by PID
//!  stop() / kill() / launch() / restart()             the same files, a new process
//!  wait_for(timeout, what, |status| ..)               bounded polling of /status
//!  drop                                               SIGKILL by PID; log tail if panicking
//! ```
//!
//! Tests of the root package pass `env!("CARGO_BIN_EXE_herald")` as the
//! binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::error::{LabError, Result};
use crate::http::{self, HttpResponse};
use crate::netns::Namespace;
use crate::process::{Process, Signal};
use crate::wait::wait_until;

/// How long [`HeraldNode::launch`] waits for the admin endpoint to answer.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one admin request may take.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How many log lines [`HeraldNode`] prints when dropped by a panicking test.
const LOG_TAIL: usize = 80;

/// What to run: the binary, its files and how to reach it.
#[derive(Debug, Clone)]
pub struct HeraldOptions {
    /// The herald binary (`env!("CARGO_BIN_EXE_herald")` in tests).
    pub binary: PathBuf,
    /// The config YAML (herald's config file, docs/configuration.md). Its
    /// `admin_listen` must be `admin`.
    pub config: String,
    /// The standalone services YAML; `None` runs in Kubernetes mode.
    pub services: Option<String>,
    /// The admin endpoint inside the namespace (`127.0.0.1:9179`).
    pub admin: SocketAddr,
    /// `--node-name`.
    pub node_name: String,
    /// Extra environment (`KUBECONFIG`, `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// Extra arguments after `run` (say `--node-label zone=a`).
    pub extra_args: Vec<String>,
}

/// One herald agent in a lab namespace. The process belongs to the lab (it
/// is stopped with the lab in any case); dropping the node kills it by PID
/// at once.
#[derive(Debug)]
pub struct HeraldNode {
    ns: Namespace,
    options: HeraldOptions,
    dir: PathBuf,
    process: Option<Process>,
    /// Every log file of this node, one per start, oldest first.
    logs: Vec<PathBuf>,
}

impl HeraldNode {
    /// Writes the files and starts herald (see [`HeraldNode::launch`]).
    pub fn start(ns: &Namespace, options: HeraldOptions) -> Result<HeraldNode> {
        let dir = ns.dir().join("herald");
        std::fs::create_dir_all(&dir).map_err(|source| LabError::Io {
            context: "cannot create the herald directory",
            path: dir.clone(),
            source,
        })?;
        let mut node = HeraldNode {
            ns: ns.clone(),
            options,
            dir,
            process: None,
            logs: Vec::new(),
        };
        let config = node.options.config.clone();
        node.write_config(&config)?;
        if let Some(services) = node.options.services.clone() {
            node.write_services(&services)?;
        }
        node.launch()?;
        Ok(node)
    }

    /// The namespace herald runs in.
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// The node name herald was given.
    pub fn node_name(&self) -> &str {
        &self.options.node_name
    }

    /// The admin endpoint (inside the namespace).
    pub fn admin(&self) -> SocketAddr {
        self.options.admin
    }

    /// The admin Unix socket herald creates (`--admin-socket`): `/status`
    /// and `/drain` are served only there.
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }

    /// The config file herald reads.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.yaml")
    }

    /// The services file herald reads in standalone mode.
    pub fn services_path(&self) -> PathBuf {
        self.dir.join("services.yaml")
    }

    /// The current process, if one was started.
    pub fn process(&self) -> Option<&Process> {
        self.process.as_ref()
    }

    /// The current process's PID.
    pub fn pid(&self) -> Option<i32> {
        self.process.as_ref().map(Process::pid)
    }

    /// True while the current process has not exited (a SIGSTOPped one runs).
    pub fn is_running(&self) -> bool {
        self.process.as_ref().is_some_and(Process::is_running)
    }

    /// Replaces the config file (herald reloads it on change or SIGHUP).
    pub fn write_config(&mut self, yaml: &str) -> Result<()> {
        self.options.config = yaml.to_owned();
        write_file(&self.config_path(), yaml)
    }

    /// Replaces the services file (standalone mode).
    pub fn write_services(&mut self, yaml: &str) -> Result<()> {
        self.options.services = Some(yaml.to_owned());
        write_file(&self.services_path(), yaml)
    }

    /// Starts a new herald process on the node's files, unless one is
    /// running, and waits until `/livez` answers 200 (at most
    /// [`STARTUP_TIMEOUT`]). Fails with herald's log if it exits first.
    pub fn launch(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let binary = self.options.binary.display().to_string();
        let config = self.config_path().display().to_string();
        let services = self.services_path().display().to_string();
        let socket = self.admin_socket().display().to_string();
        let mut args: Vec<&str> = vec!["run", "--config", &config, "--admin-socket", &socket];
        if self.options.services.is_some() {
            args.extend(["--services", &services]);
        }
        args.extend(["--node-name", &self.options.node_name]);
        args.extend(self.options.extra_args.iter().map(String::as_str));
        let mut env = vec![("RUST_LOG".to_owned(), "info".to_owned())];
        env.extend(self.options.env.iter().cloned());
        let process = self.ns.spawn_with_env("herald", &binary, &args, &env)?;
        self.logs.push(process.log_path().to_owned());
        self.process = Some(process.clone());
        wait_until(
            STARTUP_TIMEOUT,
            Duration::from_millis(50),
            &format!(
                "herald in {} to answer on {}/livez",
                self.ns.name(),
                self.admin()
            ),
            || {
                process.ensure_running().map_err(|e| e.to_string())?;
                match self.get("/livez") {
                    Ok(r) if r.status == 200 => Ok(()),
                    Ok(r) => Err(format!("HTTP {}: {}", r.status, r.text())),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .map_err(|e| match process.ensure_running() {
            Err(exited) => exited,
            Ok(()) => e,
        })
    }

    /// Sends `sig` to the current process by PID; for SIGSTOP, returns once
    /// every thread is stopped ([`Process::freeze`]).
    pub fn signal(&self, sig: Signal) -> Result<()> {
        match sig {
            Signal::SIGSTOP => self.current()?.freeze(),
            _ => self.current()?.signal(sig),
        }
    }

    /// SIGKILL and wait (bounded) for the exit. Addresses, routes and
    /// sockets are left as a crash leaves them.
    pub fn kill(&self) -> Result<()> {
        self.current()?.kill().map(drop)
    }

    /// SIGTERM (and SIGCONT in case it is frozen), then wait up to `grace`
    /// for herald to exit on its own (a drain on SIGTERM takes
    /// `drain.gshut_wait`); SIGKILL after that. Returns whether herald exited
    /// on its own.
    pub fn stop(&self, grace: Duration) -> Result<bool> {
        let process = self.current()?;
        if !process.is_running() {
            return Ok(true);
        }
        process.signal(Signal::SIGTERM)?;
        let _ = process.signal(Signal::SIGCONT);
        match process.wait_exit(grace) {
            Ok(_) => Ok(true),
            Err(_) => process.kill().map(|_| false),
        }
    }

    /// A planned restart: [`HeraldNode::stop`] with `grace`, then
    /// [`HeraldNode::launch`] on the same files.
    pub fn restart(&mut self, grace: Duration) -> Result<()> {
        self.stop(grace)?;
        self.launch()
    }

    /// `GET PATH` on the admin endpoint, from inside the namespace.
    pub fn get(&self, path: &str) -> Result<HttpResponse> {
        self.request("GET", path, &[])
    }

    /// `POST PATH` with a JSON body on the admin endpoint.
    pub fn post(&self, path: &str, body: &[u8]) -> Result<HttpResponse> {
        self.request("POST", path, body)
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> Result<HttpResponse> {
        let addr = self.admin();
        let (method_owned, path_owned, body_owned) =
            (method.to_owned(), path.to_owned(), body.to_vec());
        self.ns
            .run_in(move || {
                http::request(addr, &method_owned, &path_owned, &body_owned, ADMIN_TIMEOUT)
            })?
            .map_err(|e| LabError::Node {
                node: self.ns.node().to_owned(),
                message: format!("herald admin {method} {path}: {e}"),
            })
    }

    /// `METHOD PATH` on the admin socket.
    pub fn admin_request(&self, method: &str, path: &str) -> Result<HttpResponse> {
        http::request_unix(&self.admin_socket(), method, path, &[], ADMIN_TIMEOUT).map_err(|e| {
            LabError::Node {
                node: self.ns.node().to_owned(),
                message: format!("herald admin socket {method} {path}: {e}"),
            }
        })
    }

    /// `GET /status` on the admin socket, parsed. Fails unless herald
    /// answers 200 with JSON.
    pub fn status(&self) -> Result<Value> {
        let response = self.admin_request("GET", "/status")?;
        let text = self.expect_ok("/status", &response)?;
        serde_json::from_str(&text).map_err(|source| LabError::Json {
            command: format!("GET /status in {}", self.ns.name()),
            output: text,
            source,
        })
    }

    /// `GET /metrics` (Prometheus text).
    pub fn metrics(&self) -> Result<String> {
        let response = self.get("/metrics")?;
        self.expect_ok("/metrics", &response)
    }

    /// The value of the first sample of `metric` whose labels contain every
    /// `label="value"` in `labels` (`None` if there is no such sample).
    pub fn metric(&self, metric: &str, labels: &[(&str, &str)]) -> Result<Option<f64>> {
        Ok(metric_value(&self.metrics()?, metric, labels))
    }

    /// `POST /drain` on the admin socket: re-announce with
    /// GRACEFUL_SHUTDOWN, wait, withdraw.
    pub fn drain(&self) -> Result<HttpResponse> {
        let response = self.admin_request("POST", "/drain")?;
        if (200..300).contains(&response.status) {
            Ok(response)
        } else {
            Err(self.unexpected("POST /drain", &response))
        }
    }

    /// `DELETE /drain` on the admin socket: undo an admin drain.
    pub fn cancel_drain(&self) -> Result<HttpResponse> {
        let response = self.admin_request("DELETE", "/drain")?;
        if response.status == 200 {
            Ok(response)
        } else {
            Err(self.unexpected("DELETE /drain", &response))
        }
    }

    /// Polls `/status` every 100 ms, at most `timeout`, until `check`
    /// returns `Ok`; a timeout error carries `what` and the last answer of
    /// `check`. Fails early if herald exits.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&Value) -> std::result::Result<T, String>,
    ) -> Result<T> {
        let what = format!("{} on {}", what, self.ns.node());
        wait_until(timeout, Duration::from_millis(100), &what, || {
            self.current()
                .and_then(Process::ensure_running)
                .map_err(|e| e.to_string())?;
            let status = self.status().map_err(|e| e.to_string())?;
            check(&status)
        })
    }

    /// The current process's log.
    pub fn log(&self) -> String {
        self.process.as_ref().map(Process::log).unwrap_or_default()
    }

    /// Every log of this node (all starts), concatenated with headers.
    pub fn all_logs(&self) -> String {
        let mut text = String::new();
        for path in &self.logs {
            text.push_str(&format!("----- {} -----\n", path.display()));
            text.push_str(&std::fs::read_to_string(path).unwrap_or_default());
        }
        text
    }

    fn current(&self) -> Result<&Process> {
        self.process.as_ref().ok_or_else(|| LabError::Node {
            node: self.ns.node().to_owned(),
            message: "herald was never started".into(),
        })
    }

    fn expect_ok(&self, path: &str, response: &HttpResponse) -> Result<String> {
        if response.status == 200 {
            Ok(response.text())
        } else {
            Err(self.unexpected(&format!("GET {path}"), response))
        }
    }

    fn unexpected(&self, what: &str, response: &HttpResponse) -> LabError {
        LabError::Node {
            node: self.ns.node().to_owned(),
            message: format!(
                "herald admin {what}: HTTP {}: {}",
                response.status,
                response.text()
            ),
        }
    }
}

impl Drop for HeraldNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- herald on {} (pid {:?}): last {LOG_TAIL} lines of each run -----",
                self.ns.node(),
                self.pid()
            );
            for path in &self.logs {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("--- {} ---", path.display());
                for line in &lines[lines.len().saturating_sub(LOG_TAIL)..] {
                    eprintln!("{line}");
                }
            }
        }
        if let Some(process) = &self.process
            && process.is_running()
        {
            let _ = process.kill();
        }
    }
}

/// The value of the first sample of `metric` in Prometheus text whose labels
/// include every `(name, value)` in `labels`.
pub fn metric_value(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, label_text) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if name != metric {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
            if all { value.parse().ok() } else { None }
        })
}

fn write_file(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(|source| LabError::Io {
        context: "cannot write a herald file",
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "# HELP herald_bgp_session_up Up.\n# TYPE herald_bgp_session_up gauge\n\
        herald_bgp_session_up{peer=\"r1\"} 1\nherald_bgp_session_up{peer=\"r2\"} 0\n\
        herald_announcements 3\n";

    #[test]
    fn metric_value_finds_the_sample_with_the_given_labels() {
        assert_eq!(
            metric_value(METRICS, "herald_bgp_session_up", &[("peer", "r2")]),
            Some(0.0)
        );
        assert_eq!(
            metric_value(METRICS, "herald_bgp_session_up", &[("peer", "r1")]),
            Some(1.0)
        );
        assert_eq!(
            metric_value(METRICS, "herald_announcements", &[]),
            Some(3.0)
        );
    }

    #[test]
    fn metric_value_is_none_for_an_absent_metric_or_label() {
        assert_eq!(metric_value(METRICS, "herald_bgp_session", &[]), None);
        assert_eq!(
            metric_value(METRICS, "herald_bgp_session_up", &[("peer", "r9")]),
            None
        );
    }
}
