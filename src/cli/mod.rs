//! The `sawmill` command line: `serve` runs the server; the same binary is the client, with
//! logcli's commands and flags (`query`, `instant-query`, `labels`, `series`, `stats`,
//! `volume`, `fmt`) plus `push`; `bench` holds the load generator and the query benchmark.
//! Exit codes: 0 done, 1 server or query error, 2 bad usage.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::client::output::{LogPrinter, Mode, OutputOptions};
use crate::client::{self, ClientError, Conn, ConnOptions};
use crate::config::Config;

pub mod bench;

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
    /// Run a LogQL query over a time range; `--tail` follows new lines live.
    Query(QueryArgs),
    /// Run a metric query at one instant.
    InstantQuery(InstantQueryArgs),
    /// List label names, or the values of one label.
    Labels(LabelsArgs),
    /// List the streams a selector matches.
    Series(SeriesArgs),
    /// Streams, chunks, entries and bytes a selector covers.
    Stats(StatsArgs),
    /// Bytes per series (or per label) a selector covers.
    Volume(VolumeArgs),
    /// Pretty-print a query (from the argument or stdin).
    Fmt(FmtArgs),
    /// Push lines from stdin or files as one stream.
    Push(PushArgs),
    /// One request's timeline across services, by request or trace ID (Sawmill only).
    Correlate(CorrelateArgs),
    /// Benchmarks against a running server.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
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

/// Where the server is and who we are (logcli's flags and environment variables).
#[derive(Args, Clone)]
struct ConnArgs {
    /// Server address.
    #[arg(long, env = "LOKI_ADDR", default_value = "http://localhost:3100")]
    addr: String,
    /// Tenant (X-Scope-OrgID).
    #[arg(long, env = "LOKI_ORG_ID")]
    org_id: Option<String>,
    /// Basic auth user name.
    #[arg(long, env = "LOKI_USERNAME")]
    username: Option<String>,
    /// Basic auth password.
    #[arg(long, env = "LOKI_PASSWORD")]
    password: Option<String>,
    /// Bearer token (instead of basic auth).
    #[arg(long, env = "LOKI_BEARER_TOKEN")]
    bearer_token: Option<String>,
    /// No progress or informational messages on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

impl ConnArgs {
    fn connect(&self) -> client::Result<Conn> {
        Conn::new(ConnOptions {
            addr: self.addr.clone(),
            org_id: self.org_id.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            bearer_token: self.bearer_token.clone(),
        })
    }
}

/// The time range (logcli's `--since`, `--from`, `--to`).
#[derive(Args, Clone)]
struct RangeArgs {
    /// How far back from --to (or now) to look.
    #[arg(long, default_value = "1h")]
    since: String,
    /// Start (RFC3339, or Unix seconds or nanoseconds); overrides --since.
    #[arg(long)]
    from: Option<String>,
    /// End (RFC3339, or Unix seconds or nanoseconds); default now.
    #[arg(long)]
    to: Option<String>,
}

impl RangeArgs {
    fn resolve(&self) -> client::Result<(i64, i64)> {
        let end = match &self.to {
            Some(t) => client::parse_time("to", t)?,
            None => crate::model::now_ns(),
        };
        let start = match &self.from {
            Some(f) => client::parse_time("from", f)?,
            None => end - client::parse_duration("since", &self.since)?,
        };
        if start > end {
            return Err(ClientError::Usage(
                "the start of the range is after its end: check --from, --to and --since".into(),
            ));
        }
        Ok((start, end))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Timezone {
    Local,
    Utc,
}

/// How results are printed (logcli's output flags).
#[derive(Args, Clone)]
struct OutputArgs {
    /// default: time, labels, line; raw: the line only; jsonl: one JSON object per entry.
    #[arg(long, short = 'o', value_enum, default_value = "default")]
    output: Mode,
    /// Leave the labels out of each line.
    #[arg(long)]
    no_labels: bool,
    /// Leave this label out of each line (repeatable).
    #[arg(long)]
    exclude_label: Vec<String>,
    /// Show only this label on each line (repeatable).
    #[arg(long)]
    include_label: Vec<String>,
    /// Colour even when stdout is not a terminal (by default: only on a terminal).
    #[arg(long)]
    colored_output: bool,
    /// Time zone of printed timestamps.
    #[arg(long, short = 'z', value_enum, default_value = "local")]
    timezone: Timezone,
}

impl OutputArgs {
    fn options(&self, quiet: bool) -> OutputOptions {
        OutputOptions {
            mode: self.output,
            no_labels: self.no_labels,
            include_labels: self.include_label.clone(),
            exclude_labels: self.exclude_label.clone(),
            color: self.output == Mode::Default && OutputOptions::auto_color(self.colored_output),
            utc: self.timezone == Timezone::Utc,
            quiet,
        }
    }
}

#[derive(Args)]
struct QueryArgs {
    /// The LogQL query.
    query: String,
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    range: RangeArgs,
    #[command(flatten)]
    out: OutputArgs,
    /// Entries to print in all (0: every entry in the range).
    #[arg(long, default_value_t = 30)]
    limit: usize,
    /// Entries per request; the query is paged past the server's cap.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Oldest entries first (default: newest first).
    #[arg(long)]
    forward: bool,
    /// Step of a metric query (e.g. 30s); default: the server's.
    #[arg(long)]
    step: Option<String>,
    /// Follow new lines live (WebSocket), reconnecting if the server restarts.
    #[arg(long, short = 'f', alias = "follow")]
    tail: bool,
    /// With --tail: seconds the server waits for late entries, to send them in order (0-5).
    #[arg(long, default_value_t = 0)]
    delay_for: u64,
}

#[derive(Args)]
struct InstantQueryArgs {
    /// The LogQL metric query.
    query: String,
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    out: OutputArgs,
    /// Evaluation time (RFC3339, or Unix seconds or nanoseconds); default now.
    #[arg(long)]
    now: Option<String>,
    #[arg(long, default_value_t = 30)]
    limit: usize,
    #[arg(long)]
    forward: bool,
}

#[derive(Args)]
struct LabelsArgs {
    /// A label name: list its values instead of the names.
    name: Option<String>,
    /// Only labels of streams matching this selector.
    #[arg(long)]
    query: Option<String>,
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    range: RangeArgs,
}

#[derive(Args)]
struct SeriesArgs {
    /// Stream selector, e.g. '{app="api"}'.
    selector: String,
    /// A table of label names: distinct values and streams they are found in.
    #[arg(long)]
    analyze_labels: bool,
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    range: RangeArgs,
}

#[derive(Args)]
struct StatsArgs {
    /// Stream selector.
    selector: String,
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    range: RangeArgs,
    /// default: a short list; jsonl: the server's JSON.
    #[arg(long, short = 'o', value_enum, default_value = "default")]
    output: Mode,
}

#[derive(Args)]
struct VolumeArgs {
    /// Stream selector.
    selector: String,
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    range: RangeArgs,
    /// Most series to return.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Group by these labels (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    target_labels: Vec<String>,
    /// series (default) or labels.
    #[arg(long)]
    aggregate_by: Option<String>,
    #[arg(long, short = 'o', value_enum, default_value = "default")]
    output: Mode,
    #[arg(long, short = 'z', value_enum, default_value = "local")]
    timezone: Timezone,
}

#[derive(Args)]
struct CorrelateArgs {
    /// The request, trace or correlation ID.
    id: String,
    #[command(flatten)]
    conn: ConnArgs,
    /// How far back to look (default: a day).
    #[arg(long, default_value = "24h")]
    since: String,
    #[arg(long)]
    from: Option<String>,
    #[arg(long)]
    to: Option<String>,
    /// jsonl: the server's JSON answer.
    #[arg(long, short = 'o', value_enum, default_value = "default")]
    output: Mode,
    /// Colour errors even when stdout is not a terminal.
    #[arg(long)]
    colored_output: bool,
    #[arg(long, short = 'z', value_enum, default_value = "local")]
    timezone: Timezone,
}

#[derive(Args)]
struct FmtArgs {
    /// The query (default: read from stdin).
    query: Option<String>,
}

#[derive(Args)]
struct PushArgs {
    /// Stream labels, e.g. '{app="x", env="dev"}'.
    #[arg(long)]
    labels: String,
    /// Files to push, in order (default: stdin; `-` is stdin).
    files: Vec<PathBuf>,
    #[command(flatten)]
    conn: ConnArgs,
    /// Most lines per push.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Most bytes of lines per push.
    #[arg(long, default_value_t = 1_000_000)]
    batch_bytes: usize,
    /// Attempts per push (429, 5xx and connection errors are retried with backoff).
    #[arg(long, default_value_t = 10)]
    retries: u32,
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
    /// While another process holds the data directory's lock (a restart overlapping the old
    /// process's shutdown), wait this long for it to exit (e.g. 30s); default: exit at once.
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
    lock_wait: Option<std::time::Duration>,
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            eprintln!("sawmill: {} (see --help)", one_line_usage_error(&e));
            return 2;
        }
        Err(e) => {
            let _ = e.print();
            return 0;
        }
    };
    let res = match cli.cmd {
        Command::Query(a) => return finish(query(a)),
        Command::InstantQuery(a) => return finish(instant_query(a)),
        Command::Labels(a) => return finish(labels(a)),
        Command::Series(a) => return finish(series(a)),
        Command::Stats(a) => return finish(stats(a)),
        Command::Volume(a) => return finish(volume(a)),
        Command::Fmt(a) => return finish(fmt(a)),
        Command::Push(a) => return finish(push(a)),
        Command::Correlate(a) => return finish(correlate(a)),
        Command::Serve(a) => serve(a),
        Command::Bench(b) => bench::run(b),
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
        None => Config::load(None)?,
    };
    if let Some(l) = &a.listen {
        cfg.set_listen(l)?;
    }
    if let Some(d) = &a.data_dir {
        cfg.common.path_prefix = d.clone();
    }
    if a.check_config {
        if !cfg.ignored_loki_keys().is_empty() {
            eprintln!(
                "warning: Loki configuration keys without meaning in a single process are ignored: {}",
                cfg.ignored_loki_keys().join(", ")
            );
        }
        println!("config ok");
        return Ok(());
    }
    crate::server::init_logging(&cfg);
    // Before anything in the data directory is read, and before the port is taken.
    let _lock = crate::storage::lock::DataDirLock::acquire(
        cfg.data_dir(),
        a.lock_wait.unwrap_or_default(),
    )?;
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

/// clap's message without its usage block, on one line.
fn one_line_usage_error(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let head = text.split("\n\nUsage:").next().unwrap_or(&text);
    let head = head.trim_start_matches("error: ");
    head.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A client command's exit code: 0, 1 for server or query errors, 2 for bad usage; the error
/// as one line on stderr. A closed stdout (`| head`) is not an error.
fn finish(r: client::Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            let msg = e.to_string().replace('\n', " ");
            eprintln!("sawmill: {msg}");
            e.exit_code()
        }
    }
}

fn query(a: QueryArgs) -> client::Result<()> {
    let conn = a.conn.connect()?;
    let (start, end) = a.range.resolve()?;
    let mut printer = LogPrinter::new(a.out.options(a.conn.quiet), std::io::stdout().lock());
    if a.tail {
        if a.delay_for > 5 {
            return Err(ClientError::Usage(
                "--delay-for can't be greater than 5".into(),
            ));
        }
        let q = client::query::TailQuery {
            query: a.query,
            start,
            limit: a.limit,
            delay_for: a.delay_for,
        };
        return client::query::follow(&conn, &q, &mut printer, a.conn.quiet);
    }
    let q = client::query::RangeQuery {
        query: a.query,
        start,
        end,
        limit: a.limit,
        batch: a.batch,
        forward: a.forward,
        step: a.step,
    };
    let utc = a.out.timezone == Timezone::Utc;
    client::query::range(
        &conn,
        &q,
        &mut printer,
        &mut std::io::stdout(),
        utc,
        a.conn.quiet,
    )
}

fn instant_query(a: InstantQueryArgs) -> client::Result<()> {
    let conn = a.conn.connect()?;
    let time = match &a.now {
        Some(t) => client::parse_time("now", t)?,
        None => crate::model::now_ns(),
    };
    let utc = a.out.timezone == Timezone::Utc;
    let mut printer = LogPrinter::new(a.out.options(a.conn.quiet), std::io::stdout().lock());
    let q = client::query::InstantQuery {
        query: a.query,
        time,
        limit: a.limit,
        forward: a.forward,
    };
    client::query::instant(
        &conn,
        &q,
        &mut printer,
        &mut std::io::stdout(),
        utc,
        a.conn.quiet,
    )
}

fn labels(a: LabelsArgs) -> client::Result<()> {
    let conn = a.conn.connect()?;
    let (start, end) = a.range.resolve()?;
    client::meta::labels(
        &conn,
        a.name.as_deref(),
        a.query.as_deref(),
        start,
        end,
        &mut std::io::stdout().lock(),
    )
}

fn series(a: SeriesArgs) -> client::Result<()> {
    let conn = a.conn.connect()?;
    let (start, end) = a.range.resolve()?;
    client::meta::series(
        &conn,
        &a.selector,
        start,
        end,
        a.analyze_labels,
        &mut std::io::stdout().lock(),
    )
}

fn stats(a: StatsArgs) -> client::Result<()> {
    let conn = a.conn.connect()?;
    let (start, end) = a.range.resolve()?;
    client::meta::stats(
        &conn,
        &a.selector,
        start,
        end,
        a.output,
        &mut std::io::stdout().lock(),
    )
}

fn volume(a: VolumeArgs) -> client::Result<()> {
    let conn = a.conn.connect()?;
    let (start, end) = a.range.resolve()?;
    client::meta::volume(
        &conn,
        &a.selector,
        start,
        end,
        a.limit,
        &a.target_labels,
        a.aggregate_by.as_deref(),
        a.output,
        a.timezone == Timezone::Utc,
        &mut std::io::stdout().lock(),
    )
}

fn fmt(a: FmtArgs) -> client::Result<()> {
    let q = match a.query {
        Some(q) => q,
        None => std::io::read_to_string(std::io::stdin())?,
    };
    client::meta::fmt(&q, &mut std::io::stdout().lock())
}

fn push(a: PushArgs) -> client::Result<()> {
    let conn = a.conn.connect()?;
    let args = client::push::PushArgs {
        labels: a.labels,
        files: a.files,
        batch: a.batch,
        batch_bytes: a.batch_bytes,
        retries: a.retries,
        quiet: a.conn.quiet,
    };
    let pushed = client::push::run(&conn, &args)?;
    if !a.conn.quiet {
        eprintln!(
            "pushed {} lines in {} requests ({} retried)",
            pushed.lines, pushed.requests, pushed.retries
        );
    }
    Ok(())
}

fn correlate(a: CorrelateArgs) -> client::Result<()> {
    let conn = a.conn.connect()?;
    let range = RangeArgs {
        since: a.since.clone(),
        from: a.from.clone(),
        to: a.to.clone(),
    };
    let (start, end) = range.resolve()?;
    let args = client::correlate::CorrelateArgs {
        id: a.id,
        start,
        end,
        color: OutputOptions::auto_color(a.colored_output),
        utc: a.timezone == Timezone::Utc,
        json: a.output == Mode::Jsonl,
    };
    client::correlate::run(&conn, &args, &mut std::io::stdout().lock())
}
