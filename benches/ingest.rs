//! Criterion benches of the write path: push decoding (JSON, snappy protobuf), validation, and
//! block encode (seal) / decode. Throughput is reported in bytes of log lines.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sawmill::config::Limits;
use sawmill::ingest::decode::{
    decode_json, decode_push, encode_json, encode_proto_snappy, BodyFormat,
};
use sawmill::ingest::validate::validate;
use sawmill::ingest::{Entry, PushRequest, PushStream, RawLabels};
use sawmill::storage::chunk::{chunk_blocks, encode_chunk, DecodedBlock, HeadBlock};

const BASE: i64 = 1_795_132_800_000_000_000;

fn line(i: usize) -> String {
    if i % 2 == 0 {
        format!(
            "{{\"time\":\"2026-11-20T00:00:{:02}.000000000Z\",\"level\":\"info\",\"msg\":\"request completed\",\"method\":\"GET\",\"path\":\"/api/users/{}\",\"status\":200,\"duration_ms\":{}.{},\"user_id\":\"{}\",\"request_id\":\"req-{:08x}-{:04x}\",\"trace_id\":\"{:032x}\",\"service\":\"api-gateway\"}}",
            i % 60, i % 977, i % 300, i % 10, i * 7 % 50000, i * 2654435761 % 0xffff_ffff, i % 0xffff, i * 11400714819323198485usize
        )
    } else {
        format!(
            "time=2026-11-20T00:00:{:02}.000000000Z level=warn msg=\"upstream timeout\" method=POST path=/api/payments status=504 duration_ms={}.{} user_id={} request_id=req-{:08x}-{:04x} trace_id={:032x} service=payment-service",
            i % 60, i % 3000, i % 10, i * 13 % 50000, i * 2654435761 % 0xffff_ffff, i % 0xffff, i * 11400714819323198485usize
        )
    }
}

fn push_request(lines: usize) -> PushRequest {
    PushRequest {
        streams: (0..4)
            .map(|s| PushStream {
                labels: RawLabels::Pairs(vec![
                    ("app".into(), format!("app-{s}")),
                    ("job".into(), "bench".into()),
                ]),
                entries: (0..lines / 4)
                    .map(|i| Entry {
                        ts: BASE + (i * 4 + s) as i64,
                        line: line(i * 4 + s),
                        metadata: vec![],
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn line_bytes(r: &PushRequest) -> u64 {
    r.streams
        .iter()
        .flat_map(|s| &s.entries)
        .map(|e| e.line.len() as u64)
        .sum()
}

fn decoding(c: &mut Criterion) {
    let req = push_request(1000);
    let json = encode_json(&req);
    let proto = encode_proto_snappy(&req);
    let mut g = c.benchmark_group("push_decode");
    g.throughput(Throughput::Bytes(line_bytes(&req)));
    g.bench_function("json_1000_lines", |b| {
        b.iter(|| decode_json(&json).unwrap())
    });
    g.bench_function("snappy_proto_1000_lines", |b| {
        b.iter(|| decode_push(&proto, BodyFormat::Protobuf, None, 1 << 30).unwrap())
    });
    let limits = Limits {
        reject_old_samples: false,
        ..Limits::default()
    };
    g.bench_function("validate_1000_lines", |b| {
        b.iter_batched(
            || req.clone(),
            |r| validate(r, &limits, BASE),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn blocks(c: &mut Criterion) {
    let mut head = HeadBlock::default();
    let mut i = 0;
    while head.size() < 256 * 1024 {
        head.push(
            BASE + i as i64,
            &line(i),
            sawmill::storage::chunk::NO_METADATA,
        );
        i += 1;
    }
    let mut g = c.benchmark_group("block");
    g.throughput(Throughput::Bytes(head.size() as u64));
    for level in [1, 3] {
        g.bench_function(format!("seal_256k_zstd{level}"), |b| {
            b.iter(|| head.seal(level))
        });
    }
    // Before columns: one zstd frame of rows, no field summaries.
    g.bench_function("seal_v1_256k_zstd1", |b| b.iter(|| head.seal_v1(1)));
    for level in [1, 3] {
        let b = head.seal(level);
        eprintln!(
            "zstd level {level}: {} raw bytes -> {} stored (ratio 1/{:.1})",
            head.size(),
            b.bytes.len(),
            head.size() as f64 / b.bytes.len() as f64
        );
    }
    let sealed = head.seal(1);
    let mut chunk = Vec::new();
    encode_chunk([sealed.clone()].iter(), &mut chunk);
    eprintln!(
        "block of {} lines: {} raw bytes -> {} stored bytes (ratio 1/{:.1})",
        head.len(),
        head.size(),
        sealed.bytes.len(),
        head.size() as f64 / sealed.bytes.len() as f64
    );
    let mut d = DecodedBlock::default();
    g.bench_function("decode_256k", |b| {
        b.iter(|| {
            let refs = chunk_blocks(&chunk).unwrap();
            d.decode_from(&refs[0]).unwrap();
            d.len()
        })
    });
    let finder = memchr::memmem::Finder::new("req-0000beef");
    g.bench_function("decode_and_scan_256k", |b| {
        b.iter(|| {
            let refs = chunk_blocks(&chunk).unwrap();
            d.decode_from(&refs[0]).unwrap();
            (0..d.len())
                .filter(|&i| finder.find(d.line(i)).is_some())
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, decoding, blocks);
criterion_main!(benches);
