//! restic's `key list|add|remove|passwd`: key files sealing the same master key under
//! other passwords. [`add`], [`remove`] and [`passwd`] are the operations, each under
//! restic's lock (shared for adding, exclusive for the others).

use restash_backend::{Backend, FileType, Handle};
use restash_crypto::KdfParams;
use restash_format::{KeyFile, KeyId};

use crate::events::Control;
use crate::{whoami, EngineError, LockPolicy, RepoLock, Repository, Result};

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

/// Reads and decodes the key file `id` of `repo` (`cat key`).
pub fn read_key(repo: &Repository, id: KeyId) -> Result<KeyFile> {
    load_key_file(repo.backend().as_ref(), id)
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
    add_key_file(repo, password, user, host, kdf).map(|(id, _)| id)
}

/// [`add_key`], returning the new key file as it was read back.
fn add_key_file(
    repo: &Repository,
    password: &[u8],
    user: &str,
    host: &str,
    kdf: KdfParams,
) -> Result<KeyEntry> {
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
    match verify_key(repo, &id, password) {
        Ok(kf) => Ok((id, kf)),
        Err(e) => {
            // A key file nobody can open must not stay behind unnoticed.
            let left = match repo.backend().remove(&h) {
                Ok(()) => String::new(),
                Err(r) => format!("; the unusable key file {h} could not be removed: {r}"),
            };
            Err(EngineError::Corrupt(format!(
                "failed to access repository with new key: {e}{left}"
            )))
        }
    }
}

fn verify_key(repo: &Repository, id: &KeyId, password: &[u8]) -> Result<KeyFile> {
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
    Ok(kf)
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
    change_password_file(repo, password, kdf).map(|(id, _)| id)
}

fn change_password_file(repo: &Repository, password: &[u8], kdf: KdfParams) -> Result<KeyEntry> {
    let added = add_key_file(repo, password, "", "", kdf)?;
    let old = Handle::new(FileType::Key, repo.key_id());
    repo.backend()
        .remove(&old)
        .map_err(EngineError::backend(format!("remove {old}")))?;
    Ok(added)
}

/// Who a new key is for and how its password is stretched.
#[derive(Debug, Clone)]
pub struct NewKeyOptions {
    /// The user name recorded in the key file (empty: the current user).
    pub user: String,
    /// The host name recorded in the key file (empty: this host).
    pub host: String,
    /// The scrypt parameters (`KdfParams::calibrate()` for restic's).
    pub kdf: KdfParams,
    /// How the lock is taken.
    pub lock: LockPolicy,
}

/// The new password, asked for only once the lock is held (as restic asks), so nobody
/// types a password for a repository that then turns out to be locked.
pub type PasswordSource<'a> = &'a mut dyn FnMut() -> Result<Vec<u8>>;

/// Runs `f` with the password from `password`, which is overwritten afterwards.
fn with_password<T>(password: PasswordSource<'_>, f: impl FnOnce(&[u8]) -> Result<T>) -> Result<T> {
    let mut pw = password()?;
    let out = f(&pw);
    pw.iter_mut().for_each(|b| *b = 0);
    std::hint::black_box(&pw);
    out
}

/// restic's `key add` under a shared lock: a new key file for the password `password`
/// gives, sealing the repository's master key. Returns the new key, read back and checked.
pub fn add(
    repo: &Repository,
    opts: &NewKeyOptions,
    password: PasswordSource<'_>,
    ctl: &Control,
) -> Result<KeyEntry> {
    let _lock = RepoLock::take(repo, false, &opts.lock, ctl)?;
    with_password(password, |pw| {
        add_key_file(repo, pw, &opts.user, &opts.host, opts.kdf)
    })
}

/// restic's `key passwd` under an exclusive lock: a key for the new password (current
/// user and host, whatever `opts` says, as restic), then the key in use is removed.
pub fn passwd(
    repo: &Repository,
    opts: &NewKeyOptions,
    password: PasswordSource<'_>,
    ctl: &Control,
) -> Result<KeyEntry> {
    let _lock = RepoLock::take(repo, true, &opts.lock, ctl)?;
    with_password(password, |pw| change_password_file(repo, pw, opts.kdf))
}

/// restic's `key remove` under an exclusive lock: the key named by the id prefix `prefix`,
/// never the one in use. Returns the removed key's id.
pub fn remove(repo: &Repository, prefix: &str, lock: &LockPolicy, ctl: &Control) -> Result<KeyId> {
    let _lock = RepoLock::take(repo, true, lock, ctl)?;
    let id = find_key(repo, prefix)?;
    remove_key(repo, &id)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshots::testing::memory_repo;

    fn opts() -> NewKeyOptions {
        NewKeyOptions {
            user: "u".into(),
            host: "h".into(),
            kdf: KdfParams {
                n: 1024,
                r: 8,
                p: 1,
            },
            lock: LockPolicy::default(),
        }
    }

    #[test]
    fn keys_are_added_changed_and_removed_under_locks() {
        let repo = memory_repo();
        let ctl = Control::default();
        let (id, kf) = add(&repo, &opts(), &mut || Ok(b"second".to_vec()), &ctl).expect("add");
        assert_eq!((kf.username.as_str(), kf.hostname.as_str()), ("u", "h"));
        assert_eq!(read_key(&repo, id).expect("read").username, "u");
        let (all, bad) = load_all_keys(&repo).expect("list");
        assert_eq!((all.len(), bad.len()), (2, 0));

        // The password is asked for only once the lock is held.
        let other = RepoLock::acquire(&repo, false, false).expect("lock");
        let mut asked = false;
        let err = passwd(
            &repo,
            &opts(),
            &mut || {
                asked = true;
                Ok(b"third".to_vec())
            },
            &ctl,
        )
        .expect_err("locked");
        assert!(matches!(err, EngineError::Locked(_)) && !asked, "{err}");
        let err = remove(&repo, &id.to_hex()[..8], &LockPolicy::default(), &ctl);
        assert!(matches!(err, Err(EngineError::Locked(_))));
        other.release();

        let current = repo.key_id().to_hex();
        let err = remove(&repo, &current, &LockPolicy::default(), &ctl).expect_err("in use");
        assert!(err.to_string().contains("refusing"), "{err}");
        let gone = remove(&repo, &id.to_hex()[..8], &LockPolicy::default(), &ctl).expect("rm");
        assert_eq!(gone, id);
        assert_eq!(load_all_keys(&repo).expect("list").0.len(), 1);
    }
}
