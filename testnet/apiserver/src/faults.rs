//! Fault injection and the request log.
//!
//! A [`Faults`] handle (cheap to clone) changes how the running server behaves: fail the next N
//! requests with a status, delay or stall requests, end or expire every open watch, stop
//! bookmarks, pause event delivery, cut every TCP connection, or take the whole server off the
//! network for a while. The same faults are reachable over HTTP for scripts through
//! `POST /_standin/faults` (see [`Faults::apply_command`]).
//!
//! This module owns fault state only; the server and the watch streams consult it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

/// One request the server answered (or started answering, for watches).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    pub status: u16,
}

impl RequestRecord {
    /// Whether this was a watch request.
    pub fn is_watch(&self) -> bool {
        self.query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1")
            || self.path.contains("/watch/")
    }
}

/// Sent to every open watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchControl {
    /// End the stream cleanly, as at `timeoutSeconds`.
    End,
    /// Send an in-stream `ERROR` with a 410 `Expired` Status, then end.
    Expire,
}

#[derive(Debug)]
struct FailRule {
    remaining: usize,
    status: u16,
    path_prefix: Option<String>,
}

/// Shared fault state.
pub(crate) struct FaultState {
    rules: Mutex<Vec<FailRule>>,
    delay: Mutex<Option<Duration>>,
    stalled: watch::Sender<bool>,
    pub(crate) paused: watch::Sender<bool>,
    bookmarks_stopped: AtomicBool,
    pub(crate) watch_control: broadcast::Sender<WatchControl>,
    /// Bumped to cut every open connection; each connection task watches it.
    pub(crate) cut: watch::Sender<u64>,
    pub(crate) down: watch::Sender<bool>,
    log: Mutex<Vec<RequestRecord>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Handle to inject faults into a running stand-in.
#[derive(Clone)]
pub struct Faults {
    pub(crate) state: Arc<FaultState>,
}

impl Default for Faults {
    fn default() -> Self {
        Self::new()
    }
}

impl Faults {
    pub(crate) fn new() -> Self {
        Self {
            state: Arc::new(FaultState {
                rules: Mutex::new(Vec::new()),
                delay: Mutex::new(None),
                stalled: watch::channel(false).0,
                paused: watch::channel(false).0,
                bookmarks_stopped: AtomicBool::new(false),
                watch_control: broadcast::channel(16).0,
                cut: watch::channel(0).0,
                down: watch::channel(false).0,
                log: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Fail the next `count` requests with `status` (500, 429, 409, 503...).
    pub fn fail_next(&self, count: usize, status: u16) {
        self.fail_next_matching(count, status, None);
    }

    /// Fail the next `count` requests whose path starts with `path_prefix`.
    pub fn fail_next_matching(&self, count: usize, status: u16, path_prefix: Option<&str>) {
        locked(&self.state.rules).push(FailRule {
            remaining: count,
            status,
            path_prefix: path_prefix.map(str::to_string),
        });
    }

    /// Delay every response by `delay` (None: no delay).
    pub fn delay_responses(&self, delay: Option<Duration>) {
        *locked(&self.state.delay) = delay;
    }

    /// Hold every new request until [`Faults::release`].
    pub fn stall(&self) {
        self.state.stalled.send_replace(true);
    }

    /// Let stalled requests proceed.
    pub fn release(&self) {
        self.state.stalled.send_replace(false);
    }

    /// Every open watch gets an in-stream 410 `Expired` and ends; clients must relist.
    pub fn expire_watches(&self) {
        let _ = self.state.watch_control.send(WatchControl::Expire);
    }

    /// Every open watch ends cleanly, as at its `timeoutSeconds`.
    pub fn end_watches(&self) {
        let _ = self.state.watch_control.send(WatchControl::End);
    }

    /// Abort every open TCP connection (no HTTP response, no chunk terminator).
    pub fn cut_connections(&self) {
        self.state.cut.send_modify(|generation| *generation += 1);
    }

    /// Stop sending periodic bookmarks.
    pub fn stop_bookmarks(&self) {
        self.state.bookmarks_stopped.store(true, Ordering::SeqCst);
    }

    pub fn resume_bookmarks(&self) {
        self.state.bookmarks_stopped.store(false, Ordering::SeqCst);
    }

    /// Hold back watch events (writes still succeed); they are delivered on resume.
    pub fn pause_events(&self) {
        self.state.paused.send_replace(true);
    }

    pub fn resume_events(&self) {
        self.state.paused.send_replace(false);
    }

    /// Take the server off the network: the listening socket closes (connection refused) and
    /// every open connection is cut, until [`Faults::come_up`].
    pub fn go_down(&self) {
        self.state.down.send_replace(true);
        self.cut_connections();
    }

    /// Listen again on the same address.
    pub fn come_up(&self) {
        self.state.down.send_replace(false);
    }

    /// [`Faults::go_down`] now and [`Faults::come_up`] after `outage` ("API down for 30 s").
    pub fn down_for(&self, outage: Duration) {
        self.go_down();
        let faults = self.clone();
        std::thread::spawn(move || {
            std::thread::sleep(outage);
            faults.come_up();
        });
    }

    /// Whether the server is off the network now.
    pub fn is_down(&self) -> bool {
        *self.state.down.borrow()
    }

    /// Undo every fault (open connections stay as they are).
    pub fn clear(&self) {
        locked(&self.state.rules).clear();
        self.delay_responses(None);
        self.release();
        self.resume_bookmarks();
        self.resume_events();
        self.come_up();
    }

    /// Runs one fault command from the control endpoint. Commands (JSON):
    /// `{"fault":"fail","count":3,"status":500,"pathPrefix":"/api/v1/services"}`,
    /// `{"fault":"delay","millis":200}` (0 clears), `{"fault":"stall"}`, `{"fault":"release"}`,
    /// `{"fault":"expireWatches"}`, `{"fault":"endWatches"}`, `{"fault":"cutConnections"}`,
    /// `{"fault":"stopBookmarks"}`, `{"fault":"resumeBookmarks"}`, `{"fault":"pauseEvents"}`,
    /// `{"fault":"resumeEvents"}`, `{"fault":"down","seconds":30}`, `{"fault":"clear"}`.
    pub fn apply_command(&self, command: &Value) -> Result<(), String> {
        let number = |field: &str| command[field].as_u64();
        match command["fault"].as_str().unwrap_or_default() {
            "fail" => {
                let count = number("count").unwrap_or(1) as usize;
                let status = number("status")
                    .and_then(|s| u16::try_from(s).ok())
                    .filter(|s| (400..600).contains(s))
                    .ok_or("fail needs a status between 400 and 599")?;
                self.fail_next_matching(count, status, command["pathPrefix"].as_str());
            }
            "delay" => {
                let millis = number("millis").ok_or("delay needs millis")?;
                self.delay_responses((millis > 0).then(|| Duration::from_millis(millis)));
            }
            "stall" => self.stall(),
            "release" => self.release(),
            "expireWatches" => self.expire_watches(),
            "endWatches" => self.end_watches(),
            "cutConnections" => self.cut_connections(),
            "stopBookmarks" => self.stop_bookmarks(),
            "resumeBookmarks" => self.resume_bookmarks(),
            "pauseEvents" => self.pause_events(),
            "resumeEvents" => self.resume_events(),
            "down" => {
                let seconds = number("seconds").ok_or("down needs seconds")?;
                self.down_for(Duration::from_secs(seconds));
            }
            "clear" => self.clear(),
            other => return Err(format!("unknown fault {other:?}")),
        }
        Ok(())
    }

    /// The requests answered so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        locked(&self.state.log).clone()
    }

    pub fn clear_requests(&self) {
        locked(&self.state.log).clear();
    }

    pub(crate) fn record(&self, record: RequestRecord) {
        locked(&self.state.log).push(record);
    }

    /// The status the next request on `path` must fail with, if a rule applies (consumes it).
    pub(crate) fn take_failure(&self, path: &str) -> Option<u16> {
        let mut rules = locked(&self.state.rules);
        let rule = rules.iter_mut().find(|r| {
            r.remaining > 0 && r.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
        })?;
        rule.remaining -= 1;
        let status = rule.status;
        rules.retain(|r| r.remaining > 0);
        Some(status)
    }

    pub(crate) fn delay(&self) -> Option<Duration> {
        *locked(&self.state.delay)
    }

    /// Waits while requests are stalled.
    pub(crate) async fn wait_unstalled(&self) {
        let mut rx = self.state.stalled.subscribe();
        let _ = rx.wait_for(|stalled| !stalled).await;
    }

    pub(crate) fn bookmarks_stopped(&self) -> bool {
        self.state.bookmarks_stopped.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn failures_are_consumed_in_order_and_respect_the_path_prefix() {
        let f = Faults::new();
        f.fail_next_matching(1, 429, Some("/apis/discovery.k8s.io"));
        f.fail_next(2, 500);
        assert_eq!(
            f.take_failure("/apis/discovery.k8s.io/v1/endpointslices"),
            Some(429)
        );
        assert_eq!(f.take_failure("/api/v1/services"), Some(500));
        assert_eq!(
            f.take_failure("/apis/discovery.k8s.io/v1/endpointslices"),
            Some(500)
        );
        assert_eq!(f.take_failure("/api/v1/services"), None);
    }

    #[test]
    fn control_commands_set_faults_and_reject_nonsense() {
        let f = Faults::new();
        f.apply_command(&json!({"fault": "fail", "count": 1, "status": 503}))
            .unwrap();
        assert_eq!(f.take_failure("/x"), Some(503));
        f.apply_command(&json!({"fault": "delay", "millis": 5}))
            .unwrap();
        assert_eq!(f.delay(), Some(Duration::from_millis(5)));
        f.apply_command(&json!({"fault": "stopBookmarks"})).unwrap();
        assert!(f.bookmarks_stopped());
        f.apply_command(&json!({"fault": "clear"})).unwrap();
        assert!(!f.bookmarks_stopped() && f.delay().is_none());
        assert!(
            f.apply_command(&json!({"fault": "fail", "status": 200}))
                .is_err()
        );
        assert!(f.apply_command(&json!({"fault": "explode"})).is_err());
    }

    #[test]
    fn watch_requests_are_recognised_in_the_log() {
        let rec = |path: &str, query: &str| RequestRecord {
            method: "GET".into(),
            path: path.into(),
            query: query.into(),
            status: 200,
        };
        assert!(rec("/api/v1/services", "&watch=true&timeoutSeconds=290").is_watch());
        assert!(rec("/api/v1/watch/services", "").is_watch());
        assert!(!rec("/api/v1/services", "limit=500").is_watch());
    }
}
