//! Load generators, one file per benchmark: `sawmill bench push` (push throughput and latency
//! against a running server), `bench tail` (live tail latency, also against a running server),
//! `bench query` (query latency over generated data, in-process) and `bench index` (the search
//! index's cost and gain, in-process). This file holds their arguments and what they share: the
//! generated streams and line vocabulary, the time span, and the in-process store.
//! `workload.rs` generates the `--shape microservices` data of `bench push` and `bench query`
//! (requests sharing request, trace and user IDs); `query_http.rs` times queries over it
//! through HTTP, fresh and after `POST /flush`.

mod index;
mod push;
mod query;
mod query_http;
mod soak;
mod tail;
mod workload;

pub use index::index;
pub use push::push;
pub use query::query;
pub use tail::tail;
pub use workload::Shape;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::ingest::{validate::Validated, Entry, ValidStream};
use crate::labels::Labels;
use crate::storage::store::Store;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Push load: 1000-line JSON pushes of ~300-byte JSON and logfmt lines from several connections.
    Push(BenchPushArgs),
    /// Query speed over generated data (in-process, fresh data directory; with `--shape
    /// microservices`, through HTTP, fresh and after `POST /flush`).
    Query(BenchQueryArgs),
    /// Live tail latency: push acknowledged → line on a tail, against a running server.
    Tail(BenchTailArgs),
    /// Search index: build cost and size, ID lookups and needle queries with and without it.
    Index(BenchIndexArgs),
    /// Mixed-load soak against a server it starts: pushes, queries, tails, deletes, retention
    /// and compaction at once; samples RSS, files, threads and latencies; checks nothing is lost.
    Soak(soak::SoakArgs),
}

#[derive(Args)]
pub struct BenchQueryArgs {
    /// The data: `uniform` is queried in-process; `microservices` (requests sharing a request,
    /// trace and user ID, as `bench push --shape microservices` sends them) is pushed through
    /// HTTP to a server this command starts (or `--addr`), and eight queries are timed through
    /// HTTP right after the push and again after `POST /flush`.
    #[arg(long, value_enum, default_value_t = Shape::Uniform)]
    pub shape: Shape,
    /// Lines to generate (over `--hours`, 8 apps, 2 namespaces, 4 levels).
    #[arg(long, default_value_t = 1_000_000)]
    pub lines: usize,
    /// Seed of the `microservices` data (the same seed gives the same lines).
    #[arg(long, default_value_t = 3)]
    pub seed: u64,
    /// `microservices`: query this running server instead of starting one (the data is pushed
    /// to it and it is flushed).
    #[arg(long)]
    pub addr: Option<String>,
    /// `microservices`: the server binary to start (default: this one).
    #[arg(long)]
    pub server: Option<PathBuf>,
    /// `microservices`: seconds to wait after `POST /flush` before the settled queries.
    #[arg(long, default_value_t = 3.0)]
    pub settle_wait: f64,
    /// Runs of each query; the median is printed.
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    /// Data directory (default: a new temporary one; with `microservices`, the started
    /// server's, kept when given).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Hours the generated lines span (the queries cover all of them).
    #[arg(long, default_value_t = 1)]
    pub hours: u32,
    /// Write a segment every this many lines, as frequent flushes do (0: one flush at the end).
    #[arg(long, default_value_t = 0)]
    pub flush_every: usize,
    /// After the queries, compact (timed), then run the queries again.
    #[arg(long)]
    pub compact: bool,
}

#[derive(Args)]
pub struct BenchIndexArgs {
    /// Lines to generate (requests of 3 to 8 lines across 8 services, 2 namespaces).
    #[arg(long, default_value_t = 10_000_000)]
    pub lines: usize,
    #[arg(long, default_value_t = 24)]
    pub hours: u32,
    /// Write a segment every this many lines.
    #[arg(long, default_value_t = 250_000)]
    pub flush_every: usize,
    /// Lookups: 7 times this many IDs.
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    /// Index correlation fields only, not every token.
    #[arg(long)]
    pub no_tokens: bool,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct BenchTailArgs {
    #[arg(long, env = "LOKI_ADDR", default_value = "http://127.0.0.1:3100")]
    pub addr: String,
    /// Lines to push (one per push).
    #[arg(long, default_value_t = 500)]
    pub lines: usize,
    /// Pause between pushes, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub interval_ms: u64,
    #[arg(long)]
    pub org_id: Option<String>,
}

#[derive(Args)]
pub struct BenchPushArgs {
    #[arg(long, env = "LOKI_ADDR", default_value = "http://127.0.0.1:3100")]
    pub addr: String,
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// The data: `uniform` sends prepared bodies with fresh timestamps for `--duration`;
    /// `microservices` generates `--lines` lines over the hour before the last whole hour
    /// (requests sharing a request, trace and user ID; JSON and logfmt) into memory (about
    /// 310 MB per million lines), then pushes them once.
    #[arg(long, value_enum, default_value_t = Shape::Uniform)]
    pub shape: Shape,
    /// Seconds to run (`uniform`).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Lines to push (`microservices`).
    #[arg(long, default_value_t = 1_000_000)]
    pub lines: usize,
    /// Seed of the `microservices` data (the same seed gives the same lines).
    #[arg(long, default_value_t = 3)]
    pub seed: u64,
    /// Lines per push.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Distinct streams (spread over the pushes; `uniform`).
    #[arg(long, default_value_t = 64)]
    pub streams: usize,
    #[arg(long)]
    pub org_id: Option<String>,
}

/// Runs one `sawmill bench` command.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Push(a) => push(a),
        BenchCommand::Tail(a) => tail(a),
        BenchCommand::Soak(a) => soak::run(a),
        BenchCommand::Index(a) => {
            // The in-process benchmarks run with the allocator settings the server uses.
            crate::server::tune_allocator();
            index(a)
        }
        BenchCommand::Query(a) => {
            crate::server::tune_allocator();
            query(a)
        }
    }
}

const APPS: [&str; 8] = [
    "api-gateway",
    "user-service",
    "payment-service",
    "search-service",
    "event-service",
    "notification-service",
    "analytics-service",
    "recommendation-engine",
];
const LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];
const MSGS: [&str; 6] = [
    "request completed",
    "cache miss",
    "database query slow",
    "upstream timeout",
    "user logged in",
    "payment authorized",
];
const PATHS: [&str; 5] = [
    "/api/users",
    "/api/payments",
    "/api/search?q=shoes",
    "/api/events/{id}",
    "/health",
];
const NAMESPACES: [&str; 2] = ["production", "staging"];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Pushes each non-empty `by_stream[i]` as stream `streams[i]` to the default tenant,
/// leaving the lists empty.
fn push_batch(
    store: &Store,
    streams: &[Labels],
    by_stream: &mut [Vec<Entry>],
) -> anyhow::Result<()> {
    let v = Validated {
        streams: streams
            .iter()
            .zip(by_stream.iter_mut())
            .filter(|(_, e)| !e.is_empty())
            .map(|(l, e)| ValidStream {
                labels: l.clone(),
                entries: std::mem::take(e),
            })
            .collect(),
        rejections: Vec::new(),
    };
    store.push(crate::model::tenant::DEFAULT_TENANT, v)?;
    Ok(())
}

/// A fresh in-process store for the benchmarks: no rate limit, no old-sample rejection, no
/// periodic flush; `tune` adjusts the rest.
fn bench_store(
    dir: &std::path::Path,
    tune: impl FnOnce(&mut crate::config::Config),
) -> anyhow::Result<Arc<crate::storage::store::Store>> {
    let mut cfg = crate::config::Config::default();
    cfg.common.path_prefix = dir.to_path_buf();
    cfg.limits_config.reject_old_samples = false;
    cfg.limits_config.ingestion_rate_mb = 1e9;
    cfg.limits_config.ingestion_burst_size_mb = 1e9;
    cfg.ingester.flush_check_period = Duration::from_secs(3600);
    tune(&mut cfg);
    let store = crate::storage::store::Store::new(Arc::new(cfg));
    store.recover()?;
    Ok(store)
}

/// `[start, end)` of `hours` whole hours, ending an hour before the current one.
fn bench_span(hours: u32) -> (i64, i64) {
    let hour = 3_600_000_000_000i64;
    let span = hour * hours.max(1) as i64;
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let start = (now / hour - 1) * hour - span;
    (start, start + span)
}

/// A xorshift generator: fast, and the same data on every run.
fn xorshift(mut seed: u64) -> impl FnMut() -> usize {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as usize
    }
}

/// The benchmarks' 16 streams: 8 apps × 2 namespaces.
fn bench_streams() -> Vec<crate::labels::Labels> {
    (0..16)
        .map(|s| {
            crate::labels::Labels::from_pairs(vec![
                ("app".into(), APPS[s % 8].into()),
                ("namespace".into(), NAMESPACES[s / 8].into()),
                ("job".into(), "bench".into()),
            ])
        })
        .collect()
}

/// A server a benchmark started (`sawmill serve` on a loopback port), killed when dropped.
struct ServerProc {
    child: std::process::Child,
    addr: String,
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin serve` with `config_yaml` (written to `dir/config_name`) over `dir/data` on a
/// free loopback port, its log in `dir/server.log`, and waits for `/ready`.
fn start_server(
    bin: &std::path::Path,
    dir: &std::path::Path,
    config_name: &str,
    config_yaml: &str,
) -> anyhow::Result<ServerProc> {
    use anyhow::Context;
    std::fs::create_dir_all(dir)?;
    let config = dir.join(config_name);
    std::fs::write(&config, config_yaml)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = std::fs::File::create(dir.join("server.log"))?;
    let child = std::process::Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let mut server = ServerProc {
        child,
        addr: format!("http://127.0.0.1:{port}"),
    };
    let conn = crate::client::Conn::new(crate::client::ConnOptions {
        addr: server.addr.clone(),
        ..crate::client::ConnOptions::default()
    })?;
    let started = std::time::Instant::now();
    loop {
        if conn.get_text("/ready", &[]).is_ok() {
            return Ok(server);
        }
        if let Some(status) = server.child.try_wait()? {
            anyhow::bail!(
                "the server exited before it was ready ({status}); see {}",
                dir.join("server.log").display()
            );
        }
        if started.elapsed() > Duration::from_secs(60) {
            anyhow::bail!("the server was not ready after 60s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
