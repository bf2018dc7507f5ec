//! The one in-memory index every command uses: every entry of every index file (exact
//! duplicates collapsed, real duplicates kept), in one table sorted by blob.
//!
//! A sorted table rather than a hash map: 52 bytes per entry and no spare buckets, so a
//! million blobs take ~50 MiB, and the table grows by reallocating one block (which the
//! allocator moves by remapping pages) instead of rehashing, which once held a map's old
//! and new bucket arrays together (55 + 111 MB) and set check's and restore's peak memory.
//! Prune needs every copy of every blob side by side, which a sorted table gives for free.
//! Lookups stay as fast as a map's: a table of bucket starts, by blob type and the first
//! bits of the id (ids are SHA-256, so buckets are even, about two entries each), leaves a
//! scan of one or two neighbouring entries. The table costs 2 bytes per entry.

use std::collections::HashMap;
use std::ops::Range;

use rayon::slice::ParallelSliceMut;
use restash_format::{BlobId, BlobType, IndexFile, PackEntry, PackId};

/// Where one blob is stored. Packs are referred to by a small number so that a million
/// entries stay compact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// Index into [`MasterIndex::pack_id`].
    pub pack: u32,
    /// Offset in the pack.
    pub offset: u32,
    /// Stored length.
    pub length: u32,
    /// Plaintext length after decompression, or 0 when stored uncompressed.
    pub uncompressed_length: u32,
}

impl BlobLocation {
    /// Plaintext length of the blob.
    pub fn plaintext_len(&self) -> u32 {
        if self.uncompressed_length != 0 {
            self.uncompressed_length
        } else {
            self.length.saturating_sub(restash_crypto::OVERHEAD as u32)
        }
    }

    /// Whether the stored payload is zstd.
    pub fn is_compressed(&self) -> bool {
        self.uncompressed_length != 0
    }
}

/// One copy of one blob: the blob and where that copy is.
#[derive(Debug, Clone, Copy)]
pub struct IndexEntry {
    /// The blob's id.
    pub id: BlobId,
    /// Index into [`MasterIndex::pack_id`].
    pub pack: u32,
    /// Offset in the pack.
    pub offset: u32,
    /// Stored length.
    pub length: u32,
    /// Plaintext length after decompression, or 0 when stored uncompressed.
    pub uncompressed_length: u32,
    /// Data or tree.
    pub blob_type: BlobType,
    /// Prune's mark: a snapshot uses the blob (set on the first copy only). It fills what
    /// would be padding.
    pub(crate) used: bool,
}

impl IndexEntry {
    /// Where this copy is.
    pub fn location(&self) -> BlobLocation {
        BlobLocation {
            pack: self.pack,
            offset: self.offset,
            length: self.length,
            uncompressed_length: self.uncompressed_length,
        }
    }

    /// Size of this entry in a pack header.
    pub fn header_size(&self) -> u64 {
        crate::pack::header_entry_size(self.uncompressed_length != 0)
    }

    /// The entry as a pack header lists it.
    pub fn pack_entry(&self) -> PackEntry {
        PackEntry {
            blob_type: self.blob_type,
            id: self.id,
            offset: self.offset,
            length: self.length,
            uncompressed_length: (self.uncompressed_length != 0)
                .then_some(self.uncompressed_length),
        }
    }

    /// Sort order: by blob, then by place (the pack numbers follow the order the packs
    /// were first seen in, so the first copy is the one the index files name first).
    fn key(&self) -> (BlobType, &BlobId, u32, u32, u32, u32) {
        (
            self.blob_type,
            &self.id,
            self.pack,
            self.offset,
            self.length,
            self.uncompressed_length,
        )
    }
}

/// At most this many bits of the id pick a bucket (16 Mi buckets, for 32 Mi blobs).
const MAX_BUCKET_BITS: u32 = 24;

/// All index files merged: every copy of every blob, and the packs they are in.
#[derive(Debug, Default)]
pub struct MasterIndex {
    packs: Vec<PackId>,
    pack_numbers: HashMap<PackId, u32>,
    // Sorted by `IndexEntry::key` up to `sorted`; entries inserted since are not looked up
    // until `finish` sorts them in.
    entries: Vec<IndexEntry>,
    sorted: usize,
    // `buckets[b]..buckets[b + 1]` are the entries of bucket `b` (see `bucket`).
    buckets: Vec<u32>,
    // Per blob type (data, tree): how many bits of the id pick its bucket, and where its
    // buckets begin.
    bucket_bits: [u32; 2],
    bucket_base: [usize; 2],
    distinct: usize,
    old_format: usize,
}

impl MasterIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    fn intern_pack(&mut self, id: PackId) -> u32 {
        if let Some(n) = self.pack_numbers.get(&id) {
            return *n;
        }
        let n = self.packs.len() as u32;
        self.packs.push(id);
        self.pack_numbers.insert(id, n);
        n
    }

    /// Makes room for `n` more entries at once, so that a table whose size is known does
    /// not grow step by step.
    pub fn reserve(&mut self, n: usize) {
        self.entries.reserve_exact(n);
    }

    /// Adds one blob's location. It is found by lookups once [`Self::finish`] has run.
    pub fn insert(&mut self, pack: PackId, e: &PackEntry) {
        let pack = self.intern_pack(pack);
        self.entries.push(IndexEntry {
            id: e.id,
            pack,
            offset: e.offset,
            length: e.length,
            uncompressed_length: e.uncompressed_length.unwrap_or(0),
            blob_type: e.blob_type,
            used: false,
        });
    }

    /// Adds the entries of a decoded index file (found once [`Self::finish`] has run).
    pub fn add_file(&mut self, idx: &IndexFile, old_format: bool) {
        if old_format {
            self.old_format += 1;
        }
        for pack in &idx.packs {
            let n = self.intern_pack(pack.id);
            self.entries.extend(pack.blobs.iter().map(|b| IndexEntry {
                id: b.id,
                pack: n,
                offset: b.offset,
                length: b.length,
                uncompressed_length: b.uncompressed_length.unwrap_or(0),
                blob_type: b.blob_type,
                used: false,
            }));
        }
    }

    /// Sorts the entries added since the last call in, and drops exact duplicates (the
    /// same pack in two index files, as an interrupted prune or repair leaves them).
    pub fn finish(&mut self) {
        if self.sorted == self.entries.len() && !self.buckets.is_empty() {
            return;
        }
        // In place: a sort that merges through a buffer would add half the table.
        self.entries
            .par_sort_unstable_by(|a, b| a.key().cmp(&b.key()));
        self.entries.dedup_by(|a, b| a.key() == b.key());
        self.entries.shrink_to_fit();
        self.sorted = self.entries.len();
        self.distinct = self.groups().count();
        self.build_buckets();
    }

    fn build_buckets(&mut self) {
        // About two entries per bucket, so that a lookup reads the bucket table and then
        // one or two neighbouring entries, as a hash map would: 2 bytes per entry.
        let trees = self
            .entries
            .partition_point(|e| e.blob_type == BlobType::Data);
        let counts = [trees, self.entries.len() - trees];
        let mut total = 0;
        for (t, count) in counts.into_iter().enumerate() {
            let bits = usize::BITS - (count / 2).leading_zeros();
            self.bucket_bits[t] = bits.min(MAX_BUCKET_BITS);
            self.bucket_base[t] = total;
            total += 1 << self.bucket_bits[t];
        }
        let mut buckets = Vec::with_capacity(total + 1);
        for (i, e) in self.entries.iter().enumerate() {
            let b = self.bucket(e.blob_type, &e.id);
            while buckets.len() <= b {
                buckets.push(i as u32);
            }
        }
        buckets.resize(total + 1, self.entries.len() as u32);
        self.buckets = buckets;
    }

    /// Buckets are ordered as the entries: by type, then by the id's first bits.
    fn bucket(&self, t: BlobType, id: &BlobId) -> usize {
        let bytes = &id.0 .0;
        let prefix = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as u64;
        let t = match t {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        };
        self.bucket_base[t] + (prefix >> (32 - self.bucket_bits[t])) as usize
    }

    /// Positions in [`Self::entries`] of every copy of a blob (empty when not indexed).
    pub fn range(&self, t: BlobType, id: &BlobId) -> Range<usize> {
        debug_assert_eq!(self.sorted, self.entries.len(), "lookup before finish()");
        if self.buckets.is_empty() {
            return 0..0;
        }
        let b = self.bucket(t, id);
        let (lo, hi) = (self.buckets[b] as usize, self.buckets[b + 1] as usize);
        let bucket = &self.entries[lo..hi];
        let Some(start) = bucket.iter().position(|e| e.id >= *id) else {
            return hi..hi;
        };
        let len = bucket[start..].iter().take_while(|e| e.id == *id).count();
        lo + start..lo + start + len
    }

    /// Every copy of a blob, the first the index files name first.
    pub fn copies(&self, id: &BlobId, t: BlobType) -> &[IndexEntry] {
        &self.entries[self.range(t, id)]
    }

    /// The first known location of a blob.
    pub fn get(&self, id: &BlobId, t: BlobType) -> Option<BlobLocation> {
        self.copies(id, t).first().map(IndexEntry::location)
    }

    /// Every known location of a blob, the primary first.
    pub fn all(&self, id: &BlobId, t: BlobType) -> Vec<BlobLocation> {
        self.copies(id, t)
            .iter()
            .map(IndexEntry::location)
            .collect()
    }

    /// Whether the blob is indexed.
    pub fn has(&self, id: &BlobId, t: BlobType) -> bool {
        !self.range(t, id).is_empty()
    }

    /// The pack id behind a location's pack number.
    pub fn pack_id(&self, n: u32) -> PackId {
        self.packs[n as usize]
    }

    /// The number a pack's entries refer to it by, when it is indexed.
    pub fn pack_number(&self, id: &PackId) -> Option<u32> {
        self.pack_numbers.get(id).copied()
    }

    /// Number of distinct blobs.
    pub fn len(&self) -> usize {
        self.distinct
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.distinct == 0
    }

    /// Number of packs referenced.
    pub fn pack_count(&self) -> usize {
        self.packs.len()
    }

    /// How many index files were in the old array format.
    pub fn old_format_files(&self) -> usize {
        self.old_format
    }

    /// How many entries were added, sorted in or not (to size a table being loaded).
    pub(crate) fn entries_added(&self) -> usize {
        self.entries.len()
    }

    /// Every entry, sorted by blob type, then id, then place.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries[..self.sorted]
    }

    /// Positions of the runs of entries that are copies of the same blob.
    pub fn groups(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        let entries = self.entries();
        let mut start = 0;
        std::iter::from_fn(move || {
            let first = entries.get(start)?;
            let end = start
                + entries[start..]
                    .iter()
                    .position(|e| e.blob_type != first.blob_type || e.id != first.id)
                    .unwrap_or(entries.len() - start);
            let r = start..end;
            start = end;
            Some(r)
        })
    }

    /// Iterates over (blob id, type, primary location) of each distinct blob.
    pub fn iter(&self) -> impl Iterator<Item = (&BlobId, BlobType, BlobLocation)> {
        self.groups().map(|r| {
            let e = &self.entries[r.start];
            (&e.id, e.blob_type, e.location())
        })
    }

    /// Prune's mark on entry `i` (see [`IndexEntry`]).
    pub(crate) fn set_used(&mut self, i: usize) {
        self.entries[i].used = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(n: u8) -> PackId {
        PackId(restash_format::Id([n; 32]))
    }

    fn entry(t: BlobType, id: BlobId, offset: u32) -> PackEntry {
        PackEntry {
            blob_type: t,
            id,
            offset,
            length: 100,
            uncompressed_length: None,
        }
    }

    #[test]
    fn finds_every_copy_and_collapses_exact_duplicates() {
        let mut idx = MasterIndex::new();
        let ids: Vec<BlobId> = (0u32..5000)
            .map(|i| BlobId::hash(&i.to_le_bytes()))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            idx.insert(pack((i % 7) as u8), &entry(BlobType::Data, *id, i as u32));
        }
        // The same blob as a tree, a second copy in another pack, and an exact duplicate.
        idx.insert(pack(9), &entry(BlobType::Tree, ids[3], 0));
        idx.insert(pack(8), &entry(BlobType::Data, ids[3], 50));
        idx.insert(pack(3), &entry(BlobType::Data, ids[3], 3));
        idx.finish();
        assert_eq!(idx.len(), 5001);
        assert_eq!(idx.entries().len(), 5002);
        for (i, id) in ids.iter().enumerate() {
            let loc = idx.get(id, BlobType::Data).expect("indexed");
            assert_eq!(loc.offset, i as u32);
            assert_eq!(idx.pack_id(loc.pack), pack((i % 7) as u8));
        }
        let all = idx.all(&ids[3], BlobType::Data);
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!((idx.pack_id(all[0].pack), all[0].offset), (pack(3), 3));
        assert_eq!((idx.pack_id(all[1].pack), all[1].offset), (pack(8), 50));
        assert!(idx.has(&ids[3], BlobType::Tree));
        assert!(!idx.has(&ids[4], BlobType::Tree));
        assert!(!idx.has(&BlobId::hash(b"absent"), BlobType::Data));
        assert_eq!(idx.iter().count(), 5001);
        assert_eq!(idx.groups().filter(|r| r.len() > 1).count(), 1);
    }

    #[test]
    fn empty_and_tiny_indexes() {
        let mut idx = MasterIndex::new();
        assert!(!idx.has(&BlobId::hash(b"x"), BlobType::Data));
        idx.finish();
        assert!(idx.is_empty());
        assert!(!idx.has(&BlobId::hash(b"x"), BlobType::Data));
        idx.insert(pack(1), &entry(BlobType::Tree, BlobId::hash(b"x"), 0));
        idx.finish();
        assert!(idx.has(&BlobId::hash(b"x"), BlobType::Tree));
        assert!(!idx.has(&BlobId::hash(b"x"), BlobType::Data));
        assert_eq!(idx.len(), 1);
    }
}

/// Load and lookup times of a million blobs, run by hand when the index changes.
#[cfg(test)]
mod bench {
    use super::*;
    use std::time::Instant;

    fn hwm_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        s.lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap()
    }

    /// `cargo test --release -p restash-engine --lib index::bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn million_blobs() {
        const N: u32 = 1_000_000;
        let ids: Vec<BlobId> = (0..N).map(|i| BlobId::hash(&i.to_le_bytes())).collect();
        let misses: Vec<BlobId> = (N..2 * N).map(|i| BlobId::hash(&i.to_le_bytes())).collect();
        let packs: Vec<PackId> = (0..N / 100)
            .map(|i| PackId(restash_format::Id::hash(&i.to_be_bytes())))
            .collect();
        let before = hwm_kib();
        let t = Instant::now();
        let mut idx = MasterIndex::new();
        for (i, id) in ids.iter().enumerate() {
            let e = PackEntry {
                blob_type: BlobType::Data,
                id: *id,
                offset: (i % 100) as u32 * 1000,
                length: 1000,
                uncompressed_length: None,
            };
            idx.insert(packs[i / 100], &e);
        }
        idx.finish();
        let idx = idx;
        let load = t.elapsed();
        let grown = hwm_kib() - before;
        let t = Instant::now();
        let mut hits = 0;
        for id in &ids {
            hits += idx.has(id, BlobType::Data) as u32;
        }
        let has = t.elapsed();
        let t = Instant::now();
        let mut sum = 0u64;
        for id in &ids {
            sum += idx.get(id, BlobType::Data).map_or(0, |l| l.offset as u64);
        }
        let get = t.elapsed();
        let t = Instant::now();
        for id in &misses {
            hits += idx.has(id, BlobType::Data) as u32;
        }
        let miss = t.elapsed();
        assert_eq!(hits, N);
        assert!(sum > 0);
        eprintln!(
            "1M blobs: load {load:?}, has {has:?}, get {get:?}, miss {miss:?}, peak +{} MiB",
            grown / 1024
        );
    }
}
