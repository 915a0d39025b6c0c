//! One owner per data directory: an exclusive `flock(2)` on `<data_dir>/LOCK`, taken before the
//! server reads anything there and held until the process ends (as Prometheus locks its
//! TSDB directory). The file holds the owner's PID, so a second process can say who has it.
//!
//! The kernel drops a flock when its holder's last descriptor closes, also when the holder is
//! SIGKILLed, so a lock file left behind by a dead process is never in the way: only a live
//! process holds the lock. The file itself is never deleted (deleting it would let two
//! processes lock two different files of the same name).
//!
//! A restart that overlaps the old process's shutdown (still flushing) either exits at once
//! with a message naming the directory and the holder's PID (the default), or waits for the
//! old process to finish, up to `serve --lock-wait`.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

/// How often a waiting process tries the lock again.
const RETRY_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Error)]
pub enum LockError {
    #[error(
        "data directory {dir} is in use by another sawmill process ({holder}, lock file {file}){waited}; \
         stop that process first, or start with --lock-wait to wait for it to exit"
    )]
    Held {
        dir: PathBuf,
        file: PathBuf,
        holder: Holder,
        /// `", waited 10s"` when the caller waited, else empty.
        waited: String,
    },
    #[error("cannot lock data directory {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Who holds a lock, as far as the lock file says.
#[derive(Debug)]
pub struct Holder(pub Option<u32>);

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(pid) => write!(f, "pid {pid}"),
            None => f.write_str("pid unknown"),
        }
    }
}

/// The held lock; released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Creates `dir` if needed and takes its lock, trying again for up to `wait` while another
    /// process holds it (zero: fail at once).
    pub fn acquire(dir: &Path, wait: Duration) -> Result<DataDirLock, LockError> {
        let path = crate::storage::files::lock_file(dir);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let started = Instant::now();
        let mut told = false;
        loop {
            match try_flock(&file) {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => return Err(io(e)),
            }
            let holder = Holder(read_pid(&mut file));
            if started.elapsed() >= wait {
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    file: path.clone(),
                    holder,
                    waited: if wait.is_zero() {
                        String::new()
                    } else {
                        format!(", waited {}s", wait.as_secs_f64())
                    },
                });
            }
            if !told {
                tracing::warn!(dir = %dir.display(), %holder, wait_secs = wait.as_secs_f64(),
                    "data directory locked by another process; waiting for it to exit");
                told = true;
            }
            std::thread::sleep(RETRY_EVERY.min(wait.saturating_sub(started.elapsed())));
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DataDirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: true when taken, false when another open file holds it.
fn try_flock(file: &File) -> std::io::Result<bool> {
    loop {
        // SAFETY: flock on a descriptor this function borrows; no memory is passed.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
}

/// The PID written in the lock file by its holder (`None` if not yet written or unreadable).
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_in_the_same_process_is_refused_with_the_holder_pid() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path(), Duration::ZERO).unwrap();
        let err = DataDirLock::acquire(dir.path(), Duration::ZERO).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        drop(held);
        DataDirLock::acquire(dir.path(), Duration::ZERO).unwrap();
    }

    #[test]
    fn a_waiting_lock_is_taken_when_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path(), Duration::ZERO).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        DataDirLock::acquire(dir.path(), Duration::from_secs(10)).unwrap();
        release.join().unwrap();
    }

    #[test]
    fn waiting_ends_with_an_error_after_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let _held = DataDirLock::acquire(dir.path(), Duration::ZERO).unwrap();
        let err = DataDirLock::acquire(dir.path(), Duration::from_millis(250)).unwrap_err();
        assert!(err.to_string().contains("waited 0.25s"), "{err}");
    }
}
