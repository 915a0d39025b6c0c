//! The 60-second soak (`sawmill bench soak`): pushes from several tenants and streams while
//! range queries, live tails, correlate lookups, delete requests, retention and compaction run
//! at once. The soak itself fails when an acknowledged line is missing or served twice, or a
//! line is served that retention, a delete or a refusal removed; this test also checks that
//! each of those paths did its work (retention and deletes removed lines, also on disk through
//! compaction; tails saw lines) and that open files and memory did not grow after warm-up.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sawmill");

#[test]
fn sixty_second_soak_loses_nothing_and_stays_flat() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("soak.csv");
    let out = Command::new(BIN)
        .args([
            "bench",
            "soak",
            "--duration",
            "60s",
            "--rate",
            "1000",
            "--tenants",
            "2",
            "--retention",
            "15s",
            "--compaction-interval",
            "8s",
            "--delete-every",
            "5s",
            "--flush-age",
            "6s",
            "--warmup",
            "20",
            "--out",
        ])
        .arg(&csv)
        .arg("--data-dir")
        .arg(dir.path().join("soak"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "soak failed:\n{stdout}\n{stderr}");
    let summary = stdout.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(summary).unwrap();
    let n = |k: &str| {
        v[k].as_f64()
            .unwrap_or_else(|| panic!("no {k} in {summary}"))
    };
    assert!(n("acked_lines") > 30_000.0, "{summary}");
    assert_eq!(n("missing"), 0.0, "{summary}");
    assert_eq!(n("duplicates"), 0.0, "{summary}");
    assert!(n("removed_by_retention") > 0.0, "{summary}");
    assert!(n("removed_by_deletes") > 0.0, "{summary}");
    assert!(n("compactor_runs") > 0.0, "{summary}");
    assert!(n("compactor_dropped_retention") > 0.0, "{summary}");
    assert!(n("compactor_dropped_delete") > 0.0, "{summary}");
    assert!(n("tail_lines") > 0.0, "{summary}");
    assert_eq!(n("errors"), 0.0, "{summary}\n{stderr}");
    // Nothing accumulates: open files stay within a few of the count after warm-up (segments
    // come and go with flushes and compaction), memory within half again plus a margin.
    assert!(
        n("fds_max_after_warmup") <= n("fds_after_warmup") + 24.0,
        "{summary}"
    );
    assert!(
        n("rss_kb_max_after_warmup") <= n("rss_kb_after_warmup") * 1.5 + 32_768.0,
        "{summary}"
    );
    // One CSV row per second, with every column filled in.
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert!(rows.len() >= 59, "{} rows", rows.len());
    for row in &rows {
        let cols: Vec<f64> = row.split(',').map(|c| c.parse().unwrap()).collect();
        assert_eq!(cols.len(), 14, "{row}");
        assert!(
            cols[1] > 0.0 && cols[2] > 0.0 && cols[3] > 0.0 && cols[4] > 0.0,
            "{row}"
        );
    }
    assert!(
        rows.iter().any(|r| r.split(',').nth(5) != Some("0")),
        "head bytes never seen"
    );
}
