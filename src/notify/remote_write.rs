//! Prometheus remote write (version 0.1.0): samples are sent as a `prometheus.WriteRequest`
//! protobuf, snappy-compressed in the block format (not framed), to the configured URL.
//!
//! ```text
//! WriteRequest { repeated TimeSeries timeseries = 1; }
//! TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
//! Label        { string name = 1; string value = 2; }
//! Sample       { double value = 1; int64 timestamp = 2; }   // timestamp: Unix milliseconds
//! ```

use prost::Message;

use super::{send_request, Count, Sender, REQUEST_TIMEOUT};

/// Series waiting at most; older ones are dropped past it.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Series per request at most.
pub const MAX_BATCH: usize = 500;

#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Sorted by name; `__name__` is the metric name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

impl TimeSeries {
    /// One sample at `ts_ms` of the series named by `labels` (sorted here).
    pub fn one(
        labels: impl IntoIterator<Item = (String, String)>,
        value: f64,
        ts_ms: i64,
    ) -> TimeSeries {
        let mut labels: Vec<Label> = labels
            .into_iter()
            .map(|(name, value)| Label { name, value })
            .collect();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        TimeSeries {
            labels,
            samples: vec![Sample {
                value,
                timestamp: ts_ms,
            }],
        }
    }
}

/// The request body: the protobuf, snappy block-compressed.
pub fn encode(series: &[TimeSeries]) -> Vec<u8> {
    let req = WriteRequest {
        timeseries: series.to_vec(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("bug: snappy compresses any input")
}

/// Sends series to one remote-write endpoint.
pub struct RemoteWriter {
    sender: Sender<TimeSeries>,
}

impl RemoteWriter {
    /// Counts `sawmill_remote_write_samples_total`, `sawmill_remote_write_failures_total` and
    /// `sawmill_remote_write_dropped_total`.
    pub fn new(url: &str, count: Count) -> RemoteWriter {
        let agent = ureq::AgentBuilder::new().timeout(REQUEST_TIMEOUT).build();
        let url = url.to_string();
        let (c, c2) = (count.clone(), count);
        let sender = Sender::start(
            "remote-write",
            QUEUE_CAPACITY,
            MAX_BATCH,
            move |batch: &[TimeSeries]| {
                let req = agent
                    .post(&url)
                    .set("Content-Encoding", "snappy")
                    .set("Content-Type", "application/x-protobuf")
                    .set("User-Agent", concat!("sawmill/", env!("CARGO_PKG_VERSION")))
                    .set("X-Prometheus-Remote-Write-Version", "0.1.0");
                let r = send_request(req, &encode(batch));
                let n = batch.len() as u64;
                match &r {
                    Ok(()) => c("sawmill_remote_write_samples_total", &[], n),
                    Err(_) => c("sawmill_remote_write_failures_total", &[], n),
                }
                r
            },
            move |n| c2("sawmill_remote_write_dropped_total", &[], n),
        );
        RemoteWriter { sender }
    }

    pub fn send(&self, series: Vec<TimeSeries>) {
        if !series.is_empty() {
            self.sender.push(series);
        }
    }

    pub fn pending(&self) -> usize {
        self.sender.pending()
    }

    pub fn stop(&self) {
        self.sender.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_snappy_write_request() {
        let s = TimeSeries::one(
            [
                ("job".to_string(), "a".to_string()),
                ("__name__".to_string(), "m".to_string()),
            ],
            1.5,
            1_700_000_000_123,
        );
        let body = encode(&[s]);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        // Field by field, as Prometheus' prompb reads it.
        let mut want = vec![0x0a]; // timeseries, field 1, length-delimited
        let label = |n: &str, v: &str| {
            let mut l = vec![0x0a, n.len() as u8];
            l.extend(n.as_bytes());
            l.extend([0x12, v.len() as u8]);
            l.extend(v.as_bytes());
            l
        };
        let mut ts = Vec::new();
        for (n, v) in [("__name__", "m"), ("job", "a")] {
            let l = label(n, v);
            ts.push(0x0a);
            ts.push(l.len() as u8);
            ts.extend(l);
        }
        let mut sample = vec![0x09];
        sample.extend(1.5f64.to_le_bytes());
        sample.push(0x10);
        prost::encoding::encode_varint(1_700_000_000_123, &mut sample);
        ts.push(0x12);
        ts.push(sample.len() as u8);
        ts.extend(sample);
        want.push(ts.len() as u8);
        want.extend(ts);
        assert_eq!(raw, want);
        let back = WriteRequest::decode(&raw[..]).unwrap();
        assert_eq!(back.timeseries[0].labels[0].name, "__name__");
        assert_eq!(back.timeseries[0].samples[0].timestamp, 1_700_000_000_123);
    }
}
