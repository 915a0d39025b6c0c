//! Fuzzes the protobuf push decoder, raw and snappy-framed: no body may panic, and a body that
//! decodes encodes back (snappy protobuf) to the same request.

#![no_main]

include!("check/push_proto.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
