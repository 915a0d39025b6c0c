//! Tenants: validation of `X-Scope-OrgID` values with Loki's rules, and the directory name a
//! tenant's data lives under. A tenant ID is never used raw in a file path: it is hex-encoded.

use thiserror::Error;

/// The tenant every request belongs to when `auth_enabled: false`, as in Loki.
pub const DEFAULT_TENANT: &str = "fake";
pub const MAX_TENANT_ID_LEN: usize = 150;

#[derive(Debug, Error, PartialEq)]
pub enum TenantError {
    #[error("no org id")]
    Missing,
    #[error("tenant ID is too long: max {MAX_TENANT_ID_LEN} characters")]
    TooLong,
    #[error("tenant ID is '.' or '..'")]
    Dots,
    #[error("tenant ID '{0}' contains unsupported character '{1}'")]
    BadChar(String, char),
    #[error("multiple org IDs present")]
    Multiple,
}

/// Loki's allowed set: alphanumerics and `!-_.*'()`.
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!-_.*'()".contains(c)
}

pub fn validate_tenant_id(id: &str) -> Result<(), TenantError> {
    if id.is_empty() {
        return Err(TenantError::Missing);
    }
    if id.contains('|') {
        return Err(TenantError::Multiple);
    }
    if id.len() > MAX_TENANT_ID_LEN {
        return Err(TenantError::TooLong);
    }
    if id == "." || id == ".." {
        return Err(TenantError::Dots);
    }
    if let Some(c) = id.chars().find(|c| !allowed(*c)) {
        return Err(TenantError::BadChar(id.to_string(), c));
    }
    Ok(())
}

/// The directory name for a (validated) tenant: `t-` followed by the hex of its bytes.
pub fn tenant_dir_name(id: &str) -> String {
    let mut s = String::with_capacity(2 + id.len() * 2);
    s.push_str("t-");
    for b in id.bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The inverse of [`tenant_dir_name`]; `None` for names that are not tenant directories.
pub fn tenant_from_dir_name(name: &str) -> Option<String> {
    let hex = name.strip_prefix("t-")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect();
    let id = String::from_utf8(bytes?).ok()?;
    validate_tenant_id(&id).ok()?;
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(id: &str, ok: bool) {
        assert_eq!(validate_tenant_id(id).is_ok(), ok, "{id:?}");
    }

    #[test]
    fn tenant_ids() {
        check("fake", true);
        check("team-a_1.prod(x)*'!", true);
        check("", false);
        check(".", false);
        check("..", false);
        check("../etc", false);
        check("a/b", false);
        check("a b", false);
        check("a|b", false);
        check(&"x".repeat(150), true);
        check(&"x".repeat(151), false);
    }

    #[test]
    fn dir_names_round_trip_and_hide_dots() {
        for id in ["fake", "a.b", "..x", "(x)"] {
            let d = tenant_dir_name(id);
            assert!(
                d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                "{d}"
            );
            assert_eq!(tenant_from_dir_name(&d).as_deref(), Some(id));
        }
        assert_eq!(tenant_from_dir_name("t-2e2e"), None); // ".."
        assert_eq!(tenant_from_dir_name("other"), None);
    }
}
