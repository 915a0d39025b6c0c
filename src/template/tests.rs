//! The template engine's tests: parsing, execution, functions and Go formatting, each case
//! checked against what Go's text/template (with Loki's functions) renders.

use std::collections::BTreeMap;

use super::*;

/// 2024-01-02T03:04:05.123456789Z
const TS: i64 = 1_704_164_645_123_456_789;

fn labels(name: &str) -> Option<String> {
    let v = match name {
        "status" => "200",
        "query" => "SELECT 1",
        "path" => "/api/v1/push",
        "level" => "info",
        "msg" => "hello world",
        "bytes" => "2048",
        "method" => "GET",
        "empty" => "",
        "n" => "42",
        "f" => "3.7",
        "json" => r#"{"a":{"b":"deep"},"n":3,"l":[1,"x"]}"#,
        "epoch" => "1704164645",
        "spaces" => "  padded  ",
        _ => return None,
    };
    Some(v.to_string())
}

#[track_caller]
fn check(tpl: &str, want: &str) {
    let t = Template::parse(tpl).unwrap_or_else(|e| panic!("parse {tpl:?}: {e}"));
    let mut out = String::new();
    t.render(&labels, "the log line", TS, &mut out)
        .unwrap_or_else(|e| panic!("render {tpl:?}: {e}"));
    assert_eq!(out, want, "template {tpl:?}");
}

#[track_caller]
fn check_err(tpl: &str, want: &str) {
    let err = match Template::parse(tpl) {
        Err(e) => e.to_string(),
        Ok(t) => {
            let mut out = String::new();
            match t.render(&labels, "the log line", TS, &mut out) {
                Err(e) => e.to_string(),
                Ok(()) => {
                    let out: String = out.chars().take(200).collect();
                    panic!("template {tpl:?} rendered {out:?}, want error {want:?}")
                }
            }
        }
    };
    assert!(
        err.contains(want),
        "template {tpl:?}: error {err:?} lacks {want:?}"
    );
}

#[test]
fn renders() {
    check("", "");
    check("plain text", "plain text");
    check("{{.status}} {{.query}}", "200 SELECT 1");
    check("{{ .status }}", "200");
    check("{{.missing}}", "");
    check("a {{- \" b \" -}} c", "a b c");
    check("a  {{- .status }}", "a200");
    check("{{ .status -}}  \n b", "200b");
    check("x{{/* comment */}}y", "xy");
    check("x {{- /* comment */ -}} y", "xy");
    check("{{ \"quoted\\tstr\" }}", "quoted\tstr");
    check("{{ `raw\\n` }}", "raw\\n");
    check("{{ 42 }}", "42");
    check("{{ -7 }}", "-7");
    check("{{ 0x1F }}", "31");
    check("{{ 1.5 }}", "1.5");
    check("{{ 1e21 }}", "1e+21");
    check("{{ 'a' }}", "97");
    check("{{ true }} {{ false }}", "true false");
    check("{{ .path | replace \"/\" \"_\" }}", "_api_v1_push");
    check("{{ __line__ | ToUpper }}", "THE LOG LINE");
    check("{{ .level | ToUpper }} {{ .msg }}", "INFO hello world");
    check("{{ ToUpper (lower \"ABC\") }}", "ABC");
    check("{{ (.level) }}", "info");
    check(
        "{{ __timestamp__ }}",
        "2024-01-02 03:04:05.123456789 +0000 UTC",
    );
    check("{{ $.status }}", "200");
}

#[test]
fn functions() {
    check("{{ .method | ToLower }}", "get");
    check(
        "{{ToUpper \"This is a string\" | ToLower}}",
        "this is a string",
    );
    check("{{ Replace .path \"/\" \"-\" -1 }}", "-api-v1-push");
    check("{{ Replace .path \"/\" \"-\" 2 }}", "-api-v1/push");
    check("{{ Trim \"xxhixx\" \"x\" }}", "hi");
    check("{{ TrimLeft \"xxhixx\" \"x\" }}", "hixx");
    check("{{ TrimRight \"xxhixx\" \"x\" }}", "xxhi");
    check("{{ TrimPrefix .path \"/api\" }}", "/v1/push");
    check("{{ TrimSuffix .path \"/push\" }}", "/api/v1");
    check("{{ TrimSpace .spaces }}", "padded");
    check("{{ .msg | title }}", "Hello World");
    check("{{ .msg | upper }}", "HELLO WORLD");
    check(
        "{{ .path | replace \" \" \"_\" | trunc 5 | upper }}",
        "/API/",
    );
    check("{{ trunc -4 .path }}", "push");
    check("{{ trunc 99 .path }}", "/api/v1/push");
    check("{{ substr 1 4 .path }}", "api");
    check("{{ substr 8 99 .path }}", "push");
    check("{{ if contains \"wor\" .msg }}yes{{ end }}", "yes");
    check(
        "{{ hasPrefix \"/api\" .path }} {{ hasSuffix \"x\" .path }}",
        "true false",
    );
    check("{{ repeat 3 \"ab\" }}", "ababab");
    check("{{ trim .spaces }}", "padded");
    check("{{ trimAll \"$\" \"$5.00$\" }}", "5.00");
    check("{{ trimPrefix \"/api\" .path }}", "/v1/push");
    check("{{ trimSuffix \"push\" .path }}", "/api/v1/");
    check("{{ .missing | default \"none\" }}", "none");
    check("{{ .status | default \"none\" }}", "200");
    check("{{ default \"d\" 0 }} {{ default \"d\" false }}", "d d");
    check("{{ printf \"%.2f\" (divf .bytes 1024) }}", "2.00");
    check("{{ printf \"%s=%d\" .level 5 }}", "info=5");
    check("{{ printf \"%v|%v|%v\" 1 2.5 true }}", "1|2.5|true");
    check("{{ printf \"%q\" .msg }}", "\"hello world\"");
    check("{{ printf \"%x %X\" 255 \"hi\" }}", "ff 6869");
    check(
        "{{ printf \"[%5s][%-5s]\" \"ab\" \"cd\" }}",
        "[   ab][cd   ]",
    );
    check(
        "{{ printf \"%05d|%+d|%5.1f\" -42 7 3.14159 }}",
        "-0042|+7|  3.1",
    );
    check(
        "{{ printf \"%e %g %g\" 1234.5678 0.000012 1e7 }}",
        "1.234568e+03 1.2e-05 1e+07",
    );
    check("{{ printf \"%d\" .status }}", "%!d(string=200)");
    check("{{ printf \"%d %d\" 1 }}", "1 %!d(MISSING)");
    check("{{ printf \"%d\" 1 2 }}", "1%!(EXTRA int=2)");
    check("{{ printf \"100%%\" }}", "100%");
    check("{{ printf \"%c%c\" 72 105 }}", "Hi");
    check("{{ printf \"%t %o %b\" true 8 5 }}", "true 10 101");
    check("{{ print \"a\" 1 2 \"b\" }}", "a1 2b");
    check("{{ len .path }} {{ len \"\" }}", "12 0");
    check("{{ index \"abc\" 1 }}", "98");
    check(
        "{{ eq .status \"200\" }} {{ ne .status \"200\" }}",
        "true false",
    );
    check("{{ eq .level \"warn\" \"info\" }}", "true");
    check(
        "{{ lt 1 2 }} {{ le 2 2 }} {{ gt 1 2 }} {{ ge 1.5 1 }}",
        "true true false true",
    );
    check("{{ lt \"a\" \"b\" }}", "true");
    check(
        "{{ and 1 0 }} {{ and 1 2 }} {{ or 0 \"\" }} {{ or 0 \"x\" }}",
        "0 2  x",
    );
    check("{{ not .empty }} {{ not .status }}", "true false");
    check("{{ and .missing (index \"\" 5) }}", "");
    check(
        "{{ regexReplaceAll \"/(v[0-9])/\" .path \"[$1]\" }}",
        "/api[v1]push",
    );
    check(
        "{{ regexReplaceAll \"(a)\" \"banana\" \"${1}x\" }}",
        "baxnaxnax",
    );
    check(
        "{{ regexReplaceAllLiteral \"a\" \"banana\" \"$1\" }}",
        "b$1n$1n$1",
    );
    check(
        "{{ $re := \"[0-9]+\" }}{{ regexReplaceAll $re .path \"N\" }}",
        "/api/vN/push",
    );
    check("{{ __line__ | replace \"log\" \"LOG\" }}", "the LOG line");
    check(
        "{{ 1234567.0 }} {{ 123456.0 }} {{ 0.00001 }}",
        "1.234567e+06 123456 1e-05",
    );
}

#[test]
fn control() {
    check("{{ if eq .status \"200\" }}ok{{ else }}fail{{ end }}", "ok");
    check(
        "{{ if eq .status \"500\" }}ok{{ else }}fail{{ end }}",
        "fail",
    );
    check(
        "{{ if .missing }}a{{ else if .level }}b{{ else }}c{{ end }}",
        "b",
    );
    check(
        "{{ if .missing }}a{{ else if .empty }}b{{ else }}c{{ end }}",
        "c",
    );
    check(
        "{{ if and (contains \"he\" \"hello\") (contains \"llo\" \"hello\") }} yes {{end}}",
        " yes ",
    );
    check(
        "{{ if or (contains \"he\" \"hello\") (contains \"llo\" \"hello\") }} yes {{end}}",
        " yes ",
    );
    check(
        "{{ if .level }}{{ if eq .level \"info\" }}I{{ end }}{{ end }}",
        "I",
    );
    check("{{ with .level }}[{{ . }}]{{ end }}", "[info]");
    check(
        "{{ with .missing }}[{{ . }}]{{ else }}none{{ end }}",
        "none",
    );
    check(
        "{{ with .missing }}a{{ else with .msg }}{{ . }}{{ end }}",
        "hello world",
    );
    check("{{ with .level }}{{ $.status }}{{ end }}", "200");
    check("{{ $x := .level }}{{ $x }}", "info");
    check("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}", "2");
    check(
        "{{ $x := 1 }}{{ if true }}{{ $x = 3 }}{{ end }}{{ $x }}",
        "3",
    );
    check("{{ if $v := .level }}{{ $v }}{{ end }}", "info");
    check("{{ range $i, $e := 3 }}{{ $i }}{{ $e }}{{ end }}", "001122");
    check("{{ range 3 }}{{ . }}{{ end }}", "012");
    check(
        "{{ range $i := 5 }}{{ if eq $i 3 }}{{ break }}{{ end }}{{ $i }}{{ end }}",
        "012",
    );
    check(
        "{{ range 4 }}{{ if eq . 1 }}{{ continue }}{{ end }}{{ . }}{{ end }}",
        "023",
    );
    check("{{ range 0 }}x{{ else }}empty{{ end }}", "empty");
    check("a\n{{- if true }}\n  b\n{{- end }}\n", "a\n  b\n");
    check("{{ .level }}{{/* x */}}{{ .status }}", "info200");
}

#[test]
fn more_functions() {
    check(
        "{{ count \"a|b\" \"abab\" }} {{ count \"o\" \"foo\" }}",
        "4 2",
    );
    check("{{ __line__ | count \"l\" }}", "2");
    check("{{ urlencode \"a b&c=d/é\" }}", "a+b%26c%3Dd%2F%C3%A9");
    check("{{ urldecode \"a+b%26c%3Dd\" }}", "a b&c=d");
    check("{{ .msg | b64enc }}", "aGVsbG8gd29ybGQ=");
    check("{{ \"aGVsbG8gd29ybGQ=\" | b64dec }}", "hello world");
    check(
        "{{ alignLeft 5 \"hello world\" }}|{{ alignLeft 5 \"hi\" }}|",
        "hello|hi   |",
    );
    check(
        "{{ alignRight 5 \"hello world\" }}|{{ alignRight 5 \"hi\" }}|",
        "world|   hi|",
    );
    check("{{ indent 2 \"a\\nb\" }}", "  a\n  b");
    check("{{ nindent 2 \"a\" }}", "\n  a");
    check(
        "{{ bytes \"2 KB\" }} {{ bytes \"1kib\" }} {{ bytes \"42\" }} {{ bytes \"x\" }}",
        "2000 1024 42 0",
    );
    check(
        "{{ duration \"1m30s\" }} {{ duration_seconds \"1.5h\" }} {{ duration \"250ms\" }}",
        "90 5400 0.25",
    );
    check("{{ duration \"bogus\" }}", "0");
    check(
        "{{ add 3 2 5 }} {{ sub 5 2 }} {{ mul 5 2 3 }} {{ div 10 3 }} {{ mod 10 3 }}",
        "10 3 30 3 1",
    );
    check(
        "{{ addf 3.5 2 5 }} {{ subf 5.5 2 1.5 }} {{ mulf 5.5 2 2.5 }} {{ divf 10 2 4 }}",
        "10.5 2 27.5 1.25",
    );
    check(
        "{{ max 1 2 3 }} {{ min 1 2 3 }} {{ maxf 1 2.5 3 }} {{ minf 1 2.5 3 }}",
        "3 1 3 1",
    );
    check(
        "{{ ceil 123.001 }} {{ floor 123.9999 }} {{ round 123.555555 3 }}",
        "124 123 123.556",
    );
    check("{{ round 123.88571428571 5 .2 }}", "123.88572");
    check(
        "{{ \"3\" | int }} {{ \"3.5\" | float64 }} {{ add .n 1 }} {{ addf .f 1 }}",
        "3 3.5 43 4.7",
    );
    check("{{ __timestamp__ | unixEpoch }}", "1704164645");
    check(
        "{{ unixEpochMillis __timestamp__ }} {{ unixEpochNanos __timestamp__ }}",
        "1704164645123 1704164645123456789",
    );
    check(
        "{{ __timestamp__ | date \"2006-01-02 15:04:05\" }}",
        "2024-01-02 03:04:05",
    );
    check(
        "{{ __timestamp__ | date \"2006-01-02T15:04:05.00Z-07:00\" }}",
        "2024-01-02T03:04:05.12Z+00:00",
    );
    check(
        "{{ date \"Mon Jan _2 3:4:5 PM MST 06 002 .999 ,000000\" __timestamp__ }}",
        "Tue Jan  2 3:4:5 AM UTC 24 002 .123 ,123456",
    );
    check(
        "{{ date \"Monday, January 2, 2006 15:04:05.000000000Z07:00\" __timestamp__ }}",
        "Tuesday, January 2, 2024 03:04:05.123456789Z",
    );
    check(
        "{{ date \"2006-01-02\" (unixToTime .epoch) }}",
        "2024-01-02",
    );
    check("{{ unixToTime \"19724\" | unixEpoch }} {{ unixToTime \"1704164645123\" | unixEpochMillis }}", "1704153600 1704164645123");
    check(
        "{{ unixToTime \"1704164645123456\" | unixEpochNanos }}",
        "1704164645123456000",
    );
    check(
        "{{ toDate \"2006-01-02\" \"2021-11-02\" | unixEpoch }}",
        "1635811200",
    );
    check(
        "{{ toDateInZone \"2006-01-02\" \"UTC\" \"2021-11-02\" }}",
        "2021-11-02 00:00:00 +0000 UTC",
    );
    check(
        "{{ toDateInZone \"2006-01-02 15:04\" \"Etc/GMT-2\" \"2021-11-02 10:00\" | unixEpoch }}",
        "1635840000",
    );
    check("{{ toDateInZone \"2006-01-02T15:04:05.999999999Z07:00\" \"UTC\" \"2021-11-02T10:00:00.5+02:00\" | unixEpochMillis }}", "1635840000500");
    check(
        "{{ toDateInZone \"2006-01-02T15:04:05Z07:00\" \"UTC\" \"2021-11-02T10:00:00+02:00\" }}",
        "2021-11-02 10:00:00 +0200 +0200",
    );
    check(
        "{{ toDate \"Jan 2 2006 3:04pm\" \"Feb 29 2024 1:30pm\" | date \"2006-01-02 15:04\" }}",
        "2024-02-29 13:30",
    );
    check(
        "{{ toDate \"2006-01-02 15:04:05\" \"2021-11-02 10:00:00.25\" | unixEpochMillis }}",
        "1635847200250",
    );
    check(
        "{{ toDate \"2006-01-02\" \"not a date\" }}",
        "0001-01-01 00:00:00 +0000 UTC",
    );
    check(
        "{{ toDate \"2006-01-02\" \"2021-02-30\" | unixEpoch }}",
        "-62135596800",
    );
    check("{{ date \"2006\" 0 }}", "1970");
    check(
        "{{ if lt (unixEpoch now) 1000 }}old{{ else }}new{{ end }}",
        "new",
    );
    check("{{ fromJson \"{\\\"foo\\\": 55}\" }}", "map[foo:55]");
    check(
        "{{ (fromJson .json).a.b }} {{ (fromJson .json).n }}",
        "deep 3",
    );
    check(
        "{{ range $e := (fromJson .json).l }}[{{ $e }}]{{ end }}",
        "[1][x]",
    );
    check(
        "{{ range $k, $v := fromJson .json }}{{ $k }};{{ end }}",
        "a;l;n;",
    );
    check(
        "{{ with $j := fromJson .json }}{{ index $j \"n\" }} {{ len $j.l }}{{ end }}",
        "3 2",
    );
    check("{{ fromJson \"{bad\" }}|", "|");
    check(
        "{{ fromJson \"[1, 2.5, \\\"s\\\", true, null]\" }}",
        "[1 2.5 s true <nil>]",
    );
    check(
        "{{ $l := fromJson \"[\\\"q1\\\",\\\"q2\\\"]\" }}{{ range $l }} {{ . }}{{ end }}",
        " q1 q2",
    );
    check(
        "{{ printf \"%v %s\" (fromJson \"[1,2]\") (fromJson \"{\\\"a\\\":\\\"b\\\"}\") }}",
        "[1 2] map[a:b]",
    );
    check(
        "{{ index (fromJson \"[1,2]\") 1 }} {{ index (fromJson .json) \"missing\" }}",
        "2 <no value>",
    );
}

/// Templates for the mutation test, covering every construct.
const CORPUS: &[&str] = &[
    "{{.status}} {{.query}}",
    "{{ if eq .status \"200\" }}ok{{ else if .x }}x{{ else }}fail{{ end }}",
    "{{ .path | replace \"/\" \"_\" | trunc 5 | upper }}",
    "{{ __line__ | ToUpper }} {{ __timestamp__ }}",
    "{{ printf \"%.2f %5s %-5d %q %x %v\" (divf .bytes 1024) .a 3 .b 255 true }}",
    "{{- with $x := .level -}} {{ $x }} {{- else -}} none {{- end -}}",
    "{{ range $i, $e := 3 }}{{ if eq $i 1 }}{{ continue }}{{ end }}{{ $e }}{{ break }}{{ end }}",
    "{{ regexReplaceAll \"(a+)\" .msg \"${1}b\" }}{{/* c */}}",
    "{{ substr 1 3 .path }}{{ index \"abc\" 1 }}{{ len .msg }}{{ repeat 2 `x` }}",
    "{{ and 1 (or 0 'a') (not false) }}{{ 0x1F }}{{ -1.5e3 }}{{ lt 1 2.5 }}",
    "{{ $v := 1 }}{{ $v = add $v 2 }}{{ mul $v 3 | printf \"%05d\" }}",
    "{{ default \"d\" .missing | Replace \"a\" \"b\" -1 | TrimSpace }}",
    "{{ toDateInZone \"2006-01-02T15:04:05.999Z07:00\" \"UTC\" \"2021-11-02T10:00:00.5+02:00\" | date \"Jan _2 3PM .000\" }}",
    "{{ range $k, $v := fromJson `{\"a\":[1,{\"b\":\"\\u00e9\"}],\"c\":null}` }}{{ $k }}={{ $v }}{{ end }}",
    "{{ unixToTime \"1704164645123\" | unixEpochNanos }}{{ duration \"1h2m3.5s\" }}{{ bytes \"1.5 MiB\" }}",
    "{{ urldecode \"a%20b+c\" | urlencode | b64enc | b64dec }}{{ alignRight 4 \"é\" }}{{ nindent 2 \"x\\ny\" }}",
];

#[test]
fn mutations_never_panic() {
    let alphabet: &[u8] = b"{}()|.$-/*\"`'\\:=, 0123456789abcdefxyz_%\n\xff\xc3";
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    for tpl in CORPUS {
        let t = Template::parse(tpl).unwrap_or_else(|e| panic!("{tpl:?}: {e}"));
        let mut out = String::new();
        t.render(&labels, "line", TS, &mut out)
            .unwrap_or_else(|e| panic!("{tpl:?}: {e}"));
    }
    let mut tried = 0;
    for i in 0..100 {
        let mut bytes = CORPUS[i % CORPUS.len()].as_bytes().to_vec();
        for _ in 0..50 {
            let pos = rand(bytes.len() + 1);
            let b = alphabet[rand(alphabet.len())];
            match rand(3) {
                0 if pos < bytes.len() => bytes[pos] = b,
                1 if pos < bytes.len() => {
                    bytes.remove(pos);
                }
                _ => bytes.insert(pos, b),
            }
            let text = String::from_utf8_lossy(&bytes);
            if let Ok(t) = Template::parse(&text) {
                let mut out = String::new();
                let _ = t.render(&labels, "line", TS, &mut out);
                let _ = t.referenced_labels();
            }
            tried += 1;
        }
    }
    assert_eq!(tried, 5000);
}

#[test]
fn output_is_capped() {
    let t = Template::parse("{{ range 100000 }}{{ repeat 100 \"x\" }}{{ end }}").unwrap();
    let mut out = String::new();
    let err = t.render(&labels, "", 0, &mut out).unwrap_err();
    assert!(matches!(err, TemplateError::OutputTooLarge), "{err}");
    let t = Template::parse("{{ range 1000000000 }}{{ end }}").unwrap();
    let err = t.render(&labels, "", 0, &mut String::new()).unwrap_err();
    assert!(matches!(err, TemplateError::TooManySteps), "{err}");
}

#[test]
fn referenced_labels() {
    let t =
        Template::parse("{{ .b }}{{ .a | upper }}{{ if .c }}{{ $.d }}{{ end }}{{ .a }}").unwrap();
    assert_eq!(t.referenced_labels(), ["a", "b", "c", "d"]);
}

#[test]
fn errors() {
    check_err("{{", "unclosed action");
    check_err("{{ .a", "unclosed action");
    check_err("{{ nosuch }}", "function \"nosuch\" not defined");
    check_err("{{ .a | .b }}", "non executable command");
    check_err("{{ \"a\" \"b\" }}", "can't give argument to non-function");
    check_err("{{ ( .a }}", "unclosed left paren");
    check_err("{{ $x }}", "undefined variable");
    check_err("{{/* x }}", "unclosed comment");
    check_err("{{ replace \"a\" }}", "wrong number of args for replace");
    check_err("{{ .status.x }}", "can't evaluate field x in type string");
    check_err("{{ eq .status 200 }}", "incompatible types for comparison");
    check_err("{{ lt true false }}", "invalid type for comparison");
    check_err("{{ regexReplaceAll \"(\" .path \"x\" }}", "invalid regex");
    check_err(
        "{{ $p := \"(\" }}{{ regexReplaceAll $p .path \"x\" }}",
        "error calling regexReplaceAll",
    );
    check_err("{{ substr 5 2 .path }}", "slice bounds out of range");
    check_err("{{ repeat 2000000 \"ab\" }}", "result too large");
    check_err("{{ index \"abc\" 5 }}", "index out of range");
    check_err("{{ len 3 }}", "len of type int");
    check_err("{{ not }}", "wrong number of args for not");
    check_err("{{ nil }}", "nil is not a command");
    check_err(
        &format!(
            "{{{{ printf (repeat 20 \"%60000d\"){} }}}}",
            " 1".repeat(20)
        ),
        "result too large",
    );
    check_err(
        "{{ regexReplaceAll \"\" (repeat 1000 \"x\") (repeat 2000 \"y\") }}",
        "result too large",
    );
    check_err(
        "{{ replace \"x\" (repeat 2000 \"y\") (repeat 1000 \"x\") }}",
        "result too large",
    );
    check_err(
        "{{ Replace (repeat 1000 \"x\") \"\" (repeat 2000 \"y\") -1 }}",
        "result too large",
    );
    check_err("{{ indent 1000000 \"a\\nb\" }}", "result too large");
    check_err("{{ unixToTime \"123\" }}", "unsupported epoch length");
    check_err("{{ unixToTime \"abc\" }}", "unable to parse time");
    check_err("{{ unixEpoch .status }}", "expected time.Time; got string");
    check_err("{{ urldecode \"%zz\" }}", "invalid URL escape");
    check_err("{{ div 1 0 }}", "integer divide by zero");
    check_err("{{ divf 1 0 }}", "division by zero");
    check_err("{{ alignLeft -1 \"x\" }}", "negative count");
    check_err("{{ count \"[\" .msg }}", "invalid regex");
    check_err(
        "{{ (fromJson .json).n.x }}",
        "can't evaluate field x in type float64",
    );
    check_err("{{ if true }}x", "if without end");
    check_err("{{ end }}", "unexpected end");
    check_err("{{ else }}", "unexpected else");
    check_err(
        "{{ if true }}{{ else }}{{ else }}{{ end }}",
        "else after else",
    );
    check_err("{{ $x = 1 }}", "undefined variable");
    check_err(
        "{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}",
        "undefined variable",
    );
    check_err(
        "{{ range .level }}{{ end }}",
        "range can't iterate over string",
    );
    check_err("{{ break }}", "break or continue outside range");
    check_err("{{ define \"x\" }}{{ end }}", "define is not supported");
    check_err(&"{{ if true }}".repeat(65), "nested too deeply");
    check_err(
        &format!("{{{{ {}1{} }}}}", "(".repeat(70), ")".repeat(70)),
        "nested too deeply",
    );
}

#[track_caller]
fn alert(tpl: &str, want: &str) {
    let t = Template::parse_alert(tpl).unwrap_or_else(|e| panic!("parse {tpl:?}: {e}"));
    let labels = BTreeMap::from([
        ("app".to_string(), "api".to_string()),
        ("instance".to_string(), "a:9090".to_string()),
    ]);
    let external = BTreeMap::from([("cluster".to_string(), "eu".to_string())]);
    let d = AlertData {
        labels: &labels,
        value: 12.5,
        external_labels: &external,
        external_url: "http://sawmill:3100",
    };
    let out = t
        .render_alert(&d)
        .unwrap_or_else(|e| panic!("render {tpl:?}: {e}"));
    assert_eq!(out, want, "template {tpl:?}");
}

#[test]
fn alert_templates_render_as_prometheus_renders_them() {
    alert("{{ if gt $value 10.0 }}high{{ else }}low{{ end }}", "high");
    alert(
        "{{ if lt $value 10.0 }}low{{ else if eq $labels.app \"api\" }}api{{ end }}",
        "api",
    );
    alert("{{ printf \"%.2f\" $value }}", "12.50");
    alert("{{ $value }} {{ .Value }}", "12.5 12.5");
    alert(
        "{{ humanizeDuration 3725.0 }} {{ humanizeDuration 0.25 }}",
        "1h 2m 5s 250ms",
    );
    alert(
        "{{ humanize 1234567.0 }} {{ humanize1024 2048.0 }}",
        "1.235M 2ki",
    );
    alert("{{ humanizePercentage 0.1234 }}", "12.34%");
    alert(
        "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
        "app=api;instance=a:9090;",
    );
    alert(
        "{{ with $labels.app }}app {{ . }}{{ end }}{{ with $labels.none }}x{{ end }}",
        "app api",
    );
    alert("{{ reReplaceAll \"(a+)\" \"<$1>\" \"baaad\" }}", "b<aaa>d");
    alert(
        "{{ humanizeTimestamp 1700000000.0 }}",
        "2023-11-14 22:13:20 +0000 UTC",
    );
    alert("{{ toTime 1700000000.0 }}", "2023-11-14 22:13:20 +0000 UTC");
    alert(
        "{{ $externalLabels.cluster }} {{ $externalURL }}",
        "eu http://sawmill:3100",
    );
    alert(
        "{{ $labels.instance | stripPort }} {{ stripDomain \"db.example.com:5432\" }}",
        "a db:5432",
    );
    alert(
        "{{ match \"a.*\" \"abc\" }} {{ title \"hello world\" }}",
        "true Hello World",
    );
    alert(
        "{{ toDuration 3725.5 }} {{ parseDuration \"1m30s\" }}",
        "1h2m5.5s 90",
    );
    alert(
        "{{ len $labels }} {{ toUpper $labels.app }} {{ $labels.app | toLower }}",
        "2 API api",
    );
    alert("{{ humanize \"2500\" }}", "2.5k");
}

#[test]
fn alert_templates_have_prometheus_functions_only() {
    for (tpl, want) in [
        ("{{ __line__ }}", "function \"__line__\" not defined"),
        ("{{ ToUpper \"a\" }}", "function \"ToUpper\" not defined"),
        ("{{ query \"up\" }}", "function \"query\" not defined"),
        ("{{ if }}", "missing value for if"),
    ] {
        let err = Template::parse_alert(tpl).unwrap_err().to_string();
        assert!(err.contains(want), "{tpl}: {err}");
    }
    // LogQL's templates keep their own map.
    assert!(Template::parse("{{ humanizeDuration 1 }}").is_err());
}
