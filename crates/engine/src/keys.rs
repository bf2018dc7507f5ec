//! restic's `key add|remove|passwd`: key files sealing the same master key under other
//! passwords.

use restash_backend::{FileType, Handle};
use restash_crypto::KdfParams;
use restash_format::{KeyFile, KeyId};

use crate::{whoami, EngineError, Repository, Result};

/// Adds a key file for `password` sealing the repository's master key. Empty `user` or
/// `host` mean the current ones, as in restic. The new key is opened again and checked
/// against the config before it is reported; a key that does not work is removed.
pub fn add_key(
    repo: &Repository,
    password: &[u8],
    user: &str,
    host: &str,
    kdf: KdfParams,
) -> Result<KeyId> {
    let user = if user.is_empty() {
        whoami::user_name()
    } else {
        user.to_string()
    };
    let host = if host.is_empty() {
        whoami::host_name()
    } else {
        host.to_string()
    };
    let kf = KeyFile::create(repo.key(), password, kdf, &user, &host)
        .map_err(|e| EngineError::Usage(format!("creating new key failed: {e}")))?;
    let bytes = kf.to_json();
    let id = KeyId::hash(&bytes);
    let h = Handle::new(FileType::Key, id.to_string());
    repo.backend()
        .write(&h, &bytes)
        .map_err(EngineError::backend("creating new key failed"))?;
    if let Err(e) = verify_key(repo, &id, password) {
        let _ = repo.backend().remove(&h);
        return Err(EngineError::Corrupt(format!(
            "failed to access repository with new key: {e}"
        )));
    }
    Ok(id)
}

fn verify_key(repo: &Repository, id: &KeyId, password: &[u8]) -> Result<()> {
    let h = Handle::new(FileType::Key, id.to_string());
    let data = repo
        .backend()
        .read(&h)
        .map_err(EngineError::backend(format!("read {h}")))?;
    let kf =
        KeyFile::from_json(&data).map_err(EngineError::format(format!("key {}", id.short())))?;
    let key = kf
        .open(password)
        .map_err(EngineError::format(format!("key {}", id.short())))?;
    let sealed = repo
        .backend()
        .read(&Handle::config())
        .map_err(EngineError::backend("read config"))?;
    key.open(&sealed)
        .map_err(|e| EngineError::Corrupt(format!("config: {e}")))?;
    Ok(())
}

/// Resolves a key id prefix like restic's `restic.Find`.
pub fn find_key(repo: &Repository, prefix: &str) -> Result<KeyId> {
    let mut found = None;
    for id in repo.list_ids(FileType::Key)? {
        if id.to_hex().starts_with(prefix) {
            if found.is_some() {
                return Err(EngineError::NotFound(format!(
                    "multiple IDs with prefix {prefix:?} found"
                )));
            }
            found = Some(KeyId(id));
        }
    }
    found
        .ok_or_else(|| EngineError::NotFound(format!("no matching ID found for prefix {prefix:?}")))
}

/// Removes a key file; the key that opened `repo` is refused with restic's message.
pub fn remove_key(repo: &Repository, id: &KeyId) -> Result<()> {
    if *id == repo.key_id() {
        return Err(EngineError::Usage(
            "refusing to remove key currently used to access repository".into(),
        ));
    }
    let h = Handle::new(FileType::Key, id.to_string());
    repo.backend()
        .remove(&h)
        .map_err(EngineError::backend(format!("remove {h}")))
}

/// restic's `key passwd`: a new key for `password` (current user and host), then the
/// key in use is removed. Returns the new key's id.
pub fn change_password(repo: &Repository, password: &[u8], kdf: KdfParams) -> Result<KeyId> {
    let id = add_key(repo, password, "", "", kdf)?;
    let old = Handle::new(FileType::Key, repo.key_id().to_string());
    repo.backend()
        .remove(&old)
        .map_err(EngineError::backend(format!("remove {old}")))?;
    Ok(id)
}
