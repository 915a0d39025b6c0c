//! Running for months: third-party crates stay quiet in the server's log, the release build
//! carries no debug info, malformed HTTP gets an answer that says what is wrong, and slow or
//! oversized requests are bounded (`server.http_server_*_timeout`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A server on `data` with `yaml` as its whole config, its stderr written to `log`.
fn start_logged(data: &std::path::Path, yaml: &str, log: &std::path::Path) -> Server {
    let config = data.with_extension("yaml");
    std::fs::write(&config, yaml).unwrap();
    let port = free_port();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut s = Server {
        child: Some(child),
        port,
        data: data.to_path_buf(),
        config,
        env: Vec::new(),
    };
    s.wait_ready(Duration::from_secs(60));
    s
}

#[test]
fn tantivy_info_lines_stay_out_of_the_log_after_an_index_build() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let s = start_logged(
        &data,
        "server:\n  log_level: info\ningester:\n  max_chunk_age: 1s\n  chunk_idle_period: 1s\n  flush_check_period: 200ms\nindex:\n  filtered_segments: true\n",
        &log,
    );
    let now = now_ns();
    let values: Vec<[String; 2]> = (0..200)
        .map(|i| {
            [
                (now + i).to_string(),
                format!("level=info request_id=req-{i} msg=hello"),
            ]
        })
        .collect();
    let body = serde_json::json!({"streams": [{"stream": {"app": "quiet"}, "values": values}]});
    assert_eq!(push_json(&s.addr(), &body.to_string()).0, 204);
    let started = Instant::now();
    while metric(&s.addr(), "sawmill_index_segments") < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no index built"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(s);
    let text = std::fs::read_to_string(&log).unwrap();
    // Sawmill's own info lines are there; nobody else's are.
    assert!(text.contains("sawmill listening"), "{text}");
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let target = v["target"].as_str().unwrap_or_default();
        let level = v["level"].as_str().unwrap_or_default();
        assert!(
            target.starts_with("sawmill") || level == "WARN" || level == "ERROR",
            "a third-party line below warn: {line}"
        );
    }
}

/// The shipped binary has no debug info (the container image ships it whole); the symbol
/// table stays for `perf`.
#[test]
fn release_profile_carries_no_debug_info() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let v: toml_like::Profile = toml_like::release_profile(&text);
    assert!(
        v.strip.as_deref() == Some("\"debuginfo\"") || v.strip.as_deref() == Some("\"symbols\""),
        "profile.release.strip: {:?}",
        v.strip
    );
    assert!(
        matches!(v.debug.as_deref(), None | Some("false") | Some("0")),
        "profile.release.debug: {:?}",
        v.debug
    );
}

/// Just enough of TOML to read `[profile.release]`'s keys.
mod toml_like {
    pub struct Profile {
        pub strip: Option<String>,
        pub debug: Option<String>,
    }

    pub fn release_profile(text: &str) -> Profile {
        let mut in_release = false;
        let mut p = Profile {
            strip: None,
            debug: None,
        };
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_release = line == "[profile.release]";
                continue;
            }
            if !in_release {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                let v = v.split('#').next().unwrap().trim().to_string();
                match k.trim() {
                    "strip" => p.strip = Some(v),
                    "debug" => p.debug = Some(v),
                    _ => {}
                }
            }
        }
        p
    }
}

/// Sends raw bytes on a new connection and reads until the server closes it (or `limit`).
fn raw_exchange(addr: &str, bytes: &[u8], limit: Duration) -> (String, Duration) {
    let mut tcp = TcpStream::connect(addr.trim_start_matches("http://")).unwrap();
    tcp.set_read_timeout(Some(limit)).unwrap();
    let started = Instant::now();
    tcp.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

fn status_line(resp: &str) -> &str {
    resp.lines().next().unwrap_or("")
}

#[test]
fn raw_quotes_and_braces_in_a_query_string_are_accepted_as_loki_accepts_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), "");
    let now = now_ns();
    let body =
        format!(r#"{{"streams":[{{"stream":{{"app":"api"}},"values":[["{now}","hello raw"]]}}]}}"#);
    assert_eq!(push_json(&s.addr(), &body).0, 204);
    // What `curl -g '...?query={app="api"}'` sends: quotes and braces unencoded.
    let req = format!(
        "GET /loki/api/v1/query_range?query={{app=\"api\"}}&start={}&end={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        now - 1_000_000_000,
        now + 1_000_000_000
    );
    let (resp, _) = raw_exchange(&s.addr(), req.as_bytes(), Duration::from_secs(10));
    assert_eq!(status_line(&resp), "HTTP/1.1 200 OK", "{resp}");
    assert!(resp.contains("hello raw"), "{resp}");
    // `<`, `>` and a space inside the target too; then a pipelined second request on the
    // same connection is still framed right.
    let req = "GET /loki/api/v1/labels?query={app=\"a b<c>\"} HTTP/1.1\r\nHost: x\r\n\r\nGET /loki/api/v1/label/app/values?query={app=\"api\"} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (resp, _) = raw_exchange(&s.addr(), req.as_bytes(), Duration::from_secs(10));
    assert_eq!(resp.matches("HTTP/1.1 200 OK").count(), 2, "{resp}");
    assert!(resp.contains(r#""data":["api"]"#), "{resp}");
    // A control byte cannot be read as Go would either: a 400 that says which byte.
    let (resp, _) = raw_exchange(
        &s.addr(),
        b"GET /loki/api/v1/labels?query=a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(10),
    );
    assert_eq!(status_line(&resp), "HTTP/1.1 400 Bad Request", "{resp}");
    assert!(resp.contains("control byte 0x7f"), "{resp}");
}

#[test]
fn oversized_headers_and_slow_clients_are_bounded_with_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        &dir.path().join("data"),
        "  http_server_read_timeout: 1s\n  http_server_idle_timeout: 1s\n",
    );
    // 100 KB of headers: 431 with a message, and the server goes on.
    let req = format!(
        "GET /ready HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let (resp, _) = raw_exchange(&s.addr(), req.as_bytes(), Duration::from_secs(10));
    assert_eq!(
        status_line(&resp),
        "HTTP/1.1 431 Request Header Fields Too Large",
        "{}",
        &resp[..resp.len().min(300)]
    );
    assert!(resp.contains("request headers larger than"), "{resp}");

    // Slow loris: one header byte every 200 ms never completes the request; after the read
    // timeout the server answers 408 and closes.
    let mut tcp = TcpStream::connect(s.addr().trim_start_matches("http://")).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let started = Instant::now();
    tcp.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    'slow: while started.elapsed() < Duration::from_secs(10) {
        let _ = tcp.write_all(b"X");
        std::thread::sleep(Duration::from_millis(200));
        loop {
            match tcp.read(&mut buf) {
                Ok(0) => break 'slow,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
    }
    let resp = String::from_utf8_lossy(&got);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "slow client held on for {:?}",
        started.elapsed()
    );
    assert_eq!(status_line(&resp), "HTTP/1.1 408 Request Timeout", "{resp}");
    assert!(resp.contains("http_server_read_timeout"), "{resp}");

    // A connection that sends nothing at all is closed the same way.
    let (resp, took) = raw_exchange(&s.addr(), b"", Duration::from_secs(10));
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(status_line(&resp), "HTTP/1.1 408 Request Timeout", "{resp}");

    // A keep-alive connection left idle after its answer is closed after the idle timeout.
    let (resp, took) = raw_exchange(
        &s.addr(),
        b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(10),
    );
    assert_eq!(status_line(&resp), "HTTP/1.1 200 OK", "{resp}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Meanwhile the server served everyone else.
    assert_eq!(get(&s.addr(), "/ready", &[]).0, 200);
}
