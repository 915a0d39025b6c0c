// Fuzzes the Go-template engine behind `line_format` and `label_format`: the input is a
// template, a NUL byte, and a log line; parsing and rendering must not panic or hang (the
// engine bounds its steps and output).
// Shared by fuzz/fuzz_targets/line_format.rs and tests/fuzz_seeds.rs (included in both).

use sawmill::template::Template;

/// One input: panics on a finding.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (tpl, line) = text.split_once('\0').unwrap_or((text, "level=info msg=hello"));
    let Ok(t) = Template::parse(tpl) else {
        return;
    };
    let vars = |name: &str| match name {
        "app" => Some("api".to_string()),
        "level" => Some("info".to_string()),
        "duration" => Some("1.5s".to_string()),
        "n" => Some("42".to_string()),
        _ => None,
    };
    let mut out = String::new();
    let _ = t.render(&vars, line, 1_700_000_000_000_000_000, &mut out);
}
