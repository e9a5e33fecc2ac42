//! The HTTP response parser of `herald status` never panics on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = herald::cli::parse_response(bytes);
});
