//! Fuzzes `parse_expr`: no input may panic, and every query that parses must print to text
//! that parses back to the same tree, both in canonical and in pretty form.

#![no_main]

include!("check/parse_expr.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
