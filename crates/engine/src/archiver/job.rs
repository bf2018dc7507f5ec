//! A whole `backup` command as one operation: lock and index load together, the parent
//! chosen by name, the archiver, and the end of a run stopped by SIGTERM — which must not
//! outlast a Kubernetes pod's grace period even when uploads hang.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use restash_backend::FileType;

use super::{backup_hinted, BackupOptions, BackupSummary, Source};
use crate::ahead::both;
use crate::events::{Cancel, Control};
use crate::hints;
use crate::{select_one, EngineError, LockPolicy, RepoLock, Repository, Result, SnapshotFilter};

/// Called when uploads outlast the grace period after SIGTERM, on the watchdog's thread,
/// with the lock already removed and [`EngineError::Abandoned`]: it reports and ends the
/// process (the backup's thread is still waiting on its uploads). It may also return: the
/// run then ends with that error.
pub type OnAbandon = Arc<dyn Fn(&EngineError) + Send + Sync>;

/// What a backup run needs besides the archiver's options.
#[derive(Clone, Default)]
pub struct JobOptions {
    /// How to take the repository lock (never taken for a dry run).
    pub lock: LockPolicy,
    /// The parent by name (`latest` or an id prefix) instead of the latest snapshot of
    /// the same host and paths.
    pub parent: Option<String>,
    /// Gives up on uploads that outlast a grace period after SIGTERM; `None` waits for
    /// them.
    pub watchdog: Option<Watchdog>,
    /// Find the parent by its parent hint and write one for the new snapshot (see
    /// the engine's `hints` module); ignored for `--stdin` and dry runs, and where the store keeps no
    /// hints.
    pub parent_hints: bool,
}

impl std::fmt::Debug for JobOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobOptions")
            .field("lock", &self.lock)
            .field("parent", &self.parent)
            .field("parent_hints", &self.parent_hints)
            .field("watchdog", &self.watchdog.as_ref().map(|w| w.grace))
            .finish()
    }
}

/// How often the watchdog looks at the cancel token.
const WATCH: Duration = Duration::from_millis(100);

/// Who ends the run: the backup returning, or the watchdog giving up on it.
#[derive(Default)]
struct Ending {
    finished: bool,
    abandoned: bool,
    /// The abandon hook returned instead of ending the process.
    handed_back: bool,
}

#[derive(Default)]
struct Watched {
    held: Mutex<Option<Arc<RepoLock>>>,
    ending: Mutex<Ending>,
}

impl Watched {
    fn release(&self) {
        if let Some(lock) = lock(&self.held).take() {
            lock.release();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Watches a run's cancel token: once the run is terminated, its uploads get `grace` to
/// finish; then the lock is removed and `on_abandon` runs (packs that arrived are adopted
/// by the next backup).
///
/// Start it before the repository is opened, as the command line does: a thread started
/// after the key derivation made a small backup's peak memory 4-5 MiB higher (malloc's
/// per-thread arenas), one started before costs nothing measurable. It also covers a
/// SIGTERM that comes while the repository is being opened.
#[derive(Clone)]
pub struct Watchdog {
    grace: Duration,
    watched: Arc<Watched>,
    thread: std::thread::Thread,
}

impl Watchdog {
    /// Starts watching `cancel`.
    pub fn start(cancel: Cancel, grace: Duration, on_abandon: OnAbandon) -> Result<Watchdog> {
        let watched = Arc::new(Watched::default());
        let w = watched.clone();
        let handle = std::thread::Builder::new()
            .name("term-watchdog".into())
            .spawn(move || watch(&cancel, grace, &w, &on_abandon))
            .map_err(EngineError::io("spawn watchdog thread"))?;
        Ok(Watchdog {
            grace,
            watched,
            thread: handle.thread().clone(),
        })
    }
}

fn watch(cancel: &Cancel, grace: Duration, w: &Watched, on_abandon: &OnAbandon) {
    let mut terminated_at: Option<Instant> = None;
    loop {
        // Parked between looks: the thread allocates nothing while it waits.
        std::thread::park_timeout(WATCH);
        if lock(&w.ending).finished {
            return;
        }
        if !cancel.is_terminated()
            || terminated_at.get_or_insert_with(Instant::now).elapsed() < grace
        {
            continue;
        }
        {
            let mut e = lock(&w.ending);
            if e.finished {
                return;
            }
            e.abandoned = true;
        }
        w.release();
        on_abandon(&EngineError::Abandoned { grace });
        lock(&w.ending).handed_back = true;
        return;
    }
}

/// Takes the lock while the index loads, then makes sure the index is one the lock
/// protects. The index files were read before the lock was held: a prune holding its
/// exclusive lock meanwhile (one this lock waited for, or one that ended just before this
/// lock looked) may have replaced them and deleted the packs they name, and a backup
/// trusting them would store snapshots whose blobs are gone. So, under the lock, the index
/// files are listed again, and read again (as listed then) if they changed or the first
/// read failed. With `list_packs`, the packs are listed ahead from the moment the lock is
/// held: a listing started before it would be started again when it is taken.
/// Returns the lock's result first, as a caller reports it first.
fn lock_and_load_index(
    repo: &mut Repository,
    policy: &LockPolicy,
    ctl: &Control,
    list_packs: bool,
) -> (Result<Option<RepoLock>>, Result<()>) {
    let this = &*repo;
    let (read, taken) = both(
        || this.read_index_files(),
        || {
            let taken = RepoLock::take(this, false, policy, ctl);
            if list_packs && taken.is_ok() {
                this.list_ahead(FileType::Pack);
            }
            taken
        },
    );
    let loaded = match (read, &taken) {
        // Without a lock (a dry run, `--no-lock`, or taking it failed), the index as read.
        (read, Ok(None) | Err(_)) => read.map(|(index, _)| index),
        (read, Ok(Some(_))) => repo.list_ids(FileType::Index).and_then(|now| match read {
            Ok((index, ids)) if ids == now => Ok(index),
            _ => repo.read_index_of(&now),
        }),
    };
    (taken, loaded.map(|index| repo.set_index(index)))
}

/// Takes the lock while the group's hints are listed and read; under the lock, checks the
/// newest against the repository when `paths` (the backup's) are given, and loads the
/// hint's index if it holds, the whole index otherwise. Returns the lock's result first.
fn lock_and_find_hint(
    repo: &mut Repository,
    policy: &LockPolicy,
    ctl: &Control,
    group: restash_format::HintGroup,
    host: &str,
    paths: Option<&Vec<String>>,
) -> (Result<Option<RepoLock>>, Result<()>, Option<hints::Plan>) {
    let this = &*repo;
    let (found, taken) = both(
        || hints::find(this, group),
        || RepoLock::take(this, false, policy, ctl),
    );
    if taken.is_err() {
        return (taken, Ok(()), None);
    }
    let found = found.unwrap_or_else(|e| {
        ctl.warn(&format!(
            "parent hints cannot be listed ({e}): reading every snapshot and the whole index"
        ));
        hints::Found {
            group,
            listed: Vec::new(),
            newest: None,
            unreadable: Vec::new(),
        }
    });
    for u in &found.unreadable {
        ctl.warn(&format!("parent hint {u}: not used"));
    }
    let mut parent = None;
    if let (Some(paths), Some((_, h))) = (paths, &found.newest) {
        match hints::check(this, h, host, paths) {
            Ok(Ok(snap)) => {
                ctl.say(
                    2,
                    &format!("parent snapshot {} found by its hint", h.snapshot.short()),
                );
                parent = Some((h.snapshot, snap));
            }
            Ok(Err(why)) => ctl.say(2, &format!("parent hint not used: {why}")),
            Err(e) => return (taken, Err(e), None),
        }
    }
    let loaded = match (&parent, &found.newest) {
        (Some(_), Some((_, h))) => {
            repo.set_index(hints::index_of(h));
            Ok(())
        }
        _ => {
            repo.list_ahead(FileType::Pack);
            repo.load_index()
        }
    };
    (taken, loaded, Some(hints::Plan { found, parent }))
}

/// Runs a backup of `source` into `repo`: takes the lock while the index loads (the lock
/// waits for other processes' new locks to show), resolves the parent, backs up on this
/// thread, and removes the lock.
pub fn run(
    repo: &mut Repository,
    source: Source,
    mut opts: BackupOptions,
    job: &JobOptions,
    ctl: &Control,
) -> Result<BackupSummary> {
    let policy = LockPolicy {
        skip: job.lock.skip || opts.dry_run,
        ..job.lock.clone()
    };
    let watched = job
        .watchdog
        .as_ref()
        .map_or_else(|| Arc::new(Watched::default()), |w| w.watched.clone());
    let group = match &source {
        Source::Paths(p) if job.parent_hints && !opts.dry_run => super::plan::plan(p)
            .ok()
            .and_then(|plan| Some((hints::group(repo, &opts.host, &plan.paths)?, plan.paths))),
        _ => None,
    };
    let (taken, index, hinted) = match group {
        Some((group, paths)) => {
            let use_it = !opts.force && opts.parent.is_none() && job.parent.is_none();
            let paths = use_it.then_some(&paths);
            lock_and_find_hint(repo, &policy, ctl, group, &opts.host, paths)
        }
        // The packs are listed for those a killed run left unindexed, looked for once the
        // lock is held.
        None => {
            let (taken, index) = lock_and_load_index(repo, &policy, ctl, !opts.dry_run);
            (taken, index, None)
        }
    };
    *lock(&watched.held) = taken?.map(Arc::new);
    let prepared = index.and_then(|()| {
        if let Some(spec) = &job.parent {
            opts.parent = Some(select_one(repo, spec, &SnapshotFilter::default(), ctl)?.0);
        }
        Ok(())
    });
    let result = prepared.and_then(|()| backup_hinted(repo, source, &opts, ctl, hinted.as_ref()));
    {
        let mut e = lock(&watched.ending);
        // The watchdog is reporting and normally ends the process: this run's result no
        // longer counts.
        while e.abandoned && !e.handed_back {
            drop(e);
            std::thread::park_timeout(WATCH);
            e = lock(&watched.ending);
        }
        if let (true, Some(w)) = (e.abandoned, &job.watchdog) {
            return Err(EngineError::Abandoned { grace: w.grace });
        }
        e.finished = true;
    }
    if let Some(w) = &job.watchdog {
        w.thread.unpark();
    }
    watched.release();
    result
}
