//! Building a segment's search index: every block of every visible chunk is decoded once; its
//! correlation-field values (through `pipeline::fields`) and its line tokens are hashed into
//! bucket terms, one tantivy document per block, written to `<dir>.tmp` and renamed when whole.

use std::path::{Path, PathBuf};

use tantivy::{Index, SingleSegmentIndexWriter, TantivyDocument};

use super::{
    bucket, bucket_bits, for_each_token, hash, schema, Fields, IndexError, IndexMeta, SegmentIndex,
    FORMAT_VERSION, META_FILE,
};
use crate::pipeline::fields::{field_names, FieldExtractor};
use crate::storage::chunk::{chunk_blocks, DecodedBlock};
use crate::storage::segment::SegmentReader;

/// Builds the index of a segment into `dir` (through `dir.tmp`, renamed when complete).
pub fn build(
    seg: &SegmentReader,
    dir: &Path,
    fields: &[String],
    tokens: bool,
) -> Result<SegmentIndex, IndexError> {
    let tmp = PathBuf::from(format!(
        "{}{}",
        dir.display(),
        crate::storage::files::TMP_SUFFIX
    ));
    let tv = |source| IndexError::Tantivy {
        path: tmp.clone(),
        source,
    };
    remove_dir(&tmp)?;
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let (schema, f) = schema();
    let index = Index::create_in_dir(&tmp, schema).map_err(tv)?;
    // One tantivy segment (one term dictionary), written in memory then to `tmp`.
    let mut writer: SingleSegmentIndexWriter<TantivyDocument> =
        SingleSegmentIndexWriter::new(index, 200_000_000).map_err(tv)?;
    let (blocks_terms, unindexed) = terms_of_blocks(seg, fields, tokens);
    // IDs are looked up alone (the correlate API): twice the buckets, fewer blocks in vain.
    let id_bits = bucket_bits(2 * blocks_terms.iter().map(|b| b.ids.len()).sum::<usize>());
    let tok_bits = bucket_bits(blocks_terms.iter().map(|b| b.toks.len()).sum());
    for b in blocks_terms {
        writer
            .add_document(document(&f, b, id_bits, tok_bits))
            .map_err(tv)?;
    }
    writer.finalize().map_err(tv)?;
    let meta = IndexMeta {
        version: FORMAT_VERSION,
        fields: field_names(fields),
        tokens,
        id_bits,
        tok_bits,
        chunks: seg.chunks.len() + seg.hidden_chunks,
        unindexed,
    };
    write_meta(&tmp, &meta)?;
    remove_dir(dir)?;
    std::fs::rename(&tmp, dir).map_err(io(dir))?;
    if let Some(parent) = dir.parent() {
        crate::storage::files::sync_dir(parent).map_err(io(parent))?;
    }
    SegmentIndex::open(dir, seg.chunks.len() + seg.hidden_chunks)
}

/// An I/O error on `path`, as a `map_err` argument.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IndexError {
    let path = path.to_path_buf();
    move |source| IndexError::Io { path, source }
}

/// Removes the directory `dir` if it exists.
fn remove_dir(dir: &Path) -> Result<(), IndexError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(dir)(e)),
        _ => Ok(()),
    }
}

/// One block's terms: where it is, and the sorted hashes of its ID values and of its tokens.
struct BlockTerms {
    chunk: u64,
    block: u64,
    ids: Vec<u64>,
    toks: Vec<u64>,
}

/// The terms of every block of the segment's visible chunks (hidden ones are never read
/// again: a later `without` only hides more), and the offsets of the chunks that could not
/// be decoded.
fn terms_of_blocks(
    seg: &SegmentReader,
    fields: &[String],
    tokens: bool,
) -> (Vec<BlockTerms>, Vec<u64>) {
    let mut extractor = FieldExtractor::new(fields);
    let mut block = DecodedBlock::default();
    let mut unindexed = Vec::new();
    let mut blocks_terms = Vec::new();
    for c in &seg.chunks {
        let Ok(data) = seg.chunk_bytes(c) else {
            unindexed.push(c.offset);
            continue;
        };
        let Ok(blocks) = chunk_blocks(&data) else {
            unindexed.push(c.offset);
            continue;
        };
        extractor.set_stream(&seg.streams[c.stream as usize].labels);
        let mut docs = Vec::with_capacity(blocks.len());
        let mut ok = true;
        for (bi, b) in blocks.iter().enumerate() {
            if block.decode_from(b).is_err() {
                ok = false;
                break;
            }
            let (ids, toks) = block_hashes(&block, &mut extractor, tokens);
            docs.push(BlockTerms {
                chunk: c.offset,
                block: bi as u64,
                ids,
                toks,
            });
        }
        if !ok {
            unindexed.push(c.offset);
            continue;
        }
        blocks_terms.extend(docs);
    }
    (blocks_terms, unindexed)
}

/// The sorted, distinct hashes of a decoded block's correlation-field values and (with
/// `tokens`) of its line tokens that are not also ID values.
fn block_hashes(
    block: &DecodedBlock,
    extractor: &mut FieldExtractor,
    tokens: bool,
) -> (Vec<u64>, Vec<u64>) {
    let (mut ids, mut toks): (Vec<u64>, Vec<u64>) = (Vec::new(), Vec::new());
    let mut md: Vec<(String, String)> = Vec::new();
    for i in 0..block.len() {
        let line = block.line(i);
        md.clear();
        md.extend(
            crate::storage::chunk::metadata_pairs(block.metadata_raw(i))
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        extractor.each(line, &md, &mut |_, v| ids.push(hash(v.as_bytes())));
        if tokens {
            for_each_token(line, |t| toks.push(hash(t)));
        }
    }
    for v in [&mut ids, &mut toks] {
        v.sort_unstable();
        v.dedup();
    }
    // A token that is also an ID value is found through `id`.
    if !ids.is_empty() {
        toks.retain(|t| ids.binary_search(t).is_err());
    }
    (ids, toks)
}

/// A block's tantivy document: its place, and its hashes folded into `id_bits` and
/// `tok_bits` buckets.
fn document(f: &Fields, b: BlockTerms, id_bits: u32, tok_bits: u32) -> TantivyDocument {
    let mut doc = TantivyDocument::new();
    doc.add_u64(f.chunk, b.chunk);
    doc.add_u64(f.block, b.block);
    for t in buckets(&b.ids, id_bits) {
        doc.add_u64(f.id, t);
    }
    for t in buckets(&b.toks, tok_bits) {
        doc.add_u64(f.tok, t);
    }
    doc
}

/// The distinct buckets of `hashes`, sorted.
fn buckets(hashes: &[u64], bits: u32) -> Vec<u64> {
    let mut terms: Vec<u64> = hashes.iter().map(|h| bucket(*h, bits)).collect();
    terms.sort_unstable();
    terms.dedup();
    terms
}

/// Writes the index's meta file into `tmp` durably, and syncs `tmp`.
fn write_meta(tmp: &Path, meta: &IndexMeta) -> Result<(), IndexError> {
    let meta_path = tmp.join(META_FILE);
    let text = serde_json::to_vec(meta).expect("bug: index meta encodes");
    let mut file = std::fs::File::create(&meta_path).map_err(io(&meta_path))?;
    std::io::Write::write_all(&mut file, &text).map_err(io(&meta_path))?;
    file.sync_all().map_err(io(&meta_path))?;
    drop(file);
    crate::storage::files::sync_dir(tmp).map_err(io(tmp))?;
    Ok(())
}
