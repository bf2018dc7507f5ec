//! Prune's view of the index: the engine's [`MasterIndex`] (every copy of every blob,
//! sorted by blob, ~52 bytes per entry) loaded without the repository's own copy next to
//! it, plus the index files it came from.

use std::ops::{Deref, Range};

use restash_backend::{FileType, Handle};
use restash_format::{BlobId, BlobType, Id, Tree};

use crate::index::{IndexEntry, MasterIndex};
use crate::{EngineError, Repository, Result};

/// All index entries plus the index files they came from.
#[derive(Debug, Default)]
pub(crate) struct BlobIndex {
    index: MasterIndex,
    /// The index files read, in id order.
    pub files: Vec<Id>,
}

impl Deref for BlobIndex {
    type Target = MasterIndex;

    fn deref(&self) -> &MasterIndex {
        &self.index
    }
}

impl BlobIndex {
    /// Reads every index file; a file that cannot be read or decoded stops prune, as in
    /// restic (pruning on a partial index would delete data).
    pub fn load(repo: &Repository) -> Result<BlobIndex> {
        let mut idx = BlobIndex {
            files: repo.list_ids(FileType::Index)?,
            ..Default::default()
        };
        // Downloads overlap; decoding runs on this thread, one file at a time: a decoded
        // index file (and its JSON) is several times larger than the entries kept from it.
        let per_round = 4 * crate::ahead::IO_THREADS;
        let (total, mut done) = (idx.files.len(), 0);
        for chunk in idx.files.clone().chunks(per_round) {
            // Round trips, not processor time: as many at once as the store takes.
            let fetched: Vec<(Id, Result<Vec<u8>>)> =
                crate::ahead::map_io(chunk, |id| (*id, repo.read_unpacked(FileType::Index, id)));
            for (id, raw) in fetched {
                let decoded = raw.and_then(|raw| {
                    crate::check::decode_index_file(repo, &restash_format::IndexId(id), &raw)
                });
                match decoded {
                    Ok((file, old)) => idx.index.add_file(&file, old),
                    Err(EngineError::Corrupt(why)) => {
                        return Err(EngineError::Corrupt(format!("index {}: {why}", id.short())))
                    }
                    Err(e) => return Err(e),
                }
            }
            // Reserve for all files once the first ones show their size, so the entries do
            // not double (and briefly exist twice) as they grow.
            if done == 0 && chunk.len() < total {
                let estimate = idx.entries_added() * total / chunk.len();
                idx.index.reserve(estimate + estimate / 8);
            }
            done += chunk.len();
        }
        idx.index.finish();
        Ok(idx)
    }

    /// Decrypts, decompresses and verifies one stored blob.
    pub fn decode(&self, repo: &Repository, e: &IndexEntry, raw: &[u8]) -> Result<Vec<u8>> {
        let (mut scratch, mut plain) = (Vec::new(), Vec::new());
        crate::pack::open_blob(
            repo.key(),
            &e.id,
            e.uncompressed_length,
            raw,
            &mut scratch,
            &mut plain,
        )
        .map_err(|fault| {
            EngineError::Corrupt(format!(
                "{} blob {} in pack {}: {fault}",
                e.blob_type.as_str(),
                e.id.short(),
                self.pack_id(e.pack).short()
            ))
        })?;
        Ok(plain)
    }

    /// Reads one copy of a blob.
    pub fn read(&self, repo: &Repository, e: &IndexEntry) -> Result<Vec<u8>> {
        let h = Handle::new(FileType::Pack, self.pack_id(e.pack));
        let raw = repo
            .backend()
            .read_range(&h, e.offset as u64, e.length as u64)
            .map_err(EngineError::backend(format!("read {h}")))?;
        self.decode(repo, e, &raw)
    }

    /// Reads a blob from the first copy that reads and verifies.
    pub fn read_any(&self, repo: &Repository, r: Range<usize>) -> Result<Vec<u8>> {
        let mut last = None;
        for e in &self.entries()[r] {
            match self.read(repo, e) {
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
        cancel: &crate::events::Cancel,
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
            } else if !idx.entries()[r.start].used {
                idx.index.set_used(r.start);
                frontier.push(r);
            }
        };
        for root in roots {
            visit_tree(self, root, &mut frontier, &mut missing);
        }
        while !frontier.is_empty() {
            cancel.check()?;
            let this = &*self;
            let trees: Vec<Result<Tree>> = crate::ahead::map_io(&frontier, |r| {
                let data = this.read_any(repo, r.clone())?;
                Tree::from_bytes(&data).map_err(EngineError::format(format!(
                    "tree {}",
                    this.entries()[r.start].id.short()
                )))
            });
            let mut next = Vec::new();
            for tree in trees {
                for node in tree?.nodes {
                    for blob in node.content.iter().flatten() {
                        let r = self.range(BlobType::Data, blob);
                        if r.is_empty() {
                            missing.push((BlobType::Data, *blob));
                        } else {
                            self.index.set_used(r.start);
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
