//! OTLP logs (`POST /otlp/v1/logs`): decoding an `ExportLogsServiceRequest` (protobuf or
//! OTLP/JSON, gzip or not) and mapping it to a [`PushRequest`] the way Loki 3.4 maps it, so the
//! records then take the same validation, WAL and head path as a Loki push.
//!
//! - Resource attributes on [`DEFAULT_INDEX_LABELS`] become stream labels, their names
//!   normalized as Prometheus' OTLP translator does (`service.name` → `service_name`: every
//!   character that is not a letter or digit becomes `_`, a leading digit gets `key_`, a single
//!   leading `_` gets `key`). `service_name` is discovered from those labels with
//!   `limits_config.discover_service_name`, else `unknown_service` (when discovery is on).
//! - Every other resource, scope and log attribute becomes structured metadata (map values
//!   flattened to `parent_child`), plus `scope_name`, `scope_version`,
//!   `scope_dropped_attributes_count`, `observed_timestamp` (when both times are set),
//!   `severity_number`, `severity_text`, `dropped_attributes_count`, `flags`, `trace_id` and
//!   `span_id` (hex) when they are not zero or empty.
//! - The body becomes the line: a string as it is, other kinds as the Collector's `AsString`
//!   renders them (numbers, `true`/`false`, base64 bytes, maps and arrays as Go's JSON).
//! - The timestamp is `time_unix_nano`, else `observed_time_unix_nano`, else now.
//!
//! `detected_level` is not set here: the ingest path derives it (from `severity_number`) like
//! for any push (`super::discover`). Neighbours: `http::otlp` calls in; `decode` bounds sizes.

pub mod proto;

use std::collections::HashMap;

use thiserror::Error;

use super::decode::{read_bounded, DecodeError};
use super::{Entry, PushRequest, PushStream, RawLabels};
use proto::{AnyValue, ExportLogsServiceRequest, KeyValue, Value};

/// Loki's `distributor.otlp_config.default_resource_attributes_as_index_labels`.
pub const DEFAULT_INDEX_LABELS: [&str; 18] = [
    "service.name",
    "service.namespace",
    "service.instance.id",
    "deployment.environment",
    "deployment.environment.name",
    "cloud.region",
    "cloud.availability_zone",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.container.name",
    "container.name",
    "k8s.replicaset.name",
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
];

/// The label service-name discovery sets, and its value when nothing names the service.
pub const SERVICE_NAME: &str = "service_name";
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// The two OTLP/HTTP body encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// `application/x-protobuf` or `application/json` (parameters ignored); anything else is
    /// not OTLP/HTTP.
    pub fn from_content_type(ct: Option<&str>) -> Option<Encoding> {
        let c = ct?.split(';').next()?.trim().to_ascii_lowercase();
        match c.as_str() {
            "application/x-protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

#[derive(Debug, Error)]
pub enum OtlpError {
    #[error(transparent)]
    Body(#[from] DecodeError),
    #[error("decoding OTLP protobuf: {0}")]
    Proto(String),
    #[error("decoding OTLP JSON: {0}")]
    Json(String),
    #[error("log record {index}: {what} must be {want} bytes, got {got}")]
    IdLength {
        index: usize,
        what: &'static str,
        want: usize,
        got: usize,
    },
}

/// Decodes a body of `encoding`, after `Content-Encoding` (`gzip` or none), within `max_bytes`
/// before and after decompression.
pub fn decode(
    body: &[u8],
    encoding: Encoding,
    content_encoding: Option<&str>,
    max_bytes: u64,
) -> Result<ExportLogsServiceRequest, OtlpError> {
    if body.len() as u64 > max_bytes {
        return Err(DecodeError::TooLarge {
            size: body.len() as u64,
            limit: max_bytes,
        }
        .into());
    }
    let raw = match content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .as_deref()
    {
        None | Some("identity") => std::borrow::Cow::Borrowed(body),
        Some("gzip") | Some("x-gzip") => std::borrow::Cow::Owned(read_bounded(
            flate2::read::MultiGzDecoder::new(body),
            max_bytes,
        )?),
        Some(other) => return Err(DecodeError::UnsupportedEncoding(other.to_string()).into()),
    };
    let req = match encoding {
        Encoding::Protobuf => {
            use prost::Message;
            ExportLogsServiceRequest::decode(&raw[..])
                .map_err(|e| OtlpError::Proto(e.to_string()))?
        }
        Encoding::Json => {
            serde_json::from_slice(&raw).map_err(|e| OtlpError::Json(e.to_string()))?
        }
    };
    check_ids(&req)?;
    Ok(req)
}

/// Trace IDs are 16 bytes and span IDs 8, or empty (as the Collector's decoder insists).
fn check_ids(req: &ExportLogsServiceRequest) -> Result<(), OtlpError> {
    let records = req
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records);
    for (index, r) in records.enumerate() {
        for (what, id, want) in [("trace_id", &r.trace_id, 16), ("span_id", &r.span_id, 8)] {
            if !id.is_empty() && id.len() != want {
                return Err(OtlpError::IdLength {
                    index,
                    what,
                    want,
                    got: id.len(),
                });
            }
        }
    }
    Ok(())
}

/// The number of log records in a request.
pub fn record_count(req: &ExportLogsServiceRequest) -> usize {
    req.resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

/// Maps a request to streams: one per distinct label set, entries in request order.
/// `discover_service_name` is the tenant's `limits_config.discover_service_name` (empty: off);
/// `now` (Unix ns) stamps records that carry no time at all.
pub fn to_push_request(
    req: ExportLogsServiceRequest,
    discover_service_name: &[String],
    now: i64,
) -> PushRequest {
    let mut streams: Vec<PushStream> = Vec::new();
    let mut by_labels: HashMap<Vec<(String, String)>, usize> = HashMap::new();
    for rl in req.resource_logs {
        let resource = rl.resource.unwrap_or_default();
        let has_service_name = resource.attributes.iter().any(|kv| {
            kv.key == "service.name" && kv.value.as_ref().is_some_and(|v| !as_string(v).is_empty())
        });
        let mut found_service = has_service_name;
        let discover = !discover_service_name.is_empty();
        let mut labels: Vec<(String, String)> = Vec::new();
        let mut resource_md: Vec<(String, String)> = Vec::new();
        for kv in &resource.attributes {
            let mut flat = Vec::new();
            flatten(&kv.key, kv.value.as_ref(), "", &mut flat);
            if DEFAULT_INDEX_LABELS.contains(&kv.key.as_str()) {
                for (name, value) in flat {
                    if discover && !found_service && discover_service_name.contains(&name) {
                        set(&mut labels, SERVICE_NAME.to_string(), value.clone());
                        found_service = true;
                    }
                    set(&mut labels, name, value);
                }
            } else {
                resource_md.extend(flat);
            }
        }
        if discover && !found_service {
            set(
                &mut labels,
                SERVICE_NAME.to_string(),
                UNKNOWN_SERVICE.to_string(),
            );
        }
        // An empty value is no label (Loki's label parser drops it).
        labels.retain(|(_, v)| !v.is_empty());
        labels.sort();
        for sl in rl.scope_logs {
            let scope = sl.scope.unwrap_or_default();
            let mut scope_md = Vec::new();
            for kv in &scope.attributes {
                flatten(&kv.key, kv.value.as_ref(), "", &mut scope_md);
            }
            if !scope.name.is_empty() {
                scope_md.push(("scope_name".to_string(), scope.name.clone()));
            }
            if !scope.version.is_empty() {
                scope_md.push(("scope_version".to_string(), scope.version.clone()));
            }
            if scope.dropped_attributes_count != 0 {
                scope_md.push((
                    "scope_dropped_attributes_count".to_string(),
                    scope.dropped_attributes_count.to_string(),
                ));
            }
            if sl.log_records.is_empty() {
                continue;
            }
            let slot = *by_labels.entry(labels.clone()).or_insert_with(|| {
                streams.push(PushStream {
                    labels: RawLabels::Pairs(labels.clone()),
                    entries: Vec::new(),
                });
                streams.len() - 1
            });
            for r in sl.log_records {
                let mut e = record_to_entry(r, now);
                e.metadata.extend(resource_md.iter().cloned());
                e.metadata.extend(scope_md.iter().cloned());
                streams[slot].entries.push(e);
            }
        }
    }
    PushRequest { streams }
}

/// Sets `name` (a label map kept as pairs: a later value replaces an earlier one).
fn set(labels: &mut Vec<(String, String)>, name: String, value: String) {
    match labels.iter_mut().find(|(n, _)| *n == name) {
        Some(slot) => slot.1 = value,
        None => labels.push((name, value)),
    }
}

fn record_to_entry(r: proto::LogRecord, now: i64) -> Entry {
    let mut md = Vec::with_capacity(r.attributes.len() + 7);
    for kv in &r.attributes {
        flatten(&kv.key, kv.value.as_ref(), "", &mut md);
    }
    if r.time_unix_nano != 0 && r.observed_time_unix_nano != 0 {
        md.push((
            "observed_timestamp".to_string(),
            (r.observed_time_unix_nano as i64).to_string(),
        ));
    }
    if r.severity_number != 0 {
        md.push(("severity_number".to_string(), r.severity_number.to_string()));
    }
    if !r.severity_text.is_empty() {
        md.push(("severity_text".to_string(), r.severity_text.clone()));
    }
    if r.dropped_attributes_count != 0 {
        md.push((
            "dropped_attributes_count".to_string(),
            r.dropped_attributes_count.to_string(),
        ));
    }
    if r.flags != 0 {
        md.push(("flags".to_string(), r.flags.to_string()));
    }
    if r.trace_id.iter().any(|b| *b != 0) {
        md.push(("trace_id".to_string(), hex(&r.trace_id)));
    }
    if r.span_id.iter().any(|b| *b != 0) {
        md.push(("span_id".to_string(), hex(&r.span_id)));
    }
    let ts = if r.time_unix_nano != 0 {
        r.time_unix_nano as i64
    } else if r.observed_time_unix_nano != 0 {
        r.observed_time_unix_nano as i64
    } else {
        now
    };
    Entry {
        ts,
        line: r.body.as_ref().map(as_string).unwrap_or_default(),
        metadata: md,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One attribute as (name, value) pairs: a map value flattens to one pair per leaf, named
/// `parent_child`; every name is normalized.
fn flatten(key: &str, value: Option<&AnyValue>, prefix: &str, out: &mut Vec<(String, String)>) {
    let name = if prefix.is_empty() {
        normalize_label(key)
    } else {
        normalize_label(&format!("{prefix}_{key}"))
    };
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::Kvlist(kvs)) => {
            for KeyValue { key, value } in &kvs.values {
                flatten(key, value.as_ref(), &name, out);
            }
        }
        _ => out.push((name, value.map(as_string).unwrap_or_default())),
    }
}

/// Prometheus' OTLP label normalization: every character that is not a letter or a digit
/// becomes `_`; a name starting with a digit gets `key_` in front, one starting with a single
/// `_` gets `key` (a leading `__` is kept).
pub fn normalize_label(name: &str) -> String {
    if name.is_empty() {
        return String::new();
    }
    let s: String = name
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '_' })
        .collect();
    if s.as_bytes()[0].is_ascii_digit() {
        format!("key_{s}")
    } else if s.starts_with('_') && !s.starts_with("__") {
        format!("key{s}")
    } else {
        s
    }
}

/// An `AnyValue` as text, as the Collector's `Value.AsString` writes it.
pub fn as_string(v: &AnyValue) -> String {
    match &v.value {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Int(i)) => i.to_string(),
        Some(Value::Double(f)) => {
            if f.is_finite() {
                go_float(*f)
            } else {
                let g = if f.is_nan() {
                    "NaN"
                } else if *f > 0.0 {
                    "+Inf"
                } else {
                    "-Inf"
                };
                format!("json: unsupported value: {g}")
            }
        }
        Some(Value::Bytes(b)) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(b)
        }
        Some(Value::Kvlist(_)) | Some(Value::Array(_)) => {
            let mut out = String::new();
            // Go's encoder gives up on NaN and infinities, leaving the text empty.
            if write_go_json(v, &mut out).is_err() {
                out.clear();
            }
            out
        }
    }
}

/// A finite float as Go writes it in JSON (and `AsString`): shortest round-trip digits, plain
/// notation from 1e-6 to below 1e21, else exponent notation with a signed, unpadded exponent.
fn go_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        }
    } else {
        format!("{f}")
    }
}

/// Go's `json.Marshal` of a value's raw form: object keys sorted (a repeated key keeps its
/// last value), strings with `<`, `>`, `&`, U+2028 and U+2029 escaped, bytes as base64, an
/// empty value as `null`. Fails on NaN and infinities, as Go does.
fn write_go_json(v: &AnyValue, out: &mut String) -> Result<(), ()> {
    match &v.value {
        None => out.push_str("null"),
        Some(Value::String(s)) => go_json_str(s, out),
        Some(Value::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(Value::Int(i)) => out.push_str(&i.to_string()),
        Some(Value::Double(f)) => {
            if !f.is_finite() {
                return Err(());
            }
            out.push_str(&go_float(*f));
        }
        Some(Value::Bytes(_)) => go_json_str(&as_string(v), out),
        Some(Value::Array(a)) => {
            out.push('[');
            for (i, x) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(x, out)?;
            }
            out.push(']');
        }
        Some(Value::Kvlist(kvs)) => {
            let mut m: std::collections::BTreeMap<&str, Option<&AnyValue>> = Default::default();
            for kv in &kvs.values {
                m.insert(&kv.key, kv.value.as_ref());
            }
            out.push('{');
            for (i, (k, x)) in m.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_str(k, out);
                out.push(':');
                match x {
                    Some(x) => write_go_json(x, out)?,
                    None => out.push_str("null"),
                }
            }
            out.push('}');
        }
    }
    Ok(())
}

fn go_json_str(s: &str, out: &mut String) {
    out.push_str(&crate::logql::go::json_quote(s));
}

#[cfg(test)]
mod tests {
    use super::proto::*;
    use super::*;

    fn s(v: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(Value::String(v.into())),
        })
    }

    fn kv(k: &str, v: Option<AnyValue>) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: v,
        }
    }

    fn any(v: Value) -> AnyValue {
        AnyValue { value: Some(v) }
    }

    fn default_discovery() -> Vec<String> {
        crate::config::Limits::default().discover_service_name
    }

    #[track_caller]
    fn renders(v: Value, want: &str) {
        assert_eq!(as_string(&any(v)), want);
    }

    #[test]
    fn body_kinds_render_as_the_collector_does() {
        renders(Value::String("plain <text>".into()), "plain <text>");
        renders(Value::Int(-42), "-42");
        renders(Value::Bool(true), "true");
        renders(Value::Double(1.5), "1.5");
        renders(Value::Double(100.0), "100");
        renders(Value::Double(1e21), "1e+21");
        renders(Value::Double(1e-7), "1e-7");
        renders(Value::Double(0.000001), "0.000001");
        renders(Value::Double(f64::NAN), "json: unsupported value: NaN");
        renders(Value::Bytes(vec![0, 1, 2, 255]), "AAEC/w==");
        renders(
            Value::Kvlist(KeyValueList {
                values: vec![
                    kv("z", s("<a&b>")),
                    kv("a", Some(any(Value::Int(1)))),
                    kv("m", None),
                    kv("a", Some(any(Value::Double(2.5)))),
                ],
            }),
            r#"{"a":2.5,"m":null,"z":"\u003ca\u0026b\u003e"}"#,
        );
        renders(
            Value::Array(ArrayValue {
                values: vec![
                    any(Value::Bool(false)),
                    any(Value::Bytes(b"hi".to_vec())),
                    any(Value::Array(ArrayValue { values: vec![] })),
                ],
            }),
            r#"[false,"aGk=",[]]"#,
        );
        renders(
            Value::Array(ArrayValue {
                values: vec![any(Value::Double(f64::INFINITY))],
            }),
            "",
        );
    }

    #[test]
    fn label_names_normalize_like_prometheus() {
        for (from, to) in [
            ("service.name", "service_name"),
            ("k8s.pod.name", "k8s_pod_name"),
            ("http-status", "http_status"),
            ("2xx", "key_2xx"),
            ("_private", "key_private"),
            ("__meta", "__meta"),
            ("", ""),
        ] {
            assert_eq!(normalize_label(from), to, "{from}");
        }
    }

    fn request(
        resource: Vec<KeyValue>,
        scope: InstrumentationScope,
        records: Vec<LogRecord>,
    ) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: resource,
                    dropped_attributes_count: 0,
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope),
                    log_records: records,
                }],
            }],
        }
    }

    #[test]
    fn resource_scope_and_record_map_like_loki() {
        let req = request(
            vec![
                kv("service.name", s("checkout")),
                kv("k8s.namespace.name", s("prod")),
                kv("host.name", s("node-1")),
                kv(
                    "process.runtime",
                    Some(any(Value::Kvlist(KeyValueList {
                        values: vec![kv("name", s("go")), kv("version", s("1.23"))],
                    }))),
                ),
            ],
            InstrumentationScope {
                name: "my.lib".into(),
                version: "1.0.0".into(),
                attributes: vec![kv("scope.attr", s("x"))],
                dropped_attributes_count: 0,
            },
            vec![LogRecord {
                time_unix_nano: 1_700_000_000_000_000_001,
                observed_time_unix_nano: 1_700_000_000_000_000_002,
                severity_number: 17,
                severity_text: "ERROR".into(),
                body: s("payment failed"),
                attributes: vec![kv("http.status_code", Some(any(Value::Int(502))))],
                dropped_attributes_count: 2,
                flags: 1,
                trace_id: (1..=16).collect(),
                span_id: vec![0; 8],
            }],
        );
        let push = to_push_request(req, &default_discovery(), 0);
        assert_eq!(push.streams.len(), 1);
        let st = &push.streams[0];
        assert_eq!(
            st.labels,
            RawLabels::Pairs(vec![
                ("k8s_namespace_name".into(), "prod".into()),
                ("service_name".into(), "checkout".into()),
            ])
        );
        let e = &st.entries[0];
        assert_eq!(e.ts, 1_700_000_000_000_000_001);
        assert_eq!(e.line, "payment failed");
        let md: Vec<(&str, &str)> = e
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            md,
            vec![
                ("http_status_code", "502"),
                ("observed_timestamp", "1700000000000000002"),
                ("severity_number", "17"),
                ("severity_text", "ERROR"),
                ("dropped_attributes_count", "2"),
                ("flags", "1"),
                ("trace_id", "0102030405060708090a0b0c0d0e0f10"),
                ("host_name", "node-1"),
                ("process_runtime_name", "go"),
                ("process_runtime_version", "1.23"),
                ("scope_attr", "x"),
                ("scope_name", "my.lib"),
                ("scope_version", "1.0.0"),
            ]
        );
    }

    #[test]
    fn service_name_is_discovered_or_unknown() {
        let rec = || LogRecord {
            observed_time_unix_nano: 7,
            body: s("x"),
            ..Default::default()
        };
        let labels = |res: Vec<KeyValue>, discover: &[String]| {
            let p = to_push_request(
                request(res, InstrumentationScope::default(), vec![rec()]),
                discover,
                0,
            );
            assert_eq!(p.streams[0].entries[0].ts, 7, "observed time when no time");
            match &p.streams[0].labels {
                RawLabels::Pairs(p) => p.clone(),
                RawLabels::Text(_) => unreachable!(),
            }
        };
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            labels(vec![kv("container.name", s("web"))], &default_discovery()),
            vec![pair("container_name", "web"), pair("service_name", "web")]
        );
        assert_eq!(
            labels(vec![kv("host.name", s("h"))], &default_discovery()),
            vec![pair("service_name", "unknown_service")]
        );
        assert_eq!(
            labels(vec![kv("service.name", s(""))], &default_discovery()),
            vec![pair("service_name", "unknown_service")]
        );
        assert_eq!(labels(vec![kv("host.name", s("h"))], &[]), vec![]);
    }

    #[test]
    fn record_without_times_gets_now_and_resources_merge_by_labels() {
        let mut req = request(
            vec![kv("service.name", s("a"))],
            InstrumentationScope::default(),
            vec![LogRecord::default()],
        );
        req.resource_logs.push(req.resource_logs[0].clone());
        let p = to_push_request(req, &default_discovery(), 99);
        assert_eq!(p.streams.len(), 1);
        assert_eq!(p.streams[0].entries.len(), 2);
        assert_eq!(p.streams[0].entries[0].ts, 99);
        assert_eq!(p.streams[0].entries[0].line, "");
        assert!(p.streams[0].entries[0].metadata.is_empty());
    }

    #[test]
    fn decode_checks_encoding_and_ids() {
        use prost::Message;
        let req = request(
            vec![kv("service.name", s("a"))],
            InstrumentationScope::default(),
            vec![LogRecord {
                trace_id: vec![1, 2, 3],
                ..Default::default()
            }],
        );
        let bytes = req.encode_to_vec();
        assert!(matches!(
            decode(&bytes, Encoding::Protobuf, None, 1 << 20),
            Err(OtlpError::IdLength { .. })
        ));
        assert!(matches!(
            decode(b"\xff\xff", Encoding::Protobuf, None, 1 << 20),
            Err(OtlpError::Proto(_))
        ));
        assert!(matches!(
            decode(b"{}", Encoding::Json, Some("br"), 1 << 20),
            Err(OtlpError::Body(DecodeError::UnsupportedEncoding(_)))
        ));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, br#"{"resourceLogs":[]}"#).unwrap();
        let gz = gz.finish().unwrap();
        assert!(decode(&gz, Encoding::Json, Some("gzip"), 1 << 20).is_ok());
        assert!(matches!(
            decode(&gz, Encoding::Json, Some("gzip"), 5),
            Err(OtlpError::Body(DecodeError::TooLarge { .. }))
        ));
    }
}
