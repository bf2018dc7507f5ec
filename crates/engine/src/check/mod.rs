//! `check`: restic 0.14's checker. Loads every index file (naming the broken ones), compares
//! the packs the index names with the packs in the repository, loads every snapshot and
//! every tree reachable from one, and with `--read-data` reads packs in full and verifies
//! every blob and header.
//!
//! Messages are restic's, so scripts and people reading them need nothing new. They go to
//! the run's [`Control`] as events: the CLI decides where each one is printed.

mod index_files;
mod read_data;
mod structure;
mod subset;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use restash_format::{BlobId, BlobType, KeyId, PackId, SnapshotId};

pub(crate) use index_files::{
    decode_index_file, entry_size, for_all_index_files, LoadedIndex, HEADER_OVERHEAD,
};
pub(crate) use structure::load_tree;
pub use structure::TreeError;
pub use subset::{ReadDataSubset, TOTAL_BUCKETS_MAX};

use crate::events::Control;
use crate::{Repository, Result};

/// A thread pool for work that waits on the backend as much as on the CPU, sized like
/// restic's (connections plus cores). `None` when threads cannot be started; callers then
/// use the global pool.
pub(crate) fn worker_pool() -> Option<rayon::ThreadPool> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    rayon::ThreadPoolBuilder::new()
        .num_threads(cores + 5)
        .thread_name(|i| format!("check-{i}"))
        .build()
        .ok()
}

/// What `check` does beyond the structure check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Packs to read in full.
    pub read_data: Option<ReadDataSubset>,
    /// Report blobs no snapshot uses (as restic up to 0.13 did).
    pub check_unused: bool,
}

/// How `check` ended when it could run to the end.
#[derive(Debug, Clone, Default)]
pub struct CheckOutcome {
    /// Something is wrong: restic exits with "repository contains errors".
    pub errors_found: bool,
    /// Packs the index names but the repository lacks, or has with another size.
    pub broken_packs: Vec<PackId>,
    /// Packs no index names (not an error).
    pub orphaned_packs: Vec<PackId>,
    /// Packs read with `--read-data`.
    pub packs_read: Vec<PackId>,
    /// Key files that do not decode or whose name is not the hash of their bytes.
    pub damaged_keys: Vec<KeyId>,
    /// Temporary files of interrupted writes (not an error).
    pub leftovers: Vec<restash_backend::Leftover>,
}

fn sorted_ids<T: Ord + Copy>(set: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = set.into_iter().collect();
    v.sort();
    v
}

/// Runs restic's check on `repo` (whose index it loads and keeps). `Err` is returned for
/// what stops restic early (index files that do not load: "LoadIndex returned errors").
pub fn check(repo: &mut Repository, opts: &CheckOptions, rep: &Control) -> Result<CheckOutcome> {
    let mut out = CheckOutcome::default();
    let snapshot_ids = repo.list_ids(restash_backend::FileType::Snapshot)?;
    // restic does not look at key files here, but a damaged one locks out whoever's
    // password it holds: better learnt now than at restore time.
    for id in repo.list_ids(restash_backend::FileType::Key)? {
        if let Err(e) = crate::keys::verify_key_file(repo.backend().as_ref(), KeyId(id)) {
            rep.error(&format!("error: {e}"));
            out.errors_found = true;
            out.damaged_keys.push(KeyId(id));
        }
    }
    rep.say(1, "load indexes");
    let loaded = LoadedIndex::load(repo, opts.read_data.is_some())?;
    let mut suggest_rebuild = false;
    let mut mixed = false;
    for id in &loaded.old_format {
        rep.say(0, &format!("index {id} has old format"));
        suggest_rebuild = true;
    }
    for id in sorted_ids(loaded.packs.keys().copied()) {
        let info = &loaded.packs[&id];
        if info.indexes.len() > 1 {
            let names: Vec<String> = sorted_ids(info.indexes.iter().copied())
                .iter()
                .map(|i| i.short())
                .collect();
            rep.say(
                0,
                &format!(
                    "pack {id} contained in several indexes: {{{}}}",
                    names.join(" ")
                ),
            );
            suggest_rebuild = true;
        }
        if info.mixed {
            rep.say(
                0,
                &format!("pack {} contains a mix of tree and data blobs", id.short()),
            );
            mixed = true;
        }
    }
    if suggest_rebuild {
        rep.say(
            0,
            "This is non-critical, you can run `restic rebuild-index' to correct this",
        );
    }
    if mixed {
        rep.say(0, "Mixed packs with tree and data blobs are non-critical, you can run `restic prune` to correct this.");
    }
    if !loaded.bad.is_empty() {
        for (id, e) in &loaded.bad {
            rep.error(&format!("error: error loading index {id}: {e}"));
        }
        return Err(crate::EngineError::Corrupt(
            "LoadIndex returned errors".into(),
        ));
    }
    let LoadedIndex {
        index, mut packs, ..
    } = loaded;
    repo.set_index(index);

    rep.say(1, "check all packs");
    let listed = repo
        .backend()
        .list(restash_backend::FileType::Pack)
        .map_err(crate::EngineError::backend("list packs"))?;
    let mut on_disk: HashMap<PackId, u64> =
        listed.into_iter().map(|f| (PackId(f.id), f.size)).collect();
    for id in sorted_ids(packs.keys().copied()) {
        let size = packs[&id].size;
        match on_disk.remove(&id) {
            None => {
                rep.error(&format!("pack {id}: does not exist"));
                out.broken_packs.push(id);
            }
            Some(s) if s != size => {
                rep.error(&format!(
                    "pack {id}: unexpected file size: got {s}, expected {size}"
                ));
                out.broken_packs.push(id);
            }
            Some(_) => {}
        }
    }
    out.errors_found |= !out.broken_packs.is_empty();
    out.orphaned_packs = sorted_ids(on_disk.into_keys());
    for id in &out.orphaned_packs {
        rep.say(1, &format!("pack {id}: not referenced in any index"));
    }
    if !out.orphaned_packs.is_empty() {
        rep.say(1, &format!("{} additional files were found in the repo, which likely contain duplicate data.\nThis is non-critical, you can run `restic prune` to correct this.", out.orphaned_packs.len()));
    }

    out.leftovers = crate::leftovers::list(repo)?;
    if !out.leftovers.is_empty() {
        let now = std::time::SystemTime::now();
        let lines: Vec<String> = out
            .leftovers
            .iter()
            .map(|l| format!("  {}", crate::leftovers::describe(l, now)))
            .collect();
        rep.say(
            0,
            &format!(
                "{} temporary files were left by interrupted writes:\n{}\n\
                 This is non-critical, `prune` removes those older than {} minutes.",
                out.leftovers.len(),
                lines.join("\n"),
                crate::STALE_AFTER.as_secs() / 60
            ),
        );
    }

    rep.say(1, "check snapshots, trees and blobs");
    let mut roots = Vec::new();
    for id in &snapshot_ids {
        match repo.load_snapshot(&SnapshotId(*id)) {
            Ok(s) => roots.push(s.tree),
            Err(e) => {
                rep.error(&format!("error: {e}"));
                out.errors_found = true;
            }
        }
    }
    let data_refs = opts.check_unused.then(|| Mutex::new(HashSet::new()));
    let (tree_errors, trees) = structure::check_trees(repo, &roots, data_refs.as_ref(), rep);
    out.errors_found |= tree_errors;

    if let Some(refs) = data_refs {
        let refs = refs.into_inner().expect("blob references");
        let mut unused: Vec<(BlobType, BlobId)> = repo
            .index()
            .iter()
            .filter(|(id, t, _)| match t {
                BlobType::Data => !refs.contains(id),
                BlobType::Tree => !trees.contains(id),
            })
            .map(|(id, t, _)| (t, *id))
            .collect();
        unused.sort();
        for (t, id) in &unused {
            rep.say(1, &format!("unused blob <{}/{}>", t.as_str(), id.short()));
        }
        out.errors_found |= !unused.is_empty();
    }
    drop(trees);

    if let Some(subset) = opts.read_data {
        let sizes: HashMap<PackId, u64> = packs.iter().map(|(id, p)| (*id, p.size)).collect();
        let selected = subset.select(&sizes)?;
        rep.say(1, &subset.describe(selected.len(), sizes.len()));
        let jobs: Vec<_> = selected
            .iter()
            .filter_map(|id| packs.remove(id).map(|p| (*id, p.size, p.blobs)))
            .collect();
        out.errors_found |= read_data::read_packs(repo, jobs, rep);
        out.packs_read = selected;
    }
    if !out.errors_found {
        rep.say(1, "no errors were found");
    }
    Ok(out)
}
