//! `sawmill correlate ID`: one request's timeline across services, from
//! `/sawmill/api/v1/correlate`: one line per entry with its offset from the first entry,
//! service, level and message; errors in red on a terminal.

use std::io::Write;

use super::output::format_time;
use super::{ClientError, Conn, Result};

/// Levels printed as errors.
const ERROR_LEVELS: [&str; 6] = ["error", "err", "fatal", "critical", "crit", "panic"];

/// The message of a line: its `msg` or `message` field (JSON or logfmt), else the line.
pub fn message(line: &str) -> String {
    if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(line) {
        for k in ["msg", "message"] {
            if let Some(v) = m.get(k) {
                return v.as_str().map_or_else(|| v.to_string(), str::to_string);
            }
        }
        return line.to_string();
    }
    for k in ["msg=", "message="] {
        let Some(at) = line
            .find(k)
            .filter(|&at| at == 0 || line.as_bytes()[at - 1] == b' ')
        else {
            continue;
        };
        let rest = &line[at + k.len()..];
        if let Some(q) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    '"' => return out,
                    c => out.push(c),
                }
            }
            return out;
        }
        return rest.split(' ').next().unwrap_or_default().to_string();
    }
    line.to_string()
}

pub struct CorrelateArgs {
    pub id: String,
    pub start: i64,
    pub end: i64,
    pub color: bool,
    pub utc: bool,
    pub json: bool,
}

pub fn run(conn: &Conn, a: &CorrelateArgs, out: &mut impl Write) -> Result<()> {
    let params = [
        ("id", a.id.clone()),
        ("start", a.start.to_string()),
        ("end", a.end.to_string()),
    ];
    let data = conn.get_data("/sawmill/api/v1/correlate", &params)?;
    if a.json {
        writeln!(out, "{data}")?;
        return Ok(());
    }
    let bad = |reason: &str| ClientError::Decode {
        path: "/sawmill/api/v1/correlate".into(),
        reason: reason.into(),
    };
    let entries = data["entries"]
        .as_array()
        .ok_or_else(|| bad("no entries"))?;
    let s = &data["summary"];
    if entries.is_empty() {
        return Err(ClientError::Other(format!(
            "no entry carries {:?} in that time range (try --since with a longer range)",
            a.id
        )));
    }
    let services: Vec<&str> = s["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    let levels: Vec<String> = s["levels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let ts = |v: &serde_json::Value| v.as_str().and_then(|t| t.parse::<i64>().ok()).unwrap_or(0);
    let first = ts(&s["first"]);
    writeln!(
        out,
        "{}: {} entries from {} services ({}) over {:.3}s, {}; first at {}{}",
        a.id,
        entries.len(),
        services.len(),
        services.join(", "),
        s["duration_seconds"].as_f64().unwrap_or(0.0),
        levels.join(", "),
        format_time(first, a.utc, false),
        if data["truncated"].as_bool() == Some(true) {
            " (more entries than shown)"
        } else {
            ""
        },
    )?;
    let width = entries
        .iter()
        .map(|e| e["service"].as_str().unwrap_or("-").len())
        .max()
        .unwrap_or(1);
    for e in entries {
        let offset = (ts(&e["timestamp"]) - first) as f64 / 1e9;
        let service = e["service"].as_str().unwrap_or("-");
        let level = e["level"].as_str().unwrap_or("-");
        let msg = message(e["line"].as_str().unwrap_or_default());
        let text = format!("+{offset:.3}s  {service:<width$}  {level:<5}  {msg}");
        if a.color && ERROR_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            writeln!(out, "\x1b[31m{text}\x1b[0m")?;
        } else {
            writeln!(out, "{text}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        for (line, want) in [
            (r#"{"level":"info","msg":"started","a":1}"#, "started"),
            (r#"{"message":"done"}"#, "done"),
            (r#"{"other":1}"#, r#"{"other":1}"#),
            (
                r#"level=info msg="payment \"declined\"" id=1"#,
                r#"payment "declined""#,
            ),
            ("level=info msg=ok id=1", "ok"),
            ("plain text", "plain text"),
        ] {
            assert_eq!(message(line), want, "{line}");
        }
    }
}
