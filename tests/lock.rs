//! The data directory has one owner: a second `sawmill serve` on the same directory exits at
//! once naming the directory and the holder's PID; a lock left by a SIGKILLed process is never
//! in the way; and a restart that overlaps the old process's slow shutdown either waits for it
//! (`--lock-wait`) or exits with that message, and never reads or writes the directory while
//! the old process still runs.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const LIMITS: &str = "limits_config:\n  max_entries_limit_per_query: 1000000\n";

/// Starts `sawmill serve` on `data` with extra arguments; stderr is captured.
fn spawn_second(s: &Server, port: u16, extra: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&s.config)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(&s.data)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for the child to exit within `limit`; returns its exit code and stderr.
fn wait_exit(mut child: std::process::Child, limit: Duration) -> (i32, String) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("second sawmill still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

fn push_lines(addr: &str, app: &str, n: usize) -> Vec<String> {
    let now = now_ns();
    let lines: Vec<String> = (0..n).map(|i| format!("{app} line {i}")).collect();
    let values: Vec<[String; 2]> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| [(now + i as i64).to_string(), l.clone()])
        .collect();
    let body = serde_json::json!({"streams": [{"stream": {"app": app}, "values": values}]});
    let (status, text) = push_json(addr, &body.to_string());
    assert_eq!(status, 204, "{text}");
    lines
}

fn lines_of(addr: &str, app: &str) -> Vec<String> {
    let q = format!("{{app=\"{app}\"}}");
    let mut v: Vec<String> = query_all(addr, &[], &q, now_ns() - 3_600_000_000_000, now_ns())
        .unwrap()
        .into_iter()
        .map(|e| e.2)
        .collect();
    v.sort();
    v
}

#[test]
fn second_process_on_the_same_data_directory_exits_naming_it_and_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = Server::start(&data, LIMITS);
    let holder = first.child.as_ref().unwrap().id();
    let second = spawn_second(&first, free_port(), &[]);
    let (code, err) = wait_exit(second, Duration::from_secs(10));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&data.display().to_string()), "{err}");
    assert!(err.contains(&format!("pid {holder}")), "{err}");
    assert!(err.contains("in use by another sawmill process"), "{err}");
    // The first one is untouched and still serving.
    let (status, _) = get(&first.addr(), "/ready", &[]);
    assert_eq!(status, 200);
    let lock = std::fs::read_to_string(data.join("LOCK")).unwrap();
    assert_eq!(lock.trim(), holder.to_string());
}

#[test]
fn lock_left_by_a_sigkilled_process_does_not_block_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = Server::start(&data, LIMITS);
    let pushed = push_lines(&s.addr(), "killed", 50);
    let dead = s.child.as_ref().unwrap().id();
    s.kill();
    // The dead process's PID is still in the file: a stale lock file, but no lock.
    let lock = std::fs::read_to_string(data.join("LOCK")).unwrap();
    assert_eq!(lock.trim(), dead.to_string());
    s.restart_within(Duration::from_secs(20));
    let lock = std::fs::read_to_string(data.join("LOCK")).unwrap();
    assert_eq!(lock.trim(), s.child.as_ref().unwrap().id().to_string());
    assert_eq!(lines_of(&s.addr(), "killed"), {
        let mut p = pushed;
        p.sort();
        p
    });
}

/// A restart while the old process is still shutting down (held here with SIGSTOP, as a
/// process stuck flushing): without `--lock-wait` the new one exits at once with the message;
/// with it, the new one waits, starts once the old one has exited, and serves everything the
/// old one acknowledged.
#[test]
fn restart_overlapping_a_slow_shutdown_waits_or_exits_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut old = Server::start(&data, LIMITS);
    let mut pushed = push_lines(&old.addr(), "overlap", 2000);
    let old_child = old.child.take().unwrap();
    let old_pid = old_child.id();
    signal(old_pid, "-STOP");

    let started = Instant::now();
    let refused = spawn_second(&old, free_port(), &[]);
    let (code, err) = wait_exit(refused, Duration::from_secs(10));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("pid {old_pid}")), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "without --lock-wait the second process must not wait"
    );

    let port = free_port();
    let waiting = spawn_second(&old, port, &["--lock-wait", "30s"]);
    // It waits: not ready while the old process holds the directory.
    std::thread::sleep(Duration::from_millis(800));
    let addr = format!("http://127.0.0.1:{port}");
    assert!(
        try_request(
            "GET",
            &format!("{addr}/ready"),
            &[],
            None,
            Duration::from_secs(1)
        )
        .is_err(),
        "the waiting process must not listen while the lock is held"
    );
    // The old process finishes its shutdown.
    signal(old_pid, "-CONT");
    signal(old_pid, "-TERM");
    let mut old_child = old_child;
    old_child.wait().unwrap();
    let mut new = Server {
        child: Some(waiting),
        port,
        data: old.data.clone(),
        config: old.config.clone(),
        env: Vec::new(),
    };
    new.wait_ready(Duration::from_secs(30));
    pushed.sort();
    assert_eq!(lines_of(&new.addr(), "overlap"), pushed);
    let lock = std::fs::read_to_string(data.join("LOCK")).unwrap();
    assert_eq!(lock.trim(), new.child.as_ref().unwrap().id().to_string());
}
