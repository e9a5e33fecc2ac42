//! Fuzz the BFD Control packet decoder: it must never panic, and whatever it
//! accepts must re-encode and decode to the same packet.
#![no_main]

use herald::bfd::packet::ControlPacket;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = ControlPacket::decode(data) {
        let bytes = packet.encode().expect("a decoded packet re-encodes");
        assert_eq!(ControlPacket::decode(&bytes), Ok(packet));
    }
});
