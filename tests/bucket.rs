//! Segments in an S3 bucket (moto's server, a real S3 protocol server on loopback): flushes
//! upload segments and list them in the bucket's catalog, queries read them back with ranged
//! GETs, a node that loses its disk but keeps its WAL loses nothing acknowledged, compaction
//! works on the bucket with a crash injected at each step, and a missing bucket is a clear
//! error at start.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{metric, now_ns, post, query_all, try_request, Entry, S3Server, Server};

const MIN: i64 = 60_000_000_000;
const HOUR: i64 = 60 * MIN;

fn config(s3: &S3Server, bucket: &str, interval: &str) -> String {
    format!(
        "limits_config:\n  reject_old_samples: false\n  max_query_length: 0\n  max_entries_limit_per_query: 0\n  ingestion_rate_mb: 1000\n  ingestion_burst_size_mb: 1000\n  out_of_order_time_window: 24h\ningester:\n  flush_check_period: 1h\ncompactor:\n  compaction_interval: {interval}\n{}",
        s3.config(bucket, "node-a")
    )
}

fn push(addr: &str, labels: &str, lines: &[(i64, String)]) {
    let values: Vec<serde_json::Value> = lines
        .iter()
        .map(|(ts, l)| serde_json::json!([ts.to_string(), l]))
        .collect();
    let body = format!(
        r#"{{"streams":[{{"stream":{labels},"values":{}}}]}}"#,
        serde_json::Value::Array(values)
    );
    let (status, text) = try_request(
        "POST",
        &format!("{addr}/loki/api/v1/push"),
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(status, 204, "{text}");
}

fn all(addr: &str) -> Vec<Entry> {
    query_all(
        addr,
        &[],
        r#"{app=~".+"}"#,
        now_ns() - 48 * HOUR,
        now_ns() + HOUR,
    )
    .unwrap_or_else(|(s, b)| panic!("query: {s} {b}"))
}

type Round = Vec<(&'static str, Vec<(i64, String)>)>;

/// Lines for three apps over the last five hours, so that each flush spans partitions.
fn round(base: i64, r: usize) -> Round {
    ["api", "db", "web"]
        .into_iter()
        .map(|app| {
            let lines = (0..40)
                .map(|k| {
                    let ts = base + (k * 7 + (r % 5) as i64) * MIN + r as i64 * 1000;
                    (
                        ts,
                        format!("{app} round {r} line {k} request_id=req-{r}-{k}"),
                    )
                })
                .collect();
            (app, lines)
        })
        .collect()
}

fn push_round(addr: &str, round: &Round) {
    for (app, lines) in round {
        push(addr, &format!(r#"{{"app":"{app}"}}"#), lines);
    }
}

fn expected_of(rounds: &[Round]) -> Vec<Entry> {
    let mut out: Vec<Entry> = rounds
        .iter()
        .flatten()
        .flat_map(|(app, lines)| {
            lines
                .iter()
                .map(move |(ts, l)| (format!(r#"{{"app":"{app}"}}"#), *ts, l.clone()))
        })
        .collect();
    out.sort();
    out
}

/// The segment objects of tenant `fake` in the bucket.
fn segment_objects(s3: &S3Server, bucket: &str) -> Vec<String> {
    s3.keys(bucket, "tenants/t-66616b65/segments/")
}

/// The segments the newest catalog generation of tenant `fake` lists (object keys).
fn catalog_segments(s3: &S3Server, bucket: &str) -> BTreeSet<String> {
    let gens = s3.keys(bucket, "tenants/t-66616b65/catalog/");
    let Some(newest) = gens.last() else {
        return BTreeSet::new();
    };
    let body = s3.get(bucket, newest);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "tenants/t-66616b65/segments/{:020}.seg",
                e["seq"].as_u64().unwrap()
            )
        })
        .collect()
}

fn local_files(dir: &Path, ext: &str) -> usize {
    walk(dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .count()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn flushed_segments_live_in_the_bucket_and_a_lost_disk_loses_nothing_acknowledged() {
    let Some(s3) = S3Server::start() else { return };
    s3.create_bucket("logs");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = Server::start(&data, &config(&s3, "logs", "1h"));
    let base = now_ns() - 5 * HOUR;

    let first = round(base, 0);
    push_round(&s.addr(), &first);
    let (status, body) = post(&format!("{}/flush", s.addr()), "text/plain", None, b"");
    assert_eq!(status, 204, "{body}");
    let objects = segment_objects(&s3, "logs");
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(
        objects.iter().cloned().collect::<BTreeSet<_>>(),
        catalog_segments(&s3, "logs")
    );
    // The disk keeps no segment: only the WAL, and the read cache.
    assert_eq!(local_files(&data, "seg"), 0);
    assert_eq!(all(&s.addr()), expected_of(std::slice::from_ref(&first)));

    // Acknowledged, not flushed, then the process dies and its disk is lost, all but the WAL.
    let second = round(base, 1);
    push_round(&s.addr(), &second);
    s.kill();
    for sub in std::fs::read_dir(&data).unwrap().flatten() {
        if sub.file_name() != "wal" {
            let p = sub.path();
            if p.is_dir() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
        }
    }
    s.restart();
    let both = expected_of(&[first.clone(), second.clone()]);
    assert_eq!(all(&s.addr()), both, "every acknowledged line, once");

    // A clean stop uploads the rest; a restart reads all of it from the bucket and the WAL
    // replays nothing twice.
    s.stop();
    assert_eq!(segment_objects(&s3, "logs").len(), 2);
    s.restart();
    assert_eq!(all(&s.addr()), both);
    // The second read of each chunk came from the read cache.
    assert!(metric(&s.addr(), "sawmill_bucket_cache_hits_total") >= 1.0);
}

/// Compaction on the bucket, SIGKILLed at each step (after the upload but before the catalog
/// commit, before and after publishing, before and between deleting the inputs): every line
/// is still returned exactly once, and once compaction settles, the bucket holds exactly the
/// segments its catalog lists.
#[test]
fn compaction_on_the_bucket_killed_at_every_step_keeps_every_line_once() {
    let Some(s3) = S3Server::start() else { return };
    s3.create_bucket("logs");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = Server::start(&data, &config(&s3, "logs", "1h"));
    let base = now_ns() - 5 * HOUR;
    let points = [
        "upload-before-commit",
        "compact-before-publish",
        "compact-after-publish",
        "compact-before-delete",
        "compact-between-deletes",
    ];
    let mut rounds = Vec::new();
    let mut killed = 0;
    for cycle in 0..10 {
        let r = round(base, cycle);
        push_round(&s.addr(), &r);
        rounds.push(r);
        s.stop();
        s.write_config(&config(&s3, "logs", "100ms"));
        s.env = vec![(
            "SAWMILL_FAILPOINTS".into(),
            points[cycle % points.len()].into(),
        )];
        s.restart();
        if s.wait_exit(Duration::from_secs(10)) {
            killed += 1;
        } else {
            s.kill();
        }
        s.env.clear();
        s.write_config(&config(&s3, "logs", "1h"));
        s.restart();
        assert_eq!(
            all(&s.addr()),
            expected_of(&rounds),
            "cycle {cycle}, killed at {}",
            points[cycle % points.len()]
        );
    }
    assert!(killed >= 6, "failpoints reached {killed} times");

    // Let compaction finish: the catalog and the bucket agree, and nothing is lost.
    s.write_config(&config(&s3, "logs", "200ms"));
    s.restart();
    let started = Instant::now();
    loop {
        let listed = catalog_segments(&s3, "logs");
        let stored: BTreeSet<String> = segment_objects(&s3, "logs").into_iter().collect();
        if listed == stored && listed.len() <= 6 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "catalog {listed:?} and bucket {stored:?} never agree"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(all(&s.addr()), expected_of(&rounds));
    assert_eq!(local_files(&data, "seg"), 0, "no segment stays on the disk");
}

#[test]
fn a_missing_bucket_is_a_clear_error_at_start() {
    let Some(s3) = S3Server::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sawmill.yaml");
    std::fs::write(&cfg, s3.config("no-such-bucket", "node-a")).unwrap();
    let started = Instant::now();
    let out = Command::new(common::BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .args([
            "--listen",
            &format!("127.0.0.1:{}", common::free_port()),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("s3://no-such-bucket") && text.contains("common.storage"),
        "{text}"
    );
}
