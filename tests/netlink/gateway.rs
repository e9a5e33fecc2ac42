//! The default-gateway watch in a lab namespace: default routes are added,
//! replaced by an ECMP pair, shadowed by a lower metric and deleted with
//! `ip route`, and the watch follows each step.

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use herald::netlink::gateway::{DefaultGateways, GatewayWatch};
use tokio::sync::watch;

/// `ip ARGS` in the calling thread's network namespace (a child inherits
/// the namespace of the thread that forks it).
fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn addresses(gateways: &[herald::netlink::gateway::Gateway]) -> Vec<IpAddr> {
    gateways.iter().map(|g| g.address).collect()
}

fn parse(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

/// Waits (at most 10 s) until the watched IPv4 and IPv6 gateway addresses
/// are `v4` and `v6`; fails with the last value seen.
async fn follows(
    gateways: &mut watch::Receiver<DefaultGateways>,
    step: &str,
    v4: &[&str],
    v6: &[&str],
) {
    let (v4, v6) = (parse(v4), parse(v6));
    let matches = |g: &DefaultGateways| addresses(&g.ipv4) == v4 && addresses(&g.ipv6) == v6;
    let waited = tokio::time::timeout(Duration::from_secs(10), gateways.wait_for(matches))
        .await
        .is_ok_and(|seen| seen.is_ok());
    assert!(
        waited,
        "{step}: expected v4 {v4:?} v6 {v6:?}, the watch holds {:?}",
        *gateways.borrow()
    );
}

#[test]
fn the_watch_follows_default_route_changes_in_the_main_table() {
    let lab = herald_testnet::lab_or_skip!();
    let node = lab.namespace("node").unwrap();
    let tor = lab.namespace("tor").unwrap();
    lab.veth(&node, "eth1", &tor, "eth1").unwrap();
    lab.veth(&node, "eth2", &tor, "eth2").unwrap();
    node.add_address("eth1", "198.51.100.2/24").unwrap();
    node.add_address("eth2", "203.0.113.2/24").unwrap();
    node.ip(&[
        "-6",
        "addr",
        "add",
        "2001:db8:1::2/64",
        "dev",
        "eth1",
        "nodad",
    ])
    .unwrap();

    node.run_in(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let watch = GatewayWatch::start().await.expect("start the watch");
            assert!(watch.current().is_empty(), "{:?}", watch.current());
            let mut gateways = watch.subscribe();

            ip(&["route", "add", "default", "via", "198.51.100.1"]);
            follows(&mut gateways, "one IPv4 default", &["198.51.100.1"], &[]).await;

            ip(&[
                "route",
                "replace",
                "default",
                "nexthop",
                "via",
                "198.51.100.1",
                "nexthop",
                "via",
                "203.0.113.1",
            ]);
            follows(
                &mut gateways,
                "ECMP default",
                &["198.51.100.1", "203.0.113.1"],
                &[],
            )
            .await;

            ip(&["-6", "route", "add", "default", "via", "2001:db8:1::1"]);
            follows(
                &mut gateways,
                "IPv6 default",
                &["198.51.100.1", "203.0.113.1"],
                &["2001:db8:1::1"],
            )
            .await;

            // Another table's default is not the node's default gateway.
            ip(&[
                "route",
                "add",
                "default",
                "via",
                "198.51.100.9",
                "table",
                "100",
            ]);
            // A lower metric shadows a higher one: the ECMP default moves to
            // metric 100, and a single default with metric 50 wins.
            ip(&["route", "del", "default"]);
            ip(&[
                "route",
                "add",
                "default",
                "metric",
                "100",
                "nexthop",
                "via",
                "198.51.100.1",
                "nexthop",
                "via",
                "203.0.113.1",
            ]);
            ip(&[
                "route",
                "add",
                "default",
                "via",
                "203.0.113.1",
                "metric",
                "50",
            ]);
            follows(
                &mut gateways,
                "lower metric wins",
                &["203.0.113.1"],
                &["2001:db8:1::1"],
            )
            .await;
            assert_eq!(gateways.borrow().ipv4[0].metric, 50);

            ip(&["route", "del", "default", "metric", "50"]);
            ip(&["route", "del", "default", "metric", "100"]);
            ip(&["-6", "route", "del", "default"]);
            follows(&mut gateways, "all deleted", &[], &[]).await;
        });
    })
    .unwrap();
}
