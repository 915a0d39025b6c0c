//! `sawmill bench push`: push throughput and latency against a running server, from several
//! connections sending prepared JSON bodies whose timestamps are rewritten before each send;
//! or, with `--shape microservices`, the bodies of [`super::workload`] pushed once
//! ([`push_bodies`], which `bench query` also uses).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::workload::{self, Body, Shape, Spec};
use super::{bench_span, BenchPushArgs, APPS, LEVELS, MSGS, PATHS};

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
    if a.shape == Shape::Microservices {
        return push_workload(&a);
    }
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

/// `bench push --shape microservices`: generates `a.lines` lines over the hour before the last
/// whole hour, pushes them once and prints the throughput.
fn push_workload(a: &BenchPushArgs) -> anyhow::Result<()> {
    let (start, end) = bench_span(1);
    let spec = Spec {
        seed: a.seed,
        lines: a.lines,
        start_ns: start,
        span_ns: end - start,
        batch: a.batch.max(1),
    };
    let t0 = Instant::now();
    let (bodies, truth) = workload::bodies(&spec);
    println!(
        "generated {} lines in {} bodies ({:.1} MB of bodies, {:.1} MB of lines) in {:.1}s; request {} has {} lines",
        truth.lines,
        bodies.len(),
        truth.body_bytes as f64 / 1e6,
        truth.line_bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64(),
        truth.needle,
        truth.needle_lines,
    );
    let r = push_bodies(&a.addr, a.org_id.as_deref(), &bodies, a.connections);
    println!("{}", r.summary());
    if r.errors > 0 {
        anyhow::bail!("{} of {} pushes failed", r.errors, bodies.len());
    }
    Ok(())
}

/// What [`push_bodies`] measured.
pub struct Pushed {
    /// Lines and bytes of the pushes the server acknowledged.
    pub lines: usize,
    pub line_bytes: usize,
    pub body_bytes: usize,
    pub errors: usize,
    pub secs: f64,
    pub p50: Duration,
    pub p99: Duration,
}

impl Pushed {
    pub fn summary(&self) -> String {
        format!(
            "pushed {} lines in {:.1}s: {:.0} lines/s, {:.1} MB/s of bodies ({:.1} MB/s of lines), push latency p50 {:.1} ms, p99 {:.1} ms, {} errors",
            self.lines,
            self.secs,
            self.lines as f64 / self.secs,
            self.body_bytes as f64 / self.secs / 1e6,
            self.line_bytes as f64 / self.secs / 1e6,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.errors
        )
    }
}

/// Pushes every body once to `addr`'s push endpoint from `connections` threads, each taking
/// the next body not sent yet. A refused or failed push is counted, not retried.
pub fn push_bodies(addr: &str, org: Option<&str>, bodies: &[Body], connections: usize) -> Pushed {
    let url = format!("{}/loki/api/v1/push", addr.trim_end_matches('/'));
    let next = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let started = Instant::now();
    let per_thread: Vec<(Vec<Duration>, usize, usize, usize)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..connections.max(1))
            .map(|_| {
                let (url, next, errors) = (&url, &next, &errors);
                s.spawn(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(120))
                        .build();
                    let (mut lat, mut lines, mut line_bytes, mut body_bytes) =
                        (Vec::new(), 0, 0, 0);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                        let Some(body) = bodies.get(i) else { break };
                        let mut req = agent.post(url).set("Content-Type", "application/json");
                        if let Some(o) = org {
                            req = req.set("X-Scope-OrgID", o);
                        }
                        let t0 = Instant::now();
                        match req.send_bytes(&body.json) {
                            Ok(_) => {
                                lat.push(t0.elapsed());
                                lines += body.lines;
                                line_bytes += body.line_bytes;
                                body_bytes += body.json.len();
                            }
                            Err(e) => {
                                if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                                    eprintln!("push failed: {e}");
                                }
                            }
                        }
                    }
                    (lat, lines, line_bytes, body_bytes)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    });
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let mut lat: Vec<Duration> = Vec::new();
    let (mut lines, mut line_bytes, mut body_bytes) = (0, 0, 0);
    for (l, n, lb, bb) in per_thread {
        lat.extend(l);
        lines += n;
        line_bytes += lb;
        body_bytes += bb;
    }
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Pushed {
        lines,
        line_bytes,
        body_bytes,
        errors: errors.load(Ordering::Relaxed) as usize,
        secs,
        p50: pct(0.50),
        p99: pct(0.99),
    }
}
