//! What to do with an entry that already exists where a restored one goes (restic's
//! `--overwrite`), and the check of an existing file's content against the snapshot.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::str::FromStr;

use restash_format::{BlobId, BlobType, Node};

use crate::{EngineError, Repository, Result};

/// restic's `--overwrite`: when an entry that exists in the target is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// Always; a file whose content already matches keeps it and only gets its metadata
    /// back, a partly matching one gets only its differing parts rewritten.
    #[default]
    Always,
    /// As `Always`, but a file with the snapshot's size and mtime is taken as unchanged
    /// without reading it.
    IfChanged,
    /// Only when the snapshot's entry has a newer mtime than the existing one.
    IfNewer,
    /// Never: an existing entry is left as it is.
    Never,
}

impl Overwrite {
    /// The flag value restic uses for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Overwrite::Always => "always",
            Overwrite::IfChanged => "if-changed",
            Overwrite::IfNewer => "if-newer",
            Overwrite::Never => "never",
        }
    }
}

impl FromStr for Overwrite {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "always" => Overwrite::Always,
            "if-changed" => Overwrite::IfChanged,
            "if-newer" => Overwrite::IfNewer,
            "never" => Overwrite::Never,
            _ => {
                return Err(EngineError::Usage(format!(
                    "invalid overwrite behavior {s:?}, must be one of (always|if-changed|if-newer|never)"
                )))
            }
        })
    }
}

/// What an existing entry at a restored entry's place means for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Existing {
    /// Nothing there: restore.
    Absent,
    /// Leave it as it is, metadata included.
    Skip,
    /// Its content is the snapshot's: only the metadata is restored.
    MetadataOnly,
    /// A regular file whose content must be compared blob by blob.
    Verify,
    /// Something that cannot be updated in place (another type, or a file with other
    /// hard links that must not change with it): it is removed and restored anew.
    Replace,
}

/// Decides from `lstat` alone what to do with the entry at `path`.
pub(super) fn decide(mode: Overwrite, node: &Node, path: &Path, file: bool) -> Result<Existing> {
    let st = match std::fs::symlink_metadata(path) {
        Ok(st) => st,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Absent),
        Err(e) => return Err(EngineError::io(format!("stat {}", path.display()))(e)),
    };
    match mode {
        Overwrite::Never => return Ok(Existing::Skip),
        Overwrite::IfNewer if !newer(node, &st) => return Ok(Existing::Skip),
        _ => {}
    }
    if !file {
        return Ok(Existing::Replace);
    }
    if !st.file_type().is_file() || st.nlink() > 1 {
        return Ok(Existing::Replace);
    }
    if mode == Overwrite::IfChanged && st.size() == node.size && same_mtime(node, &st) {
        return Ok(Existing::MetadataOnly);
    }
    Ok(Existing::Verify)
}

fn newer(node: &Node, st: &std::fs::Metadata) -> bool {
    (node.mtime.unix_secs(), node.mtime.nanos() as i64) > (st.mtime(), st.mtime_nsec())
}

fn same_mtime(node: &Node, st: &std::fs::Metadata) -> bool {
    (node.mtime.unix_secs(), node.mtime.nanos() as i64) == (st.mtime(), st.mtime_nsec())
}

/// How much of an existing file already holds the snapshot's content.
#[derive(Debug)]
pub(super) struct Matches {
    /// Per blob of the node's content: whether the file holds it at its offset.
    pub blobs: Vec<bool>,
    /// Whether the file has the snapshot's length.
    pub size: bool,
}

impl Matches {
    pub fn complete(&self) -> bool {
        self.size && self.blobs.iter().all(|m| *m)
    }
}

/// Reads the file at `path` blob by blob and compares each part's hash with the blob id.
/// `Ok(None)` when it is no longer a single-linked regular file (it changed since it was
/// decided on): it is then restored from scratch. A read that fails is an error for the
/// caller to report. A blob the index lacks counts as not matching; planning the file
/// reports it.
pub(super) fn verify(
    repo: &Repository,
    path: &Path,
    content: &[BlobId],
    buf: &mut Vec<u8>,
) -> Result<Option<Matches>> {
    let read_err = |what: &str| EngineError::io(format!("{what} {}", path.display()));
    let f = match File::options()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
    {
        Ok(f) => f,
        // ELOOP: a symlink took the file's place; ENOENT: it went away.
        Err(e) if matches!(e.raw_os_error(), Some(libc_eloop) if libc_eloop == rustix::io::Errno::LOOP.raw_os_error()) => {
            return Ok(None)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err("open")(e)),
    };
    let st = f.metadata().map_err(read_err("stat"))?;
    // Checked again on the open file: the entry may have changed since it was decided on.
    if !st.file_type().is_file() || st.nlink() > 1 {
        return Ok(None);
    }
    let mut blobs = vec![false; content.len()];
    let mut offset = 0u64;
    for (i, id) in content.iter().enumerate() {
        let Some(loc) = repo.index().get(id, BlobType::Data) else {
            continue;
        };
        let len = loc.plaintext_len() as usize;
        let end = offset + len as u64;
        if end <= st.len() {
            buf.resize(len, 0);
            f.read_exact_at(buf, offset).map_err(read_err("read"))?;
            blobs[i] = BlobId::hash(buf) == *id;
        }
        offset = end;
    }
    Ok(Some(Matches {
        blobs,
        size: offset == st.len(),
    }))
}
