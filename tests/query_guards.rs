//! Queries cannot take the server down: a tenant's concurrent queries are capped (429), a
//! query that would read too much or hold too much memory is refused or stopped with a message
//! naming the limit, `max_query_lookback` bounds how far back a range reaches, range queries
//! have Prometheus' 11,000-points cap, the parser refuses deep nesting, and a client that
//! disconnects stops its query's work (the server's CPU goes idle).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const HOUR_NS: i64 = 3_600_000_000_000;

/// Pushes `n` JSON lines of stream `{app}` ending now, `batch` per push.
fn push_many(addr: &str, app: &str, n: usize, batch: usize, start: i64) {
    let mut i = 0;
    while i < n {
        let values: Vec<[String; 2]> = (i..(i + batch).min(n))
            .map(|k| {
                [
                    (start + k as i64 * 1000).to_string(),
                    format!(
                        r#"{{"level":"info","k":{k},"user":"u-{}","path":"/api/items/{}","msg":"request served in {} ms","request_id":"req-{k:08x}"}}"#,
                        k % 97,
                        k % 13,
                        k % 1000
                    ),
                ]
            })
            .collect();
        let body = serde_json::json!({"streams": [{"stream": {"app": app}, "values": values}]});
        let (status, text) = push_json(addr, &body.to_string());
        assert_eq!(status, 204, "{text}");
        i += batch;
    }
}

/// The start of a body, for assertion messages.
fn short(body: &str) -> &str {
    &body[..body.len().min(300)]
}

fn query_range(addr: &str, q: &str, start: i64, end: i64, extra: &[(&str, &str)]) -> (u16, String) {
    let (s, e) = (start.to_string(), end.to_string());
    let mut params = vec![("query", q), ("start", s.as_str()), ("end", e.as_str())];
    params.extend_from_slice(extra);
    get(addr, "/loki/api/v1/query_range", &params)
}

/// User plus system CPU time of a process, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit(')').next().unwrap();
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command: state is index 0, utime is 11, stime is 12.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// A heavy query: every line through `| json` and a template, summed per user.
const HEAVY: &str = r#"sum by (user) (count_over_time({app="heavy"} | json | line_format "{{.user}} {{.path}} {{.msg}} {{.request_id}}" |~ "u-.*items.*ms" [1m]))"#;

/// Sends a query over a raw connection and returns it (not yet read).
fn start_raw_query(addr: &str, q: &str, start: i64, end: i64) -> TcpStream {
    let host = addr.trim_start_matches("http://");
    let mut tcp = TcpStream::connect(host).unwrap();
    let query = serde_urlencoded::to_string([
        ("query", q),
        ("start", &start.to_string()),
        ("end", &end.to_string()),
        ("step", "60"),
    ])
    .unwrap();
    write!(
        tcp,
        "GET /loki/api/v1/query_range?{query} HTTP/1.1\r\nHost: {host}\r\n\r\n"
    )
    .unwrap();
    tcp
}

#[test]
fn disconnected_client_stops_its_query_and_a_tenant_cannot_run_too_many() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        &dir.path().join("data"),
        // No background work of its own (flushes, index builds) while CPU is measured.
        "limits_config:\n  ingestion_rate_mb: 1000\n  ingestion_burst_size_mb: 1000\n  reject_old_samples: false\n  max_outstanding_requests_per_tenant: 1\n  query_timeout: 5m\ningester:\n  flush_check_period: 10m\nindex:\n  enabled: false\n",
    );
    let pid = s.child.as_ref().unwrap().id();
    let start = now_ns() - HOUR_NS;
    push_many(&s.addr(), "heavy", 300_000, 10_000, start);
    let end = now_ns();

    // The heavy query keeps the server busy...
    let tcp = start_raw_query(&s.addr(), HEAVY, start, end);
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(1000));
    let busy = cpu_ticks(pid) - before;
    assert!(
        busy >= 10,
        "the heavy query should keep the server busy: {busy} ticks in 1 s"
    );

    // ...and holds the tenant's only query slot: a second query is answered 429.
    let (status, body) = query_range(&s.addr(), r#"{app="heavy"}"#, start, end, &[("limit", "1")]);
    assert_eq!(status, 429, "{}", short(&body));
    assert!(
        body.contains("max_outstanding_requests_per_tenant"),
        "{}",
        short(&body)
    );

    // The client goes away: within 100 ms the work stops (measured after 150 ms of grace).
    drop(tcp);
    std::thread::sleep(Duration::from_millis(150));
    let after = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(1000));
    let idle = cpu_ticks(pid) - after;
    assert!(
        idle <= 4,
        "the server kept working after its client left: {idle} ticks in 1 s"
    );
    // The slot was given back.
    let (status, body) = query_range(&s.addr(), r#"{app="heavy"}"#, start, end, &[("limit", "1")]);
    assert_eq!(status, 200, "{}", short(&body));
}

#[test]
fn bytes_read_memory_and_lookback_limits_name_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        &dir.path().join("data"),
        "limits_config:\n  reject_old_samples: false\n  max_query_lookback: 2h\n  max_query_memory: 1MiB\noverrides:\n  fake:\n    max_query_bytes_read: 2MB\n",
    );
    let now = now_ns();
    // 20,000 lines (~3.5 MB) three hours ago, and 100 lines now.
    push_many(&s.addr(), "old", 20_000, 10_000, now - 3 * HOUR_NS);
    push_many(&s.addr(), "new", 100, 100, now - 1_000_000_000);
    let end = now_ns();

    // Bytes read: the old stream's chunks are over 2 MB; refused before running.
    let (status, body) = query_range(
        &s.addr(),
        r#"{app="old"}"#,
        now - 4 * HOUR_NS,
        end,
        &[("limit", "10")],
    );
    assert_eq!(
        status,
        200,
        "lookback leaves the old lines out, so nothing is read: {}",
        short(&body)
    );
    let (status, body) = query_range(
        &s.addr(),
        r#"{app=~"old|new"}"#,
        now - 4 * HOUR_NS,
        end,
        &[("limit", "10")],
    );
    assert_eq!(status, 200, "{}", short(&body));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let apps: Vec<&str> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["stream"]["app"].as_str().unwrap())
        .collect();
    assert!(
        apps.iter().all(|a| *a == "new") && !apps.is_empty(),
        "{}",
        short(&body)
    );
    // A range wholly before the lookback is an empty answer, as Loki gives.
    let (status, body) = query_range(
        &s.addr(),
        r#"{app="old"}"#,
        now - 4 * HOUR_NS,
        now - 3 * HOUR_NS + HOUR_NS / 2,
        &[],
    );
    assert_eq!(status, 200, "{}", short(&body));
    assert!(body.contains(r#""result":[]"#), "{}", short(&body));

    // Without the lookback (reloaded away), the bytes-read limit refuses the old range.
    s.write_config(
        "limits_config:\n  reject_old_samples: false\n  max_query_memory: 1MiB\noverrides:\n  fake:\n    max_query_bytes_read: 2MB\n",
    );
    let (status, body) = post(&format!("{}/-/reload", s.addr()), "text/plain", None, b"");
    assert_eq!(status, 200, "{}", short(&body));
    let (status, body) = query_range(
        &s.addr(),
        r#"{app="old"}"#,
        now - 4 * HOUR_NS,
        end,
        &[("limit", "10")],
    );
    assert_eq!(status, 400, "{}", short(&body));
    assert!(body.contains("max_query_bytes_read"), "{}", short(&body));
    let (status, body) = query_range(
        &s.addr(),
        r#"count_over_time({app="old"}[1m])"#,
        now - 4 * HOUR_NS,
        end,
        &[("step", "60")],
    );
    assert_eq!(status, 400, "{}", short(&body));
    assert!(body.contains("max_query_bytes_read"), "{}", short(&body));

    // Memory: 5,000 entries of ~200 bytes kept for the answer are over 1 MiB.
    s.write_config("limits_config:\n  reject_old_samples: false\n  max_query_memory: 1MiB\n");
    let (status, body) = post(&format!("{}/-/reload", s.addr()), "text/plain", None, b"");
    assert_eq!(status, 200, "{}", short(&body));
    let (status, body) = query_range(
        &s.addr(),
        r#"{app="old"}"#,
        now - 4 * HOUR_NS,
        end,
        &[("limit", "5000")],
    );
    assert_eq!(status, 400, "{}", short(&body));
    assert!(body.contains("max_query_memory"), "{}", short(&body));
    // ...as are 20,000 samples per series times 20 series.
    let (status, body) = query_range(
        &s.addr(),
        r#"sum by (k) (count_over_time({app="old"} | json [1m]))"#,
        now - 4 * HOUR_NS,
        end,
        &[("step", "60")],
    );
    assert_eq!(status, 400, "{}", short(&body));
    assert!(body.contains("max_query_memory"), "{}", short(&body));
    // A small answer is fine.
    let (status, body) = query_range(
        &s.addr(),
        r#"{app="old"}"#,
        now - 4 * HOUR_NS,
        end,
        &[("limit", "100")],
    );
    assert_eq!(status, 200, "{}", short(&body));
}

#[test]
fn too_many_points_and_deep_nesting_are_refused_with_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), "");
    let end = now_ns();
    let (status, body) = query_range(
        &s.addr(),
        r#"count_over_time({app="x"}[1m])"#,
        end - 24 * HOUR_NS,
        end,
        &[("step", "1")],
    );
    assert_eq!(status, 400, "{}", short(&body));
    assert_eq!(
        body.trim(),
        "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
    );

    // 100,000 nested parentheses: refused, and the server is still there.
    let deep = format!(
        "{}{}{}",
        "(".repeat(100_000),
        r#"{app="x"}"#,
        ")".repeat(100_000)
    );
    let url = format!("{}/loki/api/v1/query_range", s.addr());
    let form = serde_urlencoded::to_string([("query", deep.as_str())]).unwrap();
    let (status, body) = post(
        &url,
        "application/x-www-form-urlencoded",
        None,
        form.as_bytes(),
    );
    assert_eq!(status, 400, "{}", short(&body));
    assert!(
        body.contains("too long") || body.contains("nested"),
        "{}",
        short(&body)
    );
    // Deep but short enough to parse: the nesting limit names itself.
    let deep = format!("sum({}vector(1){})", "(".repeat(1000), ")".repeat(1000));
    let (status, body) = get(&s.addr(), "/loki/api/v1/query", &[("query", &deep)]);
    assert_eq!(status, 400, "{}", short(&body));
    assert!(body.contains("nested too deeply"), "{}", short(&body));
    // The same inside a line_format template.
    let tpl = format!(
        r#"{{app="x"}} | line_format "{{{{{}1{}}}}}""#,
        "(".repeat(2000),
        ")".repeat(2000)
    );
    // Valid Go template syntax, and bounded by the query's size: answered, no stack overflow.
    let (status, body) = query_range(&s.addr(), &tpl, end - HOUR_NS, end, &[]);
    assert_eq!(status, 200, "{}", short(&body));
    let (status, _) = get(&s.addr(), "/ready", &[]);
    assert_eq!(status, 200);
}
