//! Work started before it is needed, so that round trips to a distant store overlap
//! instead of adding up: listings fetched while the key is derived, downloads spread over
//! more threads than there are cores.
//!
//! Over a wide-area link every request costs a round trip (50 ms and more) whatever its
//! size, and deriving the key costs a few hundred milliseconds of one core. A command that
//! asks for these one after another waits for the sum; started together, for the longest.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use restash_backend::{Backend, BackendError, FileInfo, FileType, Handle, Leftover};

/// Requests in flight for downloads that each wait mostly on the network (snapshot and
/// index files, trees): as many as restic's default connection count and more than the
/// cores a pod has, so a round trip is shared by several files. The stores bound their own
/// connections below this.
pub(crate) const IO_THREADS: usize = 8;

/// Maps `f` over `items` on up to [`IO_THREADS`] threads, keeping the order. For work
/// that waits on the network: rayon's pool has one thread per core and would fetch only
/// two files per round trip on a two-core pod.
pub(crate) fn map_io<T, R, F>(items: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    if items.len() <= 1 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let threads = IO_THREADS.min(items.len());
    let mut done: Vec<(usize, R)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return out;
                        };
                        out.push((i, f(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| match w.join() {
                Ok(out) => out,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Runs `a` on another thread while `b` runs on this one, and returns both results: two
/// waits on the store that do not depend on each other cost one round trip. A panic in
/// `a` is raised here.
pub(crate) fn both<A, B>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B)
where
    A: Send,
{
    std::thread::scope(|s| {
        let a = s.spawn(a);
        let b = b();
        match a.join() {
            Ok(a) => (a, b),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

type Listing = Result<Vec<FileInfo>, BackendError>;

/// A layer that lists some file types ahead: [`ListAhead::start`] begins a listing on its
/// own thread, and the next `list` of that type takes its result instead of asking again.
/// Each started listing answers exactly one `list`, so a later listing (after a write, or
/// locks looked at twice) always goes to the store.
pub(crate) struct ListAhead {
    inner: Arc<dyn Backend>,
    pending: Mutex<HashMap<FileType, JoinHandle<Listing>>>,
}

impl ListAhead {
    pub(crate) fn new(inner: Arc<dyn Backend>) -> ListAhead {
        ListAhead {
            inner,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Starts listing `t` now. A listing of `t` already under way is kept.
    pub(crate) fn start(&self, t: FileType) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.contains_key(&t) {
            return;
        }
        self.spawn(&mut pending, t);
    }

    fn spawn(&self, pending: &mut HashMap<FileType, JoinHandle<Listing>>, t: FileType) {
        let inner = self.inner.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("list-{}", t.dir()))
            .spawn(move || inner.list(t));
        // Without a thread the listing simply happens when it is asked for.
        if let Ok(handle) = spawned {
            pending.insert(t, handle);
        }
    }

    /// Starts every listing not yet taken again, from now. Called once a lock is held: a
    /// listing from before may predate what the previous holder of a conflicting lock
    /// wrote or deleted (a prune's new index, a backup's last index and snapshot), and a
    /// prune or backup trusting it would delete or skip data that is needed. The listings
    /// dropped finish on their own threads, unread.
    pub(crate) fn restart(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for t in std::mem::take(&mut *pending).into_keys() {
            self.spawn(&mut pending, t);
        }
    }

    fn take(&self, t: FileType) -> Option<JoinHandle<Listing>> {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&t)
    }
}

impl Backend for ListAhead {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> Result<(), BackendError> {
        self.inner.create()
    }
    fn read(&self, h: &Handle) -> Result<Vec<u8>, BackendError> {
        self.inner.read(h)
    }
    fn read_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        self.inner.read_range_into(h, offset, length, buf)
    }
    fn read_metadata_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        self.inner.read_metadata_range_into(h, offset, length, buf)
    }
    fn preferred_read_size(&self) -> u64 {
        self.inner.preferred_read_size()
    }
    fn lists_immediately(&self) -> bool {
        self.inner.lists_immediately()
    }
    fn write(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        // A listing started before this write may miss the new file.
        drop(self.take(h.file_type()));
        self.inner.write(h, data)
    }
    fn stat(&self, h: &Handle) -> Result<u64, BackendError> {
        self.inner.stat(h)
    }
    fn remove(&self, h: &Handle) -> Result<(), BackendError> {
        drop(self.take(h.file_type()));
        self.inner.remove(h)
    }
    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, BackendError> {
        match self.take(t).map(JoinHandle::join) {
            Some(Ok(listing)) => listing,
            // The listing thread panicked: ask again here, where a panic is reported.
            Some(Err(_)) | None => self.inner.list(t),
        }
    }
    fn list_group(&self, t: FileType, group: &str) -> Result<Vec<FileInfo>, BackendError> {
        self.inner.list_group(t, group)
    }

    fn keeps(&self, t: FileType) -> bool {
        self.inner.keeps(t)
    }

    fn list_leftovers(&self) -> Result<Vec<Leftover>, BackendError> {
        self.inner.list_leftovers()
    }
    fn remove_leftover(&self, leftover: &Leftover) -> Result<(), BackendError> {
        self.inner.remove_leftover(leftover)
    }
    fn exists(&self, h: &Handle) -> Result<bool, BackendError> {
        self.inner.exists(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use restash_backend::MemoryBackend;

    fn snap(n: u8) -> Handle {
        Handle::new(FileType::Snapshot, restash_format::Id([n; 32]))
    }

    #[test]
    fn map_io_keeps_order_and_runs_in_parallel() {
        let items: Vec<u32> = (0..100).collect();
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let out = map_io(&items, |i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(2));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) > 1);
    }

    /// A layer whose listing of snapshots ahead finished with one snapshot, and a second
    /// snapshot written behind its back after that (by another process).
    fn listed_ahead_then_written_behind() -> ListAhead {
        let mem = Arc::new(MemoryBackend::new());
        mem.create().unwrap();
        mem.write(&snap(1), b"one").unwrap();
        let ahead = ListAhead::new(mem.clone());
        ahead.start(FileType::Snapshot);
        while !ahead.pending.lock().unwrap()[&FileType::Snapshot].is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        mem.write(&snap(2), b"two").unwrap();
        ahead
    }

    #[test]
    fn a_listing_ahead_answers_once_and_writes_invalidate_it() {
        // Only the listing after the one ahead sees what was written behind its back.
        let ahead = listed_ahead_then_written_behind();
        assert_eq!(ahead.list(FileType::Snapshot).unwrap().len(), 1);
        assert_eq!(ahead.list(FileType::Snapshot).unwrap().len(), 2);

        // A write through the layer drops the listing started before it.
        ahead.start(FileType::Snapshot);
        ahead.write(&snap(3), b"three").unwrap();
        assert_eq!(ahead.list(FileType::Snapshot).unwrap().len(), 3);
    }

    #[test]
    fn a_restarted_listing_sees_what_was_written_before_the_restart() {
        // Another process writes while this one waits for its lock.
        let ahead = listed_ahead_then_written_behind();
        ahead.restart();
        assert_eq!(ahead.list(FileType::Snapshot).unwrap().len(), 2);
        // Nothing pending: nothing started.
        ahead.restart();
        assert!(ahead.pending.lock().unwrap().is_empty());
    }

    #[test]
    fn conformance() {
        let ahead = ListAhead::new(Arc::new(MemoryBackend::new()));
        ahead.start(FileType::Snapshot);
        restash_backend::conformance::run(&ahead).unwrap();
    }
}
