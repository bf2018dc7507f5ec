use std::collections::HashMap;

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

/// Shards of the blob table, by the first byte of the id (uniform: ids are SHA-256).
const SHARDS: usize = 256;

type Shard = HashMap<(BlobId, BlobType), BlobLocation>;

/// All index files merged: (type, blob id) → locations.
#[derive(Debug)]
pub struct MasterIndex {
    packs: Vec<PackId>,
    pack_numbers: HashMap<PackId, u32>,
    // Sharded so that a growing table rehashes 1/256 of itself at a time: one table of a
    // million blobs briefly held its old and new bucket arrays together (55 + 111 MB),
    // which set check's and restore's peak memory.
    blobs: Vec<Shard>,
    // Second and later copies of a blob (rare: duplicates across packs), tried when the
    // first copy is unreadable.
    extra: HashMap<(BlobId, BlobType), Vec<BlobLocation>>,
    old_format: usize,
}

impl Default for MasterIndex {
    fn default() -> Self {
        MasterIndex {
            packs: Vec::new(),
            pack_numbers: HashMap::new(),
            blobs: (0..SHARDS).map(|_| Shard::new()).collect(),
            extra: HashMap::new(),
            old_format: 0,
        }
    }
}

impl MasterIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    fn shard(&self, id: &BlobId) -> &Shard {
        &self.blobs[id.0 .0[0] as usize]
    }

    fn pack_number(&mut self, id: PackId) -> u32 {
        if let Some(n) = self.pack_numbers.get(&id) {
            return *n;
        }
        let n = self.packs.len() as u32;
        self.packs.push(id);
        self.pack_numbers.insert(id, n);
        n
    }

    /// Adds one blob's location; exact duplicates collapse.
    pub fn insert(&mut self, pack: PackId, e: &PackEntry) {
        let p = self.pack_number(pack);
        let loc = BlobLocation {
            pack: p,
            offset: e.offset,
            length: e.length,
            uncompressed_length: e.uncompressed_length.unwrap_or(0),
        };
        let key = (e.id, e.blob_type);
        let shard = &mut self.blobs[e.id.0 .0[0] as usize];
        match shard.get(&key) {
            None => {
                shard.insert(key, loc);
            }
            Some(first) if *first == loc => {}
            Some(_) => {
                let extra = self.extra.entry(key).or_default();
                if !extra.contains(&loc) {
                    extra.push(loc);
                }
            }
        }
    }

    /// Merges a decoded index file.
    pub fn add_file(&mut self, idx: &IndexFile, old_format: bool) {
        if old_format {
            self.old_format += 1;
        }
        for pack in &idx.packs {
            for b in &pack.blobs {
                let e = PackEntry {
                    blob_type: b.blob_type,
                    id: b.id,
                    offset: b.offset,
                    length: b.length,
                    uncompressed_length: b.uncompressed_length,
                };
                self.insert(pack.id, &e);
            }
        }
    }

    /// The first known location of a blob.
    pub fn get(&self, id: &BlobId, t: BlobType) -> Option<BlobLocation> {
        self.shard(id).get(&(*id, t)).copied()
    }

    /// Every known location of a blob, the primary first.
    pub fn all(&self, id: &BlobId, t: BlobType) -> Vec<BlobLocation> {
        let mut v: Vec<BlobLocation> = self.get(id, t).into_iter().collect();
        if let Some(extra) = self.extra.get(&(*id, t)) {
            v.extend_from_slice(extra);
        }
        v
    }

    /// Whether the blob is indexed.
    pub fn has(&self, id: &BlobId, t: BlobType) -> bool {
        self.shard(id).contains_key(&(*id, t))
    }

    /// The pack id behind a location's pack number.
    pub fn pack_id(&self, n: u32) -> PackId {
        self.packs[n as usize]
    }

    /// Number of distinct blobs.
    pub fn len(&self) -> usize {
        self.blobs.iter().map(Shard::len).sum()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.blobs.iter().all(Shard::is_empty)
    }

    /// Number of packs referenced.
    pub fn pack_count(&self) -> usize {
        self.packs.len()
    }

    /// How many index files were in the old array format.
    pub fn old_format_files(&self) -> usize {
        self.old_format
    }

    /// Iterates over (blob id, type, primary location).
    pub fn iter(&self) -> impl Iterator<Item = (&BlobId, BlobType, &BlobLocation)> {
        self.blobs
            .iter()
            .flat_map(|s| s.iter())
            .map(|((id, t), loc)| (id, *t, loc))
    }
}
