//! `sawmill labels`, `series`, `stats`, `volume` and `fmt`: what a stream selector covers,
//! printed one item per line or as logcli's small tables.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use super::output::{self, labels_text, Mode};
use super::{ClientError, Conn, Result};

fn range_params(start: i64, end: i64) -> Vec<(&'static str, String)> {
    vec![("start", start.to_string()), ("end", end.to_string())]
}

fn strings(path: &str, data: &serde_json::Value) -> Result<Vec<String>> {
    let items = data.as_array().ok_or_else(|| ClientError::Decode {
        path: path.into(),
        reason: "expected a list".into(),
    })?;
    Ok(items
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect())
}

/// Label names, or the values of one label.
pub fn labels(
    conn: &Conn,
    name: Option<&str>,
    selector: Option<&str>,
    start: i64,
    end: i64,
    out: &mut impl Write,
) -> Result<()> {
    let mut params = range_params(start, end);
    if let Some(s) = selector {
        params.push(("query", s.to_string()));
    }
    let path = match name {
        Some(n) => format!("/loki/api/v1/label/{n}/values"),
        None => "/loki/api/v1/labels".to_string(),
    };
    let data = conn.get_data(&path, &params)?;
    for s in strings(&path, &data)? {
        writeln!(out, "{s}")?;
    }
    Ok(())
}

/// The series matching a selector, or with `analyze` a table of their labels.
pub fn series(
    conn: &Conn,
    selector: &str,
    start: i64,
    end: i64,
    analyze: bool,
    out: &mut impl Write,
) -> Result<()> {
    let mut params = range_params(start, end);
    params.push(("match", selector.to_string()));
    let path = "/loki/api/v1/series";
    let data = conn.get_data(path, &params)?;
    let list = data.as_array().ok_or_else(|| ClientError::Decode {
        path: path.into(),
        reason: "expected a list of label sets".into(),
    })?;
    let mut series: Vec<Vec<(String, String)>> =
        list.iter().map(|s| output::label_pairs(Some(s))).collect();
    series.sort();
    if !analyze {
        for s in &series {
            writeln!(out, "{}", labels_text(s))?;
        }
        return Ok(());
    }
    let mut by_name: BTreeMap<&str, (BTreeSet<&str>, usize)> = BTreeMap::new();
    for s in &series {
        for (k, v) in s {
            let e = by_name.entry(k).or_default();
            e.0.insert(v);
            e.1 += 1;
        }
    }
    let mut rows: Vec<(&str, usize, usize)> = by_name
        .into_iter()
        .map(|(k, (values, found))| (k, values.len(), found))
        .collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    writeln!(out, "Total Streams:  {}", series.len())?;
    writeln!(out, "Unique Labels:  {}", rows.len())?;
    writeln!(out)?;
    let w = rows
        .iter()
        .map(|r| r.0.len())
        .chain(["Label Name".len()])
        .max()
        .unwrap_or(0);
    writeln!(out, "{:<w$}  Unique Values  Found In Streams", "Label Name")?;
    for (name, values, found) in rows {
        writeln!(out, "{name:<w$}  {values:>13}  {found:>16}")?;
    }
    Ok(())
}

/// Sizes in the go-humanize style logcli prints (`1.2 MB`).
fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `index/stats`: streams, chunks, entries and bytes a selector covers.
pub fn stats(
    conn: &Conn,
    selector: &str,
    start: i64,
    end: i64,
    mode: Mode,
    out: &mut impl Write,
) -> Result<()> {
    let mut params = range_params(start, end);
    params.push(("query", selector.to_string()));
    let data = conn.get_data("/loki/api/v1/index/stats", &params)?;
    if mode == Mode::Jsonl {
        writeln!(out, "{data}")?;
        return Ok(());
    }
    let n = |k: &str| data.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    writeln!(out, "streams: {}", n("streams"))?;
    writeln!(out, "chunks:  {}", n("chunks"))?;
    writeln!(out, "entries: {}", n("entries"))?;
    writeln!(out, "bytes:   {}", human_bytes(n("bytes")))?;
    Ok(())
}

/// `index/volume`: bytes per series (or per label with `aggregate_by = labels`).
#[allow(clippy::too_many_arguments)]
pub fn volume(
    conn: &Conn,
    selector: &str,
    start: i64,
    end: i64,
    limit: usize,
    target_labels: &[String],
    aggregate_by: Option<&str>,
    mode: Mode,
    utc: bool,
    out: &mut impl Write,
) -> Result<()> {
    let mut params = range_params(start, end);
    params.push(("query", selector.to_string()));
    params.push(("limit", limit.to_string()));
    if !target_labels.is_empty() {
        params.push(("targetLabels", target_labels.join(",")));
    }
    if let Some(a) = aggregate_by {
        params.push(("aggregateBy", a.to_string()));
    }
    let data = conn.get_data("/loki/api/v1/index/volume", &params)?;
    output::print_metric(out, &data, mode, utc)?;
    Ok(())
}

/// Pretty-prints a query locally (no server needed).
pub fn fmt(query: &str, out: &mut impl Write) -> Result<()> {
    let expr = crate::logql::parse_expr(query.trim())
        .map_err(|e| ClientError::Other(format!("invalid query: {e}")))?;
    writeln!(out, "{}", crate::logql::format_query(&expr))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_like_logcli() {
        for (b, want) in [
            (0, "0 B"),
            (999, "999 B"),
            (1200, "1.2 kB"),
            (3_400_000, "3.4 MB"),
        ] {
            assert_eq!(human_bytes(b), want);
        }
    }

    #[test]
    fn fmt_prints_the_canonical_query() {
        let mut out = Vec::new();
        fmt(r#"sum by(app)(rate({job="x"}|="a"[5m]))"#, &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains(r#"{job="x"} |= "a""#), "{s}");
        assert!(matches!(
            fmt("{job=", &mut Vec::new()),
            Err(ClientError::Other(_))
        ));
    }
}
