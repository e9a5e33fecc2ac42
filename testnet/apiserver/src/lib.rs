//! A stand-in Kubernetes API server for herald's tests and demos: the parts of kube-apiserver
//! that herald (through kube 5) and kubectl 1.32 use, with the real server's semantics, and
//! fault injection. No real kube-apiserver can run on the test machines;
//! `docs/apiserver.md` says why and lists what is and is not faithful.
//!
//! ```text
//!  tests ──► StandIn (own tokio runtime, own thread)
//!              │  faults() ──────────────┐
//!              ▼                         ▼
//!   TCP ──► server (accept loop, connections, routing, request log, faults)
//!              │            │                 │
//!          discovery     openapi      store ◄──► write (create/update/patch/delete)
//!                                       │ broadcast of changes
//!                                       ▼
//!                                     watch streams (history replay, bookmarks, 410)
//! ```
//!
//! The crate owns only the stand-in; herald's code never depends on it.

pub mod discovery;
pub mod error;
pub mod faults;
pub mod openapi;
pub mod patch;
pub mod resources;
pub mod selectors;
mod server;
pub mod store;
pub mod watch;
pub mod write;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

pub use error::ApiError;
pub use faults::{Faults, RequestRecord};
pub use store::Store;
pub use write::{Part, PatchKind};

/// Why the stand-in could not start or write its kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum StandInError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the server runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot write kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no served resource has apiVersion {api_version} and kind {kind}")]
    UnknownKind { api_version: String, kind: String },
}

/// How to run the stand-in.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// How often watches with `allowWatchBookmarks=true` get a bookmark.
    pub bookmark_interval: Duration,
    /// How many changes the history keeps; watches and continue tokens from before that get 410.
    pub history_limit: usize,
    /// How many changes a slow watch may fall behind before it is ended with a 410.
    pub watch_buffer: usize,
    /// Watch length when the client sends no `timeoutSeconds`.
    pub default_watch_timeout: Duration,
    /// How long a deleted Namespace stays Terminating before its contents and itself are
    /// deleted (the namespace controller's work).
    pub namespace_finalize_delay: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            bookmark_interval: Duration::from_secs(60),
            history_limit: 50_000,
            watch_buffer: 65_536,
            default_watch_timeout: Duration::from_secs(1800),
            namespace_finalize_delay: Duration::from_millis(500),
        }
    }
}

/// A running stand-in. It runs on its own thread and runtime, so it serves both async tests and
/// blocking ones (kubectl); it stops when dropped.
pub struct StandIn {
    addr: SocketAddr,
    store: Arc<Store>,
    faults: Faults,
    shutdown: tokio::sync::watch::Sender<bool>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl StandIn {
    /// Binds and starts serving, with the `default` and `kube-system` namespaces in place.
    pub fn start(options: Options) -> Result<Self, StandInError> {
        let bind_error = |source| StandInError::Bind {
            addr: options.listen,
            source,
        };
        let std_listener = std::net::TcpListener::bind(options.listen).map_err(bind_error)?;
        std_listener.set_nonblocking(true).map_err(bind_error)?;
        let addr = std_listener.local_addr().map_err(bind_error)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("herald-apiserver")
            .enable_all()
            .build()
            .map_err(StandInError::Runtime)?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(std_listener).map_err(bind_error)?
        };
        let store = Arc::new(Store::new(options.history_limit, options.watch_buffer));
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            store
                .put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
                .map_err(|e| StandInError::Runtime(std::io::Error::other(e)))?;
        }
        let faults = Faults::new();
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let shared = Arc::new(server::Shared {
            store: store.clone(),
            faults: faults.clone(),
            addr,
            bookmark_interval: options.bookmark_interval,
            default_watch_timeout: options.default_watch_timeout,
            namespace_finalize_delay: options.namespace_finalize_delay,
        });
        runtime.spawn(server::serve(listener, shared, shutdown_rx));
        Ok(Self {
            addr,
            store,
            faults,
            shutdown,
            runtime: Some(runtime),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Writes `dir/kubeconfig` pointing at this server (context `standin`, namespace
    /// `default`) for kubectl and kube clients; returns its path.
    pub fn kubeconfig(&self, dir: &Path) -> Result<PathBuf, StandInError> {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {}\n\
             contexts:\n- name: standin\n  context:\n    cluster: standin\n    user: standin\n    \
             namespace: default\ncurrent-context: standin\nusers:\n- name: standin\n  user: {{}}\n",
            self.url()
        );
        std::fs::write(&path, text).map_err(|source| StandInError::Kubeconfig {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// The fault-injection handle.
    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }

    /// The requests answered so far (method, path, query, status), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.faults.requests()
    }

    /// The store, for direct inspection.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.store.current_rv()
    }

    /// Drops the change history: watches and continue tokens from any earlier resourceVersion
    /// get 410 `Expired`.
    pub fn compact(&self) {
        self.store.compact();
    }

    /// Creates or replaces an object (status included, in one change) from its own
    /// `apiVersion`, `kind` and metadata; a missing namespace is created.
    pub fn apply_json(&self, object: Value) -> Result<Value, ApiError> {
        self.store.put(object)
    }

    fn key(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<store::ObjectKey, StandInError> {
        let resource =
            resources::find_kind(api_version, kind).ok_or_else(|| StandInError::UnknownKind {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
            })?;
        Ok(store::ObjectKey {
            resource,
            namespace: namespace.unwrap_or_default().to_string(),
            name: name.to_string(),
        })
    }

    /// The object, if it exists (`namespace` is `None` for cluster-scoped kinds).
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let key = self.key(api_version, kind, namespace, name).ok()?;
        self.store.get(&key).ok()
    }

    /// Every object of a kind, in one namespace or all.
    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        match resources::find_kind(api_version, kind) {
            Some(r) => self.store.objects(r, namespace),
            None => Vec::new(),
        }
    }

    /// Deletes an object, as `DELETE` would; a Namespace is finalized at once (its contents
    /// deleted) instead of after the namespace controller's delay.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = self
            .key(api_version, kind, namespace, name)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let deleted = self.store.delete(&key, None)?;
        if kind == "Namespace" {
            self.store.finalize_namespace(name);
        }
        Ok(deleted)
    }

    /// JSON-merge-patches an object or its status, as `PATCH` would.
    pub fn merge_patch(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        part: Part,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        let key = self
            .key(api_version, kind, namespace, name)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let body = serde_json::to_vec(patch).unwrap_or_default();
        self.store
            .patch(&key, part, PatchKind::Merge, &body, None)
            .map(|(o, _)| o)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        self.faults.cut_connections();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
