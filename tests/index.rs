//! The search index end to end: random queries give the same answers with the index on and
//! off (and the needle queries read fewer lines with it); a missing or damaged index is
//! rebuilt; compaction replaces indexes with their segments; the correlate API and
//! `sawmill correlate`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{get, metric, now_ns, push_json, seed, Rng, Server, BIN};

/// Small blocks and chunks, so that a segment has many blocks to skip.
const BASE: &str = "ingester:\n  chunk_block_size: 4096\n  chunk_target_size: 32768\nlimits_config:\n  ingestion_rate_mb: 100\n  ingestion_burst_size_mb: 100\n";
/// Segments of today's format have block filters, so they get an index only with
/// `filtered_segments`.
const SMALL: &str = "ingester:\n  chunk_block_size: 4096\n  chunk_target_size: 32768\nlimits_config:\n  ingestion_rate_mb: 100\n  ingestion_burst_size_mb: 100\nindex:\n  filtered_segments: true\n";
const APPS: [&str; 5] = ["api", "db", "web", "auth", "pay"];
const WORDS: [&str; 8] = [
    "started",
    "finished",
    "timeout",
    "retrying",
    "declined",
    "cache",
    "connected",
    "shutdown",
];

struct Data {
    ids: Vec<String>,
    t0: i64,
    lines: usize,
}

fn push_streams(addr: &str, streams: &mut [Vec<serde_json::Value>]) {
    let body = serde_json::json!({"streams": streams.iter().enumerate().map(|(i, v)| serde_json::json!({"stream": {"app": APPS[i], "job": "idx"}, "values": v})).collect::<Vec<_>>()});
    let (status, text) = push_json(addr, &body.to_string());
    assert_eq!(status, 204, "{text}");
    streams.iter_mut().for_each(Vec::clear);
}

/// Requests of 2 to 7 lines, each line in one service's stream, JSON or logfmt; some carry
/// the ID as structured metadata or as an `X-Request-ID` field instead. Pushed 20 requests
/// at a time, as a shipper would (blocks are cut between pushes).
fn push_requests(addr: &str, rng: &mut Rng, requests: usize) -> Data {
    let t0 = now_ns() - 3_000_000_000_000;
    let mut streams: Vec<Vec<serde_json::Value>> = vec![Vec::new(); APPS.len()];
    let mut ids = Vec::new();
    let mut ts = t0;
    let mut lines = 0;
    for r in 0..requests {
        let id = format!("req-{r:05}-{:08x}", rng.next_u64() as u32);
        let trace = format!("{:016x}", rng.next_u64());
        for k in 0..rng.range(2, 7) {
            let app = rng.range(0, APPS.len() as u64 - 1) as usize;
            let word = WORDS[rng.range(0, WORDS.len() as u64 - 1) as usize];
            let level = if rng.range(0, 10) == 0 {
                "error"
            } else {
                "info"
            };
            ts += rng.range(1, 50_000_000) as i64;
            let mut value = match (r + k as usize) % 4 {
                0 => serde_json::json!([ts.to_string(), serde_json::json!({"level": level, "msg": format!("{word} step {k}"), "request_id": id, "trace_id": trace}).to_string()]),
                1 => serde_json::json!([ts.to_string(), format!("level={level} msg=\"{word} step {k}\" request_id={id} trace_id={trace}")]),
                2 => serde_json::json!([ts.to_string(), format!("level={level} msg=\"{word}\" X-Request-ID={id}")]),
                _ => serde_json::json!([ts.to_string(), format!("{level}: {word} user-{} done", rng.range(0, 500))]),
            };
            if (r + k as usize) % 4 == 3 {
                value
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"request_id": id}));
            }
            streams[app].push(value);
            lines += 1;
        }
        ids.push(id);
        if r % 20 == 19 {
            push_streams(addr, &mut streams);
        }
    }
    push_streams(addr, &mut streams);
    Data { ids, t0, lines }
}

fn wait_for_indexes(s: &Server) {
    let started = Instant::now();
    loop {
        let segs = metric(&s.addr(), "sawmill_segments");
        if segs > 0.0 && metric(&s.addr(), "sawmill_index_segments") >= segs {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "segments not indexed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The answer's `data.result` and the lines it processed.
fn run(s: &Server, q: &str, d: &Data) -> (serde_json::Value, u64) {
    let (start, end) = (
        (d.t0 - 1).to_string(),
        (d.t0 + 3_600_000_000_000).to_string(),
    );
    let (status, body) = get(
        &s.addr(),
        "/loki/api/v1/query_range",
        &[
            ("query", q),
            ("start", &start),
            ("end", &end),
            ("limit", "5000"),
            ("direction", "forward"),
            ("step", "60"),
        ],
    );
    assert_eq!(status, 200, "{q}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let lines = v["data"]["stats"]["summary"]["totalLinesProcessed"]
        .as_u64()
        .unwrap_or(0);
    (v["data"]["result"].clone(), lines)
}

fn random_queries(rng: &mut Rng, d: &Data) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..60 {
        let id = if rng.range(0, 8) == 0 {
            format!("req-99999-{:08x}", rng.next_u64() as u32)
        } else {
            d.ids[rng.range(0, d.ids.len() as u64 - 1) as usize].clone()
        };
        let cut = rng.range(0, 6) as usize;
        let word = WORDS[rng.range(0, WORDS.len() as u64 - 1) as usize];
        out.push(match rng.range(0, 9) {
            0 => format!(r#"{{job="idx"}} |= "{id}""#),
            1 => format!(r#"{{job="idx"}} |= "{}""#, &id[cut..]),
            2 => format!(r#"{{job="idx"}} | json | request_id="{id}""#),
            3 => format!(r#"{{job="idx"}} | logfmt | request_id="{id}""#),
            4 => format!(r#"{{job="idx"}} | logfmt | X_Request_ID="{id}""#),
            5 => format!(r#"{{app=~"api|db"}} |= " {word} " |= "-{}""#, &id[4..9]),
            6 => format!(r#"sum by (app) (count_over_time({{job="idx"}} |= "{id}" [10m]))"#),
            7 => format!(r#"{{job="idx"}} | request_id="{id}""#),
            _ => format!(r#"{{job="idx"}} |= "{word} step" | json | request_id="{id}" | line_format "{{{{.msg}}}}""#),
        });
    }
    out
}

#[test]
fn answers_are_the_same_with_and_without_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed(7));
    let mut s = Server::start(&dir.path().join("d"), SMALL);
    let d = push_requests(&s.addr(), &mut rng, 1500);
    s.restart(); // flushes to segments; the indexer indexes them
    wait_for_indexes(&s);
    let queries = random_queries(&mut rng, &d);
    let with: Vec<(serde_json::Value, u64)> = queries.iter().map(|q| run(&s, q, &d)).collect();
    s.write_config(&format!("{BASE}index:\n  enabled: false\n"));
    s.restart();
    assert_eq!(metric(&s.addr(), "sawmill_index_segments"), 0.0);
    let mut read_with = 0;
    let mut read_without = 0;
    for (q, (want, lines_with)) in queries.iter().zip(&with) {
        let (got, lines_without) = run(&s, q, &d);
        assert_eq!(&got, want, "{q}");
        read_with += lines_with;
        read_without += lines_without;
    }
    let found = with
        .iter()
        .filter(|(r, _)| r.as_array().is_some_and(|a| !a.is_empty()))
        .count();
    assert!(found > 30, "most queries find something: {found}");
    // Without the index, the blocks' filters still skip; the index only ever narrows more.
    // A whole read of every query would process every stored line.
    let whole = queries.len() as u64 * d.lines as u64;
    assert!(
        read_with <= read_without && read_without * 5 < whole,
        "filters and index spare most reads: {read_with} lines read with the index, \
         {read_without} without, {whole} in whole reads"
    );
}

/// Entries of tenant `fake`'s segments directory with this extension (`seg` files, `idx`
/// directories).
fn dirs(data: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    common::files_with_ext(&data.join("tenants/t-66616b65/segments"), ext)
}

#[test]
fn indexes_are_rebuilt_when_missing_or_damaged_and_go_with_their_segments() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut rng = Rng(seed(11));
    let mut s = Server::start(&data, SMALL);
    let d1 = push_requests(&s.addr(), &mut rng, 300);
    s.restart();
    let d2 = push_requests(&s.addr(), &mut rng, 300);
    s.restart();
    wait_for_indexes(&s);
    let queries: Vec<String> = d1
        .ids
        .iter()
        .chain(&d2.ids)
        .step_by(37)
        .map(|id| format!(r#"{{job="idx"}} |= "{id}""#))
        .collect();
    let before: Vec<serde_json::Value> = queries.iter().map(|q| run(&s, q, &d1).0).collect();
    let idx = dirs(&data, "idx");
    assert_eq!(idx.len(), 2, "{idx:?}");
    // One index deleted, the other damaged.
    std::fs::remove_dir_all(&idx[0]).unwrap();
    let victim = std::fs::read_dir(&idx[1])
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_none_or(|e| e != "json" && e != "lock"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a tantivy data file");
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();
    s.restart();
    wait_for_indexes(&s);
    assert!(
        metric(&s.addr(), "sawmill_index_damaged_total") >= 1.0,
        "the damaged index was noticed"
    );
    assert_eq!(dirs(&data, "idx").len(), 2);
    let after: Vec<serde_json::Value> = queries.iter().map(|q| run(&s, q, &d1).0).collect();
    assert_eq!(before, after);

    // Compaction merges the segments; their indexes go with them and the output gets one.
    s.write_config(&format!(
        "{SMALL}compactor:\n  compaction_interval: 200ms\n  partition_period: 24h\n"
    ));
    s.restart();
    let started = Instant::now();
    loop {
        let segs = dirs(&data, "seg");
        let idx = dirs(&data, "idx");
        let paired =
            segs.len() == idx.len() && segs.iter().all(|p| idx.contains(&p.with_extension("idx")));
        if segs.len() == 1 && paired && metric(&s.addr(), "sawmill_index_segments") == 1.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "segments {segs:?}, indexes {idx:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let compacted: Vec<serde_json::Value> = queries.iter().map(|q| run(&s, q, &d1).0).collect();
    assert_eq!(before, compacted);
}

#[test]
fn correlate_api_and_command() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(&dir.path().join("d"), "");
    let t0 = now_ns() - 60_000_000_000;
    let body = serde_json::json!({"streams": [
        {"stream": {"app": "api"}, "values": [
            [t0.to_string(), r#"{"level":"info","msg":"request started","request_id":"abc-123"}"#],
            [(t0 + 250_000_000).to_string(), r#"{"level":"error","msg":"payment failed","request_id":"abc-123"}"#],
            [(t0 + 10).to_string(), r#"{"level":"info","msg":"other","request_id":"abc-1234"}"#]]},
        {"stream": {"app": "pay", "level": "warn"}, "values": [
            [(t0 + 100_000_000).to_string(), "msg=\"card declined\" X-Request-ID=abc-123"]]},
        {"stream": {"app": "db"}, "values": [
            [(t0 + 50_000_000).to_string(), "query took 12ms", {"trace_id": "abc-123"}]]}
    ]});
    assert_eq!(push_json(&s.addr(), &body.to_string()).0, 204);
    let check = |s: &Server| {
        let (status, text) = get(&s.addr(), "/sawmill/api/v1/correlate", &[("id", "abc-123")]);
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let d = &v["data"];
        let services: Vec<&str> = d["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["service"].as_str().unwrap())
            .collect();
        assert_eq!(services, ["api", "db", "pay", "api"], "in time order: {d}");
        assert_eq!(
            d["entries"][2]["stream"],
            serde_json::json!({"app": "pay", "level": "warn"})
        );
        assert_eq!(
            d["summary"]["services"],
            serde_json::json!(["api", "db", "pay"])
        );
        assert_eq!(
            d["summary"]["levels"],
            serde_json::json!({"error": 1, "info": 1, "unknown": 1, "warn": 1})
        );
        assert_eq!(d["summary"]["duration_seconds"], serde_json::json!(0.25));
        assert_eq!(d["summary"]["first"], serde_json::json!(t0.to_string()));
        let out = std::process::Command::new(BIN)
            .args(["correlate", "abc-123", "-z", "utc"])
            .env("LOKI_ADDR", s.addr())
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("abc-123: 4 entries from 3 services (api, db, pay) over 0.250s"),
            "{text}"
        );
        assert_eq!(lines[1], "+0.000s  api  info   request started");
        assert_eq!(lines[3], "+0.100s  pay  warn   card declined");
        assert_eq!(lines[4], "+0.250s  api  error  payment failed");
    };
    check(&s); // from memory
    s.restart();
    check(&s); // from segments, through their blocks' filters
    s.write_config("index:\n  filtered_segments: true\n");
    s.restart();
    wait_for_indexes(&s);
    check(&s); // from segments with a search index
    let (status, text) = get(&s.addr(), "/sawmill/api/v1/correlate", &[("id", "nope")]);
    assert_eq!(status, 200);
    assert!(text.contains(r#""entries":[]"#), "{text}");
    let (status, text) = get(&s.addr(), "/sawmill/api/v1/correlate", &[]);
    assert_eq!(status, 400);
    assert!(text.contains("id parameter is required"), "{text}");
}
