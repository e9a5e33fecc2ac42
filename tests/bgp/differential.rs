//! Differential test against an independent implementation,
//! netgauze-bgp-pkt 0.13: netgauze decodes what herald encodes (and agrees
//! on every field), and herald decodes what netgauze encodes (and gets back
//! exactly the message it started from). The UPDATEs come from herald's own
//! Adj-RIB-Out over seeded random announcement sets, so the packing at the
//! size limit is exercised too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use herald::bgp::packet::{
    AfiSafi, AsSegment, Capability, GracefulRestartCapability, MAX_EXTENDED_MESSAGE_LEN,
    MAX_MESSAGE_LEN, Message, MpNextHop, Notification, Open, RouteRefresh, Update, cease,
};
use herald::bgp::rib_out::{AdjRibOut, ExportPolicy};
use herald::model::{Community, LargeCommunity, LinkBandwidth, RouteAttributes};
use ipnet::IpNet;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::capabilities::BgpCapability;
use netgauze_bgp_pkt::path_attribute::{AsPath, MpReach, MpUnreach, PathAttributeValue};
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_parse_utils::WritablePdu;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn netgauze_decode(bytes: &[u8]) -> BgpMessage {
    let mut ctx =
        BgpParsingContext::new(true, HashMap::new(), HashMap::new(), true, true, true, true);
    let mut reader = SliceReader::new(bytes);
    let msg = BgpMessage::parse(&mut reader, &mut ctx)
        .unwrap_or_else(|e| panic!("netgauze refused {bytes:02x?}: {e:?}"));
    assert_eq!(reader.remaining(), 0, "netgauze left octets unread");
    msg
}

fn netgauze_encode(msg: &BgpMessage) -> Vec<u8> {
    let mut out = Vec::new();
    msg.write(&mut out).expect("netgauze encodes");
    out
}

fn herald_decode(bytes: &[u8]) -> Message {
    Message::decode(bytes, MAX_EXTENDED_MESSAGE_LEN).expect("herald decodes netgauze's bytes")
}

/// What an UPDATE says, extracted from either implementation's value.
#[derive(Debug, Default, PartialEq, Eq)]
struct Meaning {
    withdrawn: BTreeSet<IpNet>,
    announced: BTreeSet<IpNet>,
    origin: Option<u8>,
    as_path: Vec<u32>,
    next_hop: Option<IpAddr>,
    link_local: Option<Ipv6Addr>,
    med: Option<u32>,
    local_pref: Option<u32>,
    communities: Vec<u32>,
    large: Vec<(u32, u32, u32)>,
    /// Two-octet-AS extended communities: (transitive, sub-type, AS, value).
    extended: Vec<(bool, u8, u16, u32)>,
}

fn meaning_of_herald(u: &Update) -> Meaning {
    let a = &u.attributes;
    let (next_hop, link_local) = match a.mp_reach.as_ref().map(|mp| mp.next_hop) {
        Some(MpNextHop::V6 { global, link_local }) => (Some(IpAddr::V6(global)), link_local),
        Some(MpNextHop::V4(v4)) => (Some(IpAddr::V4(v4)), None),
        None => (a.next_hop.map(IpAddr::V4), None),
    };
    Meaning {
        withdrawn: u.withdrawn_prefixes().collect(),
        announced: u.announced().collect(),
        origin: a.origin.map(|o| o as u8),
        as_path: a
            .as_path
            .iter()
            .flat_map(|p| p.segments.iter())
            .flat_map(|s| match s {
                AsSegment::Sequence(v) => v.clone(),
                other => panic!("unexpected segment {other:?}"),
            })
            .collect(),
        next_hop,
        link_local,
        med: a.med,
        local_pref: a.local_pref,
        communities: a.communities.iter().map(|c| c.0).collect(),
        large: a
            .large_communities
            .iter()
            .map(|c| (c.global_admin, c.local_data_1, c.local_data_2))
            .collect(),
        extended: a
            .extended_communities
            .iter()
            .map(|c| {
                let [high, sub, a0, a1, v0, v1, v2, v3] = c.0;
                (
                    high & 0x40 == 0,
                    sub,
                    u16::from_be_bytes([a0, a1]),
                    u32::from_be_bytes([v0, v1, v2, v3]),
                )
            })
            .collect(),
    }
}

fn meaning_of_netgauze(msg: &BgpMessage) -> Meaning {
    let BgpMessage::Update(u) = msg else {
        panic!("not an UPDATE: {msg:?}")
    };
    let mut m = Meaning::default();
    m.withdrawn.extend(
        u.withdraw_routes()
            .iter()
            .map(|a| IpNet::V4(a.network().address())),
    );
    m.announced
        .extend(u.nlri().iter().map(|a| IpNet::V4(a.network().address())));
    for attr in u.path_attributes() {
        match attr.value() {
            PathAttributeValue::Origin(o) => m.origin = Some(*o as u8),
            PathAttributeValue::AsPath(AsPath::As4PathSegments(segments)) => {
                for s in segments.iter() {
                    m.as_path.extend_from_slice(s.as_numbers());
                }
            }
            PathAttributeValue::NextHop(nh) => m.next_hop = Some(IpAddr::V4(nh.next_hop())),
            PathAttributeValue::MultiExitDiscriminator(med) => m.med = Some(med.metric()),
            PathAttributeValue::LocalPreference(lp) => m.local_pref = Some(lp.metric()),
            PathAttributeValue::Communities(c) => {
                m.communities = c.communities().iter().map(|c| c.value()).collect()
            }
            PathAttributeValue::ExtendedCommunities(c) => {
                use netgauze_bgp_pkt::community::{
                    ExtendedCommunity as Ec, NonTransitiveTwoOctetExtendedCommunity as Non,
                    TransitiveTwoOctetExtendedCommunity as Tra,
                };
                m.extended = c
                    .communities()
                    .iter()
                    .map(|c| match c {
                        Ec::TransitiveTwoOctet(Tra::Unassigned {
                            sub_type,
                            global_admin,
                            local_admin,
                        }) => (true, *sub_type, *global_admin, *local_admin),
                        Ec::NonTransitiveTwoOctet(Non::LinkBandwidth {
                            global_admin,
                            local_admin,
                        }) => (false, 0x04, *global_admin, *local_admin),
                        other => panic!("unexpected extended community {other:?}"),
                    })
                    .collect()
            }
            PathAttributeValue::LargeCommunities(c) => {
                m.large = c
                    .communities()
                    .iter()
                    .map(|c| (c.global_admin(), c.local_data1(), c.local_data2()))
                    .collect()
            }
            PathAttributeValue::MpReach(MpReach::Ipv6Unicast {
                next_hop_global,
                next_hop_local,
                nlri,
            }) => {
                m.next_hop = Some(IpAddr::V6(*next_hop_global));
                m.link_local = *next_hop_local;
                m.announced
                    .extend(nlri.iter().map(|a| IpNet::V6(a.network().address())));
            }
            PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri }) => {
                m.withdrawn
                    .extend(nlri.iter().map(|a| IpNet::V6(a.network().address())));
            }
            other => panic!("unexpected attribute {other:?}"),
        }
    }
    m
}

fn random_attrs(rng: &mut StdRng) -> RouteAttributes {
    let mut a = RouteAttributes::default();
    for _ in 0..rng.random_range(0..4) {
        a.communities.insert(Community(rng.random()));
    }
    for _ in 0..rng.random_range(0..3) {
        a.large_communities.insert(LargeCommunity {
            global_admin: rng.random(),
            local_data_1: rng.random(),
            local_data_2: rng.random(),
        });
    }
    a.med = rng.random_bool(0.5).then(|| rng.random());
    a.local_pref = rng.random_bool(0.5).then(|| rng.random());
    a.link_bandwidth = rng.random_bool(0.5).then(|| {
        LinkBandwidth::new(
            rng.random_range(1..=u32::from(u16::MAX) + 1),
            rng.random_range(0..1 << 24),
            rng.random_bool(0.5),
        )
    });
    a
}

fn random_prefix(rng: &mut StdRng) -> IpNet {
    if rng.random_bool(0.5) {
        let len = if rng.random_bool(0.8) {
            32
        } else {
            rng.random_range(8..=32)
        };
        IpNet::new(
            IpAddr::V4(Ipv4Addr::from(
                0xC612_0000 | rng.random_range(0..0x2_0000u32),
            )),
            len,
        )
        .unwrap()
        .trunc()
    } else {
        let len = if rng.random_bool(0.8) {
            128
        } else {
            rng.random_range(32..=128)
        };
        let addr = 0x2001_0db8u128 << 96 | u128::from(rng.random::<u64>());
        IpNet::new(IpAddr::V6(Ipv6Addr::from(addr)), len)
            .unwrap()
            .trunc()
    }
}

#[test]
fn netgauze_and_herald_agree_on_random_announcement_sets() {
    let mut rng = StdRng::seed_from_u64(4271);
    let mut checked = 0;
    for case in 0..300 {
        let internal = case % 2 == 1;
        let max = if case % 5 == 0 {
            MAX_EXTENDED_MESSAGE_LEN
        } else {
            MAX_MESSAGE_LEN
        };
        let mut rib = AdjRibOut::new(ExportPolicy {
            local_as: if case % 3 == 0 { 4_200_000_001 } else { 65001 },
            internal,
            next_hop_v4: Some(Ipv4Addr::new(192, 0, 2, 10)),
            next_hop_v6: Some((
                "2001:db8::10".parse().unwrap(),
                rng.random_bool(0.5).then(|| "fe80::10".parse().unwrap()),
            )),
            families: vec![AfiSafi::IPV4_UNICAST, AfiSafi::IPV6_UNICAST],
            max_message_len: max,
        });
        let palette: Vec<RouteAttributes> = (0..rng.random_range(1..4))
            .map(|_| random_attrs(&mut rng))
            .collect();
        let mut desired = BTreeMap::new();
        // Mostly small sets, sometimes enough to fill several messages.
        let size = if case % 10 == 0 {
            1500
        } else {
            rng.random_range(1..60)
        };
        for _ in 0..size {
            desired.insert(
                random_prefix(&mut rng),
                palette[rng.random_range(0..palette.len())].clone(),
            );
        }
        let mut updates = rib.sync(&desired, false);
        // Withdraw about half, to exercise withdrawn routes and MP_UNREACH.
        desired.retain(|_, _| rng.random_bool(0.5));
        updates.extend(rib.sync(&desired, case % 4 == 0));
        updates.extend(rib.end_of_rib());
        for update in updates {
            let ours = Message::Update(Box::new(update.clone()));
            let bytes = ours.to_bytes().unwrap();
            assert!(bytes.len() <= max);
            let theirs = netgauze_decode(&bytes);
            assert_eq!(
                meaning_of_netgauze(&theirs),
                meaning_of_herald(&update),
                "case {case}"
            );
            let Message::Update(back) = herald_decode(&netgauze_encode(&theirs)) else {
                panic!("not an UPDATE")
            };
            assert_eq!(*back, update, "case {case}");
            checked += 1;
        }
    }
    assert!(checked > 600, "only {checked} UPDATEs checked");
}

#[test]
fn netgauze_and_herald_agree_on_open_with_every_capability() {
    for asn in [65001, 4_200_000_001] {
        let open = Open::new(
            asn,
            9,
            Ipv4Addr::new(192, 0, 2, 10),
            vec![
                Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
                Capability::Multiprotocol(AfiSafi::IPV6_UNICAST),
                Capability::RouteRefresh,
                Capability::ExtendedMessage,
                Capability::GracefulRestart(GracefulRestartCapability {
                    restart_state: true,
                    notification: false,
                    restart_time: 120,
                    families: vec![
                        (AfiSafi::IPV4_UNICAST, true),
                        (AfiSafi::IPV6_UNICAST, false),
                    ],
                }),
                Capability::FourOctetAs(asn),
            ],
        );
        let bytes = Message::Open(open.clone()).to_bytes().unwrap();
        let BgpMessage::Open(theirs) = netgauze_decode(&bytes) else {
            panic!("not an OPEN")
        };
        assert_eq!(theirs.my_asn4(), asn);
        assert_eq!(theirs.hold_time(), 9);
        assert_eq!(theirs.bgp_id(), Ipv4Addr::new(192, 0, 2, 10));
        let caps = theirs.capabilities();
        assert_eq!(caps.len(), 6);
        let gr = caps
            .iter()
            .find_map(|c| match c {
                BgpCapability::GracefulRestartCapability(gr) => Some(gr),
                _ => None,
            })
            .unwrap();
        assert!(gr.restart());
        assert_eq!(gr.time(), 120);
        assert_eq!(gr.address_families().len(), 2);
        let back = herald_decode(&netgauze_encode(&BgpMessage::Open(theirs)));
        assert_eq!(back, Message::Open(open));
    }
}

#[test]
fn netgauze_and_herald_agree_on_notification_keepalive_and_route_refresh() {
    for ours in [
        Message::Keepalive,
        Message::RouteRefresh(RouteRefresh::new(AfiSafi::IPV6_UNICAST)),
        Message::Notification(Notification::cease_with_communication(
            cease::ADMINISTRATIVE_SHUTDOWN,
            "maintenance",
        )),
        Message::Notification(Notification::new(4, 0, vec![])),
        Message::Notification(Notification::new(3, 2, vec![0x40, 99, 0])),
    ] {
        let bytes = ours.to_bytes().unwrap();
        let theirs = netgauze_decode(&bytes);
        let again = netgauze_encode(&theirs);
        assert_eq!(again, bytes, "{theirs:?}");
        assert_eq!(herald_decode(&again), ours);
    }
}
