//! What the streams of a tenant hold over time, counted from metadata rather than by reading
//! lines: the numbers behind `/index/stats` and `/index/volume(_range)`.
//!
//! Segment chunks count by their metadata (a chunk that straddles a bucket's edge counts pro
//! rata of its time span, as Loki's index does); the head's entries count one by one. Bytes are
//! uncompressed bytes as stored (line and structured metadata), so an answer does not change
//! when the head is flushed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{
    matching_streams, scan, snapshot, Cancel, EntryVisitor, Part, QueryError, QueryStats, Snapshot,
};
use crate::labels::Labels;
use crate::logql::Matcher;
use crate::storage::store::Tenant;

/// What a stream holds in one time bucket.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Usage {
    pub chunks: u64,
    pub entries: u64,
    pub bytes: u64,
}

/// The time buckets of a volume query, split as Loki splits it: at multiples of `step`, the
/// first bucket starting at `start` and the last ending at `end`. Stats and instant volume are
/// one bucket. Bucket `i` holds entries with `from(i) <= ts < to(i)`.
pub struct Buckets {
    start: i64,
    end: i64,
    aligned: i64,
    step: i64,
    /// The number of buckets.
    pub n: usize,
}

impl Buckets {
    pub fn single(start: i64, end: i64) -> Buckets {
        Buckets {
            start,
            end,
            aligned: start,
            step: 0,
            n: usize::from(start < end),
        }
    }

    pub fn stepped(start: i64, end: i64, step: i64) -> Buckets {
        let aligned = start - start.rem_euclid(step);
        let n = if end > aligned {
            ((end - aligned - 1) / step + 1) as usize
        } else {
            0
        };
        Buckets {
            start,
            end,
            aligned,
            step,
            n,
        }
    }

    pub fn from(&self, i: usize) -> i64 {
        if i == 0 {
            self.start
        } else {
            self.aligned + i as i64 * self.step
        }
    }

    pub fn to(&self, i: usize) -> i64 {
        if i + 1 >= self.n {
            self.end
        } else {
            self.aligned + (i as i64 + 1) * self.step
        }
    }

    /// The sample timestamp of bucket `i`: its end, which Loki puts 1 ms before the next
    /// bucket's start.
    pub fn timestamp(&self, i: usize) -> i64 {
        if i + 1 >= self.n {
            self.end
        } else {
            self.to(i) - 1_000_000
        }
    }

    /// The bucket of a timestamp in `[start, end)`.
    pub fn index(&self, ts: i64) -> Option<usize> {
        if ts < self.start || ts >= self.end || self.n == 0 {
            return None;
        }
        if self.step == 0 {
            return Some(0);
        }
        Some((((ts - self.aligned) / self.step) as usize).min(self.n - 1))
    }
}

/// The share of a chunk spanning `[lo, hi]` that lies in `[from, to)`, as Loki's index
/// prorates chunks that straddle a query's range.
fn factor(from: i64, to: i64, lo: i64, hi: i64) -> f64 {
    if hi <= lo {
        return 1.0;
    }
    let overlap = (hi.min(to) - lo.max(from)).max(0);
    (overlap as f64 / (hi - lo) as f64).min(1.0)
}

/// Counts the head's entries per stream and bucket.
struct HeadUsage<'a> {
    buckets: &'a Buckets,
    streams: Vec<(Labels, Vec<Usage>)>,
}

impl EntryVisitor for HeadUsage<'_> {
    fn stream(&mut self, labels: &Labels) {
        self.streams
            .push((labels.clone(), vec![Usage::default(); self.buckets.n]));
    }
    fn entry(&mut self, ts: i64, line: &[u8], metadata: &[u8]) {
        let (Some(i), Some((_, usage))) = (self.buckets.index(ts), self.streams.last_mut()) else {
            return;
        };
        usage[i].entries += 1;
        usage[i].bytes += (line.len() + metadata.len()) as u64;
    }
    fn counts_only(&self) -> bool {
        true
    }
    fn counted(&mut self, ts: i64, line_len: usize, metadata: &[u8]) {
        let (Some(i), Some((_, usage))) = (self.buckets.index(ts), self.streams.last_mut()) else {
            return;
        };
        usage[i].entries += 1;
        usage[i].bytes += (line_len + metadata.len()) as u64;
    }
}

/// Per matching stream, what it holds in each bucket: segment chunks by their metadata, head
/// entries one by one (each head stream with entries in a bucket counts as one chunk there).
pub fn usage_by_stream(
    tenant: &Tenant,
    matchers: &[Matcher],
    b: &Buckets,
    cancel: &Cancel,
) -> Result<BTreeMap<Labels, Vec<Usage>>, QueryError> {
    let mut out: BTreeMap<Labels, Vec<Usage>> = BTreeMap::new();
    if b.n == 0 {
        return Ok(out);
    }
    let mut add = |labels: &Labels, usage: &[Usage]| {
        let total = out
            .entry(labels.clone())
            .or_insert_with(|| vec![Usage::default(); b.n]);
        for (t, u) in total.iter_mut().zip(usage) {
            t.chunks += u.chunks;
            t.entries += u.entries;
            t.bytes += u.bytes;
        }
    };
    let snap = snapshot(tenant, matchers, b.start, b.end);
    for seg in &snap.segments {
        if cancel.is_cancelled() {
            return Err(QueryError::Stopped);
        }
        if seg.max_ts < b.start || seg.min_ts >= b.end {
            continue;
        }
        let ids = matching_streams(seg, matchers);
        let mut per_stream: HashMap<u32, Vec<Usage>> = HashMap::new();
        for c in seg
            .chunks
            .iter()
            .filter(|c| ids.binary_search(&c.stream).is_ok())
        {
            if c.max_ts < b.start || c.min_ts >= b.end {
                continue;
            }
            let (Some(first), Some(last)) = (
                b.index(c.min_ts.max(b.start)),
                b.index(c.max_ts.min(b.end - 1)),
            ) else {
                continue;
            };
            let usage = per_stream
                .entry(c.stream)
                .or_insert_with(|| vec![Usage::default(); b.n]);
            for (i, u) in usage.iter_mut().enumerate().take(last + 1).skip(first) {
                let f = factor(b.from(i), b.to(i), c.min_ts, c.max_ts);
                u.chunks += 1;
                u.entries += (c.n_entries as f64 * f) as u64;
                u.bytes += (c.raw_bytes as f64 * f) as u64;
            }
        }
        for (id, usage) in per_stream {
            add(&seg.streams[id as usize].labels, &usage);
        }
    }
    let head = Snapshot {
        segments: Vec::new(),
        head: snap.head,
        drops: snap.drops,
        now: snap.now,
        narrowed: Default::default(),
        skip: Default::default(),
    };
    let mut v = HeadUsage {
        buckets: b,
        streams: Vec::new(),
    };
    let mut stats = QueryStats {
        cancel: cancel.clone(),
        ..QueryStats::default()
    };
    scan(
        &head,
        matchers,
        &|_| true,
        b.start,
        b.end,
        Part::ALL,
        &mut stats,
        &mut v,
    );
    if stats.stopped {
        return Err(QueryError::Stopped);
    }
    for (labels, mut usage) in v.streams {
        if usage.iter().all(|u| u.entries == 0) {
            continue;
        }
        for u in usage.iter_mut().filter(|u| u.entries > 0) {
            u.chunks = 1;
        }
        add(&labels, &usage);
    }
    Ok(out)
}

/// How a volume query names its series.
pub struct VolumeSpec {
    /// Labels kept (by series) or counted (by labels); every label when `match_any`.
    pub names: BTreeSet<String>,
    pub match_any: bool,
    pub by_labels: bool,
    pub has_targets: bool,
    pub limit: usize,
}

/// One result series: its name (Loki sorts ties by it), its labels (by label name: the one
/// name with an empty value) and its samples (bucket timestamp, bytes).
pub struct VolumeSeries {
    pub name: String,
    pub metric: Labels,
    pub samples: Vec<(i64, u64)>,
}

/// Volumes per bucket, each bucket keeping its `limit` largest names (largest first, ties by
/// name), then the series sorted by their first sample, largest first.
pub fn volume_series(
    usage: &BTreeMap<Labels, Vec<Usage>>,
    b: &Buckets,
    spec: &VolumeSpec,
) -> Vec<VolumeSeries> {
    let mut series: BTreeMap<String, VolumeSeries> = BTreeMap::new();
    for i in 0..b.n {
        // name -> (metric, bytes)
        let mut volumes: HashMap<String, (Labels, u64)> = HashMap::new();
        for (labels, u) in usage {
            let u = u[i];
            if u.chunks == 0 {
                continue;
            }
            if spec.by_labels {
                for (name, _) in labels.pairs() {
                    if spec.has_targets && !spec.names.contains(name) {
                        continue;
                    }
                    volumes
                        .entry(name.clone())
                        .or_insert_with(|| {
                            (Labels::from_pairs(vec![(name.clone(), String::new())]), 0)
                        })
                        .1 += u.bytes;
                }
            } else {
                let kept = Labels::from_pairs(
                    labels
                        .pairs()
                        .iter()
                        .filter(|(n, _)| spec.match_any || spec.names.contains(n))
                        .cloned()
                        .collect(),
                );
                volumes
                    .entry(kept.to_string())
                    .or_insert_with(|| (kept.clone(), 0))
                    .1 += u.bytes;
            }
        }
        let mut ranked: Vec<(String, (Labels, u64))> = volumes.into_iter().collect();
        ranked.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(spec.limit);
        for (name, (metric, bytes)) in ranked {
            series
                .entry(name.clone())
                .or_insert_with(|| VolumeSeries {
                    name,
                    metric,
                    samples: Vec::new(),
                })
                .samples
                .push((b.timestamp(i), bytes));
        }
    }
    let mut out: Vec<VolumeSeries> = series.into_values().collect();
    out.sort_by(|a, b| {
        b.samples[0]
            .1
            .cmp(&a.samples[0].1)
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}

/// The totals of `/index/stats`: the number of streams with data, and their usage summed.
pub fn totals(usage: &BTreeMap<Labels, Vec<Usage>>) -> (u64, Usage) {
    let mut total = Usage::default();
    let mut streams = 0u64;
    for u in usage
        .values()
        .filter_map(|u| u.first())
        .filter(|u| u.chunks > 0)
    {
        streams += 1;
        total.chunks += u.chunks;
        total.entries += u.entries;
        total.bytes += u.bytes;
    }
    (streams, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_split_as_loki_splits() {
        let s = 1_000_000_000;
        let b = Buckets::stepped(90 * s, 200 * s, 60 * s);
        assert_eq!(b.n, 3);
        assert_eq!((b.from(0), b.to(0)), (90 * s, 120 * s));
        assert_eq!((b.from(1), b.to(1)), (120 * s, 180 * s));
        assert_eq!((b.from(2), b.to(2)), (180 * s, 200 * s));
        assert_eq!(b.timestamp(0), 120 * s - 1_000_000);
        assert_eq!(b.timestamp(2), 200 * s);
        assert_eq!(b.index(119 * s), Some(0));
        assert_eq!(b.index(180 * s), Some(2));
        assert_eq!(b.index(200 * s), None);
        assert_eq!(Buckets::single(5, 5).n, 0);
    }

    #[test]
    fn chunks_count_pro_rata() {
        assert_eq!(factor(0, 100, 10, 20), 1.0);
        assert_eq!(factor(15, 100, 10, 20), 0.5);
        assert_eq!(factor(0, 100, 50, 50), 1.0);
        assert_eq!(factor(0, 10, 20, 30), 0.0);
    }
}
