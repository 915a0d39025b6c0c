//! Storage: everything between a validated push and the bytes on disk, in data-flow order.
//!
//! In: validated streams from `ingest` (through [`store::Store::push`]). Out: streams, blocks
//! and entries for `query`, and live entries for tails.
//!
//! - `wal`: every accepted push is logged here before it is acknowledged, and replayed at start.
//! - `head`: the in-memory head blocks of each stream, cut into chunks by size and age.
//! - `chunk` (with `codec`, the varint helpers): zstd-compressed blocks of entries; `columns`,
//!   the columnar block (timestamps, lengths, metadata, lines and field summaries apart);
//!   `bloom`, the filter a sealed head block keeps of its tokens and field values.
//! - `segment`: sealed chunks of many streams in one memory-mapped file with a label index.
//! - `index`: the per-segment search index (correlation IDs, tokens) and its builder.
//! - `store`: the per-tenant state (head, segments, WAL): the push and flush paths, the indexer
//!   thread that gives each segment its index, and the compaction pass.
//! - `compactor` and `retention`: the merge that rewrites a time partition, and what retention
//!   and delete requests remove from it.
//! - `tail`: the hub that copies accepted entries to live tails.
//! - `bucket`: segments in object storage (S3, GCS, Azure): the client, the `catalog` of live
//!   segments that several nodes share, and the local `cache` of what queries read from it.
//! - `files`: every on-disk file and directory name, and durable renames; `lock`: one process
//!   per data directory.

pub mod bloom;
pub mod bucket;
pub mod chunk;
pub mod codec;
pub mod columns;
pub mod compactor;
pub mod compress;
pub mod files;
pub mod head;
pub mod index;
pub mod lock;
pub mod retention;
pub mod segment;
pub mod store;
pub mod tail;
pub mod wal;
