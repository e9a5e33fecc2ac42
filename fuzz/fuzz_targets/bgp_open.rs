//! Any bytes as an OPEN body (capabilities included): must never panic.
#![no_main]

use herald::bgp::packet::Open;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Open::decode_body(data);
});
