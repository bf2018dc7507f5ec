//! restic's `dump`: a file of a snapshot as it is, or a directory (or the whole snapshot)
//! as a tar or zip stream.

use std::io::Write;

use restash_format::NodeType;

use crate::events::Control;

use crate::{
    dir_subtree, dump_archive, dump_file, find_node, ArchiveFormat, EngineError, Repository,
    Result, SnapshotFilter,
};

/// What `dump` writes.
#[derive(Debug, Clone, Default)]
pub struct DumpJob {
    /// `latest` or an id prefix.
    pub snapshot: String,
    /// Narrows `latest` (restic's `--host`, `--tag`, `--path`).
    pub filter: SnapshotFilter,
    /// The file or directory in the snapshot (`/` or empty: everything).
    pub path: String,
    /// restic's read lock (`--no-lock`, `--retry-lock`).
    pub lock: crate::LockPolicy,
    /// How a directory is written (`--archive`).
    pub archive: ArchiveFormat,
}

/// Writes what `job` names to `out`: a regular file's content, else an archive.
pub fn run(repo: &mut Repository, job: &DumpJob, ctl: &Control, out: &mut dyn Write) -> Result<()> {
    let (_lock, (_, snap)) =
        crate::lock_and_select_one(repo, &job.snapshot, &job.filter, &job.lock, ctl)?;
    let path = job.path.trim_end_matches('/');
    match find_node(repo, &snap.tree, path)? {
        None => dump_archive(repo, &snap.tree, "", job.archive, out),
        Some(n) if n.node_type == NodeType::Dir => {
            dump_archive(repo, &dir_subtree(&n, path)?, path, job.archive, out)
        }
        Some(n) if n.node_type == NodeType::File => dump_file(repo, &n, out),
        Some(n) => Err(EngineError::Usage(format!(
            "cannot dump {:?}: it is a {}",
            job.path,
            n.node_type.as_str()
        ))),
    }
}
