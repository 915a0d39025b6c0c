//! Replays the calls Grafana's Logs Drilldown app makes against a Loki data source (from its
//! `datasource.ts`, `ServiceSelectionScene` and `ServiceScene`), with the time range sent as
//! ISO timestamps as the app sends it, and checks each answer against what was pushed:
//!
//! - the service list: `index/volume` of `{service_name=~".+"}` (services named by Loki's
//!   `discover_service_name`, `unknown_service` when nothing names one), and `detected_labels`;
//! - per service: volume by `detected_level`, the logs panel, `detected_fields`,
//!   `detected_labels`, `labels`, the Patterns tab (`/loki/api/v1/patterns`) and a pattern
//!   filter, the level and label breakdowns;
//! - turned off: no `service_name`, no `detected_level`, `/loki/api/v1/patterns` 404.

mod common;

use common::{get, now_ns, push_json, Server};
use serde_json::{json, Value};

const DISCOVERY: [(&str, &str); 2] = [
    (
        "SAWMILL_LIMITS_CONFIG__DISCOVER_SERVICE_NAME",
        "[service, app, application, app_name, name, app_kubernetes_io_name, container, container_name, k8s_container_name, component, workload, job, k8s_job_name]",
    ),
    ("SAWMILL_LIMITS_CONFIG__DISCOVER_LOG_LEVELS", "true"),
];

#[track_caller]
fn ok(addr: &str, path: &str, params: &[(&str, &str)]) -> Value {
    let (status, body) = get(addr, path, params);
    assert_eq!(status, 200, "{path} {params:?}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// An ISO time as Grafana sends it (`2026-12-03T09:00:00.000Z`).
fn iso(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Sum of a matrix series' values.
fn total(series: &Value) -> f64 {
    series["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// label value -> total of a `sum by (label)` matrix.
fn totals_by(v: &Value, label: &str) -> std::collections::BTreeMap<String, f64> {
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"][label].as_str().unwrap_or("").to_string(),
                total(s),
            )
        })
        .collect()
}

fn push(addr: &str, start: i64) {
    let mut checkout = Vec::new();
    for i in 0..90i64 {
        let line = if i % 3 == 2 {
            format!("level=error msg=\"payment declined\" order_id={i} card=visa")
        } else {
            format!(
                "level=info msg=\"order placed\" order_id={i} duration_ms={}",
                10 + i
            )
        };
        checkout.push(json!([(start + i * 1_000_000_000).to_string(), line]));
    }
    let batch: Vec<Value> = (0..40i64)
        .map(|i| {
            json!([
                (start + i * 2_000_000_000).to_string(),
                json!({"level": "warn", "msg": format!("retrying job {i} of 40")}).to_string()
            ])
        })
        .collect();
    let plain: Vec<Value> = (0..35i64)
        .map(|i| {
            json!([
                (start + i * 1_000_000_000).to_string(),
                format!("INFO worker {i} started")
            ])
        })
        .collect();
    let body = json!({"streams": [
        {"stream": {"app": "checkout", "env": "prod"}, "values": checkout},
        {"stream": {"job": "batch", "env": "prod"}, "values": batch},
        {"stream": {"env": "dev"}, "values": plain},
    ]});
    let (status, text) = push_json(addr, &body.to_string());
    assert_eq!(status, 204, "{text}");
}

#[test]
fn logs_drilldown_calls() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(&dir.path().join("data"), "", &DISCOVERY);
    let addr = s.addr();
    let end = now_ns();
    let start = end - 600_000_000_000;
    push(&addr, start + 60_000_000_000);
    let (from, to) = (iso(start), iso(end + 1_000_000_000));
    let range = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, String)> {
        let mut p: Vec<(&str, String)> = vec![("start", from.clone()), ("end", to.clone())];
        p.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        p
    };
    let call = |path: &str, params: Vec<(&str, String)>| -> Value {
        let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ok(&addr, path, &p)
    };

    // Service selection: volume by service_name, largest first.
    let v = call(
        "/loki/api/v1/index/volume",
        range(&[("query", "{service_name=~\".+\"}"), ("limit", "5000")]),
    );
    let services: Vec<&str> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metric"]["service_name"].as_str().unwrap())
        .collect();
    assert_eq!(services.len(), 3, "{v}");
    for s in ["checkout", "batch", "unknown_service"] {
        assert!(services.contains(&s), "{s} not in {services:?}");
    }
    // The service selection's tabs: detected labels over everything.
    let v = call("/loki/api/v1/detected_labels", range(&[("query", "")]));
    let detected: Vec<&str> = v["detectedLabels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["label"].as_str().unwrap())
        .collect();
    assert!(detected.contains(&"service_name"), "{v}");

    // Each service's volume by level: detected from the logfmt field, the JSON field, keywords.
    let levels = |service: &str| {
        let q = format!(
            "sum by (detected_level) (count_over_time({{ service_name=\"{service}\" }} [1m]))"
        );
        totals_by(
            &call(
                "/loki/api/v1/query_range",
                range(&[("step", "60000ms")])
                    .into_iter()
                    .chain([("query", q)])
                    .collect(),
            ),
            "detected_level",
        )
    };
    assert_eq!(
        levels("checkout"),
        [("error".to_string(), 30.0), ("info".to_string(), 60.0)].into()
    );
    assert_eq!(levels("batch"), [("warn".to_string(), 40.0)].into());
    assert_eq!(
        levels("unknown_service"),
        [("info".to_string(), 35.0)].into()
    );

    // The logs panel, and a level filter as the app writes it.
    let logs = |q: &str| -> usize {
        let v = call(
            "/loki/api/v1/query_range",
            range(&[("limit", "1000"), ("direction", "backward")])
                .into_iter()
                .chain([("query", q.to_string())])
                .collect(),
        );
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["values"].as_array().unwrap().len())
            .sum()
    };
    assert_eq!(logs("{service_name=`checkout` }"), 90);
    assert_eq!(
        logs("{service_name=`checkout` } | detected_level=`error`"),
        30
    );

    // Service view: labels, detected labels and detected fields.
    let v = call(
        "/loki/api/v1/labels",
        range(&[("query", "{service_name=\"checkout\"}")]),
    );
    assert_eq!(v["data"], json!(["app", "env", "service_name"]));
    let v = call(
        "/loki/api/v1/detected_fields",
        range(&[(
            "query",
            "{service_name=\"checkout\"} | logfmt | drop __error__, __error_details__",
        )]),
    );
    let fields: Vec<&str> = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["label"].as_str().unwrap())
        .collect();
    for f in ["order_id", "duration_ms", "card", "msg", "detected_level"] {
        assert!(fields.contains(&f), "{f} not in {fields:?}");
    }

    // The Patterns tab: mined as the lines arrived; counts per step add up to the lines.
    let patterns_of = |service: &str| -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let v = call(
                "/loki/api/v1/patterns",
                range(&[("step", "30s")])
                    .into_iter()
                    .chain([("query", format!("{{service_name=\"{service}\"}}"))])
                    .collect(),
            );
            if v["data"].as_array().is_some_and(|d| !d.is_empty())
                || std::time::Instant::now() > deadline
            {
                return v;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let v = patterns_of("checkout");
    assert_eq!(v["status"], "success");
    let got: Vec<(String, u64)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let n = p["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    assert!(
                        s[0].is_i64() && s[0].as_i64().unwrap() < 10_000_000_000,
                        "seconds"
                    );
                    s[1].as_u64().unwrap()
                })
                .sum();
            (p["pattern"].as_str().unwrap().to_string(), n)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "level=info msg=\"order placed\" order_id=<_> duration_ms=<_>".to_string(),
                60
            ),
            (
                "level=error msg=\"payment declined\" order_id=<_> card=visa".to_string(),
                30
            ),
        ]
    );
    // The miner holds the three streams.
    assert_eq!(common::metric(&addr, "sawmill_pattern_streams"), 3.0);
    assert!(common::metric(&addr, "sawmill_pattern_bytes") > 0.0);
    let v = patterns_of("batch");
    assert_eq!(v["data"][0]["pattern"], "<_>retrying job <_> of 40<_>");
    // Loki's encoder escapes `<` and `>` in patterns.
    let (_, raw) = get(
        &addr,
        "/loki/api/v1/patterns",
        &[
            ("query", "{service_name=\"batch\"}"),
            ("start", &from),
            ("end", &to),
        ],
    );
    assert!(raw.contains(r#""\u003c_\u003eretrying job"#), "{raw}");
    // Clicking a pattern filters the logs with it.
    assert_eq!(
        logs("{service_name=`checkout` } |> `level=error msg=\"payment declined\" order_id=<_> card=visa`"),
        30
    );

    // The Levels and Labels breakdowns.
    let v = call(
        "/loki/api/v1/query_range",
        range(&[
            (
                "query",
                "sum(count_over_time({service_name=\"checkout\"} | detected_level != \"\" [1m])) by (detected_level)",
            ),
            ("step", "60000ms"),
        ]),
    );
    assert_eq!(
        totals_by(&v, "detected_level"),
        [("error".to_string(), 30.0), ("info".to_string(), 60.0)].into()
    );
    let v = call(
        "/loki/api/v1/query_range",
        range(&[
            (
                "query",
                "sum by (env) (count_over_time({service_name=~\".+\"} | env!=\"\" [1m]))",
            ),
            ("step", "60000ms"),
        ]),
    );
    assert_eq!(
        totals_by(&v, "env"),
        [("dev".to_string(), 35.0), ("prod".to_string(), 130.0)].into()
    );
}

#[test]
fn turned_off_nothing_is_added() {
    let dir = tempfile::tempdir().unwrap();
    // The harness starts servers with discovery off; patterns off here too.
    let s = Server::start(
        &dir.path().join("data"),
        "pattern_ingester:\n  enabled: false\n",
    );
    let addr = s.addr();
    let end = now_ns();
    push(&addr, end - 200_000_000_000);
    let v = ok(&addr, "/loki/api/v1/labels", &[]);
    assert_eq!(v["data"], json!(["app", "env", "job"]));
    let v = ok(
        &addr,
        "/loki/api/v1/query_range",
        &[("query", "{app=\"checkout\"}"), ("limit", "1")],
    );
    assert_eq!(
        v["data"]["result"][0]["stream"],
        json!({"app": "checkout", "env": "prod"})
    );
    let (status, _) = get(
        &addr,
        "/loki/api/v1/patterns",
        &[("query", "{app=\"checkout\"}")],
    );
    assert_eq!(status, 404);
}
