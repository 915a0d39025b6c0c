//! The ruler with real peers: Debian's `prometheus-alertmanager` and `prometheus` started on
//! loopback ports. Error lines pushed into Sawmill cross a rule's threshold; the alert shows
//! up in Alertmanager's API (labels and annotations as the rule makes them) after `for`, and
//! is resolved there once the lines stop; a recording rule's series and `ALERTS` are queryable
//! in Prometheus (remote write). Skipped with a notice when the binaries are missing, unless
//! `SAWMILL_REQUIRE_PEERS=1` (CI), which makes their absence a failure.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const ALERTMANAGER: &str = "prometheus-alertmanager";
const PROMETHEUS: &str = "prometheus";

/// A peer process, killed when dropped.
struct Peer {
    child: Child,
    name: &'static str,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

/// The peers' binaries, or `None` (after a notice) when absent and not required.
fn peers() -> Option<(PathBuf, PathBuf)> {
    match (find(ALERTMANAGER), find(PROMETHEUS)) {
        (Some(am), Some(prom)) => Some((am, prom)),
        _ => {
            let required = std::env::var("SAWMILL_REQUIRE_PEERS").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "SAWMILL_REQUIRE_PEERS=1 but {ALERTMANAGER} or {PROMETHEUS} is not on PATH: apt-get install -y prometheus prometheus-alertmanager"
            );
            // Straight to stderr, past the test harness' capture, so the skip is seen.
            let _ = writeln!(
                std::io::stderr(),
                "NOTICE: skipping the ruler peer tests: {ALERTMANAGER} and {PROMETHEUS} are not installed (apt-get install -y prometheus prometheus-alertmanager)"
            );
            None
        }
    }
}

fn start_peer(name: &'static str, bin: &Path, args: &[String], ready_url: &str) -> Peer {
    let child = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let mut peer = Peer { child, name };
    wait_for(Duration::from_secs(60), &format!("{name} ready"), || {
        if let Ok(Some(status)) = peer.child.try_wait() {
            panic!("{} exited before ready: {status}", peer.name);
        }
        let r = try_request("GET", ready_url, &[], None, Duration::from_secs(2)).ok()?;
        (r.0 == 200).then_some(())
    });
    peer
}

fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < limit, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn get_json(url: &str) -> Option<Value> {
    let (status, body) = try_request("GET", url, &[], None, Duration::from_secs(10)).ok()?;
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

const RULES: &str = r#"groups:
  - name: shop
    interval: 1s
    rules:
      - alert: CheckoutErrors
        expr: sum by (service) (count_over_time({app="shop"} |= "error" [3s])) > 0
        for: 2s
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.service }} is logging errors"
          value: "{{ humanize $value }}"
          details: '{{ if gt $value 0.0 }}errors{{ else }}quiet{{ end }}: {{ printf "%.2f" $value }} in {{ humanizeDuration 3725.0 }}; {{ range $k, $v := $labels }}{{ $k }}={{ $v }} {{ end }}'
      - record: shop:lines:count1m
        expr: sum by (service) (count_over_time({app="shop"}[1m]))
"#;

fn push_error(addr: &str) {
    let body = serde_json::json!({"streams": [{"stream": {"app": "shop", "service": "checkout"},
        "values": [[now_ns().to_string(), "level=error msg=\"card declined\""]]}]});
    let (status, text) = push_json(addr, &body.to_string());
    assert_eq!(status, 204, "{text}");
}

/// Alertmanager's alerts named `CheckoutErrors` (resolved ones are not listed).
fn am_alerts(am: &str) -> Vec<Value> {
    get_json(&format!("{am}/api/v2/alerts"))
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == "CheckoutErrors")
        .collect()
}

#[test]
fn alerts_reach_alertmanager_and_recordings_reach_prometheus() {
    let Some((am_bin, prom_bin)) = peers() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let am_port = free_port();
    std::fs::write(
        d.join("alertmanager.yml"),
        "route:\n  receiver: 'null'\n  group_wait: 0s\nreceivers:\n  - name: 'null'\n",
    )
    .unwrap();
    let am = format!("http://127.0.0.1:{am_port}");
    let _am = start_peer(
        "alertmanager",
        &am_bin,
        &[
            format!("--config.file={}", d.join("alertmanager.yml").display()),
            format!("--storage.path={}", d.join("am-data").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".into(),
        ],
        &format!("{am}/-/ready"),
    );

    let prom_port = free_port();
    std::fs::write(d.join("prometheus.yml"), "global:\n  scrape_interval: 1m\n").unwrap();
    let prom = format!("http://127.0.0.1:{prom_port}");
    let _prom = start_peer(
        "prometheus",
        &prom_bin,
        &[
            format!("--config.file={}", d.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", d.join("prom-data").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
            "--web.enable-remote-write-receiver".into(),
        ],
        &format!("{prom}/-/ready"),
    );

    let rules = d.join("rules");
    std::fs::create_dir_all(rules.join("fake")).unwrap();
    std::fs::write(rules.join("fake").join("shop.yaml"), RULES).unwrap();
    let srv = Server::start(
        &d.join("data"),
        &format!(
            "ruler:\n  rule_path: {}\n  evaluation_interval: 1s\n  alertmanager_url: {am}\n  resend_delay: 1s\n  remote_write:\n    enabled: true\n    client:\n      url: {prom}/api/v1/write\n",
            rules.display()
        ),
    );
    let a = srv.addr();

    // Error lines keep coming until Alertmanager lists the alert (after `for: 2s`).
    let alert = wait_for(Duration::from_secs(40), "the alert in Alertmanager", || {
        push_error(&a);
        am_alerts(&am).into_iter().next()
    });
    assert_eq!(alert["labels"]["service"], "checkout");
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(
        alert["annotations"]["summary"],
        "checkout is logging errors"
    );
    assert!(
        alert["annotations"]["value"]
            .as_str()
            .is_some_and(|v| v.parse::<f64>().is_ok_and(|n| n >= 1.0)),
        "{alert}"
    );
    // Go's text/template with Prometheus' functions, as Prometheus renders it: the branch taken,
    // the value with two decimals, the duration humanized, the series labels in key order.
    let details = alert["annotations"]["details"].as_str().unwrap_or_default();
    let (head, tail) = details.split_once(" in ").unwrap_or(("", ""));
    let value = head.strip_prefix("errors: ").unwrap_or("");
    assert!(
        value.parse::<f64>().is_ok_and(|v| v >= 1.0)
            && value.split_once('.').is_some_and(|(_, d)| d.len() == 2),
        "{details}"
    );
    assert_eq!(tail, "1h 2m 5s; service=checkout ", "{details}");
    assert_eq!(alert["status"]["state"], "active");
    assert!(
        alert["generatorURL"]
            .as_str()
            .is_some_and(|u| u.contains("/loki/api/v1/query?query=")),
        "{alert}"
    );
    // Sawmill had it firing, not pending, when it was sent.
    let v = get_json(&format!("{a}/prometheus/api/v1/alerts")).unwrap();
    assert!(
        v["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["labels"]["alertname"] == "CheckoutErrors" && x["state"] == "firing"),
        "{v}"
    );

    // The lines stop: after the 3s window the rule's result is empty and the alert is resolved
    // in Alertmanager.
    wait_for(
        Duration::from_secs(40),
        "the alert resolved in Alertmanager",
        || am_alerts(&am).is_empty().then_some(()),
    );
    assert!(metric(&a, "sawmill_notifications_sent_total") >= 2.0);
    assert_eq!(metric(&a, "sawmill_notifications_errors_total"), 0.0);

    // The recording rule's series (and the alert's ALERTS series) are in Prometheus.
    let series = wait_for(
        Duration::from_secs(40),
        "shop:lines:count1m in Prometheus",
        || {
            let v = get_json(&format!("{prom}/api/v1/query?query=shop:lines:count1m"))?;
            v["data"]["result"]
                .as_array()
                .filter(|r| !r.is_empty())
                .cloned()
        },
    );
    assert_eq!(series[0]["metric"]["service"], "checkout");
    let n: f64 = series[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(n >= 1.0, "{series:?}");
    let alerts = wait_for(Duration::from_secs(20), "ALERTS in Prometheus", || {
        let v = get_json(&format!(
            "{prom}/api/v1/query?query=ALERTS%7Balertname%3D%22CheckoutErrors%22%7D%5B5m%5D"
        ))?;
        v["data"]["result"]
            .as_array()
            .filter(|r| !r.is_empty())
            .cloned()
    });
    assert!(
        alerts.iter().any(|s| s["metric"]["alertstate"] == "firing"),
        "{alerts:?}"
    );
    assert!(metric(&a, "sawmill_remote_write_samples_total") >= 1.0);
}

#[test]
fn alertmanager_down_is_retried_until_it_is_up() {
    let Some((am_bin, _)) = peers() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let am_port = free_port();
    let am = format!("http://127.0.0.1:{am_port}");
    let rules = d.join("rules");
    std::fs::create_dir_all(rules.join("fake")).unwrap();
    std::fs::write(
        rules.join("fake").join("always.yaml"),
        "groups:\n  - name: always\n    interval: 1s\n    rules:\n      - alert: AlwaysOn\n        expr: vector(1)\n",
    )
    .unwrap();
    // A long resend delay: only the retries of the first notification can deliver it.
    let srv = Server::start(
        &d.join("data"),
        &format!(
            "ruler:\n  rule_path: {}\n  alertmanager_url: {am}\n  resend_delay: 1h\n",
            rules.display()
        ),
    );
    let a = srv.addr();
    wait_for(Duration::from_secs(30), "a failed notification", || {
        (metric(&a, "sawmill_notifications_errors_total") >= 1.0).then_some(())
    });
    std::fs::write(
        d.join("alertmanager.yml"),
        "route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n",
    )
    .unwrap();
    let _am = start_peer(
        "alertmanager",
        &am_bin,
        &[
            format!("--config.file={}", d.join("alertmanager.yml").display()),
            format!("--storage.path={}", d.join("am-data").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".into(),
        ],
        &format!("{am}/-/ready"),
    );
    wait_for(
        Duration::from_secs(40),
        "the retried alert in Alertmanager",
        || {
            get_json(&format!("{am}/api/v2/alerts"))?
                .as_array()?
                .iter()
                .any(|x| x["labels"]["alertname"] == "AlwaysOn")
                .then_some(())
        },
    );
    assert!(metric(&a, "sawmill_notifications_sent_total") >= 1.0);
}
