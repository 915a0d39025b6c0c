//! The `sawmill` binary as a client, end to end against a running server: paging past the
//! 5000-entry cap, `--tail` across a server restart, the output modes, metric tables,
//! labels/series/stats/volume/fmt, `push` (with retries while the server is down), and the
//! documented exit codes (2 bad usage, 1 server or query error).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{now_ns, push_json, Server, BIN};

/// Runs `sawmill ARGS` against `addr` (through `LOKI_ADDR`, as logcli users set it).
fn sawmill(addr: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("LOKI_ADDR", addr)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("run sawmill")
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn push(addr: &str, stream: serde_json::Value, entries: &[(i64, String)]) {
    let values: Vec<serde_json::Value> = entries
        .iter()
        .map(|(ts, l)| serde_json::json!([ts.to_string(), l]))
        .collect();
    let body = serde_json::json!({"streams":[{"stream": stream, "values": values}]});
    let (status, text) = push_json(addr, &body.to_string());
    assert_eq!(status, 204, "{text}");
}

/// (timestamp, line) pairs of `--output jsonl`.
fn jsonl(text: &str) -> Vec<(i64, String, serde_json::Value)> {
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let ts = chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap())
                .unwrap()
                .timestamp_nanos_opt()
                .unwrap();
            (
                ts,
                v["line"].as_str().unwrap().to_string(),
                v["labels"].clone(),
            )
        })
        .collect()
}

#[test]
fn paging_past_the_cap_returns_every_line_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("d"), "");
    let addr = s.addr();
    // Two streams, three lines per timestamp in each: page boundaries fall inside groups of
    // entries that share a timestamp.
    let t0 = now_ns() - 60_000_000_000;
    let mut want = Vec::new();
    for app in ["a", "b"] {
        let entries: Vec<(i64, String)> = (0..6000)
            .map(|i| (t0 + i / 3, format!("{app} line {i:05}")))
            .collect();
        for chunk in entries.chunks(2000) {
            push(&addr, serde_json::json!({"job": "page", "app": app}), chunk);
        }
        want.extend(entries);
    }
    want.sort();
    let (from, to) = ((t0 - 1).to_string(), (t0 + 10_000).to_string());
    for (batch, forward) in [
        ("1000", true),
        ("1000", false),
        ("5000", false),
        ("777", true),
    ] {
        let mut args = vec![
            "query",
            r#"{job="page"}"#,
            "--limit",
            "0",
            "--batch",
            batch,
            "-o",
            "jsonl",
            "--from",
            &from,
            "--to",
            &to,
            "--quiet",
        ];
        if forward {
            args.push("--forward");
        }
        let got = jsonl(&ok(&sawmill(&addr, &args)));
        assert_eq!(got.len(), want.len(), "batch {batch} forward {forward}");
        let ts: Vec<i64> = got.iter().map(|e| e.0).collect();
        let mut sorted = ts.clone();
        if forward {
            sorted.sort();
        } else {
            sorted.sort_by(|a, b| b.cmp(a));
        }
        assert_eq!(ts, sorted, "entries in the query's direction");
        let mut pairs: Vec<(i64, String)> = got.into_iter().map(|(t, l, _)| (t, l)).collect();
        pairs.sort();
        assert_eq!(
            pairs, want,
            "every line once (batch {batch}, forward {forward})"
        );
    }
    // --limit stops exactly, across pages.
    let got = jsonl(&ok(&sawmill(
        &addr,
        &[
            "query",
            r#"{job="page"}"#,
            "--limit",
            "7001",
            "--batch",
            "2000",
            "-o",
            "jsonl",
            "--from",
            &from,
            "--to",
            &to,
        ],
    )));
    assert_eq!(got.len(), 7001);
    let newest: Vec<i64> = want.iter().rev().take(7001).map(|e| e.0).collect();
    assert_eq!(got.iter().map(|e| e.0).collect::<Vec<_>>(), newest);
}

#[test]
fn output_modes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("d"), "");
    let addr = s.addr();
    let t0 = (now_ns() / 1_000_000_000 - 3600) * 1_000_000_000;
    push(
        &addr,
        serde_json::json!({"app": "a", "env": "prod"}),
        &[(t0, "one".into())],
    );
    push(
        &addr,
        serde_json::json!({"app": "bb", "env": "prod"}),
        &[(t0 + 1_500_000, "two".into())],
    );
    let time = |ns: i64| {
        chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(ns)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let base = [
        "query",
        r#"{env="prod"}"#,
        "--since",
        "2h",
        "--forward",
        "-z",
        "utc",
    ];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        sawmill(&addr, &args)
    };
    // default: common labels once on stderr, the rest aligned; no colour when piped.
    let out = run(&[]);
    assert_eq!(
        ok(&out),
        format!(
            "{} {{app=\"a\"}}  one\n{} {{app=\"bb\"}} two\n",
            time(t0),
            time(t0 + 1_500_000)
        )
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(r#"Common labels: {env="prod"}"#));
    assert_eq!(ok(&run(&["-o", "raw"])), "one\ntwo\n");
    assert_eq!(
        ok(&run(&["--no-labels"])),
        format!("{} one\n{} two\n", time(t0), time(t0 + 1_500_000))
    );
    assert_eq!(
        ok(&run(&["--exclude-label", "app", "--quiet"])),
        format!(
            "{} {{env=\"prod\"}} one\n{} {{env=\"prod\"}} two\n",
            time(t0),
            time(t0 + 1_500_000)
        )
    );
    let lines = jsonl(&ok(&run(&["-o", "jsonl", "--include-label", "app"])));
    assert_eq!(
        lines[0],
        (t0, "one".to_string(), serde_json::json!({"app": "a"}))
    );
    assert_eq!(lines[1].2, serde_json::json!({"app": "bb"}));
    let coloured = ok(&run(&["--colored-output"]));
    assert!(coloured.contains("\x1b["), "{coloured:?}");

    // Metric queries: a table, or one JSON object per series.
    let q = r#"sum by (app) (count_over_time({env="prod"}[2h]))"#;
    let table = ok(&sawmill(&addr, &["instant-query", q, "-z", "utc"]));
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(
        rows[0].starts_with("TIME") && rows[0].ends_with("VALUE  LABELS"),
        "{table}"
    );
    assert!(
        rows[1].ends_with(r#"1  {app="a"}"#) && rows[2].ends_with(r#"1  {app="bb"}"#),
        "{table}"
    );
    let js = ok(&sawmill(&addr, &["instant-query", q, "-o", "jsonl"]));
    let series: Vec<serde_json::Value> = js
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(series.len(), 2);
    assert_eq!(series[0]["metric"], serde_json::json!({"app": "a"}));
    assert_eq!(series[0]["value"][1], "1");
    let range = ok(&sawmill(
        &addr,
        &["query", q, "--since", "2h", "--step", "1h", "-o", "jsonl"],
    ));
    let v: serde_json::Value = serde_json::from_str(range.lines().next().unwrap()).unwrap();
    assert!(
        v["values"].as_array().is_some_and(|a| !a.is_empty()),
        "{range}"
    );

    // Labels, series, stats, volume, fmt.
    assert_eq!(
        ok(&sawmill(&addr, &["labels", "--since", "2h"])),
        "app\nenv\n"
    );
    assert_eq!(
        ok(&sawmill(&addr, &["labels", "app", "--since", "2h"])),
        "a\nbb\n"
    );
    assert_eq!(
        ok(&sawmill(
            &addr,
            &["series", r#"{env="prod"}"#, "--since", "2h"]
        )),
        "{app=\"a\", env=\"prod\"}\n{app=\"bb\", env=\"prod\"}\n"
    );
    let analyzed = ok(&sawmill(
        &addr,
        &[
            "series",
            r#"{env="prod"}"#,
            "--since",
            "2h",
            "--analyze-labels",
        ],
    ));
    assert!(
        analyzed.starts_with("Total Streams:  2\nUnique Labels:  2\n"),
        "{analyzed}"
    );
    assert!(
        analyzed.contains("app                     2                 2"),
        "{analyzed}"
    );
    let stats = ok(&sawmill(
        &addr,
        &["stats", r#"{env="prod"}"#, "--since", "2h"],
    ));
    assert!(
        stats.contains("streams: 2") && stats.contains("entries: 2"),
        "{stats}"
    );
    let vol = ok(&sawmill(
        &addr,
        &["volume", r#"{env="prod"}"#, "--since", "2h", "-o", "jsonl"],
    ));
    let v: serde_json::Value = serde_json::from_str(vol.trim()).unwrap();
    assert_eq!(v["metric"], serde_json::json!({"env": "prod"}), "{vol}");
    let vol = ok(&sawmill(
        &addr,
        &[
            "volume",
            r#"{env="prod"}"#,
            "--since",
            "2h",
            "--target-labels",
            "app",
        ],
    ));
    assert_eq!(
        vol.lines().count(),
        3,
        "a header and one row per app: {vol}"
    );
    assert_eq!(
        ok(&sawmill(
            &addr,
            &["fmt", r#"sum by(app)(rate({a="b"}|="x"[5m]))"#]
        )),
        "sum by (app) (rate({a=\"b\"} |= \"x\" [5m]))\n"
    );
}

#[test]
fn tail_sees_new_lines_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(&dir.path().join("d"), "");
    let addr = s.addr();
    push(
        &addr,
        serde_json::json!({"app": "t"}),
        &[(now_ns() - 1_000_000_000, "before".into())],
    );
    let mut child = Command::new(BIN)
        .args([
            "query",
            r#"{app="t"}"#,
            "--tail",
            "-o",
            "raw",
            "--since",
            "1m",
        ])
        .env("LOKI_ADDR", &addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let next = |rx: &mpsc::Receiver<String>| {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("a tailed line")
    };
    assert_eq!(next(&rx), "before");
    push(
        &addr,
        serde_json::json!({"app": "t"}),
        &[(now_ns(), "live one".into())],
    );
    assert_eq!(next(&rx), "live one");
    s.restart_same_port();
    // After the restart the tail reconnects; the lines it showed are not shown again.
    let started = Instant::now();
    let mut got = Vec::new();
    let mut n = 0;
    while !got.contains(&"live two".to_string()) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "tail did not reconnect: {got:?}"
        );
        n += 1;
        push(
            &addr,
            serde_json::json!({"app": "t", "try": n.to_string()}),
            &[(now_ns(), "live two".into())],
        );
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
            got.push(l);
        }
    }
    assert!(
        got.iter().all(|l| l == "live two"),
        "repeated lines after reconnecting: {got:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn push_ships_files_and_retries_while_the_server_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(&dir.path().join("d"), "");
    let (f1, f2) = (dir.path().join("a.log"), dir.path().join("b.log"));
    std::fs::write(&f1, "first\nsecond\n\nthird\n").unwrap();
    std::fs::write(&f2, "fourth\r\nfifth").unwrap();
    let out = sawmill(
        &s.addr(),
        &[
            "push",
            "--labels",
            r#"{app="p"}"#,
            f1.to_str().unwrap(),
            f2.to_str().unwrap(),
        ],
    );
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("pushed 5 lines in 1 requests"));
    let got = ok(&sawmill(
        &s.addr(),
        &["query", r#"{app="p"}"#, "--forward", "-o", "raw"],
    ));
    assert_eq!(got, "first\nsecond\nthird\nfourth\nfifth\n");

    // The server goes away; `push` retries until it is back.
    s.stop();
    let addr = s.addr();
    let mut child = Command::new(BIN)
        .args(["push", "--labels", r#"{app="late"}"#, f1.to_str().unwrap()])
        .env("LOKI_ADDR", &addr)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    s.restart_same_port();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("retrying"), "{err}");
    let got = ok(&sawmill(
        &addr,
        &["query", r#"{app="late"}"#, "--forward", "-o", "raw"],
    ));
    assert_eq!(got, "first\nsecond\nthird\n");
}

#[test]
fn exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("d"), "");
    let addr = s.addr();
    #[track_caller]
    fn code(out: &Output, want: i32, stderr_has: &str) {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(want), "{err}");
        assert!(err.contains(stderr_has), "want {stderr_has:?} in {err:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    }
    // Bad usage: 2.
    code(&sawmill(&addr, &["query"]), 2, "required");
    code(
        &sawmill(&addr, &["query", "{a=\"b\"}", "--output", "yaml"]),
        2,
        "invalid value",
    );
    code(
        &sawmill(&addr, &["query", "{a=\"b\"}", "--from", "yesterday"]),
        2,
        "invalid --from",
    );
    code(
        &sawmill(&addr, &["query", "{a=\"b\"}", "--since", "soon"]),
        2,
        "invalid --since",
    );
    code(
        &sawmill(&addr, &["push", "--labels", "app=x"]),
        2,
        "invalid --labels",
    );
    code(&sawmill("localhost:3100", &["labels"]), 2, "invalid --addr");
    // Server and query errors: 1.
    code(&sawmill(&addr, &["query", "{a=\"b\""]), 1, "400");
    code(
        &sawmill(
            &addr,
            &["query", "{a=\"b\"}", "--batch", "6000", "--limit", "6000"],
        ),
        1,
        "max entries limit",
    );
    code(&sawmill(&addr, &["fmt", "sum("]), 1, "invalid query");
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    code(&sawmill(&closed, &["labels"]), 1, "cannot reach");
    code(
        &sawmill(&closed, &["query", "{a=\"b\"}", "--tail"]),
        1,
        "cannot reach",
    );
}
