//! Criterion benches of the query side: LogQL parsing, each pipeline stage over 1000 lines, and
//! each aggregation over one hour of samples at one-minute steps.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sawmill::labels::Labels;
use sawmill::logql::{parse_expr, Expr, RangeAggregationExpr};
use sawmill::pipeline::labels_builder::LabelsBuilder;
use sawmill::pipeline::pipeline_for_query;
use sawmill::query::metric::{evaluate, EvalError, EvalParams, Grid, SampleSeries, SampleSource};

fn lines() -> Vec<String> {
    (0..1000)
        .map(|i| {
            if i % 2 == 0 {
                format!("{{\"level\":\"{}\",\"msg\":\"request {i}\",\"status\":{},\"duration_ms\":{}.5,\"path\":\"/api/users/{i}\",\"request_id\":\"req-{i:08x}\"}}", ["info", "error"][i % 2], 200 + i % 5, i % 300)
            } else {
                format!("level=info msg=\"request {i}\" status={} duration_ms={}.5 path=/api/users/{i} request_id=req-{i:08x}", 200 + i % 5, i % 300)
            }
        })
        .collect()
}

fn parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    for (name, q) in [
        ("selector", r#"{app="api", env=~"prod|staging"}"#),
        (
            "pipeline",
            r#"{app="api"} |= "error" | json | status >= 500 and duration > 250ms | line_format "{{.msg}}""#,
        ),
        (
            "metric",
            r#"sum by (app) (rate({job="x"} | logfmt | level="error" [5m])) / ignoring(level) sum by (app) (rate({job="x"}[5m]))"#,
        ),
    ] {
        g.bench_function(name, |b| b.iter(|| parse_expr(q).unwrap()));
    }
    g.finish();
}

fn stages(c: &mut Criterion) {
    let lines = lines();
    let bytes: usize = lines.iter().map(|l| l.len()).sum();
    let mut g = c.benchmark_group("pipeline_1000_lines");
    g.throughput(Throughput::Bytes(bytes as u64));
    let stream = Labels::parse(r#"{app="api", env="prod"}"#).unwrap();
    for (name, q) in [
        ("line_filter", r#"{app="api"} |= "status=500""#),
        ("regex_filter", r#"{app="api"} |~ "status[=:]5\\d\\d""#),
        ("json", r#"{app="api"} | json"#),
        ("logfmt", r#"{app="api"} | logfmt"#),
        ("json_label_filter", r#"{app="api"} | json | status >= 500"#),
        (
            "logfmt_line_format",
            r#"{app="api"} | logfmt | line_format "{{.level}} {{.msg}}""#,
        ),
        (
            "pattern",
            r#"{app="api"} | pattern "level=<level> msg=<_> status=<status> <_>""#,
        ),
    ] {
        let mut p = pipeline_for_query(q).unwrap();
        let mut b = LabelsBuilder::new();
        b.set_stream(stream.pairs());
        let no_md: Vec<(String, String)> = Vec::new();
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let mut kept = 0;
                for (i, l) in lines.iter().enumerate() {
                    b.start_entry(&no_md);
                    if p.process(i as i64, l.as_bytes(), &mut b).is_some() {
                        kept += 1;
                    }
                }
                kept
            })
        });
    }
    g.finish();
}

/// 32 series of one sample per second over an hour.
struct Synthetic(Vec<SampleSeries>);

impl SampleSource for Synthetic {
    fn samples(
        &mut self,
        _: &RangeAggregationExpr,
        from: i64,
        to: i64,
        _: Option<Grid>,
    ) -> Result<Vec<SampleSeries>, EvalError> {
        Ok(self
            .0
            .iter()
            .map(|s| SampleSeries {
                labels: s.labels.clone(),
                samples: s
                    .samples
                    .iter()
                    .copied()
                    .filter(|(t, _)| *t > from && *t <= to)
                    .collect(),
                weighted: false,
            })
            .collect())
    }
}

fn aggregations(c: &mut Criterion) {
    const S: i64 = 1_000_000_000;
    let series: Vec<SampleSeries> = (0..32)
        .map(|i| SampleSeries {
            labels: Labels::parse(&format!("{{app=\"a{}\", pod=\"p{i}\"}}", i % 8)).unwrap(),
            samples: (0..3600)
                .map(|t| (t * S, ((t * 7 + i) % 100) as f64))
                .collect(),
            weighted: false,
        })
        .collect();
    let p = EvalParams {
        start: 300 * S,
        end: 3600 * S,
        step: 60 * S,
        max_series: 500,
    };
    let mut g = c.benchmark_group("aggregate_32x3600_samples");
    for (name, q) in [
        (
            "count_over_time",
            r#"sum by (app) (count_over_time({x="y"}[5m]))"#,
        ),
        ("rate", r#"sum by (app) (rate({x="y"}[5m]))"#),
        (
            "quantile_over_time",
            r#"quantile_over_time(0.95, {x="y"} | unwrap v [5m]) by (app)"#,
        ),
        ("avg_over_time", r#"avg_over_time({x="y"} | unwrap v [5m])"#),
        ("topk", r#"topk(3, sum by (pod) (rate({x="y"}[5m])))"#),
        (
            "binop_group_left",
            r#"sum by (app, pod) (rate({x="y"}[5m])) / on (app) group_left sum by (app) (rate({x="y"}[5m]))"#,
        ),
    ] {
        let Expr::Sample(e) = parse_expr(q).unwrap() else {
            panic!("metric query expected: {q}")
        };
        g.bench_function(name, |b| {
            b.iter(|| evaluate(&e, &p, &mut Synthetic(series.clone())).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, parsing, stages, aggregations);
criterion_main!(benches);
