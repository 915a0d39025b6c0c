//! The model: the few types and the clock that every layer may import. Nothing here imports
//! another module of the crate.
//!
//! - [`Entry`]: one log entry (timestamp, line, structured metadata).
//! - `time`: the clock ([`now_ns`]) that retention, compaction and query defaults read, and
//!   Loki's timestamp parameters.
//! - `tenant`: tenant IDs (`X-Scope-OrgID`) and the directory names they live under.

pub mod tenant;
pub mod time;

pub use time::now_ns;

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
