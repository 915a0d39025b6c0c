//! Damaged files on disk: segment files with a flipped byte or cut short, a WAL whose last
//! record was torn by a crash or followed by garbage, and a WAL record damaged in the middle of
//! a file. The server must still become ready, report the damage, and serve everything that
//! was not damaged.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const CONFIG: &str = "limits_config:
  ingestion_rate_mb: 1000
  ingestion_burst_size_mb: 1000
  reject_old_samples: false
  max_entries_limit_per_query: 1000000
  max_query_length: 0
";
const ALL: &str = r#"{job="dmg"}"#;
const LINES_PER_PUSH: usize = 3;

/// Pushes `LINES_PER_PUSH` lines to stream `app` (one push is one WAL record); returns them.
fn push_lines(addr: &str, app: &str, push: usize, ts: i64) -> Vec<String> {
    let lines: Vec<String> = (0..LINES_PER_PUSH)
        .map(|i| format!("{app}-p{push}-l{i} n={i}"))
        .collect();
    let values: Vec<_> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| [(ts + i as i64).to_string(), l.clone()])
        .collect();
    let body =
        serde_json::json!({"streams": [{"stream": {"job": "dmg", "app": app}, "values": values}]});
    let (status, text) = push_json(addr, &body.to_string());
    assert_eq!(status, 204, "{text}");
    lines
}

/// Lines served for `query` over all time the tests use.
fn served(addr: &str, query: &str) -> BTreeSet<String> {
    let got = query_all(
        addr,
        &[],
        query,
        now_ns() - 3_600_000_000_000,
        now_ns() + 60_000_000_000,
    )
    .unwrap_or_else(|(s, b)| panic!("query {query} answered {s}: {b}"));
    got.into_iter().map(|(_, _, l)| l).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    assert!(
        at < b.len(),
        "flip at {at} past the end of {} ({} bytes)",
        path.display(),
        b.len()
    );
    b[at] ^= 0x5a;
    std::fs::write(path, b).unwrap();
}

fn cut(path: &Path, len: usize) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len as u64).unwrap();
}

fn append(path: &Path, bytes: &[u8]) {
    let mut b = std::fs::read(path).unwrap();
    b.extend_from_slice(bytes);
    std::fs::write(path, b).unwrap();
}

// ---- segments -------------------------------------------------------------------------------

const APPS: [&str; 4] = ["a", "b", "c", "d"];

/// Where a segment's footer sits, read from its 32-byte trailer: (offset, length).
fn footer(path: &Path) -> (usize, usize) {
    let b = std::fs::read(path).unwrap();
    let t = &b[b.len() - 32..];
    assert_eq!(&t[24..32], b"SAWMSEGF", "{}", path.display());
    (
        u64::from_le_bytes(t[0..8].try_into().unwrap()) as usize,
        u64::from_le_bytes(t[8..16].try_into().unwrap()) as usize,
    )
}

#[derive(Debug, Clone, Copy)]
enum SegDamage {
    /// A flipped byte in the middle of the footer (caught by the footer checksum).
    FooterByte,
    /// A flipped byte in the trailer's footer offset.
    TrailerOffset,
    /// The file cut to half its length.
    CutHalf,
    /// The last byte cut off (a write that never finished).
    CutLastByte,
    /// Only the 16-byte header left.
    HeaderOnly,
    /// Nothing left.
    Empty,
    /// A flipped byte in the header's magic.
    HeaderMagic,
}

impl SegDamage {
    fn apply(self, path: &Path) {
        let len = std::fs::metadata(path).unwrap().len() as usize;
        match self {
            SegDamage::FooterByte => {
                let (off, flen) = footer(path);
                flip(path, off + flen / 2);
            }
            SegDamage::TrailerOffset => flip(path, len - 32),
            SegDamage::CutHalf => cut(path, len / 2),
            SegDamage::CutLastByte => cut(path, len - 1),
            SegDamage::HeaderOnly => cut(path, 16),
            SegDamage::Empty => cut(path, 0),
            SegDamage::HeaderMagic => flip(path, 3),
        }
    }
}

/// Four segments, one per stream `a`..`d`, each written by a clean stop (which flushes
/// everything). Returns the data directory and the lines of each stream.
fn four_segments(root: &Path) -> (PathBuf, Vec<Vec<String>>) {
    let data = root.join("data");
    let mut s = Server::start(&data, CONFIG);
    let mut lines = Vec::new();
    for (i, app) in APPS.iter().enumerate() {
        if i > 0 {
            s.restart();
        }
        let ts = now_ns() - 60_000_000_000;
        let mut l = Vec::new();
        for p in 0..4 {
            l.extend(push_lines(&s.addr(), app, p, ts + p as i64 * 10));
        }
        s.stop();
        lines.push(l);
    }
    let segs = segment_files(&data, "fake");
    assert_eq!(
        segs.len(),
        APPS.len(),
        "one segment per clean stop: {segs:?}"
    );
    (data, lines)
}

#[track_caller]
fn check_segment_damage(template: &Path, lines: &[Vec<String>], damage: &[(usize, SegDamage)]) {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    copy_dir(template, &data);
    let segs = segment_files(&data, "fake");
    for (i, d) in damage {
        d.apply(&segs[*i]);
    }
    let damaged_bytes: Vec<Vec<u8>> = damage
        .iter()
        .map(|(i, _)| std::fs::read(&segs[*i]).unwrap())
        .collect();
    let mut s = Server::start(&data, CONFIG);
    assert_eq!(
        metric(&s.addr(), "sawmill_segment_damaged_total"),
        damage.len() as f64,
        "{damage:?}: damaged segments reported"
    );
    let damaged: BTreeSet<usize> = damage.iter().map(|(i, _)| *i).collect();
    let intact: BTreeSet<String> = (0..APPS.len())
        .filter(|i| !damaged.contains(i))
        .flat_map(|i| lines[i].iter().cloned())
        .collect();
    assert_eq!(
        served(&s.addr(), ALL),
        intact,
        "{damage:?}: every line of the intact segments, and only those"
    );
    for (i, app) in APPS.iter().enumerate() {
        if !damaged.contains(&i) {
            let want: BTreeSet<String> = lines[i].iter().cloned().collect();
            assert_eq!(
                served(&s.addr(), &format!(r#"{{app="{app}"}}"#)),
                want,
                "{damage:?}: stream {app}"
            );
        }
    }
    // The server keeps working: new data gets a new segment, which must not overwrite the
    // damaged files (kept for inspection) and survives a restart.
    let fresh = push_lines(&s.addr(), "e", 0, now_ns() - 1_000_000_000);
    s.stop();
    s.restart();
    let mut want = intact.clone();
    want.extend(fresh);
    assert_eq!(
        served(&s.addr(), ALL),
        want,
        "{damage:?}: after a new segment and a restart"
    );
    assert_eq!(
        metric(&s.addr(), "sawmill_segment_damaged_total"),
        damage.len() as f64,
        "{damage:?}: still reported"
    );
    for ((i, _), bytes) in damage.iter().zip(&damaged_bytes) {
        assert_eq!(
            &std::fs::read(&segs[*i]).unwrap(),
            bytes,
            "{damage:?}: damaged segment {} was changed",
            segs[*i].display()
        );
    }
}

#[test]
fn damaged_segments_are_reported_and_skipped_and_the_others_served() {
    let root = tempfile::tempdir().unwrap();
    let (template, lines) = four_segments(root.path());
    use SegDamage::*;
    check_segment_damage(&template, &lines, &[(0, FooterByte)]);
    check_segment_damage(&template, &lines, &[(1, TrailerOffset)]);
    check_segment_damage(&template, &lines, &[(2, CutHalf)]);
    check_segment_damage(&template, &lines, &[(3, CutLastByte)]);
    check_segment_damage(&template, &lines, &[(1, HeaderOnly)]);
    check_segment_damage(&template, &lines, &[(2, Empty)]);
    check_segment_damage(&template, &lines, &[(3, HeaderMagic)]);
    check_segment_damage(&template, &lines, &[(0, FooterByte), (2, CutHalf)]);
}

/// A flipped byte inside a chunk's compressed data: the footer is intact, so the segment opens,
/// and the block checksum catches the damage when the chunk is read. The damaged block is
/// skipped and reported (a `warnings` entry naming the file, `sawmill_query_damaged_blocks_total`),
/// and streams stored in other segments are still served, also by a query whose selector
/// matches the damaged stream.
#[test]
fn damaged_chunk_data_does_not_hide_other_segments() {
    let root = tempfile::tempdir().unwrap();
    let (template, lines) = four_segments(root.path());
    let data = root.path().join("copy");
    copy_dir(&template, &data);
    let seg = segment_files(&data, "fake")[0].clone();
    let (footer_off, _) = footer(&seg);
    // header 16 | chunk header 8 | block header 32 | zstd bytes .. footer
    let zstd_start = 16 + 8 + 32;
    assert!(footer_off > zstd_start + 4, "{footer_off}");
    flip(&seg, (zstd_start + footer_off) / 2);
    let s = Server::start(&data, CONFIG);
    for (i, app) in APPS.iter().enumerate().skip(1) {
        let want: BTreeSet<String> = lines[i].iter().cloned().collect();
        assert_eq!(
            served(&s.addr(), &format!(r#"{{app="{app}"}}"#)),
            want,
            "stream {app}"
        );
    }
    // Stream `a` has one block, the damaged one: nothing of it, and nothing garbled, is served.
    let intact: BTreeSet<String> = lines[1..].iter().flatten().cloned().collect();
    assert_eq!(served(&s.addr(), ALL), intact);
    let url = format!(
        "{}/loki/api/v1/query_range?{}",
        s.addr(),
        serde_urlencoded::to_string([
            ("query", ALL),
            ("start", &(now_ns() - 3_600_000_000_000).to_string()),
            ("limit", "1000"),
        ])
        .unwrap()
    );
    let (status, body) = try_request("GET", &url, &[], None, Duration::from_secs(30)).unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let name = seg.file_name().unwrap().to_str().unwrap();
    assert!(
        v["warnings"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains(name)))),
        "the answer names the damaged file: {}",
        v["warnings"]
    );
    assert!(metric(&s.addr(), "sawmill_query_damaged_blocks_total") >= 1.0);
}

/// A flipped byte in any section of a columnar block (timestamps, lengths, metadata, lines,
/// field summaries, filter, values): the block is reported and skipped by queries that read
/// it whole, never served garbled, and a needle query never loses the other streams' lines.
#[test]
fn a_flipped_byte_in_any_section_of_a_block_is_reported_and_the_block_skipped() {
    use sawmill::storage::chunk::chunk_blocks;
    use sawmill::storage::columns;
    let root = tempfile::tempdir().unwrap();
    let (template, lines) = four_segments(root.path());
    let seg = segment_files(&template, "fake")[0].clone();
    // Where each section of stream `a`'s single block lies in the file.
    let r = sawmill::storage::segment::SegmentReader::open(&seg).unwrap();
    let c = r.chunks[0];
    let data = r.chunk_bytes(&c).unwrap();
    let blocks = chunk_blocks(&data).unwrap();
    assert_eq!(blocks.len(), 1);
    let cols = blocks[0].columns.expect("a columnar block");
    let spots: Vec<(u8, usize)> = [
        columns::KIND_TIME,
        columns::KIND_LENGTHS,
        columns::KIND_METADATA,
        columns::KIND_LINES,
        columns::KIND_FIELDS,
        columns::KIND_FILTER,
        columns::KIND_VALUES,
    ]
    .into_iter()
    .map(|k| {
        let s = cols.get(k).unwrap();
        (
            k,
            c.offset as usize + blocks[0].offset + s.offset() + s.stored_len() / 2,
        )
    })
    .collect();
    drop(r);
    let intact: BTreeSet<String> = lines[1..].iter().flatten().cloned().collect();
    for (kind, at) in spots {
        let data = root.path().join(format!("copy-{kind}"));
        copy_dir(&template, &data);
        flip(&data.join(seg.strip_prefix(&template).unwrap()), at);
        let s = Server::start(&data, CONFIG);
        assert_eq!(served(&s.addr(), ALL), intact, "section {kind}");
        let needle = format!(r#"{{job="dmg"}} |= "{}""#, lines[1][0]);
        assert_eq!(
            served(&s.addr(), &needle),
            BTreeSet::from([lines[1][0].clone()]),
            "section {kind}"
        );
        assert!(
            metric(&s.addr(), "sawmill_query_damaged_blocks_total") >= 1.0,
            "section {kind}: the damage is counted"
        );
        // An unwrap that reads the values column instead of the lines: each section has
        // its own checksum, so damage to the lines or the filter leaves it its answer.
        let (start, end) = (
            (now_ns() - 3_600_000_000_000).to_string(),
            now_ns().to_string(),
        );
        let (status, sums) = get(
            &s.addr(),
            "/loki/api/v1/query_range",
            &[
                (
                    "query",
                    r#"sum by (app) (sum_over_time({job="dmg"} | logfmt | unwrap n [1h]))"#,
                ),
                ("start", &start),
                ("end", &end),
                ("step", "60"),
            ],
        );
        assert_eq!(status, 200, "{sums}");
        let unread = [columns::KIND_LINES, columns::KIND_FILTER].contains(&kind);
        assert_eq!(
            sums.contains(r#""app":"a""#),
            unread,
            "section {kind}: {sums}"
        );
        assert!(sums.contains(r#""app":"b""#), "section {kind}: {sums}");
    }
}

// ---- WAL ------------------------------------------------------------------------------------

const PUSHES: usize = 10;
/// Bytes before a WAL record's payload.
const RH: usize = sawmill::storage::wal::RECORD_HEADER;
/// Replaying ten records takes milliseconds: a start slower than this is a hang.
const READY_LIMIT: Duration = Duration::from_secs(10);

/// Record offsets and payload lengths of a WAL file (header 16 bytes, then
/// a `sawmill::storage::wal::RECORD_HEADER`-byte record header, then the payload).
fn wal_records(path: &Path) -> Vec<(usize, usize)> {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"SAWMWAL1");
    let mut out = Vec::new();
    let mut off = 16;
    while off + RH <= b.len() {
        let len = u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize;
        assert!(
            len > 0 && off + RH + len <= b.len(),
            "unexpected record at {off} in {}",
            path.display()
        );
        out.push((off, len));
        off += RH + len;
    }
    assert_eq!(
        off,
        b.len(),
        "{} does not end at a record boundary",
        path.display()
    );
    out
}

/// `PUSHES` pushes (one WAL record each) to one stream, then SIGKILL: nothing is flushed, so
/// the single WAL file holds everything. Returns the data dir, the WAL file and each push's lines.
fn wal_only(root: &Path) -> (PathBuf, PathBuf, Vec<Vec<String>>) {
    let data = root.join("data");
    let mut s = Server::start(&data, CONFIG);
    let ts = now_ns() - 60_000_000_000;
    let pushes: Vec<Vec<String>> = (0..PUSHES)
        .map(|p| push_lines(&s.addr(), "w", p, ts + p as i64 * 10))
        .collect();
    s.kill();
    assert!(
        segment_files(&data, "fake").is_empty(),
        "nothing may be flushed before the kill"
    );
    let wal = wal_files(&data);
    assert_eq!(wal.len(), 1, "{wal:?}");
    assert_eq!(wal_records(&wal[0]).len(), PUSHES, "one record per push");
    (data, wal[0].clone(), pushes)
}

#[derive(Debug, Clone, Copy)]
enum Tail {
    /// Cut `n` bytes into the last record.
    CutInto(usize),
    /// Cut in the middle of the last record's payload.
    CutMidPayload,
    /// Cut the last byte.
    CutLastByte,
    /// Append bytes after the last record.
    Append(&'static [u8]),
    /// Append a whole record whose checksum does not match.
    AppendBadCrcRecord,
    /// An empty next WAL file, as a kill between creating a file and writing its header leaves.
    EmptyNextFile,
    /// A next WAL file holding only its header.
    HeaderOnlyNextFile,
    /// Zero the last record's payload in place: its header made it to disk, its data did not
    /// (what a power loss can leave behind with `fsync: interval`).
    ZeroLastPayload,
}

#[track_caller]
fn check_torn_tail(tail: Tail, ready_limit: Duration) {
    let root = tempfile::tempdir().unwrap();
    let (data, wal, pushes) = wal_only(root.path());
    let recs = wal_records(&wal);
    let (last_off, last_len) = *recs.last().unwrap();
    let file_len = last_off + RH + last_len;
    let keeps_last = match tail {
        Tail::CutInto(n) => {
            cut(&wal, last_off + n);
            false
        }
        Tail::CutMidPayload => {
            cut(&wal, last_off + RH + last_len / 2);
            false
        }
        Tail::CutLastByte => {
            cut(&wal, file_len - 1);
            false
        }
        Tail::Append(bytes) => {
            append(&wal, bytes);
            true
        }
        Tail::AppendBadCrcRecord => {
            let b = std::fs::read(&wal).unwrap();
            let mut rec = b[last_off..file_len].to_vec();
            rec[4] ^= 0xff;
            append(&wal, &rec);
            true
        }
        Tail::EmptyNextFile => {
            std::fs::write(wal.with_file_name("00000000000000000002.wal"), b"").unwrap();
            true
        }
        Tail::HeaderOnlyNextFile => {
            let header = std::fs::read(&wal).unwrap()[..16].to_vec();
            std::fs::write(wal.with_file_name("00000000000000000002.wal"), header).unwrap();
            true
        }
        Tail::ZeroLastPayload => {
            let mut b = std::fs::read(&wal).unwrap();
            b[last_off + RH..file_len].fill(0);
            std::fs::write(&wal, b).unwrap();
            false
        }
    };
    let kept = if keeps_last { PUSHES } else { PUSHES - 1 };
    let want: BTreeSet<String> = pushes[..kept].iter().flatten().cloned().collect();
    let mut s = Server::start_within(&data, CONFIG, ready_limit);
    assert_eq!(
        served(&s.addr(), ALL),
        want,
        "{tail:?}: every record before the damage, and nothing else"
    );
    assert_eq!(
        metric(&s.addr(), "sawmill_wal_corruptions_total"),
        0.0,
        "{tail:?}: a torn tail is not corruption"
    );
    // Writes go on, and a second crash loses nothing more.
    let more = push_lines(&s.addr(), "w", 100, now_ns() - 1_000_000_000);
    s.kill();
    s.restart_within(ready_limit);
    let mut want2 = want.clone();
    want2.extend(more);
    assert_eq!(
        served(&s.addr(), ALL),
        want2,
        "{tail:?}: after another kill and restart"
    );
}

#[test]
fn torn_wal_tail_keeps_every_record_before_it() {
    for tail in [
        Tail::CutInto(1),
        Tail::CutInto(4),
        Tail::CutInto(8),
        Tail::CutInto(9),
        Tail::CutMidPayload,
        Tail::CutLastByte,
        Tail::Append(&[0xde, 0xad, 0xbe]),
        Tail::Append(&[0u8; 4096]),
        // A record header claiming 1 MiB with only a few bytes behind it.
        Tail::Append(&[0x00, 0x00, 0x10, 0x00, 1, 2, 3, 4, 5, 6, 7]),
        Tail::Append(&[0xff; 64]),
        Tail::EmptyNextFile,
        Tail::HeaderOnlyNextFile,
    ] {
        check_torn_tail(tail, READY_LIMIT);
    }
}

/// A last record that is whole in length but fails its checksum is a torn tail: cut off, and
/// the server is ready at once. Regression: `wal::read_records` used to loop forever on it,
/// pushing a problem per turn (never ready, memory growing by hundreds of MB per second); the
/// short readiness limit keeps a return of that bug from eating the machine.
#[test]
fn wal_tail_record_with_bad_checksum_is_cut_off() {
    check_torn_tail(Tail::AppendBadCrcRecord, Duration::from_secs(5));
    check_torn_tail(Tail::ZeroLastPayload, Duration::from_secs(5));
}

#[derive(Debug, Clone, Copy)]
enum Spot {
    /// A byte of the record's checksum field.
    Crc,
    /// The first payload byte (the record kind).
    Kind,
    /// The middle of the payload (inside a line).
    MidPayload,
    /// The last payload byte.
    LastByte,
}

#[track_caller]
fn check_damaged_record(record: usize, spot: Spot) {
    let root = tempfile::tempdir().unwrap();
    let (data, wal, pushes) = wal_only(root.path());
    let (off, len) = wal_records(&wal)[record];
    let at = match spot {
        Spot::Crc => off + 5,
        Spot::Kind => off + RH,
        Spot::MidPayload => off + RH + len / 2,
        Spot::LastByte => off + RH + len - 1,
    };
    flip(&wal, at);
    let want: BTreeSet<String> = pushes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != record)
        .flat_map(|(_, l)| l.iter().cloned())
        .collect();
    let mut s = Server::start_within(&data, CONFIG, READY_LIMIT);
    assert_eq!(
        served(&s.addr(), ALL),
        want,
        "record {record}, {spot:?}: every record but the damaged one"
    );
    assert_eq!(
        metric(&s.addr(), "sawmill_wal_corruptions_total"),
        1.0,
        "record {record}, {spot:?}: reported"
    );
    let more = push_lines(&s.addr(), "w", 100, now_ns() - 1_000_000_000);
    s.kill();
    s.restart_within(READY_LIMIT);
    let mut want2 = want.clone();
    want2.extend(more);
    assert_eq!(
        served(&s.addr(), ALL),
        want2,
        "record {record}, {spot:?}: after another kill and restart"
    );
}

#[test]
fn damaged_wal_record_is_skipped_and_the_records_around_it_served() {
    check_damaged_record(0, Spot::MidPayload);
    check_damaged_record(4, Spot::MidPayload);
    check_damaged_record(4, Spot::Crc);
    check_damaged_record(4, Spot::Kind);
    check_damaged_record(PUSHES - 2, Spot::LastByte);
}

/// A damaged length field in the middle of the last WAL file is corruption, not a torn tail:
/// reported, skipped, and the intact records after it (all acknowledged) are served. Regression:
/// replay used to take it for a torn tail and truncate the file there, deleting them.
#[test]
fn wal_length_damage_mid_file_keeps_later_records() {
    for (byte, name) in [(3, "high byte"), (0, "low byte")] {
        let root = tempfile::tempdir().unwrap();
        let (data, wal, pushes) = wal_only(root.path());
        let (off, _) = wal_records(&wal)[4];
        flip(&wal, off + byte);
        let want: BTreeSet<String> = pushes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 4)
            .flat_map(|(_, l)| l.iter().cloned())
            .collect();
        let s = Server::start_within(&data, CONFIG, READY_LIMIT);
        assert_eq!(served(&s.addr(), ALL), want, "{name} of record 4's length");
        assert!(
            metric(&s.addr(), "sawmill_wal_corruptions_total") >= 1.0,
            "{name}: reported as corruption"
        );
    }
}

/// A WAL record (`len | crc | payload`) for `tenant`, stream `labels`, one entry, built so that
/// every byte is below 0x80: it can travel inside a log line (valid UTF-8).
fn ascii_wal_record(tenant: &str, labels: &str, ts: i64, line: &str) -> Vec<u8> {
    for nonce in 0..10_000 {
        let text = format!("{line} {nonce}");
        let mut p = vec![1u8];
        p.extend_from_slice(&(tenant.len() as u16).to_le_bytes());
        p.extend_from_slice(tenant.as_bytes());
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&(labels.len() as u32).to_le_bytes());
        p.extend_from_slice(labels.as_bytes());
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&ts.to_le_bytes());
        p.extend_from_slice(&(text.len() as u32).to_le_bytes());
        p.extend_from_slice(text.as_bytes());
        p.extend_from_slice(&0u16.to_le_bytes());
        let mut rec = (p.len() as u32).to_le_bytes().to_vec();
        rec.extend_from_slice(&crc32c::crc32c(&p).to_le_bytes());
        rec.extend_from_slice(&p);
        if rec.iter().all(|b| *b < 0x80) {
            return rec;
        }
    }
    panic!("no ascii record found");
}

/// A crash tears the last WAL record, a push from tenant `mallory` whose line carries the bytes
/// of a well-formed WAL record for tenant `victim`. Replay must cut the torn record off, not
/// find a record inside its payload: searching a damaged region for the next intact record
/// (`wal::resync`) trusts bytes a client wrote, so a crash lets one tenant write into another.
#[test]
fn torn_record_carrying_a_record_in_its_line_is_not_replayed() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = format!("auth_enabled: true\n{CONFIG}");
    let mut s = Server::start_within(&data, &config, READY_LIMIT);
    let ts = now_ns() & 0x7f7f_7f7f_7f7f_7f7f;
    let inner = ascii_wal_record("victim", r#"{app="injected"}"#, ts, "injected line");
    let line = format!(
        "before {} after {}",
        String::from_utf8(inner.clone()).unwrap(),
        "z".repeat(1000)
    );
    let headers = [
        ("Content-Type", "application/json"),
        ("X-Scope-OrgID", "mallory"),
    ];
    for (i, l) in ["first line", line.as_str()].into_iter().enumerate() {
        let body = serde_json::json!({"streams": [{"stream": {"app": "m"}, "values": [[(now_ns() + i as i64).to_string(), l]]}]});
        let (status, text) = push_with(&s.addr(), &headers, body.to_string().as_bytes());
        assert_eq!(status, 204, "{text}");
    }
    s.kill();
    let wal = wal_files(&data);
    assert_eq!(wal.len(), 1, "{wal:?}");
    let bytes = std::fs::read(&wal[0]).unwrap();
    let at = bytes
        .windows(inner.len())
        .position(|w| w == inner.as_slice())
        .expect("the line is in the WAL as written");
    // The crash lands after the inner bytes, before the end of the outer record.
    cut(&wal[0], at + inner.len() + 10);
    let s = Server::start_within(&data, &config, READY_LIMIT);
    let (start, end) = (0, i64::MAX);
    let victim = query_all(
        &s.addr(),
        &[("X-Scope-OrgID", "victim")],
        r#"{app=~".+"}"#,
        start,
        end,
    )
    .unwrap();
    assert!(
        victim.is_empty(),
        "tenant victim got lines it never pushed: {victim:?}"
    );
    let mallory = query_all(
        &s.addr(),
        &[("X-Scope-OrgID", "mallory")],
        r#"{app=~".+"}"#,
        start,
        end,
    )
    .unwrap();
    let mallory: Vec<&str> = mallory.iter().map(|(_, _, l)| l.as_str()).collect();
    assert_eq!(mallory, ["first line"], "the torn record is cut off");
}
