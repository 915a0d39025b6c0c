//! `GET /loki/api/v1/tail`: live tail over a WebSocket, in Loki's frames
//! (`{"streams":[...],"dropped_entries":[...]}`). On connect, the newest `limit` entries since
//! `start` are sent oldest first; then every entry the push path hands to this tail
//! (`crate::storage::tail`) goes through the query's pipeline and is sent at once, or held for
//! `delay_for` seconds and sent in timestamp order. Pings go out every second; errors close
//! the socket with code 1011 and the message, as Loki does.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;

use super::read::{now_ns, parse_error, CancelOnDrop};
use super::{ApiError, AppState, TenantQuery};
use crate::labels::Labels;
use crate::logql::{self, Expr, Stage};
use crate::pipeline::labels_builder::LabelsBuilder;
use crate::pipeline::Pipeline;
use crate::query::{self, Cancel, Direction, LogQuery};
use crate::storage::tail::{Backlog, TailHandle};

/// Loki's bound on `delay_for`, in seconds.
const MAX_DELAY_FOR: u64 = 5;
/// Loki's default `limit` for the entries sent on connect.
const DEFAULT_LIMIT: usize = 100;
const PING_EVERY: Duration = Duration::from_secs(1);
/// With `delay_for`, entries whose delay ends this close together are sent in one frame.
const RELEASE_SLACK: Duration = Duration::from_millis(100);
/// WebSocket close codes (RFC 6455): an error, and the server going away.
const CLOSE_ERROR: u16 = 1011;
const CLOSE_GOING_AWAY: u16 = 1001;

/// One entry ready to send: result labels (after the pipeline), timestamp, line.
type Out = (Labels, i64, String);

pub async fn tail(
    State(state): State<AppState>,
    ws: WebSocketUpgrade,
    TenantQuery {
        tenant, params: p, ..
    }: TenantQuery,
) -> Result<Response, ApiError> {
    let limits = state.store.limits_for(&tenant);
    let log = match logql::parse_expr(p.query()?).map_err(parse_error)? {
        Expr::Log(log) => log,
        Expr::Sample(_) => {
            return Err(ApiError::BadRequest(
                "tail needs a log query (a stream selector with optional filters and parsers); metric queries cannot be tailed".into(),
            ))
        }
    };
    let delay_for = match p.get("delay_for").filter(|d| !d.is_empty()) {
        None => 0,
        Some(d) => d.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(format!(
                "invalid delay_for {d:?}: expected whole seconds from 0 to {MAX_DELAY_FOR}"
            ))
        })?,
    };
    if delay_for > MAX_DELAY_FOR {
        return Err(ApiError::BadRequest(format!(
            "delay_for can't be greater than {MAX_DELAY_FOR}"
        )));
    }
    let limit = match p.get("limit").filter(|l| !l.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(_) => p.limit(limits.max_entries_limit_per_query)?,
    };
    let now = now_ns();
    let start = p.timestamp("start")?.unwrap_or(now - 3_600_000_000_000);
    // Compiled once here so that a bad pipeline is a 400 before the upgrade.
    Pipeline::new(&log.pipeline).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    // Registered before the history is read, so nothing pushed in between is missed.
    let handle = state
        .store
        .tails
        .register(
            &tenant,
            log.selector.matchers.clone(),
            limits.max_concurrent_tail_requests,
        )
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let tail = Tail {
        state,
        tenant,
        handle,
        query: LogQuery {
            matchers: log.selector.matchers,
            pipeline: log.pipeline,
            start,
            end: now + 1,
            limit,
            direction: Direction::Backward,
        },
        delay: Duration::from_secs(delay_for),
    };
    Ok(ws.on_upgrade(move |socket| tail.run(socket)))
}

struct Tail {
    state: AppState,
    tenant: String,
    handle: TailHandle,
    query: LogQuery,
    delay: Duration,
}

/// The pipeline and labels builder a tail runs new entries through.
struct Filter {
    pipeline: Pipeline,
    builder: LabelsBuilder,
}

impl Filter {
    fn new(stages: &[Stage]) -> Filter {
        Filter {
            pipeline: Pipeline::new(stages).expect("bug: pipeline compiled before the upgrade"),
            builder: LabelsBuilder::new(),
        }
    }

    fn apply(&mut self, backlog: Vec<(std::sync::Arc<Labels>, crate::model::Entry)>) -> Vec<Out> {
        let mut out = Vec::new();
        for (labels, e) in backlog {
            self.builder.set_stream(labels.pairs());
            self.builder.start_entry(&e.metadata);
            let Some(line) = self
                .pipeline
                .process(e.ts, e.line.as_bytes(), &mut self.builder)
            else {
                continue;
            };
            let line = String::from_utf8_lossy(line).into_owned();
            let c = self.builder.categorized();
            let labels = Labels::from_pairs(
                c.stream
                    .into_iter()
                    .chain(c.structured_metadata)
                    .chain(c.parsed)
                    .collect(),
            );
            out.push((labels, e.ts, line));
        }
        out
    }
}

fn key(labels: &Labels, ts: i64, line: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (labels.fingerprint(), ts, line).hash(&mut h);
    h.finish()
}

impl Tail {
    async fn run(self, mut socket: WebSocket) {
        let Tail {
            state,
            tenant,
            handle,
            query,
            delay,
        } = self;
        let sub = handle.subscriber.clone();
        let mut closing = state.store.tails.closing();
        let history_end = query.end;
        let stages = query.pipeline.clone();
        // The history: newest `limit` entries, sent oldest first.
        let history = {
            let store = state.store.clone();
            let timeout = state.store.limits_for(&tenant).query_timeout;
            let guard = CancelOnDrop(Cancel::with_timeout(timeout));
            let cancel = guard.0.clone();
            let t = tenant.clone();
            super::read::blocking(move || {
                let Some(t) = store.existing_tenant(&t) else {
                    return Ok(Vec::new());
                };
                let (streams, _) = query::select_logs(&t, &query, false, cancel)?;
                Ok(streams
                    .into_iter()
                    .flat_map(|s| {
                        let labels = s.labels;
                        s.entries
                            .into_iter()
                            .map(move |e| (labels.clone(), e.ts, e.line))
                    })
                    .collect::<Vec<Out>>())
            })
            .await
        };
        let mut history = match history {
            Ok(h) => h,
            Err(e) => {
                let _ = socket
                    .send(close(CLOSE_ERROR, e.message().trim_end()))
                    .await;
                return;
            }
        };
        history.sort_by_key(|(_, ts, _)| *ts);
        let seen: HashSet<u64> = history
            .iter()
            .map(|(l, ts, line)| key(l, *ts, line))
            .collect();
        if !history.is_empty() && socket.send(frame(&history, &[])).await.is_err() {
            return;
        }
        drop(history);

        let mut filter = Some(Filter::new(&stages));
        let mut held: Vec<(Instant, Out)> = Vec::new();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            let next_release = held.first().map(|(at, _)| *at);
            tokio::select! {
                _ = sub.wake.notified() => {
                    let Backlog { entries, dropped, dropped_unreported } = sub.take();
                    let lost = dropped.len() as u64 + dropped_unreported;
                    if lost > 0 {
                        state.store.metrics.inc("sawmill_tail_dropped_entries_total", &[("tenant", &tenant)], lost);
                    }
                    let mut f = filter.take().expect("bug: tail filter in use");
                    let ran = tokio::task::spawn_blocking(move || {
                        let out = f.apply(entries);
                        (f, out)
                    }).await;
                    let Ok((f, mut out)) = ran else {
                        let _ = socket.send(close(CLOSE_ERROR, "tail filter failed")).await;
                        return;
                    };
                    filter = Some(f);
                    out.retain(|(l, ts, line)| *ts > history_end || !seen.contains(&key(l, *ts, line)));
                    let dropped: Vec<(Labels, i64)> = dropped.into_iter().map(|(l, ts)| ((*l).clone(), ts)).collect();
                    if delay.is_zero() {
                        if (!out.is_empty() || !dropped.is_empty())
                            && socket.send(frame(&out, &dropped)).await.is_err() {
                            return;
                        }
                    } else {
                        let at = Instant::now() + delay;
                        held.extend(out.into_iter().map(|o| (at, o)));
                        if !dropped.is_empty() && socket.send(frame(&[], &dropped)).await.is_err() {
                            return;
                        }
                    }
                }
                _ = sleep_until(next_release) => {
                    // Entries due within the next moment go out together, in timestamp order.
                    let now = Instant::now() + RELEASE_SLACK;
                    let due = held.partition_point(|(at, _)| *at <= now);
                    let mut out: Vec<Out> = held.drain(..due).map(|(_, o)| o).collect();
                    out.sort_by_key(|(_, ts, _)| *ts);
                    if socket.send(frame(&out, &[])).await.is_err() {
                        return;
                    }
                }
                _ = ping.tick() => {
                    if socket.send(Message::Ping(Default::default())).await.is_err() {
                        return;
                    }
                }
                msg = socket.recv() => match msg {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                },
                _ = closing.changed() => {
                    let _ = socket.send(close(CLOSE_GOING_AWAY, "server shutting down")).await;
                    return;
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// One frame in Loki's shape: streams grouped by labels (entries in timestamp order), then
/// the dropped entries (at most `tail::MAX_DROPPED_REPORTED`; more are only counted in
/// `sawmill_tail_dropped_entries_total`); both keys are left out when empty, as Loki does.
fn frame(out: &[Out], dropped: &[(Labels, i64)]) -> Message {
    let mut streams: BTreeMap<&Labels, Vec<(i64, &str)>> = BTreeMap::new();
    for (l, ts, line) in out {
        streams.entry(l).or_default().push((*ts, line));
    }
    let mut obj = serde_json::Map::new();
    if !streams.is_empty() {
        let v: Vec<serde_json::Value> = streams
            .into_iter()
            .map(|(l, mut values)| {
                values.sort_by_key(|(ts, _)| *ts);
                serde_json::json!({
                    "stream": labels_obj(l),
                    "values": values.iter().map(|(ts, line)| serde_json::json!([ts.to_string(), line])).collect::<Vec<_>>(),
                })
            })
            .collect();
        obj.insert("streams".into(), v.into());
    }
    if !dropped.is_empty() {
        let v: Vec<serde_json::Value> = dropped
            .iter()
            .map(
                |(l, ts)| serde_json::json!({"timestamp": ts.to_string(), "labels": labels_obj(l)}),
            )
            .collect();
        obj.insert("dropped_entries".into(), v.into());
    }
    Message::Text(serde_json::Value::Object(obj).to_string().into())
}

fn labels_obj(l: &Labels) -> serde_json::Value {
    serde_json::Value::Object(
        l.pairs()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect(),
    )
}
