//! How the client prints: log entries in logcli's three modes (`default`: time, labels, line;
//! `raw`: the line only; `jsonl`: one JSON object per entry), metric results as aligned tables
//! or JSON lines, and a progress line on stderr for requests that take more than a second.
//! Colours are ANSI escapes written by hand (a handful of codes; no crate needed): one colour
//! per stream, only when stdout is a terminal (or `--colored-output`), never with `NO_COLOR`.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, SecondsFormat, Utc};

/// logcli's output modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Default,
    Raw,
    Jsonl,
}

/// One log entry as the API returns it: stream labels (sorted by name), timestamp, line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogEntry {
    pub labels: Vec<(String, String)>,
    pub ts: i64,
    pub line: String,
}

#[derive(Debug, Clone)]
pub struct OutputOptions {
    pub mode: Mode,
    pub no_labels: bool,
    pub include_labels: Vec<String>,
    pub exclude_labels: Vec<String>,
    pub color: bool,
    pub utc: bool,
    pub quiet: bool,
}

impl OutputOptions {
    /// Colour when asked for, or when stdout is a terminal and `NO_COLOR` is unset.
    pub fn auto_color(forced: bool) -> bool {
        forced || (std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
    }
}

/// Formats a timestamp in nanoseconds as RFC3339, local time or UTC.
pub fn format_time(ns: i64, utc: bool, nanos: bool) -> String {
    let t = DateTime::<Utc>::from_timestamp_nanos(ns);
    let fmt = if nanos {
        SecondsFormat::AutoSi
    } else {
        SecondsFormat::Millis
    };
    if utc {
        t.to_rfc3339_opts(fmt, true)
    } else {
        t.with_timezone(&Local).to_rfc3339_opts(fmt, true)
    }
}

/// `{a="b", c="d"}`, Loki's label syntax.
pub fn labels_text(pairs: &[(String, String)]) -> String {
    crate::labels::Labels::from_pairs(pairs.to_vec()).to_string()
}

const PALETTE: [u8; 6] = [32, 33, 34, 35, 36, 31];

fn color_of(pairs: &[(String, String)]) -> u8 {
    let h = xxhash_rust::xxh3::xxh3_64(labels_text(pairs).as_bytes());
    PALETTE[(h % PALETTE.len() as u64) as usize]
}

/// Prints log entries one by one, keeping what the modes need across pages.
pub struct LogPrinter<W: Write> {
    opts: OutputOptions,
    out: W,
    /// Labels every stream of the first page shares: printed once on stderr, left out of lines.
    common: Option<Vec<(String, String)>>,
    width: usize,
}

impl<W: Write> LogPrinter<W> {
    pub fn new(opts: OutputOptions, out: W) -> Self {
        LogPrinter {
            opts,
            out,
            common: None,
            width: 0,
        }
    }

    pub fn mode(&self) -> Mode {
        self.opts.mode
    }

    fn shown_labels(&self, pairs: &[(String, String)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .filter(|(k, _)| {
                (self.opts.include_labels.is_empty() || self.opts.include_labels.contains(k))
                    && !self.opts.exclude_labels.contains(k)
            })
            .cloned()
            .collect()
    }

    /// Called with each page before its entries: the first one fixes the common labels, and
    /// each widens the label column to its widest entry.
    pub fn page(&mut self, entries: &[LogEntry]) {
        if self.opts.mode != Mode::Default || self.opts.no_labels {
            return;
        }
        if self.common.is_none() {
            self.find_common(entries);
        }
        for e in entries {
            let w = self.label_text(e).len();
            self.width = self.width.max(w);
        }
    }

    fn label_text(&self, e: &LogEntry) -> String {
        let mut shown = self.shown_labels(&e.labels);
        if let Some(common) = &self.common {
            shown.retain(|p| !common.contains(p));
        }
        labels_text(&shown)
    }

    fn find_common(&mut self, entries: &[LogEntry]) {
        let mut streams = entries.iter().map(|e| self.shown_labels(&e.labels));
        let Some(first) = streams.next() else { return };
        let mut distinct = 1;
        let mut common = first.clone();
        for s in streams {
            if s != first {
                distinct += 1;
            }
            common.retain(|p| s.contains(p));
        }
        // With a single stream every label is common, and nothing would be left to tell
        // streams apart on later pages: keep them on the lines.
        if distinct < 2 {
            common.clear();
        }
        if !common.is_empty() && !self.opts.quiet {
            eprintln!("Common labels: {}", labels_text(&common));
        }
        self.common = Some(common);
    }

    pub fn entry(&mut self, e: &LogEntry) -> std::io::Result<()> {
        match self.opts.mode {
            Mode::Raw => {
                self.out.write_all(e.line.as_bytes())?;
                self.out.write_all(b"\n")
            }
            Mode::Jsonl => {
                let labels: serde_json::Map<String, serde_json::Value> = self
                    .shown_labels(&e.labels)
                    .into_iter()
                    .map(|(k, v)| (k, v.into()))
                    .collect();
                let v = serde_json::json!({
                    "labels": labels,
                    "line": e.line,
                    "timestamp": format_time(e.ts, self.opts.utc, true),
                });
                writeln!(self.out, "{v}")
            }
            Mode::Default => {
                let time = format_time(e.ts, self.opts.utc, false);
                if self.opts.no_labels {
                    return writeln!(self.out, "{time} {}", e.line);
                }
                let text = self.label_text(e);
                self.width = self.width.max(text.len());
                let pad = " ".repeat(self.width - text.len());
                if self.opts.color {
                    let c = color_of(&e.labels);
                    writeln!(self.out, "{time} \x1b[{c}m{text}\x1b[0m{pad} {}", e.line)
                } else {
                    writeln!(self.out, "{time} {text}{pad} {}", e.line)
                }
            }
        }
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Entries of a `streams` result, sorted by time in the query's direction.
pub fn stream_entries(data: &serde_json::Value, forward: bool) -> Result<Vec<LogEntry>, String> {
    let result = data
        .get("result")
        .and_then(|r| r.as_array())
        .ok_or("no result in the answer")?;
    let mut out = Vec::new();
    for s in result {
        let labels = label_pairs(s.get("stream"));
        for v in s
            .get("values")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            let ts = v
                .get(0)
                .and_then(|t| t.as_str())
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or("an entry without a timestamp")?;
            let line = v.get(1).and_then(|l| l.as_str()).unwrap_or_default();
            out.push(LogEntry {
                labels: labels.clone(),
                ts,
                line: line.to_string(),
            });
        }
    }
    if forward {
        out.sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| a.labels.cmp(&b.labels)));
    } else {
        out.sort_by(|a, b| b.ts.cmp(&a.ts).then_with(|| a.labels.cmp(&b.labels)));
    }
    Ok(out)
}

/// A JSON object of labels (`stream`, `metric`, a series) as name/value pairs sorted by name.
pub fn label_pairs(v: Option<&serde_json::Value>) -> Vec<(String, String)> {
    let mut l: Vec<(String, String)> = v
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    l.sort();
    l
}

fn metric_labels(s: &serde_json::Value) -> Vec<(String, String)> {
    label_pairs(s.get("metric"))
}

fn sample(v: &serde_json::Value, utc: bool) -> (String, String) {
    let ts = v.get(0).and_then(|t| t.as_f64()).unwrap_or_default();
    let value = v.get(1).and_then(|x| x.as_str()).unwrap_or_default();
    (
        format_time((ts * 1e9).round() as i64, utc, false),
        value.to_string(),
    )
}

/// A metric result (`matrix`, `vector` or `scalar`) as an aligned table, or one JSON object per
/// series with `jsonl`.
pub fn print_metric(
    out: &mut impl Write,
    data: &serde_json::Value,
    mode: Mode,
    utc: bool,
) -> std::io::Result<()> {
    let kind = data
        .get("resultType")
        .and_then(|t| t.as_str())
        .unwrap_or("");
    let result = data.get("result").cloned().unwrap_or_default();
    if mode == Mode::Jsonl {
        match result.as_array() {
            Some(series) => {
                for s in series {
                    writeln!(out, "{s}")?;
                }
            }
            None => writeln!(
                out,
                "{}",
                serde_json::json!({ "resultType": kind, "result": result })
            )?,
        }
        return Ok(());
    }
    let mut rows: Vec<[String; 3]> = Vec::new();
    match kind {
        "matrix" => {
            for s in result.as_array().into_iter().flatten() {
                let labels = labels_text(&metric_labels(s));
                for v in s
                    .get("values")
                    .and_then(|v| v.as_array())
                    .into_iter()
                    .flatten()
                {
                    let (t, x) = sample(v, utc);
                    rows.push([t, x, labels.clone()]);
                }
            }
        }
        "vector" => {
            for s in result.as_array().into_iter().flatten() {
                let (t, x) = sample(s.get("value").unwrap_or(&serde_json::Value::Null), utc);
                rows.push([t, x, labels_text(&metric_labels(s))]);
            }
        }
        "scalar" | "string" => {
            let (t, x) = sample(&result, utc);
            rows.push([t, x, String::new()]);
        }
        other => {
            return writeln!(
                out,
                "{}",
                serde_json::json!({ "resultType": other, "result": result })
            );
        }
    }
    let header = ["TIME", "VALUE", "LABELS"];
    let widths: Vec<usize> = (0..2)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    writeln!(
        out,
        "{:<w0$}  {:>w1$}  {}",
        header[0],
        header[1],
        header[2],
        w0 = widths[0],
        w1 = widths[1]
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:<w0$}  {:>w1$}  {}",
            r[0],
            r[1],
            r[2],
            w0 = widths[0],
            w1 = widths[1]
        )?;
    }
    Ok(())
}

/// A progress line on stderr, shown only if the work takes more than a second and stderr is a
/// terminal; cleared when dropped.
pub struct Progress {
    done: Arc<AtomicBool>,
    pub count: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub fn start(what: &str, quiet: bool) -> Progress {
        let done = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let thread = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let (done, count, what) = (done.clone(), count.clone(), what.to_string());
            std::thread::spawn(move || {
                let started = Instant::now();
                let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
                let mut shown = false;
                let mut k = 0;
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if started.elapsed() < Duration::from_secs(1) || done.load(Ordering::Relaxed) {
                        continue;
                    }
                    let n = count.load(Ordering::Relaxed);
                    let lines = if n > 0 {
                        format!(", {n} entries")
                    } else {
                        String::new()
                    };
                    eprint!(
                        "\r{} {what}… {:.1}s{lines}\x1b[K",
                        frames[k % frames.len()],
                        started.elapsed().as_secs_f64()
                    );
                    k += 1;
                    shown = true;
                }
                if shown {
                    eprint!("\r\x1b[K");
                }
            })
        });
        Progress {
            done,
            count,
            thread,
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(labels: &[(&str, &str)], ts: i64, line: &str) -> LogEntry {
        LogEntry {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ts,
            line: line.to_string(),
        }
    }

    fn opts(mode: Mode) -> OutputOptions {
        OutputOptions {
            mode,
            no_labels: false,
            include_labels: Vec::new(),
            exclude_labels: Vec::new(),
            color: false,
            utc: true,
            quiet: true,
        }
    }

    #[track_caller]
    fn printed(o: OutputOptions, entries: &[LogEntry], want: &str) {
        let mut buf = Vec::new();
        let mut p = LogPrinter::new(o, &mut buf);
        p.page(entries);
        for e in entries {
            p.entry(e).unwrap();
        }
        assert_eq!(String::from_utf8(buf).unwrap(), want);
    }

    #[test]
    fn modes() {
        let es = [
            entry(&[("app", "a"), ("env", "prod")], 1_000_000_000, "one"),
            entry(&[("app", "bb"), ("env", "prod")], 2_500_000_000, "two"),
        ];
        printed(
            opts(Mode::Default),
            &es,
            "1970-01-01T00:00:01.000Z {app=\"a\"}  one\n1970-01-01T00:00:02.500Z {app=\"bb\"} two\n",
        );
        printed(opts(Mode::Raw), &es, "one\ntwo\n");
        printed(
            opts(Mode::Jsonl),
            &es[..1],
            "{\"labels\":{\"app\":\"a\",\"env\":\"prod\"},\"line\":\"one\",\"timestamp\":\"1970-01-01T00:00:01Z\"}\n",
        );
        let mut o = opts(Mode::Default);
        o.no_labels = true;
        printed(o, &es[..1], "1970-01-01T00:00:01.000Z one\n");
        let mut o = opts(Mode::Default);
        o.exclude_labels = vec!["env".into()];
        printed(o, &es[..1], "1970-01-01T00:00:01.000Z {app=\"a\"} one\n");
        let mut o = opts(Mode::Jsonl);
        o.include_labels = vec!["env".into()];
        printed(
            o,
            &es[..1],
            "{\"labels\":{\"env\":\"prod\"},\"line\":\"one\",\"timestamp\":\"1970-01-01T00:00:01Z\"}\n",
        );
    }

    #[test]
    fn colour_wraps_the_labels_only() {
        let mut o = opts(Mode::Default);
        o.color = true;
        let e = entry(&[("app", "a")], 0, "x");
        let mut buf = Vec::new();
        LogPrinter::new(o, &mut buf).entry(&e).unwrap();
        let s = String::from_utf8(buf).unwrap();
        assert!(s.contains("\x1b[") && s.ends_with("\x1b[0m x\n"), "{s:?}");
    }

    #[test]
    fn metric_table_aligns_columns() {
        let data = serde_json::json!({"resultType":"vector","result":[
            {"metric":{"app":"a"},"value":[1.5,"10"]},
            {"metric":{"app":"b"},"value":[1.5,"2.25"]}]});
        let mut buf = Vec::new();
        print_metric(&mut buf, &data, Mode::Default, true).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "TIME                      VALUE  LABELS\n\
             1970-01-01T00:00:01.500Z     10  {app=\"a\"}\n\
             1970-01-01T00:00:01.500Z   2.25  {app=\"b\"}\n"
        );
    }
}
