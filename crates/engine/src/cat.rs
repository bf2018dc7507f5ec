//! What `cat` prints: repository files found by id prefix and read as they are stored,
//! or decoded.

use restash_backend::FileType;
use restash_format::{BlobId, BlobType, Id, Lock};

use crate::{EngineError, Repository, Result};

/// The file of type `t` named by `prefix`: a full id as it is (whether or not it exists),
/// else the one file whose id starts with the prefix.
pub fn find_file(repo: &Repository, t: FileType, prefix: &str) -> Result<Id> {
    if let Ok(id) = Id::parse(prefix) {
        return Ok(id);
    }
    let lower = prefix.to_ascii_lowercase();
    let ids = repo.list_ids(t)?;
    let mut m = ids.iter().filter(|i| i.to_hex().starts_with(&lower));
    match (m.next(), m.next()) {
        (Some(id), None) => Ok(*id),
        (Some(_), Some(_)) => Err(EngineError::NotFound(format!(
            "multiple IDs with prefix {prefix:?}"
        ))),
        _ => Err(EngineError::NotFound(format!(
            "no matching ID found for prefix {prefix:?}"
        ))),
    }
}

/// The stored bytes of a repository file, not decrypted (`cat pack`).
pub fn read_raw(repo: &Repository, t: FileType, id: &Id) -> Result<Vec<u8>> {
    repo.read_unpacked(t, id)
}

/// A lock file, decoded.
pub fn read_lock(repo: &Repository, id: &Id) -> Result<Lock> {
    let data = repo.load_unpacked(FileType::Lock, id)?;
    Lock::from_json(&data).map_err(EngineError::format(format!("lock {}", id.short())))
}

/// A blob's plaintext, as data blob if the index has it as one, else as tree blob. The
/// index must be loaded.
pub fn read_blob(repo: &Repository, id: &BlobId) -> Result<Vec<u8>> {
    let t = if repo.index().has(id, BlobType::Data) {
        BlobType::Data
    } else {
        BlobType::Tree
    };
    repo.load_blob(id, t)
}

/// The JSON of the tree at `path` (`""`: the root) below the tree `root`, checked to
/// decode as a tree. The index must be loaded.
pub fn read_tree(repo: &Repository, root: &BlobId, path: &str) -> Result<Vec<u8>> {
    let tree_id = crate::find_subtree(repo, root, path)?;
    let raw = repo.load_blob(&tree_id, BlobType::Tree)?;
    restash_format::Tree::from_bytes(&raw)
        .map_err(EngineError::format(format!("tree {}", tree_id.short())))?;
    Ok(raw)
}
