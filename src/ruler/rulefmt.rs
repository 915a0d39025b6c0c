//! Rule files in Prometheus' format with LogQL in `expr`: `groups:` of `name`, `interval`,
//! `limit` and `rules`, each rule either `alert` (with `for`, `keep_firing_for`, `labels`,
//! `annotations`) or `record` (with `labels`). [`RuleFile`] is the YAML as written (and as the
//! rules API returns it); [`check_file`] turns it into [`GroupSpec`]s, or into every error found,
//! each naming the file, group and rule.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use std::sync::Arc;

use crate::logql::{self, Expr, SampleExpr};
use crate::template::Template;

/// One problem of a rule file, with where it is.
#[derive(Debug, Error, PartialEq)]
pub enum RuleError {
    #[error("{file}: {msg}")]
    File { file: String, msg: String },
    #[error("{file}: group {group:?}: {msg}")]
    Group {
        file: String,
        group: String,
        msg: String,
    },
    #[error("{file}: group {group:?}, rule {index} ({name:?}): {msg}")]
    Rule {
        file: String,
        group: String,
        /// 1-based position in the group.
        index: usize,
        name: String,
        msg: String,
    },
}

/// A rule file: `groups: [...]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleGroup {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: usize,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    #[serde(default)]
    pub expr: String,
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A checked group, ready to evaluate.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    pub name: String,
    /// `None`: the ruler's `evaluation_interval`.
    pub interval: Option<Duration>,
    pub limit: usize,
    pub rules: Vec<RuleSpec>,
    /// The group as written, for the API.
    pub source: RuleGroup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Alerting,
    Recording,
}

#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub kind: RuleKind,
    /// The alert name or the recorded metric name.
    pub name: String,
    pub query: String,
    pub expr: SampleExpr,
    pub hold: Duration,
    pub keep_firing_for: Duration,
    /// Label name, value as written, parsed template.
    pub labels: Vec<(String, String, Arc<Template>)>,
    pub annotations: Vec<(String, String, Arc<Template>)>,
}

impl RuleSpec {
    /// Two rules are the same rule across a reload when this is equal (their alerts carry over).
    pub fn identity(&self) -> String {
        let labels: Vec<_> = self.labels.iter().map(|(k, v, _)| (k, v)).collect();
        format!("{:?}|{}|{}|{labels:?}", self.kind, self.name, self.query)
    }
}

/// Parses a rule file's YAML; `file` names it in errors.
pub fn parse_file(file: &str, text: &str) -> Result<RuleFile, RuleError> {
    if text.trim().is_empty() {
        return Ok(RuleFile::default());
    }
    // serde_yaml's messages name the key path and the line: `groups[0]: unknown field ...`.
    serde_yaml::from_str(text).map_err(|e| RuleError::File {
        file: file.to_string(),
        msg: e.to_string(),
    })
}

/// Parses one group's YAML (the body of `POST /loki/api/v1/rules/{namespace}`).
pub fn parse_group(file: &str, text: &str) -> Result<RuleGroup, RuleError> {
    serde_yaml::from_str(text).map_err(|e| RuleError::File {
        file: file.to_string(),
        msg: format!("invalid rule group: {e}"),
    })
}

/// Parses and checks a whole file.
pub fn check_text(file: &str, text: &str) -> Result<Vec<GroupSpec>, Vec<RuleError>> {
    let f = parse_file(file, text).map_err(|e| vec![e])?;
    check_file(file, &f)
}

/// Checks every group of a file; all problems are reported, not only the first.
pub fn check_file(file: &str, f: &RuleFile) -> Result<Vec<GroupSpec>, Vec<RuleError>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for g in &f.groups {
        if !seen.insert(g.name.as_str()) {
            errors.push(RuleError::Group {
                file: file.into(),
                group: g.name.clone(),
                msg: "the group name is repeated in the same file: group names must be unique"
                    .into(),
            });
        }
        match check_group(file, g) {
            Ok(spec) => out.push(spec),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}

/// Prometheus' metric name syntax.
pub fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Prometheus' label name syntax.
pub fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks one group.
pub fn check_group(file: &str, g: &RuleGroup) -> Result<GroupSpec, Vec<RuleError>> {
    let mut errors = Vec::new();
    let group_err = |msg: String| RuleError::Group {
        file: file.into(),
        group: g.name.clone(),
        msg,
    };
    if g.name.trim().is_empty() {
        errors.push(group_err("the group name must not be empty".into()));
    }
    let interval = match g.interval.as_deref() {
        None => None,
        Some(s) => match duration(s) {
            Ok(d) if d.is_zero() => {
                errors.push(group_err("interval: must be more than 0s".into()));
                None
            }
            Ok(d) => Some(d),
            Err(m) => {
                errors.push(group_err(format!("interval: {m}")));
                None
            }
        },
    };
    if g.rules.is_empty() {
        errors.push(group_err(
            "no rules: a group needs at least one rule".into(),
        ));
    }
    let mut rules = Vec::new();
    for (i, r) in g.rules.iter().enumerate() {
        match check_rule(r) {
            Ok(spec) => rules.push(spec),
            Err(msgs) => errors.extend(msgs.into_iter().map(|msg| RuleError::Rule {
                file: file.into(),
                group: g.name.clone(),
                index: i + 1,
                name: r.alert.clone().or(r.record.clone()).unwrap_or_default(),
                msg,
            })),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(GroupSpec {
        name: g.name.clone(),
        interval,
        limit: g.limit,
        rules,
        source: g.clone(),
    })
}

fn templates(
    what: &str,
    m: &BTreeMap<String, String>,
    errors: &mut Vec<String>,
) -> Vec<(String, String, Arc<Template>)> {
    let mut out = Vec::new();
    for (k, v) in m {
        if !valid_label_name(k) {
            errors.push(format!(
                "{what}: invalid name {k:?}: use letters, digits and _ (not first a digit)"
            ));
        }
        match Template::parse_alert(v) {
            Ok(t) => out.push((k.clone(), v.clone(), Arc::new(t))),
            Err(e) => errors.push(format!("{what}.{k}: {e}")),
        }
    }
    out
}

fn check_rule(r: &Rule) -> Result<RuleSpec, Vec<String>> {
    let mut errors = Vec::new();
    let (kind, name) = match (&r.alert, &r.record) {
        (Some(a), None) => (RuleKind::Alerting, a.clone()),
        (None, Some(rec)) => (RuleKind::Recording, rec.clone()),
        (Some(_), Some(_)) => {
            return Err(vec!["only one of 'record' and 'alert' may be set".into()])
        }
        (None, None) => return Err(vec!["one of 'record' or 'alert' must be set".into()]),
    };
    if name.trim().is_empty() {
        errors.push(format!(
            "the {} name must not be empty",
            if kind == RuleKind::Alerting {
                "alert"
            } else {
                "record"
            }
        ));
    }
    if kind == RuleKind::Recording && !valid_metric_name(&name) {
        errors.push(format!(
            "record: invalid metric name {name:?}: use letters, digits, _ and : (e.g. service:errors:rate5m)"
        ));
    }
    let mut expr = None;
    if r.expr.trim().is_empty() {
        errors.push("expr: must be set to a LogQL metric query".into());
    } else {
        match logql::parse_expr(&r.expr) {
            Ok(Expr::Sample(s)) => expr = Some(s),
            Ok(Expr::Log(_)) => errors.push(
                "expr: a log query cannot be a rule: use a metric query such as sum(count_over_time({app=\"x\"} |= \"error\" [5m]))"
                    .into(),
            ),
            Err(e) => errors.push(format!("expr: {e}")),
        }
    }
    let mut dur = |key: &str, v: &Option<String>| -> Duration {
        let Some(s) = v else { return Duration::ZERO };
        if kind == RuleKind::Recording {
            errors.push(format!("{key}: only alerting rules have it"));
            return Duration::ZERO;
        }
        duration(s).unwrap_or_else(|m| {
            errors.push(format!("{key}: {m}"));
            Duration::ZERO
        })
    };
    let hold = dur("for", &r.for_);
    let keep_firing_for = dur("keep_firing_for", &r.keep_firing_for);
    if kind == RuleKind::Recording && !r.annotations.is_empty() {
        errors.push("annotations: only alerting rules have them".into());
    }
    let labels = templates("labels", &r.labels, &mut errors);
    let annotations = templates("annotations", &r.annotations, &mut errors);
    if labels.iter().any(|(k, _, _)| k == "__name__") {
        errors.push("labels: __name__ cannot be set by a rule".into());
    }
    match (errors.is_empty(), expr) {
        (true, Some(expr)) => Ok(RuleSpec {
            kind,
            name,
            query: r.expr.trim().to_string(),
            expr,
            hold,
            keep_firing_for,
            labels,
            annotations,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn errors(yaml: &str, want: &[&str]) {
        let got: Vec<String> = match check_text("rules.yaml", yaml) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        };
        assert_eq!(got.len(), want.len(), "{got:#?}");
        for (g, w) in got.iter().zip(want) {
            assert!(g.contains(w), "{g:?} should contain {w:?}");
        }
    }

    const OK: &str = r#"
groups:
  - name: errors
    interval: 30s
    limit: 5
    rules:
      - alert: HighErrorRate
        expr: sum by (service) (rate({app="api"} |= "error" [5m])) > 1
        for: 2m
        keep_firing_for: 1m
        labels: {severity: page}
        annotations: {summary: "{{ $labels.service }}: {{ humanize $value }}/s"}
      - record: service:errors:rate5m
        expr: sum by (service) (rate({app="api"} |= "error" [5m]))
"#;

    #[test]
    fn a_good_file_checks() {
        let g = check_text("rules.yaml", OK).unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].interval, Some(Duration::from_secs(30)));
        assert_eq!(g[0].limit, 5);
        assert_eq!(g[0].rules[0].kind, RuleKind::Alerting);
        assert_eq!(g[0].rules[0].hold, Duration::from_secs(120));
        assert_eq!(g[0].rules[0].keep_firing_for, Duration::from_secs(60));
        assert_eq!(g[0].rules[1].kind, RuleKind::Recording);
        // What the API writes back reads the same.
        let f = parse_file("x", OK).unwrap();
        let again = parse_file("x", &serde_yaml::to_string(&f).unwrap()).unwrap();
        assert_eq!(f, again);
    }

    #[test]
    fn errors_name_file_group_rule_and_problem() {
        errors("groups: [{name: g, rules: [{alert: A, expr: 'count_over_time({a=\"b\"}[1m]', for: 1m}]}]",
            &["rules.yaml: group \"g\", rule 1 (\"A\"): expr: "]);
        errors(
            "groups: [{name: g, rules: [{alert: A, expr: '{a=\"b\"}'}]}]",
            &["rule 1 (\"A\"): expr: a log query cannot be a rule"],
        );
        errors("groups: [{name: g, rules: [{record: 'bad name', expr: 'count_over_time({a=\"b\"}[1m])'}]}]",
            &["rule 1 (\"bad name\"): record: invalid metric name"]);
        errors("groups: [{name: g, rules: [{record: r, expr: 'count_over_time({a=\"b\"}[1m])', for: 1m}]}]",
            &["rule 1 (\"r\"): for: only alerting rules have it"]);
        errors(
            "groups: [{name: g, rules: [{alert: A, record: r, expr: 'vector(1)'}]}]",
            &["only one of 'record' and 'alert' may be set"],
        );
        errors(
            "groups: [{name: g, rules: [{expr: 'vector(1)'}]}]",
            &["group \"g\", rule 1 (\"\"): one of 'record' or 'alert' must be set"],
        );
        errors(
            "groups: [{name: g, rules: [{alert: A, expr: 'vector(1)', for: 5x}]}]",
            &["rule 1 (\"A\"): for: invalid duration \"5x\""],
        );
        errors("groups: [{name: g, rules: [{alert: A, expr: 'vector(1)', annotations: {s: '{{ $labels.a '}}]}]",
            &["rule 1 (\"A\"): annotations.s: template: parse error at byte 13: unclosed action"]);
        errors(
            "groups: [{name: g, rules: [{alert: A, expr: 'vector(1)', labels: {'a-b': x}}]}]",
            &["labels: invalid name \"a-b\""],
        );
        errors(
            "groups: [{name: g, interval: 0s, rules: [{alert: A, expr: 'vector(1)'}]}]",
            &["rules.yaml: group \"g\": interval: must be more than 0s"],
        );
        errors(
            "groups: [{name: '', rules: [{alert: A, expr: 'vector(1)'}]}]",
            &["group \"\": the group name must not be empty"],
        );
        errors("groups: [{name: g, rules: [{alert: A, expr: 'vector(1)'}]}, {name: g, rules: [{alert: B, expr: 'vector(1)'}]}]",
            &["group \"g\": the group name is repeated"]);
        errors("groups: [{name: g, rules: []}]", &["group \"g\": no rules"]);
        errors(
            "groups: [{name: g, rulez: []}]",
            &["rules.yaml: groups[0]: unknown field `rulez`"],
        );
        errors("groups: [{name: g, rules: [{alert: A, expr: 'vector(1)', for: 5x}, {record: 'a b', expr: ''}]}]",
            &["rule 1 (\"A\"): for:", "rule 2 (\"a b\"): record: invalid metric name", "rule 2 (\"a b\"): expr: must be set"]);
    }
}
