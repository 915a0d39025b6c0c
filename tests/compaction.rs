//! Compaction, retention and deletes, end to end against the server process: segments merge
//! into one per partition without losing or repeating a line, also when the process is killed
//! at each step of a compaction; expired and deleted lines vanish from queries at once and from
//! disk at the next compaction; the delete API is Loki's and is per tenant.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{
    get, metric, now_ns, post, query_all, query_entries, segment_files, try_request, Server,
};

const MIN: i64 = 60_000_000_000;
const HOUR: i64 = 60 * MIN;

fn config(interval: &str, extra: &str) -> String {
    format!(
        "limits_config:\n  reject_old_samples: false\n  max_query_length: 0\n  max_entries_limit_per_query: 0\n  ingestion_rate_mb: 1000\n  ingestion_burst_size_mb: 1000\n  out_of_order_time_window: 24h\n{extra}ingester:\n  flush_check_period: 1h\ncompactor:\n  compaction_interval: {interval}\n"
    )
}

/// Pushes `lines` of stream `labels` (a JSON object) as one request.
fn push(addr: &str, tenant: Option<&str>, labels: &str, lines: &[(i64, String)]) {
    let values: Vec<serde_json::Value> = lines
        .iter()
        .map(|(ts, l)| serde_json::json!([ts.to_string(), l]))
        .collect();
    let body = format!(
        r#"{{"streams":[{{"stream":{labels},"values":{}}}]}}"#,
        serde_json::Value::Array(values)
    );
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(t) = tenant {
        headers.push(("X-Scope-OrgID", t));
    }
    let (status, text) = try_request(
        "POST",
        &format!("{addr}/loki/api/v1/push"),
        &headers,
        Some(body.as_bytes()),
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(status, 204, "{text}");
}

fn all(addr: &str, tenant: Option<&str>, query: &str) -> Vec<(String, i64, String)> {
    let headers: Vec<(&str, &str)> = tenant
        .map(|t| vec![("X-Scope-OrgID", t)])
        .unwrap_or_default();
    query_all(addr, &headers, query, now_ns() - 48 * HOUR, now_ns() + HOUR)
        .unwrap_or_else(|(s, b)| panic!("{query}: {s} {b}"))
}

/// Waits until `cond` holds, polling; panics with `what` after `limit`.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn partitions(lines: &[(String, i64, String)]) -> usize {
    lines
        .iter()
        .map(|(_, ts, _)| ts.div_euclid(HOUR))
        .collect::<BTreeSet<_>>()
        .len()
}

/// Waits until compaction has nothing left to do: two more passes that rewrite no partition.
fn wait_settled(s: &Server) {
    let started = Instant::now();
    loop {
        let runs = metric(&s.addr(), "sawmill_compactor_runs_total");
        let parts = metric(&s.addr(), "sawmill_compactor_partitions_total");
        wait_for(Duration::from_secs(30), "two more passes", || {
            metric(&s.addr(), "sawmill_compactor_runs_total") >= runs + 2.0
        });
        if metric(&s.addr(), "sawmill_compactor_partitions_total") == parts {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "compaction never settles"
        );
    }
}

/// A round of lines for three apps, spread over the last five hours so every flushed segment
/// spans several partitions.
fn round(base: i64, r: usize) -> Round {
    ["api", "db", "web"]
        .into_iter()
        .map(|app| {
            let lines = (0..60)
                .map(|k| {
                    let ts = base + (k * 5 + (r % 5) as i64) * MIN + r as i64 * 1000;
                    (ts, format!("{app} round {r} line {k}"))
                })
                .collect();
            (app, lines)
        })
        .collect()
}

type Round = Vec<(&'static str, Vec<(i64, String)>)>;

fn expected_of(rounds: &[Round]) -> Vec<common::Entry> {
    let mut out: Vec<(String, i64, String)> = rounds
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

fn push_round(addr: &str, lines: &[(&str, Vec<(i64, String)>)]) {
    for (app, l) in lines {
        push(addr, None, &format!(r#"{{"app":"{app}"}}"#), l);
    }
}

/// Pushes `n` rounds, each followed by a clean stop (which flushes it into one new segment).
fn segments_of_rounds(s: &mut Server, base: i64, n: usize) -> Vec<Round> {
    (0..n)
        .map(|r| {
            let lines = round(base, r);
            push_round(&s.addr(), &lines);
            s.stop();
            s.restart();
            lines
        })
        .collect()
}

#[test]
fn compaction_merges_segments_into_partitions_without_losing_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = Server::start(&data, &config("1h", ""));
    let rounds = segments_of_rounds(&mut s, now_ns() - 5 * HOUR, 4);
    let expected = expected_of(&rounds);
    assert_eq!(segment_files(&data, "fake").len(), 4);
    assert_eq!(all(&s.addr(), None, r#"{app=~".+"}"#), expected);
    let bytes_before: u64 = segment_files(&data, "fake")
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();

    s.write_config(&config("200ms", ""));
    s.restart();
    wait_settled(&s);
    // Chunks belong to the partition they start in; these span hours, so fewer segments remain.
    let segments = segment_files(&data, "fake").len();
    assert!(
        segments >= 1 && segments <= partitions(&expected),
        "{segments} segments"
    );
    assert!(segments < 4, "{segments} segments after compaction");
    assert_eq!(
        all(&s.addr(), None, r#"{app=~".+"}"#),
        expected,
        "every line once, in order"
    );
    assert!(metric(&s.addr(), "sawmill_compactor_partitions_total") >= 1.0);
    let bytes_after: u64 = segment_files(&data, "fake")
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    assert!(
        bytes_after < bytes_before,
        "{bytes_after} < {bytes_before}: merged and recompressed"
    );

    // A restart sees the same, and finds nothing more to do.
    s.restart();
    assert_eq!(all(&s.addr(), None, r#"{app=~".+"}"#), expected);
    wait_settled(&s);
    assert_eq!(segment_files(&data, "fake").len(), segments);
}

/// SIGKILL at each step of a compaction (before the rename, after it, before and between the
/// deletions of the inputs), many times over: every line is still returned exactly once.
#[test]
fn killed_at_every_step_of_compaction_every_line_is_kept_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = Server::start(&data, &config("1h", ""));
    let base = now_ns() - 5 * HOUR;
    let mut rounds = Vec::new();
    let points = [
        "compact-before-publish",
        "compact-after-publish",
        "compact-before-delete",
        "compact-between-deletes",
    ];
    let mut killed_by_failpoint = 0;
    for cycle in 0..20 {
        let lines = round(base, cycle);
        push_round(&s.addr(), &lines);
        rounds.push(lines);
        s.stop();
        // Start with the failpoint armed and compaction every 100 ms: it dies there.
        s.write_config(&config("100ms", ""));
        s.env = vec![(
            "SAWMILL_FAILPOINTS".into(),
            points[cycle % points.len()].into(),
        )];
        s.restart();
        if s.wait_exit(Duration::from_secs(10)) {
            killed_by_failpoint += 1;
        } else {
            s.kill(); // nothing left for that step to do this time: kill it anyway
        }
        s.env.clear();
        s.write_config(&config("1h", ""));
        s.restart();
        let expected = expected_of(&rounds);
        assert_eq!(
            all(&s.addr(), None, r#"{app=~".+"}"#),
            expected,
            "cycle {cycle}, killed at {}",
            points[cycle % points.len()]
        );
        let tmp = temporary_segments(segment_files(&data, "fake")[0].parent().unwrap());
        assert_eq!(tmp, 0, "no temporary segment file survives a restart");
    }
    assert!(
        killed_by_failpoint >= 12,
        "failpoints reached {killed_by_failpoint} times"
    );
    // Finally let compaction finish: still every line once, one segment per partition.
    s.write_config(&config("100ms", ""));
    s.restart();
    let expected = expected_of(&rounds);
    wait_settled(&s);
    assert!(segment_files(&data, "fake").len() <= partitions(&expected));
    assert_eq!(all(&s.addr(), None, r#"{app=~".+"}"#), expected);
}

/// A write error while compacting (a full disk) leaves the old segments as they were and no
/// temporary file; compaction succeeds once writes do.
#[test]
fn a_failed_compaction_write_keeps_the_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = Server::start(&data, &config("1h", ""));
    let rounds = segments_of_rounds(&mut s, now_ns() - 5 * HOUR, 3);
    let expected = expected_of(&rounds);
    let before = segment_files(&data, "fake");
    s.write_config(&config("100ms", ""));
    s.env = vec![("SAWMILL_FAILPOINTS".into(), "compact-write-error".into())];
    s.restart();
    wait_for(Duration::from_secs(30), "failed passes", || {
        metric(&s.addr(), "sawmill_compactor_failures_total") >= 3.0
    });
    assert_eq!(
        segment_files(&data, "fake"),
        before,
        "the old segments, untouched"
    );
    let leftovers = temporary_segments(before[0].parent().unwrap());
    assert_eq!(leftovers, 0, "the temporary segment file is removed");
    assert_eq!(all(&s.addr(), None, r#"{app=~".+"}"#), expected);
    s.env.clear();
    s.restart();
    wait_settled(&s);
    assert!(segment_files(&data, "fake").len() < before.len());
    assert_eq!(all(&s.addr(), None, r#"{app=~".+"}"#), expected);
}

#[test]
fn retention_hides_at_once_and_compaction_removes_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = Server::start(&data, &config("200ms", ""));
    let now = now_ns();
    // Lines 10, 30, 50, ... 290 minutes old: no line near the 1 h or 3 h boundaries.
    let ages: Vec<i64> = (0..15).map(|k| 10 + 20 * k).collect();
    for level in ["info", "debug"] {
        let lines: Vec<(i64, String)> = ages
            .iter()
            .map(|a| (now - a * MIN, format!("{level} {a} minutes ago")))
            .collect();
        push(
            &s.addr(),
            None,
            &format!(r#"{{"app":"api","level":"{level}"}}"#),
            &lines,
        );
    }
    s.stop();
    s.restart();
    assert_eq!(all(&s.addr(), None, r#"{app="api"}"#).len(), 30);

    // Reload with 3 h for the tenant and 1 h for debug streams: applies at once.
    let rules = "  retention_period: 3h\n  retention_stream:\n  - selector: '{level=\"debug\"}'\n    priority: 1\n    period: 1h\n";
    s.write_config(&config("200ms", rules));
    let (status, text) = post(&format!("{}/-/reload", s.addr()), "text/plain", None, b"");
    assert_eq!(status, 200, "{text}");
    let count =
        |level: &str, s: &Server| all(&s.addr(), None, &format!(r#"{{level="{level}"}}"#)).len();
    assert_eq!(count("info", &s), ages.iter().filter(|a| **a < 180).count());
    assert_eq!(count("debug", &s), ages.iter().filter(|a| **a < 60).count());
    let expired =
        ages.iter().filter(|a| **a >= 180).count() + ages.iter().filter(|a| **a >= 60).count();
    wait_for(
        Duration::from_secs(60),
        "compaction to drop expired lines",
        || metric(&s.addr(), "sawmill_compactor_entries_dropped_total") >= expired as f64,
    );

    // Retention off again (by SIGHUP this time): what compaction removed stays gone.
    s.write_config(&config("200ms", ""));
    let pid = s.child.as_ref().unwrap().id();
    std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    wait_for(Duration::from_secs(10), "the SIGHUP reload", || {
        metric(&s.addr(), "sawmill_config_reloads_total") >= 2.0
    });
    assert_eq!(count("info", &s), ages.iter().filter(|a| **a < 180).count());
    assert_eq!(count("debug", &s), ages.iter().filter(|a| **a < 60).count());
    s.restart();
    assert_eq!(count("info", &s), ages.iter().filter(|a| **a < 180).count());

    // A config that does not parse is refused and the running one kept.
    s.write_config("limits_config:\n  retention_perod: 1h\n");
    let (status, text) = post(&format!("{}/-/reload", s.addr()), "text/plain", None, b"");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("retention_perod"), "{text}");
}

fn delete_url(addr: &str, params: &[(&str, &str)]) -> String {
    format!(
        "{addr}/loki/api/v1/delete?{}",
        serde_urlencoded::to_string(params).unwrap()
    )
}

fn as_tenant(method: &str, url: &str, tenant: &str) -> (u16, String) {
    try_request(
        method,
        url,
        &[("X-Scope-OrgID", tenant)],
        Some(b""),
        Duration::from_secs(30),
    )
    .unwrap()
}

fn list_deletes(addr: &str, tenant: &str) -> Vec<serde_json::Value> {
    let (status, text) = try_request(
        "GET",
        &format!("{addr}/loki/api/v1/delete"),
        &[("X-Scope-OrgID", tenant)],
        None,
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str::<serde_json::Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn delete_requests_hide_lines_at_once_are_per_tenant_and_compaction_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let hold = "auth_enabled: true\n";
    let cancel_period = |p: &str| {
        format!(
            "{hold}{}  delete_request_cancel_period: {p}\n",
            config("200ms", "")
        )
    };
    let mut s = Server::start(&data, &cancel_period("1h"));
    let base = now_ns() - 2 * HOUR;
    let lines: Vec<(i64, String)> = (0..100)
        .map(|i| {
            (
                base + i * MIN,
                if i % 4 == 0 {
                    format!("secret {i}")
                } else {
                    format!("public {i}")
                },
            )
        })
        .collect();
    for t in ["a", "b"] {
        push(&s.addr(), Some(t), r#"{"app":"api"}"#, &lines);
    }
    s.stop();
    s.restart();
    let addr = s.addr();
    let start = ((base - MIN) / 1_000_000_000).to_string();
    let q = r#"{app="api"} |= "secret""#;

    // Bad requests.
    for (params, what) in [
        (vec![("query", q)], "start"),
        (vec![("start", start.as_str())], "query"),
        (
            vec![
                ("query", r#"{app="api"} | json"#),
                ("start", start.as_str()),
            ],
            "line filters",
        ),
        (
            vec![("query", "{app="), ("start", start.as_str())],
            "parse error",
        ),
        (vec![("query", q), ("start", "yesterday")], "start"),
    ] {
        let (status, text) = as_tenant("POST", &delete_url(&addr, &params), "a");
        assert_eq!(status, 400, "{params:?}: {text}");
        assert!(text.contains(what), "{params:?}: {text}");
    }

    let (status, text) = as_tenant(
        "POST",
        &delete_url(&addr, &[("query", q), ("start", &start)]),
        "a",
    );
    assert_eq!(status, 204, "{text}");
    let reqs = list_deletes(&addr, "a");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0]["status"], "received");
    assert_eq!(reqs[0]["query"], q);
    assert!(
        list_deletes(&addr, "b").is_empty(),
        "tenant b sees none of a's requests"
    );
    let id = reqs[0]["request_id"].as_str().unwrap().to_string();

    let secret = |t: &str| all(&addr, Some(t), q).len();
    assert_eq!(secret("a"), 0, "hidden at once");
    assert_eq!(secret("b"), 25, "tenant b untouched");
    assert_eq!(all(&addr, Some("a"), r#"{app="api"}"#).len(), 75);

    // Another tenant cannot cancel it; the owner can, while it is pending.
    let (status, _) = as_tenant("DELETE", &delete_url(&addr, &[("request_id", &id)]), "b");
    assert_eq!(status, 404);
    let (status, text) = as_tenant("DELETE", &delete_url(&addr, &[("request_id", &id)]), "a");
    assert_eq!(status, 204, "{text}");
    assert_eq!(secret("a"), 25, "cancelled: the lines are back");
    assert!(list_deletes(&addr, "a").is_empty());

    // Again, with no cancel period: the next compaction removes the lines from disk.
    let (status, text) = as_tenant(
        "POST",
        &delete_url(&addr, &[("query", q), ("start", &start)]),
        "a",
    );
    assert_eq!(status, 204, "{text}");
    s.write_config(&cancel_period("0s"));
    s.restart();
    let addr = s.addr();
    wait_for(
        Duration::from_secs(60),
        "the delete request to be processed",
        || list_deletes(&addr, "a")[0]["status"] == "processed",
    );
    assert!(metric(&addr, "sawmill_compactor_entries_dropped_total") >= 25.0);
    let id = list_deletes(&addr, "a")[0]["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, text) = as_tenant("DELETE", &delete_url(&addr, &[("request_id", &id)]), "a");
    assert_eq!(
        status, 400,
        "processed requests cannot be cancelled: {text}"
    );
    let secret = |t: &str| all(&addr, Some(t), q).len();
    assert_eq!(secret("a"), 0);
    assert_eq!(secret("b"), 25);
    assert_eq!(all(&addr, Some("a"), r#"{app="api"}"#).len(), 75);
    s.restart();
    assert_eq!(
        all(&s.addr(), Some("a"), q).len(),
        0,
        "still gone after a restart"
    );
    let (status, body) = get(&s.addr(), "/ready", &[]);
    assert_eq!(status, 200, "{body}");
}

/// Random pushes, clean restarts, SIGKILLs, delete requests and shrinking retention, with
/// compaction running all along: after every step the server returns exactly what a model of
/// the rules says it should. Replay a failure with `SAWMILL_TEST_SEED`.
#[test]
fn random_operations_match_a_model() {
    let mut rng = common::Rng(common::seed(0x5eed_c0de));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let now0 = now_ns();
    let rules = |debug_hours: u64| {
        format!(
            "  retention_stream:\n  - selector: '{{level=\"debug\"}}'\n    priority: 1\n    period: {debug_hours}h\n"
        )
    };
    let mut debug_hours = 8;
    let cfg = |h: u64| config("150ms", &rules(h));
    let mut s = Server::start(&data, &cfg(debug_hours));
    // (stream labels JSON, app, level, ts, line)
    let mut model: Vec<(String, &str, &str, i64, String)> = Vec::new();
    // (app, token or "", start, end)
    let mut deletes: Vec<(&str, String, i64, i64)> = Vec::new();
    let mut counter = 0u64;
    for step in 0..60 {
        match rng.range(0, 9) {
            0..=4 => {
                let app = ["a", "b"][rng.range(0, 1) as usize];
                let level = ["info", "debug"][rng.range(0, 1) as usize];
                let lines: Vec<(i64, String)> = (0..rng.range(20, 120))
                    .map(|_| {
                        counter += 1;
                        // Ten-minute slots, five minutes off the hour: never near a retention edge.
                        let ts = now0 - (rng.range(0, 47) as i64 * 10 + 5) * MIN + counter as i64;
                        (ts, format!("k{} line {counter}", rng.range(0, 9)))
                    })
                    .collect();
                let labels = format!(r#"{{"app":"{app}","level":"{level}"}}"#);
                push(&s.addr(), None, &labels, &lines);
                for (ts, l) in lines {
                    model.push((labels.clone(), app, level, ts, l));
                }
            }
            5 => s.restart(),
            6 => {
                s.kill();
                s.restart();
            }
            7 => {
                let app = ["a", "b"][rng.range(0, 1) as usize];
                let token = if rng.range(0, 1) == 0 {
                    String::new()
                } else {
                    format!("k{}", rng.range(0, 9))
                };
                let from = now0 - rng.range(0, 8) as i64 * HOUR;
                let to = from + rng.range(1, 4) as i64 * HOUR;
                let mut query = format!(r#"{{app="{app}"}}"#);
                if !token.is_empty() {
                    query.push_str(&format!(r#" |= "{token} ""#));
                }
                let url = delete_url(
                    &s.addr(),
                    &[
                        ("query", &query),
                        ("start", &from.to_string()),
                        ("end", &to.to_string()),
                    ],
                );
                let (status, text) = post(&url, "text/plain", None, b"");
                assert_eq!(status, 204, "{text}");
                deletes.push((app, token, from, to));
            }
            _ => {
                debug_hours = debug_hours.saturating_sub(rng.range(0, 2)).max(1);
                s.write_config(&cfg(debug_hours));
                let (status, text) =
                    post(&format!("{}/-/reload", s.addr()), "text/plain", None, b"");
                assert_eq!(status, 200, "{text}");
            }
        }
        let now = now_ns();
        let mut want: Vec<(String, i64, String)> = model
            .iter()
            .filter(|(_, app, level, ts, line)| {
                let expired = *level == "debug" && *ts < now - debug_hours as i64 * HOUR;
                let deleted = deletes.iter().any(|(a, tok, from, to)| {
                    a == app
                        && ts >= from
                        && ts <= to
                        && (tok.is_empty() || line.starts_with(&format!("{tok} ")))
                });
                !expired && !deleted
            })
            .map(|(labels, _, _, ts, line)| (labels.clone(), *ts, line.clone()))
            .collect();
        want.sort();
        assert_eq!(all(&s.addr(), None, r#"{app=~".+"}"#), want, "step {step}");
    }
    wait_settled(&s);
    s.restart();
    let got = all(&s.addr(), None, r#"{app=~".+"}"#);
    assert!(!got.is_empty());
    wait_settled(&s);
    assert_eq!(
        all(&s.addr(), None, r#"{app=~".+"}"#),
        got,
        "compaction settled changes nothing"
    );
}

/// Segment files being written (`.seg.tmp`) in a segments directory. An `.idx.tmp` directory
/// is not one: it may be the indexer at work on the restarted server.
fn temporary_segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".seg.tmp")
        })
        .count()
}

/// Loki's `POST /flush`: every head chunk goes to a segment at once (no `chunk_idle_period`
/// wait), the answer is 204 once it is on disk, and the lines read back the same.
#[test]
fn post_flush_writes_the_head_to_segments_now() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Chunks would otherwise stay in the head for an hour.
    let s = Server::start(
        &data,
        "ingester:\n  chunk_idle_period: 1h\n  max_chunk_age: 2h\n  flush_check_period: 1h\n",
    );
    let a = s.addr();
    let now = now_ns();
    let lines: Vec<(i64, String)> = (0..50)
        .map(|i| (now - 1_000_000_000 + i, format!("flush line {i}")))
        .collect();
    push(&a, None, r#"{"app":"flush"}"#, &lines);
    let before = query_entries(&a, r#"{app="flush"}"#, now - 10_000_000_000, now + 1, 1000);
    assert_eq!(before.len(), 50);
    assert!(segment_files(&data, "fake").is_empty());
    let (status, body) = post(&format!("{a}/flush"), "text/plain", None, b"");
    assert_eq!(status, 204, "{body}");
    assert_eq!(segment_files(&data, "fake").len(), 1);
    let after = query_entries(&a, r#"{app="flush"}"#, now - 10_000_000_000, now + 1, 1000);
    assert_eq!(after, before);
    // Nothing left to flush: no new segment.
    assert_eq!(post(&format!("{a}/flush"), "text/plain", None, b"").0, 204);
    assert_eq!(segment_files(&data, "fake").len(), 1);
}
