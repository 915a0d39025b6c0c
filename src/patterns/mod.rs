//! Loki's pattern ingester in one process: every accepted entry is handed (through a bounded
//! queue) to one mining thread that keeps a [`drain::Drain`] per stream; `/loki/api/v1/patterns`
//! reads the counts back per step. Memory is bounded per stream (`max_clusters`, samples kept
//! for three hours) and in total (`max_memory`: past it the streams pushed to least recently
//! are dropped). When the queue is full (the miner is behind), batches are dropped and counted
//! in `sawmill_pattern_lines_dropped_total`; pushes never wait for the miner.
//!
//! Neighbours: `store` hands accepted entries over after the WAL write; `http::patterns`
//! answers queries.

pub mod drain;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender, TrySendError};
use parking_lot::Mutex;

use crate::ingest::ValidStream;
use crate::labels::Labels;
use crate::logql::Matcher;
use drain::{Drain, RESOLUTION_MS};

/// Samples older than this (by their timestamp, against the clock) are dropped, as Loki does.
const RETAIN_FOR: Duration = Duration::from_secs(3 * 3600);
/// How often old samples are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Batches waiting for the miner.
const QUEUE: usize = 1024;
/// Patterns seen fewer times than this in a query's range are left out, and at most
/// `MAX_PATTERNS` are returned (Loki's querier).
const MIN_TOTAL: u64 = 30;
const MAX_PATTERNS: usize = 300;

pub use crate::config::PatternIngesterConfig;

/// Lines of one stream of one push, in one buffer.
struct Batch {
    tenant: String,
    labels: Labels,
    text: String,
    /// (timestamp ns, end offset in `text`) per line.
    lines: Vec<(i64, usize)>,
}

struct StreamPatterns {
    labels: Labels,
    drain: Drain,
    last_push: u64,
    /// Memory estimate, refreshed after each batch.
    bytes: usize,
    /// Newest timestamp mined; older entries are skipped, as Loki skips them.
    last_ts: i64,
}

#[derive(Default)]
struct State {
    tenants: HashMap<String, HashMap<Labels, StreamPatterns>>,
    total_bytes: usize,
    pushes: u64,
}

pub struct PatternIngester {
    cfg: PatternIngesterConfig,
    state: Arc<Mutex<State>>,
    tx: Option<Sender<Batch>>,
    dropped: Arc<AtomicU64>,
}

/// One pattern's counts over a query's range.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternSeries {
    pub pattern: String,
    /// (Unix seconds, lines) per step, oldest first.
    pub samples: Vec<(i64, u64)>,
}

impl PatternIngester {
    /// Starts the mining thread when enabled.
    pub fn new(cfg: PatternIngesterConfig) -> PatternIngester {
        let state = Arc::new(Mutex::new(State::default()));
        let tx = if cfg.enabled {
            let (tx, rx) = channel::bounded(QUEUE);
            let (st, c) = (state.clone(), cfg.clone());
            std::thread::Builder::new()
                .name("pattern-miner".into())
                .spawn(move || mine(rx, st, c))
                .ok()
                .map(|_| tx)
        } else {
            None
        };
        PatternIngester {
            cfg,
            state,
            tx,
            dropped: Arc::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Lines handed over but dropped because the miner was behind.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Hands a push's accepted entries to the miner (never blocks); returns how many lines
    /// were dropped because the miner is behind.
    pub fn observe(
        &self,
        tenant: &str,
        streams: &[ValidStream],
        accepted: &[(Labels, Vec<usize>)],
    ) -> u64 {
        let Some(tx) = &self.tx else {
            return 0;
        };
        let mut dropped = 0;
        // `accepted` lists streams in push order: look where the last one was found first.
        let mut next = 0;
        for (labels, idx) in accepted.iter().filter(|(_, idx)| !idx.is_empty()) {
            let at = match streams.get(next) {
                Some(s) if &s.labels == labels => Some(next),
                _ => streams.iter().position(|s| &s.labels == labels),
            };
            let Some(at) = at else {
                continue;
            };
            next = at + 1;
            let stream = &streams[at];
            let mut text =
                String::with_capacity(idx.iter().map(|&i| stream.entries[i].line.len()).sum());
            let mut lines = Vec::with_capacity(idx.len());
            for &i in idx {
                let e = &stream.entries[i];
                text.push_str(&e.line);
                lines.push((e.ts, text.len()));
            }
            let n = lines.len() as u64;
            let batch = Batch {
                tenant: tenant.to_string(),
                labels: labels.clone(),
                text,
                lines,
            };
            match tx.try_send(batch) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.dropped.fetch_add(n, Ordering::Relaxed);
                    dropped += n;
                }
            }
        }
        dropped
    }

    /// Waits until the miner has taken everything queued so far (for tests and benchmarks).
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let Some(tx) = &self.tx else {
            return true;
        };
        let started = Instant::now();
        while !tx.is_empty() {
            if started.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // The batch taken last may still be mined: taking the lock waits for it.
        drop(self.state.lock());
        true
    }

    /// Patterns of the tenant's streams matching `matchers`, counted per `step_ms` (at least
    /// 10 s) over `[from_ms, through_ms)`: merged by pattern text, those seen fewer than 30
    /// times left out, largest first, at most 300.
    pub fn query(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        from_ms: i64,
        through_ms: i64,
        step_ms: i64,
    ) -> Vec<PatternSeries> {
        let step = step_ms.max(RESOLUTION_MS);
        let mut merged: HashMap<String, std::collections::BTreeMap<i64, u64>> = HashMap::new();
        {
            let state = self.state.lock();
            let Some(streams) = state.tenants.get(tenant) else {
                return Vec::new();
            };
            for s in streams
                .values()
                .filter(|s| crate::logql::labels_match(matchers, |n| s.labels.get(n)))
            {
                for c in s.drain.clusters() {
                    let pattern = s.drain.pattern(c);
                    if pattern.is_empty() {
                        continue;
                    }
                    let mut buckets = Vec::new();
                    for chunk in &c.chunks {
                        for_range(chunk, from_ms, through_ms, step, &mut buckets);
                    }
                    if buckets.is_empty() {
                        continue;
                    }
                    let slot = merged.entry(pattern).or_default();
                    for (t, n) in buckets {
                        *slot.entry(t).or_default() += n;
                    }
                }
            }
        }
        let mut out: Vec<(u64, PatternSeries)> = merged
            .into_iter()
            .map(|(pattern, samples)| {
                let total = samples.values().sum();
                let samples = samples.into_iter().map(|(t, n)| (t / 1000, n)).collect();
                (total, PatternSeries { pattern, samples })
            })
            .filter(|(total, _)| *total >= MIN_TOTAL)
            .collect();
        out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.pattern.cmp(&b.1.pattern)));
        out.truncate(MAX_PATTERNS);
        out.into_iter().map(|(_, s)| s).collect()
    }

    /// Streams and bytes the miner holds (for `/metrics`).
    pub fn usage(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.tenants.values().map(HashMap::len).sum(), st.total_bytes)
    }

    pub fn config(&self) -> &PatternIngesterConfig {
        &self.cfg
    }
}

/// A chunk's samples in `[from, through)`, summed per `step` bucket (bucket start = timestamp
/// rounded down to a multiple of `step`); buckets between the first and the last are present
/// with 0 when the step is coarser than the resolution, as Loki returns them.
fn for_range(chunk: &[(i64, u32)], from: i64, through: i64, step: i64, out: &mut Vec<(i64, u64)>) {
    let inside = chunk.iter().filter(|(t, _)| *t >= from && *t < through);
    if step == RESOLUTION_MS {
        out.extend(inside.map(|&(t, n)| (t, n as u64)));
        return;
    }
    let start = out.len();
    for &(t, n) in inside {
        let b = t - t.rem_euclid(step);
        if out.len() > start {
            let mut last = out.last().expect("bug: a bucket exists").0;
            while last + step <= b {
                last += step;
                out.push((last, 0));
            }
        } else {
            out.push((b, 0));
        }
        out.last_mut().expect("bug: a bucket exists").1 += n as u64;
    }
}

fn mine(rx: Receiver<Batch>, state: Arc<Mutex<State>>, cfg: PatternIngesterConfig) {
    let mut last_prune = Instant::now();
    loop {
        let batch = match rx.recv_timeout(PRUNE_EVERY) {
            Ok(b) => Some(b),
            Err(channel::RecvTimeoutError::Timeout) => None,
            Err(channel::RecvTimeoutError::Disconnected) => return,
        };
        let mut st = state.lock();
        if let Some(b) = batch {
            train(&mut st, b, &cfg);
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            prune(
                &mut st,
                crate::model::now_ns() / 1_000_000 - RETAIN_FOR.as_millis() as i64,
            );
        }
    }
}

fn train(st: &mut State, b: Batch, cfg: &PatternIngesterConfig) {
    st.pushes += 1;
    let pushes = st.pushes;
    let first = b.lines.first().map_or("", |&(_, end)| &b.text[..end]);
    let streams = st.tenants.entry(b.tenant).or_default();
    let s = streams
        .entry(b.labels)
        .or_insert_with_key(|labels| StreamPatterns {
            labels: labels.clone(),
            drain: Drain::new(first, cfg.max_clusters, cfg.max_allowed_line_length),
            last_push: 0,
            bytes: 0,
            last_ts: i64::MIN,
        });
    let mut start = 0;
    for &(ts, end) in &b.lines {
        let line = &b.text[start..end];
        start = end;
        if ts < s.last_ts {
            continue;
        }
        s.last_ts = ts;
        s.drain.train(line, ts);
    }
    s.last_push = pushes;
    let before = s.bytes;
    s.bytes = s.drain.bytes();
    st.total_bytes = st.total_bytes + s.bytes - before;
    while st.total_bytes as u64 > cfg.max_memory {
        if !evict_oldest(st) {
            break;
        }
    }
}

/// Drops the stream pushed to least recently; false when there is none.
fn evict_oldest(st: &mut State) -> bool {
    let Some((tenant, labels)) = st
        .tenants
        .iter()
        .flat_map(|(t, m)| m.iter().map(move |(l, s)| (s.last_push, t, l)))
        .min_by_key(|(p, _, _)| *p)
        .map(|(_, t, l)| (t.clone(), l.clone()))
    else {
        return false;
    };
    if let Some(m) = st.tenants.get_mut(&tenant) {
        if let Some(s) = m.remove(&labels) {
            st.total_bytes -= s.bytes;
        }
        if m.is_empty() {
            st.tenants.remove(&tenant);
        }
    }
    true
}

fn prune(st: &mut State, oldest_ms: i64) {
    let mut total = 0;
    for m in st.tenants.values_mut() {
        m.retain(|_, s| {
            s.drain.prune(oldest_ms);
            s.bytes = s.drain.bytes();
            total += s.bytes;
            s.drain.clusters().next().is_some()
        });
    }
    st.tenants.retain(|_, m| !m.is_empty());
    st.total_bytes = total;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Entry;

    fn stream(labels: &str, lines: &[(i64, String)]) -> ValidStream {
        ValidStream {
            labels: Labels::parse(labels).unwrap(),
            entries: lines
                .iter()
                .map(|(ts, l)| Entry {
                    ts: *ts,
                    line: l.clone(),
                    metadata: vec![],
                })
                .collect(),
        }
    }

    fn push(p: &PatternIngester, s: &ValidStream) {
        let idx = (0..s.entries.len()).collect();
        p.observe("t", std::slice::from_ref(s), &[(s.labels.clone(), idx)]);
        assert!(p.wait_idle(Duration::from_secs(10)));
    }

    fn matchers(sel: &str) -> Vec<Matcher> {
        match crate::logql::parse_expr_unvalidated(sel).unwrap() {
            crate::logql::Expr::Log(l) => l.selector.matchers,
            _ => unreachable!(),
        }
    }

    const T0: i64 = 1_700_000_040_000_000_000; // a multiple of 60 s

    #[test]
    fn counts_per_step_merged_across_streams() {
        let p = PatternIngester::new(PatternIngesterConfig::default());
        let lines = |app: &str| -> Vec<(i64, String)> {
            (0..40)
                .map(|i| {
                    (
                        T0 + i * 1_500_000_000,
                        format!("{app} request {i} served in {i}ms"),
                    )
                })
                .collect()
        };
        let a = stream(r#"{app="a"}"#, &lines("web"));
        let b = stream(r#"{app="b"}"#, &lines("web"));
        push(&p, &a);
        push(&p, &b);
        let from = T0 / 1_000_000;
        let got = p.query(
            "t",
            &matchers(r#"{app=~"a|b"}"#),
            from,
            from + 3_600_000,
            30_000,
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].pattern, "web request <_> served in <_>");
        // 40 lines 1.5 s apart per stream: 60 s, two 30 s buckets of 20 lines, times 2 streams.
        assert_eq!(
            got[0].samples,
            vec![(T0 / 1_000_000_000, 40), (T0 / 1_000_000_000 + 30, 40)]
        );
        // One stream alone: 40 lines, still over the minimum of 30.
        let one = p.query(
            "t",
            &matchers(r#"{app="a"}"#),
            from,
            from + 3_600_000,
            60_000,
        );
        assert_eq!(one[0].samples, vec![(T0 / 1_000_000_000, 40)]);
        // Outside the range, or another tenant: nothing.
        assert!(p
            .query("t", &matchers(r#"{app="a"}"#), 0, from, 60_000)
            .is_empty());
        assert!(p
            .query(
                "u",
                &matchers(r#"{app="a"}"#),
                from,
                from + 3_600_000,
                60_000
            )
            .is_empty());
    }

    #[test]
    fn rare_patterns_are_left_out() {
        let p = PatternIngester::new(PatternIngesterConfig::default());
        let s = stream(
            r#"{app="a"}"#,
            &(0..29)
                .map(|i| (T0 + i, format!("only a few of these lines {i}")))
                .collect::<Vec<_>>(),
        );
        push(&p, &s);
        let from = T0 / 1_000_000;
        assert!(p
            .query("t", &matchers(r#"{app="a"}"#), from, from + 60_000, 10_000)
            .is_empty());
    }

    #[test]
    fn zero_buckets_fill_gaps() {
        let mut out = Vec::new();
        for_range(
            &[(0, 1), (10_000, 2), (70_000, 3)],
            0,
            100_000,
            20_000,
            &mut out,
        );
        assert_eq!(out, vec![(0, 3), (20_000, 0), (40_000, 0), (60_000, 3)]);
    }

    #[test]
    fn memory_is_bounded_in_total() {
        let p = PatternIngester::new(PatternIngesterConfig {
            max_memory: 20_000,
            ..Default::default()
        });
        for i in 0..50 {
            let s = stream(
                &format!("{{app=\"s{i}\"}}"),
                &[(T0, format!("stream {i} says something rather unique here"))],
            );
            push(&p, &s);
        }
        let (streams, bytes) = p.usage();
        assert!(bytes <= 20_000, "{bytes}");
        assert!(streams < 50 && streams > 0, "{streams}");
    }

    #[test]
    fn disabled_mines_nothing() {
        let p = PatternIngester::new(PatternIngesterConfig {
            enabled: false,
            ..Default::default()
        });
        assert!(!p.enabled());
        let s = stream(r#"{app="a"}"#, &[(T0, "a b c d e".into())]);
        push(&p, &s);
        assert_eq!(p.usage(), (0, 0));
    }
}
