//! What can be checked of `deploy/` and `config/` without Docker or a cluster: every YAML file
//! parses (multi-document for Kubernetes) and the dashboard JSON too; the Sawmill config inside
//! the compose stack and the Kubernetes ConfigMap, with the environment each sets, is accepted
//! by `sawmill serve --check-config`; the files they reference exist and the Kubernetes objects
//! agree with each other; the Dockerfile has a health check on `/ready`, a non-root user and a
//! data volume; the systemd unit passes `systemd-analyze verify` (and its offline security
//! rating) and the Prometheus and Alertmanager files pass `promtool`/`amtool`, when installed.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, exts, out);
        } else if p.extension().is_some_and(|x| exts.iter().any(|e| x == *e)) {
            out.push(p);
        }
    }
}

/// Every document of a YAML file.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn notice(msg: &str) {
    // Straight to stderr: libtest would capture eprintln! of a passing test.
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// `sawmill serve --check-config` over `yaml` with exactly the environment `env`.
#[track_caller]
fn check_config(what: &str, yaml: &str, env: &BTreeMap<String, String>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sawmill.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(common::BIN)
        .args(["serve", "--check-config", "-c"])
        .arg(&file)
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: sawmill serve --check-config refused it: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[k],
    })
}

fn str_of<'a>(v: &'a Value, path: &str) -> &'a str {
    get(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string in {v:?}"))
}

#[test]
fn every_yaml_and_json_file_parses() {
    let mut yaml = Vec::new();
    files_under(&root().join("deploy"), &["yaml", "yml"], &mut yaml);
    files_under(&root().join("config"), &["yaml", "yml"], &mut yaml);
    assert!(yaml.len() >= 15, "found only {yaml:?}");
    for f in &yaml {
        assert!(!documents(f).is_empty(), "{}: no document", f.display());
    }
    let mut json = Vec::new();
    files_under(&root().join("config"), &["json"], &mut json);
    assert!(!json.is_empty());
    for f in json {
        let text = std::fs::read_to_string(&f).unwrap();
        serde_json::from_str::<serde_json::Value>(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}

#[test]
fn config_files_pass_check_config() {
    for f in [
        "sawmill.yaml",
        "minimal.yaml",
        "bench.yaml",
        "conformance.yaml",
    ] {
        let text = std::fs::read_to_string(root().join("config").join(f)).unwrap();
        check_config(f, &text, &BTreeMap::new());
    }
}

/// The environment a compose service sets (map or list form).
fn compose_env(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap().trim().to_string(),
                };
                (k.as_str().unwrap().to_string(), v)
            })
            .collect(),
        Value::Sequence(s) => s
            .iter()
            .map(|e| {
                let (k, v) = e.as_str().unwrap().split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

#[test]
fn compose_stack_is_consistent() {
    let dir = root().join("deploy/docker");
    let compose = &documents(&dir.join("compose.yaml"))[0];
    let services = compose["services"].as_mapping().unwrap();
    for name in [
        "sawmill",
        "grafana",
        "promtail",
        "alertmanager",
        "prometheus",
    ] {
        assert!(
            services.contains_key(name),
            "compose.yaml has no {name} service"
        );
    }
    // Every bind mount's source exists.
    for (name, svc) in services {
        for m in svc["volumes"].as_sequence().into_iter().flatten() {
            let src = m.as_str().unwrap().split(':').next().unwrap();
            if src.starts_with('.') {
                assert!(
                    dir.join(src).exists(),
                    "service {name:?} mounts {src}, which does not exist"
                );
            }
        }
    }
    let sawmill = &compose["services"]["sawmill"];
    let context = dir.join(str_of(sawmill, "build.context"));
    assert!(context.join(str_of(sawmill, "build.dockerfile")).is_file());
    // The config mounted into the container, with the environment compose gives it.
    let mount = sawmill["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|m| m.contains(":/etc/sawmill/sawmill.yaml"))
        .expect("no config mounted at /etc/sawmill/sawmill.yaml");
    let file = dir.join(mount.split(':').next().unwrap());
    let yaml = std::fs::read_to_string(&file).unwrap();
    let env = compose_env(sawmill);
    assert!(env.keys().any(|k| k.contains("__")), "no override shown");
    check_config("compose sawmill service", &yaml, &env);
    // The port the container listens on is the one published.
    let cfg = &documents(&file)[0];
    let port = get(cfg, "server.http_listen_port").as_u64().unwrap();
    let ports = sawmill["ports"].as_sequence().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| p.as_str().unwrap().ends_with(&format!(":{port}"))),
        "port {port} not published: {ports:?}"
    );
    // Grafana's provisioned data source points at the sawmill service.
    let ds = &documents(&dir.join("grafana/provisioning/datasources/sawmill.yaml"))[0];
    let loki = ds["datasources"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|d| d["type"] == "loki")
        .expect("no loki data source");
    assert_eq!(str_of(loki, "url"), format!("http://sawmill:{port}"));
    // promtail pushes to it.
    let promtail = &documents(&dir.join("promtail.yaml"))[0];
    assert_eq!(
        str_of(promtail, "clients.0.url"),
        format!("http://sawmill:{port}/loki/api/v1/push")
    );
}

#[test]
fn kubernetes_objects_are_consistent() {
    let dir = root().join("deploy/kubernetes");
    let kustomization = &documents(&dir.join("kustomization.yaml"))[0];
    let mut objects = Vec::new();
    for r in kustomization["resources"].as_sequence().unwrap() {
        let f = dir.join(r.as_str().unwrap());
        assert!(f.is_file(), "kustomization lists missing {}", f.display());
        objects.extend(documents(&f));
    }
    let find =
        |kind: &str| -> Vec<&Value> { objects.iter().filter(|o| o["kind"] == kind).collect() };
    let sts = find("StatefulSet");
    assert_eq!(sts.len(), 1);
    let sts = sts[0];
    assert_eq!(get(sts, "spec.replicas").as_u64(), Some(1));
    let pod = get(sts, "spec.template.spec");
    let c = &pod["containers"][0];
    for probe in ["readinessProbe", "livenessProbe"] {
        assert!(c[probe]["httpGet"]["path"].is_string(), "no {probe}");
    }
    assert_eq!(str_of(c, "readinessProbe.httpGet.path"), "/ready");
    for r in ["cpu", "memory"] {
        assert!(!c["resources"]["requests"][r].is_null(), "no {r} request");
    }
    assert_eq!(
        get(pod, "securityContext.runAsNonRoot").as_bool(),
        Some(true)
    );

    // The config: the ConfigMap the pod mounts, at the path the args name, with the pod's env.
    let cm_name = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|v| v["configMap"]["name"].as_str())
        .expect("no ConfigMap volume");
    let cm = find("ConfigMap")
        .into_iter()
        .find(|o| o["metadata"]["name"] == cm_name)
        .unwrap_or_else(|| panic!("ConfigMap {cm_name} not defined"));
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let cfg_path = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    let mount = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| cfg_path.starts_with(m["mountPath"].as_str().unwrap()) && m["name"] != "data")
        .expect("config path not under a mount");
    let key = cfg_path.rsplit('/').next().unwrap();
    let _ = mount;
    let yaml = cm["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap has no key {key}"));
    let env: BTreeMap<String, String> = c["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect();
    check_config("kubernetes ConfigMap", yaml, &env);

    // The data volume is where the config keeps data; the probes use the container's port.
    let cfg: Value = serde_yaml::from_str(yaml).unwrap();
    let data_mount = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "data")
        .unwrap();
    assert_eq!(
        str_of(&cfg, "common.path_prefix"),
        str_of(data_mount, "mountPath")
    );
    assert_eq!(
        str_of(sts, "spec.volumeClaimTemplates.0.metadata.name"),
        "data"
    );
    let port = get(&cfg, "server.http_listen_port").as_u64().unwrap();
    assert_eq!(get(c, "ports.0.containerPort").as_u64(), Some(port));
    let port_name = str_of(c, "ports.0.name");
    assert_eq!(str_of(c, "readinessProbe.httpGet.port"), port_name);

    // The Services select the pod; the ServiceMonitor selects exactly one Service.
    let pod_labels = get(sts, "spec.template.metadata.labels")
        .as_mapping()
        .unwrap();
    let services = find("Service");
    assert!(!services.is_empty());
    for s in &services {
        for (k, v) in get(s, "spec.selector").as_mapping().unwrap() {
            assert_eq!(
                pod_labels.get(k),
                Some(v),
                "service selector {k:?} misses the pod"
            );
        }
    }
    let sm = find("ServiceMonitor");
    assert_eq!(sm.len(), 1);
    let want = get(sm[0], "spec.selector.matchLabels")
        .as_mapping()
        .unwrap();
    let selected: Vec<_> = services
        .iter()
        .filter(|s| {
            let l = get(s, "metadata.labels").as_mapping().unwrap();
            want.iter().all(|(k, v)| l.get(k) == Some(v))
        })
        .collect();
    assert_eq!(
        selected.len(),
        1,
        "ServiceMonitor selects {} services",
        selected.len()
    );
    assert_eq!(str_of(sm[0], "spec.endpoints.0.path"), "/metrics");
    assert_eq!(
        str_of(sm[0], "spec.endpoints.0.port"),
        str_of(selected[0], "spec.ports.0.name")
    );
}

#[test]
fn dockerfile_runs_as_non_root_with_healthcheck_and_volume() {
    let text = std::fs::read_to_string(root().join("deploy/docker/Dockerfile")).unwrap();
    // Instructions of the final stage, continuation lines joined.
    let joined = text.replace("\\\n", " ");
    let last_stage = joined.rsplit("\nFROM ").next().unwrap();
    let instr = |name: &str| -> Vec<&str> {
        last_stage
            .lines()
            .filter_map(|l| l.trim().strip_prefix(name).map(str::trim))
            .collect()
    };
    let health = instr("HEALTHCHECK ");
    assert_eq!(health.len(), 1, "{health:?}");
    assert!(health[0].contains("/ready"), "{}", health[0]);
    let user = instr("USER ");
    assert_eq!(user.len(), 1);
    let uid = user[0].split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "runs as {uid}");
    let minimal = &documents(&root().join("config/minimal.yaml"))[0];
    let data = str_of(minimal, "common.path_prefix");
    assert!(
        instr("VOLUME ").iter().any(|v| v.contains(data)),
        "no VOLUME for {data}"
    );
    let port = get(minimal, "server.http_listen_port").as_u64().unwrap();
    assert_eq!(instr("EXPOSE "), vec![port.to_string().as_str()]);
    // Every file the build copies from the repository exists.
    for l in joined
        .lines()
        .filter_map(|l| l.trim().strip_prefix("COPY "))
    {
        if l.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = l.split_whitespace().collect();
        for src in &parts[..parts.len() - 1] {
            assert!(
                root().join(src).exists(),
                "COPY {src}: not in the repository"
            );
        }
    }
}

#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(root().join("deploy/systemd/sawmill.service")).unwrap();
    for key in [
        "DynamicUser=yes",
        "StateDirectory=sawmill",
        "ProtectSystem=strict",
        "Restart=on-failure",
    ] {
        assert!(unit.lines().any(|l| l == key), "no {key}");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        notice("systemd-analyze not installed: unit not verified");
        return;
    }
    // The unit names the installed binary; verify a copy that names the built one (verify
    // checks that the ExecStart program exists).
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("sawmill.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    std::fs::write(&copy, unit.replace(exec, common::BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify: {text}"
    );
    // The offline security rating (systemd 250 and later); lower is better, 10 is unprotected.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&copy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    match text
        .lines()
        .find_map(|l| l.split("exposure level for sawmill.service: ").nth(1))
    {
        Some(rest) => {
            let score: f64 = rest.split_whitespace().next().unwrap().parse().unwrap();
            assert!(
                score <= 2.0,
                "exposure {score}: the unit lost hardening\n{text}"
            );
        }
        None => notice("systemd-analyze security --offline unsupported: rating skipped"),
    }
}

/// Runs a checker if it is installed; it must succeed.
fn external_check(tool: &str, args: &[&str], file: &Path) {
    match Command::new(tool).args(args).arg(file).output() {
        Err(_) => notice(&format!(
            "{tool} not installed: {} not checked",
            file.display()
        )),
        Ok(out) => assert!(
            out.status.success(),
            "{tool} {args:?} {}: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn prometheus_and_alertmanager_files_pass_their_checkers() {
    let dir = root().join("deploy/docker");
    external_check(
        "promtool",
        &["check", "config"],
        &dir.join("prometheus.yaml"),
    );
    external_check(
        "promtool",
        &["check", "rules"],
        &dir.join("sawmill-alerts.yaml"),
    );
    external_check("amtool", &["check-config"], &dir.join("alertmanager.yaml"));
}

/// Metric names used by the dashboard and the alert rules are ones Sawmill exports.
#[test]
fn dashboard_and_alerts_use_exported_metrics() {
    let known = |name: &str| {
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        [name, base].iter().any(|n| {
            n.strip_prefix("sawmill_")
                .is_some_and(|n| sawmill::telemetry::HELP.iter().any(|(h, _)| *h == n))
                || sawmill::telemetry::LOKI_ALIASES.iter().any(|(_, l)| l == n)
        })
    };
    let metric = regex::Regex::new(r"\b(sawmill|loki)_[a-z_]+").unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("config/dashboards/sawmill.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 15, "{} queries", exprs.len());
    let rules = &documents(&root().join("deploy/docker/sawmill-alerts.yaml"))[0];
    for r in rules["groups"][0]["rules"].as_sequence().unwrap() {
        exprs.push(r["expr"].as_str().unwrap().to_string());
    }
    for e in &exprs {
        for m in metric.find_iter(e) {
            assert!(
                known(m.as_str()),
                "{} is not a metric Sawmill exports: {e}",
                m.as_str()
            );
        }
    }
}
