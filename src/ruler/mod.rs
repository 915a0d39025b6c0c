//! The ruler: alerting and recording rules over LogQL metric queries. Rule files
//! (`rulefmt`) live in `<rule_path>/<tenant>/<namespace>.yaml`, read at start, every
//! `poll_interval`, on reload and when the rules API changes them. One thread evaluates each
//! group on its interval as instant queries through `query::run_metric` (the query API's
//! path), steps each alerting rule's state machine (`alert`) with labels and annotations
//! expanded by `template`, and hands alerts to `notify::alertmanager` and recorded samples to
//! `notify::remote_write`. Pending and firing alerts are saved per tenant after each
//! evaluation and restored at start, as Prometheus restores `for` state.
//!
//! `eval` turns a rule's query result into samples or alerts.
//!
//! ```text
//! rule files ──► Ruler (thread) ──► query::run_metric ──► alert::Alerts ──► notify (Alertmanager)
//!                       │                                       └──► <data>/ruler/t-<hex>/alerts.json
//!                       └──► recording rules ──► notify::remote_write (Prometheus)
//! ```

pub mod alert;
pub mod eval;
pub mod rulefmt;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::RulerConfig;
use crate::model::now_ns;
use crate::notify::alertmanager::{Notifier, PostableAlert};
use crate::notify::remote_write::RemoteWriter;
use crate::query::metric::EvalParams;
use crate::query::Cancel;
use crate::storage::store::Store;
use alert::{Alert, Alerts};
use rulefmt::{GroupSpec, RuleError, RuleFile, RuleGroup, RuleKind, RuleSpec};

#[derive(Debug, Error)]
pub enum RulerError {
    #[error("invalid namespace name {0:?}: it must not be empty, start with '.', or contain '/', '\\\\' or control characters (also percent-encoded)")]
    BadNamespace(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<RuleError>),
    #[error("rule storage: {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RulerError + '_ {
    move |source| RulerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Checks a namespace name from a URL or a file name: it becomes `<namespace>.yaml` in the
/// tenant's rule directory, so nothing that could leave that directory is accepted, also after
/// percent-decoding it again (and again).
pub fn validate_namespace(ns: &str) -> Result<(), RulerError> {
    let bad = || RulerError::BadNamespace(ns.to_string());
    let mut cur = ns.to_string();
    for _ in 0..8 {
        if cur.is_empty()
            || cur.len() > 200
            || cur.starts_with('.')
            || cur.contains(['/', '\\'])
            || cur.chars().any(char::is_control)
        {
            return Err(bad());
        }
        let decoded = percent_encoding::percent_decode_str(&cur)
            .decode_utf8()
            .map_err(|_| bad())?
            .into_owned();
        if decoded == cur {
            return Ok(());
        }
        cur = decoded;
    }
    Err(bad())
}

/// (tenant, namespace, group name)
pub type GroupKey = (String, String, String);

/// A rule and what its evaluations left.
pub struct RuleState {
    pub spec: RuleSpec,
    pub alerts: Alerts,
    /// `unknown` before the first evaluation, then `ok` or `err`.
    pub health: &'static str,
    pub last_error: String,
    pub last_evaluation: Option<i64>,
    pub evaluation_secs: f64,
}

/// A loaded group and its schedule.
pub struct Group {
    pub spec: GroupSpec,
    pub interval: Duration,
    pub next_eval: i64,
    pub last_evaluation: Option<i64>,
    pub evaluation_secs: f64,
    pub rules: Vec<RuleState>,
}

/// What is saved per tenant so alerts survive a restart.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedAlerts {
    saved_at: i64,
    rules: Vec<SavedRule>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedRule {
    namespace: String,
    group: String,
    rule: String,
    alerts: Vec<Alert>,
}

/// A tenant's alerts by (namespace, group, rule identity).
type SavedByRule = BTreeMap<(String, String, String), Vec<Alert>>;

/// (tenant, namespace, group, rule identity)
type RestoreKey = (String, String, String, String);

pub struct Ruler {
    store: Arc<Store>,
    cfg: RulerConfig,
    rule_dir: PathBuf,
    state_dir: PathBuf,
    generator_base: String,
    groups: Mutex<BTreeMap<GroupKey, Arc<Mutex<Group>>>>,
    /// Alerts read at start, waiting for their rule to be loaded.
    restored: Mutex<HashMap<RestoreKey, Vec<Alert>>>,
    /// The last saved alerts of each tenant, by rule.
    saved: Mutex<HashMap<String, SavedByRule>>,
    /// Serializes loads (start, poll, reload, API writes).
    sync_lock: Mutex<()>,
    /// Serializes the API's read-modify-write of rule files.
    write_lock: Mutex<()>,
    signal: Mutex<bool>,
    wake: Condvar,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    notifier: Notifier,
    remote: Option<RemoteWriter>,
}

fn count_fn(store: &Arc<Store>) -> crate::notify::Count {
    let weak = Arc::downgrade(store);
    Arc::new(move |name: &str, labels: &[(&str, &str)], n: u64| {
        if let Some(s) = weak.upgrade() {
            s.metrics.inc(name, labels, n);
        }
    })
}

impl Ruler {
    /// Builds the ruler (nothing runs until [`Ruler::start`]); reads saved alert state.
    pub fn new(store: Arc<Store>) -> Arc<Ruler> {
        let cfg = store.cfg.ruler.clone();
        let rule_dir = rule_dir(&cfg, store.data_dir());
        let state_dir = store.data_dir().join(crate::storage::files::RULER_DIR);
        let generator_base = if cfg.external_url.is_empty() {
            format!("http://{}", store.cfg.listen_addr())
        } else {
            cfg.external_url.trim_end_matches('/').to_string()
        };
        let count = count_fn(&store);
        let notifier = Notifier::new(&cfg.alertmanager_urls(), count.clone());
        let remote = cfg
            .remote_write
            .enabled
            .then(|| RemoteWriter::new(&cfg.remote_write.client.url, count));
        let ruler = Arc::new(Ruler {
            store,
            rule_dir,
            state_dir,
            generator_base,
            groups: Mutex::new(BTreeMap::new()),
            restored: Mutex::new(HashMap::new()),
            saved: Mutex::new(HashMap::new()),
            sync_lock: Mutex::new(()),
            write_lock: Mutex::new(()),
            signal: Mutex::new(false),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
            notifier,
            remote,
            cfg,
        });
        ruler.read_saved_alerts();
        ruler
    }

    pub fn rule_dir(&self) -> &Path {
        &self.rule_dir
    }

    /// Loads the rules and starts the evaluation thread.
    pub fn start(self: &Arc<Self>) {
        self.sync();
        let me = self.clone();
        let t = std::thread::Builder::new()
            .name("ruler".into())
            .spawn(move || me.run())
            .expect("bug: cannot start the ruler thread");
        *self.thread.lock() = Some(t);
    }

    /// True between [`Ruler::start`] and [`Ruler::stop`].
    pub fn is_running(&self) -> bool {
        self.thread.lock().is_some() && !self.stop.load(Ordering::Acquire)
    }

    /// Stops evaluating (alert state was saved after the last evaluation) and sends what is
    /// queued (one attempt).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.poke();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        self.notifier.stop();
        if let Some(r) = &self.remote {
            r.stop();
        }
    }

    /// Re-reads the rule files now (SIGHUP, `POST /-/reload`); returns a summary.
    pub fn reload(&self) -> String {
        let (groups, errors) = self.sync();
        let mut msg = format!("ruler: {groups} rule groups loaded");
        if !errors.is_empty() {
            msg.push_str(&format!(
                "; {} rule files skipped: {}",
                errors.len(),
                errors.join("; ")
            ));
        }
        msg
    }

    fn poke(&self) {
        *self.signal.lock() = true;
        self.wake.notify_all();
    }

    fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.rule_dir.join(tenant)
    }

    /// A namespace's file: `<ns>.yaml`, or an operator's `<ns>.yml` if only that exists.
    fn namespace_file(&self, tenant: &str, ns: &str) -> PathBuf {
        let dir = self.tenant_dir(tenant);
        let yml = dir.join(format!("{ns}.yml"));
        let yaml = dir.join(format!("{ns}.yaml"));
        if !yaml.exists() && yml.exists() {
            yml
        } else {
            yaml
        }
    }

    /// Every namespace file of a tenant: (namespace, path).
    fn namespace_files(&self, tenant: &str) -> Vec<(String, PathBuf)> {
        let Ok(rd) = std::fs::read_dir(self.tenant_dir(tenant)) else {
            return Vec::new();
        };
        let mut out: Vec<(String, PathBuf)> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let ns = name
                    .strip_suffix(".yaml")
                    .or_else(|| name.strip_suffix(".yml"))?;
                (validate_namespace(ns).is_ok() && e.path().is_file())
                    .then(|| (ns.to_string(), e.path()))
            })
            .collect();
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    fn tenants_on_disk(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.rule_dir) else {
            return Vec::new();
        };
        let mut out: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|t| crate::model::tenant::validate_tenant_id(t).is_ok())
            .collect();
        out.sort();
        out
    }

    /// Reads every rule file and replaces the loaded groups; alerts of rules that did not
    /// change carry over. Returns the number of groups and the files skipped, with why.
    pub fn sync(&self) -> (usize, Vec<String>) {
        let _g = self.sync_lock.lock();
        let mut errors = Vec::new();
        let mut specs: BTreeMap<GroupKey, GroupSpec> = BTreeMap::new();
        for tenant in self.tenants_on_disk() {
            for (ns, path) in self.namespace_files(&tenant) {
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(e) => {
                        errors.push(format!("{}: {e}", path.display()));
                        continue;
                    }
                };
                match rulefmt::check_text(&path.display().to_string(), &text) {
                    Ok(groups) => {
                        for g in groups {
                            specs.insert((tenant.clone(), ns.clone(), g.name.clone()), g);
                        }
                    }
                    Err(es) => errors.extend(es.iter().map(|e| e.to_string())),
                }
            }
        }
        for e in &errors {
            tracing::error!(error = %e, "rule file not loaded");
        }
        self.store.metrics.inc("sawmill_ruler_loads_total", &[], 1);
        let n = specs.len();
        let now = now_ns();
        let mut old = self.groups.lock().clone();
        let mut new = BTreeMap::new();
        for (key, spec) in specs {
            let interval = spec.interval.unwrap_or(self.cfg.evaluation_interval);
            let group = match old.remove(&key) {
                Some(existing) => {
                    {
                        let mut g = existing.lock();
                        let mut prev: Vec<RuleState> = std::mem::take(&mut g.rules);
                        g.rules = spec
                            .rules
                            .iter()
                            .map(|r| {
                                match prev.iter().position(|p| p.spec.identity() == r.identity()) {
                                    Some(i) => {
                                        let mut s = prev.remove(i);
                                        s.spec = r.clone();
                                        s
                                    }
                                    None => self.new_rule_state(&key, r),
                                }
                            })
                            .collect();
                        if g.interval != interval {
                            g.interval = interval;
                            g.next_eval = now;
                        }
                        g.spec = spec;
                    }
                    existing
                }
                None => Arc::new(Mutex::new(Group {
                    rules: spec
                        .rules
                        .iter()
                        .map(|r| self.new_rule_state(&key, r))
                        .collect(),
                    spec,
                    interval,
                    next_eval: now,
                    last_evaluation: None,
                    evaluation_secs: 0.0,
                })),
            };
            new.insert(key, group);
        }
        // Saved alerts of groups that are gone are forgotten.
        for (tenant, rules) in self.saved.lock().iter_mut() {
            rules.retain(|(ns, group, _), _| {
                new.contains_key(&(tenant.clone(), ns.clone(), group.clone()))
            });
        }
        *self.groups.lock() = new;
        self.poke();
        (n, errors)
    }

    fn new_rule_state(&self, key: &GroupKey, r: &RuleSpec) -> RuleState {
        let mut alerts = Alerts::default();
        let rk = (key.0.clone(), key.1.clone(), key.2.clone(), r.identity());
        if let Some(saved) = self.restored.lock().remove(&rk) {
            // Kept in the saved state until the rule's first evaluation replaces it.
            self.saved
                .lock()
                .entry(rk.0.clone())
                .or_default()
                .insert((rk.1.clone(), rk.2.clone(), rk.3.clone()), saved.clone());
            for mut a in saved {
                // Sent again after a restart: Alertmanager deduplicates.
                a.last_sent_at = None;
                alerts.active.insert(a.labels.clone(), a);
            }
        }
        RuleState {
            spec: r.clone(),
            alerts,
            health: "unknown",
            last_error: String::new(),
            last_evaluation: None,
            evaluation_secs: 0.0,
        }
    }

    fn run(self: Arc<Self>) {
        let mut next_poll = Instant::now() + self.cfg.poll_interval;
        while !self.stop.load(Ordering::Acquire) {
            if Instant::now() >= next_poll {
                self.sync();
                next_poll = Instant::now() + self.cfg.poll_interval;
            }
            let groups: Vec<(GroupKey, Arc<Mutex<Group>>)> = self
                .groups
                .lock()
                .iter()
                .map(|(k, g)| (k.clone(), g.clone()))
                .collect();
            let mut touched = std::collections::BTreeSet::new();
            for (key, g) in &groups {
                if self.stop.load(Ordering::Acquire) {
                    break;
                }
                let mut g = g.lock();
                if g.next_eval > now_ns() {
                    continue;
                }
                self.eval_group(key, &mut g);
                let step = i64::try_from(g.interval.as_nanos()).unwrap_or(i64::MAX);
                let now = now_ns();
                while g.next_eval <= now {
                    g.next_eval = g.next_eval.saturating_add(step);
                }
                if g.rules.iter().any(|r| r.spec.kind == RuleKind::Alerting) {
                    self.remember_alerts(key, &g);
                    touched.insert(key.0.clone());
                }
            }
            for tenant in touched {
                self.save_alerts(&tenant);
            }
            let next_eval = self
                .groups
                .lock()
                .values()
                .filter_map(|g| g.try_lock().map(|g| g.next_eval))
                .min();
            let mut wait = next_poll.saturating_duration_since(Instant::now());
            if let Some(t) = next_eval {
                let d = Duration::from_nanos(u64::try_from(t - now_ns()).unwrap_or(0));
                wait = wait.min(d);
            }
            let mut sig = self.signal.lock();
            if !*sig && !wait.is_zero() {
                self.wake.wait_for(&mut sig, wait);
            }
            *sig = false;
        }
    }

    /// Evaluates one group at the current time.
    fn eval_group(&self, key: &GroupKey, g: &mut Group) {
        let (tenant, ns, name) = key;
        let group_label = format!("{ns};{name}");
        let labels: [(&str, &str); 2] = [("tenant", tenant), ("rule_group", &group_label)];
        let started = Instant::now();
        let ts = now_ns();
        let limits = self.store.limits_for(tenant);
        let data = self.store.existing_tenant(tenant);
        let limit = g.spec.limit;
        let interval = g.interval;
        let mut outgoing = Vec::new();
        let mut series = Vec::new();
        for r in g.rules.iter_mut() {
            let t0 = Instant::now();
            self.store
                .metrics
                .inc("sawmill_rule_evaluations_total", &labels, 1);
            let result = crate::query::run_metric(
                data.clone(),
                &r.spec.expr,
                &EvalParams::instant(ts, limits.max_query_series),
                Cancel::with_timeout(limits.query_timeout),
            )
            .map_err(|e| match e {
                crate::query::QueryError::Stopped => format!(
                    "query timed out after limits_config.query_timeout ({:?})",
                    limits.query_timeout
                ),
                other => other.to_string(),
            })
            .and_then(|(res, _)| {
                let vector = eval::to_vector(res);
                match r.spec.kind {
                    RuleKind::Recording => {
                        let s = eval::record(&r.spec, vector, ts, limit)?;
                        series.extend(s);
                        Ok(())
                    }
                    RuleKind::Alerting => {
                        let found = eval::alert_series(&r.spec, vector, &self.generator_base)?;
                        r.alerts
                            .step(ts, found, r.spec.hold, r.spec.keep_firing_for, limit)
                    }
                }
            });
            match result {
                Ok(()) => {
                    r.health = "ok";
                    r.last_error.clear();
                }
                Err(e) => {
                    self.store
                        .metrics
                        .inc("sawmill_rule_evaluation_failures_total", &labels, 1);
                    tracing::warn!(tenant = %tenant, group = %group_label, rule = %r.spec.name, error = %e, "rule evaluation failed");
                    r.health = "err";
                    r.last_error = e;
                }
            }
            if r.spec.kind == RuleKind::Alerting {
                let url = self.generator_url(&r.spec.query);
                outgoing.extend(
                    r.alerts
                        .to_send(ts, self.cfg.resend_delay, interval)
                        .into_iter()
                        .map(|o| PostableAlert {
                            labels: o.labels,
                            annotations: o.annotations,
                            starts_at: o.starts_at,
                            ends_at: o.ends_at,
                            generator_url: url.clone(),
                        }),
                );
                if self.remote.is_some() {
                    series.extend(eval::alert_state_series(&r.alerts, ts));
                }
            }
            r.last_evaluation = Some(ts);
            r.evaluation_secs = t0.elapsed().as_secs_f64();
        }
        g.last_evaluation = Some(ts);
        g.evaluation_secs = started.elapsed().as_secs_f64();
        self.store.metrics.observe(
            "sawmill_rule_group_duration_seconds",
            &labels,
            g.evaluation_secs,
        );
        self.notifier.send(&outgoing);
        if let Some(rw) = &self.remote {
            rw.send(series);
        }
    }

    fn generator_url(&self, query: &str) -> String {
        format!(
            "{}/loki/api/v1/query?{}",
            self.generator_base,
            serde_urlencoded::to_string([("query", query)]).unwrap_or_default()
        )
    }

    fn remember_alerts(&self, key: &GroupKey, g: &Group) {
        let mut saved = self.saved.lock();
        let t = saved.entry(key.0.clone()).or_default();
        t.retain(|(ns, group, _), _| !(ns == &key.1 && group == &key.2));
        for r in &g.rules {
            let listed: Vec<Alert> = r.alerts.active.values().cloned().collect();
            if !listed.is_empty() {
                t.insert((key.1.clone(), key.2.clone(), r.spec.identity()), listed);
            }
        }
    }

    fn alerts_file(&self, tenant: &str) -> PathBuf {
        crate::storage::files::alerts_file(self.store.data_dir(), tenant)
    }

    fn save_alerts(&self, tenant: &str) {
        let rules: Vec<SavedRule> = match self.saved.lock().get(tenant) {
            Some(m) => m
                .iter()
                .map(|((ns, group, rule), alerts)| SavedRule {
                    namespace: ns.clone(),
                    group: group.clone(),
                    rule: rule.clone(),
                    alerts: alerts.clone(),
                })
                .collect(),
            None => return,
        };
        let path = self.alerts_file(tenant);
        if rules.is_empty() {
            // Nothing to restore: no file, and no write at every quiet evaluation.
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "cannot remove alert state")
                }
            }
            return;
        }
        let body = SavedAlerts {
            saved_at: now_ns(),
            rules,
        };
        let text = serde_json::to_vec(&body).expect("bug: alerts serialize");
        if let Err(e) = write_atomic(&path, &text) {
            tracing::error!(file = %path.display(), error = %e, "cannot save alert state");
        }
    }

    fn read_saved_alerts(&self) {
        let Ok(rd) = std::fs::read_dir(&self.state_dir) else {
            return;
        };
        let now = now_ns();
        let tolerance = i64::try_from(self.cfg.for_outage_tolerance.as_nanos()).unwrap_or(i64::MAX);
        let mut restored = self.restored.lock();
        for e in rd.filter_map(|e| e.ok()) {
            let Some(tenant) = e
                .file_name()
                .to_str()
                .and_then(crate::model::tenant::tenant_from_dir_name)
            else {
                continue;
            };
            let path = self.alerts_file(&tenant);
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let saved: SavedAlerts = match serde_json::from_slice(&bytes) {
                Ok(s) => s,
                Err(err) => {
                    tracing::error!(file = %path.display(), error = %err, "alert state not restored: unreadable");
                    continue;
                }
            };
            if now - saved.saved_at > tolerance {
                tracing::info!(tenant = %tenant, "alert state not restored: saved longer ago than ruler.for_outage_tolerance");
                continue;
            }
            for r in saved.rules {
                restored.insert((tenant.clone(), r.namespace, r.group, r.rule), r.alerts);
            }
        }
    }

    // ----- what the API reads and writes -----

    /// Runs `f` on every loaded group of a tenant, in namespace and group order.
    pub fn for_each_group(&self, tenant: &str, mut f: impl FnMut(&str, &Group)) {
        let groups: Vec<(GroupKey, Arc<Mutex<Group>>)> = self
            .groups
            .lock()
            .iter()
            .filter(|(k, _)| k.0 == tenant)
            .map(|(k, g)| (k.clone(), g.clone()))
            .collect();
        for (k, g) in groups {
            f(&k.1, &g.lock());
        }
    }

    fn read_namespace(&self, tenant: &str, ns: &str) -> Result<Option<RuleFile>, RulerError> {
        let path = self.namespace_file(tenant, ns);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        rulefmt::parse_file(&path.display().to_string(), &text)
            .map(Some)
            .map_err(|e| RulerError::Invalid(vec![e]))
    }

    /// The rule groups of a tenant as stored, by namespace (unreadable files left out).
    pub fn rule_groups(&self, tenant: &str) -> BTreeMap<String, Vec<RuleGroup>> {
        let mut out = BTreeMap::new();
        for (ns, _) in self.namespace_files(tenant) {
            if let Ok(Some(f)) = self.read_namespace(tenant, &ns) {
                if !f.groups.is_empty() {
                    out.insert(ns, f.groups);
                }
            }
        }
        out
    }

    pub fn namespace_groups(&self, tenant: &str, ns: &str) -> Result<Vec<RuleGroup>, RulerError> {
        validate_namespace(ns)?;
        match self.read_namespace(tenant, ns)? {
            Some(f) if !f.groups.is_empty() => Ok(f.groups),
            _ => Err(RulerError::NotFound("no rule groups found".into())),
        }
    }

    /// Creates or replaces (by name) a group in a namespace, after checking it.
    pub fn put_group(&self, tenant: &str, ns: &str, group: RuleGroup) -> Result<(), RulerError> {
        validate_namespace(ns)?;
        rulefmt::check_group(ns, &group).map_err(RulerError::Invalid)?;
        let _w = self.write_lock.lock();
        let mut f = self.read_namespace(tenant, ns)?.unwrap_or_default();
        match f.groups.iter_mut().find(|g| g.name == group.name) {
            Some(g) => *g = group,
            None => f.groups.push(group),
        }
        rulefmt::check_file(ns, &f).map_err(RulerError::Invalid)?;
        self.write_namespace(tenant, ns, &f)
    }

    pub fn delete_namespace(&self, tenant: &str, ns: &str) -> Result<(), RulerError> {
        validate_namespace(ns)?;
        let _w = self.write_lock.lock();
        self.remove_namespace(tenant, ns)
    }

    fn remove_namespace(&self, tenant: &str, ns: &str) -> Result<(), RulerError> {
        let path = self.namespace_file(tenant, ns);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RulerError::NotFound("group namespace not found".into()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        }
        let _ = crate::storage::files::sync_dir(&self.tenant_dir(tenant));
        self.sync();
        Ok(())
    }

    pub fn delete_group(&self, tenant: &str, ns: &str, group: &str) -> Result<(), RulerError> {
        validate_namespace(ns)?;
        let _w = self.write_lock.lock();
        let mut f = self
            .read_namespace(tenant, ns)?
            .ok_or_else(|| RulerError::NotFound("group does not exist".into()))?;
        let before = f.groups.len();
        f.groups.retain(|g| g.name != group);
        if f.groups.len() == before {
            return Err(RulerError::NotFound("group does not exist".into()));
        }
        if f.groups.is_empty() {
            return self.remove_namespace(tenant, ns);
        }
        self.write_namespace(tenant, ns, &f)
    }

    fn write_namespace(&self, tenant: &str, ns: &str, f: &RuleFile) -> Result<(), RulerError> {
        let path = self.namespace_file(tenant, ns);
        let text = serde_yaml::to_string(f).expect("bug: rule groups serialize");
        write_atomic(&path, text.as_bytes()).map_err(io_err(&path))?;
        self.sync();
        Ok(())
    }
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().expect("bug: rule paths have a parent");
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    crate::storage::files::sync_dir(dir)
}

/// `sawmill rules check FILE...`: checks each file; the summary, or every error found.
pub fn check_files(paths: &[PathBuf]) -> Result<String, String> {
    let mut errors = Vec::new();
    let (mut groups, mut rules) = (0, 0);
    for p in paths {
        match std::fs::read_to_string(p) {
            Err(e) => errors.push(format!("{}: {e}", p.display())),
            Ok(text) => match rulefmt::check_text(&p.display().to_string(), &text) {
                Ok(g) => {
                    groups += g.len();
                    rules += g.iter().map(|g| g.rules.len()).sum::<usize>();
                }
                Err(es) => errors.extend(es.iter().map(|e| e.to_string())),
            },
        }
    }
    if errors.is_empty() {
        Ok(format!(
            "{} files ok: {groups} groups, {rules} rules",
            paths.len()
        ))
    } else {
        Err(format!(
            "{} problems found:\n{}",
            errors.len(),
            errors.join("\n")
        ))
    }
}

/// The directory holding the tenants' rule directories: `ruler.rule_path`, else `rules/` in
/// the data directory.
pub fn rule_dir(cfg: &RulerConfig, data_dir: &Path) -> PathBuf {
    if cfg.rule_path.as_os_str().is_empty() {
        data_dir.join(crate::storage::files::RULES_DIR)
    } else {
        cfg.rule_path.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn namespace(ns: &str, ok: bool) {
        assert_eq!(validate_namespace(ns).is_ok(), ok, "{ns:?}");
    }

    #[test]
    fn namespaces_cannot_leave_the_rule_directory() {
        namespace("alerts", true);
        namespace("team a: payments", true);
        namespace("100%", true);
        namespace("", false);
        namespace("..", false);
        namespace(".", false);
        namespace(".hidden", false);
        namespace("../etc", false);
        namespace("a/b", false);
        namespace("a\\b", false);
        namespace("a\0b", false);
        namespace("%2e%2e%2f", false);
        namespace("%2E%2E", false);
        namespace("%252e%252e%252f", false);
        namespace("%25252e%25252e", false);
        namespace("x%2fy", false);
        namespace("%00", false);
    }

    #[test]
    fn the_example_rules_check() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules/fake");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 5, "{files:?}");
        let summary = check_files(&files).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            summary.starts_with("5 files ok: 5 groups, 8 rules"),
            "{summary}"
        );
    }
}
