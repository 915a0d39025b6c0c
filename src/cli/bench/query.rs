//! `sawmill bench query`: query latency over generated lines in a fresh in-process store,
//! optionally before and after compaction.

use std::sync::Arc;
use std::time::Instant;

use crate::ingest::Entry;
use crate::logql::{parse_expr, Expr};
use crate::query::metric::{evaluate, EvalParams, MetricResult};
use crate::query::{select_logs, Cancel, Direction, LogQuery, LogSampleSource, QueryStats};
use crate::storage::store::{Store, Tenant};

use super::{
    bench_span, bench_store, bench_streams, median, push_batch, xorshift, BenchQueryArgs, Shape,
    LEVELS, MSGS, PATHS,
};

/// A ~300-byte log line, JSON for even `i`, logfmt for odd.
fn bench_line(i: usize, app: &str, level: &str, rng: &mut impl FnMut() -> usize) -> String {
    let (r, u, d) = (rng(), rng() % 50000, rng() % 5000);
    let status = if level == "error" {
        [500, 502, 503, 504][r % 4]
    } else {
        [200, 200, 201, 204, 301, 404][r % 6]
    };
    let (msg, path) = (MSGS[r % 6], PATHS[(r / 7) % 5]);
    let (rid, trace) = (
        format!("req-{:08x}-{:04x}", i, i % 0xffff),
        format!("{:016x}{:016x}", rng(), rng()),
    );
    if i % 2 == 0 {
        format!(
            "{{\"level\":\"{level}\",\"msg\":\"{msg}\",\"method\":\"GET\",\"path\":\"{path}\",\"status\":{status},\"duration_ms\":{}.{},\"user_id\":\"{u}\",\"request_id\":\"{rid}\",\"trace_id\":\"{trace}\",\"service\":\"{app}\",\"host\":\"node-{}\"}}",
            d / 10,
            d % 10,
            r % 16
        )
    } else {
        format!(
            "level={level} msg=\"{msg}\" method=POST path={path} status={status} duration_ms={}.{} user_id={u} request_id={rid} trace_id={trace} service={app} host=node-{}",
            d / 10,
            d % 10,
            r % 16
        )
    }
}

/// Generates `lines` lines over `hours` into a fresh store, flushes them to segments, then
/// times the five queries and prints each one's median; with `compact`, compacts the
/// segments (printing throughput and disk bytes before and after) and times the queries again.
/// The `microservices` shape goes through HTTP instead (`query_http`).
pub fn query(a: BenchQueryArgs) -> anyhow::Result<()> {
    if a.shape == Shape::Microservices {
        return super::query_http::run(&a);
    }
    let dir = a.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("sawmill-bench-query-{}", std::process::id()))
    });
    let fresh = a.data_dir.is_none();
    let _ = std::fs::remove_dir_all(&dir);
    let store = bench_store(&dir, |_| {})?;
    let (start, end) = bench_span(a.hours);
    let generated = Instant::now();
    let (raw_bytes, needle) = ingest_lines(&store, &a, start, end)?;
    let tenant = store
        .existing_tenant(crate::model::tenant::DEFAULT_TENANT)
        .ok_or_else(|| anyhow::anyhow!("no data was stored"))?;
    let (stored, n_segments) = on_disk(&tenant);
    println!(
        "generated {} lines over {} h ({:.0} MB raw, {:.0} MB stored in {n_segments} segments) in {:.1}s",
        a.lines,
        a.hours.max(1),
        raw_bytes as f64 / 1e6,
        stored as f64 / 1e6,
        generated.elapsed().as_secs_f64()
    );
    run_queries(&tenant, &needle, start, end, a.runs)?;
    if a.compact {
        compact(&store, &tenant, (stored, n_segments))?;
        run_queries(&tenant, &needle, start, end, a.runs)?;
    }
    drop(tenant);
    store.shutdown();
    if fresh {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Generates `a.lines` lines evenly over `[start, end)` on the bench streams (app x
/// namespace; the level is a field of the line), pushes them in batches and flushes them to
/// segments (every `a.flush_every` lines, and at the end). Returns the bytes of lines and the
/// request ID of the middle line, the needle the first query looks for.
fn ingest_lines(
    store: &Store,
    a: &BenchQueryArgs,
    start: i64,
    end: i64,
) -> anyhow::Result<(usize, String)> {
    let span = end - start;
    let mut rng = xorshift(0x9e37_79b9_7f4a_7c15);
    let streams = bench_streams();
    let mut raw_bytes = 0usize;
    let mut needle = String::new();
    let batch = match a.flush_every {
        0 => 64 * 1000,
        f => f.min(64 * 1000),
    };
    let mut i = 0usize;
    while i < a.lines {
        let n = batch.min(a.lines - i);
        let mut by_stream: Vec<Vec<Entry>> = vec![Vec::new(); streams.len()];
        for k in i..i + n {
            let s = rng() % streams.len();
            let (app, level) = (streams[s].get("app").unwrap_or(""), LEVELS[rng() % 4]);
            let line = bench_line(k, app, level, &mut rng);
            if k == a.lines / 2 {
                needle = format!("req-{:08x}-{:04x}", k, k % 0xffff);
            }
            raw_bytes += line.len();
            let ts = start + (k as i64) * (span / a.lines as i64);
            by_stream[s].push(Entry {
                ts,
                line,
                metadata: Vec::new(),
            });
        }
        push_batch(store, &streams, &mut by_stream)?;
        i += n;
        if a.flush_every > 0 && i % a.flush_every < n {
            store.flush(true)?;
        }
    }
    store.flush(true)?;
    Ok((raw_bytes, needle))
}

/// Bytes and number of the tenant's segments.
fn on_disk(t: &Tenant) -> (u64, usize) {
    let segs = t.segments.read();
    (segs.iter().map(|s| s.file_len()).sum(), segs.len())
}

/// Compacts the store (timed) and prints the throughput and the disk bytes `before` (as
/// measured after ingest) and after.
fn compact(store: &Store, tenant: &Tenant, before: (u64, usize)) -> anyhow::Result<()> {
    let (stored, n_segments) = before;
    let t0 = Instant::now();
    let r = store.compact();
    let secs = t0.elapsed().as_secs_f64();
    if !r.failures.is_empty() {
        anyhow::bail!("compaction failed: {:?}", r.failures);
    }
    let (after, n_after) = on_disk(tenant);
    println!(
        "compacted {} partitions: {:.1} MB of chunks into {:.1} MB in {secs:.2}s = {:.0} MB/s of input; on disk {:.1} MB in {n_segments} segments -> {:.1} MB in {n_after} segments",
        r.partitions,
        r.input_bytes as f64 / 1e6,
        r.output_bytes as f64 / 1e6,
        r.input_bytes as f64 / 1e6 / secs,
        stored as f64 / 1e6,
        after as f64 / 1e6,
    );
    Ok(())
}

/// Times the five queries over `[start, end]` and prints each one's median.
fn run_queries(
    tenant: &Arc<Tenant>,
    needle: &str,
    start: i64,
    end: i64,
    runs: usize,
) -> anyhow::Result<()> {
    let queries = [
        format!("{{job=\"bench\"}} |= \"{needle}\""),
        "{job=\"bench\"} | json | status >= 500".to_string(),
        "sum by (app) (count_over_time({job=\"bench\"}[5m]))".to_string(),
        "sum by (app) (rate({job=\"bench\"} | json | level=\"error\" [5m]))".to_string(),
        "quantile_over_time(0.95, {job=\"bench\"} | logfmt | unwrap duration_ms [5m]) by (app)"
            .to_string(),
    ];
    for q in &queries {
        let expr = parse_expr(q)?;
        let mut times = Vec::new();
        let mut summary = String::new();
        for _ in 0..runs.max(1) {
            let t0 = Instant::now();
            summary = run_query(tenant, &expr, start, end)?;
            times.push(t0.elapsed());
        }
        println!(
            "{:>9.1} ms median  {q}  ({summary})",
            median(times).as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// Runs one query over `[start, end]` (100 lines, or 1-minute steps for a metric query) and
/// says what it found.
fn run_query(tenant: &Arc<Tenant>, expr: &Expr, start: i64, end: i64) -> anyhow::Result<String> {
    match expr {
        Expr::Log(log) => {
            let lq = LogQuery {
                matchers: log.selector.matchers.clone(),
                pipeline: log.pipeline.clone(),
                start,
                end: end + 1,
                limit: 100,
                direction: Direction::Backward,
            };
            let (res, stats) = select_logs(tenant, &lq, false, Cancel::default())?;
            let n: usize = res.iter().map(|s| s.entries.len()).sum();
            Ok(format!(
                "{n} entries, {} lines scanned",
                stats.lines_processed
            ))
        }
        Expr::Sample(sample) => {
            let p = EvalParams {
                start,
                end,
                step: 60_000_000_000,
                max_series: 500,
            };
            let mut source = LogSampleSource {
                tenant: Some(tenant.clone()),
                stats: QueryStats::default(),
            };
            let r = evaluate(sample, &p, &mut source)?;
            let n = match r {
                MetricResult::Matrix(m) => m.len(),
                MetricResult::Scalar(_) => 1,
            };
            Ok(format!(
                "{n} series, {} lines scanned",
                source.stats.lines_processed
            ))
        }
    }
}
