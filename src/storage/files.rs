//! Every on-disk name Sawmill uses, in one place. Layout under the data directory:
//!
//! ```text
//! data/
//!   LOCK                                 held (flock) by the running server; holds its PID (`lock`)
//!   wal/00000000000000000001.wal         write-ahead log segments, replayed at start
//!   tenants/t-<hex of tenant id>/
//!     segments/<seq>.seg                 immutable segment files (see `segment`)
//!     segments/<seq>.seg.tmp             a segment being written; removed at start
//!     segments/<seq>.idx/                the segment's search index (tantivy; see `index`)
//!     segments/<seq>.idx.tmp/            an index being built; removed at start
//!     deletes.json                       the tenant's delete requests (see `retention`)
//!   upload/t-<hex of tenant id>/<seq>.seg  with a bucket: a segment written, not yet uploaded
//!   cache/<range name>                   with a bucket: the read cache (`bucket::cache`)
//!   wal/flushed.json                     with a bucket: what the WAL holds that is in the bucket
//!   ruler/t-<hex of tenant id>/
//!     alerts.json                        pending and firing alerts, restored at start (`ruler`)
//!   rules/<tenant id>/<namespace>.yaml   rule files when `ruler.rule_path` is empty (`ruler`)
//! ```

use std::path::{Path, PathBuf};

pub const WAL_DIR: &str = "wal";
pub const WAL_EXT: &str = "wal";
pub const TENANTS_DIR: &str = "tenants";
pub const SEGMENTS_DIR: &str = "segments";
pub const SEGMENT_EXT: &str = "seg";
/// A segment's search index: a directory next to it (see `index`).
pub const INDEX_EXT: &str = "idx";
pub const TMP_SUFFIX: &str = ".tmp";
pub const DELETES_FILE: &str = "deletes.json";
pub const RULER_DIR: &str = "ruler";
pub const ALERTS_FILE: &str = "alerts.json";
pub const RULES_DIR: &str = "rules";
pub const LOCK_FILE: &str = "LOCK";
pub const UPLOAD_DIR: &str = "upload";
pub const CACHE_DIR: &str = "cache";
pub const FLUSHED_FILE: &str = "flushed.json";

/// The data directory's lock file (see `lock`).
pub fn lock_file(data: &Path) -> PathBuf {
    data.join(LOCK_FILE)
}

pub fn wal_dir(data: &Path) -> PathBuf {
    data.join(WAL_DIR)
}

pub fn wal_file(data: &Path, seq: u64) -> PathBuf {
    wal_dir(data).join(format!("{seq:020}.{WAL_EXT}"))
}

/// The sequence number of a WAL file name, `None` for anything else.
pub fn wal_seq(name: &str) -> Option<u64> {
    name.strip_suffix(&format!(".{WAL_EXT}"))?.parse().ok()
}

/// With a bucket: where a tenant's segments are written before they are uploaded.
pub fn upload_dir(data: &Path, tenant: &str) -> PathBuf {
    data.join(UPLOAD_DIR)
        .join(crate::model::tenant::tenant_dir_name(tenant))
}

pub fn cache_dir(data: &Path) -> PathBuf {
    data.join(CACHE_DIR)
}

/// With a bucket: the flushed position of every stream, kept beside the WAL (on its volume),
/// since the segments holding them may be compacted with other nodes' segments.
pub fn flushed_file(data: &Path) -> PathBuf {
    wal_dir(data).join(FLUSHED_FILE)
}

pub fn tenants_dir(data: &Path) -> PathBuf {
    data.join(TENANTS_DIR)
}

pub fn segments_dir(data: &Path, tenant: &str) -> PathBuf {
    tenants_dir(data)
        .join(crate::model::tenant::tenant_dir_name(tenant))
        .join(SEGMENTS_DIR)
}

pub fn tenant_dir(data: &Path, tenant: &str) -> PathBuf {
    tenants_dir(data).join(crate::model::tenant::tenant_dir_name(tenant))
}

pub fn deletes_file(data: &Path, tenant: &str) -> PathBuf {
    tenant_dir(data, tenant).join(DELETES_FILE)
}

/// Where the ruler keeps a tenant's alert state.
pub fn alerts_file(data: &Path, tenant: &str) -> PathBuf {
    data.join(RULER_DIR)
        .join(crate::model::tenant::tenant_dir_name(tenant))
        .join(ALERTS_FILE)
}

pub fn segment_file(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.{SEGMENT_EXT}"))
}

pub fn segment_seq(name: &str) -> Option<u64> {
    name.strip_suffix(&format!(".{SEGMENT_EXT}"))?.parse().ok()
}

/// fsyncs a directory so that a rename or unlink inside it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Free bytes available to this process on the filesystem holding `path` (or its nearest
/// existing ancestor).
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let p = path
        .ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.exists())
        .unwrap_or(Path::new("."));
    let c = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized, writable statvfs.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Where the search index of the segment at `seg_path` lives.
pub fn index_dir(seg_path: &Path) -> PathBuf {
    seg_path.with_extension(INDEX_EXT)
}
