//! Entries of one stream with the same timestamp whose lines come out of the pipeline
//! identical are returned once, as Loki's merging iterator returns them (whatever labels
//! the pipeline gave each); a dropped duplicate does not count against the limit.

use std::sync::Arc;

use crate::config::Config;
use crate::ingest::validate::Validated;
use crate::ingest::{Entry, ValidStream};
use crate::labels::Labels;
use crate::logql::{self, Expr};
use crate::storage::store::Store;

use super::{select_logs, Cancel, Direction, LogQuery};

const T: i64 = 1_795_132_800_000_000_000;

fn store(dir: &std::path::Path) -> Arc<Store> {
    let mut cfg = Config::default();
    cfg.common.path_prefix = dir.to_path_buf();
    cfg.limits_config.reject_old_samples = false;
    cfg.limits_config.creation_grace_period = std::time::Duration::from_secs(100 * 365 * 86400);
    let s = Store::new(Arc::new(cfg));
    s.recover().unwrap();
    s
}

fn push(s: &Store, app: &str, entries: &[(i64, &str)]) {
    let v = Validated {
        streams: vec![ValidStream {
            labels: Labels::from_pairs(vec![("app".to_string(), app.to_string())]),
            entries: entries
                .iter()
                .map(|(ts, line)| Entry {
                    ts: *ts,
                    line: line.to_string(),
                    metadata: vec![],
                })
                .collect(),
        }],
        rejections: vec![],
    };
    let out = s.push("fake", v).unwrap();
    assert!(out.rejections.is_empty(), "{:?}", out.rejections);
}

/// (labels, ts, line) of every returned entry, in answer order.
fn run(s: &Store, query: &str, limit: usize, direction: Direction) -> Vec<(String, i64, String)> {
    let Expr::Log(log) = logql::parse_expr(query).unwrap() else {
        panic!("not a log query: {query}")
    };
    let q = LogQuery {
        matchers: log.selector.matchers,
        pipeline: log.pipeline,
        start: T - 1,
        end: T + 10_000_000_000,
        limit,
        direction,
    };
    let t = s.existing_tenant("fake").unwrap();
    let (streams, _) = select_logs(&t, &q, false, Cancel::default()).unwrap();
    streams
        .into_iter()
        .flat_map(|st| {
            let l = st.labels.to_string();
            st.entries
                .into_iter()
                .map(move |e| (l.clone(), e.ts, e.line))
        })
        .collect()
}

#[track_caller]
fn count(s: &Store, query: &str, want: usize) {
    for d in [Direction::Forward, Direction::Backward] {
        let got = run(s, query, 100, d);
        assert_eq!(got.len(), want, "{query} {d:?}: {got:?}");
    }
}

fn lines() -> [(i64, &'static str); 3] {
    [
        (T, r#"{"a":"x","b":1}"#),
        (T, r#"{"a":"x","b":2}"#),
        (T + 1, r#"{"a":"x","b":3}"#),
    ]
}

#[test]
fn same_timestamp_lines_made_identical_by_line_format_are_returned_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    push(&s, "dd", &lines());
    count(&s, r#"{app="dd"}"#, 3);
    // Same labels after the pipeline, same line: one of the two.
    count(
        &s,
        r#"{app="dd"} | json | keep a | line_format "{{.a}}""#,
        2,
    );
    // Labels differ (b=1, b=2) but the entries come from one stream: still one, as Loki.
    count(&s, r#"{app="dd"} | json | line_format "{{.a}}""#, 2);
    // Lines that stay different are all kept.
    count(&s, r#"{app="dd"} | json | line_format "{{.b}}""#, 3);
}

#[test]
fn identical_lines_of_different_streams_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    push(&s, "dd", &lines()[..1]);
    push(&s, "ee", &lines()[1..2]);
    count(
        &s,
        r#"{app=~"dd|ee"} | json | keep a | line_format "{{.a}}""#,
        2,
    );
}

#[test]
fn a_dropped_duplicate_does_not_use_up_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    push(&s, "dd", &lines());
    let q = r#"{app="dd"} | json | keep a | line_format "{{.a}}""#;
    let got = run(&s, q, 2, Direction::Forward);
    let ts: Vec<i64> = got.iter().map(|e| e.1).collect();
    assert_eq!(ts, [T, T + 1], "{got:?}");
}

#[test]
fn duplicates_across_head_and_segments_are_returned_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    push(&s, "dd", &lines()[..1]);
    s.flush(true).unwrap();
    push(&s, "dd", &lines()[1..]);
    count(&s, r#"{app="dd"}"#, 3);
    count(
        &s,
        r#"{app="dd"} | json | keep a | line_format "{{.a}}""#,
        2,
    );
}

#[test]
fn query_stats_count_what_the_engine_did() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    push(&s, "dd", &lines()[..1]);
    s.flush(true).unwrap();
    push(&s, "dd", &lines()[1..]);
    let Expr::Log(log) =
        logql::parse_expr(r#"{app="dd"} | json | b != "3" | keep a | line_format "{{.a}}""#)
            .unwrap()
    else {
        unreachable!()
    };
    let q = LogQuery {
        matchers: log.selector.matchers,
        pipeline: log.pipeline,
        start: T - 1,
        end: T + 10_000_000_000,
        limit: 100,
        direction: Direction::Forward,
    };
    let t = s.existing_tenant("fake").unwrap();
    let (_, stats) = select_logs(&t, &q, false, Cancel::default()).unwrap();
    assert_eq!(stats.lines_processed, 3);
    assert_eq!(stats.head_lines, 2, "two lines still in the head");
    assert_eq!(
        stats.head_bytes,
        (lines()[1].1.len() + lines()[2].1.len()) as u64
    );
    assert!(stats.compressed_bytes > 0, "one block decompressed");
    assert_eq!(stats.chunks, 1);
    assert_eq!(stats.post_filter_lines, 2, "b=3 filtered out");
    assert_eq!(stats.duplicates, 1, "two entries at T give line x");
}
