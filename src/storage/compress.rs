//! What the two block formats share: zstd compression with one reused context per thread,
//! the errors a damaged block gives, and the encoding of an entry's structured metadata
//! (`n uvarint | { name lp | value lp }*`). `chunk` (row blocks) and `columns` (columnar
//! blocks) both build on it.

use thiserror::Error;

use crate::storage::codec::{Reader, Truncated};

/// No block decompresses to more than this; a header claiming more is damage.
pub const MAX_BLOCK_RAW: usize = 64 << 20;

#[derive(Debug, Error, PartialEq)]
pub enum ChunkError {
    #[error("block checksum mismatch at byte {0}")]
    Checksum(usize),
    #[error("malformed chunk: {0}")]
    Malformed(String),
    #[error("decompression failed: {0}")]
    Zstd(String),
}

impl From<Truncated> for ChunkError {
    fn from(t: Truncated) -> Self {
        ChunkError::Malformed(t.to_string())
    }
}

thread_local! {
    /// One zstd context per thread, reused: creating one per block costs its tables' setup.
    static CCTX: std::cell::RefCell<Option<(i32, zstd::zstd_safe::CCtx<'static>)>> = const { std::cell::RefCell::new(None) };
}

/// Compresses the concatenation of `parts` as one zstd frame.
pub(crate) fn compress_parts(parts: &[&[u8]], level: i32) -> Vec<u8> {
    use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective as EndDirective;
    use zstd::zstd_safe::{CParameter, InBuffer, OutBuffer};
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut out: Vec<u8> = Vec::with_capacity(zstd::zstd_safe::compress_bound(total));
    CCTX.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|(l, _)| *l != level) {
            let mut cctx = zstd::zstd_safe::CCtx::create();
            cctx.set_parameter(CParameter::CompressionLevel(level))
                .expect("bug: valid zstd level");
            *cell = Some((level, cctx));
        }
        let (_, cctx) = cell.as_mut().expect("bug: context just set");
        cctx.set_pledged_src_size(Some(total as u64))
            .expect("bug: pledged size at frame start");
        let mut output = OutBuffer::around(&mut out);
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let mut input = InBuffer::around(part);
            loop {
                let directive = if last {
                    EndDirective::ZSTD_e_end
                } else {
                    EndDirective::ZSTD_e_continue
                };
                let remaining = cctx
                    .compress_stream2(&mut output, &mut input, directive)
                    .expect("bug: zstd compression into a bound-sized buffer");
                let done = if last {
                    remaining == 0
                } else {
                    input.pos() == part.len()
                };
                if done {
                    break;
                }
            }
        }
    });
    out
}

thread_local! {
    /// One decompression context per thread, reused.
    static DCTX: std::cell::RefCell<zstd::zstd_safe::DCtx<'static>> =
        std::cell::RefCell::new(zstd::zstd_safe::DCtx::create());
}

/// Decompresses one zstd frame of `raw_len` bytes into `out` (cleared first); the output
/// goes into the buffer's spare capacity, with no zero-filling first.
pub(crate) fn zstd_decompress(
    comp: &[u8],
    raw_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), ChunkError> {
    if raw_len > MAX_BLOCK_RAW {
        return Err(ChunkError::Malformed(format!(
            "block claims {raw_len} raw bytes"
        )));
    }
    out.clear();
    out.reserve(raw_len);
    let got = DCTX
        .with(|d| d.borrow_mut().decompress(out, comp))
        .map_err(|code| ChunkError::Zstd(zstd::zstd_safe::get_error_name(code).to_string()))?;
    if got != raw_len {
        return Err(ChunkError::Malformed(format!(
            "block decompressed to {got} bytes, header says {raw_len}"
        )));
    }
    Ok(())
}

/// Iterates the `(name, value)` pairs of encoded metadata.
pub fn metadata_pairs(raw: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    let mut r = Reader::new(raw);
    let n = r.uvarint().unwrap_or(0);
    (0..n).map_while(move |_| {
        let k = r.lp_str().ok()?;
        let v = r.lp_str().ok()?;
        Some((k, v))
    })
}

pub fn metadata_to_vec(raw: &[u8]) -> Vec<(String, String)> {
    metadata_pairs(raw)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
