// Fuzzes `parse_expr`: no input may panic, and every query that parses must print to text
// that parses back to the same tree, both in canonical and in pretty form.
// Shared by fuzz/fuzz_targets/parse_expr.rs and tests/fuzz_seeds.rs (included in both).

use sawmill::logql::{format_query, parse_expr, ParseError, MAX_INPUT_SIZE};

/// The printer may legitimately need more room than the input had: longer than the input
/// limit, or a few parentheses deeper than the nesting cap.
fn reparse_limit_hit(printed: &str, err: &ParseError) -> bool {
    printed.len() >= MAX_INPUT_SIZE || err.message().contains("nested too deeply")
}

/// One input: panics on a finding.
pub fn check(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expr) = parse_expr(input) else {
        return;
    };
    for printed in [expr.to_string(), format_query(&expr)] {
        match parse_expr(&printed) {
            Ok(again) => assert_eq!(expr, again, "input {input:?} printed {printed:?}"),
            Err(err) if reparse_limit_hit(&printed, &err) => {}
            Err(err) => panic!("input {input:?} printed {printed:?} does not parse: {err}"),
        }
    }
}
