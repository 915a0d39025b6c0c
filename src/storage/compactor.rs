//! The compactor: every `compactor.compaction_interval` it rewrites each tenant's segments into
//! one segment per time partition (`compactor.partition_period`, by chunk start), merging each
//! stream's chunks in timestamp order, re-cutting them to full size, recompressing at
//! `compactor.zstd_level`, and leaving out expired entries and lines of delete requests.
//!
//! A partition is rewritten when it holds chunks of several segments, of a segment that also
//! spans other partitions or still holds replaced chunks, or chunks that retention or a delete
//! request touches. One partition
//! is one atomic step (see the lineage in `segment`):
//!
//! ```text
//! write <seq>.seg.tmp                                  (failpoint compact-before-publish)
//! fsync → rename → fsync dir                           (failpoint compact-after-publish)
//! hide the replaced chunks in memory (queries switch)   (failpoint compact-before-delete)
//! delete inputs whose chunks are all replaced → fsync dir
//! ```
//! A crash before the rename leaves the inputs; after it, start-up hides the inputs' replaced
//! chunks and deletes the inputs that are wholly replaced. Queries that hold an input keep its
//! mapping until they finish. Before a partition is written the free space is checked against
//! its input size, so compaction never needs more free disk than one partition; when short it
//! stops, reports, and tries again at the next interval.
//!
//! Neighbours: `store` (tenants, segments, WAL position), `retention` (what to drop),
//! `segment` and `chunk` (formats).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::PathBuf;

use thiserror::Error;

use crate::storage::chunk::{chunk_blocks, encode_chunk, Block, BlockRef, DecodedBlock, HeadBlock};
use crate::storage::retention::StreamDrops;
use crate::storage::segment::{
    ChunkMeta, SegmentError, SegmentReader, SegmentStream, SegmentWriter,
};

#[derive(Debug, Error)]
pub enum CompactError {
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("damaged data in {path} at byte {offset}: {reason}; its partition is left as it is")]
    Damaged {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("not enough free disk to compact: {need} bytes needed, {free} free; retrying at the next interval")]
    DiskShort { need: u64, free: u64 },
}

/// What one compaction pass did.
#[derive(Debug, Default, Clone)]
pub struct CompactionReport {
    pub partitions: usize,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub entries_read: u64,
    /// Entries left out, by why: past retention, named by a delete request, an exact duplicate.
    pub entries_expired: u64,
    pub entries_deleted: u64,
    pub entries_duplicate: u64,
    pub segments_deleted: usize,
    pub failures: Vec<String>,
    pub disk_short: bool,
}

impl CompactionReport {
    /// Entries left out for any reason.
    pub fn entries_dropped(&self) -> u64 {
        self.entries_expired + self.entries_deleted + self.entries_duplicate
    }

    pub(crate) fn add(&mut self, o: CompactionReport) {
        self.partitions += o.partitions;
        self.input_bytes += o.input_bytes;
        self.output_bytes += o.output_bytes;
        self.entries_read += o.entries_read;
        self.entries_expired += o.entries_expired;
        self.entries_deleted += o.entries_deleted;
        self.entries_duplicate += o.entries_duplicate;
        self.segments_deleted += o.segments_deleted;
        self.failures.extend(o.failures);
        self.disk_short |= o.disk_short;
    }
}

/// Builds a stream's output chunks: blocks of `block_size`, chunks of `target` raw bytes.
pub(crate) struct ChunkSink {
    block_size: usize,
    target: usize,
    level: i32,
    head: HeadBlock,
    blocks: Vec<Block>,
    blocks_raw: usize,
    /// The stream's index in the output, once it has a chunk.
    stream: Option<u32>,
}

impl ChunkSink {
    pub(crate) fn new(block_size: usize, target: usize, level: i32) -> ChunkSink {
        ChunkSink {
            block_size,
            target,
            level,
            head: HeadBlock::default(),
            blocks: Vec::new(),
            blocks_raw: 0,
            stream: None,
        }
    }

    /// Whether the current stream has a chunk in the output yet.
    pub(crate) fn stream_started(&self) -> bool {
        self.stream.is_some()
    }

    /// Starts the next stream: its first chunk adds it to the output segment.
    pub(crate) fn start_stream(&mut self) {
        self.stream = None;
    }

    pub(crate) fn push(
        &mut self,
        w: &mut SegmentWriter,
        meta: &SegmentStream,
        ts: i64,
        line: &[u8],
        md: &[u8],
    ) -> Result<(), CompactError> {
        self.head.push_raw(ts, line, md);
        if self.head.size() >= self.block_size {
            self.seal_block();
            if self.blocks_raw >= self.target {
                self.finish_chunk(w, meta)?;
            }
        }
        Ok(())
    }

    fn seal_block(&mut self) {
        if self.head.is_empty() {
            return;
        }
        self.blocks_raw += self.head.size();
        self.blocks.push(self.head.seal(self.level));
        self.head = HeadBlock::with_capacity_like(&self.head);
    }

    pub(crate) fn finish_chunk(
        &mut self,
        w: &mut SegmentWriter,
        meta: &SegmentStream,
    ) -> Result<(), CompactError> {
        self.seal_block();
        if self.blocks.is_empty() {
            return Ok(());
        }
        let idx = *self
            .stream
            .get_or_insert_with(|| w.add_stream(meta.clone()));
        let mut buf =
            Vec::with_capacity(self.blocks.iter().map(|b| b.bytes.len()).sum::<usize>() + 8);
        encode_chunk(self.blocks.iter(), &mut buf);
        let min_ts = self.blocks.iter().map(|b| b.min_ts).min().unwrap_or(0);
        let max_ts = self.blocks.iter().map(|b| b.max_ts).max().unwrap_or(0);
        let n: u32 = self.blocks.iter().map(|b| b.n_entries).sum();
        w.add_chunk(idx, &buf, min_ts, max_ts, n, self.blocks_raw as u64)?;
        self.blocks.clear();
        self.blocks_raw = 0;
        Ok(())
    }
}

/// One block being read during a merge.
struct Cursor {
    block: DecodedBlock,
    at: usize,
}

/// Calls `emit` with a stream's entries from `chunks` in timestamp order (ties: input order),
/// leaving out dropped entries and exact duplicates. Blocks are sorted runs; a block is
/// decompressed only when the merge reaches its first timestamp, so memory holds just the
/// blocks that overlap in time.
pub(crate) fn merge_stream(
    chunks: &[(&SegmentReader, &ChunkMeta)],
    drops: &StreamDrops<'_>,
    stats: &mut CompactionReport,
    mut emit: impl FnMut(i64, &[u8], &[u8]) -> Result<(), CompactError>,
) -> Result<(), CompactError> {
    let data = chunks
        .iter()
        .map(|(seg, c)| seg.chunk_bytes(c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut pending: Vec<(BlockRef<'_>, &SegmentReader, u64)> = Vec::new();
    for ((seg, c), data) in chunks.iter().zip(&data) {
        let blocks = chunk_blocks(data).map_err(|e| CompactError::Damaged {
            path: seg.path().to_path_buf(),
            offset: c.offset,
            reason: e.to_string(),
        })?;
        pending.extend(blocks.into_iter().map(|b| (b, *seg, c.offset)));
    }
    // Stable: equal start times keep input order (older segments first).
    pending.sort_by_key(|(b, _, _)| b.min_ts);
    let mut next = 0usize;
    let mut cursors: Vec<Cursor> = Vec::new();
    let mut free: Vec<DecodedBlock> = Vec::new();
    let mut heap: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
    let mut last: Option<(i64, Vec<u8>, Vec<u8>)> = None;
    loop {
        let head_ts = heap.peek().map(|Reverse((ts, _))| *ts);
        if next < pending.len() && head_ts.is_none_or(|t| pending[next].0.min_ts <= t) {
            let (b, seg, chunk_off) = &pending[next];
            let mut block = free.pop().unwrap_or_default();
            block.decode_from(b).map_err(|e| CompactError::Damaged {
                path: seg.path().to_path_buf(),
                offset: chunk_off + b.offset as u64,
                reason: e.to_string(),
            })?;
            if !block.is_empty() {
                heap.push(Reverse((block.ts(0), cursors.len())));
                cursors.push(Cursor { block, at: 0 });
            }
            next += 1;
            continue;
        }
        let Some(Reverse((ts, ci))) = heap.pop() else {
            break;
        };
        let c = &mut cursors[ci];
        let (line, md) = (c.block.line(c.at), c.block.metadata_raw(c.at));
        stats.entries_read += 1;
        let dup = last
            .as_ref()
            .is_some_and(|(t, l, m)| *t == ts && l == line && m == md);
        if dup {
            stats.entries_duplicate += 1;
        } else if ts < drops.cutoff {
            stats.entries_expired += 1;
        } else if drops.drops(ts, line) {
            stats.entries_deleted += 1;
        } else {
            emit(ts, line, md)?;
            let l = last.get_or_insert_with(|| (0, Vec::new(), Vec::new()));
            l.0 = ts;
            l.1.clear();
            l.1.extend_from_slice(line);
            l.2.clear();
            l.2.extend_from_slice(md);
        }
        c.at += 1;
        if c.at < c.block.len() {
            heap.push(Reverse((c.block.ts(c.at), ci)));
        } else {
            free.push(std::mem::take(&mut c.block));
        }
    }
    Ok(())
}
