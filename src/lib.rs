//! Sawmill: a log aggregation and query engine that speaks Grafana Loki's API, in one binary.
//!
//! Every module, by floor: a module imports only from the floors below its own (checked by
//! `tests/layers.rs`).
//!
//! ```text
//!  top        cli (+ bench) · client · server · http      the command line and the HTTP API
//!               │ push                         ▲ query_range, labels, tail, rules, correlate
//!  engines      │                  ruler ──► notify (Alertmanager, remote write)
//!               │                    │
//!               │                  query (select, skip, scan, metric, correlate, usage, detected)
//!               ▼                    │ reads
//!  storage    ingest ─────────►  storage: wal ─► head ─► chunk (columns, bloom) ─► segment ─► index
//!  (decode,validate,rate)               store (push, flush, indexer, compaction)
//!                                       compactor · retention · tail (live tails) · files
//!               │                    │
//!  lines      pipeline (stages, labels builder, field extraction) ──► template (Go templates)
//!             patterns (Drain miner)
//!               │
//!  bottom     logql (parser, AST, matchers, durations and byte sizes) · labels · model
//!             (Entry, tenant IDs, clock) · config · telemetry · failpoint
//! ```
//!
//! The push path: `http::push` → `ingest::decode` → `ingest::validate` → `storage::store`
//! (`wal` before the acknowledgement, then `head`) → sealed into `chunk`s → flushed into a
//! `segment` → indexed by `storage::index`. The query path: `http::read` → `logql` parses →
//! `query` picks streams and blocks from the `storage` snapshot (and `query::skip` leaves
//! out those that cannot match) → `pipeline` runs the stages
//! per entry → `query::metric` aggregates → `http::read` encodes.
//!
//! Beside the push path, `patterns` mines Drain templates from accepted lines as they arrive
//! (`/loki/api/v1/patterns`).

pub mod cli;
pub mod client;
pub mod config;
pub mod failpoint;
pub mod http;
pub mod ingest;
pub mod labels;
pub mod log_level;
pub mod logql;
pub mod loki_keys;
pub mod model;
pub mod notify;
pub mod patterns;
pub mod pipeline;
pub mod query;
pub mod ruler;
pub mod server;
pub mod storage;
pub mod telemetry;
pub mod template;
