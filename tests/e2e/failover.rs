//! Node failure, restarts, drain and traffic policy, with client traffic.

use std::time::{Duration, Instant};

use herald_testnet::process::Signal;
use herald_testnet::scenario::service::{self, FAST_BFD};
use herald_testnet::scenario::{self, BirdSetup, HeraldSetup, ServiceLab, Source, TrafficPolicy};
use herald_testnet::timeline::{self, Marker, Timeline};
use herald_testnet::traffic::{LoadSpec, TrafficReport};
use herald_testnet::{HeraldNode, HeraldOptions, fib, lab_or_skip};

pub(crate) const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// How long a lab may take to reach its steady state (sessions up, ECMP).
pub(crate) const SETTLE: Duration = Duration::from_secs(60);

/// The cap on the wait in the no-BFD baseline: long enough to show that
/// only the hold timer (FRR's default 180 s) would end the blackhole.
const NO_BFD_CAP: Duration = Duration::from_secs(150);

/// The ETP Local scenario's anti-flap settings.
const ANTI_FLAP_MIN_UP: Duration = Duration::from_secs(2);
const ANTI_FLAP_WITHDRAW_DELAY: Duration = Duration::from_secs(1);

/// The harness itself: herald starts in a lab namespace, answers /status
/// and /metrics from inside it, survives SIGSTOP/SIGCONT, and comes back
/// after SIGKILL and after a planned restart, each time as a new process.
#[test]
fn herald_node_answers_on_its_admin_endpoint_and_restarts() {
    let lab = lab_or_skip!();
    let ns = lab.namespace("n1").expect("namespace");
    let config = "asn: 64601\nrouter_id: 192.0.2.11\ninterface: lo\n\
                  admin_listen: 127.0.0.1:9179\npools:\n  - name: lab\n    cidrs: [203.0.113.0/24]\n\
                  peers: []\n";
    let mut node = HeraldNode::start(
        &ns,
        HeraldOptions {
            binary: HERALD.into(),
            config: config.into(),
            services: Some("services: []\n".into()),
            admin: "127.0.0.1:9179".parse().unwrap(),
            node_name: "n1".into(),
            env: vec![],
            extra_args: vec![],
        },
    )
    .expect("herald starts and answers /livez");
    let status = node.status().expect("/status");
    assert_eq!(status["config"]["asn"], 64601, "{status}");
    assert!(node.metrics().expect("/metrics").contains("# TYPE"));
    let first = node.pid().unwrap();

    node.signal(Signal::SIGSTOP).expect("SIGSTOP");
    assert!(
        node.get("/livez").is_err(),
        "a frozen herald does not answer"
    );
    node.signal(Signal::SIGCONT).expect("SIGCONT");
    node.wait_for(Duration::from_secs(10), "/status after SIGCONT", |_| Ok(()))
        .expect("answers again");

    node.kill().expect("SIGKILL");
    assert!(!node.is_running());
    node.launch().expect("starts again after SIGKILL");
    let second = node.pid().unwrap();
    assert_ne!(first, second);

    node.restart(Duration::from_secs(10))
        .expect("planned restart");
    assert_ne!(node.pid().unwrap(), second);
    assert_eq!(node.status().expect("/status")["node_name"], "n1");
}

/// Writes a failover picture (target/pictures/NAME.svg, or under
/// $HERALD_PICTURES_DIR): new connections per node per 10 ms from 1 s
/// before `origin` to `after` it, with `markers`.
pub(crate) fn draw(
    name: &str,
    title: &str,
    traffic: &TrafficReport,
    origin: Instant,
    after: Duration,
    markers: &[Marker],
) {
    let timeline = Timeline::new(traffic, origin, Duration::from_secs(1), after, markers);
    let path = timeline::write_picture(&timeline, name, title).expect("the picture is written");
    println!("e2e picture: {}", path.display());
}

/// Prints a scenario's figures in one greppable line.
pub(crate) fn report(scenario: &str, report: &TrafficReport, extra: &str) {
    println!("e2e {scenario}: {report}{extra}");
}

/// Baseline: BIRD on the nodes with BFD 50 ms x 3 beside each session (and
/// graceful restart on). A node's link goes down: r1 drops it on BFD
/// detection, so new connections fail only for about the detection time.
#[test]
fn bird_with_bfd_node_death_blackholes_for_the_detection_time() {
    let lab = lab_or_skip!();
    let net = ServiceLab::with_bird(
        &lab,
        BirdSetup {
            bfd: Some(FAST_BFD),
            graceful_restart: Some(Duration::from_secs(120)),
        },
    )
    .expect("ecmp3 with BIRD nodes");
    net.settle(3, SETTLE).expect("three next hops");
    net.wait_bfd_up(SETTLE).expect("BFD up to every node");
    assert_ecmp_shares("bird+bfd ecmp", &net);

    node_death_under_load(&net, "bird+bfd node death", true, None);
}

/// Baseline, the setup of our story: BIRD on the nodes without BFD, with
/// graceful restart on. A node's link goes down and nothing fast notices:
/// r1 keeps sending a third of the new connections to it until the BGP
/// hold timer expires (FRR's default 180 s). The wait is capped at 150 s.
#[test]
fn bird_without_bfd_node_death_blackholes_for_minutes() {
    let lab = lab_or_skip!();
    let net = ServiceLab::with_bird(
        &lab,
        BirdSetup {
            bfd: None,
            graceful_restart: Some(Duration::from_secs(120)),
        },
    )
    .expect("ecmp3 with BIRD nodes");
    net.settle(3, SETTLE).expect("three next hops");

    // A slower stream for the long wait: 50 new connections a second.
    let mut spec = LoadSpec::steady(
        service::service_target(),
        NO_BFD_CAP + Duration::from_secs(5),
    );
    spec.interval = Duration::from_millis(20);
    spec.max_requests = (spec.max_duration.as_millis() / 20) as usize;
    let load = net.load_with(spec).expect("client");
    std::thread::sleep(Duration::from_secs(3));
    let fault = Instant::now();
    net.node_link_down("n2").expect("link down");
    let r1 = net.router_ns().expect("r1");
    let n2 = net.next_hop("n2").expect("n2");
    let withdrawn = fib::wait_until_gone(r1, scenario::SERVICE_V4, n2, NO_BFD_CAP);
    let traffic = load.stop();
    let blackhole = traffic.blackhole_after(fault);
    let fib_text = match withdrawn {
        Ok(after) => format!("next hop gone from r1's FIB after {} s", after.as_secs()),
        Err(_) => format!(
            "next hop still in r1's FIB after the {} s cap",
            NO_BFD_CAP.as_secs()
        ),
    };
    report(
        "bird-no-bfd node death",
        &traffic,
        &format!(
            "; {fib_text}; new connections failed for {} s",
            blackhole.as_secs()
        ),
    );
    assert!(
        blackhole > Duration::from_secs(60),
        "without BFD the dead node should stay in the ECMP set for minutes: {traffic}"
    );
}

/// Sends 3,000 new connections and asserts that every node got at least
/// 15 % of them.
fn assert_ecmp_shares(scenario: &str, net: &ServiceLab) {
    let spec = LoadSpec::count(service::service_target(), 3000, Duration::from_millis(4));
    let traffic = net.load_with(spec).expect("client").finish();
    report(scenario, &traffic, "");
    assert_eq!(traffic.sent(), 3000, "{traffic}");
    let shares = traffic.shares();
    for node in service::NODES {
        let share = shares.get(node).copied().unwrap_or(0.0);
        assert!(share >= 0.15, "{node} got {:.1}%: {traffic}", share * 100.0);
    }
}

/// Downs `node`'s link and waits (at most `bound`) until r1's FIB drops it;
/// returns when the fault happened and how long the FIB took.
fn node_death(net: &ServiceLab, node: &str, bound: Duration) -> (Instant, Duration) {
    let r1 = net.router_ns().expect("r1");
    let hop = net.next_hop(node).expect("next hop");
    let fault = Instant::now();
    net.node_link_down(node).expect("link down");
    let fib =
        fib::wait_until_gone(r1, scenario::SERVICE_V4, hop, bound).expect("r1 drops the dead node");
    (fault, fib)
}

/// A herald lab in Kubernetes mode (the Service with `policy`), settled
/// with every given node announcing.
pub(crate) fn herald_lab(
    lab: &herald_testnet::Lab,
    setup: HeraldSetup,
    announcing: &[&str],
) -> ServiceLab {
    let net = ServiceLab::with_herald(lab, setup).expect("ecmp3 with herald nodes");
    net.settle(announcing.len(), SETTLE)
        .expect("r1 forwards the service over the announcing nodes");
    net.wait_next_hops(announcing, SETTLE)
        .expect("exactly the announcing nodes");
    net
}

pub(crate) fn kubernetes(policy: TrafficPolicy) -> HeraldSetup {
    HeraldSetup::new(HERALD, Source::Kubernetes(policy))
}

/// Watches r1's FIB entry for the service every 10 ms.
pub(crate) fn fib_watch(net: &ServiceLab) -> fib::FibWatch {
    let r1 = net.router_ns().expect("r1");
    fib::FibWatch::start(r1, scenario::SERVICE_V4, Duration::from_millis(10))
}

/// Waits until herald on `node` reports its session to r1 Established
/// again and r1 forwards over all three nodes.
pub(crate) fn wait_rejoined(net: &ServiceLab, node: &str) {
    net.herald(node)
        .wait_for(SETTLE, "the session to r1 Established", |status| {
            let state = &status["peers"][0]["state"];
            if state == "Established" {
                Ok(())
            } else {
                Err(format!("peer state {state}"))
            }
        })
        .expect("herald re-establishes its session");
    net.wait_next_hops(&service::NODES, SETTLE)
        .expect("three next hops again");
    net.wait_fresh_path(node, SETTLE)
        .expect("r1 holds a fresh (not stale) path from the node: End-of-RIB arrived");
}

/// ECMP: with herald on three nodes (Kubernetes mode), every node gets a
/// share of 3,000 new connections, none under 15 %.
#[test]
fn herald_ecmp_spreads_new_connections_over_all_three_nodes() {
    let lab = lab_or_skip!();
    let net = herald_lab(&lab, kubernetes(TrafficPolicy::Cluster), &service::NODES);
    assert_ecmp_shares("herald ecmp", &net);
}

/// Node death (standalone mode, services file): a node's link goes down
/// while traffic flows; r1 drops it on BFD detection (50 ms x 3), so new
/// connections fail only for about the detection time.
#[test]
fn herald_standalone_node_death_ends_within_the_bfd_detection_time() {
    let lab = lab_or_skip!();
    let net = herald_lab(
        &lab,
        HeraldSetup::new(HERALD, Source::Standalone),
        &service::NODES,
    );
    net.wait_bfd_up(SETTLE).expect("BFD up to every node");
    node_death_under_load(
        &net,
        "herald node death (standalone)",
        false,
        Some((
            "node-death-bfd",
            "herald, BFD 50 ms x 3: n2's link goes down",
        )),
    );
}

/// The same node death without BFD: only the BGP hold timer (9 s in the
/// lab) tells r1, so new connections to n2 fail for seconds. The picture
/// beside the BFD one shows what BFD buys.
#[test]
fn herald_without_bfd_node_death_lasts_until_the_hold_timer() {
    let lab = lab_or_skip!();
    let mut setup = HeraldSetup::new(HERALD, Source::Standalone);
    setup.bfd = None;
    let net = herald_lab(&lab, setup, &service::NODES);
    let load = net.load(Duration::from_secs(18)).expect("client");
    std::thread::sleep(Duration::from_secs(3));
    let (fault, fib) = node_death(&net, "n2", Duration::from_secs(14));
    let traffic = load.finish();
    let blackhole = traffic.blackhole_after(fault);
    draw(
        "node-death-no-bfd",
        "herald without BFD (hold time 9 s): n2's link goes down",
        &traffic,
        fault,
        Duration::from_secs(12),
        &[
            Marker::new(fault, "n2's link down"),
            Marker::new(fault + fib, "r1's FIB drops n2"),
        ],
    );
    report(
        "herald node death without BFD",
        &traffic,
        &format!(
            "; next hop gone from r1's FIB after {} ms; new connections failed for {} ms",
            fib.as_millis(),
            blackhole.as_millis()
        ),
    );
    // Keepalives every 3 s: the hold timer fires 6 to 9 s after the last
    // one r1 received before the fault.
    assert!(
        fib > Duration::from_secs(5),
        "without BFD only the hold timer can tell r1: {} ms",
        fib.as_millis()
    );
    assert!(traffic.failed_since(fault) > 0, "{traffic}");
}

/// herald killed (SIGKILL) and started again within 5 s on one node:
/// graceful restart keeps r1's routes, the addresses stay on the node, and
/// not one request fails. r1's FIB is watched and the fewest next hops
/// printed, not asserted: on a loaded machine FRR's bgpd sometimes handles
/// BFD Down before the closed TCP session and flushes the routes (ECMP then
/// hides it from clients); tests/agent/lifecycle.rs owns that promise.
#[test]
fn herald_sigkill_and_restart_within_5s_fails_no_request() {
    let lab = lab_or_skip!();
    let mut net = herald_lab(&lab, kubernetes(TrafficPolicy::Cluster), &service::NODES);
    let watch = fib_watch(&net);
    let load = net.load(Duration::from_secs(15)).expect("client");
    std::thread::sleep(Duration::from_secs(3));
    let killed = Instant::now();
    net.herald("n1").kill().expect("SIGKILL");
    std::thread::sleep(Duration::from_secs(2));
    net.herald_mut("n1").launch().expect("herald starts again");
    let restarted = killed.elapsed();
    wait_rejoined(&net, "n1");
    let traffic = load.finish();
    let fib = watch.stop();
    report(
        "herald sigkill+restart",
        &traffic,
        &format!(
            "; restarted {} ms after the kill; r1's FIB: fewest next hops {:?}, {} changes",
            restarted.as_millis(),
            fib.fewest_next_hops(),
            fib.flaps()
        ),
    );
    assert!(restarted < Duration::from_secs(5));
    assert_eq!(traffic.failed(), 0, "{traffic}");
    assert!(
        traffic.served_by_since("n1", killed) > 0,
        "n1 keeps serving through its restart: {traffic}"
    );
}

/// A rolling restart (SIGTERM, then start, one node after the other, as a
/// DaemonSet update does): not one request fails. r1's FIB is watched and
/// the fewest next hops printed (see the SIGKILL scenario for why it is not
/// asserted).
#[test]
fn herald_rolling_restart_of_all_three_nodes_fails_no_request() {
    let lab = lab_or_skip!();
    let mut net = herald_lab(&lab, kubernetes(TrafficPolicy::Cluster), &service::NODES);
    let watch = fib_watch(&net);
    let load = net.load(Duration::from_secs(90)).expect("client");
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    for node in service::NODES {
        net.herald_mut(node)
            .restart(Duration::from_secs(20))
            .expect("planned restart");
        wait_rejoined(&net, node);
        std::thread::sleep(Duration::from_secs(1));
    }
    let took = started.elapsed();
    let traffic = load.stop();
    let fib = watch.stop();
    report(
        "herald rolling restart",
        &traffic,
        &format!(
            "; three restarts in {} ms; r1's FIB: fewest next hops {:?}, {} changes",
            took.as_millis(),
            fib.fewest_next_hops(),
            fib.flaps()
        ),
    );
    assert_eq!(traffic.failed(), 0, "{traffic}");
}

/// Drain of one node (`POST /drain`): herald re-announces with
/// GRACEFUL_SHUTDOWN, r1 lowers the route's preference so new connections
/// go elsewhere, herald withdraws after `gshut_wait`. Not one new
/// connection fails, and the drained node gets none after the wait.
#[test]
fn herald_drain_moves_new_connections_away_without_failures() {
    let lab = lab_or_skip!();
    let net = herald_lab(&lab, kubernetes(TrafficPolicy::Cluster), &service::NODES);
    let gshut_wait = net.setup().expect("herald").gshut_wait;
    let load = net.load(Duration::from_secs(15)).expect("client");
    std::thread::sleep(Duration::from_secs(3));
    let drained = Instant::now();
    net.herald("n1").drain().expect("POST /drain");
    net.wait_next_hops(&["n2", "n3"], gshut_wait + Duration::from_secs(5))
        .expect("r1 moves new connections off n1");
    let moved = drained.elapsed();
    let traffic = load.finish();
    draw(
        "drain",
        "herald drain of n1 (GRACEFUL_SHUTDOWN, then withdraw)",
        &traffic,
        drained,
        gshut_wait + Duration::from_secs(3),
        &[
            Marker::new(drained, "drain"),
            Marker::new(drained + moved, "r1's FIB drops n1"),
        ],
    );
    let last_n1 = traffic
        .last_served_by("n1")
        .map(|t| t.saturating_duration_since(drained));
    report(
        "herald drain",
        &traffic,
        &format!(
            "; n1 out of r1's FIB {} ms after the drain, its last new connection {last_n1:?} after it",
            moved.as_millis()
        ),
    );
    assert_eq!(traffic.failed(), 0, "{traffic}");
    assert_eq!(
        traffic.served_by_since("n1", drained + gshut_wait),
        0,
        "n1 gets no new connection after the wait: {traffic}"
    );
}

/// ETP Local: the only ready pod moves from n1 to n2 (EndpointSlice applied
/// with kubectl): n1 withdraws, n2 announces; failures stay within the
/// anti-flap settings.
#[test]
fn herald_etp_local_follows_the_only_ready_pod_from_n1_to_n2() {
    let lab = lab_or_skip!();
    let mut setup = kubernetes(TrafficPolicy::Local);
    setup.ready_on = vec!["n1".into()];
    setup.extra_config = format!(
        "anti_flap: {{min_up: {}ms, withdraw_delay: {}ms}}\n",
        ANTI_FLAP_MIN_UP.as_millis(),
        ANTI_FLAP_WITHDRAW_DELAY.as_millis()
    );
    let net = herald_lab(&lab, setup, &["n1"]);
    // Let n1's announcement outlive min_up, so the move is not held by it.
    std::thread::sleep(ANTI_FLAP_MIN_UP);
    let load = net.load(Duration::from_secs(15)).expect("client");
    std::thread::sleep(Duration::from_secs(3));
    let moved = Instant::now();
    net.set_ready_pods(&["n2"]).expect("kubectl apply");
    net.wait_next_hops(&["n2"], ANTI_FLAP_WITHDRAW_DELAY + Duration::from_secs(10))
        .expect("n1 withdraws, n2 announces");
    let converged = moved.elapsed();
    let traffic = load.finish();
    let blackhole = traffic.blackhole_after(moved);
    let after = |t: Option<Instant>| match t {
        Some(t) if t >= moved => format!("+{} ms", (t - moved).as_millis()),
        Some(t) => format!("-{} ms", (moved - t).as_millis()),
        None => "never".into(),
    };
    let window = traffic.failure_window(moved);
    report(
        "herald etp local move",
        &traffic,
        &format!(
            "; after kubectl apply: n1's last new connection {}, n2's first {}, failures from {} to {}, \
             r1 forwards only to n2 at +{} ms; new connections failed for {} ms",
            after(traffic.last_served_by("n1")),
            after(traffic.first_served_by_since("n2", moved)),
            after(window.map(|w| w.0)),
            after(window.map(|w| w.1)),
            converged.as_millis(),
            blackhole.as_millis()
        ),
    );
    assert!(
        blackhole <= ANTI_FLAP_WITHDRAW_DELAY + Duration::from_secs(2),
        "failures bounded by the anti-flap settings: {traffic}"
    );
    assert!(
        traffic.served_by_since("n2", moved + converged) > 0,
        "{traffic}"
    );
    assert_eq!(
        traffic.served_by_since("n1", moved + converged + Duration::from_secs(1)),
        0,
        "{traffic}"
    );
}

/// What both ends knew of a BFD session the router dropped while nothing
/// failed: herald's largest gaps between packets sent and received (its
/// metrics), r1's view of the session and its counters, and the load.
pub(crate) fn bfd_drop_evidence(
    net: &ServiceLab,
    router: &herald_testnet::frr::Frr,
    node: &str,
) -> String {
    let gaps = net
        .herald(node)
        .get("/metrics")
        .map(|metrics| {
            metrics
                .text()
                .lines()
                .filter(|l| l.starts_with("herald_bfd_session_max_"))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_else(|e| format!("no metrics: {e}"));
    let hop = net
        .next_hop(node)
        .map(|h| h.to_string())
        .unwrap_or_default();
    let peer = router
        .vtysh_json(&format!("show bfd peer {hop} json"))
        .map(|v| v.to_string())
        .unwrap_or_else(|e| format!("{e}"));
    let counters = router
        .vtysh_json(&format!("show bfd peer {hop} counters json"))
        .map(|v| v.to_string())
        .unwrap_or_else(|e| format!("{e}"));
    format!(
        "BFD false drop of {node} ({hop}), load {}:\n  herald: {gaps}\n  r1 peer: {peer}\n  \
         r1 counters: {counters}",
        herald_testnet::load_average()
    )
}

/// The node-death scenario shared by herald and the BIRD + BFD baseline:
/// 10 s of new connections, n2's link cut after 3 s; prints the figures
/// and asserts that BFD ended the blackhole within seconds and that the dead
/// node served nothing after the fault (and, with `check_sent`, that the
/// client really sent a steady stream).
fn node_death_under_load(
    net: &ServiceLab,
    scenario: &str,
    check_sent: bool,
    picture: Option<(&str, &str)>,
) {
    let load = net.load(Duration::from_secs(10)).expect("client");
    std::thread::sleep(Duration::from_secs(3));
    let (fault, fib) = node_death(net, "n2", Duration::from_secs(10));
    let traffic = load.finish();
    let blackhole = traffic.blackhole_after(fault);
    if let Some((name, title)) = picture {
        let markers = [
            Marker::new(fault, "n2's link down"),
            Marker::new(fault + fib, "r1's FIB drops n2"),
        ];
        draw(
            name,
            title,
            &traffic,
            fault,
            Duration::from_secs(3),
            &markers,
        );
    }
    report(
        scenario,
        &traffic,
        &format!(
            "; next hop gone from r1's FIB after {} ms; new connections failed for {} ms",
            fib.as_millis(),
            blackhole.as_millis()
        ),
    );
    if check_sent {
        assert!(traffic.sent() > 1000, "{traffic}");
    }
    assert!(
        blackhole < Duration::from_secs(3),
        "BFD should end the blackhole within seconds: {traffic}"
    );
    assert_eq!(
        traffic.served_by_since("n2", fault + Duration::from_millis(100)),
        0,
        "a dead node serves nothing"
    );
}

/// How long the rejoin scenario keeps n1's link down each time: long
/// enough for herald's reconnect backoff to grow past a few seconds.
const REJOIN_DOWN: Duration = Duration::from_secs(10);
/// Link-down/link-up cycles measured by the rejoin scenario.
const REJOIN_RUNS: usize = 6;

/// Rejoin after a link failure (standalone mode, BFD 50 ms x 3): n1's link
/// goes down for [`REJOIN_DOWN`] (r1 drops n1 on BFD detection), comes
/// back, and the time from `ip link set eth1 up` to n1's next hop back in
/// r1's FIB is measured, [`REJOIN_RUNS`] times. Prints the samples and
/// their median, min and max; asserts nothing about them (docs/failover.md
/// has the figures).
#[test]
#[ignore = "lab scenario that prints figures: about 2 minutes; run with --ignored --nocapture"]
fn herald_rejoin_after_the_link_comes_back_figures() {
    let lab = lab_or_skip!();
    let net = herald_lab(
        &lab,
        HeraldSetup::new(HERALD, Source::Standalone),
        &service::NODES,
    );
    net.wait_bfd_up(SETTLE).expect("BFD up to every node");
    let mut samples = Vec::new();
    for _ in 0..REJOIN_RUNS {
        node_death(&net, "n1", SETTLE);
        net.wait_next_hops(&["n2", "n3"], SETTLE)
            .expect("r1 dropped n1");
        std::thread::sleep(REJOIN_DOWN);
        let back = Instant::now();
        net.node_link_up("n1").expect("link up");
        net.wait_next_hops(&service::NODES, SETTLE)
            .expect("n1 back in r1's FIB");
        samples.push(back.elapsed());
        wait_rejoined(&net, "n1");
    }
    let mut sorted = samples.clone();
    sorted.sort();
    let ms = |d: &Duration| d.as_millis();
    println!(
        "e2e herald rejoin after link back ({REJOIN_RUNS} runs, link down {} s): median {} ms, \
         min {} ms, max {} ms; samples {:?} ms",
        REJOIN_DOWN.as_secs(),
        ms(&sorted[sorted.len() / 2]),
        ms(&sorted[0]),
        ms(&sorted[sorted.len() - 1]),
        samples.iter().map(ms).collect::<Vec<_>>()
    );
}
