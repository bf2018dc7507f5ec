//! `repair snapshots` (restic 0.16): rewrites the trees of a snapshot so that it only
//! names what the index has. Files lose the blobs that are missing (and their size is
//! fixed), directories whose tree cannot be loaded become empty, and a snapshot whose root
//! tree is unreadable is removed. Needs a correct index: run `repair index` first.
//!
//! Trees that need no change keep their id (restic re-encodes every tree; keeping the
//! original bytes leaves healthy trees written by other versions untouched).

use std::collections::{HashMap, HashSet};

use restash_backend::{FileType, Handle};
use restash_format::{
    compress_blob, go_quote, BlobId, BlobType, IndexFile, IndexPack, NodeType, PackBuilder,
    Snapshot, SnapshotId, Tree,
};

use crate::events::Control;
use crate::{EngineError, Repository, Result};

/// Tree packs are uploaded once they hold this much.
const TREE_PACK_SIZE: usize = 4 << 20;

/// `repair snapshots` flags.
#[derive(Debug, Clone, Default)]
pub struct RepairSnapshotsOptions {
    /// `--dry-run`: write nothing, say what would be done.
    pub dry_run: bool,
    /// `--forget`: remove the original snapshots after saving the repaired ones.
    pub forget: bool,
}

/// Writes the new tree blobs of a repair: packs of trees, then one index file for them.
struct TreeSaver {
    pack: PackBuilder,
    saved: HashSet<BlobId>,
    pending: IndexFile,
}

impl TreeSaver {
    fn save(&mut self, repo: &Repository, id: BlobId, plain: &[u8]) -> Result<()> {
        if repo.index().has(&id, BlobType::Tree) || !self.saved.insert(id) {
            return Ok(());
        }
        let z = (repo.version() >= 2).then(|| compress_blob(plain, 3));
        match z {
            Some(z) if z.len() < plain.len() => {
                self.pack
                    .add_blob(repo.key(), BlobType::Tree, id, &z, Some(plain.len() as u32));
            }
            _ => {
                self.pack
                    .add_blob(repo.key(), BlobType::Tree, id, plain, None);
            }
        }
        if self.pack.len() >= TREE_PACK_SIZE {
            self.upload(repo)?;
        }
        Ok(())
    }

    fn upload(&mut self, repo: &Repository) -> Result<()> {
        let pack = std::mem::take(&mut self.pack);
        if pack.is_empty() {
            return Ok(());
        }
        let (bytes, id, entries) = pack.finish(repo.key());
        let h = Handle::new(FileType::Pack, id);
        match repo.backend().write(&h, &bytes) {
            Ok(()) | Err(restash_backend::BackendError::AlreadyExists(_)) => {}
            Err(e) => return Err(EngineError::backend(format!("save {h}"))(e)),
        }
        self.pending.packs.push(IndexPack {
            id,
            blobs: entries.into_iter().map(Into::into).collect(),
        });
        Ok(())
    }

    /// Uploads what is buffered and indexes it: afterwards every saved tree is durable
    /// and findable, so a snapshot may name it.
    fn flush(&mut self, repo: &Repository) -> Result<()> {
        self.upload(repo)?;
        let file = std::mem::take(&mut self.pending);
        if !file.packs.is_empty() {
            repo.save_unpacked(FileType::Index, &file.to_json())?;
        }
        Ok(())
    }
}

/// Repairs snapshots one after the other, remembering the trees already rewritten.
pub struct SnapshotRepairer<'a> {
    repo: &'a Repository,
    opts: RepairSnapshotsOptions,
    saver: TreeSaver,
    replaces: HashMap<BlobId, BlobId>,
    empty_tree: Option<BlobId>,
}

fn quote(path: &str) -> String {
    format!("\"{}\"", go_quote(path.as_bytes()))
}

fn join(dir: &str, name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

impl<'a> SnapshotRepairer<'a> {
    /// A repairer for `repo`, whose index must be loaded.
    pub fn new(repo: &'a Repository, opts: RepairSnapshotsOptions) -> Self {
        SnapshotRepairer {
            repo,
            opts,
            saver: TreeSaver {
                pack: PackBuilder::new(),
                saved: HashSet::new(),
                pending: IndexFile::default(),
            },
            replaces: HashMap::new(),
            empty_tree: None,
        }
    }

    fn save_tree(&mut self, tree: &Tree) -> Result<BlobId> {
        let bytes = tree.to_bytes();
        let id = BlobId::hash(&bytes);
        if !self.opts.dry_run {
            self.saver.save(self.repo, id, &bytes)?;
        }
        Ok(id)
    }

    /// Rewrites the tree `id` found at `path`; `None` when the root cannot be read.
    fn rewrite(
        &mut self,
        path: &str,
        id: BlobId,
        is_root: bool,
        rep: &Control,
    ) -> Result<Option<BlobId>> {
        if let Some(new) = self.replaces.get(&id) {
            return Ok(Some(*new));
        }
        let loaded = if id.0 .0 == [0u8; 32] {
            Err("null tree id".to_string())
        } else {
            crate::check::load_tree(self.repo, &id)
        };
        let mut tree = match loaded {
            Ok(t) => t,
            Err(_) if is_root => {
                rep.say(1, &format!("  dir {}: not readable", quote(path)));
                return Ok(None);
            }
            Err(_) => {
                rep.say(
                    1,
                    &format!("  dir {}: replaced with empty directory", quote(path)),
                );
                let empty = match self.empty_tree {
                    Some(e) => e,
                    None => {
                        let e = self.save_tree(&Tree::default())?;
                        self.empty_tree = Some(e);
                        e
                    }
                };
                return Ok(Some(empty));
            }
        };
        let mut changed = false;
        for node in &mut tree.nodes {
            let node_path = join(path, &node.name);
            match node.node_type {
                NodeType::File => changed |= self.fix_file(node, &node_path, rep),
                NodeType::Dir => {
                    let sub = node.subtree.unwrap_or_default();
                    // Only the root is ever dropped, so a subtree always has an id.
                    let new = self.rewrite(&node_path, sub, false, rep)?;
                    if new.is_some() && node.subtree != new {
                        node.subtree = new;
                        changed = true;
                    }
                }
                _ => {}
            }
        }
        let new = if changed { self.save_tree(&tree)? } else { id };
        self.replaces.insert(id, new);
        Ok(Some(new))
    }

    /// Drops the blobs of a file the index lacks and fixes its size; true if it changed.
    fn fix_file(&self, node: &mut restash_format::Node, path: &str, rep: &Control) -> bool {
        let old = node.content.take().unwrap_or_default();
        let mut content = Vec::with_capacity(old.len());
        let mut size = 0u64;
        let mut missing = false;
        for b in &old {
            match self.repo.index().get(b, BlobType::Data) {
                Some(loc) => {
                    content.push(*b);
                    size += loc.plaintext_len() as u64;
                }
                None => missing = true,
            }
        }
        if missing {
            rep.say(
                1,
                &format!("  file {}: removed missing content", quote(path)),
            );
        } else if size != node.size {
            rep.say(1, &format!("  file {}: fixed incorrect size", quote(path)));
        }
        let changed = missing || size != node.size;
        node.content = Some(content);
        node.size = size;
        changed
    }

    /// Repairs one snapshot; returns whether it was (or with `--dry-run` would be) changed.
    pub fn repair(&mut self, id: &SnapshotId, snap: &Snapshot, rep: &Control) -> Result<bool> {
        let new_root = self.rewrite("/", snap.tree, true, rep)?;
        if !self.opts.dry_run {
            self.saver.flush(self.repo)?;
        }
        let h = Handle::new(FileType::Snapshot, *id);
        let Some(root) = new_root else {
            if self.opts.dry_run {
                rep.say(1, "would delete empty snapshot");
            } else {
                self.repo
                    .backend()
                    .remove(&h)
                    .map_err(EngineError::backend(format!(
                        "remove snapshot {}",
                        id.short()
                    )))?;
                rep.say(1, &format!("removed empty snapshot {}", id.short()));
            }
            return Ok(true);
        };
        if root == snap.tree {
            return Ok(false);
        }
        if self.opts.dry_run {
            rep.say(1, "would save new snapshot");
            if self.opts.forget {
                rep.say(1, "would remove old snapshot");
            }
            return Ok(true);
        }
        let mut new = snap.clone();
        new.original = Some(*id);
        new.tree = root;
        if !self.opts.forget && !new.has_tag("repaired") {
            new.tags.push("repaired".into());
        }
        let new_id = self
            .repo
            .save_unpacked(FileType::Snapshot, &new.to_json())?;
        rep.say(1, &format!("saved new snapshot {}", new_id.short()));
        if self.opts.forget {
            self.repo
                .backend()
                .remove(&h)
                .map_err(EngineError::backend(format!(
                    "remove snapshot {}",
                    id.short()
                )))?;
            rep.say(1, &format!("removed old snapshot {}", id.short()));
        }
        Ok(true)
    }
}

/// Which snapshots `repair snapshots` rewrites.
#[derive(Debug, Clone, Default)]
pub struct RepairSnapshotsJob {
    /// Snapshots by id prefix (`latest` too); empty: every snapshot passing `filter`.
    pub ids: Vec<String>,
    /// restic's `--host`, `--tag`, `--path`.
    pub filter: crate::SnapshotFilter,
    /// What to do with them.
    pub options: RepairSnapshotsOptions,
    /// How the exclusive lock is taken (never in a dry run).
    pub lock: crate::LockPolicy,
}

/// restic's `repair snapshots`: rewrites each chosen snapshot without what cannot be read.
/// Sends [`crate::events::Event::Selected`] before each snapshot and a warning for each
/// snapshot file that cannot be read; returns how many snapshots were (or would be)
/// changed.
pub fn repair_snapshots(
    repo: &mut Repository,
    job: &RepairSnapshotsJob,
    ctl: &Control,
) -> Result<usize> {
    let policy = crate::LockPolicy {
        skip: job.options.dry_run,
        ..job.lock.clone()
    };
    let _lock = crate::RepoLock::take(repo, true, &policy, ctl)?;
    let all = repo.load_snapshots()?;
    for bad in all.unreadable() {
        ctl.warn(&format!(
            "could not load snapshot {}: {}",
            bad.id.short(),
            bad.error
        ));
    }
    repo.load_index()?;
    let chosen: Vec<_> = if job.ids.is_empty() {
        all.readable()
            .iter()
            .filter(|(_, s)| job.filter.matches(s))
            .collect()
    } else {
        job.ids
            .iter()
            .map(|spec| all.find(spec, &job.filter))
            .collect::<Result<_>>()?
    };
    let mut repairer = SnapshotRepairer::new(repo, job.options.clone());
    let mut changed = 0;
    for (id, snap) in chosen {
        ctl.cancel.check()?;
        ctl.emit(crate::events::Event::Selected { id, snapshot: snap });
        match repairer.repair(id, snap, ctl) {
            Ok(true) => changed += 1,
            Ok(false) => {}
            Err(e) => {
                return Err(EngineError::Corrupt(format!(
                    "unable to rewrite snapshot ID {:?}: {e}",
                    id.short()
                )))
            }
        }
    }
    Ok(changed)
}
