//! Files and their bytes below a tree, as restic 0.17 counts a snapshot summary's
//! `total_files_processed` and `total_bytes_processed`: every file node, in every
//! directory, however often the same subtree occurs.

use std::collections::HashMap;
use std::sync::Mutex;

use restash_format::{BlobId, NodeType};

use crate::events::Cancel;
use crate::{dir_subtree, Repository, Result};

/// Files and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Regular files.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Totals {
    /// Counts one file of `size` bytes. Saturating: sizes come from the repository,
    /// which may be damaged or hostile.
    pub fn add_file(&mut self, size: u64) {
        self.files = self.files.saturating_add(1);
        self.bytes = self.bytes.saturating_add(size);
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: Totals) {
        self.files = self.files.saturating_add(other.files);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// The totals of trees, each distinct tree counted once: trees never change under their
/// id, so what one snapshot's walk counted serves every snapshot that shares the subtree.
#[derive(Debug, Default)]
pub struct TreeTotals {
    memo: Mutex<HashMap<BlobId, Totals>>,
}

impl TreeTotals {
    /// An empty memo.
    pub fn new() -> TreeTotals {
        TreeTotals::default()
    }

    /// The totals below `tree` (the repository's index must be loaded).
    pub fn of(&self, repo: &Repository, tree: &BlobId, cancel: &Cancel) -> Result<Totals> {
        if let Some(t) = self
            .memo
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tree)
        {
            return Ok(*t);
        }
        cancel.check()?;
        let mut sum = Totals::default();
        for node in &repo.load_tree(tree)?.nodes {
            match node.node_type {
                NodeType::File => sum.add_file(node.size),
                NodeType::Dir => {
                    let sub = dir_subtree(node, &node.display_name())?;
                    sum.add(self.of(repo, &sub, cancel)?);
                }
                _ => {}
            }
        }
        self.memo
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*tree, sum);
        Ok(sum)
    }
}
