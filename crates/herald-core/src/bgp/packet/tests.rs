//! Test vectors (bytes paired with values, checked both ways), error
//! mappings, and the no-panic property over random and truncated input.

use std::net::{Ipv4Addr, Ipv6Addr};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::model::{Community, ExtendedCommunity, LargeCommunity, LinkBandwidth};

fn header(len: u16, kind: u8) -> Vec<u8> {
    let mut v = vec![0xFF; 16];
    v.extend_from_slice(&len.to_be_bytes());
    v.push(kind);
    v
}

fn with_header(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = header((19 + body.len()) as u16, kind);
    v.extend_from_slice(body);
    v
}

/// Checks a vector in both directions.
fn vector(bytes: &[u8], message: Message) {
    assert_eq!(message.to_bytes().unwrap(), bytes, "encoding {message:?}");
    assert_eq!(
        Message::decode(bytes, MAX_MESSAGE_LEN).unwrap(),
        message,
        "decoding"
    );
    assert_eq!(frame_len(bytes, MAX_MESSAGE_LEN), Ok(Some(bytes.len())));
}

fn decode_err(bytes: &[u8]) -> Notification {
    Message::decode(bytes, MAX_MESSAGE_LEN)
        .expect_err("must not decode")
        .notification()
}

fn update(u: Update) -> Message {
    Message::Update(Box::new(u))
}

#[test]
fn keepalive_is_the_bare_header() {
    vector(&header(19, 4), Message::Keepalive);
}

#[test]
fn open_with_capabilities_matches_its_bytes() {
    #[rustfmt::skip]
    let body = [
        4, 0xFD, 0xE9, 0, 90, 192, 0, 2, 1, // version, AS 65001, hold 90, id
        32, // optional parameters length
        2, 6, 1, 4, 0, 1, 0, 1, // MP IPv4 unicast
        2, 6, 1, 4, 0, 2, 0, 1, // MP IPv6 unicast
        2, 2, 2, 0, // route refresh
        2, 6, 65, 4, 0, 0, 0xFD, 0xE9, // 4-octet AS 65001
        2, 8, 64, 6, 0x80, 120, 0, 1, 1, 0x80, // GR: R, 120 s, IPv4 F
    ];
    let mut body = body.to_vec();
    body[9] = (body.len() - 10) as u8;
    let open = Open::new(
        65001,
        90,
        Ipv4Addr::new(192, 0, 2, 1),
        vec![
            Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
            Capability::Multiprotocol(AfiSafi::IPV6_UNICAST),
            Capability::RouteRefresh,
            Capability::FourOctetAs(65001),
            Capability::GracefulRestart(GracefulRestartCapability {
                restart_state: true,
                notification: false,
                restart_time: 120,
                families: vec![(AfiSafi::IPV4_UNICAST, true)],
            }),
        ],
    );
    assert_eq!(open.asn(), 65001);
    vector(&with_header(1, &body), Message::Open(open));
}

#[test]
fn open_with_a_four_octet_as_carries_as_trans() {
    let open = Open::new(4_200_000_000, 9, Ipv4Addr::new(192, 0, 2, 2), vec![]);
    assert_eq!(open.my_as, AS_TRANS);
    assert_eq!(open.asn(), 4_200_000_000);
    #[rustfmt::skip]
    let body = [4, 0x5B, 0xA0, 0, 9, 192, 0, 2, 2, 8, 2, 6, 65, 4, 0xFA, 0x56, 0xEA, 0x00];
    vector(&with_header(1, &body), Message::Open(open));
}

#[test]
fn unknown_capabilities_are_kept_raw() {
    #[rustfmt::skip]
    let body = [4, 0, 1, 0, 3, 192, 0, 2, 3, 7, 2, 5, 73, 3, b'a', b'b', b'c'];
    let open = Open {
        my_as: 1,
        hold_time: 3,
        bgp_id: Ipv4Addr::new(192, 0, 2, 3),
        capabilities: vec![Capability::Unknown {
            code: 73,
            value: b"abc".to_vec(),
        }],
    };
    vector(&with_header(1, &body), Message::Open(open));
}

#[test]
fn ipv4_update_with_communities_matches_its_bytes() {
    #[rustfmt::skip]
    let body = [
        0, 0, // no withdrawn routes
        0, 34, // path attributes length
        0x40, 1, 1, 0, // ORIGIN IGP
        0x40, 2, 6, 2, 1, 0, 0, 0xFD, 0xE9, // AS_PATH SEQUENCE [65001]
        0x40, 3, 4, 192, 0, 2, 1, // NEXT_HOP
        0x80, 4, 4, 0, 0, 0, 5, // MED 5
        0xC0, 8, 4, 0xFD, 0xE8, 0, 100, // COMMUNITIES 65000:100
        32, 203, 0, 113, 10, // NLRI 203.0.113.10/32
    ];
    let u = Update {
        nlri: vec!["203.0.113.10/32".parse().unwrap()],
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(vec![65001])),
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
            med: Some(5),
            communities: vec![Community::new(65000, 100)],
            ..PathAttributes::default()
        },
        ..Update::default()
    };
    vector(&with_header(2, &body), update(u));
}

/// The link-bandwidth community in both encodings, as bytes and as values:
/// AS 64601, 2,000,000 bytes/s (IEEE 754: 0x49F42400), then
/// 1,000,000 bytes/s (0x49742400).
#[test]
fn link_bandwidth_communities_match_their_bytes_in_both_encodings() {
    let cases: [(LinkBandwidth, [u8; 8]); 4] = [
        (
            LinkBandwidth::new(64601, 2_000_000, true),
            [0x00, 0x04, 0xFC, 0x59, 0x49, 0xF4, 0x24, 0x00],
        ),
        (
            LinkBandwidth::new(64601, 1_000_000, false),
            [0x40, 0x04, 0xFC, 0x59, 0x49, 0x74, 0x24, 0x00],
        ),
        // A four-octet AS does not fit: AS_TRANS (23456 = 0x5BA0).
        (
            LinkBandwidth::new(4_200_000_000, 125_000, true),
            [0x00, 0x04, 0x5B, 0xA0, 0x47, 0xF4, 0x24, 0x00],
        ),
        (
            LinkBandwidth::new(64601, 0, true),
            [0x00, 0x04, 0xFC, 0x59, 0, 0, 0, 0],
        ),
    ];
    for (value, bytes) in cases {
        assert_eq!(value.to_extended(), ExtendedCommunity(bytes), "{value:?}");
        assert_eq!(
            LinkBandwidth::from_extended(ExtendedCommunity(bytes)),
            Some(value),
            "{bytes:02X?}"
        );
    }
    assert_eq!(
        LinkBandwidth::new(4_200_000_000, 1, true).asn,
        LinkBandwidth::AS_TRANS
    );
    // Not link bandwidth: another sub-type, a type with the IANA bit set
    // (0x80), a negative or a not-a-number bandwidth.
    for bytes in [
        [0x00, 0x02, 0xFC, 0x59, 0, 0, 0, 1],
        [0x80, 0x04, 0xFC, 0x59, 0x49, 0x74, 0x24, 0x00],
        [0x00, 0x04, 0xFC, 0x59, 0xC9, 0x74, 0x24, 0x00],
        [0x00, 0x04, 0xFC, 0x59, 0x7F, 0xC0, 0x00, 0x00],
    ] {
        assert_eq!(
            LinkBandwidth::from_extended(ExtendedCommunity(bytes)),
            None,
            "{bytes:02X?}"
        );
    }
}

#[test]
fn ipv4_update_with_an_extended_community_matches_its_bytes() {
    #[rustfmt::skip]
    let body = [
        0, 0, // no withdrawn routes
        0, 31, // path attributes length
        0x40, 1, 1, 0, // ORIGIN IGP
        0x40, 2, 6, 2, 1, 0, 0, 0xFC, 0x59, // AS_PATH SEQUENCE [64601]
        0x40, 3, 4, 192, 0, 2, 11, // NEXT_HOP
        0xC0, 16, 8, 0x00, 0x04, 0xFC, 0x59, 0x49, 0xF4, 0x24, 0x00, // LB 64601:2e6
        32, 203, 0, 113, 10, // NLRI 203.0.113.10/32
    ];
    let u = Update {
        nlri: vec!["203.0.113.10/32".parse().unwrap()],
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(vec![64601])),
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 11)),
            extended_communities: vec![LinkBandwidth::new(64601, 2_000_000, true).to_extended()],
            ..PathAttributes::default()
        },
        ..Update::default()
    };
    vector(&with_header(2, &body), update(u));
}

/// The UPDATE fuzz target's seed reaches the link-bandwidth decoder with
/// both encodings.
#[test]
fn the_update_fuzz_seed_carries_both_link_bandwidth_encodings() {
    let seed = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/seeds/bgp_update/link-bandwidth"
    ));
    let update = Update::decode_body(seed).unwrap();
    assert!(update.errors.is_empty(), "{:?}", update.errors);
    let found: Vec<LinkBandwidth> = update
        .attributes
        .extended_communities
        .iter()
        .filter_map(|c| LinkBandwidth::from_extended(*c))
        .collect();
    assert_eq!(
        found,
        vec![
            LinkBandwidth::new(64601, 2_000_000, true),
            LinkBandwidth::new(4_200_000_000, 1_000_000, false),
        ]
    );
}

#[test]
fn ipv6_update_carries_global_and_link_local_next_hop() {
    let global: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let ll: Ipv6Addr = "fe80::1".parse().unwrap();
    let mut body = vec![0, 0, 0, 0];
    body.extend_from_slice(&[0x40, 1, 1, 0, 0x40, 2, 0]); // ORIGIN, empty AS_PATH
    body.extend_from_slice(&[0x40, 5, 4, 0, 0, 0, 100]); // LOCAL_PREF 100
    body.extend_from_slice(&[0x80, 14, 54, 0, 2, 1, 32]); // MP_REACH, nh len 32
    body.extend_from_slice(&global.octets());
    body.extend_from_slice(&ll.octets());
    body.push(0);
    body.push(128);
    body.extend_from_slice(&"2001:db8::10".parse::<Ipv6Addr>().unwrap().octets());
    body.extend_from_slice(&[0xC0, 32, 12, 0, 0, 0xFD, 0xE8, 0, 0, 0, 1, 0, 0, 0, 2]);
    let attrs_len = (body.len() - 4) as u16;
    body[2..4].copy_from_slice(&attrs_len.to_be_bytes());
    let u = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            local_pref: Some(100),
            mp_reach: Some(MpReach {
                family: AfiSafi::IPV6_UNICAST,
                next_hop: MpNextHop::V6 {
                    global,
                    link_local: Some(ll),
                },
                nlri: vec!["2001:db8::10/128".parse().unwrap()],
            }),
            large_communities: vec![LargeCommunity {
                global_admin: 65000,
                local_data_1: 1,
                local_data_2: 2,
            }],
            ..PathAttributes::default()
        },
        ..Update::default()
    };
    vector(&with_header(2, &body), update(u));
}

#[test]
fn end_of_rib_markers_match_rfc_4724() {
    let v4 = Update::end_of_rib(AfiSafi::IPV4_UNICAST);
    vector(&with_header(2, &[0, 0, 0, 0]), update(v4.clone()));
    assert_eq!(v4.end_of_rib_family(), Some(AfiSafi::IPV4_UNICAST));
    let v6 = Update::end_of_rib(AfiSafi::IPV6_UNICAST);
    vector(
        &with_header(2, &[0, 0, 0, 6, 0x80, 15, 3, 0, 2, 1]),
        update(v6.clone()),
    );
    assert_eq!(v6.end_of_rib_family(), Some(AfiSafi::IPV6_UNICAST));
    let mut not_eor = v6;
    not_eor.attributes.origin = Some(Origin::Igp);
    assert_eq!(not_eor.end_of_rib_family(), None);
}

#[test]
fn ipv4_withdrawals_and_ipv6_unreach_match_their_bytes() {
    let mut body = vec![0, 5, 32, 203, 0, 113, 10, 0, 23, 0x80, 15, 20, 0, 2, 1, 128];
    body.extend_from_slice(&"2001:db8::10".parse::<Ipv6Addr>().unwrap().octets());
    let u = Update {
        withdrawn: vec!["203.0.113.10/32".parse().unwrap()],
        attributes: PathAttributes {
            mp_unreach: Some(MpUnreach {
                family: AfiSafi::IPV6_UNICAST,
                withdrawn: vec!["2001:db8::10/128".parse().unwrap()],
            }),
            ..PathAttributes::default()
        },
        ..Update::default()
    };
    vector(&with_header(2, &body), update(u));
}

#[test]
fn unknown_optional_transitive_attributes_pass_through_in_type_order() {
    #[rustfmt::skip]
    let body = [
        0, 0, 0, 11,
        0x40, 1, 1, 2, // ORIGIN INCOMPLETE
        0xE0, 30, 1, 7, // unknown optional transitive partial, type 30
        0xC0, 99, 0, // unknown optional transitive, type 99, empty
    ];
    let u = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Incomplete),
            unknown: vec![
                RawAttribute {
                    flags: 0xE0,
                    type_code: 30,
                    value: vec![7],
                },
                RawAttribute {
                    flags: 0xC0,
                    type_code: 99,
                    value: vec![],
                },
            ],
            ..PathAttributes::default()
        },
        ..Update::default()
    };
    vector(&with_header(2, &body), update(u));
}

#[test]
fn long_attributes_use_the_extended_length_bit() {
    let communities: Vec<Community> = (0..100).map(|i| Community::new(65000, i)).collect();
    let u = Update {
        attributes: PathAttributes {
            communities: communities.clone(),
            ..PathAttributes::default()
        },
        ..Update::default()
    };
    let bytes = update(u.clone()).to_bytes().unwrap();
    assert_eq!(&bytes[23..27], &[0xD0, 8, 0x01, 0x90]);
    assert_eq!(Message::decode(&bytes, MAX_MESSAGE_LEN).unwrap(), update(u));
}

#[test]
fn notification_carries_the_shutdown_communication() {
    let n = Notification::cease_with_communication(cease::ADMINISTRATIVE_SHUTDOWN, "maintenance");
    let mut body = vec![6, 2, 11];
    body.extend_from_slice(b"maintenance");
    vector(&with_header(3, &body), Message::Notification(n.clone()));
    assert_eq!(n.shutdown_communication().as_deref(), Some("maintenance"));
    assert_eq!(
        n.to_string(),
        "cease: administrative shutdown (6/2): \"maintenance\""
    );
}

#[test]
fn shutdown_communication_is_cut_at_255_octets_on_a_character_boundary() {
    let text = "é".repeat(200); // 400 octets
    let n = Notification::cease_with_communication(cease::ADMINISTRATIVE_RESET, &text);
    assert_eq!(n.data[0], 254);
    assert_eq!(n.shutdown_communication().unwrap(), "é".repeat(127));
}

#[test]
fn bfd_down_is_cease_subcode_10() {
    let n = Notification::new(error_code::CEASE, cease::BFD_DOWN, vec![]);
    vector(&with_header(3, &[6, 10]), Message::Notification(n.clone()));
    assert_eq!(n.describe(), "cease: BFD down");
    assert_eq!(n.shutdown_communication(), None);
}

#[test]
fn route_refresh_matches_its_bytes() {
    vector(
        &with_header(5, &[0, 2, 0, 1]),
        Message::RouteRefresh(RouteRefresh::new(AfiSafi::IPV6_UNICAST)),
    );
    let n = decode_err(&with_header(5, &[0, 2, 0, 1, 0]));
    assert_eq!((n.code, n.subcode), (7, 1));
}

#[test]
fn header_errors_map_to_code_1_with_the_offending_field() {
    let mut bad_marker = header(19, 4);
    bad_marker[3] = 0;
    assert_eq!(decode_err(&bad_marker), Notification::new(1, 1, vec![]));
    assert_eq!(
        decode_err(&header(4097, 2)),
        Notification::new(1, 2, vec![0x10, 0x01])
    );
    assert_eq!(
        decode_err(&header(20, 4)),
        Notification::new(1, 2, vec![0, 20])
    );
    assert_eq!(
        decode_err(&header(22, 2)),
        Notification::new(1, 2, vec![0, 22])
    );
    assert_eq!(decode_err(&header(19, 9)), Notification::new(1, 3, vec![9]));
    // RFC 8654: 4097 octets are fine once extended messages are agreed.
    assert_eq!(
        frame_len(&header(4097, 2), MAX_EXTENDED_MESSAGE_LEN),
        Ok(Some(4097))
    );
    assert_eq!(frame_len(&header(19, 4)[..18], MAX_MESSAGE_LEN), Ok(None));
}

#[test]
fn open_errors_map_to_their_subcodes() {
    let version3 = with_header(1, &[3, 0, 1, 0, 90, 192, 0, 2, 1, 0]);
    assert_eq!(decode_err(&version3), Notification::new(2, 1, vec![0, 4]));
    let bad_param = with_header(1, &[4, 0, 1, 0, 90, 192, 0, 2, 1, 3, 1, 1, 0]);
    assert_eq!(decode_err(&bad_param).subcode, 4);
    let overrun = with_header(1, &[4, 0, 1, 0, 90, 192, 0, 2, 1, 3, 2, 5, 0]);
    assert_eq!(decode_err(&overrun).subcode, 0);
    let bad_mp = with_header(1, &[4, 0, 1, 0, 90, 192, 0, 2, 1, 4, 2, 2, 1, 0]);
    assert_eq!(decode_err(&bad_mp).code, 2);
    let unsupported = OpenError::UnsupportedCapability(vec![Capability::FourOctetAs(65001)]);
    assert_eq!(
        unsupported.notification(),
        Notification::new(2, 7, vec![65, 4, 0, 0, 0xFD, 0xE9])
    );
}

fn decode_update(body: &[u8]) -> Result<Update, Notification> {
    match Message::decode(&with_header(2, body), MAX_MESSAGE_LEN) {
        Ok(Message::Update(u)) => Ok(*u),
        Ok(other) => panic!("decoded {other:?}"),
        Err(e) => Err(e.notification()),
    }
}

fn attrs_then_nlri(attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0];
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(attrs);
    body.extend_from_slice(nlri);
    body
}

const GOOD_ATTRS: [u8; 18] = [
    0x40, 1, 1, 0, 0x40, 2, 6, 2, 1, 0, 0, 0xFD, 0xE9, 0x40, 3, 4, 192, 0,
];

fn good_attrs() -> Vec<u8> {
    let mut a = GOOD_ATTRS.to_vec();
    a.extend_from_slice(&[2, 1]);
    a
}

const NLRI: [u8; 5] = [32, 203, 0, 113, 10];

#[test]
fn unrecognized_well_known_attribute_resets_the_session_with_the_attribute() {
    let mut attrs = good_attrs();
    attrs.extend_from_slice(&[0x40, 99, 2, 0xAB, 0xCD]);
    let n = decode_update(&attrs_then_nlri(&attrs, &NLRI)).unwrap_err();
    assert_eq!(n, Notification::new(3, 2, vec![0x40, 99, 2, 0xAB, 0xCD]));
}

#[test]
fn truncated_nlri_is_an_invalid_network_field() {
    let n = decode_update(&attrs_then_nlri(&good_attrs(), &[32, 203, 0])).unwrap_err();
    assert_eq!((n.code, n.subcode), (3, 10));
    let n = decode_update(&attrs_then_nlri(&good_attrs(), &[33, 203, 0, 113, 10, 1])).unwrap_err();
    assert_eq!((n.code, n.subcode), (3, 10));
}

#[test]
fn lengths_beyond_the_message_are_a_malformed_attribute_list() {
    let n = decode_update(&[0, 9, 0, 0]).unwrap_err();
    assert_eq!((n.code, n.subcode), (3, 1));
    let n = decode_update(&[0, 0, 0, 9, 0x40, 1, 1, 0]).unwrap_err();
    assert_eq!((n.code, n.subcode), (3, 1));
}

#[test]
fn malformed_origin_is_treat_as_withdraw() {
    let mut attrs = good_attrs();
    attrs[2] = 2;
    attrs.insert(4, 0);
    let u = decode_update(&attrs_then_nlri(&attrs, &NLRI)).unwrap();
    assert_eq!(u.disposition(), Some(Disposition::TreatAsWithdraw));
    assert_eq!(u.errors[0].type_code, attribute_type::ORIGIN);
    assert_eq!(u.errors[0].notification().subcode, 5);
    let mut attrs = good_attrs();
    attrs[3] = 7;
    let u = decode_update(&attrs_then_nlri(&attrs, &NLRI)).unwrap();
    assert_eq!(u.errors[0].notification().subcode, 6);
}

#[test]
fn attribute_overrunning_the_field_is_treat_as_withdraw() {
    let mut attrs = good_attrs();
    attrs.extend_from_slice(&[0xC0, 8, 200, 1, 2]);
    let u = decode_update(&attrs_then_nlri(&attrs, &NLRI)).unwrap();
    assert_eq!(u.disposition(), Some(Disposition::TreatAsWithdraw));
    assert_eq!(u.nlri.len(), 1, "the NLRI is still located");
}

#[test]
fn missing_next_hop_with_ipv4_nlri_is_treat_as_withdraw() {
    let u = decode_update(&attrs_then_nlri(&good_attrs()[..13], &NLRI)).unwrap();
    assert_eq!(u.disposition(), Some(Disposition::TreatAsWithdraw));
    assert_eq!(u.errors[0].notification(), Notification::new(3, 3, vec![3]));
    // Without NLRI nothing is mandatory.
    let u = decode_update(&attrs_then_nlri(&good_attrs()[..13], &[])).unwrap();
    assert_eq!(u.disposition(), None);
}

#[test]
fn flag_conflicts_and_bad_community_lengths_are_treat_as_withdraw() {
    let mut attrs = good_attrs();
    attrs[0] = 0xC0; // ORIGIN marked optional
    let u = decode_update(&attrs_then_nlri(&attrs, &NLRI)).unwrap();
    assert_eq!(u.errors[0].notification().subcode, 4);
    assert_eq!(u.disposition(), Some(Disposition::TreatAsWithdraw));
    for bad in [
        &[0xC0u8, 8, 3, 1, 2, 3][..],
        &[0xC0, 8, 0],
        &[0xC0, 32, 4, 0, 0, 0, 1],
        &[0xC0, 16, 0],                   // EXTENDED_COMMUNITIES empty
        &[0xC0, 16, 4, 0, 4, 0xFD, 0xE9], // ... not a multiple of 8
    ] {
        let mut attrs = good_attrs();
        attrs.extend_from_slice(bad);
        let u = decode_update(&attrs_then_nlri(&attrs, &NLRI)).unwrap();
        assert_eq!(
            u.disposition(),
            Some(Disposition::TreatAsWithdraw),
            "{bad:?}"
        );
    }
}

#[test]
fn malformed_atomic_aggregate_is_discarded() {
    let mut attrs = good_attrs();
    attrs.extend_from_slice(&[0x40, 6, 1, 0]);
    let u = decode_update(&attrs_then_nlri(&attrs, &NLRI)).unwrap();
    assert_eq!(u.disposition(), Some(Disposition::AttributeDiscard));
    assert!(!u.attributes.atomic_aggregate);
}

#[test]
fn duplicate_attributes_keep_the_first_but_a_second_mp_reach_resets() {
    let mut attrs = good_attrs();
    attrs.extend_from_slice(&[0x40, 1, 1, 2]);
    let u = decode_update(&attrs_then_nlri(&attrs, &NLRI)).unwrap();
    assert_eq!(u.attributes.origin, Some(Origin::Igp));
    assert!(u.errors.is_empty());
    let mp = [0x80, 15, 3, 0, 2, 1];
    let mut attrs = mp.to_vec();
    attrs.extend_from_slice(&mp);
    let n = decode_update(&attrs_then_nlri(&attrs, &[])).unwrap_err();
    assert_eq!((n.code, n.subcode), (3, 1));
}

#[test]
fn malformed_mp_reach_resets_the_session() {
    // Next hop length 5.
    let attrs = [0x80, 14, 10, 0, 2, 1, 5, 1, 2, 3, 4, 5, 0];
    let n = decode_update(&attrs_then_nlri(&attrs, &[])).unwrap_err();
    assert_eq!((n.code, n.subcode), (3, 9));
    assert_eq!(n.data, attrs.to_vec());
    // Prefix longer than 128 bits.
    let mut attrs = vec![0x80, 14, 23, 0, 2, 1, 16];
    attrs.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    attrs.extend_from_slice(&[0, 129, 0]);
    let n = decode_update(&attrs_then_nlri(&attrs, &[])).unwrap_err();
    assert_eq!((n.code, n.subcode), (3, 9));
}

#[test]
fn oversized_messages_are_refused_not_wrapped() {
    let u = Update {
        nlri: (0..14000u32)
            .map(|i| ipnet::Ipv4Net::new(Ipv4Addr::from(0xC612_0000 + i), 32).unwrap())
            .collect(),
        ..Update::default()
    };
    assert!(matches!(
        update(u).to_bytes(),
        Err(EncodeError::TooLong { .. })
    ));
}

/// Valid messages of every type, as seeds for mutation.
fn seeds() -> Vec<Vec<u8>> {
    let full = Update {
        withdrawn: vec!["198.18.0.0/15".parse().unwrap()],
        nlri: vec![
            "203.0.113.10/32".parse().unwrap(),
            "198.51.100.0/24".parse().unwrap(),
        ],
        attributes: PathAttributes {
            origin: Some(Origin::Egp),
            as_path: Some(AsPath {
                segments: vec![AsSegment::Sequence(vec![1, 2]), AsSegment::Set(vec![3])],
            }),
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
            med: Some(1),
            local_pref: Some(2),
            atomic_aggregate: true,
            aggregator: Some((7, Ipv4Addr::new(192, 0, 2, 9))),
            communities: vec![Community(5)],
            extended_communities: vec![LinkBandwidth::new(64601, 1_000_000, true).to_extended()],
            large_communities: vec![LargeCommunity {
                global_admin: 1,
                local_data_1: 2,
                local_data_2: 3,
            }],
            mp_reach: Some(MpReach {
                family: AfiSafi::IPV6_UNICAST,
                next_hop: MpNextHop::V6 {
                    global: "2001:db8::1".parse().unwrap(),
                    link_local: None,
                },
                nlri: vec!["2001:db8::/32".parse().unwrap()],
            }),
            mp_unreach: Some(MpUnreach {
                family: AfiSafi::IPV6_UNICAST,
                withdrawn: vec!["2001:db8:1::/48".parse().unwrap()],
            }),
            unknown: vec![RawAttribute {
                flags: 0xC0,
                type_code: 40,
                value: vec![1, 2, 3],
            }],
        },
        errors: vec![],
    };
    let open = Open::new(
        65001,
        9,
        Ipv4Addr::new(192, 0, 2, 1),
        vec![
            Capability::Multiprotocol(AfiSafi::IPV6_UNICAST),
            Capability::RouteRefresh,
            Capability::ExtendedMessage,
            Capability::GracefulRestart(GracefulRestartCapability {
                restart_state: true,
                notification: true,
                restart_time: 120,
                families: vec![(AfiSafi::IPV6_UNICAST, true)],
            }),
        ],
    );
    [
        update(full),
        Message::Open(open),
        Message::Keepalive,
        Message::Notification(Notification::cease_with_communication(2, "bye")),
        Message::RouteRefresh(RouteRefresh::new(AfiSafi::IPV4_UNICAST)),
    ]
    .iter()
    .map(|m| m.to_bytes().unwrap())
    .collect()
}

/// Every decoder entry point, as the fuzz targets call them.
fn decode_everything(bytes: &[u8]) {
    let _ = frame_len(bytes, MAX_MESSAGE_LEN);
    let _ = Message::decode(bytes, MAX_MESSAGE_LEN);
    let _ = Message::decode(bytes, MAX_EXTENDED_MESSAGE_LEN);
    let _ = Open::decode_body(bytes);
    let _ = Update::decode_body(bytes);
    let _ = PathAttributes::decode(bytes);
}

#[test]
fn decoders_survive_random_and_truncated_input() {
    let mut rng = StdRng::seed_from_u64(0x4247_5034);
    let seeds = seeds();
    for seed in &seeds {
        assert!(Message::decode(seed, MAX_MESSAGE_LEN).is_ok());
        for cut in 0..seed.len() {
            decode_everything(&seed[..cut]);
            decode_everything(&seed[cut..]);
            // A truncated frame with a fixed-up length must still not panic.
            let mut short = seed[..cut.max(19)].to_vec();
            let len = short.len() as u16;
            short[16..18].copy_from_slice(&len.to_be_bytes());
            decode_everything(&short);
        }
    }
    for _ in 0..20_000 {
        let mut bytes = seeds[rng.random_range(0..seeds.len())].clone();
        for _ in 0..rng.random_range(1..6) {
            let i = rng
                .random_range(19..bytes.len().max(20))
                .min(bytes.len() - 1);
            bytes[i] = rng.random();
        }
        decode_everything(&bytes);
        decode_everything(&bytes[19..]);
        let mut noise = vec![0xFF; 16];
        let len = rng.random_range(0..200usize);
        noise.extend_from_slice(&((len + 19) as u16).to_be_bytes());
        noise.push(rng.random_range(0..7));
        noise.extend((0..len).map(|_| rng.random::<u8>()));
        decode_everything(&noise);
    }
}
