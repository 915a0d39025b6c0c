//! Crash test: the server runs as a process while two threads push small batches of unique
//! lines; it is SIGKILLed at a random moment (so kills land during pushes, group commits, WAL
//! rotation and segment flushes), restarted, and read back. Every push that was acknowledged
//! with a 2xx must be served, no line may be served twice, every served line must be one that
//! was pushed (same stream, same timestamp), and a line served once must stay served.
//! `SAWMILL_TEST_SEED` replays a run.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const CYCLES: usize = 20;
const PUSHERS: usize = 2;
const STREAMS_PER_PUSHER: u64 = 3;
/// Upper bound on pushes per thread per cycle, so a pusher loop always ends.
const MAX_PUSHES: usize = 20_000;
const QUERY: &str = r#"{app="crash"}"#;

/// Small blocks, chunks and WAL files and a short flush period, so that a few hundred
/// milliseconds of pushing seal blocks, cut chunks, write segments and rotate the WAL.
fn config(fsync: &str) -> String {
    format!(
        "limits_config:
  ingestion_rate_mb: 1000
  ingestion_burst_size_mb: 1000
  reject_old_samples: false
  max_entries_limit_per_query: 1000000
ingester:
  chunk_block_size: 4096
  chunk_target_size: 16384
  flush_check_period: 200ms
  max_chunk_age: 2s
  chunk_idle_period: 1s
  wal:
    fsync: {fsync}
    fsync_interval: 100ms
    segment_size: 65536
"
    )
}

/// One pushed line. Every line gets its own timestamp from a shared clock, so the timestamp
/// identifies the line.
struct Line {
    ts: i64,
    stream: String,
    text: String,
}

/// What one pusher thread did in one cycle.
#[derive(Default)]
struct Pushed {
    /// Every line sent, acknowledged or not.
    attempted: Vec<Line>,
    /// Timestamps of the lines of pushes answered with a 2xx.
    acked: Vec<i64>,
    acked_pushes: usize,
    /// Answers that are neither a 2xx nor a transport error (a killed server).
    unexpected: Vec<String>,
}

fn pusher(
    addr: String,
    cycle: usize,
    thread: usize,
    seed: u64,
    clock: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
) -> Pushed {
    let mut rng = Rng(seed);
    let mut out = Pushed::default();
    for push in 0..MAX_PUSHES {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let n_lines = rng.range(1, 50) as usize;
        let mut lines = Vec::with_capacity(n_lines);
        for i in 0..n_lines {
            let stream = (b'a' + rng.range(0, STREAMS_PER_PUSHER - 1) as u8) as char;
            let pad = "x".repeat(rng.range(0, 60) as usize);
            lines.push(Line {
                ts: clock.fetch_add(1, Ordering::AcqRel),
                stream: format!("t{thread}{stream}"),
                text: format!("c{cycle}-t{thread}-p{push}-l{i} {pad}"),
            });
        }
        let mut streams: Vec<&str> = lines.iter().map(|l| l.stream.as_str()).collect();
        streams.sort();
        streams.dedup();
        let body = serde_json::json!({
            "streams": streams.iter().map(|s| serde_json::json!({
                "stream": {"app": "crash", "s": s},
                "values": lines.iter().filter(|l| l.stream == *s)
                    .map(|l| [l.ts.to_string(), l.text.clone()]).collect::<Vec<_>>(),
            })).collect::<Vec<_>>()
        });
        let res = try_request(
            "POST",
            &format!("{addr}/loki/api/v1/push"),
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
            Duration::from_secs(10),
        );
        match res {
            Ok((status, _)) if (200..300).contains(&status) => {
                out.acked.extend(lines.iter().map(|l| l.ts));
                out.acked_pushes += 1;
            }
            Ok((status, body)) => out.unexpected.push(format!("{status}: {body}")),
            // The server was killed: stop soon; a few more refused connections are harmless.
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
        out.attempted.extend(lines);
    }
    out
}

/// What the test knows across cycles, indexed by a line's timestamp minus `start`.
struct Ledger {
    start: i64,
    attempted: Vec<Option<Line>>,
    acked: Vec<bool>,
    /// Lines served after some restart: they must stay served.
    seen: Vec<bool>,
    acked_pushes: usize,
}

impl Ledger {
    fn add(&mut self, p: Pushed) {
        for l in p.attempted {
            let i = (l.ts - self.start) as usize;
            if self.attempted.len() <= i {
                self.attempted.resize_with(i + 1, || None);
            }
            self.attempted[i] = Some(l);
        }
        self.acked.resize(self.attempted.len(), false);
        self.seen.resize(self.attempted.len(), false);
        for ts in p.acked {
            self.acked[(ts - self.start) as usize] = true;
        }
        self.acked_pushes += p.acked_pushes;
    }

    fn describe(&self, i: usize) -> String {
        match &self.attempted[i] {
            Some(l) => format!("{:?} in {} at {}", l.text, l.stream, l.ts),
            None => format!("nothing at {}", self.start + i as i64),
        }
    }
}

/// Reads everything back and checks the ledger against it.
#[track_caller]
fn check(addr: &str, ledger: &mut Ledger, when: &str) {
    let end = ledger.start + ledger.attempted.len() as i64;
    let url = format!(
        "{addr}/loki/api/v1/query_range?{}",
        serde_urlencoded::to_string([
            ("query", QUERY),
            ("start", &ledger.start.to_string()),
            ("end", &end.to_string()),
            ("limit", "1000000"),
            ("direction", "forward"),
        ])
        .unwrap()
    );
    let (status, body) = try_request("GET", &url, &[], None, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{when}: query failed: {e}"));
    assert_eq!(status, 200, "{when}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut count = vec![0u32; ledger.attempted.len()];
    let mut wrong = Vec::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let stream = s["stream"]["s"].as_str().unwrap_or("");
        for e in s["values"].as_array().unwrap() {
            let ts: i64 = e[0].as_str().unwrap().parse().unwrap();
            let text = e[1].as_str().unwrap();
            let i = ts - ledger.start;
            match ledger.attempted.get(i as usize).and_then(Option::as_ref) {
                Some(l) if i >= 0 && l.stream == stream && l.text == text => count[i as usize] += 1,
                _ => wrong.push(format!("{text:?} in {stream} at {ts}")),
            }
        }
    }
    let pick =
        |f: &dyn Fn(usize) -> bool| -> Vec<usize> { (0..count.len()).filter(|&i| f(i)).collect() };
    let twice = pick(&|i| count[i] > 1);
    let missing = pick(&|i| ledger.acked[i] && count[i] == 0);
    let lost = pick(&|i| ledger.seen[i] && count[i] == 0);
    let show =
        |v: &[usize]| -> Vec<String> { v.iter().take(5).map(|&i| ledger.describe(i)).collect() };
    assert!(
        wrong.is_empty(),
        "{when}: {} lines served that were never pushed so, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(
        twice.is_empty(),
        "{when}: {} lines served more than once, e.g. {:?}",
        twice.len(),
        show(&twice)
    );
    assert!(
        missing.is_empty(),
        "{when}: {} of {} acknowledged lines missing, e.g. {:?}",
        missing.len(),
        ledger.acked.iter().filter(|a| **a).count(),
        show(&missing)
    );
    assert!(
        lost.is_empty(),
        "{when}: {} lines served after an earlier restart are gone, e.g. {:?}",
        lost.len(),
        show(&lost)
    );
    for (seen, n) in ledger.seen.iter_mut().zip(&count) {
        *seen = *n > 0;
    }
}

fn wal_seq(p: &Path) -> u64 {
    p.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn kill_restart_cycles(fsync: &str, default_seed: u64) {
    let mut rng = Rng(seed(default_seed));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &config(fsync));
    let start = now_ns() - 30 * 60 * 1_000_000_000;
    let clock = Arc::new(AtomicI64::new(start));
    let mut ledger = Ledger {
        start,
        attempted: Vec::new(),
        acked: Vec::new(),
        seen: Vec::new(),
        acked_pushes: 0,
    };
    let mut unexpected = Vec::new();
    for cycle in 0..CYCLES {
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..PUSHERS)
            .map(|t| {
                let (addr, clock, stop, seed) =
                    (server.addr(), clock.clone(), stop.clone(), rng.next_u64());
                std::thread::spawn(move || pusher(addr, cycle, t, seed, clock, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.range(50, 400)));
        server.kill();
        stop.store(true, Ordering::Release);
        for t in threads {
            let p = t.join().expect("pusher panicked");
            unexpected.extend(p.unexpected.iter().cloned());
            ledger.add(p);
        }
        server.restart();
        check(
            &server.addr(),
            &mut ledger,
            &format!("after kill {}", cycle + 1),
        );
    }
    assert!(
        unexpected.is_empty(),
        "pushes answered with neither 2xx nor a dropped connection: {:?}",
        &unexpected[..unexpected.len().min(5)]
    );
    // A clean stop flushes everything to segments; nothing may change across it.
    server.stop();
    server.restart();
    check(&server.addr(), &mut ledger, "after a clean stop");
    server.stop();

    // The run exercised what it is meant to: many acknowledged pushes, segments written, and
    // WAL files rotated by size (each start and the clean stop open one new file each; a
    // higher sequence number means rotation).
    assert!(
        ledger.acked_pushes >= CYCLES * 5,
        "only {} pushes acknowledged",
        ledger.acked_pushes
    );
    let segments = segment_files(&data, "fake").len();
    assert!(segments >= 2, "{segments} segments");
    let last_wal = wal_files(&data).last().map(|p| wal_seq(p)).unwrap_or(0);
    assert!(
        last_wal > CYCLES as u64 + 3,
        "the WAL never rotated by size: last file {last_wal}"
    );
    eprintln!(
        "fsync {fsync}: {} pushes and {} lines acknowledged, {} lines attempted, {} served, {segments} segments, {last_wal} WAL files",
        ledger.acked_pushes,
        ledger.acked.iter().filter(|a| **a).count(),
        ledger.attempted.len(),
        ledger.seen.iter().filter(|a| **a).count(),
    );
}

#[test]
fn acknowledged_pushes_survive_sigkill_with_fsync_always() {
    kill_restart_cycles("always", 0x5eed_0001);
}

#[test]
fn acknowledged_pushes_survive_sigkill_with_fsync_interval() {
    kill_restart_cycles("interval", 0x5eed_0002);
}
