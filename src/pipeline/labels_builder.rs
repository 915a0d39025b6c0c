//! The labels of one entry as the pipeline changes them, in Loki's three categories: the
//! stream labels (fixed per stream), the entry's structured metadata, and the labels that
//! parser and formatting stages add ("parsed"). Stages read and write through
//! [`LabelsBuilder`]; the engine reads the result with [`LabelsBuilder::labels`] or, for the
//! `categorize-labels` encoding, [`LabelsBuilder::categorized`]. `__error__` and
//! `__error_details__` live beside the labels and count as parsed labels in results.
//!
//! Collision rule (Loki's): a parser that extracts a name already present among the stream
//! labels stores it as `<name>_extracted`; structured metadata colliding with a stream label
//! is renamed the same way. A parsed label shadows structured metadata and stream labels of
//! the same name. One builder serves many entries: [`LabelsBuilder::set_stream`] once per
//! stream, [`LabelsBuilder::start_entry`] per entry; buffers are reused.

/// `__error__`: set by a stage that failed (parser, label filter, template, unwrap).
pub const ERROR_LABEL: &str = "__error__";
/// `__error_details__`: the message of that failure, when the stage gives one.
pub const ERROR_DETAILS_LABEL: &str = "__error_details__";
/// Appended to an extracted label whose name is already a stream label.
pub const DUPLICATE_SUFFIX: &str = "_extracted";

/// Where a label comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelCategory {
    Stream,
    StructuredMetadata,
    Parsed,
}

const CATEGORIES: [LabelCategory; 3] = [
    LabelCategory::Stream,
    LabelCategory::StructuredMetadata,
    LabelCategory::Parsed,
];

/// An entry's labels split by category, each sorted by name; the error labels are parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CategorizedLabels {
    pub stream: Vec<(String, String)>,
    pub structured_metadata: Vec<(String, String)>,
    pub parsed: Vec<(String, String)>,
}

/// Name/value pairs whose strings are kept allocated across entries: `clear` only forgets
/// the length, and `push` writes into a spare slot when there is one.
#[derive(Debug, Default, Clone)]
struct PairVec {
    items: Vec<(String, String)>,
    len: usize,
}

impl PairVec {
    fn clear(&mut self) {
        self.len = 0;
    }

    fn as_slice(&self) -> &[(String, String)] {
        &self.items[..self.len]
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.as_slice().iter().position(|(n, _)| n == name)
    }

    fn contains(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.position(name).map(|i| self.items[i].1.as_str())
    }

    fn push(&mut self, name: &str, value: &str) {
        if self.len < self.items.len() {
            let slot = &mut self.items[self.len];
            slot.0.clear();
            slot.0.push_str(name);
            slot.1.clear();
            slot.1.push_str(value);
        } else {
            self.items.push((name.to_string(), value.to_string()));
        }
        self.len += 1;
    }

    fn remove(&mut self, name: &str) {
        if let Some(i) = self.position(name) {
            self.items[i..self.len].rotate_left(1);
            self.len -= 1;
        }
    }
}

/// The labels of the entry being processed; see the module documentation.
#[derive(Debug, Default, Clone)]
pub struct LabelsBuilder {
    base: Vec<(String, String)>,
    del: PairVec,
    add: [PairVec; 3],
    err: String,
    err_details: String,
    scratch: String,
    /// The entry's structured metadata with normalised names, for [`Self::restart_entry`].
    metadata: PairVec,
    /// Names the current stream among all the streams of all builders.
    stream_id: u64,
}

fn slot(category: LabelCategory) -> usize {
    match category {
        LabelCategory::Stream => 0,
        LabelCategory::StructuredMetadata => 1,
        LabelCategory::Parsed => 2,
    }
}

impl LabelsBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder for one stream, ready for its first entry.
    pub fn for_stream<K: AsRef<str>, V: AsRef<str>>(stream: &[(K, V)]) -> Self {
        let mut b = Self::new();
        b.set_stream(stream);
        b
    }

    /// Switches to another stream (sorted by name, as stored) and resets the entry state.
    pub fn set_stream<K: AsRef<str>, V: AsRef<str>>(&mut self, stream: &[(K, V)]) {
        self.base.clear();
        self.base.extend(
            stream
                .iter()
                .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string())),
        );
        self.base.sort_by(|a, b| a.0.cmp(&b.0));
        static STREAMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        self.stream_id = STREAMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.reset();
    }

    /// Differs from stream to stream (of any builder): what a stage may cache per stream
    /// labels is keyed by it.
    pub fn stream_id(&self) -> u64 {
        self.stream_id
    }

    /// Forgets everything the previous entry added or deleted.
    pub fn reset(&mut self) {
        self.del.clear();
        for a in &mut self.add {
            a.clear();
        }
        self.err.clear();
        self.err_details.clear();
    }

    /// Starts a new entry of the current stream with its structured metadata. Names are
    /// normalised as Loki does (invalid characters become `_`, a leading digit gets `key_`)
    /// and a name that is also a stream label gets the `_extracted` suffix.
    pub fn start_entry<K: AsRef<str>, V: AsRef<str>>(&mut self, structured_metadata: &[(K, V)]) {
        self.reset();
        self.metadata.clear();
        for (k, v) in structured_metadata {
            let mut name = std::mem::take(&mut self.scratch);
            name.clear();
            normalize_label(k.as_ref(), &mut name);
            self.metadata.push(&name, v.as_ref());
            self.add_label(LabelCategory::StructuredMetadata, &name, v.as_ref());
            self.scratch = name;
        }
    }

    /// Forgets what the pipeline did to the current entry: back to the state
    /// [`Self::start_entry`] left.
    pub fn restart_entry(&mut self) {
        self.reset();
        let metadata = std::mem::take(&mut self.metadata);
        for (name, value) in metadata.as_slice() {
            self.add_label(LabelCategory::StructuredMetadata, name, value);
        }
        self.metadata = metadata;
    }

    /// The stream labels, sorted.
    pub fn stream_labels(&self) -> &[(String, String)] {
        &self.base
    }

    /// Whether the stream labels contain `name` (deleted or not): the collision test.
    pub fn base_has(&self, name: &str) -> bool {
        self.base.iter().any(|(n, _)| n == name)
    }

    /// Adds a label with Loki's `Add` rules: the collision suffix, and `__error__` /
    /// `__error_details__` names setting the error instead.
    pub fn add_label(&mut self, category: LabelCategory, name: &str, value: &str) {
        if self.base_has(name) {
            let suffixed = format!("{name}{DUPLICATE_SUFFIX}");
            self.add_unsuffixed(category, &suffixed, value);
        } else {
            self.add_unsuffixed(category, name, value);
        }
    }

    fn add_unsuffixed(&mut self, category: LabelCategory, name: &str, value: &str) {
        if name == ERROR_LABEL {
            self.set_err(value);
        } else if name == ERROR_DETAILS_LABEL {
            self.set_err_details(value);
        } else {
            self.set(category, name, value);
        }
    }

    /// Sets a label of a category. A parsed label replaces structured metadata and stream
    /// overrides of the same name; structured metadata does not replace a parsed label.
    pub fn set(&mut self, category: LabelCategory, name: &str, value: &str) {
        match category {
            LabelCategory::Parsed => {
                self.add[1].remove(name);
                self.add[0].remove(name);
            }
            LabelCategory::StructuredMetadata => {
                self.add[0].remove(name);
                if self.add[2].contains(name) {
                    return;
                }
            }
            LabelCategory::Stream => {
                if self.add[1].contains(name) || self.add[2].contains(name) {
                    return;
                }
            }
        }
        let add = &mut self.add[slot(category)];
        match add.position(name) {
            Some(i) => {
                let v = &mut add.items[i].1;
                v.clear();
                v.push_str(value);
            }
            None => add.push(name, value),
        }
    }

    /// Sets a parsed label.
    pub fn set_parsed(&mut self, name: &str, value: &str) {
        self.set(LabelCategory::Parsed, name, value);
    }

    /// The value of a label and its category; `None` when absent or deleted. The error
    /// labels are not visible here (Loki's `Get`); use [`Self::err`].
    pub fn get_with_category(&self, name: &str) -> Option<(&str, LabelCategory)> {
        for (i, add) in self.add.iter().enumerate() {
            if let Some(v) = add.get(name) {
                return Some((v, CATEGORIES[i]));
            }
        }
        if self.del.contains(name) {
            return None;
        }
        self.base
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| (v.as_str(), LabelCategory::Stream))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_with_category(name).map(|(v, _)| v)
    }

    /// Deletes a label of any category.
    pub fn del(&mut self, name: &str) {
        for add in &mut self.add {
            add.remove(name);
        }
        self.del.push(name, "");
    }

    pub fn err(&self) -> &str {
        &self.err
    }

    pub fn has_err(&self) -> bool {
        !self.err.is_empty()
    }

    pub fn set_err(&mut self, err: &str) {
        self.err.clear();
        self.err.push_str(err);
    }

    pub fn err_details(&self) -> &str {
        &self.err_details
    }

    pub fn set_err_details(&mut self, details: &str) {
        self.err_details.clear();
        self.err_details.push_str(details);
    }

    pub fn reset_err(&mut self) {
        self.err.clear();
    }

    pub fn reset_err_details(&mut self) {
        self.err_details.clear();
    }

    /// Whether a stage added, changed or deleted `name` (its value may differ from the
    /// stream's).
    pub fn touched(&self, name: &str) -> bool {
        self.del.contains(name) || self.add.iter().any(|a| a.contains(name))
    }

    /// Whether the entry's labels differ from the stream labels.
    pub fn is_unchanged(&self) -> bool {
        self.del.len == 0
            && self.add.iter().all(|a| a.len == 0)
            && self.err.is_empty()
            && self.err_details.is_empty()
    }

    /// Calls `f` for every label of the entry, unsorted: stream labels (minus deleted and
    /// shadowed ones), structured metadata, parsed labels, then the error labels.
    pub fn for_each(&self, mut f: impl FnMut(&str, &str, LabelCategory)) {
        let (sm, parsed) = (&self.add[1], &self.add[2]);
        for (n, v) in &self.base {
            if self.del.contains(n) || sm.contains(n) || parsed.contains(n) {
                continue;
            }
            match self.add[0].get(n) {
                Some(over) => f(n, over, LabelCategory::Stream),
                None => f(n, v, LabelCategory::Stream),
            }
        }
        for (n, v) in sm.as_slice() {
            if !parsed.contains(n) {
                f(n, v, LabelCategory::StructuredMetadata);
            }
        }
        for (n, v) in parsed.as_slice() {
            f(n, v, LabelCategory::Parsed);
        }
        if !self.err.is_empty() {
            f(ERROR_LABEL, &self.err, LabelCategory::Parsed);
        }
        if !self.err_details.is_empty() {
            f(
                ERROR_DETAILS_LABEL,
                &self.err_details,
                LabelCategory::Parsed,
            );
        }
    }

    /// Looks a label up the way templates see labels: like [`Self::get`], plus the error
    /// labels.
    pub fn template_value(&self, name: &str) -> Option<&str> {
        match name {
            ERROR_LABEL if !self.err.is_empty() => Some(&self.err),
            ERROR_DETAILS_LABEL if !self.err_details.is_empty() => Some(&self.err_details),
            _ => self.get(name),
        }
    }

    /// All labels of the entry, sorted by name.
    pub fn labels(&self) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(self.base.len() + 4);
        self.for_each(|n, v, _| out.push((n.to_string(), v.to_string())));
        out.sort();
        out
    }

    /// Writes the sorted labels into `out` as borrowed pairs (no allocation when `out` has
    /// capacity).
    pub fn labels_into<'a>(&'a self, out: &mut Vec<(&'a str, &'a str)>) {
        out.clear();
        let (sm, parsed) = (&self.add[1], &self.add[2]);
        for (n, v) in &self.base {
            if self.del.contains(n) || sm.contains(n) || parsed.contains(n) {
                continue;
            }
            out.push((n, self.add[0].get(n).unwrap_or(v)));
        }
        for (n, v) in sm.as_slice() {
            if !parsed.contains(n) {
                out.push((n, v));
            }
        }
        for (n, v) in parsed.as_slice() {
            out.push((n, v));
        }
        if !self.err.is_empty() {
            out.push((ERROR_LABEL, &self.err));
        }
        if !self.err_details.is_empty() {
            out.push((ERROR_DETAILS_LABEL, &self.err_details));
        }
        out.sort_unstable();
    }

    /// The labels split by category for the `categorize-labels` encoding.
    pub fn categorized(&self) -> CategorizedLabels {
        let mut out = CategorizedLabels::default();
        self.for_each(|n, v, c| {
            let pair = (n.to_string(), v.to_string());
            match c {
                LabelCategory::Stream => out.stream.push(pair),
                LabelCategory::StructuredMetadata => out.structured_metadata.push(pair),
                LabelCategory::Parsed => out.parsed.push(pair),
            }
        });
        out.stream.sort();
        out.structured_metadata.sort();
        out.parsed.sort();
        out
    }
}

/// Loki's normalisation of structured metadata names (Prometheus' OTLP `NormalizeLabel`):
/// every rune that is not a letter or digit becomes `_`; a leading digit gets `key_`, and a
/// single leading underscore gets `key`.
pub fn normalize_label(name: &str, out: &mut String) {
    if name.is_empty() {
        return;
    }
    let start = out.len();
    for c in name.chars() {
        out.push(if c.is_alphanumeric() { c } else { '_' });
    }
    let first = out[start..].chars().next().unwrap_or('_');
    if first.is_ascii_digit() || (first.is_numeric() && !first.is_alphabetic()) {
        out.insert_str(start, "key_");
    } else if out[start..].starts_with('_') && !out[start..].starts_with("__") {
        out.insert_str(start, "key");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_label_colliding_with_stream_label_shadows_nothing_but_itself() {
        let mut b = LabelsBuilder::for_stream(&[("app", "x"), ("level", "info")]);
        b.start_entry(&[("level", "debug"), ("trace.id", "t1")]);
        b.set_parsed("status", "200");
        assert_eq!(
            b.labels(),
            vec![
                ("app".to_string(), "x".to_string()),
                ("level".to_string(), "info".to_string()),
                ("level_extracted".to_string(), "debug".to_string()),
                ("status".to_string(), "200".to_string()),
                ("trace_id".to_string(), "t1".to_string()),
            ]
        );
        let c = b.categorized();
        assert_eq!(c.structured_metadata.len(), 2);
        assert_eq!(c.parsed, vec![("status".to_string(), "200".to_string())]);
    }

    #[test]
    fn buffers_are_reused_between_entries() {
        let mut b = LabelsBuilder::for_stream(&[("app", "x")]);
        b.start_entry::<&str, &str>(&[]);
        b.set_parsed("a", "1");
        b.set_parsed("b", "2");
        b.del("a");
        b.start_entry::<&str, &str>(&[]);
        assert!(b.is_unchanged());
        b.set_parsed("c", "3");
        assert_eq!(b.get("c"), Some("3"));
        assert_eq!(b.get("a"), None);
        assert_eq!(b.labels().len(), 2);
    }

    #[test]
    fn normalize_label_matches_otlp_rules() {
        for (input, want) in [
            ("a.b", "a_b"),
            ("1a", "key_1a"),
            ("_a", "key_a"),
            ("__a", "__a"),
            ("é-x", "é_x"),
        ] {
            let mut out = String::new();
            normalize_label(input, &mut out);
            assert_eq!(out, want, "{input}");
        }
    }
}
