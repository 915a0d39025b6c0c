//! Multi-tenant queries (`X-Scope-OrgID: a|b` with `querier.multi_tenant_queries_enabled`):
//! every named tenant is read, results carry `__tenant_id__` (a `__tenant_id__` matcher picks
//! tenants), metric queries aggregate across tenants, metadata endpoints merge, the strictest
//! limit applies; without the setting such a header stays a 400.

mod common;

use std::time::Duration;

use common::{now_ns, push_with, try_request, Server};
use serde_json::Value;

const ENABLED: &str = "auth_enabled: true\nquerier:\n  multi_tenant_queries_enabled: true\noverrides:\n  b:\n    max_entries_limit_per_query: 2\n";

fn push(addr: &str, tenant: &str, line: &str, ts: i64) {
    let body = serde_json::json!({"streams": [{"stream": {"app": "x"}, "values": [[ts.to_string(), line]]}]});
    let (status, text) = push_with(
        addr,
        &[
            ("content-type", "application/json"),
            ("X-Scope-OrgID", tenant),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(status, 204, "{text}");
}

/// GET `path` as `tenants` with `params`: (status, JSON body or the text as a string).
fn get_as(addr: &str, tenants: &str, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect();
    let url = format!("{addr}{path}?{}", q.join("&"));
    let (status, body) = try_request(
        "GET",
        &url,
        &[("X-Scope-OrgID", tenants)],
        None,
        Duration::from_secs(30),
    )
    .unwrap();
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, v)
}

fn setup() -> (tempfile::TempDir, Server, i64) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), ENABLED);
    let t = now_ns() - 30_000_000_000;
    push(&s.addr(), "a", "from a", t);
    push(&s.addr(), "b", "from b", t + 1);
    push(&s.addr(), "c", "from c", t + 2);
    (dir, s, t)
}

fn range(t: i64) -> [(&'static str, String); 2] {
    [
        ("start", (t - 60_000_000_000).to_string()),
        ("end", (t + 60_000_000_000).to_string()),
    ]
}

fn streams(v: &Value) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stream"].to_string(),
                s["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e[1].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn log_queries_read_every_named_tenant() {
    let (_d, s, t) = setup();
    let [start, end] = range(t);
    let p = |q: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("query", q.to_string()),
            start.clone(),
            end.clone(),
            ("limit", "2".into()),
        ]
    };
    let run = |tenants: &str, q: &'static str| {
        let params = p(q);
        let refs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        get_as(&s.addr(), tenants, "/loki/api/v1/query_range", &refs)
    };
    let (status, v) = run("a|b", r#"{app="x"}"#);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        streams(&v),
        [
            (
                r#"{"__tenant_id__":"a","app":"x"}"#.to_string(),
                vec!["from a".to_string()]
            ),
            (
                r#"{"__tenant_id__":"b","app":"x"}"#.to_string(),
                vec!["from b".to_string()]
            ),
        ]
    );
    // A __tenant_id__ matcher chooses tenants.
    let (_, v) = run("a|b|c", r#"{app="x", __tenant_id__=~"b|c"}"#);
    let got: Vec<String> = streams(&v).into_iter().flat_map(|(_, l)| l).collect();
    assert_eq!(got, ["from b", "from c"]);
    // Only __tenant_id__ matchers: Loki refuses the selector.
    assert_eq!(run("a|b", r#"{__tenant_id__="a"}"#).0, 400);
    // One tenant: as before, no __tenant_id__ label.
    let (_, v) = run("a", r#"{app="x"}"#);
    assert_eq!(streams(&v)[0].0, r#"{"app":"x"}"#);
}

#[test]
fn metric_queries_aggregate_across_tenants() {
    let (_d, s, t) = setup();
    let time = (t + 10_000_000_000).to_string();
    let run = |q: &str| {
        let (status, v) = get_as(
            &s.addr(),
            "a|b|c",
            "/loki/api/v1/query",
            &[("query", q), ("time", &time), ("limit", "1")],
        );
        assert_eq!(status, 200, "{v}");
        let mut out: Vec<(String, String)> = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["metric"].to_string(),
                    r["value"][1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        out.sort();
        out
    };
    assert_eq!(
        run(r#"sum by (__tenant_id__) (count_over_time({app="x"}[1m]))"#),
        [
            (r#"{"__tenant_id__":"a"}"#.to_string(), "1".to_string()),
            (r#"{"__tenant_id__":"b"}"#.to_string(), "1".to_string()),
            (r#"{"__tenant_id__":"c"}"#.to_string(), "1".to_string()),
        ]
    );
    assert_eq!(
        run(r#"sum(count_over_time({app="x"}[1m]))"#),
        [("{}".to_string(), "3".to_string())]
    );
    assert_eq!(
        run(r#"sum(count_over_time({app="x", __tenant_id__!="c"}[1m]))"#),
        [("{}".to_string(), "2".to_string())]
    );
}

#[test]
fn metadata_endpoints_merge_tenants() {
    let (_d, s, t) = setup();
    let [(_, start), (_, end)] = range(t);
    let p = [("start", start.as_str()), ("end", end.as_str())];
    let (status, v) = get_as(&s.addr(), "a|b", "/loki/api/v1/labels", &p);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"], serde_json::json!(["__tenant_id__", "app"]));
    let (_, v) = get_as(
        &s.addr(),
        "b|a",
        "/loki/api/v1/label/__tenant_id__/values",
        &p,
    );
    assert_eq!(v["data"], serde_json::json!(["a", "b"]));
    let (_, v) = get_as(&s.addr(), "a|c", "/loki/api/v1/label/app/values", &p);
    assert_eq!(v["data"], serde_json::json!(["x"]));
    let mut sp = p.to_vec();
    sp.push(("match[]", r#"{app="x"}"#));
    let (_, v) = get_as(&s.addr(), "a|b", "/loki/api/v1/series", &sp);
    assert_eq!(
        v["data"],
        serde_json::json!([{"__tenant_id__": "a", "app": "x"}, {"__tenant_id__": "b", "app": "x"}])
    );
    let mut ip = p.to_vec();
    ip.push(("query", r#"{app="x"}"#));
    let (status, v) = get_as(&s.addr(), "a|b|c", "/loki/api/v1/index/stats", &ip);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["streams"], 3, "{v}");
    assert_eq!(v["entries"], 3, "{v}");
    let (_, one) = get_as(&s.addr(), "a", "/loki/api/v1/index/stats", &ip);
    assert_eq!(
        v["bytes"].as_u64().unwrap(),
        3 * one["bytes"].as_u64().unwrap(),
        "{v} {one}"
    );
}

#[test]
fn the_strictest_tenant_limit_applies() {
    let (_d, s, t) = setup();
    let [(_, start), (_, end)] = range(t);
    let q = [
        ("query", r#"{app="x"}"#),
        ("start", start.as_str()),
        ("end", end.as_str()),
        ("limit", "3"),
    ];
    // b allows at most 2 entries per query.
    assert_eq!(
        get_as(&s.addr(), "a|c", "/loki/api/v1/query_range", &q).0,
        200
    );
    let (status, v) = get_as(&s.addr(), "a|b", "/loki/api/v1/query_range", &q);
    assert_eq!(status, 400, "{v}");
}

#[test]
fn without_the_setting_several_tenants_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), "auth_enabled: true\n");
    let (status, v) = get_as(
        &s.addr(),
        "a|b",
        "/loki/api/v1/query_range",
        &[("query", r#"{app="x"}"#)],
    );
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("multiple org IDs present"), "{v}");
    assert_eq!(get_as(&s.addr(), "a|b", "/loki/api/v1/labels", &[]).0, 400);
}
