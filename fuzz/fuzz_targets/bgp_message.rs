//! Any bytes through the BGP message framer and decoder, at both the
//! standard and the RFC 8654 extended size limit: must never panic, and a
//! decoded message must encode again.
#![no_main]

use herald::bgp::packet::{MAX_EXTENDED_MESSAGE_LEN, MAX_MESSAGE_LEN, Message, frame_len};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = frame_len(data, MAX_MESSAGE_LEN);
    for max in [MAX_MESSAGE_LEN, MAX_EXTENDED_MESSAGE_LEN] {
        if let Ok(message) = Message::decode(data, max) {
            let _ = message.to_bytes();
        }
    }
});
