//! Disk full: a push that could not be written to the WAL gets 507, never a 204; everything
//! acknowledged before stays readable; queries keep working; pushes succeed again once space
//! returns. Uses a small tmpfs as the data directory (needs root, as CI has).

mod common;

use std::process::Command;

use common::{now_ns, push_json, query_entries, Server};

/// A tmpfs of a given size, unmounted when dropped; `None` (the test is skipped) without root.
struct Tiny {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Tiny {
    fn mount(size: &str) -> Option<Tiny> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny");
        std::fs::create_dir(&path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status();
        if !ok.is_ok_and(|s| s.success()) {
            eprintln!("skipping: cannot mount a tmpfs here (not root?)");
            return None;
        }
        Some(Tiny { path, _dir: dir })
    }
}

impl Drop for Tiny {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn push_on_a_full_disk_gets_507_and_loses_nothing() {
    let Some(tiny) = Tiny::mount("4m") else {
        return;
    };
    let mnt = tiny.path.clone();
    let data = mnt.join("data");
    let server = Server::start(
        &data,
        "limits_config:\n  ingestion_rate_mb: 1000\n  ingestion_burst_size_mb: 1000\ningester:\n  flush_check_period: 1h\nstorage:\n  min_free_bytes: 0\n",
    );
    // Leave about 300 KB free.
    let filler = mnt.join("filler");
    let free = fs_free(&mnt);
    std::fs::write(
        &filler,
        vec![0u8; (free.saturating_sub(300 * 1024)) as usize],
    )
    .unwrap();

    let base = now_ns() - 10_000_000_000;
    let line = "x".repeat(2000);
    let mut acked = Vec::new();
    let mut saw_507 = false;
    for i in 0..400 {
        let body = format!(
            r#"{{"streams":[{{"stream":{{"app":"full"}},"values":[["{}","{i} {line}"],["{}","{i}b {line}"]]}}]}}"#,
            base + i * 2,
            base + i * 2 + 1
        );
        let (status, text) = push_json(&server.addr(), &body);
        match status {
            204 => acked.push(i),
            507 => {
                saw_507 = true;
                assert!(text.contains("write-ahead log"), "{text}");
                break;
            }
            other => panic!("unexpected {other}: {text}"),
        }
    }
    assert!(saw_507, "the disk never filled up");
    assert!(!acked.is_empty());
    let got = query_entries(
        &server.addr(),
        "{app=\"full\"}",
        base,
        base + 1_000_000_000,
        5000,
    );
    assert_eq!(
        got.len(),
        acked.len() * 2,
        "every acknowledged line, and nothing of the failed push"
    );

    std::fs::remove_file(&filler).unwrap();
    let body = format!(
        r#"{{"streams":[{{"stream":{{"app":"full"}},"values":[["{}","after"]]}}]}}"#,
        base + 5000
    );
    let (status, text) = push_json(&server.addr(), &body);
    assert_eq!(status, 204, "ingestion resumes once space returns: {text}");
    let got = query_entries(
        &server.addr(),
        "{app=\"full\"}",
        base,
        base + 1_000_000_000,
        5000,
    );
    assert_eq!(got.len(), acked.len() * 2 + 1);
}

/// `storage.min_free_bytes`: below it pushes are refused with 507 before anything is written,
/// queries keep working, and pushes are accepted again once space returns.
#[test]
fn below_min_free_bytes_pushes_get_507_and_resume() {
    let Some(tiny) = Tiny::mount("8m") else {
        return;
    };
    let mnt = tiny.path.clone();
    let data = mnt.join("data");
    let server = Server::start(&data, "storage:\n  min_free_bytes: 2MiB\n");
    let base = now_ns() - 10_000_000_000;
    let push = |i: i64| {
        push_json(
            &server.addr(),
            &format!(
                r#"{{"streams":[{{"stream":{{"app":"free"}},"values":[["{}","line {i}"]]}}]}}"#,
                base + i
            ),
        )
    };
    assert_eq!(push(0).0, 204);
    let filler = mnt.join("filler");
    let free = fs_free(&mnt);
    std::fs::write(&filler, vec![0u8; (free - 1024 * 1024) as usize]).unwrap();
    // Free space is looked at no more than every 100 ms while it is fine.
    std::thread::sleep(std::time::Duration::from_millis(150));
    let (status, text) = push(1);
    assert_eq!(status, 507, "{text}");
    assert!(text.contains("min_free_bytes"), "{text}");
    let got = query_entries(
        &server.addr(),
        "{app=\"free\"}",
        base,
        base + 1_000_000_000,
        100,
    );
    assert_eq!(
        got.len(),
        1,
        "queries keep working; the refused push stored nothing"
    );
    std::fs::remove_file(&filler).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    let (status, text) = push(2);
    assert_eq!(status, 204, "pushes resume once space returns: {text}");
    let got = query_entries(
        &server.addr(),
        "{app=\"free\"}",
        base,
        base + 1_000_000_000,
        100,
    );
    assert_eq!(got.len(), 2);
}

/// Compaction on a nearly full disk: it does not start a partition it has no room for, reports
/// it, keeps every line, and finishes once space returns.
#[test]
fn compaction_backs_off_when_the_disk_is_short() {
    let Some(tiny) = Tiny::mount("32m") else {
        return;
    };
    let mnt = tiny.path.clone();
    let data = mnt.join("data");
    let cfg = |interval: &str| {
        format!("limits_config:\n  reject_old_samples: false\n  ingestion_rate_mb: 1000\n  ingestion_burst_size_mb: 1000\n  max_entries_limit_per_query: 0\ningester:\n  flush_check_period: 1h\nstorage:\n  min_free_bytes: 0\ncompactor:\n  compaction_interval: {interval}\n")
    };
    let mut server = Server::start(&data, &cfg("1h"));
    let base = now_ns() - 3_600_000_000_000;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut total = 0;
    for round in 0..4 {
        // Lines of random hex: they barely compress, so the segments have some size.
        let values: Vec<String> = (0..2000)
            .map(|i| {
                let mut words = String::new();
                for _ in 0..8 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    words.push_str(&format!("{seed:016x} "));
                }
                format!(
                    r#"["{}","{round} {i} {words}"]"#,
                    base + (i * 4 + round) * 1_000_000
                )
            })
            .collect();
        let body = format!(
            r#"{{"streams":[{{"stream":{{"app":"c"}},"values":[{}]}}]}}"#,
            values.join(",")
        );
        let (status, text) = push_json(&server.addr(), &body);
        assert_eq!(status, 204, "{text}");
        total += 2000;
        server.restart(); // flush: one segment per round
    }
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![0u8; (fs_free(&mnt) - 200 * 1024) as usize]).unwrap();
    server.write_config(&cfg("100ms"));
    server.restart();
    let started = std::time::Instant::now();
    while common::metric(&server.addr(), "sawmill_compactor_disk_short_total") < 1.0 {
        assert!(
            started.elapsed().as_secs() < 30,
            "compaction never reported the short disk"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let q = |s: &Server| {
        query_entries(
            &s.addr(),
            "{app=\"c\"}",
            base,
            base + 3_600_000_000_000,
            100_000,
        )
        .len()
    };
    assert_eq!(q(&server), total, "every line kept while compaction waits");
    assert_eq!(common::segment_files(&data, "fake").len(), 4);

    std::fs::remove_file(&filler).unwrap();
    let started = std::time::Instant::now();
    while common::segment_files(&data, "fake").len() > 1 {
        assert!(
            started.elapsed().as_secs() < 30,
            "compaction did not resume"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(q(&server), total);
}

fn fs_free(path: &std::path::Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
