//! A memory cache of decrypted, verified data blobs, bounded in bytes: a file read in
//! small pieces by the kernel fetches each blob once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use restash_format::BlobId;

/// Least recently used blobs go first once `limit` bytes are held.
#[derive(Debug)]
pub struct BlobCache {
    limit: usize,
    held: usize,
    tick: u64,
    blobs: HashMap<BlobId, (Arc<Vec<u8>>, u64)>,
    order: BTreeMap<u64, BlobId>,
}

impl BlobCache {
    /// An empty cache holding at most `limit` bytes.
    pub fn new(limit: usize) -> BlobCache {
        BlobCache {
            limit,
            held: 0,
            tick: 0,
            blobs: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// The blob, if held; it becomes the most recently used.
    pub fn get(&mut self, id: &BlobId) -> Option<Arc<Vec<u8>>> {
        self.tick += 1;
        let tick = self.tick;
        let (data, used) = self.blobs.get_mut(id)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, *id);
        Some(data.clone())
    }

    /// Holds `data`, dropping the least recently used blobs to stay within the limit. A
    /// blob larger than the limit is not held.
    pub fn insert(&mut self, id: BlobId, data: Arc<Vec<u8>>) {
        if data.len() > self.limit || self.blobs.contains_key(&id) {
            return;
        }
        while self.held + data.len() > self.limit {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            if let Some((d, _)) = self.blobs.remove(&old) {
                self.held -= d.len();
            }
        }
        self.tick += 1;
        self.held += data.len();
        self.order.insert(self.tick, id);
        self.blobs.insert(id, (data, self.tick));
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
        let mut c = BlobCache::new(10);
        c.insert(id(1), Arc::new(vec![1; 4]));
        c.insert(id(2), Arc::new(vec![2; 4]));
        assert!(c.get(&id(1)).is_some());
        c.insert(id(3), Arc::new(vec![3; 4]));
        assert!(c.get(&id(2)).is_none(), "2 was least recently used");
        assert!(c.get(&id(1)).is_some());
        assert!(c.get(&id(3)).is_some());
        assert_eq!(c.held(), 8);
        c.insert(id(4), Arc::new(vec![4; 11]));
        assert!(c.get(&id(4)).is_none(), "larger than the limit");
    }
}
