//! The admin endpoint on `admin_listen` (loopback by default): `/livez`,
//! `/readyz`, `/metrics` and `/status`.
//!
//! Owns: the HTTP server, its routes and their response formats, and the
//! readiness conditions (`Readiness`). Must not touch: what the report says
//! or which metrics exist; subsystems write the `StatusBoard`, register their
//! own metrics and readiness conditions, and this module only reads them.
//!
//! | route      | answer                                                          |
//! |------------|-----------------------------------------------------------------|
//! | `/livez`   | 200 `ok` while the process serves HTTP                          |
//! | `/readyz`  | 200 while every registered condition holds, else 503 naming the failing ones |
//! | `/metrics` | OpenMetrics text (`application/openmetrics-text; version=1.0.0`) |
//! | `/status`  | the `StatusReport` as JSON                                      |

mod readiness;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use readiness::{Readiness, ReadinessCondition, ReadinessReport};

use crate::metrics::{self, MetricsRegistry};
use crate::status::{DrainStatus, StatusBoard};

/// How long `shutdown` lets in-flight requests finish before cutting them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Why the admin endpoint could not run.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on admin_listen {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("the admin endpoint stopped: {0}")]
    Serve(#[source] io::Error),
    #[error("the admin endpoint task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// The admin endpoint's own metrics.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    path: String,
    code: String,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics::default();
        registry.register(
            "admin_requests",
            "Admin endpoint requests by path (other for unknown paths) and status code",
            metrics.requests.clone(),
        );
        metrics
    }
}

/// What the routes read.
#[derive(Clone, Debug)]
pub struct AdminState {
    pub metrics: Arc<MetricsRegistry>,
    pub status: StatusBoard,
    pub readiness: Readiness,
    /// This endpoint's own counters (registered on `metrics` beforehand).
    pub admin_metrics: Metrics,
    /// The agent's command channel (`POST /drain`); `None` without an agent.
    pub commands: Option<mpsc::UnboundedSender<AdminCommand>>,
}

/// What the admin endpoint asks of the agent.
#[derive(Debug)]
pub enum AdminCommand {
    /// Start the drain; the reply is the drain's status once started.
    Drain(oneshot::Sender<Option<DrainStatus>>),
}

/// The routes, for serving or for testing without a socket.
pub fn router(state: AdminState) -> Router {
    let admin_metrics = state.admin_metrics.clone();
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/status", get(status))
        .route("/drain", post(drain))
        .with_state(state)
        .layer(middleware::from_fn_with_state(
            admin_metrics,
            count_requests,
        ))
}

async fn livez() -> &'static str {
    "ok\n"
}

/// Kubernetes-style verbose readiness: `[+]name ok` / `[-]name failed: why`.
async fn readyz(State(state): State<AdminState>) -> Response {
    let report = state.readiness.report();
    let mut body = String::new();
    for name in &report.ready {
        body.push_str(&format!("[+]{name} ok\n"));
    }
    for (name, why) in &report.failing {
        body.push_str(&format!("[-]{name} failed: {why}\n"));
    }
    if report.is_ready() {
        body.push_str("readyz check passed\n");
        (StatusCode::OK, body).into_response()
    } else {
        body.push_str("readyz check failed\n");
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn metrics_text(State(state): State<AdminState>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

async fn status(State(state): State<AdminState>) -> Response {
    axum::Json(state.status.snapshot()).into_response()
}

async fn drain(State(state): State<AdminState>) -> Response {
    let Some(commands) = &state.commands else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no agent to drain\n").into_response();
    };
    let (reply, answer) = oneshot::channel();
    if commands.send(AdminCommand::Drain(reply)).is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the agent has stopped\n").into_response();
    }
    match tokio::time::timeout(Duration::from_secs(10), answer).await {
        Ok(Ok(status)) => (StatusCode::ACCEPTED, axum::Json(status)).into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent did not answer\n",
        )
            .into_response(),
    }
}

async fn count_requests(
    State(admin_metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    // Label by known route only, so scanning the port cannot grow the family.
    let path = match request.uri().path() {
        "/livez" => "/livez",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/status" => "/status",
        "/drain" => "/drain",
        _ => "other",
    };
    let response = next.run(request).await;
    admin_metrics
        .requests
        .get_or_create(&RequestLabels {
            path: path.to_string(),
            code: response.status().as_u16().to_string(),
        })
        .inc();
    response
}

/// A running admin endpoint.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl AdminServer {
    /// Binds `listen` and serves the routes on a task of its own.
    pub async fn start(listen: SocketAddr, state: AdminState) -> Result<AdminServer, AdminError> {
        let bind_error = |source| AdminError::Bind {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(AdminServer {
            local_addr,
            stop: Some(stop),
            task,
        })
    }

    /// The address actually bound (differs from `admin_listen` for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Resolves only if the server stops by itself, with why.
    pub async fn stopped(&mut self) -> AdminError {
        match (&mut self.task).await {
            Ok(Ok(())) => AdminError::Serve(io::Error::other("the server returned")),
            Ok(Err(error)) => AdminError::Serve(error),
            Err(error) => AdminError::Task(error),
        }
    }

    /// Stops accepting, lets in-flight requests finish for at most
    /// `SHUTDOWN_GRACE`, then cuts the rest.
    pub async fn shutdown(mut self) -> Result<(), AdminError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.task).await {
            Ok(Ok(result)) => result.map_err(AdminError::Serve),
            Ok(Err(error)) => Err(AdminError::Task(error)),
            Err(_elapsed) => {
                self.task.abort();
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::config::Config;

    async fn start() -> (AdminServer, Readiness) {
        let config = Config::from_yaml(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/herald.yaml"
        )))
        .unwrap();
        let mut registry = MetricsRegistry::new();
        let admin_metrics = Metrics::register(registry.registry());
        let readiness = Readiness::new();
        let state = AdminState {
            metrics: Arc::new(registry),
            status: StatusBoard::new("node-a", &config, UNIX_EPOCH),
            readiness: readiness.clone(),
            admin_metrics,
            commands: None,
        };
        let server = AdminServer::start("127.0.0.1:0".parse().unwrap(), state)
            .await
            .unwrap();
        (server, readiness)
    }

    /// (status code, head, body) of one GET.
    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        request(addr, "GET", path).await
    }

    /// (status code, head, body) of one request without a body.
    async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let code = head[9..12].parse().unwrap();
        (code, head.to_lowercase(), body.to_string())
    }

    #[tokio::test]
    async fn readyz_follows_the_registered_conditions() {
        let (server, readiness) = start().await;
        let addr = server.local_addr();
        assert_eq!(get(addr, "/readyz").await.0, 200);
        let kube = readiness.register("kubernetes");
        let (code, _, body) = get(addr, "/readyz").await;
        assert_eq!(code, 503);
        assert!(
            body.contains("[-]kubernetes failed: not reported yet"),
            "{body}"
        );
        kube.set_ready();
        let (code, _, body) = get(addr, "/readyz").await;
        assert_eq!(code, 200);
        assert!(body.contains("[+]kubernetes ok"), "{body}");
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn requests_are_counted_by_known_path_and_code() {
        let (server, _) = start().await;
        let addr = server.local_addr();
        assert_eq!(get(addr, "/livez").await.0, 200);
        assert_eq!(get(addr, "/no-such-page").await.0, 404);
        let (code, head, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(
            head.contains("application/openmetrics-text; version=1.0.0"),
            "{head}"
        );
        assert!(
            body.contains("herald_admin_requests_total{path=\"/livez\",code=\"200\"} 1"),
            "{body}"
        );
        assert!(
            body.contains("herald_admin_requests_total{path=\"other\",code=\"404\"} 1"),
            "{body}"
        );
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn post_drain_asks_the_agent_and_answers_with_the_drain_status() {
        let config = Config::from_yaml(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/herald.yaml"
        )))
        .unwrap();
        let mut registry = MetricsRegistry::new();
        let admin_metrics = Metrics::register(registry.registry());
        let (commands, mut agent) = mpsc::unbounded_channel();
        let state = AdminState {
            metrics: Arc::new(registry),
            status: StatusBoard::new("node-a", &config, UNIX_EPOCH),
            readiness: Readiness::new(),
            admin_metrics,
            commands: Some(commands),
        };
        let server = AdminServer::start("127.0.0.1:0".parse().unwrap(), state)
            .await
            .unwrap();
        tokio::spawn(async move {
            while let Some(AdminCommand::Drain(reply)) = agent.recv().await {
                let _ = reply.send(Some(DrainStatus {
                    phase: "graceful_shutdown".to_string(),
                    trigger: "admin_request".to_string(),
                    seconds_left: Some(15),
                }));
            }
        });
        let (code, _, body) = request(server.local_addr(), "POST", "/drain").await;
        assert_eq!(code, 202, "{body}");
        assert!(body.contains("\"phase\":\"graceful_shutdown\""), "{body}");
        // GET is not a drain.
        assert_eq!(get(server.local_addr(), "/drain").await.0, 405);
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn post_drain_without_an_agent_is_unavailable() {
        let (server, _) = start().await;
        let (code, _, body) = request(server.local_addr(), "POST", "/drain").await;
        assert_eq!(code, 503);
        assert_eq!(body, "no agent to drain\n");
        server.shutdown().await.unwrap();
    }
}
