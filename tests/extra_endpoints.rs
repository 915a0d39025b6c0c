//! The metadata endpoints beside the query path, against the server process: `format_query`,
//! `index/stats`, `index/volume`, `index/volume_range`, `detected_labels`, `detected_fields`
//! and `detected_field/NAME/values`, each answer compared whole; and `/loki/api/v2alpha/tail`
//! answering 404 (Grafana takes anything else for a v2 tail endpoint).
//!
//! The fixture, all in one minute `T` except one line at `T+65s`:
//! `{app="api",env="prod"}`: two JSON lines with a `trace_id` in structured metadata;
//! `{app="web",env="prod"}`: three logfmt lines; `{app="db",env="dev",instance="10",build="123"}`:
//! one plain line.

mod common;

use common::*;

const SEC: i64 = 1_000_000_000;
const FORM: &str = "application/x-www-form-urlencoded";

const API_1: &str = r#"{"level":"info","duration":"15ms","status":200,"msg":"ok"}"#;
const API_2: &str = r#"{"level":"error","duration":"1.5s","status":500,"msg":"boom"}"#;
const WEB_1: &str = "level=info took=250ms bytes=10KB path=/a";
const WEB_2: &str = "level=warn took=1s bytes=2MB path=/b";
const WEB_3: &str = "level=info took=3s bytes=10KB path=/a";
const DB_1: &str = "connection established";

/// Bytes an entry takes uncompressed as stored: its line, plus its structured metadata as a
/// count and length-prefixed names and values (one byte each for these short ones).
fn stored(line: &str, metadata: &[(&str, &str)]) -> u64 {
    let md: usize = metadata.iter().map(|(k, v)| 2 + k.len() + v.len()).sum();
    (line.len() + 1 + md) as u64
}

fn api_bytes() -> u64 {
    stored(API_1, &[("trace_id", "t1")]) + stored(API_2, &[("trace_id", "t2")])
}

/// The start of a whole minute half an hour ago.
fn minute_t() -> i64 {
    (now_ns() / (60 * SEC) - 30) * 60 * SEC
}

fn push_fixture(addr: &str, t: i64) {
    let body = serde_json::json!({"streams": [
        {"stream": {"app": "api", "env": "prod"}, "values": [
            [(t + SEC).to_string(), API_1, {"trace_id": "t1"}],
            [(t + 2 * SEC).to_string(), API_2, {"trace_id": "t2"}],
        ]},
        {"stream": {"app": "web", "env": "prod"}, "values": [
            [(t + 3 * SEC).to_string(), WEB_1],
            [(t + 4 * SEC).to_string(), WEB_2],
            [(t + 65 * SEC).to_string(), WEB_3],
        ]},
        {"stream": {"app": "db", "env": "dev", "instance": "10", "build": "123"}, "values": [
            [(t + 6 * SEC).to_string(), DB_1],
        ]},
    ]});
    let (status, text) = push_json(addr, &body.to_string());
    assert_eq!(status, 204, "{text}");
}

fn start_with_fixture() -> (tempfile::TempDir, Server, i64) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), "");
    let t = minute_t();
    push_fixture(&server.addr(), t);
    (dir, server, t)
}

/// GET `path` with `query`, `start` and `end` plus `extra` parameters.
#[track_caller]
fn ask(
    addr: &str,
    path: &str,
    query: &str,
    start: i64,
    end: i64,
    extra: &[(&str, &str)],
) -> (u16, String) {
    let (start, end) = (start.to_string(), end.to_string());
    let mut params = vec![("query", query), ("start", &start), ("end", &end)];
    params.extend_from_slice(extra);
    get(addr, path, &params)
}

#[track_caller]
fn ok(answer: (u16, String)) -> String {
    assert_eq!(answer.0, 200, "{}", answer.1);
    answer.1
}

#[test]
fn format_query_answers_pretty_text_or_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), "");
    let addr = server.addr();
    let path = "/loki/api/v1/format_query";
    assert_eq!(
        get(&addr, path, &[("query", r#"{app="api"}|="error""#)]),
        (
            200,
            "{\"status\":\"success\",\"data\":\"{app=\\\"api\\\"} |= \\\"error\\\"\"}\n".into()
        )
    );
    // As Go's encoding/json writes it: `<` and `>` escaped.
    assert_eq!(
        get(&addr, path, &[("query", r#"{app="api"} |> "<_> error""#)]),
        (
            200,
            "{\"status\":\"success\",\"data\":\"{app=\\\"api\\\"} |\\u003e \\\"\\u003c_\\u003e error\\\"\"}\n".into()
        )
    );
    let err = sawmill::logql::parse_expr("{app=").unwrap_err().to_string();
    assert_eq!(
        get(&addr, path, &[("query", "{app=")]),
        (
            400,
            format!(
                "{{\"status\":\"invalid-query\",\"error\":{}}}\n",
                serde_json::to_string(&err).unwrap()
            )
        )
    );
    let form = post(
        &format!("{addr}{path}"),
        FORM,
        None,
        b"query=%7Bapp%3D%22api%22%7D",
    );
    assert_eq!(
        form,
        (
            200,
            "{\"status\":\"success\",\"data\":\"{app=\\\"api\\\"}\"}\n".into()
        )
    );
}

#[test]
fn v2alpha_tail_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), "");
    let (status, _) = get(
        &server.addr(),
        "/loki/api/v2alpha/tail",
        &[("query", r#"{app="api"}"#)],
    );
    assert_eq!(status, 404);
}

#[test]
fn index_stats_count_streams_chunks_bytes_and_entries() {
    let (_dir, server, t) = start_with_fixture();
    let addr = server.addr();
    let path = "/loki/api/v1/index/stats";
    let (start, end) = (t, t + 120 * SEC);
    let prod = api_bytes() + stored(WEB_1, &[]) + stored(WEB_2, &[]) + stored(WEB_3, &[]);
    let want = format!(r#"{{"streams":2,"chunks":2,"bytes":{prod},"entries":5}}"#);
    assert_eq!(
        ok(ask(&addr, path, r#"{env="prod"}"#, start, end, &[])),
        want
    );
    // A pipeline does not change what the index holds.
    assert_eq!(
        ok(ask(
            &addr,
            path,
            r#"{env="prod"} |= "boom" | json"#,
            start,
            end,
            &[]
        )),
        want
    );
    // Only entries in [start, end) count.
    assert_eq!(
        ok(ask(
            &addr,
            path,
            r#"{app="web"}"#,
            t + 3 * SEC,
            t + 5 * SEC,
            &[]
        )),
        format!(
            r#"{{"streams":1,"chunks":1,"bytes":{},"entries":2}}"#,
            stored(WEB_1, &[]) + stored(WEB_2, &[])
        )
    );
    assert_eq!(
        ok(ask(&addr, path, r#"{app="nothing"}"#, start, end, &[])),
        r#"{"streams":0,"chunks":0,"bytes":0,"entries":0}"#
    );
    // POST with a form body, like the other read endpoints.
    let form = format!(
        "query=%7Bapp%3D%22api%22%7D&start={start}&end={end}",
        start = start,
        end = end
    );
    assert_eq!(
        post(&format!("{addr}{path}"), FORM, None, form.as_bytes()),
        (
            200,
            format!(
                r#"{{"streams":1,"chunks":1,"bytes":{},"entries":2}}"#,
                api_bytes()
            )
        )
    );
    // As Loki: a selector must narrow the streams.
    let (status, text) = ask(&addr, path, "{}", start, end, &[]);
    assert_eq!(status, 400, "{text}");
    let (status, text) = ask(&addr, path, r#"{env="prod""#, start, end, &[]);
    assert_eq!(status, 400, "{text}");
}

#[test]
fn stats_and_volume_are_the_same_after_a_flush_to_segments() {
    let (_dir, mut server, t) = start_with_fixture();
    let (start, end) = (t, t + 120 * SEC);
    let read = |addr: &str| {
        (
            ok(ask(
                addr,
                "/loki/api/v1/index/stats",
                r#"{env=~".+"}"#,
                start,
                end,
                &[],
            )),
            ok(ask(
                addr,
                "/loki/api/v1/index/volume",
                r#"{env=~".+"}"#,
                start,
                end,
                &[("targetLabels", "app")],
            )),
        )
    };
    let before = read(&server.addr());
    server.stop();
    assert!(
        !segment_files(&server.data, "fake").is_empty(),
        "no segment after a stop"
    );
    server.restart();
    assert_eq!(read(&server.addr()), before);
    let all = api_bytes()
        + stored(WEB_1, &[])
        + stored(WEB_2, &[])
        + stored(WEB_3, &[])
        + stored(DB_1, &[]);
    assert_eq!(
        before.0,
        format!(r#"{{"streams":3,"chunks":3,"bytes":{all},"entries":6}}"#)
    );
}

#[test]
fn volume_by_series_and_by_labels() {
    let (_dir, server, t) = start_with_fixture();
    let addr = server.addr();
    let path = "/loki/api/v1/index/volume";
    let (start, end) = (t, t + 120 * SEC);
    let at = end / SEC;
    let api = api_bytes();
    let web = stored(WEB_1, &[]) + stored(WEB_2, &[]) + stored(WEB_3, &[]);
    let db = stored(DB_1, &[]);
    let vector = |items: &[(&str, u64)]| {
        let result: Vec<String> = items
            .iter()
            .map(|(metric, v)| format!(r#"{{"metric":{metric},"value":[{at},"{v}"]}}"#))
            .collect();
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{}],"stats":{{}}}}}}"#,
            result.join(",")
        )
    };
    // By default a series is named by the labels of the selector's matchers.
    assert_eq!(
        ok(ask(&addr, path, r#"{env="prod"}"#, start, end, &[])),
        vector(&[(r#"{"env":"prod"}"#, api + web)])
    );
    // targetLabels name the series instead, largest first.
    assert!(
        api > web && web > db,
        "fixture: api {api} > web {web} > db {db}"
    );
    assert_eq!(
        ok(ask(
            &addr,
            path,
            r#"{env="prod"}"#,
            start,
            end,
            &[("targetLabels", "app")]
        )),
        vector(&[(r#"{"app":"api"}"#, api), (r#"{"app":"web"}"#, web)])
    );
    assert_eq!(
        ok(ask(
            &addr,
            path,
            r#"{env="prod"}"#,
            start,
            end,
            &[("targetLabels", "app"), ("limit", "1")]
        )),
        vector(&[(r#"{"app":"api"}"#, api)])
    );
    // `{}` is every stream, each under all its labels.
    assert_eq!(
        ok(ask(&addr, path, "{}", start, end, &[])),
        vector(&[
            (r#"{"app":"api","env":"prod"}"#, api),
            (r#"{"app":"web","env":"prod"}"#, web),
            (
                r#"{"app":"db","build":"123","env":"dev","instance":"10"}"#,
                db
            ),
        ])
    );
    // By label name: each stream's bytes count for every label it has; ties by name.
    assert_eq!(
        ok(ask(
            &addr,
            path,
            r#"{env="prod"}"#,
            start,
            end,
            &[("aggregateBy", "labels")]
        )),
        vector(&[(r#"{"app":""}"#, api + web), (r#"{"env":""}"#, api + web)])
    );
    assert_eq!(
        ok(ask(
            &addr,
            path,
            r#"{env=~".+"}"#,
            start,
            end,
            &[("aggregateBy", "labels"), ("targetLabels", "instance")]
        )),
        vector(&[(r#"{"instance":""}"#, db)])
    );
    let (status, text) = ask(
        &addr,
        path,
        r#"{env="prod"}"#,
        start,
        end,
        &[("aggregateBy", "pods")],
    );
    assert_eq!(status, 400, "{text}");
}

#[test]
fn volume_range_buckets_by_step() {
    let (_dir, server, t) = start_with_fixture();
    let addr = server.addr();
    let path = "/loki/api/v1/index/volume_range";
    let (start, end) = (t, t + 120 * SEC);
    let api = api_bytes();
    let web_first = stored(WEB_1, &[]) + stored(WEB_2, &[]);
    let web_second = stored(WEB_3, &[]);
    let (first, second) = (format!("{}.999", t / SEC + 59), (t + 120 * SEC) / SEC);
    // Two one-minute buckets; each sample is at its bucket's end (1 ms before the next one).
    // Series are sorted by their first sample, largest first.
    assert!(api > web_first, "fixture: api {api} > web {web_first}");
    let api_series = format!(r#"{{"metric":{{"app":"api"}},"values":[[{first},"{api}"]]}}"#);
    let web_series = format!(
        r#"{{"metric":{{"app":"web"}},"values":[[{first},"{web_first}"],[{second},"{web_second}"]]}}"#
    );
    let want = format!(
        r#"{{"status":"success","data":{{"resultType":"matrix","result":[{api_series},{web_series}],"stats":{{}}}}}}"#
    );
    assert_eq!(
        ok(ask(
            &addr,
            path,
            r#"{env="prod"}"#,
            start,
            end,
            &[("targetLabels", "app"), ("step", "60s")]
        )),
        want
    );
    // One bucket per series: Loki answers a vector then.
    assert_eq!(
        ok(ask(
            &addr,
            path,
            r#"{app="api"}"#,
            start,
            end,
            &[("step", "60s")]
        )),
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{"app":"api"}},"value":[{first},"{api}"]}}],"stats":{{}}}}}}"#
        )
    );
    let (status, text) = ask(
        &addr,
        path,
        r#"{app="api"}"#,
        start,
        end,
        &[("step", "1ms")],
    );
    assert_eq!(status, 400, "{text}");
}

#[test]
fn detected_labels_skip_id_like_labels_but_keep_static_ones() {
    let (_dir, server, t) = start_with_fixture();
    let addr = server.addr();
    let path = "/loki/api/v1/detected_labels";
    let (start, end) = (t, t + 120 * SEC);
    // `build` has only numeric values: left out. `instance` too, but it is a static label.
    assert_eq!(
        ok(ask(&addr, path, "", start, end, &[])),
        r#"{"detectedLabels":[{"label":"app","cardinality":3},{"label":"env","cardinality":2},{"label":"instance","cardinality":1}]}"#
    );
    assert_eq!(
        ok(ask(&addr, path, r#"{env="prod"}"#, start, end, &[])),
        r#"{"detectedLabels":[{"label":"app","cardinality":2},{"label":"env","cardinality":1}]}"#
    );
    assert_eq!(
        ok(ask(&addr, path, r#"{env="qa"}"#, start, end, &[])),
        r#"{"detectedLabels":[]}"#
    );
}

#[test]
fn detected_fields_from_json_logfmt_and_structured_metadata() {
    let (_dir, server, t) = start_with_fixture();
    let addr = server.addr();
    let path = "/loki/api/v1/detected_fields";
    let (start, end) = (t, t + 120 * SEC);
    let field = |label: &str, kind: &str, n: usize, parsers: &str| {
        format!(r#"{{"label":"{label}","type":"{kind}","cardinality":{n},"parsers":{parsers}}}"#)
    };
    assert_eq!(
        ok(ask(&addr, path, r#"{env="prod"}"#, start, end, &[])),
        format!(
            r#"{{"fields":[{}],"limit":1000}}"#,
            [
                field("bytes", "bytes", 2, r#"["logfmt"]"#),
                field("duration", "duration", 2, r#"["json"]"#),
                field("level", "string", 3, r#"["json","logfmt"]"#),
                field("msg", "string", 2, r#"["json"]"#),
                field("path", "string", 2, r#"["logfmt"]"#),
                field("status", "int", 2, r#"["json"]"#),
                field("took", "duration", 3, r#"["logfmt"]"#),
                field("trace_id", "string", 2, "null"),
            ]
            .join(",")
        )
    );
    // The newest line only.
    assert_eq!(
        ok(ask(
            &addr,
            path,
            r#"{env="prod"}"#,
            start,
            end,
            &[("line_limit", "1")]
        )),
        format!(
            r#"{{"fields":[{}],"limit":1000}}"#,
            [
                field("bytes", "bytes", 1, r#"["logfmt"]"#),
                field("level", "string", 1, r#"["logfmt"]"#),
                field("path", "string", 1, r#"["logfmt"]"#),
                field("took", "duration", 1, r#"["logfmt"]"#),
            ]
            .join(",")
        )
    );
    // At most `limit` fields: the first ones met (newest api line: metadata, then parsed).
    assert_eq!(
        ok(ask(
            &addr,
            path,
            r#"{env="prod"}"#,
            start,
            end,
            &[("limit", "2")]
        )),
        format!(
            r#"{{"fields":[{}],"limit":2}}"#,
            [
                field("duration", "duration", 2, r#"["json"]"#),
                field("trace_id", "string", 2, "null"),
            ]
            .join(",")
        )
    );
    // The query's pipeline selects the lines.
    assert_eq!(
        ok(ask(
            &addr,
            path,
            r#"{app="web"} | logfmt | level="info""#,
            start,
            end,
            &[]
        )),
        format!(
            r#"{{"fields":[{}],"limit":1000}}"#,
            [
                field("bytes", "bytes", 1, r#"["logfmt"]"#),
                field("level", "string", 1, r#"["logfmt"]"#),
                field("path", "string", 1, r#"["logfmt"]"#),
                field("took", "duration", 2, r#"["logfmt"]"#),
            ]
            .join(",")
        )
    );
    assert_eq!(
        ok(ask(&addr, path, r#"{app="nothing"}"#, start, end, &[])),
        r#"{"fields":[]}"#
    );
    let (status, text) = ask(
        &addr,
        path,
        r#"{env="prod"}"#,
        start,
        end,
        &[("line_limit", "6000")],
    );
    assert_eq!(status, 400, "{text}");
    let (status, text) = ask(&addr, path, "", start, end, &[]);
    assert_eq!(status, 400, "{text}");
}

#[test]
fn detected_field_values_of_parsed_and_metadata_fields() {
    let (_dir, server, t) = start_with_fixture();
    let addr = server.addr();
    let (start, end) = (t, t + 120 * SEC);
    let values = |name: &str, extra: &[(&str, &str)]| {
        ok(ask(
            &addr,
            &format!("/loki/api/v1/detected_field/{name}/values"),
            r#"{env="prod"}"#,
            start,
            end,
            extra,
        ))
    };
    assert_eq!(
        values("level", &[]),
        r#"{"values":["error","info","warn"],"limit":1000}"#
    );
    assert_eq!(
        values("trace_id", &[]),
        r#"{"values":["t1","t2"],"limit":1000}"#
    );
    // Byte sizes come back as go-humanize writes them, ready for a query.
    assert_eq!(
        values("bytes", &[]),
        r#"{"values":["10kB","2.0MB"],"limit":1000}"#
    );
    // Entries stop being read once `limit` values are found (newest api line: "boom").
    assert_eq!(
        values("msg", &[("limit", "1")]),
        r#"{"values":["boom"],"limit":1}"#
    );
    assert_eq!(values("nothing", &[]), r#"{"values":[]}"#);
}
