//! Fuzzes the JSON push decoder, plain and behind gzip and deflate: no body may panic, and a
//! body that decodes encodes back to JSON that decodes to the same request.

#![no_main]

include!("check/push_json.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
