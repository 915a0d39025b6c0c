//! Running the server: bind, recover the store in the background (`/ready` answers 503 until the
//! WAL is replayed), serve the router, start the flusher and the compactor, reload the config
//! on SIGHUP, and on SIGTERM/SIGINT stop accepting,
//! flush everything to segments and sync the WAL.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{router, AppState};
use crate::storage::store::Store;

/// Serves on `listener` until `shutdown` resolves; then flushes and returns.
pub async fn run(
    cfg: Arc<Config>,
    config_path: Option<std::path::PathBuf>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    std::fs::create_dir_all(cfg.data_dir())?;
    let store = Store::new(cfg.clone());
    store.set_config_path(config_path);
    spawn_allocator_trim();
    let ruler = crate::ruler::Ruler::new(store.clone());
    spawn_reload_on_sighup(&store, &ruler);
    let app = router(AppState {
        store: store.clone(),
        ruler: ruler.clone(),
        query_slots: Default::default(),
    });
    let recovering = store.clone();
    let starting = ruler.clone();
    let recovery = tokio::task::spawn_blocking(move || {
        let r = recovering.recover();
        if r.is_ok() {
            recovering.start_flusher();
            recovering.start_compactor();
            recovering.start_indexer();
            // Rules are evaluated once the WAL is replayed, so they see all acknowledged data.
            starting.start();
        }
        r
    });
    tracing::info!(addr = %listener.local_addr()?, data = %cfg.data_dir().display(), "sawmill listening");
    if !cfg.ignored_loki_keys().is_empty() {
        tracing::warn!(keys = %cfg.ignored_loki_keys().join(", "), "Loki configuration keys without meaning in a single process are ignored");
    }
    // Live tails end with the server: they are told before connections are drained.
    let tails = store.tails.clone();
    let shutdown = async move {
        shutdown.await;
        tails.close_all();
    };
    // Request targets as Go reads them, bounded reads and writes (see `http::conn`).
    let listener = crate::http::conn::GuardedListener::new(
        listener,
        crate::http::conn::Timeouts::of(&cfg.server),
    );
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown);
    let serving = tokio::spawn(async move { server.await });
    match recovery.await {
        Ok(Ok(report)) => tracing::info!(
            segments = report.segments,
            damaged_segments = report.damaged_segments.len(),
            wal_records = report.wal_records,
            wal_entries = report.wal_entries,
            wal_problems = report.wal_problems.len(),
            took_ms = report.took.as_millis() as u64,
            "ready"
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "recovery failed");
            return Err(e);
        }
        Err(e) => return Err(std::io::Error::other(format!("recovery task failed: {e}"))),
    }
    let result = serving
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;

    let s = store.clone();
    tokio::task::spawn_blocking(move || {
        ruler.stop();
        s.shutdown()
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    tracing::info!("stopped");
    result
}

/// SIGHUP reloads the config file's limits and retention and the rule files, as
/// `POST /-/reload` does.
fn spawn_reload_on_sighup(store: &Arc<Store>, ruler: &Arc<crate::ruler::Ruler>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    let store = Arc::downgrade(store);
    let ruler = Arc::downgrade(ruler);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let Some(s) = store.upgrade() else { return };
            if let Some(r) = ruler.upgrade() {
                let _ = tokio::task::spawn_blocking(move || {
                    tracing::info!(msg = %r.reload(), "SIGHUP");
                })
                .await;
            }
            let r = tokio::task::spawn_blocking(move || s.reload()).await;
            match r {
                Ok(Ok(msg)) => tracing::info!(%msg, "SIGHUP"),
                Ok(Err(e)) => tracing::error!(error = %e, "SIGHUP: config not reloaded"),
                Err(e) => tracing::error!(error = %e, "SIGHUP: reload task failed"),
            }
        }
    });
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

/// Sets up logging as configured: JSON by default, one object per line with the event's fields
/// at the top level (`{"timestamp":..,"level":"INFO","fields"...}` flattened) and the fields of
/// the current span (the `request_id` of the HTTP request being served) under `span`.
/// `server.log_level` applies to Sawmill's own lines; other crates (tantivy, hyper) log at warn
/// unless asked. `SAWMILL_LOG` (an `EnvFilter` directive such as `sawmill=debug,tantivy=info`)
/// overrides both.
pub fn init_logging(cfg: &Config) {
    // `level` is what `/log_level` reports; `directive` what the filter applies.
    let env = std::env::var("SAWMILL_LOG")
        .ok()
        .filter(|l| tracing_subscriber::EnvFilter::try_new(l).is_ok());
    let level = env.clone().unwrap_or_else(|| cfg.server.log_level.clone());
    let directive = env.unwrap_or_else(|| crate::telemetry::log_directive(&cfg.server.log_level));
    let filter = tracing_subscriber::EnvFilter::new(&directive);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // The filter is reloadable: `POST /log_level` changes it (see `log_level`).
    let started = if cfg.server.log_format == "json" {
        let b = builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter_reloading();
        let handle = b.reload_handle();
        b.try_init()
            .map(|()| move |f| handle.reload(f).map_err(|e| e.to_string()))
            .map(|r| crate::log_level::install(&level, r))
    } else {
        let b = builder.with_filter_reloading();
        let handle = b.reload_handle();
        b.try_init()
            .map(|()| move |f| handle.reload(f).map_err(|e| e.to_string()))
            .map(|r| crate::log_level::install(&level, r))
    };
    drop(started);
}

/// glibc's allocator returns large buffers (push bodies, head blocks) to the kernel and maps
/// them again on every push, which costs page faults and zeroing at high ingest rates. Keep
/// them, and bound the number of arenas so that freed memory is reused.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called once before threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 16 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

/// How often memory freed inside the allocator's arenas goes back to the kernel.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// glibc gives back to the kernel only the free memory at the top of an arena. What a
/// compaction, an index build or a large query freed in the middle stays resident: 15 minutes
/// into `sawmill bench soak` the allocator held 134 MB while 37 MB were in use, and RSS rose
/// in steps with every new high-water mark. A thread (one per process) returns that memory every
/// [`TRIM_EVERY`].
fn spawn_allocator_trim() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("allocator-trim".into())
            .spawn(|| loop {
                std::thread::sleep(TRIM_EVERY);
                release_free_memory();
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the allocator trim thread");
        }
    });
}

/// Returns the allocator's free pages to the kernel (`malloc_trim`); a no-op off glibc.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages; it takes the arenas' locks itself.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::release_free_memory;

    /// This process's `RssAnon`, in kB.
    fn rss_anon_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn memory_freed_inside_an_arena_goes_back_to_the_kernel() {
        // On a thread of its own (a thread arena, as the server's threads use): 64 MB in 64 KB
        // pieces, then an allocation above them. Freeing the pieces leaves a hole below the
        // arena's top, which free() alone keeps resident.
        let (held, after) = std::thread::spawn(|| {
            let pieces: Vec<Vec<u8>> = (0..1024).map(|i| vec![i as u8 | 1; 64 << 10]).collect();
            let above = vec![1u8; 100 << 10];
            drop(pieces);
            let held = rss_anon_kb();
            release_free_memory();
            let after = rss_anon_kb();
            drop(above);
            (held, after)
        })
        .join()
        .unwrap();
        assert!(
            held.saturating_sub(after) > 32 << 10,
            "RssAnon {held} kB before the trim, {after} kB after"
        );
    }
}
