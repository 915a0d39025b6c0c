//! `sawmill bench query --shape microservices`: the data of [`super::workload`] pushed through
//! HTTP (four connections, 1000-line bodies) to a server this command starts (this binary's
//! `serve` on a loopback port, in a fresh data directory) or to `--addr`; then eight queries,
//! each timed through `query_range` as a dashboard sends them: right after the push (fresh, the
//! lines still in the head) and again after `POST /flush` (settled). It prints the median of
//! `--runs` per query and state, the push throughput, the server's peak RSS and its stored
//! bytes, and a last line of JSON with all of it. The bodies are generated before the push and
//! held in memory (about 310 MB per million lines), so generating costs the push nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::client::{Conn, ConnOptions};

use super::push::push_bodies;
use super::workload::{self, Spec, Truth, JOB};
use super::{bench_span, median, start_server, BenchQueryArgs, ServerProc};

/// Push connections, as the workload's reference load generator uses.
const CONNECTIONS: usize = 4;
/// Lines per push body.
const BATCH: usize = 1000;

/// The eight queries, by name. `{needle}` is the request ID of the middle line.
fn queries(needle: &str) -> [(&'static str, String); 8] {
    [
        ("needle_all_streams", format!("{{job=\"{JOB}\"}} |= \"{needle}\"")),
        (
            "needle_json_field",
            format!("{{job=\"{JOB}\"}} | json | request_id=\"{needle}\""),
        ),
        (
            "errors_filter",
            format!("{{job=\"{JOB}\"}} |= \"upstream timeout\""),
        ),
        (
            "json_label_filter",
            "{namespace=\"production\"} | json | status >= 500 | duration_ms > 100".to_string(),
        ),
        (
            "count_by_app_5m",
            format!("sum by (app) (count_over_time({{job=\"{JOB}\"}}[5m]))"),
        ),
        (
            "error_rate_json",
            format!(
                "sum by (app) (rate({{job=\"{JOB}\"}} | json | level=\"error\" | __error__=\"\" [5m]))"
            ),
        ),
        (
            "p95_latency_unwrap",
            format!(
                "quantile_over_time(0.95, {{job=\"{JOB}\"}} | logfmt | __error__=\"\" | unwrap duration_ms [5m]) by (app)"
            ),
        ),
        (
            "count_total_1h",
            format!("sum(count_over_time({{job=\"{JOB}\"}}[1h]))"),
        ),
    ]
}

/// The started server's config: no ingestion rate limit, old samples accepted.
const CONFIG: &str = "server:
  log_level: warn
limits_config:
  ingestion_rate_mb: 100000
  ingestion_burst_size_mb: 100000
  reject_old_samples: false
  max_global_streams_per_user: 100000
";

fn connect(addr: &str) -> anyhow::Result<Conn> {
    Ok(Conn::new(ConnOptions {
        addr: addr.to_string(),
        ..ConnOptions::default()
    })?)
}

/// One query's median time and how many entries or points it answered.
struct Timed {
    ms: f64,
    n: usize,
}

/// Runs every query `runs` times over `[start, end]` (limit 1000, step 60s, backward).
fn run_queries(
    conn: &Conn,
    queries: &[(&'static str, String)],
    (start, end): (i64, i64),
    runs: usize,
) -> anyhow::Result<Vec<Timed>> {
    let mut out = Vec::new();
    for (name, q) in queries {
        let params = [
            ("query", q.clone()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("limit", "1000".to_string()),
            ("step", "60s".to_string()),
            ("direction", "backward".to_string()),
        ];
        let mut times = Vec::new();
        let mut n = 0;
        for _ in 0..runs.max(1) {
            let t0 = Instant::now();
            let text = conn
                .get_text("/loki/api/v1/query_range", &params)
                .with_context(|| format!("{name}: {q}"))?;
            times.push(t0.elapsed());
            n = answer_size(&text).with_context(|| format!("{name}: {q}"))?;
        }
        out.push(Timed {
            ms: median(times).as_secs_f64() * 1e3,
            n,
        });
    }
    Ok(out)
}

/// Entries (streams) or points (matrix) in a `query_range` answer.
fn answer_size(text: &str) -> anyhow::Result<usize> {
    let v: serde_json::Value = serde_json::from_str(text).context("answer is not JSON")?;
    let Some(result) = v["data"]["result"].as_array() else {
        bail!(
            "answer without data.result: {}",
            &text[..text.len().min(200)]
        );
    };
    Ok(result
        .iter()
        .map(|s| s["values"].as_array().map_or(0, Vec::len))
        .sum())
}

/// `VmHWM` of a process, in kB.
fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Bytes of the files under `dir`, and those of them under a directory named `wal`.
fn disk_bytes(dir: &Path) -> (u64, u64) {
    fn walk(dir: &Path, in_wal: bool, total: &mut u64, wal: &mut u64) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                walk(&e.path(), in_wal || e.file_name() == "wal", total, wal);
            } else {
                *total += meta.len();
                if in_wal {
                    *wal += meta.len();
                }
            }
        }
    }
    let (mut total, mut wal) = (0, 0);
    walk(dir, false, &mut total, &mut wal);
    (total, wal)
}

pub fn run(a: &BenchQueryArgs) -> anyhow::Result<()> {
    if a.compact || a.flush_every > 0 {
        bail!("--compact and --flush-every apply to --shape uniform (the microservices shape flushes once, through POST /flush)");
    }
    let (start, end) = bench_span(a.hours);
    let spec = Spec {
        seed: a.seed,
        lines: a.lines,
        start_ns: start,
        span_ns: end - start,
        batch: BATCH,
    };
    let t0 = Instant::now();
    let (bodies, truth) = workload::bodies(&spec);
    println!(
        "generated {} lines over {} h in {} bodies ({:.1} MB of bodies, {:.1} MB of lines) in {:.1}s",
        truth.lines,
        a.hours.max(1),
        bodies.len(),
        truth.body_bytes as f64 / 1e6,
        truth.line_bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );
    let temp = a.data_dir.is_none() && a.addr.is_none();
    let dir = a.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("sawmill-bench-query-{}", std::process::id()))
    });
    let server = match &a.addr {
        Some(_) => None,
        None => {
            if temp {
                let _ = std::fs::remove_dir_all(&dir);
            }
            let bin = match &a.server {
                Some(b) => b.clone(),
                None => std::env::current_exe()?,
            };
            Some(start_server(&bin, &dir, "bench-query.yaml", CONFIG)?)
        }
    };
    let addr = match (&a.addr, &server) {
        (Some(addr), _) => addr.clone(),
        (None, Some(s)) => s.addr.clone(),
        (None, None) => unreachable!("bug: a server is started when no --addr is given"),
    };
    // The data's span and a minute past it, as a dashboard over the hour asks.
    let range = (start, end + 60_000_000_000);
    let result = measure(a, &addr, (&bodies, &truth, range), server.as_ref(), &dir);
    drop(server);
    match result {
        Ok(()) if temp => {
            let _ = std::fs::remove_dir_all(&dir);
            Ok(())
        }
        Err(e) if a.addr.is_none() => {
            Err(e.context(format!("data and server log kept in {}", dir.display())))
        }
        r => r,
    }
}

/// Pushes, queries fresh, flushes, queries settled, and prints it all.
fn measure(
    a: &BenchQueryArgs,
    addr: &str,
    (bodies, truth, range): (&[workload::Body], &Truth, (i64, i64)),
    server: Option<&ServerProc>,
    dir: &Path,
) -> anyhow::Result<()> {
    let pushed = push_bodies(addr, None, bodies, CONNECTIONS);
    println!("{}", pushed.summary());
    if pushed.errors > 0 {
        bail!(
            "{} of {} pushes failed: the queries would miss data",
            pushed.errors,
            bodies.len()
        );
    }
    let conn = connect(addr)?;
    let queries = queries(&truth.needle);
    let fresh = run_queries(&conn, &queries, range, a.runs)?;
    let rss_fresh = server.map_or(0, |s| peak_rss_kb(s.child.id()));
    let t0 = Instant::now();
    conn.post("/flush", "text/plain", b"")
        .context("POST /flush")?;
    let flush_secs = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs_f64(a.settle_wait.max(0.0)));
    let settled = run_queries(&conn, &queries, range, a.runs)?;
    let rss = server.map_or(0, |s| peak_rss_kb(s.child.id()));
    println!(
        "{:<20} {:>10} {:>11} {:>8}  (median of {} runs; request {} has {} lines, {} of them JSON)",
        "query",
        "fresh ms",
        "settled ms",
        "answer",
        a.runs.max(1),
        truth.needle,
        truth.needle_lines,
        truth.needle_json_lines
    );
    for (((name, q), f), s) in queries.iter().zip(&fresh).zip(&settled) {
        let answer = if f.n == s.n {
            f.n.to_string()
        } else {
            format!("{}/{}", f.n, s.n)
        };
        println!("{name:<20} {:>10.1} {:>11.1} {answer:>8}  {q}", f.ms, s.ms);
    }
    let mut summary = serde_json::json!({
        "lines": truth.lines,
        "body_bytes": truth.body_bytes,
        "line_bytes": truth.line_bytes,
        "needle": truth.needle,
        "needle_lines": truth.needle_lines,
        "needle_json_lines": truth.needle_json_lines,
        "upstream_timeouts": truth.upstream_timeouts,
        "push": {
            "lines": pushed.lines,
            "errors": pushed.errors,
            "seconds": pushed.secs,
            "lines_per_s": (pushed.lines as f64 / pushed.secs).round(),
            "p50_ms": pushed.p50.as_secs_f64() * 1e3,
            "p99_ms": pushed.p99.as_secs_f64() * 1e3,
        },
        "flush_s": flush_secs,
        "fresh": per_query(&queries, &fresh),
        "settled": per_query(&queries, &settled),
    });
    if server.is_some() {
        let (total, wal) = disk_bytes(&dir.join("data"));
        println!(
            "flush {flush_secs:.2}s; server peak RSS {:.0} MB after the fresh queries, {:.0} MB at the end; data dir {:.1} MB, {:.1} MB without the WAL ({:.1}x smaller than the bodies)",
            rss_fresh as f64 / 1024.0,
            rss as f64 / 1024.0,
            total as f64 / 1e6,
            (total - wal) as f64 / 1e6,
            truth.body_bytes as f64 / (total - wal).max(1) as f64
        );
        summary["peak_rss_kb"] = rss.into();
        summary["data_dir_bytes"] = total.into();
        summary["stored_bytes_without_wal"] = (total - wal).into();
    }
    println!("{summary}");
    Ok(())
}

fn per_query(queries: &[(&'static str, String)], timed: &[Timed]) -> serde_json::Value {
    queries
        .iter()
        .zip(timed)
        .map(|((name, _), t)| {
            (
                name.to_string(),
                serde_json::json!({"ms": (t.ms * 10.0).round() / 10.0, "n": t.n}),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}
