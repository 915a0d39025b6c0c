//! The ruler against the server process, without peers: Loki's rules API (create, list, get,
//! delete, errors, namespace traversal refused), evaluation (an alert goes pending then firing,
//! its value equals `/loki/api/v1/query` at the rule's evaluation time), Prometheus' JSON
//! views, `/metrics`, alert state restored after a restart, and `sawmill rules check`.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const RULES: &str = r#"groups:
  - name: shop-errors
    interval: 1s
    rules:
      - alert: ShopErrors
        expr: sum by (service) (count_over_time({app="shop"} |= "error" [1h])) > 2
        for: 2s
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.service }} logged {{ $value }} errors"
      - record: shop:lines:count1h
        expr: sum by (service) (count_over_time({app="shop"}[1h]))
"#;

fn config(rule_dir: &Path) -> String {
    format!(
        "ruler:\n  rule_path: {}\n  evaluation_interval: 1s\n  poll_interval: 1s\n",
        rule_dir.display()
    )
}

/// A raw request, so the path reaches the server exactly as written (no client normalizing
/// `%2e%2e`). Returns the status.
fn raw(addr: &str, method: &str, path: &str, body: &str) -> u16 {
    let host = addr.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/yaml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split(' ').nth(1).unwrap().parse().unwrap()
}

fn request(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    try_request(
        method,
        url,
        &[("Content-Type", "application/yaml")],
        body.map(str::as_bytes),
        Duration::from_secs(30),
    )
    .unwrap()
}

/// Polls `f` until it gives `Some`, for at most `limit` (then panics with `what`).
fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < limit, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn json(addr: &str, path: &str) -> Value {
    let (status, body) = get(addr, path, &[]);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn push_errors(addr: &str, n: usize) {
    let now = now_ns();
    let values: Vec<Value> = (0..n)
        .map(|i| {
            serde_json::json!([
                (now - 1_000_000_000 + i as i64).to_string(),
                format!("level=error msg=\"boom {i}\"")
            ])
        })
        .collect();
    let body = serde_json::json!({"streams": [
        {"stream": {"app": "shop", "service": "checkout"}, "values": values},
        {"stream": {"app": "shop", "service": "cart"}, "values": [[now.to_string(), "level=info msg=ok"]]},
    ]});
    let (status, text) = push_json(addr, &body.to_string());
    assert_eq!(status, 204, "{text}");
}

#[test]
fn rules_api_create_list_get_delete() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    let srv = Server::start(&dir.path().join("data"), &config(&rules));
    let a = srv.addr();
    let base = format!("{a}/loki/api/v1/rules");

    let (status, body) = request("GET", &base, None);
    assert_eq!((status, body.trim()), (404, "no rule groups found"));

    let group = "name: g1\ninterval: 1m\nrules:\n  - alert: A\n    expr: sum(count_over_time({app=\"x\"}[5m])) > 1\n    for: 1m\n    labels:\n      severity: page\n";
    let (status, body) = request("POST", &format!("{base}/team-a"), Some(group));
    assert_eq!(status, 202, "{body}");
    let group2 = "name: g2\nrules:\n  - record: x:lines:count5m\n    expr: sum(count_over_time({app=\"x\"}[5m]))\n";
    assert_eq!(
        request("POST", &format!("{base}/team-a"), Some(group2)).0,
        202
    );
    // Stored where the ruler reads rule files, for the default tenant.
    assert!(rules.join("fake").join("team-a.yaml").is_file());

    let (status, body) = request("GET", &base, None);
    assert_eq!(status, 200, "{body}");
    let all: serde_yaml::Value = serde_yaml::from_str(&body).unwrap();
    let names: Vec<&str> = all["team-a"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["g1", "g2"]);
    assert_eq!(all["team-a"][0]["rules"][0]["for"].as_str(), Some("1m"));

    let (status, body) = request("GET", &format!("{base}/team-a/g2"), None);
    assert_eq!(status, 200);
    let g: serde_yaml::Value = serde_yaml::from_str(&body).unwrap();
    assert_eq!(g["rules"][0]["record"].as_str(), Some("x:lines:count5m"));

    // Replacing a group by name keeps one of it.
    let g1b = group.replace("> 1", "> 5");
    assert_eq!(
        request("POST", &format!("{base}/team-a"), Some(&g1b)).0,
        202
    );
    let (_, body) = request("GET", &format!("{base}/team-a"), None);
    assert_eq!(body.matches("name: g1").count(), 1, "{body}");
    assert!(body.contains("> 5"), "{body}");

    // The Prometheus view lists both, once loaded.
    let v = wait_for(Duration::from_secs(30), "two groups loaded", || {
        let v = json(&a, "/prometheus/api/v1/rules");
        (v["data"]["groups"].as_array().unwrap().len() == 2).then_some(v)
    });
    let g1 = &v["data"]["groups"][0];
    assert_eq!(
        (g1["name"].as_str(), g1["file"].as_str()),
        (Some("g1"), Some("team-a"))
    );
    assert_eq!(g1["rules"][0]["type"], "alerting");
    assert_eq!(g1["rules"][0]["duration"], 60.0);
    assert_eq!(g1["rules"][0]["labels"]["severity"], "page");
    let v = json(&a, "/prometheus/api/v1/rules?type=record");
    assert_eq!(v["data"]["groups"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"]["groups"][0]["rules"][0]["type"], "recording");

    // Bad input: 400 naming what is wrong; nothing stored.
    let (status, body) = request(
        "POST",
        &format!("{base}/team-b"),
        Some("name: g\nrules:\n  - alert: A\n    expr: '{app=\"x\"}'\n"),
    );
    assert_eq!(status, 400);
    assert!(
        body.contains("rule 1 (\"A\"): expr: a log query cannot be a rule"),
        "{body}"
    );
    let (status, body) = request("POST", &format!("{base}/team-b"), Some("name: [oops"));
    assert_eq!(status, 400, "{body}");
    let (status, _) = request("POST", &format!("{base}/team-b"), Some(""));
    assert_eq!(status, 400);
    assert!(!rules.join("fake").join("team-b.yaml").exists());

    // Deletes: unknown ones are 404, known ones 202.
    assert_eq!(
        request("DELETE", &format!("{base}/team-a/nope"), None).0,
        404
    );
    assert_eq!(request("DELETE", &format!("{base}/nope"), None).0, 404);
    assert_eq!(request("GET", &format!("{base}/nope"), None).0, 404);
    assert_eq!(request("GET", &format!("{base}/team-a/nope"), None).0, 404);
    assert_eq!(request("DELETE", &format!("{base}/team-a/g1"), None).0, 202);
    assert_eq!(request("GET", &format!("{base}/team-a/g1"), None).0, 404);
    assert_eq!(request("GET", &format!("{base}/team-a/g2"), None).0, 200);
    assert_eq!(request("DELETE", &format!("{base}/team-a"), None).0, 202);
    assert_eq!(request("GET", &base, None).0, 404);
    assert!(!rules.join("fake").join("team-a.yaml").exists());

    // A file an operator wrote as `.yml` is the same namespace to the API.
    let ops = rules.join("fake").join("ops.yml");
    std::fs::write(
        &ops,
        format!("groups:\n  - {}", group.replace('\n', "\n    ")),
    )
    .unwrap();
    let (status, body) = request("GET", &format!("{base}/ops/g1"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(request("DELETE", &format!("{base}/ops"), None).0, 202);
    assert!(!ops.exists());
}

#[test]
fn namespace_traversal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    let srv = Server::start(&dir.path().join("data"), &config(&rules));
    let a = srv.addr();
    let group = "name: g\nrules:\n  - alert: A\n    expr: vector(1)\n";
    for ns in [
        "%2e%2e%2fescaped",
        "..%2fescaped",
        "%2e%2e",
        "%252e%252e%252fescaped",
        "%25252e%25252e%25252fescaped",
        "x%2f..%2f..%2fescaped",
        "%5c..%5cescaped",
        ".hidden",
    ] {
        for method in ["POST", "GET", "DELETE"] {
            let status = raw(&a, method, &format!("/loki/api/v1/rules/{ns}"), group);
            assert_eq!(status, 400, "{method} {ns}");
        }
    }
    // Nothing was written anywhere outside (or inside) the rule directory.
    assert!(!dir.path().join("escaped.yaml").exists());
    assert!(!dir.path().join("rules").join("escaped.yaml").exists());
    assert!(
        !rules.join("fake").exists()
            || std::fs::read_dir(rules.join("fake"))
                .unwrap()
                .next()
                .is_none()
    );
}

fn alert_of(a: &str) -> Option<Value> {
    let v = json(a, "/prometheus/api/v1/alerts");
    v["data"]["alerts"].as_array()?.first().cloned()
}

#[test]
fn alerts_go_pending_then_firing_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(rules.join("fake")).unwrap();
    std::fs::write(rules.join("fake").join("shop.yaml"), RULES).unwrap();
    let mut srv = Server::start(&dir.path().join("data"), &config(&rules));
    let a = srv.addr();

    // Loaded from the file, evaluated, nothing to alert on yet.
    let v = wait_for(Duration::from_secs(30), "a first evaluation", || {
        let v = json(&a, "/prometheus/api/v1/rules");
        let r = v["data"]["groups"][0]["rules"][0].clone();
        (r["health"] == "ok").then_some(v)
    });
    let rule = &v["data"]["groups"][0]["rules"][0];
    assert_eq!(rule["state"], "inactive");
    assert_eq!(rule["alerts"].as_array().unwrap().len(), 0);
    assert_eq!(v["data"]["groups"][0]["interval"], 1.0);

    push_errors(&a, 3);
    let first = wait_for(Duration::from_secs(30), "the alert", || alert_of(&a));
    assert_eq!(first["labels"]["alertname"], "ShopErrors");
    assert_eq!(first["labels"]["service"], "checkout");
    assert_eq!(first["labels"]["severity"], "page");
    assert_eq!(first["annotations"]["summary"], "checkout logged 3 errors");
    assert_eq!(first["value"], "3e+00");
    let firing = wait_for(Duration::from_secs(30), "firing after for: 2s", || {
        alert_of(&a).filter(|x| x["state"] == "firing")
    });
    assert_eq!(
        firing["activeAt"], first["activeAt"],
        "the same alert fires"
    );

    // The rule's value is what the query API answers at the rule's evaluation time.
    let v = json(&a, "/prometheus/api/v1/rules?type=alert");
    let rule = &v["data"]["groups"][0]["rules"][0];
    assert_eq!(rule["state"], "firing");
    let at = rule["lastEvaluation"].as_str().unwrap();
    let (status, body) = get(
        &a,
        "/loki/api/v1/query",
        &[("query", rule["query"].as_str().unwrap()), ("time", at)],
    );
    assert_eq!(status, 200, "{body}");
    let q: Value = serde_json::from_str(&body).unwrap();
    let result = q["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{body}");
    let value: f64 = result[0]["value"][1].as_str().unwrap().parse().unwrap();
    let alert_value: f64 = rule["alerts"][0]["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(value, alert_value);

    // Counted in /metrics.
    assert!(metric(&a, "sawmill_rule_evaluations_total") >= 2.0);
    assert_eq!(metric(&a, "sawmill_rule_evaluation_failures_total"), 0.0);
    assert!(metric(&a, "sawmill_rule_group_duration_seconds_count") >= 1.0);

    // A restart keeps the alert: the same activeAt, already firing.
    srv.restart();
    let a = srv.addr();
    let after = wait_for(Duration::from_secs(30), "the restored alert", || {
        alert_of(&a)
    });
    assert_eq!(after["state"], "firing");
    assert_eq!(after["activeAt"], first["activeAt"]);
}

#[test]
fn rules_check_names_file_group_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, RULES).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["rules", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1 files ok: 1 groups, 2 rules"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        RULES
            .replace("for: 2s", "for: soon")
            .replace("shop:lines:count1h", "shop lines"),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["rules", "check"])
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let f = bad.display();
    assert!(
        err.contains(&format!(
            "{f}: group \"shop-errors\", rule 1 (\"ShopErrors\"): for: invalid duration \"soon\""
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{f}: group \"shop-errors\", rule 2 (\"shop lines\"): record: invalid metric name"
        )),
        "{err}"
    );
    assert!(err.contains("2 problems found"), "{err}");
}

#[test]
fn the_example_rules_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules/fake");
    let rules = dir.path().join("rules");
    let srv = Server::start(&dir.path().join("data"), &config(&rules));
    let a = srv.addr();
    let now = now_ns();
    let body = serde_json::json!({"streams": [
        {"stream": {"service": "payments", "env": "prod"}, "values": [
            [(now - 3_000_000_000i64).to_string(), "level=error msg=\"payment failed\" provider=acme duration_ms=812"],
            [(now - 2_000_000_000i64).to_string(), "level=info msg=ok duration_ms=40"],
            [(now - 1_000_000_000i64).to_string(), "panic: runtime error: index out of range"],
        ]},
    ]});
    assert_eq!(push_json(&a, &body.to_string()).0, 204);
    // The files appear after the lines: the ruler picks them up (poll_interval: 1s) and
    // evaluates new groups at once.
    std::fs::create_dir_all(rules.join("fake")).unwrap();
    for f in std::fs::read_dir(&examples).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, rules.join("fake").join(f.file_name().unwrap())).unwrap();
    }
    // Every example rule is evaluated without an error (nothing is left `unknown`).
    let rules = wait_for(
        Duration::from_secs(60),
        "every example rule evaluated",
        || {
            let v = json(&a, "/prometheus/api/v1/rules");
            let rules: Vec<Value> = v["data"]["groups"]
                .as_array()?
                .iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            (rules.len() == 8 && rules.iter().all(|r| r["health"] != "unknown")).then_some(rules)
        },
    );
    for r in &rules {
        assert_eq!(r["health"], "ok", "{r}");
    }
    // The panic line fires PanicOrOOM at once (no `for`); checkout is silent.
    let v = json(&a, "/prometheus/api/v1/alerts");
    let names: Vec<&str> = v["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["labels"]["alertname"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"PanicOrOOM"), "{v}");
    assert!(names.contains(&"ServiceSilent"), "{v}");
}

#[test]
fn rules_belong_to_their_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    let srv = Server::start(
        &dir.path().join("data"),
        &format!("auth_enabled: true\n{}", config(&rules)),
    );
    let base = format!("{}/loki/api/v1/rules", srv.addr());
    let call = |method: &str, url: &str, tenant: Option<&str>, body: Option<&str>| {
        let mut h = vec![("Content-Type", "application/yaml")];
        if let Some(t) = tenant {
            h.push(("X-Scope-OrgID", t));
        }
        try_request(
            method,
            url,
            &h,
            body.map(str::as_bytes),
            Duration::from_secs(30),
        )
        .unwrap()
        .0
    };
    let group = "name: g\nrules:\n  - alert: A\n    expr: vector(1)\n";
    assert_eq!(call("POST", &format!("{base}/ns"), None, Some(group)), 401);
    assert_eq!(
        call("POST", &format!("{base}/ns"), Some("team-a"), Some(group)),
        202
    );
    assert!(rules.join("team-a").join("ns.yaml").is_file());
    assert_eq!(
        call("GET", &format!("{base}/ns"), Some("team-a"), None),
        200
    );
    assert_eq!(
        call("GET", &format!("{base}/ns"), Some("team-b"), None),
        404
    );
    assert_eq!(call("GET", &base, Some("team-b"), None), 404);
    assert_eq!(
        call("DELETE", &format!("{base}/ns"), Some("team-b"), None),
        404
    );
    // The alert (vector(1), no `for`) fires for team-a only.
    let alerts = |t: &str| {
        let (_, body) = try_request(
            "GET",
            &format!("{}/prometheus/api/v1/alerts", srv.addr()),
            &[("X-Scope-OrgID", t)],
            None,
            Duration::from_secs(30),
        )
        .unwrap();
        serde_json::from_str::<Value>(&body).unwrap()["data"]["alerts"]
            .as_array()
            .unwrap()
            .len()
    };
    wait_for(Duration::from_secs(30), "team-a's alert", || {
        (alerts("team-a") == 1).then_some(())
    });
    assert_eq!(alerts("team-b"), 0);
}

/// Alert templates as Prometheus' and Loki's documentation write them (`if`/`else`, `with`,
/// `range`, comparisons, `printf`, the humanize family, `reReplaceAll`, `$externalLabels`):
/// `rules check` accepts them. Before the one template engine, `gt` was "not defined".
#[test]
fn rules_check_accepts_documented_alert_templates() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules/templating.yaml");
    let out = std::process::Command::new(BIN)
        .args(["rules", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1 files ok: 1 groups, 3 rules"
    );
}
