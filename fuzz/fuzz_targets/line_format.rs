//! Fuzzes the Go-template engine behind `line_format` and `label_format`: the input is a
//! template, a NUL byte, and a log line; parsing and rendering must not panic or hang (the
//! engine bounds its steps and output).

#![no_main]

include!("check/line_format.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
