//! Table tests of the whole module: round trips through the printer, parse results and
//! error messages.

use super::*;

#[track_caller]
fn round_trip(query: &str) {
    let first = parse_expr(query).unwrap_or_else(|e| panic!("{query}\n  {e}"));
    let printed = first.to_string();
    let second =
        parse_expr(&printed).unwrap_or_else(|e| panic!("{query}\n  printed {printed}\n  {e}"));
    assert_eq!(first, second, "{query}\n  printed {printed}");
    assert_eq!(
        printed,
        second.to_string(),
        "printing is stable for {query}"
    );
    let pretty = format_query(&first);
    let third = parse_expr(&pretty).unwrap_or_else(|e| panic!("{query}\n  pretty {pretty}\n  {e}"));
    assert_eq!(first, third, "{query}\n  pretty {pretty}");
}

#[test]
fn stream_selectors_round_trip() {
    round_trip(r#"{app="user-service"}"#);
    round_trip(r#"{app="user-service", namespace="staging"}"#);
    round_trip(r#"{app=~"search-.*|notification-.*", level!="debug"}"#);
    round_trip(r#"{job="microservices", app!~".*-(service|engine)"}"#);
    round_trip(r#"{app!=""}"#);
    round_trip(r#"{app=~".+"}"#);
    round_trip("{app=`raw\\string`}");
    round_trip(r#"{app="tab\there \"quoted\" back\\slash"}"#);
    round_trip(r#"{ünï="🚀", _x_1="a"}"#);
    round_trip("{app=\"a\",\n  # a comment\n  env=\"b\"}");
}

#[test]
fn line_filters_round_trip() {
    round_trip(r#"{job="microservices"} |= "database connection lost""#);
    round_trip(r#"{job="microservices"} != "info" != "debug""#);
    round_trip(r#"{app="api-gateway"} |~ "status[=\":]+5\\d\\d""#);
    round_trip(r#"{job="microservices"} !~ "GET|POST""#);
    round_trip(r#"{job="microservices"} |~ "(?i)NULL POINTER""#);
    round_trip(r#"{job="microservices"} |= "slow" or "retrying""#);
    round_trip(r#"{job="microservices"} != "slow" or "retrying" or "x""#);
    round_trip(r#"{job="microservices"} |= "error" |= "/api/payments""#);
    round_trip(r#"{app="edge-cases"} |~ "ünï|🚀""#);
    round_trip(r#"{job="microservices"} |> "<_>msg=\"upstream timeout\"<_>""#);
    round_trip(r#"{job="microservices"} !> "<_> debug <_>""#);
    round_trip(r#"{job="microservices"} |= ip("10.0.0.0/8")"#);
    round_trip(r#"{job="edge"} != ip("192.168.0.1-192.168.0.9")"#);
    round_trip(r#"{job="edge"} |= "a" or ip("10.0.0.1")"#);
    round_trip("{job=\"edge\"} |~ `\\d+ms`");
    round_trip(r#"{job="edge"} |= "\x00\a\b\f\v\r\n""#);
}

#[track_caller]
fn selector(input: &str, want: &[(&str, MatchOp, &str)]) {
    let got = parse_selector(input).unwrap_or_else(|e| panic!("{input}: {e}"));
    let want: Vec<Matcher> = want
        .iter()
        .map(|(n, op, v)| Matcher::new(*n, *op, *v).unwrap())
        .collect();
    assert_eq!(got, want, "{input}");
}

#[test]
fn parse_selector_cases() {
    selector("{}", &[]);
    selector(r#"{a="b"}"#, &[("a", MatchOp::Eq, "b")]);
    selector(
        r#"{ a != "b" , c=~"d.*",e!~`f`}"#,
        &[
            ("a", MatchOp::Neq, "b"),
            ("c", MatchOp::Re, "d.*"),
            ("e", MatchOp::Nre, "f"),
        ],
    );
    selector(r#"({a="b"})"#, &[("a", MatchOp::Eq, "b")]);
}

#[track_caller]
fn matches(matcher: (&str, MatchOp, &str), value: &str, want: bool) {
    let m = Matcher::new(matcher.0, matcher.1, matcher.2).unwrap();
    assert_eq!(m.matches(value), want, "{m} on {value:?}");
}

#[test]
fn matcher_semantics() {
    matches(("a", MatchOp::Eq, "x"), "x", true);
    matches(("a", MatchOp::Eq, "x"), "xy", false);
    matches(("a", MatchOp::Neq, "x"), "y", true);
    matches(("a", MatchOp::Re, "api"), "api-gateway", false);
    matches(("a", MatchOp::Re, "api.*"), "api-gateway", true);
    matches(("a", MatchOp::Re, "a|b"), "b", true);
    matches(("a", MatchOp::Re, "a|b"), "ab", false);
    matches(("a", MatchOp::Re, ".*"), "", true);
    matches(("a", MatchOp::Re, ".+"), "", false);
    matches(("a", MatchOp::Re, "x.y"), "x\ny", true);
    matches(("a", MatchOp::Nre, "pay.*"), "payment", false);
    matches(("a", MatchOp::Nre, "pay.*"), "user", true);
}

#[track_caller]
fn fails(input: &str, want: &str) {
    match parse_expr(input) {
        Ok(e) => panic!("{input} parsed as {e}, want error {want}"),
        Err(e) => assert_eq!(e.to_string(), want, "{input}"),
    }
}

#[test]
fn selector_and_line_filter_errors() {
    fails("{}", "parse error : queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will");
    fails(
        r#"{app=~".*"}"#,
        &format!("parse error : {ERR_EMPTY_COMPATIBLE_SELECTOR}"),
    );
    fails(
        r#"{app="", b=~"x?"}"#,
        &format!("parse error : {ERR_EMPTY_COMPATIBLE_SELECTOR}"),
    );
    fails(
        r#"{foo="bar"#,
        "parse error at line 1, col 6: literal not terminated",
    );
    fails(
        r#"{foo="bar""#,
        "parse error at line 1, col 11: syntax error: unexpected $end, expecting } or ,",
    );
    fails(
        r#"{foo="bar"} |~"#,
        "parse error at line 1, col 15: syntax error: unexpected $end, expecting STRING or ip",
    );
    fails(
        r#"{foo="bar"} "foo""#,
        "parse error at line 1, col 13: syntax error: unexpected STRING",
    );
    fails(
        "{foo=\"bar\",\n  x=5}",
        "parse error at line 2, col 5: syntax error: unexpected NUMBER, expecting STRING",
    );
    fails(
        r#"{foo=~"("}"#,
        "parse error : error parsing regexp: unclosed group",
    );
    fails(
        r#"{foo="a",}"#,
        "parse error at line 1, col 10: syntax error: unexpected }, expecting IDENTIFIER",
    );
    fails(
        r#"{@="a"}"#,
        "parse error at line 1, col 2: syntax error: unexpected IDENTIFIER, expecting IDENTIFIER",
    );
    fails(
        r#"{a="\d"}"#,
        "parse error at line 1, col 4: invalid char escape",
    );
    assert!(parse_selector(r#"{a="b"} |= "x""#).is_err());
}

/// Every query of /work/shared/conformance/cases.txt that Loki v3.4.6 accepts.
const CONFORMANCE_QUERIES: &[&str] = &[
    r#"{job="microservices", level="error"}"#,
    r#"{app=~"pay.*"}"#,
    r#"{app="edge-cases"}"#,
    r#"{app="user-service"}"#,
    r#"{app="user-service", namespace="staging"}"#,
    r#"{app=~"search-.*|notification-.*", level!="debug"}"#,
    r#"{job="microservices", app!~".*-(service|engine)"}"#,
    r#"{app="edge-cases"}"#,
    r#"{app="event-service", level="warn"}"#,
    r#"{job="edge"}"#,
    r#"{app="no-such-app"}"#,
    r#"{job="microservices"} |= "database connection lost""#,
    r#"{job="microservices"} != "info" != "debug""#,
    r#"{app="api-gateway"} |~ "status[=\":]+5\\d\\d""#,
    r#"{job="microservices"} !~ "GET|POST""#,
    r#"{job="microservices"} |~ "(?i)NULL POINTER""#,
    r#"{job="microservices"} |= "slow" or "retrying""#,
    r#"{job="microservices"} |= "error" |= "/api/payments""#,
    r#"{app="edge-cases"} |= "request_id=edge-req-1""#,
    r#"{app="edge-cases"} |~ "ünï|🚀""#,
    r#"{job="microservices"} |> "<_>msg=\"upstream timeout\"<_>""#,
    r#"{job="microservices"} |= ip("10.0.0.0/8")"#,
    r#"{job="edge"} |= ip("10.0.0.0/8")"#,
    r#"{job="microservices"} | json | level="error" | status=500"#,
    r#"{job="microservices"} | json | duration_ms >= 250"#,
    r#"{job="microservices"} | json | duration_ms < 1.5 and method="DELETE""#,
    r#"{job="microservices"} | json | status != 200 or level="warn""#,
    r#"{job="microservices"} | json | path=~"/api/(tickets|scan)" | method="PUT""#,
    r#"{job="microservices"} | json svc="service", rid="request_id" | svc="event-service""#,
    r#"{job="microservices"} | logfmt | status >= 400"#,
    r#"{job="microservices"} | logfmt | msg="cache hit" | duration_ms > 300"#,
    r#"{job="microservices"} | logfmt --strict | level="error""#,
    r#"{app="payment-service"} | json | __error__!="""#,
    r#"{app="payment-service"} | logfmt | __error__="""#,
    r#"{job="edge"} | json"#,
    r#"{job="edge"} | logfmt"#,
    r#"{job="edge"} | json | http_status >= 500"#,
    r#"{job="edge"} | logfmt | dur > 1s"#,
    r#"{job="edge"} | logfmt | size > 5KB"#,
    r#"{job="edge"} | json status_code="http.status", rid="http.headers[\"x-request-id\"]""#,
    r#"{job="microservices"} | regexp "duration_ms[=\":]+(?P<d>[0-9.]+)" | d > 500"#,
    r#"{job="microservices"} | pattern "<_> level=<lvl> msg=\"<msg>\" <_>" | msg="upstream timeout""#,
    r#"{job="edge"} | pattern "<method> <path> HTTP/<_> <status> <_>" | status="200""#,
    r#"{job="edge"} | decolorize"#,
    r#"{job="microservices"} | json | user_id="4136""#,
    r#"{app="notification-service"} | json | line_format "{{.service}} {{.status}} {{.path}}""#,
    r#"{app="notification-service"} | logfmt | line_format "{{ .level | ToUpper }} {{ .msg }}""#,
    r#"{app="search-service"} | json | label_format lvl=level, svc="{{.service}}-{{.method}}" | lvl="warn""#,
    r#"{app="search-service"} | json | keep level, status"#,
    r#"{app="search-service"} | json | drop trace_id, time, user_id, request_id, duration_ms"#,
    r#"{app="search-service"} | json | drop level="debug""#,
    r#"count_over_time({app="api-gateway"}[5m])"#,
    r#"sum by (level) (count_over_time({job="microservices"}[2m]))"#,
    r#"sum by (app) (rate({job="microservices"} |= "declined" [5m]))"#,
    r#"sum without (namespace, level, job) (bytes_over_time({job="microservices"}[5m]))"#,
    r#"sum(bytes_rate({app="analytics-service"}[1m]))"#,
    r#"sum by (app) (count_over_time({job="microservices"} | json | status >= 500 [10m]))"#,
    r#"avg_over_time({app="user-service"} | json | unwrap duration_ms [5m]) by (namespace)"#,
    r#"max_over_time({job="microservices"} | logfmt | unwrap duration_ms [10m]) by (level)"#,
    r#"quantile_over_time(0.99, {job="microservices"} | json | unwrap duration_ms | __error__="" [10m]) by (app)"#,
    r#"stdvar_over_time({app="event-service"} | json | unwrap duration_ms [10m]) by (app)"#,
    r#"last_over_time({app="payment-service"} | json | unwrap status [5m]) by (namespace)"#,
    r#"avg_over_time({app="user-service"} | json | __error__="" | unwrap duration_ms [5m]) by (namespace)"#,
    r#"sum by (app) (sum_over_time({job="microservices"} | json | unwrap duration_ms | __error__="" [5m]))"#,
    r#"sum by (app) (rate({job="microservices"} | logfmt | __error__="" | level="error" [5m])) > 0.01"#,
    r#"min_over_time({job="edge"} | logfmt | unwrap duration(dur) | __error__="" [1h])"#,
    r#"sum(sum_over_time({job="edge"} | logfmt | unwrap bytes(size) | __error__="" [1h]))"#,
    r#"absent_over_time({app="edge-cases", level="none"}[5m])"#,
    r#"count_over_time({app="user-service"}[5m] offset 30m)"#,
    r#"topk(2, sum by (app) (sum_over_time({job="microservices"} | json | unwrap duration_ms | __error__="" [5m])))"#,
    r#"bottomk(1, sum by (namespace) (count_over_time({job="microservices"}[5m])))"#,
    r#"count by (namespace) (sum by (app, namespace) (count_over_time({job="microservices"}[5m])))"#,
    r#"min by (level) (count_over_time({job="microservices"}[5m]))"#,
    r#"stddev(sum by (app) (count_over_time({job="microservices"}[5m])))"#,
    r#"sum by (app) (count_over_time({job="microservices"} |= "error" [5m])) / ignoring(level) sum by (app) (count_over_time({job="microservices"}[5m]))"#,
    r#"sum by (app) (rate({job="microservices"} | json | level="error" [5m])) > 0.05"#,
    r#"sum by (app) (rate({job="microservices"} | json | level="error" [5m])) >= bool 0.05"#,
    r#"sum(count_over_time({job="microservices"}[5m])) - sum(count_over_time({job="microservices"} |= "debug" [5m]))"#,
    r#"sum by (app) (count_over_time({job="microservices"}[5m])) and on (app) sum by (app) (count_over_time({job="microservices"} |= "timeout" [5m]))"#,
    r#"sum by (app) (count_over_time({job="microservices"}[5m])) unless on (app) sum by (app) (count_over_time({job="microservices"} |= "null pointer" [5m]))"#,
    r#"sort(sum by (level) (count_over_time({job="microservices"}[10m])))"#,
    r#"label_replace(sum by (app) (rate({job="microservices"}[5m])), "team", "core", "app", "(api-gateway|user-service)")"#,
    r#"sum by (level) (count_over_time({job="microservices"} | drop __error__ [1m]))"#,
    r#"vector(3) * 2"#,
    r#"vector(1)+vector(1)"#,
    r#"sum by (app) (count_over_time({job="microservices"}[1h]))"#,
    r#"topk(3, sum by (app, level) (sum_over_time({job="microservices"} | logfmt | unwrap duration_ms | __error__="" [30m])))"#,
    r#"sum(rate({job="microservices"} |= "timeout" [10m]))"#,
    r#"{job="microservices"}"#,
];

/// The conformance queries Loki rejects while parsing, with its message (or ours where the
/// message is a yacc syntax error).
#[test]
fn conformance_queries_round_trip() {
    for query in CONFORMANCE_QUERIES {
        round_trip(query);
    }
    assert_eq!(CONFORMANCE_QUERIES.len(), 89);
}

#[test]
fn conformance_rejections() {
    fails(
        r#"sum_over_time({job="microservices"} | json | unwrap duration_ms [5m]) by (app)"#,
        "parse error : grouping not allowed for sum_over_time aggregation",
    );
    fails(
        r#"rate_counter({app="payment-service"} | json | unwrap duration_ms [5m]) by (app)"#,
        "parse error : grouping not allowed for rate_counter aggregation",
    );
    fails(
        r#"{job="microservices""#,
        "parse error at line 1, col 21: syntax error: unexpected $end, expecting } or ,",
    );
    fails(
        r#"sum(count_over_time({job="microservices"}))"#,
        "parse error at line 1, col 42: syntax error: unexpected ), expecting RANGE or |",
    );
    fails(
        r#"{job="microservices"} | json | unwrap"#,
        "parse error at line 1, col 32: syntax error: unexpected unwrap",
    );
    fails(
        r#"rate({job="microservices"}[5x])"#,
        "parse error at line 1, col 27: not a valid duration string: \"5x\"",
    );
    fails(
        "{}",
        &format!("parse error : {ERR_EMPTY_COMPATIBLE_SELECTOR}"),
    );
}

/// Every construct of LogQL, beyond the conformance set.
const MORE_QUERIES: &[&str] = &[
    // parsers
    r#"{a="b"} | json"#,
    r#"{a="b"} | json a="x.y", b="list[0]", c="m[\"k\"]", servers"#,
    r#"{a="b"} | logfmt"#,
    r#"{a="b"} | logfmt --strict"#,
    r#"{a="b"} | logfmt --keep-empty"#,
    r#"{a="b"} | logfmt --strict --keep-empty host, fwd_ip="fwd""#,
    r#"{a="b"} | logfmt host, fwd_ip="fwd""#,
    r#"{a="b"} | regexp "(?P<method>\\w+) (?P<path>[^ ]+)""#,
    "{a=\"b\"} | regexp `(?P<ip>\\d+\\.\\d+\\.\\d+\\.\\d+)`",
    r#"{a="b"} | pattern "<ip> - - <_> \"<method> <uri> <_>\" <status>""#,
    r#"{a="b"} | unpack"#,
    r#"{a="b"} | JSON | LOGFMT"#,
    // label filters
    r#"{a="b"} | json | level="error""#,
    r#"{a="b"} | json | level!="error""#,
    r#"{a="b"} | json | level=~"err.*""#,
    r#"{a="b"} | json | level!~"err.*""#,
    r#"{a="b"} | json | status >= 400"#,
    r#"{a="b"} | json | status == 500"#,
    r#"{a="b"} | json | status = 500"#,
    r#"{a="b"} | json | status != 500"#,
    r#"{a="b"} | json | status < -1.5"#,
    r#"{a="b"} | json | status <= +3"#,
    r#"{a="b"} | json | ratio > 1e-7"#,
    r#"{a="b"} | json | latency > 250ms"#,
    r#"{a="b"} | json | latency >= 1h15m30.5s"#,
    r#"{a="b"} | json | latency < -5m"#,
    r#"{a="b"} | json | latency == 10us"#,
    r#"{a="b"} | json | size > 20MB"#,
    r#"{a="b"} | json | size <= 1MiB"#,
    r#"{a="b"} | json | size = 5KB"#,
    r#"{a="b"} | json | addr = ip("10.0.0.0/8")"#,
    r#"{a="b"} | json | addr != ip("::1")"#,
    r#"{a="b"} | json | a="1" and b="2""#,
    r#"{a="b"} | json | a="1" or b="2""#,
    r#"{a="b"} | json | a="1", b="2""#,
    r#"{a="b"} | json | a="1" b="2""#,
    r#"{a="b"} | json | a="1" and b="2" or c="3""#,
    r#"{a="b"} | json | a="1" or b="2" and c="3""#,
    r#"{a="b"} | json | a="1", b="2" or c="3""#,
    r#"{a="b"} | json | a="1" or b="2", c="3" or d="4""#,
    r#"{a="b"} | json | (a="1" or b="2") and c="3""#,
    r#"{a="b"} | json | ((a="1"))"#,
    r#"{a="b"} | json | a="1" and (b="2" and c="3")"#,
    r#"{a="b"} | json | status >= 500 or (latency > 1s and method="POST")"#,
    r#"{a="b"} | rate > 5 | count="x" | bytes < 1KB"#,
    // formatting and label stages
    r#"{a="b"} | line_format "{{.level}} {{.msg}}""#,
    r#"{a="b"} | line_format `{{ .level | ToUpper }} {{ __line__ }}`"#,
    r#"{a="b"} | label_format new=old"#,
    r#"{a="b"} | label_format x="{{.a}}-{{.b}}", y=z"#,
    r#"{a="b"} | drop a, b, c="v""#,
    r#"{a="b"} | drop __error__, __error_details__"#,
    r#"{a="b"} | keep a, b=~"x.*""#,
    r#"{a="b"} | decolorize"#,
    r#"{a="b"} |= "x" | json | line_format "{{.m}}" |~ "y" | level="warn" != "z""#,
    // range aggregations
    r#"count_over_time({a="b"}[5m])"#,
    r#"rate({a="b"}[1h30m])"#,
    r#"rate({a="b"}[1d])"#,
    r#"rate({a="b"}[1w])"#,
    r#"rate({a="b"}[250ms])"#,
    r#"bytes_over_time({a="b"}[5m])"#,
    r#"bytes_rate({a="b"}[5m])"#,
    r#"absent_over_time({a="b"}[5m])"#,
    r#"absent_over_time({a="b"} | json | unwrap x [5m])"#,
    r#"rate({a="b"} | unwrap x [5m])"#,
    r#"sum_over_time({a="b"} | json | unwrap bytes(size) [5m])"#,
    r#"avg_over_time({a="b"} | logfmt | unwrap duration(d) | __error__="" [5m]) by (app)"#,
    r#"max_over_time({a="b"} | logfmt | unwrap duration_seconds(d) [5m]) without (x, y)"#,
    r#"min_over_time({a="b"} | unwrap x | x > 5 and y="1" | __error__="" [5m])"#,
    r#"stddev_over_time({a="b"} | unwrap x [5m])"#,
    r#"stdvar_over_time({a="b"} | unwrap x [5m])"#,
    r#"first_over_time({a="b"} | unwrap x [5m]) by (a)"#,
    r#"last_over_time({a="b"} | unwrap x [5m]) by ()"#,
    r#"quantile_over_time(0.5, {a="b"} | unwrap x [5m])"#,
    r#"quantile_over_time(0.99, {a="b"} | unwrap x [5m]) by (app, env)"#,
    r#"rate_counter({a="b"} | unwrap x [5m])"#,
    r#"count_over_time({a="b"}[5m] offset 1h)"#,
    r#"count_over_time({a="b"} |= "x" [5m] offset 30s)"#,
    r#"count_over_time({a="b"}[5m] offset -5m)"#,
    r#"count_over_time({a="b"}[5m] |= "x" | json)"#,
    r#"count_over_time({a="b"}[5m] offset 1h |= "x")"#,
    r#"sum_over_time({a="b"}[5m] | unwrap x)"#,
    r#"sum_over_time({a="b"}[5m] | json | unwrap x)"#,
    r#"sum_over_time({a="b"} | unwrap x [5m] offset 2m)"#,
    r#"count_over_time(({a="b"})[5m])"#,
    r#"count_over_time(({a="b"} |= "x")[5m] offset 1m)"#,
    r#"sum_over_time(({a="b"} | unwrap x)[5m])"#,
    r#"sum_over_time(({a="b"})[5m] | unwrap x)"#,
    r#"count_over_time(({a="b"}[5m]))"#,
    r#"count_over_time((({a="b"} |= "x" [5m])))"#,
    // vector aggregations
    r#"sum(rate({a="b"}[5m]))"#,
    r#"sum by (a, b) (rate({a="b"}[5m]))"#,
    r#"sum(rate({a="b"}[5m])) by (a)"#,
    r#"sum without (a) (rate({a="b"}[5m]))"#,
    r#"sum(rate({a="b"}[5m])) without (a)"#,
    r#"sum by () (rate({a="b"}[5m]))"#,
    r#"avg(rate({a="b"}[5m]))"#,
    r#"min(rate({a="b"}[5m]))"#,
    r#"max(rate({a="b"}[5m]))"#,
    r#"count(rate({a="b"}[5m]))"#,
    r#"stddev(rate({a="b"}[5m]))"#,
    r#"stdvar(rate({a="b"}[5m]))"#,
    r#"topk(5, rate({a="b"}[5m]))"#,
    r#"topk by (a) (5, rate({a="b"}[5m]))"#,
    r#"bottomk(1, rate({a="b"}[5m])) by (a)"#,
    r#"sort(rate({a="b"}[5m]))"#,
    r#"sort_desc(rate({a="b"}[5m]))"#,
    r#"approx_topk(3, rate({a="b"}[5m]))"#,
    r#"SUM BY (a) (RATE({a="b"}[5m]))"#,
    r#"sum(sum by (a) (rate({a="b"}[5m])))"#,
    r#"sum(1)"#,
    r#"sum(vector(1))"#,
    // binary operations
    r#"rate({a="b"}[5m]) + rate({a="c"}[5m])"#,
    r#"rate({a="b"}[5m]) - rate({a="c"}[5m]) - rate({a="d"}[5m])"#,
    r#"rate({a="b"}[5m]) - (rate({a="c"}[5m]) - rate({a="d"}[5m]))"#,
    r#"rate({a="b"}[5m]) * 2 + 1"#,
    r#"rate({a="b"}[5m]) * (2 + rate({a="c"}[5m]))"#,
    r#"rate({a="b"}[5m]) / rate({a="c"}[5m]) % 3"#,
    r#"rate({a="b"}[5m]) ^ 2 ^ rate({a="c"}[5m])"#,
    r#"(rate({a="b"}[5m]) ^ 2) ^ rate({a="c"}[5m])"#,
    r#"rate({a="b"}[5m]) == 1"#,
    r#"rate({a="b"}[5m]) != 1"#,
    r#"rate({a="b"}[5m]) > bool 1"#,
    r#"rate({a="b"}[5m]) >= 1 < 5 <= 6"#,
    r#"rate({a="b"}[5m]) and rate({a="c"}[5m]) or rate({a="d"}[5m]) unless rate({a="e"}[5m])"#,
    r#"rate({a="b"}[5m]) or rate({a="c"}[5m]) and rate({a="d"}[5m])"#,
    r#"rate({a="b"}[5m]) / on (a) rate({a="c"}[5m])"#,
    r#"rate({a="b"}[5m]) / on () rate({a="c"}[5m])"#,
    r#"rate({a="b"}[5m]) / ignoring (a, b) rate({a="c"}[5m])"#,
    r#"rate({a="b"}[5m]) / ignoring () rate({a="c"}[5m])"#,
    r#"rate({a="b"}[5m]) / on (a) group_left rate({a="c"}[5m])"#,
    r#"rate({a="b"}[5m]) / on (a) group_left () rate({a="c"}[5m])"#,
    r#"rate({a="b"}[5m]) / on (a) group_left (b, c) rate({a="c"}[5m])"#,
    r#"rate({a="b"}[5m]) * ignoring (a) group_right (b) rate({a="c"}[5m])"#,
    r#"rate({a="b"}[5m]) > bool on (a) rate({a="c"}[5m])"#,
    r#"-1 * rate({a="b"}[5m])"#,
    r#"rate({a="b"}[5m]) * -1"#,
    r#"rate({a="b"}[5m]) - - 1"#,
    r#"- 2 ^ rate({a="b"}[5m])"#,
    r#"(((rate({a="b"}[5m]))))"#,
    // literals, vector, label_replace
    "1",
    "-1",
    "+1.5",
    "1e3",
    "0.000001",
    "1 + 2 * 3",
    "2 ^ 3 ^ 2",
    "1 / 0",
    "0 % 0",
    "1 > 2",
    "vector(1)",
    "vector(0.5) + vector(2)",
    "vector(1) * 2",
    r#"label_replace(rate({a="b"}[5m]), "dst", "$1", "src", "(.*)")"#,
    r#"label_replace(vector(1), "dst", "", "", "")"#,
    r#"sum(label_replace(rate({a="b"}[5m]), "x", "y", "z", "w")) by (x)"#,
    // comments and layout
    "sum(rate({a=\"b\"} # the app\n  |= \"x\" # errors only\n  [5m]))",
    "\n\t sum (\n  rate( {a=\"b\"} [5m] )\n )\n",
];

#[test]
fn every_construct_round_trips() {
    for query in MORE_QUERIES {
        round_trip(query);
    }
    assert!(CONFORMANCE_QUERIES.len() + MORE_QUERIES.len() >= 150);
}

#[track_caller]
fn canonical(query: &str, want: &str) {
    let expr = parse_expr(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    assert_eq!(expr.to_string(), want, "canonical form of {query}");
}

#[test]
fn canonical_forms() {
    canonical(r#"{ a = "b" ,c=~`d`}"#, r#"{a="b", c=~"d"}"#);
    canonical(r#"{a="b"}|="x"or"y""#, r#"{a="b"} |= "x" or "y""#);
    canonical(
        r#"{a="b"} | json servers"#,
        r#"{a="b"} | json servers="servers""#,
    );
    canonical(
        r#"{a="b"} | x=1, y=2 or z=3"#,
        r#"{a="b"} | x == 1, y == 2 or z == 3"#,
    );
    canonical(
        r#"{a="b"} | x=1 y=2 z=3"#,
        r#"{a="b"} | x == 1, y == 2 and z == 3"#,
    );
    canonical(
        r#"{a="b"} | (x=1 or y=2) z=3"#,
        r#"{a="b"} | (x == 1 or y == 2) and z == 3"#,
    );
    canonical(
        r#"{a="b"} | (x=1 or y=2) (z=3, w=4)"#,
        r#"{a="b"} | (x == 1 or y == 2), z == 3 and w == 4"#,
    );
    canonical(
        r#"{a="b"} | (x=1, y=2 or z=3) or w=4"#,
        r#"{a="b"} | (x == 1, y == 2 or z == 3) or w == 4"#,
    );
    canonical(
        r#"{a="b"} | (x=1, y=2 or z=3) and w=4"#,
        r#"{a="b"} | (x == 1, y == 2 or z == 3) and w == 4"#,
    );
    canonical(
        r#"{a="b"} | x=1 or (y=2 or z=3)"#,
        r#"{a="b"} | x == 1 or (y == 2 or z == 3)"#,
    );
    canonical(
        r#"{a="b"} | x=1 and y=2 and z=3"#,
        r#"{a="b"} | x == 1 and y == 2 and z == 3"#,
    );
    canonical(
        r#"{a="b"} | x=1 or y=2 and z=3"#,
        r#"{a="b"} | x == 1 or y == 2 and z == 3"#,
    );
    canonical(
        r#"{a="b"} | x=1 and y=2 or z=3"#,
        r#"{a="b"} | x == 1 and y == 2 or z == 3"#,
    );
    canonical(
        r#"{a="b"} | d > 1h15m30.5s | s > 1.5KB"#,
        r#"{a="b"} | d > 1h15m30s500ms | s > 1500B"#,
    );
    canonical(r#"rate({a="b"}[1d])"#, r#"rate({a="b"}[24h])"#);
    canonical(
        r#"count_over_time({a="b"}[5m] |= "x")"#,
        r#"count_over_time({a="b"} |= "x" [5m])"#,
    );
    canonical(
        r#"count_over_time(({a="b"} |= "x")[5m] offset 1m)"#,
        r#"count_over_time({a="b"} |= "x" [5m] offset 1m)"#,
    );
    canonical(
        r#"sum(rate({a="b"}[5m])) by (x,y)"#,
        r#"sum by (x, y) (rate({a="b"}[5m]))"#,
    );
    canonical("1 + 2 * 3", "7");
    canonical("2 ^ 3 ^ 2", "512");
    canonical("(2 ^ 3) ^ 2", "64");
    canonical("10 - 2 - 3", "5");
    canonical("1 > 2", "0");
    canonical("1 / 0", "1 / 0");
    canonical("vector(1)+vector(1)", "vector(1) + vector(1)");
    canonical("- 5", "-5");
    canonical("- 0", "-0.0");
    canonical(r#"{a="b"} | x > - 0"#, r#"{a="b"} | x > -0.0"#);
    canonical(r#"{a="b"} | x > -0"#, r#"{a="b"} | x > 0s"#);
    canonical("1e3", "1000");
    canonical("1e-7", "1e-7");
    canonical(r#"rate({a="b"}[5m]) * (1 + 2)"#, r#"rate({a="b"}[5m]) * 3"#);
    canonical(
        r#"(rate({a="b"}[5m]) * 2) + 1"#,
        r#"rate({a="b"}[5m]) * 2 + 1"#,
    );
    canonical(
        r#"rate({a="b"}[5m]) * (2 + rate({a="c"}[5m]))"#,
        r#"rate({a="b"}[5m]) * (2 + rate({a="c"}[5m]))"#,
    );
    canonical(
        r#"rate({a="b"}[5m]) / on(a) group_left() rate({a="c"}[5m])"#,
        r#"rate({a="b"}[5m]) / on (a) group_left rate({a="c"}[5m])"#,
    );
}

#[track_caller]
fn binop_shape(query: &str, want: &str) {
    fn shape(e: &SampleExpr) -> String {
        match e {
            SampleExpr::BinOp(b) => {
                format!("({} {} {})", shape(&b.lhs), b.op.as_str(), shape(&b.rhs))
            }
            SampleExpr::VectorAggregation(v) => v.op.as_str().to_string(),
            SampleExpr::Vector(v) => format!("v{}", v.value),
            other => other.to_string(),
        }
    }
    let expr = parse_sample_expr(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    assert_eq!(shape(&expr), want, "{query}");
}

#[test]
fn binary_operator_precedence() {
    binop_shape("vector(1) + vector(2) * vector(3)", "(v1 + (v2 * v3))");
    binop_shape("vector(1) * vector(2) + vector(3)", "((v1 * v2) + v3)");
    binop_shape("vector(1) - vector(2) - vector(3)", "((v1 - v2) - v3)");
    binop_shape("vector(1) ^ vector(2) ^ vector(3)", "(v1 ^ (v2 ^ v3))");
    binop_shape("vector(1) * vector(2) ^ vector(3)", "(v1 * (v2 ^ v3))");
    binop_shape("vector(1) > vector(2) + vector(3)", "(v1 > (v2 + v3))");
    binop_shape("vector(1) == vector(2) != vector(3)", "((v1 == v2) != v3)");
    binop_shape("vector(1) and vector(2) > vector(3)", "(v1 and (v2 > v3))");
    binop_shape(
        "vector(1) or vector(2) and vector(3)",
        "(v1 or (v2 and v3))",
    );
    binop_shape(
        "vector(1) and vector(2) or vector(3)",
        "((v1 and v2) or v3)",
    );
    binop_shape(
        "vector(1) unless vector(2) and vector(3)",
        "((v1 unless v2) and v3)",
    );
    binop_shape("vector(1) % vector(2) / vector(3)", "((v1 % v2) / v3)");
    binop_shape("(vector(1) + vector(2)) * vector(3)", "((v1 + v2) * v3)");
    binop_shape("-1 ^ vector(2)", "(-1 ^ v2)");
}

#[test]
fn ast_of_a_metric_query() {
    let expr = parse_expr(r#"quantile_over_time(0.99, {job="m"} | json | unwrap duration(d) | __error__="" [10m] offset 1m) by (app)"#).unwrap();
    let Expr::Sample(SampleExpr::RangeAggregation(agg)) = expr else {
        panic!("not a range aggregation: {expr:?}");
    };
    assert_eq!(agg.op, RangeOp::QuantileOverTime);
    assert_eq!(agg.param, Some(0.99));
    assert_eq!(
        agg.grouping,
        Some(Grouping {
            without: false,
            labels: vec!["app".to_string()]
        })
    );
    assert_eq!(agg.range.range, Duration::from_secs(600));
    assert_eq!(agg.range.offset, Duration::from_secs(60));
    assert_eq!(
        agg.range.log.selector.matchers,
        vec![Matcher::new("job", MatchOp::Eq, "m").unwrap()]
    );
    assert_eq!(
        agg.range.log.pipeline,
        vec![Stage::LabelParser(LabelParserExpr::Json {
            expressions: vec![]
        })]
    );
    let unwrap = agg.range.unwrap.expect("unwrap");
    assert_eq!(unwrap.identifier, "d");
    assert_eq!(unwrap.conversion, Some(UnwrapConversion::Duration));
    assert_eq!(
        unwrap.post_filters,
        vec![LabelFilterExpr::String(
            Matcher::new("__error__", MatchOp::Eq, "").unwrap()
        )]
    );
}

#[test]
fn ast_of_a_log_query() {
    let log = parse_log_expr(r#"{app="a"} |= "x" or ip("10.0.0.1") != "y" | logfmt --strict | d > 1s, s < 1KB | label_format a=b | drop c"#).unwrap();
    let want = vec![
        Stage::LineFilter(LineFilterExpr {
            op: LineFilterOp::Contains,
            values: vec![
                LineFilterValue::Literal("x".into()),
                LineFilterValue::Ip("10.0.0.1".into()),
            ],
        }),
        Stage::LineFilter(LineFilterExpr {
            op: LineFilterOp::NotContains,
            values: vec![LineFilterValue::Literal("y".into())],
        }),
        Stage::LabelParser(LabelParserExpr::Logfmt {
            strict: true,
            keep_empty: false,
            expressions: vec![],
        }),
        Stage::LabelFilter(LabelFilterExpr::And(
            Box::new(LabelFilterExpr::Duration {
                name: "d".into(),
                op: CmpOp::Gt,
                value: Duration::from_secs(1),
            }),
            Box::new(LabelFilterExpr::Bytes {
                name: "s".into(),
                op: CmpOp::Lt,
                value: 1000,
            }),
        )),
        Stage::LabelFormat(LabelFormatExpr {
            formats: vec![LabelFmt::Rename {
                dst: "a".into(),
                src: "b".into(),
            }],
        }),
        Stage::DropLabels(DropLabelsExpr {
            labels: vec![LabelRef::Name("c".into())],
        }),
    ];
    assert_eq!(log.pipeline, want);
}

#[test]
fn semantic_errors() {
    fails(
        r#"sum_over_time({a="b"}[5m])"#,
        "parse error : invalid aggregation sum_over_time without unwrap",
    );
    fails(
        r#"avg_over_time({a="b"} | json [5m])"#,
        "parse error : invalid aggregation avg_over_time without unwrap",
    );
    fails(
        r#"count_over_time({a="b"} | unwrap x [5m])"#,
        "parse error : invalid aggregation count_over_time with unwrap",
    );
    fails(
        r#"bytes_rate({a="b"} | unwrap x [5m])"#,
        "parse error : invalid aggregation bytes_rate with unwrap",
    );
    fails(
        r#"count_over_time({a="b"}[5m]) by (a)"#,
        "parse error : grouping not allowed for count_over_time aggregation",
    );
    fails(
        r#"quantile_over_time({a="b"} | unwrap x [5m])"#,
        "parse error : parameter required for operation quantile_over_time",
    );
    fails(
        r#"rate(5, {a="b"}[5m])"#,
        "parse error : parameter 5 not supported for operation rate",
    );
    fails(
        r#"topk(rate({a="b"}[5m]))"#,
        "parse error : parameter required for operation topk",
    );
    fails(
        r#"topk(1.5, rate({a="b"}[5m]))"#,
        "parse error : invalid parameter topk(1.5,",
    );
    fails(
        r#"bottomk(0, rate({a="b"}[5m]))"#,
        "parse error : invalid parameter (must be greater than 0) bottomk(0",
    );
    fails(
        r#"sum(5, rate({a="b"}[5m]))"#,
        "parse error : unsupported parameter for operation sum(5,",
    );
    fails(
        r#"approx_topk(5, rate({a="b"}[5m])) by (a)"#,
        "parse error : grouping not allowed for approx_topk aggregation",
    );
    fails(
        r#"sort by (a) (rate({a="b"}[5m]))"#,
        "parse error : sort and sort_desc doesn't allow grouping by ",
    );
    fails(
        r#"{a="b"} or {c="d"}"#,
        "parse error : unexpected type for left leg of binary operation (or): *syntax.MatchersExpr",
    );
    fails(
        r#"rate({a="b"}[5m]) + {c="d"} |= "x""#,
        "parse error : unexpected type for right leg of binary operation (+): *syntax.PipelineExpr",
    );
    fails(r#"1 and rate({a="b"}[5m])"#, "parse error : unexpected literal for left leg of logical/set binary operation (and): 1.000000");
    fails(r#"rate({a="b"}[5m]) unless 2"#, "parse error : unexpected literal for right leg of logical/set binary operation (unless): 2.000000");
    fails(
        r#"label_replace(rate({a="b"}[5m]), "d", "r", "s", "(")"#,
        "parse error : invalid regex in label_replace: unclosed group",
    );
    fails(
        r#"{a="b"} | regexp "(\\w+)""#,
        "parse error : invalid regexp parser: at least one named capture must be supplied",
    );
    fails(
        r#"{a="b"} | pattern "<_> foo""#,
        "parse error : invalid pattern parser: at least one capture is required",
    );
    fails(r#"{a="b"} | pattern "<a><b>""#, "parse error : invalid pattern parser: found consecutive capture '<a><b>': invalid expression");
    fails(
        r#"{a="b"} | pattern "<a> <a>""#,
        "parse error : invalid pattern parser: duplicate capture name (a): invalid expression",
    );
    fails(
        r#"rate({a=~".*"}[5m]) + rate({b="c"}[5m])"#,
        &format!("parse error : {ERR_EMPTY_COMPATIBLE_SELECTOR}"),
    );
    fails(r#"{a="b"} | x > 1e999"#, "parse error : unable to parse literal as a float: strconv.ParseFloat: parsing \"1e999\": invalid syntax");
    fails(
        &"1".repeat(MAX_INPUT_SIZE),
        &format!("parse error : input size too long ({MAX_INPUT_SIZE} > {MAX_INPUT_SIZE})"),
    );
}

#[test]
fn syntax_errors() {
    fails(
        "",
        "parse error at line 1, col 1: syntax error: unexpected $end",
    );
    fails(
        r#"{a="b"} foo"#,
        "parse error at line 1, col 9: syntax error: unexpected IDENTIFIER",
    );
    fails(
        r#"{a="b"}[5m]"#,
        "parse error at line 1, col 8: syntax error: unexpected RANGE",
    );
    fails(
        r#"{a="b"} |= "x" or"#,
        "parse error at line 1, col 18: syntax error: unexpected $end, expecting STRING or ip",
    );
    fails(
        r#"{a="b"} | json | x > "1""#,
        "parse error at line 1, col 22: syntax error: unexpected STRING",
    );
    fails(
        r#"{a="b"} | json | x =~ 5"#,
        "parse error at line 1, col 23: syntax error: unexpected NUMBER, expecting STRING",
    );
    fails(
        r#"{a="b"} | unwrap x"#,
        "parse error at line 1, col 11: syntax error: unexpected unwrap",
    );
    fails(r#"sum({a="b"} | unwrap x)"#, "parse error at line 1, col 5: syntax error: unexpected log query, expecting a metric query");
    fails(
        r#"rate({a="b"} | unwrap x | json [5m])"#,
        "parse error at line 1, col 27: syntax error: unexpected json, expecting IDENTIFIER",
    );
    fails(
        r#"rate({a="b"} |= "x" [5m] |= "y")"#,
        "parse error at line 1, col 26: syntax error: unexpected |=, expecting )",
    );
    fails(r#"sum({a="b"})"#, "parse error at line 1, col 5: syntax error: unexpected log query, expecting a metric query");
    fails(
        r#"sum by (a) (rate({a="b"}[5m])) by (b)"#,
        "parse error at line 1, col 32: syntax error: unexpected by",
    );
    fails(
        r#"rate({a="b"}[5m]) offset 5m"#,
        "parse error at line 1, col 19: syntax error: unexpected offset",
    );
    fails(
        r#"vector(-1)"#,
        "parse error at line 1, col 8: syntax error: unexpected -, expecting NUMBER",
    );
    fails(
        r#"rate({a="b"}[5m]) / on (a) group_left (sum(x))"#,
        "parse error at line 1, col 40: syntax error: unexpected SUM, expecting IDENTIFIER",
    );
    fails(
        r#"rate({a="b"}[5m]) + -rate({a="c"}[5m])"#,
        "parse error at line 1, col 22: syntax error: unexpected RATE, expecting NUMBER",
    );
    fails(
        r#"rate({a="b"}[5m] offset)"#,
        "parse error at line 1, col 24: syntax error: unexpected ), expecting DURATION",
    );
    fails(
        r#"rate({a="b"}[ 5m ])"#,
        "parse error at line 1, col 13: not a valid duration string: \" 5m \"",
    );
    fails(
        r#"{a="b"} | logfmt --bogus"#,
        "parse error at line 1, col 20: syntax error: unexpected IDENTIFIER, expecting NUMBER",
    );
    fails(
        "{a=\"b\"}\n| json\n| x >",
        "parse error at line 3, col 6: syntax error: unexpected $end",
    );
}

#[test]
fn nesting_is_capped() {
    let deep = |n: usize| format!("{}vector(1){}", "(".repeat(n), ")".repeat(n));
    assert!(parse_expr(&deep(100)).is_ok());
    let err = parse_expr(&deep(MAX_DEPTH + 10)).unwrap_err();
    assert!(err.message().contains("nested too deeply"), "{err}");
    let filters = format!(r#"{{a="b"}} | {}x="1"{}"#, "(".repeat(300), ")".repeat(300));
    assert!(parse_expr(&filters)
        .unwrap_err()
        .message()
        .contains("nested too deeply"));
    let pow = format!("vector(1){}", " ^ vector(1)".repeat(400));
    assert!(parse_expr(&pow)
        .unwrap_err()
        .message()
        .contains("nested too deeply"));
    let commas = format!(r#"{{a="b"}} | {}x="1""#, "x=\"1\", ".repeat(500));
    round_trip(&commas);
}

/// Every prefix of every test query either parses or fails cleanly.
#[test]
fn truncated_queries_never_panic() {
    for query in CONFORMANCE_QUERIES.iter().chain(MORE_QUERIES) {
        for (i, _) in query.char_indices() {
            let _ = parse_expr(&query[..i]);
            let _ = parse_expr(&query[i..]);
        }
    }
}

/// A small deterministic fuzzer: splices fragments of LogQL into the test queries. No
/// input may panic, and whatever parses must survive the printer round trip.
#[test]
fn mutated_queries_round_trip_or_fail_cleanly() {
    const FRAGMENTS: &[&str] = &[
        "(",
        ")",
        "{",
        "}",
        "[5m]",
        "|",
        "|=",
        "!=",
        "|~",
        " or ",
        " and ",
        ",",
        "\"x\"",
        "`y`",
        " 1 ",
        "-",
        "+",
        "*",
        "^",
        " bool ",
        " on (a) ",
        " group_left ",
        " by (a) ",
        "rate(",
        "sum(",
        "| json",
        "| logfmt --strict",
        "| unwrap x",
        " offset 1m",
        "a=\"b\"",
        " x > 5 ",
        " 250ms ",
        " 5KB ",
        "ip(\"1.1.1.1\")",
        "#c\n",
        "vector(1)",
        "\\",
        "\"",
        "ü",
        " ",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut parsed = 0;
    for query in CONFORMANCE_QUERIES.iter().chain(MORE_QUERIES) {
        for _ in 0..40 {
            let mut q = query.to_string();
            for _ in 0..1 + next(3) {
                let boundaries: Vec<usize> =
                    (0..=q.len()).filter(|i| q.is_char_boundary(*i)).collect();
                let at = boundaries[next(boundaries.len())];
                let end = boundaries[(boundaries.iter().position(|b| *b == at).unwrap() + next(4))
                    .min(boundaries.len() - 1)];
                let fragment = FRAGMENTS[next(FRAGMENTS.len())];
                q.replace_range(at..end, fragment);
            }
            if let Ok(expr) = parse_expr(&q) {
                parsed += 1;
                let printed = expr.to_string();
                let again = parse_expr(&printed)
                    .unwrap_or_else(|e| panic!("{q}\n  printed {printed}\n  {e}"));
                assert_eq!(expr, again, "{q}\n  printed {printed}");
                let pretty = format_query(&expr);
                assert_eq!(
                    parse_expr(&pretty).as_ref(),
                    Ok(&expr),
                    "{q}\n  pretty {pretty}"
                );
            }
        }
    }
    assert!(parsed > 500, "only {parsed} mutants parsed");
}

#[track_caller]
fn pretty(query: &str, want: &str) {
    let got = format_query(&parse_expr(query).unwrap_or_else(|e| panic!("{query}: {e}")));
    assert_eq!(got, want, "format_query of {query}");
}

#[test]
fn format_query_breaks_long_queries() {
    pretty(r#"sum(rate({a="b"}[5m]))"#, r#"sum(rate({a="b"}[5m]))"#);
    pretty(
        r#"sum by (app) (count_over_time({job="microservices"} |= "error" [5m])) / ignoring(level) sum by (app) (count_over_time({job="microservices"}[5m]))"#,
        "sum by (app) (count_over_time({job=\"microservices\"} |= \"error\" [5m]))\n/ ignoring (level)\nsum by (app) (count_over_time({job=\"microservices\"}[5m]))",
    );
    pretty(
        r#"{job="microservices"} |= "error" | json | line_format "{{.service}} {{.status}} {{.path}}" | level="error" or status >= 500"#,
        "{job=\"microservices\"}\n  |= \"error\"\n  | json\n  | line_format \"{{.service}} {{.status}} {{.path}}\"\n  | level=\"error\" or status >= 500",
    );
    pretty(
        r#"label_replace(sum by (app) (rate({job="microservices", namespace="production"}[5m])), "team", "core", "app", "(api-gateway|user-service)")"#,
        "label_replace(\n  sum by (app) (rate({job=\"microservices\", namespace=\"production\"}[5m])),\n  \"team\",\n  \"core\",\n  \"app\",\n  \"(api-gateway|user-service)\"\n)",
    );
    pretty(
        r#"topk(3, sum by (app, level) (quantile_over_time(0.99, {job="microservices"} | logfmt | unwrap duration_ms | __error__="" [30m] offset 5m)))"#,
        "topk(\n  3,\n  sum by (app, level) (\n    quantile_over_time(\n      0.99,\n      {job=\"microservices\"} | logfmt\n      | unwrap duration_ms | __error__=\"\" [30m] offset 5m\n    )\n  )\n)",
    );
}
