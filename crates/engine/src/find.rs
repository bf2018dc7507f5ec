//! restic 0.14's `find`: path patterns with modification-time bounds, or blob, tree and
//! pack ids, searched snapshot by snapshot with restic's walker (subtrees without a
//! possible match are skipped in later snapshots too).

use std::collections::{BTreeMap, HashSet};

use restash_backend::FileType;
use restash_format::{BlobId, GoTime, Node, NodeType, PackId};

use crate::events::{Control, Phase};
use crate::treewalk::{walk_restic, Visit};
use crate::{
    select_snapshots, EngineError, LockPolicy, Pattern, RepoLock, Repository, Result,
    SnapshotEntry, SnapshotFilter,
};

/// One hit, handed to the caller's printer.
#[derive(Debug)]
pub enum FindHit<'a> {
    /// A node whose path matched a pattern.
    Node {
        /// Slash path in the snapshot.
        path: &'a str,
        /// The node.
        node: &'a Node,
    },
    /// A blob or tree id found.
    Object {
        /// `"blob"` or `"tree"`.
        kind: &'static str,
        /// Full id.
        id: String,
        /// Path of the file (blob) or directory (tree).
        path: &'a str,
        /// The tree holding the file, for blobs.
        parent_tree: Option<BlobId>,
    },
}

/// What to look for.
#[derive(Debug, Default)]
pub struct FindOptions {
    /// Path patterns (lower-cased already when `ignore_case`).
    pub patterns: Vec<String>,
    /// Compare paths in lower case.
    pub ignore_case: bool,
    /// Only nodes modified at or after this time.
    pub oldest: Option<GoTime>,
    /// Only nodes modified at or before this time.
    pub newest: Option<GoTime>,
    /// Patterns are blob ids (full or 8-character short form).
    pub blob: bool,
    /// Patterns are tree ids.
    pub tree: bool,
    /// Patterns are pack ids.
    pub pack: bool,
}

/// What `find` looks for, in which snapshots.
#[derive(Debug)]
pub struct FindJob {
    /// Patterns or ids and the time window.
    pub options: FindOptions,
    /// Snapshots by id prefix (`latest` too); empty: all passing `filter`.
    pub ids: Vec<String>,
    /// restic's `--host`, `--tag`, `--path`.
    pub filter: SnapshotFilter,
    /// How to lock (a shared lock unless `--no-lock`).
    pub lock: LockPolicy,
}

/// restic's `find`: takes the lock while the index loads, then searches the chosen
/// snapshots in order, calling `hit` with the snapshot for each match. Returns the
/// finder, which holds the ids searched for (for `--show-pack-id`).
pub fn run(
    repo: &mut Repository,
    job: &FindJob,
    ctl: &Control,
    hit: &mut dyn FnMut(&SnapshotEntry, FindHit<'_>),
) -> Result<Finder> {
    let (lock, index) = repo.load_index_with(|repo| RepoLock::take(repo, false, &job.lock, ctl));
    let _lock = lock?;
    index?;
    let (mut finder, from_index) = Finder::new(repo, &job.options)?;
    if !from_index.is_empty() {
        let list: Vec<String> = from_index.iter().map(|p| p.to_string()).collect();
        ctl.warn(&format!(
            "some pack files are missing from the repository, getting their blobs from the \
             repository index: [{}]\n",
            list.join(" ")
        ));
    }
    let chosen = select_snapshots(repo, &job.filter, &job.ids, ctl)?;
    ctl.phase(Phase::Scan, || {
        for entry in &chosen {
            ctl.cancel.check()?;
            finder.search(repo, &entry.1.tree, &mut |h| hit(entry, h))?;
        }
        Ok::<_, EngineError>(())
    })?;
    Ok(finder)
}

/// Search state shared by the snapshots of one `find`.
pub struct Finder {
    patterns: Vec<Pattern>,
    oldest: Option<GoTime>,
    newest: Option<GoTime>,
    ignore_trees: HashSet<BlobId>,
    /// Blob ids searched for (short ids are replaced by full ones once seen).
    pub blob_ids: Option<HashSet<String>>,
    /// Tree ids searched for.
    pub tree_ids: Option<HashSet<String>>,
    items_found: usize,
}

impl Finder {
    /// Prepares a search; `--pack` ids are resolved to their blobs here (pack headers, or
    /// the index for packs missing from the repository). Returns the finder and the packs
    /// that had to be taken from the index.
    pub fn new(repo: &Repository, o: &FindOptions) -> Result<(Finder, Vec<PackId>)> {
        let mut f = Finder {
            patterns: Vec::new(),
            oldest: o.oldest,
            newest: o.newest,
            ignore_trees: HashSet::new(),
            blob_ids: None,
            tree_ids: None,
            items_found: 0,
        };
        let mut from_index = Vec::new();
        if o.blob {
            f.blob_ids = Some(o.patterns.iter().cloned().collect());
        }
        if o.tree {
            f.tree_ids = Some(o.patterns.iter().cloned().collect());
        }
        if o.pack {
            from_index = f.packs_to_blobs(repo, &o.patterns)?;
        }
        if !(o.blob || o.tree || o.pack) {
            for p in &o.patterns {
                let pat = if o.ignore_case {
                    Pattern::parse_insensitive(p)?
                } else {
                    Pattern::parse(p)?
                };
                f.patterns.push(pat);
            }
        }
        Ok((f, from_index))
    }

    /// Whether ids rather than paths are searched for.
    pub fn by_id(&self) -> bool {
        self.blob_ids.is_some() || self.tree_ids.is_some()
    }

    fn packs_to_blobs(&mut self, repo: &Repository, packs: &[String]) -> Result<Vec<PackId>> {
        let mut wanted: HashSet<String> = packs.iter().cloned().collect();
        let blobs = self.blob_ids.get_or_insert_with(HashSet::new);
        let listing = repo
            .backend()
            .list(FileType::Pack)
            .map_err(EngineError::backend("list packs"))?;
        for info in listing {
            if wanted.is_empty() {
                break;
            }
            let id = PackId(info.id);
            if !wanted.remove(&id.to_string()) && !wanted.remove(&id.short()) {
                continue;
            }
            for e in repo.read_pack_header(&id, info.size)? {
                blobs.insert(e.id.to_string());
            }
        }
        let mut from_index = BTreeMap::new();
        if !wanted.is_empty() {
            for (id, _, loc) in repo.index().iter() {
                let pack = repo.index().pack_id(loc.pack);
                if wanted.contains(&pack.to_string()) || wanted.contains(&pack.short()) {
                    blobs.insert(id.to_string());
                    from_index.insert(pack.to_string(), pack);
                }
            }
            for (full, p) in &from_index {
                wanted.remove(full);
                wanted.remove(&p.short());
            }
        }
        if !wanted.is_empty() {
            let mut list: Vec<_> = wanted.into_iter().collect();
            list.sort();
            return Err(EngineError::NotFound(format!(
                "unable to find pack(s): [{}]",
                list.join(" ")
            )));
        }
        Ok(from_index.into_values().collect())
    }

    /// Searches one snapshot's tree, reporting hits in walk order.
    pub fn search(
        &mut self,
        repo: &Repository,
        root: &BlobId,
        hit: &mut dyn FnMut(FindHit<'_>),
    ) -> Result<()> {
        if self.by_id() {
            self.find_ids(repo, root, hit)
        } else {
            self.find_paths(repo, root, hit)
        }
    }

    fn find_paths(
        &mut self,
        repo: &Repository,
        root: &BlobId,
        hit: &mut dyn FnMut(FindHit<'_>),
    ) -> Result<()> {
        let (patterns, oldest, newest) = (&self.patterns, self.oldest, self.newest);
        walk_restic(repo, root, &mut self.ignore_trees, &mut |_, path, node| {
            let found = patterns.iter().any(|p| p.matches(path.as_bytes()));
            let mut no_match = Visit::Continue(true);
            if node.node_type == NodeType::Dir {
                if patterns.iter().any(|p| p.child_may_match(path.as_bytes())) {
                    no_match = Visit::Continue(false);
                } else {
                    no_match = Visit::Skip(true);
                }
            }
            if !found {
                return Ok(no_match);
            }
            if oldest.is_some_and(|t| node.mtime.0 < t.0)
                || newest.is_some_and(|t| node.mtime.0 > t.0)
            {
                return Ok(no_match);
            }
            hit(FindHit::Node { path, node });
            Ok(Visit::Continue(false))
        })
    }

    fn find_ids(
        &mut self,
        repo: &Repository,
        root: &BlobId,
        hit: &mut dyn FnMut(FindHit<'_>),
    ) -> Result<()> {
        let Finder {
            blob_ids,
            tree_ids,
            items_found,
            ignore_trees,
            ..
        } = self;
        walk_restic(repo, root, ignore_trees, &mut |parent, path, node| {
            if let (&NodeType::Dir, Some(trees), Some(sub)) =
                (&node.node_type, &*tree_ids, node.subtree)
            {
                if trees.contains(&sub.short()) || trees.contains(&sub.to_string()) {
                    hit(FindHit::Object {
                        kind: "tree",
                        id: sub.to_string(),
                        path,
                        parent_tree: None,
                    });
                    *items_found += 1;
                    if *items_found >= trees.len() && blob_ids.is_none() {
                        return Ok(Visit::Stop);
                    }
                }
            }
            if let (&NodeType::File, Some(blobs)) = (&node.node_type, blob_ids.as_mut()) {
                for id in node.content.iter().flatten() {
                    let full = id.to_string();
                    if !blobs.contains(&full) {
                        if !blobs.remove(&id.short()) {
                            continue;
                        }
                        blobs.insert(full.clone());
                    }
                    hit(FindHit::Object {
                        kind: "blob",
                        id: full,
                        path,
                        parent_tree: Some(*parent),
                    });
                }
            }
            Ok(Visit::Continue(false))
        })
    }
}
