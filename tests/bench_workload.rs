//! `sawmill bench push --shape microservices` and `bench query --shape microservices` on a few
//! thousand lines: the push lands every line, and the query benchmark answers its eight
//! queries with what the generated data holds, the same fresh and after `POST /flush`.

mod common;

use std::process::Command;

use common::{get, now_ns, Server, BIN};

const QUERIES: [&str; 8] = [
    "needle_all_streams",
    "needle_json_field",
    "errors_filter",
    "json_label_filter",
    "count_by_app_5m",
    "error_rate_json",
    "p95_latency_unwrap",
    "count_total_1h",
];

#[test]
fn bench_query_microservices_answers_the_eight_queries_fresh_and_settled() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "bench",
            "query",
            "--shape",
            "microservices",
            "--lines",
            "6000",
            "--runs",
            "1",
            "--settle-wait",
            "0",
            "--data-dir",
        ])
        .arg(dir.path().join("bench"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench query failed:\n{stdout}\n{stderr}"
    );
    let summary = stdout.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(summary).unwrap();
    let num = |v: &serde_json::Value| {
        v.as_u64()
            .unwrap_or_else(|| panic!("not a count: {v} in {summary}"))
    };
    assert_eq!(num(&v["lines"]), 6000, "{summary}");
    assert_eq!(num(&v["push"]["lines"]), 6000, "{summary}");
    assert_eq!(num(&v["push"]["errors"]), 0, "{summary}");
    assert!(num(&v["stored_bytes_without_wal"]) > 0, "{summary}");
    assert!(num(&v["peak_rss_kb"]) > 0, "{summary}");
    let needle_lines = num(&v["needle_lines"]);
    let needle_json_lines = num(&v["needle_json_lines"]);
    assert!((2..=5).contains(&needle_lines), "{summary}");
    // The default seed's needle has JSON lines, so the JSON field query finds something.
    assert!(needle_json_lines > 0, "{summary}");
    for state in ["fresh", "settled"] {
        let n = |q: &str| num(&v[state][q]["n"]);
        for q in QUERIES {
            assert!(
                v[state][q]["ms"].as_f64().unwrap() > 0.0,
                "{state} {q}: {summary}"
            );
            assert!(n(q) > 0, "{state} {q} answered nothing: {summary}");
            assert_eq!(n(q), num(&v["fresh"][q]["n"]), "{q}: {summary}");
        }
        assert_eq!(n("needle_all_streams"), needle_lines, "{summary}");
        assert_eq!(n("needle_json_field"), needle_json_lines, "{summary}");
        assert_eq!(
            n("errors_filter"),
            num(&v["upstream_timeouts"]),
            "{summary}"
        );
    }
    // The table names every query.
    for q in QUERIES {
        assert!(stdout.contains(q), "{q} missing from:\n{stdout}");
    }
}

#[test]
fn bench_push_microservices_lands_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), "");
    let out = Command::new(BIN)
        .args([
            "bench",
            "push",
            "--shape",
            "microservices",
            "--lines",
            "3000",
            "--connections",
            "2",
            "--addr",
        ])
        .arg(server.addr())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench push failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("pushed 3000 lines"), "{stdout}");
    assert!(stdout.contains(" 0 errors"), "{stdout}");
    // "... request req-xxxxxxxx-xxxx has N lines"
    let (needle, lines) = stdout
        .split_once("; request ")
        .and_then(|(_, rest)| rest.split_once(" has "))
        .map(|(id, rest)| {
            (
                id.to_string(),
                rest.split(' ').next().unwrap().parse::<usize>().unwrap(),
            )
        })
        .unwrap_or_else(|| panic!("no needle in {stdout}"));
    let now = now_ns();
    let (start, end) = ((now - 4 * 3_600_000_000_000).to_string(), now.to_string());
    let (status, body) = get(
        &server.addr(),
        "/loki/api/v1/query",
        &[
            ("query", "sum(count_over_time({job=\"microservices\"}[4h]))"),
            ("time", &end),
        ],
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "3000", "{body}");
    let q = format!("{{job=\"microservices\"}} |= \"{needle}\"");
    let (status, body) = get(
        &server.addr(),
        "/loki/api/v1/query_range",
        &[
            ("query", &q),
            ("start", &start),
            ("end", &end),
            ("limit", "100"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let found: Vec<&str> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap())
        .map(|e| e[1].as_str().unwrap())
        .collect();
    assert_eq!(found.len(), lines, "{body}");
    // Every line of the request carries its three IDs, as JSON or logfmt.
    for line in found {
        assert!(
            line.contains("trace_id") && line.contains("user_id"),
            "{line}"
        );
    }
}
