//! Fuzz the BFD Control packet decoder: it must never panic, and whatever it
//! accepts must re-encode and decode to the same packet. A decoded packet is
//! also checked by an authenticator of every type (RFC 5880 §6.7), which
//! must refuse or accept it without panicking, and accept it only when it
//! carries that type.
#![no_main]

use herald::bfd::auth::{AuthConfig, AuthType, Authenticator};
use herald::bfd::packet::ControlPacket;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = ControlPacket::decode(data) {
        let bytes = packet.encode().expect("a decoded packet re-encodes");
        assert_eq!(ControlPacket::decode(&bytes), Ok(packet.clone()));
        for auth_type in AuthType::ALL {
            let config = AuthConfig::new(auth_type, 1, b"fuzz-key".to_vec()).expect("a key");
            let mut checker = Authenticator::new(config, 0);
            if checker.verify(&packet).is_ok() {
                let carried = packet.auth.as_ref().map(|a| a.auth_type());
                assert_eq!(carried, Some(auth_type.code()));
            }
        }
    }
});
