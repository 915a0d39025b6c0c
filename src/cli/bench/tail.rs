//! `sawmill bench tail`: live tail latency against a running server, from a push's
//! acknowledgement to the line's arrival on a tail.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{median, BenchTailArgs};

/// Tail latency against a running server: one tail on a bench stream, then `lines` pushes of
/// one line each, `interval_ms` apart; for each, the time from the push's acknowledgement to
/// the line's arrival on the tail. Prints the median, 99th percentile and maximum. Run
/// `sawmill bench push` at the same time to measure it under ingest load.
pub fn tail(a: BenchTailArgs) -> anyhow::Result<()> {
    use crate::client::{Conn, ConnOptions};
    use std::collections::HashMap;
    use std::sync::Mutex;
    let conn = Conn::new(ConnOptions {
        addr: a.addr.clone(),
        org_id: a.org_id.clone(),
        ..ConnOptions::default()
    })?;
    let run = format!("{:x}", crate::model::now_ns());
    let query = format!("{{job=\"tailbench\", run=\"{run}\"}}");
    let mut ws = conn.websocket(
        "/loki/api/v1/tail",
        &[("query", query), ("limit", "1".into())],
        Duration::from_secs(10),
    )?;
    let arrived: Arc<Mutex<HashMap<usize, Instant>>> = Arc::default();
    let seen = arrived.clone();
    let reader = std::thread::spawn(move || -> anyhow::Result<()> {
        loop {
            let msg = ws.read()?;
            let tungstenite::Message::Text(t) = msg else {
                continue;
            };
            let now = Instant::now();
            let v: serde_json::Value = serde_json::from_str(t.as_str())?;
            for s in v["streams"].as_array().into_iter().flatten() {
                for e in s["values"].as_array().into_iter().flatten() {
                    let line = e[1].as_str().unwrap_or_default();
                    if line == "done" {
                        return Ok(());
                    }
                    if let Some(i) = line.strip_prefix("tail bench line ") {
                        seen.lock().unwrap().insert(i.parse()?, now);
                    }
                }
            }
        }
    });
    let mut acked = Vec::with_capacity(a.lines);
    for i in 0..=a.lines {
        let line = if i == a.lines {
            "done".to_string()
        } else {
            format!("tail bench line {i}")
        };
        let body = serde_json::json!({"streams":[{"stream":{"job":"tailbench","run":run},
            "values":[[crate::model::now_ns().to_string(), line]]}]});
        conn.post(
            "/loki/api/v1/push",
            "application/json",
            body.to_string().as_bytes(),
        )?;
        acked.push(Instant::now());
        std::thread::sleep(Duration::from_millis(a.interval_ms));
    }
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("tail reader panicked"))??;
    let arrived = arrived.lock().unwrap();
    let mut late: Vec<Duration> = Vec::new();
    let mut early = 0;
    for (i, at) in acked.iter().take(a.lines).enumerate() {
        match arrived.get(&i) {
            Some(got) if got >= at => late.push(*got - *at),
            Some(_) => {
                early += 1;
                late.push(Duration::ZERO);
            }
            None => anyhow::bail!("line {i} never reached the tail"),
        }
    }
    late.sort();
    let p99 = late[(late.len() * 99 / 100).min(late.len() - 1)];
    println!(
        "tail latency after the push was acknowledged, {} lines: median {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} arrived before the acknowledgement)",
        late.len(),
        median(late.clone()).as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        late.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        early
    );
    Ok(())
}
