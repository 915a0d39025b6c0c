//! Push body decoding. JSON `{"streams":[{"stream":{..},"values":[["<ns>","line",{md}]]}]}`
//! (optionally gzip or deflate), the legacy `{"streams":[{"labels":"{..}","entries":[..]}]}`, and
//! `logproto.PushRequest` in raw (block) snappy, as promtail sends it. Every path is bounded by
//! `max_bytes`, both the body as received and after decompression, so a compression bomb costs at
//! most `max_bytes` of memory.

use std::fmt;
use std::io::Read;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use thiserror::Error;

use super::{Entry, PushRequest, PushStream, RawLabels};

#[derive(Debug, Error, PartialEq)]
pub enum DecodeError {
    #[error("request body too large: {size} bytes, limit {limit} (distributor.max_recv_msg_size)")]
    TooLarge { size: u64, limit: u64 },
    #[error("Content-Encoding {0:?} not supported")]
    UnsupportedEncoding(String),
    #[error("decompressing body: {0}")]
    Decompress(String),
    #[error("{0}")]
    Json(String),
    #[error("decoding protobuf: {0}")]
    Proto(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Protobuf,
}

impl BodyFormat {
    /// Loki's rule: `application/json` is JSON; anything else (or nothing) is snappy protobuf.
    pub fn from_content_type(ct: Option<&str>) -> BodyFormat {
        match ct.map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        }) {
            Some(c) if c == "application/json" => BodyFormat::Json,
            _ => BodyFormat::Protobuf,
        }
    }
}

/// Decodes a push body. `encoding` is the `Content-Encoding` header.
pub fn decode_push(
    body: &[u8],
    format: BodyFormat,
    encoding: Option<&str>,
    max_bytes: u64,
) -> Result<PushRequest, DecodeError> {
    if body.len() as u64 > max_bytes {
        return Err(DecodeError::TooLarge {
            size: body.len() as u64,
            limit: max_bytes,
        });
    }
    let encoding = encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty());
    match format {
        BodyFormat::Json => {
            let raw = match encoding.as_deref() {
                None | Some("identity") => std::borrow::Cow::Borrowed(body),
                Some("gzip") | Some("x-gzip") => std::borrow::Cow::Owned(read_bounded(
                    flate2::read::MultiGzDecoder::new(body),
                    max_bytes,
                )?),
                Some("deflate") => std::borrow::Cow::Owned(inflate(body, max_bytes)?),
                Some(other) => return Err(DecodeError::UnsupportedEncoding(other.to_string())),
            };
            decode_json(&raw)
        }
        BodyFormat::Protobuf => {
            match encoding.as_deref() {
                None | Some("snappy") | Some("identity") => {}
                Some(other) => return Err(DecodeError::UnsupportedEncoding(other.to_string())),
            }
            let len = snap::raw::decompress_len(body)
                .map_err(|e| DecodeError::Decompress(e.to_string()))?;
            if len as u64 > max_bytes {
                return Err(DecodeError::TooLarge {
                    size: len as u64,
                    limit: max_bytes,
                });
            }
            let raw = snap::raw::Decoder::new()
                .decompress_vec(body)
                .map_err(|e| DecodeError::Decompress(e.to_string()))?;
            decode_proto(&raw)
        }
    }
}

/// HTTP `deflate` is zlib-wrapped, but some clients send raw deflate: accept both.
fn inflate(body: &[u8], max: u64) -> Result<Vec<u8>, DecodeError> {
    match read_bounded(flate2::read::ZlibDecoder::new(body), max) {
        Err(DecodeError::Decompress(_)) => {
            read_bounded(flate2::read::DeflateDecoder::new(body), max)
        }
        other => other,
    }
}

pub(crate) fn read_bounded(r: impl Read, max: u64) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    r.take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Decompress(e.to_string()))?;
    if out.len() as u64 > max {
        return Err(DecodeError::TooLarge {
            size: out.len() as u64,
            limit: max,
        });
    }
    Ok(out)
}

pub fn decode_json(body: &[u8]) -> Result<PushRequest, DecodeError> {
    let wire: JsonPush =
        serde_json::from_slice(body).map_err(|e| DecodeError::Json(format!("{e}")))?;
    Ok(PushRequest {
        streams: wire.streams,
    })
}

#[derive(Deserialize)]
struct JsonPush {
    #[serde(default)]
    streams: Vec<PushStream>,
}

impl<'de> Deserialize<'de> for PushStream {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(StreamVisitor)
    }
}

struct StreamVisitor;

impl<'de> Visitor<'de> for StreamVisitor {
    type Value = PushStream;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a stream object with \"stream\" and \"values\"")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PushStream, A::Error> {
        let mut labels = None;
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "stream" => {
                    let m: Vec<(String, String)> = map.next_value::<StringMap>()?.0;
                    labels = Some(RawLabels::Pairs(m));
                }
                "labels" => labels = Some(RawLabels::Text(map.next_value()?)),
                "values" => entries = map.next_value::<Values>()?.0,
                "entries" => entries = map.next_value::<LegacyEntries>()?.0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(PushStream {
            labels: labels.unwrap_or(RawLabels::Pairs(Vec::new())),
            entries,
        })
    }
}

/// A JSON object of string values, kept as pairs in wire order.
struct StringMap(Vec<(String, String)>);

impl<'de> Deserialize<'de> for StringMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StringMap, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    out.push((k, v));
                }
                Ok(StringMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

struct Values(Vec<Entry>);

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Values;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of [\"<ns>\", \"line\"] values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Values, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(64).min(16384));
                while let Some(e) = seq.next_element::<JsonEntry>()? {
                    out.push(e.0);
                }
                Ok(Values(out))
            }
        }
        d.deserialize_seq(V)
    }
}

struct JsonEntry(Entry);

impl<'de> Deserialize<'de> for JsonEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "[\"<unix epoch in nanoseconds>\", \"<log line>\", {structured metadata}]",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonEntry, A::Error> {
                let ts: std::borrow::Cow<'de, str> = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("entry has no timestamp"))?;
                let ts: i64 = ts.parse().map_err(|_| {
                    de::Error::custom(format!(
                        "invalid timestamp {ts:?}: expected nanoseconds as a string"
                    ))
                })?;
                let line: String = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("entry has no line"))?;
                let metadata = seq
                    .next_element::<Metadata>()?
                    .map(|m| m.0)
                    .unwrap_or_default();
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom("entry has more than 3 elements"));
                }
                Ok(JsonEntry(Entry { ts, line, metadata }))
            }
        }
        d.deserialize_seq(V)
    }
}

/// Structured metadata: a flat object of strings, or (as Loki also accepts, because query
/// responses use it) `{"structuredMetadata":{..},"parsed":{..}}` of which the first part is kept.
struct Metadata(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Metadata;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_unit<E>(self) -> Result<Metadata, E> {
                Ok(Metadata(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metadata, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    if k == "structuredMetadata" {
                        out.extend(map.next_value::<StringMap>()?.0);
                    } else if k == "parsed" {
                        map.next_value::<IgnoredAny>()?;
                    } else {
                        out.push((k, map.next_value::<String>()?));
                    }
                }
                Ok(Metadata(out))
            }
        }
        d.deserialize_any(V)
    }
}

struct LegacyEntries(Vec<Entry>);

impl<'de> Deserialize<'de> for LegacyEntries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct LegacyEntry {
            ts: String,
            line: String,
        }
        let v: Vec<LegacyEntry> = Vec::deserialize(d)?;
        v.into_iter()
            .map(|e| {
                let ts = chrono::DateTime::parse_from_rfc3339(&e.ts)
                    .ok()
                    .and_then(|t| t.timestamp_nanos_opt())
                    .or_else(|| e.ts.parse().ok())
                    .ok_or_else(|| de::Error::custom(format!("invalid timestamp {:?}", e.ts)))?;
                Ok(Entry {
                    ts,
                    line: e.line,
                    metadata: Vec::new(),
                })
            })
            .collect::<Result<_, _>>()
            .map(LegacyEntries)
    }
}

/// `logproto` messages with the field numbers of Loki's `push.proto`.
pub mod logproto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<StreamAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamAdapter {
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<EntryAdapter>,
        #[prost(uint64, tag = "3")]
        pub hash: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPairAdapter {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EntryAdapter {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        #[prost(string, tag = "2")]
        pub line: String,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPairAdapter>,
        #[prost(message, repeated, tag = "4")]
        pub parsed: Vec<LabelPairAdapter>,
    }

    /// `google.protobuf.Timestamp`.
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

pub fn decode_proto(raw: &[u8]) -> Result<PushRequest, DecodeError> {
    use prost::Message;
    let req = logproto::PushRequest::decode(raw).map_err(|e| DecodeError::Proto(e.to_string()))?;
    let streams = req
        .streams
        .into_iter()
        .map(|s| PushStream {
            labels: RawLabels::Text(s.labels),
            entries: s
                .entries
                .into_iter()
                .map(|e| {
                    let t = e.timestamp.unwrap_or_default();
                    Entry {
                        ts: t
                            .seconds
                            .saturating_mul(1_000_000_000)
                            .saturating_add(t.nanos as i64),
                        line: e.line,
                        metadata: e
                            .structured_metadata
                            .into_iter()
                            .map(|p| (p.name, p.value))
                            .collect(),
                    }
                })
                .collect(),
        })
        .collect();
    Ok(PushRequest { streams })
}

/// Encodes a push request as snappy protobuf, the way promtail does (used by the CLI and tests).
pub fn encode_proto_snappy(req: &PushRequest) -> Vec<u8> {
    use prost::Message;
    let msg = logproto::PushRequest {
        streams: req
            .streams
            .iter()
            .map(|s| logproto::StreamAdapter {
                labels: match &s.labels {
                    RawLabels::Text(t) => t.clone(),
                    RawLabels::Pairs(p) => crate::labels::Labels::from_pairs(p.clone()).to_string(),
                },
                entries: s
                    .entries
                    .iter()
                    .map(|e| logproto::EntryAdapter {
                        timestamp: Some(logproto::Timestamp {
                            seconds: e.ts.div_euclid(1_000_000_000),
                            nanos: e.ts.rem_euclid(1_000_000_000) as i32,
                        }),
                        line: e.line.clone(),
                        structured_metadata: e
                            .metadata
                            .iter()
                            .map(|(k, v)| logproto::LabelPairAdapter {
                                name: k.clone(),
                                value: v.clone(),
                            })
                            .collect(),
                        parsed: Vec::new(),
                    })
                    .collect(),
                hash: 0,
            })
            .collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&msg.encode_to_vec())
        .expect("bug: snappy cannot fail on a vec")
}

/// Encodes a push request as Loki JSON (used by the CLI, the load generator and tests). Labels
/// and structured metadata are written in their order, duplicates included, so that decoding
/// gives the same request back; labels in the text form are written as a `stream` object.
pub fn encode_json(req: &PushRequest) -> Vec<u8> {
    let streams: Vec<JsonStreamOut> = req
        .streams
        .iter()
        .map(|s| JsonStreamOut {
            stream: match &s.labels {
                RawLabels::Pairs(p) => PairsObject(std::borrow::Cow::Borrowed(p)),
                RawLabels::Text(t) => PairsObject(std::borrow::Cow::Owned(
                    crate::labels::Labels::parse(t)
                        .map(|l| l.pairs().to_vec())
                        .unwrap_or_default(),
                )),
            },
            values: s.entries.iter().map(JsonEntryOut).collect(),
        })
        .collect();
    serde_json::to_vec(&JsonPushOut { streams }).expect("bug: json encoding cannot fail")
}

#[derive(serde::Serialize)]
struct JsonPushOut<'a> {
    streams: Vec<JsonStreamOut<'a>>,
}

#[derive(serde::Serialize)]
struct JsonStreamOut<'a> {
    stream: PairsObject<'a>,
    values: Vec<JsonEntryOut<'a>>,
}

/// Name-value pairs as a JSON object, in order (a map type would sort them and drop duplicates).
struct PairsObject<'a>(std::borrow::Cow<'a, [(String, String)]>);

impl serde::Serialize for PairsObject<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0.iter() {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// `["<ns>", "line"]`, or `["<ns>", "line", {metadata}]`.
struct JsonEntryOut<'a>(&'a Entry);

impl serde::Serialize for JsonEntryOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let e = self.0;
        let with_metadata = !e.metadata.is_empty();
        let mut seq = s.serialize_seq(Some(2 + with_metadata as usize))?;
        seq.serialize_element(&e.ts.to_string())?;
        seq.serialize_element(&e.line)?;
        if with_metadata {
            seq.serialize_element(&PairsObject(std::borrow::Cow::Borrowed(&e.metadata)))?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sample() -> PushRequest {
        PushRequest {
            streams: vec![PushStream {
                labels: RawLabels::Pairs(vec![
                    ("app".into(), "api".into()),
                    ("env".into(), "prod".into()),
                ]),
                entries: vec![
                    Entry {
                        ts: 1_700_000_000_000_000_001,
                        line: "hello \"world\" ü".into(),
                        metadata: vec![],
                    },
                    Entry {
                        ts: 1_700_000_000_000_000_002,
                        line: "second".into(),
                        metadata: vec![("trace_id".into(), "abc".into())],
                    },
                ],
            }],
        }
    }

    #[test]
    fn json_round_trip() {
        let req = sample();
        let got = decode_push(&encode_json(&req), BodyFormat::Json, None, 1 << 20).unwrap();
        assert_eq!(got, req);
    }

    #[test]
    fn json_round_trip_keeps_the_order_and_duplicates_of_labels_and_metadata() {
        // Found by fuzzing: labels not in sorted order came back sorted.
        let body = br#"{"streams": [{"stream": {"app": "api", ")evel": "info", "app": "web"}, "values": [["1700000000000000001", "x", {"trace_id": "abc", "span_id": "d", "trace_id": "e"}]]}]}"#;
        let req = decode_json(body).unwrap();
        assert_eq!(
            req.streams[0].labels,
            RawLabels::Pairs(vec![
                ("app".into(), "api".into()),
                (")evel".into(), "info".into()),
                ("app".into(), "web".into()),
            ])
        );
        assert_eq!(decode_json(&encode_json(&req)).unwrap(), req);
    }

    #[test]
    fn proto_round_trip() {
        let req = sample();
        let got = decode_push(
            &encode_proto_snappy(&req),
            BodyFormat::Protobuf,
            None,
            1 << 20,
        )
        .unwrap();
        assert_eq!(got.streams[0].entries, req.streams[0].entries);
        assert_eq!(
            got.streams[0].labels,
            RawLabels::Text(r#"{app="api", env="prod"}"#.into())
        );
    }

    #[test]
    fn gzip_and_deflate() {
        let body = encode_json(&sample());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            decode_push(&gz, BodyFormat::Json, Some("gzip"), 1 << 20).unwrap(),
            sample()
        );
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&body).unwrap();
        assert_eq!(
            decode_push(
                &z.finish().unwrap(),
                BodyFormat::Json,
                Some("deflate"),
                1 << 20
            )
            .unwrap(),
            sample()
        );
        assert!(matches!(
            decode_push(&body, BodyFormat::Json, Some("br"), 1 << 20),
            Err(DecodeError::UnsupportedEncoding(_))
        ));
    }

    #[test]
    fn bombs_are_bounded() {
        let zeros = vec![b' '; 8 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&zeros).unwrap();
        let gz = gz.finish().unwrap();
        assert!(matches!(
            decode_push(&gz, BodyFormat::Json, Some("gzip"), 1 << 20),
            Err(DecodeError::TooLarge { .. })
        ));
        let sn = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
        assert!(matches!(
            decode_push(&sn, BodyFormat::Protobuf, None, 1 << 20),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[track_caller]
    fn json_err(body: &str) {
        assert!(decode_json(body.as_bytes()).is_err(), "{body}");
    }

    #[test]
    fn json_errors() {
        json_err(
            r#"{"streams":[{"stream":{"a":"b"},"values":[[1700000000000000000,"numeric ts"]]}]}"#,
        );
        json_err(r#"{"streams":[{"stream":{"a":"b"},"values":[["x","bad ts"]]}]}"#);
        json_err(r#"{"streams":[{"stream":{"a":1},"values":[]}]}"#);
        json_err(r#"{"streams":[{"stream":{"a":"b"},"values":[["1"]]}]}"#);
        json_err(r#"{"streams":"#);
        json_err(&format!("{}{}", "[".repeat(10000), "]".repeat(10000)));
    }

    #[test]
    fn legacy_json() {
        let got = decode_json(br#"{"streams":[{"labels":"{app=\"x\"}","entries":[{"ts":"2026-11-20T00:00:00Z","line":"l"}]}]}"#).unwrap();
        assert_eq!(got.streams[0].entries[0].ts, 1_795_132_800_000_000_000);
    }
}
