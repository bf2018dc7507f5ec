//! What the pages show, read from the repository: the snapshot list (re-read when it may
//! have changed), per-tree file totals (trees never change, so they are counted once),
//! and the volumes: one row per host.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use restash_engine::events::Cancel;
use restash_engine::totals::TreeTotals;
use restash_engine::{EngineError, Repository, SnapshotEntry, Snapshots};
use restash_format::{BlobId, GoTime, Snapshot, SnapshotId};

pub use restash_engine::totals::Totals;

/// One host's backups, as the volumes page shows them.
#[derive(Debug, Clone)]
pub struct Volume {
    /// The snapshots' host name (one per PVC for the manifests' Jobs).
    pub host: String,
    /// The newest snapshot.
    pub last_id: SnapshotId,
    /// When it was taken.
    pub last_time: GoTime,
    /// Seconds since then (never negative).
    pub age_secs: u64,
    /// Snapshots of this host.
    pub count: usize,
    /// Files and bytes of the newest snapshot, or why they could not be counted.
    pub totals: Result<Totals, String>,
    /// Bytes over time: (unix seconds, bytes) for each snapshot that could be counted.
    pub series: Vec<(i64, u64)>,
    /// Every tag of the host's snapshots.
    pub tags: Vec<String>,
    /// The newest backup is older than the threshold.
    pub stale: bool,
    /// The newest backup could not read every file.
    pub partial: bool,
}

enum IndexState {
    Unloaded,
    Loaded,
    // New snapshots were seen: their blobs need the index re-read.
    Stale,
    // Re-read, waiting for the downloads that hold the repository to end.
    Pending(restash_engine::MasterIndex),
}

/// The repository as the server reads it.
pub struct Library {
    repo: RwLock<Repository>,
    index: Mutex<IndexState>,
    snapshots: Mutex<Option<(Arc<Snapshots>, Instant)>>,
    totals: TreeTotals,
    warned: Mutex<HashSet<SnapshotId>>,
    refresh_every: Duration,
    warn: Box<dyn Fn(&str) + Send + Sync>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic in one request must not poison every later one.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Library {
    /// Serves `repo`; the snapshot list is re-read at most every `refresh_every`. `warn`
    /// receives what the operator must learn about (unreadable snapshots or trees).
    pub fn new(
        repo: Repository,
        refresh_every: Duration,
        warn: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Library {
        Library {
            repo: RwLock::new(repo),
            index: Mutex::new(IndexState::Unloaded),
            snapshots: Mutex::new(None),
            totals: TreeTotals::new(),
            warned: Mutex::new(HashSet::new()),
            refresh_every,
            warn,
        }
    }

    /// The repository, for reads.
    pub fn repo(&self) -> std::sync::RwLockReadGuard<'_, Repository> {
        self.repo.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the index the first time a tree or a file is needed (the volumes page of a
    /// repository whose snapshots carry their summaries needs none), and again once new
    /// snapshots were seen. A download in progress holds the repository for reading for
    /// as long as it streams; rather than stall every page behind it, a re-read index is
    /// swapped in only when the repository is free, and the next request tries again.
    pub fn need_index(&self) -> Result<(), EngineError> {
        let mut state = lock(&self.index);
        let index = match std::mem::replace(&mut *state, IndexState::Loaded) {
            IndexState::Loaded => return Ok(()),
            IndexState::Unloaded => {
                let index = self.repo().read_index();
                let index = index.inspect_err(|_| *state = IndexState::Unloaded)?;
                self.repo
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .set_index(index);
                return Ok(());
            }
            IndexState::Stale => {
                let index = self.repo().read_index();
                index.inspect_err(|_| *state = IndexState::Stale)?
            }
            IndexState::Pending(index) => index,
        };
        match self.repo.try_write() {
            Ok(mut repo) => repo.set_index(index),
            // Read once; swapped in by a later request.
            Err(_) => *state = IndexState::Pending(index),
        }
        Ok(())
    }

    /// The snapshot list, re-listed when older than the refresh interval (only new
    /// snapshot files are read). New snapshots bring new blobs, so a loaded index is
    /// re-read with them.
    pub fn snapshots(&self) -> Result<Arc<Snapshots>, EngineError> {
        let mut cached = lock(&self.snapshots);
        if let Some((s, at)) = cached.as_ref() {
            if at.elapsed() < self.refresh_every {
                return Ok(s.clone());
            }
        }
        let fresh = match cached.as_ref() {
            Some((old, _)) => old.reload(&self.repo())?,
            None => Snapshots::load(&self.repo())?,
        };
        for w in fresh.load_warnings() {
            (self.warn)(&w);
        }
        let changed = cached.as_ref().is_none_or(|(old, _)| {
            let ids = |s: &Snapshots| s.readable().iter().map(|e| e.0).collect::<Vec<_>>();
            ids(old) != ids(&fresh)
        });
        if changed && cached.is_some() {
            let mut state = lock(&self.index);
            if matches!(*state, IndexState::Loaded | IndexState::Pending(_)) {
                *state = IndexState::Stale;
            }
        }
        let fresh = Arc::new(fresh);
        *cached = Some((fresh.clone(), Instant::now()));
        Ok(fresh)
    }

    /// The snapshot with this id (or unique prefix).
    pub fn snapshot(&self, id: &str) -> Result<SnapshotEntry, EngineError> {
        Ok(self.snapshots()?.find_prefix(id)?.clone())
    }

    /// Files and bytes below `tree`, each distinct subtree counted once per process.
    pub fn tree_totals(&self, tree: &BlobId) -> Result<Totals, EngineError> {
        self.need_index()?;
        // Page requests are not cancelled: a count ends with the request's worker.
        self.totals.of(&self.repo(), tree, &Cancel::new())
    }

    /// A snapshot's files and bytes: restic 0.17's summary when the snapshot has one,
    /// else counted from its tree.
    pub fn snapshot_totals(&self, snap: &Snapshot) -> Result<Totals, EngineError> {
        if let Some(s) = &snap.summary {
            return Ok(Totals {
                files: s.total_files_processed,
                bytes: s.total_bytes_processed,
            });
        }
        self.tree_totals(&snap.tree)
    }

    /// Reports what the operator must learn about.
    pub fn warn(&self, what: &str) {
        (self.warn)(what);
    }

    // A snapshot that cannot be counted is said once, not at every page view.
    fn warn_once(&self, id: SnapshotId, what: &str) {
        if lock(&self.warned).insert(id) {
            (self.warn)(what);
        }
    }

    /// One row per host, by host name; `stale_after` flags old newest backups.
    pub fn volumes(
        &self,
        now: SystemTime,
        stale_after: Duration,
    ) -> Result<Vec<Volume>, EngineError> {
        let all = self.snapshots()?;
        let mut hosts: BTreeMap<&str, Vec<&SnapshotEntry>> = BTreeMap::new();
        for e in all.readable() {
            hosts.entry(e.1.hostname.as_str()).or_default().push(e);
        }
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut out = Vec::with_capacity(hosts.len());
        for (host, snaps) in hosts {
            // `readable` is oldest first, so each host's list is too.
            let (last_id, last) = snaps[snaps.len() - 1];
            let counted: Vec<Result<Totals, String>> = snaps
                .iter()
                .map(|(id, s)| {
                    self.snapshot_totals(s).map_err(|e| {
                        let msg = format!("snapshot {} of {host}: {e}", id.short());
                        self.warn_once(*id, &format!("cannot count files of {msg}"));
                        msg
                    })
                })
                .collect();
            let series = snaps
                .iter()
                .zip(&counted)
                .filter_map(|((_, s), t)| Some((s.time.unix_secs(), t.as_ref().ok()?.bytes)))
                .collect();
            let totals = counted[counted.len() - 1].clone();
            let mut tags: Vec<String> = snaps.iter().flat_map(|(_, s)| s.tags.clone()).collect();
            tags.sort();
            tags.dedup();
            let age_secs = (now - last.time.unix_secs()).max(0) as u64;
            out.push(Volume {
                host: host.to_string(),
                last_id: *last_id,
                last_time: last.time,
                age_secs,
                count: snaps.len(),
                totals,
                series,
                tags,
                stale: age_secs > stale_after.as_secs(),
                partial: last.tags.iter().any(|t| t == restash_engine::PARTIAL_TAG),
            });
        }
        Ok(out)
    }
}
