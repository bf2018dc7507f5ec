//! `--delete`: entries of restored directories that the snapshot does not have are removed,
//! as restic does: only in directories the restore went through, only entries the
//! include/exclude selection would have restored, and never by following a symlink.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::RestoreStats;
use crate::events::{Control, Event, RestoreAction};

/// A directory of the target to clean: what the snapshot holds in it.
pub(super) struct Cleanup {
    /// The directory in the target.
    pub dir: PathBuf,
    /// Its path within the snapshot (restic's "location"), as the filters see it.
    pub item: Vec<u8>,
    /// Every name the snapshot's tree lists there, selected or not, sorted.
    pub names: Vec<Vec<u8>>,
}

/// Removes what `c.dir` holds beyond `c.names` and `selected` agrees to; with `dry_run`
/// only reports it. Each removed path is reported (children first) once it is gone.
pub(super) fn clean(
    c: &Cleanup,
    selected: &dyn Fn(&[u8]) -> bool,
    dry_run: bool,
    events: Option<&Control>,
    stats: &mut RestoreStats,
) {
    let entries = match std::fs::read_dir(&c.dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            stats.errors.push(format!(
                "{}: cannot list it to delete what the snapshot does not have: {e}",
                c.dir.display()
            ));
            return;
        }
    };
    let mut extra = Vec::new();
    for entry in entries {
        match entry {
            Ok(e) => {
                let name = e.file_name();
                if c.names
                    .binary_search_by(|n| n.as_slice().cmp(name.as_bytes()))
                    .is_err()
                {
                    extra.push(name);
                }
            }
            Err(e) => stats.errors.push(format!(
                "{}: cannot list it to delete what the snapshot does not have: {e}",
                c.dir.display()
            )),
        }
    }
    extra.sort();
    for name in extra {
        let mut item = c.item.clone();
        item.push(b'/');
        item.extend_from_slice(name.as_bytes());
        if !selected(&item) {
            continue;
        }
        let path = c.dir.join(&name);
        let mut gone = Vec::new();
        if let Err(e) = collect(&path, &mut gone) {
            stats
                .errors
                .push(format!("{}: cannot delete it: {e}", path.display()));
            continue;
        }
        if !dry_run {
            // `remove_dir_all` follows no symlinks, neither at `path` nor below it.
            if let Err(e) = crate::fsmeta::remove_entry(&path, true) {
                stats.errors.push(format!("cannot delete: {e}"));
                continue;
            }
        }
        stats.deleted += gone.len() as u64;
        if let Some(ctl) = events {
            for p in gone.iter().rev() {
                ctl.emit(Event::Restored {
                    action: RestoreAction::Deleted,
                    item: &p.to_string_lossy(),
                    size: None,
                });
            }
        }
    }
}

/// `path` and everything below it, parents before children, without following symlinks.
fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let st = std::fs::symlink_metadata(path)?;
    out.push(path.to_path_buf());
    if st.is_dir() {
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for n in names {
            collect(&path.join(OsStr::new(&n)), out)?;
        }
    }
    Ok(())
}
