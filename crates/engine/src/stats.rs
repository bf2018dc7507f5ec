//! restic 0.14's `stats`: the four counting modes with restic's exact rules (hard links
//! counted once per snapshot in restore-size, identical subtrees skipped within a snapshot
//! in the content modes, stored blob lengths in raw-data).

use std::collections::{HashMap, HashSet};

use restash_format::{BlobId, BlobType, Id, NodeType, Snapshot};

use crate::events::{Control, Phase};
use crate::treewalk::{walk_restic, Visit};
use crate::{
    select_snapshots, EngineError, LockPolicy, RepoLock, Repository, Result, SnapshotFilter,
};

/// restic's `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsMode {
    /// Size of the files as restored.
    RestoreSize,
    /// Size of files unique by content.
    FilesByContents,
    /// Stored size of the blobs referenced.
    RawData,
    /// Unique blobs per file path.
    BlobsPerFile,
}

impl StatsMode {
    /// Parses a `--mode` value; the error text is restic's.
    pub fn parse(s: &str) -> Result<StatsMode> {
        Ok(match s {
            "restore-size" => StatsMode::RestoreSize,
            "files-by-contents" => StatsMode::FilesByContents,
            "raw-data" => StatsMode::RawData,
            "blobs-per-file" => StatsMode::BlobsPerFile,
            other => {
                return Err(EngineError::Usage(format!(
                "unknown counting mode: {other} (use the -h flag to get a list of supported modes)"
            )))
            }
        })
    }

    /// The mode's name as given on the command line.
    pub fn as_str(&self) -> &'static str {
        match self {
            StatsMode::RestoreSize => "restore-size",
            StatsMode::FilesByContents => "files-by-contents",
            StatsMode::RawData => "raw-data",
            StatsMode::BlobsPerFile => "blobs-per-file",
        }
    }
}

/// The totals restic prints (`--json` field names in the comments).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StatsTotals {
    /// `total_size`.
    pub total_size: u64,
    /// `total_file_count`.
    pub total_file_count: u64,
    /// `total_blob_count` (omitted when 0).
    pub total_blob_count: u64,
    /// `snapshots_count`.
    pub snapshots_count: u64,
}

/// Accumulates statistics over snapshots, one at a time.
pub struct StatsCounter {
    mode: StatsMode,
    totals: StatsTotals,
    unique_files: HashSet<[u8; 32]>,
    file_blobs: HashMap<String, HashSet<BlobId>>,
    blobs: HashSet<(BlobId, BlobType)>,
}

/// What `stats` counts, in which snapshots.
#[derive(Debug, Clone)]
pub struct StatsJob {
    /// The counting mode.
    pub mode: StatsMode,
    /// Snapshots by id prefix (`latest` too); empty: all passing `filter`.
    pub ids: Vec<String>,
    /// restic's `--host`, `--tag`, `--path`.
    pub filter: SnapshotFilter,
    /// How to lock (a shared lock unless `--no-lock`).
    pub lock: LockPolicy,
}

/// restic's `stats`: takes the lock while the index loads, then counts the chosen
/// snapshots in phase [`Phase::Scan`].
pub fn run(repo: &mut Repository, job: &StatsJob, ctl: &Control) -> Result<StatsTotals> {
    let (lock, index) = repo.load_index_with(|repo| RepoLock::take(repo, false, &job.lock, ctl));
    let _lock = lock?;
    index?;
    ctl.phase(Phase::Scan, || {
        let mut counter = StatsCounter::new(job.mode);
        for (_, sn) in select_snapshots(repo, &job.filter, &job.ids, ctl)? {
            ctl.cancel.check()?;
            counter
                .add_snapshot(repo, &sn)
                .map_err(|e| EngineError::Corrupt(format!("error walking snapshot: {e}")))?;
        }
        counter.finish(repo)
    })
}

impl StatsCounter {
    /// A counter for `mode`.
    pub fn new(mode: StatsMode) -> Self {
        StatsCounter {
            mode,
            totals: StatsTotals::default(),
            unique_files: HashSet::new(),
            file_blobs: HashMap::new(),
            blobs: HashSet::new(),
        }
    }

    /// Counts one snapshot.
    pub fn add_snapshot(&mut self, repo: &Repository, sn: &Snapshot) -> Result<()> {
        self.totals.snapshots_count += 1;
        if self.mode == StatsMode::RawData {
            return self.used_blobs(repo, sn.tree);
        }
        let mode = self.mode;
        let mut inodes: HashSet<u64> = HashSet::new();
        let mut ignore = HashSet::new();
        let totals = &mut self.totals;
        let unique_files = &mut self.unique_files;
        let file_blobs = &mut self.file_blobs;
        walk_restic(repo, &sn.tree, &mut ignore, &mut |parent, path, node| {
            if mode == StatsMode::RestoreSize {
                totals.total_file_count += 1;
                // Hard links do not add to the restore size; inode 0 means unknown.
                if inodes.insert(node.inode) || node.inode == 0 {
                    totals.total_size += node.size;
                }
                return Ok(Visit::Continue(false));
            }
            let content = node.content.as_deref().unwrap_or(&[]);
            let mut bb = Vec::with_capacity(content.len() * 32);
            for c in content {
                bb.extend_from_slice(&c.0 .0);
            }
            let fid = Id::hash(&bb).0;
            if unique_files.insert(fid) {
                if mode == StatsMode::FilesByContents {
                    totals.total_size += node.size;
                    totals.total_file_count += 1;
                } else {
                    for blob in content {
                        let set = file_blobs.entry(path.to_string()).or_insert_with(|| {
                            totals.total_file_count += 1;
                            HashSet::new()
                        });
                        if set.insert(*blob) {
                            let loc = repo.index().get(blob, BlobType::Data).ok_or_else(|| {
                                EngineError::Corrupt(format!(
                                    "blob {blob} not found for tree {parent}"
                                ))
                            })?;
                            totals.total_size += loc.plaintext_len() as u64;
                            totals.total_blob_count += 1;
                        }
                    }
                }
            }
            Ok(Visit::Continue(true))
        })
        .map_err(|e| EngineError::Corrupt(format!("walking tree {}: {e}", sn.tree)))
    }

    fn used_blobs(&mut self, repo: &Repository, root: BlobId) -> Result<()> {
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            if !self.blobs.insert((id, BlobType::Tree)) {
                continue;
            }
            let tree = repo.load_tree(&id)?;
            for n in &tree.nodes {
                match n.node_type {
                    NodeType::File => {
                        for b in n.content.iter().flatten() {
                            self.blobs.insert((*b, BlobType::Data));
                        }
                    }
                    NodeType::Dir => stack.extend(n.subtree),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The totals; in raw-data mode the collected blobs are counted now, at their stored
    /// (encrypted, possibly compressed) length.
    pub fn finish(mut self, repo: &Repository) -> Result<StatsTotals> {
        if self.mode == StatsMode::RawData {
            for (id, t) in &self.blobs {
                let loc = repo
                    .index()
                    .get(id, *t)
                    .ok_or_else(|| EngineError::Corrupt(format!("blob {id} not found")))?;
                self.totals.total_size += loc.length as u64;
                self.totals.total_blob_count += 1;
            }
        }
        Ok(self.totals)
    }
}
