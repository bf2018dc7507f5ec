//! `repair index` / `rebuild-index`: a new index from the old one and the pack headers.
//! Packs the index describes with the right size keep their entries; packs it does not
//! know (or knows with another size) have their headers read; packs it names that are gone
//! are dropped. The new index files are written before the old ones are deleted, so an
//! interruption leaves a repository with more index files, never fewer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;
use restash_backend::{FileType, Handle};
use restash_format::{IndexFile, IndexId, IndexPack, PackEntry, PackId};

use crate::check::{for_all_index_files, worker_pool, LoadedIndex};
use crate::events::{Control, Event, Phase};
use crate::{EngineError, Repository, Result};

/// restic 0.14 starts a new index file after this many blobs (uncompressed repositories)…
const INDEX_MAX_BLOBS_V1: usize = 50_000;
/// …and after this many in compressed (v2) ones.
const INDEX_MAX_BLOBS_V2: usize = 150_000;

/// `repair index` flags.
#[derive(Debug, Clone, Default)]
pub struct RepairIndexOptions {
    /// `--read-all-packs`: ignore the old index and read every pack header.
    pub read_all_packs: bool,
}

/// What `repair index` did.
#[derive(Debug, Clone, Default)]
pub struct RepairIndexStats {
    /// Packs whose headers were read.
    pub packs_read: usize,
    /// Packs whose headers could not be read (left out of the index).
    pub invalid_packs: Vec<PackId>,
    /// Packs the old index named but the repository lacks.
    pub removed_packs: Vec<PackId>,
    /// Index files written.
    pub written: Vec<IndexId>,
    /// Old index files deleted.
    pub deleted: Vec<IndexId>,
}

/// Rebuilds the index of `repo` (which must be locked exclusively by the caller).
pub fn repair_index(
    repo: &Repository,
    opts: &RepairIndexOptions,
    rep: &Control,
) -> Result<RepairIndexStats> {
    let mut stats = RepairIndexStats::default();
    let mut obsolete: Vec<IndexId> = Vec::new();
    let mut loaded = LoadedIndex::default();
    if opts.read_all_packs {
        obsolete = repo
            .list_ids(FileType::Index)?
            .into_iter()
            .map(IndexId)
            .collect();
    } else {
        rep.say(1, "loading indexes...");
        for_all_index_files(repo, |id, r| {
            match r {
                Ok((file, _)) => loaded.add_file(id, &file),
                Err(e) => rep.warn(&format!("removing invalid index {id}: {e}")),
            }
            obsolete.push(id);
        })?;
        loaded.finish(true);
    }
    let mut kept: HashMap<PackId, Vec<PackEntry>> = loaded
        .packs
        .into_iter()
        .map(|(id, p)| (id, p.blobs))
        .collect();
    let sizes: HashMap<PackId, u64> = kept
        .iter()
        .map(|(id, blobs)| {
            let size = crate::check::HEADER_OVERHEAD
                + blobs
                    .iter()
                    .map(|b| b.length as u64 + crate::check::entry_size(b))
                    .sum::<u64>();
            (*id, size)
        })
        .collect();

    rep.say(1, "getting pack files to read...");
    let mut listed: Vec<(PackId, u64)> = repo
        .backend()
        .list(FileType::Pack)
        .map_err(EngineError::backend("list packs"))?
        .into_iter()
        .map(|f| (PackId(f.id), f.size))
        .collect();
    listed.sort();
    let mut to_read = Vec::new();
    let mut seen = HashSet::new();
    for (id, size) in listed {
        seen.insert(id);
        match sizes.get(&id) {
            Some(s) if *s == size => continue,
            Some(s) => rep.warn(&format!(
                "reindexing pack file {id} with unexpected size {size} instead of {s}"
            )),
            None => rep.warn(&format!("adding pack file to index {id}")),
        }
        kept.remove(&id);
        to_read.push((id, size));
    }
    let mut gone: Vec<PackId> = kept
        .keys()
        .filter(|id| !seen.contains(id))
        .copied()
        .collect();
    gone.sort();
    for id in &gone {
        kept.remove(id);
        rep.warn(&format!("removing not found pack file {id}"));
    }
    stats.removed_packs = gone;

    if !to_read.is_empty() {
        rep.say(1, "reading pack files");
        let read = read_headers(repo, &to_read, rep);
        stats.packs_read = to_read.len();
        for (id, r) in read {
            match r {
                Ok(entries) => {
                    kept.insert(id, entries);
                }
                // A pack that could not be read is not a damaged pack: leaving it out of
                // the new index would let prune delete its blobs.
                Err(e @ EngineError::Backend { .. }) => return Err(e),
                Err(e) => {
                    rep.say(1, &format!("skipped incomplete pack file: {id}: {e}"));
                    stats.invalid_packs.push(id);
                }
            }
        }
    }

    rep.say(1, "rebuilding index");
    stats.written = write_index_files(repo, kept, &obsolete)?;
    rep.say(1, "deleting obsolete index files");
    for id in obsolete {
        if stats.written.contains(&id) {
            continue;
        }
        repo.backend()
            .remove(&Handle::new(FileType::Index, id))
            .map_err(EngineError::backend(format!("remove index {}", id.short())))?;
        stats.deleted.push(id);
    }
    rep.say(1, "done");
    Ok(stats)
}

/// Reads the headers of `packs` in parallel, each with its own outcome.
fn read_headers(
    repo: &Repository,
    packs: &[(PackId, u64)],
    rep: &Control,
) -> Vec<(PackId, crate::Result<Vec<PackEntry>>)> {
    let done = AtomicU64::new(0);
    let total = packs.len() as u64;
    let out = Mutex::new(Vec::with_capacity(packs.len()));
    rep.progress(Phase::Repair, "packs", 0, total);
    let run = || {
        packs.par_iter().for_each(|(id, size)| {
            let r = repo.read_pack_header(id, *size);
            out.lock().expect("headers").push((*id, r));
            rep.progress(
                Phase::Repair,
                "packs",
                done.fetch_add(1, Ordering::Relaxed) + 1,
                total,
            );
        })
    };
    match worker_pool() {
        Some(pool) => pool.install(run),
        None => run(),
    }
    rep.emit(Event::PhaseFinished(Phase::Repair));
    let mut v = out.into_inner().expect("headers");
    v.sort_by_key(|a| a.0);
    v
}

/// Writes `packs` as index files of restic's size; the first one lists `supersedes`.
fn write_index_files(
    repo: &Repository,
    packs: HashMap<PackId, Vec<PackEntry>>,
    supersedes: &[IndexId],
) -> Result<Vec<IndexId>> {
    let max = if repo.version() >= 2 {
        INDEX_MAX_BLOBS_V2
    } else {
        INDEX_MAX_BLOBS_V1
    };
    let mut ids: Vec<PackId> = packs.keys().copied().collect();
    ids.sort();
    let mut packs = packs;
    let mut written = Vec::new();
    let mut file = IndexFile {
        supersedes: supersedes.to_vec(),
        packs: Vec::new(),
    };
    let mut count = 0;
    let mut save = |file: &mut IndexFile| -> Result<()> {
        let id = repo.save_unpacked(FileType::Index, &file.to_json())?;
        written.push(IndexId(id));
        *file = IndexFile::default();
        Ok(())
    };
    for id in ids {
        let mut blobs = packs.remove(&id).unwrap_or_default();
        if blobs.is_empty() {
            continue;
        }
        blobs.sort_by_key(|b| b.offset);
        count += blobs.len();
        file.packs.push(IndexPack {
            id,
            blobs: blobs.into_iter().map(Into::into).collect(),
        });
        if count >= max {
            save(&mut file)?;
            count = 0;
        }
    }
    if !file.packs.is_empty() {
        save(&mut file)?;
    }
    Ok(written)
}
