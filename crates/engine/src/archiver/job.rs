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

/// What a backup run needs besides the archiver's options.
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    /// How to take the repository lock (never taken for a dry run).
    pub lock: LockPolicy,
    /// The parent by name (`latest` or an id prefix) instead of the latest snapshot of
    /// the same host and paths.
    pub parent: Option<String>,
    /// After [`crate::events::Cancel::terminate`], how long uploads already under way may
    /// finish; after that the run returns [`EngineError::Abandoned`] with the lock removed
    /// (packs that arrived are adopted by the next backup). `None` waits for them.
    pub term_grace: Option<Duration>,
}

/// How often the waiting caller looks at the cancel token while the backup runs.
const WATCH: Duration = Duration::from_millis(100);

type Held = Arc<Mutex<Option<Arc<RepoLock>>>>;

fn release(held: &Held) {
    if let Some(lock) = held.lock().unwrap_or_else(|e| e.into_inner()).take() {
        lock.release();
    }
}

/// Runs a backup of `source` into `repo`: takes the lock while the index loads (the lock
/// waits for other processes' new locks to show), resolves the parent, backs up, and
/// removes the lock. The repository is moved into the run because a run abandoned after
/// SIGTERM leaves its uploads behind on their own thread.
pub fn run(
    mut repo: Repository,
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
            opts.parent = Some(select_one(&repo, spec, &SnapshotFilter::default(), ctl)?.0);
        }
        Ok(())
    });
    if let Err(e) = prepared {
        release(&held);
        return Err(e);
    }

    let (tx, rx) = mpsc::channel();
    let worker_ctl = ctl.clone();
    let worker = std::thread::Builder::new()
        .name("backup".into())
        .spawn(move || {
            let r = backup(&mut repo, source, &opts, &worker_ctl);
            let _ = tx.send(r);
        })
        .map_err(EngineError::io("spawn backup thread"))?;
    let mut terminated_at: Option<Instant> = None;
    let result = loop {
        match rx.recv_timeout(WATCH) {
            Ok(r) => break r,
            Err(RecvTimeoutError::Disconnected) => match worker.join() {
                Err(panic) => {
                    release(&held);
                    std::panic::resume_unwind(panic)
                }
                Ok(()) => break Err(EngineError::Interrupted),
            },
            Err(RecvTimeoutError::Timeout) => {
                let (Some(grace), true) = (job.term_grace, ctl.cancel.is_terminated()) else {
                    continue;
                };
                if terminated_at.get_or_insert_with(Instant::now).elapsed() >= grace {
                    // The worker goes on with its uploads until the process ends.
                    break Err(EngineError::Abandoned { grace });
                }
            }
        }
    };
    release(&held);
    result
}
