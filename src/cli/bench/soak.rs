//! `sawmill bench soak`: a mixed-load soak against a server it starts itself (this binary's
//! `serve`, in a fresh data directory, on a loopback port), with a config that makes every
//! background job run often: short flushes, compaction every `--compaction-interval`, a short
//! retention for a quarter of the streams.
//!
//! For `--duration`, at the same time:
//! - pushers send `--rate` lines per second over many streams of several tenants, every line
//!   carrying a unique sequence number, and remember which pushes were acknowledged;
//! - query workers run log range queries, metric range queries and correlate lookups;
//! - one live tail per tenant, reconnected every 30 s;
//! - a deleter files a delete request (Loki's API) every `--delete-every` for one mark;
//! - retention and compaction run in the server.
//!
//! Every second it records the server's RSS, open files (`/proc/<pid>/fd`), threads, head
//! bytes (`sawmill_head_bytes` from `/metrics`) and the p99 latencies of the last second to a
//! CSV file. At the end it reads everything back and checks that every acknowledged line is
//! there exactly once, except the lines that retention or a delete request removed (which must
//! be gone), and that nothing is there that was not pushed. It prints a table per minute and a
//! JSON summary, and fails when a line is lost or duplicated.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{start_server, ServerProc};
use crate::client::{ClientError, Conn, ConnOptions};

#[derive(clap::Args)]
pub struct SoakArgs {
    /// How long to run (e.g. 60s, 30m).
    #[arg(long, default_value = "60s", value_parser = crate::config::parse_duration)]
    pub duration: Duration,
    /// Lines pushed per second, over all tenants and streams.
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    #[arg(long, default_value_t = 3)]
    pub tenants: usize,
    /// Streams per tenant (a quarter of them with the short retention).
    #[arg(long, default_value_t = 12)]
    pub streams: usize,
    /// Retention of the streams with `class="short"`.
    #[arg(long, default_value = "2m", value_parser = crate::config::parse_duration)]
    pub retention: Duration,
    #[arg(long, default_value = "30s", value_parser = crate::config::parse_duration)]
    pub compaction_interval: Duration,
    /// A delete request every this long.
    #[arg(long, default_value = "20s", value_parser = crate::config::parse_duration)]
    pub delete_every: Duration,
    /// Chunks are cut and flushed at this age (`ingester.max_chunk_age`).
    #[arg(long, default_value = "30s", value_parser = crate::config::parse_duration)]
    pub flush_age: Duration,
    /// Seconds of warm-up left out of the flatness summary (default: a fifth of the run, at most 5 minutes).
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Per-second samples, as CSV.
    #[arg(long, default_value = "soak.csv")]
    pub out: PathBuf,
    /// Data directory of the server (default: a new temporary one, removed after a passing run).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The server binary (default: this one).
    #[arg(long)]
    pub server: Option<PathBuf>,
}

/// Pushers, query workers.
const PUSHERS: usize = 4;
const QUERIERS: usize = 2;
/// Lines carry ` mark=NNN;`; a delete request removes one mark's lines.
const MARKS: u64 = 1000;
/// A tail is closed and opened again this often (connection churn).
const TAIL_RECONNECT: Duration = Duration::from_secs(30);

/// What happened to one pushed line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Answered 2xx: it must be served (unless retention or a delete removed it).
    Acked,
    /// Answered 4xx: it must not be served.
    Refused,
    /// Transport error or 5xx: it may or may not be served.
    Unknown,
}

#[derive(Clone, Copy)]
struct Pushed {
    seq: u64,
    tenant: u16,
    stream: u16,
    ts: i64,
    outcome: Outcome,
}

/// A delete request the server accepted.
struct Delete {
    tenant: usize,
    mark: u64,
    start: i64,
    end: i64,
}

/// Latencies of one kind of request since the sampler last took them.
#[derive(Default)]
struct Lat(Mutex<Vec<Duration>>);

impl Lat {
    fn add(&self, d: Duration) {
        self.0.lock().expect("bug: latency lock").push(d);
    }
    fn take(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.0.lock().expect("bug: latency lock"))
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    seq: AtomicU64,
    clock: AtomicI64,
    /// Highest sequence number acknowledged so far (for correlate lookups).
    acked_seq: AtomicU64,
    push: Lat,
    log_query: Lat,
    metric_query: Lat,
    correlate: Lat,
    tail_lines: AtomicU64,
    errors: AtomicU64,
    pushed_lines: AtomicU64,
    deletes: Mutex<Vec<Delete>>,
}

impl Shared {
    /// A timestamp unique across the soak: now, or one past the last one handed out.
    fn next_ts(&self) -> i64 {
        let now = crate::model::now_ns();
        let prev = self
            .clock
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                Some(c.max(now - 1) + 1)
            })
            .expect("bug: update closure always returns Some");
        prev.max(now - 1) + 1
    }
    fn error(&self, what: &str, e: &dyn std::fmt::Display) {
        if self.errors.fetch_add(1, Ordering::Relaxed) < 20 {
            eprintln!("soak: {what}: {e}");
        }
    }
}

/// A small deterministic generator (xorshift64).
fn xorshift(mut seed: u64) -> impl FnMut() -> usize {
    seed |= 1;
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed as usize
    }
}

fn tenant_name(t: usize) -> String {
    format!("soak-{t}")
}

fn stream_labels(stream: usize) -> (String, &'static str) {
    let class = if stream % 4 == 0 { "short" } else { "keep" };
    (format!("s{stream:02}"), class)
}

/// The line with sequence number `seq`: logfmt, with a request ID shared by 4 lines.
fn line_text(seq: u64, tenant: usize, stream: usize) -> String {
    format!(
        "level=info msg=\"soak line\" seq={seq} t={tenant} s={stream} mark={:03}; request_id=req-soak-{:x} duration_ms={} path=/api/items/{}",
        seq % MARKS,
        seq / 4,
        seq % 997,
        seq % 101
    )
}

/// The sequence number of a served line.
fn seq_of(line: &str) -> Option<u64> {
    line.split(' ')
        .find_map(|f| f.strip_prefix("seq="))?
        .parse()
        .ok()
}

fn config_yaml(a: &SoakArgs) -> String {
    format!(
        "auth_enabled: true
server:
  log_level: warn
limits_config:
  ingestion_rate_mb: 1000
  ingestion_burst_size_mb: 1000
  max_entries_limit_per_query: 100000
  max_concurrent_tail_requests: 100
  retention_stream:
    - selector: '{{class=\"short\"}}'
      priority: 1
      period: {}s
ingester:
  chunk_idle_period: {}s
  max_chunk_age: {}s
  flush_check_period: 2s
compactor:
  compaction_interval: {}s
  partition_period: 10m
  delete_request_cancel_period: 0s
",
        a.retention.as_secs().max(1),
        (a.flush_age.as_secs() / 2).max(1),
        a.flush_age.as_secs().max(1),
        a.compaction_interval.as_secs().max(1),
    )
}

/// Starts the server under test (killed if the soak ends early).
fn start_soak_server(a: &SoakArgs, dir: &Path) -> anyhow::Result<ServerProc> {
    let bin = match &a.server {
        Some(b) => b.clone(),
        None => std::env::current_exe()?,
    };
    start_server(&bin, dir, "soak.yaml", &config_yaml(a))
}

fn conn(addr: &str, tenant: Option<usize>) -> anyhow::Result<Conn> {
    Ok(Conn::new(ConnOptions {
        addr: addr.to_string(),
        org_id: tenant.map(tenant_name),
        ..ConnOptions::default()
    })?)
}

/// Pushes `rate` lines per second (its share) in batches of ~100 ms until stopped.
fn pusher(addr: String, a: (u64, usize, usize), id: usize, sh: Arc<Shared>) -> Vec<Pushed> {
    let (rate, tenants, streams) = a;
    let conns: Vec<Conn> = (0..tenants)
        .map(|t| conn(&addr, Some(t)).expect("bug: address checked at start"))
        .collect();
    let per_push = (rate / 10).max(1) as usize;
    let every = Duration::from_secs_f64(per_push as f64 / rate.max(1) as f64);
    let mut out = Vec::new();
    let mut next = Instant::now();
    let mut k = id;
    while !sh.stop.load(Ordering::Relaxed) {
        let tenant = k % tenants;
        k += PUSHERS;
        // 3 streams per push, lines dealt round-robin.
        let first = (k / tenants) % streams;
        let mut by_stream: Vec<(usize, Vec<[String; 2]>)> = (0..3.min(streams))
            .map(|i| ((first + i) % streams, Vec::new()))
            .collect();
        let base = out.len();
        for i in 0..per_push {
            let seq = sh.seq.fetch_add(1, Ordering::Relaxed);
            let slot = i % by_stream.len();
            let stream = by_stream[slot].0;
            let ts = sh.next_ts();
            by_stream[slot]
                .1
                .push([ts.to_string(), line_text(seq, tenant, stream)]);
            out.push(Pushed {
                seq,
                tenant: tenant as u16,
                stream: stream as u16,
                ts,
                outcome: Outcome::Unknown,
            });
        }
        let body = serde_json::json!({"streams": by_stream.iter().map(|(s, values)| {
            let (name, class) = stream_labels(*s);
            serde_json::json!({"stream": {"job": "soak", "stream": name, "class": class,
                "app": format!("app-{}", s % 3)}, "values": values})
        }).collect::<Vec<_>>()});
        let t0 = Instant::now();
        let outcome = match conns[tenant].post(
            "/loki/api/v1/push",
            "application/json",
            body.to_string().as_bytes(),
        ) {
            Ok(_) => {
                sh.push.add(t0.elapsed());
                Outcome::Acked
            }
            Err(ClientError::Status { status, body, .. }) if (400..500).contains(&status) => {
                sh.error("push refused", &format!("{status} {body}"));
                Outcome::Refused
            }
            Err(e) => {
                sh.error("push failed", &e);
                Outcome::Unknown
            }
        };
        for p in &mut out[base..] {
            p.outcome = outcome;
        }
        if outcome == Outcome::Acked {
            sh.pushed_lines
                .fetch_add(per_push as u64, Ordering::Relaxed);
            let hi = out[base..].iter().map(|p| p.seq).max().unwrap_or(0);
            sh.acked_seq.fetch_max(hi, Ordering::Relaxed);
        }
        next += every;
        match next.checked_duration_since(Instant::now()) {
            Some(d) => std::thread::sleep(d),
            // Behind: do not try to catch up in a burst.
            None => next = Instant::now(),
        }
    }
    out
}

/// Log queries, metric queries and correlate lookups in turn, about 5 a second per worker.
fn querier(addr: String, tenants: usize, streams: usize, id: usize, sh: Arc<Shared>) {
    let conns: Vec<Conn> = (0..tenants)
        .map(|t| conn(&addr, Some(t)).expect("bug: address checked at start"))
        .collect();
    let mut rng = xorshift(0x5eed + id as u64);
    let mut k = 0usize;
    while !sh.stop.load(Ordering::Relaxed) {
        k += 1;
        let c = &conns[rng() % tenants];
        let now = crate::model::now_ns();
        let t0 = Instant::now();
        let (lat, r) = match k % 3 {
            0 => {
                let (s, _) = stream_labels(rng() % streams);
                let q = format!(
                    "{{job=\"soak\", stream=\"{s}\"}} |= \" mark={:03};\"",
                    rng() as u64 % MARKS
                );
                let params = [
                    ("query", q),
                    ("start", (now - 300_000_000_000).to_string()),
                    ("end", now.to_string()),
                    ("limit", "100".into()),
                ];
                (
                    &sh.log_query,
                    c.get_text("/loki/api/v1/query_range", &params),
                )
            }
            1 => {
                let params = [
                    (
                        "query",
                        "sum by (stream) (count_over_time({job=\"soak\"} | logfmt | duration_ms > 500 [1m]))".to_string(),
                    ),
                    ("start", (now - 900_000_000_000).to_string()),
                    ("end", now.to_string()),
                    ("step", "15".into()),
                ];
                (
                    &sh.metric_query,
                    c.get_text("/loki/api/v1/query_range", &params),
                )
            }
            _ => {
                let hi = sh.acked_seq.load(Ordering::Relaxed);
                let seq = hi.saturating_sub(rng() as u64 % 20_000);
                let params = [
                    ("id", format!("req-soak-{:x}", seq / 4)),
                    ("start", (now - 3_600_000_000_000).to_string()),
                    ("end", now.to_string()),
                ];
                (
                    &sh.correlate,
                    c.get_text("/sawmill/api/v1/correlate", &params),
                )
            }
        };
        match r {
            Ok(_) => lat.add(t0.elapsed()),
            Err(e) => sh.error("query failed", &e),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One live tail of a tenant's lines, reconnected every [`TAIL_RECONNECT`].
fn tailer(addr: String, tenant: usize, sh: Arc<Shared>) {
    let Ok(c) = conn(&addr, Some(tenant)) else {
        return;
    };
    while !sh.stop.load(Ordering::Relaxed) {
        let mut ws = match c.websocket(
            "/loki/api/v1/tail",
            &[
                ("query", "{job=\"soak\"}".to_string()),
                ("limit", "10".into()),
            ],
            Duration::from_secs(2),
        ) {
            Ok(ws) => ws,
            Err(e) => {
                sh.error("tail failed", &e);
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let opened = Instant::now();
        while !sh.stop.load(Ordering::Relaxed) && opened.elapsed() < TAIL_RECONNECT {
            match ws.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    let n = t.as_str().matches("seq=").count();
                    sh.tail_lines.fetch_add(n as u64, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => {
                    sh.error("tail ended", &e);
                    break;
                }
            }
        }
        let _ = ws.close(None);
        let _ = ws.flush();
    }
}

/// A delete request every `every`: one tenant's lines of one mark, from the start until now.
fn deleter(addr: String, tenants: usize, every: Duration, start: i64, sh: Arc<Shared>) {
    let mut rng = xorshift(0xde1e7e);
    let mut last = Instant::now();
    while !sh.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        let tenant = rng() % tenants;
        let mark = rng() as u64 % MARKS;
        let end = crate::model::now_ns();
        let body = serde_urlencoded::to_string([
            ("query", format!("{{job=\"soak\"}} |= \" mark={mark:03};\"")),
            ("start", start.to_string()),
            ("end", end.to_string()),
        ])
        .expect("bug: strings encode");
        let Ok(c) = conn(&addr, Some(tenant)) else {
            return;
        };
        match c.post(
            "/loki/api/v1/delete",
            "application/x-www-form-urlencoded",
            body.as_bytes(),
        ) {
            Ok(_) => sh.deletes.lock().expect("bug: deletes lock").push(Delete {
                tenant,
                mark,
                start,
                end,
            }),
            Err(e) => sh.error("delete failed", &e),
        }
    }
}

/// One second of samples.
struct Sample {
    second: u64,
    rss_kb: u64,
    /// Heap and other anonymous memory (RSS without mapped segment files).
    rss_anon_kb: u64,
    fds: u64,
    threads: u64,
    head_bytes: f64,
    segments: f64,
    pushed: u64,
    p99_ms: [f64; 4],
    tail_lines: u64,
    errors: u64,
}

const CSV_HEADER: &str = "second,rss_kb,rss_anon_kb,fds,threads,head_bytes,segments,pushed_lines,push_p99_ms,log_query_p99_ms,metric_query_p99_ms,correlate_p99_ms,tail_lines,errors";

impl Sample {
    fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{:.2},{:.2},{:.2},{:.2},{},{}",
            self.second,
            self.rss_kb,
            self.rss_anon_kb,
            self.fds,
            self.threads,
            self.head_bytes,
            self.segments,
            self.pushed,
            self.p99_ms[0],
            self.p99_ms[1],
            self.p99_ms[2],
            self.p99_ms[3],
            self.tail_lines,
            self.errors
        )
    }
}

fn p99(v: &mut [Duration]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)].as_secs_f64() * 1e3
}

/// A `/proc/<pid>/status` field (`VmRSS` in kB, `Threads`).
fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

/// The sum of every sample of a metric family in a `/metrics` text.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What the final read-back found.
#[derive(Debug, Default, serde::Serialize)]
pub struct Verdict {
    pub acked_lines: u64,
    pub served_lines: u64,
    /// Acknowledged, not expired or deleted, and not served.
    pub missing: u64,
    pub duplicates: u64,
    /// Served lines that were never pushed, or served with another tenant, stream or time.
    pub unexpected: u64,
    /// Served although a 4xx refused them, or although retention or a delete removed them.
    pub should_be_gone: u64,
    pub removed_by_retention: u64,
    pub removed_by_deletes: u64,
    pub delete_requests: u64,
    pub compactor_runs: f64,
    pub compactor_dropped_retention: f64,
    pub compactor_dropped_delete: f64,
    pub tail_lines: u64,
    pub errors: u64,
    pub rss_kb_after_warmup: u64,
    pub rss_kb_max_after_warmup: u64,
    pub rss_kb_last: u64,
    pub fds_after_warmup: u64,
    pub fds_max_after_warmup: u64,
    pub fds_last: u64,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.missing == 0
            && self.duplicates == 0
            && self.unexpected == 0
            && self.should_be_gone == 0
    }
}

pub fn run(a: SoakArgs) -> anyhow::Result<()> {
    let (dir, fresh) = match &a.data_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("sawmill-soak-{}", std::process::id())),
            true,
        ),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let mut server = start_soak_server(&a, &dir)?;
    let pid = server.child.id();
    let addr = server.addr.clone();
    eprintln!(
        "soak: server pid {pid} at {addr}, data in {}, {} lines/s for {:?}",
        dir.display(),
        a.rate,
        a.duration
    );
    let sh = Arc::new(Shared::default());
    let soak_start = crate::model::now_ns();
    let mut pushers = Vec::new();
    for id in 0..PUSHERS {
        let (addr, sh) = (addr.clone(), sh.clone());
        let share = (a.rate / PUSHERS as u64).max(1);
        let (tenants, streams) = (a.tenants.max(1), a.streams.max(1));
        pushers.push(std::thread::spawn(move || {
            pusher(addr, (share, tenants, streams), id, sh)
        }));
    }
    let mut others = Vec::new();
    for id in 0..QUERIERS {
        let (addr, sh) = (addr.clone(), sh.clone());
        let (tenants, streams) = (a.tenants.max(1), a.streams.max(1));
        others.push(std::thread::spawn(move || {
            querier(addr, tenants, streams, id, sh)
        }));
    }
    for t in 0..a.tenants.max(1) {
        let (addr, sh) = (addr.clone(), sh.clone());
        others.push(std::thread::spawn(move || tailer(addr, t, sh)));
    }
    {
        let (addr, sh, every, tenants) =
            (addr.clone(), sh.clone(), a.delete_every, a.tenants.max(1));
        others.push(std::thread::spawn(move || {
            deleter(addr, tenants, every, soak_start, sh)
        }));
    }

    // Sampling, once a second.
    let metrics_conn = conn(&addr, None)?;
    let metrics_agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let mut csv = std::io::BufWriter::new(
        std::fs::File::create(&a.out)
            .with_context(|| format!("cannot write {}", a.out.display()))?,
    );
    writeln!(csv, "{CSV_HEADER}")?;
    let mut samples: Vec<Sample> = Vec::new();
    let started = Instant::now();
    let mut second = 0u64;
    while started.elapsed() < a.duration {
        second += 1;
        let at = started + Duration::from_secs(second);
        if let Some(d) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        // With a timeout: a server that stops answering /metrics is a finding, not a stall.
        let metrics = match metrics_agent
            .get(&format!("{addr}/metrics"))
            .call()
            .map_err(|e| e.to_string())
            .and_then(|r| r.into_string().map_err(|e| e.to_string()))
        {
            Ok(text) => text,
            Err(e) => {
                sh.error("metrics failed", &e);
                String::new()
            }
        };
        let s = Sample {
            second,
            rss_kb: proc_status(pid, "VmRSS"),
            rss_anon_kb: proc_status(pid, "RssAnon"),
            fds: open_fds(pid),
            threads: proc_status(pid, "Threads"),
            head_bytes: metric_sum(&metrics, "sawmill_head_bytes"),
            segments: metric_sum(&metrics, "sawmill_segments"),
            pushed: sh.pushed_lines.load(Ordering::Relaxed),
            p99_ms: [
                p99(&mut sh.push.take()),
                p99(&mut sh.log_query.take()),
                p99(&mut sh.metric_query.take()),
                p99(&mut sh.correlate.take()),
            ],
            tail_lines: sh.tail_lines.load(Ordering::Relaxed),
            errors: sh.errors.load(Ordering::Relaxed),
        };
        writeln!(csv, "{}", s.csv())?;
        csv.flush()?;
        samples.push(s);
        if let Ok(Some(status)) = server.child.try_wait() {
            bail!(
                "the server exited during the soak ({status}); see {}/server.log",
                dir.display()
            );
        }
    }
    sh.stop.store(true, Ordering::Relaxed);
    let mut pushed: Vec<Pushed> = pushers
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect();
    for h in others {
        let _ = h.join();
    }
    pushed.sort_by_key(|p| p.seq);
    print_minutes(&samples);

    let deletes = std::mem::take(&mut *sh.deletes.lock().expect("bug: deletes lock"));
    let mut v = verify(&a, &addr, &pushed, &deletes)?;
    let metrics = metrics_conn.get_text("/metrics", &[]).unwrap_or_default();
    v.compactor_runs = metric_sum(&metrics, "sawmill_compactor_runs_total");
    for l in metrics.lines() {
        if let Some(rest) = l.strip_prefix("sawmill_compactor_entries_dropped_total{") {
            let n: f64 = rest
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0.0);
            if rest.contains("reason=\"retention\"") {
                v.compactor_dropped_retention += n;
            } else if rest.contains("reason=\"delete\"") {
                v.compactor_dropped_delete += n;
            }
        }
    }
    v.tail_lines = sh.tail_lines.load(Ordering::Relaxed);
    v.errors = sh.errors.load(Ordering::Relaxed);
    let warmup = a
        .warmup
        .unwrap_or((a.duration.as_secs() / 5).min(300))
        .min(samples.len().saturating_sub(1) as u64);
    let after: Vec<&Sample> = samples.iter().filter(|s| s.second > warmup).collect();
    if let (Some(first), Some(last)) = (after.first(), after.last()) {
        v.rss_kb_after_warmup = first.rss_kb;
        v.rss_kb_max_after_warmup = after.iter().map(|s| s.rss_kb).max().unwrap_or(0);
        v.rss_kb_last = last.rss_kb;
        v.fds_after_warmup = first.fds;
        v.fds_max_after_warmup = after.iter().map(|s| s.fds).max().unwrap_or(0);
        v.fds_last = last.fds;
    }
    println!("{}", serde_json::to_string(&v)?);
    drop(server);
    if !v.ok() {
        bail!(
            "soak failed: {} missing, {} duplicated, {} unexpected, {} served that should be gone (data kept in {})",
            v.missing,
            v.duplicates,
            v.unexpected,
            v.should_be_gone,
            dir.display()
        );
    }
    if fresh {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// One row per minute: RSS, open files, threads and head bytes at the minute's end, p99s over
/// the minute.
fn print_minutes(samples: &[Sample]) {
    println!("minute  rss_MB  anon_MB  fds  threads  head_MB  segments  lines/s  push_p99_ms  log_q_p99_ms  metric_q_p99_ms  correlate_p99_ms  errors");
    for (m, chunk) in samples.chunks(60).enumerate() {
        let last = chunk.last().expect("bug: chunks are not empty");
        let prev = if m == 0 {
            0
        } else {
            samples[m * 60 - 1].pushed
        };
        // The minute's p99 is approximated by the 99th percentile of per-second p99s.
        let col = |i: usize| {
            let mut v: Vec<f64> = chunk
                .iter()
                .map(|s| s.p99_ms[i])
                .filter(|x| *x > 0.0)
                .collect();
            v.sort_by(f64::total_cmp);
            v.get((v.len() * 99 / 100).min(v.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0)
        };
        println!(
            "{:>6}  {:>6.1}  {:>7.1}  {:>3}  {:>7}  {:>7.2}  {:>8}  {:>7.0}  {:>11.1}  {:>12.1}  {:>15.1}  {:>16.1}  {:>6}",
            m + 1,
            last.rss_kb as f64 / 1024.0,
            last.rss_anon_kb as f64 / 1024.0,
            last.fds,
            last.threads,
            last.head_bytes / 1_048_576.0,
            last.segments,
            (last.pushed - prev) as f64 / chunk.len() as f64,
            col(0),
            col(1),
            col(2),
            col(3),
            last.errors
        );
    }
}

/// Reads every tenant's lines back and compares them with what was pushed.
fn verify(
    a: &SoakArgs,
    addr: &str,
    pushed: &[Pushed],
    deletes: &[Delete],
) -> anyhow::Result<Verdict> {
    let mut v = Verdict {
        delete_requests: deletes.len() as u64,
        ..Verdict::default()
    };
    let retention = a.retention.as_nanos() as i64;
    let margin = 2_000_000_000i64;
    let t0 = crate::model::now_ns();
    let mut served: HashMap<u64, u32> = HashMap::new();
    let (from, to) = (
        pushed.iter().map(|p| p.ts).min().unwrap_or(t0) - 1,
        pushed.iter().map(|p| p.ts).max().unwrap_or(t0) + 1,
    );
    let by_seq = |seq: u64| {
        pushed
            .binary_search_by_key(&seq, |p| p.seq)
            .ok()
            .map(|i| &pushed[i])
    };
    for t in 0..a.tenants.max(1) {
        let c = conn(addr, Some(t))?;
        read_range(&c, from, to, &mut |ts, labels, line| {
            v.served_lines += 1;
            let Some(seq) = seq_of(line) else {
                v.unexpected += 1;
                return;
            };
            match by_seq(seq) {
                Some(p)
                    if p.tenant as usize == t
                        && p.ts == ts
                        && labels.get("stream").and_then(|s| s.as_str())
                            == Some(stream_labels(p.stream as usize).0.as_str())
                        && line == line_text(seq, t, p.stream as usize) =>
                {
                    *served.entry(seq).or_default() += 1;
                }
                _ => v.unexpected += 1,
            }
        })?;
    }
    let t1 = crate::model::now_ns();
    for p in pushed {
        let n = served.get(&p.seq).copied().unwrap_or(0);
        if n > 1 {
            v.duplicates += u64::from(n - 1);
        }
        if p.outcome == Outcome::Acked {
            v.acked_lines += 1;
        }
        // Gone for sure, kept for sure, or on a boundary (either is right).
        let short = stream_labels(p.stream as usize).1 == "short";
        let expired = short && p.ts < t0 - retention - margin;
        let expired_maybe = short && p.ts <= t1 - retention + margin;
        let mark = p.seq % MARKS;
        let matching = deletes
            .iter()
            .filter(|d| d.tenant == p.tenant as usize && d.mark == mark);
        let deleted = matching
            .clone()
            .any(|d| p.ts >= d.start && p.ts <= d.end - margin);
        let deleted_maybe = matching.clone().any(|d| p.ts <= d.end + margin);
        let gone = expired || deleted || p.outcome == Outcome::Refused;
        if gone {
            if n > 0 {
                v.should_be_gone += 1;
            } else if p.outcome == Outcome::Acked {
                if expired {
                    v.removed_by_retention += 1;
                } else {
                    v.removed_by_deletes += 1;
                }
            }
            continue;
        }
        if p.outcome == Outcome::Acked && n == 0 && !expired_maybe && !deleted_maybe {
            if v.missing < 10 {
                eprintln!(
                    "soak: missing seq {} tenant {} stream {} ts {}",
                    p.seq, p.tenant, p.stream, p.ts
                );
            }
            v.missing += 1;
        }
    }
    Ok(v)
}

/// Calls `each(ts, stream labels, line)` for every entry of `{job="soak"}` in `[from, to)`,
/// oldest first, in pages under the server's entry limit. Every line has its own timestamp, so
/// a page ends at a timestamp and the next one starts there (the entries at the page's last
/// timestamp are left for the next page, so that a duplicate is never split across pages).
fn read_range(
    c: &Conn,
    from: i64,
    to: i64,
    each: &mut dyn FnMut(i64, &serde_json::Map<String, serde_json::Value>, &str),
) -> anyhow::Result<()> {
    const LIMIT: usize = 20_000;
    let mut lo = from;
    while lo < to {
        let params = [
            ("query", "{job=\"soak\"}".to_string()),
            ("start", lo.to_string()),
            ("end", to.to_string()),
            ("limit", LIMIT.to_string()),
            ("direction", "forward".into()),
        ];
        let text = c
            .get_text("/loki/api/v1/query_range", &params)
            .context("reading the soak's lines back")?;
        let body: serde_json::Value = serde_json::from_str(&text)?;
        let empty = serde_json::Map::new();
        let mut page: Vec<(i64, &serde_json::Map<String, serde_json::Value>, &str)> = Vec::new();
        for s in body["data"]["result"].as_array().into_iter().flatten() {
            let labels = s["stream"].as_object().unwrap_or(&empty);
            for e in s["values"].as_array().into_iter().flatten() {
                let ts = e[0].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
                page.push((ts, labels, e[1].as_str().unwrap_or_default()));
            }
        }
        let full = page.len() >= LIMIT;
        let (min, max) = (
            page.iter().map(|e| e.0).min().unwrap_or(to),
            page.iter().map(|e| e.0).max().unwrap_or(to),
        );
        // A full page ends at `max`; its entries at `max` come again with the next page.
        let keep_last = !full || min == max;
        for (ts, labels, line) in &page {
            if keep_last || *ts < max {
                each(*ts, labels, line);
            }
        }
        lo = match (full, keep_last) {
            (false, _) => to,
            (true, true) => max + 1,
            (true, false) => max,
        };
    }
    Ok(())
}
