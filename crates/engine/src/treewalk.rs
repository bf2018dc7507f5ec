//! The engine's one tree walker, restic's `walker.Walk`: visits nodes sorted by name with
//! Go's `path.Join` paths and the "ignore" protocol (a subtree whose nodes were all ignored
//! is not visited again), which `stats` and `find` depend on for their exact counts and
//! matches; `ls` and `dump` use it without ignoring anything.

use std::collections::HashSet;

use restash_format::{BlobId, Node, NodeType};

use crate::{EngineError, Repository, Result};

/// What the visitor wants done after seeing a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// Go on; `true` marks the node as ignored (its subtree is not visited again).
    Continue(bool),
    /// restic's `ErrSkipNode`: for a directory, do not descend; for any other node, skip
    /// the rest of the current tree. The flag is the ignore mark as for `Continue`.
    Skip(bool),
    /// End the whole walk now (restic's `find` returns an error to stop early).
    Stop,
}

/// The visitor: parent tree id, slash path from the root (`/a/b`), node.
pub type WalkFn<'a> = dyn FnMut(&BlobId, &str, &Node) -> Result<Visit> + 'a;

/// Walks `root` like restic's `walker.Walk`; `ignore_trees` persists across calls (restic
/// shares it between the snapshots of one `find`).
pub fn walk_restic(
    repo: &Repository,
    root: &BlobId,
    ignore_trees: &mut HashSet<BlobId>,
    f: &mut WalkFn<'_>,
) -> Result<()> {
    walk_from(repo, "/", root, ignore_trees, f)
}

/// [`walk_restic`] with the paths below `prefix` instead of `/` (a subtree's own path, for
/// `dump`): its nodes are `prefix/name` (`/name` for an empty prefix).
pub fn walk_from(
    repo: &Repository,
    prefix: &str,
    root: &BlobId,
    ignore_trees: &mut HashSet<BlobId>,
    f: &mut WalkFn<'_>,
) -> Result<()> {
    walk(repo, prefix, root, ignore_trees, f).map(|_| ())
}

/// The visit of a walker that ignores nothing and only chooses which directories to enter:
/// `descend` matters for directories alone (a `Skip` on another node would end its tree).
pub fn enter_if(descend: bool, node: &Node) -> Visit {
    if descend || node.node_type != NodeType::Dir {
        Visit::Continue(false)
    } else {
        Visit::Skip(false)
    }
}

/// Go's `path.Join(prefix, name)` for a clean prefix and a single-component name.
pub fn join(prefix: &str, name: &str) -> String {
    let p = prefix.trim_end_matches('/');
    if name.is_empty() {
        return if p.is_empty() { "/".into() } else { p.into() };
    }
    format!("{p}/{name}")
}

fn walk(
    repo: &Repository,
    prefix: &str,
    tree_id: &BlobId,
    ignore_trees: &mut HashSet<BlobId>,
    f: &mut WalkFn<'_>,
) -> Result<Option<bool>> {
    let mut tree = repo.load_tree(tree_id)?;
    tree.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut all_ignored = !tree.nodes.is_empty();
    for node in &tree.nodes {
        let p = join(prefix, &String::from_utf8_lossy(&node.name));
        if node.node_type != NodeType::Dir {
            match f(tree_id, &p, node)? {
                Visit::Skip(_) => return Ok(Some(all_ignored)),
                Visit::Stop => return Ok(None),
                Visit::Continue(ignore) => all_ignored &= ignore,
            }
            continue;
        }
        let sub = node.subtree.ok_or_else(|| {
            EngineError::Corrupt(format!("subtree for node {p} in tree {tree_id} is nil"))
        })?;
        if ignore_trees.contains(&sub) {
            continue;
        }
        match f(tree_id, &p, node)? {
            Visit::Stop => return Ok(None),
            Visit::Skip(ignore) => {
                if ignore {
                    ignore_trees.insert(sub);
                }
                continue;
            }
            Visit::Continue(ignore) => {
                if ignore {
                    ignore_trees.insert(sub);
                }
                all_ignored &= ignore;
            }
        }
        let Some(ignore) = walk(repo, &p, &sub, ignore_trees, f)? else {
            return Ok(None);
        };
        if ignore {
            ignore_trees.insert(sub);
        }
        all_ignored &= ignore;
    }
    Ok(Some(all_ignored))
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn joins_like_go_path_join() {
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert_eq!(join("/a/", "b"), "/a/b");
        assert_eq!(join("/", ""), "/");
        assert_eq!(join("", "a"), "/a");
        assert_eq!(join("sub/dir", "a"), "sub/dir/a");
    }

    /// A snapshot of: a/{x, y}, b/{z}, c (file), with a and b holding different files.
    fn snapshot() -> (Repository, BlobId, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for (p, data) in [("a/x", "1"), ("a/y", "2"), ("b/z", "3"), ("c", "4")] {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
        }
        let mut repo = crate::test_util::memory_repo();
        let snap = crate::test_util::backup_dir(&mut repo, &root);
        // The snapshot's tree holds the absolute path; start at the backed-up directory.
        let sub = crate::find_subtree(&repo, &snap.tree, root.to_str().unwrap()).unwrap();
        (repo, sub, dir)
    }

    fn visited(
        repo: &Repository,
        root: &BlobId,
        ignore: &mut HashSet<BlobId>,
        mut f: impl FnMut(&str, &Node) -> Visit,
    ) -> Vec<String> {
        let mut seen = Vec::new();
        walk_restic(repo, root, ignore, &mut |_, path, node| {
            seen.push(path.to_string());
            Ok(f(path, node))
        })
        .unwrap();
        seen
    }

    #[test]
    fn ignored_subtrees_are_not_walked_again() {
        let (repo, root, _dir) = snapshot();
        let mut ignore = HashSet::new();
        let all = visited(&repo, &root, &mut ignore, |_, _| Visit::Continue(false));
        assert_eq!(all, ["/a", "/a/x", "/a/y", "/b", "/b/z", "/c"]);
        assert!(ignore.is_empty());

        // Everything below `a` ignored: `a` is remembered, `b` (with a node kept) is not.
        let first = visited(&repo, &root, &mut ignore, |p, _| {
            Visit::Continue(p.starts_with("/a/"))
        });
        assert_eq!(first, all);
        let second = visited(&repo, &root, &mut ignore, |_, _| Visit::Continue(false));
        assert_eq!(second, ["/b", "/b/z", "/c"]);

        // A directory skipped with the ignore mark is remembered without being entered.
        let mut ignore = HashSet::new();
        let skipped = visited(&repo, &root, &mut ignore, |p, node| match p {
            "/b" => Visit::Skip(true),
            _ => enter_if(true, node),
        });
        assert_eq!(skipped, ["/a", "/a/x", "/a/y", "/b", "/c"]);
        assert_eq!(ignore.len(), 1);

        // Skip on a file ends its tree; Stop ends the walk.
        let mut none = HashSet::new();
        let cut = visited(&repo, &root, &mut none, |p, _| {
            if p == "/a/x" {
                Visit::Skip(false)
            } else {
                Visit::Continue(false)
            }
        });
        assert_eq!(cut, ["/a", "/a/x", "/b", "/b/z", "/c"]);
        // As in restic, a tree cut short before any node was kept counts as ignored.
        assert_eq!(none.len(), 1);
        let stopped = visited(&repo, &root, &mut HashSet::new(), |p, _| {
            if p == "/b" {
                Visit::Stop
            } else {
                Visit::Continue(false)
            }
        });
        assert_eq!(stopped, ["/a", "/a/x", "/a/y", "/b"]);
    }

    #[test]
    fn walks_below_a_prefix_and_enters_only_chosen_dirs() {
        let (repo, root, _dir) = snapshot();
        let mut seen = Vec::new();
        walk_from(
            &repo,
            "sub/dir/",
            &root,
            &mut HashSet::new(),
            &mut |_, path, node| {
                seen.push(path.to_string());
                Ok(enter_if(!path.ends_with("/a"), node))
            },
        )
        .unwrap();
        assert_eq!(seen, ["sub/dir/a", "sub/dir/b", "sub/dir/b/z", "sub/dir/c"]);
    }
}
