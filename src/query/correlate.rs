//! Request-ID correlation: every entry of a tenant, across all its streams, that carries an
//! ID in one of the correlation fields (`index.fields`: as `| json` and `| logfmt` name them,
//! or as structured metadata or labels), in time order, with the service and level of each.
//! The search index narrows the read to the blocks holding the ID; each entry is checked.

use memchr::memmem;

use super::{scan, snapshot, Cancel, EntryVisitor, Part, QueryError, QueryStats};
use crate::config::IndexConfig;
use crate::labels::Labels;
use crate::pipeline::fields::FieldExtractor;
use crate::storage::index::Probe;
use crate::storage::store::Tenant;

#[derive(Debug, Clone, PartialEq)]
pub struct CorrelatedEntry {
    pub ts: i64,
    /// The entry's stream labels.
    pub labels: Labels,
    pub line: String,
    /// From `index.service_label` (a stream label, metadata or a field of the line).
    pub service: Option<String>,
    /// From `index.level_label`, likewise.
    pub level: Option<String>,
}

#[derive(Debug, Default)]
pub struct Correlation {
    /// Oldest first; at most `limit`.
    pub entries: Vec<CorrelatedEntry>,
    /// More entries carry the ID than `limit`.
    pub truncated: bool,
    pub stats: QueryStats,
}

struct Finder<'a> {
    needle: memmem::Finder<'a>,
    id_text: &'a str,
    fields: FieldExtractor,
    /// Service and level fields, read only for entries that carry the ID.
    about: FieldExtractor,
    labels: Labels,
    md: Vec<(String, String)>,
    found: Vec<CorrelatedEntry>,
}

impl EntryVisitor for Finder<'_> {
    fn stream(&mut self, labels: &Labels) {
        self.labels = labels.clone();
        self.fields.set_stream(labels);
        self.about.set_stream(labels);
    }

    fn entry(&mut self, ts: i64, line: &[u8], md: &[u8]) {
        let in_labels = self.labels.pairs().iter().any(|(_, v)| v == self.id_text);
        if !in_labels && self.needle.find(line).is_none() && self.needle.find(md).is_none() {
            return;
        }
        self.md.clear();
        self.md.extend(
            crate::storage::chunk::metadata_pairs(md).map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let mut hit = false;
        let id = self.id_text;
        self.fields.each(line, &self.md, &mut |_, v| hit |= v == id);
        if !hit {
            return;
        }
        let (mut service, mut level) = (None, None);
        self.about.each(line, &self.md, &mut |i, v| {
            let slot = if i == 0 { &mut service } else { &mut level };
            if slot.is_none() {
                *slot = Some(v.to_string());
            }
        });
        self.found.push(CorrelatedEntry {
            ts,
            labels: self.labels.clone(),
            line: String::from_utf8_lossy(line).into_owned(),
            service,
            level,
        });
    }
}

/// Every entry in `[start, end)` carrying `id`, oldest first, at most `limit`.
pub fn correlate(
    tenant: &Tenant,
    cfg: &IndexConfig,
    id: &str,
    start: i64,
    end: i64,
    limit: usize,
    cancel: Cancel,
) -> Result<Correlation, QueryError> {
    let mut snap = snapshot(tenant, &[], start, end);
    if !cancel.plain_reads {
        snap.narrow_by(&Probe::correlation(id, &cfg.fields));
        snap.skip = super::skip::Skip::for_value(id);
    }
    let parts = super::parallelism();
    // Part threads log under the request's span (its request ID).
    let span = tracing::Span::current();
    let results: Vec<(Vec<CorrelatedEntry>, QueryStats)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..parts)
            .map(|index| {
                let (snap, cancel) = (&snap, cancel.clone());
                let span = span.clone();
                sc.spawn(move || {
                    let _in = span.enter();
                    let mut finder = Finder {
                        needle: memmem::Finder::new(id.as_bytes()),
                        id_text: id,
                        fields: FieldExtractor::new(&cfg.fields),
                        about: FieldExtractor::new(&[
                            cfg.service_label.clone(),
                            cfg.level_label.clone(),
                        ]),
                        labels: Labels::default(),
                        md: Vec::new(),
                        found: Vec::new(),
                    };
                    let mut stats = QueryStats {
                        cancel,
                        ..QueryStats::default()
                    };
                    let part = Part { index, of: parts };
                    scan(
                        snap,
                        &[],
                        &|_| true,
                        start,
                        end,
                        part,
                        &mut stats,
                        &mut finder,
                    );
                    (finder.found, stats)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bug: correlate part panicked"))
            .collect()
    });
    let mut stats = QueryStats {
        cancel,
        ..QueryStats::default()
    };
    let mut entries = Vec::new();
    for (found, part_stats) in results {
        stats.merge(part_stats);
        entries.extend(found);
    }
    if stats.stopped {
        return Err(QueryError::Stopped);
    }
    entries.sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| a.labels.cmp(&b.labels)));
    let truncated = entries.len() > limit;
    entries.truncate(limit);
    Ok(Correlation {
        entries,
        truncated,
        stats,
    })
}
