//! Self-monitoring and configuration, against the server process: `/metrics` after a push is
//! valid Prometheus text (checked by a parser here, and by `promtool check metrics` when it is
//! installed) with Sawmill's names and Loki's aliases; request IDs are accepted or generated
//! and returned; log lines are JSON and carry the request ID; `${VAR}` expansion and
//! `SAWMILL_*` overrides work at start, in `--check-config` and on reload.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, get, now_ns, push_json, try_request, Server, BIN};

/// One sample of the exposition: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the Prometheus text format strictly: valid names, quoted and escaped label values,
/// numeric values, one `# TYPE` per family before its samples, each family's lines together,
/// histograms with cumulative buckets ending in `+Inf` equal to `_count`. Returns the samples
/// and the type of each family.
fn parse_exposition(text: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
    let name_ok = |n: &str| {
        n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current = String::new();
    let family_of = |name: &str, types: &BTreeMap<String, String>| -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if types.get(base).is_some_and(|t| t == "histogram") {
                    return base.to_string();
                }
            }
        }
        name.to_string()
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name, arg) = (
                parts.next().unwrap(),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            assert!(name_ok(name), "bad metric name in {line:?}");
            match kw {
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg),
                        "bad type in {line:?}"
                    );
                    assert!(
                        types.insert(name.to_string(), arg.to_string()).is_none(),
                        "second TYPE for {name}"
                    );
                }
                "HELP" => assert!(!arg.is_empty(), "empty HELP in {line:?}"),
                _ => panic!("unknown comment {line:?}"),
            }
            continue;
        }
        assert!(!line.trim().is_empty(), "empty line in the exposition");
        let (series, value) = line.rsplit_once(' ').expect("sample without value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("unclosed {");
                (name, parse_labels(body, line))
            }
        };
        assert!(name_ok(name), "bad metric name in {line:?}");
        let family = family_of(name, &types);
        assert!(
            types.contains_key(&family),
            "{name}: sample before its TYPE"
        );
        if family != current {
            assert!(
                finished.insert(current.clone()) || current.is_empty(),
                "family {current} split"
            );
            assert!(
                !finished.contains(&family),
                "family {family} split: {line:?}"
            );
            current = family;
        }
        samples.push((name.to_string(), labels, value));
    }
    for (family, t) in &types {
        if t != "histogram" {
            continue;
        }
        let mut by_series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        let mut counts: BTreeMap<BTreeMap<String, String>, f64> = BTreeMap::new();
        for (name, labels, v) in &samples {
            if *name == format!("{family}_bucket") {
                let mut l = labels.clone();
                let le = l.remove("le").expect("bucket without le");
                let le: f64 = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                by_series.entry(l).or_default().push((le, *v));
            } else if *name == format!("{family}_count") {
                counts.insert(labels.clone(), *v);
            }
        }
        for (labels, buckets) in by_series {
            assert!(
                buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{family}{labels:?}: buckets not cumulative"
            );
            let last = buckets.last().unwrap();
            assert_eq!(last.0, f64::INFINITY, "{family}{labels:?}: no +Inf bucket");
            assert_eq!(
                Some(&last.1),
                counts.get(&labels),
                "{family}{labels:?}: +Inf != _count"
            );
        }
    }
    (samples, types)
}

fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad label name {name:?} in {line:?}"
        );
        assert_eq!(chars.next(), Some('"'), "unquoted label value in {line:?}");
        let mut value = String::new();
        loop {
            match chars.next().expect("unterminated label value") {
                '\\' => match chars.next() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    c => panic!("bad escape {c:?} in {line:?}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        assert!(out.insert(name, value).is_none(), "label twice in {line:?}");
        match chars.next() {
            None => break,
            Some(',') => {}
            c => panic!("unexpected {c:?} after a label in {line:?}"),
        }
    }
    out
}

fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.2)
}

#[test]
fn metrics_after_a_push_are_valid_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        &dir.path().join("data"),
        "limits_config:\n  max_line_size: 100\n",
    );
    let ts = now_ns().to_string();
    let long = "x".repeat(200);
    let body = serde_json::json!({"streams": [
        {"stream": {"app": "a"}, "values": [[ts, "short line"], [ts, "another"]]},
        {"stream": {"app": "b"}, "values": [[ts, long]]},
    ]});
    let (status, text) = push_json(&s.addr(), &body.to_string());
    assert_eq!(status, 400, "{text}");
    let (status, _) = get(
        &s.addr(),
        "/loki/api/v1/query_range",
        &[("query", "{app=\"a\"}")],
    );
    assert_eq!(status, 200);
    let (status, text) = get(&s.addr(), "/metrics", &[]);
    assert_eq!(status, 200);
    let (samples, types) = parse_exposition(&text);

    let tenant = [("tenant", "fake")];
    for prefix in ["sawmill", "loki"] {
        let lines = format!("{prefix}_distributor_lines_received_total");
        let bytes = format!("{prefix}_distributor_bytes_received_total");
        let discarded = format!("{prefix}_discarded_samples_total");
        let streams = format!("{prefix}_ingester_memory_streams");
        assert_eq!(sample(&samples, &lines, &tenant), Some(2.0), "{lines}");
        assert_eq!(sample(&samples, &bytes, &tenant), Some(17.0), "{bytes}");
        assert_eq!(
            sample(
                &samples,
                &discarded,
                &[("tenant", "fake"), ("reason", "line_too_long")]
            ),
            Some(1.0),
            "{discarded}"
        );
        assert_eq!(sample(&samples, &streams, &tenant), Some(1.0), "{streams}");
        assert_eq!(types[&lines], "counter");
        assert_eq!(types[&streams], "gauge");
        assert_eq!(
            types[&format!("{prefix}_request_duration_seconds")],
            "histogram"
        );
    }
    let push = [
        ("method", "POST"),
        ("route", "/loki/api/v1/push"),
        ("status_code", "400"),
    ];
    assert_eq!(
        sample(&samples, "sawmill_request_duration_seconds_count", &push),
        Some(1.0)
    );
    assert!(sample(&samples, "sawmill_request_duration_seconds_sum", &push).is_some());
    let mut inf = push.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(
        sample(&samples, "sawmill_request_duration_seconds_bucket", &inf),
        Some(1.0)
    );
    let loki_push = [
        ("method", "POST"),
        ("route", "loki_api_v1_push"),
        ("status_code", "400"),
    ];
    assert_eq!(
        sample(&samples, "loki_request_duration_seconds_count", &loki_push),
        Some(1.0)
    );
    let query = [
        ("route", "/loki/api/v1/query_range"),
        ("status_code", "200"),
    ];
    assert_eq!(
        sample(&samples, "sawmill_request_duration_seconds_count", &query),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &samples,
            "sawmill_push_requests_total",
            &[("format", "json")]
        ),
        Some(1.0)
    );
    assert!(sample(&samples, "sawmill_wal_bytes", &[]).is_some_and(|b| b > 0.0));
    for (name, _, _) in &samples {
        assert!(
            name.starts_with("sawmill_") || name.starts_with("loki_"),
            "{name}"
        );
    }

    match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Err(_) => {
            let _ = writeln!(std::io::stderr(), "promtool not installed: lint skipped");
        }
        Ok(mut child) => {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}\n{text}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The request ID the server answers with when sent `sent` (None: no header).
fn answered_id(addr: &str, sent: Option<&str>) -> String {
    let mut req = ureq::get(&format!("{addr}/loki/api/v1/labels"));
    if let Some(id) = sent {
        req = req.set("X-Request-ID", id);
    }
    let resp = req.call().unwrap();
    resp.header("x-request-id")
        .expect("no X-Request-ID")
        .to_string()
}

#[track_caller]
fn request_id(addr: &str, sent: Option<&str>, kept: bool) {
    let got = answered_id(addr, sent);
    if kept {
        assert_eq!(Some(got.as_str()), sent);
    } else {
        assert_eq!(got.len(), 32, "{got}");
        assert!(got.bytes().all(|b| b.is_ascii_hexdigit()), "{got}");
        assert_ne!(Some(got.as_str()), sent);
    }
}

#[test]
fn request_ids_are_accepted_or_generated() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), "");
    let a = s.addr();
    request_id(&a, Some("abc-123"), true);
    request_id(&a, Some("0af7651916cd43dd8448eb211c80319c"), true);
    request_id(&a, Some(&"r".repeat(128)), true);
    request_id(&a, None, false);
    request_id(&a, Some(""), false);
    request_id(&a, Some(&"r".repeat(129)), false);
    request_id(&a, Some("two words"), false);
    request_id(&a, Some("tab\there"), false);
    assert_ne!(
        answered_id(&a, None),
        answered_id(&a, None),
        "generated IDs repeat"
    );
    // Errors carry it too.
    let (status, _) = try_request(
        "GET",
        &format!("{a}/loki/api/v1/query_range?query=nope"),
        &[("X-Request-ID", "bad-query-1")],
        None,
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(status, 400);
    let resp = ureq::get(&format!("{a}/loki/api/v1/query_range?query=nope"))
        .set("X-Request-ID", "bad-query-1")
        .call();
    match resp {
        Err(ureq::Error::Status(400, r)) => {
            assert_eq!(r.header("x-request-id"), Some("bad-query-1"))
        }
        other => panic!("expected 400, got {other:?}"),
    }
}

#[test]
fn log_lines_are_json_with_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let port = free_port();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env("SAWMILL_SERVER__LOG_LEVEL", "info")
        .env_remove("SAWMILL_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let addr = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while try_request(
        "GET",
        &format!("{addr}/ready"),
        &[],
        None,
        Duration::from_secs(2),
    )
    .map_or(true, |(s, _)| s != 200)
    {
        assert!(started.elapsed() < Duration::from_secs(60), "not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ts = now_ns().to_string();
    let body = serde_json::json!({"streams": [{"stream": {"app": "a"}, "values": [[ts, "x"]]}]});
    let (status, _) = try_request(
        "POST",
        &format!("{addr}/loki/api/v1/push"),
        &[
            ("Content-Type", "application/json"),
            ("X-Request-ID", "push-trace-7"),
        ],
        Some(body.to_string().as_bytes()),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(status, 204);
    let (status, _) = try_request(
        "GET",
        &format!("{addr}/loki/api/v1/label/app/values"),
        &[("X-Request-ID", "values-trace-8")],
        None,
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(status, 200);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let request = |id: &str| {
        lines
            .iter()
            .find(|l| l["message"] == "request" && l["request_id"] == id)
            .unwrap_or_else(|| panic!("no request line for {id} in\n{text}"))
    };
    let push = request("push-trace-7");
    assert_eq!(push["method"], "POST");
    assert_eq!(push["route"], "/loki/api/v1/push");
    assert_eq!(push["status"], 204);
    assert_eq!(push["tenant"], "fake");
    assert_eq!(push["level"], "INFO");
    assert_eq!(push["span"]["request_id"], "push-trace-7");
    assert!(
        push["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
        "{push}"
    );
    assert!(push["timestamp"].as_str().is_some(), "{push}");
    let values = request("values-trace-8");
    assert_eq!(values["route"], "/loki/api/v1/label/{name}/values");
    assert_eq!(values["path"], "/loki/api/v1/label/app/values");
    assert!(lines.iter().any(|l| l["message"] == "ready"), "{text}");
}

#[track_caller]
fn check_config(yaml: &str, env: &[(&str, &str)], want_ok: bool, want_text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sawmill.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--check-config", "-c"])
        .arg(&file)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.success(), want_ok, "{yaml} {env:?}: {text}");
    assert!(text.contains(want_text), "{yaml} {env:?}: {text}");
}

#[test]
fn check_config_expands_and_overrides() {
    let port = "server:\n  http_listen_port: ${SAWMILL_TEST_PORT}\n";
    check_config(port, &[("SAWMILL_TEST_PORT", "3300")], true, "config ok");
    check_config(
        port,
        &[],
        false,
        "line 2: environment variable SAWMILL_TEST_PORT is not set",
    );
    check_config(
        port,
        &[("SAWMILL_TEST_PORT", "high")],
        false,
        "server.http_listen_port",
    );
    check_config(
        "",
        &[("SAWMILL_SERVER__HTTP_LISTEN_PORT", "3300")],
        true,
        "config ok",
    );
    check_config(
        "",
        &[("SAWMILL_LIMITS_CONFIG__MAX_LINE_SISE", "1KB")],
        false,
        "environment variable SAWMILL_LIMITS_CONFIG__MAX_LINE_SISE (limits_config.max_line_sise): unknown field `max_line_sise`",
    );
    check_config(
        "limits_config:\n  max_line_size: 1KB\n",
        &[("SAWMILL_LIMITS_CONFIG__MAX_LINE_SIZE", "lots")],
        false,
        "environment variable SAWMILL_LIMITS_CONFIG__MAX_LINE_SIZE (limits_config.max_line_size): invalid byte size",
    );
}

/// A push of one `len`-byte line: its status.
fn push_line(addr: &str, len: usize) -> u16 {
    let body = serde_json::json!({"streams": [{"stream": {"app": "a"}, "values": [[now_ns().to_string(), "y".repeat(len)]]}]});
    push_json(addr, &body.to_string()).0
}

#[test]
fn overrides_apply_at_start_and_reload_expands() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(&dir.path().join("data"), "");
    assert_eq!(push_line(&s.addr(), 200), 204);
    // An environment override at start.
    s.env
        .push(("SAWMILL_LIMITS_CONFIG__MAX_LINE_SIZE".into(), "100".into()));
    s.restart();
    assert_eq!(push_line(&s.addr(), 200), 400);
    // The file wins where the environment does not speak; reload reads it through the same
    // loader: `${VAR}` expanded from the server's environment, overrides applied again.
    s.env = vec![("SAWMILL_TEST_LIMIT".into(), "150".into())];
    s.write_config("limits_config:\n  max_line_size: ${SAWMILL_TEST_LIMIT}\n");
    s.restart();
    assert_eq!(push_line(&s.addr(), 140), 204);
    assert_eq!(push_line(&s.addr(), 160), 400);
    s.write_config("limits_config:\n  max_line_size: ${SAWMILL_TEST_LIMIT}KB\n");
    let (status, body) = common::post(&format!("{}/-/reload", s.addr()), "text/plain", None, b"");
    assert_eq!(status, 200, "{body}");
    assert_eq!(push_line(&s.addr(), 1000), 204);
    s.write_config("limits_config:\n  max_line_size: ${SAWMILL_TEST_UNSET}\n");
    let (status, body) = common::post(&format!("{}/-/reload", s.addr()), "text/plain", None, b"");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("SAWMILL_TEST_UNSET is not set"), "{body}");
    assert_eq!(
        push_line(&s.addr(), 1000),
        204,
        "a failed reload keeps the limits"
    );
}
