//! The `herald.dev/*` annotation parser never panics, whatever a tenant
//! writes: the input is split into five annotation values.
#![no_main]

use std::collections::BTreeMap;

use herald::annotations::{ALL, ServiceAnnotations};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut values = text.split('\u{1f}');
    let annotations: BTreeMap<String, String> = ALL
        .iter()
        .filter_map(|name| values.next().map(|v| (name.to_string(), v.to_string())))
        .collect();
    let parsed = ServiceAnnotations::parse(&annotations);
    if let Ok(attributes) = &parsed.attributes {
        for community in &attributes.communities {
            let _ = community.to_string();
        }
    }
});
