//! Field extraction outside a query: the values of named fields (correlation IDs) in an entry,
//! found exactly as `| json` and `| logfmt` would find them, over the stream labels and the
//! entry's structured metadata. The search index and the correlate lookup use it; both see the
//! same names a label filter sees (`X-Request-ID` is `X_Request_ID`).

use crate::labels::Labels;
use crate::logql::{LabelParserExpr, Stage};

use super::labels_builder::{normalize_label, LabelsBuilder};
use super::Pipeline;

/// Field names as `| json` and `| logfmt` name the labels (`X-Request-ID` → `X_Request_ID`).
pub fn field_names(fields: &[String]) -> Vec<String> {
    fields
        .iter()
        .map(|f| {
            let mut s = String::new();
            normalize_label(f, &mut s);
            s
        })
        .collect()
}

/// Finds the values of correlation fields in an entry, as the query pipeline would: runs
/// `| json` and `| logfmt` (told to keep only those fields) over the stream labels and the
/// entry's structured metadata.
pub struct FieldExtractor {
    json: Pipeline,
    logfmt: Pipeline,
    builder: LabelsBuilder,
    names: Vec<String>,
}

impl FieldExtractor {
    pub fn new(fields: &[String]) -> FieldExtractor {
        let names = field_names(fields);
        let json = json_pipeline(Some(names.clone()));
        let logfmt = logfmt_pipeline(Some(names.clone()));
        FieldExtractor {
            json,
            logfmt,
            builder: LabelsBuilder::new(),
            names,
        }
    }

    pub fn set_stream(&mut self, labels: &Labels) {
        self.builder.set_stream(labels.pairs());
    }

    /// Calls `f(field index, value)` for each non-empty field value of the entry (a value
    /// may come twice, from both parsers).
    pub fn each(
        &mut self,
        line: &[u8],
        metadata: &[(String, String)],
        f: &mut dyn FnMut(usize, &str),
    ) {
        // `| json` gives nothing but an error for anything but an object, and the `| logfmt`
        // pass sees the stream labels and metadata as well.
        let first = line.iter().position(|b| !b.is_ascii_whitespace());
        let json_like = first.is_some_and(|i| line[i] == b'{');
        // `| logfmt` finds a non-empty value only after an `=`; without one it gives nothing
        // the index keeps, except what the stream labels and metadata carry, which the `| json`
        // pass reads too.
        let logfmt_values = memchr::memchr(b'=', line).is_some();
        let passes = match (json_like, logfmt_values) {
            (true, true) => [Some(&mut self.json), Some(&mut self.logfmt)],
            (true, false) => [Some(&mut self.json), None],
            (false, _) => [None, Some(&mut self.logfmt)],
        };
        for p in passes.into_iter().flatten() {
            self.builder.start_entry(metadata);
            p.process(0, line, &mut self.builder);
            for (i, n) in self.names.iter().enumerate() {
                if let Some(v) = self.builder.get(n).filter(|v| !v.is_empty()) {
                    f(i, v);
                }
            }
        }
    }
}

/// A pipeline of one `| json` stage (all fields, or only `hints`), built without LogQL text.
pub fn json_pipeline(hints: Option<Vec<String>>) -> Pipeline {
    parser_pipeline(
        LabelParserExpr::Json {
            expressions: Vec::new(),
        },
        hints,
    )
}

/// A pipeline of one `| logfmt` stage (all fields, or only `hints`).
pub fn logfmt_pipeline(hints: Option<Vec<String>>) -> Pipeline {
    parser_pipeline(
        LabelParserExpr::Logfmt {
            strict: false,
            keep_empty: false,
            expressions: Vec::new(),
        },
        hints,
    )
}

fn parser_pipeline(parser: LabelParserExpr, hints: Option<Vec<String>>) -> Pipeline {
    Pipeline::with_hints(&[Stage::LabelParser(parser)], hints)
        .expect("bug: a parser stage alone compiles")
}
