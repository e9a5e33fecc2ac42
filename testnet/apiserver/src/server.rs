//! The HTTP side: the accept loop (which can go off the network and come back on the same
//! address), per-connection tasks (which can be cut), fault application, the request log, and
//! routing of kube-apiserver URLs to discovery, OpenAPI and the store.
//!
//! Routes: `/version`, `/healthz`, `/api`, `/apis`, `/apis/{g}`, `/api/v1[/...]`,
//! `/apis/{g}/{v}[/...]` (collections, objects, `/status`, `?watch=true` and the legacy
//! `/watch/` prefix), `/openapi/v3[/...]`, and the stand-in's own control endpoints under
//! `/_standin/` (never faulted, never logged).
//!
//! This module owns HTTP plumbing; behaviour lives in the store, watch and fault modules.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::discovery;
use crate::error::ApiError;
use crate::faults::{Faults, RequestRecord};
use crate::openapi;
use crate::resources::{self, RESOURCES, ResourceId};
use crate::selectors::{FieldSelector, LabelSelector, Selectors};
use crate::store::{ListQuery, ObjectKey, Store, WatchFrom};
use crate::watch::{self, WatchRequest};
use crate::write::{Part, PatchKind};

/// Largest request body accepted.
const MAX_BODY: usize = 16 << 20;

/// What every request handler shares.
pub(crate) struct Shared {
    pub store: Arc<Store>,
    pub faults: Faults,
    pub addr: SocketAddr,
    pub bookmark_interval: Duration,
    pub default_watch_timeout: Duration,
    pub namespace_finalize_delay: Duration,
}

/// Accepts connections until `shutdown` turns true; closes the listener while the server is
/// "down" and binds the same address again when it comes up.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut down = shared.faults.state.down.subscribe();
    let mut listener = Some(listener);
    loop {
        let Some(active) = &listener else {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                _ = down.wait_for(|d| !d) => {}
            }
            listener = rebind(shared.addr).await;
            continue;
        };
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = down.wait_for(|d| *d) => {
                listener = None;
                shared.faults.cut_connections();
            }
            accepted = active.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(connection(stream, shared.clone()));
                }
            }
        }
    }
}

/// Binds `addr` again after an outage, retrying while the kernel still holds it.
async fn rebind(addr: SocketAddr) -> Option<TcpListener> {
    for _ in 0..200 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return Some(l);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

async fn connection(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let mut cut = shared.faults.state.cut.subscribe();
    let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = cut.changed() => {}
    }
}

fn json_response(status: u16, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut resp = json_response(e.code, &e.to_status());
    if e.code == 429 || e.code == 503 {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

fn respond(result: Result<(u16, Value), ApiError>) -> Response<Body> {
    match result {
        Ok((status, body)) => json_response(status, &body),
        Err(e) => error_response(&e),
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    if path.starts_with("/_standin/") {
        return Ok(control(&shared, req, &path).await);
    }
    shared.faults.wait_unstalled().await;
    if let Some(delay) = shared.faults.delay() {
        tokio::time::sleep(delay).await;
    }
    let response = match shared.faults.take_failure(&path) {
        Some(code) => error_response(&ApiError::injected(code)),
        None => route(&shared, req, &path, &query).await,
    };
    shared.faults.record(RequestRecord {
        method: method.to_string(),
        path,
        query,
        status: response.status().as_u16(),
    });
    Ok(response)
}

/// `/_standin/faults` (POST a command), `/_standin/requests` (GET the log),
/// `/_standin/compact` (POST), `/_standin/objects` (POST a fixture object).
async fn control(shared: &Shared, req: Request<Incoming>, path: &str) -> Response<Body> {
    let method = req.method().clone();
    let body = match axum::body::to_bytes(Body::new(req.into_body()), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return error_response(&ApiError::bad_request(e.to_string())),
    };
    let parsed = || {
        serde_json::from_slice::<Value>(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
    };
    let result = match (method, path) {
        (Method::POST, "/_standin/faults") => parsed().and_then(|cmd| {
            shared
                .faults
                .apply_command(&cmd)
                .map(|()| (200, json!({"ok": true})))
                .map_err(ApiError::bad_request)
        }),
        (Method::GET, "/_standin/requests") => Ok((200, json!(shared.faults.requests()))),
        (Method::POST, "/_standin/compact") => {
            shared.store.compact();
            Ok((
                200,
                json!({"resourceVersion": shared.store.current_rv().to_string()}),
            ))
        }
        (Method::POST, "/_standin/objects") => {
            parsed().and_then(|o| shared.store.put(o)).map(|o| (200, o))
        }
        _ => Err(ApiError::path_not_found(path)),
    };
    respond(result)
}

/// Percent-decodes a query component (`+` is a space).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters; empty pairs (`?&watch=true`) are skipped.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: &str) -> Self {
        Self(
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> Option<bool> {
        self.get(key).map(|v| v == "true" || v == "1")
    }

    fn selectors(&self, resource: ResourceId) -> Result<Selectors, ApiError> {
        Ok(Selectors {
            labels: LabelSelector::parse(self.get("labelSelector").unwrap_or_default())?,
            fields: FieldSelector::parse(
                self.get("fieldSelector").unwrap_or_default(),
                &RESOURCES[resource],
            )?,
        })
    }
}

async fn route(shared: &Shared, req: Request<Incoming>, path: &str, query: &str) -> Response<Body> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let accept = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let get = req.method() == Method::GET;
    match segments.as_slice() {
        ["version"] if get => json_response(200, &discovery::version()),
        ["healthz" | "livez" | "readyz"] if get => Response::new(Body::from("ok")),
        ["api"] | ["apis"] if get => {
            let core = segments[0] == "api";
            match discovery::wants_aggregated(&accept) {
                Some(v) => {
                    let mut resp = json_response(200, &discovery::aggregated(core, v));
                    if let Ok(ct) = HeaderValue::from_str(&discovery::aggregated_content_type(v)) {
                        resp.headers_mut().insert(CONTENT_TYPE, ct);
                    }
                    resp
                }
                None if core => {
                    json_response(200, &discovery::core_versions(&shared.addr.to_string()))
                }
                None => json_response(200, &discovery::group_list()),
            }
        }
        ["openapi", "v3"] if get => json_response(200, &openapi::index()),
        ["openapi", "v3", rest @ ..] if get => {
            match openapi::group_version_document(&rest.join("/")) {
                Some(doc) => json_response(200, &doc),
                None => error_response(&ApiError::path_not_found(path)),
            }
        }
        ["apis", group] if get => match discovery::group(group) {
            Some(doc) => json_response(200, &doc),
            None => error_response(&ApiError::path_not_found(path)),
        },
        ["api", "v1", rest @ ..] => resource_request(shared, req, "", "v1", rest, query).await,
        ["apis", group, version, rest @ ..] => {
            resource_request(shared, req, group, version, rest, query).await
        }
        _ => error_response(&ApiError::path_not_found(path)),
    }
}

/// What a resource URL names.
struct Target {
    resource: ResourceId,
    namespace: Option<String>,
    name: Option<String>,
    part: Part,
    watch_path: bool,
}

fn parse_target(group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let (watch_path, rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        _ => (false, rest),
    };
    let namespaced_target = match rest {
        ["namespaces", ns, plural, tail @ ..] => resources::find(group, version, plural)
            .filter(|id| RESOURCES[*id].namespaced)
            .map(|id| (id, Some((*ns).to_string()), tail)),
        _ => None,
    };
    let (resource, namespace, tail) = match namespaced_target {
        Some(t) => t,
        None => {
            let [plural, tail @ ..] = rest else {
                return None;
            };
            (resources::find(group, version, plural)?, None, tail)
        }
    };
    let (name, part) = match tail {
        [] => (None, Part::Main),
        [name] => (Some((*name).to_string()), Part::Main),
        [name, "status"] if RESOURCES[resource].has_status => {
            (Some((*name).to_string()), Part::Status)
        }
        _ => return None,
    };
    if name.is_some() && RESOURCES[resource].namespaced && namespace.is_none() {
        return None;
    }
    Some(Target {
        resource,
        namespace,
        name,
        part,
        watch_path,
    })
}

async fn resource_request(
    shared: &Shared,
    req: Request<Incoming>,
    group: &str,
    version: &str,
    rest: &[&str],
    query: &str,
) -> Response<Body> {
    if rest.is_empty() {
        return match (
            req.method() == Method::GET,
            discovery::resource_list(group, version),
        ) {
            (true, Some(doc)) => json_response(200, &doc),
            _ => error_response(&ApiError::path_not_found(req.uri().path())),
        };
    }
    let Some(target) = parse_target(group, version, rest) else {
        return error_response(&ApiError::path_not_found(req.uri().path()));
    };
    let q = Query::parse(query);
    let method = req.method().clone();
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if content_type.starts_with("application/vnd.kubernetes.protobuf") {
        // kubectl's generator commands (`kubectl create namespace|configmap ...`) send
        // protobuf; the stand-in speaks JSON only.
        return error_response(&ApiError::new(
            415,
            "UnsupportedMediaType",
            "the stand-in accepts JSON bodies only (use kubectl create -f with a manifest)",
        ));
    }
    let body = match axum::body::to_bytes(Body::new(req.into_body()), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return error_response(&ApiError::bad_request(e.to_string())),
    };
    let json_body = || -> Result<Value, ApiError> {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
    };
    let store = &shared.store;
    let ns = target.namespace.as_deref();
    let Some(name) = target.name.clone() else {
        let watching = target.watch_path || q.flag("watch") == Some(true);
        return match method {
            Method::GET if watching => start_watch(shared, &target, &q),
            Method::GET => respond(list(store, &target, &q).map(|l| (200, l))),
            Method::POST if RESOURCES[target.resource].namespaced && ns.is_none() => {
                error_response(&ApiError::method_not_allowed())
            }
            Method::POST => respond(
                json_body()
                    .and_then(|o| store.create(target.resource, ns, o))
                    .map(|o| (201, o)),
            ),
            Method::DELETE => respond(
                q.selectors(target.resource)
                    .and_then(|s| store.delete_collection(target.resource, ns, &s))
                    .map(|l| (200, l)),
            ),
            _ => error_response(&ApiError::method_not_allowed()),
        };
    };
    let key = ObjectKey {
        resource: target.resource,
        namespace: target.namespace.clone().unwrap_or_default(),
        name,
    };
    let result = match method {
        Method::GET if target.watch_path => {
            return error_response(&ApiError::method_not_allowed());
        }
        Method::GET => store.get(&key).map(|o| (200, o)),
        Method::PUT => json_body()
            .and_then(|o| store.update(&key, target.part, o))
            .map(|o| (200, o)),
        Method::PATCH => match PatchKind::from_content_type(&content_type) {
            Some(kind) => store
                .patch(&key, target.part, kind, &body, q.get("fieldManager"))
                .map(|(o, created)| (if created { 201 } else { 200 }, o)),
            None => Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format: {content_type}"),
            )),
        },
        Method::DELETE if target.part == Part::Main => {
            let options = if body.is_empty() {
                Ok(None)
            } else {
                json_body().map(Some)
            };
            let deleted = options.and_then(|o| store.delete(&key, o.as_ref()));
            if deleted.is_ok() && key.resource == crate::write::namespaces_id() {
                let store = shared.store.clone();
                let delay = shared.namespace_finalize_delay;
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    store.finalize_namespace(&key.name);
                });
            }
            deleted.map(|o| (200, o))
        }
        _ => Err(ApiError::method_not_allowed()),
    };
    respond(result)
}

fn list(store: &Store, target: &Target, q: &Query) -> Result<Value, ApiError> {
    let limit = match q.get("limit") {
        None | Some("") => None,
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        ),
    };
    let query = ListQuery {
        selectors: q.selectors(target.resource)?,
        limit,
        continue_token: q
            .get("continue")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        resource_version: q.get("resourceVersion").map(str::to_string),
        resource_version_match: q.get("resourceVersionMatch").map(str::to_string),
    };
    store.list(target.resource, target.namespace.as_deref(), &query)
}

fn start_watch(shared: &Shared, target: &Target, q: &Query) -> Response<Body> {
    let selectors = match q.selectors(target.resource) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let send_initial_events = q.flag("sendInitialEvents");
    let rv = q
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0");
    let from = match (send_initial_events, rv) {
        (Some(true), _) | (None, None) => WatchFrom::CurrentState,
        (_, Some(v)) => match v.parse() {
            Ok(rv) => WatchFrom::After(rv),
            Err(_) => {
                return error_response(&ApiError::bad_request(format!(
                    "invalid resource version {v:?}"
                )));
            }
        },
        (Some(false), None) => WatchFrom::After(shared.store.current_rv()),
    };
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(shared.default_watch_timeout);
    let request = WatchRequest {
        resource: target.resource,
        namespace: target.namespace.clone(),
        selectors,
        from,
        send_initial_events: send_initial_events == Some(true),
        allow_bookmarks: q.flag("allowWatchBookmarks") == Some(true),
        timeout,
        bookmark_interval: shared.bookmark_interval,
    };
    let body = watch::start(shared.store.clone(), shared.faults.clone(), request);
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_starting_with_ampersand_skip_empty_pairs() {
        let q = Query::parse("&watch=true&&labelSelector=app%3Dweb%2Cenv+in+%28a%29&limit=");
        assert_eq!(q.flag("watch"), Some(true));
        assert_eq!(q.get("labelSelector"), Some("app=web,env in (a)"));
        assert_eq!(q.get("limit"), Some(""));
        assert_eq!(q.get("nope"), None);
    }

    #[test]
    fn percent_decoding_never_panics_on_truncated_escapes() {
        for s in ["%", "%4", "%zz", "a%e9%", "%C3%A9", "é%41"] {
            let _ = decode(s);
        }
        assert_eq!(decode("%C3%A9"), "é");
        assert_eq!(decode("%41%"), "A%");
    }

    #[test]
    fn resource_urls_parse_into_targets() {
        let t = parse_target(
            "",
            "v1",
            &["namespaces", "default", "services", "web", "status"],
        )
        .unwrap();
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("web"));
        assert_eq!(t.part, Part::Status);
        let t = parse_target("", "v1", &["namespaces", "default"]).unwrap();
        assert_eq!(RESOURCES[t.resource].plural, "namespaces");
        assert_eq!(t.name.as_deref(), Some("default"));
        let t = parse_target("", "v1", &["watch", "services"]).unwrap();
        assert!(t.watch_path && t.namespace.is_none() && t.name.is_none());
        assert!(parse_target("", "v1", &["services", "web"]).is_none());
        assert!(
            parse_target(
                "",
                "v1",
                &["namespaces", "default", "configmaps", "x", "status"]
            )
            .is_none()
        );
        assert!(parse_target("", "v1", &["pods"]).is_none());
    }
}
