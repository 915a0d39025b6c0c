// Fuzzes the config loader: any text parses to a config or to an error naming the key, and
// `${VAR}` expansion never panics.
// Shared by fuzz/fuzz_targets/config.rs and tests/fuzz_seeds.rs (included in both).

use std::collections::BTreeMap;

use sawmill::config::{expand_env, Config};

/// One input: panics on a finding.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut env = BTreeMap::new();
    env.insert("RETENTION".to_string(), "720h".to_string());
    if let Ok(expanded) = expand_env(text, &env) {
        let _ = Config::from_yaml(&expanded);
    }
    let _ = Config::from_yaml(text);
}
