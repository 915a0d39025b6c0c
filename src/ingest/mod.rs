//! Ingest: everything between a push body arriving and entries being handed to the head.
//! `decode` turns JSON (plain, gzip, deflate) or snappy protobuf bodies into [`PushRequest`]s
//! within size limits; `validate` applies Loki's per-stream and per-entry rules and names each
//! discard reason; `discover` adds `service_name` and `detected_level` as Loki does; `otlp`
//! maps OpenTelemetry log records to push requests; `rate` is the per-tenant ingestion rate limiter, `stream_rate` the per-stream one. Neighbours: `http` calls in,
//! `store` receives the validated streams.

pub mod decode;
pub mod discover;
pub mod otlp;
pub mod rate;
pub mod stream_rate;
pub mod validate;

use crate::labels::Labels;
pub use crate::model::Entry;

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

/// A stream that passed validation, with its accepted entries.
#[derive(Debug, Clone)]
pub struct ValidStream {
    pub labels: Labels,
    pub entries: Vec<Entry>,
}
