//! Any bytes as an UPDATE body (path attributes, NLRI, MP_REACH/UNREACH,
//! RFC 7606 handling): must never panic.
#![no_main]

use herald::bgp::packet::{PathAttributes, Update};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Update::decode_body(data);
    let _ = PathAttributes::decode(data);
});
