//! The write-ahead log. Every accepted push is appended here before it is acknowledged, and
//! replayed into the head at start. Files live in `data/wal/` (names in `files`), each started
//! with a header and holding records back to back:
//!
//! ```text
//! file   := header record*
//! header := "SAWMWAL1" (8) | version u8 = 2 | reserved [u8; 3] | salt u32 LE      16 bytes
//! record := len u32 | crc32c(salt ++ len) u32 | crc32c(salt ++ payload) u32 | payload [u8; len]
//!           (integers LE; salt: random per file, so that a record-shaped log line inside
//!           a torn or damaged record is never taken for a record when replay resynchronises)
//! payload (kind 1, entries):
//!   kind u8 = 1 | tenant_len u16 | tenant | n_streams u32 |
//!   { labels_len u32 | labels text | n_entries u32 |
//!     { ts i64 | line_len u32 | line | n_md u16 | { k_len u16 | k | v_len u32 | v }* }* }*
//! ```
//!
//! A record's position ([`WalPos`]: file sequence and byte offset) orders all pushes. What the
//! two fsync modes promise:
//! - `interval`: a push is acknowledged after write(2) of its record. It survives a crash of the
//!   process (the kernel has it); an OS crash or power loss can lose up to `fsync_interval`.
//! - `always`: a push is acknowledged after fdatasync covers its record (group commit: one fdatasync
//!   serves every record written before it). It survives power loss.
//!
//! At replay, a record cut short at the tail of the last file (a torn write) is cut off and logged;
//! a damaged record elsewhere is reported with file and offset and skipped, and the records
//! around it are kept.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use thiserror::Error;
use tokio::sync::watch;

use crate::config::FsyncMode;
use crate::model::Entry;
use crate::storage::codec::{Reader, Truncated};
use crate::storage::files;

pub const WAL_MAGIC: &[u8; 8] = b"SAWMWAL1";
pub const WAL_VERSION: u8 = 2;
pub const HEADER_LEN: u64 = 16;
pub const RECORD_HEADER: usize = 12;
const KIND_ENTRIES: u8 = 1;

#[derive(Debug, Error)]
pub enum WalError {
    #[error("wal write failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("wal record of {0} bytes is too large")]
    TooLarge(usize),
}

/// Where a record starts: file sequence number, then byte offset. Totally ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WalPos {
    pub seq: u64,
    pub offset: u64,
}

/// Appends records; safe to share between threads.
pub struct Wal {
    dir: PathBuf,
    mode: FsyncMode,
    segment_size: u64,
    inner: Mutex<Writer>,
    /// The salt of the file being appended to (also in `inner`), readable without the lock.
    salt: std::sync::atomic::AtomicU32,
    /// Total bytes written since start, and the part of it known durable.
    sync: Arc<SyncState>,
    synced_rx: watch::Receiver<u64>,
}

struct Writer {
    file: Arc<File>,
    salt: u32,
    seq: u64,
    offset: u64,
    written: u64,
}

struct SyncState {
    pending: Mutex<bool>,
    cv: Condvar,
    synced_tx: watch::Sender<u64>,
    stop: Mutex<bool>,
}

impl Wal {
    /// Opens the WAL for appending, starting a new file numbered after `min_seq` and every file
    /// already in the directory. Starts the background sync thread.
    pub fn open(
        data: &Path,
        mode: FsyncMode,
        interval: Duration,
        segment_size: u64,
        min_seq: u64,
    ) -> std::io::Result<Arc<Wal>> {
        let dir = files::wal_dir(data);
        std::fs::create_dir_all(&dir)?;
        let next = list_files(&dir)?
            .last()
            .map(|(s, _)| *s)
            .unwrap_or(0)
            .max(min_seq)
            + 1;
        let (file, salt) = create_file(&dir, data, next)?;
        let (synced_tx, synced_rx) = watch::channel(0u64);
        let sync = Arc::new(SyncState {
            pending: Mutex::new(false),
            cv: Condvar::new(),
            synced_tx,
            stop: Mutex::new(false),
        });
        let wal = Arc::new(Wal {
            dir,
            mode,
            segment_size: segment_size.max(HEADER_LEN + 1),
            salt: std::sync::atomic::AtomicU32::new(salt),
            inner: Mutex::new(Writer {
                file: Arc::new(file),
                salt,
                seq: next,
                offset: HEADER_LEN,
                written: 0,
            }),
            sync,
            synced_rx,
        });
        let w = Arc::downgrade(&wal);
        std::thread::Builder::new()
            .name("wal-sync".into())
            .spawn(move || sync_loop(w, mode, interval))?;
        Ok(wal)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sequence number of the file being appended to.
    pub fn current_seq(&self) -> u64 {
        self.inner.lock().seq
    }

    /// Appends one record; returns where it starts and the write counter to wait on with
    /// [`Wal::wait_durable`]. Nothing is acknowledged unless this returns Ok.
    pub fn append(&self, payload: &[u8]) -> Result<(WalPos, u64), WalError> {
        let mut rec = framed_buffer(payload.len());
        rec.extend_from_slice(payload);
        self.append_framed(&mut rec)
    }

    /// Like [`Wal::append`], for a buffer from [`framed_buffer`] holding the payload after its
    /// reserved header: the header is filled in place, so the payload is never copied.
    pub fn append_framed(&self, rec: &mut [u8]) -> Result<(WalPos, u64), WalError> {
        let payload_len = rec.len() - RECORD_HEADER;
        if payload_len > u32::MAX as usize - RECORD_HEADER {
            return Err(WalError::TooLarge(payload_len));
        }
        // The checksum is computed outside the lock with the current file's salt, and again
        // under it in the rare case that the file was rotated in between.
        let salted = |salt: u32| {
            crc32c::crc32c_append(crc32c::crc32c(&salt.to_le_bytes()), &rec[RECORD_HEADER..])
        };
        let guess = self.salt.load(std::sync::atomic::Ordering::Acquire);
        let mut payload_crc = salted(guess);
        let mut w = self.inner.lock();
        if w.offset > HEADER_LEN && w.offset + rec.len() as u64 > self.segment_size {
            self.rotate(&mut w)?;
        }
        if w.salt != guess {
            payload_crc = salted(w.salt);
        }
        let len = (payload_len as u32).to_le_bytes();
        rec[..4].copy_from_slice(&len);
        rec[4..8].copy_from_slice(&header_check(w.salt, len).to_le_bytes());
        rec[8..12].copy_from_slice(&payload_crc.to_le_bytes());
        let pos = WalPos {
            seq: w.seq,
            offset: w.offset,
        };
        if let Err(e) = w.file.write_all_at(rec, w.offset) {
            // Leave no partial record behind: the next record is written at the same offset.
            let _ = w.file.set_len(w.offset);
            return Err(e.into());
        }
        w.offset += rec.len() as u64;
        w.written += rec.len() as u64;
        let written = w.written;
        drop(w);
        if self.mode == FsyncMode::Always {
            *self.sync.pending.lock() = true;
            self.sync.cv.notify_one();
        }
        Ok((pos, written))
    }

    fn rotate(&self, w: &mut Writer) -> std::io::Result<()> {
        w.file.sync_data()?;
        let data = self.dir.parent().unwrap_or(Path::new("."));
        let (file, salt) = create_file(&self.dir, data, w.seq + 1)?;
        w.seq += 1;
        w.file = Arc::new(file);
        w.salt = salt;
        self.salt.store(salt, std::sync::atomic::Ordering::Release);
        w.offset = HEADER_LEN;
        // Everything in the old file is durable now.
        let written = w.written;
        self.sync.synced_tx.send_if_modified(|s| {
            let grew = *s < written;
            *s = (*s).max(written);
            grew
        });
        Ok(())
    }

    /// In `always` mode, waits until the record that brought the counter to `written` is durable.
    pub async fn wait_durable(&self, written: u64) -> Result<(), WalError> {
        if self.mode != FsyncMode::Always {
            return Ok(());
        }
        let mut rx = self.synced_rx.clone();
        rx.wait_for(|s| *s >= written)
            .await
            .map(|_| ())
            .map_err(|_| WalError::Io(std::io::Error::other("wal sync thread stopped")))
    }

    /// Forces the current file to disk (used at shutdown and by `interval` mode).
    pub fn sync_now(&self) -> std::io::Result<()> {
        let (file, written) = {
            let w = self.inner.lock();
            (w.file.clone(), w.written)
        };
        file.sync_data()?;
        self.sync.synced_tx.send_if_modified(|s| {
            let grew = *s < written;
            *s = (*s).max(written);
            grew
        });
        Ok(())
    }

    /// Closes the current file and starts a new one, so that everything written so far sits in
    /// files numbered below the returned sequence.
    pub fn cut(&self) -> std::io::Result<u64> {
        let mut w = self.inner.lock();
        if w.offset > HEADER_LEN {
            self.rotate(&mut w)?;
        }
        Ok(w.seq)
    }

    /// Deletes every WAL file numbered below `seq` (never the current one).
    pub fn remove_before(&self, seq: u64) -> std::io::Result<usize> {
        let current = self.current_seq();
        let mut n = 0;
        for (s, path) in list_files(&self.dir)? {
            if s < seq && s < current {
                std::fs::remove_file(&path)?;
                n += 1;
            }
        }
        if n > 0 {
            files::sync_dir(&self.dir)?;
        }
        Ok(n)
    }

    /// The number of the oldest WAL file on disk (the current one when there is no other).
    pub fn oldest_seq(&self) -> u64 {
        list_files(&self.dir)
            .ok()
            .and_then(|v| v.first().map(|(s, _)| *s))
            .unwrap_or_else(|| self.current_seq())
    }

    /// Bytes in all WAL files on disk.
    pub fn disk_bytes(&self) -> u64 {
        list_files(&self.dir)
            .map(|v| {
                v.iter()
                    .filter_map(|(_, p)| p.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        *self.sync.stop.lock() = true;
        self.sync.cv.notify_one();
    }
}

fn sync_loop(wal: std::sync::Weak<Wal>, mode: FsyncMode, interval: Duration) {
    loop {
        let Some(w) = wal.upgrade() else { return };
        let sync = w.sync.clone();
        drop(w);
        {
            let mut pending = sync.pending.lock();
            if *sync.stop.lock() {
                return;
            }
            if mode == FsyncMode::Always {
                if !*pending {
                    sync.cv.wait_for(&mut pending, Duration::from_millis(200));
                }
            } else {
                sync.cv.wait_for(&mut pending, interval);
            }
            *pending = false;
        }
        let Some(w) = wal.upgrade() else { return };
        if let Err(e) = w.sync_now() {
            tracing::error!(error = %e, "wal fdatasync failed");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn create_file(dir: &Path, data: &Path, seq: u64) -> std::io::Result<(File, u32)> {
    let path = files::wal_file(data, seq);
    debug_assert_eq!(path.parent(), Some(dir));
    let f = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let salt = random_u32()?;
    f.write_all_at(&file_header(salt), 0)?;
    f.sync_all()?;
    files::sync_dir(dir)?;
    Ok((f, salt))
}

/// The 16-byte header of a WAL file with this salt.
pub fn file_header(salt: u32) -> [u8; HEADER_LEN as usize] {
    let mut header = [0u8; HEADER_LEN as usize];
    header[..8].copy_from_slice(WAL_MAGIC);
    header[8] = WAL_VERSION;
    header[12..16].copy_from_slice(&salt.to_le_bytes());
    header
}

/// Checks a record's length field, so that resynchronising past damage rejects almost every
/// candidate offset without reading its payload.
fn header_check(salt: u32, len: [u8; 4]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&salt.to_le_bytes()), &len)
}

/// Encodes one record (header and payload) for a file with this salt.
pub fn encode_record(salt: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_le_bytes();
    let mut rec = Vec::with_capacity(RECORD_HEADER + payload.len());
    rec.extend_from_slice(&len);
    rec.extend_from_slice(&header_check(salt, len).to_le_bytes());
    rec.extend_from_slice(
        &crc32c::crc32c_append(crc32c::crc32c(&salt.to_le_bytes()), payload).to_le_bytes(),
    );
    rec.extend_from_slice(payload);
    rec
}

fn random_u32() -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most `b.len()` bytes into the buffer it is given.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        return Err(std::io::Error::last_os_error());
    }
    Ok(u32::from_le_bytes(b))
}

/// A buffer for one record: the header's bytes reserved, the payload to be appended after them.
pub fn framed_buffer(payload_capacity: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(RECORD_HEADER + payload_capacity);
    v.resize(RECORD_HEADER, 0);
    v
}

/// Empties a framed buffer, keeping its reserved header.
pub fn reset_framed(v: &mut Vec<u8>) {
    v.truncate(RECORD_HEADER);
}

/// WAL files in sequence order.
pub fn list_files(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let e = e?;
                if let Some(seq) = e.file_name().to_str().and_then(files::wal_seq) {
                    out.push((seq, e.path()));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    Ok(out)
}

/// Something found wrong while reading a WAL file.
#[derive(Debug, Clone, PartialEq)]
pub enum WalProblem {
    /// The file ends inside a record: a write cut short by a crash.
    Torn { file: PathBuf, offset: u64 },
    /// A damaged record or header that is not at the tail.
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
}

/// The records of one WAL file that read back intact, and what was wrong with the rest.
pub struct FileRecords<'a> {
    pub records: Vec<(u64, &'a [u8])>,
    pub problems: Vec<WalProblem>,
    /// The end of the last intact record.
    pub valid_end: u64,
}

/// Splits the bytes of one WAL file into records.
pub fn read_records<'a>(path: &Path, data: &'a [u8]) -> FileRecords<'a> {
    let mut out = FileRecords {
        records: Vec::new(),
        problems: Vec::new(),
        valid_end: 0,
    };
    if data.len() < HEADER_LEN as usize {
        out.problems.push(WalProblem::Torn {
            file: path.into(),
            offset: 0,
        });
        return out;
    }
    if &data[..8] != WAL_MAGIC || data[8] != WAL_VERSION {
        out.problems.push(WalProblem::Corrupt {
            file: path.into(),
            offset: 0,
            reason: "bad magic or version".into(),
        });
        return out;
    }
    let salt = u32::from_le_bytes(data[12..16].try_into().expect("bug: 4 bytes"));
    let mut off = HEADER_LEN as usize;
    out.valid_end = off as u64;
    while off < data.len() {
        if let Some((payload, end)) = record_at(data, salt, off) {
            out.records.push((off as u64, payload));
            off = end;
            out.valid_end = off as u64;
            continue;
        }
        // Damage at `off`. If an intact record follows, this was corruption in the middle;
        // otherwise the file ends in a torn write.
        match resync(data, salt, off + 1) {
            Some(next) => {
                out.problems.push(WalProblem::Corrupt {
                    file: path.into(),
                    offset: off as u64,
                    reason: "damaged record".into(),
                });
                off = next;
            }
            None => {
                out.problems.push(WalProblem::Torn {
                    file: path.into(),
                    offset: off as u64,
                });
                break;
            }
        }
    }
    out
}

/// The intact record starting at `off`: its payload and where it ends.
fn record_at(data: &[u8], salt: u32, off: usize) -> Option<(&[u8], usize)> {
    let rest = data.get(off..)?;
    if rest.len() < RECORD_HEADER {
        return None;
    }
    let len_bytes: [u8; 4] = rest[..4].try_into().expect("bug: 4 bytes");
    let hcrc = u32::from_le_bytes(rest[4..8].try_into().expect("bug: 4 bytes"));
    let crc = u32::from_le_bytes(rest[8..12].try_into().expect("bug: 4 bytes"));
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len == 0 || rest.len() - RECORD_HEADER < len || header_check(salt, len_bytes) != hcrc {
        return None;
    }
    let payload = &rest[RECORD_HEADER..RECORD_HEADER + len];
    (crc32c::crc32c_append(crc32c::crc32c(&salt.to_le_bytes()), payload) == crc)
        .then_some((payload, off + RECORD_HEADER + len))
}

/// The first offset at or after `from` where an intact record starts. The salted header check
/// rejects nearly every candidate offset in constant time, so this stays linear.
fn resync(data: &[u8], salt: u32, from: usize) -> Option<usize> {
    (from..data.len().saturating_sub(RECORD_HEADER))
        .find(|&off| record_at(data, salt, off).is_some())
}

/// An entries record, as logged.
#[derive(Debug, Clone, PartialEq)]
pub struct EntriesRecord {
    pub tenant: String,
    /// Canonical label text (`Labels::to_string`) and the accepted entries of that stream.
    pub streams: Vec<(String, Vec<Entry>)>,
}

/// Encodes an entries record from borrowed parts.
pub fn encode_entries<'a, E>(
    tenant: &str,
    streams: impl Iterator<Item = (&'a str, E)>,
    out: &mut Vec<u8>,
) where
    E: ExactSizeIterator<Item = &'a Entry>,
{
    out.push(KIND_ENTRIES);
    out.extend_from_slice(&(tenant.len() as u16).to_le_bytes());
    out.extend_from_slice(tenant.as_bytes());
    let n_at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut n = 0u32;
    for (labels, entries) in streams {
        n += 1;
        out.extend_from_slice(&(labels.len() as u32).to_le_bytes());
        out.extend_from_slice(labels.as_bytes());
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for e in entries {
            out.extend_from_slice(&e.ts.to_le_bytes());
            out.extend_from_slice(&(e.line.len() as u32).to_le_bytes());
            out.extend_from_slice(e.line.as_bytes());
            out.extend_from_slice(&(e.metadata.len() as u16).to_le_bytes());
            for (k, v) in &e.metadata {
                out.extend_from_slice(&(k.len() as u16).to_le_bytes());
                out.extend_from_slice(k.as_bytes());
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v.as_bytes());
            }
        }
    }
    out[n_at..n_at + 4].copy_from_slice(&n.to_le_bytes());
}

pub fn decode_entries(payload: &[u8]) -> Result<EntriesRecord, Truncated> {
    let v = view_entries(payload)?;
    Ok(EntriesRecord {
        tenant: v.tenant.to_string(),
        streams: v
            .streams
            .into_iter()
            .map(|(labels, entries)| {
                let entries = entries
                    .into_iter()
                    .map(|e| Entry {
                        ts: e.ts,
                        line: e.line.to_string(),
                        metadata: e
                            .metadata
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                    })
                    .collect();
                (labels.to_string(), entries)
            })
            .collect(),
    })
}

/// An entries record read in place: borrowed from the WAL file's bytes.
pub struct RecordView<'a> {
    pub tenant: &'a str,
    pub streams: Vec<(&'a str, Vec<EntryView<'a>>)>,
}

pub struct EntryView<'a> {
    pub ts: i64,
    pub line: &'a str,
    pub metadata: Vec<(&'a str, &'a str)>,
}

/// Decodes an entries record without copying lines (WAL replay).
pub fn view_entries(payload: &[u8]) -> Result<RecordView<'_>, Truncated> {
    let mut r = Reader::new(payload);
    if r.u8()? != KIND_ENTRIES {
        return Err(Truncated(0));
    }
    let tl = r.u16()? as usize;
    let tenant = as_str(r.bytes(tl)?, &r)?;
    let n = r.u32()?;
    let mut streams = Vec::with_capacity((n as usize).min(4096));
    for _ in 0..n {
        let ll = r.u32()? as usize;
        let labels = as_str(r.bytes(ll)?, &r)?;
        let ne = r.u32()? as usize;
        let mut entries = Vec::with_capacity(ne.min(r.remaining() / 14 + 1));
        for _ in 0..ne {
            let ts = r.i64()?;
            let len = r.u32()? as usize;
            let line = as_str(r.bytes(len)?, &r)?;
            let nmd = r.u16()?;
            let mut metadata = Vec::new();
            for _ in 0..nmd {
                let kl = r.u16()? as usize;
                let k = as_str(r.bytes(kl)?, &r)?;
                let vl = r.u32()? as usize;
                let v = as_str(r.bytes(vl)?, &r)?;
                metadata.push((k, v));
            }
            entries.push(EntryView { ts, line, metadata });
        }
        streams.push((labels, entries));
    }
    Ok(RecordView { tenant, streams })
}

fn as_str<'a>(b: &'a [u8], r: &Reader) -> Result<&'a str, Truncated> {
    std::str::from_utf8(b).map_err(|_| Truncated(r.pos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: i64) -> Vec<u8> {
        let entries = [Entry {
            ts: i,
            line: format!("line {i}"),
            metadata: vec![("k".into(), "v".into())],
        }];
        let mut out = Vec::new();
        encode_entries(
            "fake",
            [("{a=\"b\"}", entries.iter())].into_iter(),
            &mut out,
        );
        out
    }

    fn write_wal(n: i64) -> (tempfile::TempDir, PathBuf, Vec<u64>) {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(
            dir.path(),
            FsyncMode::Interval,
            Duration::from_secs(1),
            1 << 30,
            0,
        )
        .unwrap();
        let mut offsets = Vec::new();
        for i in 0..n {
            offsets.push(wal.append(&rec(i)).unwrap().0.offset);
        }
        let path = list_files(wal.dir()).unwrap()[0].1.clone();
        (dir, path, offsets)
    }

    #[test]
    fn records_round_trip() {
        let payload = rec(7);
        let r = decode_entries(&payload).unwrap();
        assert_eq!(r.tenant, "fake");
        assert_eq!(r.streams[0].1[0].line, "line 7");
        assert_eq!(
            r.streams[0].1[0].metadata,
            vec![("k".to_string(), "v".to_string())]
        );
        for cut in 0..payload.len() {
            assert!(decode_entries(&payload[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn view_matches_owned_decode() {
        let payload = rec(9);
        let owned = decode_entries(&payload).unwrap();
        let view = view_entries(&payload).unwrap();
        assert_eq!(view.tenant, owned.tenant);
        assert_eq!(view.streams[0].1[0].line, owned.streams[0].1[0].line);
        assert_eq!(view.streams[0].1[0].metadata, vec![("k", "v")]);
        for cut in 0..payload.len() {
            assert!(view_entries(&payload[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn cut_at_every_byte_of_the_last_record_keeps_the_others() {
        let (_d, path, offsets) = write_wal(5);
        let data = std::fs::read(&path).unwrap();
        let last = *offsets.last().unwrap() as usize;
        for cut in last..data.len() {
            let got = read_records(&path, &data[..cut]);
            assert_eq!(got.records.len(), 4, "cut at {cut}");
            assert_eq!(got.valid_end as usize, last, "cut at {cut}");
            if cut > last {
                assert!(
                    matches!(got.problems[..], [WalProblem::Torn { offset, .. }] if offset as usize == last),
                    "cut at {cut}: {:?}",
                    got.problems
                );
            }
        }
        assert_eq!(read_records(&path, &data).records.len(), 5);
    }

    #[test]
    fn damage_in_the_middle_is_reported_and_skipped() {
        let (_d, path, offsets) = write_wal(5);
        let mut data = std::fs::read(&path).unwrap();
        let target = offsets[2] as usize + 12;
        data[target] ^= 0xff;
        let got = read_records(&path, &data);
        assert_eq!(got.records.len(), 4);
        assert!(
            matches!(&got.problems[..], [WalProblem::Corrupt { offset, .. }] if *offset == offsets[2])
        );
    }

    #[test]
    fn damaged_length_in_the_middle_is_skipped_not_taken_for_a_tail() {
        let (_d, path, offsets) = write_wal(5);
        let mut data = std::fs::read(&path).unwrap();
        let at = offsets[1] as usize;
        data[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let got = read_records(&path, &data);
        assert_eq!(got.records.len(), 4);
        assert!(
            matches!(&got.problems[..], [WalProblem::Corrupt { offset, .. }] if *offset == offsets[1])
        );
        assert_eq!(got.valid_end as usize, data.len());
    }

    #[test]
    fn bad_checksum_on_the_last_record_is_a_torn_tail() {
        let (_d, path, offsets) = write_wal(3);
        let mut data = std::fs::read(&path).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        let got = read_records(&path, &data);
        assert_eq!(got.records.len(), 2);
        assert!(
            matches!(&got.problems[..], [WalProblem::Torn { offset, .. }] if *offset == offsets[2])
        );
    }

    #[test]
    fn a_record_inside_a_torn_record_is_never_replayed() {
        // A log line carrying a well-formed record (for a guessed salt) inside a record torn
        // by a crash: replay must not resynchronise onto it.
        let (_d, path, offsets) = write_wal(2);
        let mut data = std::fs::read(&path).unwrap();
        let inner = encode_record(0, &rec(99));
        let mut outer_payload = Vec::new();
        let line = Entry {
            ts: 1,
            line: String::from_utf8(inner.iter().map(|b| b & 0x7f).collect()).unwrap(),
            metadata: vec![],
        };
        let inner_ascii: Vec<u8> = line.line.as_bytes().to_vec();
        encode_entries(
            "mallory",
            [("{a=\"b\"}", std::slice::from_ref(&line).iter())].into_iter(),
            &mut outer_payload,
        );
        let salt = u32::from_le_bytes(data[12..16].try_into().unwrap());
        let outer = encode_record(salt, &outer_payload);
        data.extend_from_slice(&outer[..outer.len() - 3]);
        let got = read_records(&path, &data);
        assert_eq!(got.records.len(), 2, "only the intact records");
        assert!(
            matches!(&got.problems[..], [WalProblem::Torn { .. }]),
            "{:?}",
            got.problems
        );
        assert_eq!(
            got.valid_end as usize,
            offsets[1] as usize + encode_record(salt, &rec(1)).len()
        );
        assert!(!inner_ascii.is_empty());
    }

    #[test]
    fn rotation_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(
            dir.path(),
            FsyncMode::Always,
            Duration::from_secs(1),
            200,
            0,
        )
        .unwrap();
        let mut seqs = std::collections::BTreeSet::new();
        for i in 0..10 {
            seqs.insert(wal.append(&rec(i)).unwrap().0.seq);
        }
        assert!(seqs.len() > 1);
        let current = wal.current_seq();
        wal.remove_before(current).unwrap();
        assert_eq!(list_files(wal.dir()).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn always_mode_acknowledges_after_sync() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(
            dir.path(),
            FsyncMode::Always,
            Duration::from_secs(1),
            1 << 20,
            0,
        )
        .unwrap();
        let (_, written) = wal.append(&rec(1)).unwrap();
        tokio::time::timeout(Duration::from_secs(5), wal.wait_durable(written))
            .await
            .unwrap()
            .unwrap();
        assert!(*wal.synced_rx.borrow() >= written);
    }
}
