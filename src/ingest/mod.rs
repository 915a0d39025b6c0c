//! Ingest: everything between a push body arriving and entries being handed to the head.
//! `decode` turns JSON (plain, gzip, deflate) or snappy protobuf bodies into [`PushRequest`]s
//! within size limits; `validate` applies Loki's per-stream and per-entry rules and names each
//! discard reason; `rate` is the per-tenant ingestion rate limiter, `stream_rate` the per-stream one. Neighbours: `http` calls in,
//! `store` receives the validated streams.

pub mod decode;
pub mod rate;
pub mod stream_rate;
pub mod validate;

use crate::labels::Labels;

/// One push request, as decoded from any wire format.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PushRequest {
    pub streams: Vec<PushStream>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PushStream {
    /// The labels as sent, before validation.
    pub labels: RawLabels,
    pub entries: Vec<Entry>,
}

/// Stream labels as the wire carried them: JSON sends a map, protobuf a Prometheus text form that
/// must still be parsed (and can fail, which rejects only that stream).
#[derive(Debug, Clone, PartialEq)]
pub enum RawLabels {
    Pairs(Vec<(String, String)>),
    Text(String),
}

/// A log entry: nanosecond timestamp, the line, and its structured metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub ts: i64,
    pub line: String,
    pub metadata: Vec<(String, String)>,
}

impl Entry {
    /// Bytes counted against rate limits, as Loki counts them: line plus metadata names and values.
    pub fn size(&self) -> usize {
        self.line.len() + self.metadata_size()
    }

    pub fn metadata_size(&self) -> usize {
        self.metadata.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

/// A stream that passed validation, with its accepted entries.
#[derive(Debug, Clone)]
pub struct ValidStream {
    pub labels: Labels,
    pub entries: Vec<Entry>,
}
