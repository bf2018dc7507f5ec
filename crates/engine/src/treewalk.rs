//! restic's `walker.Walk`: visits nodes sorted by name with Go's `path.Join` paths and the
//! "ignore" protocol (a subtree whose nodes were all ignored is not visited again), which
//! `stats` and `find` depend on for their exact counts and matches.

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
    walk(repo, "/", root, ignore_trees, f).map(|_| ())
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
    use super::join;

    #[test]
    fn joins_like_go_path_join() {
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert_eq!(join("/a/", "b"), "/a/b");
        assert_eq!(join("/", ""), "/");
    }
}
