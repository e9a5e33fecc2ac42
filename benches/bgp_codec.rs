//! UPDATE encoding and decoding of 100,000 /32s (198.18.0.0/15), packed by
//! the Adj-RIB-Out into 4096-octet messages: the work herald does when a
//! session comes up with a large service set.
//!
//! Run: `cargo bench --bench bgp_codec` (short measurement windows).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald::bgp::packet::{AfiSafi, MAX_MESSAGE_LEN, Message, frame_len};
use herald::bgp::rib_out::{AdjRibOut, ExportPolicy};
use herald::model::{Community, RouteAttributes};
use ipnet::IpNet;

const PREFIXES: u32 = 100_000;

fn desired() -> BTreeMap<IpNet, RouteAttributes> {
    let mut attributes = RouteAttributes::default();
    attributes.communities.insert(Community::new(65000, 100));
    (0..PREFIXES)
        .map(|i| {
            (
                IpNet::from(IpAddr::V4(Ipv4Addr::from(0xC612_0000 + i))),
                attributes.clone(),
            )
        })
        .collect()
}

fn policy() -> ExportPolicy {
    ExportPolicy {
        local_as: 64601,
        internal: false,
        next_hop_v4: Some(Ipv4Addr::new(192, 0, 2, 11)),
        next_hop_v6: None,
        families: vec![AfiSafi::IPV4_UNICAST],
        max_message_len: MAX_MESSAGE_LEN,
    }
}

/// Diff, pack and encode: the bytes a new session sends.
fn encode_all(desired: &BTreeMap<IpNet, RouteAttributes>) -> Vec<u8> {
    let mut rib = AdjRibOut::new(policy());
    let mut out = Vec::with_capacity(600 * 1024);
    for update in rib.sync(desired, false) {
        Message::Update(Box::new(update)).encode(&mut out).unwrap();
    }
    out
}

/// Frames and decodes a stream, counting the prefixes.
fn decode_all(stream: &[u8]) -> usize {
    let mut rest = stream;
    let mut prefixes = 0;
    while let Ok(Some(len)) = frame_len(rest, MAX_MESSAGE_LEN) {
        let (frame, tail) = rest.split_at(len);
        if let Ok(Message::Update(u)) = Message::decode(frame, MAX_MESSAGE_LEN) {
            prefixes += u.nlri.len();
        }
        rest = tail;
    }
    prefixes
}

fn codec(c: &mut Criterion) {
    let desired = desired();
    let stream = encode_all(&desired);
    assert_eq!(decode_all(&stream), PREFIXES as usize);
    println!(
        "100k /32s: {} octets in {} UPDATEs",
        stream.len(),
        stream.len().div_ceil(MAX_MESSAGE_LEN)
    );
    let mut group = c.benchmark_group("bgp_update_100k_ipv4_32");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(u64::from(PREFIXES)));
    group.bench_function("pack_and_encode", |b| {
        b.iter(|| encode_all(black_box(&desired)))
    });
    group.bench_function("decode", |b| b.iter(|| decode_all(black_box(&stream))));
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
