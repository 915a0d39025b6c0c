//! Failpoints for crash tests: `SAWMILL_FAILPOINTS=name1,name2` makes the process kill itself
//! with SIGKILL when it reaches one of those named points (each point is listed where it is hit,
//! e.g. `compact-after-publish`), or makes an I/O step fail as a full disk would ([`io_error`]).
//! Unset, a check is a lookup in an empty, cached list.

use std::sync::OnceLock;

fn armed() -> &'static [String] {
    static ARMED: OnceLock<Vec<String>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var("SAWMILL_FAILPOINTS")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Dies here, as from `kill -9`, when the point is armed.
pub fn hit(name: &str) {
    if armed().iter().any(|a| a == name) {
        tracing::warn!(failpoint = name, "failpoint reached: killing the process");
        // SAFETY: raise(2) with a valid signal number has no memory-safety preconditions.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}

/// An injected `ENOSPC` when the point is armed, `Ok` otherwise.
pub fn io_error(name: &str) -> std::io::Result<()> {
    if armed().iter().any(|a| a == name) {
        return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
    }
    Ok(())
}
