// Fuzzes the segment reader with arbitrary bytes written to a file: opening it gives a reader
// or an error naming the damage, and every chunk and block of a reader that opened decodes or
// fails cleanly.
// Shared by fuzz/fuzz_targets/segment.rs and tests/fuzz_seeds.rs (included in both).

use sawmill::storage::chunk::{chunk_blocks, DecodedBlock};
use sawmill::storage::segment::SegmentReader;

/// One input: panics on a finding.
pub fn check(data: &[u8]) {
    let path = std::env::temp_dir().join(format!(
        "sawmill-fuzz-{}-{}.seg",
        std::process::id(),
        "00000000000000000001"
    ));
    std::fs::write(&path, data).expect("temp file writes");
    if let Ok(seg) = SegmentReader::open(&path) {
        let mut block = DecodedBlock::default();
        for c in &seg.chunks {
            let Ok(data) = seg.chunk_bytes(c) else {
                continue;
            };
            let Ok(blocks) = chunk_blocks(&data) else {
                continue;
            };
            for b in blocks {
                if block.decode_from(&b).is_ok() {
                    for i in 0..block.len() {
                        let _ = (block.ts(i), block.line(i), block.metadata_raw(i));
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}
