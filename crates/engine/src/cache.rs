//! The local cache as a layer of an open repository: restic's cache directory layout,
//! every file verified when read (see `restash_backend::CachedBackend`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use restash_backend::CachedBackend;

use crate::{EngineError, Repository, Result};

/// Puts the repository's cache (below `base`, in a directory named after the repository
/// id) in front of its backend; returns that directory. A cache that cannot be set up is
/// an error here: whether to go on without it is the caller's choice.
pub fn attach(repo: &mut Repository, base: &Path) -> Result<PathBuf> {
    let cached = CachedBackend::new(repo.backend().clone(), base, repo.id()).map_err(
        EngineError::backend(format!("cache directory {}", base.display())),
    )?;
    let dir = cached.dir().to_path_buf();
    repo.wrap_backend(|_| Arc::new(cached));
    Ok(dir)
}
