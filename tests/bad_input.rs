//! Bad push requests against the server process: each gets its 4xx with a message, nothing of
//! what was rejected is stored, compression bombs cost bounded memory, and the server keeps
//! serving (after every bad request a good line is pushed; all of them are read back at the end).
//! With `auth_enabled: true`: tenant IDs are required and checked, and tenants are isolated.

mod common;

use std::collections::BTreeSet;
use std::io::Write;

use common::*;

const CONFIG: &str = "limits_config:
  ingestion_rate_mb: 1000
  ingestion_burst_size_mb: 1000
  max_entries_limit_per_query: 1000000
";
const JSON: &str = "application/json";
const PROTOBUF: &str = "application/x-protobuf";
const DAY_NS: i64 = 24 * 3600 * 1_000_000_000;

fn one_line(labels: &str, ts: i64, line: &str) -> String {
    format!(
        r#"{{"streams":[{{"stream":{labels},"values":[["{ts}",{}]]}}]}}"#,
        serde_json::to_string(line).unwrap()
    )
}

/// Raw snappy as promtail sends it, but with the length header rewritten to `claimed` bytes:
/// a small body that says it decompresses to far more.
fn snappy_claiming(claimed: u64) -> Vec<u8> {
    let body = snap::raw::Encoder::new()
        .compress_vec(&vec![0u8; 1 << 20])
        .unwrap();
    let header_len = body.iter().position(|b| b & 0x80 == 0).unwrap() + 1;
    let mut out = Vec::new();
    let mut v = claimed;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out.extend_from_slice(&body[header_len..]);
    out
}

/// `n` zero bytes, gzipped (about a thousandth of `n`).
fn gzip_zeros(n: usize) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..n / chunk.len() {
        e.write_all(&chunk).unwrap();
    }
    e.finish().unwrap()
}

/// The start of a long answer, for failure messages.
fn clip(text: &str) -> String {
    text.chars().take(500).collect()
}

struct Bad {
    name: &'static str,
    content_type: &'static str,
    encoding: Option<&'static str>,
    body: Vec<u8>,
    /// Acceptable statuses.
    status: &'static [u16],
    /// Text the error message must contain.
    says: &'static str,
}

fn bad(
    name: &'static str,
    status: &'static [u16],
    says: &'static str,
    body: impl Into<Vec<u8>>,
) -> Bad {
    Bad {
        name,
        content_type: JSON,
        encoding: None,
        body: body.into(),
        status,
        says,
    }
}

/// Sends one bad request, checks its answer, then checks the server still takes a good push.
/// Returns the good line.
#[track_caller]
fn check_bad(addr: &str, pid: u32, b: &Bad) -> String {
    // A bomb may cost the server at most about max_recv_msg_size (100 MB) of memory: reset the
    // peak (VmHWM), and compare it with the resident size before the request.
    let bomb = b.name.contains("bomb");
    if bomb {
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
    }
    let rss_before = proc_status_kb(pid, "VmRSS");
    let mut headers = vec![("Content-Type", b.content_type)];
    if let Some(e) = b.encoding {
        headers.push(("Content-Encoding", e));
    }
    let (status, text) = push_with(addr, &headers, &b.body);
    assert!(
        b.status.contains(&status),
        "{}: answered {status}, want one of {:?}: {}",
        b.name,
        b.status,
        clip(&text)
    );
    assert!(
        text.contains(b.says),
        "{}: message {:?} does not say {:?}",
        b.name,
        clip(&text),
        b.says
    );
    if bomb {
        let peak = proc_status_kb(pid, "VmHWM");
        eprintln!(
            "{}: server memory {rss_before} kB before, peak {peak} kB",
            b.name
        );
        assert!(
            peak.saturating_sub(rss_before) < 150 << 10,
            "{}: server memory peaked at {peak} kB, from {rss_before} kB",
            b.name
        );
    }
    let good = format!("good after {}", b.name);
    let (status, text) = push_json(addr, &one_line(r#"{"app":"good"}"#, now_ns(), &good));
    assert_eq!(status, 204, "{}: the good push after it: {text}", b.name);
    good
}

#[test]
fn bad_pushes_get_their_4xx_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), CONFIG);
    let addr = s.addr();
    let pid = s.child.as_ref().unwrap().id();
    let now = now_ns();
    let many_labels = {
        let mut m = serde_json::Map::new();
        m.insert("app".into(), "bad".into());
        for i in 0..10_000 {
            m.insert(format!("l{i}"), "v".into());
        }
        serde_json::Value::Object(m).to_string()
    };
    let partial = format!(
        r#"{{"streams":[{{"stream":{{"app":"partial"}},"values":[["{now}","partial good line"]]}},{{"stream":{{"app":"bad","9bad":"x"}},"values":[["{now}","partial bad line"]]}}]}}"#
    );
    let mut invalid_utf8 = one_line(r#"{"app":"bad"}"#, now, "bad utf8 XX").into_bytes();
    let at = invalid_utf8.windows(2).position(|w| w == b"XX").unwrap();
    invalid_utf8[at..at + 2].copy_from_slice(&[0xff, 0xfe]);
    let cases = [
        bad(
            "malformed json",
            &[400],
            "",
            r#"{"streams":[{"stream":{"app":"bad"},"values":[["1","a"]]"#,
        ),
        bad("json that is not an object", &[400], "", "[1,2,3]"),
        bad(
            "invalid label name",
            &[400],
            "9bad",
            one_line(r#"{"app":"bad","9bad":"x"}"#, now, "bad label name"),
        ),
        bad(
            "label name with a dash",
            &[400],
            "bad-name",
            one_line(r#"{"app":"bad","bad-name":"x"}"#, now, "bad label name"),
        ),
        bad(
            "empty label value",
            &[400],
            "",
            one_line(r#"{"app":"bad","e":""}"#, now, "bad empty value"),
        ),
        bad(
            "no labels",
            &[400],
            "",
            one_line("{}", now, "bad no labels"),
        ),
        bad(
            "duplicate label names",
            &[400],
            "duplicate label name",
            one_line(r#"{"app":"bad","dup":"1","dup":"2"}"#, now, "bad duplicate"),
        ),
        bad(
            "label value too long",
            &[400],
            "label value too long",
            one_line(
                &format!(r#"{{"app":"bad","v":"{}"}}"#, "v".repeat(3000)),
                now,
                "bad long value",
            ),
        ),
        bad(
            "structured metadata too large",
            &[400],
            "structured metadata too large",
            format!(
                r#"{{"streams":[{{"stream":{{"app":"bad"}},"values":[["{now}","bad metadata",{{"k":"{}"}}]]}}]}}"#,
                "m".repeat(70_000)
            ),
        ),
        bad(
            "1 MB line",
            &[400],
            "Max entry size",
            one_line(r#"{"app":"bad"}"#, now, &"x".repeat(1 << 20)),
        ),
        bad(
            "10 MB line",
            &[400, 413],
            "",
            one_line(r#"{"app":"bad"}"#, now, &"y".repeat(10 << 20)),
        ),
        bad("invalid utf-8", &[400], "", invalid_utf8),
        bad(
            "10000 labels",
            &[400],
            "label names",
            one_line(&many_labels, now, "bad many labels"),
        ),
        bad(
            "deep nesting in an unknown key",
            &[400],
            "",
            format!(r#"{{"streams":[],"x":{}"#, "[".repeat(100_000)),
        ),
        bad(
            "deep nesting in values",
            &[400],
            "",
            format!(
                r#"{{"streams":[{{"stream":{{"app":"bad"}},"values":{}"#,
                "[".repeat(100_000)
            ),
        ),
        bad(
            "deep nesting in metadata",
            &[400],
            "",
            format!(
                r#"{{"streams":[{{"stream":{{"app":"bad"}},"values":[["{now}","bad nested md",{{"k":{}"#,
                "{\"k\":".repeat(100_000)
            ),
        ),
        bad(
            "numeric timestamp",
            &[400],
            "",
            format!(
                r#"{{"streams":[{{"stream":{{"app":"bad"}},"values":[[{now},"bad numeric ts"]]}}]}}"#
            ),
        ),
        bad(
            "non-numeric timestamp",
            &[400],
            "",
            one_line(r#"{"app":"bad"}"#, 0, "x").replace("\"0\"", "\"yesterday\""),
        ),
        bad(
            "empty streams",
            &[422],
            "at least one valid stream",
            r#"{"streams":[]}"#,
        ),
        bad("partially valid", &[400], "9bad", partial),
        bad(
            "too old",
            &[400],
            r#"entry for stream '{app="old"}' has timestamp too old"#,
            one_line(r#"{"app":"old"}"#, now - 8 * DAY_NS, "bad too old"),
        ),
        bad(
            "too far in the future",
            &[400],
            "too new",
            one_line(r#"{"app":"bad"}"#, now + DAY_NS, "bad future"),
        ),
        Bad {
            encoding: Some("br"),
            ..bad(
                "unsupported content-encoding",
                &[400],
                "br",
                one_line(r#"{"app":"bad"}"#, now, "bad brotli"),
            )
        },
        Bad {
            encoding: Some("gzip"),
            ..bad(
                "gzip that is not gzip",
                &[400],
                "",
                one_line(r#"{"app":"bad"}"#, now, "bad not gzip"),
            )
        },
        Bad {
            content_type: PROTOBUF,
            ..bad(
                "protobuf that is not snappy",
                &[400],
                "",
                "not snappy at all",
            )
        },
        Bad {
            content_type: PROTOBUF,
            ..bad(
                "snappy bomb, small body claiming 200 MB",
                &[413],
                "max_recv_msg_size",
                snappy_claiming(200 << 20),
            )
        },
        Bad {
            content_type: PROTOBUF,
            ..bad(
                "snappy header claiming 2^32-1 bytes",
                &[400, 413],
                "",
                snappy_claiming(u32::MAX as u64),
            )
        },
        Bad {
            content_type: PROTOBUF,
            ..bad(
                "snappy bomb, 200 MB of zeros",
                &[413],
                "max_recv_msg_size",
                snap::raw::Encoder::new()
                    .compress_vec(&vec![0u8; 200 << 20])
                    .unwrap(),
            )
        },
        Bad {
            encoding: Some("gzip"),
            ..bad(
                "gzip bomb, 200 MB of zeros",
                &[413],
                "max_recv_msg_size",
                gzip_zeros(200 << 20),
            )
        },
    ];
    for c in &cases {
        if c.name.contains("bomb") {
            assert!(
                c.body.len() < 10 << 20,
                "{}: {} bytes",
                c.name,
                c.body.len()
            );
        }
    }
    let mut good: BTreeSet<String> = cases.iter().map(|c| check_bad(&addr, pid, c)).collect();
    good.insert("partial good line".into());

    // Only the good lines were stored: the rejected streams and entries left nothing behind.
    let got = query_all(
        &addr,
        &[],
        r#"{app=~".+"}"#,
        now - 9 * DAY_NS,
        now_ns() + 60_000_000_000,
    )
    .unwrap();
    let got: BTreeSet<String> = got.into_iter().map(|(_, _, l)| l).collect();
    assert_eq!(got, good);
    let (status, labels) = get(
        &addr,
        "/loki/api/v1/labels",
        &[("start", &(now - 9 * DAY_NS).to_string())],
    );
    assert_eq!(status, 200, "{labels}");
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["data"], serde_json::json!(["app"]));
}

#[track_caller]
fn push_as(addr: &str, tenant: Option<&str>, line: &str) -> (u16, String) {
    let mut headers = vec![("Content-Type", JSON)];
    if let Some(t) = tenant {
        headers.push(("X-Scope-OrgID", t));
    }
    push_with(
        addr,
        &headers,
        one_line(r#"{"app":"auth"}"#, now_ns(), line).as_bytes(),
    )
}

#[track_caller]
fn lines_of(addr: &str, tenant: &str) -> BTreeSet<String> {
    let got = query_all(
        addr,
        &[("X-Scope-OrgID", tenant)],
        r#"{app="auth"}"#,
        now_ns() - DAY_NS,
        now_ns() + 60_000_000_000,
    )
    .unwrap();
    got.into_iter().map(|(_, _, l)| l).collect()
}

#[test]
fn tenant_ids_are_required_and_checked_and_tenants_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        &dir.path().join("data"),
        &format!("auth_enabled: true\n{CONFIG}"),
    );
    let addr = s.addr();
    for (tenant, status) in [
        (None, 401),
        (Some(""), 401),
        (Some("../etc"), 400),
        (Some(".."), 400),
        (Some("a/b"), 400),
        (Some("a|b"), 400),
        (Some("ten ant"), 400),
        (Some(&*"x".repeat(151)), 400),
    ] {
        let (got, text) = push_as(&addr, tenant, "rejected");
        assert_eq!(got, status, "push as {tenant:?}: {text}");
        let mut headers = vec![];
        if let Some(t) = tenant {
            headers.push(("X-Scope-OrgID", t));
        }
        let err = query_all(&addr, &headers, r#"{app="auth"}"#, 0, now_ns())
            .expect_err("query without a valid tenant");
        assert_eq!(err.0, status, "query as {tenant:?}: {}", err.1);
    }
    assert_eq!(push_as(&addr, Some("a"), "line of a").0, 204);
    assert_eq!(push_as(&addr, Some("b"), "line of b").0, 204);
    assert_eq!(
        lines_of(&addr, "a"),
        BTreeSet::from(["line of a".to_string()])
    );
    assert_eq!(
        lines_of(&addr, "b"),
        BTreeSet::from(["line of b".to_string()])
    );
    assert!(lines_of(&addr, "c").is_empty());
    let (status, series) = get_as(
        &addr,
        "c",
        "/loki/api/v1/series",
        &[("match[]", r#"{app="auth"}"#)],
    );
    assert_eq!(status, 200, "{series}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&series).unwrap()["data"],
        serde_json::json!([])
    );
    // Nothing was stored under a path built from a rejected tenant ID.
    let mut dirs: Vec<String> = std::fs::read_dir(dir.path().join("data/tenants"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    dirs.sort();
    assert!(dirs.iter().all(|d| d == "t-61" || d == "t-62"), "{dirs:?}");
}

fn get_as(addr: &str, tenant: &str, path: &str, params: &[(&str, &str)]) -> (u16, String) {
    let url = format!(
        "{addr}{path}?{}",
        serde_urlencoded::to_string(params).unwrap()
    );
    try_request(
        "GET",
        &url,
        &[("X-Scope-OrgID", tenant)],
        None,
        std::time::Duration::from_secs(30),
    )
    .unwrap()
}

/// Sends one bad read request; checks its status and that a good query still works after it.
#[track_caller]
fn check_bad_read(addr: &str, path: &str, params: &[(&str, &str)], want: u16, says: &str) {
    let url = format!(
        "{addr}{path}?{}",
        serde_urlencoded::to_string(params).unwrap()
    );
    let (status, text) = try_request("GET", &url, &[], None, std::time::Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{path} {params:?}: no answer: {e}"));
    assert_eq!(status, want, "{path} {params:?}: {text}");
    assert!(
        text.contains(says),
        "{path} {params:?}: {text:?} does not say {says:?}"
    );
    let got = query_all(
        addr,
        &[],
        r#"{app="good"}"#,
        now_ns() - DAY_NS,
        now_ns() + 1,
    )
    .unwrap();
    assert_eq!(got.len(), 1, "after {path} {params:?}");
}

#[test]
fn bad_queries_get_400_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), CONFIG);
    let addr = s.addr();
    let (status, text) = push_json(&addr, &one_line(r#"{"app":"good"}"#, now_ns(), "good"));
    assert_eq!(status, 204, "{text}");
    const Q: &str = "/loki/api/v1/query_range";
    let sel = ("query", r#"{app="good"}"#);
    for (path, params, says) in [
        (Q, vec![], "query"),
        (Q, vec![("query", "{app=")], ""),
        (Q, vec![("query", r#"{app=~"("}"#)], ""),
        (Q, vec![("query", "{}")], ""),
        (Q, vec![("query", r#"{app="good"} |= "#)], ""),
        (Q, vec![sel, ("limit", "0")], "limit"),
        (Q, vec![sel, ("limit", "-5")], "limit"),
        (Q, vec![sel, ("limit", "abc")], "limit"),
        (Q, vec![sel, ("limit", "99999999999999999999")], "limit"),
        (
            Q,
            vec![sel, ("limit", "1000001")],
            "max_entries_limit_per_query",
        ),
        (Q, vec![sel, ("start", "yesterday")], "start"),
        (Q, vec![sel, ("end", "tomorrow")], "end"),
        (Q, vec![sel, ("start", "2000"), ("end", "1000")], "end"),
        (Q, vec![sel, ("since", "forever")], "since"),
        (Q, vec![sel, ("direction", "sideways")], "direction"),
        ("/loki/api/v1/series", vec![("match[]", "{app=")], ""),
        ("/loki/api/v1/labels", vec![("query", "{app=")], ""),
        (
            "/loki/api/v1/label/app/values",
            vec![("start", "yesterday")],
            "start",
        ),
    ] {
        check_bad_read(&addr, path, &params, 400, says);
    }
}

/// A read whose `end` is the smallest timestamp: `start` defaults to `end - since`, which used
/// to overflow i64 (a panic in debug builds). It is a valid, empty range: 200 with no result.
#[test]
fn smallest_end_timestamp_is_answered_empty() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), CONFIG);
    let (status, text) = push_json(&s.addr(), &one_line(r#"{"app":"good"}"#, now_ns(), "good"));
    assert_eq!(status, 204, "{text}");
    check_bad_read(
        &s.addr(),
        "/loki/api/v1/query_range",
        &[
            ("query", r#"{app="good"}"#),
            ("end", "-9223372036854775808"),
        ],
        200,
        r#""result":[]"#,
    );
}

/// With `reject_old_samples: false` any timestamp is accepted, so one block can span more than
/// i64::MAX nanoseconds. `HeadBlock::seal` computes timestamp deltas with `-` (src/chunk.rs),
/// which overflows: debug builds panic wherever the block is sealed (push, flusher thread,
/// shutdown flush, so no segment is ever written); release builds wrap, which the decoder
/// (`wrapping_add`) undoes.
#[test]
fn extreme_timestamps_survive_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = Server::start(
        &data,
        &format!("{CONFIG}  reject_old_samples: false\n  max_query_length: 0\n"),
    );
    let now = now_ns();
    let body = format!(
        r#"{{"streams":[{{"stream":{{"app":"edge"}},"values":[["{}","smallest"],["{now}","now"]]}}]}}"#,
        i64::MIN
    );
    let (status, text) = push_json(&s.addr(), &body);
    assert_eq!(status, 204, "{text}");
    s.stop();
    assert!(
        !segment_files(&data, "fake").is_empty(),
        "a clean stop writes a segment"
    );
    s.restart();
    let got = query_all(&s.addr(), &[], r#"{app="edge"}"#, i64::MIN, i64::MAX).unwrap();
    let got: Vec<(i64, String)> = got.into_iter().map(|(_, ts, l)| (ts, l)).collect();
    assert_eq!(
        got,
        vec![(i64::MIN, "smallest".into()), (now, "now".into())]
    );
}
