//! The walk: `lstat` every entry below the targets, apply the exclude rules, and match
//! each file against the parent snapshot so that unchanged files are not read again.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use restash_format::{BlobId, BlobType, Node, NodeType, Tree};

use super::fsnode::NodeMaker;
use super::BackupOptions;
use crate::Repository;

/// A file to read, or already matched to the parent snapshot.
pub struct FileJob {
    /// Where to read it.
    pub path: PathBuf,
    /// Its node; `content` is filled when the file has been read (or reused).
    pub node: Node,
    /// Whether the parent snapshot had a node of that name.
    pub had_parent: bool,
    /// Whether the content was taken from the parent unread.
    pub reused: bool,
    /// Set when the file could not be read: it is left out of the snapshot.
    pub failed: bool,
}

/// One entry of the scanned tree.
pub enum Entry {
    /// A directory and its entries.
    Dir(ScanDir),
    /// A regular file, by its index in [`Scan::files`].
    File(usize),
    /// Anything else: symlink, fifo, device.
    Other(Node),
}

/// A scanned directory.
pub struct ScanDir {
    /// Its node (`None` for the snapshot root).
    pub node: Option<Node>,
    /// The subtree the parent snapshot had here, for the dirs_changed/unmodified counts.
    pub parent_subtree: Option<BlobId>,
    /// Whether the parent snapshot had this directory at all.
    pub had_parent: bool,
    /// Entries (sorted before the tree is built).
    pub children: Vec<Entry>,
}

impl Entry {
    fn name<'a>(&'a self, files: &'a [FileJob]) -> &'a [u8] {
        match self {
            Entry::Dir(d) => d.node.as_ref().map(|n| n.name.as_slice()).unwrap_or(b""),
            Entry::File(i) => &files[*i].node.name,
            Entry::Other(n) => &n.name,
        }
    }
}

/// The result of the walk.
pub struct Scan {
    /// The root directory (virtual: its children are the targets' first components).
    pub root: ScanDir,
    /// Every regular file, in walk order.
    pub files: Vec<FileJob>,
    /// Problems, each naming its path; those entries are not in the snapshot.
    pub errors: Vec<String>,
}

/// Walks the targets.
pub struct Scanner<'a> {
    repo: &'a Repository,
    opts: &'a BackupOptions,
    maker: &'a NodeMaker,
    trees: HashMap<BlobId, Tree>,
    files: Vec<FileJob>,
    errors: Vec<String>,
}

impl<'a> Scanner<'a> {
    /// A scanner for one backup.
    pub fn new(repo: &'a Repository, opts: &'a BackupOptions, maker: &'a NodeMaker) -> Self {
        Scanner {
            repo,
            opts,
            maker,
            trees: HashMap::new(),
            files: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn parent_tree(&mut self, id: Option<BlobId>) -> Option<&Tree> {
        let id = id?;
        if !self.trees.contains_key(&id) {
            // A parent that cannot be read only means files are read again.
            let t = self.repo.load_tree(&id).ok()?;
            self.trees.insert(id, t);
        }
        self.trees.get(&id)
    }

    fn parent_node(&mut self, tree: Option<BlobId>, name: &[u8]) -> Option<Node> {
        self.parent_tree(tree)?.find(name).cloned()
    }

    /// Walks every target (absolute, cleaned, none inside another) below a virtual root.
    /// `parent_root` is the parent snapshot's root tree.
    pub fn scan(
        mut self,
        targets: &[(PathBuf, Vec<Vec<u8>>)],
        parent_root: Option<BlobId>,
    ) -> Scan {
        let mut root = ScanDir {
            node: None,
            parent_subtree: parent_root,
            had_parent: parent_root.is_some(),
            children: Vec::new(),
        };
        for (abs, comps) in targets {
            self.add_target(&mut root, abs, comps);
        }
        Scan {
            root,
            files: self.files,
            errors: self.errors,
        }
    }

    fn add_target(&mut self, root: &mut ScanDir, abs: &Path, comps: &[Vec<u8>]) {
        // The real directory behind each intermediate component of the tree path.
        let depth = comps.len();
        let base: PathBuf = {
            let mut p = abs.to_path_buf();
            for _ in 1..depth {
                p.pop();
            }
            p.pop();
            p
        };
        let mut dir = root;
        let mut real = base;
        for comp in &comps[..depth - 1] {
            real.push(OsStr::from_bytes(comp));
            let pos = dir.children.iter().position(|e| match e {
                Entry::Dir(d) => {
                    d.node.as_ref().map(|n| n.name.as_slice()) == Some(comp.as_slice())
                }
                _ => false,
            });
            let pos = match pos {
                Some(p) => p,
                None => {
                    let meta = match std::fs::symlink_metadata(&real) {
                        Ok(m) => m,
                        Err(e) => {
                            self.errors.push(format!("{}: {e}", real.display()));
                            return;
                        }
                    };
                    let pnode = self.parent_node(dir.parent_subtree, comp);
                    let node = self.maker.node(&real, comp, &meta);
                    dir.children.push(Entry::Dir(ScanDir {
                        node: Some(node),
                        parent_subtree: pnode.as_ref().and_then(|n| n.subtree),
                        had_parent: pnode.is_some(),
                        children: Vec::new(),
                    }));
                    dir.children.len() - 1
                }
            };
            dir = match &mut dir.children[pos] {
                Entry::Dir(d) => d,
                _ => unreachable!("found as a directory above"),
            };
        }
        let name = &comps[depth - 1];
        let meta = match std::fs::symlink_metadata(abs) {
            Ok(m) => m,
            Err(e) => {
                self.errors.push(format!("{}: {e}", abs.display()));
                return;
            }
        };
        let root_dev = meta.dev();
        let parent_tree = dir.parent_subtree;
        if let Some(e) = self.entry(abs, name, &meta, parent_tree, root_dev) {
            dir.children.push(e);
        }
    }

    fn excluded(&self, path: &Path, meta: &std::fs::Metadata, root_dev: u64) -> bool {
        let o = self.opts;
        let bytes = path.as_os_str().as_bytes();
        if o.excludes.matches(bytes) {
            return true;
        }
        if o.one_file_system && meta.dev() != root_dev {
            return true;
        }
        if let Some(limit) = o.exclude_larger_than {
            if meta.is_file() && meta.len() > limit {
                return true;
            }
        }
        if meta.is_dir() {
            for spec in &o.exclude_if_present {
                let (name, header) = spec.split_once(':').unwrap_or((spec.as_str(), ""));
                let marker = path.join(name);
                if header.is_empty() {
                    if marker.exists() {
                        return true;
                    }
                } else if let Ok(data) = std::fs::read(&marker) {
                    if data.starts_with(header.as_bytes()) {
                        return true;
                    }
                }
            }
        }
        false
    }

    fn entry(
        &mut self,
        path: &Path,
        name: &[u8],
        meta: &std::fs::Metadata,
        parent_tree: Option<BlobId>,
        root_dev: u64,
    ) -> Option<Entry> {
        let ft = meta.file_type();
        let node = self.maker.node(path, name, meta);
        let pnode = self.parent_node(parent_tree, name);
        match node.node_type {
            NodeType::Socket => None,
            NodeType::Dir => {
                let mut d = ScanDir {
                    parent_subtree: pnode.as_ref().and_then(|n| n.subtree),
                    had_parent: pnode.is_some(),
                    node: Some(node),
                    children: Vec::new(),
                };
                let names = match read_dir_sorted(path) {
                    Ok(n) => n,
                    Err(e) => {
                        self.errors.push(format!("{}: {e}", path.display()));
                        return None;
                    }
                };
                for child in names {
                    let cpath = path.join(OsStr::from_bytes(&child));
                    let cmeta = match std::fs::symlink_metadata(&cpath) {
                        Ok(m) => m,
                        Err(e) => {
                            self.errors.push(format!("{}: {e}", cpath.display()));
                            continue;
                        }
                    };
                    if self.excluded(&cpath, &cmeta, root_dev) {
                        continue;
                    }
                    if let Some(e) = self.entry(&cpath, &child, &cmeta, d.parent_subtree, root_dev)
                    {
                        d.children.push(e);
                    }
                }
                Some(Entry::Dir(d))
            }
            NodeType::File if ft.is_file() => {
                let mut node = node;
                let had_parent = pnode.is_some();
                let mut reused = false;
                if let Some(p) = pnode.filter(|p| self.unchanged(p, &node)) {
                    node.content = p.content;
                    reused = true;
                }
                self.files.push(FileJob {
                    path: path.to_path_buf(),
                    node,
                    had_parent,
                    reused,
                    failed: false,
                });
                Some(Entry::File(self.files.len() - 1))
            }
            _ => Some(Entry::Other(node)),
        }
    }

    /// restic's `fileChanged`, inverted, plus the check that the old content is still
    /// fully indexed.
    fn unchanged(&self, old: &Node, new: &Node) -> bool {
        old.node_type == NodeType::File
            && old.mtime.0 == new.mtime.0
            && old.ctime.0 == new.ctime.0
            && old.inode == new.inode
            && old.size == new.size
            && old
                .content
                .as_ref()
                .is_some_and(|c| c.iter().all(|id| self.repo.index().has(id, BlobType::Data)))
    }
}

/// Directory entries sorted by name bytes, as restic's trees are.
fn read_dir_sorted(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(path)?
        .map(|e| e.map(|e| e.file_name().as_bytes().to_vec()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    Ok(names)
}

/// Sorts every directory's children by name (targets merged into one root arrive in
/// command-line order).
pub fn sort_children(dir: &mut ScanDir, files: &[FileJob]) {
    dir.children
        .sort_by(|a, b| a.name(files).cmp(b.name(files)));
    for c in &mut dir.children {
        if let Entry::Dir(d) = c {
            sort_children(d, files);
        }
    }
}
