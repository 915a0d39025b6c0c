//! Loki's own configuration files start Sawmill: the stock local and docker files, the
//! production docker example, the S3 cluster example and what the Helm chart renders for a
//! single binary (files under `testdata/loki-configs/`, same keys and structure as Loki's).
//! Each passes `--check-config` and starts a server that answers `/ready`; the keys that mean
//! nothing in one process are named in one warning line, a typo is still refused naming the
//! key. Also: the per-stream rate limit (429 with Loki's message for one stream while another
//! is stored), `ruler.enable_api`, the rule directory from `ruler.storage.local.directory`,
//! and the operator endpoints `/config`, `/services`, `/log_level` and buildinfo.

mod common;

use std::path::Path;
use std::process::Command;

use common::{get, push_with, Server};

const FIXTURES: [&str; 5] = [
    "local.yaml",
    "docker.yaml",
    "production-docker.yaml",
    "s3-cluster.yaml",
    "helm-single-binary.yaml",
];

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata/loki-configs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixture with Loki's data paths moved under `dir`, so a test writes nowhere else.
fn relocated(name: &str, dir: &Path) -> String {
    let d = dir.display().to_string();
    fixture(name)
        .replace("/tmp/loki", &d)
        .replace("/var/loki", &d)
        .replace(" /loki", &format!(" {d}"))
}

/// `sawmill serve --check-config -c FILE`: (success, stdout + stderr).
fn check_config(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("loki.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(common::BIN)
        .args(["serve", "--check-config", "-c"])
        .arg(&file)
        .env_remove("SAWMILL_LOG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A server started with exactly `yaml` as its config file (the harness adds nothing).
fn start_with(dir: &Path, yaml: &str) -> Server {
    let config = dir.join("loki.yaml");
    std::fs::write(&config, yaml).unwrap();
    let mut s = Server {
        child: None,
        port: 0,
        data: dir.join("data"),
        config,
        env: Vec::new(),
    };
    s.restart();
    s
}

#[test]
fn loki_example_configs_pass_check_config() {
    for name in FIXTURES {
        let (ok, out) = check_config(&fixture(name));
        assert!(ok, "{name}: refused: {out}");
        let warnings: Vec<&str> = out.lines().filter(|l| l.starts_with("warning:")).collect();
        assert_eq!(warnings.len(), 1, "{name}: one warning line: {out}");
        assert!(
            warnings[0].contains("schema_config"),
            "{name}: {}",
            warnings[0]
        );
    }
    // The keys Sawmill honours are not in the warning; the ones it cannot use are.
    let (_, out) = check_config(&fixture("production-docker.yaml"));
    for ignored in [
        "server.grpc_listen_port",
        "memberlist",
        "ingester.lifecycler",
        "ingester.wal.enabled",
        "ruler.rule_path",
        "ruler.remote_write.clients.local.queue_config",
        "storage_config",
        "query_range",
        "limits_config.split_queries_by_interval",
        "compactor.working_directory",
    ] {
        assert!(out.contains(ignored), "{ignored} not listed: {out}");
    }
    for honoured in [
        "ruler.storage",
        "ruler.enable_api",
        "limits_config.ingestion_rate_mb",
        "server.log_level",
        "common.path_prefix",
    ] {
        assert!(
            !out.contains(honoured),
            "{honoured} listed as ignored: {out}"
        );
    }
}

#[test]
fn a_typo_in_a_loki_config_is_named() {
    let prod = fixture("production-docker.yaml");
    for (from, to, key) in [
        (
            "  split_queries_by_interval: 15m",
            "  split_queries_by_intervall: 15m",
            "limits_config.split_queries_by_intervall",
        ),
        (
            "  grpc_listen_port: 9095",
            "  grpc_listen_prot: 9095",
            "server.grpc_listen_prot",
        ),
        (
            "    schema: v13",
            "    shema: v13",
            "schema_config.configs[1].shema",
        ),
        (
            "    join_after: 10s",
            "    join_afterr: 10s",
            "ingester.lifecycler.join_afterr",
        ),
    ] {
        assert!(prod.contains(from), "{from}");
        let (ok, out) = check_config(&prod.replacen(from, to, 1));
        assert!(!ok, "{key}: accepted");
        assert!(out.contains(key), "{key}: {out}");
    }
}

#[test]
fn loki_example_configs_start_and_answer_ready() {
    for name in FIXTURES {
        let dir = tempfile::tempdir().unwrap();
        let mut s = start_with(dir.path(), &relocated(name, dir.path()));
        let (status, body) = get(&s.addr(), "/ready", &[]);
        assert_eq!(status, 200, "{name}: {body}");
        s.stop();
    }
}

#[test]
fn helm_retention_keys_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(
        dir.path(),
        &relocated("helm-single-binary.yaml", dir.path()),
    );
    let (status, cfg) = get(&s.addr(), "/config", &[]);
    assert_eq!(status, 200);
    let cfg: serde_yaml::Value = serde_yaml::from_str(&cfg).unwrap();
    assert_eq!(cfg["limits_config"]["retention_period"], "744h");
    assert_eq!(cfg["compactor"]["retention_enabled"], true);
    assert_eq!(
        cfg["ruler"]["rule_path"].as_str().unwrap(),
        format!("{}/rulestorage", dir.path().display())
    );
}

#[test]
fn rules_come_from_loki_local_rule_storage() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules/team-a");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("alerts.yaml"),
        "groups:\n- name: from-loki-storage\n  rules:\n  - alert: Many\n    expr: sum(count_over_time({app=\"x\"}[1m])) > 100\n",
    )
    .unwrap();
    let s = start_with(dir.path(), &relocated("production-docker.yaml", dir.path()));
    let r = ureq::get(&format!("{}/prometheus/api/v1/rules", s.addr()))
        .set("X-Scope-OrgID", "team-a")
        .call()
        .unwrap();
    let body = r.into_string().unwrap();
    assert!(body.contains("from-loki-storage"), "{body}");
}

#[test]
fn ruler_enable_api_false_hides_the_rules_api() {
    let dir = tempfile::tempdir().unwrap();
    let on = start_with(dir.path(), "ruler:\n  enable_api: true\n");
    assert_eq!(get(&on.addr(), "/prometheus/api/v1/rules", &[]).0, 200);
    drop(on);
    let dir = tempfile::tempdir().unwrap();
    let off = start_with(dir.path(), "ruler:\n  enable_api: false\n");
    for path in [
        "/loki/api/v1/rules",
        "/prometheus/api/v1/rules",
        "/prometheus/api/v1/alerts",
    ] {
        assert_eq!(get(&off.addr(), path, &[]).0, 404, "{path}");
    }
    assert_eq!(get(&off.addr(), "/ready", &[]).0, 200);
}

fn push_lines(addr: &str, app: &str, lines: &[String]) -> (u16, String) {
    let now = common::now_ns();
    let values: Vec<serde_json::Value> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| serde_json::json!([(now + i as i64).to_string(), l]))
        .collect();
    let body = serde_json::json!({"streams": [{"stream": {"app": app}, "values": values}]});
    push_with(
        addr,
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
}

#[test]
fn per_stream_rate_limit_answers_429_for_that_stream_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(
        dir.path(),
        "limits_config:\n  per_stream_rate_limit: 1KB\n  per_stream_rate_limit_burst: 2KB\n",
    );
    let line = "x".repeat(500);
    let (status, body) = push_lines(&s.addr(), "busy", &vec![line.clone(); 6]);
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("Per stream rate limit exceeded (limit: 1KB/sec) while attempting to ingest for stream '{app=\"busy\"}' totaling 500B"),
        "{body}"
    );
    assert!(
        body.contains("user 'fake', total ignored: 2 out of 6 for stream: {app=\"busy\"}"),
        "{body}"
    );
    // Another stream still gets in.
    let (status, body) = push_lines(&s.addr(), "quiet", std::slice::from_ref(&line));
    assert_eq!(status, 204, "{body}");
    // The entries of the busy stream within its burst were stored.
    let now = common::now_ns();
    let got = common::query_entries(
        &s.addr(),
        "{app=\"busy\"}",
        now - 60_000_000_000,
        now + 60_000_000_000,
        100,
    );
    assert_eq!(got.len(), 4);
}

#[test]
fn ops_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(
        dir.path(),
        "server:\n  log_level: warn\nruler:\n  alertmanager_url: http://am:hunter2@127.0.0.1:9\n",
    );
    let addr = s.addr();

    let (status, cfg) = get(&addr, "/config", &[]);
    assert_eq!(status, 200);
    assert!(!cfg.contains("hunter2"), "{cfg}");
    assert!(cfg.contains("http://am:********@127.0.0.1:9"), "{cfg}");
    let tree: serde_yaml::Value = serde_yaml::from_str(&cfg).unwrap();
    assert_eq!(tree["server"]["log_level"], "warn");
    assert_eq!(tree["server"]["http_listen_port"], s.port);
    let (_, defaults) = get(&addr, "/config", &[("mode", "defaults")]);
    assert!(defaults.contains("alertmanager_url: ''"), "{defaults}");
    assert_eq!(get(&addr, "/config", &[("mode", "nope")]).0, 400);

    let (status, services) = get(&addr, "/services", &[]);
    assert_eq!(status, 200);
    for line in [
        "server => Running",
        "ingester => Running",
        "compactor => Running",
        "ruler => Running",
    ] {
        assert!(services.lines().any(|l| l == line), "{line}: {services}");
    }

    let level = |addr: &str| get(addr, "/log_level", &[]).1;
    assert_eq!(
        level(&addr).trim(),
        r#"{"message":"Current log level is warn"}"#
    );
    let r = ureq::post(&format!("{addr}/log_level"))
        .send_form(&[("log_level", "debug")])
        .unwrap();
    assert_eq!(
        r.into_string().unwrap().trim(),
        r#"{"message":"Log level set to debug","status":"success"}"#
    );
    assert_eq!(
        level(&addr).trim(),
        r#"{"message":"Current log level is debug"}"#
    );
    match ureq::post(&format!("{addr}/log_level?log_level=loud")).call() {
        Err(ureq::Error::Status(400, r)) => assert_eq!(
            r.into_string().unwrap().trim(),
            r#"{"message":"unrecognized log level \"loud\"","status":"failed"}"#
        ),
        other => panic!("{other:?}"),
    }

    let (status, info) = get(&addr, "/loki/api/v1/status/buildinfo", &[]);
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    let revision = info["revision"].as_str().unwrap();
    let git = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match git {
        // Built from this checkout: the commit it was built at (HEAD, unless a commit was
        // made since the build, which a test run does not do).
        Some(head) => assert_eq!(revision, head),
        None => assert_eq!(revision, "unknown"),
    }
    let date = info["buildDate"].as_str().unwrap();
    assert_eq!(date.len(), 20, "{date}");
    assert!(date.ends_with('Z') && date.as_bytes()[10] == b'T', "{date}");
    assert!(
        info["goVersion"].as_str().unwrap().starts_with("rustc 1."),
        "{info}"
    );
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn query_stats_hold_only_numbers_the_engine_computes() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(dir.path(), "server:\n  log_level: warn\n");
    let lines: Vec<String> = (0..5).map(|i| format!("level=info n={i}")).collect();
    assert_eq!(push_lines(&s.addr(), "st", &lines).0, 204);
    let now = common::now_ns();
    let (status, body) = get(
        &s.addr(),
        "/loki/api/v1/query_range",
        &[
            ("query", r#"{app="st"} | logfmt | n > 1"#),
            ("start", &(now - 60_000_000_000).to_string()),
            ("end", &(now + 60_000_000_000).to_string()),
        ],
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let stats = &v["data"]["stats"];
    let summary = stats["summary"].as_object().unwrap();
    let mut keys: Vec<&str> = summary.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "bytesProcessedPerSecond",
            "execTime",
            "linesProcessedPerSecond",
            "totalBytesProcessed",
            "totalEntriesReturned",
            "totalLinesProcessed",
            "totalPostFilterLines"
        ]
    );
    assert_eq!(summary["totalLinesProcessed"], 5);
    assert_eq!(summary["totalPostFilterLines"], 3);
    assert_eq!(summary["totalEntriesReturned"], 3);
    let chunk = &stats["querier"]["store"]["chunk"];
    assert_eq!(chunk["headChunkLines"], 5, "{stats}");
    assert_eq!(chunk["decompressedLines"], 0, "{stats}");
    assert!(stats.get("ingester").is_none(), "{stats}");
}
