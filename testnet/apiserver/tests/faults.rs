//! Fault injection from the library API and the control endpoint: failing requests, delays,
//! stalls, outages, the request log, and a kube watcher riding through them.

mod common;

use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{End, Watch, get, post, service};
use futures::StreamExt;
use futures::stream::BoxStream;
use herald_apiserver::{Options, StandIn};
use k8s_openapi::api::core::v1::Service;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use serde_json::json;

const SVCS: &str = "/api/v1/namespaces/default/services";

fn standin() -> StandIn {
    StandIn::start(Options::default()).expect("start")
}

#[test]
fn the_next_n_requests_fail_with_the_injected_status() {
    let s = standin();
    s.faults().fail_next(2, 500);
    for _ in 0..2 {
        let r = get(s.addr(), SVCS);
        assert_eq!(r.status, 500);
        assert_eq!(r.json()["reason"], "InternalError");
    }
    assert_eq!(get(s.addr(), SVCS).status, 200);
    s.faults().fail_next(1, 429);
    let r = get(s.addr(), SVCS);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["reason"], "TooManyRequests");
}

#[test]
fn failures_can_target_a_path_prefix() {
    let s = standin();
    s.faults()
        .fail_next_matching(1, 409, Some("/apis/discovery.k8s.io"));
    assert_eq!(get(s.addr(), SVCS).status, 200);
    let r = get(s.addr(), "/apis/discovery.k8s.io/v1/endpointslices");
    assert_eq!(r.status, 409);
    assert_eq!(
        get(s.addr(), "/apis/discovery.k8s.io/v1/endpointslices").status,
        200
    );
}

#[test]
fn delayed_responses_take_at_least_the_delay() {
    let s = standin();
    s.faults().delay_responses(Some(Duration::from_millis(200)));
    let start = Instant::now();
    assert_eq!(get(s.addr(), SVCS).status, 200);
    assert!(start.elapsed() >= Duration::from_millis(200));
    s.faults().delay_responses(None);
}

#[test]
fn stalled_requests_are_held_until_released() {
    let s = standin();
    s.faults().stall();
    let (tx, rx) = mpsc::channel();
    let addr = s.addr();
    let client = std::thread::spawn(move || {
        let status = get(addr, SVCS).status;
        tx.send(status).unwrap();
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "a stalled request must not be answered"
    );
    s.faults().release();
    assert_eq!(rx.recv_timeout(common::READ_BOUND).unwrap(), 200);
    client.join().unwrap();
}

fn refused(s: &StandIn) -> bool {
    TcpStream::connect_timeout(&s.addr(), Duration::from_secs(1)).is_err()
}

#[test]
fn going_down_refuses_connections_cuts_watches_and_coming_up_serves_again() {
    let s = standin();
    post(s.addr(), SVCS, &service("a"));
    let mut w = Watch::open(s.addr(), &format!("{SVCS}?watch=true&resourceVersion=1"));
    common::eventually(Duration::from_secs(10), || {
        s.requests().iter().any(|r| r.is_watch()).then_some(())
    });
    s.faults().go_down();
    assert!(s.faults().is_down());
    assert_eq!(w.drain().0, End::Cut);
    common::eventually(Duration::from_secs(10), || refused(&s).then_some(()));
    s.faults().come_up();
    common::eventually(Duration::from_secs(10), || (!refused(&s)).then_some(()));
    assert_eq!(
        get(s.addr(), &format!("{SVCS}/a")).status,
        200,
        "state survives the outage"
    );
}

#[test]
fn an_outage_of_a_given_length_ends_on_its_own() {
    let s = standin();
    s.faults().down_for(Duration::from_secs(2));
    common::eventually(Duration::from_secs(10), || refused(&s).then_some(()));
    common::eventually(Duration::from_secs(20), || (!refused(&s)).then_some(()));
    assert_eq!(get(s.addr(), SVCS).status, 200);
}

#[test]
fn the_request_log_records_method_path_query_and_status() {
    let s = standin();
    get(s.addr(), &format!("{SVCS}?limit=5"));
    post(s.addr(), SVCS, &service("a"));
    s.faults().fail_next(1, 503);
    get(s.addr(), &format!("{SVCS}/a"));
    get(s.addr(), "/_standin/requests");
    let log = s.requests();
    let seen: Vec<(&str, &str, &str, u16)> = log
        .iter()
        .map(|r| {
            (
                r.method.as_str(),
                r.path.as_str(),
                r.query.as_str(),
                r.status,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("GET", SVCS, "limit=5", 200),
            ("POST", SVCS, "", 201),
            ("GET", "/api/v1/namespaces/default/services/a", "", 503),
        ]
    );
    s.faults().clear_requests();
    assert!(s.requests().is_empty());
}

#[test]
fn the_control_endpoint_injects_faults_and_serves_the_log_and_fixtures() {
    let s = standin();
    let r = post(
        s.addr(),
        "/_standin/faults",
        &json!({"fault": "fail", "count": 1, "status": 503}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(get(s.addr(), SVCS).status, 503);
    assert_eq!(get(s.addr(), SVCS).status, 200);
    let log = get(s.addr(), "/_standin/requests").json();
    assert_eq!(log.as_array().unwrap().len(), 2);
    assert_eq!(log[0]["status"], 503);
    let bad = post(s.addr(), "/_standin/faults", &json!({"fault": "meteor"}));
    assert_eq!(bad.status, 400);
    let r = post(s.addr(), "/_standin/objects", &service("fixture"));
    assert_eq!(r.status, 200);
    assert_eq!(get(s.addr(), &format!("{SVCS}/fixture")).status, 200);
    let old = s.resource_version();
    post(s.addr(), "/_standin/compact", &json!({}));
    let mut w = Watch::open(
        s.addr(),
        &format!("{SVCS}?watch=true&resourceVersion={}", old - 1),
    );
    assert_eq!(w.next().unwrap()["object"]["code"], 410);
}

/// The next object the watcher applies, skipping the errors it reports while retrying.
async fn next_name(stream: &mut BoxStream<'static, Result<Service, watcher::Error>>) -> String {
    loop {
        let item = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("an object within the bound")
            .expect("the stream continues");
        if let Ok(svc) = item {
            return svc.metadata.name.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kube_watcher_with_backoff_rides_through_errors_and_an_outage() {
    let s = standin();
    s.apply_json(service("a")).unwrap();
    let client = kube::Client::try_from(kube::Config::new(s.url().parse().unwrap())).unwrap();
    let api: kube::Api<Service> = kube::Api::default_namespaced(client);
    let mut objects = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    assert_eq!(next_name(&mut objects).await, "a");
    s.faults().fail_next(1, 500);
    s.faults().down_for(Duration::from_secs(1));
    s.apply_json(service("b")).unwrap();
    let mut names = Vec::new();
    while !names.contains(&"b".to_string()) {
        names.push(next_name(&mut objects).await);
    }
}
