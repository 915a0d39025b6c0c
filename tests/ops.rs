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
        "server:\n  log_level: info\ningester:\n  max_chunk_age: 1s\n  chunk_idle_period: 1s\n  flush_check_period: 200ms\n",
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
