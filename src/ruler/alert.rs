//! The alert state machine of one alerting rule, as Prometheus runs it: a series in the result
//! becomes a *pending* alert, *firing* once it has been active for `for`; when it leaves the
//! result a pending alert is dropped and a firing one is resolved (*inactive*, kept 15 minutes
//! to be sent as resolved) unless `keep_firing_for` keeps it firing. Which alerts to send
//! (resend delay, resolution) and with which `endsAt` is decided here too. Times are Unix ns.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a resolved alert is kept (and sent as resolved), as Prometheus.
pub const RESOLVED_RETENTION: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

pub type LabelMap = BTreeMap<String, String>;

/// One alert of a rule: one series of its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: LabelMap,
    pub annotations: LabelMap,
    pub state: AlertState,
    pub value: f64,
    pub active_at: i64,
    #[serde(default)]
    pub fired_at: Option<i64>,
    #[serde(default)]
    pub resolved_at: Option<i64>,
    #[serde(default)]
    pub last_sent_at: Option<i64>,
    #[serde(default)]
    pub keep_firing_since: Option<i64>,
}

/// An alert as Alertmanager's v2 API takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub labels: LabelMap,
    pub annotations: LabelMap,
    pub starts_at: i64,
    pub ends_at: i64,
}

/// A series of the rule's result, with its labels and annotations already expanded.
pub struct Found {
    pub labels: LabelMap,
    pub annotations: LabelMap,
    pub value: f64,
}

/// The active alerts of one rule, by label set.
#[derive(Debug, Default, Clone)]
pub struct Alerts {
    pub active: BTreeMap<LabelMap, Alert>,
}

fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl Alerts {
    /// One evaluation at `ts` whose result is `found`. Past `limit` (0: none) pending and
    /// firing alerts, every alert is dropped and the evaluation fails, as in Prometheus.
    pub fn step(
        &mut self,
        ts: i64,
        found: Vec<Found>,
        hold: Duration,
        keep_firing_for: Duration,
        limit: usize,
    ) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for f in found {
            seen.insert(f.labels.clone());
            match self.active.get_mut(&f.labels) {
                Some(a) if a.state != AlertState::Inactive => {
                    a.value = f.value;
                    a.annotations = f.annotations;
                }
                _ => {
                    self.active.insert(
                        f.labels.clone(),
                        Alert {
                            labels: f.labels,
                            annotations: f.annotations,
                            state: AlertState::Pending,
                            value: f.value,
                            active_at: ts,
                            fired_at: None,
                            resolved_at: None,
                            last_sent_at: None,
                            keep_firing_since: None,
                        },
                    );
                }
            }
        }
        let mut active_pending = 0;
        let mut remove = Vec::new();
        for (key, a) in self.active.iter_mut() {
            if !seen.contains(key) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && !keep_firing_for.is_zero() {
                    let since = *a.keep_firing_since.get_or_insert(ts);
                    keep_firing = ts - since < ns(keep_firing_for);
                }
                let expired = a
                    .resolved_at
                    .is_some_and(|r| ts - r > ns(RESOLVED_RETENTION));
                if a.state == AlertState::Pending || expired {
                    remove.push(key.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at = Some(ts);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since = None;
            }
            active_pending += 1;
            if a.state == AlertState::Pending && ts - a.active_at >= ns(hold) {
                a.state = AlertState::Firing;
                a.fired_at = Some(ts);
            }
        }
        for k in remove {
            self.active.remove(&k);
        }
        if limit > 0 && active_pending > limit {
            self.active.clear();
            return Err(format!(
                "exceeded limit of {limit} with {active_pending} alerts: raise the group's limit or narrow the rule"
            ));
        }
        Ok(())
    }

    /// The alerts to send at `ts`: firing ones not sent for `resend_delay`, and ones resolved
    /// since they were last sent. `endsAt` is the resolution time, or for firing alerts
    /// `ts + 4 * max(resend_delay, interval)` so Alertmanager resolves them if we stop.
    pub fn to_send(
        &mut self,
        ts: i64,
        resend_delay: Duration,
        interval: Duration,
    ) -> Vec<Outgoing> {
        let valid_for = 4 * ns(resend_delay.max(interval));
        let mut out = Vec::new();
        for a in self.active.values_mut() {
            let needs = match a.state {
                AlertState::Pending => false,
                _ if a
                    .resolved_at
                    .is_some_and(|r| a.last_sent_at.is_none_or(|s| r > s)) =>
                {
                    true
                }
                AlertState::Inactive => false,
                AlertState::Firing => a.last_sent_at.is_none_or(|s| s + ns(resend_delay) <= ts),
            };
            if !needs {
                continue;
            }
            a.last_sent_at = Some(ts);
            out.push(Outgoing {
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: a.fired_at.unwrap_or(a.active_at),
                ends_at: match a.state {
                    AlertState::Inactive => a.resolved_at.unwrap_or(ts),
                    _ => ts + valid_for,
                },
            });
        }
        out
    }

    /// Pending and firing alerts (what the API lists).
    pub fn listed(&self) -> impl Iterator<Item = &Alert> {
        self.active
            .values()
            .filter(|a| a.state != AlertState::Inactive)
    }

    /// The rule's state: firing if any alert fires, else pending if any is pending.
    pub fn rule_state(&self) -> AlertState {
        let mut s = AlertState::Inactive;
        for a in self.listed() {
            if a.state == AlertState::Firing {
                return AlertState::Firing;
            }
            s = AlertState::Pending;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn found(v: &[f64]) -> Vec<Found> {
        v.iter()
            .map(|&value| Found {
                labels: BTreeMap::from([("alertname".to_string(), "A".to_string())]),
                annotations: BTreeMap::new(),
                value,
            })
            .collect()
    }

    /// One evaluation per line: (second, series present?, expected state or None for no
    /// alert, sent at that evaluation?: None, Some(false) firing, Some(true) resolved).
    type Step = (i64, bool, Option<AlertState>, Option<bool>);

    #[track_caller]
    fn run(hold: u64, keep: u64, steps: &[Step]) {
        let mut a = Alerts::default();
        for &(sec, present, state, sent) in steps {
            let ts = sec * S;
            a.step(
                ts,
                if present { found(&[1.0]) } else { vec![] },
                Duration::from_secs(hold),
                Duration::from_secs(keep),
                0,
            )
            .unwrap();
            let got = a.active.values().next().map(|x| x.state);
            assert_eq!(got, state, "state at {sec}s");
            let out = a.to_send(ts, Duration::from_secs(60), Duration::from_secs(10));
            let got_sent = out.first().map(|o| o.ends_at <= ts);
            assert_eq!(got_sent, sent, "sent at {sec}s: {out:?}");
            if let Some(o) = out.first() {
                if o.ends_at > ts {
                    assert_eq!(o.ends_at, ts + 240 * S, "endsAt 4 x resend delay ahead");
                }
            }
        }
    }

    use AlertState::*;

    #[test]
    fn pending_then_firing_then_resolved() {
        run(
            20,
            0,
            &[
                (0, true, Some(Pending), None),
                (10, true, Some(Pending), None),
                (20, true, Some(Firing), Some(false)),
                (30, true, Some(Firing), None),
                (80, true, Some(Firing), Some(false)), // resend after 60s
                (90, false, Some(Inactive), Some(true)),
                (100, false, Some(Inactive), None),
                (100 + 15 * 60 + 1, false, None, None),
            ],
        );
    }

    #[test]
    fn pending_that_goes_away_is_dropped_unsent() {
        run(
            30,
            0,
            &[
                (0, true, Some(Pending), None),
                (10, false, None, None),
                (20, true, Some(Pending), None),
            ],
        );
    }

    #[test]
    fn no_for_fires_at_once_and_comes_back_as_new() {
        run(
            0,
            0,
            &[
                (0, true, Some(Firing), Some(false)),
                (10, false, Some(Inactive), Some(true)),
                (20, true, Some(Firing), Some(false)),
            ],
        );
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert() {
        run(
            0,
            25,
            &[
                (0, true, Some(Firing), Some(false)),
                (10, false, Some(Firing), None),
                (30, false, Some(Firing), None),
                (40, false, Some(Inactive), Some(true)),
            ],
        );
        run(
            0,
            25,
            &[
                (0, true, Some(Firing), Some(false)),
                (10, false, Some(Firing), None),
                (20, true, Some(Firing), None),
                (40, false, Some(Firing), None), // the keep_firing_for window starts again
                (70, false, Some(Inactive), Some(true)),
            ],
        );
    }

    #[test]
    fn limit_drops_every_alert() {
        let mut a = Alerts::default();
        let mut two = found(&[1.0]);
        two.push(Found {
            labels: BTreeMap::from([("alertname".to_string(), "B".to_string())]),
            annotations: BTreeMap::new(),
            value: 2.0,
        });
        let e = a
            .step(0, two, Duration::ZERO, Duration::ZERO, 1)
            .unwrap_err();
        assert!(e.contains("exceeded limit of 1 with 2 alerts"), "{e}");
        assert!(a.active.is_empty());
    }

    #[test]
    fn value_and_annotations_follow_the_latest_evaluation() {
        let mut a = Alerts::default();
        a.step(0, found(&[1.0]), Duration::from_secs(60), Duration::ZERO, 0)
            .unwrap();
        a.step(S, found(&[5.0]), Duration::from_secs(60), Duration::ZERO, 0)
            .unwrap();
        let x = a.active.values().next().unwrap();
        assert_eq!((x.value, x.active_at), (5.0, 0));
        assert_eq!(a.rule_state(), Pending);
    }
}
