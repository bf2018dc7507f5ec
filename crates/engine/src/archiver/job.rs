//! A whole `backup` command as one operation: lock and index load together, the parent
//! chosen by name, the archiver, and the end of a run stopped by SIGTERM — which must not
//! outlast a Kubernetes pod's grace period even when uploads hang.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use restash_backend::FileType;

use super::{backup, BackupOptions, BackupSummary, Source};
use crate::events::Control;
use crate::{select_one, EngineError, LockPolicy, RepoLock, Repository, Result, SnapshotFilter};

/// Called when uploads outlast the grace period after SIGTERM, on the watchdog's thread,
/// with the lock already removed and [`EngineError::Abandoned`]: it reports and ends the
/// process (the backup's own thread is still waiting on its uploads).
/// It may also return: the run then ends with that error.
pub type OnAbandon = Arc<dyn Fn(&EngineError) + Send + Sync>;

/// What a backup run needs besides the archiver's options.
#[derive(Clone, Default)]
pub struct JobOptions {
    /// How to take the repository lock (never taken for a dry run).
    pub lock: LockPolicy,
    /// The parent by name (`latest` or an id prefix) instead of the latest snapshot of
    /// the same host and paths.
    pub parent: Option<String>,
    /// After [`crate::events::Cancel::terminate`], how long uploads already under way may
    /// finish before the lock is removed and the hook runs; packs that arrived are adopted
    /// by the next backup. `None` waits for them.
    pub term_grace: Option<(Duration, OnAbandon)>,
}

impl std::fmt::Debug for JobOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobOptions")
            .field("lock", &self.lock)
            .field("parent", &self.parent)
            .field("term_grace", &self.term_grace.as_ref().map(|(g, _)| g))
            .finish()
    }
}

/// How often the watchdog looks at the cancel token while the backup runs.
const WATCH: Duration = Duration::from_millis(100);

type Held = Arc<Mutex<Option<Arc<RepoLock>>>>;

fn release(held: &Held) {
    if let Some(lock) = held.lock().unwrap_or_else(|e| e.into_inner()).take() {
        lock.release();
    }
}

/// Who ends the run: the backup returning, or the watchdog giving up on it.
#[derive(Default)]
struct Ending {
    finished: bool,
    abandoned: bool,
    /// The abandon hook returned instead of ending the process.
    handed_back: bool,
}

/// Runs a backup of `source` into `repo`: takes the lock while the index loads (the lock
/// waits for other processes' new locks to show), resolves the parent, backs up on this
/// thread (where the key derivation's memory is reused), and removes the lock.
pub fn run(
    repo: &mut Repository,
    source: Source,
    mut opts: BackupOptions,
    job: &JobOptions,
    ctl: &Control,
) -> Result<BackupSummary> {
    if !opts.dry_run {
        // For the packs a killed run left unindexed, looked for once the lock is held.
        repo.list_ahead(FileType::Pack);
    }
    let policy = LockPolicy {
        skip: job.lock.skip || opts.dry_run,
        ..job.lock.clone()
    };
    let (lock, index) = repo.load_index_with(|repo| RepoLock::take(repo, false, &policy, ctl));
    let held: Held = Arc::new(Mutex::new(lock?.map(Arc::new)));
    let prepared = index.and_then(|()| {
        if let Some(spec) = &job.parent {
            opts.parent = Some(select_one(repo, spec, &SnapshotFilter::default(), ctl)?.0);
        }
        Ok(())
    });
    if let Err(e) = prepared {
        release(&held);
        return Err(e);
    }
    let ending = Arc::new(Mutex::new(Ending::default()));
    let (stop_watch, watching) = mpsc::channel::<()>();
    if let Some((grace, on_abandon)) = job.term_grace.clone() {
        let (cancel, held, ending) = (ctl.cancel.clone(), held.clone(), ending.clone());
        std::thread::Builder::new()
            .name("term-watchdog".into())
            .spawn(move || watchdog(&watching, &cancel, grace, &held, &ending, &on_abandon))
            .map_err(EngineError::io("spawn watchdog thread"))?;
    }
    let result = backup(repo, source, &opts, ctl);
    {
        let mut e = ending.lock().unwrap_or_else(|e| e.into_inner());
        // The watchdog is reporting and normally ends the process: this run's result no
        // longer counts.
        while e.abandoned && !e.handed_back {
            drop(e);
            std::thread::park_timeout(WATCH);
            e = ending.lock().unwrap_or_else(|e| e.into_inner());
        }
        if let (true, Some((grace, _))) = (e.abandoned, &job.term_grace) {
            return Err(EngineError::Abandoned { grace: *grace });
        }
        e.finished = true;
    }
    drop(stop_watch);
    release(&held);
    result
}

/// Waits for the backup to end; once the run is terminated, gives its uploads `grace`,
/// then removes the lock and hands over to `on_abandon`.
fn watchdog(
    watching: &mpsc::Receiver<()>,
    cancel: &crate::events::Cancel,
    grace: Duration,
    held: &Held,
    ending: &Mutex<Ending>,
    on_abandon: &OnAbandon,
) {
    let mut terminated_at: Option<Instant> = None;
    while let Err(RecvTimeoutError::Timeout) = watching.recv_timeout(WATCH) {
        if !cancel.is_terminated() {
            continue;
        }
        if terminated_at.get_or_insert_with(Instant::now).elapsed() < grace {
            continue;
        }
        {
            let mut e = ending.lock().unwrap_or_else(|e| e.into_inner());
            if e.finished {
                return;
            }
            e.abandoned = true;
        }
        release(held);
        on_abandon(&EngineError::Abandoned { grace });
        ending.lock().unwrap_or_else(|e| e.into_inner()).handed_back = true;
        return;
    }
}
