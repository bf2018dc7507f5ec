//! restic 0.14's `tag`: add, remove or set snapshot tags. A changed snapshot is saved as a
//! new file that remembers its first id in `original`, then the old file is removed.

use restash_backend::{FileType, Handle};
use restash_format::{Snapshot, SnapshotId};

use crate::events::{Control, Event};
use crate::snapshots::{flatten_tag_lists, select_snapshots, SnapshotFilter, TagList};
use crate::{EngineError, LockPolicy, RepoLock, Repository, Result};

/// What [`modify`] is to do: restic's `tag` flags.
#[derive(Debug, Clone, Default)]
pub struct TagOptions {
    /// Which snapshots change when no ids are given (`--host`, `--tag`, `--path`).
    pub filter: SnapshotFilter,
    /// Snapshots to change (ids, prefixes or `latest`).
    pub ids: Vec<String>,
    /// Tags replacing the existing ones (`--set`).
    pub set: Vec<TagList>,
    /// Tags added (`--add`).
    pub add: Vec<TagList>,
    /// Tags removed (`--remove`).
    pub remove: Vec<TagList>,
    /// How the exclusive lock is taken.
    pub lock: LockPolicy,
}

impl TagOptions {
    /// Refuses what restic refuses before it opens the repository: nothing to do, or
    /// `--set` with `--add`/`--remove`.
    pub fn check(&self) -> Result<()> {
        if self.set.is_empty() && self.add.is_empty() && self.remove.is_empty() {
            return Err(EngineError::Usage("nothing to do!".into()));
        }
        if !self.set.is_empty() && (!self.add.is_empty() || !self.remove.is_empty()) {
            return Err(EngineError::Usage(
                "--set and --add/--remove cannot be given at the same time".into(),
            ));
        }
        Ok(())
    }
}

/// What [`modify`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TagSummary {
    /// Snapshots saved with new tags (the new files' ids).
    pub changed: Vec<SnapshotId>,
    /// Snapshots whose change failed (each also an [`Event::Error`]).
    pub failed: Vec<SnapshotId>,
}

/// restic's `changeTags` on a snapshot in memory; true if anything changed. The removal
/// order (swap with the last tag) is restic's, so the resulting tag order matches.
pub fn change_tags(s: &mut Snapshot, set: &[String], add: &[String], remove: &[String]) -> bool {
    if !set.is_empty() {
        s.tags = set.to_vec();
        return true;
    }
    let mut changed = false;
    for t in add {
        if !s.has_tag(t) {
            s.tags.push(t.clone());
            changed = true;
        }
    }
    for t in remove {
        if let Some(i) = s.tags.iter().position(|x| x == t) {
            s.tags.swap_remove(i);
            changed = true;
        }
    }
    changed
}

/// restic's `tag`, under an exclusive lock: changes the tags of the selected snapshots.
/// A snapshot that cannot be saved or whose old file cannot be removed is an
/// [`Event::Error`] (item: its id) and the others go on, as in restic.
pub fn modify(repo: &Repository, opts: &TagOptions, ctl: &Control) -> Result<TagSummary> {
    opts.check()?;
    let lock = RepoLock::take(repo, true, &opts.lock, ctl)?;
    let chosen = select_snapshots(repo, &opts.filter, &opts.ids, ctl)?;
    // Flattening drops empty tags, so `--set ''` changes nothing in restic 0.14.
    let set = flatten_tag_lists(&opts.set);
    let add = flatten_tag_lists(&opts.add);
    let remove = flatten_tag_lists(&opts.remove);
    let mut out = TagSummary::default();
    for (id, mut s) in chosen {
        ctl.cancel.check()?;
        if !change_tags(&mut s, &set, &add, &remove) {
            continue;
        }
        match replace(repo, &id, &mut s) {
            Ok(new) => {
                ctl.emit(Event::ItemDone {
                    kind: "snapshot",
                    action: "retagged",
                    name: &id.to_string(),
                });
                out.changed.push(new);
            }
            Err(message) => {
                ctl.error(&format!(
                    "unable to modify the tags for snapshot ID \"{id}\", ignoring: {message}"
                ));
                out.failed.push(id);
            }
        }
    }
    drop(lock);
    Ok(out)
}

/// Saves `s` as a new snapshot file, then removes the old one; a failure is said as
/// restic's warning says it.
fn replace(
    repo: &Repository,
    id: &SnapshotId,
    s: &mut Snapshot,
) -> std::result::Result<SnapshotId, String> {
    if s.original.is_none() {
        s.original = Some(*id);
    }
    let new = repo
        .save_unpacked(FileType::Snapshot, &s.to_json())
        .map_err(|e| format!("save snapshot: {e}"))?;
    let h = Handle::new(FileType::Snapshot, *id);
    repo.backend()
        .remove(&h)
        .map_err(|e| format!("remove {h}: {e}"))?;
    Ok(SnapshotId(new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshots::testing::{ids, memory_repo, recorder, save};

    fn lists(v: &[&str]) -> Vec<TagList> {
        v.iter().map(|t| TagList::parse(t)).collect()
    }

    #[test]
    fn options_are_checked_like_restic() {
        assert!(TagOptions::default().check().is_err());
        let both = TagOptions {
            set: lists(&["a"]),
            remove: lists(&["b"]),
            ..TagOptions::default()
        };
        assert!(both.check().unwrap_err().to_string().contains("--set"));
    }

    #[test]
    fn changed_snapshots_are_saved_anew_and_remember_their_first_id() {
        let repo = memory_repo();
        let a = save(&repo, "h", "2021-01-01T00:00:00Z", &["x"]);
        let b = save(&repo, "h", "2021-01-02T00:00:00Z", &["x", "y"]);
        let other = save(&repo, "g", "2021-01-03T00:00:00Z", &[]);
        let (ctl, seen) = recorder();
        let opts = TagOptions {
            filter: SnapshotFilter::host("h"),
            add: lists(&["new,y"]),
            remove: lists(&["x"]),
            ..TagOptions::default()
        };
        let sum = modify(&repo, &opts, &ctl).expect("tag");
        assert_eq!((sum.changed.len(), sum.failed.len()), (2, 0));
        assert!(!ids(&repo).contains(&a) && !ids(&repo).contains(&b));
        assert!(ids(&repo).contains(&other));
        let mut tags = Vec::new();
        for id in &sum.changed {
            let s = repo.load_snapshot(id).expect("load");
            assert!(s.original == Some(a) || s.original == Some(b));
            tags.push((s.original == Some(a), s.tags));
        }
        tags.sort();
        // restic's order: added tags appended, a removed one swapped with the last.
        assert_eq!(tags[0].1, ["new", "y"]);
        assert_eq!(tags[1].1, ["y", "new"]);
        assert_eq!(
            seen.lock().expect("log").len(),
            4 + 2,
            "lock, load, 2 retagged"
        );

        // Changing again keeps the first id; `--set ''` changes nothing.
        let again = TagOptions {
            ids: vec![sum.changed[0].to_string()],
            set: lists(&["only"]),
            ..TagOptions::default()
        };
        let sum2 = modify(&repo, &again, &Control::default()).expect("set");
        let s = repo.load_snapshot(&sum2.changed[0]).expect("load");
        assert_eq!(s.tags, ["only"]);
        assert!(s.original == Some(a) || s.original == Some(b));
        let nothing = TagOptions {
            set: lists(&[""]),
            ..TagOptions::default()
        };
        let before = ids(&repo);
        let sum3 = modify(&repo, &nothing, &Control::default()).expect("set ''");
        assert!(sum3.changed.is_empty());
        assert_eq!(ids(&repo), before);
    }
}
