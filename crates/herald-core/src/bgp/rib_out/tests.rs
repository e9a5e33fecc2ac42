use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::bgp::packet::{MAX_EXTENDED_MESSAGE_LEN, MAX_MESSAGE_LEN, Message};
use crate::model::{LargeCommunity, LinkBandwidth};

fn policy(internal: bool, max: usize) -> ExportPolicy {
    ExportPolicy {
        local_as: 65001,
        internal,
        next_hop_v4: Some(Ipv4Addr::new(192, 0, 2, 10)),
        next_hop_v6: Some((
            "2001:db8::10".parse().unwrap(),
            Some("fe80::10".parse().unwrap()),
        )),
        families: vec![AfiSafi::IPV4_UNICAST, AfiSafi::IPV6_UNICAST],
        max_message_len: max,
    }
}

fn host(i: u32) -> IpNet {
    IpNet::from(IpAddr::V4(Ipv4Addr::from(0xC612_0000 + i)))
}

fn host6(i: u32) -> IpNet {
    IpNet::from(IpAddr::V6(Ipv6Addr::from(
        0x2001_0db8_0000_0000_0000_0000_0000_0000u128 + u128::from(i),
    )))
}

fn attrs(community: u16) -> RouteAttributes {
    let mut a = RouteAttributes::default();
    a.communities.insert(Community::new(65000, community));
    a
}

/// Encodes, checks the size, decodes, and returns the decoded UPDATEs.
fn wire(updates: &[Update], max: usize) -> Vec<Update> {
    updates
        .iter()
        .map(|u| {
            let bytes = Message::Update(Box::new(u.clone())).to_bytes().unwrap();
            assert!(bytes.len() <= max, "{} octets > {max}", bytes.len());
            match Message::decode(&bytes, max).unwrap() {
                Message::Update(u) => {
                    assert!(u.errors.is_empty(), "{:?}", u.errors);
                    *u
                }
                other => panic!("{other:?}"),
            }
        })
        .collect()
}

/// Route attributes as the peer sees them.
fn seen(pa: &PathAttributes) -> RouteAttributes {
    RouteAttributes {
        communities: pa.communities.iter().copied().collect(),
        large_communities: pa.large_communities.iter().copied().collect(),
        med: pa.med,
        local_pref: pa.local_pref,
        link_bandwidth: pa
            .extended_communities
            .iter()
            .find_map(|c| LinkBandwidth::from_extended(*c)),
    }
}

#[test]
fn ebgp_routes_get_our_as_next_hop_self_and_no_local_pref() {
    let mut rib = AdjRibOut::new(policy(false, MAX_MESSAGE_LEN));
    let mut a = attrs(100);
    a.local_pref = Some(200);
    a.med = Some(7);
    let desired = BTreeMap::from([(host(1), a.clone()), (host6(1), a)]);
    let updates = wire(&rib.sync(&desired, false), MAX_MESSAGE_LEN);
    assert_eq!(updates.len(), 2);
    for u in &updates {
        let pa = &u.attributes;
        assert_eq!(pa.as_path, Some(AsPath::sequence(vec![65001])));
        assert_eq!(pa.local_pref, None);
        assert_eq!(pa.med, Some(7));
        assert_eq!(pa.origin, Some(Origin::Igp));
    }
    assert_eq!(
        updates[0].attributes.next_hop,
        Some(Ipv4Addr::new(192, 0, 2, 10))
    );
    let mp = updates[1].attributes.mp_reach.as_ref().unwrap();
    assert_eq!(
        mp.next_hop,
        MpNextHop::V6 {
            global: "2001:db8::10".parse().unwrap(),
            link_local: Some("fe80::10".parse().unwrap())
        }
    );
    assert_eq!(rib.announced(AfiSafi::IPV4_UNICAST), 1);
    assert_eq!(rib.announced(AfiSafi::IPV6_UNICAST), 1);
}

#[test]
fn ibgp_routes_get_local_pref_and_no_prepend() {
    let mut rib = AdjRibOut::new(policy(true, MAX_MESSAGE_LEN));
    let mut preferred = attrs(1);
    preferred.local_pref = Some(300);
    let desired = BTreeMap::from([(host(1), attrs(2)), (host(2), preferred)]);
    let updates = wire(&rib.sync(&desired, false), MAX_MESSAGE_LEN);
    let prefs: BTreeSet<Option<u32>> = updates.iter().map(|u| u.attributes.local_pref).collect();
    assert_eq!(prefs, BTreeSet::from([Some(100), Some(300)]));
    assert!(
        updates
            .iter()
            .all(|u| u.attributes.as_path == Some(AsPath::default()))
    );
}

#[test]
fn an_unchanged_set_sends_nothing_and_a_change_sends_only_the_difference() {
    let mut rib = AdjRibOut::new(policy(false, MAX_MESSAGE_LEN));
    let mut desired: BTreeMap<IpNet, RouteAttributes> =
        (0..10).map(|i| (host(i), attrs(1))).collect();
    rib.sync(&desired, false);
    assert!(rib.sync(&desired, false).is_empty());
    desired.remove(&host(3));
    desired.insert(host(4), attrs(2));
    desired.insert(host(20), attrs(1));
    let updates = wire(&rib.sync(&desired, false), MAX_MESSAGE_LEN);
    assert_eq!(
        updates[0].withdrawn,
        vec![host(3).to_string().parse().unwrap()]
    );
    let announced: BTreeSet<IpNet> = updates.iter().flat_map(|u| u.announced()).collect();
    assert_eq!(announced, BTreeSet::from([host(4), host(20)]));
}

#[test]
fn a_new_link_bandwidth_is_one_update_that_replaces_the_route_without_a_withdrawal() {
    let mut rib = AdjRibOut::new(policy(false, MAX_MESSAGE_LEN));
    let weighted = |bytes| {
        let mut a = attrs(1);
        a.link_bandwidth = Some(LinkBandwidth::new(65001, bytes, true));
        a
    };
    let mut desired = BTreeMap::from([
        (host(1), weighted(2_000_000)),
        (host(2), weighted(1_000_000)),
    ]);
    rib.sync(&desired, false);
    desired.insert(host(1), weighted(3_000_000));
    let updates = wire(&rib.sync(&desired, false), MAX_MESSAGE_LEN);
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0].withdrawn_prefixes().count(), 0);
    assert_eq!(updates[0].announced().collect::<Vec<_>>(), vec![host(1)]);
    assert_eq!(seen(&updates[0].attributes), weighted(3_000_000));
}

#[test]
fn prefixes_sharing_attributes_share_updates_up_to_the_size_limit() {
    let mut rib = AdjRibOut::new(policy(false, MAX_MESSAGE_LEN));
    let desired: BTreeMap<IpNet, RouteAttributes> =
        (0..10_000).map(|i| (host(i), attrs(1))).collect();
    let updates = rib.sync(&desired, false);
    // 4096 - 19 - 4 - attributes (4 + 9 + 7 + 7 = 27) leaves 4046 octets:
    // 809 /32s of 5 octets each per message.
    assert_eq!(updates[0].nlri.len(), 809);
    assert_eq!(updates.len(), 10_000usize.div_ceil(809));
    let bytes = Message::Update(Box::new(updates[0].clone()))
        .to_bytes()
        .unwrap();
    assert!(bytes.len() > MAX_MESSAGE_LEN - 5 && bytes.len() <= MAX_MESSAGE_LEN);
}

#[test]
fn route_refresh_resends_the_whole_adj_rib_out_of_the_family() {
    let mut rib = AdjRibOut::new(policy(false, MAX_MESSAGE_LEN));
    let desired: BTreeMap<IpNet, RouteAttributes> = (0..2000)
        .map(|i| (host(i), attrs((i % 3) as u16)))
        .chain((0..5).map(|i| (host6(i), attrs(9))))
        .collect();
    rib.sync(&desired, false);
    let again = wire(&rib.refresh(AfiSafi::IPV4_UNICAST), MAX_MESSAGE_LEN);
    let mut seen_routes = BTreeMap::new();
    for u in &again {
        for p in u.announced() {
            seen_routes.insert(p, seen(&u.attributes));
        }
    }
    let v4: BTreeMap<IpNet, RouteAttributes> = desired
        .into_iter()
        .filter(|(p, _)| matches!(p, IpNet::V4(_)))
        .collect();
    assert_eq!(seen_routes, v4);
}

#[test]
fn graceful_shutdown_reannounces_everything_with_the_community_and_back() {
    let mut rib = AdjRibOut::new(policy(false, MAX_MESSAGE_LEN));
    let desired: BTreeMap<IpNet, RouteAttributes> = (0..3)
        .map(|i| (host(i), attrs(1)))
        .chain([(host6(0), attrs(1))])
        .collect();
    rib.sync(&desired, false);
    let drained = wire(&rib.sync(&desired, true), MAX_MESSAGE_LEN);
    let announced: BTreeSet<IpNet> = drained.iter().flat_map(|u| u.announced()).collect();
    assert_eq!(announced, desired.keys().copied().collect());
    assert!(drained.iter().all(|u| {
        u.attributes
            .communities
            .contains(&Community::GRACEFUL_SHUTDOWN)
            && u.attributes.communities.contains(&Community::new(65000, 1))
    }));
    let restored = wire(&rib.sync(&desired, false), MAX_MESSAGE_LEN);
    assert_eq!(restored.iter().flat_map(|u| u.announced()).count(), 4);
    assert!(restored.iter().all(|u| {
        !u.attributes
            .communities
            .contains(&Community::GRACEFUL_SHUTDOWN)
    }));
}

#[test]
fn routes_of_a_family_without_next_hop_or_agreement_are_not_sent() {
    let mut p = policy(false, MAX_MESSAGE_LEN);
    p.next_hop_v6 = None;
    p.families = vec![AfiSafi::IPV4_UNICAST, AfiSafi::IPV6_UNICAST];
    let mut rib = AdjRibOut::new(p);
    let desired = BTreeMap::from([(host(1), attrs(1)), (host6(1), attrs(1))]);
    let updates = rib.sync(&desired, false);
    assert_eq!(updates.len(), 1);
    assert_eq!(rib.unannounceable(), &BTreeSet::from([host6(1)]));
}

#[test]
fn attributes_too_large_for_one_message_are_refused_not_sent_over_the_limit() {
    let mut rib = AdjRibOut::new(policy(false, MAX_MESSAGE_LEN));
    let mut huge = RouteAttributes::default();
    for i in 0..1100u16 {
        huge.communities.insert(Community::new(1, i));
    }
    let desired = BTreeMap::from([(host(1), huge), (host(2), attrs(1))]);
    let updates = wire(&rib.sync(&desired, false), MAX_MESSAGE_LEN);
    assert_eq!(updates.len(), 1);
    assert_eq!(rib.unannounceable(), &BTreeSet::from([host(1)]));
}

#[test]
fn end_of_rib_is_sent_for_every_agreed_family() {
    let rib = AdjRibOut::new(policy(false, MAX_MESSAGE_LEN));
    let families: Vec<_> = rib
        .end_of_rib()
        .iter()
        .map(|u| u.end_of_rib_family())
        .collect();
    assert_eq!(
        families,
        vec![Some(AfiSafi::IPV4_UNICAST), Some(AfiSafi::IPV6_UNICAST)]
    );
}

fn random_attrs(rng: &mut StdRng) -> RouteAttributes {
    let mut a = RouteAttributes::default();
    // Some groups carry many communities so the attribute size matters.
    let n = if rng.random_bool(0.1) {
        rng.random_range(50..400)
    } else {
        rng.random_range(0..3)
    };
    for _ in 0..n {
        a.communities.insert(Community(rng.random_range(0..8)));
    }
    for _ in 0..rng.random_range(0..3) {
        a.large_communities.insert(LargeCommunity {
            global_admin: 65000,
            local_data_1: rng.random_range(0..3),
            local_data_2: 0,
        });
    }
    if rng.random_bool(0.3) {
        a.med = Some(rng.random_range(0..3));
    }
    if rng.random_bool(0.3) {
        a.local_pref = Some(rng.random_range(50..60));
    }
    if rng.random_bool(0.3) {
        a.link_bandwidth = Some(LinkBandwidth::new(
            64601,
            rng.random_range(1..4) * 125_000,
            rng.random_bool(0.5),
        ));
    }
    a
}

fn random_set(rng: &mut StdRng, size: u32) -> BTreeMap<IpNet, RouteAttributes> {
    let palette: Vec<RouteAttributes> = (0..rng.random_range(1..6))
        .map(|_| random_attrs(rng))
        .collect();
    (0..size)
        .map(|_| {
            let i = rng.random_range(0..size * 2);
            let prefix = if rng.random_bool(0.5) {
                host(i)
            } else {
                host6(i)
            };
            (prefix, palette[rng.random_range(0..palette.len())].clone())
        })
        .collect()
}

#[test]
fn every_update_fits_and_the_updates_carry_exactly_the_difference() {
    let mut rng = StdRng::seed_from_u64(8326);
    for case in 0..24 {
        let max = if case % 3 == 0 {
            MAX_EXTENDED_MESSAGE_LEN
        } else {
            MAX_MESSAGE_LEN
        };
        let internal = case % 2 == 0;
        let mut rib = AdjRibOut::new(policy(internal, max));
        let mut peer: BTreeMap<IpNet, RouteAttributes> = BTreeMap::new();
        for _step in 0..4 {
            let size = rng.random_range(0..800);
            let desired = random_set(&mut rng, size);
            let gshut = rng.random_bool(0.2);
            let before = peer.clone();
            let updates = wire(&rib.sync(&desired, gshut), max);
            let mut announced = BTreeSet::new();
            let mut withdrawn = BTreeSet::new();
            for u in &updates {
                for p in u.withdrawn_prefixes() {
                    assert!(withdrawn.insert(p), "{p} withdrawn twice");
                    peer.remove(&p);
                }
                let attrs = seen(&u.attributes);
                if !internal {
                    assert_eq!(attrs.local_pref, None);
                }
                for p in u.announced() {
                    assert!(announced.insert(p), "{p} announced twice");
                    peer.insert(p, attrs.clone());
                }
            }
            let expected: BTreeMap<IpNet, RouteAttributes> = desired
                .iter()
                .filter(|(p, _)| !rib.unannounceable().contains(p))
                .map(|(p, a)| {
                    let mut a = a.clone();
                    a.local_pref = internal.then(|| a.local_pref.unwrap_or(DEFAULT_LOCAL_PREF));
                    if gshut {
                        a.communities.insert(Community::GRACEFUL_SHUTDOWN);
                    }
                    (*p, a)
                })
                .collect();
            assert_eq!(peer, expected, "case {case}");
            // Exactly the difference: nothing unchanged is re-sent.
            for p in &announced {
                assert_ne!(before.get(p), expected.get(p), "{p} re-sent unchanged");
            }
            for p in &withdrawn {
                assert!(!expected.contains_key(p));
            }
        }
    }
}
