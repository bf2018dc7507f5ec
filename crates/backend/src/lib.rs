//! Where repository files live. A [`Backend`] stores opaque bytes under a
//! (file type, id) handle; it knows nothing of encryption or the format.
//!
//! Content-addressed files are written once and never overwritten: `write` is create-only,
//! and a crash leaves either no file or the whole file (local writes go through a temporary
//! file, fsync and rename).
//!
//! Backends are stacked: the stores (local, S3, REST, memory) do the work, and layers
//! around them add one concern each: [`RetryBackend`] retries failures a store calls
//! retryable (the network stores send one request per call and leave retrying to it),
//! [`LimitedBackend`] caps concurrency and bandwidth, [`CachedBackend`] keeps metadata
//! locally.
//!
//! ```
//! use restash_backend::{Backend, FileType, Handle, Id, LocalBackend};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let be = LocalBackend::new(dir.path());
//! be.create().unwrap();
//! let id = Id::hash(b"bytes");
//! let h = Handle::new(FileType::Snapshot, id);
//! assert_eq!(h.to_string(), format!("snapshots/{id}"));
//! be.write(&h, b"bytes").unwrap();
//! assert_eq!(be.read(&h).unwrap(), b"bytes");
//! assert_eq!(be.list(FileType::Snapshot).unwrap()[0].id, id);
//! ```
#![forbid(unsafe_code)]

mod cache;
pub mod conformance;
mod debug_log;
mod error;
pub mod fuzzing;
mod limit;
mod local;
mod memory;
pub mod options;
pub mod push;
mod rest;
mod retry;
mod retry_layer;
mod s3;
mod s3_config;
mod s3_creds;
mod s3_error;
mod sigv4;
mod tls;

pub use cache::{CachedBackend, CACHEDIR_TAG};
pub use error::BackendError;
pub use limit::{LimitedBackend, Limits};
pub use local::LocalBackend;
pub use memory::MemoryBackend;
pub use options::{BackendOptions, S3Layout};
pub use rest::RestBackend;
pub use retry_layer::RetryBackend;
pub use s3::S3Backend;
pub use tls::TlsConfig;

/// The content id that names repository files, re-exported for callers that have no use
/// for the format crate.
pub use restash_id::Id;

/// The kinds of file in a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileType {
    /// The single `config` file.
    Config,
    /// `keys/`
    Key,
    /// `snapshots/`
    Snapshot,
    /// `index/`
    Index,
    /// `data/`: packs.
    Pack,
    /// `locks/`
    Lock,
    /// `restash/hints/<group>/`: a backup's pointer to its parent and the blobs the parent
    /// reaches, so that a backup Job in a repository shared by a fleet reads its own
    /// volume's metadata instead of everyone's. restash's own: restic ignores the directory,
    /// and a repository without it is complete. A hint's name is its group (the first
    /// [`HINT_GROUP_HEX`] hex digits, a keyed hash of host and paths) and a hash of its bytes.
    Hint,
}

/// How many hex digits of a hint's name name its group, and its directory.
pub const HINT_GROUP_HEX: usize = 32;

impl FileType {
    /// restic's directory name for this type (default layout).
    pub fn dir(&self) -> &'static str {
        match self {
            FileType::Config => "",
            FileType::Key => "keys",
            FileType::Snapshot => "snapshots",
            FileType::Index => "index",
            FileType::Pack => "data",
            FileType::Lock => "locks",
            FileType::Hint => "restash/hints",
        }
    }

    /// The subdirectory of `dir()` a file of this type named `name` lives in, for the types
    /// stored fanned out: packs by their first byte, hints by their group.
    pub fn subdir(self, name: &str) -> Option<&str> {
        match self {
            FileType::Pack => name.get(..2),
            FileType::Hint => name.get(..HINT_GROUP_HEX),
            _ => None,
        }
    }

    /// restic's types, for creating a repository's directories ([`FileType::Hint`]'s
    /// directory is made by its first write).
    pub const ALL: [FileType; 6] = [
        FileType::Config,
        FileType::Key,
        FileType::Snapshot,
        FileType::Index,
        FileType::Pack,
        FileType::Lock,
    ];
}

/// A file in the repository: the `config`, or a file of another type named by its id.
///
/// The two cannot be confused: only [`Handle::config`] makes the config's handle, and every
/// other handle holds the id its file is named by, so no handle names a file outside the
/// repository's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle {
    file_type: FileType,
    // `None` exactly for the config, the one file not named by the hash of its contents.
    id: Option<Id>,
}

impl Handle {
    /// The file of `file_type` named by `id` (an [`Id`] or one of the format's typed ids).
    ///
    /// # Panics
    ///
    /// For [`FileType::Config`]: the config has no id; use [`Handle::config`].
    pub fn new(file_type: FileType, id: impl Into<Id>) -> Handle {
        assert!(
            file_type != FileType::Config,
            "the config is not named by an id: use Handle::config()"
        );
        Handle {
            file_type,
            id: Some(id.into()),
        }
    }

    /// The `config` handle.
    pub fn config() -> Handle {
        Handle {
            file_type: FileType::Config,
            id: None,
        }
    }

    /// Which kind of file, and so which directory.
    pub fn file_type(&self) -> FileType {
        self.file_type
    }

    /// The id the file is named by; `None` for the config.
    pub fn id(&self) -> Option<Id> {
        self.id
    }

    /// The stored file name: the id in lower-case hex, or `config`.
    pub fn name(&self) -> String {
        match self.id {
            Some(id) => id.to_hex(),
            None => "config".into(),
        }
    }
}

impl std::fmt::Display for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.id {
            None => f.write_str("config"),
            Some(id) => write!(f, "{}/{id}", self.file_type.dir()),
        }
    }
}

/// A listed file and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    /// The id the file is named by.
    pub id: Id,
    /// Size in bytes.
    pub size: u64,
}

/// A file that a write left behind when its process died before the write finished (a
/// local repository's `<name>-tmp-<random>` files, restic's and ours). Never part of the
/// repository: nothing reads it, and only prune removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// Path relative to the repository root, e.g. `data/ab/ab12…-tmp-5f3e…`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was last written.
    pub modified: std::time::SystemTime,
}

/// Storage for repository files. Implementations are shared between threads.
pub trait Backend: Send + Sync {
    /// A human-readable location for messages (never containing credentials).
    fn location(&self) -> String;

    /// Creates the repository's structure; fails if a config already exists.
    fn create(&self) -> Result<(), BackendError>;

    /// Reads a whole file.
    fn read(&self, h: &Handle) -> Result<Vec<u8>, BackendError>;

    /// Reads `length` bytes at `offset`. Reading past the end is an error, never a short
    /// read passed off as complete.
    fn read_range(&self, h: &Handle, offset: u64, length: u64) -> Result<Vec<u8>, BackendError> {
        let mut buf = Vec::new();
        self.read_range_into(h, offset, length, &mut buf)?;
        Ok(buf)
    }

    /// Like [`Backend::read_range`], but into `buf` (its contents replaced by the `length`
    /// bytes), so that hot loops reuse one allocation instead of faulting in fresh pages
    /// for every request.
    fn read_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError>;

    /// Like [`Backend::read_range_into`], for a range of a file that holds repository
    /// metadata (a pack with tree blobs), which a caching layer keeps locally whole because
    /// the same packs are read by every command. Plain stores read it like any range.
    fn read_metadata_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        self.read_range_into(h, offset, length, buf)
    }

    /// How many bytes one read should fetch when the caller may choose (restore reading
    /// neighbouring blobs of a pack together). A remote store pays a round trip and server
    /// work per request, so by default a default-size pack (16 MiB) and its header come in
    /// one request; a local file reads cheaply in smaller pieces.
    fn preferred_read_size(&self) -> u64 {
        20 << 20
    }

    /// Whether a file written is in every later listing, from any client, at once (a local
    /// file system). Object stores and servers may lag, so lockers wait before they look
    /// for competing locks there.
    fn lists_immediately(&self) -> bool {
        false
    }

    /// Writes a new file; fails with [`BackendError::AlreadyExists`] if it exists.
    /// Durable when this returns.
    fn write(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError>;

    /// Like [`Backend::write`], for a pack of tree blobs, which a caching layer keeps
    /// because the next command that walks a snapshot reads it (see
    /// [`Backend::read_metadata_range_into`]). Plain stores write it like any file.
    fn write_metadata(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        self.write(h, data)
    }

    /// Size of a file.
    fn stat(&self, h: &Handle) -> Result<u64, BackendError>;

    /// Removes a file; removing a missing file is not an error.
    fn remove(&self, h: &Handle) -> Result<(), BackendError>;

    /// Lists the files of a type (packs across all `data/xx/` subdirectories).
    /// Names that are not valid ids are skipped, as restic does; so is the config, which
    /// has none: listing [`FileType::Config`] is empty ([`Backend::exists`] finds it).
    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, BackendError>;

    /// The files of `t` whose names start with `group` ([`FileType::Hint`]'s groups, each a
    /// directory of its own): a backup lists its own volume's hints, one short listing
    /// however many volumes share the repository.
    fn list_group(&self, t: FileType, group: &str) -> Result<Vec<FileInfo>, BackendError> {
        self.list(t).map(|files| in_group(files, group))
    }

    /// Whether this store keeps files of `t`: a REST server keeps restic's types only.
    fn keeps(&self, t: FileType) -> bool {
        let _ = t;
        true
    }

    /// Files left by writes that never finished (see [`Leftover`]). Stores whose writes
    /// are atomic leave none.
    fn list_leftovers(&self) -> Result<Vec<Leftover>, BackendError> {
        Ok(Vec::new())
    }

    /// Removes one leftover found by [`Backend::list_leftovers`]; a path that is not a
    /// leftover's is refused.
    fn remove_leftover(&self, leftover: &Leftover) -> Result<(), BackendError> {
        Err(BackendError::NotFound(leftover.path.clone()))
    }

    /// Whether a file exists.
    fn exists(&self, h: &Handle) -> Result<bool, BackendError> {
        match self.stat(h) {
            Ok(_) => Ok(true),
            Err(BackendError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The small runtime each network backend drives its async client with: the trait is
/// synchronous, so every call `block_on`s here.
pub(crate) fn network_runtime(name: &str) -> Result<tokio::runtime::Runtime, BackendError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(BackendError::io(format!("starting the {name} runtime")))
}

/// The error for a range that does not lie within a file of `size` bytes.
pub(crate) fn short_read(h: &Handle, offset: u64, length: u64, size: u64) -> BackendError {
    BackendError::ShortRead {
        what: h.to_string(),
        offset,
        wanted: length,
        got: size.saturating_sub(offset),
    }
}

/// Each file of a listing once, with the size it was first listed with: a store may repeat
/// a name (across two pages of a listing, or a server's bug), and a file counted twice would
/// be checked, counted and pruned twice.
pub(crate) fn count_once(listing: Vec<FileInfo>, what: &str) -> Vec<FileInfo> {
    let mut seen = std::collections::HashSet::with_capacity(listing.len());
    listing
        .into_iter()
        .filter(|f| {
            let first = seen.insert(f.id);
            if !first {
                tracing::debug!("list {what}: {} listed again; counted once", f.id);
            }
            first
        })
        .collect()
}

/// The files of a listing whose names start with `group`.
pub(crate) fn in_group(mut files: Vec<FileInfo>, group: &str) -> Vec<FileInfo> {
    files.retain(|f| f.id.to_hex().starts_with(group));
    files
}

/// Copies `length` bytes at `offset` of a whole file's `data` into `buf`, replacing its
/// contents. The bounds are checked first: a bogus length from a damaged header fails
/// instead of reserving gigabytes.
pub(crate) fn copy_range(
    h: &Handle,
    data: &[u8],
    offset: u64,
    length: u64,
    buf: &mut Vec<u8>,
) -> Result<(), BackendError> {
    let size = data.len() as u64;
    match offset.checked_add(length) {
        Some(end) if end <= size => {
            buf.clear();
            buf.extend_from_slice(&data[offset as usize..end as usize]);
            Ok(())
        }
        _ => Err(short_read(h, offset, length, size)),
    }
}

/// True for the temporary name a local write uses before its rename: an id name, `-tmp-`,
/// and anything after.
pub fn is_leftover_name(name: &str) -> bool {
    name.split_once("-tmp-")
        .is_some_and(|(id, _)| is_id_name(id))
}

/// True for 64 lower- or upper-case hex digits: the only names restic lists.
pub fn is_id_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_print_and_name_as_stored() {
        let id = Id::parse(&"AB".repeat(32)).unwrap();
        let h = Handle::new(FileType::Pack, id);
        assert_eq!(h.to_string(), format!("data/{}", "ab".repeat(32)));
        assert_eq!(h.name(), "ab".repeat(32));
        assert_eq!((h.file_type(), h.id()), (FileType::Pack, Some(id)));
        let c = Handle::config();
        assert_eq!(
            (c.to_string(), c.name()),
            ("config".into(), "config".into())
        );
        assert_eq!((c.file_type(), c.id()), (FileType::Config, None));
    }

    #[test]
    #[should_panic(expected = "Handle::config()")]
    fn the_config_has_no_id() {
        Handle::new(FileType::Config, Id::default());
    }
}
