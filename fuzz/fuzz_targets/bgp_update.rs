//! Any bytes as an UPDATE body (path attributes, NLRI, MP_REACH/UNREACH,
//! RFC 7606 handling): must never panic. Every extended community decoded
//! also goes through the link-bandwidth decoder (RFC 10005), whose reading
//! must be stable: encoding what it read and reading it again gives the
//! same value. The seed fuzz/seeds/bgp_update/link-bandwidth carries both
//! encodings.
#![no_main]

use herald::bgp::packet::{PathAttributes, Update};
use herald::model::LinkBandwidth;
use libfuzzer_sys::fuzz_target;

fn link_bandwidths(attributes: &PathAttributes) {
    for community in &attributes.extended_communities {
        if let Some(bandwidth) = LinkBandwidth::from_extended(*community) {
            assert_eq!(
                LinkBandwidth::from_extended(bandwidth.to_extended()),
                Some(bandwidth),
                "{community:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(update) = Update::decode_body(data) {
        link_bandwidths(&update.attributes);
    }
    if let Ok((attributes, _)) = PathAttributes::decode(data) {
        link_bandwidths(&attributes);
    }
});
