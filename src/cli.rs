//! The `sawmill` command line: `serve` runs the server; `bench push` is the load generator that
//! measures ingest throughput and push latency against a running server.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(
    name = "sawmill",
    version,
    about = "Log aggregation and query engine that speaks Loki's API"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded defaults: 127.0.0.1:3100, data in ./data).
    Serve(ServeArgs),
    /// Benchmarks against a running server.
    #[command(subcommand)]
    Bench(BenchCommand),
    // --- the ruler (src/ruler) ---
    /// Alerting and recording rule files.
    #[command(subcommand)]
    Rules(RulesCommand),
}

// --- the ruler (src/ruler) ---
#[derive(Subcommand)]
enum RulesCommand {
    /// Check rule files offline: YAML, groups, rules, LogQL expressions and templates.
    Check {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// YAML config file (see config/sawmill.yaml for every key).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Listen address, overriding server.http_listen_address/port.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Data directory, overriding common.path_prefix.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Only check the config file and exit.
    #[arg(long)]
    check_config: bool,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Push load: 1000-line JSON pushes of ~300-byte JSON and logfmt lines from several connections.
    Push(BenchPushArgs),
    /// Query speed over generated data (in-process, fresh data directory).
    Query(BenchQueryArgs),
}

#[derive(Args)]
pub struct BenchQueryArgs {
    /// Lines to generate (over `--hours`, 8 apps, 2 namespaces, 4 levels).
    #[arg(long, default_value_t = 1_000_000)]
    pub lines: usize,
    /// Runs of each query; the median is printed.
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    /// Data directory (default: a new temporary one).
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
pub struct BenchPushArgs {
    #[arg(long, env = "LOKI_ADDR", default_value = "http://127.0.0.1:3100")]
    pub addr: String,
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Lines per push.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Distinct streams (spread over the pushes).
    #[arg(long, default_value_t = 64)]
    pub streams: usize,
    #[arg(long)]
    pub org_id: Option<String>,
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let res = match cli.cmd {
        Command::Serve(a) => serve(a),
        Command::Bench(BenchCommand::Push(a)) => crate::bench::push(a),
        Command::Bench(BenchCommand::Query(a)) => {
            // The in-process benchmark runs with the allocator settings the server uses.
            crate::server::tune_allocator();
            crate::bench::query(a)
        }
        // --- the ruler (src/ruler) ---
        Command::Rules(RulesCommand::Check { files }) => crate::ruler::check_files(&files)
            .map(|summary| println!("{summary}"))
            .map_err(anyhow::Error::msg),
    };
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sawmill: {e:#}");
            1
        }
    }
}

fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let mut cfg = match &a.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(l) = &a.listen {
        cfg.set_listen(l)?;
    }
    if let Some(d) = &a.data_dir {
        cfg.common.path_prefix = d.clone();
    }
    if a.check_config {
        println!("config ok");
        return Ok(());
    }
    crate::server::init_logging(&cfg);
    crate::server::tune_allocator();
    let cfg = Arc::new(cfg);
    let config_path = a.config.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let addr = cfg.listen_addr();
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        crate::server::run(cfg, config_path, listener, crate::server::shutdown_signal()).await?;
        Ok(())
    })
}
