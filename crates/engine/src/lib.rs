//! Repository operations on top of the format, crypto, chunker and backend crates:
//! open a repository, load its index and snapshots, walk trees, restore.
//!
//! ```no_run
//! use std::sync::Arc;
//! use restash_backend::LocalBackend;
//! use restash_engine::{Repository, SnapshotFilter};
//!
//! let backend = Arc::new(LocalBackend::new("/srv/restic-repo"));
//! let mut repo = Repository::open(backend, b"password", None).unwrap();
//! repo.load_index().unwrap();
//! let snapshots = repo.load_snapshots().unwrap();
//! for bad in snapshots.unreadable() {
//!     eprintln!("{bad}");
//! }
//! // An error, not an older snapshot, while any snapshot file is unreadable.
//! let latest = snapshots.latest(&SnapshotFilter::default()).unwrap();
//! println!("{:?}", latest.map(|(id, _)| id.short()));
//! ```
#![forbid(unsafe_code)]

mod ahead;
pub mod archiver;
pub mod cat;
pub mod check;
pub mod copy;
pub mod diff;
mod error;
pub mod events;
mod filter;
pub mod find;
pub mod forget;
mod fsmeta;
mod index;
pub mod keys;
pub mod leftovers;
mod lock;
pub mod prune;
pub mod repair;
mod repo;
mod restore;
mod snapshots;
pub mod stats;
pub mod tag;
mod tree_ahead;
pub mod treewalk;
mod walk;
pub mod whoami;

pub use error::{EngineError, Result};
pub use filter::{Pattern, PatternSet};
pub use index::{BlobLocation, MasterIndex};
pub use lock::remove_stale;
pub use lock::{is_stale, unlock, LockPolicy, RepoLock, STALE_AFTER};
pub use repo::Repository;
pub use restore::{restore, RestoreOptions, RestoreStats};
pub use snapshots::{
    flatten_tag_lists, select_snapshots, Ignored, Selection, SnapshotEntry, SnapshotFilter,
    Snapshots, TagList, UnreadableSnapshot,
};
pub use walk::{dump_file, dump_tar, find_node, find_subtree, walk_tree};

/// Refuses a chunker polynomial restic would refuse ("invalid chunker polynomial").
pub fn check_polynomial(pol: u64) -> Result<()> {
    if restash_chunker::Pol::new(pol).is_irreducible() {
        Ok(())
    } else {
        Err(EngineError::Corrupt(format!(
            "invalid chunker polynomial {pol:x}"
        )))
    }
}
