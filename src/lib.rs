//! Sawmill: a log aggregation and query engine that speaks Grafana Loki's API, in one binary.
//!
//! ```text
//!  push (JSON / snappy protobuf)
//!    │
//!  http ──► ingest (decode, validate, rate) ──► head ◄──► wal (logged before acknowledged)
//!    │                                           │ seal (zstd)
//!    │                                        chunk ──► segment (mmap, label index) ◄── files
//!    │                                                     │
//!    └──── query_range / labels / series ◄── query ◄───────┘ (using logql for the AST)
//! ```
//! Side paths: `ruler` (alerting and recording rules evaluated through `query`) → `notify`
//! (Alertmanager, Prometheus remote write), `compactor` (merges segments per time partition,
//! applying `retention`: expired entries and delete requests), `config` (YAML with Loki's key names), `telemetry`
//! (`/metrics`), `server` (start, recovery, shutdown), `cli` (the `sawmill` command line, load
//! generator), `failpoint` (crash tests).

pub mod bench;
pub mod chunk;
pub mod cli;
pub mod client;
pub mod codec;
pub mod compactor;
pub mod config;
pub mod failpoint;
pub mod files;
pub mod head;
pub mod http;
pub mod index;
pub mod indexer;
pub mod ingest;
pub mod labels;
pub mod lock;
pub mod logql;
pub mod notify;
pub mod query;
pub mod retention;
pub mod ruler;
pub mod segment;
pub mod server;
pub mod soak;
pub mod store;
pub mod tail;
pub mod telemetry;
pub mod tenant;
pub mod wal;
