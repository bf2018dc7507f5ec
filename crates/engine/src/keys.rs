//! restic's `key add|remove|passwd`: key files sealing the same master key under other
//! passwords.

use restash_backend::{Backend, FileType, Handle};
use restash_crypto::KdfParams;
use restash_format::{KeyFile, KeyId};

use crate::{whoami, EngineError, Repository, Result};

/// A key file that cannot be used, and why.
#[derive(Debug)]
pub struct UnreadableKey {
    /// The key file's id (its name).
    pub id: KeyId,
    /// Why it cannot be used.
    pub error: EngineError,
}

impl std::fmt::Display for UnreadableKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The error names the key file already (see `load_key_file`).
        write!(f, "{}", self.error)
    }
}

/// Reads and decodes the key file `id`. Whether its name is the hash of its bytes, as
/// restic names key files, is [`verify_key_file`]'s question: opening a repository needs
/// only a key that opens.
pub fn load_key_file(backend: &dyn Backend, id: KeyId) -> Result<KeyFile> {
    read_key_file(backend, id, false)
}

/// Everything `check` can tell about a key file without its password: it decodes, and its
/// name is the hash of its bytes.
pub fn verify_key_file(backend: &dyn Backend, id: KeyId) -> Result<KeyFile> {
    read_key_file(backend, id, true)
}

fn read_key_file(backend: &dyn Backend, id: KeyId, check_name: bool) -> Result<KeyFile> {
    let h = Handle::new(FileType::Key, id);
    let bytes = backend
        .read(&h)
        .map_err(EngineError::backend(format!("read {h}")))?;
    let kf = KeyFile::from_json(&bytes).map_err(EngineError::format(format!("key {id}")))?;
    if check_name && id != KeyId::hash(&bytes) {
        return Err(EngineError::Corrupt(format!(
            "key {id}: content does not match its name (damaged)"
        )));
    }
    Ok(kf)
}

/// A decoded key file with its id.
pub type KeyEntry = (KeyId, KeyFile);

/// Every key file, decoded, and those that cannot be read (`key list`).
pub fn load_all_keys(repo: &Repository) -> Result<(Vec<KeyEntry>, Vec<UnreadableKey>)> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for id in repo.list_ids(FileType::Key)? {
        let id = KeyId(id);
        match load_key_file(repo.backend().as_ref(), id) {
            Ok(kf) => good.push((id, kf)),
            Err(error) => bad.push(UnreadableKey { id, error }),
        }
    }
    Ok((good, bad))
}

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
    let h = Handle::new(FileType::Key, id);
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
    let kf = load_key_file(repo.backend().as_ref(), *id)?;
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
    let h = Handle::new(FileType::Key, *id);
    repo.backend()
        .remove(&h)
        .map_err(EngineError::backend(format!("remove {h}")))
}

/// restic's `key passwd`: a new key for `password` (current user and host), then the
/// key in use is removed. Returns the new key's id.
pub fn change_password(repo: &Repository, password: &[u8], kdf: KdfParams) -> Result<KeyId> {
    let id = add_key(repo, password, "", "", kdf)?;
    let old = Handle::new(FileType::Key, repo.key_id());
    repo.backend()
        .remove(&old)
        .map_err(EngineError::backend(format!("remove {old}")))?;
    Ok(id)
}
