//! Paths in a snapshot: finding a node by its path, and writing files and trees out.

use std::collections::HashSet;
use std::io::Write;

use restash_format::{BlobId, BlobType, Node, NodeType};

use crate::treewalk::{walk_from, Visit};
use crate::{EngineError, Repository, Result};

fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// Finds the node at `path` (slash-separated, relative to the root tree). Returns the
/// node, or `None` for the root itself.
pub fn find_node(repo: &Repository, root: &BlobId, path: &str) -> Result<Option<Node>> {
    let mut tree = *root;
    let mut found: Option<Node> = None;
    let mut walked = String::new();
    for comp in components(path) {
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
        walked.push_str(comp);
        let t = repo.load_tree(&tree)?;
        found = Some(
            t.find(comp.as_bytes())
                .cloned()
                .ok_or_else(|| EngineError::NotFound(format!("path {walked:?} not found")))?,
        );
    }
    Ok(found)
}

/// The tree id of the directory at `path` (restic's `snapshot:subfolder`).
pub fn find_subtree(repo: &Repository, root: &BlobId, path: &str) -> Result<BlobId> {
    match find_node(repo, root, path)? {
        None => Ok(*root),
        Some(n) if n.node_type == NodeType::Dir => n
            .subtree
            .ok_or_else(|| EngineError::Corrupt(format!("dir {path:?} has no subtree"))),
        Some(_) => Err(EngineError::NotFound(format!(
            "path {path:?} is not a directory"
        ))),
    }
}

/// Writes a file node's content to `out`, blob by blob.
pub fn dump_file(repo: &Repository, node: &Node, out: &mut dyn Write) -> Result<()> {
    for id in node.content.iter().flatten() {
        let data = repo.load_blob(id, BlobType::Data)?;
        out.write_all(&data)
            .map_err(EngineError::io("write to output"))?;
    }
    Ok(())
}

/// Writes the tree below `tree` as a tar stream; entry names are the snapshot paths
/// without the leading slash, as restic's dumper writes them.
pub fn dump_tar(repo: &Repository, tree: &BlobId, prefix: &str, out: &mut dyn Write) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let io = |e| EngineError::io("write tar")(e);
    walk_from(
        repo,
        prefix,
        tree,
        &mut HashSet::new(),
        &mut |_, path, node| {
            let name = path.strip_prefix('/').unwrap_or(path).to_string();
            let mut header = tar::Header::new_gnu();
            header.set_mode(node.unix_permissions());
            header.set_uid(node.uid as u64);
            header.set_gid(node.gid as u64);
            header.set_mtime(node.mtime.unix_secs().max(0) as u64);
            let _ = header.set_username(&node.user);
            let _ = header.set_groupname(&node.group);
            match node.node_type {
                NodeType::File => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(node.size);
                    let mut data = Vec::with_capacity(node.size as usize);
                    dump_file(repo, node, &mut data)?;
                    header.set_size(data.len() as u64);
                    builder
                        .append_data(&mut header, &name, data.as_slice())
                        .map_err(io)?;
                }
                NodeType::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    builder
                        .append_data(&mut header, format!("{name}/"), std::io::empty())
                        .map_err(io)?;
                }
                NodeType::Symlink => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    let target = String::from_utf8_lossy(&node.link_target_bytes()).into_owned();
                    builder
                        .append_link(&mut header, &name, target)
                        .map_err(io)?;
                }
                _ => {}
            }
            Ok(Visit::Continue(false))
        },
    )?;
    builder.finish().map_err(io)?;
    Ok(())
}
