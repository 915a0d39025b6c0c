//! `GET /loki/api/v1/tail` over a real WebSocket: Loki's frames, the history since `start`,
//! pipelines, `delay_for` ordering, the per-tenant limit, bad parameters, and a slow client
//! that loses entries (reported in `dropped_entries`) without slowing pushes.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{metric, now_ns, push_json, Server};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

fn connect(s: &Server, params: &[(&str, &str)]) -> Result<Ws, (u16, String)> {
    let q = serde_urlencoded::to_string(params).unwrap();
    let url = format!("ws://127.0.0.1:{}/loki/api/v1/tail?{q}", s.port);
    match tungstenite::connect(url) {
        Ok((ws, _)) => {
            if let MaybeTlsStream::Plain(t) = ws.get_ref() {
                t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            }
            Ok(ws)
        }
        Err(tungstenite::Error::Http(r)) => Err((
            r.status().as_u16(),
            String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        Err(e) => panic!("tail connect failed: {e}"),
    }
}

/// The next text frame, as JSON (pings are skipped).
fn next_frame(ws: &mut Ws) -> serde_json::Value {
    loop {
        match ws.read().expect("tail frame") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(c) => panic!("tail closed: {c:?}"),
            _ => {}
        }
    }
}

/// (ts, line) of every entry in a frame, in order.
fn lines(frame: &serde_json::Value) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for s in frame["streams"].as_array().into_iter().flatten() {
        for v in s["values"].as_array().unwrap() {
            out.push((
                v[0].as_str().unwrap().parse().unwrap(),
                v[1].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

fn push(s: &Server, labels: &str, entries: &[(i64, &str)]) {
    let values: Vec<serde_json::Value> = entries
        .iter()
        .map(|(ts, l)| serde_json::json!([ts.to_string(), l]))
        .collect();
    let stream: serde_json::Value = serde_json::from_str(labels).unwrap();
    let body = serde_json::json!({"streams":[{"stream": stream, "values": values}]});
    let (status, text) = push_json(&s.addr(), &body.to_string());
    assert_eq!(status, 204, "{text}");
}

#[test]
fn frames_history_and_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("d"), "");
    let t0 = now_ns();
    push(
        &s,
        r#"{"app":"t"}"#,
        &[
            (t0 - 2000, "old level=info"),
            (t0 - 1000, "old level=error"),
        ],
    );
    let start = (t0 - 10_000).to_string();
    let mut ws = connect(
        &s,
        &[
            ("query", r#"{app="t"} | logfmt | level="error""#),
            ("start", &start),
        ],
    )
    .unwrap();
    // The history first: only what the pipeline keeps, with the labels it adds.
    let f = next_frame(&mut ws);
    assert_eq!(lines(&f), [(t0 - 1000, "old level=error".to_string())]);
    assert_eq!(
        f["streams"][0]["stream"],
        serde_json::json!({"app":"t","level":"error"})
    );
    assert!(f.get("dropped_entries").is_none(), "{f}");
    // Then new lines, as they are pushed; other streams and filtered lines never come.
    push(&s, r#"{"app":"other"}"#, &[(t0 + 1, "x level=error")]);
    push(
        &s,
        r#"{"app":"t"}"#,
        &[(t0 + 2, "new level=info"), (t0 + 3, "new level=error")],
    );
    let f = next_frame(&mut ws);
    assert_eq!(
        f,
        serde_json::json!({"streams":[{"stream":{"app":"t","level":"error"},"values":[[(t0 + 3).to_string(),"new level=error"]]}]})
    );
}

#[test]
fn delay_for_sends_late_entries_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("d"), "");
    let mut ws = connect(&s, &[("query", r#"{app="d"}"#), ("delay_for", "1")]).unwrap();
    let t0 = now_ns();
    push(&s, r#"{"app":"d"}"#, &[(t0 + 20, "second")]);
    push(&s, r#"{"app":"d", "x":"y"}"#, &[(t0 + 10, "first")]);
    let f = next_frame(&mut ws);
    let mut got = lines(&f);
    if got.len() < 2 {
        got.extend(lines(&next_frame(&mut ws)));
    }
    // Across streams, the frame's entries are in time order once merged.
    got.sort_by_key(|(ts, _)| *ts);
    assert_eq!(
        got.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>(),
        ["first", "second"]
    );
    assert_eq!(lines(&f).len(), 2, "both entries arrive in one frame: {f}");
}

#[test]
fn bad_parameters_and_the_tenant_limit_get_400() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        &dir.path().join("d"),
        "limits_config:\n  max_concurrent_tail_requests: 2\n",
    );
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("query", r#"count_over_time({a="b"}[1m])"#)],
            "metric queries cannot be tailed",
        ),
        (
            &[("query", r#"{a="b"}"#), ("delay_for", "6")],
            "delay_for can't be greater than 5",
        ),
        (
            &[("query", r#"{a="b"}"#), ("limit", "5001")],
            "max entries limit",
        ),
        (&[("query", r#"{a="b""#)], "parse error"),
        (&[], "query parameter is required"),
    ];
    for (params, want) in cases {
        let (status, body) = connect(&s, params).expect_err("refused");
        assert_eq!(status, 400, "{params:?}: {body}");
        assert!(body.contains(want), "{params:?}: {body}");
    }
    let _a = connect(&s, &[("query", r#"{a="b"}"#)]).unwrap();
    let _b = connect(&s, &[("query", r#"{a="c"}"#)]).unwrap();
    let (status, body) = connect(&s, &[("query", r#"{a="b"}"#)]).expect_err("over the limit");
    assert_eq!(status, 400);
    assert!(
        body.contains("max concurrent tail requests limit exceeded, count > limit (3 > 2)"),
        "{body}"
    );
    // A closed tail frees its place.
    drop(_a);
    let started = Instant::now();
    while connect(&s, &[("query", r#"{a="b"}"#)]).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the closed tail was not released"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_slow_client_loses_entries_and_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        &dir.path().join("d"),
        "limits_config:\n  ingestion_rate_mb: 1000\n  ingestion_burst_size_mb: 1000\n",
    );
    let mut ws = connect(&s, &[("query", r#"{app="slow"}"#)]).unwrap();
    // Nothing is read while 120,000 lines of 200 bytes (24 MB) are pushed: more than the
    // socket buffers and the tail's backlog hold.
    let pad = "x".repeat(190);
    let t0 = now_ns();
    let pushes = 60;
    let per = 2000;
    for p in 0..pushes {
        let entries: Vec<(i64, String)> = (0..per)
            .map(|i| {
                let n = p * per + i;
                (t0 + n as i64, format!("{n:08} {pad}"))
            })
            .collect();
        let refs: Vec<(i64, &str)> = entries.iter().map(|(t, l)| (*t, l.as_str())).collect();
        push(&s, r#"{"app":"slow"}"#, &refs);
    }
    let total = (pushes * per) as u64;
    let (mut received, mut reported) = (0u64, 0u64);
    let mut last = -1i64;
    while received + (metric(&s.addr(), "sawmill_tail_dropped_entries_total") as u64) < total {
        let f = next_frame(&mut ws);
        for (ts, _) in lines(&f) {
            assert!(ts > last, "entries arrive once and in order");
            last = ts;
            received += 1;
        }
        reported += f["dropped_entries"]
            .as_array()
            .map_or(0, |d| d.len() as u64);
        if let Some(d) = f["dropped_entries"].as_array() {
            assert_eq!(d[0]["labels"], serde_json::json!({"app":"slow"}));
            assert!(d[0]["timestamp"].as_str().unwrap().parse::<i64>().unwrap() >= t0);
        }
    }
    let dropped = metric(&s.addr(), "sawmill_tail_dropped_entries_total") as u64;
    assert!(dropped > 0, "a client that reads nothing must lose entries");
    assert!(
        reported > 0 && reported <= dropped,
        "reported {reported}, dropped {dropped}"
    );
    assert_eq!(received + dropped, total);
}
