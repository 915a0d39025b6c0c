//! `sawmill push`: lines from stdin or files into one stream, in JSON pushes of at most
//! `batch` lines or `batch_bytes` bytes (or whatever arrived within a second, so a live pipe
//! such as `tail -f app.log | sawmill push` keeps flowing). 429 and 5xx answers and an
//! unreachable server are retried with backoff, as promtail does; other errors stop.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{ClientError, Conn, Result};
use crate::labels::Labels;

pub struct PushArgs {
    pub labels: String,
    /// Files to read in order; none or `-` is stdin.
    pub files: Vec<PathBuf>,
    pub batch: usize,
    pub batch_bytes: usize,
    /// Attempts per push before giving up.
    pub retries: u32,
    pub quiet: bool,
}

/// What was pushed.
#[derive(Debug, Default, PartialEq)]
pub struct Pushed {
    pub lines: u64,
    pub requests: u64,
    pub retries: u64,
}

/// Timestamps for the lines: now, but strictly increasing so that order is kept.
struct Clock(i64);

impl Clock {
    fn next(&mut self) -> i64 {
        self.0 = crate::model::now_ns().max(self.0 + 1);
        self.0
    }
}

pub fn run(conn: &Conn, a: &PushArgs) -> Result<Pushed> {
    let labels = Labels::parse(&a.labels).map_err(|e| {
        ClientError::Usage(format!(
            "invalid --labels {:?}: {e} (expected e.g. '{{app=\"x\"}}')",
            a.labels
        ))
    })?;
    if labels.is_empty() {
        return Err(ClientError::Usage(
            "--labels needs at least one label, e.g. '{app=\"x\"}'".into(),
        ));
    }
    if a.batch == 0 || a.batch_bytes == 0 {
        return Err(ClientError::Usage(
            "--batch and --batch-bytes must be at least 1".into(),
        ));
    }
    let stream: serde_json::Map<String, serde_json::Value> = labels
        .pairs()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    let (tx, rx) = crossbeam::channel::bounded::<std::io::Result<String>>(a.batch * 4);
    let files = a.files.clone();
    for f in &files {
        if f.as_os_str() != "-" && !f.is_file() {
            return Err(ClientError::Usage(format!(
                "cannot read {}: no such file",
                f.display()
            )));
        }
    }
    std::thread::spawn(move || read_lines(&files, &tx));
    let mut pushed = Pushed::default();
    let mut clock = Clock(0);
    let mut batch: Vec<serde_json::Value> = Vec::new();
    let mut bytes = 0usize;
    let mut oldest = Instant::now();
    loop {
        let next = rx.recv_timeout(Duration::from_millis(200));
        let ended = match next {
            Ok(Ok(line)) => {
                if !line.is_empty() {
                    if batch.is_empty() {
                        oldest = Instant::now();
                    }
                    bytes += line.len();
                    batch.push(serde_json::json!([clock.next().to_string(), line]));
                }
                false
            }
            Ok(Err(e)) => return Err(ClientError::Io(e)),
            Err(crossbeam::channel::RecvTimeoutError::Timeout) => false,
            Err(crossbeam::channel::RecvTimeoutError::Disconnected) => true,
        };
        let due = batch.len() >= a.batch
            || bytes >= a.batch_bytes
            || (!batch.is_empty() && (ended || oldest.elapsed() >= Duration::from_secs(1)));
        if due {
            let body = serde_json::json!({"streams": [{"stream": stream, "values": batch}]});
            send(
                conn,
                body.to_string().as_bytes(),
                a.retries,
                a.quiet,
                &mut pushed,
            )?;
            pushed.lines += batch.len() as u64;
            batch = Vec::new();
            bytes = 0;
        }
        if ended {
            return Ok(pushed);
        }
    }
}

fn read_lines(files: &[PathBuf], tx: &crossbeam::channel::Sender<std::io::Result<String>>) {
    let stdin = [PathBuf::from("-")];
    let files = if files.is_empty() { &stdin[..] } else { files };
    for f in files {
        let reader: Box<dyn BufRead> = if f.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            match std::fs::File::open(f) {
                Ok(file) => Box::new(std::io::BufReader::new(file)),
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::new(
                        e.kind(),
                        format!("{}: {e}", f.display()),
                    )));
                    return;
                }
            }
        };
        let mut reader = reader;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) => {
                    while matches!(buf.last(), Some(b'\n' | b'\r')) {
                        buf.pop();
                    }
                    if tx
                        .send(Ok(String::from_utf8_lossy(&buf).into_owned()))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    }
}

fn send(conn: &Conn, body: &[u8], retries: u32, quiet: bool, pushed: &mut Pushed) -> Result<()> {
    let mut backoff = Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        match conn.post("/loki/api/v1/push", "application/json", body) {
            Ok(_) => {
                pushed.requests += 1;
                return Ok(());
            }
            Err(e) if e.is_transient() && attempt < retries => {
                if !quiet {
                    eprintln!("push: {e}; retrying in {} ms", backoff.as_millis());
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
                attempt += 1;
                pushed.retries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
