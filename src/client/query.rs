//! `sawmill query` and `sawmill instant-query`. Log queries are paged: each request asks for
//! at most `--batch` entries, the next one starts at the last timestamp seen (so entries that
//! share it are not lost) and the entries already printed at that boundary are skipped, so
//! `--limit` can go past the server's per-query cap and every line comes once, in order.
//! `--tail` follows the live tail over a WebSocket and reconnects when the connection drops,
//! asking again from the newest timestamp printed and skipping what was already shown.

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::output::{self, LogEntry, LogPrinter, Progress};
use super::{ClientError, Conn, Result};

/// What `sawmill query` asks.
#[derive(Debug, Clone)]
pub struct RangeQuery {
    pub query: String,
    pub start: i64,
    pub end: i64,
    /// Entries to print in all (0: all there are).
    pub limit: usize,
    /// Entries per request.
    pub batch: usize,
    pub forward: bool,
    pub step: Option<String>,
}

fn direction(forward: bool) -> String {
    if forward { "FORWARD" } else { "BACKWARD" }.to_string()
}

/// Runs a range query: pages of log entries, or a metric table.
pub fn range<W: Write>(
    conn: &Conn,
    q: &RangeQuery,
    printer: &mut LogPrinter<W>,
    metric_out: &mut impl Write,
    utc: bool,
    quiet: bool,
) -> Result<()> {
    if q.batch == 0 {
        return Err(ClientError::Usage("--batch must be at least 1".into()));
    }
    let mode = printer.mode();
    let progress = Progress::start("querying", quiet);
    let (mut start, mut end) = (q.start, q.end);
    let mut printed = 0usize;
    // Entries already printed at the page boundary, and that boundary's timestamp.
    let mut boundary: HashSet<LogEntry> = HashSet::new();
    let mut boundary_ts: Option<i64> = None;
    loop {
        let want = if q.limit == 0 {
            q.batch
        } else {
            q.batch.min(q.limit - printed)
        };
        let mut params = vec![
            ("query", q.query.clone()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("limit", want.to_string()),
            ("direction", direction(q.forward)),
        ];
        if let Some(step) = &q.step {
            params.push(("step", step.clone()));
        }
        let data = conn.get_data("/loki/api/v1/query_range", &params)?;
        if data.get("resultType").and_then(|t| t.as_str()) != Some("streams") {
            drop(progress);
            output::print_metric(metric_out, &data, mode, utc)?;
            return Ok(());
        }
        let page =
            output::stream_entries(&data, q.forward).map_err(|reason| ClientError::Decode {
                path: "/loki/api/v1/query_range".into(),
                reason,
            })?;
        let got = page.len();
        let Some(last_ts) = page.last().map(|e| e.ts) else {
            break;
        };
        let fresh: Vec<&LogEntry> = page.iter().filter(|e| !boundary.contains(*e)).collect();
        let room = if q.limit == 0 {
            usize::MAX
        } else {
            q.limit - printed
        };
        let fresh: Vec<LogEntry> = fresh.into_iter().take(room).cloned().collect();
        printer.page(&fresh);
        for e in &fresh {
            printer.entry(e)?;
        }
        printed += fresh.len();
        progress.count.store(printed as u64, Ordering::Relaxed);
        if got < want || (q.limit > 0 && printed >= q.limit) {
            break;
        }
        if fresh.is_empty() {
            // A whole page at one timestamp, all printed already: more than `--batch`
            // entries share it; go past it.
            if q.forward {
                start = last_ts + 1;
            } else {
                end = last_ts;
            }
            boundary.clear();
            boundary_ts = None;
            continue;
        }
        if boundary_ts != Some(last_ts) {
            boundary.clear();
        }
        boundary_ts = Some(last_ts);
        // The next request covers the boundary again (end is exclusive for Loki; one
        // nanosecond more covers servers that include it): skip what was printed there.
        boundary.extend(
            page.iter()
                .filter(|e| e.ts == last_ts || (!q.forward && e.ts == last_ts + 1))
                .cloned(),
        );
        if q.forward {
            start = last_ts;
        } else {
            end = last_ts + 1;
        }
    }
    printer.flush()?;
    Ok(())
}

/// What `sawmill instant-query` asks.
#[derive(Debug, Clone)]
pub struct InstantQuery {
    pub query: String,
    pub time: i64,
    pub limit: usize,
    pub forward: bool,
}

/// Runs an instant query and prints its result.
pub fn instant<W: Write>(
    conn: &Conn,
    q: &InstantQuery,
    printer: &mut LogPrinter<W>,
    metric_out: &mut impl Write,
    utc: bool,
    quiet: bool,
) -> Result<()> {
    let InstantQuery {
        query,
        time,
        limit,
        forward,
    } = q.clone();
    let progress = Progress::start("querying", quiet);
    let params = [
        ("query", query.to_string()),
        ("time", time.to_string()),
        ("limit", limit.to_string()),
        ("direction", direction(forward)),
    ];
    let data = conn.get_data("/loki/api/v1/query", &params)?;
    drop(progress);
    if data.get("resultType").and_then(|t| t.as_str()) == Some("streams") {
        let entries =
            output::stream_entries(&data, forward).map_err(|reason| ClientError::Decode {
                path: "/loki/api/v1/query".into(),
                reason,
            })?;
        printer.page(&entries);
        for e in &entries {
            printer.entry(e)?;
        }
        printer.flush()?;
        return Ok(());
    }
    output::print_metric(metric_out, &data, printer.mode(), utc)?;
    Ok(())
}

/// What `sawmill query --tail` asks.
#[derive(Debug, Clone)]
pub struct TailQuery {
    pub query: String,
    pub start: i64,
    pub limit: usize,
    pub delay_for: u64,
}

/// Entries remembered to skip after a reconnect.
const REMEMBERED: usize = 20_000;
/// Entries asked for when reconnecting, to cover what arrived while disconnected (Loki's
/// default `max_entries_limit_per_query`).
const RECONNECT_LIMIT: usize = 5000;
/// The server pings every second; this long without any frame means the connection is gone.
const SILENCE: Duration = Duration::from_secs(5);

/// Printed entries, the newest `REMEMBERED` of them.
#[derive(Default)]
struct Shown {
    order: VecDeque<LogEntry>,
    set: HashSet<LogEntry>,
    newest: Option<i64>,
}

impl Shown {
    /// True the first time an entry is offered.
    fn first_time(&mut self, e: &LogEntry) -> bool {
        if self.set.contains(e) {
            return false;
        }
        if self.order.len() == REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(e.clone());
        self.set.insert(e.clone());
        self.newest = Some(self.newest.map_or(e.ts, |n| n.max(e.ts)));
        true
    }
}

/// Why a tail connection ended.
enum Ended {
    /// Dropped or closed by a server going away: connect again.
    Reconnect(String),
    /// The server closed it with an error (code 1011): report it.
    Failed(String),
}

/// Follows the live tail until interrupted; reconnects with backoff while the server is
/// unreachable or restarting.
pub fn follow<W: Write>(
    conn: &Conn,
    q: &TailQuery,
    printer: &mut LogPrinter<W>,
    quiet: bool,
) -> Result<()> {
    let mut shown = Shown::default();
    let mut backoff = Duration::from_millis(250);
    let mut reconnecting = false;
    loop {
        let (start, limit) = match shown.newest {
            Some(ts) if reconnecting => (ts, RECONNECT_LIMIT.max(q.limit)),
            _ => (q.start, q.limit),
        };
        let params = [
            ("query", q.query.clone()),
            ("start", start.to_string()),
            ("limit", limit.to_string()),
            ("delay_for", q.delay_for.to_string()),
        ];
        let ws = match conn.websocket("/loki/api/v1/tail", &params, SILENCE) {
            Ok(ws) => ws,
            // A server configured with a lower entry cap refuses the reconnect limit.
            Err(ClientError::Status { status: 400, .. }) if reconnecting && limit > q.limit => {
                let params = [
                    ("query", q.query.clone()),
                    ("start", start.to_string()),
                    ("limit", q.limit.to_string()),
                    ("delay_for", q.delay_for.to_string()),
                ];
                conn.websocket("/loki/api/v1/tail", &params, SILENCE)?
            }
            // Once connected, a server that goes away is waited for; at first it is an error.
            Err(_) if reconnecting => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(e) => return Err(e),
        };
        if reconnecting && !quiet {
            eprintln!("tail: connected again");
        }
        backoff = Duration::from_millis(250);
        match read_frames(ws, &mut shown, printer, quiet)? {
            Ended::Failed(m) => return Err(ClientError::Other(format!("tail: {m}"))),
            Ended::Reconnect(why) => {
                if !quiet {
                    eprintln!("tail: {why}; reconnecting");
                }
                reconnecting = true;
            }
        }
    }
}

fn read_frames<W: Write>(
    mut ws: tungstenite::WebSocket<Box<dyn super::Stream>>,
    shown: &mut Shown,
    printer: &mut LogPrinter<W>,
    quiet: bool,
) -> Result<Ended> {
    use tungstenite::Message;
    loop {
        let msg = match ws.read() {
            Ok(m) => m,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Ended::Reconnect(format!(
                    "no word from the server for {}s",
                    SILENCE.as_secs()
                )));
            }
            Err(e) => return Ok(Ended::Reconnect(format!("connection lost ({e})"))),
        };
        match msg {
            Message::Text(text) => {
                let frame: serde_json::Value =
                    serde_json::from_str(text.as_str()).map_err(|e| ClientError::Decode {
                        path: "/loki/api/v1/tail".into(),
                        reason: format!("frame is not JSON: {e}"),
                    })?;
                let mut entries = output::stream_entries(
                    &serde_json::json!({"result": frame.get("streams").cloned().unwrap_or_else(|| serde_json::json!([]))}),
                    true,
                )
                .map_err(|reason| ClientError::Decode {
                    path: "/loki/api/v1/tail".into(),
                    reason,
                })?;
                entries.retain(|e| shown.first_time(e));
                printer.page(&entries);
                for e in &entries {
                    printer.entry(e)?;
                }
                printer.flush()?;
                let dropped = frame
                    .get("dropped_entries")
                    .and_then(|d| d.as_array())
                    .map_or(0, Vec::len);
                if dropped > 0 && !quiet {
                    eprintln!("tail: the server dropped {dropped} entries this client did not read fast enough");
                }
            }
            Message::Close(frame) => {
                return Ok(match frame {
                    Some(f) if u16::from(f.code) == 1011 => Ended::Failed(f.reason.to_string()),
                    Some(f) if !f.reason.is_empty() => Ended::Reconnect(f.reason.to_string()),
                    _ => Ended::Reconnect("the server closed the connection".into()),
                });
            }
            _ => {}
        }
    }
}
