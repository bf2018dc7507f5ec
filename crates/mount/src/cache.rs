//! A memory cache of decrypted, verified blobs (file data, decoded trees), bounded in
//! bytes: a file read in small pieces by the kernel fetches each blob once, and a listing
//! followed by a lookup of each entry decodes the tree once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use restash_format::BlobId;

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
}
