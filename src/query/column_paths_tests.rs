//! The shortcuts give the answers of a whole read: over random log and metric queries, data in
//! segments, in sealed head blocks and in open head blocks, the search index, block skipping
//! by field summary and stream labels, the head's Bloom filters and column-only counting
//! return exactly what reading every block whole returns ([`Cancel::with_plain_reads`]).

use std::sync::Arc;

use crate::config::Config;
use crate::ingest::validate::Validated;
use crate::ingest::{Entry, ValidStream};
use crate::labels::Labels;
use crate::logql::{self, Expr};
use crate::storage::store::Store;

use super::{metric, run_metric, select_logs, Cancel, Direction, LogQuery};

const T: i64 = 1_795_132_800_000_000_000;
const SPAN: i64 = 600_000_000_000;

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const LEVELS: [&str; 4] = ["info", "warn", "error", "debug"];
const METHODS: [&str; 3] = ["GET", "POST", "DELETE"];

fn line(r: &mut Rng, level: &str, i: u64) -> String {
    let status = [200, 201, 404, 429, 500, 503][r.below(6) as usize];
    let dur = r.below(5000) as f64 / 10.0;
    let method = r.pick(&METHODS);
    let zone = r.pick(&["a", "b"]);
    let id = pooled_id(r);
    match r.below(12) {
        10 => format!(r#"{{"method":"\u0050ATCH","level":"{level}","status":{status}}}"#),
        // `| json` gives the duration, then fails.
        11 => format!(r#"{{"duration_ms":{dur},"zone":"{zone}","level":"{level}","cut":"#),
        0..=3 => format!(
            r#"{{"level":"{level}","status":{status},"duration_ms":{dur},"method":"{method}","zone":"{zone}","trace_id":"{id}","msg":"req {i}"}}"#
        ),
        4..=6 => format!(
            "level={level} status={status} duration_ms={dur} method={method} zone={zone} trace_id={id} msg=\"req {i}\""
        ),
        7 => format!(r#"{{"status":"{status}x","nested":{{"a":1}},"level":"{level}"}}"#),
        8 => format!("plain text upstream timeout {id}"),
        _ => format!(r#"{{"status":{status},"status":"dup","method":"{method}"}}"#),
    }
}

/// Trace IDs from a small pool, so that a lookup of one finds lines.
fn pooled_id(r: &mut Rng) -> String {
    format!(
        "{:016x}",
        (r.below(40) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    )
}

fn push(s: &Store, r: &mut Rng, from: i64, n: u64) {
    let mut streams = Vec::new();
    for app in ["api", "web", "db"] {
        for level in ["info", "error"] {
            let entries = (0..n)
                .map(|i| {
                    let lvl = if r.below(3) == 0 {
                        r.pick(&LEVELS)
                    } else {
                        level
                    };
                    Entry {
                        ts: from + (i as i64) * (SPAN / 2 / n as i64) + r.below(1000) as i64,
                        line: line(r, lvl, i),
                        metadata: match r.below(4) {
                            0 => vec![("trace_id".into(), pooled_id(r))],
                            1 => vec![("status".into(), "500".into())],
                            _ => vec![],
                        },
                    }
                })
                .collect();
            streams.push(ValidStream {
                labels: Labels::from_pairs(vec![
                    ("app".to_string(), app.to_string()),
                    ("job".to_string(), "svc".to_string()),
                    ("level".to_string(), level.to_string()),
                ]),
                entries,
            });
        }
    }
    let out = s
        .push(
            "fake",
            Validated {
                streams,
                rejections: vec![],
            },
        )
        .unwrap();
    assert!(out.rejections.is_empty(), "{:?}", out.rejections);
}

fn query(r: &mut Rng) -> String {
    let sel = r.pick(&[r#"{job="svc"}"#, r#"{app="api"}"#, r#"{level="error"}"#]);
    let parser = r.pick(&["json", "logfmt"]);
    let n = [100, 200, 300, 429, 500, 503, 600][r.below(7) as usize];
    let d = r.below(600);
    let id = pooled_id(r);
    let filter = match r.below(17) {
        0 => format!("| {parser} | status >= {n}"),
        1 => format!("| {parser} | status < {n} | duration_ms > {d}"),
        2 => format!("| {parser} | level=\"{}\"", r.pick(&LEVELS)),
        3 => format!("| {parser} | method=\"{}\"", r.pick(&METHODS)),
        4 => format!("| {parser} | method=~\"{}.*\"", &r.pick(&METHODS)[..1]),
        5 => format!("| {parser} | status != {n}"),
        6 => "|= \"upstream timeout\"".to_string(),
        7 => format!("| {parser} | status = {n} or duration_ms < {d}"),
        8 => format!("| {parser} | level=\"error\" | __error__=\"\""),
        9 => format!("| {parser} | status=\"{n}\""),
        10 => format!("|= \"req 1\" | {parser} | duration_ms <= {d}"),
        11 => format!("| {parser} | trace_id=\"{id}\""),
        12 => format!("| trace_id=\"{id}\""),
        13 => "|= \"lain text upstream timeo\"".to_string(),
        15 => format!("| {parser} | method=\"PATCH\""),
        14 => format!("|= \"timeout {}\"", &id[..6]),
        _ => String::new(),
    };
    let m = r.pick(&METHODS);
    let unwrap = match r.below(16) {
        13 => format!(
            "sum by (app) (count_over_time({sel} | {parser} | status >= {n} | __error__=\"\" [1m]))"
        ),
        14 => format!(
            "sum by (job) (rate({sel} | {parser} | duration_ms > {d} | method=\"{m}\" | __error__=\"\" [1m]))"
        ),
        15 => format!("sum by (app) (count_over_time({sel} | {parser} | duration_ms < {d} [1m]))"),
        12 => format!(
            "sum by (app) (count_over_time({sel} | {parser} | zone=\"b\" | __error__=\"\" [1m]))"
        ),
        // Without an error filter: `| json` fails on lines that have a zone.
        10 => format!("sum by (app) (count_over_time({sel} | {parser} | zone=\"b\" [1m]))"),
        11 => format!("sum by (app) (count_over_time({sel} | {parser} | method=\"{m}\" [1m]))"),
        6 => format!("sum by (app) (rate({sel} | {parser} | method=\"{m}\" | __error__=\"\" [1m]))"),
        7 => format!(
            "sum by (job) (bytes_over_time({sel} | {parser} | method=\"{m}\" | __error__=\"\" [2m]))"
        ),
        8 => format!(
            "sum by (app) (count_over_time({sel} | {parser} | method=\"{m}\" | zone=\"b\" | __error__=\"\" | status=\"{n}\" [1m]))"
        ),
        9 => format!(
            "sum by (app) (count_over_time({sel} | {parser} | method=\"{m}\" | zone=\"b\" | __error__=\"\" [1m]))"
        ),
        0 => format!(
            "quantile_over_time(0.9, {sel} | {parser} | __error__=\"\" | unwrap duration_ms [1m]) by (app)"
        ),
        1 => format!(
            "sum by (level) (sum_over_time({sel} | {parser} | unwrap status | __error__=\"\" [1m]))"
        ),
        2 => format!("max_over_time({sel} | {parser} | unwrap duration_ms [2m]) by ()"),
        3 => format!("min_over_time({sel} | {parser} | unwrap duration_ms [1m]) by (app, method)"),
        4 => format!("avg_over_time({sel} | {parser} | __error__=\"\" | unwrap duration_ms [1m]) by (app)"),
        _ => format!(
            "sum by (job, nothing) (rate({sel} | {parser} | __error__=\"\" | unwrap duration_ms [1m]))"
        ),
    };
    match r.below(8) {
        6 | 7 => unwrap,
        0 => format!("count_over_time({sel} {filter} [1m])"),
        1 => format!("sum by (app) (bytes_over_time({sel} [2m]))"),
        2 => format!("sum by (level) (count_over_time({sel} {filter} [1m]))"),
        3 => format!("sum(rate({sel} [5m]))"),
        _ => format!("{sel} {filter}"),
    }
}

fn answer(t: &Arc<crate::storage::store::Tenant>, q: &str, cancel: Cancel) -> String {
    match logql::parse_expr(q).unwrap() {
        Expr::Log(log) => {
            let lq = LogQuery {
                matchers: log.selector.matchers,
                pipeline: log.pipeline,
                start: T,
                end: T + SPAN * 2,
                limit: 300,
                direction: Direction::Backward,
            };
            match select_logs(t, &lq, false, cancel) {
                Ok((streams, _)) => format!("{streams:?}"),
                Err(e) => format!("error: {e}"),
            }
        }
        Expr::Sample(e) => {
            let p = metric::EvalParams {
                start: T,
                end: T + SPAN * 2,
                step: 60_000_000_000,
                max_series: 10_000,
            };
            match run_metric(Some(t.clone()), &e, &p, cancel) {
                Ok((result, _)) => format!("{result:?}"),
                Err(e) => format!("error: {e}"),
            }
        }
    }
}

#[test]
fn shortcuts_answer_what_a_whole_read_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.common.path_prefix = dir.path().to_path_buf();
    cfg.limits_config.reject_old_samples = false;
    cfg.limits_config.creation_grace_period = std::time::Duration::from_secs(100 * 365 * 86400);
    cfg.ingester.chunk_block_size = 4 << 10;
    let s = Store::new(Arc::new(cfg));
    s.recover().unwrap();
    let mut r = Rng(0x5eed);
    // The first half goes to segments (with their search index), the second stays in the head.
    push(&s, &mut r, T, 400);
    s.flush(true).unwrap();
    let t = s.existing_tenant("fake").unwrap();
    for seg in t.segments.read().iter() {
        let idx = s.index_segment(seg).unwrap();
        let _ = seg.search.set(Arc::new(idx));
    }
    push(&s, &mut r, T + SPAN, 400);
    let mut sealed = 0;
    for st in t.head.lock().streams.values() {
        sealed += st.blocks.iter().filter(|b| b.is_sealed()).count();
    }
    assert!(sealed > 0, "the head has sealed blocks");
    let mut differing = Vec::new();
    let mut nonempty = 0;
    for _ in 0..150 {
        let q = query(&mut r);
        let fast = answer(&t, &q, Cancel::default());
        let whole = answer(&t, &q, Cancel::default().with_plain_reads());
        if fast != whole {
            if differing.is_empty() {
                let at = fast
                    .bytes()
                    .zip(whole.bytes())
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                eprintln!(
                    "{q}\nfast:  {}\nwhole: {}",
                    &fast[at.saturating_sub(300)..(at + 300).min(fast.len())],
                    &whole[at.saturating_sub(300)..(at + 300).min(whole.len())]
                );
            }
            differing.push(q);
        } else if fast.len() > 40 {
            nonempty += 1;
        }
    }
    for _ in 0..20 {
        let id = pooled_id(&mut r);
        let cfg = crate::config::IndexConfig::default();
        let look = |cancel| {
            let c = super::correlate::correlate(&t, &cfg, &id, T, T + SPAN * 2, 1000, cancel);
            format!("{:?}", c.map(|c| c.entries))
        };
        let (fast, whole) = (
            look(Cancel::default()),
            look(Cancel::default().with_plain_reads()),
        );
        if fast != whole {
            differing.push(format!("correlate {id}"));
        }
    }
    assert!(differing.is_empty(), "answers differ: {differing:#?}");
    assert!(nonempty > 50, "only {nonempty} queries had answers");
}
