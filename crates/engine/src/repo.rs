use std::sync::Arc;

use restash_backend::{Backend, BackendError, FileType, Handle};
use restash_crypto::{CryptoError, Key};
use restash_format::{
    decode_unpacked, BlobId, BlobType, Config, FormatError, Id, IndexFile, KeyFile, KeyId,
    PackEntry, PackId, Snapshot, SnapshotId, Tree, HEADER_TAIL_READ,
};

use crate::ahead::{both, map_io, ListAhead};
use crate::index::{BlobLocation, IndexEntry, MasterIndex};
use crate::keys::{load_key_file, UnreadableKey};
use crate::pack::{header_length, open_header, HeaderFault};
use crate::snapshots::{Snapshots, UnreadableSnapshot};
use crate::tree_ahead::TreeAhead;
use crate::{EngineError, Result};

fn rand_core() -> impl rand::RngCore {
    rand::rngs::OsRng
}

/// restic tries at most this many key files before giving up.
const MAX_KEYS: usize = 20;

/// An open repository: backend, master key, config and (once loaded) the index.
pub struct Repository {
    backend: Arc<dyn Backend>,
    // The layer under any cache that lists ahead (absent for a repository just created).
    ahead: Option<Arc<ListAhead>>,
    key: Key,
    key_id: KeyId,
    config: Config,
    index: MasterIndex,
    unreadable_keys: Vec<UnreadableKey>,
    pub(crate) tree_ahead: TreeAhead,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.backend.location())
            .field("version", &self.config.version)
            .finish_non_exhaustive()
    }
}

/// The error for the stored bytes of `t` `id` that do not hash to its name.
fn not_its_name(t: FileType, id: &Id) -> EngineError {
    EngineError::Corrupt(format!(
        "load {}: invalid data returned (hash does not match the name)",
        Handle::new(t, *id)
    ))
}

/// Why key file `id` could not be opened, naming it, or None for a wrong password.
fn map_key_error(e: FormatError, id: KeyId) -> Option<EngineError> {
    match e {
        FormatError::Crypto(CryptoError::Unauthenticated) => None,
        other => Some(EngineError::format(format!("key {id}"))(other)),
    }
}

/// Why no key opened: the password is wrong only if every key file could be read. A key
/// file that could not be read may be the one for this password, so that is said instead
/// (and a backend failure keeps its own error, which may be worth retrying).
fn no_key_opened(mut unreadable: Vec<UnreadableKey>) -> EngineError {
    if unreadable.is_empty() {
        return EngineError::WrongPassword;
    }
    if let Some(pos) = unreadable
        .iter()
        .position(|u| matches!(u.error, EngineError::Backend { .. }))
    {
        return unreadable.swap_remove(pos).error;
    }
    let list: Vec<String> = unreadable.iter().map(|u| u.to_string()).collect();
    EngineError::Corrupt(format!(
        "no key opened with the password, and {} key files cannot be read: {}",
        unreadable.len(),
        list.join("; ")
    ))
}

impl Repository {
    /// Opens the repository with `password`: tries the hinted key first, then every key
    /// file (at most 20), then loads and checks the config. The index is not loaded yet.
    /// A key file that cannot be read does not stop the search: any key that opens will
    /// do, and the unreadable ones tried before it are in [`Self::unreadable_keys`].
    pub fn open(
        backend: Arc<dyn Backend>,
        password: &[u8],
        key_hint: Option<&str>,
    ) -> Result<Repository> {
        // Almost every command lists snapshots or index files next; over a long link those
        // listings, the config and the key listing cost one round trip together instead
        // of four, and deriving the key hides them.
        Self::open_listing(
            backend,
            password,
            key_hint,
            &[FileType::Snapshot, FileType::Index],
        )
    }

    /// [`Self::open`], listing ahead only the types in `ahead`: a backup that finds its
    /// parent by a hint lists neither snapshots nor index files, whose listings grow with
    /// every volume sharing the repository.
    pub fn open_listing(
        backend: Arc<dyn Backend>,
        password: &[u8],
        key_hint: Option<&str>,
        ahead: &[FileType],
    ) -> Result<Repository> {
        let loc = backend.location();
        let listings = ahead;
        let ahead = Arc::new(ListAhead::new(backend));
        for t in listings {
            ahead.start(*t);
        }
        let backend: Arc<dyn Backend> = ahead.clone();
        let (sealed, keys) = both(
            || backend.read(&Handle::config()),
            || backend.list(FileType::Key),
        );
        let sealed = match sealed {
            Ok(data) => data,
            // Name the missing file: a deleted config looks like no repository at all.
            Err(BackendError::NotFound(_)) => {
                return Err(EngineError::NoRepository(format!(
                    "unable to open config file in {loc}"
                )))
            }
            Err(BackendError::NoRepository(_)) => return Err(EngineError::NoRepository(loc)),
            Err(e) => return Err(EngineError::backend("read config")(e)),
        };
        let mut keys = keys.map_err(EngineError::backend("list keys"))?;
        keys.sort_by_key(|k| k.id);
        if let Some(hint) = key_hint {
            if let Some(pos) = keys.iter().position(|k| k.id.to_hex().starts_with(hint)) {
                let k = keys.remove(pos);
                keys.insert(0, k);
            }
        }
        let mut opened = None;
        let mut unreadable = Vec::new();
        for info in keys.iter().take(MAX_KEYS) {
            let id = KeyId(info.id);
            let bad = |error| UnreadableKey { id, error };
            let kf = match load_key_file(backend.as_ref(), id) {
                Ok(kf) => kf,
                Err(e) => {
                    unreadable.push(bad(e));
                    continue;
                }
            };
            match kf.open(password) {
                Ok(key) => {
                    opened = Some((key, id));
                    break;
                }
                Err(e) => {
                    if let Some(err) = map_key_error(e, id) {
                        unreadable.push(bad(err));
                    }
                }
            }
        }
        let Some((key, key_id)) = opened else {
            return Err(no_key_opened(unreadable));
        };
        let plain = key.open(&sealed).map_err(|_| {
            EngineError::Corrupt(format!("config or key {} is damaged", key_id.short()))
        })?;
        let config = Config::from_json(&plain).map_err(EngineError::format("config"))?;
        if !(1..=2).contains(&config.version) {
            return Err(EngineError::Corrupt(format!(
                "unsupported repository version {}",
                config.version
            )));
        }
        let pol = config.polynomial().map_err(EngineError::format("config"))?;
        crate::check_polynomial(pol)?;
        Ok(Repository {
            backend,
            ahead: Some(ahead),
            key,
            key_id,
            config,
            index: MasterIndex::new(),
            unreadable_keys: unreadable,
            tree_ahead: TreeAhead::default(),
        })
    }

    /// Key files tried before the one that opened, which could not be read.
    pub fn unreadable_keys(&self) -> &[UnreadableKey] {
        &self.unreadable_keys
    }

    /// Creates a new repository: directories, a key file for `password` and the config.
    pub fn init(
        backend: Arc<dyn Backend>,
        password: &[u8],
        version: u32,
        kdf: restash_crypto::KdfParams,
    ) -> Result<Repository> {
        if !(1..=2).contains(&version) {
            return Err(EngineError::Usage(format!(
                "unsupported repository version {version}"
            )));
        }
        backend
            .create()
            .map_err(EngineError::backend("create repository"))?;
        let key = Key::random();
        let pol = restash_chunker::Pol::random(&mut rand_core())
            .map_err(|e| EngineError::Usage(format!("chunker polynomial: {e}")))?;
        let config = Config::new(version, pol.value());
        let (user, host) = (crate::whoami::user_name(), crate::whoami::host_name());
        let kf = KeyFile::create(&key, password, kdf, &user, &host)
            .map_err(|e| EngineError::Usage(format!("key derivation: {e}")))?;
        let kbytes = kf.to_json();
        let key_id = KeyId::hash(&kbytes);
        backend
            .write(&Handle::new(FileType::Key, key_id), &kbytes)
            .map_err(EngineError::backend("write key"))?;
        backend
            .write(&Handle::config(), &key.seal(&config.to_json()))
            .map_err(EngineError::backend("write config"))?;
        Ok(Repository {
            backend,
            ahead: None,
            key,
            key_id,
            config,
            index: MasterIndex::new(),
            unreadable_keys: Vec::new(),
            tree_ahead: TreeAhead::default(),
        })
    }

    /// Encrypts (and in v2 compresses) an unpacked file and stores it under its hash.
    pub fn save_unpacked(&self, t: FileType, json: &[u8]) -> Result<Id> {
        let (id, sealed) = self.seal_unpacked(json);
        self.write_sealed(t, &id, &sealed)?;
        Ok(id)
    }

    /// The first half of [`Self::save_unpacked`]: the stored bytes and their id, for a
    /// caller that needs the id before the file is written.
    pub fn seal_unpacked(&self, json: &[u8]) -> (Id, Vec<u8>) {
        let plain = restash_format::encode_unpacked(self.config.version, json);
        let sealed = self.key.seal(&plain);
        (Id::hash(&sealed), sealed)
    }

    /// The second half of [`Self::save_unpacked`].
    pub fn write_sealed(&self, t: FileType, id: &Id, sealed: &[u8]) -> Result<()> {
        let h = Handle::new(t, *id);
        self.backend
            .write(&h, sealed)
            .map_err(EngineError::backend(format!("save {h}")))
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Puts a layer around the backend (a cache, which can only be placed once the
    /// config's repository id is known). Every later read and write goes through it.
    pub fn wrap_backend(&mut self, f: impl FnOnce(Arc<dyn Backend>) -> Arc<dyn Backend>) {
        self.backend = f(self.backend.clone());
    }

    /// The repository id from the config (names the repository's cache directory).
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// The master key (never printed by Debug).
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Which key file opened.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The decrypted config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The repository format version.
    pub fn version(&self) -> u32 {
        self.config.version
    }

    /// The loaded index.
    pub fn index(&self) -> &MasterIndex {
        &self.index
    }

    /// Drops the loaded index (prune builds its own and must not have blobs skipped as
    /// already stored while it repacks them).
    pub fn unload_index(&mut self) {
        self.index = MasterIndex::new();
    }

    /// Reads an unpacked file (index, snapshot, lock): checks its name is the hash of its
    /// bytes, opens it, and undoes the v2 compression.
    pub fn load_unpacked(&self, t: FileType, id: &Id) -> Result<Vec<u8>> {
        let (data, intact) = self.read_checked(t, id)?;
        if !intact {
            return Err(not_its_name(t, id));
        }
        self.decrypt_unpacked(t, id, &data)
    }

    /// The stored bytes of an unpacked file, as they are (see [`Self::open_unpacked`]).
    /// Bytes that do not hash to the file's name are read a second time, as restic does: a
    /// store or proxy that cut or garbled one answer gives the real bytes then, while
    /// damage in the store gives the same bytes again, for the caller to report.
    pub fn read_unpacked(&self, t: FileType, id: &Id) -> Result<Vec<u8>> {
        self.read_checked(t, id).map(|(data, _)| data)
    }

    /// [`Self::read_unpacked`], and whether the bytes hash to the file's name.
    fn read_checked(&self, t: FileType, id: &Id) -> Result<(Vec<u8>, bool)> {
        let h = Handle::new(t, *id);
        let read = || {
            self.backend
                .read(&h)
                .map_err(EngineError::backend(format!("load {h}")))
        };
        let data = read()?;
        if Id::hash(&data) == *id {
            return Ok((data, true));
        }
        tracing::debug!("load {h}: the bytes read do not hash to its name; reading it again");
        let data = read()?;
        let intact = Id::hash(&data) == *id;
        Ok((data, intact))
    }

    /// Checks, opens and decompresses the stored bytes of an unpacked file: the second half
    /// of [`Self::load_unpacked`], for callers that download in parallel but decode on one
    /// thread.
    pub fn open_unpacked(&self, t: FileType, id: &Id, data: &[u8]) -> Result<Vec<u8>> {
        if Id::hash(data) != *id {
            return Err(not_its_name(t, id));
        }
        self.decrypt_unpacked(t, id, data)
    }

    /// Opens and decompresses bytes known to hash to the file's name (or, for a hint,
    /// to match it).
    pub(crate) fn decrypt_unpacked(&self, t: FileType, id: &Id, data: &[u8]) -> Result<Vec<u8>> {
        let h = Handle::new(t, *id);
        let plain = self
            .key
            .open(data)
            .map_err(|e| EngineError::Corrupt(format!("load {h}: decryption failed: {e}")))?;
        decode_unpacked(self.config.version, plain).map_err(EngineError::format(format!("{h}")))
    }

    /// Ids of the files of a type, sorted.
    pub fn list_ids(&self, t: FileType) -> Result<Vec<Id>> {
        let mut ids: Vec<Id> = self
            .backend
            .list(t)
            .map_err(EngineError::backend(format!("list {}", t.dir())))?
            .into_iter()
            .map(|f| f.id)
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Loads one snapshot.
    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let data = self.load_unpacked(FileType::Snapshot, &id.0)?;
        Snapshot::from_json(&data).map_err(EngineError::format(format!("snapshot {}", id.short())))
    }

    /// Loads every snapshot, in parallel. A snapshot that fails to load is kept, with its
    /// error, beside the good ones: one bad file neither hides the rest nor goes unnoticed.
    pub fn load_snapshots(&self) -> Result<Snapshots> {
        let ids = self.list_ids(FileType::Snapshot)?;
        let results = map_io(&ids, |id| {
            let sid = SnapshotId(*id);
            (sid, self.load_snapshot(&sid))
        });
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for (id, r) in results {
            match r {
                Ok(s) => good.push((id, s)),
                Err(error) => bad.push(UnreadableSnapshot { id, error }),
            }
        }
        Ok(Snapshots::new(good, bad))
    }

    /// Loads and merges every index file, in parallel.
    pub fn load_index(&mut self) -> Result<()> {
        self.index = self.read_index()?;
        Ok(())
    }

    /// Loads the index on another thread while `work` runs on this one with the
    /// repository (choosing a snapshot, taking a lock), so that their round trips overlap.
    /// Returns `work`'s result and then the index's: a caller reports `work`'s error first.
    pub fn load_index_with<T>(&mut self, work: impl FnOnce(&Repository) -> T) -> (T, Result<()>) {
        let this = &*self;
        let (index, out) = both(|| this.read_index(), || work(this));
        let loaded = index.map(|index| self.index = index);
        (out, loaded)
    }

    /// Loads and merges every index file, in parallel, without installing the result:
    /// for commands that load the index while they do something else with the repository.
    pub fn read_index(&self) -> Result<MasterIndex> {
        self.read_index_files().map(|(index, _)| index)
    }

    /// [`Self::read_index`], and the ids of the index files it read.
    pub(crate) fn read_index_files(&self) -> Result<(MasterIndex, Vec<Id>)> {
        let ids = self.list_ids(FileType::Index)?;
        let index = self.read_index_of(&ids)?;
        Ok((index, ids))
    }

    /// Loads and merges the index files `ids`, in parallel.
    pub(crate) fn read_index_of(&self, ids: &[Id]) -> Result<MasterIndex> {
        let files: Vec<Result<(IndexFile, bool)>> = map_io(ids, |id| {
            let data = self.load_unpacked(FileType::Index, id)?;
            IndexFile::from_json(&data)
                .map_err(EngineError::format(format!("index {}", id.short())))
        });
        let mut index = MasterIndex::new();
        index.reserve(
            files
                .iter()
                .flatten()
                .flat_map(|(f, _)| &f.packs)
                .map(|p| p.blobs.len())
                .sum(),
        );
        for f in files {
            let (file, old) = f?;
            if self.config.version < 2
                && file
                    .packs
                    .iter()
                    .any(|p| p.blobs.iter().any(|b| b.uncompressed_length.is_some()))
            {
                return Err(EngineError::Corrupt(
                    "index uses feature not supported by repository version 1".into(),
                ));
            }
            index.add_file(&file, old);
        }
        index.finish();
        Ok(index)
    }

    /// Starts listing `t` now, for a command that will list it after other round trips
    /// (backup lists packs while it loads the index). Without a store under it, nothing.
    pub fn list_ahead(&self, t: FileType) {
        if let Some(ahead) = &self.ahead {
            ahead.start(t);
        }
    }

    /// Starts the listings not yet taken again (see [`ListAhead::restart`]): a lock was
    /// just taken, and what was listed before may be out of date.
    pub(crate) fn restart_listings(&self) {
        if let Some(ahead) = &self.ahead {
            ahead.restart();
        }
    }

    /// Replaces the loaded index (check and repair build their own from the index files).
    pub fn set_index(&mut self, index: MasterIndex) {
        self.index = index;
    }

    /// Decrypts, decompresses and verifies a blob read from `raw` (the stored bytes).
    pub fn decode_blob(
        &self,
        id: &BlobId,
        loc: &BlobLocation,
        raw: &[u8],
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        crate::pack::open_blob(&self.key, id, loc.uncompressed_length, raw, scratch, out).map_err(
            |fault| {
                let pack = self.index.pack_id(loc.pack);
                EngineError::Corrupt(format!(
                    "blob {} in pack {}: {fault}",
                    id.short(),
                    pack.short()
                ))
            },
        )
    }

    /// Loads a blob by id, trying every copy the index knows.
    pub fn load_blob(&self, id: &BlobId, t: BlobType) -> Result<Vec<u8>> {
        let copies = self.index.copies(id, t);
        if copies.is_empty() {
            return Err(EngineError::Corrupt(format!(
                "{} blob {} not found in index",
                t.as_str(),
                id
            )));
        }
        let mut last = None;
        let mut raw = Vec::new();
        for loc in copies.iter().map(IndexEntry::location) {
            let pack = self.index.pack_id(loc.pack);
            let h = Handle::new(FileType::Pack, pack);
            let (offset, length) = (loc.offset as u64, loc.length as u64);
            // Packs with trees are read by every command that walks a snapshot, so a
            // caching backend keeps them whole; data packs are read once, by restore.
            let read = match t {
                BlobType::Tree => self
                    .backend
                    .read_metadata_range_into(&h, offset, length, &mut raw),
                _ => self.backend.read_range_into(&h, offset, length, &mut raw),
            };
            match read {
                Ok(()) => {}
                Err(e) => {
                    last = Some(EngineError::backend(format!("read {h}"))(e));
                    continue;
                }
            };
            let (mut scratch, mut out) = (Vec::new(), Vec::new());
            match self.decode_blob(id, &loc, &raw, &mut scratch, &mut out) {
                Ok(()) => return Ok(out),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one location was tried"))
    }

    /// Reads, verifies and parses the header of a pack of `size` bytes.
    pub fn read_pack_header(&self, id: &PackId, size: u64) -> Result<Vec<PackEntry>> {
        let h = Handle::new(FileType::Pack, *id);
        let ctx = || format!("pack {}", id.short());
        let tail_len = size.min(HEADER_TAIL_READ);
        let tail = self
            .backend
            .read_range(&h, size - tail_len, tail_len)
            .map_err(EngineError::backend(ctx()))?;
        let fault = |f: HeaderFault| match f {
            HeaderFault::Length(e) | HeaderFault::Parse(e) => EngineError::format(ctx())(e),
            f => EngineError::Corrupt(format!("{}: {f}", ctx())),
        };
        let hl = header_length(&tail, size).map_err(fault)?;
        let header = if hl + 4 <= tail_len {
            tail[(tail_len - 4 - hl) as usize..(tail_len - 4) as usize].to_vec()
        } else {
            self.backend
                .read_range(&h, size - 4 - hl, hl)
                .map_err(EngineError::backend(ctx()))?
        };
        open_header(&self.key, &header).map_err(fault)
    }

    /// Loads and decodes a tree (taking it from the trees loaded ahead of a walk when it
    /// is there, see [`Self::prefetching_trees`]).
    pub fn load_tree(&self, id: &BlobId) -> Result<Tree> {
        match self.tree_ahead.take(id) {
            Some(tree) => Ok(tree),
            None => {
                let tree = self.load_tree_now(id)?;
                self.tree_ahead.walked(&tree);
                Ok(tree)
            }
        }
    }

    /// Loads and decodes a tree from the store.
    pub(crate) fn load_tree_now(&self, id: &BlobId) -> Result<Tree> {
        let data = self.load_blob(id, BlobType::Tree)?;
        Tree::from_bytes(&data).map_err(EngineError::format(format!("tree {}", id.short())))
    }

    /// Whether a backend error means "not there".
    pub fn is_not_found(e: &BackendError) -> bool {
        matches!(e, BackendError::NotFound(_))
    }
}
