//! `sawmill bench`: load generators and benchmarks. `push` (push throughput and latency against
//! a running server), `tail` (push-to-tail latency), and in-process over generated data:
//! `query` (query latency) and `index` (the search index's cost, size and lookups).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Push load: 1000-line JSON pushes of ~300-byte JSON and logfmt lines from several connections.
    Push(BenchPushArgs),
    /// Query speed over generated data (in-process, fresh data directory).
    Query(BenchQueryArgs),
    /// Live tail latency: push acknowledged → line on a tail, against a running server.
    Tail(BenchTailArgs),
    /// Search index: build cost and size, ID lookups and needle queries with and without it.
    Index(BenchIndexArgs),
}

#[derive(Args)]
pub struct BenchQueryArgs {
    /// Lines to generate (over `--hours`, 8 apps, 2 namespaces, 4 levels).
    #[arg(long, default_value_t = 1_000_000)]
    pub lines: usize,
    /// Runs of each query; the median is printed.
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    /// Data directory (default: a new temporary one).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Hours the generated lines span (the queries cover all of them).
    #[arg(long, default_value_t = 1)]
    pub hours: u32,
    /// Write a segment every this many lines, as frequent flushes do (0: one flush at the end).
    #[arg(long, default_value_t = 0)]
    pub flush_every: usize,
    /// After the queries, compact (timed), then run the queries again.
    #[arg(long)]
    pub compact: bool,
}

#[derive(Args)]
pub struct BenchIndexArgs {
    /// Lines to generate (requests of 3 to 8 lines across 8 services, 2 namespaces).
    #[arg(long, default_value_t = 10_000_000)]
    pub lines: usize,
    #[arg(long, default_value_t = 24)]
    pub hours: u32,
    /// Write a segment every this many lines.
    #[arg(long, default_value_t = 250_000)]
    pub flush_every: usize,
    /// Lookups: 7 times this many IDs.
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    /// Index correlation fields only, not every token.
    #[arg(long)]
    pub no_tokens: bool,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct BenchTailArgs {
    #[arg(long, env = "LOKI_ADDR", default_value = "http://127.0.0.1:3100")]
    pub addr: String,
    /// Lines to push (one per push).
    #[arg(long, default_value_t = 500)]
    pub lines: usize,
    /// Pause between pushes, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub interval_ms: u64,
    #[arg(long)]
    pub org_id: Option<String>,
}

#[derive(Args)]
pub struct BenchPushArgs {
    #[arg(long, env = "LOKI_ADDR", default_value = "http://127.0.0.1:3100")]
    pub addr: String,
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Lines per push.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Distinct streams (spread over the pushes).
    #[arg(long, default_value_t = 64)]
    pub streams: usize,
    #[arg(long)]
    pub org_id: Option<String>,
}

/// Runs one `sawmill bench` command.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Push(a) => push(a),
        BenchCommand::Tail(a) => tail(a),
        BenchCommand::Index(a) => {
            // The in-process benchmarks run with the allocator settings the server uses.
            crate::server::tune_allocator();
            index(a)
        }
        BenchCommand::Query(a) => {
            crate::server::tune_allocator();
            query(a)
        }
    }
}

/// A push body whose timestamps are rewritten in place before each send.
struct BodyTemplate {
    body: Vec<u8>,
    /// Offsets of the 19-digit timestamp strings.
    ts_at: Vec<usize>,
    line_bytes: usize,
    lines: usize,
}

/// Writes `v` as zero-padded decimal digits filling `out` (the generator rewrites 1000
/// timestamps per push; `format!` would cost a good part of what it measures).
fn write_digits(out: &mut [u8], mut v: u64) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn make_template(seed: usize, batch: usize, streams: usize) -> BodyTemplate {
    let per_push = 4.min(streams.max(1));
    let per_stream = batch.div_ceil(per_push);
    let mut body = String::from("{\"streams\":[");
    let mut ts_at = Vec::new();
    let mut line_bytes = 0;
    let mut lines = 0;
    let mut rng = seed as u64 * 6364136223846793005 + 1442695040888963407;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) as usize
    };
    for s in 0..per_push {
        let sid = (seed * per_push + s) % streams.max(1);
        let app = APPS[sid % 8];
        let level = LEVELS[(sid / 8) % 4];
        let ns = if (sid / 32) % 2 == 0 {
            "production"
        } else {
            "staging"
        };
        if s > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            "{{\"stream\":{{\"app\":\"{app}\",\"namespace\":\"{ns}\",\"level\":\"{level}\",\"job\":\"bench\",\"shard\":\"{}\"}},\"values\":[",
            sid / 64
        ));
        for i in 0..per_stream {
            if i > 0 {
                body.push(',');
            }
            let (r, u, d, st) = (
                next(),
                next() % 50000,
                next() % 5000,
                [200, 200, 200, 201, 404, 500][next() % 6],
            );
            let msg = MSGS[r % 6];
            let path = PATHS[(r / 7) % 5];
            let line = if r % 2 == 0 {
                format!(
                    "{{\"time\":\"2026-11-20T00:00:00.000000000Z\",\"level\":\"{level}\",\"msg\":\"{msg}\",\"method\":\"GET\",\"path\":\"{path}\",\"status\":{st},\"duration_ms\":{}.{},\"user_id\":\"{u}\",\"request_id\":\"req-{:08x}-{:04x}\",\"trace_id\":\"{:016x}{:016x}\",\"service\":\"{app}\"}}",
                    d / 10, d % 10, next(), i, next(), next()
                )
            } else {
                format!(
                    "time=2026-11-20T00:00:00.000000000Z level={level} msg=\"{msg}\" method=POST path={path} status={st} duration_ms={}.{} user_id={u} request_id=req-{:08x}-{:04x} trace_id={:016x}{:016x} service={app}",
                    d / 10, d % 10, next(), i, next(), next()
                )
            };
            line_bytes += line.len();
            lines += 1;
            body.push_str("[\"");
            ts_at.push(body.len());
            body.push_str("0000000000000000000\",");
            body.push_str(&serde_json::to_string(&line).expect("bug: string encodes"));
            body.push(']');
        }
        body.push_str("]}");
    }
    body.push_str("]}");
    BodyTemplate {
        body: body.into_bytes(),
        ts_at,
        line_bytes,
        lines,
    }
}

pub fn push(a: BenchPushArgs) -> anyhow::Result<()> {
    let url = format!("{}/loki/api/v1/push", a.addr.trim_end_matches('/'));
    let stop = Arc::new(AtomicBool::new(false));
    let lines = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let clock = Arc::new(AtomicU64::new(
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64,
    ));
    let started = Instant::now();
    let mut handles = Vec::new();
    for c in 0..a.connections {
        let templates: Vec<BodyTemplate> = (0..16)
            .map(|i| make_template(c * 16 + i, a.batch, a.streams))
            .collect();
        let (url, stop, lines, bytes, errors, clock) = (
            url.clone(),
            stop.clone(),
            lines.clone(),
            bytes.clone(),
            errors.clone(),
            clock.clone(),
        );
        let org = a.org_id.clone();
        handles.push(std::thread::spawn(move || {
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(30))
                .build();
            let mut lat = Vec::new();
            let mut k = 0usize;
            let mut templates = templates;
            while !stop.load(Ordering::Relaxed) {
                let t = &mut templates[k % 16];
                k += 1;
                let base = clock.fetch_add(t.lines as u64, Ordering::Relaxed);
                for (i, at) in t.ts_at.iter().enumerate() {
                    write_digits(&mut t.body[*at..*at + 19], base + i as u64);
                }
                let mut req = agent.post(&url).set("Content-Type", "application/json");
                if let Some(o) = &org {
                    req = req.set("X-Scope-OrgID", o);
                }
                let t0 = Instant::now();
                match req.send_bytes(&t.body) {
                    Ok(_) => {
                        lat.push(t0.elapsed());
                        lines.fetch_add(t.lines as u64, Ordering::Relaxed);
                        bytes.fetch_add(t.line_bytes as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("push failed: {e}");
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
            lat
        }));
    }
    std::thread::sleep(Duration::from_secs_f64(a.duration));
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect();
    let secs = started.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let n = lines.load(Ordering::Relaxed);
    let b = bytes.load(Ordering::Relaxed);
    println!(
        "pushed {n} lines in {secs:.1}s: {:.0} lines/s, {:.1} MB/s of lines, push latency p50 {:.1} ms, p99 {:.1} ms, {} errors",
        n as f64 / secs,
        b as f64 / secs / 1e6,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        errors.load(Ordering::Relaxed)
    );
    if errors.load(Ordering::Relaxed) > 0 && n == 0 {
        anyhow::bail!("every push failed");
    }
    Ok(())
}

const APPS: [&str; 8] = [
    "api-gateway",
    "user-service",
    "payment-service",
    "search-service",
    "event-service",
    "notification-service",
    "analytics-service",
    "recommendation-engine",
];
const LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];
const MSGS: [&str; 6] = [
    "request completed",
    "cache miss",
    "database query slow",
    "upstream timeout",
    "user logged in",
    "payment authorized",
];
const PATHS: [&str; 5] = [
    "/api/users",
    "/api/payments",
    "/api/search?q=shoes",
    "/api/events/{id}",
    "/health",
];
const NAMESPACES: [&str; 2] = ["production", "staging"];

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

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Generates `lines` lines over `hours` into a fresh store, flushes them to segments, then
/// times the five queries and prints each one's median; with `compact`, compacts the
/// segments (printing throughput and disk bytes before and after) and times the queries again.
pub fn query(a: BenchQueryArgs) -> anyhow::Result<()> {
    use crate::ingest::{validate::Validated, Entry, ValidStream};

    let dir = a.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("sawmill-bench-query-{}", std::process::id()))
    });
    let fresh = a.data_dir.is_none();
    let _ = std::fs::remove_dir_all(&dir);
    let store = bench_store(&dir, |_| {})?;
    let (start, end) = bench_span(a.hours);
    let span = end - start;
    let mut rng = xorshift(0x9e37_79b9_7f4a_7c15);
    // Streams are app x namespace; the level is a field of the line.
    let streams = bench_streams();
    let generated = Instant::now();
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
        let v = Validated {
            streams: streams
                .iter()
                .zip(by_stream)
                .filter(|(_, e)| !e.is_empty())
                .map(|(l, entries)| ValidStream {
                    labels: l.clone(),
                    entries,
                })
                .collect(),
            rejections: Vec::new(),
        };
        store.push(crate::model::tenant::DEFAULT_TENANT, v)?;
        i += n;
        if a.flush_every > 0 && i % a.flush_every < n {
            store.flush(true)?;
        }
    }
    store.flush(true)?;
    let tenant = store
        .existing_tenant(crate::model::tenant::DEFAULT_TENANT)
        .ok_or_else(|| anyhow::anyhow!("no data was stored"))?;
    let on_disk = |t: &crate::storage::store::Tenant| -> (u64, usize) {
        let segs = t.segments.read();
        (segs.iter().map(|s| s.file_len()).sum(), segs.len())
    };
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
        let t0 = Instant::now();
        let r = store.compact();
        let secs = t0.elapsed().as_secs_f64();
        if !r.failures.is_empty() {
            anyhow::bail!("compaction failed: {:?}", r.failures);
        }
        let (after, n_after) = on_disk(&tenant);
        println!(
            "compacted {} partitions: {:.1} MB of chunks into {:.1} MB in {secs:.2}s = {:.0} MB/s of input; on disk {:.1} MB in {n_segments} segments -> {:.1} MB in {n_after} segments",
            r.partitions,
            r.input_bytes as f64 / 1e6,
            r.output_bytes as f64 / 1e6,
            r.input_bytes as f64 / 1e6 / secs,
            stored as f64 / 1e6,
            after as f64 / 1e6,
        );
        run_queries(&tenant, &needle, start, end, a.runs)?;
    }
    drop(tenant);
    store.shutdown();
    if fresh {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Times the five queries over `[start, end]` and prints each one's median.
fn run_queries(
    tenant: &Arc<crate::storage::store::Tenant>,
    needle: &str,
    start: i64,
    end: i64,
    runs: usize,
) -> anyhow::Result<()> {
    use crate::logql::{parse_expr, Expr};
    use crate::query::metric::{evaluate, EvalParams};
    use crate::query::{select_logs, Cancel, Direction, LogQuery, LogSampleSource, QueryStats};

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
            match &expr {
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
                    summary = format!("{n} entries, {} lines scanned", stats.lines_processed);
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
                        crate::query::metric::MetricResult::Matrix(m) => m.len(),
                        crate::query::metric::MetricResult::Scalar(_) => 1,
                    };
                    summary = format!("{n} series, {} lines scanned", source.stats.lines_processed);
                }
            }
            times.push(t0.elapsed());
        }
        println!(
            "{:>9.1} ms median  {q}  ({summary})",
            median(times).as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// Tail latency against a running server: one tail on a bench stream, then `lines` pushes of
/// one line each, `interval_ms` apart; for each, the time from the push's acknowledgement to
/// the line's arrival on the tail. Prints the median, 99th percentile and maximum. Run
/// `sawmill bench push` at the same time to measure it under ingest load.
pub fn tail(a: BenchTailArgs) -> anyhow::Result<()> {
    use crate::client::{Conn, ConnOptions};
    use std::collections::HashMap;
    use std::sync::Mutex;
    let conn = Conn::new(ConnOptions {
        addr: a.addr.clone(),
        org_id: a.org_id.clone(),
        ..ConnOptions::default()
    })?;
    let run = format!("{:x}", crate::model::now_ns());
    let query = format!("{{job=\"tailbench\", run=\"{run}\"}}");
    let mut ws = conn.websocket(
        "/loki/api/v1/tail",
        &[("query", query), ("limit", "1".into())],
        Duration::from_secs(10),
    )?;
    let arrived: Arc<Mutex<HashMap<usize, Instant>>> = Arc::default();
    let seen = arrived.clone();
    let reader = std::thread::spawn(move || -> anyhow::Result<()> {
        loop {
            let msg = ws.read()?;
            let tungstenite::Message::Text(t) = msg else {
                continue;
            };
            let now = Instant::now();
            let v: serde_json::Value = serde_json::from_str(t.as_str())?;
            for s in v["streams"].as_array().into_iter().flatten() {
                for e in s["values"].as_array().into_iter().flatten() {
                    let line = e[1].as_str().unwrap_or_default();
                    if line == "done" {
                        return Ok(());
                    }
                    if let Some(i) = line.strip_prefix("tail bench line ") {
                        seen.lock().unwrap().insert(i.parse()?, now);
                    }
                }
            }
        }
    });
    let mut acked = Vec::with_capacity(a.lines);
    for i in 0..=a.lines {
        let line = if i == a.lines {
            "done".to_string()
        } else {
            format!("tail bench line {i}")
        };
        let body = serde_json::json!({"streams":[{"stream":{"job":"tailbench","run":run},
            "values":[[crate::model::now_ns().to_string(), line]]}]});
        conn.post(
            "/loki/api/v1/push",
            "application/json",
            body.to_string().as_bytes(),
        )?;
        acked.push(Instant::now());
        std::thread::sleep(Duration::from_millis(a.interval_ms));
    }
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("tail reader panicked"))??;
    let arrived = arrived.lock().unwrap();
    let mut late: Vec<Duration> = Vec::new();
    let mut early = 0;
    for (i, at) in acked.iter().take(a.lines).enumerate() {
        match arrived.get(&i) {
            Some(got) if got >= at => late.push(*got - *at),
            Some(_) => {
                early += 1;
                late.push(Duration::ZERO);
            }
            None => anyhow::bail!("line {i} never reached the tail"),
        }
    }
    late.sort();
    let p99 = late[(late.len() * 99 / 100).min(late.len() - 1)];
    println!(
        "tail latency after the push was acknowledged, {} lines: median {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} arrived before the acknowledgement)",
        late.len(),
        median(late.clone()).as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        late.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        early
    );
    Ok(())
}

/// One line of a request in `bench index`: JSON or logfmt by service, ~300 bytes, carrying
/// the request's ID and trace ID and the hop's span ID.
fn request_line(
    service: usize,
    hop: usize,
    u: usize,
    rid: &str,
    trace: &str,
    span: &str,
    rng: &mut impl FnMut() -> usize,
) -> String {
    let app = APPS[service % APPS.len()];
    let r = rng();
    let level = if r % 20 == 0 {
        "error"
    } else {
        LEVELS[1 + r % 2]
    };
    let (msg, path) = (MSGS[r % 6], PATHS[(r / 7) % 5]);
    let d = rng() % 5000;
    let status = if level == "error" { 500 } else { 200 };
    if service % 2 == 0 {
        format!(
            "{{\"level\":\"{level}\",\"service\":\"{app}\",\"msg\":\"{msg}\",\"hop\":{hop},\"method\":\"GET\",\"path\":\"{path}\",\"status\":{status},\"duration_ms\":{}.{},\"user_id\":\"u-{u}\",\"request_id\":\"{rid}\",\"trace_id\":\"{trace}\",\"span_id\":\"{span}\"}}",
            d / 10,
            d % 10
        )
    } else {
        format!(
            "level={level} service={app} msg=\"{msg}\" hop={hop} method=POST path={path} status={status} duration_ms={}.{} user_id=u-{u} request_id={rid} trace_id={trace} span_id={span}",
            d / 10,
            d % 10
        )
    }
}

/// The search index benchmark, in-process over generated requests (2 to 4 services, 2 to 5
/// lines each): ingest and flush with the index off; build every segment's index (its cost
/// against ingest, its size against the data); then the ID lookup (`correlate`) and
/// `|= "<request id>"` over all streams, with the indexes attached and without them.
pub fn index(a: BenchIndexArgs) -> anyhow::Result<()> {
    use crate::ingest::{validate::Validated, Entry, ValidStream};
    use crate::query::{select_logs, Cancel, Direction, LogQuery};

    let dir = a.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("sawmill-bench-index-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(&dir);
    let no_tokens = a.no_tokens;
    let store = bench_store(&dir, |c| c.index.tokens = !no_tokens)?;
    let cfg = store.cfg.clone();
    let (start, end) = bench_span(a.hours);
    let span = end - start;
    let mut rng = xorshift(0x2545_f491_4f6c_dd1d);
    let streams = bench_streams();
    let t_ingest = Instant::now();
    let (mut raw_bytes, mut lines, mut requests) = (0usize, 0usize, 0usize);
    let mut ids: Vec<String> = Vec::new();
    let step = span / a.lines as i64;
    let batch = 1000;
    let mut by_stream: Vec<Vec<Entry>> = vec![Vec::new(); streams.len()];
    let mut pending = 0;
    while lines < a.lines {
        // A request visits 2 to 4 services; each logs 2 to 5 lines under its span.
        let rid = format!("req-{:08x}-{:04x}", requests, rng() % 0xffff);
        let trace = format!("{:016x}{:016x}", rng(), rng());
        let user = rng() % 50000;
        let ns = rng() % 2;
        for hop in 0..2 + rng() % 3 {
            let service = (requests + hop * 3) % 8;
            let span_id = format!("{:016x}", rng());
            for _ in 0..2 + rng() % 4 {
                let line = request_line(service, hop, user, &rid, &trace, &span_id, &mut rng);
                raw_bytes += line.len();
                by_stream[ns * 8 + service].push(Entry {
                    ts: start + lines as i64 * step,
                    line,
                    metadata: Vec::new(),
                });
                lines += 1;
                pending += 1;
            }
        }
        if requests % 997 == 0 {
            ids.push(rid);
        }
        requests += 1;
        if pending >= batch || lines >= a.lines {
            let v = Validated {
                streams: streams
                    .iter()
                    .zip(by_stream.iter_mut())
                    .filter(|(_, e)| !e.is_empty())
                    .map(|(l, e)| ValidStream {
                        labels: l.clone(),
                        entries: std::mem::take(e),
                    })
                    .collect(),
                rejections: Vec::new(),
            };
            store.push(crate::model::tenant::DEFAULT_TENANT, v)?;
            pending = 0;
            if lines % a.flush_every < batch + 8 {
                store.flush(true)?;
            }
        }
    }
    store.flush(true)?;
    let ingest_secs = t_ingest.elapsed().as_secs_f64();
    let tenant = store
        .existing_tenant(crate::model::tenant::DEFAULT_TENANT)
        .ok_or_else(|| anyhow::anyhow!("no data was stored"))?;
    let segs = tenant.segments.read().clone();
    let seg_bytes: u64 = segs.iter().map(|s| s.file_len()).sum();
    println!(
        "ingested {lines} lines ({requests} requests, {:.0} MB raw) over {} h into {} segments of {:.1} MB in {ingest_secs:.1}s ({:.0} lines/s, index off)",
        raw_bytes as f64 / 1e6,
        a.hours.max(1),
        segs.len(),
        seg_bytes as f64 / 1e6,
        lines as f64 / ingest_secs,
    );
    let t_index = Instant::now();
    let mut index_bytes = 0u64;
    for s in &segs {
        let i = store.index_segment(s)?;
        index_bytes += i.bytes;
        let _ = s.search.set(Arc::new(i));
    }
    let index_secs = t_index.elapsed().as_secs_f64();
    println!(
        "indexed in {index_secs:.1}s ({:.0}% of ingest time; ingest with indexing {:.0}% of the throughput without), tokens {}: {:.1} MB = {:.1}% of the compressed data",
        index_secs / ingest_secs * 100.0,
        ingest_secs / (ingest_secs + index_secs) * 100.0,
        if a.no_tokens { "off" } else { "on" },
        index_bytes as f64 / 1e6,
        index_bytes as f64 / seg_bytes as f64 * 100.0,
    );
    let lookups: Vec<&String> = ids.iter().take(a.runs.max(1) * 7).collect();
    let measure = |label: &str,
                   tenant: &Arc<crate::storage::store::Tenant>|
     -> anyhow::Result<()> {
        let mut t_corr = Vec::new();
        let mut t_needle = Vec::new();
        let mut found = (0, 0);
        for id in &lookups {
            let t0 = Instant::now();
            let c = crate::query::correlate::correlate(
                tenant,
                &cfg.index,
                id,
                start,
                end + 1,
                5000,
                Cancel::default(),
            )?;
            t_corr.push(t0.elapsed());
            found.0 += c.entries.len();
            let lq = LogQuery {
                matchers: crate::logql::parse_selector("{job=\"bench\"}")?,
                pipeline: match crate::logql::parse_expr(&format!("{{job=\"bench\"}} |= \"{id}\""))?
                {
                    crate::logql::Expr::Log(l) => l.pipeline,
                    _ => unreachable!(),
                },
                start,
                end: end + 1,
                limit: 100,
                direction: Direction::Backward,
            };
            let t0 = Instant::now();
            let (res, _) = select_logs(tenant, &lq, false, Cancel::default())?;
            t_needle.push(t0.elapsed());
            found.1 += res.iter().map(|s| s.entries.len()).sum::<usize>();
        }
        println!(
            "{label}: ID lookup median {:.2} ms ({} entries for {} IDs); |= \"<request id>\" over all streams median {:.2} ms ({} entries)",
            median(t_corr).as_secs_f64() * 1e3,
            found.0,
            lookups.len(),
            median(t_needle).as_secs_f64() * 1e3,
            found.1,
        );
        Ok(())
    };
    measure("index on ", &tenant)?;
    drop(tenant);
    drop(segs);
    store.shutdown();
    drop(store);
    // The same data without indexes attached: a store that never starts the indexer.
    let plain = crate::storage::store::Store::new(cfg.clone());
    plain.recover()?;
    let tenant = plain
        .existing_tenant(crate::model::tenant::DEFAULT_TENANT)
        .ok_or_else(|| anyhow::anyhow!("no data after reopening"))?;
    measure("index off", &tenant)?;
    drop(tenant);
    plain.shutdown();
    if a.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// A fresh in-process store for the benchmarks: no rate limit, no old-sample rejection, no
/// periodic flush; `tune` adjusts the rest.
fn bench_store(
    dir: &std::path::Path,
    tune: impl FnOnce(&mut crate::config::Config),
) -> anyhow::Result<Arc<crate::storage::store::Store>> {
    let mut cfg = crate::config::Config::default();
    cfg.common.path_prefix = dir.to_path_buf();
    cfg.limits_config.reject_old_samples = false;
    cfg.limits_config.ingestion_rate_mb = 1e9;
    cfg.limits_config.ingestion_burst_size_mb = 1e9;
    cfg.ingester.flush_check_period = Duration::from_secs(3600);
    tune(&mut cfg);
    let store = crate::storage::store::Store::new(Arc::new(cfg));
    store.recover()?;
    Ok(store)
}

/// `[start, end)` of `hours` whole hours, ending an hour before the current one.
fn bench_span(hours: u32) -> (i64, i64) {
    let hour = 3_600_000_000_000i64;
    let span = hour * hours.max(1) as i64;
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let start = (now / hour - 1) * hour - span;
    (start, start + span)
}

/// A xorshift generator: fast, and the same data on every run.
fn xorshift(mut seed: u64) -> impl FnMut() -> usize {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as usize
    }
}

/// The benchmarks' 16 streams: 8 apps × 2 namespaces.
fn bench_streams() -> Vec<crate::labels::Labels> {
    (0..16)
        .map(|s| {
            crate::labels::Labels::from_pairs(vec![
                ("app".into(), APPS[s % 8].into()),
                ("namespace".into(), NAMESPACES[s / 8].into()),
                ("job".into(), "bench".into()),
            ])
        })
        .collect()
}
