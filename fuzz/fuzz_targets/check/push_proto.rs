// Fuzzes the protobuf push decoder, raw and snappy-framed: no body may panic, and a body that
// decodes encodes back (snappy protobuf) to the same request.
// Shared by fuzz/fuzz_targets/push_proto.rs and tests/fuzz_seeds.rs (included in both).

use sawmill::ingest::decode::{decode_proto, decode_push, encode_proto_snappy, BodyFormat};

/// One input: panics on a finding.
pub fn check(data: &[u8]) {
    if let Ok(req) = decode_proto(data) {
        let body = encode_proto_snappy(&req);
        let again = decode_push(&body, BodyFormat::Protobuf, None, u64::MAX)
            .expect("re-encoded protobuf decodes");
        assert_eq!(req, again);
    }
    let _ = decode_push(data, BodyFormat::Protobuf, None, 1 << 20);
    let _ = decode_push(data, BodyFormat::Protobuf, Some("snappy"), 1 << 20);
}
