//! The `microservices` workload of `sawmill bench push` and `bench query`: a deterministic
//! stream of ~300-byte log lines, the shape the storage work is measured on.
//!
//! Each request fans out from `api-gateway` over one to four other services (of 8); its lines
//! share a request ID (`req-%08x-%04x`), a 128-bit hex trace ID and a user ID. Every line has
//! the fields time, level, msg, method, path, status, duration_ms, user_id, request_id,
//! trace_id and service, written as compact JSON or as logfmt (values with spaces quoted), one
//! or the other at random. Levels are 2% error, 6% warn, 17% debug, 75% info; status is 500 for
//! 70% of errors, 429 for 20% of warnings, 200 otherwise; duration_ms is lognormal(3, 1) rounded
//! to 0.1. Streams are labelled app, namespace (api-gateway runs in production only), level and
//! `job="microservices"`. Timestamps are evenly spaced over the span, 777 ns off the second grid.
//!
//! The same seed gives the same lines. [`bodies`] cuts them into Loki JSON push bodies of
//! `batch` lines and returns what the queries need to know about them ([`Truth`]).

use std::fmt::Write as _;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};

/// What `sawmill bench push` and `bench query` generate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// Independent lines of ~300 bytes, JSON and logfmt, on fixed streams (the original
    /// benchmark data).
    #[default]
    Uniform,
    /// Requests fanning out over 8 services: three random IDs per line, JSON and logfmt mixed,
    /// over 8 apps x 2 namespaces x 4 levels.
    Microservices,
}

/// The `job` label of every stream.
pub const JOB: &str = "microservices";

const SERVICES: [&str; 8] = [
    "api-gateway",
    "user-service",
    "event-service",
    "search-service",
    "payment-service",
    "notification-service",
    "recommendation-engine",
    "analytics-service",
];
const NAMESPACES: [&str; 2] = ["production", "staging"];
/// In the order of [`pick_level`]'s thresholds, lowest first.
const LEVELS: [&str; 4] = ["error", "warn", "debug", "info"];
const PATHS: [&str; 10] = [
    "/api/events",
    "/api/events/{id}",
    "/api/users/{id}",
    "/api/tickets",
    "/api/search",
    "/api/payments",
    "/api/festivals",
    "/api/scan",
    "/health",
    "/metrics",
];
const METHODS: [&str; 6] = ["GET", "GET", "GET", "POST", "PUT", "DELETE"];
/// Messages by level, in the order of [`LEVELS`].
const MSGS: [&[&str]; 4] = [
    &[
        "upstream timeout",
        "database connection lost",
        "payment declined by provider",
        "failed to publish message",
        "null pointer in handler",
    ],
    &[
        "slow query detected",
        "retrying upstream call",
        "cache miss storm",
        "rate limit near",
    ],
    &[
        "entering handler",
        "sql: SELECT * FROM events WHERE id = $1",
        "span finished",
    ],
    &[
        "Request completed",
        "cache hit",
        "user authenticated",
        "event created",
        "ticket reserved",
        "payment authorized",
        "search executed",
        "notification queued",
    ],
];

/// Streams are numbered `(service * 2 + namespace) * 4 + level`.
pub const STREAMS: usize = SERVICES.len() * NAMESPACES.len() * LEVELS.len();

/// The labels of stream `s`, as a JSON object in the order app, namespace, level, job.
pub fn stream_json(s: usize) -> String {
    let (svc, ns, level) = (s / 8, (s / 4) % 2, s % 4);
    format!(
        "{{\"app\":\"{}\",\"namespace\":\"{}\",\"level\":\"{}\",\"job\":\"{JOB}\"}}",
        SERVICES[svc], NAMESPACES[ns], LEVELS[level]
    )
}

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub seed: u64,
    pub lines: usize,
    /// The first line is at `start_ns + step + 777`, the last near `start_ns + span_ns`.
    pub start_ns: i64,
    pub span_ns: i64,
    /// Lines per push body.
    pub batch: usize,
}

/// One generated line.
#[derive(Debug, Clone)]
pub struct Line {
    /// Index into the streams (see [`stream_json`]).
    pub stream: usize,
    pub ts: i64,
    pub text: String,
    /// Sequence number of the request the line belongs to (from 1).
    pub request: u64,
}

/// The lines of a [`Spec`], in time order.
pub struct Generator {
    rng: ChaCha8Rng,
    duration: LogNormal<f64>,
    remaining: usize,
    t: i64,
    step: i64,
    request: u64,
    /// Lines of the current request not handed out yet, last first.
    pending: Vec<Line>,
    request_id: String,
}

impl Generator {
    pub fn new(spec: &Spec) -> Generator {
        Generator {
            rng: ChaCha8Rng::seed_from_u64(spec.seed),
            duration: LogNormal::new(3.0, 1.0).expect("bug: constant parameters are valid"),
            remaining: spec.lines,
            t: spec.start_ns + 777,
            step: (spec.span_ns / spec.lines.max(1) as i64).max(1),
            request: 0,
            pending: Vec::new(),
            request_id: String::new(),
        }
    }

    /// The request ID of the last line handed out.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Generates the next request's lines into `pending` (at most `remaining` of them).
    fn next_request(&mut self) {
        self.request += 1;
        let r = &mut self.rng;
        self.request_id = format!("req-{:08x}-{:04x}", r.gen::<u32>(), self.request & 0xffff);
        let trace_id = format!("{:032x}", r.gen::<u128>());
        let user_id = r.gen_range(1..=50_000u32);
        let method = *METHODS.choose(r).expect("bug: not empty");
        let path = *PATHS.choose(r).expect("bug: not empty");
        let hops = r.gen_range(1..=4);
        let mut services = vec![0usize];
        services.extend(
            rand::seq::index::sample(r, SERVICES.len() - 1, hops)
                .iter()
                .map(|i| i + 1),
        );
        services.truncate(self.remaining);
        for svc in services {
            let level = pick_level(self.rng.gen());
            let status = match level {
                0 if self.rng.gen::<f64>() < 0.7 => 500,
                1 if self.rng.gen::<f64>() < 0.2 => 429,
                _ => 200,
            };
            let msg = *MSGS[level].choose(&mut self.rng).expect("bug: not empty");
            let duration = (self.duration.sample(&mut self.rng) * 10.0).round() / 10.0;
            self.t += self.step;
            let time = chrono::DateTime::from_timestamp_nanos(self.t)
                .format("%Y-%m-%dT%H:%M:%S%.9fZ")
                .to_string();
            let fields: [(&str, Value); 11] = [
                ("time", Value::Str(&time)),
                ("level", Value::Str(LEVELS[level])),
                ("msg", Value::Str(msg)),
                ("method", Value::Str(method)),
                ("path", Value::Str(path)),
                ("status", Value::Int(status)),
                ("duration_ms", Value::Tenths(duration)),
                ("user_id", Value::Quoted(user_id)),
                ("request_id", Value::Str(&self.request_id)),
                ("trace_id", Value::Str(&trace_id)),
                ("service", Value::Str(SERVICES[svc])),
            ];
            let text = if self.rng.gen::<f64>() < 0.5 {
                json_line(&fields)
            } else {
                logfmt_line(&fields)
            };
            let ns = if svc == 0 {
                0
            } else {
                self.rng.gen_range(0..NAMESPACES.len())
            };
            self.pending.push(Line {
                stream: (svc * 2 + ns) * 4 + level,
                ts: self.t,
                text,
                request: self.request,
            });
            self.remaining -= 1;
        }
        self.pending.reverse();
    }
}

impl Iterator for Generator {
    type Item = Line;

    fn next(&mut self) -> Option<Line> {
        if self.pending.is_empty() {
            if self.remaining == 0 {
                return None;
            }
            self.next_request();
        }
        self.pending.pop()
    }
}

/// 2% error, 6% warn, 17% debug, 75% info, as an index into [`LEVELS`].
fn pick_level(x: f64) -> usize {
    match x {
        x if x < 0.02 => 0,
        x if x < 0.08 => 1,
        x if x < 0.25 => 2,
        _ => 3,
    }
}

/// A field value, written the way Python's `json.dumps` writes it.
enum Value<'a> {
    Str(&'a str),
    Int(u32),
    /// A float with one decimal.
    Tenths(f64),
    /// A number written as a JSON string.
    Quoted(u32),
}

fn json_line(fields: &[(&str, Value)]) -> String {
    let mut out = String::with_capacity(320);
    out.push('{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{k}\":");
        match v {
            Value::Str(s) => push_json_string(&mut out, s),
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Tenths(x) => {
                let _ = write!(out, "{x:.1}");
            }
            Value::Quoted(n) => {
                let _ = write!(out, "\"{n}\"");
            }
        }
    }
    out.push('}');
    out
}

/// `key=value` pairs; a string value with a space is quoted as JSON.
fn logfmt_line(fields: &[(&str, Value)]) -> String {
    let mut out = String::with_capacity(300);
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{k}=");
        match v {
            Value::Str(s) if s.contains(' ') => push_json_string(&mut out, s),
            Value::Str(s) => out.push_str(s),
            Value::Int(n) | Value::Quoted(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Tenths(x) => {
                let _ = write!(out, "{x:.1}");
            }
        }
    }
    out
}

fn push_json_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("bug: a string encodes"));
}

/// One Loki JSON push body.
pub struct Body {
    pub json: Vec<u8>,
    pub lines: usize,
    /// Bytes of the lines in it (without the JSON around them).
    pub line_bytes: usize,
}

/// What the generated data holds, for the queries.
#[derive(Debug, Clone, Default)]
pub struct Truth {
    pub lines: usize,
    pub line_bytes: usize,
    pub body_bytes: usize,
    /// Timestamps of the first and last line.
    pub first_ns: i64,
    pub last_ns: i64,
    /// The request ID of the middle line, how many lines carry it, and how many of those are
    /// JSON.
    pub needle: String,
    pub needle_lines: usize,
    pub needle_json_lines: usize,
    /// Lines per level, in the order error, warn, debug, info.
    pub by_level: [usize; 4],
    /// Lines with `msg` "upstream timeout".
    pub upstream_timeouts: usize,
}

/// All the lines of `spec`, as push bodies of `spec.batch` lines (each grouping its lines by
/// stream, streams in the order they first appear).
pub fn bodies(spec: &Spec) -> (Vec<Body>, Truth) {
    let batch = spec.batch.max(1);
    let mut truth = Truth::default();
    let mut out = Vec::with_capacity(spec.lines.div_ceil(batch));
    let mut gen = Generator::new(spec);
    let mut needle_request = 0;
    // Lines and JSON lines so far of the request of the last line (its lines come one after
    // another).
    let (mut request, mut request_lines, mut request_json) = (0, 0, 0);
    let mut by_stream: Vec<Vec<Line>> = vec![Vec::new(); STREAMS];
    let mut order: Vec<usize> = Vec::new();
    let mut in_batch = 0;
    loop {
        let line = gen.next();
        if let Some(line) = &line {
            if truth.lines == 0 {
                truth.first_ns = line.ts;
            }
            if line.request != request {
                (request, request_lines, request_json) = (line.request, 0, 0);
            }
            let json = line.text.starts_with('{') as usize;
            if truth.lines == spec.lines / 2 {
                needle_request = line.request;
                truth.needle = gen.request_id().to_string();
                (truth.needle_lines, truth.needle_json_lines) = (request_lines, request_json);
            }
            request_lines += 1;
            request_json += json;
            if line.request == needle_request {
                truth.needle_lines += 1;
                truth.needle_json_lines += json;
            }
            truth.lines += 1;
            truth.line_bytes += line.text.len();
            truth.last_ns = line.ts;
            truth.by_level[line.stream % 4] += 1;
            if line.text.contains("upstream timeout") {
                truth.upstream_timeouts += 1;
            }
        }
        let done = line.is_none();
        if let Some(line) = line {
            if by_stream[line.stream].is_empty() {
                order.push(line.stream);
            }
            by_stream[line.stream].push(line);
            in_batch += 1;
        }
        if in_batch == batch || (done && in_batch > 0) {
            let body = encode_body(&order, &mut by_stream);
            truth.body_bytes += body.json.len();
            out.push(body);
            order.clear();
            in_batch = 0;
        }
        if done {
            return (out, truth);
        }
    }
}

/// `{"streams":[{"stream":{..},"values":[["ts","line"],..]},..]}` of the streams in `order`,
/// emptying their lists.
fn encode_body(order: &[usize], by_stream: &mut [Vec<Line>]) -> Body {
    let mut json = String::with_capacity(1024 * 400);
    let (mut lines, mut line_bytes) = (0, 0);
    json.push_str("{\"streams\":[");
    for (i, &s) in order.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        let _ = write!(json, "{{\"stream\":{},\"values\":[", stream_json(s));
        for (j, line) in std::mem::take(&mut by_stream[s]).into_iter().enumerate() {
            if j > 0 {
                json.push(',');
            }
            let _ = write!(json, "[\"{}\",", line.ts);
            push_json_string(&mut json, &line.text);
            json.push(']');
            lines += 1;
            line_bytes += line.text.len();
        }
        json.push_str("]}");
    }
    json.push_str("]}");
    Body {
        json: json.into_bytes(),
        lines,
        line_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seed: u64, lines: usize) -> Spec {
        Spec {
            seed,
            lines,
            start_ns: 1_794_873_600_000_000_000,
            span_ns: 3_600_000_000_000,
            batch: 1000,
        }
    }

    #[test]
    fn same_seed_same_lines_other_seed_other_lines() {
        let a: Vec<String> = Generator::new(&spec(3, 2000)).map(|l| l.text).collect();
        let b: Vec<String> = Generator::new(&spec(3, 2000)).map(|l| l.text).collect();
        let c: Vec<String> = Generator::new(&spec(4, 2000)).map(|l| l.text).collect();
        assert_eq!(a.len(), 2000);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let (x, tx) = bodies(&spec(3, 2500));
        let (y, ty) = bodies(&spec(3, 2500));
        assert_eq!(x.len(), 3);
        assert!(x.iter().zip(&y).all(|(x, y)| x.json == y.json));
        assert_eq!(
            (tx.needle.as_str(), tx.needle_lines),
            (ty.needle.as_str(), ty.needle_lines)
        );
    }

    /// The fields of a line, from JSON or logfmt, and which of the two it was.
    fn fields(text: &str) -> (bool, std::collections::HashMap<String, String>) {
        if text.starts_with('{') {
            let v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
            let m = v
                .into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => (k, s),
                    other => (k, other.to_string()),
                })
                .collect();
            return (true, m);
        }
        let mut m = std::collections::HashMap::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (k, after) = rest.split_once('=').unwrap_or_else(|| panic!("{text}"));
            let (v, next) = if let Some(q) = after.strip_prefix('"') {
                let end = q.find('"').unwrap_or_else(|| panic!("{text}"));
                (q[..end].to_string(), q[end + 1..].trim_start())
            } else {
                let end = after.find(' ').unwrap_or(after.len());
                (after[..end].to_string(), after[end..].trim_start())
            };
            m.insert(k.to_string(), v);
            rest = next;
        }
        (false, m)
    }

    #[test]
    fn every_line_has_the_fields_and_three_ids_half_json_half_logfmt() {
        let rid = regex::Regex::new("^req-[0-9a-f]{8}-[0-9a-f]{4}$").unwrap();
        let tid = regex::Regex::new("^[0-9a-f]{32}$").unwrap();
        let lines: Vec<Line> = Generator::new(&spec(1, 20_000)).collect();
        let mut json = 0;
        let mut by_request: std::collections::HashMap<String, (String, String, usize)> =
            Default::default();
        let mut prev_ts = 0;
        for line in &lines {
            let (is_json, f) = fields(&line.text);
            json += is_json as usize;
            assert_eq!(f.len(), 11, "{}", line.text);
            assert!(rid.is_match(&f["request_id"]), "{}", line.text);
            assert!(tid.is_match(&f["trace_id"]), "{}", line.text);
            let user: u32 = f["user_id"].parse().unwrap();
            assert!((1..=50_000).contains(&user), "{}", line.text);
            let ms: f64 = f["duration_ms"].parse().unwrap();
            assert!(ms > 0.0 && f["duration_ms"].contains('.'), "{}", line.text);
            let level = f["level"].as_str();
            assert_eq!(level, LEVELS[line.stream % 4], "{}", line.text);
            assert_eq!(f["service"], SERVICES[line.stream / 8], "{}", line.text);
            assert!(MSGS[line.stream % 4].contains(&f["msg"].as_str()));
            match f["status"].as_str() {
                "500" => assert_eq!(level, "error"),
                "429" => assert_eq!(level, "warn"),
                s => assert_eq!(s, "200"),
            }
            let len = line.text.len();
            assert!((200..400).contains(&len), "{len}: {}", line.text);
            assert!(line.ts > prev_ts);
            prev_ts = line.ts;
            let e = by_request
                .entry(f["request_id"].clone())
                .or_insert_with(|| (f["trace_id"].clone(), f["user_id"].clone(), 0));
            assert_eq!((&e.0, &e.1), (&f["trace_id"], &f["user_id"]));
            if e.2 == 0 {
                assert_eq!(f["service"], "api-gateway");
            }
            e.2 += 1;
        }
        let share = json as f64 / lines.len() as f64;
        assert!((0.47..0.53).contains(&share), "{share} JSON");
        // Two to five lines per request; the last one may be cut short.
        assert!(by_request.values().all(|r| (1..=5).contains(&r.2)));
        assert!(by_request.values().filter(|r| r.2 == 1).count() <= 1);
        let mean = lines.len() as f64 / by_request.len() as f64;
        assert!((3.3..3.7).contains(&mean), "{mean} lines per request");
    }

    #[test]
    fn level_mix_is_two_six_seventeen_seventy_five() {
        let (_, truth) = bodies(&spec(7, 50_000));
        let want = [0.02, 0.06, 0.17, 0.75];
        for (i, w) in want.iter().enumerate() {
            let got = truth.by_level[i] as f64 / truth.lines as f64;
            assert!(
                (got - w).abs() < w * 0.1 + 0.002,
                "{}: {got} against {w}",
                LEVELS[i]
            );
        }
    }

    #[test]
    fn status_follows_the_level_and_durations_are_lognormal() {
        let (mut errors, mut e500, mut warns, mut w429) = (0, 0, 0, 0);
        let mut durations = Vec::new();
        for line in Generator::new(&spec(5, 50_000)) {
            let (_, f) = fields(&line.text);
            match (f["level"].as_str(), f["status"].as_str()) {
                ("error", s) => (errors, e500) = (errors + 1, e500 + (s == "500") as usize),
                ("warn", s) => (warns, w429) = (warns + 1, w429 + (s == "429") as usize),
                _ => {}
            }
            durations.push(f["duration_ms"].parse::<f64>().unwrap());
        }
        let (e, w) = (e500 as f64 / errors as f64, w429 as f64 / warns as f64);
        assert!((0.62..0.78).contains(&e), "{e} of errors are 500");
        assert!((0.16..0.24).contains(&w), "{w} of warnings are 429");
        // lognormal(3, 1): median e^3 = 20.1; a sixth of the values above e^4 = 54.6.
        durations.sort_by(f64::total_cmp);
        let median = durations[durations.len() / 2];
        assert!((18.5..21.7).contains(&median), "median {median}");
        let above = durations.iter().filter(|d| **d > 54.6).count() as f64 / 50_000.0;
        assert!((0.14..0.18).contains(&above), "{above} above e^4");
    }

    #[test]
    fn bodies_hold_every_line_once_and_the_needle_counts() {
        let s = spec(2, 4321);
        let (bodies, truth) = bodies(&s);
        assert_eq!(bodies.len(), 5);
        assert_eq!(truth.lines, 4321);
        let mut seen = 0;
        let (mut needle, mut needle_json) = (0, 0);
        let mut bytes = 0;
        for b in &bodies {
            let v: serde_json::Value = serde_json::from_slice(&b.json).unwrap();
            let mut n = 0;
            for st in v["streams"].as_array().unwrap() {
                assert_eq!(st["stream"]["job"], JOB);
                assert_eq!(st["stream"].as_object().unwrap().len(), 4);
                for e in st["values"].as_array().unwrap() {
                    let ts: i64 = e[0].as_str().unwrap().parse().unwrap();
                    assert!(ts >= truth.first_ns && ts <= truth.last_ns);
                    let text = e[1].as_str().unwrap();
                    if text.contains(&truth.needle) {
                        needle += 1;
                        needle_json += text.starts_with('{') as usize;
                    }
                    bytes += text.len();
                    n += 1;
                }
            }
            assert_eq!(n, b.lines);
            seen += n;
        }
        assert_eq!(seen, 4321);
        assert_eq!(bytes, truth.line_bytes);
        assert_eq!(needle, truth.needle_lines);
        assert_eq!(needle_json, truth.needle_json_lines);
        assert!(truth.needle_lines >= 2);
        assert!(truth.last_ns <= s.start_ns + s.span_ns + 777);
        assert_eq!(truth.first_ns, s.start_ns + 777 + s.span_ns / 4321);
    }
}
