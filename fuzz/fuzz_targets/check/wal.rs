// Fuzzes the WAL reader with arbitrary bytes written to a file: reading it splits it into
// intact records and reported problems, and every record decodes or fails cleanly. Inputs
// starting with an even byte get a valid file header first, so records are reached.
// Shared by fuzz/fuzz_targets/wal.rs and tests/fuzz_seeds.rs (included in both).

use sawmill::storage::wal::{decode_entries, file_header, read_records, view_entries};

/// One input: panics on a finding.
pub fn check(data: &[u8]) {
    let mut bytes = Vec::with_capacity(data.len() + 16);
    if data.first().is_some_and(|b| b % 2 == 0) {
        bytes.extend_from_slice(&file_header(0x5eed));
        bytes.extend_from_slice(&data[1..]);
    } else {
        bytes.extend_from_slice(data);
    }
    let path = std::env::temp_dir().join(format!("sawmill-fuzz-{}.wal", std::process::id()));
    std::fs::write(&path, &bytes).expect("temp file writes");
    let read = std::fs::read(&path).expect("temp file reads");
    let file = read_records(&path, &read);
    for (_, payload) in &file.records {
        let _ = decode_entries(payload);
        let _ = view_entries(payload);
    }
    // Any payload, framed as a record of its own.
    let _ = decode_entries(data);
    let _ = view_entries(data);
    let _ = std::fs::remove_file(&path);
}
