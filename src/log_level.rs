//! The log level, changeable while running (`GET`/`POST /log_level`): `server` installs the
//! tracing filter's reload handle here at start; `http::ops` reads and sets the level.

use parking_lot::Mutex;
use tracing_subscriber::EnvFilter;

/// The levels `POST /log_level` accepts (Loki's four, and `trace`).
pub const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

struct Control {
    level: String,
    reload: Reload,
}

static CONTROL: Mutex<Option<Control>> = Mutex::new(None);

/// Called once by `server::init_logging` with the filter it started with.
pub fn install(
    level: &str,
    reload: impl Fn(EnvFilter) -> Result<(), String> + Send + Sync + 'static,
) {
    *CONTROL.lock() = Some(Control {
        level: level.to_string(),
        reload: Box::new(reload),
    });
}

/// The current level (or filter directives), `None` when this process did not set up logging
/// (the router run inside a test).
pub fn current() -> Option<String> {
    CONTROL.lock().as_ref().map(|c| c.level.clone())
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LevelError {
    /// Loki's message for a level it does not know.
    #[error("unrecognized log level {0:?}")]
    Unknown(String),
    #[error("the log level cannot be changed: this process did not set up its logging")]
    NotInstalled,
    #[error("cannot change the log level: {0}")]
    Reload(String),
}

/// Sets the level of Sawmill's log lines from now on (other crates stay at warn, as at start).
pub fn set(level: &str) -> Result<(), LevelError> {
    let level = level.trim();
    if !LEVELS.contains(&level) {
        return Err(LevelError::Unknown(level.to_string()));
    }
    let mut control = CONTROL.lock();
    let c = control.as_mut().ok_or(LevelError::NotInstalled)?;
    (c.reload)(EnvFilter::new(crate::telemetry::log_directive(level)))
        .map_err(LevelError::Reload)?;
    c.level = level.to_string();
    Ok(())
}
