//! What a tenant may no longer see: entries past their retention period and lines named by
//! delete requests. Queries apply [`Drops`] to every entry they read, so expired and deleted
//! lines disappear at once; the compactor applies the same rules while rewriting segments, so
//! they also leave the disk. Delete requests (Loki's `/loki/api/v1/delete`) are kept per tenant
//! in `deletes.json`, written atomically (temporary file, fsync, rename).
//!
//! Neighbours: `config` gives the periods and rules, `store` holds a tenant's current `Drops`,
//! `query` and `compactor` read it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::Limits;
use crate::labels::Labels;
use crate::logql::{Expr, Matcher, Stage};
use crate::pipeline::Pipeline;

#[derive(Debug, Error)]
pub enum DeleteError {
    #[error("invalid delete query: {0}")]
    Query(String),
    #[error("invalid delete request: {0}")]
    Invalid(String),
    #[error("could not find delete request with given id")]
    NotFound,
    #[error("deletion of request which is in process or already processed is not allowed")]
    AlreadyProcessed,
    #[error("cannot store delete requests in {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Loki's status words.
pub const STATUS_RECEIVED: &str = "received";
pub const STATUS_PROCESSED: &str = "processed";

/// A delete request as stored and as `GET /loki/api/v1/delete` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeleteRequest {
    pub request_id: String,
    /// Increasing per tenant; a segment records the highest one applied to it.
    pub seq: u64,
    pub query: String,
    /// Nanoseconds, inclusive.
    pub start_ns: i64,
    pub end_ns: i64,
    pub created_at_ms: i64,
    pub status: String,
}

/// A tenant's delete requests, loaded from and saved to its `deletes.json`.
#[derive(Debug, Default)]
pub struct DeleteRequests {
    path: PathBuf,
    pub requests: Vec<DeleteRequest>,
}

impl DeleteRequests {
    /// No requests yet; they will be saved to `path`.
    pub fn empty(path: &Path) -> DeleteRequests {
        DeleteRequests {
            path: path.to_path_buf(),
            requests: Vec::new(),
        }
    }

    pub fn load(path: &Path) -> Result<DeleteRequests, DeleteError> {
        let io = |source| DeleteError::Io {
            path: path.to_path_buf(),
            source,
        };
        let requests = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        Ok(DeleteRequests {
            path: path.to_path_buf(),
            requests,
        })
    }

    fn save(&self) -> Result<(), DeleteError> {
        let io = |source| DeleteError::Io {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = self
            .path
            .with_extension(format!("json{}", crate::storage::files::TMP_SUFFIX));
        let body = serde_json::to_vec(&self.requests).expect("bug: requests serialize");
        let file = std::fs::File::create(&tmp).map_err(io)?;
        std::io::Write::write_all(&mut &file, &body).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            crate::storage::files::sync_dir(dir).map_err(io)?;
        }
        Ok(())
    }

    /// Validates and stores a new request; returns it.
    pub fn add(
        &mut self,
        query: &str,
        start_ns: i64,
        end_ns: i64,
        now_ms: i64,
    ) -> Result<DeleteRequest, DeleteError> {
        CompiledDelete::compile(query, 0, start_ns, end_ns)?;
        if end_ns < start_ns {
            return Err(DeleteError::Invalid(
                "end time can't be before start time".into(),
            ));
        }
        let seq = self.requests.iter().map(|r| r.seq).max().unwrap_or(0) + 1;
        let id = xxhash_rust::xxh3::xxh3_64(format!("{seq}/{query}/{now_ms}").as_bytes());
        let req = DeleteRequest {
            request_id: format!("{:08x}", id as u32),
            seq,
            query: query.to_string(),
            start_ns,
            end_ns,
            created_at_ms: now_ms,
            status: STATUS_RECEIVED.to_string(),
        };
        self.requests.push(req.clone());
        if let Err(e) = self.save() {
            self.requests.pop();
            return Err(e);
        }
        Ok(req)
    }

    /// Cancels a request that compaction has not processed yet.
    pub fn cancel(&mut self, id: &str, force: bool) -> Result<(), DeleteError> {
        let i = self
            .requests
            .iter()
            .position(|r| r.request_id == id)
            .ok_or(DeleteError::NotFound)?;
        if self.requests[i].status != STATUS_RECEIVED && !force {
            return Err(DeleteError::AlreadyProcessed);
        }
        let removed = self.requests.remove(i);
        if let Err(e) = self.save() {
            self.requests.insert(i, removed);
            return Err(e);
        }
        Ok(())
    }

    /// Marks requests processed (compaction applied them to every segment).
    pub fn mark_processed(&mut self, seqs: &[u64]) -> Result<(), DeleteError> {
        let mut changed = false;
        for r in self.requests.iter_mut() {
            if seqs.contains(&r.seq) && r.status != STATUS_PROCESSED {
                r.status = STATUS_PROCESSED.to_string();
                changed = true;
            }
        }
        if changed {
            self.save()?;
        }
        Ok(())
    }
}

/// A delete request ready to test entries: its selector, its line filters and its time range.
#[derive(Debug)]
pub struct CompiledDelete {
    pub seq: u64,
    pub matchers: Vec<Matcher>,
    filter: Option<Pipeline>,
    pub start_ns: i64,
    pub end_ns: i64,
}

impl CompiledDelete {
    /// A delete query is a stream selector with optional line filters, as in Loki.
    pub fn compile(
        query: &str,
        seq: u64,
        start_ns: i64,
        end_ns: i64,
    ) -> Result<CompiledDelete, DeleteError> {
        let expr =
            crate::logql::parse_expr(query).map_err(|e| DeleteError::Query(e.to_string()))?;
        let Expr::Log(log) = expr else {
            return Err(DeleteError::Query(
                "a delete query is a log stream selector with optional line filters".into(),
            ));
        };
        if log
            .pipeline
            .iter()
            .any(|s| !matches!(s, Stage::LineFilter(_)))
        {
            return Err(DeleteError::Query(
                "only line filters may follow the stream selector".into(),
            ));
        }
        let filter = if log.pipeline.is_empty() {
            None
        } else {
            Some(Pipeline::new(&log.pipeline).map_err(|e| DeleteError::Query(e.to_string()))?)
        };
        Ok(CompiledDelete {
            seq,
            matchers: log.selector.matchers,
            filter,
            start_ns,
            end_ns,
        })
    }

    fn applies_to(&self, labels: &Labels) -> bool {
        crate::logql::labels_match(&self.matchers, |n| labels.get(n))
    }

    fn deletes(&self, ts: i64, line: &[u8]) -> bool {
        ts >= self.start_ns
            && ts <= self.end_ns
            && self.filter.as_ref().is_none_or(|f| f.filter_line(line))
    }
}

/// Retention rules of one tenant.
#[derive(Debug, Default)]
pub struct Retention {
    period: Option<Duration>,
    rules: Vec<(Vec<Matcher>, i64, Duration)>,
}

impl Retention {
    pub fn from_limits(l: &Limits) -> Retention {
        let rules = l
            .retention_stream
            .iter()
            .filter_map(|r| match crate::logql::parse_selector(&r.selector) {
                Ok(m) => Some((m, r.priority, r.period)),
                Err(e) => {
                    // Checked when the config is read; a rule that fails here is skipped loudly.
                    tracing::error!(selector = %r.selector, error = %e, "bad retention_stream selector skipped");
                    None
                }
            })
            .collect();
        Retention {
            period: (!l.retention_period.is_zero()).then_some(l.retention_period),
            rules,
        }
    }

    /// The retention period of a stream (`None`: kept forever): the matching rule with the
    /// highest priority (ties: the shortest period), else `retention_period`.
    pub fn period_for(&self, labels: &Labels) -> Option<Duration> {
        let mut best: Option<(i64, Duration)> = None;
        for (m, prio, period) in &self.rules {
            if !crate::logql::labels_match(m, |n| labels.get(n)) {
                continue;
            }
            best = match best {
                Some((p, d)) if p > *prio || (p == *prio && d <= *period) => Some((p, d)),
                _ => Some((*prio, *period)),
            };
        }
        best.map(|(_, d)| d)
            .or(self.period)
            .filter(|d| !d.is_zero())
    }
}

/// What one tenant's readers must drop, at one moment.
#[derive(Debug, Default)]
pub struct Drops {
    pub retention: Retention,
    pub deletes: Vec<CompiledDelete>,
}

/// The rules that apply to one stream.
#[derive(Debug, Default)]
pub struct StreamDrops<'a> {
    /// Entries with `ts < cutoff` are expired.
    pub cutoff: i64,
    deletes: Vec<&'a CompiledDelete>,
}

impl Drops {
    pub fn new(limits: &Limits, requests: &[DeleteRequest]) -> Drops {
        let deletes = requests
            .iter()
            .filter_map(|r| CompiledDelete::compile(&r.query, r.seq, r.start_ns, r.end_ns).ok())
            .collect();
        Drops {
            retention: Retention::from_limits(limits),
            deletes,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.retention.period.is_none()
            && self.retention.rules.is_empty()
            && self.deletes.is_empty()
    }

    /// The rules for a stream at `now_ns`, with the deletes numbered above `applied` (those
    /// already applied to the data being read are left out) up to `through`.
    pub fn for_stream(
        &self,
        labels: &Labels,
        now_ns: i64,
        applied: u64,
        through: u64,
    ) -> StreamDrops<'_> {
        let cutoff = self
            .retention
            .period_for(labels)
            .map_or(i64::MIN, |d| now_ns.saturating_sub(d.as_nanos() as i64));
        StreamDrops {
            cutoff,
            deletes: self
                .deletes
                .iter()
                .filter(|d| d.seq > applied && d.seq <= through && d.applies_to(labels))
                .collect(),
        }
    }
}

impl StreamDrops<'_> {
    pub fn is_noop(&self) -> bool {
        self.cutoff == i64::MIN && self.deletes.is_empty()
    }

    /// Whether some entry in `[min_ts, max_ts]` may be dropped.
    pub fn touches(&self, min_ts: i64, max_ts: i64) -> bool {
        min_ts < self.cutoff
            || self
                .deletes
                .iter()
                .any(|d| d.start_ns <= max_ts && d.end_ns >= min_ts)
    }

    pub fn drops(&self, ts: i64, line: &[u8]) -> bool {
        ts < self.cutoff || self.deletes.iter().any(|d| d.deletes(ts, line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StreamRetention;

    fn labels(s: &str) -> Labels {
        Labels::parse(s).unwrap()
    }

    #[test]
    fn stream_rules_beat_the_tenant_period() {
        let mut l = Limits {
            retention_period: Duration::from_secs(30 * 86400),
            ..Limits::default()
        };
        l.retention_stream = vec![
            StreamRetention {
                selector: r#"{level="debug"}"#.into(),
                priority: 1,
                period: Duration::from_secs(86400),
            },
            StreamRetention {
                selector: r#"{app="audit"}"#.into(),
                priority: 2,
                period: Duration::from_secs(365 * 86400),
            },
            StreamRetention {
                selector: r#"{level="debug"}"#.into(),
                priority: 1,
                period: Duration::from_secs(3600),
            },
        ];
        let r = Retention::from_limits(&l);
        let days = |s: &str| r.period_for(&labels(s)).map(|d| d.as_secs() / 3600);
        assert_eq!(days(r#"{app="x"}"#), Some(30 * 24));
        assert_eq!(
            days(r#"{app="x", level="debug"}"#),
            Some(1),
            "tie: shortest"
        );
        assert_eq!(days(r#"{app="audit", level="debug"}"#), Some(365 * 24));
        assert_eq!(Retention::default().period_for(&labels(r#"{a="b"}"#)), None);
    }

    #[test]
    fn deletes_match_selector_range_and_filter() {
        let reqs = vec![DeleteRequest {
            request_id: "x".into(),
            seq: 3,
            query: r#"{app="api"} |= "secret""#.into(),
            start_ns: 100,
            end_ns: 200,
            created_at_ms: 0,
            status: STATUS_RECEIVED.into(),
        }];
        let d = Drops::new(&Limits::default(), &reqs);
        let api = labels(r#"{app="api"}"#);
        let s = d.for_stream(&api, 1_000, 0, u64::MAX);
        assert!(s.drops(150, b"a secret here"));
        assert!(s.drops(200, b"secret"), "end is inclusive");
        assert!(!s.drops(201, b"secret"));
        assert!(!s.drops(150, b"public"));
        assert!(s.touches(0, 100) && !s.touches(201, 300));
        assert!(d
            .for_stream(&labels(r#"{app="web"}"#), 0, 0, u64::MAX)
            .is_noop());
        assert!(
            d.for_stream(&api, 0, 3, u64::MAX).is_noop(),
            "already applied"
        );
        assert!(d.for_stream(&api, 0, 0, 2).is_noop(), "not due yet");
    }

    #[test]
    fn delete_queries_are_selectors_with_line_filters() {
        for ok in [
            r#"{a="b"}"#,
            r#"{a="b"} |= "x" != "y""#,
            r#"{a=~".+"} |~ "e.r""#,
        ] {
            CompiledDelete::compile(ok, 1, 0, 1).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [r#"{a="b"} | json"#, r#"count_over_time({a="b"}[1m])"#, "{"] {
            assert!(CompiledDelete::compile(bad, 1, 0, 1).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_persist_and_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deletes.json");
        let mut d = DeleteRequests::load(&path).unwrap();
        let a = d.add(r#"{a="b"}"#, 1, 2, 1000).unwrap();
        let b = d.add(r#"{a="c"}"#, 1, 2, 2000).unwrap();
        assert_eq!((a.seq, b.seq), (1, 2));
        assert!(d.add(r#"{a="b"}"#, 5, 2, 1000).is_err());
        d.mark_processed(&[1]).unwrap();
        assert!(matches!(
            d.cancel(&a.request_id, false),
            Err(DeleteError::AlreadyProcessed)
        ));
        assert!(matches!(
            d.cancel("nope", false),
            Err(DeleteError::NotFound)
        ));
        d.cancel(&b.request_id, false).unwrap();
        let again = DeleteRequests::load(&path).unwrap();
        assert_eq!(again.requests.len(), 1);
        assert_eq!(again.requests[0].status, STATUS_PROCESSED);
    }
}
