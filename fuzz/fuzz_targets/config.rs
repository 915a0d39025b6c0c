//! Fuzzes the config loader: any text parses to a config or to an error naming the key, and
//! `${VAR}` expansion never panics.

#![no_main]

include!("check/config.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
