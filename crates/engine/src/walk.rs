//! Paths in a snapshot: finding a node by its path.

use restash_format::{BlobId, Node, NodeType};

use crate::{EngineError, Repository, Result};

fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// Finds the node at `path` (slash-separated, relative to the root tree). Returns the
/// node, or `None` for the root itself.
pub fn find_node(repo: &Repository, root: &BlobId, path: &str) -> Result<Option<Node>> {
    let comps: Vec<&[u8]> = components(path).map(str::as_bytes).collect();
    find_node_by_names(repo, root, &comps)
}

/// [`find_node`] for a path given as raw name bytes, one per level (names need not be
/// UTF-8).
pub fn find_node_by_names(
    repo: &Repository,
    root: &BlobId,
    names: &[&[u8]],
) -> Result<Option<Node>> {
    let mut tree = *root;
    let mut found: Option<Node> = None;
    let mut walked = String::new();
    for comp in names {
        if let Some(n) = &found {
            tree = match (&n.node_type, n.subtree) {
                (NodeType::Dir, Some(s)) => s,
                _ => {
                    return Err(EngineError::NotFound(format!(
                        "path {walked:?} is not a directory"
                    )))
                }
            };
        }
        walked.push('/');
        walked.push_str(&String::from_utf8_lossy(comp));
        let t = repo.load_tree(&tree)?;
        found = Some(
            t.find(comp)
                .cloned()
                .ok_or_else(|| EngineError::NotFound(format!("path {walked:?} not found")))?,
        );
    }
    Ok(found)
}

/// A directory node's tree; a directory without one is damage, named by `path`.
pub fn dir_subtree(node: &Node, path: &str) -> Result<BlobId> {
    node.subtree
        .ok_or_else(|| EngineError::Corrupt(format!("directory {path:?} has no subtree")))
}

/// The tree id of the directory at `path` (restic's `snapshot:subfolder`).
pub fn find_subtree(repo: &Repository, root: &BlobId, path: &str) -> Result<BlobId> {
    match find_node(repo, root, path)? {
        None => Ok(*root),
        Some(n) if n.node_type == NodeType::Dir => dir_subtree(&n, path),
        Some(_) => Err(EngineError::NotFound(format!(
            "path {path:?} is not a directory"
        ))),
    }
}
