//! Community strings come from annotations a tenant writes: parsing must
//! never panic, and whatever parses must print back to something that parses
//! to the same value.
#![no_main]

use herald::model::AnyCommunity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(community) = text.parse::<AnyCommunity>()
    {
        let again: AnyCommunity = community.to_string().parse().expect("printed form parses");
        assert_eq!(again, community);
    }
});
