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

fn head() -> HeadBlock {
    let mut h = HeadBlock::default();
    for e in entries() {
        h.push(e.ts, &e.line, &e.metadata);
    }
    h
}

/// A chunk as today's encoder writes it: columnar blocks.
fn chunk_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    encode_chunk([head().seal(3)].iter(), &mut out);
    out
}

/// A chunk of version 1 blocks, as the first releases wrote them.
fn chunk_bytes_v1() -> Vec<u8> {
    let mut out = Vec::new();
    encode_chunk([head().seal_v1(3)].iter(), &mut out);
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

/// Version 1 chunks are read, never written by the server again (`seal_v1` is kept for this
/// test and the damage tests).
#[test]
fn chunk_v1_golden() {
    let path = testdata("chunk-v1.bin");
    assert_eq!(
        decode_chunk(&std::fs::read(&path).unwrap()),
        sorted(entries())
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        chunk_bytes_v1(),
        "the version 1 encoder is unchanged"
    );
}

/// Version 2 chunks: columnar blocks (`storage::columns`).
#[test]
fn chunk_v2_columnar_golden() {
    let path = testdata("chunk-v2-columnar.bin");
    if writing() {
        std::fs::write(&path, chunk_bytes()).unwrap();
    }
    let golden = std::fs::read(&path).unwrap();
    assert_eq!(golden[0], 2, "chunk version");
    assert_eq!(decode_chunk(&golden), sorted(entries()));
    assert_eq!(
        golden,
        chunk_bytes(),
        "today's encoder writes the same bytes"
    );
    let blocks = chunk_blocks(&golden).unwrap();
    let summaries = blocks[0].summaries().unwrap();
    let logfmt = summaries.iter().find(|p| p.parser == 2).unwrap();
    assert_eq!(logfmt.errors, 0);
    let level = logfmt.field("level").unwrap();
    assert_eq!(level.present, 40);
    assert_eq!(level.values, Some(vec!["info".to_string()]));
    let json = summaries.iter().find(|p| p.parser == 1).unwrap();
    assert_eq!(json.errors, 40, "no line is JSON");
    let filter = blocks[0]
        .columns
        .unwrap()
        .filter()
        .expect("a filter section");
    for lit in ["golden", " msg=", "level=inf", "=info"] {
        for k in sawmill::storage::index::literal_keys(lit.as_bytes()) {
            assert!(filter.may_contain(k), "{lit}");
        }
    }
    // `level` has one value: a dictionary column; `msg` has 40: none.
    let mut d = DecodedBlock::default();
    let mut dicts = Vec::new();
    assert_eq!(
        d.decode_filter_columns(
            &blocks[0],
            2,
            (&["level"], &[]),
            &mut dicts,
            &mut Vec::new()
        ),
        Ok(true)
    );
    assert_eq!(dicts[0].values, vec!["info".to_string()]);
    assert!(dicts[0].codes.iter().all(|&c| c == 1));
    assert_eq!(
        d.decode_filter_columns(&blocks[0], 2, (&["msg"], &[]), &mut dicts, &mut Vec::new()),
        Ok(false)
    );
}

/// Version 2 chunks whose lines carry numbers: a values section (section 7) with their
/// columns, one at a decimal scale and one of raw floats.
#[test]
fn chunk_v2_with_value_columns_golden() {
    let path = testdata("chunk-v2-values.bin");
    let mut h = HeadBlock::default();
    for (i, e) in entries().iter().enumerate() {
        let line = format!(
            "{} took_ms={}.5 ratio={}",
            e.line,
            i * 3,
            1.0 / (i as f64 + 3.0)
        );
        h.push(e.ts, &line, &e.metadata);
    }
    let mut bytes = Vec::new();
    encode_chunk([h.seal(3)].iter(), &mut bytes);
    if writing() {
        std::fs::write(&path, &bytes).unwrap();
    }
    let golden = std::fs::read(&path).unwrap();
    assert_eq!(golden, bytes, "today's encoder writes the same bytes");
    let blocks = chunk_blocks(&golden).unwrap();
    let mut full = DecodedBlock::default();
    full.decode_from(&blocks[0]).unwrap();
    for (field, at) in [("took_ms", 1), ("ratio", 2)] {
        let mut d = DecodedBlock::default();
        assert_eq!(d.decode_values(&blocks[0], (2, field)), Ok(true), "{field}");
        for i in 0..d.len() {
            let line = std::str::from_utf8(full.line(i)).unwrap();
            let text = line
                .split(' ')
                .nth(4 + at)
                .unwrap()
                .split('=')
                .nth(1)
                .unwrap();
            assert_eq!(d.value(i), text.parse::<f64>().unwrap(), "{line}");
        }
    }
}

/// Version 2 chunks with a filter section and no values section (before value and dictionary
/// columns): read, never written again.
#[test]
fn chunk_v2_columnar_without_values_golden() {
    let golden = std::fs::read(testdata("chunk-v2-columnar-novalues.bin")).unwrap();
    assert_eq!(decode_chunk(&golden), sorted(entries()));
    let blocks = chunk_blocks(&golden).unwrap();
    let cols = blocks[0].columns.unwrap();
    assert!(cols.filter().is_some());
    assert!(cols.get(sawmill::storage::columns::KIND_VALUES).is_err());
    let mut d = DecodedBlock::default();
    assert_eq!(d.decode_values(&blocks[0], (2, "level")), Ok(false));
}

/// Version 2 chunks as first written, before the filter section: read, never written again.
#[test]
fn chunk_v2_columnar_without_filter_golden() {
    let golden = std::fs::read(testdata("chunk-v2-columnar-nofilter.bin")).unwrap();
    assert_eq!(decode_chunk(&golden), sorted(entries()));
    let blocks = chunk_blocks(&golden).unwrap();
    assert!(blocks[0].columns.unwrap().filter().is_none());
    assert_eq!(blocks[0].summaries().unwrap().len(), 3);
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
    assert_eq!(
        decode_chunk(&r.chunk_bytes(&r.chunks[0]).unwrap()),
        sorted(entries())
    );
}

/// Version 4: version 3, with a filter section in every block.
#[test]
fn segment_v4_golden() {
    let path = testdata("segment-v4.seg");
    let lineage = Lineage {
        replaces: vec![Replaced {
            seq: 5,
            from: 0,
            to: 3_600_000_000_000,
        }],
        deletes_applied_through: 2,
    };
    if writing() {
        write_golden_segment(&path, lineage.clone());
    }
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes[8], 4, "segment version");
    let r = SegmentReader::open(&path).unwrap();
    check_golden_segment(&r);
    assert_eq!(r.lineage, lineage);
    assert_eq!(
        r.chunk_bytes(&r.chunks[0]).unwrap()[0],
        2,
        "a columnar chunk"
    );
    let data = r.chunk_bytes(&r.chunks[0]).unwrap();
    let blocks = chunk_blocks(&data).unwrap();
    assert!(blocks.iter().all(|b| b.columns.unwrap().filter().is_some()));
}

/// Version 3 (version 2's footer, columnar chunks without filter sections) is read, never
/// written again.
#[test]
fn segment_v3_golden() {
    let r = SegmentReader::open(&testdata("segment-v3.seg")).unwrap();
    check_golden_segment(&r);
    assert_eq!(r.version, 3);
    assert_eq!(
        r.lineage,
        Lineage {
            replaces: vec![Replaced {
                seq: 5,
                from: 0,
                to: 3_600_000_000_000,
            }],
            deletes_applied_through: 2,
        }
    );
    let data = r.chunk_bytes(&r.chunks[0]).unwrap();
    let blocks = chunk_blocks(&data).unwrap();
    assert!(blocks[0].columns.unwrap().filter().is_none());
}

/// Version 1 (no lineage) was written by the first release; it is read, never written again.
#[test]
fn segment_v1_golden() {
    let r = SegmentReader::open(&testdata("segment-v1.seg")).unwrap();
    check_golden_segment(&r);
    assert_eq!(r.lineage, Lineage::default());
}

/// Version 2 (lineage) is read, never written again.
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
    let r = SegmentReader::open(&path).unwrap();
    check_golden_segment(&r);
    assert_eq!(r.lineage, lineage);
}
