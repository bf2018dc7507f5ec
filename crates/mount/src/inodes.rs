//! The inodes the kernel holds, with its lookup counts. Numbers are restic's: a hash of the
//! parent's number and the name (bazil's `GenerateDynamicInode`, which restic 0.14's mount
//! uses for every entry), so an entry has the same number in every mount and again after
//! the kernel forgot it. FUSE uses the number as the kernel's handle too, so two entries
//! the kernel may hold never share one: a hash that is taken moves to the next free
//! number. An entry goes once the kernel has forgotten every lookup of it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

/// The root directory's number; it is never forgotten.
pub const ROOT: u64 = 1;

/// restic 0.14's inode number for `name` in the directory numbered `parent`: FNV-1a of
/// the parent's number (little endian) and the name, never 0 or the root's 1.
pub fn dynamic_inode(parent: u64, name: &[u8]) -> u64 {
    let mut h = fnv1a(fnv1a(FNV_OFFSET, &parent.to_le_bytes()), name);
    // As bazil: on the (unlikely) 0 or 1, the input grows by an 'x' until it is neither.
    while h <= ROOT {
        h = fnv1a(h, b"x");
    }
    h
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

// 64-bit FNV-1a from state `h` (Go's hash/fnv New64a).
fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

struct Entry<K, V> {
    key: K,
    value: Arc<V>,
    lookups: u64,
}

/// Entries by number and by key.
pub struct Inodes<K, V> {
    entries: HashMap<u64, Entry<K, V>>,
    keys: HashMap<K, u64>,
}

impl<K: Hash + Eq + Clone, V> Inodes<K, V> {
    /// A table holding only the root.
    pub fn new(root_key: K, root: V) -> Self {
        let mut t = Inodes {
            entries: HashMap::new(),
            keys: HashMap::new(),
        };
        t.keys.insert(root_key.clone(), ROOT);
        t.entries.insert(
            ROOT,
            Entry {
                key: root_key,
                value: Arc::new(root),
                lookups: 1,
            },
        );
        t
    }

    /// The number `key` has, or would get from [`Inodes::lookup`] now: `hash` unless
    /// another entry holds it.
    pub fn number(&self, key: &K, hash: u64) -> u64 {
        if let Some(&ino) = self.keys.get(key) {
            return ino;
        }
        let mut ino = hash;
        while ino <= ROOT || self.entries.contains_key(&ino) {
            ino = ino.wrapping_add(1);
        }
        ino
    }

    /// The entry for `key` (made by `make` if the table lacks it), counting one more
    /// lookup by the kernel: the caller hands the number to the kernel.
    pub fn lookup(&mut self, key: K, hash: u64, make: impl FnOnce() -> V) -> (u64, Arc<V>) {
        let ino = self.number(&key, hash);
        let e = self.entries.entry(ino).or_insert_with(|| Entry {
            key: key.clone(),
            value: Arc::new(make()),
            lookups: 0,
        });
        e.lookups += 1;
        let value = e.value.clone();
        self.keys.insert(key, ino);
        (ino, value)
    }

    /// The entry numbered `ino`, if the kernel may hold it.
    pub fn get(&self, ino: u64) -> Option<Arc<V>> {
        self.entries.get(&ino).map(|e| e.value.clone())
    }

    /// The kernel forgets `n` lookups of `ino`; at none left, the entry goes and its
    /// number is free. Unknown numbers are ignored (the kernel forgets nothing twice).
    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let Some(e) = self.entries.get_mut(&ino) else {
            return;
        };
        e.lookups = e.lookups.saturating_sub(n);
        if e.lookups == 0 {
            if let Some(e) = self.entries.remove(&ino) {
                self.keys.remove(&e.key);
            }
        }
    }

    /// How many entries are held (the root included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty: never, the root is always held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_test_vectors() {
        // The published FNV-1a 64 vectors; the e2e test compares whole numbers with
        // restic 0.14's mount.
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(
            dynamic_inode(1, b"snapshots"),
            fnv1a(FNV_OFFSET, b"\x01\0\0\0\0\0\0\0snapshots")
        );
        assert_ne!(dynamic_inode(1, b"a"), dynamic_inode(2, b"a"));
    }

    #[test]
    fn entries_live_while_the_kernel_holds_lookups() {
        let mut t: Inodes<&str, &str> = Inodes::new("/", "root");
        let (a, _) = t.lookup("a", 100, || "a");
        assert_eq!(a, 100);
        let (again, v) = t.lookup("a", 100, || "not made twice");
        assert_eq!((again, *v), (100, "a"));
        t.forget(a, 1);
        assert_eq!(t.get(a).as_deref(), Some(&"a"), "one lookup is still held");
        t.forget(a, 1);
        assert!(t.get(a).is_none(), "all lookups forgotten");
        assert_eq!(t.len(), 1);
        // Looked up again, it has its number again.
        assert_eq!(t.lookup("a", 100, || "a").0, 100);
        // A batch forget of several lookups at once.
        t.lookup("a", 100, || "a");
        t.lookup("a", 100, || "a");
        t.forget(a, 3);
        assert!(t.get(a).is_none());
        // The root is never dropped, unknown numbers are ignored.
        t.forget(ROOT, 10);
        t.forget(12345, 1);
        assert_eq!(t.get(ROOT).as_deref(), Some(&"root"));
    }

    #[test]
    fn a_held_number_is_never_given_to_another_entry() {
        let mut t: Inodes<&str, &str> = Inodes::new("/", "root");
        let (a, _) = t.lookup("a", 7, || "a");
        // "b" hashes to the number "a" holds: it gets the next free one.
        assert_eq!(t.number(&"b", 7), 8);
        let (b, _) = t.lookup("b", 7, || "b");
        assert_eq!((a, b), (7, 8));
        let (c, _) = t.lookup("c", 7, || "c");
        assert_eq!(c, 9);
        // Hashes of 0 and 1 never hand out 0 or the root.
        assert_eq!(t.lookup("z", 0, || "z").0, 2);
        // Once "a" is forgotten, its number is free for another entry.
        t.forget(a, 1);
        assert_eq!(t.lookup("d", 7, || "d").0, 7);
        assert_eq!(t.get(b).as_deref(), Some(&"b"));
        assert_eq!(t.number(&"b", 7), 8, "a held entry keeps its number");
    }
}
