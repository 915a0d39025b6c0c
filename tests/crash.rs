//! Crash test: the server runs as a process while two threads push small batches of unique
//! lines; it is SIGKILLed at a random moment (so kills land during pushes, group commits, WAL
//! rotation and segment flushes), restarted, and read back. Every push that was acknowledged
//! with a 2xx must be served, no line may be served twice, every served line must be one that
//! was pushed (same stream, same timestamp), and a line served once must stay served.
//! `SAWMILL_TEST_SEED` replays a run.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const CYCLES: usize = 20;
const PUSHERS: usize = 2;
const STREAMS_PER_PUSHER: usize = 3;
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

/// Where a pushed line went: its `s` label and timestamp.
type Place = (String, i64);

/// What one pusher thread did in one cycle.
#[derive(Default)]
struct Pushed {
    /// Every line sent, acknowledged or not.
    attempted: Vec<(String, Place)>,
    /// Lines of pushes answered with a 2xx.
    acked: Vec<String>,
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
        let mut streams: Vec<(String, Vec<(i64, String)>)> = Vec::new();
        for i in 0..n_lines {
            let s = format!(
                "t{thread}{}",
                (b'a' + rng.range(0, STREAMS_PER_PUSHER as u64 - 1) as u8) as char
            );
            let ts = clock.fetch_add(1, Ordering::AcqRel);
            let pad = "x".repeat(rng.range(0, 60) as usize);
            let line = format!("c{cycle}-t{thread}-p{push}-l{i} {pad}");
            match streams.iter_mut().find(|(name, _)| *name == s) {
                Some((_, v)) => v.push((ts, line)),
                None => streams.push((s, vec![(ts, line)])),
            }
        }
        let body = serde_json::json!({
            "streams": streams.iter().map(|(s, v)| serde_json::json!({
                "stream": {"app": "crash", "s": s},
                "values": v.iter().map(|(ts, l)| [ts.to_string(), l.clone()]).collect::<Vec<_>>(),
            })).collect::<Vec<_>>()
        });
        let lines: Vec<(String, Place)> = streams
            .iter()
            .flat_map(|(s, v)| v.iter().map(move |(ts, l)| (l.clone(), (s.clone(), *ts))))
            .collect();
        out.attempted.extend(lines.iter().cloned());
        let res = try_request(
            "POST",
            &format!("{addr}/loki/api/v1/push"),
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
            Duration::from_secs(10),
        );
        match res {
            Ok((status, _)) if (200..300).contains(&status) => {
                out.acked.extend(lines.into_iter().map(|(l, _)| l));
                out.acked_pushes += 1;
            }
            Ok((status, body)) => out.unexpected.push(format!("{status}: {body}")),
            // The server was killed: stop soon; a few more refused connections are harmless.
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    out
}

/// What the test knows across cycles.
#[derive(Default)]
struct Ledger {
    attempted: HashMap<String, Place>,
    acked: HashSet<String>,
    acked_pushes: usize,
    /// Lines served after some restart: they must stay served.
    seen: HashSet<String>,
}

/// Reads everything back and checks the ledger against it.
#[track_caller]
fn check(addr: &str, ledger: &mut Ledger, start: i64, end: i64, when: &str) {
    let got = query_all(addr, &[], QUERY, start, end)
        .unwrap_or_else(|(status, body)| panic!("{when}: query answered {status}: {body}"));
    let mut count: HashMap<&str, usize> = HashMap::new();
    let mut wrong = Vec::new();
    for (labels, ts, line) in &got {
        *count.entry(line.as_str()).or_default() += 1;
        let labels: serde_json::Value = serde_json::from_str(labels).unwrap();
        let place = (labels["s"].as_str().unwrap_or("").to_string(), *ts);
        if ledger.attempted.get(line) != Some(&place) {
            wrong.push(format!(
                "{line:?} at {place:?}, pushed at {:?}",
                ledger.attempted.get(line)
            ));
        }
    }
    let twice: Vec<_> = count
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(l, n)| format!("{l:?} x{n}"))
        .collect();
    let mut missing: Vec<_> = ledger
        .acked
        .iter()
        .filter(|l| !count.contains_key(l.as_str()))
        .collect();
    missing.sort();
    let mut lost: Vec<_> = ledger
        .seen
        .iter()
        .filter(|l| !count.contains_key(l.as_str()))
        .collect();
    lost.sort();
    assert!(
        twice.is_empty(),
        "{when}: {} lines served more than once, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert!(
        wrong.is_empty(),
        "{when}: {} lines served that were never pushed so, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(
        missing.is_empty(),
        "{when}: {} of {} acknowledged lines missing, e.g. {:?}",
        missing.len(),
        ledger.acked.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        lost.is_empty(),
        "{when}: {} lines served after an earlier restart are gone, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    ledger.seen = count.into_keys().map(str::to_string).collect();
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
    let mut ledger = Ledger::default();
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
            ledger.attempted.extend(p.attempted);
            ledger.acked.extend(p.acked);
            ledger.acked_pushes += p.acked_pushes;
            unexpected.extend(p.unexpected);
        }
        server.restart();
        check(
            &server.addr(),
            &mut ledger,
            start,
            clock.load(Ordering::Acquire) + 1,
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
    check(
        &server.addr(),
        &mut ledger,
        start,
        clock.load(Ordering::Acquire) + 1,
        "after a clean stop",
    );
    server.stop();

    // The run exercised what it is meant to: many acknowledged pushes, segments written, and
    // WAL files rotated by size (each start and the clean stop open one new file each; more files means rotation).
    assert!(
        ledger.acked_pushes >= CYCLES * 5,
        "only {} pushes acknowledged",
        ledger.acked_pushes
    );
    assert!(
        segment_files(&data, "fake").len() >= 2,
        "segments: {:?}",
        segment_files(&data, "fake")
    );
    let last_wal = wal_files(&data).last().map(|p| wal_seq(p)).unwrap_or(0);
    assert!(
        last_wal > CYCLES as u64 + 3,
        "the WAL never rotated by size: last file {last_wal}"
    );
    eprintln!(
        "fsync {fsync}: {} pushes and {} lines acknowledged, {} lines attempted, {} served, {} segments",
        ledger.acked_pushes,
        ledger.acked.len(),
        ledger.attempted.len(),
        ledger.seen.len(),
        segment_files(&data, "fake").len()
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
