//! Building a segment's search index: every block of every visible chunk is decoded once; its
//! correlation-field values (through `pipeline::fields`) and its line tokens are hashed into
//! bucket terms, one tantivy document per block, written to `<dir>.tmp` and renamed when whole.

use std::path::{Path, PathBuf};

use tantivy::{Index, SingleSegmentIndexWriter, TantivyDocument};

use super::{
    bucket, bucket_bits, for_each_token, hash, schema, IndexError, IndexMeta, SegmentIndex,
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
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| IndexError::Io { path, source }
    };
    let tv = |source| IndexError::Tantivy {
        path: tmp.clone(),
        source,
    };
    match std::fs::remove_dir_all(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&tmp)(e)),
        _ => {}
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let (schema, f) = schema();
    let index = Index::create_in_dir(&tmp, schema).map_err(tv)?;
    // One tantivy segment (one term dictionary), written in memory then to `tmp`.
    let mut writer: SingleSegmentIndexWriter<TantivyDocument> =
        SingleSegmentIndexWriter::new(index, 200_000_000).map_err(tv)?;
    let mut extractor = FieldExtractor::new(fields);
    let mut block = DecodedBlock::default();
    let mut md: Vec<(String, String)> = Vec::new();
    let (mut ids, mut toks): (Vec<u64>, Vec<u64>) = (Vec::new(), Vec::new());
    let mut unindexed = Vec::new();
    // (chunk offset, block, id hashes, token hashes) of every block, then the documents.
    let mut blocks_terms: Vec<(u64, u64, Vec<u64>, Vec<u64>)> = Vec::new();
    // Hidden chunks are never read again (a later `without` only hides more).
    for c in &seg.chunks {
        let Ok(blocks) = chunk_blocks(seg.chunk_bytes(c)) else {
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
            ids.clear();
            toks.clear();
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
            docs.push((c.offset, bi as u64, ids.clone(), toks.clone()));
        }
        if !ok {
            unindexed.push(c.offset);
            continue;
        }
        blocks_terms.extend(docs);
    }
    // IDs are looked up alone (the correlate API): twice the buckets, fewer blocks in vain.
    let id_bits = bucket_bits(2 * blocks_terms.iter().map(|b| b.2.len()).sum::<usize>());
    let tok_bits = bucket_bits(blocks_terms.iter().map(|b| b.3.len()).sum());
    for (chunk, block, ids, toks) in blocks_terms {
        let mut doc = TantivyDocument::new();
        doc.add_u64(f.chunk, chunk);
        doc.add_u64(f.block, block);
        let mut terms: Vec<u64> = ids.iter().map(|h| bucket(*h, id_bits)).collect();
        terms.sort_unstable();
        terms.dedup();
        for t in terms {
            doc.add_u64(f.id, t);
        }
        let mut terms: Vec<u64> = toks.iter().map(|h| bucket(*h, tok_bits)).collect();
        terms.sort_unstable();
        terms.dedup();
        for t in terms {
            doc.add_u64(f.tok, t);
        }
        writer.add_document(doc).map_err(tv)?;
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
    let meta_path = tmp.join(META_FILE);
    let text = serde_json::to_vec(&meta).expect("bug: index meta encodes");
    let mut file = std::fs::File::create(&meta_path).map_err(io(&meta_path))?;
    std::io::Write::write_all(&mut file, &text).map_err(io(&meta_path))?;
    file.sync_all().map_err(io(&meta_path))?;
    drop(file);
    crate::storage::files::sync_dir(&tmp).map_err(io(&tmp))?;
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(dir)(e)),
        _ => {}
    }
    std::fs::rename(&tmp, dir).map_err(io(dir))?;
    if let Some(parent) = dir.parent() {
        crate::storage::files::sync_dir(parent).map_err(io(parent))?;
    }
    SegmentIndex::open(dir, seg.chunks.len() + seg.hidden_chunks)
}
