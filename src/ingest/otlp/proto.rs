//! The OTLP logs messages Sawmill reads and writes, with the field numbers of
//! `opentelemetry-proto` (`collector/logs/v1/logs_service.proto`, `logs/v1/logs.proto`,
//! `common/v1/common.proto`, `resource/v1/resource.proto`), declared with `prost` derives so
//! that no `protoc` runs at build time. The same structs read OTLP/JSON through `serde`: keys in
//! lowerCamelCase (the original snake_case names are accepted too, as the Collector accepts
//! them), 64-bit integers as strings or numbers, enums as integers or names, `traceId` and
//! `spanId` as hex, `bytesValue` as base64. Unknown fields are ignored in both encodings.
//! Fields Sawmill does not use (`schema_url`, `event_name`, entity refs) are not declared and
//! are skipped like unknown ones.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// `ExportLogsServiceRequest`.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct ExportLogsServiceRequest {
    #[prost(message, repeated, tag = "1")]
    #[serde(rename = "resourceLogs", alias = "resource_logs")]
    pub resource_logs: Vec<ResourceLogs>,
}

/// `ExportLogsServiceResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportLogsServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportLogsPartialSuccess>,
}

/// `ExportLogsPartialSuccess`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportLogsPartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_log_records: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// `google.rpc.Status`, the body of OTLP/HTTP error responses (`details` left empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct ResourceLogs {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    #[serde(rename = "scopeLogs", alias = "scope_logs")]
    pub scope_logs: Vec<ScopeLogs>,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "2")]
    #[serde(
        rename = "droppedAttributesCount",
        alias = "dropped_attributes_count",
        deserialize_with = "de_u32"
    )]
    pub dropped_attributes_count: u32,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct ScopeLogs {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    #[serde(rename = "logRecords", alias = "log_records")]
    pub log_records: Vec<LogRecord>,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct InstrumentationScope {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "4")]
    #[serde(
        rename = "droppedAttributesCount",
        alias = "dropped_attributes_count",
        deserialize_with = "de_u32"
    )]
    pub dropped_attributes_count: u32,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct LogRecord {
    #[prost(fixed64, tag = "1")]
    #[serde(
        rename = "timeUnixNano",
        alias = "time_unix_nano",
        deserialize_with = "de_u64"
    )]
    pub time_unix_nano: u64,
    #[prost(fixed64, tag = "11")]
    #[serde(
        rename = "observedTimeUnixNano",
        alias = "observed_time_unix_nano",
        deserialize_with = "de_u64"
    )]
    pub observed_time_unix_nano: u64,
    /// `SeverityNumber`: 0 unspecified, 1-4 trace, 5-8 debug, 9-12 info, 13-16 warn,
    /// 17-20 error, 21-24 fatal.
    #[prost(int32, tag = "2")]
    #[serde(
        rename = "severityNumber",
        alias = "severity_number",
        deserialize_with = "de_severity"
    )]
    pub severity_number: i32,
    #[prost(string, tag = "3")]
    #[serde(rename = "severityText", alias = "severity_text")]
    pub severity_text: String,
    #[prost(message, optional, tag = "5")]
    pub body: Option<AnyValue>,
    #[prost(message, repeated, tag = "6")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "7")]
    #[serde(
        rename = "droppedAttributesCount",
        alias = "dropped_attributes_count",
        deserialize_with = "de_u32"
    )]
    pub dropped_attributes_count: u32,
    #[prost(fixed32, tag = "8")]
    #[serde(deserialize_with = "de_u32")]
    pub flags: u32,
    #[prost(bytes = "vec", tag = "9")]
    #[serde(rename = "traceId", alias = "trace_id", deserialize_with = "de_hex")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "10")]
    #[serde(rename = "spanId", alias = "span_id", deserialize_with = "de_hex")]
    pub span_id: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// `AnyValue`: one of its kinds, or none (an empty value).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    #[prost(oneof = "Value", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub value: Option<Value>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(int64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Double(f64),
    #[prost(message, tag = "5")]
    Array(ArrayValue),
    #[prost(message, tag = "6")]
    Kvlist(KeyValueList),
    #[prost(bytes, tag = "7")]
    Bytes(Vec<u8>),
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct KeyValueList {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

impl<'de> Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an OTLP AnyValue object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<AnyValue, A::Error> {
                let mut value = None;
                while let Some(key) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    value = Some(match key.as_ref() {
                        "stringValue" | "string_value" => Value::String(m.next_value()?),
                        "boolValue" | "bool_value" => Value::Bool(m.next_value()?),
                        "intValue" | "int_value" => Value::Int(m.next_value::<I64>()?.0),
                        "doubleValue" | "double_value" => Value::Double(m.next_value::<F64>()?.0),
                        "arrayValue" | "array_value" => Value::Array(m.next_value()?),
                        "kvlistValue" | "kvlist_value" => Value::Kvlist(m.next_value()?),
                        "bytesValue" | "bytes_value" => {
                            use base64::Engine;
                            let s: String = m.next_value()?;
                            Value::Bytes(
                                base64::engine::general_purpose::STANDARD
                                    .decode(s.as_bytes())
                                    .map_err(|e| de::Error::custom(format!("bytesValue: {e}")))?,
                            )
                        }
                        _ => {
                            m.next_value::<de::IgnoredAny>()?;
                            continue;
                        }
                    });
                }
                Ok(AnyValue { value })
            }
            fn visit_unit<E: de::Error>(self) -> Result<AnyValue, E> {
                Ok(AnyValue { value: None })
            }
        }
        d.deserialize_any(V)
    }
}

/// A number written as a JSON number or as a string holding one (proto3 JSON writes 64-bit
/// integers as strings).
fn number_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        S(String),
        U(u64),
        I(i64),
        F(f64),
    }
    Ok(match N::deserialize(d)? {
        N::S(s) => s,
        N::U(u) => u.to_string(),
        N::I(i) => i.to_string(),
        N::F(f) => f.to_string(),
    })
}

fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let t = number_text(d)?;
    t.parse()
        .map_err(|_| de::Error::custom(format!("invalid unsigned 64-bit integer {t:?}")))
}

fn de_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let t = number_text(d)?;
    t.parse()
        .map_err(|_| de::Error::custom(format!("invalid unsigned 32-bit integer {t:?}")))
}

struct I64(i64);

impl<'de> Deserialize<'de> for I64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = number_text(d)?;
        t.parse()
            .map(I64)
            .map_err(|_| de::Error::custom(format!("invalid intValue {t:?}")))
    }
}

struct F64(f64);

impl<'de> Deserialize<'de> for F64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = number_text(d)?;
        match t.as_str() {
            "NaN" => Ok(F64(f64::NAN)),
            "Infinity" => Ok(F64(f64::INFINITY)),
            "-Infinity" => Ok(F64(f64::NEG_INFINITY)),
            _ => t
                .parse()
                .map(F64)
                .map_err(|_| de::Error::custom(format!("invalid doubleValue {t:?}"))),
        }
    }
}

/// `severityNumber` as an integer or as the enum's name (`SEVERITY_NUMBER_INFO`).
fn de_severity<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let t = number_text(d)?;
    if let Ok(n) = t.parse::<i32>() {
        return Ok(n);
    }
    severity_from_name(&t).ok_or_else(|| de::Error::custom(format!("unknown severityNumber {t:?}")))
}

fn severity_from_name(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("SEVERITY_NUMBER_")?;
    if rest == "UNSPECIFIED" {
        return Some(0);
    }
    let (kind, n) = match rest.find(|c: char| c.is_ascii_digit()) {
        Some(i) => (&rest[..i], rest[i..].parse::<i32>().ok()?),
        None => (rest, 1),
    };
    if !(1..=4).contains(&n) {
        return None;
    }
    let base = match kind {
        "TRACE" => 0,
        "DEBUG" => 4,
        "INFO" => 8,
        "WARN" => 12,
        "ERROR" => 16,
        "FATAL" => 20,
        _ => return None,
    };
    Some(base + n)
}

/// `traceId`/`spanId`: hex (either case), not base64 as plain proto3 JSON would have it.
fn de_hex<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    if s.len() % 2 != 0 {
        return Err(de::Error::custom(format!("invalid hex id {s:?}")));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| de::Error::custom(format!("invalid hex id {s:?}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn severity_names() {
        assert_eq!(severity_from_name("SEVERITY_NUMBER_UNSPECIFIED"), Some(0));
        assert_eq!(severity_from_name("SEVERITY_NUMBER_TRACE"), Some(1));
        assert_eq!(severity_from_name("SEVERITY_NUMBER_INFO"), Some(9));
        assert_eq!(severity_from_name("SEVERITY_NUMBER_WARN3"), Some(15));
        assert_eq!(severity_from_name("SEVERITY_NUMBER_FATAL4"), Some(24));
        assert_eq!(severity_from_name("SEVERITY_NUMBER_FATAL5"), None);
        assert_eq!(severity_from_name("INFO"), None);
    }

    #[test]
    fn json_in_both_spellings() {
        let camel = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
            "scopeLogs":[{"scope":{"name":"s"},"logRecords":[{"timeUnixNano":"1700000000000000001",
            "severityNumber":9,"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174",
            "body":{"intValue":"42"},"flags":1,"unknownField":{"x":1}}]}]}]}"#;
        let snake = r#"{"resource_logs":[{"resource":{"attributes":[{"key":"service.name","value":{"string_value":"api"}}]},
            "scope_logs":[{"scope":{"name":"s"},"log_records":[{"time_unix_nano":1700000000000000001,
            "severity_number":"SEVERITY_NUMBER_INFO","trace_id":"5b8efff798038103d269b633813fc60c","span_id":"EEE19B7EC3C1B174",
            "body":{"int_value":42},"flags":"1"}]}]}]}"#;
        let a: ExportLogsServiceRequest = serde_json::from_str(camel).unwrap();
        let b: ExportLogsServiceRequest = serde_json::from_str(snake).unwrap();
        assert_eq!(a, b);
        let r = &a.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(r.time_unix_nano, 1_700_000_000_000_000_001);
        assert_eq!(r.severity_number, 9);
        assert_eq!(r.trace_id.len(), 16);
        assert_eq!(
            r.span_id,
            vec![0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]
        );
        assert_eq!(r.body.as_ref().unwrap().value, Some(Value::Int(42)));
    }

    #[test]
    fn json_errors() {
        for bad in [
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"xyz"}]}]}]}"#,
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":"LOUD"}]}]}]}"#,
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"soon"}]}]}]}"#,
            r#"{"resourceLogs":"#,
        ] {
            assert!(
                serde_json::from_str::<ExportLogsServiceRequest>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn protobuf_round_trip_keeps_field_numbers() {
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(Value::String("api".into())),
                        }),
                    }],
                    dropped_attributes_count: 0,
                }),
                scope_logs: vec![ScopeLogs {
                    scope: None,
                    log_records: vec![LogRecord {
                        time_unix_nano: 5,
                        observed_time_unix_nano: 6,
                        severity_number: 17,
                        flags: 1,
                        body: Some(AnyValue {
                            value: Some(Value::Double(1.5)),
                        }),
                        ..Default::default()
                    }],
                }],
            }],
        };
        let bytes = req.encode_to_vec();
        // Field 1 of the request (length-delimited): 0x0a; time_unix_nano is fixed64 field 1
        // (0x09) and observed_time_unix_nano fixed64 field 11 (0x59) inside the record.
        assert_eq!(bytes[0], 0x0a);
        assert!(bytes
            .windows(9)
            .any(|w| w == [0x09, 5, 0, 0, 0, 0, 0, 0, 0]));
        assert!(bytes
            .windows(9)
            .any(|w| w == [0x59, 6, 0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(ExportLogsServiceRequest::decode(&bytes[..]).unwrap(), req);
    }
}
