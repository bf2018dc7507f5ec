//! restic's repository locks: a lock file per process, exclusive or shared, refreshed
//! every 5 minutes, stale after 30 minutes without refresh (or when its process on this
//! host is gone).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use restash_backend::{FileType, Handle};
use restash_format::{GoTime, Id, Lock};

use crate::events::{Control, Event, Phase};
use crate::{whoami, EngineError, Repository, Result};

/// restic refreshes its locks this often.
const REFRESH: Duration = Duration::from_secs(5 * 60);
/// A lock older than this without refresh is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// Whether `lock` is stale: not refreshed for 30 minutes, or held by a process of this
/// host that no longer exists.
pub fn is_stale(lock: &Lock) -> bool {
    let age = GoTime::now_local().unix_secs() - lock.time.unix_secs();
    if age > STALE_AFTER.as_secs() as i64 {
        return true;
    }
    if lock.hostname == whoami::host_name() && lock.pid > 0 {
        let alive = i32::try_from(lock.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .map(|pid| rustix::process::test_kill_process(pid).is_ok())
            .unwrap_or(false);
        return !alive;
    }
    false
}

fn describe(id: &Id, l: &Lock) -> String {
    format!(
        "lock {} was created at {} (exclusive: {}) by PID {} on {} by {}",
        id.short(),
        l.time,
        l.exclusive,
        l.pid,
        l.hostname,
        l.username
    )
}

/// Every lock but `own`, and the damaged ones (which decode to nothing) apart. A lock
/// removed between listing and reading is gone, not damaged; any other failure to read
/// one is an error, since the lock may be live.
#[allow(clippy::type_complexity)]
fn other_locks(repo: &Repository, own: &[Id]) -> Result<(Vec<(Id, Lock)>, Vec<(Id, EngineError)>)> {
    let mut out = Vec::new();
    let mut damaged = Vec::new();
    let ids: Vec<Id> = repo
        .list_ids(FileType::Lock)?
        .into_iter()
        .filter(|id| !own.contains(id))
        .collect();
    // A repository shared by many Jobs holds as many locks: read together, not in turn.
    let all = crate::ahead::map_io(&ids, |id| {
        repo.load_unpacked(FileType::Lock, id).and_then(|data| {
            Lock::from_json(&data).map_err(EngineError::format(format!("lock {}", id.short())))
        })
    });
    for (id, loaded) in ids.into_iter().zip(all) {
        match loaded {
            Ok(l) => out.push((id, l)),
            Err(EngineError::Backend {
                source: restash_backend::BackendError::NotFound(_),
                ..
            }) => {}
            Err(e @ EngineError::Backend { .. }) => return Err(e),
            Err(e) => damaged.push((id, e)),
        }
    }
    Ok((out, damaged))
}

struct Shared {
    id: Mutex<Id>,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// How an operation takes its lock: restic's `--no-lock` and `--retry-lock`, and the
/// in-pod agent's handling of locks that pods killed on vanished nodes left behind.
#[derive(Debug, Clone, Default)]
pub struct LockPolicy {
    /// Take no lock at all (`--no-lock`).
    pub skip: bool,
    /// How long to wait for other processes' locks to go; zero fails at once.
    pub wait: Duration,
    /// Remove other processes' stale locks before locking (each is reported).
    pub remove_stale: bool,
    /// Stale locks of other processes do not conflict.
    pub ignore_stale: bool,
}

impl LockPolicy {
    /// Whether a command that deletes (prune, forget) should work beside others' locks and
    /// take the exclusive lock only to delete: it was told to wait for locks, so it can
    /// wait for the others to end. Without a wait it refuses at once, as restic does.
    pub fn works_beside(&self) -> bool {
        !self.skip && !self.wait.is_zero()
    }
}

/// restic's pauses between two looks at a held lock: the first, and the longest.
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// A held lock. Dropping it (or [`RepoLock::release`]) removes the lock file.
pub struct RepoLock {
    backend: Arc<dyn restash_backend::Backend>,
    shared: Arc<Shared>,
    refresher: Option<JoinHandle<()>>,
    released: AtomicBool,
}

impl RepoLock {
    /// Takes the lock `policy` asks for (none with `skip`), as phase [`Phase::Lock`]:
    /// removes stale locks first if asked (an [`Event::ItemDone`] for each), then retries
    /// while another process holds a conflicting lock, for up to `policy.wait` (an
    /// [`Event::Blocked`] for each wait). A cancelled wait stops with the cancel's error.
    pub fn take(
        repo: &Repository,
        exclusive: bool,
        policy: &LockPolicy,
        ctl: &Control,
    ) -> Result<Option<RepoLock>> {
        Self::take_beside(repo, exclusive, policy, ctl, None)
    }

    /// Takes the exclusive lock while this shared one is held (the caller then releases
    /// this one): a command that worked beside others (prune's planning and repacking)
    /// waits for them to end, and never lets a conflicting lock in between. Two such
    /// commands waiting for each other both wait out `policy.wait`, and fail.
    pub fn exclusive_beside(
        &self,
        repo: &Repository,
        policy: &LockPolicy,
        ctl: &Control,
    ) -> Result<RepoLock> {
        let own = *self.shared.id.lock().expect("lock id");
        Ok(Self::take_beside(repo, true, policy, ctl, Some(own))?
            .expect("a lock is taken unless skipped"))
    }

    fn take_beside(
        repo: &Repository,
        exclusive: bool,
        policy: &LockPolicy,
        ctl: &Control,
        held: Option<Id>,
    ) -> Result<Option<RepoLock>> {
        if policy.skip && held.is_none() {
            return Ok(None);
        }
        ctl.phase(Phase::Lock, || {
            if policy.remove_stale {
                for removed in remove_stale(repo)? {
                    ctl.emit(Event::ItemDone {
                        kind: "lock",
                        action: "removed stale",
                        name: &removed,
                    });
                }
            }
            // restic's schedule: 5 s, doubling up to 60 s, never past the deadline.
            let deadline = std::time::Instant::now() + policy.wait;
            let mut pause = RETRY_FIRST;
            let mut first = true;
            loop {
                match RepoLock::acquire_beside(repo, exclusive, policy.ignore_stale, held) {
                    Ok(l) => return Ok(Some(l)),
                    Err(EngineError::Locked(why)) => {
                        let left = deadline.saturating_duration_since(std::time::Instant::now());
                        if left.is_zero() {
                            return Err(EngineError::Locked(why));
                        }
                        ctl.emit(Event::Blocked {
                            reason: &why,
                            wait: policy.wait,
                            first,
                        });
                        first = false;
                        ctl.cancel.sleep(pause.min(left))?;
                        pause = (pause * 2).min(RETRY_MAX);
                    }
                    Err(e) => return Err(e),
                }
            }
        })
    }

    /// Takes a lock like restic: refuse if a conflicting lock exists, write ours, wait
    /// 200 ms (not on a local file system), look again. With `ignore_stale`, stale locks
    /// of other processes do not conflict (restash's agent mode clears them; plain restic
    /// 0.14 does not).
    pub fn acquire(repo: &Repository, exclusive: bool, ignore_stale: bool) -> Result<RepoLock> {
        Self::acquire_beside(repo, exclusive, ignore_stale, None)
    }

    /// [`Self::acquire`], where the lock `held` (this process's own) does not conflict.
    fn acquire_beside(
        repo: &Repository,
        exclusive: bool,
        ignore_stale: bool,
        held: Option<Id>,
    ) -> Result<RepoLock> {
        let conflicts = |own: Option<&Id>| -> Result<()> {
            let own: Vec<Id> = own.into_iter().chain(held.as_ref()).copied().collect();
            let (locks, damaged) = other_locks(repo, &own)?;
            // Newer restic's rule: a lock that cannot be read may be somebody's live lock.
            if let Some((id, e)) = damaged.first() {
                return Err(EngineError::Locked(format!(
                    "lock {} cannot be read ({e}); if no backup or prune is running, \
                     `unlock` removes it",
                    id.short()
                )));
            }
            for (id, l) in locks {
                if (exclusive || l.exclusive) && !(ignore_stale && is_stale(&l)) {
                    return Err(EngineError::Locked(describe(&id, &l)));
                }
            }
            Ok(())
        };
        // restic looks for conflicting locks before it writes its own; both at once cost
        // one round trip instead of two, and a conflict found removes the lock again.
        let (id, sealed) = repo.seal_unpacked(&lock_json(exclusive));
        let (first_look, written) = crate::ahead::both(
            || conflicts(Some(&id)),
            || repo.write_sealed(FileType::Lock, &id, &sealed),
        );
        match (first_look, written) {
            (Ok(()), Ok(())) => {}
            (Err(e), Ok(())) => return Err(withdraw(repo, &id, e)),
            // Ours was not written: the conflict is what the user must hear first.
            (Err(e), Err(_)) | (Ok(()), Err(e)) => return Err(e),
        }
        // Two processes locking at once each see the other's lock in their second look,
        // once the store lists what was written: at once on a local file system, after a
        // moment (restic waits 200 ms) on object stores.
        if !repo.backend().lists_immediately() {
            std::thread::sleep(Duration::from_millis(200));
        }
        if let Err(e) = conflicts(Some(&id)) {
            return Err(withdraw(repo, &id, e));
        }
        // Whatever was listed ahead, before this lock, may predate the last writes and
        // deletions of a conflicting lock's holder that ended while we waited.
        repo.restart_listings();
        let shared = Arc::new(Shared {
            id: Mutex::new(id),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let refresher = {
            let shared = shared.clone();
            let key = repo.key().clone();
            let backend = repo.backend().clone();
            let version = repo.version();
            std::thread::Builder::new()
                .name("lock-refresh".into())
                .spawn(move || refresh_loop(shared, key, backend, version, exclusive))
                .map_err(EngineError::io("spawn lock refresher"))?
        };
        Ok(RepoLock {
            backend: repo.backend().clone(),
            shared,
            refresher: Some(refresher),
            released: AtomicBool::new(false),
        })
    }

    /// Removes the lock file now.
    pub fn release(&self) {
        if self.released.swap(true, Ordering::SeqCst) {
            return;
        }
        *self.shared.stop.lock().expect("lock state") = true;
        self.shared.wake.notify_all();
        let id = *self.shared.id.lock().expect("lock id");
        let _ = self.backend.remove(&Handle::new(FileType::Lock, id));
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        self.release();
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
    }
}

fn lock_json(exclusive: bool) -> Vec<u8> {
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    Lock {
        time: GoTime::now_local(),
        exclusive,
        hostname: whoami::host_name(),
        username: whoami::user_name(),
        pid: std::process::id() as i64,
        uid,
        gid,
    }
    .to_json()
}

/// Removes our lock after `conflict` refused it. A lock that cannot be removed stays in
/// the way of every later exclusive command until it goes stale, so the user hears of it
/// with the conflict.
fn withdraw(repo: &Repository, id: &Id, conflict: EngineError) -> EngineError {
    match repo.backend().remove(&Handle::new(FileType::Lock, *id)) {
        Ok(()) => conflict,
        Err(e) => match conflict {
            EngineError::Locked(msg) => EngineError::Locked(format!(
                "{msg}; and our own lock {} could not be removed: {e}; `unlock` removes it",
                id.short()
            )),
            other => other,
        },
    }
}

fn refresh_loop(
    shared: Arc<Shared>,
    key: restash_crypto::Key,
    backend: Arc<dyn restash_backend::Backend>,
    version: u32,
    exclusive: bool,
) {
    loop {
        let stop = shared.stop.lock().expect("lock state");
        let (stop, _) = shared
            .wake
            .wait_timeout_while(stop, REFRESH, |s| !*s)
            .expect("lock state");
        if *stop {
            return;
        }
        drop(stop);
        // New file first, then remove the old one: never a moment without a lock.
        let sealed = key.seal(&restash_format::encode_unpacked(
            version,
            &lock_json(exclusive),
        ));
        let new_id = Id::hash(&sealed);
        if backend
            .write(&Handle::new(FileType::Lock, new_id), &sealed)
            .is_ok()
        {
            let mut id = shared.id.lock().expect("lock id");
            let _ = backend.remove(&Handle::new(FileType::Lock, *id));
            *id = new_id;
        }
    }
}

/// Removes stale locks (or all with `all`) and damaged ones, which no process can be
/// refreshing; returns how many were removed.
pub fn unlock(repo: &Repository, all: bool) -> Result<usize> {
    let mut n = 0;
    let (locks, damaged) = other_locks(repo, &[])?;
    for (id, _) in damaged {
        repo.backend()
            .remove(&Handle::new(FileType::Lock, id))
            .map_err(EngineError::backend(format!("remove lock {}", id.short())))?;
        n += 1;
    }
    for (id, l) in locks {
        if all || is_stale(&l) {
            repo.backend()
                .remove(&Handle::new(FileType::Lock, id))
                .map_err(EngineError::backend(format!("remove lock {}", id.short())))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Removes the stale locks of other processes (as [`unlock`] does) and says, for each,
/// which lock it was and why it counted as stale. restash's in-pod agent calls this before
/// it locks, so a pod killed mid-backup on another node does not block every later run.
pub fn remove_stale(repo: &Repository) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let (locks, damaged) = other_locks(repo, &[])?;
    for (id, e) in damaged {
        repo.backend()
            .remove(&Handle::new(FileType::Lock, id))
            .map_err(EngineError::backend(format!("remove lock {}", id.short())))?;
        removed.push(format!("lock {}: damaged ({e})", id.short()));
    }
    for (id, l) in locks {
        if !is_stale(&l) {
            continue;
        }
        let age = GoTime::now_local().unix_secs() - l.time.unix_secs();
        let why = if age > STALE_AFTER.as_secs() as i64 {
            format!(
                "not refreshed for {} minutes (stale after {})",
                age / 60,
                STALE_AFTER.as_secs() / 60
            )
        } else {
            format!("its process {} on this host is gone", l.pid)
        };
        repo.backend()
            .remove(&Handle::new(FileType::Lock, id))
            .map_err(EngineError::backend(format!("remove lock {}", id.short())))?;
        removed.push(format!("{}: {why}", describe(&id, &l)));
    }
    Ok(removed)
}
