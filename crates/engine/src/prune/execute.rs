//! Carries out a [`Plan`] in restic's crash-safe order. At every point in between, each
//! blob a snapshot needs is in a pack that an index file names:
//! 1. delete packs no index names (nothing refers to them);
//! 2. copy the needed blobs of repacked packs into new packs, index the new packs;
//! 3. write new index files covering every pack that stays (old and new);
//! 4. delete the old index files — the new ones already cover all kept packs;
//! 5. delete the repacked and unused packs, which no index names any more.
//!
//! A crash after 2 or 3 leaves duplicate entries (restic accepts them); a crash in 5 leaves
//! unindexed packs, which `restic check` only mentions and the next prune deletes first.
//!
//! Steps 2 and 3 delete nothing ([`stage`]); the rest ([`commit`]) deletes. `prune` stages
//! beside running backups and commits under the exclusive lock (see `beside.rs`); step 1
//! comes in the commit, once no backup can be writing a pack it has not indexed yet.

use std::collections::HashSet;

use rayon::prelude::*;
use restash_backend::{FileType, Handle};
use restash_format::{Id, IndexBlob, IndexFile, IndexPack, PackId};

use super::blobs::BlobIndex;
use super::plan::{blobs_to_repack, Action, Plan};
use super::{crash_point, say, Msg, PruneOptions, PruneStats};
use crate::archiver::saver::Saver;
use crate::events::Control;
use crate::{EngineError, Repository, Result};

/// restic 0.14 starts a new index file after this many blobs (v2; 50 000 in v1).
const INDEX_BLOBS_V2: usize = 150_000;
const INDEX_BLOBS_V1: usize = 50_000;

/// What the first half of prune leaves for the second: nothing deleted yet.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    /// Index files the new index supersedes: those read at the start, and those written
    /// since (by repacking, or by backups running beside a staged prune), whose packs
    /// the new index includes.
    pub obsolete: Vec<Id>,
    /// The new index files.
    pub written: Vec<Id>,
    /// Packs the new index names beyond the kept ones: repacked, or a backup's.
    pub new_packs: Vec<PackId>,
    /// Of the superseded index files, those another process wrote while prune staged.
    pub from_others: Vec<Id>,
}

/// What the commit must not delete although the plan said so.
#[derive(Debug, Default)]
pub(crate) struct Spared {
    /// Pack numbers of the plan that snapshots saved beside the staging came to need.
    pub rescued: HashSet<u32>,
    /// Packs prune found unindexed that an index file written since names.
    pub indexed_since: HashSet<PackId>,
}

/// Both halves at once, under the exclusive lock the caller holds.
pub(crate) fn execute(
    repo: &Repository,
    idx: &BlobIndex,
    plan: &Plan,
    opts: &PruneOptions,
    stats: &mut PruneStats,
    out: &Control,
) -> Result<()> {
    let staged = stage(repo, idx, plan, opts, stats, out)?;
    let spared = Spared {
        rescued: HashSet::new(),
        indexed_since: staged.new_packs.iter().copied().collect(),
    };
    commit(repo, idx, plan, &staged, &spared, stats, out)
}

/// The first half, which deletes nothing and so may run beside backups: copy the needed
/// blobs of repacked packs into new packs (indexed at once), write a new index covering
/// every pack that stays, and point the parent hints at the new packs.
pub(crate) fn stage(
    repo: &Repository,
    idx: &BlobIndex,
    plan: &Plan,
    opts: &PruneOptions,
    stats: &mut PruneStats,
    out: &Control,
) -> Result<Staged> {
    let mut staged = Staged::default();
    let mut new_files: Vec<Id> = Vec::new();
    let mut new_packs: Vec<IndexPack> = Vec::new();
    if plan.actions.contains(&Action::Repack) {
        say(out, Msg::Info("repacking packs".into()));
        let own: HashSet<Id> = repack(repo, idx, plan, opts, out)?.into_iter().collect();
        // The saver indexed the new packs as it went: pick those index files up so the
        // new full index covers the new packs and the files can be deleted with the rest.
        let known: HashSet<Id> = idx.files.iter().copied().collect();
        for id in repo.list_ids(FileType::Index)? {
            if known.contains(&id) {
                continue;
            }
            let data = repo.load_unpacked(FileType::Index, &id)?;
            let (file, _) = IndexFile::from_json(&data)
                .map_err(EngineError::format(format!("index {}", id.short())))?;
            new_packs.extend(file.packs);
            new_files.push(id);
            // Written beside the staging by another process (a backup): its snapshot may
            // need what the commit looks up there.
            if !own.contains(&id) {
                staged.from_others.push(id);
            }
        }
        stats.packs_written = new_packs.len() as u64;
        crash_point("repack");
    }
    staged.new_packs = new_packs.iter().map(|p| p.id).collect();

    let dropped = plan.actions.iter().any(|a| *a != Action::Keep);
    out.cancel.check()?;
    if dropped {
        // The new packs are indexed and the old ones still there: every hint can point at
        // where its blobs are now.
        relocate_hints(repo, idx, plan, &new_packs, out);
        say(out, Msg::Info("rebuilding index".into()));
        staged.obsolete = idx.files.clone();
        staged.obsolete.extend(new_files);
        staged.written = write_index(repo, idx, plan, &staged.obsolete, new_packs, stats, out)?;
        crash_point("index");
    }
    Ok(staged)
}

/// The second half, under the exclusive lock: delete the packs no index named when prune
/// listed them, the superseded index files, then the repacked and unused packs; all but
/// the `spared`.
pub(crate) fn commit(
    repo: &Repository,
    idx: &BlobIndex,
    plan: &Plan,
    staged: &Staged,
    spared: &Spared,
    stats: &mut PruneStats,
    out: &Control,
) -> Result<()> {
    let (rescued, indexed_since) = (&spared.rescued, &spared.indexed_since);
    let unref: Vec<Id> = plan
        .remove_first
        .iter()
        .filter(|p| !indexed_since.contains(p))
        .map(|p| p.0)
        .collect();
    if !unref.is_empty() {
        say(out, Msg::Info("deleting unreferenced packs".into()));
        delete_files(repo, FileType::Pack, &unref, false, stats, out)?;
        crash_point("unref");
    }
    if !rescued.is_empty() {
        let mut packs: Vec<u32> = rescued.iter().copied().collect();
        packs.sort_unstable();
        let file = IndexFile {
            supersedes: Vec::new(),
            packs: packs
                .iter()
                .map(|n| IndexPack {
                    id: idx.pack_id(*n),
                    blobs: idx
                        .entries()
                        .iter()
                        .filter(|e| e.pack == *n)
                        .map(|e| IndexBlob::from(e.pack_entry()))
                        .collect(),
                })
                .collect(),
        };
        repo.save_unpacked(FileType::Index, &file.to_json())?;
        stats.index_files_written += 1;
        crash_point("rescue-index");
    }
    if !staged.obsolete.is_empty() {
        say(out, Msg::Info("deleting obsolete index files".into()));
        delete_files(repo, FileType::Index, &staged.obsolete, true, stats, out)?;
        crash_point("index-delete");
    }

    let doomed: Vec<Id> = plan
        .actions
        .iter()
        .enumerate()
        .filter(|(n, a)| {
            matches!(a, Action::Remove | Action::Repack) && !rescued.contains(&(*n as u32))
        })
        .map(|(n, _)| idx.pack_id(n as u32).0)
        .collect();
    out.cancel.check()?;
    if !doomed.is_empty() {
        say(
            out,
            Msg::Info(format!("removing {} old packs", doomed.len())),
        );
        delete_files(repo, FileType::Pack, &doomed, false, stats, out)?;
    }
    Ok(())
}

/// Rewrites the parent hints whose blobs were repacked (see [`crate::hints`]).
fn relocate_hints(
    repo: &Repository,
    idx: &BlobIndex,
    plan: &Plan,
    new_packs: &[IndexPack],
    out: &Control,
) {
    // A pack prune does not know (written since it read the index) stays too.
    let stays = |pack: &PackId| {
        idx.pack_number(pack)
            .is_none_or(|n| plan.actions[n as usize] == Action::Keep)
    };
    let find = |wanted: &crate::hints::Reached| {
        let mut places = crate::hints::NewPlaces::new();
        for p in new_packs {
            for b in &p.blobs {
                if wanted.contains(&(b.id, b.blob_type)) {
                    places.insert((b.id, b.blob_type), (p.id, *b));
                }
            }
        }
        // Duplicates of a repacked blob may be kept elsewhere.
        for &(id, t) in wanted {
            if places.contains_key(&(id, t)) {
                continue;
            }
            if let Some(e) = idx
                .copies(&id, t)
                .iter()
                .find(|e| plan.actions[e.pack as usize] == Action::Keep)
            {
                places.insert(
                    (id, t),
                    (idx.pack_id(e.pack), IndexBlob::from(e.pack_entry())),
                );
            }
        }
        places
    };
    let (done, warnings) = crate::hints::relocate_all(repo, &stays, &find);
    for w in warnings {
        say(out, Msg::Warn(w));
    }
    if done.rewritten + done.removed > 0 {
        say(
            out,
            Msg::Detail(format!(
                "parent hints: {} rewritten for moved blobs, {} removed",
                done.rewritten, done.removed
            )),
        );
    }
}

/// Copies the needed blobs of the repacked packs into new packs. Blobs are verified on the
/// way; a damaged copy is replaced by another copy when one exists, else prune stops
/// before anything is deleted.
fn repack(
    repo: &Repository,
    idx: &BlobIndex,
    plan: &Plan,
    opts: &PruneOptions,
    out: &Control,
) -> Result<Vec<Id>> {
    let wanted = blobs_to_repack(idx, plan)?;
    let mut packs: Vec<u32> = plan
        .actions
        .iter()
        .enumerate()
        .filter(|(_, a)| **a == Action::Repack)
        .map(|(n, _)| n as u32)
        .collect();
    packs.sort_by_key(|n| idx.pack_id(*n));
    let total = packs.len() as u64;
    let saver = Saver::new(repo, opts.compression, opts.pack_size, false);
    let chunk = rayon::current_num_threads().max(1) * 2;
    let mut done = 0u64;
    for group in packs.chunks(chunk) {
        // Packs written so far are indexed by the flush below; nothing is deleted yet.
        if let Err(e) = out.cancel.check() {
            saver.flush()?;
            return Err(e);
        }
        group
            .par_iter()
            .map(|n| match wanted.get(n) {
                Some(entries) => repack_one(repo, idx, &saver, *n, entries),
                None => Ok(()),
            })
            .collect::<Result<Vec<()>>>()?;
        done += group.len() as u64;
        say(out, Msg::Progress(done, total, "packs repacked"));
        crash_point("repack-chunk");
    }
    saver.flush()?;
    Ok(saver.index_files())
}

fn repack_one(
    repo: &Repository,
    idx: &BlobIndex,
    saver: &Saver<'_>,
    pack: u32,
    entries: &[usize],
) -> Result<()> {
    let pid = idx.pack_id(pack);
    let h = Handle::new(FileType::Pack, pid);
    let first = &idx.entries()[entries[0]];
    let last = &idx.entries()[*entries.last().expect("not empty")];
    let start = first.offset as u64;
    let end = last.offset as u64 + last.length as u64;
    // One read from the first to the last needed blob, as restic's StreamPack does.
    let raw = repo
        .backend()
        .read_range(&h, start, end - start)
        .map_err(EngineError::backend(format!("repack: read {h}")))?;
    for &i in entries {
        let e = &idx.entries()[i];
        let from = (e.offset as u64 - start) as usize;
        let slice = raw.get(from..from + e.length as usize);
        let decoded = match slice {
            Some(s) => idx.decode(repo, e, s),
            None => Err(EngineError::Corrupt(format!(
                "pack {} is shorter than its index says",
                pid.short()
            ))),
        };
        let plain = match decoded {
            Ok(p) => p,
            Err(err) => {
                let others: Vec<usize> =
                    idx.range(e.blob_type, &e.id).filter(|j| *j != i).collect();
                match others
                    .iter()
                    .find_map(|j| idx.read(repo, &idx.entries()[*j]).ok())
                {
                    Some(p) => p,
                    None => {
                        return Err(EngineError::Corrupt(format!(
                            "repack: {} blob {} in pack {}: {err}",
                            e.blob_type.as_str(),
                            e.id,
                            pid
                        )))
                    }
                }
            }
        };
        saver.save(e.blob_type, e.id, &plain)?;
    }
    Ok(())
}

/// restic's full index rewrite: every pack that stays, in new index files.
fn write_index(
    repo: &Repository,
    idx: &BlobIndex,
    plan: &Plan,
    obsolete: &[Id],
    new_packs: Vec<IndexPack>,
    stats: &mut PruneStats,
    out: &Control,
) -> Result<Vec<Id>> {
    let max = if repo.version() >= 2 {
        INDEX_BLOBS_V2
    } else {
        INDEX_BLOBS_V1
    };
    let mut order: Vec<u32> = (0..idx.entries().len() as u32)
        .filter(|&i| plan.actions[idx.entries()[i as usize].pack as usize] == Action::Keep)
        .collect();
    order.par_sort_unstable_by_key(|&i| {
        let e = &idx.entries()[i as usize];
        (e.pack, e.offset)
    });
    let total = plan.count(Action::Keep) as u64 + new_packs.len() as u64;
    let mut file = IndexFile {
        supersedes: obsolete
            .iter()
            .map(|id| restash_format::IndexId(*id))
            .collect(),
        packs: Vec::new(),
    };
    let mut blobs_in_file = 0usize;
    let written = std::cell::RefCell::new(Vec::new());
    let save = |file: &mut IndexFile, force: bool, stats: &mut PruneStats| -> Result<()> {
        if file.packs.is_empty() && !force {
            return Ok(());
        }
        written
            .borrow_mut()
            .push(repo.save_unpacked(FileType::Index, &file.to_json())?);
        stats.index_files_written += 1;
        crash_point("index-write");
        *file = IndexFile::default();
        Ok(())
    };
    let push = |file: &mut IndexFile,
                pack: IndexPack,
                blobs_in_file: &mut usize,
                stats: &mut PruneStats|
     -> Result<()> {
        *blobs_in_file += pack.blobs.len();
        file.packs.push(pack);
        if *blobs_in_file >= max {
            save(file, false, stats)?;
            *blobs_in_file = 0;
        }
        Ok(())
    };
    let mut i = 0;
    while i < order.len() {
        let pack = idx.entries()[order[i] as usize].pack;
        let mut blobs = Vec::new();
        while i < order.len() && idx.entries()[order[i] as usize].pack == pack {
            let e = &idx.entries()[order[i] as usize];
            blobs.push(IndexBlob {
                id: e.id,
                blob_type: e.blob_type,
                offset: e.offset,
                length: e.length,
                uncompressed_length: (e.uncompressed_length != 0).then_some(e.uncompressed_length),
            });
            i += 1;
        }
        let p = IndexPack {
            id: idx.pack_id(pack),
            blobs,
        };
        push(&mut file, p, &mut blobs_in_file, stats)?;
    }
    for p in new_packs {
        push(&mut file, p, &mut blobs_in_file, stats)?;
    }
    // The last file also goes out when it is empty but names superseded files: an empty
    // index is valid and keeps the record.
    let force = !file.supersedes.is_empty() && stats.index_files_written == 0;
    save(&mut file, force, stats)?;
    say(out, Msg::Progress(total, total, "packs processed"));
    Ok(written.into_inner())
}

/// Deletes files; for index files a failure stops prune (restic's DeleteFilesChecked),
/// for packs it is a warning (a leftover pack is harmless).
pub(crate) fn delete_files(
    repo: &Repository,
    t: FileType,
    ids: &[Id],
    checked: bool,
    stats: &mut PruneStats,
    out: &Control,
) -> Result<()> {
    let total = ids.len() as u64;
    let results: Vec<(Id, Result<()>)> = crate::ahead::map_io(ids, |id| {
        let h = Handle::new(t, *id);
        let r = match repo.backend().remove(&h) {
            Ok(()) => Ok(()),
            Err(e) if Repository::is_not_found(&e) => Ok(()),
            Err(e) => Err(EngineError::backend(format!("remove {h}"))(e)),
        };
        if r.is_ok() {
            crash_point(match t {
                FileType::Pack => "pack-delete",
                _ => "index-delete-one",
            });
        }
        (*id, r)
    });
    for (id, r) in results {
        match r {
            Ok(()) => stats.files_deleted += 1,
            Err(e) if checked => return Err(e),
            Err(e) => say(
                out,
                Msg::Warn(format!("unable to remove {id} from the repository: {e}")),
            ),
        }
    }
    say(out, Msg::Progress(total, total, "files deleted"));
    Ok(())
}
