//! Golden files of each on-disk format version (WAL, chunk, segment) are committed under
//! `tests/testdata/` and must keep reading back to the same entries: a format change is a
//! decision (a new version and new golden files), not an accident. Regenerate deliberately with
//! `SAWMILL_WRITE_GOLDEN=1 cargo test --test formats`.

use std::path::{Path, PathBuf};

use sawmill::ingest::Entry;
use sawmill::labels::Labels;
use sawmill::storage::chunk::{
    chunk_blocks, encode_chunk, metadata_to_vec, DecodedBlock, HeadBlock,
};
use sawmill::storage::segment::{Lineage, Replaced, SegmentReader, SegmentStream, SegmentWriter};
use sawmill::storage::wal::{
    decode_entries, encode_entries, encode_record, file_header, read_records, WalPos,
};

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata")
        .join(name)
}

fn writing() -> bool {
    std::env::var_os("SAWMILL_WRITE_GOLDEN").is_some()
}

fn entries() -> Vec<Entry> {
    (0..40)
        .map(|i| Entry {
            ts: 1_795_132_800_000_000_000 + (i * 37 % 40) * 1_000_000,
            line: format!("level=info msg=\"golden {i}\" ünï 🚀"),
            metadata: if i % 4 == 0 {
                vec![("trace_id".into(), format!("t{i}"))]
            } else {
                vec![]
            },
        })
        .collect()
}

fn sorted(mut e: Vec<Entry>) -> Vec<Entry> {
    e.sort_by_key(|e| e.ts);
    e
}

fn decode_chunk(bytes: &[u8]) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut d = DecodedBlock::default();
    for b in chunk_blocks(bytes).unwrap() {
        d.decode_from(&b).unwrap();
        for i in 0..d.len() {
            out.push(Entry {
                ts: d.ts(i),
                line: String::from_utf8(d.line(i).to_vec()).unwrap(),
                metadata: metadata_to_vec(d.metadata_raw(i)),
            });
        }
    }
    out
}

fn chunk_bytes() -> Vec<u8> {
    let mut h = HeadBlock::default();
    for e in entries() {
        h.push(e.ts, &e.line, &e.metadata);
    }
    let mut out = Vec::new();
    encode_chunk([h.seal(3)].iter(), &mut out);
    out
}

#[test]
fn wal_v2_golden() {
    let path = testdata("wal-v2.wal");
    if writing() {
        let salt = 0x5eed_f00d;
        let mut file = file_header(salt).to_vec();
        for part in entries().chunks(20) {
            let mut payload = Vec::new();
            encode_entries(
                "fake",
                [("{app=\"golden\"}", part.iter())].into_iter(),
                &mut payload,
            );
            file.extend_from_slice(&encode_record(salt, &payload));
        }
        std::fs::write(&path, file).unwrap();
    }
    let data = std::fs::read(&path).unwrap();
    let recs = read_records(&path, &data);
    assert!(recs.problems.is_empty(), "{:?}", recs.problems);
    let got: Vec<Entry> = recs
        .records
        .iter()
        .flat_map(|(_, p)| {
            let r = decode_entries(p).unwrap();
            assert_eq!(r.tenant, "fake");
            assert_eq!(r.streams[0].0, "{app=\"golden\"}");
            r.streams.into_iter().flat_map(|(_, e)| e)
        })
        .collect();
    assert_eq!(got, entries());
}

#[test]
fn chunk_v1_golden() {
    let path = testdata("chunk-v1.bin");
    if writing() {
        std::fs::write(&path, chunk_bytes()).unwrap();
    }
    assert_eq!(
        decode_chunk(&std::fs::read(&path).unwrap()),
        sorted(entries())
    );
    assert_eq!(
        decode_chunk(&chunk_bytes()),
        sorted(entries()),
        "today's encoder reads back too"
    );
}

fn write_golden_segment(path: &Path, lineage: Lineage) {
    let mut w = SegmentWriter::create(path).unwrap();
    w.set_lineage(lineage);
    let labels = Labels::parse("{app=\"golden\", env=\"test\"}").unwrap();
    let s = w.add_stream(SegmentStream {
        fingerprint: labels.fingerprint(),
        labels,
        max_ts: 1_795_132_800_039_000_000,
        flushed_pos: WalPos {
            seq: 7,
            offset: 1234,
        },
    });
    let c = chunk_bytes();
    w.add_chunk(
        s,
        &c,
        1_795_132_800_000_000_000,
        1_795_132_800_039_000_000,
        40,
        1500,
    )
    .unwrap();
    w.finish(path).unwrap();
}

#[track_caller]
fn check_golden_segment(r: &SegmentReader) {
    assert_eq!(r.streams.len(), 1);
    assert_eq!(
        r.streams[0].labels.to_string(),
        "{app=\"golden\", env=\"test\"}"
    );
    assert_eq!(
        r.streams[0].flushed_pos,
        WalPos {
            seq: 7,
            offset: 1234
        }
    );
    assert_eq!(r.postings("env", |v| v == "test"), vec![0]);
    assert_eq!(decode_chunk(r.chunk_bytes(&r.chunks[0])), sorted(entries()));
}

/// Version 1 (no lineage) was written by the first release; it is read, never written again.
#[test]
fn segment_v1_golden() {
    let r = SegmentReader::open(&testdata("segment-v1.seg")).unwrap();
    check_golden_segment(&r);
    assert_eq!(r.lineage, Lineage::default());
}

#[test]
fn segment_v2_golden() {
    let path = testdata("segment-v2.seg");
    let lineage = Lineage {
        replaces: vec![
            Replaced {
                seq: 3,
                from: 1_795_132_800_000_000_000,
                to: 1_795_136_400_000_000_000,
            },
            Replaced {
                seq: 4,
                from: -3_600_000_000_000,
                to: 0,
            },
        ],
        deletes_applied_through: 9,
    };
    if writing() {
        write_golden_segment(&path, lineage.clone());
    }
    let r = SegmentReader::open(&path).unwrap();
    check_golden_segment(&r);
    assert_eq!(r.lineage, lineage);
}
