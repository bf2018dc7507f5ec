//! restic's `mount`: the repository as a read-only file system. [`model`] is the file
//! system itself (inodes, the snapshot layout, lazily loaded trees, file reads through a
//! blob cache); [`fuse`] only translates it to the kernel's requests.

#![forbid(unsafe_code)]

pub mod cache;
pub mod fuse;
pub mod inodes;
pub mod layout;
pub mod model;

pub use fuse::{spawn, MountOptions};
pub use model::{Attr, Kind, MountModel, Settings};

use restash_engine::EngineError;
use restash_format::BlobId;
use thiserror::Error;

/// Why a file-system request failed; each maps to the errno the kernel gets.
#[derive(Debug, Error)]
pub enum MountError {
    /// No such entry (or an inode the kernel should not know).
    #[error("not found")]
    NotFound,
    /// A directory operation on something else.
    #[error("not a directory")]
    NotDir,
    /// A file or link operation on the wrong kind of entry.
    #[error("invalid for this kind of entry")]
    Invalid,
    /// A data blob the file needs is not in the index.
    #[error("blob {0} is not in the index")]
    MissingBlob(BlobId),
    /// A blob decoded to another length than the index says: its bytes would land at the
    /// wrong offsets.
    #[error("blob {id} has {got} bytes, the index says {want}")]
    BlobLength {
        /// The blob.
        id: BlobId,
        /// Its decoded length.
        got: usize,
        /// Its length in the index.
        want: u32,
    },
    /// The repository failed (a tree or blob that cannot be loaded or verified).
    #[error("{context}: {source}")]
    Engine {
        /// What was being loaded.
        context: String,
        /// The cause.
        #[source]
        source: EngineError,
    },
}

impl MountError {
    /// Whether the failure is damage or I/O (warned about), not a plain lookup miss.
    pub fn is_io(&self) -> bool {
        matches!(
            self,
            MountError::MissingBlob(_) | MountError::BlobLength { .. } | MountError::Engine { .. }
        )
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic in one request must not take the whole mount down with poisoned locks.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Results of file-system requests.
pub type Result<T> = std::result::Result<T, MountError>;
