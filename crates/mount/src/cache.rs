//! A memory cache of decrypted, verified blobs (file data, decoded trees), bounded in
//! bytes: a file read in small pieces by the kernel fetches each blob once, and a listing
//! followed by a lookup of each entry decodes the tree once. [`Shared`] makes requests
//! served on several threads wait for one load of a blob instead of each loading it (the
//! kernel reads ahead in parallel pieces of one blob).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use restash_format::BlobId;

use crate::lock;

/// Least recently used blobs go first once `limit` bytes are held.
#[derive(Debug)]
pub struct BlobCache<V = Vec<u8>> {
    limit: usize,
    held: usize,
    tick: u64,
    blobs: HashMap<BlobId, (Arc<V>, u64, usize)>,
    order: BTreeMap<u64, BlobId>,
}

impl<V> BlobCache<V> {
    /// An empty cache holding at most `limit` bytes.
    pub fn new(limit: usize) -> BlobCache<V> {
        BlobCache {
            limit,
            held: 0,
            tick: 0,
            blobs: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// The blob, if held; it becomes the most recently used.
    pub fn get(&mut self, id: &BlobId) -> Option<Arc<V>> {
        self.tick += 1;
        let tick = self.tick;
        let (data, used, _) = self.blobs.get_mut(id)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, *id);
        Some(data.clone())
    }

    /// Holds `data`, which takes `size` bytes, dropping the least recently used blobs to
    /// stay within the limit. A blob larger than the limit is not held.
    pub fn insert(&mut self, id: BlobId, data: Arc<V>, size: usize) {
        if size > self.limit || self.blobs.contains_key(&id) {
            return;
        }
        while self.held + size > self.limit {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, _, old_size)) = self.blobs.remove(&old) {
                self.held -= old_size;
            }
        }
        self.tick += 1;
        self.held += size;
        self.order.insert(self.tick, id);
        self.blobs.insert(id, (data, self.tick, size));
    }

    /// Bytes held.
    pub fn held(&self) -> usize {
        self.held
    }
}

// A load in progress: its waiters get the value, or `None` when it failed.
type Loading<V> = Arc<OnceLock<Option<Arc<V>>>>;

/// A [`BlobCache`] shared by threads, each blob loaded by one of them at a time.
pub struct Shared<V> {
    // One lock for both: a load leaves `loading` as its blob enters the cache, so a
    // caller finds it in one or the other and never starts a second load.
    inner: Mutex<Inner<V>>,
}

struct Inner<V> {
    cache: BlobCache<V>,
    loading: HashMap<BlobId, Loading<V>>,
}

impl<V> Shared<V> {
    /// An empty cache holding at most `limit` bytes.
    pub fn new(limit: usize) -> Shared<V> {
        Shared {
            inner: Mutex::new(Inner {
                cache: BlobCache::new(limit),
                loading: HashMap::new(),
            }),
        }
    }

    /// The blob `id`, from the cache or from `load` (its value and size in bytes). While
    /// one thread loads a blob, others asking for it wait for that load; if it fails,
    /// each of them tries on its own, so every caller gets its own error.
    pub fn get_or_load<E>(
        &self,
        id: &BlobId,
        load: impl Fn() -> Result<(V, usize), E>,
    ) -> Result<Arc<V>, E> {
        let cell = {
            let mut inner = lock(&self.inner);
            if let Some(v) = inner.cache.get(id) {
                return Ok(v);
            }
            inner.loading.entry(*id).or_default().clone()
        };
        // The loading thread's own result, error included.
        let mut mine = None;
        let shared = cell
            .get_or_init(|| {
                let r = load().map(|(v, size)| (Arc::new(v), size));
                let mut inner = lock(&self.inner);
                inner.loading.remove(id);
                if let Ok((v, size)) = &r {
                    inner.cache.insert(*id, v.clone(), *size);
                }
                let r = r.map(|(v, _)| v);
                let shared = r.as_ref().ok().cloned();
                mine = Some(r);
                shared
            })
            .clone();
        match (mine, shared) {
            (Some(r), _) => r,
            (None, Some(v)) => Ok(v),
            (None, None) => {
                let (v, size) = load()?;
                let v = Arc::new(v);
                lock(&self.inner).cache.insert(*id, v.clone(), size);
                Ok(v)
            }
        }
    }

    /// Bytes held.
    pub fn held(&self) -> usize {
        lock(&self.inner).cache.held()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> BlobId {
        format!("{n:02x}{}", "0".repeat(62)).parse().expect("id")
    }

    #[test]
    fn evicts_least_recently_used_within_limit() {
        let mut c: BlobCache = BlobCache::new(10);
        c.insert(id(1), Arc::new(vec![1; 4]), 4);
        c.insert(id(2), Arc::new(vec![2; 4]), 4);
        assert!(c.get(&id(1)).is_some());
        c.insert(id(3), Arc::new(vec![3; 4]), 4);
        assert!(c.get(&id(2)).is_none(), "2 was least recently used");
        assert!(c.get(&id(1)).is_some());
        assert!(c.get(&id(3)).is_some());
        assert_eq!(c.held(), 8);
        c.insert(id(4), Arc::new(vec![4; 11]), 11);
        assert!(c.get(&id(4)).is_none(), "larger than the limit");
    }

    #[test]
    fn threads_asking_for_one_blob_share_one_load() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::Duration;
        let c: Shared<Vec<u8>> = Shared::new(1 << 20);
        let loads = AtomicUsize::new(0);
        let load = || {
            loads.fetch_add(1, Ordering::SeqCst);
            // Long enough for the other threads to arrive while it is in progress.
            std::thread::sleep(Duration::from_millis(200));
            Ok::<_, String>((vec![7; 100], 100))
        };
        std::thread::scope(|s| {
            let got: Vec<_> = (0..4)
                .map(|_| s.spawn(|| c.get_or_load(&id(1), load)))
                .collect();
            for g in got {
                assert_eq!(*g.join().expect("thread").expect("load"), vec![7; 100]);
            }
        });
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(c.held(), 100);
        assert!(
            lock(&c.inner).loading.is_empty(),
            "no load left in progress"
        );

        // A failed load is not shared: each waiter tries again and gets its own error.
        let fails = AtomicUsize::new(0);
        let fail = || {
            fails.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(100));
            Err::<(Vec<u8>, usize), String>("gone".into())
        };
        std::thread::scope(|s| {
            let got: Vec<_> = (0..3)
                .map(|_| s.spawn(|| c.get_or_load(&id(2), fail)))
                .collect();
            for g in got {
                assert_eq!(g.join().expect("thread").expect_err("fails"), "gone");
            }
        });
        assert_eq!(fails.load(Ordering::SeqCst), 3, "one load per caller");
        assert!(lock(&c.inner).loading.is_empty());
    }
}
