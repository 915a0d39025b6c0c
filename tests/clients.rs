//! Real Loki clients, installed from their registries, push to a Sawmill process, and the lines
//! are read back through `/loki/api/v1/query_range`, labels and lines compared exactly:
//! `python-logging-loki` (pip, JSON), `winston-loki` (npm) in its JSON mode and in its snappy
//! protobuf mode (checked to really be protobuf with `sawmill_push_requests_total{format}`),
//! and `pino-loki` (npm, JSON, with structured metadata). The scripts are in `tests/clients/`.
//!
//! The packages are installed once into `CARGO_TARGET_TMPDIR/clients` and reused by later runs.
//! Without `python3`/`node`/`npm`, or without network to the registries, a test prints why it
//! is skipped and passes, unless `SAWMILL_REQUIRE_CLIENTS=1` is set (as `.ci/run` does): then it
//! fails.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{metric, now_ns, query_entries, Server};

/// npm packages, pinned to a major version so that a new major cannot break CI unnoticed.
const NPM_PACKAGES: [&str; 4] = ["winston@3", "winston-loki@6", "pino@10", "pino-loki@3"];
const PIP_PACKAGES: [&str; 1] = ["python-logging-loki==0.3.1"];
/// Longest a client script or an install may run.
const LIMIT: Duration = Duration::from_secs(300);

fn required() -> bool {
    std::env::var("SAWMILL_REQUIRE_CLIENTS").is_ok_and(|v| v == "1")
}

/// `Ok(dir)` to run, or `None` after printing why the test is skipped; panics instead when
/// clients are required.
fn or_skip(test: &str, r: Result<PathBuf, String>) -> Option<PathBuf> {
    match r {
        Ok(p) => Some(p),
        Err(why) if required() => panic!("{test}: {why} (SAWMILL_REQUIRE_CLIENTS=1)"),
        Err(why) => {
            // Straight to stderr: libtest would capture eprintln! of a passing test.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: {why}; set SAWMILL_REQUIRE_CLIENTS=1 to make this a failure"
            );
            None
        }
    }
}

fn cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("clients")
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command to completion within [`LIMIT`]; `Err` has its output when it fails.
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

/// Installs `packages` into `dir` with `install` unless the marker file says they already are.
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

/// `node_modules` with the npm packages (installed at most once per run, and cached).
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

/// A virtualenv's `python` with the pip packages (installed at most once, and cached).
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
        .join("tests/clients")
        .join(name)
}

/// A run ID no other test run shares, so each test finds only its own lines.
fn run_id(client: &str) -> String {
    format!("{client}-{}-{}", std::process::id(), now_ns())
}

/// Everything stored under `{run="RUN"}` within [from, now]: (labels, line), sorted; every
/// timestamp must lie in that window.
fn stored(addr: &str, run: &str, from: i64) -> Vec<(BTreeMap<String, String>, String)> {
    let to = now_ns();
    let entries = query_entries(addr, &format!("{{run=\"{run}\"}}"), from - 1, to + 1, 100);
    let mut out: Vec<_> = entries
        .into_iter()
        .map(|(labels, ts, line)| {
            assert!(
                (from - 1_000_000_000..=to).contains(&ts),
                "timestamp {ts} outside the run [{from}, {to}]: {line}"
            );
            (serde_json::from_str(&labels).unwrap(), line)
        })
        .collect();
    out.sort();
    out
}

/// The expected (labels, line) pairs, sorted.
fn want(rows: &[(&[(&str, &str)], String)]) -> Vec<(BTreeMap<String, String>, String)> {
    let mut out: Vec<_> = rows
        .iter()
        .map(|(labels, line)| {
            let l = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (l, line.clone())
        })
        .collect();
    out.sort();
    out
}

fn server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), "");
    (dir, s)
}

#[test]
fn python_logging_loki() {
    let Some(py) = or_skip("python_logging_loki", python()) else {
        return;
    };
    let (_dir, s) = server();
    let run_id = run_id("py");
    let from = now_ns();
    run(Command::new(py)
        .arg(script("python_logging_loki.py"))
        .args([&s.addr(), &run_id]))
    .unwrap();
    let base = [
        ("client", "python-logging-loki"),
        ("logger", "sawmill-test"),
        ("run", &run_id),
    ];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        base.iter().copied().chain(extra.iter().copied()).collect()
    };
    let (l1, l2, l3) = (
        with(&[("severity", "info")]),
        with(&[("severity", "warning")]),
        with(&[("severity", "error"), ("extra_tag", "yes")]),
    );
    assert_eq!(
        stored(&s.addr(), &run_id, from),
        want(&[
            (&l1, format!("python line 1 run={run_id}")),
            (&l2, format!("python line 2 run={run_id}")),
            (&l3, format!("python line 3 run={run_id}")),
        ])
    );
    assert_eq!(metric(&s.addr(), "sawmill_push_requests_total"), 3.0);
}

/// winston-loki in `mode` (`json` or `protobuf`): its three lines, and its pushes counted under
/// that format only.
fn winston(mode: &str) {
    let test = format!("winston_loki_{mode}");
    let Some(modules) = or_skip(&test, node_modules()) else {
        return;
    };
    let (_dir, s) = server();
    let run_id = run_id(&test);
    let from = now_ns();
    run(Command::new("node")
        .env("NODE_PATH", &modules)
        .arg(script("winston_loki.js"))
        .args([&s.addr(), &run_id, mode]))
    .unwrap();
    let labels = |level: &'static str| -> Vec<(&str, &str)> {
        let mut l = vec![
            ("client", "winston-loki"),
            ("level", level),
            ("mode", mode),
            ("run", &run_id),
        ];
        // In JSON mode winston-loki sends its metadata (`level`) as structured metadata, which
        // a query returns as `level_extracted` since a stream label has that name.
        if mode == "json" {
            l.push(("level_extracted", level));
        }
        l
    };
    let (info, warn, error) = (labels("info"), labels("warn"), labels("error"));
    assert_eq!(
        stored(&s.addr(), &run_id, from),
        want(&[
            (&info, format!("winston {mode} line 1 run={run_id}")),
            (&warn, format!("winston {mode} line 2 run={run_id}")),
            (&error, format!("winston {mode} line 3 run={run_id}")),
        ])
    );
    let other = if mode == "json" { "protobuf" } else { "json" };
    let counted = |format: &str| {
        let text = ureq::get(&format!("{}/metrics", s.addr()))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "sawmill_push_requests_total{{format=\"{format}\"}} "
                ))
            })
            .map_or(0.0, |v| v.parse::<f64>().unwrap())
    };
    assert!(counted(mode) >= 1.0, "no {mode} push counted");
    assert_eq!(counted(other), 0.0, "{other} pushes counted in {mode} mode");
}

#[test]
fn winston_loki_json() {
    winston("json");
}

#[test]
fn winston_loki_protobuf() {
    winston("protobuf");
}

#[test]
fn pino_loki() {
    let Some(modules) = or_skip("pino_loki", node_modules()) else {
        return;
    };
    let (_dir, s) = server();
    let run_id = run_id("pino");
    let from = now_ns();
    run(Command::new("node")
        .env("NODE_PATH", &modules)
        .arg(script("pino_loki.js"))
        .args([&s.addr(), &run_id]))
    .unwrap();
    // pino-loki adds the host name as a label (Node's os.hostname(), the kernel's node name).
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let labels = |level: &'static str| -> Vec<(&str, &str)> {
        vec![
            ("client", "pino-loki"),
            ("hostname", &host),
            ("level", level),
            ("run", &run_id),
        ]
    };
    let (info, warn) = (labels("info"), labels("warning"));
    // The third line's `meta` is structured metadata, returned among the labels.
    let mut error = labels("error");
    error.push(("trace_id", "abc"));
    assert_eq!(
        stored(&s.addr(), &run_id, from),
        want(&[
            (&info, format!("pino line 1 run={run_id}")),
            (&warn, format!("pino line 2 run={run_id}")),
            (&error, format!("pino line 3 run={run_id}")),
        ])
    );
    // Structured metadata, not a stream label: a label-name query does not list it.
    let (status, body) = common::get(&s.addr(), "/loki/api/v1/labels", &[]);
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("trace_id"), "{body}");
}
