// Fuzzes the JSON push decoder, plain and behind gzip and deflate: no body may panic, and a
// body that decodes encodes back to JSON that decodes to the same request (labels sent in the
// legacy text form come back as the pairs they parse to, which is how they are re-encoded).
// Shared by fuzz/fuzz_targets/push_json.rs and tests/fuzz_seeds.rs (included in both).

use sawmill::ingest::decode::{decode_json, decode_push, encode_json, BodyFormat};
use sawmill::ingest::RawLabels;
use sawmill::labels::Labels;

/// One input: panics on a finding.
pub fn check(data: &[u8]) {
    if let Ok(req) = decode_json(data) {
        let again = decode_json(&encode_json(&req)).expect("re-encoded JSON decodes");
        let mut want = req;
        for s in &mut want.streams {
            if let RawLabels::Text(t) = &s.labels {
                let pairs = Labels::parse(t).map(|l| l.pairs().to_vec());
                s.labels = RawLabels::Pairs(pairs.unwrap_or_default());
            }
        }
        assert_eq!(want, again);
    }
    for encoding in ["gzip", "deflate"] {
        let _ = decode_push(data, BodyFormat::Json, Some(encoding), 1 << 20);
    }
}
