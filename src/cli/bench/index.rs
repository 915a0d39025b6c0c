//! `sawmill bench index`: the search index's build cost and size, and ID lookups and needle
//! queries with and without it, over generated requests in an in-process store.

use std::sync::Arc;
use std::time::Instant;

use crate::config::IndexConfig;
use crate::ingest::Entry;
use crate::model::tenant::DEFAULT_TENANT;
use crate::query::correlate::correlate;
use crate::query::{select_logs, Cancel, Direction, LogQuery};
use crate::storage::segment::SegmentReader;
use crate::storage::store::{Store, Tenant};

use super::{
    bench_span, bench_store, bench_streams, median, push_batch, xorshift, BenchIndexArgs, APPS,
    LEVELS, MSGS, PATHS,
};

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
    let dir = a.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("sawmill-bench-index-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(&dir);
    let no_tokens = a.no_tokens;
    let store = bench_store(&dir, |c| c.index.tokens = !no_tokens)?;
    let cfg = store.cfg.clone();
    let (start, end) = bench_span(a.hours);
    let t_ingest = Instant::now();
    let made = ingest_requests(&store, &a, start, end)?;
    let ingest_secs = t_ingest.elapsed().as_secs_f64();
    let tenant = store
        .existing_tenant(DEFAULT_TENANT)
        .ok_or_else(|| anyhow::anyhow!("no data was stored"))?;
    let segs = tenant.segments.read().clone();
    let seg_bytes: u64 = segs.iter().map(|s| s.file_len()).sum();
    println!(
        "ingested {} lines ({} requests, {:.0} MB raw) over {} h into {} segments of {:.1} MB in {ingest_secs:.1}s ({:.0} lines/s, index off)",
        made.lines,
        made.requests,
        made.raw_bytes as f64 / 1e6,
        a.hours.max(1),
        segs.len(),
        seg_bytes as f64 / 1e6,
        made.lines as f64 / ingest_secs,
    );
    build_indexes(&store, &segs, ingest_secs, seg_bytes, a.no_tokens)?;
    let lookups: Vec<&String> = made.ids.iter().take(a.runs.max(1) * 7).collect();
    measure_lookups("index on ", &tenant, &cfg.index, &lookups, start, end)?;
    drop(tenant);
    drop(segs);
    store.shutdown();
    drop(store);
    // The same data without indexes attached: a store that never starts the indexer.
    let plain = Store::new(cfg.clone());
    plain.recover()?;
    let tenant = plain
        .existing_tenant(DEFAULT_TENANT)
        .ok_or_else(|| anyhow::anyhow!("no data after reopening"))?;
    measure_lookups("index off", &tenant, &cfg.index, &lookups, start, end)?;
    drop(tenant);
    plain.shutdown();
    if a.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// What `ingest_requests` generated: bytes of lines, lines, requests, and the request IDs
/// kept for lookups.
struct Requests {
    raw_bytes: usize,
    lines: usize,
    requests: usize,
    ids: Vec<String>,
}

/// Generates `a.lines` lines of requests evenly over `[start, end)`, pushes them in batches
/// of about 1000 lines, writes a segment about every `a.flush_every` lines and at the end;
/// keeps every 997th request ID.
fn ingest_requests(
    store: &Store,
    a: &BenchIndexArgs,
    start: i64,
    end: i64,
) -> anyhow::Result<Requests> {
    let mut rng = xorshift(0x2545_f491_4f6c_dd1d);
    let streams = bench_streams();
    let step = (end - start) / a.lines as i64;
    let batch = 1000;
    let mut by_stream: Vec<Vec<Entry>> = vec![Vec::new(); streams.len()];
    let mut made = Requests {
        raw_bytes: 0,
        lines: 0,
        requests: 0,
        ids: Vec::new(),
    };
    let mut pending = 0;
    while made.lines < a.lines {
        let rid = format!("req-{:08x}-{:04x}", made.requests, rng() % 0xffff);
        let before = made.lines;
        append_request(&mut by_stream, &mut made, &rid, start, step, &mut rng);
        pending += made.lines - before;
        if made.requests % 997 == 0 {
            made.ids.push(rid);
        }
        made.requests += 1;
        if pending >= batch || made.lines >= a.lines {
            push_batch(store, &streams, &mut by_stream)?;
            pending = 0;
            if made.lines % a.flush_every < batch + 8 {
                store.flush(true)?;
            }
        }
    }
    store.flush(true)?;
    Ok(made)
}

/// Appends one request's lines to `by_stream`: the request visits 2 to 4 services, and each
/// logs 2 to 5 lines under its span; line `n` gets the timestamp `start + n * step`.
fn append_request(
    by_stream: &mut [Vec<Entry>],
    made: &mut Requests,
    rid: &str,
    start: i64,
    step: i64,
    rng: &mut impl FnMut() -> usize,
) {
    let trace = format!("{:016x}{:016x}", rng(), rng());
    let user = rng() % 50000;
    let ns = rng() % 2;
    for hop in 0..2 + rng() % 3 {
        let service = (made.requests + hop * 3) % 8;
        let span_id = format!("{:016x}", rng());
        for _ in 0..2 + rng() % 4 {
            let line = request_line(service, hop, user, rid, &trace, &span_id, &mut *rng);
            made.raw_bytes += line.len();
            by_stream[ns * 8 + service].push(Entry {
                ts: start + made.lines as i64 * step,
                line,
                metadata: Vec::new(),
            });
            made.lines += 1;
        }
    }
}

/// Builds and attaches every segment's index; prints the time against `ingest_secs` and the
/// size against `seg_bytes`.
fn build_indexes(
    store: &Store,
    segs: &[Arc<SegmentReader>],
    ingest_secs: f64,
    seg_bytes: u64,
    no_tokens: bool,
) -> anyhow::Result<()> {
    let t_index = Instant::now();
    let mut index_bytes = 0u64;
    for s in segs {
        let i = store.index_segment(s)?;
        index_bytes += i.bytes;
        let _ = s.search.set(Arc::new(i));
    }
    let index_secs = t_index.elapsed().as_secs_f64();
    println!(
        "indexed in {index_secs:.1}s ({:.0}% of ingest time; ingest with indexing {:.0}% of the throughput without), tokens {}: {:.1} MB = {:.1}% of the compressed data",
        index_secs / ingest_secs * 100.0,
        ingest_secs / (ingest_secs + index_secs) * 100.0,
        if no_tokens { "off" } else { "on" },
        index_bytes as f64 / 1e6,
        index_bytes as f64 / seg_bytes as f64 * 100.0,
    );
    Ok(())
}

/// Times the ID lookup (`correlate`) and `|= "<id>"` over all streams for each of `lookups`
/// and prints both medians under `label`.
fn measure_lookups(
    label: &str,
    tenant: &Arc<Tenant>,
    index_cfg: &IndexConfig,
    lookups: &[&String],
    start: i64,
    end: i64,
) -> anyhow::Result<()> {
    let mut t_corr = Vec::new();
    let mut t_needle = Vec::new();
    let mut found = (0, 0);
    for id in lookups {
        let t0 = Instant::now();
        let c = correlate(
            tenant,
            index_cfg,
            id,
            start,
            end + 1,
            5000,
            Cancel::default(),
        )?;
        t_corr.push(t0.elapsed());
        found.0 += c.entries.len();
        let lq = needle_query(id, start, end)?;
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
}

/// `{job="bench"} |= "<id>"` over `[start, end]`, newest 100 first.
fn needle_query(id: &str, start: i64, end: i64) -> anyhow::Result<LogQuery> {
    Ok(LogQuery {
        matchers: crate::logql::parse_selector("{job=\"bench\"}")?,
        pipeline: match crate::logql::parse_expr(&format!("{{job=\"bench\"}} |= \"{id}\""))? {
            crate::logql::Expr::Log(l) => l.pipeline,
            _ => unreachable!(),
        },
        start,
        end: end + 1,
        limit: 100,
        direction: Direction::Backward,
    })
}
