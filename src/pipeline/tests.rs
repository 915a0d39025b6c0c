//! Table tests of the pipeline, one line per case: a log line, the stream labels, the
//! pipeline text → the resulting line and labels, or filtered out. The behaviour follows
//! Loki's own test tables (parser, label filter, formatting, filter and ip tests).

use super::*;
use crate::logql::{parse_expr, Expr, SampleExpr};

const APP: &[(&str, &str)] = &[("app", "x")];
const APP_LEVEL: &[(&str, &str)] = &[("app", "x"), ("level", "info")];

fn show(labels: &[(String, String)]) -> String {
    labels
        .iter()
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn run(stream: &[(&str, &str)], line: &str, pipeline: &str) -> Option<(String, String)> {
    let query = format!("{{app=\"x\"}} {pipeline}");
    let mut p = pipeline_for_query(&query).unwrap_or_else(|e| panic!("{query}: {e}"));
    let mut b = LabelsBuilder::for_stream(stream);
    b.start_entry::<&str, &str>(&[]);
    let out = p.process(7, line.as_bytes(), &mut b)?;
    Some((String::from_utf8_lossy(out).into_owned(), show(&b.labels())))
}

/// `want`: `None` when filtered out, else the line and the labels as `a="1", b="2"`.
#[track_caller]
fn check_stream(stream: &[(&str, &str)], line: &str, pipeline: &str, want: Option<(&str, &str)>) {
    let got = run(stream, line, pipeline);
    let want = want.map(|(l, s)| (l.to_string(), s.to_string()));
    assert_eq!(got, want, "line {line:?} | pipeline {pipeline}");
}

/// Stream `{app="x"}`; the line is expected unchanged.
#[track_caller]
fn labels(line: &str, pipeline: &str, want: &str) {
    check_stream(APP, line, pipeline, Some((line, want)));
}

/// Stream `{app="x"}`: whether the entry passes (labels not checked).
#[track_caller]
fn passes(line: &str, pipeline: &str, want: bool) {
    assert_eq!(
        run(APP, line, pipeline).is_some(),
        want,
        "line {line:?} | {pipeline}"
    );
}

/// Stream `{app="x"}`: the resulting line.
#[track_caller]
fn line_out(line: &str, pipeline: &str, want: &str) {
    let got = run(APP, line, pipeline).map(|(l, _)| l);
    assert_eq!(got.as_deref(), Some(want), "line {line:?} | {pipeline}");
}

#[test]
fn line_filters() {
    passes("an error here", r#"|= "error""#, true);
    passes("all good", r#"|= "error""#, false);
    passes("an error here", r#"!= "error""#, false);
    passes("all good", r#"!= "error""#, true);
    passes("anything", r#"|= """#, true);
    passes("anything", r#"!= """#, false);
    passes("status=503", r#"|~ "status=5\\d\\d""#, true);
    passes("status=403", r#"|~ "status=5\\d\\d""#, false);
    passes("status=503", r#"!~ "status=5\\d\\d""#, false);
    passes("xfooy", r#"|~ "foo""#, true);
    passes("a NULL Pointer", r#"|~ "(?i)null pointer""#, true);
    passes("a null", r#"|~ "(?i)null pointer""#, false);
    passes("ÏB", r#"|~ "(?i)ïb""#, true);
    passes("foo bar", r#"|~ "foo|baz""#, true);
    passes("qux", r#"|~ "foo|baz""#, false);
    passes("", r#"|~ ".*""#, true);
    passes("", r#"|~ ".+""#, false);
    passes("x", r#"|~ ".+""#, true);
    passes("slow query", r#"|= "slow" or "retrying""#, true);
    passes("retrying now", r#"|= "slow" or "retrying""#, true);
    passes("fast", r#"|= "slow" or "retrying""#, false);
    passes("slow", r#"!= "slow" or "retrying""#, false);
    passes("retrying", r#"!= "slow" or "retrying""#, false);
    passes("fine", r#"!= "slow" or "retrying""#, true);
    passes(
        "error in /api/payments",
        r#"|= "error" |= "/api/payments""#,
        true,
    );
    passes(
        "error in /api/users",
        r#"|= "error" |= "/api/payments""#,
        false,
    );
    passes("level=warn", r#"|~ "warn" or "error""#, true);
    passes("café", r#"|~ "é$""#, true);
    passes("ünïcode", r#"|~ "ünï|🚀""#, true);
    passes("launch 🚀", r#"|~ "ünï|🚀""#, true);
    passes("a\nb", r#"|~ "a.b""#, false);
    passes("foo", r#"|~ "foo|.*""#, true);
    passes("bar", r#"|~ "foo|.*""#, false);
}

#[test]
fn pattern_line_filters() {
    passes(
        r#"a msg="upstream timeout" b"#,
        r#"|> "<_>msg=\"upstream timeout\"<_>""#,
        true,
    );
    passes(
        r#"msg="upstream timeout" b"#,
        r#"|> "<_>msg=\"upstream timeout\"<_>""#,
        false,
    );
    passes("GET /a 200", r#"|> "<_> <_> 200""#, true);
    passes("GET /a 500", r#"|> "<_> <_> 200""#, false);
    passes("GET /a 500", r#"!> "<_> <_> 200""#, true);
    passes("foo bar", r#"|> "foo <_>""#, true);
    // The leading literal is not anchored (Loki's `Test`).
    passes("xfoo bar", r#"|> "foo <_>""#, true);
    passes("a 200", r#"|> "<_> 200" or "<_> 201""#, true);
    passes("a 201", r#"|> "<_> 200" or "<_> 201""#, true);
}

#[test]
fn ip_line_filters() {
    passes("client 10.1.2.3 connected", r#"|= ip("10.0.0.0/8")"#, true);
    passes("client 11.1.2.3 connected", r#"|= ip("10.0.0.0/8")"#, false);
    passes("client 11.1.2.3 connected", r#"!= ip("10.0.0.0/8")"#, true);
    passes(
        "from 192.168.0.3:80",
        r#"|= ip("192.168.0.1-192.168.0.5")"#,
        true,
    );
    passes(
        "from 192.168.0.9:80",
        r#"|= ip("192.168.0.1-192.168.0.5")"#,
        false,
    );
    passes("host=::1 up", r#"|= ip("::1")"#, true);
    passes("host=::2 up", r#"|= ip("::1")"#, false);
    passes("addr 2001:db8::1", r#"|= ip("2001:db8::/32")"#, true);
    passes("no address", r#"|= ip("0.0.0.0/0")"#, false);
    passes("v 1.2.3.4", r#"|= ip("0.0.0.0/0")"#, true);
    passes("a 10.0.0.1 b 172.16.0.1", r#"|= ip("172.16.0.0/12")"#, true);
    passes("version 1.2.3", r#"|= ip("1.2.3.0/24")"#, false);
    passes(
        "a 10.0.0.1",
        r#"!= ip("10.0.0.1") or ip("10.0.0.2")"#,
        false,
    );
    passes("a 10.0.0.3", r#"!= ip("10.0.0.1") or ip("10.0.0.2")"#, true);
}

#[test]
fn json_parser() {
    labels(r#"{"a":"b","n":1}"#, "| json", r#"a="b", app="x", n="1""#);
    labels(
        r#"{"app":"foo","namespace":"prod","pod":{"uuid":"u","deployment":{"ref":"r"}}}"#,
        "| json",
        r#"app="x", app_extracted="foo", namespace="prod", pod_deployment_ref="r", pod_uuid="u""#,
    );
    labels(
        r#"{"counter":1, "price": {"_net_":5.56909}}"#,
        "| json",
        r#"app="x", counter="1", price__net_="5.56909""#,
    );
    labels(r#"{" ": {"foo":"bar"}}"#, "| json", r#"app="x", foo="bar""#);
    labels(
        r#"{"foo":"foo\\\"bar"}"#,
        "| json",
        r#"app="x", foo="foo\\\"bar""#,
    );
    labels(r#"{"foo":"\u00e9\n"}"#, "| json", r#"app="x", foo="é\n""#);
    labels(r#"{"foo":"�"}"#, "| json", r#"app="x", foo=" ""#);
    labels(
        r#"{"counter":1, "price": {"net_":["10","20"]}}"#,
        "| json",
        r#"app="x", counter="1""#,
    );
    labels(r#"{"cou-nter":1}"#, "| json", r#"app="x", cou_nter="1""#);
    labels(r#"{"1a":1}"#, "| json", r#"_1a="1", app="x""#);
    labels(r#"{"a":{"1b":2}}"#, "| json", r#"a_1b="2", app="x""#);
    labels(
        r#"{"ok":true,"bad":false}"#,
        "| json",
        r#"app="x", bad="false", ok="true""#,
    );
    labels(r#"{"n":null,"m":"y"}"#, "| json", r#"app="x", m="y""#);
    labels(r#"{"f":-1.5e3}"#, "| json", r#"app="x", f="-1.5e3""#);
    labels(r#"{"a":"1","a":"2"}"#, "| json", r#"a="2", app="x""#);
    labels(r#"{}"#, "| json", r#"app="x""#);
    labels(
        r#"{n}"#,
        "| json",
        r#"__error__="JSONParserErr", __error_details__="Value looks like object, but can't find closing '}' symbol", app="x""#,
    );
    labels(
        "level=info msg=hi",
        "| json",
        r#"__error__="JSONParserErr", __error_details__="Value looks like object, but can't find closing '}' symbol", app="x""#,
    );
    labels(
        r#"{"a":"b","c":tru}"#,
        "| json",
        r#"__error__="JSONParserErr", __error_details__="Unknown value type", a="b", app="x""#,
    );
    labels(
        r#"{"a":"b" "c":1}"#,
        "| json",
        r#"__error__="JSONParserErr", __error_details__="Value looks like object, but can't find closing '}' symbol", a="b", app="x""#,
    );
    labels(
        r#"{"a":"b"#,
        "| json",
        r#"__error__="JSONParserErr", __error_details__="Value is string, but can't find closing '\"' symbol", app="x""#,
    );
    labels(
        r#"{"a":{"b":{"c":"d"}},"e":[{"f":1}]}"#,
        "| json",
        r#"a_b_c="d", app="x""#,
    );
    labels(r#"  {"a" : "b" }  "#, "| json", r#"a="b", app="x""#);
    check_stream(
        APP_LEVEL,
        r#"{"level":"error","msg":"m"}"#,
        r#"| json | level="info""#,
        Some((
            r#"{"level":"error","msg":"m"}"#,
            r#"app="x", level="info", level_extracted="error", msg="m""#,
        )),
    );
}

#[test]
fn json_expressions() {
    let line = r#"{"a":{"b":"c","n":5},"list":[{"x":"y"},"s",3],"m":{"k-1":"v"},"nul":null}"#;
    labels(line, r#"| json v="a.b""#, r#"app="x", v="c""#);
    labels(line, r#"| json v="a.n""#, r#"app="x", v="5""#);
    labels(
        line,
        r#"| json v="a""#,
        r#"app="x", v="{\"b\":\"c\",\"n\":5}""#,
    );
    labels(line, r#"| json v="list[1]""#, r#"app="x", v="s""#);
    labels(line, r#"| json v="list[2]""#, r#"app="x", v="3""#);
    labels(line, r#"| json v="list[0].x""#, r#"app="x", v="y""#);
    labels(line, r#"| json v="m[\"k-1\"]""#, r#"app="x", v="v""#);
    labels(line, r#"| json v="nul""#, r#"app="x", v="""#);
    labels(line, r#"| json v="missing""#, r#"app="x", v="""#);
    labels(line, r#"| json v="list[9]""#, r#"app="x", v="""#);
    labels(
        line,
        r#"| json a="a.b", b="a.n""#,
        r#"a="c", app="x", b="5""#,
    );
    labels(line, "| json a", r#"a="{\"b\":\"c\",\"n\":5}", app="x""#);
    labels(
        "not json",
        r#"| json v="a""#,
        r#"__error__="JSONParserErr", app="x""#,
    );
    labels(r#""just a string""#, r#"| json v="a""#, r#"app="x", v="""#);
    labels(
        r#"{"app":"y"}"#,
        r#"| json app="app""#,
        r#"app="x", app_extracted="y""#,
    );
    labels(r#"{"s":"a\"b"}"#, r#"| json v="s""#, r#"app="x", v="a\"b""#);
}

#[test]
fn logfmt_parser() {
    labels("a=b c=d", "| logfmt", r#"a="b", app="x", c="d""#);
    labels(
        r#"msg="hello world" n=1"#,
        "| logfmt",
        r#"app="x", msg="hello world", n="1""#,
    );
    labels(
        r#"msg="say \"hi\"""#,
        "| logfmt",
        r#"app="x", msg="say \"hi\"""#,
    );
    labels("a= b=2", "| logfmt", r#"app="x", b="2""#);
    labels("a= b=2", "| logfmt --keep-empty", r#"a="", app="x", b="2""#);
    labels("flag b=2", "| logfmt", r#"app="x", b="2""#);
    labels(
        "flag b=2",
        "| logfmt --keep-empty",
        r#"app="x", b="2", flag="""#,
    );
    labels("a.b=1 c-d=2", "| logfmt", r#"a_b="1", app="x", c_d="2""#);
    labels("1a=1", "| logfmt", r#"_1a="1", app="x""#);
    labels(
        "app=y z=1",
        "| logfmt",
        r#"app="x", app_extracted="y", z="1""#,
    );
    labels(r#"a=1 "b"=2 c=3"#, "| logfmt", r#"a="1", app="x", c="3""#);
    labels(
        r#"a=1 "b"=2 c=3"#,
        "| logfmt --strict",
        r#"__error__="LogfmtParserErr", __error_details__="logfmt syntax error at pos 5 : unexpected '\"'", a="1", app="x""#,
    );
    labels(
        r#"a=1 b="unterminated"#,
        "| logfmt --strict",
        r#"__error__="LogfmtParserErr", __error_details__="logfmt syntax error at pos 20 : unterminated quoted value", a="1", app="x""#,
    );
    labels("a=1 =2 c=3", "| logfmt", r#"a="1", app="x", c="3""#);
    labels("a=b=c d=1", "| logfmt", r#"app="x", d="1""#);
    labels(
        r#"{"a":1}"#,
        "| logfmt --strict",
        r#"__error__="LogfmtParserErr", __error_details__="logfmt syntax error at pos 2 : unexpected '\"'", app="x""#,
    );
    labels("a=1 a=2", "| logfmt", r#"a="2", app="x""#);
    labels("a=1 b=2", r#"| logfmt x="a""#, r#"app="x", x="1""#);
    labels(
        "a=1 b=2",
        r#"| logfmt x="a", y="zz""#,
        r#"app="x", x="1", y="""#,
    );
    labels("a=1 b=2", "| logfmt b", r#"app="x", b="2""#);
    labels("app=1 b=2", "| logfmt app", r#"app="x", app_extracted="1""#);
}

#[test]
fn regexp_and_pattern_parsers() {
    labels(
        "duration_ms=42.5 ok",
        r#"| regexp "duration_ms=(?P<d>[0-9.]+)""#,
        r#"app="x", d="42.5""#,
    );
    labels(
        "no match",
        r#"| regexp "duration_ms=(?P<d>[0-9.]+)""#,
        r#"app="x""#,
    );
    labels(
        "GET /a",
        r#"| regexp "(?P<m>\\w+) (?P<p>\\S+)( (?P<q>\\d+))?""#,
        r#"app="x", m="GET", p="/a", q="""#,
    );
    labels(
        "app=y",
        r#"| regexp "app=(?P<app>\\w+)""#,
        r#"app="x", app_extracted="y""#,
    );
    labels(
        "1.2.3.4 - - [10/Oct] \"GET /x HTTP/1.1\" 200 12",
        r#"| pattern "<ip> - - [<_>] \"<method> <path> <_>\" <status> <size>""#,
        r#"app="x", ip="1.2.3.4", method="GET", path="/x", size="12", status="200""#,
    );
    labels(
        "GET /a HTTP/1.1 404 3",
        r#"| pattern "<method> <path> HTTP/<_> <status> <_>""#,
        r#"app="x", method="GET", path="/a", status="404""#,
    );
    labels("short", r#"| pattern "<a> <b>""#, r#"a="short", app="x""#);
    labels(
        "x level=warn msg=\"m\" y",
        r#"| pattern "<_> level=<lvl> msg=\"<msg>\" <_>""#,
        r#"app="x", lvl="warn", msg="m""#,
    );
    labels("prefix nope", r#"| pattern "start <a>""#, r#"app="x""#);
    labels(
        "y rest",
        r#"| pattern "<app> <rest>""#,
        r#"app="x", app_extracted="y", rest="rest""#,
    );
}

#[test]
fn unpack_parser() {
    check_stream(
        APP,
        r#"{"_entry":"original line","pod":"p1"}"#,
        "| unpack",
        Some(("original line", r#"app="x", pod="p1""#)),
    );
    check_stream(
        APP,
        r#"{"_entry":"a \"q\"","n":1}"#,
        "| unpack",
        Some((r#"a "q""#, r#"app="x""#)),
    );
    check_stream(
        APP,
        r#"{"pod":"p1"}"#,
        "| unpack",
        Some((r#"{"pod":"p1"}"#, r#"app="x""#)),
    );
    check_stream(
        APP,
        "plain",
        "| unpack",
        Some((
            "plain",
            r#"__error__="JSONParserErr", __error_details__="expecting json object(6), but it is not", app="x""#,
        )),
    );
    check_stream(
        APP,
        r#"{"_entry":"l","app":"y"}"#,
        "| unpack",
        Some(("l", r#"app="x", app_extracted="y""#)),
    );
    check_stream(
        APP,
        r#"{"_entry":"foo bar"}"#,
        r#"| unpack |= "bar""#,
        Some(("foo bar", r#"app="x""#)),
    );
    check_stream(APP, r#"{"_entry":"foo"}"#, r#"| unpack |= "_entry""#, None);
}

#[test]
fn label_filters() {
    let l =
        r#"{"status":"503","d":"250ms","size":"5KB","lvl":"error","ip":"10.0.0.7","bad":"abc"}"#;
    passes(l, r#"| json | status >= 500"#, true);
    passes(l, r#"| json | status > 503"#, false);
    passes(l, r#"| json | status == 503"#, true);
    passes(l, r#"| json | status = 503"#, true);
    passes(l, r#"| json | status != 503"#, false);
    passes(l, r#"| json | status < 503.5"#, true);
    passes(l, r#"| json | status <= 502"#, false);
    passes(l, r#"| json | missing > 1"#, false);
    passes(l, r#"| json | missing != 1"#, false);
    passes(l, r#"| json | d > 200ms"#, true);
    passes(l, r#"| json | d >= 1s"#, false);
    passes(l, r#"| json | d == 250ms"#, true);
    passes(l, r#"| json | size > 4KB"#, true);
    passes(l, r#"| json | size < 5000B"#, false);
    passes(l, r#"| json | size == 5KB"#, true);
    passes(l, r#"| json | lvl="error""#, true);
    passes(l, r#"| json | lvl!="error""#, false);
    passes(l, r#"| json | lvl=~"err.*""#, true);
    passes(l, r#"| json | lvl=~"rr.*""#, true);
    passes(l, r#"| json | lvl=~"warn|error""#, true);
    passes(l, r#"| json | lvl=~"err""#, false);
    passes(l, r#"| json | lvl=~"e.*r""#, true);
    passes(l, r#"| json | lvl=~"e.r""#, false);
    passes(l, r#"| json | lvl!~"warn|error""#, false);
    passes(l, r#"| json | missing="""#, true);
    passes(l, r#"| json | missing!~"0""#, true);
    passes(l, r#"| json | missing=~"""#, true);
    passes(l, r#"| json | lvl=~"""#, true);
    passes(l, r#"| json | lvl=~"(?i)ERROR""#, true);
    passes(l, r#"| json | ip = ip("10.0.0.0/24")"#, true);
    passes(l, r#"| json | ip != ip("10.0.0.0/24")"#, false);
    passes(l, r#"| json | ip = ip("10.0.1.0/24")"#, false);
    passes(l, r#"| json | missing = ip("10.0.0.0/8")"#, false);
    passes(l, r#"| json | lvl="error" and status >= 500"#, true);
    passes(l, r#"| json | lvl="error", status >= 600"#, false);
    passes(l, r#"| json | lvl="warn" or status >= 500"#, true);
    passes(l, r#"| json | lvl="warn" or status >= 600"#, false);
    passes(
        l,
        r#"| json | lvl="warn" or lvl="error" and status < 500"#,
        false,
    );
    passes(
        l,
        r#"| json | (lvl="warn" or lvl="error") and status >= 500"#,
        true,
    );
    passes(l, r#"| json | lvl="error" status=503"#, true);
}

#[test]
fn label_filter_conversion_errors_keep_the_entry() {
    let l = r#"{"bad":"abc","n":"5"}"#;
    labels(
        l,
        "| json | bad > 1",
        r#"__error__="LabelFilterErr", __error_details__="strconv.ParseFloat: parsing \"abc\": invalid syntax", app="x", bad="abc", n="5""#,
    );
    labels(
        l,
        "| json | bad > 1s",
        r#"__error__="LabelFilterErr", __error_details__="time: invalid duration \"abc\"", app="x", bad="abc", n="5""#,
    );
    labels(
        l,
        "| json | n > 1s",
        r#"__error__="LabelFilterErr", __error_details__="time: missing unit in duration \"5\"", app="x", bad="abc", n="5""#,
    );
    labels(
        l,
        "| json | bad > 1KB",
        r#"__error__="LabelFilterErr", __error_details__="strconv.ParseFloat: parsing \"\": invalid syntax", app="x", bad="abc", n="5""#,
    );
    passes(l, r#"| json | bad > 1 | __error__="""#, false);
    passes(l, r#"| json | bad > 1 | __error__="LabelFilterErr""#, true);
    labels(
        r#"{"bad":"abc""#,
        "| json | bad > 1",
        r#"__error__="JSONParserErr", __error_details__="Value is array, but can't find closing ']' symbol", app="x", bad="abc""#,
    );
}

#[test]
fn error_label_filters() {
    passes("not json", r#"| json | __error__="""#, false);
    passes("not json", r#"| json | __error__!="""#, true);
    passes("not json", r#"| json | __error__="JSONParserErr""#, true);
    passes("not json", r#"| json | __error__=~"JSON.*""#, true);
    passes(r#"{"a":1}"#, r#"| json | __error__="""#, true);
    passes("a=1", r#"| logfmt | __error__="""#, true);
    labels(
        "not json",
        "| json | drop __error__, __error_details__",
        r#"app="x""#,
    );
    labels(
        "not json",
        "| json | drop __error__",
        r#"__error_details__="Value looks like object, but can't find closing '}' symbol", app="x""#,
    );
    labels(
        "not json",
        r#"| json | drop __error__="JSONParserErr""#,
        r#"__error_details__="Value looks like object, but can't find closing '}' symbol", app="x""#,
    );
    labels(
        "not json",
        r#"| json | drop __error__="Other""#,
        r#"__error__="JSONParserErr", __error_details__="Value looks like object, but can't find closing '}' symbol", app="x""#,
    );
    labels(
        "not json",
        "| json | keep app",
        r#"__error__="JSONParserErr", __error_details__="Value looks like object, but can't find closing '}' symbol", app="x""#,
    );
}

#[test]
fn line_format() {
    let l = r#"{"service":"s","status":200,"path":"/p"}"#;
    line_out(
        l,
        r#"| json | line_format "{{.service}} {{.status}} {{.path}}""#,
        "s 200 /p",
    );
    line_out(l, r#"| json | line_format "{{.service}}""#, "s");
    line_out(l, r#"| json | line_format "{{.missing}}""#, "");
    line_out(l, r#"| json | line_format "[{{.missing}}]""#, "[]");
    line_out(l, r#"| line_format "{{__line__}}!""#, &format!("{l}!"));
    line_out(l, r#"| json | line_format "{{.app}}""#, "x");
    line_out(
        "level=warn msg=m",
        r#"| logfmt | line_format "{{ .level | ToUpper }} {{ .msg }}""#,
        "WARN m",
    );
    line_out(l, r#"| json | line_format "{{.service}}" |= "s""#, "s");
    passes(l, r#"| json | line_format "{{.service}}" |= "path""#, false);
    passes(l, r#"|= "path" | json | line_format "{{.service}}""#, true);
    line_out("not json", r#"| json | line_format "{{.__error__}}""#, "");
    line_out(
        "not json",
        r#"| json | line_format "e={{.__error__}}""#,
        "e=JSONParserErr",
    );
}

#[test]
fn label_format() {
    let l = r#"{"level":"warn","service":"s","method":"GET"}"#;
    labels(
        l,
        "| json | label_format lvl=level",
        r#"app="x", lvl="warn", method="GET", service="s""#,
    );
    labels(
        l,
        r#"| json | label_format svc="{{.service}}-{{.method}}""#,
        r#"app="x", level="warn", method="GET", service="s", svc="s-GET""#,
    );
    labels(
        l,
        r#"| json | label_format lvl=level, svc="{{.service}}-{{.method}}""#,
        r#"app="x", lvl="warn", method="GET", service="s", svc="s-GET""#,
    );
    labels(
        l,
        "| json | label_format lvl=missing",
        r#"app="x", level="warn", method="GET", service="s""#,
    );
    labels(
        l,
        r#"| json | label_format app="{{.service}}""#,
        r#"app="s", level="warn", method="GET", service="s""#,
    );
    labels(
        l,
        r#"| json | label_format a="{{.level}}", b="{{.a}}""#,
        r#"a="warn", app="x", b="", level="warn", method="GET", service="s""#,
    );
    labels(
        l,
        r#"| json | label_format new=app"#,
        r#"level="warn", method="GET", new="x", service="s""#,
    );
    labels(
        l,
        r#"| json | label_format lvl=level | lvl="warn""#,
        r#"app="x", lvl="warn", method="GET", service="s""#,
    );
    passes(
        l,
        r#"| json | label_format lvl=level | level="warn""#,
        false,
    );
}

#[test]
fn drop_and_keep() {
    let l = r#"{"a":"1","b":"2","c":"3"}"#;
    labels(l, "| json | drop a", r#"app="x", b="2", c="3""#);
    labels(l, "| json | drop a, c", r#"app="x", b="2""#);
    labels(l, r#"| json | drop a="1""#, r#"app="x", b="2", c="3""#);
    labels(
        l,
        r#"| json | drop a="2""#,
        r#"a="1", app="x", b="2", c="3""#,
    );
    labels(
        l,
        r#"| json | drop a=~"[0-9]", b!="2""#,
        r#"app="x", b="2", c="3""#,
    );
    labels(l, "| json | drop app", r#"a="1", b="2", c="3""#);
    labels(
        l,
        "| json | drop nothing",
        r#"a="1", app="x", b="2", c="3""#,
    );
    labels(l, "| json | keep a", r#"a="1""#);
    labels(l, "| json | keep a, app", r#"a="1", app="x""#);
    labels(l, r#"| json | keep a="1", b="9""#, r#"a="1""#);
    labels(l, r#"| json | keep a=~"1|2", c"#, r#"a="1", c="3""#);
}

#[test]
fn decolorize() {
    line_out("\x1b[31mred\x1b[0m plain", "| decolorize", "red plain");
    line_out("plain", "| decolorize", "plain");
    line_out("\x1b[1;32mOK\x1b[0m", "| decolorize", "OK");
    // Loki moves line filters ahead of decolorize: they see the raw line.
    passes("\x1b[31mred\x1b[0m", r#"| decolorize |= "[31m""#, true);
}

#[test]
fn structured_metadata() {
    let mut p = pipeline_for_query(r#"{app="x"} | logfmt"#).unwrap();
    let mut b = LabelsBuilder::for_stream(&[("app", "x"), ("level", "info")]);
    b.start_entry(&[("trace_id", "t1"), ("level", "debug"), ("user.id", "u")]);
    let line = p
        .process(1, b"trace_id=t2 msg=m", &mut b)
        .map(<[u8]>::to_vec);
    assert_eq!(line.as_deref(), Some(&b"trace_id=t2 msg=m"[..]));
    assert_eq!(
        show(&b.labels()),
        r#"app="x", level="info", level_extracted="debug", msg="m", trace_id="t2", user_id="u""#
    );
    let c = b.categorized();
    assert_eq!(show(&c.stream), r#"app="x", level="info""#);
    assert_eq!(
        show(&c.structured_metadata),
        r#"level_extracted="debug", user_id="u""#
    );
    assert_eq!(show(&c.parsed), r#"msg="m", trace_id="t2""#);
}

#[test]
fn reorder_keeps_line_filters_before_and_after_barriers() {
    let p = pipeline_for_query(r#"{app="x"} | json |= "a" | label_format b=c |= "d""#).unwrap();
    assert_eq!(p.leading_filters, 2);
    assert!(!p.line_filters_only());
    let p = pipeline_for_query(r#"{app="x"} |= "a" != "b""#).unwrap();
    assert!(p.line_filters_only());
    assert!(p.filter_line(b"xa"));
    assert!(!p.filter_line(b"ab"));
    let p = pipeline_for_query(r#"{app="x"} | json | level="x" |= "a""#).unwrap();
    assert_eq!(p.leading_filters, 0);
}

#[test]
fn invalid_pipelines_are_rejected() {
    for q in [
        r#"{app="x"} |~ "(""#,
        r#"{app="x"} |= ip("not-an-ip")"#,
        r#"{app="x"} | addr = ip("nope")"#,
        r#"{app="x"} | label_format a="{{.b", c=d"#,
    ] {
        assert!(pipeline_for_query(q).is_err(), "{q}");
    }
}

fn extractor(query: &str, grouping: Option<SampleGrouping>) -> SampleExtractor {
    let Expr::Sample(SampleExpr::RangeAggregation(r)) = parse_expr(query).unwrap() else {
        panic!("not a range aggregation: {query}");
    };
    let bytes = matches!(
        r.op,
        crate::logql::RangeOp::BytesOverTime | crate::logql::RangeOp::BytesRate
    );
    SampleExtractor::new(
        &r.range.log.pipeline,
        r.range.unwrap.as_ref(),
        bytes,
        grouping.unwrap_or_else(|| SampleGrouping::from_grouping(r.grouping.as_ref())),
    )
    .unwrap()
}

/// `want`: `None` when no sample, else the value and the series labels.
#[track_caller]
fn sample(query: &str, line: &str, want: Option<(f64, &str)>) {
    sample_grouped(query, None, line, want);
}

/// Like [`sample`] with the grouping a parent vector aggregation pushes down.
#[track_caller]
fn sample_grouped(
    query: &str,
    grouping: Option<(&[&str], bool)>,
    line: &str,
    want: Option<(f64, &str)>,
) {
    let grouping = grouping.map(|(g, without)| SampleGrouping {
        groups: g.iter().map(|s| s.to_string()).collect(),
        without,
        no_labels: g.is_empty() && !without,
    });
    let mut e = extractor(query, grouping);
    let mut b = LabelsBuilder::for_stream(APP_LEVEL);
    b.start_entry::<&str, &str>(&[]);
    let got = e
        .process(1, line.as_bytes(), &mut b)
        .map(|v| (v, show(&e.series_labels(&b))));
    let want = want.map(|(v, l)| (v, l.to_string()));
    assert_eq!(got, want, "{query} on {line:?}");
}

#[test]
fn sample_extraction() {
    let q = |s: &str| format!("sum_over_time({{app=\"x\"}} {s} [1m])");
    sample(
        &q("| logfmt | unwrap n"),
        "n=2.5 m=1",
        Some((2.5, r#"app="x", level="info", m="1""#)),
    );
    sample(&q("| logfmt | unwrap n"), "m=1", None);
    sample(&q("| logfmt | unwrap n"), "n= m=1", None);
    sample(
        &q("| logfmt | unwrap n"),
        "n=abc",
        Some((
            0.0,
            r#"__error__="SampleExtractionErr", __error_details__="strconv.ParseFloat: parsing \"abc\": invalid syntax", app="x", level="info", n="abc""#,
        )),
    );
    sample(&q(r#"| logfmt | unwrap n | __error__="""#), "n=abc", None);
    sample(
        &q("| logfmt | unwrap duration(d)"),
        "d=1m30s",
        Some((90.0, r#"app="x", level="info""#)),
    );
    sample(
        &q("| logfmt | unwrap duration_seconds(d)"),
        "d=250ms",
        Some((0.25, r#"app="x", level="info""#)),
    );
    sample(
        &q("| logfmt | unwrap bytes(s)"),
        "s=5KB",
        Some((5000.0, r#"app="x", level="info""#)),
    );
    sample(
        &q("| logfmt | unwrap bytes(s)"),
        "s=1KiB",
        Some((1024.0, r#"app="x", level="info""#)),
    );
    sample(
        &q("| logfmt | unwrap duration(d)"),
        "d=12",
        Some((
            0.0,
            r#"__error__="SampleExtractionErr", __error_details__="time: missing unit in duration \"12\"", app="x", d="12", level="info""#,
        )),
    );
    sample(&q("| logfmt | unwrap n | n > 2"), "n=1", None);
    sample(
        &q("| logfmt | unwrap n | n > 2"),
        "n=3",
        Some((3.0, r#"app="x", level="info""#)),
    );
    sample_grouped(
        "sum_over_time({app=\"x\"} | logfmt | unwrap n [1m])",
        Some((&["m"], false)),
        "n=2 m=1 o=2",
        Some((2.0, r#"m="1""#)),
    );
    sample_grouped(
        "sum_over_time({app=\"x\"} | logfmt | unwrap n [1m])",
        Some((&["o"], true)),
        "n=2 m=1 o=2",
        Some((2.0, r#"app="x", level="info", m="1""#)),
    );
    sample(
        "count_over_time({app=\"x\"} |= \"a\" [1m])",
        "abc",
        Some((1.0, r#"app="x", level="info""#)),
    );
    sample("count_over_time({app=\"x\"} |= \"z\" [1m])", "abc", None);
    sample(
        "bytes_over_time({app=\"x\"} [1m])",
        "abcd",
        Some((4.0, r#"app="x", level="info""#)),
    );
    sample(
        "bytes_over_time({app=\"x\"} | line_format \"ab\" [1m])",
        "abcd",
        Some((2.0, r#"app="x", level="info""#)),
    );
    sample_grouped(
        "count_over_time({app=\"x\"} | logfmt [1m])",
        Some((&["level"], false)),
        "level=warn",
        Some((1.0, r#"level="info""#)),
    );
    sample_grouped(
        "count_over_time({app=\"x\"} | logfmt [1m])",
        Some((&[], false)),
        "level=warn",
        Some((1.0, "")),
    );
    sample_grouped(
        "sum_over_time({app=\"x\"} | logfmt | unwrap n [1m])",
        Some((&[], false)),
        "n=x",
        Some((
            0.0,
            r#"__error__="SampleExtractionErr", __error_details__="strconv.ParseFloat: parsing \"x\": invalid syntax", app="x", level="info", n="x""#,
        )),
    );
}

/// The hints each `json`/`logfmt` stage gets when the caller reads `output` (`-` for a
/// stage extracting everything).
#[track_caller]
fn hints(pipeline: &str, output: Option<&[&str]>, want: &[&str]) {
    let expr = crate::logql::parse_log_expr(&format!("{{app=\"x\"}} {pipeline}")).unwrap();
    let output = output.map(|o| o.iter().map(|s| s.to_string()).collect());
    let p = Pipeline::with_hints(&expr.pipeline, output).unwrap();
    let got: Vec<String> = p
        .stages
        .iter()
        .filter_map(|s| match s {
            StageImpl::Json(j) => Some(j.hints()),
            StageImpl::Logfmt(l) => Some(l.hints()),
            _ => None,
        })
        .map(|h| h.map_or("-".to_string(), |h| h.names().join(",")))
        .collect();
    assert_eq!(got, want, "{pipeline}");
}

#[test]
fn parser_hints_name_the_labels_read_after_the_parser() {
    hints(r#"| json | level="error""#, Some(&["app"]), &["app,level"]);
    hints(r#"| json | level="error""#, None, &["-"]);
    hints("| json", Some(&[]), &[""]);
    hints(
        r#"| logfmt | json | status >= 500 | level=~"e.*""#,
        Some(&["app"]),
        &["app,level,status", "app,level,status"],
    );
    hints(
        r#"| json | line_format "{{.msg}} {{ $.path }}""#,
        Some(&["app"]),
        &["app,msg,path"],
    );
    hints(
        r#"| json | label_format lvl=level, m="{{.msg}}""#,
        Some(&["lvl"]),
        &["level,lvl,msg"],
    );
    hints(r#"| logfmt | json v="a.b""#, Some(&["app"]), &["app,v"]);
    // Labels a template may read by other means than `.name`, `drop` and `keep`: all.
    hints(
        r#"| json | line_format "{{ $l := . }}{{ $l.msg }}""#,
        Some(&["app"]),
        &["-"],
    );
    hints(
        r#"| json | label_format x="{{ (.).msg }}""#,
        Some(&["x"]),
        &["-"],
    );
    hints("| json | drop msg", Some(&["app"]), &["-"]);
    hints(
        "| json | keep level | logfmt",
        Some(&["level"]),
        &["-", "level"],
    );
}

type Pairs = &'static [(&'static str, &'static str)];

/// Stream labels and structured metadata the hint equivalence runs on.
const HINT_STREAMS: &[(Pairs, Pairs)] = &[
    (APP, &[]),
    (APP_LEVEL, &[]),
    (APP, &[("level", "debug"), ("msg", "m")]),
    (&[("app", "x"), ("status", "200")], &[("status", "201")]),
    (&[("app", "x"), ("level", "error")], &[]),
    (APP, &[("level", "error")]),
];

const HINT_LINES: &[&str] = &[
    r#"{"level":"error","msg":"hi","status":500,"app":"y","duration_ms":12.5}"#,
    r#"{"level":"error","status":"abc","duration_ms":"1s"}"#,
    r#"{"level":"error","a":tru}"#,
    r#"{"a":tru,"level":"error"}"#,
    r#"{"pod":{"uuid":"u","level":"error"},"1a":1,"cou-nter":1,"level":"info"}"#,
    r#"{"le\u0076el":"error","l\u0065vel_extracted":"x"}"#,
    r#"{" level ":"error","lev.el":"error"}"#,
    r#"{"level":"err\u006fr","msg":"\u00e9"}"#,
    r#"{"level":"error","level":"info"}"#,
    r#"{"msg":"x"}"#,
    r#"{"msg":"error","level":"warn"}"#,
    r#"{"level":"info","msg":"hi"}"#,
    "level=info msg=error",
    r#"{}"#,
    "",
    "level=error msg=hi status=502 duration_ms=12.5 app=z",
    "level=error duration_ms=abc status=5xx",
    r#"a=1 "b"=2 level=error duration_ms=3"#,
    "lvl=x level=error level=info 1a=2 lev-el=warn",
    "level=error msg=\"a \\\"quoted\\\" b\" duration_ms=",
    "  level=error\tduration_ms=7 ",
    "duration_ms=1 x=2 duration.ms=3 level=error",
    "level=info a=\"level=error duration_ms=4\" lev.el=error",
    "x=1 y=2",
];

/// Every line, stream and metadata of the tables gives the same sample and series with
/// hints as without.
#[track_caller]
fn hints_change_nothing(query: &str, grouping: Option<(&[&str], bool)>) {
    let Expr::Sample(SampleExpr::RangeAggregation(r)) = parse_expr(query).unwrap() else {
        panic!("not a range aggregation: {query}");
    };
    let grouping = match grouping {
        Some((g, without)) => SampleGrouping {
            groups: g.iter().map(|s| s.to_string()).collect(),
            without,
            no_labels: g.is_empty() && !without,
        },
        None => SampleGrouping::from_grouping(r.grouping.as_ref()),
    };
    let bytes = matches!(
        r.op,
        crate::logql::RangeOp::BytesOverTime | crate::logql::RangeOp::BytesRate
    );
    let build = |hints| {
        SampleExtractor::build(
            &r.range.log.pipeline,
            r.range.unwrap.as_ref(),
            bytes,
            grouping.clone(),
            hints,
        )
        .unwrap()
    };
    let (mut hinted, mut full) = (build(true), build(false));
    for (stream, md) in HINT_STREAMS {
        let (mut a, mut b) = (
            LabelsBuilder::for_stream(stream),
            LabelsBuilder::for_stream(stream),
        );
        for line in HINT_LINES {
            let run = |e: &mut SampleExtractor, lbs: &mut LabelsBuilder| {
                lbs.start_entry(md);
                let v = e.process(1, line.as_bytes(), lbs);
                let errored = e.passed_pipeline() && lbs.has_err();
                let labels = errored.then(|| lbs.labels());
                (
                    v.map(|v| (v.to_bits(), show(&e.series_labels(lbs)))),
                    e.passed_pipeline(),
                    labels,
                )
            };
            let (got, want) = (run(&mut hinted, &mut a), run(&mut full, &mut b));
            assert_eq!(
                got, want,
                "{query} {grouping:?} on {line:?}, stream {stream:?} {md:?}"
            );
            if let (Some((_, series)), false) = (&got.0, a.has_err()) {
                if hinted.series_is_stream(&a) {
                    let bare = LabelsBuilder::for_stream(stream);
                    assert_eq!(*series, show(&full.series_labels(&bare)), "{query}");
                }
            }
        }
    }
}

#[test]
fn parser_hints_change_no_answer() {
    let by = |g: &'static [&'static str]| Some((g, false));
    let rate = |p: &str| format!("rate({{app=\"x\"}} {p} [1m])");
    let unwrap = |p: &str| format!("quantile_over_time(0.95, {{app=\"x\"}} {p} [1m])");
    for g in [
        &["app"][..],
        &["level"],
        &["level_extracted"],
        &["status"],
        &[],
    ] {
        for p in [
            r#"| json | level="error""#,
            r#"| json | level="error" and msg="hi", app_extracted="y""#,
            r#"| json | level="info" or level="error""#,
            r#"| json | level="" | msg="x""#,
            r#"| json | level_extracted="error" |= "lev" | msg!="zz""#,
            r#"| logfmt | level="error""#,
            r#"| logfmt | level="error", status="502""#,
            r#"| logfmt --strict | level="error""#,
            r#"| json | status >= 500"#,
            r#"| logfmt | status >= 500 or level="info""#,
            r#"| json | pod_uuid="u" or _1a="1" or cou_nter="1""#,
            r#"| json | level_extracted="error""#,
            r#"| json v="level" | v="error""#,
            r#"| logfmt | json | level="error""#,
            r#"| json | label_format lvl=level | lvl="error""#,
            r#"| json | label_format x="{{ $l := . }}{{ $l.level }}" | x="error""#,
            r#"| json | line_format "{{.msg}}" | logfmt"#,
            "| json | drop msg",
            "| json | keep level, app",
            "| json",
            "| logfmt --keep-empty",
        ] {
            hints_change_nothing(&rate(p), by(g));
            hints_change_nothing(&format!("bytes_over_time({{app=\"x\"}} {p} [1m])"), by(g));
        }
        for p in [
            "| logfmt | unwrap duration_ms",
            "| json | unwrap duration_ms",
            "| json | unwrap duration(duration_ms)",
            r#"| logfmt | unwrap duration_ms | level="error""#,
            r#"| json | level="error" | unwrap status | __error__="""#,
        ] {
            hints_change_nothing(&unwrap(p), by(g));
            hints_change_nothing(&format!("avg_over_time({{app=\"x\"}} {p} [1m])"), by(g));
        }
    }
    hints_change_nothing(&rate(r#"| json | level="error""#), None);
    hints_change_nothing(&rate(r#"| json | level="error""#), Some((&["app"], true)));
    hints_change_nothing(
        r#"quantile_over_time(0.95, {app="x"} | logfmt | unwrap duration_ms [1m]) by (app)"#,
        None,
    );
}

/// Log pipelines: every line, stream and metadata of the tables gives the same line and
/// labels with [`StageImpl::Requires`] as without.
#[test]
fn required_values_drop_only_entries_the_filters_drop() {
    for (p, shortcut) in [
        (r#"| json | level="error""#, true),
        (
            r#"| json | level="error" and msg="hi", app_extracted="y""#,
            true,
        ),
        (r#"| json | level="info" or level="error""#, false),
        (
            r#"| json | level="error" | line_format "{{.msg}}" | msg="hi""#,
            true,
        ),
        (r#"| logfmt | json | level="error""#, true),
        (r#"| logfmt --strict | level="error" | status="502""#, true),
        (r#"| json | level_extracted="error""#, true),
        (r#"| json | level="err or""#, false),
        (r#"| json | __error__="JSONParserErr""#, false),
    ] {
        let expr = crate::logql::parse_log_expr(&format!("{{app=\"x\"}} {p}")).unwrap();
        let mut fast = Pipeline::new(&expr.pipeline).unwrap();
        let mut reference = Pipeline::compile(&expr.pipeline, None, false).unwrap();
        let added = fast.stages.len() - reference.stages.len();
        assert_eq!(added > 0, shortcut, "{p}");
        for (stream, md) in HINT_STREAMS {
            for line in HINT_LINES {
                let run = |pl: &mut Pipeline| {
                    let mut b = LabelsBuilder::for_stream(stream);
                    b.start_entry(md);
                    let out = pl.process(1, line.as_bytes(), &mut b).map(<[u8]>::to_vec);
                    out.map(|o| (o, b.labels()))
                };
                assert_eq!(
                    run(&mut fast),
                    run(&mut reference),
                    "{p} on {line:?}, {stream:?} {md:?}"
                );
            }
        }
    }
}
