//! Loading index files one by one, keeping each file's id and error, as restic's
//! `ForAllIndexes` does: check names the broken file, and `repair index` drops it.

use std::collections::HashMap;

use rayon::prelude::*;
use restash_backend::FileType;
use restash_format::{BlobType, IndexFile, IndexId, PackEntry, PackId};

use crate::index::MasterIndex;
use crate::{EngineError, Repository, Result};

/// How many index files are downloaded at once (a network backend's latency overlaps).
/// They are decoded one after the other on the calling thread, which inserts them into
/// the master index anyway: decoding in parallel was no faster and, with every rayon
/// thread's allocator holding its own freed JSON, a million-blob check peaked at 196 MiB
/// instead of 143 MiB.
fn batch() -> usize {
    4 * rayon::current_num_threads().max(1)
}

pub(crate) use crate::pack::HEADER_OVERHEAD;

/// Size of one header entry, as restic's `pack.CalculateEntrySize`.
pub(crate) fn entry_size(e: &PackEntry) -> u64 {
    crate::pack::header_entry_size(e.uncompressed_length.is_some())
}

/// Decodes the stored bytes of one index file: checks its name, opens and decodes it, and
/// refuses v2 features in a v1 repository, as restic's `DecodeIndex` does.
pub(crate) fn decode_index_file(
    repo: &Repository,
    id: &IndexId,
    raw: &[u8],
) -> Result<(IndexFile, bool)> {
    let data = repo.open_unpacked(FileType::Index, &id.0, raw)?;
    let (file, old) = IndexFile::from_json(&data)
        .map_err(EngineError::format(format!("index {}", id.short())))?;
    if repo.version() < 2
        && file
            .packs
            .iter()
            .any(|p| p.blobs.iter().any(|b| b.uncompressed_length.is_some()))
    {
        return Err(EngineError::Corrupt(
            "index uses feature not supported by repository version 1".into(),
        ));
    }
    Ok((file, old))
}

/// Calls `f` for every index file in id order with its decoded content or its error.
/// Files are decoded in parallel, `f` runs on the calling thread.
pub(crate) fn for_all_index_files(
    repo: &Repository,
    mut f: impl FnMut(IndexId, Result<(IndexFile, bool)>),
) -> Result<()> {
    let ids: Vec<IndexId> = repo
        .list_ids(FileType::Index)?
        .into_iter()
        .map(IndexId)
        .collect();
    for batch in ids.chunks(batch()) {
        let fetched: Vec<_> = batch
            .par_iter()
            .map(|id| (*id, repo.read_unpacked(FileType::Index, &id.0)))
            .collect();
        for (id, raw) in fetched {
            f(id, raw.and_then(|raw| decode_index_file(repo, &id, &raw)));
        }
    }
    Ok(())
}

/// What the index says about one pack.
#[derive(Debug, Default)]
pub(crate) struct PackInfo {
    /// Size computed from the index entries (header included), as restic's `pack.Size`.
    pub size: u64,
    /// Index files naming the pack.
    pub indexes: Vec<IndexId>,
    /// Some index file lists both tree and data blobs for it.
    pub mixed: bool,
    /// Its distinct entries, kept only when asked for (reading data, rebuilding the index).
    pub blobs: Vec<PackEntry>,
}

/// All index files merged like restic's master index, with per-pack sizes.
#[derive(Debug, Default)]
pub(crate) struct LoadedIndex {
    pub index: MasterIndex,
    pub packs: HashMap<PackId, PackInfo>,
    /// Index files that decoded, and those that did not (with the error).
    pub good: Vec<IndexId>,
    pub bad: Vec<(IndexId, EngineError)>,
    /// Index files in the old (array) format.
    pub old_format: Vec<IndexId>,
}

impl LoadedIndex {
    /// Loads every index file; with `keep_blobs` each pack keeps its entry list.
    pub(crate) fn load(repo: &Repository, keep_blobs: bool) -> Result<LoadedIndex> {
        let mut out = LoadedIndex::default();
        for_all_index_files(repo, |id, r| match r {
            Ok((file, old)) => {
                if old {
                    out.old_format.push(id);
                }
                out.add_file(id, &file);
                out.good.push(id);
            }
            Err(e) => out.bad.push((id, e)),
        })?;
        out.finish(keep_blobs);
        Ok(out)
    }

    /// Adds an index file; the packs' sizes and entries are known after [`Self::finish`].
    pub(crate) fn add_file(&mut self, id: IndexId, file: &IndexFile) {
        for p in &file.packs {
            if p.blobs.is_empty() {
                // restic attributes a pack to an index file only through its blobs.
                continue;
            }
            let has = |t| p.blobs.iter().any(|b| b.blob_type == t);
            let info = self.packs.entry(p.id).or_default();
            if !info.indexes.contains(&id) {
                info.indexes.push(id);
            }
            info.mixed |= has(BlobType::Data) && has(BlobType::Tree);
        }
        self.index.add_file(file, false);
    }

    /// Merges the entries like restic's master index, whose merge drops identical copies
    /// (so they count once towards a pack's size), and computes each pack's size; with
    /// `keep_blobs` each pack keeps its distinct entries.
    pub(crate) fn finish(&mut self, keep_blobs: bool) {
        self.index.finish();
        for e in self.index.entries() {
            let info = self
                .packs
                .get_mut(&self.index.pack_id(e.pack))
                .expect("every indexed pack has its info");
            if info.size == 0 {
                info.size = HEADER_OVERHEAD;
            }
            info.size += e.length as u64 + e.header_size();
            if keep_blobs {
                info.blobs.push(e.pack_entry());
            }
        }
    }
}
