//! A verified local cache of one repository's metadata, laid out as restic lays out its
//! cache: `<base>/CACHEDIR.TAG`, and under `<base>/<repository id>/` a `version` file and
//! `snapshots/<xx>/<id>`, `index/<xx>/<id>`, `data/<xx>/<id>` (packs with tree blobs).
//!
//! Every cached file is named by the SHA-256 of its bytes, so an entry is used only after
//! hashing it: a damaged entry is removed and fetched again, never served. Entries appear
//! atomically (a temporary file in the same directory, then a rename), so processes
//! sharing the cache never see half an entry; two processes filling the same entry write
//! the same bytes, so either rename may win. Listing a type drops the entries the store no
//! longer lists, or lists with another size.
//!
//! The cache is an optimisation only: when the cache directory cannot be read or written,
//! reads go to the store, whose bytes are the same by construction.

use std::collections::HashMap;
use std::fs;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use crate::{
    copy_range, is_id_name, is_leftover_name, short_read, Backend, BackendError, FileInfo,
    FileType, Handle, Id, Leftover,
};

/// The content of restic's `CACHEDIR.TAG` (<https://bford.info/cachedir/>): backup tools
/// that honour the tag (restic's `--exclude-caches`, GNU tar) skip the cache.
pub const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n";

/// restic's cache layout version; a newer one is refused, as restic does.
const CACHE_VERSION: u32 = 1;

/// Concurrent fills of the same entry by threads of this process wait on one of these
/// (chosen by name) instead of each downloading a whole pack.
const FILL_LOCKS: usize = 64;

/// A temporary file older than this was left by a process that died while filling.
const STALE_TEMP: Duration = Duration::from_secs(3600);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is a single insert, remove or nothing at all, so a poisoned
    // lock guards consistent data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The cache directory of a file type, for the types that are cached.
fn type_dir(t: FileType) -> Option<&'static str> {
    match t {
        FileType::Snapshot => Some("snapshots"),
        FileType::Index => Some("index"),
        FileType::Pack => Some("data"),
        _ => None,
    }
}

/// Whether `data` is what the file of `h` must hold: its id is the hash of its bytes.
fn hash_matches(data: &[u8], h: &Handle) -> bool {
    h.id() == Some(Id::hash(data))
}

/// Identifies one version of a cached file on disk: a pack verified once in this process
/// is not hashed again for every tree read from it unless the file was replaced or
/// rewritten since (which changes its inode, size or modification time). Hashing 16 MiB
/// for each of the thousands of trees in a pack would cost more than the download it
/// saves. What this cannot see, bytes rotting on disk during one run, still fails the
/// authenticated decryption of each blob; every new process hashes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        }
    }
}

fn mkdir(path: &Path) -> Result<(), BackendError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(BackendError::io(format!(
            "creating cache directory {}",
            path.display()
        )))
}

/// Wraps a backend and keeps snapshots, index files and packs with tree blobs in a local
/// directory (see the module documentation).
pub struct CachedBackend {
    inner: Arc<dyn Backend>,
    base: PathBuf,
    dir: PathBuf,
    fills: Vec<Mutex<()>>,
    verified: Mutex<HashMap<Handle, Stamp>>,
}

impl std::fmt::Debug for CachedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedBackend")
            .field("inner", &self.inner.location())
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl CachedBackend {
    /// `inner` with the cache of repository `repo_id` (the config's `id`) under `base`.
    /// Creates the directories and `CACHEDIR.TAG` as needed and marks the cache as used
    /// now (`restash cache` ages directories by that time, as restic does).
    pub fn new(
        inner: Arc<dyn Backend>,
        base: &Path,
        repo_id: &str,
    ) -> Result<CachedBackend, BackendError> {
        // The id names a directory: anything but hex could point outside the base.
        if !is_id_name(repo_id) {
            return Err(BackendError::Config(format!(
                "repository id {repo_id:?} is not 64 hex digits, so it cannot name a cache directory"
            )));
        }
        mkdir(base)?;
        write_tag(base)?;
        let dir = base.join(repo_id.to_ascii_lowercase());
        let version_file = dir.join("version");
        let version = match fs::read_to_string(&version_file) {
            Ok(s) => Some(s.trim().parse::<u32>().map_err(|_| {
                BackendError::Config(format!("{} is not a number", version_file.display()))
            })?),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => {
                return Err(BackendError::io(format!(
                    "reading {}",
                    version_file.display()
                ))(e))
            }
        };
        if version.is_some_and(|v| v > CACHE_VERSION) {
            return Err(BackendError::Config(format!(
                "cache {} has a newer layout version than this program knows",
                dir.display()
            )));
        }
        for sub in ["snapshots", "index", "data"] {
            mkdir(&dir.join(sub))?;
        }
        if version.is_none() {
            fs::write(&version_file, CACHE_VERSION.to_string()).map_err(BackendError::io(
                format!("writing {}", version_file.display()),
            ))?;
        }
        fs::File::open(&dir)
            .and_then(|d| d.set_modified(SystemTime::now()))
            .map_err(BackendError::io(format!(
                "marking {} as used",
                dir.display()
            )))?;
        Ok(CachedBackend {
            inner,
            base: base.to_path_buf(),
            dir,
            fills: (0..FILL_LOCKS).map(|_| Mutex::new(())).collect(),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    /// The directory that holds all repositories' caches.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// This repository's cache directory, `<base>/<repository id>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `h` is cached, if files of its type are (any other file is passed to the
    /// store untouched).
    pub fn cache_path(&self, h: &Handle) -> Option<PathBuf> {
        let sub = type_dir(h.file_type())?;
        let name = h.name();
        Some(self.dir.join(sub).join(&name[..2]).join(name))
    }

    fn fill_lock(&self, h: &Handle) -> MutexGuard<'_, ()> {
        // Ids are hashes, so any byte spreads handles evenly over the locks, but not the
        // first: callers load files in the sorted order of their names, and neighbours in
        // that order share their first byte, so threads loading them in parallel queued on
        // one lock.
        let slot = h.id().map_or(0, |id| usize::from(id.0[31]));
        lock(&self.fills[slot % FILL_LOCKS])
    }

    /// The cached bytes of `h` when they are intact. A damaged entry is removed; an entry
    /// that cannot be read is a miss.
    fn load_whole(&self, h: &Handle, path: &Path) -> Option<Vec<u8>> {
        let data = fs::read(path).ok()?;
        if hash_matches(&data, h) {
            return Some(data);
        }
        let _ = fs::remove_file(path);
        None
    }

    /// Puts verified bytes into the cache atomically; returns the stamp of the new entry.
    /// A failure only means the next read goes to the store again.
    fn store(&self, path: &Path, data: &[u8]) -> Option<Stamp> {
        let dir = path.parent()?;
        let name = path.file_name()?.to_str()?;
        mkdir(dir).ok()?;
        let tmp = dir.join(format!("{name}-tmp-{:016x}", rand::random::<u64>()));
        let stamp = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all(data)?;
            let stamp = Stamp::of(&f.metadata()?);
            drop(f);
            fs::rename(&tmp, path)?;
            Ok::<_, std::io::Error>(stamp)
        })();
        if stamp.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        stamp.ok()
    }

    /// Serves a range of a cached pack. `Ok(false)` is a miss (absent, unreadable, or
    /// damaged and now removed); a range outside an intact pack is an error, as the store
    /// would give.
    fn range_from_cache(
        &self,
        h: &Handle,
        path: &Path,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<bool, BackendError> {
        let Ok(mut f) = fs::File::open(path) else {
            return Ok(false);
        };
        let Ok(meta) = f.metadata() else {
            return Ok(false);
        };
        let stamp = Stamp::of(&meta);
        let known = lock(&self.verified).get(h).copied();
        if known == Some(stamp) {
            match offset.checked_add(length) {
                Some(end) if end <= stamp.len => {}
                _ => return Err(short_read(h, offset, length, stamp.len)),
            }
            buf.clear();
            buf.resize(length as usize, 0);
            let read = f
                .seek(SeekFrom::Start(offset))
                .and_then(|_| f.read_exact(buf));
            return Ok(read.is_ok());
        }
        let mut data = Vec::with_capacity(meta.len() as usize);
        if f.read_to_end(&mut data).is_err() {
            return Ok(false);
        }
        if !hash_matches(&data, h) {
            lock(&self.verified).remove(h);
            let _ = fs::remove_file(path);
            return Ok(false);
        }
        lock(&self.verified).insert(*h, stamp);
        copy_range(h, &data, offset, length, buf)?;
        Ok(true)
    }

    /// Removes cached files of type `t` that are not in the store's `listing`, or that it
    /// lists with another size (the store's copy was damaged or replaced: the cache must
    /// not hide that from the next read), and temporary files that dead processes left.
    /// Failures only leave files behind.
    fn drop_gone(&self, t: FileType, listing: &[FileInfo]) {
        let Some(sub) = type_dir(t) else { return };
        // Keyed by the names this cache writes (lower-case hex): an entry under any other
        // name is never read, so it goes too.
        let sizes: HashMap<String, u64> = listing.iter().map(|f| (f.id.to_hex(), f.size)).collect();
        let Ok(subdirs) = fs::read_dir(self.dir.join(sub)) else {
            return;
        };
        for sd in subdirs.flatten() {
            let Ok(entries) = fs::read_dir(sd.path()) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Ok(meta) = e.metadata() else { continue };
                let gone = is_id_name(&name) && sizes.get(&name) != Some(&meta.len());
                let stale = is_leftover_name(&name)
                    && meta
                        .modified()
                        .ok()
                        .and_then(|m| m.elapsed().ok())
                        .is_some_and(|age| age > STALE_TEMP);
                if gone || stale {
                    let _ = fs::remove_file(e.path());
                    if let Ok(id) = Id::parse(&name) {
                        lock(&self.verified).remove(&Handle::new(t, id));
                    }
                }
            }
        }
    }
}

impl CachedBackend {
    /// Caches a file just written to the store. Not hashed here: its writer named it by
    /// the hash it just computed, and every read hashes the entry before using it anyway.
    fn keep(&self, h: &Handle, data: &[u8]) {
        if let Some(path) = self.cache_path(h) {
            self.store(&path, data);
        }
    }
}

fn write_tag(base: &Path) -> Result<(), BackendError> {
    let path = base.join("CACHEDIR.TAG");
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path);
    match f {
        Ok(mut f) => f
            .write_all(CACHEDIR_TAG.as_bytes())
            .map_err(BackendError::io(format!("writing {}", path.display()))),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(BackendError::io(format!("creating {}", path.display()))(e)),
    }
}

// Every method, provided ones included, is written out: a default left in place would
// silently replace the inner backend's own behaviour.
impl Backend for CachedBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> Result<(), BackendError> {
        self.inner.create()
    }

    fn read(&self, h: &Handle) -> Result<Vec<u8>, BackendError> {
        // Whole packs are read by check, prune and copy, which must see the store.
        let path = match self.cache_path(h) {
            Some(p) if h.file_type() != FileType::Pack => p,
            _ => return self.inner.read(h),
        };
        if let Some(data) = self.load_whole(h, &path) {
            return Ok(data);
        }
        let _fill = self.fill_lock(h);
        // Another thread may have filled it while this one waited.
        if let Some(data) = self.load_whole(h, &path) {
            return Ok(data);
        }
        let data = self.inner.read(h)?;
        // Bytes that do not match their name are returned for the caller to report, but
        // never cached.
        if hash_matches(&data, h) {
            self.store(&path, &data);
        }
        Ok(data)
    }

    fn read_range(&self, h: &Handle, offset: u64, length: u64) -> Result<Vec<u8>, BackendError> {
        self.inner.read_range(h, offset, length)
    }

    fn read_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        self.inner.read_range_into(h, offset, length, buf)
    }

    fn read_metadata_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        let path = match self.cache_path(h) {
            Some(p) if h.file_type() == FileType::Pack => p,
            _ => return self.inner.read_metadata_range_into(h, offset, length, buf),
        };
        if self.range_from_cache(h, &path, offset, length, buf)? {
            return Ok(());
        }
        let _fill = self.fill_lock(h);
        if self.range_from_cache(h, &path, offset, length, buf)? {
            return Ok(());
        }
        // The whole pack once, so that every later tree in it is a local read.
        let data = self.inner.read(h)?;
        if !hash_matches(&data, h) {
            // Not the pack the store holds (damaged there, or cut or garbled on the way):
            // the range alone, read again, is what the store has there.
            tracing::debug!("{h} read whole does not hash to its name; reading the range again");
            return self.inner.read_metadata_range_into(h, offset, length, buf);
        }
        if let Some(stamp) = self.store(&path, &data) {
            lock(&self.verified).insert(*h, stamp);
        }
        copy_range(h, &data, offset, length, buf)
    }

    fn preferred_read_size(&self) -> u64 {
        self.inner.preferred_read_size()
    }

    fn lists_immediately(&self) -> bool {
        self.inner.lists_immediately()
    }

    fn write(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        self.inner.write(h, data)?;
        // Only what the store accepted is cached, and only metadata that is read back
        // whole: a data pack is not read again by the command that wrote it.
        if matches!(h.file_type(), FileType::Snapshot | FileType::Index) {
            self.keep(h, data);
        }
        Ok(())
    }

    fn write_metadata(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        self.inner.write(h, data)?;
        self.keep(h, data);
        Ok(())
    }

    fn stat(&self, h: &Handle) -> Result<u64, BackendError> {
        self.inner.stat(h)
    }

    fn remove(&self, h: &Handle) -> Result<(), BackendError> {
        self.inner.remove(h)?;
        let Some(path) = self.cache_path(h) else {
            return Ok(());
        };
        lock(&self.verified).remove(h);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BackendError::io(format!(
                "{h} was removed from the repository, but not from the cache at {}",
                path.display()
            ))(e)),
        }
    }

    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, BackendError> {
        let files = self.inner.list(t)?;
        self.drop_gone(t, &files);
        Ok(files)
    }

    fn list_group(&self, t: FileType, group: &str) -> Result<Vec<FileInfo>, BackendError> {
        self.inner.list_group(t, group)
    }

    fn keeps(&self, t: FileType) -> bool {
        self.inner.keeps(t)
    }

    fn list_leftovers(&self) -> Result<Vec<Leftover>, BackendError> {
        self.inner.list_leftovers()
    }

    fn remove_leftover(&self, leftover: &Leftover) -> Result<(), BackendError> {
        self.inner.remove_leftover(leftover)
    }

    fn exists(&self, h: &Handle) -> Result<bool, BackendError> {
        self.inner.exists(h)
    }
}

#[cfg(test)]
mod tests;
