//! restash's repository operations, on top of the format, crypto, chunker and backend
//! crates. Each operation (backup, restore, check, prune, forget, …) is a function that
//! takes an options struct and a [`events::Control`] — a cancel token and the sink that
//! receives the operation's [`events::Event`]s — and returns a typed summary or an
//! [`EngineError`] that knows restic's exit code.
//!
//! A backup of a folder into a repository held in memory, and its restore:
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use restash_backend::MemoryBackend;
//! use restash_engine::archiver::{backup, BackupOptions, Source};
//! use restash_engine::events::{Control, Event};
//! use restash_engine::{restore, Repository, RestoreOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let home = tempfile::tempdir_in("/tmp")?;
//! std::fs::write(home.path().join("notes.txt"), "measurements, day 1\n")?;
//!
//! // A light key derivation keeps the example fast; real repositories use restic's.
//! let kdf = restash_crypto::KdfParams { n: 1024, r: 8, p: 1 };
//! let mut repo = Repository::init(Arc::new(MemoryBackend::new()), b"secret", 2, kdf)?;
//!
//! // Every event of the operation comes here; a command line renders them instead.
//! let warnings = Arc::new(Mutex::new(Vec::new()));
//! let seen = warnings.clone();
//! let ctl = Control::new(Arc::new(move |e: &Event<'_>| {
//!     if let Event::Warning(w) = e {
//!         seen.lock().unwrap().push(w.to_string());
//!     }
//! }));
//!
//! let source = Source::Paths(vec![home.path().to_path_buf()]);
//! let summary = backup(&mut repo, source, &BackupOptions::new("laptop"), &ctl)?;
//! assert_eq!(summary.files_new, 1);
//! assert!(warnings.lock().unwrap().is_empty());
//!
//! // Reading needs the index, which the backup wrote but did not load.
//! repo.load_index()?;
//! let snapshot = repo.load_snapshot(&summary.snapshot_id.unwrap())?;
//! let target = tempfile::tempdir()?;
//! let stats = restore(&repo, &snapshot.tree, &RestoreOptions::new(target.path()), &ctl)?;
//! assert_eq!((stats.files, stats.errors.len()), (1, 0));
//! // restic keeps a target's absolute path: /tmp/xyz is stored as tmp/xyz.
//! let name = home.path().file_name().unwrap();
//! let restored = target.path().join("tmp").join(name).join("notes.txt");
//! assert_eq!(std::fs::read_to_string(restored)?, "measurements, day 1\n");
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod ahead;
pub mod archive;
pub mod archiver;
pub mod cache;
pub mod cat;
pub mod check;
pub mod copy;
pub mod diff;
pub mod dump;
mod error;
pub mod events;
mod filter;
pub mod find;
pub mod forget;
mod fsmeta;
mod hints;
mod index;
pub mod keys;
pub mod leftovers;
mod lock;
pub mod ls;
mod pack;
pub mod prune;
pub mod repair;
mod repo;
pub mod restore;
pub mod rewrite;
mod snapshots;
pub mod stats;
pub mod tag;
#[cfg(test)]
mod test_util;
pub mod totals;
mod tree_ahead;
pub mod treewalk;
pub mod units;
mod walk;
pub mod whoami;

pub use archive::{dump_archive, dump_file, dump_tar, dump_zip, ArchiveFormat, FileReader};
pub use archiver::{PARTIAL_TAG, PROGRAM_VERSION};
pub use error::{EngineError, Result};
pub use filter::{Pattern, PatternSet};
pub use index::{BlobLocation, IndexEntry, MasterIndex};
pub use lock::remove_stale;
pub use lock::{is_stale, unlock, LockPolicy, RepoLock, STALE_AFTER};
pub use repo::Repository;
pub use restore::{restore, Overwrite, RestoreOptions, RestoreStats};
pub use snapshots::{
    flatten_tag_lists, list_snapshots, lock_and_select_one, select_one, select_snapshots, Ignored,
    Selection, SnapshotEntry, SnapshotFilter, Snapshots, TagList, UnreadableSnapshot,
};
pub use walk::{dir_subtree, find_node, find_node_by_names, find_subtree};

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
