//! `sawmill bench index`: the search index's build cost and size, and ID lookups and needle
//! queries with and without it, over generated requests in an in-process store.

use std::sync::Arc;
use std::time::Instant;

use super::{
    bench_span, bench_store, bench_streams, median, xorshift, BenchIndexArgs, APPS, LEVELS, MSGS,
    PATHS,
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
