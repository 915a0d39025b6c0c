//! Fuzzes the segment reader with arbitrary bytes written to a file: opening it gives a reader
//! or an error naming the damage, and every chunk and block of a reader that opened decodes or
//! fails cleanly.

#![no_main]

include!("check/segment.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
