//! Saves blobs: deduplicates against the index and this run, compresses, seals, packs,
//! uploads full packs and writes index files as it goes (so an interrupted backup leaves
//! its uploaded packs indexed).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use restash_backend::{FileType, Handle};
use restash_format::{
    compress_blob, BlobId, BlobType, Compression, IndexFile, IndexPack, PackBuilder, PackId, Tree,
};

use crate::{EngineError, Repository, Result};

/// restic 0.14 writes an index file once it holds this many blobs (v2) …
const INDEX_MAX_BLOBS: usize = 150_000;
/// … or when it is this old; restash flushes more often than restic's 10 minutes so that a
/// killed backup loses little.
const INDEX_MAX_AGE: Duration = Duration::from_secs(30);

/// Counters reported in the summary, with restic's meaning.
#[derive(Debug, Default)]
pub struct SaveStats {
    /// New data blobs.
    pub data_blobs: AtomicU64,
    /// New tree blobs.
    pub tree_blobs: AtomicU64,
    /// Plaintext bytes of new blobs.
    pub data_added: AtomicU64,
    /// Bytes of new blobs as stored (compressed and encrypted).
    pub data_added_packed: AtomicU64,
}

#[derive(Default)]
struct Reach {
    blobs: crate::hints::Reached,
    written: Vec<IndexPack>,
}

struct PendingIndex {
    file: IndexFile,
    blobs: usize,
    since: Instant,
}

/// Blob sink shared by all workers of one backup.
pub struct Saver<'a> {
    repo: &'a Repository,
    compression: Compression,
    pack_size: usize,
    dry_run: bool,
    known: Mutex<HashSet<(BlobId, BlobType)>>,
    // Open packs not in use by a worker. A worker takes one, seals its blob straight into
    // it without holding any lock, and puts it back (or uploads it when full), so workers
    // never wait for each other's encryption.
    data: Mutex<Vec<PackBuilder>>,
    tree: Mutex<Vec<PackBuilder>>,
    // Buffers of uploaded packs, reused so that new packs do not fault in fresh pages.
    spare: Mutex<Vec<Vec<u8>>>,
    pending: Mutex<PendingIndex>,
    // Set for a run that writes a parent hint: every blob its snapshot reaches, and the
    // packs it wrote.
    reach: Option<Mutex<Reach>>,
    index_files: Mutex<Vec<restash_format::Id>>,
    /// What this run added.
    pub stats: SaveStats,
}

thread_local! {
    static ZSTD: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

fn compress(plain: &[u8], level: i32) -> Vec<u8> {
    ZSTD.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().map(|(l, _)| *l) != Some(level) {
            match zstd::bulk::Compressor::new(level) {
                Ok(c) => *slot = Some((level, c)),
                Err(_) => return compress_blob(plain, level),
            }
        }
        let (_, c) = slot.as_mut().expect("set above");
        c.compress(plain)
            .unwrap_or_else(|_| compress_blob(plain, level))
    })
}

/// Whether zstd is worth trying: a cheap probe of the start of the blob, so that random
/// data (most of a typical home directory's bytes: media, archives) skips the full pass.
fn looks_compressible(plain: &[u8], level: i32) -> bool {
    const PROBE: usize = 32 << 10;
    if plain.len() <= PROBE {
        return true;
    }
    let probe = compress(&plain[..PROBE], level.min(3));
    probe.len() < PROBE * 97 / 100
}

impl<'a> Saver<'a> {
    /// A saver for one backup run.
    pub fn new(
        repo: &'a Repository,
        compression: Compression,
        pack_size: usize,
        dry_run: bool,
    ) -> Self {
        Saver {
            repo,
            compression,
            pack_size,
            dry_run,
            known: Mutex::new(HashSet::new()),
            data: Mutex::new(Vec::new()),
            tree: Mutex::new(Vec::new()),
            spare: Mutex::new(Vec::new()),
            pending: Mutex::new(PendingIndex {
                file: IndexFile::default(),
                blobs: 0,
                since: Instant::now(),
            }),
            reach: None,
            index_files: Mutex::new(Vec::new()),
            stats: SaveStats::default(),
        }
    }

    /// Records what the snapshot reaches, for its parent hint (see
    /// [`Saver::reached_tree`]).
    pub fn recording_reach(mut self) -> Self {
        self.reach = Some(Mutex::new(Reach::default()));
        self
    }

    /// A tree of the snapshot being written, by id, whether new or the parent's: it and
    /// the data blobs its files name are reached (its subtrees are recorded on their own).
    pub fn reached_tree(&self, id: BlobId, tree: &Tree) {
        let Some(reach) = &self.reach else { return };
        let mut r = reach.lock().expect("reach");
        r.blobs.insert((id, BlobType::Tree));
        for n in &tree.nodes {
            for b in n.content.iter().flatten() {
                r.blobs.insert((*b, BlobType::Data));
            }
        }
    }

    /// What [`Saver::reached_tree`] recorded, with the packs this run wrote; None unless
    /// recording.
    pub(crate) fn take_reach(&self) -> Option<(crate::hints::Reached, Vec<IndexPack>)> {
        let reach = self.reach.as_ref()?;
        let r = std::mem::take(&mut *reach.lock().expect("reach"));
        Some((r.blobs, r.written))
    }

    /// Stores a blob unless it exists; returns whether it was new.
    pub fn save(&self, t: BlobType, id: BlobId, plain: &[u8]) -> Result<bool> {
        if self.repo.index().has(&id, t) || !self.known.lock().expect("known").insert((id, t)) {
            return Ok(false);
        }
        let level = if self.repo.version() < 2 {
            None
        } else if t == BlobType::Tree {
            // restic compresses trees in v2 whatever --compression says.
            Some(self.compression.level().unwrap_or(3))
        } else {
            self.compression.level()
        };
        let mut payload = None;
        if let Some(level) = level {
            if !plain.is_empty() && (t == BlobType::Tree || looks_compressible(plain, level)) {
                let z = compress(plain, level);
                // Incompressible blobs are stored as they are: restic accepts both.
                if z.len() < plain.len() {
                    payload = Some(z);
                }
            }
        }
        let (payload, ulen) = match &payload {
            Some(z) => (z.as_slice(), Some(plain.len() as u32)),
            None => (plain, None),
        };
        let pool = match t {
            BlobType::Data => &self.data,
            BlobType::Tree => &self.tree,
        };
        let popped = pool.lock().expect("packers").pop();
        let mut pack = popped.unwrap_or_else(|| self.new_pack());
        let stored = pack.add_blob(self.repo.key(), t, id, payload, ulen);
        self.stats
            .data_added
            .fetch_add(plain.len() as u64, Ordering::Relaxed);
        self.stats
            .data_added_packed
            .fetch_add(stored as u64, Ordering::Relaxed);
        match t {
            BlobType::Data => self.stats.data_blobs.fetch_add(1, Ordering::Relaxed),
            BlobType::Tree => self.stats.tree_blobs.fetch_add(1, Ordering::Relaxed),
        };
        if pack.len() >= self.pack_size {
            self.upload(pack, t)?;
        } else {
            pool.lock().expect("packers").push(pack);
        }
        Ok(true)
    }

    fn new_pack(&self) -> PackBuilder {
        match self.spare.lock().expect("spare buffers").pop() {
            Some(buf) => PackBuilder::with_buffer(buf),
            None => {
                let mut p = PackBuilder::new();
                // A pack ends after the blob that crosses the target: up to one 8 MiB chunk
                // more. Reserved capacity that is never written costs no memory.
                p.reserve(self.pack_size + (9 << 20));
                p
            }
        }
    }

    /// Stores a pack of blobs of type `t` (packs never mix types, as in restic).
    fn upload(&self, pack: PackBuilder, t: BlobType) -> Result<()> {
        if pack.is_empty() {
            return Ok(());
        }
        let (bytes, id, entries) = pack.finish(self.repo.key());
        if !self.dry_run {
            let h = Handle::new(FileType::Pack, id);
            // Tree packs are read by the next command that walks a snapshot: a cache
            // keeps them from the start.
            let written = match t {
                BlobType::Tree => self.repo.backend().write_metadata(&h, &bytes),
                BlobType::Data => self.repo.backend().write(&h, &bytes),
            };
            match written {
                Ok(()) => {}
                // Same content, same name: another run stored this exact pack already.
                Err(restash_backend::BackendError::AlreadyExists(_)) => {}
                Err(e) => return Err(EngineError::backend(format!("save {h}"))(e)),
            }
        }
        {
            let mut spare = self.spare.lock().expect("spare buffers");
            if spare.is_empty() {
                spare.push(bytes);
            }
        }
        let flush = {
            let mut p = self.pending.lock().expect("pending index");
            p.blobs += entries.len();
            let pack = IndexPack {
                id,
                blobs: entries.into_iter().map(Into::into).collect(),
            };
            if let Some(reach) = &self.reach {
                reach.lock().expect("reach").written.push(pack.clone());
            }
            p.file.packs.push(pack);
            (p.blobs >= INDEX_MAX_BLOBS || p.since.elapsed() >= INDEX_MAX_AGE)
                .then(|| take_pending(&mut p))
        };
        if let Some(file) = flush {
            self.write_index(file)?;
        }
        Ok(())
    }

    fn write_index(&self, file: IndexFile) -> Result<()> {
        if self.dry_run || file.packs.is_empty() {
            return Ok(());
        }
        let id = self.repo.save_unpacked(FileType::Index, &file.to_json())?;
        self.index_files.lock().expect("index files").push(id);
        Ok(())
    }

    /// The index files this saver wrote.
    pub fn index_files(&self) -> Vec<restash_format::Id> {
        self.index_files.lock().expect("index files").clone()
    }

    /// Uploads the partly filled packs and writes the index for everything uploaded.
    /// Called at the end of a backup and when it is interrupted.
    pub fn flush(&self) -> Result<()> {
        for (pool, t) in [(&self.data, BlobType::Data), (&self.tree, BlobType::Tree)] {
            let mut packs = std::mem::take(&mut *pool.lock().expect("packers"));
            // Workers that saved at the same moment each filled their own pack; joined,
            // the run ends with as few packs as restic's single packer leaves.
            packs.sort_by_key(|p| std::cmp::Reverse(p.len()));
            let mut open: Option<PackBuilder> = None;
            for pack in packs {
                open = Some(match open {
                    Some(mut cur) if cur.len() + pack.len() <= self.pack_size => {
                        cur.append(pack);
                        cur
                    }
                    Some(full) => {
                        self.upload(full, t)?;
                        pack
                    }
                    None => pack,
                });
            }
            if let Some(last) = open {
                self.upload(last, t)?;
            }
        }
        let file = take_pending(&mut self.pending.lock().expect("pending index"));
        self.write_index(file)
    }
}

fn take_pending(p: &mut PendingIndex) -> IndexFile {
    p.blobs = 0;
    p.since = Instant::now();
    std::mem::take(&mut p.file)
}

/// Packs in `data/` that no index names (left by an interrupted backup): their headers are
/// read and indexed so that their blobs are reused instead of uploaded again.
pub fn adopt_orphan_packs(repo: &mut Repository) -> Result<usize> {
    let mut indexed: HashSet<PackId> = HashSet::new();
    for (_, _, loc) in repo.index().iter() {
        indexed.insert(repo.index().pack_id(loc.pack));
    }
    let listing = repo
        .backend()
        .list(FileType::Pack)
        .map_err(EngineError::backend("list packs"))?;
    let mut file = IndexFile::default();
    for info in listing {
        let id = PackId(info.id);
        if indexed.contains(&id) {
            continue;
        }
        // A damaged orphan is skipped: it was never part of any snapshot.
        if let Ok(entries) = repo.read_pack_header(&id, info.size) {
            file.packs.push(IndexPack {
                id,
                blobs: entries.into_iter().map(Into::into).collect(),
            });
        }
    }
    let n = file.packs.len();
    if n > 0 {
        repo.save_unpacked(FileType::Index, &file.to_json())?;
        repo.load_index()?;
    }
    Ok(n)
}
