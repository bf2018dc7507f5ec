//! What the engine's unit tests share: repositories that open fast, and a snapshot of a
//! directory.

use std::path::Path;
use std::sync::Arc;

use restash_backend::{Backend, MemoryBackend};
use restash_crypto::KdfParams;
use restash_format::Snapshot;

use crate::archiver::{backup, BackupOptions, Source};
use crate::events::Control;
use crate::Repository;

/// A v2 repository (password `pw`) on `backend`, with a key derivation cheap enough for
/// tests.
pub(crate) fn repo_on(backend: Arc<dyn Backend>) -> Repository {
    let kdf = KdfParams {
        n: 1024,
        r: 8,
        p: 1,
    };
    Repository::init(backend, b"pw", 2, kdf).expect("init")
}

/// An empty repository in memory.
pub(crate) fn memory_repo() -> Repository {
    repo_on(Arc::new(MemoryBackend::new()))
}

/// Backs up `dir` (host `host`) and loads the index again, so `repo` can read what was
/// saved; returns the snapshot.
pub(crate) fn backup_dir(repo: &mut Repository, dir: &Path) -> Snapshot {
    let source = Source::Paths(vec![dir.to_path_buf()]);
    let ctl = Control::default();
    let summary = backup(repo, source, &BackupOptions::new("host"), &ctl).expect("backup");
    repo.load_index().expect("index");
    repo.load_snapshot(&summary.snapshot_id.expect("snapshot saved"))
        .expect("snapshot")
}
