//! Test harness: the `sawmill` binary started as a process on 127.0.0.1 with an ephemeral port
//! and its own data directory, stopped when dropped; and small HTTP helpers.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sawmill");

pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
    pub data: PathBuf,
    pub config: PathBuf,
    /// Environment for the next (re)start, e.g. `SAWMILL_FAILPOINTS`.
    pub env: Vec<(String, String)>,
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts a server over `data` with `extra_yaml` appended to a config that only sets
    /// `server.log_level: warn` (so rate limits and old-sample rejection are Loki's defaults
    /// unless `extra_yaml` changes them), and waits for `/ready`.
    pub fn start(data: &Path, extra_yaml: &str) -> Server {
        Server::start_within(data, extra_yaml, Duration::from_secs(60))
    }

    /// [`Server::start`] with environment variables (config overrides such as
    /// `SAWMILL_LIMITS_CONFIG__DISCOVER_LOG_LEVELS`) for every start.
    pub fn start_with_env(data: &Path, extra_yaml: &str, env: &[(&str, &str)]) -> Server {
        let mut s = Server::start_within(data, extra_yaml, Duration::from_secs(60));
        s.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s.restart();
        s
    }

    /// [`Server::start`], waiting at most `limit` for `/ready` (past it: panic; Drop kills).
    pub fn start_within(data: &Path, extra_yaml: &str, limit: Duration) -> Server {
        let config = data.with_extension("yaml");
        let mut f = std::fs::File::create(&config).unwrap();
        writeln!(f, "server:\n  log_level: warn").unwrap();
        f.write_all(extra_yaml.as_bytes()).unwrap();
        drop(f);
        let mut s = Server {
            child: None,
            port: 0,
            data: data.to_path_buf(),
            config,
            env: Vec::new(),
        };
        s.restart_within(limit);
        s
    }

    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the process on a new port (stopping it first if it runs) and waits until it
    /// is ready.
    pub fn restart(&mut self) {
        self.restart_within(Duration::from_secs(60));
    }

    /// [`Server::restart`], waiting at most `limit` for `/ready` (past it: panic; Drop kills).
    pub fn restart_within(&mut self, limit: Duration) {
        self.stop(); // a running process is stopped cleanly first, never left behind
                     // The port `free_port` found free may be taken by another test's process before the
                     // server binds it: a server that exits at once is started again on another port.
        for attempt in 1.. {
            self.port = free_port();
            match self.try_spawn(limit) {
                Ok(()) => return,
                Err(status) if attempt < 3 => {
                    eprintln!("sawmill exited before ready ({status}); trying another port");
                }
                Err(status) => panic!("sawmill exited before ready: {status}"),
            }
        }
    }

    /// Stops the process if it runs and starts it again on the same port (for clients that
    /// keep the address, such as a following `sawmill query --tail`).
    pub fn restart_same_port(&mut self) {
        self.stop();
        self.spawn(Duration::from_secs(60));
    }

    fn spawn(&mut self, limit: Duration) {
        if let Err(status) = self.try_spawn(limit) {
            panic!("sawmill exited before ready: {status}");
        }
    }

    /// Starts the process and waits until it is ready; `Err` when it exited first.
    fn try_spawn(&mut self, limit: Duration) -> Result<(), std::process::ExitStatus> {
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .args([
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--data-dir",
            ])
            .arg(&self.data)
            // Loki's service-name and level discovery add a label and metadata to every
            // stream; the tests written before it compare label sets exactly, so they run
            // without it. Tests of discovery set these variables again in `env`.
            .env("SAWMILL_LIMITS_CONFIG__DISCOVER_SERVICE_NAME", "[]")
            .env("SAWMILL_LIMITS_CONFIG__DISCOVER_LOG_LEVELS", "false")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sawmill");
        self.child = Some(child);
        self.ready_or_exit(limit)
    }

    pub fn wait_ready(&mut self, limit: Duration) {
        if let Err(status) = self.ready_or_exit(limit) {
            panic!("sawmill exited before ready: {status}");
        }
    }

    /// Waits until the server is ready (`Ok`) or its process has exited (`Err`).
    fn ready_or_exit(&mut self, limit: Duration) -> Result<(), std::process::ExitStatus> {
        let started = Instant::now();
        loop {
            if let Ok(r) = ureq::get(&format!("{}/ready", self.addr()))
                .timeout(Duration::from_secs(2))
                .call()
            {
                if r.status() == 200 {
                    return Ok(());
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    return Err(status);
                }
            }
            assert!(
                started.elapsed() < limit,
                "sawmill not ready after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Replaces the config file (takes effect at the next restart or reload).
    pub fn write_config(&self, extra_yaml: &str) {
        std::fs::write(
            &self.config,
            format!("server:\n  log_level: warn\n{extra_yaml}"),
        )
        .unwrap();
    }

    /// Waits for the process to exit by itself (a failpoint); true if it did within `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    self.child = None;
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGKILL, no chance to flush.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_sigterm(c.id());
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Now in Unix nanoseconds.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// POSTs a body; returns status and body text (errors included).
pub fn post(url: &str, content_type: &str, encoding: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut req = ureq::post(url)
        .timeout(Duration::from_secs(30))
        .set("Content-Type", content_type);
    if let Some(e) = encoding {
        req = req.set("Content-Encoding", e);
    }
    match req.send_bytes(body) {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("request to {url} failed: {e}"),
    }
}

pub fn push_json(addr: &str, body: &str) -> (u16, String) {
    post(
        &format!("{addr}/loki/api/v1/push"),
        "application/json",
        None,
        body.as_bytes(),
    )
}

/// GET with query parameters; returns status and body.
pub fn get(addr: &str, path: &str, params: &[(&str, &str)]) -> (u16, String) {
    let mut req = ureq::get(&format!("{addr}{path}")).timeout(Duration::from_secs(60));
    for (k, v) in params {
        req = req.query(k, v);
    }
    match req.call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("request to {path} failed: {e}"),
    }
}

/// Every (labels JSON, ts, line) a log query returns, sorted.
pub fn query_entries(
    addr: &str,
    query: &str,
    start: i64,
    end: i64,
    limit: usize,
) -> Vec<(String, i64, String)> {
    let (status, body) = get(
        addr,
        "/loki/api/v1/query_range",
        &[
            ("query", query),
            ("start", &start.to_string()),
            ("end", &end.to_string()),
            ("limit", &limit.to_string()),
            ("direction", "forward"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut out = Vec::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let labels = s["stream"].to_string();
        for e in s["values"].as_array().unwrap() {
            out.push((
                labels.clone(),
                e[0].as_str().unwrap().parse().unwrap(),
                e[1].as_str().unwrap().to_string(),
            ));
        }
    }
    out.sort();
    out
}

/// A request that never panics on a transport error (a killed server, a reset connection) and
/// reads bodies of any size (ureq's `into_string` stops at 10 MB). `Err` carries the error text.
pub fn try_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let mut req = ureq::request(method, url).timeout(timeout);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let res = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.to_string()),
    };
    let status = resp.status();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut resp.into_reader(), &mut text).map_err(|e| e.to_string())?;
    Ok((status, text))
}

/// POSTs a push body with extra headers; panics only if the server cannot be reached.
pub fn push_with(addr: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let url = format!("{addr}/loki/api/v1/push");
    try_request("POST", &url, headers, Some(body), Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("push to {url} failed: {e}"))
}

/// (labels JSON, ts, line) of a returned entry.
pub type Entry = (String, i64, String);

/// Every (labels JSON, ts, line) a log query returns, sorted, with no limit on the response
/// size; `headers` carries e.g. `X-Scope-OrgID`.
pub fn query_all(
    addr: &str,
    headers: &[(&str, &str)],
    query: &str,
    start: i64,
    end: i64,
) -> Result<Vec<Entry>, (u16, String)> {
    let url = format!(
        "{addr}/loki/api/v1/query_range?{}",
        serde_urlencoded::to_string([
            ("query", query),
            ("start", &start.to_string()),
            ("end", &end.to_string()),
            ("limit", "1000000"),
            ("direction", "forward"),
        ])
        .unwrap()
    );
    let (status, body) = try_request("GET", &url, headers, None, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("query {query} failed: {e}"));
    if status != 200 {
        return Err((status, body));
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut out = Vec::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let labels = s["stream"].to_string();
        for e in s["values"].as_array().unwrap() {
            out.push((
                labels.clone(),
                e[0].as_str().unwrap().parse().unwrap(),
                e[1].as_str().unwrap().to_string(),
            ));
        }
    }
    out.sort();
    Ok(out)
}

/// The sum of every sample of a counter or gauge in `/metrics` (0 when absent).
pub fn metric(addr: &str, name: &str) -> f64 {
    let (status, text) = get(addr, "/metrics", &[]);
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A field of `/proc/<pid>/status` in kB (`VmRSS`, `VmHWM`).
pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A small deterministic PRNG (splitmix64), so failures replay with the same seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// A seed from `SAWMILL_TEST_SEED`, else `default`; printed so a failure can be replayed.
pub fn seed(default: u64) -> u64 {
    let s = std::env::var("SAWMILL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    eprintln!("seed {s} (set SAWMILL_TEST_SEED to replay)");
    s
}

/// Files under `dir` whose name ends with `.{ext}`, sorted.
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// The segment files of one tenant (`fake` when auth is off), sorted by sequence number.
pub fn segment_files(data: &Path, tenant: &str) -> Vec<PathBuf> {
    let hex: String = tenant.bytes().map(|b| format!("{b:02x}")).collect();
    files_with_ext(
        &data
            .join("tenants")
            .join(format!("t-{hex}"))
            .join("segments"),
        "seg",
    )
}

/// The WAL files, sorted by sequence number.
pub fn wal_files(data: &Path) -> Vec<PathBuf> {
    files_with_ext(&data.join("wal"), "wal")
}

/// An S3 server for the object-storage tests: moto's server mode, started on a free port and
/// killed when dropped. Found as `$SAWMILL_MOTO_SERVER` or `moto_server` on the PATH; without
/// it the tests skip, unless `SAWMILL_REQUIRE_S3=1` (CI) makes them fail.
pub struct S3Server {
    child: Child,
    pub port: u16,
}

impl S3Server {
    pub fn start() -> Option<S3Server> {
        let bin = std::env::var("SAWMILL_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = free_port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var("SAWMILL_REQUIRE_S3").as_deref() != Ok("1"),
                    "SAWMILL_REQUIRE_S3=1 but {bin} cannot start: {e}"
                );
                eprintln!("skipped: no S3 server ({bin}: {e}); install moto[server]");
                return None;
            }
        };
        let s = S3Server { child, port };
        let started = Instant::now();
        while ureq::get(&format!("{}/", s.endpoint()))
            .timeout(Duration::from_secs(1))
            .call()
            .is_err()
        {
            assert!(started.elapsed() < Duration::from_secs(30), "moto not up");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(s)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto takes unsigned requests).
    pub fn create_bucket(&self, name: &str) {
        let r = ureq::put(&format!("{}/{name}", self.endpoint()))
            .set("Authorization", FAKE_SIGNATURE)
            .call();
        assert!(r.is_ok(), "create bucket {name}: {r:?}");
    }

    /// The body of an object. moto checks that a request is signed, not the signature.
    pub fn get(&self, bucket: &str, key: &str) -> String {
        ureq::get(&format!("{}/{bucket}/{key}", self.endpoint()))
            .set("Authorization", FAKE_SIGNATURE)
            .call()
            .unwrap_or_else(|e| panic!("GET {bucket}/{key}: {e}"))
            .into_string()
            .unwrap()
    }

    /// The keys under `prefix` in `bucket`, sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = ureq::get(&format!("{}/{bucket}", self.endpoint()))
                .set("Authorization", FAKE_SIGNATURE)
                .query("list-type", "2")
                .query("prefix", prefix);
            if let Some(t) = &token {
                req = req.query("continuation-token", t);
            }
            let body = req.call().unwrap().into_string().unwrap();
            out.extend(xml_values(&body, "Key"));
            token = xml_values(&body, "NextContinuationToken")
                .into_iter()
                .next();
            if token.is_none() {
                break;
            }
        }
        out.sort();
        out
    }

    /// The YAML of `common.storage` (and this node's `instance_id`) for a server using `bucket`.
    pub fn config(&self, bucket: &str, instance: &str) -> String {
        format!(
            "common:\n  storage:\n    s3:\n      endpoint: {}\n      bucketnames: {bucket}\n      region: us-east-1\n      access_key_id: test\n      secret_access_key: test\n      s3forcepathstyle: true\n      insecure: true\n  ring:\n    instance_id: {instance}\n",
            self.endpoint()
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const FAKE_SIGNATURE: &str = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

fn xml_values(body: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    body.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split(&close).next())
        .map(str::to_string)
        .collect()
}
