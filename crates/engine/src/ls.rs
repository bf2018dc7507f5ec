//! restic's `ls`: one snapshot's nodes in walk order, narrowed to directories.

use std::collections::HashSet;

use restash_format::{Node, Snapshot, SnapshotId};

use crate::events::Control;
use crate::treewalk::{enter_if, walk_from};
use crate::{lock_and_select_one, EngineError, LockPolicy, Repository, Result, SnapshotFilter};

/// What `ls` lists.
#[derive(Debug, Clone, Default)]
pub struct LsJob {
    /// `latest` or an id prefix.
    pub snapshot: String,
    /// Narrows `latest` (restic's `--host`, `--tag`, `--path`).
    pub filter: SnapshotFilter,
    /// Only entries below these absolute directories (all when empty).
    pub dirs: Vec<String>,
    /// With `dirs`: their whole subtrees, not only their entries.
    pub recursive: bool,
    /// restic's read lock (`--no-lock`, `--retry-lock`).
    pub lock: LockPolicy,
}

/// One thing `ls` lists: first the snapshot, then its nodes with their slash paths.
#[derive(Debug, Clone, Copy)]
pub enum Listed<'a> {
    /// The chosen snapshot.
    Snapshot(&'a SnapshotId, &'a Snapshot),
    /// A node and its path.
    Node(&'a str, &'a Node),
}

/// Lists what `job` asks for, calling `item` for each entry in restic's order; an error
/// writing an entry (a closed stdout) ends the listing with that error.
pub fn run(
    repo: &mut Repository,
    job: &LsJob,
    ctl: &Control,
    item: &mut dyn FnMut(Listed<'_>) -> std::io::Result<()>,
) -> Result<()> {
    if job.dirs.iter().any(|d| !d.starts_with('/')) {
        return Err(EngineError::Usage(
            "All path filters must be absolute, starting with a forward slash '/'".into(),
        ));
    }
    let (_lock, (id, snap)) =
        lock_and_select_one(repo, &job.snapshot, &job.filter, &job.lock, ctl)?;
    let written = |e| EngineError::io("write to stdout")(e);
    item(Listed::Snapshot(&id, &snap)).map_err(written)?;
    // Listing everything (not one directory) walks every tree: they are fetched ahead.
    let roots = if job.dirs.is_empty() || job.recursive {
        vec![snap.tree]
    } else {
        Vec::new()
    };
    repo.prefetching_trees(&roots, || {
        walk_from(
            repo,
            "",
            &snap.tree,
            &mut HashSet::new(),
            &mut |_, p, node| {
                ctl.cancel.check()?;
                let (list, descend) = wanted(&job.dirs, job.recursive, p);
                if list {
                    item(Listed::Node(p, node)).map_err(written)?;
                }
                Ok(enter_if(descend, node))
            },
        )
    })
}

/// Whether `path` is to be listed, and whether to descend below it, given the directory
/// arguments. restic 0.14's rule: the directory itself, its direct children (all
/// descendants with --recursive), and the directories on the way there are walked. A file
/// given as the "directory" is listed alone.
pub fn wanted(dirs: &[String], recursive: bool, path: &str) -> (bool, bool) {
    if dirs.is_empty() {
        return (true, true);
    }
    let mut list = false;
    let mut descend = false;
    for d in dirs {
        let d = d.trim_end_matches('/');
        if path == d {
            list = true;
            descend = true;
        } else if let Some(rest) = path.strip_prefix(d).and_then(|r| r.strip_prefix('/')) {
            list |= recursive || !rest.contains('/');
            descend |= recursive;
        } else if d.starts_with(&format!("{path}/")) {
            descend = true;
        }
    }
    (list, descend)
}

#[cfg(test)]
mod tests {
    use super::wanted;

    fn listed(dirs: &[&str], recursive: bool) -> Vec<&'static str> {
        let dirs: Vec<String> = dirs.iter().map(|d| d.to_string()).collect();
        let tree = [
            "/testdir",
            "/testdir/bar",
            "/testdir/sub",
            "/testdir/sub/x",
            "/testdir2",
            "/testdir2/y",
        ];
        tree.into_iter()
            .filter(|p| {
                // Only what the walk reaches: every ancestor must have been descended into.
                let mut anc = String::new();
                for part in p
                    .split('/')
                    .skip(1)
                    .collect::<Vec<_>>()
                    .iter()
                    .rev()
                    .skip(1)
                    .rev()
                {
                    anc.push('/');
                    anc.push_str(part);
                    if !wanted(&dirs, recursive, &anc).1 {
                        return false;
                    }
                }
                wanted(&dirs, recursive, p).0
            })
            .collect()
    }

    /// What restic 0.14 prints for the same tree and filters.
    #[test]
    fn directory_filters_list_what_restic_lists() {
        let dir = ["/testdir", "/testdir/bar", "/testdir/sub"];
        assert_eq!(listed(&["/testdir"], false), dir);
        assert_eq!(listed(&["/testdir/"], false), dir);
        assert_eq!(listed(&["/testdir/bar"], false), ["/testdir/bar"]);
        assert_eq!(
            listed(&["/testdir/sub"], false),
            ["/testdir/sub", "/testdir/sub/x"]
        );
        assert_eq!(
            listed(&["/testdir"], true),
            ["/testdir", "/testdir/bar", "/testdir/sub", "/testdir/sub/x"]
        );
        assert_eq!(listed(&["/"], false), ["/testdir", "/testdir2"]);
    }
}
