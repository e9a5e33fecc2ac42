//! The admin surfaces: the TCP `admin_listen` (loopback by default) for
//! probes and scraping, and the admin Unix socket (`/run/herald/admin.sock`
//! by default, mode 0600) for everything that reads details or changes state.
//!
//! Owns: both HTTP servers, their routes and response formats, and the
//! readiness conditions (`Readiness`). Must not touch: what the report says
//! or which metrics exist; subsystems write the `StatusBoard`, register their
//! own metrics and readiness conditions, and this module only reads them.
//!
//! Why two surfaces: herald runs with host networking, so its TCP port is
//! reachable by every process on the node (and, when `admin_listen` is
//! `0.0.0.0` for Prometheus, by every pod that can reach the node). Nothing
//! reachable that way may change routing or read the detailed report. The
//! socket's file mode and peer credentials limit it to herald's own user and
//! root (`kubectl exec` into herald's container runs as that user).
//!
//! | route          | TCP `admin_listen` | Unix socket | answer |
//! |----------------|--------------------|-------------|--------|
//! | `GET /livez`   | yes | yes | 200 `ok` while every registered loop (the owner task, the BFD thread) made progress within `LIVENESS_BOUND`, else 503 naming the stuck ones |
//! | `GET /readyz`  | yes | yes | 200 while every registered condition holds, else 503 naming the failing ones |
//! | `GET /metrics` | yes | yes | OpenMetrics text (`application/openmetrics-text; version=1.0.0`) |
//! | `GET /status`  | 404 | yes | the `StatusReport` as JSON |
//! | `POST /drain`  | 404 | yes | 202 and the drain's status: start a drain |
//! | `DELETE /drain`| 404 | yes | 200 and the status once an admin drain is cancelled, 409 and why not |
//! | anything else  | 404 | 404 | |

mod liveness;
mod readiness;
pub mod socket;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use liveness::{Heartbeat, LIVENESS_BOUND, Liveness};
pub use readiness::{Readiness, ReadinessCondition, ReadinessReport};
pub use socket::{SocketError, SocketFile};

use crate::metrics::{self, MetricsRegistry};
use crate::status::{DrainStatus, StatusBoard};

/// Where `herald run` creates the admin socket and `herald status` and
/// `herald drain` look for it, unless `--admin-socket` says otherwise.
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/herald/admin.sock";

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
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("the admin endpoint stopped: {0}")]
    Serve(#[source] io::Error),
    #[error("the admin endpoint task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// The admin endpoint's own metrics.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    socket_refused: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    listener: String,
    path: String,
    code: String,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics::default();
        registry.register(
            "admin_requests",
            "Admin requests by listener (tcp or socket), path (other for unknown paths) and status code",
            metrics.requests.clone(),
        );
        registry.register(
            "admin_socket_refused_connections",
            "Connections to the admin socket refused because the peer process runs as another user",
            metrics.socket_refused.clone(),
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
    /// The loops `/livez` checks.
    pub liveness: Liveness,
    /// This endpoint's own counters (registered on `metrics` beforehand).
    pub admin_metrics: Metrics,
    /// The agent's command channel (`/drain`); `None` without an agent.
    pub commands: Option<mpsc::UnboundedSender<AdminCommand>>,
}

/// What the admin endpoint asks of the agent.
#[derive(Debug)]
pub enum AdminCommand {
    /// Start the drain; the reply is the drain's status once started.
    Drain(oneshot::Sender<Option<DrainStatus>>),
    /// Undo a drain started by `Drain`; the reply is the drain's status
    /// afterwards, or why the drain cannot be cancelled.
    CancelDrain(oneshot::Sender<Result<Option<DrainStatus>, String>>),
}

/// Which surface a router serves (a label of `herald_admin_requests_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    Tcp,
    Socket,
}

impl Surface {
    fn as_str(self) -> &'static str {
        match self {
            Surface::Tcp => "tcp",
            Surface::Socket => "socket",
        }
    }
}

/// The routes of the TCP `admin_listen`: probes and scraping only.
pub fn tcp_router(state: AdminState) -> Router {
    let admin_metrics = state.admin_metrics.clone();
    probe_routes()
        .with_state(state)
        .layer(middleware::from_fn_with_state(
            (admin_metrics, Surface::Tcp),
            count_requests,
        ))
}

/// The routes of the admin socket: the probes, `/status` and `/drain`.
pub fn socket_router(state: AdminState) -> Router {
    let admin_metrics = state.admin_metrics.clone();
    let routes = probe_routes()
        .route("/status", get(status))
        .route("/drain", axum::routing::post(drain).delete(cancel_drain));
    // Debug builds only (tests): a way to prove that a panic in a task ends
    // the process. Release builds (the image) do not have the route, and
    // even here it needs the socket, that is herald's own user or root.
    #[cfg(debug_assertions)]
    let routes = routes.route("/debug/panic", axum::routing::post(debug_panic));
    routes
        .with_state(state)
        .layer(middleware::from_fn_with_state(
            (admin_metrics, Surface::Socket),
            count_requests,
        ))
}

fn probe_routes() -> Router<AdminState> {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
}

#[cfg(debug_assertions)]
async fn debug_panic() -> Response {
    tokio::spawn(async {
        panic!("test-only panic in a spawned task (POST /debug/panic)");
    });
    (StatusCode::ACCEPTED, "panicking\n").into_response()
}

async fn livez(State(state): State<AdminState>) -> Response {
    let stuck = state.liveness.stuck(std::time::Instant::now());
    if stuck.is_empty() {
        return (StatusCode::OK, "ok\n").into_response();
    }
    let mut body = String::new();
    for (name, age) in stuck {
        body.push_str(&format!(
            "[-]{name} failed: no progress for {}s\n",
            age.as_secs()
        ));
    }
    body.push_str("livez check failed\n");
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
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

/// How long a `/drain` request waits for the agent's answer.
const AGENT_ANSWER: Duration = Duration::from_secs(10);

/// Sends the agent the command `make` builds around a reply channel and
/// waits (at most [`AGENT_ANSWER`]) for the answer; the error is the 503 to
/// return when there is no agent (`no_agent`), it has stopped, or it did
/// not answer.
async fn ask_agent<T>(
    state: &AdminState,
    no_agent: &'static str,
    make: impl FnOnce(oneshot::Sender<T>) -> AdminCommand,
) -> Result<T, Response> {
    let unavailable = |text: &'static str| (StatusCode::SERVICE_UNAVAILABLE, text).into_response();
    let Some(commands) = &state.commands else {
        return Err(unavailable(no_agent));
    };
    let (reply, answer) = oneshot::channel();
    if commands.send(make(reply)).is_err() {
        return Err(unavailable("the agent has stopped\n"));
    }
    match tokio::time::timeout(AGENT_ANSWER, answer).await {
        Ok(Ok(answer)) => Ok(answer),
        _ => Err(unavailable("the agent did not answer\n")),
    }
}

async fn drain(State(state): State<AdminState>) -> Response {
    match ask_agent(&state, "no agent to drain\n", AdminCommand::Drain).await {
        Ok(status) => (StatusCode::ACCEPTED, axum::Json(status)).into_response(),
        Err(response) => response,
    }
}

async fn cancel_drain(State(state): State<AdminState>) -> Response {
    match ask_agent(&state, "no agent\n", AdminCommand::CancelDrain).await {
        Ok(Ok(status)) => (StatusCode::OK, axum::Json(status)).into_response(),
        Ok(Err(why)) => (StatusCode::CONFLICT, format!("{why}\n")).into_response(),
        Err(response) => response,
    }
}

async fn count_requests(
    State((admin_metrics, surface)): State<(Metrics, Surface)>,
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
            listener: surface.as_str().to_string(),
            path: path.to_string(),
            code: response.status().as_u16().to_string(),
        })
        .inc();
    response
}

/// The admin socket's listener: accepts only peers of herald's own user or
/// root (SO_PEERCRED), closing any other connection unanswered.
struct PeerCheckedListener {
    inner: UnixListener,
    metrics: Metrics,
}

impl axum::serve::Listener for PeerCheckedListener {
    type Io = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            match stream.peer_cred() {
                Ok(cred) if socket::peer_allowed(cred.uid()) => return (stream, addr),
                Ok(cred) => {
                    self.metrics.socket_refused.inc();
                    tracing::warn!(
                        uid = cred.uid(),
                        pid = cred.pid(),
                        "admin socket: refused a connection from another user"
                    );
                }
                Err(error) => {
                    self.metrics.socket_refused.inc();
                    tracing::warn!(
                        "admin socket: refused a connection without credentials: {error}"
                    );
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Where the admin surfaces listen.
#[derive(Clone, Debug)]
pub struct AdminListen {
    /// `admin_listen`: probes and `/metrics`.
    pub tcp: SocketAddr,
    /// The admin socket: `/status`, `/drain` (and the probes).
    pub socket: PathBuf,
}

/// The running admin surfaces.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    socket: SocketFile,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    tcp_task: JoinHandle<io::Result<()>>,
    socket_task: JoinHandle<io::Result<()>>,
}

impl AdminServer {
    /// Binds both surfaces and serves each on a task of its own.
    pub async fn start(listen: AdminListen, state: AdminState) -> Result<AdminServer, AdminError> {
        let bind_error = |source| AdminError::Bind {
            addr: listen.tcp,
            source,
        };
        let listener = TcpListener::bind(listen.tcp).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let (std_socket, socket_file) = socket::bind(&listen.socket)?;
        let socket_io = |context| {
            let path = listen.socket.clone();
            move |source| SocketError::Io {
                path,
                context,
                source,
            }
        };
        std_socket
            .set_nonblocking(true)
            .map_err(socket_io("cannot make it non-blocking"))?;
        let unix = UnixListener::from_std(std_socket).map_err(socket_io("cannot serve it"))?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let tcp_app = tcp_router(state.clone());
        let socket_app = socket_router(state.clone());
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let tcp_task = tokio::spawn(
            axum::serve(listener, tcp_app)
                .with_graceful_shutdown(until_stopped(stopped.clone()))
                .into_future(),
        );
        let socket_task = tokio::spawn(
            axum::serve(
                PeerCheckedListener {
                    inner: unix,
                    metrics: state.admin_metrics.clone(),
                },
                socket_app,
            )
            .with_graceful_shutdown(until_stopped(stopped))
            .into_future(),
        );
        Ok(AdminServer {
            local_addr,
            socket: socket_file,
            stop: Some(stop),
            tcp_task,
            socket_task,
        })
    }

    /// The address actually bound (differs from `admin_listen` for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin socket's path.
    pub fn socket_path(&self) -> &Path {
        &self.socket.path
    }

    /// Resolves only if a server stops by itself, with why.
    pub async fn stopped(&mut self) -> AdminError {
        let result = tokio::select! {
            result = &mut self.tcp_task => result,
            result = &mut self.socket_task => result,
        };
        match result {
            Ok(Ok(())) => AdminError::Serve(io::Error::other("the server returned")),
            Ok(Err(error)) => AdminError::Serve(error),
            Err(error) => AdminError::Task(error),
        }
    }

    /// Stops accepting, lets in-flight requests finish for at most
    /// `SHUTDOWN_GRACE`, then cuts the rest; removes the socket file.
    pub async fn shutdown(mut self) -> Result<(), AdminError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        let mut outcome = Ok(());
        for task in [&mut self.tcp_task, &mut self.socket_task] {
            match tokio::time::timeout_at(deadline, &mut *task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => outcome = Err(AdminError::Serve(error)),
                Ok(Err(error)) => outcome = Err(AdminError::Task(error)),
                Err(_elapsed) => task.abort(),
            }
        }
        self.socket.remove();
        outcome
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::config::Config;

    struct Running {
        server: AdminServer,
        readiness: Readiness,
        _dir: tempfile::TempDir,
    }

    fn state(commands: Option<mpsc::UnboundedSender<AdminCommand>>) -> (AdminState, Readiness) {
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
            liveness: Liveness::new(Duration::from_millis(300)),
            admin_metrics,
            commands,
        };
        (state, readiness)
    }

    async fn start_with(commands: Option<mpsc::UnboundedSender<AdminCommand>>) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let (state, readiness) = state(commands);
        let server = AdminServer::start(
            AdminListen {
                tcp: "127.0.0.1:0".parse().unwrap(),
                socket: dir.path().join("admin.sock"),
            },
            state,
        )
        .await
        .unwrap();
        Running {
            server,
            readiness,
            _dir: dir,
        }
    }

    async fn start() -> Running {
        start_with(None).await
    }

    /// (status code, head, body) of one request without a body on TCP.
    async fn tcp(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
        exchange(TcpStream::connect(addr).await.unwrap(), method, path).await
    }

    /// The same on the admin socket.
    async fn unix(path: &Path, method: &str, uri: &str) -> (u16, String, String) {
        exchange(UnixStream::connect(path).await.unwrap(), method, uri).await
    }

    async fn exchange(
        mut stream: impl AsyncRead + AsyncWrite + Unpin,
        method: &str,
        path: &str,
    ) -> (u16, String, String) {
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
        let Running {
            server,
            readiness,
            _dir,
            ..
        } = start().await;
        let addr = server.local_addr();
        assert_eq!(tcp(addr, "GET", "/readyz").await.0, 200);
        let kube = readiness.register("kubernetes");
        let (code, _, body) = tcp(addr, "GET", "/readyz").await;
        assert_eq!(code, 503);
        assert!(
            body.contains("[-]kubernetes failed: not reported yet"),
            "{body}"
        );
        kube.set_ready();
        let (code, _, body) = tcp(addr, "GET", "/readyz").await;
        assert_eq!(code, 200);
        assert!(body.contains("[+]kubernetes ok"), "{body}");
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn livez_fails_naming_a_loop_that_stopped_making_progress() {
        let dir = tempfile::tempdir().unwrap();
        let (state, _) = state(None);
        let agent = Heartbeat::new();
        state.liveness.register("agent", agent.clone());
        let server = AdminServer::start(
            AdminListen {
                tcp: "127.0.0.1:0".parse().unwrap(),
                socket: dir.path().join("admin.sock"),
            },
            state,
        )
        .await
        .unwrap();
        let addr = server.local_addr();
        agent.beat();
        assert_eq!(tcp(addr, "GET", "/livez").await.0, 200);
        // The loop stops beating: past the bound (300 ms here) it is stuck.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (code, _, body) = tcp(addr, "GET", "/livez").await;
        assert_eq!(code, 503, "{body}");
        assert!(
            body.starts_with("[-]agent failed: no progress for "),
            "{body}"
        );
        agent.beat();
        assert_eq!(tcp(addr, "GET", "/livez").await.0, 200);
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn requests_are_counted_by_listener_known_path_and_code() {
        let Running { server, _dir, .. } = start().await;
        let addr = server.local_addr();
        assert_eq!(tcp(addr, "GET", "/livez").await.0, 200);
        assert_eq!(tcp(addr, "GET", "/no-such-page").await.0, 404);
        assert_eq!(unix(server.socket_path(), "GET", "/status").await.0, 200);
        let (code, head, body) = tcp(addr, "GET", "/metrics").await;
        assert_eq!(code, 200);
        assert!(
            head.contains("application/openmetrics-text; version=1.0.0"),
            "{head}"
        );
        for line in [
            "herald_admin_requests_total{listener=\"tcp\",path=\"/livez\",code=\"200\"} 1",
            "herald_admin_requests_total{listener=\"tcp\",path=\"other\",code=\"404\"} 1",
            "herald_admin_requests_total{listener=\"socket\",path=\"/status\",code=\"200\"} 1",
        ] {
            assert!(body.contains(line), "{line} missing:\n{body}");
        }
        server.shutdown().await.unwrap();
    }

    /// The attacker's view: any process on the node (hostNetwork) or, with
    /// `admin_listen: 0.0.0.0`, any pod, reaches the TCP port. Nothing there
    /// changes routing or reads the report, whatever the method.
    #[tokio::test]
    async fn the_tcp_listener_serves_probes_and_metrics_only() {
        let (commands, mut agent) = mpsc::unbounded_channel();
        let Running { server, _dir, .. } = start_with(Some(commands)).await;
        let addr = server.local_addr();
        for path in ["/livez", "/readyz", "/metrics"] {
            assert_eq!(tcp(addr, "GET", path).await.0, 200, "GET {path}");
        }
        for (method, path) in [
            ("POST", "/drain"),
            ("DELETE", "/drain"),
            ("GET", "/drain"),
            ("GET", "/status"),
            ("POST", "/status"),
            ("POST", "/drain/"),
            ("POST", "//drain"),
            ("POST", "/drain?x=1"),
            ("POST", "/livez/../drain"),
        ] {
            let (code, _, body) = tcp(addr, method, path).await;
            assert_eq!(code, 404, "{method} {path}: {body}");
        }
        assert!(
            agent.try_recv().is_err(),
            "a TCP request reached the agent's command channel"
        );
        // The same on the socket reaches the agent.
        let socket = server.socket_path().to_path_buf();
        let request = tokio::spawn(async move { unix(&socket, "POST", "/drain").await });
        match tokio::time::timeout(Duration::from_secs(5), agent.recv()).await {
            Ok(Some(AdminCommand::Drain(reply))) => {
                let _ = reply.send(None);
            }
            other => panic!("the socket's POST /drain did not reach the agent: {other:?}"),
        }
        assert_eq!(request.await.unwrap().0, 202);
        server.shutdown().await.unwrap();
    }

    #[cfg(feature = "agent")]
    #[test]
    fn only_the_socket_router_has_status_and_drain() {
        use tower::ServiceExt as _;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (state, _) = state(None);
            for (method, path, on_tcp, on_socket) in [
                ("GET", "/livez", 200, 200),
                ("GET", "/metrics", 200, 200),
                ("GET", "/status", 404, 200),
                ("POST", "/drain", 404, 503),
                ("DELETE", "/drain", 404, 503),
                ("PUT", "/drain", 404, 405),
            ] {
                for (router, expected) in [
                    (tcp_router(state.clone()), on_tcp),
                    (socket_router(state.clone()), on_socket),
                ] {
                    let request = axum::http::Request::builder()
                        .method(method)
                        .uri(path)
                        .body(axum::body::Body::empty())
                        .unwrap();
                    let response = router.oneshot(request).await.unwrap();
                    assert_eq!(response.status().as_u16(), expected, "{method} {path}");
                }
            }
        });
    }

    #[tokio::test]
    async fn post_drain_asks_the_agent_and_answers_with_the_drain_status() {
        let (commands, mut agent) = mpsc::unbounded_channel();
        let Running { server, _dir, .. } = start_with(Some(commands)).await;
        tokio::spawn(async move {
            while let Some(command) = agent.recv().await {
                match command {
                    AdminCommand::Drain(reply) => {
                        let _ = reply.send(Some(DrainStatus {
                            phase: "graceful_shutdown".to_string(),
                            trigger: "admin_request".to_string(),
                            seconds_left: Some(15),
                        }));
                    }
                    AdminCommand::CancelDrain(reply) => {
                        let _ = reply.send(Err("not draining".to_string()));
                    }
                }
            }
        });
        let socket = server.socket_path();
        let (code, _, body) = unix(socket, "POST", "/drain").await;
        assert_eq!(code, 202, "{body}");
        assert!(body.contains("\"phase\":\"graceful_shutdown\""), "{body}");
        // GET is not a drain.
        assert_eq!(unix(socket, "GET", "/drain").await.0, 405);
        // A refused cancel says why.
        let (code, _, body) = unix(socket, "DELETE", "/drain").await;
        assert_eq!((code, body.as_str()), (409, "not draining\n"));
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn post_drain_without_an_agent_is_unavailable() {
        let Running { server, _dir, .. } = start().await;
        let (code, _, body) = unix(server.socket_path(), "POST", "/drain").await;
        assert_eq!(code, 503);
        assert_eq!(body, "no agent to drain\n");
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_removes_the_socket_file() {
        let Running { server, _dir, .. } = start().await;
        let path = server.socket_path().to_path_buf();
        assert!(path.exists());
        server.shutdown().await.unwrap();
        assert!(!path.exists());
    }
}
