//! Traffic through the lab, measured the way operators measure failover:
//! a [`Responder`] per node answers HTTP on the service address with the
//! node's name, and a [`Load`] in the client namespace opens a steady stream
//! of new connections to the service address and records every outcome with
//! a timestamp. The [`TrafficReport`] says how many requests were sent and
//! failed, the longest gap without a success, the failure window, and each
//! node's share.
//!
//! What this module owns: the responder threads (one accept thread per node,
//! one short-lived thread per connection) and the client threads (a
//! scheduler and a fixed pool of workers). All of them are threads of the
//! test process that entered a lab namespace, so they keep serving while
//! herald is frozen or killed, and a responder goes dark exactly when its
//! node's link does. Everything is bounded: request count, total time, and a
//! per-request timeout; dropping a responder or a load stops its threads.
//!
//! ```text
//!  client ns                          router                node ns (each)
//!  Load scheduler --tick every interval--> workers --TCP SYN--> Responder (bound to SERVICE:80,
//!      (bounded count and time)        (connect/read timeout)     ip_nonlocal_bind=1)
//!  Sample { at, latency, outcome: Served(node) | Failed(reason) } <-- "n2\n"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};
use crate::http;
use crate::netns::Namespace;

/// The port the responders listen on.
pub const SERVICE_PORT: u16 = 80;

/// How often an idle responder checks whether it should stop.
const ACCEPT_POLL: Duration = Duration::from_millis(2);

/// How long a responder waits for a request on an accepted connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A tiny HTTP server in a node's namespace, bound to the service address,
/// answering every request with `200` and the node's name. It is a thread of
/// the test process, independent of herald.
#[derive(Debug)]
pub struct Responder {
    node: String,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    /// Sets `net.ipv4.ip_nonlocal_bind=1` (and the IPv6 one) in `ns`, so the
    /// responder can bind `addr` before herald puts the address on the
    /// interface and keeps its socket while herald removes and re-adds it;
    /// then binds and serves until dropped. Answers with `node`.
    pub fn start(ns: &Namespace, addr: SocketAddr, node: &str) -> Result<Responder> {
        ns.sysctl("net.ipv4.ip_nonlocal_bind", "1")?;
        ns.sysctl("net.ipv6.ip_nonlocal_bind", "1")?;
        let listener = ns
            .run_in(move || TcpListener::bind(addr))?
            .map_err(|source| LabError::Io {
                context: "cannot bind the responder",
                path: addr.to_string().into(),
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| LabError::Io {
                context: "cannot make the responder's socket non-blocking",
                path: addr.to_string().into(),
                source,
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let body = format!("{node}\n");
        let thread = {
            let (stop, served) = (Arc::clone(&stop), Arc::clone(&served));
            std::thread::spawn(move || serve(listener, &body, &stop, &served))
        };
        Ok(Responder {
            node: node.to_owned(),
            stop,
            served,
            thread: Some(thread),
        })
    }

    /// The name the responder answers with.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// How many requests it has answered.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The accept loop. Accepted sockets live in the listener's namespace
/// whatever thread handles them, so each connection gets a plain thread.
fn serve(listener: TcpListener, body: &str, stop: &AtomicBool, served: &Arc<AtomicU64>) {
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (response, served) = (response.clone(), Arc::clone(served));
                std::thread::spawn(move || {
                    if answer(stream, response.as_bytes()).is_ok() {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL);
            }
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
}

/// Reads the request head (so closing never resets unread data), writes the
/// response, closes.
fn answer(mut stream: TcpStream, response: &[u8]) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        match stream.read(&mut buf)? {
            0 => break,
            n => request.extend_from_slice(&buf[..n]),
        }
    }
    stream.write_all(response)?;
    stream.shutdown(std::net::Shutdown::Write)
}

/// How the client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSpec {
    /// The service address and port.
    pub target: SocketAddr,
    /// One new connection every `interval`.
    pub interval: Duration,
    /// At most this many requests...
    pub max_requests: usize,
    /// ...and for at most this long.
    pub max_duration: Duration,
    /// Connect timeout, and separately the timeout of the exchange after it.
    pub timeout: Duration,
    /// Worker threads (requests in flight at most).
    pub workers: usize,
}

impl LoadSpec {
    /// 200 new connections a second to `target`, 1 s timeouts, 64 workers,
    /// for at most `max_duration` (and `max_duration / interval` requests).
    pub fn steady(target: SocketAddr, max_duration: Duration) -> LoadSpec {
        let interval = Duration::from_millis(5);
        LoadSpec {
            target,
            interval,
            max_requests: (max_duration.as_micros() / interval.as_micros()) as usize,
            max_duration,
            timeout: Duration::from_secs(1),
            workers: 64,
        }
    }

    /// Exactly `requests` new connections, one every `interval` (1 s
    /// timeouts, 64 workers), bounded in time by twice the schedule.
    pub fn count(target: SocketAddr, requests: usize, interval: Duration) -> LoadSpec {
        LoadSpec {
            target,
            interval,
            max_requests: requests,
            max_duration: interval * requests as u32 * 2,
            timeout: Duration::from_secs(1),
            workers: 64,
        }
    }
}

/// One request's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 200 answer naming the node that served it.
    Served(String),
    /// No usable answer, and why.
    Failed(String),
}

/// One request: when its connection was opened, how long it took, and what came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub at: Instant,
    pub latency: Duration,
    pub outcome: Outcome,
}

impl Sample {
    /// The serving node, if the request succeeded.
    pub fn node(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Served(node) => Some(node),
            Outcome::Failed(_) => None,
        }
    }

    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed(_))
    }
}

/// A running client: a stream of new connections from a namespace.
#[derive(Debug)]
pub struct Load {
    started: Instant,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Load {
    /// Starts sending from `ns` per `spec`, in the background.
    pub fn start(ns: &Namespace, spec: LoadSpec) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let thread = {
            let (stop, samples) = (Arc::clone(&stop), Arc::clone(&samples));
            ns.spawn_thread(move || send(spec, started, &stop, &samples))
        };
        Load {
            started,
            stop,
            samples,
            thread: Some(thread),
        }
    }

    /// When the load started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// A copy of the results so far (unordered while requests are in flight).
    pub fn snapshot(&self) -> TrafficReport {
        TrafficReport::new(self.started, lock(&self.samples).clone())
    }

    /// Stops sending, waits for the requests in flight, and reports.
    pub fn stop(mut self) -> TrafficReport {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    /// Waits until the load ends by its own bounds (count or time), and reports.
    pub fn finish(mut self) -> TrafficReport {
        self.join()
    }

    fn join(&mut self) -> TrafficReport {
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("traffic client could not enter its namespace: {e}"),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        TrafficReport::new(self.started, std::mem::take(&mut *lock(&self.samples)))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The scheduler: one ticket per interval to a pool of workers (threads
/// spawned here, so they are in the client namespace too), until the count,
/// the time or the stop flag ends it; then it waits for the workers.
fn send(spec: LoadSpec, started: Instant, stop: &AtomicBool, samples: &Arc<Mutex<Vec<Sample>>>) {
    let (tickets, queue) = mpsc::channel::<()>();
    let queue = Arc::new(Mutex::new(queue));
    let workers: Vec<JoinHandle<()>> = (0..spec.workers.max(1))
        .map(|_| {
            let (queue, samples) = (Arc::clone(&queue), Arc::clone(samples));
            std::thread::spawn(move || {
                loop {
                    let ticket = lock(&queue).recv();
                    if ticket.is_err() {
                        return;
                    }
                    let sample = one_request(spec.target, spec.timeout);
                    lock(&samples).push(sample);
                }
            })
        })
        .collect();
    for n in 0..spec.max_requests {
        let due = started + spec.interval * n as u32;
        if stop.load(Ordering::Relaxed) || due - started > spec.max_duration {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if tickets.send(()).is_err() {
            break;
        }
    }
    drop(tickets);
    for worker in workers {
        let _ = worker.join();
    }
}

/// `GET /` on a new connection; the answer body is the node's name.
fn one_request(target: SocketAddr, timeout: Duration) -> Sample {
    let at = Instant::now();
    let outcome = match http::request(target, "GET", "/", &[], timeout) {
        Ok(r) if r.status == 200 => Outcome::Served(r.text().trim().to_owned()),
        Ok(r) => Outcome::Failed(format!("HTTP {}", r.status)),
        Err(e) => Outcome::Failed(e.to_string()),
    };
    Sample {
        at,
        latency: at.elapsed(),
        outcome,
    }
}

/// Every request of a load, in the order their connections were opened.
#[derive(Debug, Clone)]
pub struct TrafficReport {
    pub started: Instant,
    pub samples: Vec<Sample>,
}

impl TrafficReport {
    /// Sorts `samples` by the time their connections were opened.
    pub fn new(started: Instant, mut samples: Vec<Sample>) -> TrafficReport {
        samples.sort_by_key(|s| s.at);
        TrafficReport { started, samples }
    }

    /// Requests sent.
    pub fn sent(&self) -> usize {
        self.samples.len()
    }

    /// Requests without a usable answer.
    pub fn failed(&self) -> usize {
        self.samples.iter().filter(|s| s.failed()).count()
    }

    /// Failed requests opened at or after `since`.
    pub fn failed_since(&self, since: Instant) -> usize {
        self.samples
            .iter()
            .filter(|s| s.at >= since && s.failed())
            .count()
    }

    /// Successful requests per node.
    pub fn served_by(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for node in self.samples.iter().filter_map(Sample::node) {
            *counts.entry(node.to_owned()).or_insert(0) += 1;
        }
        counts
    }

    /// Each node's share of all requests sent (0.0 to 1.0).
    pub fn shares(&self) -> BTreeMap<String, f64> {
        let sent = self.sent().max(1) as f64;
        self.served_by()
            .into_iter()
            .map(|(node, n)| (node, n as f64 / sent))
            .collect()
    }

    /// The longest time between the openings of two consecutive successful
    /// requests (from the start if the first requests failed, to the last
    /// request if the last ones failed).
    pub fn longest_gap(&self) -> Duration {
        let mut last_success = self.started;
        let mut longest = Duration::ZERO;
        for sample in &self.samples {
            if !sample.failed() {
                longest = longest.max(sample.at.saturating_duration_since(last_success));
                last_success = sample.at;
            }
        }
        if let Some(last) = self.samples.last() {
            longest = longest.max(last.at.saturating_duration_since(last_success));
        }
        longest
    }

    /// The first and last failed requests opened at or after `since`.
    pub fn failure_window(&self, since: Instant) -> Option<(Instant, Instant)> {
        let mut failures = self.samples.iter().filter(|s| s.at >= since && s.failed());
        let first = failures.next()?.at;
        let last = failures.next_back().map_or(first, |s| s.at);
        Some((first, last))
    }

    /// The blackhole after a fault at `fault`: from the fault to the opening
    /// of the last failed request (zero if none failed). A request opened
    /// after the router dropped the dead node succeeds, so this is how long
    /// the router kept sending new connections to it, to within the interval
    /// between requests.
    pub fn blackhole_after(&self, fault: Instant) -> Duration {
        self.failure_window(fault)
            .map_or(Duration::ZERO, |(_, last)| last - fault)
    }

    /// The last request `node` served.
    pub fn last_served_by(&self, node: &str) -> Option<Instant> {
        self.samples
            .iter()
            .rev()
            .find(|s| s.node() == Some(node))
            .map(|s| s.at)
    }

    /// The first request `node` served that was opened at or after `since`.
    pub fn first_served_by_since(&self, node: &str, since: Instant) -> Option<Instant> {
        self.samples
            .iter()
            .find(|s| s.at >= since && s.node() == Some(node))
            .map(|s| s.at)
    }

    /// Requests `node` served that were opened at or after `since`.
    pub fn served_by_since(&self, node: &str, since: Instant) -> usize {
        self.samples
            .iter()
            .filter(|s| s.at >= since && s.node() == Some(node))
            .count()
    }

    /// The most common failure reasons, with counts (for messages).
    pub fn failure_reasons(&self) -> Vec<(String, usize)> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for sample in &self.samples {
            if let Outcome::Failed(why) = &sample.outcome {
                *counts.entry(why.as_str()).or_insert(0) += 1;
            }
        }
        let mut reasons: Vec<(String, usize)> =
            counts.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
        reasons.truncate(5);
        reasons
    }
}

impl fmt::Display for TrafficReport {
    /// `sent 3000, failed 0, longest gap 12 ms, shares n1 33.1% n2 ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {}, failed {}, longest gap {} ms, shares",
            self.sent(),
            self.failed(),
            self.longest_gap().as_millis()
        )?;
        for (node, share) in self.shares() {
            write!(f, " {node} {:.1}%", share * 100.0)?;
        }
        if self.failed() > 0 {
            write!(f, "; failures: {:?}", self.failure_reasons())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcomes: &[(u64, Option<&str>)]) -> (Instant, TrafficReport) {
        let start = Instant::now();
        let samples = outcomes
            .iter()
            .map(|&(ms, node)| Sample {
                at: start + Duration::from_millis(ms),
                latency: Duration::from_millis(1),
                outcome: match node {
                    Some(n) => Outcome::Served(n.to_owned()),
                    None => Outcome::Failed("connect timed out".into()),
                },
            })
            .rev()
            .collect();
        (start, TrafficReport::new(start, samples))
    }

    #[test]
    fn shares_are_fractions_of_all_requests_sent() {
        let (_, r) = report(&[
            (0, Some("n1")),
            (10, Some("n2")),
            (20, Some("n1")),
            (30, None),
        ]);
        assert_eq!(r.sent(), 4);
        assert_eq!(r.failed(), 1);
        assert_eq!(r.shares()["n1"], 0.5);
        assert_eq!(r.shares()["n2"], 0.25);
        assert_eq!(r.served_by()["n1"], 2);
    }

    #[test]
    fn the_longest_gap_spans_failures_between_successes() {
        let (_, r) = report(&[
            (0, Some("n1")),
            (10, None),
            (20, None),
            (300, Some("n2")),
            (310, Some("n1")),
        ]);
        assert_eq!(r.longest_gap(), Duration::from_millis(300));
    }

    #[test]
    fn trailing_failures_count_toward_the_longest_gap() {
        let (_, r) = report(&[(0, Some("n1")), (10, None), (500, None)]);
        assert_eq!(r.longest_gap(), Duration::from_millis(500));
    }

    #[test]
    fn the_blackhole_runs_from_the_fault_to_the_last_failure() {
        let (start, r) = report(&[
            (0, None),
            (100, Some("n1")),
            (200, None),
            (210, Some("n2")),
            (350, None),
            (400, Some("n2")),
        ]);
        let fault = start + Duration::from_millis(150);
        assert_eq!(r.blackhole_after(fault), Duration::from_millis(200));
        assert_eq!(r.failed_since(fault), 2);
        let (first, last) = r.failure_window(fault).unwrap();
        assert_eq!(first - start, Duration::from_millis(200));
        assert_eq!(last - start, Duration::from_millis(350));
    }

    #[test]
    fn no_failures_mean_no_blackhole() {
        let (start, r) = report(&[(0, Some("n1")), (10, Some("n2"))]);
        assert_eq!(r.blackhole_after(start), Duration::ZERO);
        assert_eq!(r.failure_window(start), None);
    }

    #[test]
    fn a_drained_node_is_seen_until_its_last_served_request() {
        let (start, r) = report(&[(0, Some("n1")), (10, Some("n2")), (20, Some("n2"))]);
        assert_eq!(r.last_served_by("n1"), Some(start));
        assert_eq!(
            r.served_by_since("n2", start + Duration::from_millis(15)),
            1
        );
        assert_eq!(r.last_served_by("n3"), None);
        let later = start + Duration::from_millis(5);
        assert_eq!(
            r.first_served_by_since("n2", later),
            Some(start + Duration::from_millis(10))
        );
        assert_eq!(r.first_served_by_since("n1", later), None);
    }

    #[test]
    fn the_summary_names_counts_gap_and_shares() {
        let (_, r) = report(&[(0, Some("n1")), (10, None)]);
        let text = r.to_string();
        assert!(
            text.starts_with("sent 2, failed 1, longest gap 10 ms"),
            "{text}"
        );
        assert!(text.contains("n1 50.0%"), "{text}");
        assert!(text.contains("connect timed out"), "{text}");
    }

    #[test]
    fn steady_load_is_bounded_in_count_and_time() {
        let spec = LoadSpec::steady("203.0.113.10:80".parse().unwrap(), Duration::from_secs(10));
        assert_eq!(spec.max_requests, 2000);
        assert!(spec.timeout < spec.max_duration);
    }
}
