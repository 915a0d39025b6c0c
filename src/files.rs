//! Every on-disk name Sawmill uses, in one place. Layout under the data directory:
//!
//! ```text
//! data/
//!   wal/00000000000000000001.wal         write-ahead log segments, replayed at start
//!   tenants/t-<hex of tenant id>/
//!     segments/<seq>.seg                 immutable segment files (see `segment`)
//!     segments/<seq>.seg.tmp             a segment being written; removed at start
//! ```

use std::path::{Path, PathBuf};

pub const WAL_DIR: &str = "wal";
pub const WAL_EXT: &str = "wal";
pub const TENANTS_DIR: &str = "tenants";
pub const SEGMENTS_DIR: &str = "segments";
pub const SEGMENT_EXT: &str = "seg";
pub const TMP_SUFFIX: &str = ".tmp";

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

pub fn tenants_dir(data: &Path) -> PathBuf {
    data.join(TENANTS_DIR)
}

pub fn segments_dir(data: &Path, tenant: &str) -> PathBuf {
    tenants_dir(data)
        .join(crate::tenant::tenant_dir_name(tenant))
        .join(SEGMENTS_DIR)
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
