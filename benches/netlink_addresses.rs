//! Service addresses at scale, in a network namespace of its own:
//!
//! 1. add 10,000 addresses (one `set_wanted`), time and netlink messages/s;
//! 2. stop, start again and want the same 10,000: the restarted task adopts
//!    them and must send zero netlink writes (asserted: a correctness check,
//!    not a timing);
//! 3. drain (remove all 10,000), time and messages/s.
//!
//! Once for IPv4 (198.18.0.0/15) and once for IPv6 (2001:db8:ffff::/64).
//! Run: `cargo bench --bench netlink_addresses` (root; `HERALD_BENCH_ADDRESSES`
//! changes the count).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use herald::netlink::reconcile::{PresentAddress, reconcile};
use herald::netlink::{Metrics, OwnershipMode, ServiceAddresses, kernel};

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("netlink_addresses: skipped: needs root for a network namespace");
        return;
    }
    let count: u32 = std::env::var("HERALD_BENCH_ADDRESSES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    std::thread::spawn(move || {
        // A namespace of our own: it disappears with this thread.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (connection, handle, _) = rtnetlink::new_connection().unwrap();
            tokio::spawn(connection);
            kernel::set_up(
                &handle,
                "lo",
                kernel::link_index(&handle, "lo").await.unwrap().unwrap(),
            )
            .await
            .unwrap();
            pure_reconcile(count);
            let v4: BTreeSet<IpAddr> = (0..count)
                .map(|i| IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 1)) + i)))
                .collect();
            let v6: BTreeSet<IpAddr> = (0..count)
                .map(|i| {
                    IpAddr::V6(Ipv6Addr::from(
                        u128::from("2001:db8:ffff::1".parse::<Ipv6Addr>().unwrap()) + u128::from(i),
                    ))
                })
                .collect();
            round("IPv4 /32", v4).await;
            round("IPv6 /128", v6).await;
        });
    })
    .join()
    .unwrap();
}

fn pure_reconcile(count: u32) {
    let wanted: BTreeSet<IpAddr> = (0..count)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0xc612_0001 + i)))
        .collect();
    let present: Vec<PresentAddress> = wanted
        .iter()
        .map(|&address| PresentAddress {
            address,
            prefix_len: 32,
            owned: true,
        })
        .collect();
    let start = Instant::now();
    let requests = reconcile(&wanted, &present);
    println!(
        "pure reconcile, {count} wanted vs {count} present: {:?}, {} requests",
        start.elapsed(),
        requests.len()
    );
}

async fn round(family: &str, wanted: BTreeSet<IpAddr>) {
    let n = wanted.len();
    let addresses = ServiceAddresses::start("lo", OwnershipMode::Auto, Metrics::default())
        .await
        .unwrap();
    let start = Instant::now();
    let report = addresses.set_wanted(wanted.clone()).await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(report.added, n, "{:?}", report.failed.first());
    print_rate(&format!("{family}: add {n}"), n, elapsed);
    addresses.stop().await;

    let start = Instant::now();
    let addresses = ServiceAddresses::start("lo", OwnershipMode::Auto, Metrics::default())
        .await
        .unwrap();
    let started = start.elapsed();
    let report = addresses.set_wanted(wanted).await.unwrap();
    let adopted = start.elapsed();
    let writes = addresses.snapshot().netlink_writes;
    println!(
        "{family}: restart adopting {n}: start (probe + dump) {started:?}, first pass done after {adopted:?}, netlink writes {writes}"
    );
    assert_eq!(
        (report.added, report.removed, writes),
        (0, 0, 0),
        "adoption must not write"
    );

    let start = Instant::now();
    let report = addresses.remove_all_owned().await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(report.removed, n);
    print_rate(&format!("{family}: remove {n}"), n, elapsed);
    addresses.stop().await;
}

fn print_rate(what: &str, messages: usize, elapsed: std::time::Duration) {
    println!(
        "{what}: {elapsed:?}, {:.0} netlink requests/s",
        messages as f64 / elapsed.as_secs_f64()
    );
}
