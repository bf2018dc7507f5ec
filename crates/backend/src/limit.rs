//! A layer that caps how hard any backend is used: how many requests are in flight at
//! once, and how many bytes per second go up and come down (restic's `--limit-upload` and
//! `--limit-download`).
//!
//! The trait is synchronous and shared by plain threads, so the layer uses std's `Mutex`
//! and `Condvar` and sleeps the calling thread; it needs no runtime.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::{Backend, BackendError, FileInfo, FileType, Handle, Leftover};

/// What a [`LimitedBackend`] allows. Zero in any field means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Most requests (reads, writes, stats, listings, removes) in flight at once.
    pub max_in_flight: usize,
    /// Upload rate in bytes per second.
    pub upload_bytes_per_sec: u64,
    /// Download rate in bytes per second.
    pub download_bytes_per_sec: u64,
}

impl Limits {
    /// Rates as restic's flags give them: KiB/s (1 KiB = 1024 bytes), 0 for unlimited.
    pub fn from_kib_per_sec(upload_kib: u64, download_kib: u64) -> Limits {
        Limits {
            max_in_flight: 0,
            upload_bytes_per_sec: upload_kib.saturating_mul(1024),
            download_bytes_per_sec: download_kib.saturating_mul(1024),
        }
    }

    /// True when nothing is limited, so wrapping would only add overhead.
    pub fn is_unlimited(&self) -> bool {
        *self == Limits::default()
    }
}

// A panicking thread cannot leave these counters half-updated (each update is one
// assignment), so a poisoned lock is still good to use.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A counting semaphore.
struct Slots {
    max: usize,
    used: Mutex<usize>,
    freed: Condvar,
}

struct Slot<'a>(&'a Slots);

impl Slots {
    fn acquire(&self) -> Slot<'_> {
        let mut used = lock(&self.used);
        while *used >= self.max {
            used = self
                .freed
                .wait(used)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *used += 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *lock(&self.0.used) -= 1;
        self.0.freed.notify_one();
    }
}

/// A token bucket shared by every thread using one direction.
struct Bucket {
    bytes_per_sec: f64,
    piece: u64,
    state: Mutex<BucketState>,
}

struct BucketState {
    /// Bytes that may pass now; negative while earlier reservations are still being paid.
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(bytes_per_sec: u64) -> Bucket {
        // About 1/20 s of transfer per piece: threads take turns often enough to share the
        // rate evenly, and even at 1 KiB/s no single sleep lasts more than a few seconds.
        let piece = (bytes_per_sec / 20).clamp(4 << 10, 1 << 20);
        Bucket {
            bytes_per_sec: bytes_per_sec as f64,
            piece,
            // Empty at the start, so the first transfer is held to the rate too.
            state: Mutex::new(BucketState {
                tokens: 0.0,
                last: Instant::now(),
            }),
        }
    }

    /// Blocks until `bytes` may pass. Each piece is reserved at once (the balance may go
    /// negative) and paid for by sleeping outside the lock; concurrent callers interleave
    /// their pieces and so each get a fair share of the rate.
    fn charge(&self, bytes: u64) {
        let mut left = bytes;
        while left > 0 {
            let n = left.min(self.piece);
            left -= n;
            let wait = {
                let mut s = lock(&self.state);
                let now = Instant::now();
                let refill = now.duration_since(s.last).as_secs_f64() * self.bytes_per_sec;
                // Idle time buys at most one piece of burst.
                s.tokens = (s.tokens + refill).min(self.piece as f64);
                s.last = now;
                s.tokens -= n as f64;
                if s.tokens < 0.0 {
                    Duration::from_secs_f64(-s.tokens / self.bytes_per_sec)
                } else {
                    Duration::ZERO
                }
            };
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
    }
}

/// Wraps a backend and holds it to [`Limits`]. Uploads are charged before the inner
/// `write` and downloads after the inner read returns; a request waiting for bandwidth
/// does not occupy one of the in-flight slots.
pub struct LimitedBackend {
    inner: Arc<dyn Backend>,
    slots: Option<Slots>,
    upload: Option<Bucket>,
    download: Option<Bucket>,
}

impl LimitedBackend {
    /// `inner`, limited to `limits`.
    pub fn new(inner: Arc<dyn Backend>, limits: Limits) -> LimitedBackend {
        let bucket = |rate: u64| (rate > 0).then(|| Bucket::new(rate));
        LimitedBackend {
            inner,
            slots: (limits.max_in_flight > 0).then(|| Slots {
                max: limits.max_in_flight,
                used: Mutex::new(0),
                freed: Condvar::new(),
            }),
            upload: bucket(limits.upload_bytes_per_sec),
            download: bucket(limits.download_bytes_per_sec),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    /// Runs one request of the inner backend in an in-flight slot.
    fn request<T>(&self, f: impl FnOnce(&dyn Backend) -> T) -> T {
        let _slot = self.slots.as_ref().map(Slots::acquire);
        f(self.inner.as_ref())
    }

    fn charge_download(&self, bytes: usize) {
        if let Some(b) = &self.download {
            b.charge(bytes as u64);
        }
    }
}

impl std::fmt::Debug for LimitedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitedBackend")
            .field("inner", &self.inner.location())
            .field("max_in_flight", &self.slots.as_ref().map(|s| s.max))
            .field("upload", &self.upload.as_ref().map(|b| b.bytes_per_sec))
            .field("download", &self.download.as_ref().map(|b| b.bytes_per_sec))
            .finish()
    }
}

// Every method, provided ones included, goes to the inner backend explicitly: a default
// left in place would silently replace the inner backend's own behaviour.
impl Backend for LimitedBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> Result<(), BackendError> {
        self.request(|be| be.create())
    }

    fn read(&self, h: &Handle) -> Result<Vec<u8>, BackendError> {
        let data = self.request(|be| be.read(h))?;
        self.charge_download(data.len());
        Ok(data)
    }

    fn read_range(&self, h: &Handle, offset: u64, length: u64) -> Result<Vec<u8>, BackendError> {
        let data = self.request(|be| be.read_range(h, offset, length))?;
        self.charge_download(data.len());
        Ok(data)
    }

    fn read_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        self.request(|be| be.read_range_into(h, offset, length, buf))?;
        self.charge_download(buf.len());
        Ok(())
    }

    fn read_metadata_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        self.request(|be| be.read_metadata_range_into(h, offset, length, buf))?;
        self.charge_download(buf.len());
        Ok(())
    }

    fn preferred_read_size(&self) -> u64 {
        self.inner.preferred_read_size()
    }

    fn lists_immediately(&self) -> bool {
        self.inner.lists_immediately()
    }

    fn write(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        if let Some(b) = &self.upload {
            b.charge(data.len() as u64);
        }
        self.request(|be| be.write(h, data))
    }

    fn stat(&self, h: &Handle) -> Result<u64, BackendError> {
        self.request(|be| be.stat(h))
    }

    fn remove(&self, h: &Handle) -> Result<(), BackendError> {
        self.request(|be| be.remove(h))
    }

    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, BackendError> {
        self.request(|be| be.list(t))
    }

    fn list_group(&self, t: FileType, group: &str) -> Result<Vec<FileInfo>, BackendError> {
        self.request(|be| be.list_group(t, group))
    }

    fn keeps(&self, t: FileType) -> bool {
        self.inner.keeps(t)
    }

    fn list_leftovers(&self) -> Result<Vec<Leftover>, BackendError> {
        self.request(|be| be.list_leftovers())
    }

    fn remove_leftover(&self, leftover: &Leftover) -> Result<(), BackendError> {
        self.request(|be| be.remove_leftover(leftover))
    }

    fn exists(&self, h: &Handle) -> Result<bool, BackendError> {
        self.request(|be| be.exists(h))
    }
}

#[cfg(test)]
mod tests;
