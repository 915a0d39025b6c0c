//! Configuration: Loki's key names and nesting wherever Loki has the same setting, embedded
//! defaults so that `sawmill serve` runs with no file, strict parsing (an unknown key is an error
//! naming it), and the `--listen`/`--data-dir` overrides. `config/sawmill.yaml` documents every key.
//!
//! [`Config::load`] is the one loader (start, `--check-config`, SIGHUP and `POST /-/reload`):
//! read the file (or start from the embedded defaults), expand `${VAR}` / `${VAR:-default}`
//! (`$$` is a literal `$`), parse the YAML tree, apply `SAWMILL_*` environment overrides to that
//! tree (`SAWMILL_SERVER__HTTP_LISTEN_PORT=3100`: path segments joined by `__`, values parsed as
//! YAML scalars), then deserialize and validate, so an override gets exactly the parsing and
//! the errors a value in the file gets.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {key}: {msg}")]
    Invalid {
        path: PathBuf,
        key: String,
        msg: String,
    },
    #[error("invalid value: {0}")]
    Value(String),
    #[error("{source_name} line {line}: {msg}")]
    Expand {
        source_name: String,
        line: usize,
        msg: String,
    },
    #[error("environment variable {var} ({key}): {msg}")]
    Env {
        var: String,
        key: String,
        msg: String,
    },
}

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "SAWMILL_";

/// Top-level keys that are scalars: the only overrides without a `__` in their name
/// (`SAWMILL_AUTH_ENABLED`). Other `SAWMILL_*` names without `__` (`SAWMILL_LOG`, ...) are not
/// config keys and are left alone.
const TOP_LEVEL_SCALARS: [&str; 1] = ["auth_enabled"];

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// With `false` every request belongs to tenant `fake`; with `true` `X-Scope-OrgID` is required.
    pub auth_enabled: bool,
    pub server: ServerConfig,
    pub common: CommonConfig,
    pub distributor: DistributorConfig,
    pub ingester: IngesterConfig,
    pub limits_config: Limits,
    pub compactor: CompactorConfig,
    pub storage: StorageConfig,
    /// The per-segment search index: correlation IDs and line tokens (see `index`).
    pub index: IndexConfig,
    /// Alerting and recording rules (see `ruler`).
    pub ruler: RulerConfig,
    /// Loki's pattern ingester: patterns mined from every stream for `/loki/api/v1/patterns`.
    pub pattern_ingester: PatternIngesterConfig,
    pub querier: QuerierConfig,
    /// Per-tenant limits that replace `limits_config` for that tenant, key by key.
    pub overrides: BTreeMap<String, LimitsOverride>,
    /// Keys of Loki's configuration the file set that mean nothing in one process (see
    /// `loki_keys`); logged once at start.
    #[serde(skip)]
    pub(crate) ignored_loki_keys: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub http_listen_address: String,
    pub http_listen_port: u16,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub log_level: String,
    /// `json` (structured, one object per line, the default) or `text` (human-readable).
    pub log_format: String,
    /// The built-in web page at `/` and `/ui/` (true by default); false answers 404 there.
    pub ui_enabled: bool,
    /// A request's line, headers and body must all arrive within this (408 otherwise).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub http_server_read_timeout: Duration,
    /// A response write that makes no progress for this long closes the connection.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub http_server_write_timeout: Duration,
    /// A keep-alive connection with nothing to do for this long is closed.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub http_server_idle_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommonConfig {
    /// Where all data lives (WAL, segments). Loki's `common.path_prefix`.
    pub path_prefix: PathBuf,
    /// Where sealed segments live: on local disk under `path_prefix` (no bucket named, the
    /// default), or in one bucket of S3 (or an S3-compatible server), GCS or Azure Blob.
    pub storage: CommonStorage,
    pub ring: RingConfig,
}

/// Loki's `common.storage`: at most one of its object stores. Loki's `filesystem` block means
/// local disk, which is what no block means here; its keys are listed as ignored.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommonStorage {
    pub s3: Option<S3Storage>,
    pub gcs: Option<GcsStorage>,
    pub azure: Option<AzureStorage>,
}

/// Loki's `common.storage.s3`. Empty keys fall back to the `AWS_*` environment variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
/// `AWS_ENDPOINT_URL`), as the AWS SDKs read them.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Storage {
    /// `http(s)://host:port` of an S3-compatible server (MinIO, Ceph, R2); empty: AWS.
    pub endpoint: String,
    /// The bucket (Loki accepts a comma-separated list; Sawmill uses one bucket).
    pub bucketnames: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// Path-style URLs (`endpoint/bucket/key`), which MinIO and most S3-compatible servers need.
    pub s3forcepathstyle: bool,
    /// Plain HTTP to the endpoint.
    pub insecure: bool,
}

/// Loki's `common.storage.gcs`. Without `service_account`, credentials come from
/// `GOOGLE_APPLICATION_CREDENTIALS` or `GOOGLE_SERVICE_ACCOUNT`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcsStorage {
    pub bucket_name: String,
    /// The service account key, as JSON text.
    pub service_account: String,
}

/// Loki's `common.storage.azure`. Empty keys fall back to the `AZURE_*` environment
/// variables (`AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, ...).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureStorage {
    pub account_name: String,
    pub account_key: String,
    pub container_name: String,
    /// `blob.core.windows.net` unless set; an `http(s)://` URL names the whole endpoint
    /// (Azurite).
    pub endpoint_suffix: String,
}

/// Loki's `common.ring`: this node's identity.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RingConfig {
    /// Unique per node and stable across restarts; empty: the host name. Two nodes sharing a
    /// bucket must not share it.
    pub instance_id: String,
}

impl RingConfig {
    /// `instance_id`, or the host name when it is empty.
    pub fn instance(&self) -> String {
        if !self.instance_id.is_empty() {
            return self.instance_id.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "sawmill".into())
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistributorConfig {
    /// Largest push body accepted, checked both before and after decompression (413 above it).
    #[serde(deserialize_with = "de_bytes")]
    pub max_recv_msg_size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    /// Acknowledge a push only after the WAL has been fdatasync'ed (group commit).
    Always,
    /// Acknowledge after write(2); fdatasync runs every `fsync_interval`.
    Interval,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalConfig {
    pub fsync: FsyncMode,
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub fsync_interval: Duration,
    /// A WAL file is closed and a new one started past this size.
    #[serde(deserialize_with = "de_bytes")]
    pub segment_size: u64,
    /// Past this many WAL bytes, the streams holding the oldest WAL data are flushed early so the
    /// oldest WAL files can be deleted; bounds replay time at start.
    #[serde(deserialize_with = "de_bytes")]
    pub max_size: u64,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngesterConfig {
    /// A head block is compressed once its uncompressed lines reach this size.
    #[serde(deserialize_with = "de_bytes")]
    pub chunk_block_size: u64,
    /// A chunk is cut once its uncompressed size reaches this.
    #[serde(deserialize_with = "de_bytes")]
    pub chunk_target_size: u64,
    /// A chunk that received nothing for this long is cut and flushed.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub chunk_idle_period: Duration,
    /// A chunk older than this is cut and flushed.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub max_chunk_age: Duration,
    /// How often cut chunks are written to segment files.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub flush_check_period: Duration,
    /// zstd level for blocks at ingest (1 fastest .. 19 smallest).
    pub zstd_level: i32,
    pub wal: WalConfig,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactorConfig {
    /// How often the compactor merges small segments, applies retention and processes deletes.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub compaction_interval: Duration,
    /// Compacted segments hold the chunks of one tenant starting within one such period.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub partition_period: Duration,
    /// zstd level for blocks rewritten by compaction (higher than ingest: smaller files).
    pub zstd_level: i32,
    /// Uncompressed size of the blocks compaction writes (larger blocks compress better).
    #[serde(deserialize_with = "de_bytes")]
    pub block_size: u64,
    /// Uncompressed size at which compaction cuts a stream's chunk.
    #[serde(deserialize_with = "de_bytes")]
    pub chunk_target_size: u64,
    /// A delete request can be cancelled for this long; it is processed after it.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub delete_request_cancel_period: Duration,
    /// `false` turns retention off (Loki's switch); unset, retention applies whenever a
    /// retention period is set.
    pub retention_enabled: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Below this much free space on the data directory's filesystem, pushes are refused with 507.
    #[serde(deserialize_with = "de_bytes")]
    pub min_free_bytes: u64,
    /// With a bucket: the local cache of footers and chunks read from it, least recently used
    /// first out past this size.
    #[serde(deserialize_with = "de_bytes")]
    pub cache_size: u64,
}

/// The read path (Loki's `querier` section).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuerierConfig {
    /// Queries may name several tenants in `X-Scope-OrgID` (`a|b`); see `query::multi_tenant`.
    pub multi_tenant_queries_enabled: bool,
}

/// The ruler: rule files, evaluation, Alertmanager notification and remote write (Loki's names).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulerConfig {
    /// Rule files live in `<rule_path>/<tenant>/<namespace>.yaml`; empty: `<path_prefix>/rules`.
    pub rule_path: PathBuf,
    /// How often a group without its own `interval` is evaluated.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub evaluation_interval: Duration,
    /// How often the rule files are read again to pick up changes made outside the API.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub poll_interval: Duration,
    /// Comma-separated Alertmanager base URLs; alerts are POSTed to `<url>/api/v2/alerts`.
    pub alertmanager_url: String,
    /// A firing alert is sent again to Alertmanager after this long.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub resend_delay: Duration,
    /// Alert state saved before a restart is restored only if the ruler was down less than this.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub for_outage_tolerance: Duration,
    /// Base of the `generatorURL` of alerts; empty: `http://<listen address>`.
    pub external_url: String,
    pub remote_write: RulerRemoteWriteConfig,
    /// Serve the rules API (`/loki/api/v1/rules`, `/prometheus/api/v1/rules|alerts`).
    pub enable_api: bool,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulerRemoteWriteConfig {
    /// Send the samples of recording rules to `client.url` with Prometheus remote write.
    pub enabled: bool,
    pub client: RemoteWriteClientConfig,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteClientConfig {
    /// The remote-write endpoint, e.g. `http://prometheus:9090/api/v1/write`.
    pub url: String,
}

impl Default for RulerConfig {
    fn default() -> Self {
        RulerConfig {
            rule_path: PathBuf::new(),
            evaluation_interval: Duration::from_secs(60),
            poll_interval: Duration::from_secs(60),
            alertmanager_url: String::new(),
            resend_delay: Duration::from_secs(60),
            for_outage_tolerance: Duration::from_secs(3600),
            external_url: String::new(),
            remote_write: RulerRemoteWriteConfig::default(),
            enable_api: true,
        }
    }
}

impl RulerConfig {
    /// The Alertmanager base URLs, without trailing slashes.
    pub fn alertmanager_urls(&self) -> Vec<String> {
        self.alertmanager_url
            .split(',')
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty())
            .collect()
    }
}

/// A retention rule for the streams a selector matches (Loki's `retention_stream`).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StreamRetention {
    pub selector: String,
    #[serde(default)]
    pub priority: i64,
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub period: Duration,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub ingestion_rate_mb: f64,
    pub ingestion_burst_size_mb: f64,
    #[serde(deserialize_with = "de_bytes")]
    pub max_line_size: u64,
    pub max_label_names_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    pub reject_old_samples: bool,
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub reject_old_samples_max_age: Duration,
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub creation_grace_period: Duration,
    pub allow_structured_metadata: bool,
    #[serde(deserialize_with = "de_bytes")]
    pub max_structured_metadata_size: u64,
    pub max_structured_metadata_entries_count: usize,
    /// How far behind a stream's newest entry an entry may be and still be accepted.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub out_of_order_time_window: Duration,
    pub max_global_streams_per_user: usize,
    pub max_entries_limit_per_query: usize,
    /// Most series a metric query may return.
    pub max_query_series: usize,
    /// Live tail connections a tenant may hold at once; more are refused with 400.
    pub max_concurrent_tail_requests: usize,
    /// Longest `end - start` a query may cover (0 = no limit).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub max_query_length: Duration,
    /// A query still running after this is stopped and answered 504.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub query_timeout: Duration,
    /// Parts (threads) one query is split into, at most (fewer on fewer cores).
    pub max_query_parallelism: usize,
    /// Queries a tenant may have running at once; more are answered 429.
    pub max_outstanding_requests_per_tenant: usize,
    /// Uncompressed bytes a query may read, estimated before it runs (0 = no limit).
    #[serde(deserialize_with = "de_bytes")]
    pub max_query_bytes_read: u64,
    /// Memory a query's results and samples may take while it runs (0 = no limit).
    #[serde(deserialize_with = "de_bytes")]
    pub max_query_memory: u64,
    /// How far back queries may look; older parts of a range are left out (0 = no limit).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub max_query_lookback: Duration,
    /// Entries older than this are dropped (0 = keep forever).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub retention_period: Duration,
    /// Per-selector retention; the matching rule with the highest priority wins over `retention_period`.
    pub retention_stream: Vec<StreamRetention>,
    /// Labels whose value becomes `service_name` when a stream has none (the first one present,
    /// else `unknown_service`); empty turns discovery off. Loki's list by default.
    pub discover_service_name: Vec<String>,
    /// Add `detected_level` structured metadata to every entry (from level labels, metadata,
    /// OTLP severity, or the line).
    pub discover_log_levels: bool,
    /// The label, metadata and line field names a level is read from.
    pub log_level_fields: Vec<String>,
    /// Bytes per second one stream may push (Loki's binary units: 3MB = 3 MiB); entries over
    /// it are refused with 429 while other streams go on. 0 (the default): no limit.
    #[serde(deserialize_with = "de_datasize")]
    pub per_stream_rate_limit: u64,
    /// Bytes one stream may push at once above its rate.
    #[serde(deserialize_with = "de_datasize")]
    pub per_stream_rate_limit_burst: u64,
}

/// A tenant's overrides: any `limits_config` key, written the same way.
pub type LimitsOverride = serde_yaml::Mapping;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http_listen_address: "127.0.0.1".into(),
            http_listen_port: 3100,
            log_level: "info".into(),
            log_format: "json".into(),
            ui_enabled: true,
            http_server_read_timeout: Duration::from_secs(30),
            http_server_write_timeout: Duration::from_secs(30),
            http_server_idle_timeout: Duration::from_secs(120),
        }
    }
}

impl Default for CommonConfig {
    fn default() -> Self {
        CommonConfig {
            path_prefix: PathBuf::from("./data"),
            storage: CommonStorage::default(),
            ring: RingConfig::default(),
        }
    }
}

impl Default for DistributorConfig {
    fn default() -> Self {
        DistributorConfig {
            max_recv_msg_size: 100 << 20,
        }
    }
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            fsync: FsyncMode::Interval,
            fsync_interval: Duration::from_secs(1),
            segment_size: 128 << 20,
            max_size: 1 << 30,
        }
    }
}

impl Default for IngesterConfig {
    fn default() -> Self {
        IngesterConfig {
            chunk_block_size: 256 << 10,
            chunk_target_size: 1536 << 10,
            chunk_idle_period: Duration::from_secs(30 * 60),
            max_chunk_age: Duration::from_secs(2 * 3600),
            flush_check_period: Duration::from_secs(30),
            zstd_level: 1,
            wal: WalConfig::default(),
        }
    }
}

impl Default for CompactorConfig {
    fn default() -> Self {
        CompactorConfig {
            compaction_interval: Duration::from_secs(600),
            partition_period: Duration::from_secs(3600),
            zstd_level: 6,
            block_size: 1 << 20,
            chunk_target_size: 8 << 20,
            delete_request_cancel_period: Duration::ZERO,
            retention_enabled: None,
        }
    }
}

/// The search index built for every segment (Sawmill's own section).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// Build and use the index: values of `fields` map to the blocks that hold them.
    pub enabled: bool,
    /// Also index every token of every line (4 to 64 letters and digits), so that
    /// `|= "literal"` skips the blocks that cannot contain it.
    pub tokens: bool,
    /// Also build the index for segments whose blocks all carry a filter section (every
    /// segment written since filters came): their filters already answer tokens and values,
    /// so by default only older segments get one. On, such segments get the correlation
    /// fields' values (no tokens): one lookup per segment instead of a filter probe per
    /// block, for correlation over long ranges of data no longer in memory.
    pub filtered_segments: bool,
    /// Correlation fields: JSON and logfmt keys, structured metadata and labels, as `| json`
    /// and `| logfmt` name them (`X-Request-ID` is `X_Request_ID`).
    pub fields: Vec<String>,
    /// The label (or field) naming a service in `/sawmill/api/v1/correlate` summaries.
    pub service_label: String,
    /// The label (or field) holding a line's level in those summaries.
    pub level_label: String,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            enabled: true,
            tokens: true,
            filtered_segments: false,
            fields: [
                "request_id",
                "requestId",
                "x_request_id",
                "correlation_id",
                "trace_id",
                "traceId",
                "span_id",
                "X-Request-ID",
                "X-Correlation-ID",
            ]
            .map(String::from)
            .to_vec(),
            service_label: "app".into(),
            level_label: "level".into(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            min_free_bytes: 64 << 20,
            cache_size: 1 << 30,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            ingestion_rate_mb: 4.0,
            ingestion_burst_size_mb: 6.0,
            max_line_size: 256_000,
            max_label_names_per_series: 15,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            reject_old_samples: true,
            reject_old_samples_max_age: Duration::from_secs(7 * 24 * 3600),
            creation_grace_period: Duration::from_secs(600),
            allow_structured_metadata: true,
            max_structured_metadata_size: 64_000,
            max_structured_metadata_entries_count: 128,
            out_of_order_time_window: Duration::from_secs(3600),
            max_global_streams_per_user: 5000,
            max_entries_limit_per_query: 5000,
            max_query_series: 500,
            max_concurrent_tail_requests: 10,
            max_query_length: Duration::from_secs(721 * 3600),
            query_timeout: Duration::from_secs(60),
            max_query_parallelism: 32,
            max_outstanding_requests_per_tenant: 32,
            max_query_bytes_read: 0,
            max_query_memory: 1 << 30,
            max_query_lookback: Duration::ZERO,
            retention_period: Duration::ZERO,
            retention_stream: Vec::new(),
            discover_service_name: default_service_name_labels(),
            discover_log_levels: true,
            log_level_fields: default_level_fields(),
            per_stream_rate_limit: 0,
            per_stream_rate_limit_burst: 15 << 20,
        }
    }
}

impl Config {
    /// Reads and validates a YAML config file, with `${VAR}` expansion and `SAWMILL_*`
    /// overrides from the process environment (see [`Config::load`]).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        Config::load(Some(path))
    }

    /// The loader: the file at `path` (or the embedded defaults), `${VAR}` expanded, with the
    /// process's `SAWMILL_*` overrides applied.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        Config::load_with(path, &text, &env)
    }

    /// [`Config::load`] with the file's text and the environment given.
    pub fn load_with(
        path: Option<&Path>,
        text: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let file = path.map_or_else(|| PathBuf::from("(embedded defaults)"), Path::to_path_buf);
        let expanded = expand_env(text, env).map_err(|(line, msg)| ConfigError::Expand {
            source_name: format!("config file {}", file.display()),
            line,
            msg,
        })?;
        let mut tree = parse_tree(&expanded).map_err(|(key, msg)| ConfigError::Invalid {
            path: file.clone(),
            key,
            msg,
        })?;
        let applied = apply_env_overrides(&mut tree, env)?;
        Config::from_tree(tree).map_err(|(key, msg)| {
            // An error inside a key an override set (or on the way to it) names the variable.
            match applied.iter().find(|(_, path)| {
                *path == key
                    || key.starts_with(&format!("{path}."))
                    || key.starts_with(&format!("{path}["))
                    || path.starts_with(&format!("{key}."))
            }) {
                Some((var, _)) => ConfigError::Env {
                    var: var.clone(),
                    key,
                    msg,
                },
                None => ConfigError::Invalid {
                    path: file,
                    key,
                    msg,
                },
            }
        })
    }

    /// Parses YAML text (no `${VAR}` expansion, no environment); the error names the key path
    /// (`limits_config.max_line_size`).
    pub fn from_yaml(text: &str) -> Result<Config, (String, String)> {
        Config::from_tree(parse_tree(text)?)
    }

    /// Deserializes and validates a parsed YAML tree; Loki's keys are mapped or set aside
    /// (see `loki_keys`).
    fn from_tree(mut tree: serde_yaml::Value) -> Result<Config, (String, String)> {
        let mut ignored = crate::loki_keys::translate(&mut tree)?;
        let limit_keys = match serde_yaml::to_value(LimitsSer(&Limits::default())) {
            Ok(serde_yaml::Value::Mapping(m)) => m
                .keys()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect(),
            _ => Default::default(),
        };
        ignored.extend(crate::loki_keys::strip_override_keys(
            &mut tree,
            &limit_keys,
        ));
        let (mut cfg, rest): (Config, _) = crate::loki_keys::deserialize_lenient(tree)?;
        ignored.extend(rest);
        ignored.sort();
        cfg.ignored_loki_keys = ignored;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Keys of Loki's configuration the file set that Sawmill has no use for.
    pub fn ignored_loki_keys(&self) -> &[String] {
        &self.ignored_loki_keys
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let cfg = self;
        if !["json", "text"].contains(&cfg.server.log_format.as_str()) {
            return Err((
                "server.log_format".into(),
                format!(
                    "unknown log format {:?}: use json or text",
                    cfg.server.log_format
                ),
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&cfg.server.log_level).is_err() {
            return Err((
                "server.log_level".into(),
                format!(
                    "invalid log level {:?}: use error, warn, info, debug or trace",
                    cfg.server.log_level
                ),
            ));
        }
        cfg.check_ruler()?;
        cfg.check_storage()?;
        let mut all = vec![("limits_config".to_string(), cfg.limits_config.clone())];
        for tenant in cfg.overrides.keys() {
            let l = cfg
                .limits_for_checked(tenant)
                .map_err(|m| (format!("overrides.{tenant}"), m))?;
            all.push((format!("overrides.{tenant}"), l));
        }
        for (key, l) in all {
            for (i, r) in l.retention_stream.iter().enumerate() {
                crate::logql::parse_selector(&r.selector).map_err(|e| {
                    (
                        format!("{key}.retention_stream[{i}].selector"),
                        e.to_string(),
                    )
                })?;
            }
        }
        Ok(())
    }

    fn check_storage(&self) -> Result<(), (String, String)> {
        let st = &self.common.storage;
        let named = [st.s3.is_some(), st.gcs.is_some(), st.azure.is_some()];
        if named.iter().filter(|n| **n).count() > 1 {
            return Err((
                "common.storage".into(),
                "name one object store (s3, gcs or azure), not several".into(),
            ));
        }
        if let Some(s3) = &st.s3 {
            if s3.bucketnames.contains(',') {
                return Err((
                    "common.storage.s3.bucketnames".into(),
                    "Sawmill keeps its segments in one bucket: name one".into(),
                ));
            }
            if !s3.endpoint.is_empty()
                && !(s3.endpoint.starts_with("http://") || s3.endpoint.starts_with("https://"))
                && s3.endpoint.contains("://")
            {
                return Err((
                    "common.storage.s3.endpoint".into(),
                    format!("{:?} is not host:port or an http(s):// URL", s3.endpoint),
                ));
            }
        }
        Ok(())
    }

    fn check_ruler(&self) -> Result<(), (String, String)> {
        let r = &self.ruler;
        for (key, d) in [
            ("ruler.evaluation_interval", r.evaluation_interval),
            ("ruler.poll_interval", r.poll_interval),
            ("ruler.resend_delay", r.resend_delay),
        ] {
            if d.is_zero() {
                return Err((key.into(), "must be more than 0s".into()));
            }
        }
        for url in r.alertmanager_urls() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err((
                    "ruler.alertmanager_url".into(),
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        let rw = &r.remote_write;
        if rw.enabled
            && !(rw.client.url.starts_with("http://") || rw.client.url.starts_with("https://"))
        {
            return Err((
                "ruler.remote_write.client.url".into(),
                "remote_write is enabled: set an http(s):// URL such as http://prometheus:9090/api/v1/write".into(),
            ));
        }
        Ok(())
    }

    pub fn data_dir(&self) -> &Path {
        &self.common.path_prefix
    }

    pub fn listen_addr(&self) -> String {
        format!(
            "{}:{}",
            self.server.http_listen_address, self.server.http_listen_port
        )
    }

    /// Applies `--listen HOST:PORT`.
    pub fn set_listen(&mut self, listen: &str) -> Result<(), ConfigError> {
        let (host, port) = listen.rsplit_once(':').ok_or_else(|| {
            ConfigError::Value(format!("--listen {listen:?}: expected HOST:PORT"))
        })?;
        self.server.http_listen_port = port
            .parse()
            .map_err(|_| ConfigError::Value(format!("--listen {listen:?}: bad port")))?;
        self.server.http_listen_address = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(())
    }

    /// The limits of one tenant: `limits_config` with that tenant's overrides applied.
    pub fn limits_for(&self, tenant: &str) -> Limits {
        let mut l = self
            .limits_for_checked(tenant)
            .unwrap_or_else(|_| self.limits_config.clone());
        if self.compactor.retention_enabled == Some(false) {
            l.retention_period = Duration::ZERO;
            l.retention_stream.clear();
        }
        l
    }

    fn limits_for_checked(&self, tenant: &str) -> Result<Limits, String> {
        let Some(over) = self.overrides.get(tenant) else {
            return Ok(self.limits_config.clone());
        };
        let base =
            serde_yaml::to_value(LimitsSer(&self.limits_config)).map_err(|e| e.to_string())?;
        let mut map = match base {
            serde_yaml::Value::Mapping(m) => m,
            _ => unreachable!("bug: limits serialize to a mapping"),
        };
        for (k, v) in over {
            map.insert(k.clone(), v.clone());
        }
        let de = serde_yaml::Value::Mapping(map);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            format!("{path}: {}", e.into_inner())
        })
    }
}

/// Serializes limits in the form they are read back (durations and sizes as plain numbers).
struct LimitsSer<'a>(&'a Limits);

impl serde::Serialize for LimitsSer<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let l = self.0;
        let dur = |d: Duration| format!("{}ms", d.as_millis());
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("ingestion_rate_mb", &l.ingestion_rate_mb)?;
        m.serialize_entry("ingestion_burst_size_mb", &l.ingestion_burst_size_mb)?;
        m.serialize_entry("max_line_size", &l.max_line_size)?;
        m.serialize_entry("max_label_names_per_series", &l.max_label_names_per_series)?;
        m.serialize_entry("max_label_name_length", &l.max_label_name_length)?;
        m.serialize_entry("max_label_value_length", &l.max_label_value_length)?;
        m.serialize_entry("reject_old_samples", &l.reject_old_samples)?;
        m.serialize_entry(
            "reject_old_samples_max_age",
            &dur(l.reject_old_samples_max_age),
        )?;
        m.serialize_entry("creation_grace_period", &dur(l.creation_grace_period))?;
        m.serialize_entry("allow_structured_metadata", &l.allow_structured_metadata)?;
        m.serialize_entry(
            "max_structured_metadata_size",
            &l.max_structured_metadata_size,
        )?;
        m.serialize_entry(
            "max_structured_metadata_entries_count",
            &l.max_structured_metadata_entries_count,
        )?;
        m.serialize_entry("out_of_order_time_window", &dur(l.out_of_order_time_window))?;
        m.serialize_entry(
            "max_global_streams_per_user",
            &l.max_global_streams_per_user,
        )?;
        m.serialize_entry(
            "max_entries_limit_per_query",
            &l.max_entries_limit_per_query,
        )?;
        m.serialize_entry("max_query_series", &l.max_query_series)?;
        m.serialize_entry(
            "max_concurrent_tail_requests",
            &l.max_concurrent_tail_requests,
        )?;
        m.serialize_entry("max_query_length", &dur(l.max_query_length))?;
        m.serialize_entry("query_timeout", &dur(l.query_timeout))?;
        m.serialize_entry("max_query_parallelism", &l.max_query_parallelism)?;
        m.serialize_entry(
            "max_outstanding_requests_per_tenant",
            &l.max_outstanding_requests_per_tenant,
        )?;
        m.serialize_entry("max_query_bytes_read", &l.max_query_bytes_read)?;
        m.serialize_entry("max_query_memory", &l.max_query_memory)?;
        m.serialize_entry("max_query_lookback", &dur(l.max_query_lookback))?;
        m.serialize_entry("retention_period", &dur(l.retention_period))?;
        m.serialize_entry("retention_stream", &l.retention_stream)?;
        m.serialize_entry("discover_service_name", &l.discover_service_name)?;
        m.serialize_entry("discover_log_levels", &l.discover_log_levels)?;
        m.serialize_entry("log_level_fields", &l.log_level_fields)?;
        m.serialize_entry("per_stream_rate_limit", &l.per_stream_rate_limit)?;
        m.serialize_entry(
            "per_stream_rate_limit_burst",
            &l.per_stream_rate_limit_burst,
        )?;
        m.end()
    }
}

/// Parses YAML text into a tree; empty text (or only comments) is an empty mapping.
fn parse_tree(text: &str) -> Result<serde_yaml::Value, (String, String)> {
    let v: serde_yaml::Value = if text.trim().is_empty() {
        serde_yaml::Value::Null
    } else {
        serde_yaml::from_str(text).map_err(|e| ("(yaml syntax)".to_string(), e.to_string()))?
    };
    Ok(match v {
        serde_yaml::Value::Null => serde_yaml::Value::Mapping(Default::default()),
        v => v,
    })
}

/// Expands `${VAR}` and `${VAR:-default}` (default when unset or empty); `$$` is a literal `$`;
/// any other `$` is kept as it is (LogQL regexes use it). Whole-line comments are left alone.
/// The error is (line number, message).
pub fn expand_env(text: &str, env: &BTreeMap<String, String>) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') || !line.contains('$') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(a) = after.strip_prefix('$') {
                out.push('$');
                rest = a;
            } else if let Some(a) = after.strip_prefix('{') {
                let end = a.find('}').ok_or_else(|| {
                    (
                        n + 1,
                        "unterminated ${: write ${NAME}, or $$ for a literal $".to_string(),
                    )
                })?;
                let inner = &a[..end];
                let (name, default) = match inner.split_once(":-") {
                    Some((name, d)) => (name, Some(d)),
                    None => (inner, None),
                };
                let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err((
                        n + 1,
                        format!("invalid variable name in ${{{inner}}}: use letters, digits and _"),
                    ));
                }
                match (env.get(name).filter(|v| !v.is_empty() || default.is_none()), default) {
                    (Some(v), _) => out.push_str(v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => {
                        return Err((
                            n + 1,
                            format!(
                                "environment variable {name} is not set: set it, or write ${{{name}:-default}}"
                            ),
                        ))
                    }
                }
                rest = &a[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
    }
    Ok(out)
}

/// Applies `SAWMILL_*` overrides to the tree; returns (variable, dotted key) of each applied.
fn apply_env_overrides(
    tree: &mut serde_yaml::Value,
    env: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    use serde_yaml::Value;
    let mut applied = Vec::new();
    for (var, raw) in env {
        let Some(name) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let lower = name.to_ascii_lowercase();
        if !lower.contains("__") && !TOP_LEVEL_SCALARS.contains(&lower.as_str()) {
            continue;
        }
        let segments: Vec<&str> = lower.split("__").collect();
        let key = segments.join(".");
        let err = |msg: String| ConfigError::Env {
            var: var.clone(),
            key: key.clone(),
            msg,
        };
        if segments.iter().any(|s| s.is_empty()) {
            return Err(err(
                "empty key segment: join keys with exactly two underscores, e.g. SAWMILL_SERVER__HTTP_LISTEN_PORT".into(),
            ));
        }
        let mut node = &mut *tree;
        for (i, seg) in segments.iter().enumerate() {
            let Value::Mapping(map) = node else {
                return Err(err(format!(
                    "{} is not a section, it cannot have key {seg:?}",
                    segments[..i].join(".")
                )));
            };
            let k = Value::String((*seg).to_string());
            if i + 1 == segments.len() {
                map.insert(k, env_value(raw));
                break;
            }
            let child = map
                .entry(k)
                .or_insert_with(|| Value::Mapping(Default::default()));
            if child.is_null() {
                *child = Value::Mapping(Default::default());
            }
            node = child;
        }
        applied.push((var.clone(), key));
    }
    Ok(applied)
}

/// An environment value as a YAML value: `3100` a number, `true` a bool, `24h` a string,
/// `[a, b]` a list; empty, or text that is not YAML, is kept as a string.
fn env_value(raw: &str) -> serde_yaml::Value {
    if raw.trim().is_empty() {
        return serde_yaml::Value::String(raw.to_string());
    }
    match serde_yaml::from_str::<serde_yaml::Value>(raw) {
        Ok(serde_yaml::Value::Null) | Err(_) => serde_yaml::Value::String(raw.to_string()),
        Ok(v) => v,
    }
}

/// A duration setting: a bare number is seconds, anything else is read by LogQL's duration
/// parser (Prometheus' `30d`, `1h30m`, then Go's `1.5h`, `250ms`); negative is refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    match crate::logql::parse_duration(s) {
        Ok(d) if d.as_nanos() >= 0 => Ok(Duration::from_nanos(d.as_nanos() as u64)),
        _ => Err(format!(
            "invalid duration {s:?}: expected e.g. 30s, 5m, 1h30m, 7d"
        )),
    }
}

/// A byte-size setting, read as Loki's flags read it (go-humanize, through LogQL's byte-size
/// parser): `256KB` = 256000, `64KiB` = 65536, `1,000`, `1.5GiB`, or a bare number of bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    crate::logql::go::parse_bytes(s.trim())
        .map_err(|e| format!("invalid byte size {s:?}: {e} (expected e.g. 256KB or 1MiB)"))
}

fn de_flexible<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a number or a string")
        }
        fn visit_u64<E>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_str<E>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(V)
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_duration(&de_flexible(d)?).map_err(serde::de::Error::custom)
}

/// A duration as Go writes one and [`parse_duration`] reads it back: `1h30m`, `250ms`, `0s`.
fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&duration_text(*d))
}

pub fn duration_text(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let mut out = String::new();
    for (n, unit) in [
        (secs / 3600, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from(nanos / 1000 % 1000), "us"),
        (u64::from(nanos % 1000), "ns"),
    ] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

pub(crate) fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    parse_bytes(&de_flexible(d)?).map_err(serde::de::Error::custom)
}

/// `pattern_ingester:` (Loki's section; `max_memory` is Sawmill's).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PatternIngesterConfig {
    /// Mine patterns and serve `/loki/api/v1/patterns` (404 when off).
    pub enabled: bool,
    /// Patterns kept per stream; the least recently seen one goes first.
    pub max_clusters: usize,
    /// Longer lines (or JSON messages) are not mined.
    pub max_allowed_line_length: usize,
    /// Upper bound of the miner's memory, all tenants and streams together.
    #[serde(deserialize_with = "de_bytes")]
    pub max_memory: u64,
}

impl Default for PatternIngesterConfig {
    fn default() -> Self {
        PatternIngesterConfig {
            enabled: true,
            max_clusters: 300,
            max_allowed_line_length: 3000,
            max_memory: 64 << 20,
        }
    }
}

/// Loki's default `discover_service_name` list.
pub fn default_service_name_labels() -> Vec<String> {
    [
        "service",
        "app",
        "application",
        "app_name",
        "name",
        "app_kubernetes_io_name",
        "container",
        "container_name",
        "k8s_container_name",
        "component",
        "workload",
        "job",
        "k8s_job_name",
    ]
    .map(String::from)
    .to_vec()
}

/// Loki's default `log_level_fields`.
pub fn default_level_fields() -> Vec<String> {
    [
        "level", "LEVEL", "Level", "Severity", "severity", "SEVERITY", "lvl", "LVL", "Lvl",
    ]
    .map(String::from)
    .to_vec()
}

/// A byte size in binary units, as Loki's `flagext.ByteSize` reads it: `3MB` = 3 MiB. Read by
/// LogQL's one byte-size parser, with SI unit names taken as their binary twins.
fn de_datasize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let s = de_flexible(d)?;
    crate::logql::go::parse_datasize(s.trim()).map_err(|e| {
        serde::de::Error::custom(format!("invalid byte size {s:?}: {e} (expected e.g. 3MB)"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_defaults() {
        let c = Config::from_yaml("").unwrap();
        assert_eq!(c.listen_addr(), "127.0.0.1:3100");
        assert_eq!(c.data_dir(), Path::new("./data"));
        assert_eq!(c.limits_config.max_line_size, 256_000);
    }

    #[test]
    fn documented_config_is_the_defaults() {
        let documented = Config::from_yaml(include_str!("../config/sawmill.yaml")).unwrap();
        let d = Config::default();
        assert_eq!(format!("{documented:?}"), format!("{d:?}"));
        for f in ["minimal.yaml", "bench.yaml", "conformance.yaml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join(f);
            Config::from_file(&path).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn every_key_is_documented() {
        let yaml = include_str!("../config/sawmill.yaml");
        let src = include_str!("config.rs");
        for line in src
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("pub ") && l.ends_with(',') && l.contains(':'))
        {
            let name = line["pub ".len()..].split(':').next().unwrap().trim();
            let documented = yaml.lines().any(|y| {
                y.trim_start()
                    .trim_start_matches("# ")
                    .starts_with(&format!("{name}:"))
            });
            assert!(
                documented,
                "config key {name} is not documented in config/sawmill.yaml"
            );
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let (key, msg) = Config::from_yaml("limits_config:\n  max_line_sise: 10\n").unwrap_err();
        assert_eq!(key, "limits_config.max_line_sise");
        assert!(msg.contains("max_line_sise"), "{msg}");
    }

    #[test]
    fn loki_names_and_units() {
        let c = Config::from_yaml(
            "auth_enabled: true\nserver:\n  http_listen_port: 9999\nlimits_config:\n  max_line_size: 1MB\n  reject_old_samples: false\n  reject_old_samples_max_age: 1w\ningester:\n  wal:\n    fsync: always\n",
        )
        .unwrap();
        assert!(c.auth_enabled);
        assert_eq!(c.server.http_listen_port, 9999);
        assert_eq!(c.limits_config.max_line_size, 1_000_000);
        assert!(!c.limits_config.reject_old_samples);
        assert_eq!(
            c.limits_config.reject_old_samples_max_age,
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(c.ingester.wal.fsync, FsyncMode::Always);
    }

    #[test]
    fn tenant_overrides() {
        let c = Config::from_yaml("overrides:\n  team-a:\n    max_line_size: 10KB\n").unwrap();
        assert_eq!(c.limits_for("team-a").max_line_size, 10_000);
        assert_eq!(c.limits_for("team-b").max_line_size, 256_000);
        assert!(Config::from_yaml("overrides:\n  team-a:\n    nope: 1\n").is_err());
    }

    #[test]
    fn overrides_start_from_every_limit() {
        // An empty override must give back exactly `limits_config`: every field serializes.
        let c = Config::from_yaml(
            "limits_config:\n  max_line_size: 5KB\n  query_timeout: 2m\noverrides:\n  t: {}\n",
        )
        .unwrap();
        assert_eq!(
            format!("{:?}", c.limits_for("t")),
            format!("{:?}", c.limits_config)
        );
    }

    #[test]
    fn retention_rules_are_checked() {
        let c = Config::from_yaml(
            "limits_config:\n  retention_period: 744h\n  retention_stream:\n  - selector: '{level=\"debug\"}'\n    priority: 1\n    period: 24h\noverrides:\n  t:\n    retention_period: 1h\n",
        )
        .unwrap();
        assert_eq!(
            c.limits_for("t").retention_period,
            Duration::from_secs(3600)
        );
        assert_eq!(
            c.limits_for("t").retention_stream.len(),
            1,
            "kept from limits_config"
        );
        assert_eq!(
            c.limits_config.retention_stream[0].period,
            Duration::from_secs(86400)
        );
        let (key, _) = Config::from_yaml(
            "overrides:\n  t:\n    retention_stream:\n    - selector: 'nope'\n      period: 1h\n",
        )
        .unwrap_err();
        assert_eq!(key, "overrides.t.retention_stream[0].selector");
    }

    #[test]
    fn retention_enabled_false_turns_retention_off() {
        let on = "limits_config:\n  retention_period: 24h\n";
        let c = Config::from_yaml(on).unwrap();
        assert_eq!(
            c.limits_for("t").retention_period,
            Duration::from_secs(86400)
        );
        let c = Config::from_yaml(&format!("{on}compactor:\n  retention_enabled: true\n")).unwrap();
        assert_eq!(
            c.limits_for("t").retention_period,
            Duration::from_secs(86400)
        );
        let c =
            Config::from_yaml(&format!("{on}compactor:\n  retention_enabled: false\n")).unwrap();
        assert_eq!(c.limits_for("t").retention_period, Duration::ZERO);
    }

    #[test]
    fn loki_keys_are_set_aside_and_named() {
        let c = Config::from_yaml(
            "server:\n  grpc_listen_port: 9095\n  http_listen_port: 3101\nschema_config:\n  configs: []\noverrides:\n  t:\n    split_queries_by_interval: 15m\n    max_line_size: 1KB\n",
        )
        .unwrap();
        assert_eq!(c.server.http_listen_port, 3101);
        assert_eq!(c.limits_for("t").max_line_size, 1000);
        assert_eq!(
            c.ignored_loki_keys(),
            [
                "overrides.t.split_queries_by_interval",
                "schema_config",
                "server.grpc_listen_port"
            ]
        );
        let (key, _) = Config::from_yaml("overrides:\n  t:\n    split_queries_by_intervall: 1m\n")
            .unwrap_err();
        assert_eq!(key, "overrides.t");
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[track_caller]
    fn expands(text: &str, vars: &[(&str, &str)], want: Result<&str, &str>) {
        let got = expand_env(text, &env(vars));
        match (got, want) {
            (Ok(g), Ok(w)) => assert_eq!(g, w, "{text}"),
            (Err((_, g)), Err(w)) => assert!(g.contains(w), "{text}: {g}"),
            (g, w) => panic!("{text}: got {g:?}, want {w:?}"),
        }
    }

    #[test]
    fn env_expansion() {
        expands("a: ${X}\n", &[("X", "1")], Ok("a: 1\n"));
        expands("a: ${X:-7}\n", &[], Ok("a: 7\n"));
        expands("a: ${X:-7}\n", &[("X", "")], Ok("a: 7\n"));
        expands("a: ${X:-}\n", &[], Ok("a: \n"));
        expands("a: ${X}${Y}\n", &[("X", "1"), ("Y", "2")], Ok("a: 12\n"));
        expands("a: $${X}\n", &[], Ok("a: ${X}\n"));
        expands("a: cost$$\n", &[], Ok("a: cost$\n"));
        expands("s: '{app=~\"x$\"}'\n", &[], Ok("s: '{app=~\"x$\"}'\n"));
        expands("a: $X\n", &[("X", "1")], Ok("a: $X\n"));
        expands(
            "# uses ${UNSET}\na: 1\n",
            &[],
            Ok("# uses ${UNSET}\na: 1\n"),
        );
        expands(
            "a: ${UNSET}\n",
            &[],
            Err("environment variable UNSET is not set"),
        );
        expands("a: ${X\n", &[], Err("unterminated ${"));
        expands("a: ${1X}\n", &[], Err("invalid variable name"));
        expands("a: ${}\n", &[], Err("invalid variable name"));
    }

    #[test]
    fn unset_variable_names_line() {
        let e = Config::load_with(
            Some(Path::new("s.yaml")),
            "server:\n  http_listen_port: ${PORT}\n",
            &env(&[]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "config file s.yaml line 2: environment variable PORT is not set: set it, or write ${PORT:-default}"
        );
    }

    #[track_caller]
    fn overrides(file: &str, vars: &[(&str, &str)], check: impl Fn(&Config) -> bool) {
        let c =
            Config::load_with(None, file, &env(vars)).unwrap_or_else(|e| panic!("{vars:?}: {e}"));
        assert!(check(&c), "{vars:?}: {c:?}");
    }

    #[track_caller]
    /// The error starts with `want` (lists of expected keys are left out of `want`).
    fn override_fails(vars: &[(&str, &str)], want: &str) {
        let file = "auth_enabled: false\nserver:\n  log_level: info\n";
        let e = Config::load_with(None, file, &env(vars)).unwrap_err();
        assert!(e.to_string().starts_with(want), "{vars:?}: {e}");
    }

    #[test]
    fn env_overrides() {
        overrides("", &[("SAWMILL_SERVER__HTTP_LISTEN_PORT", "3200")], |c| {
            c.server.http_listen_port == 3200
        });
        overrides(
            "limits_config:\n  retention_period: 1h\n",
            &[("SAWMILL_LIMITS_CONFIG__RETENTION_PERIOD", "24h")],
            |c| c.limits_config.retention_period == Duration::from_secs(86400),
        );
        overrides("", &[("SAWMILL_AUTH_ENABLED", "true")], |c| c.auth_enabled);
        overrides(
            "",
            &[("SAWMILL_LIMITS_CONFIG__MAX_LINE_SIZE", "1MB")],
            |c| c.limits_config.max_line_size == 1_000_000,
        );
        overrides("", &[("SAWMILL_INGESTER__WAL__FSYNC", "always")], |c| {
            c.ingester.wal.fsync == FsyncMode::Always
        });
        overrides(
            "",
            &[("SAWMILL_COMMON__PATH_PREFIX", "/srv/sawmill")],
            |c| c.data_dir() == Path::new("/srv/sawmill"),
        );
        overrides(
            "",
            &[("SAWMILL_OVERRIDES__TEAM__MAX_LINE_SIZE", "10KB")],
            |c| c.limits_for("team").max_line_size == 10_000,
        );
        overrides(
            "",
            &[(
                "SAWMILL_LIMITS_CONFIG__RETENTION_STREAM",
                "[{selector: '{app=\"x\"}', period: 1h}]",
            )],
            |c| c.limits_config.retention_stream.len() == 1,
        );
        // Not config keys: left alone.
        overrides(
            "",
            &[
                ("SAWMILL_LOG", "debug"),
                ("SAWMILL_TEST_SEED", "1"),
                ("OTHER__X", "1"),
            ],
            |c| c.server.log_level == "info",
        );
    }

    #[test]
    fn bad_env_overrides_name_the_variable() {
        override_fails(
            &[("SAWMILL_SERVER__HTTP_LISTEN_PORT", "many")],
            "environment variable SAWMILL_SERVER__HTTP_LISTEN_PORT (server.http_listen_port): invalid type: string \"many\", expected u16",
        );
        override_fails(
            &[("SAWMILL_LIMITS_CONFIG__RETENTION_PEROD", "24h")],
            "environment variable SAWMILL_LIMITS_CONFIG__RETENTION_PEROD (limits_config.retention_perod): unknown field `retention_perod`, expected one of",
        );
        override_fails(
            &[("SAWMILL_SERVR__HTTP_LISTEN_PORT", "1")],
            "environment variable SAWMILL_SERVR__HTTP_LISTEN_PORT (servr): unknown field `servr`, expected one of",
        );
        override_fails(
            &[("SAWMILL_AUTH_ENABLED__X", "1")],
            "environment variable SAWMILL_AUTH_ENABLED__X (auth_enabled.x): auth_enabled is not a section, it cannot have key \"x\"",
        );
        override_fails(
            &[("SAWMILL_SERVER____PORT", "1")],
            "environment variable SAWMILL_SERVER____PORT (server..port): empty key segment: join keys with exactly two underscores, e.g. SAWMILL_SERVER__HTTP_LISTEN_PORT",
        );
        override_fails(
            &[("SAWMILL_SERVER__LOG_FORMAT", "xml")],
            "environment variable SAWMILL_SERVER__LOG_FORMAT (server.log_format): unknown log format \"xml\": use json or text",
        );
    }

    #[track_caller]
    fn dur(s: &str, secs: f64) {
        assert_eq!(
            parse_duration(s).unwrap(),
            Duration::from_secs_f64(secs),
            "{s}"
        );
    }

    #[test]
    fn durations() {
        dur("10s", 10.0);
        dur("1h30m", 5400.0);
        dur("250ms", 0.25);
        dur("7d", 604800.0);
        dur("1.5", 1.5);
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("256KB").unwrap(), 256_000);
        assert_eq!(parse_bytes("64KiB").unwrap(), 65_536);
        assert_eq!(parse_bytes("1048576").unwrap(), 1_048_576);
        assert!(parse_bytes("12 parsecs").is_err());
    }
}
