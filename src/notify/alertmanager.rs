//! Alertmanager's v2 API client: alerts are POSTed as a JSON array of `PostableAlert`
//! (`labels`, `annotations`, `startsAt`, `endsAt`, `generatorURL`) to `<url>/api/v2/alerts`,
//! to every configured Alertmanager independently (one down does not hold back the others).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat};
use serde_json::json;

use super::{send_request, Count, Sender, REQUEST_TIMEOUT};

/// Alerts waiting per Alertmanager at most; older ones are dropped past it.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Alerts per request at most.
pub const MAX_BATCH: usize = 256;

/// An alert on its way to Alertmanager. Times are Unix ns.
#[derive(Debug, Clone, PartialEq)]
pub struct PostableAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub generator_url: String,
}

pub fn rfc3339(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The JSON body of `POST /api/v2/alerts`.
pub fn encode(alerts: &[PostableAlert]) -> String {
    let arr: Vec<serde_json::Value> = alerts
        .iter()
        .map(|a| {
            json!({
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": rfc3339(a.starts_at),
                "endsAt": rfc3339(a.ends_at),
                "generatorURL": a.generator_url,
            })
        })
        .collect();
    serde_json::Value::Array(arr).to_string()
}

/// Sends alerts to a set of Alertmanagers.
pub struct Notifier {
    senders: Vec<Sender<PostableAlert>>,
}

impl Notifier {
    /// One sender per base URL (`http://host:9093`). Counts
    /// `sawmill_notifications_sent_total`, `sawmill_notifications_errors_total` and
    /// `sawmill_notifications_dropped_total` by `alertmanager`.
    pub fn new(urls: &[String], count: Count) -> Notifier {
        let senders = urls
            .iter()
            .map(|base| {
                let url = format!("{base}/api/v2/alerts");
                let agent = ureq::AgentBuilder::new().timeout(REQUEST_TIMEOUT).build();
                let (c, c2, am, am2) = (count.clone(), count.clone(), base.clone(), base.clone());
                Sender::start(
                    base,
                    QUEUE_CAPACITY,
                    MAX_BATCH,
                    move |batch: &[PostableAlert]| {
                        let req = agent.post(&url).set("Content-Type", "application/json");
                        let r = send_request(req, encode(batch).as_bytes());
                        let n = batch.len() as u64;
                        match &r {
                            Ok(()) => c(
                                "sawmill_notifications_sent_total",
                                &[("alertmanager", &am)],
                                n,
                            ),
                            Err(_) => c(
                                "sawmill_notifications_errors_total",
                                &[("alertmanager", &am)],
                                n,
                            ),
                        }
                        r
                    },
                    move |n| {
                        c2(
                            "sawmill_notifications_dropped_total",
                            &[("alertmanager", &am2)],
                            n,
                        )
                    },
                )
            })
            .collect();
        Notifier { senders }
    }

    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    pub fn send(&self, alerts: &[PostableAlert]) {
        if alerts.is_empty() {
            return;
        }
        for s in &self.senders {
            s.push(alerts.iter().cloned());
        }
    }

    pub fn stop(&self) {
        for s in &self.senders {
            s.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postable_alert_json() {
        let a = PostableAlert {
            labels: BTreeMap::from([("alertname".into(), "A".into())]),
            annotations: BTreeMap::from([("summary".into(), "s".into())]),
            starts_at: 1_700_000_000_000_000_000,
            ends_at: 1_700_000_060_500_000_000,
            generator_url: "http://x/".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&encode(&[a])).unwrap();
        assert_eq!(
            v,
            json!([{"labels": {"alertname": "A"}, "annotations": {"summary": "s"},
                "startsAt": "2023-11-14T22:13:20.000Z", "endsAt": "2023-11-14T22:14:20.500Z",
                "generatorURL": "http://x/"}])
        );
    }
}
