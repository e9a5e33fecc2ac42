//! The API stand-in's decoders never panic: label and field selectors, the strategic merge
//! patch, server-side apply and JSON (merge) patch applied to arbitrary documents.
#![no_main]

use herald_apiserver::patch::{
    apply_merge, json_patch, merge_patch, parse_apply, strategic_merge_patch,
};
use herald_apiserver::resources::RESOURCES;
use herald_apiserver::selectors::{FieldSelector, LabelSelector};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = LabelSelector::parse(text);
        for resource in RESOURCES {
            let _ = FieldSelector::parse(text, resource);
        }
    }
    let _ = parse_apply(data);
    let mid = data.len() / 2;
    let (Ok(target), Ok(patch)) = (
        serde_json::from_slice::<Value>(&data[..mid]),
        serde_json::from_slice::<Value>(&data[mid..]),
    ) else {
        return;
    };
    let mut doc = target.clone();
    let _ = strategic_merge_patch(&mut doc, &patch);
    let mut doc = target.clone();
    apply_merge(&mut doc, &patch);
    let mut doc = target.clone();
    let _ = json_patch(&mut doc, &patch);
    let mut doc = target;
    merge_patch(&mut doc, &patch);
});
