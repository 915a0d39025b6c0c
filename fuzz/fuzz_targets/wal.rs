//! Fuzzes the WAL reader with arbitrary bytes written to a file: reading it splits it into
//! intact records and reported problems, and every record decodes or fails cleanly. Inputs
//! starting with an even byte get a valid file header first, so records are reached.

#![no_main]

include!("check/wal.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
