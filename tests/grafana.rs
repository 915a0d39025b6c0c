//! Replays what Grafana's Loki data source sends (loki-api.md §1.4) and checks each answer has
//! the shape Grafana parses: the "Save & test" health check, Explore's log and metric range
//! queries with `step=<N>ms`, the logs-volume query, the label browser, log context, and the
//! shard-splitting probe.

mod common;

use common::{get, now_ns, post, Server};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[track_caller]
fn ok(addr: &str, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
    let (status, body) = get(addr, path, params);
    assert_eq!(status, 200, "{path} {params:?}: {body}");
    json(&body)
}

#[test]
fn grafana_data_source_calls() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        "limits_config:\n  ingestion_rate_mb: 100\n  ingestion_burst_size_mb: 100\n",
    );
    let addr = server.addr();
    let end = now_ns() / 1_000_000_000 * 1_000_000_000;
    let start = end - 600_000_000_000;
    let mut values = Vec::new();
    for i in 0..300i64 {
        let level = ["info", "warn", "error"][i as usize % 3];
        values.push(serde_json::json!([
            (start + i * 2_000_000_000).to_string(),
            format!("level={level} msg=\"line {i}\" status={}", 200 + i % 4)
        ]));
    }
    let body = serde_json::json!({"streams": [{"stream": {"app": "grafana-test", "env": "dev"}, "values": values}]});
    assert_eq!(
        post(
            &format!("{addr}/loki/api/v1/push"),
            "application/json",
            None,
            body.to_string().as_bytes()
        )
        .0,
        204
    );
    let (s, e) = (start.to_string(), (end + 1).to_string());

    // Save & test: instant vector(1)+vector(1) at time=4000000000 (read as seconds).
    let v = ok(
        &addr,
        "/loki/api/v1/query",
        &[
            ("query", "vector(1)+vector(1)"),
            ("time", "4000000000"),
            ("direction", "backward"),
        ],
    );
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"][0]["value"][1], "2");
    assert!(
        v["data"]["result"][0]["value"][0].is_number(),
        "sample timestamps are JSON numbers"
    );

    // Explore, logs: stream entries with string nanosecond timestamps, newest first.
    let v = ok(
        &addr,
        "/loki/api/v1/query_range",
        &[
            ("query", "{app=\"grafana-test\"}"),
            ("start", &s),
            ("end", &e),
            ("limit", "1000"),
            ("direction", "backward"),
            ("step", "2000ms"),
        ],
    );
    assert_eq!(v["data"]["resultType"], "streams");
    let entries = v["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(entries.len(), 300);
    assert!(entries[0][0].is_string());
    assert!(
        entries[0][0].as_str().unwrap() > entries[1][0].as_str().unwrap(),
        "backward"
    );
    for key in ["totalBytesProcessed", "totalLinesProcessed", "execTime"] {
        assert!(
            v["data"]["stats"]["summary"][key].is_number(),
            "stats.summary.{key}"
        );
    }
    assert_eq!(v["data"]["stats"]["summary"]["totalLinesProcessed"], 300);

    // Explore, metrics: matrix with numeric timestamps and string values.
    let v = ok(
        &addr,
        "/loki/api/v1/query_range",
        &[
            (
                "query",
                "sum by (env) (count_over_time({app=\"grafana-test\"} |= \"status=200\" [1m]))",
            ),
            ("start", &s),
            ("end", &e),
            ("step", "60000ms"),
        ],
    );
    assert_eq!(v["data"]["resultType"], "matrix");
    let points = v["data"]["result"][0]["values"].as_array().unwrap();
    assert!(points[0][0].is_number() && points[0][1].is_string());
    let total: f64 = points
        .iter()
        .map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(
        total >= 75.0,
        "every status=200 line is counted in some window: {total}"
    );

    // Logs volume histogram.
    let v = ok(
        &addr,
        "/loki/api/v1/query_range",
        &[
            ("query", "sum by (level, detected_level) (count_over_time({app=\"grafana-test\"} | logfmt | drop __error__[1m]))"),
            ("start", &s),
            ("end", &e),
            ("step", "60000ms"),
        ],
    );
    let levels: Vec<&str> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metric"]["level"].as_str().unwrap())
        .collect();
    assert_eq!(levels, vec!["error", "info", "warn"]);

    // Label browser.
    let v = ok(&addr, "/loki/api/v1/labels", &[("start", &s), ("end", &e)]);
    assert_eq!(v["data"], serde_json::json!(["app", "env"]));
    let v = ok(
        &addr,
        "/loki/api/v1/label/env/values",
        &[
            ("start", &s),
            ("end", &e),
            ("query", "{app=\"grafana-test\"}"),
        ],
    );
    assert_eq!(v["data"], serde_json::json!(["dev"]));
    let v = ok(
        &addr,
        "/loki/api/v1/series",
        &[
            ("match[]", "{app=\"grafana-test\"}"),
            ("start", &s),
            ("end", &e),
        ],
    );
    assert_eq!(
        v["data"],
        serde_json::json!([{"app": "grafana-test", "env": "dev"}])
    );
    // Shard splitting probe: an empty list makes Grafana run queries unsplit.
    let v = ok(
        &addr,
        "/loki/api/v1/label/__stream_shard__/values",
        &[
            ("query", "{app=\"grafana-test\"}"),
            ("start", &s),
            ("end", &e),
        ],
    );
    assert!(v["data"].as_array().is_none_or(|a| a.is_empty()), "{v}");

    // Log context around entry 150: 10 before (backward), 10 after (forward).
    let at = start + 150 * 2_000_000_000;
    let v = ok(
        &addr,
        "/loki/api/v1/query_range",
        &[
            ("query", "{app=\"grafana-test\"}"),
            ("start", &s),
            ("end", &at.to_string()),
            ("limit", "10"),
            ("direction", "backward"),
        ],
    );
    let before = v["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(before.len(), 10);
    assert_eq!(
        before[0][0].as_str().unwrap(),
        (at - 2_000_000_000).to_string(),
        "end is exclusive"
    );
    let v = ok(
        &addr,
        "/loki/api/v1/query_range",
        &[
            ("query", "{app=\"grafana-test\"}"),
            ("start", &at.to_string()),
            ("end", &e),
            ("limit", "10"),
            ("direction", "forward"),
        ],
    );
    let after = v["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(
        after[0][0].as_str().unwrap(),
        at.to_string(),
        "start is inclusive"
    );

    // Query size hint and the v2 tail probe.
    let v = ok(
        &addr,
        "/loki/api/v1/index/stats",
        &[
            ("query", "{app=\"grafana-test\"}"),
            ("start", &s),
            ("end", &e),
        ],
    );
    assert_eq!(v["entries"], 300);
    assert_eq!(get(&addr, "/loki/api/v2alpha/tail", &[]).0, 404);
}
