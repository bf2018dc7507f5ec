//! A whole `restore` command as one operation: the snapshot is chosen while the index
//! loads, then the chosen tree (or a subfolder of it) is restored.

use restash_format::{Snapshot, SnapshotId};

use super::{restore, RestoreOptions, RestoreStats};
use crate::events::Control;
use crate::{find_subtree, lock_and_select_one, LockPolicy, Repository, Result, SnapshotFilter};

/// Which snapshot and which part of it to restore, and how.
#[derive(Debug, Clone)]
pub struct RestoreJob {
    /// `latest` or an id prefix, optionally followed by `:subfolder` (restic's syntax).
    pub snapshot: String,
    /// Narrows `latest` (restic's `--host`, `--tag`, `--path`).
    pub filter: SnapshotFilter,
    /// Where and what to restore.
    pub options: RestoreOptions,
    /// restic's read lock (`--no-lock`, `--retry-lock`): a prune cannot delete the packs
    /// being read.
    pub lock: LockPolicy,
}

/// What a restore did, and from which snapshot.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    /// The snapshot restored from.
    pub id: SnapshotId,
    /// Its contents.
    pub snapshot: Snapshot,
    /// What was written.
    pub stats: RestoreStats,
}

/// Restores one snapshot. Sends [`Event::Selected`] once the snapshot is chosen, before
/// anything is written; errors of single entries are in the summary's stats (see
/// [`restore`]).
pub fn run(repo: &mut Repository, job: &RestoreJob, ctl: &Control) -> Result<RestoreSummary> {
    let (spec, sub) = job.snapshot.split_once(':').unwrap_or((&job.snapshot, ""));
    let (_lock, (id, snapshot)) = lock_and_select_one(repo, spec, &job.filter, &job.lock, ctl)?;
    let root = find_subtree(repo, &snapshot.tree, sub)?;
    let stats = restore(repo, &root, &job.options, ctl)?;
    Ok(RestoreSummary {
        id,
        snapshot,
        stats,
    })
}
