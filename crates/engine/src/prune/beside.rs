//! `prune` beside running backups. restic holds its exclusive lock for the whole prune;
//! in a repository that a fleet of volumes shares, that is the whole index and every
//! snapshot read, and every repacked pack copied, while each backup that meets it waits.
//! Here only deleting needs the exclusive lock:
//!
//! 1. **Beside backups (shared lock):** load the index and the snapshots, mark what is
//!    used, plan, repack, write the new index and move the parent hints ([`stage`]).
//!    Nothing is deleted, so a backup running meanwhile finds every blob it deduplicates
//!    against where an index says it is.
//! 2. **Alone (the shared lock upgraded to the exclusive one, never letting another lock
//!    in between):** what backups did meanwhile is looked at, then deleted what may go
//!    ([`commit`]). A backup beside the staging may have written a snapshot that reuses a
//!    blob prune found unused, so the trees of the snapshots that are new since the
//!    staging are walked (only where prune did not already find them used). A pack
//!    holding such a blob and nowhere else is kept and indexed again. The packs that
//!    prune found unindexed are deleted only if no index file written since names them
//!    (a backup's pack and its index are written apart).
//!
//! restic's rules stay: a blob a snapshot reaches is always in a pack an index names, and
//! after a crash at any point the repository checks clean (at worst with duplicates and
//! unindexed packs, which the next prune removes).

use std::collections::HashSet;
use std::time::Instant;

use restash_backend::FileType;
use restash_format::{BlobId, BlobType, Id, PackId, SnapshotId, Tree};

use super::blobs::BlobIndex;
use super::execute::{commit, delete_files, stage, Spared, Staged};
use super::plan::{Action, Plan};
use super::{crash_point, prepare, remove_leftovers, say, Msg, PruneOptions, PruneStats};
use crate::events::Control;
use crate::{EngineError, LockPolicy, RepoLock, Repository, Result};

/// Prunes with the exclusive lock held only to delete (see the module docs). Returns the
/// statistics and how long the exclusive lock was held.
pub(crate) fn prune_beside(
    repo: &mut Repository,
    opts: &PruneOptions,
    policy: &LockPolicy,
    out: &Control,
) -> Result<(PruneStats, std::time::Duration)> {
    let shared = RepoLock::take(repo, false, policy, out)?.expect("a lock is taken");
    let mut stats = PruneStats::default();
    let Some(p) = prepare(repo, opts, &mut stats, out)? else {
        shared.release();
        return Ok((stats, std::time::Duration::ZERO));
    };
    out.cancel.check()?;
    let staged = stage(repo, &p.idx, &p.plan, opts, &mut stats, out)?;
    crash_point("staged");
    say(
        out,
        Msg::Info("waiting for backups to finish, to delete alone".into()),
    );
    let alone = match shared.exclusive_beside(repo, policy, out) {
        Ok(alone) => {
            shared.release();
            alone
        }
        Err(e) => {
            // Another command kept its lock: the new index must not outlive this lock, or a
            // prune that deletes what it names would leave it naming missing packs.
            let undone = delete_files(
                repo,
                FileType::Index,
                &staged.written,
                true,
                &mut stats,
                out,
            );
            shared.release();
            return Err(match undone {
                Ok(()) => e,
                Err(u) => EngineError::Corrupt(format!(
                    "{e}; and the new index files could not be removed: {u}; run prune again"
                )),
            });
        }
    };
    let start = Instant::now();
    let r = commit_alone(
        repo,
        &p.idx,
        &p.plan,
        &p.snapshots,
        &staged,
        &mut stats,
        out,
    )
    .and_then(|()| remove_leftovers(repo, false, &mut stats, out));
    let held = start.elapsed();
    alone.release();
    r?;
    say(
        out,
        Msg::Detail(format!(
            "the exclusive lock was held for {:.3} s",
            held.as_secs_f64()
        )),
    );
    say(out, Msg::Info("done".into()));
    Ok((stats, held))
}

/// The second half, alone: what backups wrote beside the staging, the packs their new
/// snapshots came to need, then [`commit`].
fn commit_alone(
    repo: &mut Repository,
    idx: &BlobIndex,
    plan: &Plan,
    marked: &[SnapshotId],
    staged: &Staged,
    stats: &mut PruneStats,
    out: &Control,
) -> Result<()> {
    let now: HashSet<Id> = repo.list_ids(FileType::Index)?.into_iter().collect();
    if let Some(gone) = idx.files.iter().find(|f| !now.contains(f)) {
        // Only a command that ignores locks deletes index files while prune holds one.
        delete_files(repo, FileType::Index, &staged.written, true, stats, out)?;
        return Err(EngineError::Corrupt(format!(
            "index file {} went away while prune ran (a command without a lock?): nothing \
             deleted; run prune again",
            gone.short()
        )));
    }
    let known: HashSet<Id> = staged
        .obsolete
        .iter()
        .chain(&staged.written)
        .copied()
        .collect();
    let since: Vec<Id> = now
        .into_iter()
        .filter(|f| !known.contains(f))
        .chain(staged.from_others.iter().copied())
        .collect();
    // What backups indexed beside the staging (prune's own new packs hold only blobs it
    // found used, which `rescue` knows stay).
    let extra = repo.read_index_of(&since)?;
    let indexed_since: HashSet<PackId> = (0..extra.pack_count() as u32)
        .map(|n| extra.pack_id(n))
        .chain(staged.new_packs.iter().copied())
        .collect();
    let marked: HashSet<SnapshotId> = marked.iter().copied().collect();
    let new: Vec<SnapshotId> = repo
        .list_ids(FileType::Snapshot)?
        .into_iter()
        .map(SnapshotId)
        .filter(|s| !marked.contains(s))
        .collect();
    let rescued = if new.is_empty() {
        HashSet::new()
    } else {
        repo.set_index(extra);
        let r = rescue(repo, idx, plan, &new);
        repo.unload_index();
        r?
    };
    if !rescued.is_empty() {
        say(
            out,
            Msg::Info(format!(
                "keeping {} packs that backups running beside prune came to use",
                rescued.len()
            )),
        );
    }
    let spared = Spared {
        rescued,
        indexed_since,
    };
    commit(repo, idx, plan, staged, &spared, stats, out)
}

/// The packs (numbers in `idx`) that snapshots `new` need and the plan would delete: walks
/// their trees, except below trees prune found used (all of which stay). `repo`'s index
/// holds what backups indexed beside the staging.
fn rescue(
    repo: &Repository,
    idx: &BlobIndex,
    plan: &Plan,
    new: &[SnapshotId],
) -> Result<HashSet<u32>> {
    let mut rescued = HashSet::new();
    // Whether `id` stays: in a pack written since, or a copy in a kept pack; otherwise its
    // first copy's pack is rescued. False for a blob no index names.
    let mut keep = |t: BlobType, id: &BlobId| -> bool {
        if repo.index().has(id, t) {
            return true;
        }
        let r = idx.range(t, id);
        let copies = &idx.entries()[r];
        if copies.is_empty() {
            return false;
        }
        // Found used by prune: kept or repacked.
        if copies[0].used {
            return true;
        }
        let stays = |n: u32| plan.actions[n as usize] == Action::Keep || rescued.contains(&n);
        if !copies.iter().any(|e| stays(e.pack)) {
            if let Some(e) = copies
                .iter()
                .find(|e| plan.actions[e.pack as usize] != Action::Ignore)
            {
                rescued.insert(e.pack);
            }
        }
        true
    };
    let mut seen: HashSet<BlobId> = HashSet::new();
    let mut trees: Vec<BlobId> = Vec::new();
    for id in new {
        trees.push(repo.load_snapshot(id)?.tree);
    }
    while let Some(t) = trees.pop() {
        if !seen.insert(t) {
            continue;
        }
        let r = idx.range(BlobType::Tree, &t);
        // Found used by prune: it and everything below it stay (kept or repacked).
        if !r.is_empty() && idx.entries()[r.start].used {
            continue;
        }
        let tree = if repo.index().has(&t, BlobType::Tree) {
            repo.load_tree(&t)?
        } else {
            if r.is_empty() {
                return Err(missing(BlobType::Tree, &t));
            }
            keep(BlobType::Tree, &t);
            let data = idx.read_any(repo, r)?;
            Tree::from_bytes(&data).map_err(EngineError::format(format!("tree {}", t.short())))?
        };
        for node in tree.nodes {
            for b in node.content.iter().flatten() {
                if !keep(BlobType::Data, b) {
                    return Err(missing(BlobType::Data, b));
                }
            }
            trees.extend(node.subtree);
        }
    }
    Ok(rescued)
}

fn missing(t: BlobType, id: &BlobId) -> EngineError {
    EngineError::Corrupt(format!(
        "{} blob {} of a snapshot saved while prune ran is in no index: nothing deleted",
        t.as_str(),
        id.short()
    ))
}
