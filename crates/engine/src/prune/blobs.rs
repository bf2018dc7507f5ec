//! Prune's own view of the index: every entry of every index file (exact duplicates
//! collapsed, real duplicates kept), sorted by blob so that one binary search finds all
//! copies of a blob. About 52 bytes per entry, so a million blobs fit in ~50 MiB; the
//! engine's [`crate::MasterIndex`] is not loaded next to it.

use std::collections::HashMap;
use std::ops::Range;

use rayon::prelude::*;
use restash_backend::{FileType, Handle};
use restash_format::{decompress_blob, BlobId, BlobType, Id, IndexFile, PackId, Tree};

use crate::{EngineError, Repository, Result};

/// `Entry::flags` bit: the blob is referenced by a snapshot (set on the first entry of a
/// blob's run only).
pub(crate) const USED: u8 = 1;

/// One index entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub id: BlobId,
    pub pack: u32,
    pub offset: u32,
    pub length: u32,
    /// 0 when stored uncompressed.
    pub ulen: u32,
    /// 0 data, 1 tree.
    pub kind: u8,
    pub flags: u8,
}

impl Entry {
    pub fn blob_type(&self) -> BlobType {
        if self.kind == 1 {
            BlobType::Tree
        } else {
            BlobType::Data
        }
    }

    /// Size of this entry in a pack header.
    pub fn header_size(&self) -> u64 {
        if self.ulen != 0 {
            41
        } else {
            37
        }
    }

    fn key(&self) -> (u8, &BlobId, u32, u32, u32) {
        (self.kind, &self.id, self.pack, self.offset, self.length)
    }
}

fn kind_of(t: BlobType) -> u8 {
    match t {
        BlobType::Data => 0,
        BlobType::Tree => 1,
    }
}

/// All index entries plus the pack table and the index files they came from.
#[derive(Debug, Default)]
pub(crate) struct BlobIndex {
    pub packs: Vec<PackId>,
    pub pack_numbers: HashMap<PackId, u32>,
    pub entries: Vec<Entry>,
    /// The index files read, in id order.
    pub files: Vec<Id>,
}

impl BlobIndex {
    fn pack_number(&mut self, id: PackId) -> u32 {
        if let Some(n) = self.pack_numbers.get(&id) {
            return *n;
        }
        let n = self.packs.len() as u32;
        self.packs.push(id);
        self.pack_numbers.insert(id, n);
        n
    }

    /// Appends the entries of an index file.
    pub fn add_file(&mut self, file: &IndexFile) {
        for p in &file.packs {
            let n = self.pack_number(p.id);
            for b in &p.blobs {
                self.entries.push(Entry {
                    id: b.id,
                    pack: n,
                    offset: b.offset,
                    length: b.length,
                    ulen: b.uncompressed_length.unwrap_or(0),
                    kind: kind_of(b.blob_type),
                    flags: 0,
                });
            }
        }
    }

    /// Reads every index file; a file that cannot be read or decoded stops prune, as in
    /// restic (pruning on a partial index would delete data).
    pub fn load(repo: &Repository) -> Result<BlobIndex> {
        let mut idx = BlobIndex {
            files: repo.list_ids(FileType::Index)?,
            ..Default::default()
        };
        // Downloads overlap; decoding runs on this thread, one file at a time: a decoded
        // index file (and its JSON) is several times larger than the entries kept from it.
        let per_round = 4 * rayon::current_num_threads().max(1);
        let (total, mut done) = (idx.files.len(), 0);
        for chunk in idx.files.clone().chunks(per_round) {
            let fetched: Vec<(Id, Result<Vec<u8>>)> = chunk
                .par_iter()
                .map(|id| (*id, repo.read_unpacked(FileType::Index, id)))
                .collect();
            for (id, raw) in fetched {
                let decoded = raw.and_then(|raw| {
                    crate::check::decode_index_file(repo, &restash_format::IndexId(id), &raw)
                });
                match decoded {
                    Ok((file, _)) => idx.add_file(&file),
                    Err(EngineError::Corrupt(why)) => {
                        return Err(EngineError::Corrupt(format!("index {}: {why}", id.short())))
                    }
                    Err(e) => return Err(e),
                }
            }
            // Reserve for all files once the first ones show their size, so the entries do
            // not double (and briefly exist twice) as they grow.
            if done == 0 && chunk.len() < total {
                let estimate = idx.entries.len() * total / chunk.len();
                idx.entries.reserve_exact(estimate + estimate / 8);
            }
            done += chunk.len();
        }
        idx.finish();
        Ok(idx)
    }

    /// Sorts by blob and drops entries that are listed twice (the same pack in two index
    /// files, as an interrupted prune leaves them).
    pub fn finish(&mut self) {
        self.entries
            .par_sort_unstable_by(|a, b| a.key().cmp(&b.key()));
        self.entries.dedup_by(|a, b| a.key() == b.key());
        self.entries.shrink_to_fit();
    }

    /// The entries of one blob (empty when it is not indexed).
    pub fn range(&self, t: BlobType, id: &BlobId) -> Range<usize> {
        let k = kind_of(t);
        let start = self.entries.partition_point(|e| (e.kind, &e.id) < (k, id));
        let end = start + self.entries[start..].partition_point(|e| (e.kind, &e.id) == (k, id));
        start..end
    }

    /// Runs of entries that belong to the same blob.
    pub fn groups(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        let mut start = 0;
        std::iter::from_fn(move || {
            if start >= self.entries.len() {
                return None;
            }
            let first = &self.entries[start];
            let mut end = start + 1;
            while end < self.entries.len()
                && self.entries[end].kind == first.kind
                && self.entries[end].id == first.id
            {
                end += 1;
            }
            let r = start..end;
            start = end;
            Some(r)
        })
    }

    /// Decrypts, decompresses and verifies one stored blob.
    pub fn decode(&self, repo: &Repository, e: &Entry, raw: &[u8]) -> Result<Vec<u8>> {
        let ctx = || {
            format!(
                "{} blob {} in pack {}",
                e.blob_type().as_str(),
                e.id.short(),
                self.packs[e.pack as usize].short()
            )
        };
        let mut plain = Vec::new();
        repo.key()
            .open_into(raw, &mut plain)
            .map_err(|err| EngineError::Corrupt(format!("{}: {err}", ctx())))?;
        if e.ulen != 0 {
            let mut out = Vec::new();
            decompress_blob(&plain, e.ulen as usize, &mut out)
                .map_err(|err| EngineError::Corrupt(format!("{}: {err}", ctx())))?;
            plain = out;
        }
        if BlobId::hash(&plain) != e.id {
            return Err(EngineError::Corrupt(format!(
                "{}: content does not match its id",
                ctx()
            )));
        }
        Ok(plain)
    }

    /// Reads one copy of a blob.
    pub fn read(&self, repo: &Repository, e: &Entry) -> Result<Vec<u8>> {
        let pack = self.packs[e.pack as usize];
        let h = Handle::new(FileType::Pack, pack);
        let raw = repo
            .backend()
            .read_range(&h, e.offset as u64, e.length as u64)
            .map_err(EngineError::backend(format!("read {h}")))?;
        self.decode(repo, e, &raw)
    }

    /// Reads a blob from the first copy that reads and verifies.
    pub fn read_any(&self, repo: &Repository, r: Range<usize>) -> Result<Vec<u8>> {
        let mut last = None;
        for i in r {
            match self.read(repo, &self.entries[i]) {
                Ok(b) => return Ok(b),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| EngineError::Corrupt("blob not found in index".into())))
    }

    /// Marks every blob reachable from `roots` as used, loading trees level by level in
    /// parallel. Returns the referenced blobs that no index lists.
    pub fn mark_used(
        &mut self,
        repo: &Repository,
        roots: &[BlobId],
        opts: &super::PruneOptions,
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<(BlobType, BlobId)>> {
        let mut missing = Vec::new();
        let mut frontier: Vec<Range<usize>> = Vec::new();
        let visit_tree = |idx: &mut BlobIndex,
                          id: &BlobId,
                          frontier: &mut Vec<Range<usize>>,
                          missing: &mut Vec<(BlobType, BlobId)>| {
            let r = idx.range(BlobType::Tree, id);
            if r.is_empty() {
                missing.push((BlobType::Tree, *id));
            } else if idx.entries[r.start].flags & USED == 0 {
                idx.entries[r.start].flags |= USED;
                frontier.push(r);
            }
        };
        for root in roots {
            visit_tree(self, root, &mut frontier, &mut missing);
        }
        while !frontier.is_empty() {
            opts.check_interrupt()?;
            let trees: Vec<Result<Tree>> = frontier
                .par_iter()
                .map(|r| {
                    let data = self.read_any(repo, r.clone())?;
                    Tree::from_bytes(&data).map_err(EngineError::format(format!(
                        "tree {}",
                        self.entries[r.start].id.short()
                    )))
                })
                .collect();
            let mut next = Vec::new();
            for tree in trees {
                for node in tree?.nodes {
                    for blob in node.content.iter().flatten() {
                        let r = self.range(BlobType::Data, blob);
                        if r.is_empty() {
                            missing.push((BlobType::Data, *blob));
                        } else {
                            self.entries[r.start].flags |= USED;
                        }
                    }
                    if let Some(sub) = &node.subtree {
                        visit_tree(self, sub, &mut next, &mut missing);
                    }
                }
            }
            frontier = next;
        }
        progress(roots.len());
        missing.sort();
        missing.dedup();
        Ok(missing)
    }
}
