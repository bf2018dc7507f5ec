//! restic's `rewrite` (0.15; `--new-host` and `--new-time` from 0.17): new snapshots made
//! from existing ones without the excluded files, or with another host or time.
//!
//! Trees are rewritten bottom-up. A directory that no pattern can reach below is not even
//! loaded: its tree, and so its id, stays as it is. A tree that loses an entry (or whose
//! subtree changed) is encoded again and saved unless the repository has it. The new
//! snapshot keeps time, host, paths, tags and summary (with the file and byte totals of
//! what is left, as restic 0.17 counts them), gains the tag `rewrite` (unless `--forget`)
//! and names the old one in `original`. A snapshot where nothing changes is left alone.
//! Data blobs are never removed here: that is prune's job.

use restash_backend::{FileType, Handle};
use restash_format::{BlobId, BlobType, Compression, GoTime, NodeType, Snapshot, SnapshotId};

use crate::archiver::Saver;
use crate::events::{Control, Event, Phase};
use crate::snapshots::{select_snapshots, SnapshotFilter};
use crate::totals::{Totals, TreeTotals};
use crate::{EngineError, LockPolicy, PatternSet, RepoLock, Repository, Result};

/// The tag restic adds to a rewritten snapshot when the original stays.
pub const REWRITE_TAG: &str = "rewrite";

/// What [`run`] is to do: restic's `rewrite` flags.
#[derive(Debug, Clone)]
pub struct RewriteOptions {
    /// Snapshots to rewrite (ids, prefixes or `latest`); none: all passing `filter`.
    pub ids: Vec<String>,
    /// `--host`, `--tag`, `--path`.
    pub filter: SnapshotFilter,
    /// `--exclude`, `--iexclude` and the patterns of the exclude files, matched against
    /// absolute paths inside the snapshot (`/home/user/file`).
    pub excludes: PatternSet,
    /// `--forget`: remove each original once its new snapshot is saved.
    pub forget: bool,
    /// `--dry-run`: write nothing, say what would be done.
    pub dry_run: bool,
    /// `--new-host`.
    pub new_host: Option<String>,
    /// `--new-time`.
    pub new_time: Option<GoTime>,
    /// How the lock is taken (exclusive with `--forget`; none in a dry run).
    pub lock: LockPolicy,
    /// Compression of new tree blobs in a v2 repository.
    pub compression: Compression,
    /// Target pack size.
    pub pack_size: usize,
}

impl Default for RewriteOptions {
    fn default() -> Self {
        RewriteOptions {
            ids: Vec::new(),
            filter: SnapshotFilter::default(),
            excludes: PatternSet::default(),
            forget: false,
            dry_run: false,
            new_host: None,
            new_time: None,
            lock: LockPolicy::default(),
            compression: Compression::Auto,
            pack_size: 16 << 20,
        }
    }
}

impl RewriteOptions {
    /// Refuses what restic refuses before it opens the repository.
    pub fn check(&self) -> Result<()> {
        if self.excludes.is_empty() && !self.new_metadata() {
            return Err(EngineError::Usage(
                "Nothing to do: no excludes provided and no new metadata provided".into(),
            ));
        }
        Ok(())
    }

    fn new_metadata(&self) -> bool {
        self.new_host.is_some() || self.new_time.is_some()
    }
}

/// What [`run`] did (or, in a dry run, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RewriteSummary {
    /// Rewritten snapshots: the old id and the new one (`None` in a dry run).
    pub rewritten: Vec<(SnapshotId, Option<SnapshotId>)>,
    /// Originals removed (`--forget`).
    pub removed: Vec<SnapshotId>,
    /// Snapshots left alone: nothing excluded and no new metadata.
    pub unchanged: Vec<SnapshotId>,
}

/// restic's `rewrite`. For each chosen snapshot it sends [`Event::Selected`], a message
/// per excluded path ("excluding /a/b"), then restic's lines about what was saved and
/// removed, with an [`Event::ItemDone`] for each ("saved", "removed", "not modified").
pub fn run(repo: &mut Repository, opts: &RewriteOptions, ctl: &Control) -> Result<RewriteSummary> {
    opts.check()?;
    if opts.forget {
        ctl.say(1, "create exclusive lock for repository");
    }
    // restic writes nothing in a dry run, so it takes no lock then.
    let policy = LockPolicy {
        skip: opts.lock.skip || opts.dry_run,
        ..opts.lock.clone()
    };
    let lock = RepoLock::take(repo, opts.forget, &policy, ctl)?;
    let chosen = select_snapshots(repo, &opts.filter, &opts.ids, ctl)?;
    ctl.phase(Phase::LoadIndex, || repo.load_index())?;
    let repo: &Repository = repo;
    let saver = Saver::new(repo, opts.compression, opts.pack_size, opts.dry_run);
    let trees = Trees {
        repo,
        excludes: &opts.excludes,
        saver: (!opts.dry_run).then_some(&saver),
        unchanged: TreeTotals::new(),
    };
    let mut out = RewriteSummary::default();
    for (id, snap) in &chosen {
        ctl.cancel.check()?;
        ctl.emit(Event::Selected { id, snapshot: snap });
        match rewrite_snapshot(&trees, id, snap, opts, ctl, &mut out) {
            Ok(()) => {}
            Err(e @ (EngineError::Interrupted | EngineError::Terminated)) => return Err(e),
            Err(e) => {
                return Err(EngineError::Corrupt(format!(
                    "unable to rewrite snapshot ID {:?}: {e}",
                    id.short()
                )))
            }
        }
    }
    drop(lock);
    Ok(out)
}

fn rewrite_snapshot(
    trees: &Trees<'_>,
    id: &SnapshotId,
    snap: &Snapshot,
    opts: &RewriteOptions,
    ctl: &Control,
    out: &mut RewriteSummary,
) -> Result<()> {
    // restic 0.17 sets a summary's totals to what is left after excluding; counting visits
    // every tree, which only a snapshot with a summary pays for.
    let mut tally = snap.summary.as_ref().map(|_| Totals::default());
    let root = if opts.excludes.is_empty() {
        snap.tree
    } else {
        trees.rewrite(b"/", snap.tree, tally.as_mut(), ctl)?
    };
    if let Some(saver) = trees.saver {
        // The new snapshot may only name trees that are stored and indexed.
        saver.flush()?;
    }
    if root == snap.tree && !opts.new_metadata() {
        item(ctl, "not modified", id);
        out.unchanged.push(*id);
        return Ok(());
    }
    if opts.dry_run {
        ctl.say(1, "would save new snapshot");
        if opts.forget {
            ctl.say(1, "would remove old snapshot");
        }
        if let Some(t) = &opts.new_time {
            ctl.say(1, &format!("would set time to {}", t.to_go_text()));
        }
        if let Some(h) = &opts.new_host {
            ctl.say(1, &format!("would set hostname to {h}"));
        }
        out.rewritten.push((*id, None));
        return Ok(());
    }
    let mut new = snap.clone();
    // restic 0.15 to 0.17 always name the snapshot rewritten, even one that was itself
    // a rewrite or a copy (unlike `tag`, which keeps the first id).
    new.original = Some(*id);
    new.tree = root;
    if root != snap.tree {
        if let (Some(summary), Some(t)) = (new.summary.as_mut(), tally) {
            summary.total_files_processed = t.files;
            summary.total_bytes_processed = t.bytes;
        }
    }
    if !opts.forget && !new.has_tag(REWRITE_TAG) {
        new.tags.push(REWRITE_TAG.into());
    }
    if let Some(t) = opts.new_time {
        ctl.say(1, &format!("setting time to {}", t.to_go_text()));
        new.time = t;
    }
    if let Some(h) = &opts.new_host {
        ctl.say(1, &format!("setting host to {h}"));
        new.hostname = h.clone();
    }
    let new_id = SnapshotId(
        trees
            .repo
            .save_unpacked(FileType::Snapshot, &new.to_json())?,
    );
    ctl.say(1, &format!("saved new snapshot {}", new_id.short()));
    item(ctl, "saved", &new_id);
    if opts.forget {
        let h = Handle::new(FileType::Snapshot, *id);
        trees
            .repo
            .backend()
            .remove(&h)
            .map_err(EngineError::backend(format!("remove {h}")))?;
        ctl.say(1, &format!("removed old snapshot {}", id.short()));
        item(ctl, "removed", id);
        out.removed.push(*id);
    }
    out.rewritten.push((*id, Some(new_id)));
    Ok(())
}

fn item(ctl: &Control, action: &'static str, id: &SnapshotId) {
    ctl.emit(Event::ItemDone {
        kind: "snapshot",
        action,
        name: &id.short(),
    });
}

/// Rewrites trees without the excluded entries; `saver` is `None` in a dry run.
struct Trees<'a> {
    repo: &'a Repository,
    excludes: &'a PatternSet,
    saver: Option<&'a Saver<'a>>,
    // The totals of subtrees no exclude reaches, shared by the snapshots rewritten.
    unchanged: TreeTotals,
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

impl Trees<'_> {
    /// The id of tree `id` (found at `path`) without the excluded entries: `id` itself
    /// when nothing below it is excluded. What is kept is added to `tally`, if given.
    fn rewrite(
        &self,
        path: &[u8],
        id: BlobId,
        mut tally: Option<&mut Totals>,
        ctl: &Control,
    ) -> Result<BlobId> {
        ctl.cancel.check()?;
        let tree = self.repo.load_tree(&id)?;
        let mut kept = Vec::with_capacity(tree.nodes.len());
        let mut changed = false;
        for node in &tree.nodes {
            let node_path = join(path, &node.name);
            if self.excludes.matches(&node_path) {
                ctl.say(
                    1,
                    &format!("excluding {}", String::from_utf8_lossy(&node_path)),
                );
                changed = true;
                continue;
            }
            let mut node = node.clone();
            if node.node_type == NodeType::File {
                if let Some(t) = tally.as_deref_mut() {
                    t.add_file(node.size);
                }
            }
            if node.node_type == NodeType::Dir {
                let reached = self.excludes.child_may_match(&node_path);
                if reached || tally.is_some() {
                    let sub = subtree_of(&node, &node_path)?;
                    if reached {
                        let new = self.rewrite(&node_path, sub, tally.as_deref_mut(), ctl)?;
                        if new != sub {
                            node.subtree = Some(new);
                            changed = true;
                        }
                    } else if let Some(t) = tally.as_deref_mut() {
                        t.add(self.unchanged.of(self.repo, &sub, &ctl.cancel)?);
                    }
                }
            }
            kept.push(node);
        }
        if !changed {
            return Ok(id);
        }
        // A tree is only encoded anew when it changes, so a field this version does not
        // know would be lost silently: refuse, as restic does for any tree.
        if BlobId::hash(&tree.to_bytes()) != id {
            return Err(EngineError::Corrupt(format!(
                "cannot encode tree at {:?} without losing information",
                String::from_utf8_lossy(path)
            )));
        }
        let new = restash_format::Tree { nodes: kept };
        let bytes = new.to_bytes();
        let new_id = BlobId::hash(&bytes);
        if let Some(saver) = self.saver {
            saver.save(BlobType::Tree, new_id, &bytes)?;
        }
        Ok(new_id)
    }
}

fn subtree_of(node: &restash_format::Node, path: &[u8]) -> Result<BlobId> {
    crate::dir_subtree(node, &String::from_utf8_lossy(path))
}
