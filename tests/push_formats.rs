//! Push in each format real shippers send (JSON, gzip JSON, deflate JSON, snappy protobuf) and
//! read back exactly what went in, across a clean restart and a SIGKILL.

mod common;

use std::io::Write;

use common::{get, now_ns, post, query_entries, Server};
use sawmill::ingest::decode::{encode_json, encode_proto_snappy};
use sawmill::ingest::{Entry, PushRequest, PushStream, RawLabels};

const CONFIG: &str = "limits_config:\n  ingestion_rate_mb: 1000\n  ingestion_burst_size_mb: 1000\n";

fn request(app: &str, base: i64, n: usize) -> PushRequest {
    PushRequest {
        streams: vec![PushStream {
            labels: RawLabels::Pairs(vec![
                ("app".into(), app.into()),
                ("env".into(), "test".into()),
            ]),
            entries: (0..n)
                .map(|i| Entry {
                    ts: base + i as i64,
                    line: format!("{app} line {i} \"quoted\" ünïcödé 🚀 level=info"),
                    metadata: if i % 2 == 0 {
                        vec![("trace_id".into(), format!("t{i}"))]
                    } else {
                        vec![]
                    },
                })
                .collect(),
        }],
    }
}

/// What a query must return for `req`: structured metadata shows as labels.
fn expected(req: &PushRequest) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    for s in &req.streams {
        let RawLabels::Pairs(p) = &s.labels else {
            unreachable!()
        };
        for e in &s.entries {
            let mut m: serde_json::Map<String, serde_json::Value> = p
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            for (k, v) in &e.metadata {
                m.insert(k.clone(), v.clone().into());
            }
            out.push((
                serde_json::Value::Object(m).to_string(),
                e.ts,
                e.line.clone(),
            ));
        }
    }
    out.sort();
    out
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    g.write_all(b).unwrap();
    g.finish().unwrap()
}

fn deflate(b: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(b).unwrap();
    z.finish().unwrap()
}

#[test]
fn every_format_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"), CONFIG);
    let base = now_ns() - 60_000_000_000;
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, PushRequest, &str, Option<&str>, Vec<u8>)> = vec![
        {
            let r = request("json", base, 50);
            let b = encode_json(&r);
            ("json", r, "application/json", None, b)
        },
        {
            let r = request("gzip", base, 50);
            let b = gzip(&encode_json(&r));
            ("gzip", r, "application/json", Some("gzip"), b)
        },
        {
            let r = request("deflate", base, 50);
            let b = deflate(&encode_json(&r));
            ("deflate", r, "application/json", Some("deflate"), b)
        },
        {
            let r = request("proto", base, 50);
            let b = encode_proto_snappy(&r);
            ("proto", r, "application/x-protobuf", None, b)
        },
    ];
    let url = format!("{}/loki/api/v1/push", server.addr());
    for (name, _, ct, enc, body) in &cases {
        let (status, text) = post(&url, ct, *enc, body);
        assert_eq!(status, 204, "{name}: {text}");
    }
    let check = |server: &Server, when: &str| {
        for (name, req, ..) in &cases {
            let got = query_entries(
                &server.addr(),
                &format!("{{app=\"{name}\"}}"),
                base,
                base + 1_000_000,
                1000,
            );
            assert_eq!(got, expected(req), "{name} {when}");
        }
    };
    check(&server, "from the head");
    server.stop();
    server.restart();
    check(&server, "from segments after a clean restart");
    let more = request("json", base + 10_000, 20);
    let url = format!("{}/loki/api/v1/push", server.addr());
    assert_eq!(
        post(&url, "application/json", None, &encode_json(&more)).0,
        204
    );
    assert_eq!(
        post(&url, "application/json", None, &encode_json(&more)).0,
        204,
        "a repeated push is accepted (duplicates dropped)"
    );
    server.kill();
    server.restart();
    let got = query_entries(
        &server.addr(),
        "{app=\"json\"}",
        base,
        base + 1_000_000,
        1000,
    );
    let mut want = expected(&request("json", base, 50));
    want.extend(expected(&more));
    want.sort();
    assert_eq!(
        got, want,
        "after SIGKILL: segments plus WAL replay, no duplicates"
    );
}

#[test]
fn limit_direction_filters_and_metadata_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), CONFIG);
    let base = now_ns() - 60_000_000_000;
    let mut req = request("a", base, 30);
    req.streams.extend(request("b", base + 5, 30).streams);
    assert_eq!(
        post(
            &format!("{}/loki/api/v1/push", server.addr()),
            "application/json",
            None,
            &encode_json(&req)
        )
        .0,
        204
    );
    let range = |q: &str, limit: &str, dir: &str| {
        let (st, body) = get(
            &server.addr(),
            "/loki/api/v1/query_range",
            &[
                ("query", q),
                ("start", &base.to_string()),
                ("end", &(base + 1000).to_string()),
                ("limit", limit),
                ("direction", dir),
            ],
        );
        assert_eq!(st, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut ts: Vec<i64> = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| {
                s["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e[0].as_str().unwrap().parse::<i64>().unwrap())
            })
            .collect();
        ts.sort();
        ts
    };
    assert_eq!(
        range("{env=\"test\"}", "3", "forward"),
        vec![base, base + 1, base + 2]
    );
    assert_eq!(
        range("{env=\"test\"}", "3", "backward"),
        vec![base + 32, base + 33, base + 34]
    );
    assert_eq!(
        range("{app=~\"a|b\"} |= \"line 1\"", "100", "forward").len(),
        22
    );
    assert_eq!(
        range(
            "{app=\"a\"} != \"line 1\" |~ \"line [0-4] \"",
            "100",
            "forward"
        )
        .len(),
        4
    );
    assert_eq!(
        range(
            "{app!=\"a\", env=\"test\"} !~ \"line [0-9] \"",
            "100",
            "forward"
        )
        .len(),
        20
    );

    let (st, body) = get(&server.addr(), "/loki/api/v1/labels", &[]);
    assert_eq!(
        (st, body.contains("\"app\"") && body.contains("\"env\"")),
        (200, true),
        "{body}"
    );
    let (st, body) = get(&server.addr(), "/loki/api/v1/label/app/values", &[]);
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"], serde_json::json!(["a", "b"]));
    let (st, body) = get(
        &server.addr(),
        "/loki/api/v1/series",
        &[("match[]", "{app=\"b\"}")],
    );
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"], serde_json::json!([{"app": "b", "env": "test"}]));
    let (st, body) = get(
        &server.addr(),
        "/loki/api/v1/query_range",
        &[("query", "{app=\"a\"} |= ")],
    );
    assert_eq!(st, 400, "{body}");
    assert!(body.starts_with("parse error"), "{body}");
    let (st, body) = get(
        &server.addr(),
        "/loki/api/v1/query_range",
        &[("query", "{app=\"a\"}"), ("limit", "5001")],
    );
    assert_eq!(st, 400, "{body}");
    let (st, body) = get(&server.addr(), "/metrics", &[]);
    assert_eq!(st, 200);
    assert!(
        body.contains("sawmill_distributor_lines_received_total{tenant=\"fake\"} 60"),
        "{body}"
    );
    let (st, body) = get(&server.addr(), "/loki/api/v1/status/buildinfo", &[]);
    assert_eq!(st, 200);
    assert!(body.contains("\"version\""));
}

#[test]
fn metric_queries_over_line_filters_and_grafana_health_check() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), CONFIG);
    // 60 entries one second apart, ending on a minute boundary.
    let end = (now_ns() / 60_000_000_000 - 1) * 60_000_000_000;
    let base = end - 60_000_000_000;
    let req = request("m", base + 1_000_000_000, 60);
    assert_eq!(
        post(
            &format!("{}/loki/api/v1/push", server.addr()),
            "application/json",
            None,
            &encode_json(&req)
        )
        .0,
        204
    );

    let (st, body) = get(
        &server.addr(),
        "/loki/api/v1/query",
        &[("query", "vector(1)+vector(1)"), ("time", "4000000000")],
    );
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(
        v["data"]["result"][0]["value"],
        serde_json::json!([4000000000u64, "2"])
    );

    let at = (end / 1_000_000_000).to_string();
    let (st, body) = get(
        &server.addr(),
        "/loki/api/v1/query",
        &[
            (
                "query",
                "sum(count_over_time({app=\"m\"} |= \"line 1\" [1m]))",
            ),
            ("time", &at),
        ],
    );
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "11", "{body}");

    let (st, body) = get(
        &server.addr(),
        "/loki/api/v1/query_range",
        &[
            ("query", "sum by (env) (rate({app=\"m\"}[1m]))"),
            ("start", &base.to_string()),
            ("end", &end.to_string()),
            ("step", "60s"),
        ],
    );
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["resultType"], "matrix");
    assert_eq!(
        v["data"]["result"][0]["metric"],
        serde_json::json!({"env": "test"})
    );
    let rate: f64 = v["data"]["result"][0]["values"][0][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((rate - 1.0).abs() < 1e-9, "60 lines in a minute: {body}");

    let (st, body) = get(
        &server.addr(),
        "/loki/api/v1/query",
        &[("query", "{app=\"m\"}")],
    );
    assert_eq!(
        st, 400,
        "log queries are refused as instant queries: {body}"
    );
}

#[test]
fn rate_and_stream_limits_answer_429_and_store_nothing_of_the_refused_push() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        "limits_config:\n  ingestion_rate_mb: 0.01\n  ingestion_burst_size_mb: 0.01\n  max_global_streams_per_user: 2\n",
    );
    let base = now_ns() - 60_000_000_000;
    let url = format!("{}/loki/api/v1/push", server.addr());
    let small = request("ok", base, 10);
    assert_eq!(
        post(&url, "application/json", None, &encode_json(&small)).0,
        204
    );
    let big = request("big", base, 400); // ~25 KB, over the 10 KB burst
    let (status, text) = post(&url, "application/json", None, &encode_json(&big));
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("Ingestion rate limit exceeded"), "{text}");
    assert!(query_entries(
        &server.addr(),
        "{app=\"big\"}",
        base,
        base + 1_000_000,
        1000
    )
    .is_empty());

    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        post(
            &url,
            "application/json",
            None,
            &encode_json(&request("two", base, 1))
        )
        .0,
        204
    );
    let (status, text) = post(
        &url,
        "application/json",
        None,
        &encode_json(&request("three", base, 1)),
    );
    assert_eq!(
        status, 429,
        "a third stream is over max_global_streams_per_user: {text}"
    );
    assert!(query_entries(
        &server.addr(),
        "{app=\"three\"}",
        base,
        base + 1_000_000,
        1000
    )
    .is_empty());
}

#[test]
fn parsers_label_filters_and_categorized_labels() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), CONFIG);
    let base = now_ns() - 60_000_000_000;
    let lines = [
        r#"{"level":"error","status":500,"msg":"boom"}"#,
        r#"{"level":"info","status":200,"msg":"fine"}"#,
        "level=error status=503 msg=\"upstream timeout\"",
    ];
    let req = PushRequest {
        streams: vec![PushStream {
            labels: RawLabels::Pairs(vec![("app".into(), "p".into())]),
            entries: lines
                .iter()
                .enumerate()
                .map(|(i, l)| Entry {
                    ts: base + i as i64,
                    line: l.to_string(),
                    metadata: vec![("trace_id".into(), format!("t{i}"))],
                })
                .collect(),
        }],
    };
    assert_eq!(
        post(
            &format!("{}/loki/api/v1/push", server.addr()),
            "application/json",
            None,
            &encode_json(&req)
        )
        .0,
        204
    );
    let got = query_entries(
        &server.addr(),
        "{app=\"p\"} | json | status >= 500",
        base,
        base + 10,
        100,
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].0.contains("\"level\":\"error\"") && got[0].0.contains("\"trace_id\":\"t0\""),
        "{got:?}"
    );
    let got = query_entries(
        &server.addr(),
        "{app=\"p\"} | logfmt | __error__=\"\" | status >= 500 | line_format \"{{.msg}}\"",
        base,
        base + 10,
        100,
    );
    assert_eq!(
        got.iter().map(|g| g.2.as_str()).collect::<Vec<_>>(),
        vec!["upstream timeout"]
    );

    let url = format!(
        "{}/loki/api/v1/query_range?{}",
        server.addr(),
        serde_urlencoded::to_string([
            ("query", "{app=\"p\"} | json | level=\"info\""),
            ("start", &base.to_string()),
            ("end", &(base + 10).to_string())
        ])
        .unwrap()
    );
    let body = ureq::get(&url)
        .set("X-Loki-Response-Encoding-Flags", "categorize-labels")
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["data"]["encodingFlags"],
        serde_json::json!(["categorize-labels"])
    );
    assert_eq!(
        v["data"]["result"][0]["stream"],
        serde_json::json!({"app": "p"}),
        "{body}"
    );
    let third = &v["data"]["result"][0]["values"][0][2];
    assert_eq!(
        third["structuredMetadata"],
        serde_json::json!({"trace_id": "t1"}),
        "{body}"
    );
    assert_eq!(third["parsed"]["status"], "200", "{body}");
}

#[test]
fn query_length_and_timeout_limits() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        "limits_config:\n  max_query_length: 1h\n",
    );
    let end = now_ns();
    let (st, body) = get(
        &server.addr(),
        "/loki/api/v1/query_range",
        &[
            ("query", "{app=\"x\"}"),
            ("start", &(end - 2 * 3_600_000_000_000).to_string()),
            ("end", &end.to_string()),
        ],
    );
    assert_eq!(st, 400, "{body}");
    assert!(
        body.contains(
            "the query time range exceeds the limit (query length: 2h0m0s, limit: 1h0m0s)"
        ),
        "{body}"
    );
    drop(server);

    // A timeout shorter than any work: the query is stopped and answered 504.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        "limits_config:\n  query_timeout: 1ns\n",
    );
    let base = now_ns() - 60_000_000_000;
    assert_eq!(
        post(
            &format!("{}/loki/api/v1/push", server.addr()),
            "application/json",
            None,
            &encode_json(&request("t", base, 10))
        )
        .0,
        204
    );
    let (st, body) = get(
        &server.addr(),
        "/loki/api/v1/query_range",
        &[
            ("query", "{app=\"t\"}"),
            ("start", &base.to_string()),
            ("end", &(base + 100).to_string()),
        ],
    );
    assert_eq!(st, 504, "{body}");
    let (st, body) = get(
        &server.addr(),
        "/loki/api/v1/query_range",
        &[
            ("query", "count_over_time({app=\"t\"}[1m])"),
            ("start", &base.to_string()),
            ("end", &(base + 100).to_string()),
        ],
    );
    assert_eq!(st, 504, "{body}");
}
