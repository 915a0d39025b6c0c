//! OTLP logs ingestion at `/otlp/v1/logs`, end to end against a Sawmill process.
//!
//! - The real OpenTelemetry SDKs, installed from their registries, ship logs and the lines,
//!   stream labels and structured metadata are read back exactly through `query_range`:
//!   Python's `opentelemetry-sdk` with `opentelemetry-exporter-otlp-proto-http` (protobuf, its
//!   logging handler, one record inside a span) and JavaScript's `@opentelemetry/sdk-logs` with
//!   `@opentelemetry/exporter-logs-otlp-http` (JSON, gzip, a map body). The scripts are in
//!   `tests/otlp/`; packages are installed once into `CARGO_TARGET_TMPDIR/otlp`. Without
//!   `python3`/`node`/`npm` or network a test prints why it is skipped, unless
//!   `SAWMILL_REQUIRE_CLIENTS=1` (set by `.ci/run`): then it fails.
//! - OTLP's status codes: 200 with an `ExportLogsServiceResponse` in the request's encoding,
//!   `partial_success` when validation refused some records, 400 (with a `google.rpc.Status`)
//!   for an undecodable body or when every record was refused, 415 for another content type,
//!   429 with `Retry-After` over the rate limit.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{now_ns, query_entries, Server};
use prost::Message;
use sawmill::ingest::otlp::proto::{
    AnyValue, ExportLogsServiceRequest, ExportLogsServiceResponse, InstrumentationScope, KeyValue,
    LogRecord, Resource, ResourceLogs, ScopeLogs, Status, Value,
};

/// Exact versions: the SDKs' attribute names and defaults change between releases.
const PIP_PACKAGES: [&str; 2] = [
    "opentelemetry-sdk==1.45.2",
    "opentelemetry-exporter-otlp-proto-http==1.45.2",
];
const NPM_PACKAGES: [&str; 4] = [
    "@opentelemetry/sdk-logs@0.223.1",
    "@opentelemetry/exporter-logs-otlp-http@0.223.1",
    "@opentelemetry/api-logs@0.223.1",
    "@opentelemetry/resources@2.12.1",
];
const LIMIT: Duration = Duration::from_secs(300);
/// Loki's default service-name discovery (the test harness turns it off for older tests).
const DISCOVERY: [(&str, &str); 2] = [
    (
        "SAWMILL_LIMITS_CONFIG__DISCOVER_SERVICE_NAME",
        "[service, app, application, app_name, name, app_kubernetes_io_name, container, container_name, k8s_container_name, component, workload, job, k8s_job_name]",
    ),
    ("SAWMILL_LIMITS_CONFIG__DISCOVER_LOG_LEVELS", "true"),
];

fn required() -> bool {
    std::env::var("SAWMILL_REQUIRE_CLIENTS").is_ok_and(|v| v == "1")
}

fn or_skip(test: &str, r: Result<PathBuf, String>) -> Option<PathBuf> {
    match r {
        Ok(p) => Some(p),
        Err(why) if required() => panic!("{test}: {why} (SAWMILL_REQUIRE_CLIENTS=1)"),
        Err(why) => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: {why}; set SAWMILL_REQUIRE_CLIENTS=1 to make this a failure"
            );
            None
        }
    }
}

fn cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("otlp")
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command to completion within [`LIMIT`]; `Ok(stdout)`, or `Err` with its output.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(err.reopen().unwrap())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what} still running after {LIMIT:?}: killed"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(out.path()).unwrap_or_default();
    let stderr = std::fs::read_to_string(err.path()).unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!("{what} failed ({status}):\n{stdout}\n{stderr}"))
    }
}

fn install_once(
    dir: &Path,
    packages: &[&str],
    install: impl FnOnce() -> Result<String, String>,
) -> Result<(), String> {
    let marker = dir.join(".sawmill-installed");
    let want = packages.join("\n");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == want) {
        return Ok(());
    }
    install()?;
    std::fs::write(&marker, want).map_err(|e| e.to_string())
}

fn node_modules() -> Result<PathBuf, String> {
    static DIR: OnceLock<Mutex<Option<Result<PathBuf, String>>>> = OnceLock::new();
    let mut slot = DIR.get_or_init(|| Mutex::new(None)).lock().unwrap();
    slot.get_or_insert_with(|| {
        for tool in ["node", "npm"] {
            if !have(tool) {
                return Err(format!("{tool} not found"));
            }
        }
        let dir = cache().join("npm");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("package.json"), "{\"private\": true}\n")
            .map_err(|e| e.to_string())?;
        install_once(&dir, &NPM_PACKAGES, || {
            run(Command::new("npm")
                .current_dir(&dir)
                .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
                .args(NPM_PACKAGES))
        })?;
        Ok(dir.join("node_modules"))
    })
    .clone()
}

fn python() -> Result<PathBuf, String> {
    static PY: OnceLock<Mutex<Option<Result<PathBuf, String>>>> = OnceLock::new();
    let mut slot = PY.get_or_init(|| Mutex::new(None)).lock().unwrap();
    slot.get_or_insert_with(|| {
        if !have("python3") {
            return Err("python3 not found".into());
        }
        let venv = cache().join("venv");
        let py = venv.join("bin/python");
        if !py.exists() {
            run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
                .map_err(|e| format!("cannot create a virtualenv (install python3-venv): {e}"))?;
        }
        install_once(&venv, &PIP_PACKAGES, || {
            run(Command::new(&py)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(PIP_PACKAGES))
        })?;
        Ok(py)
    })
    .clone()
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/otlp")
        .join(name)
}

fn run_id(client: &str) -> String {
    format!("{client}-{}-{}", std::process::id(), now_ns())
}

type Labels = BTreeMap<String, String>;

/// Every (labels with metadata, line) `query` returns since `from`, sorted by line;
/// timestamps must lie in the run.
fn stored(addr: &str, query: &str, from: i64) -> Vec<(Labels, String)> {
    let to = now_ns();
    let mut out: Vec<(Labels, String)> =
        query_entries(addr, query, from - 1_000_000_000, to + 1, 100)
            .into_iter()
            .map(|(labels, ts, line)| {
                assert!(
                    (from - 1_000_000_000..=to).contains(&ts),
                    "timestamp {ts} outside the run [{from}, {to}]: {line}"
                );
                (serde_json::from_str(&labels).unwrap(), line)
            })
            .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Removes `observed_timestamp` after checking it is a time within the run.
fn take_observed(l: &mut Labels, from: i64) {
    let t: i64 = l
        .remove("observed_timestamp")
        .expect("observed_timestamp")
        .parse()
        .unwrap();
    assert!(t >= from - 1_000_000_000 && t <= now_ns(), "observed {t}");
}

fn server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(&dir.path().join("data"), "", &DISCOVERY);
    (dir, s)
}

#[test]
fn python_sdk_protobuf() {
    let Some(py) = or_skip("python_sdk_protobuf", python()) else {
        return;
    };
    let (_dir, s) = server();
    let run_id = run_id("py");
    let from = now_ns();
    let out = run(Command::new(py)
        .arg(script("python_sdk.py"))
        .args([&s.addr(), &run_id]))
    .unwrap();
    let ids: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let mut got = stored(
        &s.addr(),
        &format!("{{service_name=\"py-otel\"}} | run=\"{run_id}\""),
        from,
    );
    assert_eq!(got.len(), 3, "{got:?}");
    // The SDK adds a random service.instance.id, a default index label.
    let instance = got[0].0["service_instance_id"].clone();
    assert_eq!(instance.len(), 36, "a UUID: {instance}");
    let path = script("python_sdk.py").display().to_string();
    let base = |line_no: &str, level: &str, number: &str, text: &str| {
        labels(&[
            ("code_file_path", &path),
            ("code_function_name", "<module>"),
            ("code_line_number", line_no),
            ("deployment_environment", "ci"),
            ("detected_level", level),
            ("host_name", "runner-1"),
            ("run", &run_id),
            ("scope_name", "sawmill.otlp"),
            ("service_instance_id", &instance),
            ("service_name", "py-otel"),
            ("severity_number", number),
            ("severity_text", text),
            ("telemetry_sdk_language", "python"),
            ("telemetry_sdk_name", "opentelemetry"),
            ("telemetry_sdk_version", "1.45.2"),
        ])
    };
    let mut second = base("33", "warn", "13", "WARN");
    for (k, v) in [
        ("customer", "ada"),
        ("order_id", "42"),
        ("trace_id", ids["trace_id"].as_str().unwrap()),
        ("span_id", ids["span_id"].as_str().unwrap()),
        ("flags", "3"),
    ] {
        second.insert(k.into(), v.into());
    }
    for (l, _) in got.iter_mut() {
        take_observed(l, from);
    }
    assert_eq!(
        got,
        vec![
            (
                base("30", "info", "9", "INFO"),
                format!("python otlp line 1 run={run_id}")
            ),
            (second, "python otlp line 2".to_string()),
            (
                base("34", "error", "17", "ERROR"),
                "python otlp line 3".to_string()
            ),
        ]
    );
    // Stream labels are the resource attributes on Loki's list; the rest is metadata.
    let (status, body) = common::get(&s.addr(), "/loki/api/v1/labels", &[]);
    assert_eq!(status, 200, "{body}");
    let names: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        names["data"],
        serde_json::json!([
            "deployment_environment",
            "service_instance_id",
            "service_name"
        ])
    );
}

#[test]
fn node_sdk_json_gzip() {
    let Some(modules) = or_skip("node_sdk_json_gzip", node_modules()) else {
        return;
    };
    let (_dir, s) = server();
    let run_id = run_id("node");
    let from = now_ns();
    run(Command::new("node")
        .env("NODE_PATH", &modules)
        .arg(script("node_sdk.js"))
        .args([&s.addr(), &run_id]))
    .unwrap();
    let mut got = stored(
        &s.addr(),
        &format!("{{service_name=\"node-otel\"}} | run=\"{run_id}\""),
        from,
    );
    for (l, _) in got.iter_mut() {
        take_observed(l, from);
    }
    let base = |extra: &[(&str, &str)]| {
        let mut l = labels(&[
            ("k8s_namespace_name", "shop"),
            ("process_pid", "4242"),
            ("run", &run_id),
            ("scope_name", "sawmill.node"),
            ("scope_version", "1.2.3"),
            ("service_name", "node-otel"),
        ]);
        l.extend(labels(extra));
        l
    };
    assert_eq!(
        got,
        vec![
            (
                base(&[
                    ("detected_level", "info"),
                    ("http_method", "GET"),
                    ("http_status_code", "200"),
                    ("severity_number", "9"),
                    ("severity_text", "INFO"),
                ]),
                format!("node otlp line 1 run={run_id}")
            ),
            (
                base(&[("detected_level", "unknown")]),
                "node otlp line 3 without severity".to_string()
            ),
            (
                base(&[
                    ("detected_level", "error"),
                    ("retry", "true"),
                    ("severity_number", "18"),
                ]),
                r#"{"amount":12.5,"msg":"payment failed","tags":["a","b"]}"#.to_string()
            ),
        ]
    );
}

/// POSTs to `/otlp/v1/logs`: status, content type, Retry-After and the body's bytes.
fn export(
    addr: &str,
    content_type: &str,
    gzip: bool,
    body: &[u8],
) -> (u16, String, Option<String>, Vec<u8>) {
    let mut req = ureq::post(&format!("{addr}/otlp/v1/logs"))
        .timeout(Duration::from_secs(30))
        .set("Content-Type", content_type);
    let body = if gzip {
        req = req.set("Content-Encoding", "gzip");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(body).unwrap();
        e.finish().unwrap()
    } else {
        body.to_vec()
    };
    let resp = match req.send_bytes(&body) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("export failed: {e}"),
    };
    let status = resp.status();
    let ct = resp.header("content-type").unwrap_or("").to_string();
    let retry = resp.header("retry-after").map(str::to_string);
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut bytes).unwrap();
    (status, ct, retry, bytes)
}

fn record(ts: i64, line: &str) -> LogRecord {
    LogRecord {
        time_unix_nano: ts as u64,
        body: Some(AnyValue {
            value: Some(Value::String(line.into())),
        }),
        ..Default::default()
    }
}

fn request(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(Value::String(service.into())),
                    }),
                }],
                dropped_attributes_count: 0,
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope::default()),
                log_records: records,
            }],
        }],
    }
}

#[test]
fn status_codes_follow_otlp() {
    let (_dir, s) = server();
    let addr = s.addr();
    let now = now_ns();

    // Protobuf, all stored: 200 with an empty response, in protobuf.
    let ok = request("svc", vec![record(now, "first"), record(now + 1, "second")]);
    let (status, ct, _, body) = export(&addr, "application/x-protobuf", false, &ok.encode_to_vec());
    assert_eq!((status, ct.as_str()), (200, "application/x-protobuf"));
    assert_eq!(
        ExportLogsServiceResponse::decode(&body[..])
            .unwrap()
            .partial_success,
        None
    );

    // JSON (gzip), one record too old for reject_old_samples: 200 with partial success.
    let json = serde_json::json!({"resourceLogs": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
    "scopeLogs": [{"logRecords": [
        {"timeUnixNano": (now + 2).to_string(), "body": {"stringValue": "third"}},
        {"timeUnixNano": "1000", "body": {"stringValue": "ancient"}}
    ]}]}]});
    let (status, ct, _, body) =
        export(&addr, "application/json", true, json.to_string().as_bytes());
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedLogRecords"], "1", "{v}");
    assert!(
        v["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("timestamp too old"),
        "{v}"
    );

    // Every record refused: 400 with a google.rpc.Status.
    let old = request("svc", vec![record(1000, "too old")]);
    let (status, _, _, body) = export(&addr, "application/x-protobuf", false, &old.encode_to_vec());
    assert_eq!(status, 400);
    assert!(Status::decode(&body[..])
        .unwrap()
        .message
        .contains("too old"));

    // Undecodable bodies: 400, in the request's encoding.
    let (status, _, _, body) = export(&addr, "application/x-protobuf", false, b"\x0a\xff\xff\xff");
    assert_eq!(status, 400);
    assert!(!Status::decode(&body[..]).unwrap().message.is_empty());
    let (status, ct, _, body) = export(&addr, "application/json", false, b"{\"resourceLogs\": [");
    assert_eq!((status, ct.as_str()), (400, "application/json"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], 3, "{v}");

    // Another content type: 415.
    let (status, _, _, _) = export(&addr, "text/plain", false, b"hello");
    assert_eq!(status, 415);

    // What was accepted is there, exactly once; nothing of the refused records.
    let got: Vec<String> = stored(&addr, "{service_name=\"svc\"}", now)
        .into_iter()
        .map(|(_, line)| line)
        .collect();
    assert_eq!(got, vec!["first", "second", "third"]);
}

#[test]
fn over_the_rate_limit_is_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        &dir.path().join("data"),
        "limits_config:\n  ingestion_rate_mb: 0.0001\n  ingestion_burst_size_mb: 0.0001\n",
    );
    let big = "x".repeat(2000);
    let req = request("svc", vec![record(now_ns(), &big)]);
    let (status, _, retry, body) = export(
        &s.addr(),
        "application/x-protobuf",
        false,
        &req.encode_to_vec(),
    );
    assert_eq!(status, 429);
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(Status::decode(&body[..]).unwrap().message.contains("rate"));
}
