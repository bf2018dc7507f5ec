//! The backup pipeline. The walk runs on the calling thread, depth first, one directory at
//! a time; files to read go to a bounded queue served by reader threads; a directory's
//! tree is saved as soon as its last entry is done. Memory is bounded by the queue and the
//! directories still open, never by the size of the whole backup.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crossbeam_channel::{Receiver, Sender};
use rayon::prelude::*;
use restash_chunker::{Chunker, ChunkerParams, StreamChunker};
use restash_format::{BlobId, BlobType, Node, NodeType, Tree};

use super::fsnode::NodeMaker;
use super::saver::Saver;
use super::{BackupOptions, BackupSummary};
use crate::events::{Cancel, Meter};
use crate::{EngineError, Repository, Result};

/// Files queued for the readers at most; the walk waits when they fall behind.
const QUEUE: usize = 512;

/// Directory entries looked up together (bounds the memory of a huge directory).
const PREPARE_BATCH: usize = 256;

/// One directory entry, looked up.
enum Prepared {
    Entry(Box<(Metadata, Node)>),
    Excluded,
    Failed(String),
}

/// Where a finished entry goes: a slot of a directory under construction.
#[derive(Clone, Copy)]
struct SlotRef {
    dir: usize,
    slot: usize,
}

enum Slot {
    Ready(Box<Node>),
    Pending,
    Dropped,
}

struct DirBuild {
    node: Node,
    parent_subtree: Option<BlobId>,
    // The parent snapshot's listing of this directory, once the walk is done with it.
    parent_tree: Option<Tree>,
    had_parent: bool,
    slots: Vec<Slot>,
    pending: usize,
    walked: bool,
    // A stand-in parent for a file given as a target: passes its one node on.
    holder: bool,
    up: Up,
}

/// Where a finished directory's node goes.
#[derive(Clone, Copy)]
enum Up {
    /// Into a slot of its parent directory.
    Slot(SlotRef),
    /// It is target number N.
    Target(usize),
}

struct FileTask {
    to: SlotRef,
    path: PathBuf,
    node: Node,
    had_parent: bool,
}

struct FileDone {
    to: SlotRef,
    had_parent: bool,
    result: std::result::Result<Node, String>,
}

/// What the readers share.
pub struct ReadCtx<'a> {
    /// Blob sink.
    pub saver: &'a Saver<'a>,
    /// Chunker parameters of this backup.
    pub chunker: &'a ChunkerParams,
    /// Stops the readers.
    pub cancel: &'a Cancel,
    /// Live counters.
    pub progress: &'a Meter,
}

/// Reads one stream into data blobs; returns the content list and the byte count.
pub fn read_content(
    ctx: &ReadCtx,
    sc: &mut StreamChunker<Box<dyn Read + Send>, Chunker>,
    what: &Path,
) -> Result<(Vec<BlobId>, u64)> {
    let mut content = Vec::new();
    let mut size = 0u64;
    loop {
        ctx.cancel.check()?;
        let chunk = match sc.next_chunk() {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => return Err(EngineError::io(format!("read {}", what.display()))(e)),
        };
        let id = BlobId::hash(chunk);
        ctx.saver.save(BlobType::Data, id, chunk)?;
        content.push(id);
        size += chunk.len() as u64;
        ctx.progress.done(0, chunk.len() as u64);
    }
    Ok((content, size))
}

fn open_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NOFOLLOW: a file replaced by a symlink since the walk is not followed.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// A reader thread: takes files from the queue until it closes.
fn reader(ctx: &ReadCtx, tasks: Receiver<FileTask>, done: Sender<FileDone>) -> Result<()> {
    let empty: Box<dyn Read + Send> = Box::new(std::io::empty());
    let mut sc = StreamChunker::new(empty, ctx.chunker.chunker());
    for t in tasks {
        let result = match open_file(&t.path) {
            Err(e) => Err(format!("open {}: {e}", t.path.display())),
            Ok(f) => {
                sc.restart(Box::new(f));
                match read_content(ctx, &mut sc, &t.path) {
                    Ok((content, size)) => {
                        let mut node = t.node;
                        node.size = size;
                        node.content = Some(content);
                        Ok(node)
                    }
                    Err(EngineError::Io { context, source }) => Err(format!("{context}: {source}")),
                    Err(e) => return Err(e),
                }
            }
        };
        let _ = done.send(FileDone {
            to: t.to,
            had_parent: t.had_parent,
            result,
        });
    }
    Ok(())
}

/// The walk and the directory bookkeeping (runs on the calling thread).
pub struct Walker<'a> {
    repo: &'a Repository,
    opts: &'a BackupOptions,
    read: &'a ReadCtx<'a>,
    maker: &'a NodeMaker,
    saver: &'a Saver<'a>,
    tasks: Option<Sender<FileTask>>,
    done: Receiver<FileDone>,
    dirs: HashMap<usize, DirBuild>,
    next_dir: usize,
    /// Finished target nodes, by target number.
    pub targets: Vec<Option<Node>>,
    /// Counts for the summary.
    pub summary: BackupSummary,
}

impl<'a> Walker<'a> {
    fn parent_tree(&mut self, id: Option<BlobId>) -> Option<Tree> {
        // A parent that cannot be read only means files are read again.
        let id = id?;
        match self.repo.load_tree(&id) {
            Ok(t) => Some(t),
            Err(e) => {
                self.summary
                    .warnings
                    .push(super::parent_tree_warning(&id, &e));
                None
            }
        }
    }

    /// restic's reject rules for one entry of a directory on device `dir_dev`.
    fn excluded(
        o: &BackupOptions,
        path: &Path,
        meta: &Metadata,
        root_dev: u64,
        dir_dev: u64,
    ) -> bool {
        if o.excludes.matches(path.as_os_str().as_bytes()) {
            return true;
        }
        // Another file system: only a mount point itself is kept (empty), as in restic.
        if o.one_file_system && meta.dev() != root_dev && !(meta.is_dir() && dir_dev == root_dev) {
            return true;
        }
        if let Some(limit) = o.exclude_larger_than {
            if meta.is_file() && meta.len() > limit {
                return true;
            }
        }
        false
    }

    /// The tag files of `--exclude-if-present` found in `dir`: such a directory keeps only
    /// them (restic keeps the directory and its tag, not the rest).
    fn tag_files(&self, dir: &Path) -> Option<Vec<Vec<u8>>> {
        let mut tags = Vec::new();
        for spec in &self.opts.exclude_if_present {
            let (name, header) = spec.split_once(':').unwrap_or((spec.as_str(), ""));
            let marker = dir.join(name);
            let hit = if header.is_empty() {
                std::fs::symlink_metadata(&marker).is_ok()
            } else {
                std::fs::read(&marker).is_ok_and(|d| d.starts_with(header.as_bytes()))
            };
            if hit {
                tags.push(name.as_bytes().to_vec());
            }
        }
        (!tags.is_empty()).then_some(tags)
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

    fn error(&mut self, msg: String) {
        self.summary.errors.push(msg);
    }

    /// restic's reject rules for a target itself: the same as for an entry of a directory,
    /// with the target's parent directory on `root_dev`, the file system `-x` keeps to.
    fn target_excluded(&self, path: &Path, meta: &Metadata, root_dev: u64) -> bool {
        if Self::excluded(self.opts, path, meta, root_dev, root_dev) {
            return true;
        }
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return false;
        };
        self.tag_files(dir)
            .is_some_and(|tags| !tags.iter().any(|t| t.as_slice() == name.as_bytes()))
    }

    fn deliver(&mut self, up: Up, slot: Slot) -> Result<()> {
        match up {
            Up::Target(i) => {
                if let Slot::Ready(n) = slot {
                    self.targets[i] = Some(*n);
                }
                Ok(())
            }
            Up::Slot(r) => {
                let d = self.dirs.get_mut(&r.dir).expect("open directory");
                d.slots[r.slot] = slot;
                d.pending -= 1;
                if d.pending == 0 && d.walked {
                    self.finish_dir(r.dir)?;
                }
                Ok(())
            }
        }
    }

    fn entry(
        &mut self,
        path: &Path,
        node: Node,
        meta: &Metadata,
        pnode: Option<Node>,
        up: Up,
        root_dev: u64,
    ) -> Result<()> {
        match node.node_type {
            NodeType::Socket => self.deliver(up, Slot::Dropped),
            NodeType::Dir => self.dir(path, node, pnode, up, root_dev, meta.dev()),
            NodeType::File if meta.file_type().is_file() => {
                let progress = self.read.progress;
                progress.found(1, meta.len());
                let had_parent = pnode.is_some();
                if let Some(p) = pnode.filter(|p| self.unchanged(p, &node)) {
                    let mut node = node;
                    node.content = p.content;
                    self.summary.files_unmodified += 1;
                    progress.done(1, node.size);
                    self.summary.total_files_processed += 1;
                    self.summary.total_bytes_processed += node.size;
                    return self.deliver(up, Slot::Ready(Box::new(node)));
                }
                let Up::Slot(to) = up else {
                    unreachable!("file targets are given a holder directory")
                };
                let task = FileTask {
                    to,
                    path: path.to_path_buf(),
                    node,
                    had_parent,
                };
                self.send(task)
            }
            _ => self.deliver(up, Slot::Ready(Box::new(node))),
        }
    }

    fn send(&mut self, task: FileTask) -> Result<()> {
        let tx = self.tasks.clone().expect("queue open during the walk");
        let mut task = task;
        loop {
            self.read.cancel.check()?;
            match tx.send_timeout(task, std::time::Duration::from_millis(20)) {
                Ok(()) => return Ok(()),
                Err(crossbeam_channel::SendTimeoutError::Timeout(t)) => {
                    task = t;
                    // While the readers are busy, finish what they have done.
                    self.drain(false)?;
                }
                Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => {
                    return Err(self.read.cancel.error())
                }
            }
        }
    }

    fn dir(
        &mut self,
        path: &Path,
        node: Node,
        pnode: Option<Node>,
        up: Up,
        root_dev: u64,
        dir_dev: u64,
    ) -> Result<()> {
        let mut names = match read_dir_sorted(path) {
            Ok(n) => n,
            Err(e) => {
                self.error(format!("{}: {e}", path.display()));
                return self.deliver(up, Slot::Dropped);
            }
        };
        if self.opts.one_file_system && dir_dev != root_dev {
            names.clear();
        }
        if let Some(tags) = self.tag_files(path) {
            names.retain(|n| tags.contains(n));
        }
        let parent_subtree = pnode.as_ref().and_then(|n| n.subtree);
        let ptree = self.parent_tree(parent_subtree);
        let id = self.next_dir;
        self.next_dir += 1;
        self.dirs.insert(
            id,
            DirBuild {
                node,
                parent_subtree,
                parent_tree: None,
                had_parent: pnode.is_some(),
                slots: (0..names.len()).map(|_| Slot::Pending).collect(),
                pending: names.len(),
                walked: false,
                holder: false,
                up,
            },
        );
        // lstat, xattrs and owner names cost several syscalls per entry: they are looked
        // up on all cores a batch of entries at a time, then applied in order.
        let (opts, maker) = (self.opts, self.maker);
        let mut slot = 0;
        for batch in names.chunks(PREPARE_BATCH) {
            let prepared: Vec<(PathBuf, Prepared)> = batch
                .par_iter()
                .map(|child| {
                    let cpath = path.join(OsStr::from_bytes(child));
                    let prep = match std::fs::symlink_metadata(&cpath) {
                        Err(e) => Prepared::Failed(format!("{}: {e}", cpath.display())),
                        Ok(m) if Self::excluded(opts, &cpath, &m, root_dev, dir_dev) => {
                            Prepared::Excluded
                        }
                        Ok(m) => match maker.node(&cpath, child, &m) {
                            Ok(node) => Prepared::Entry(Box::new((m, node))),
                            Err(msg) => Prepared::Failed(msg),
                        },
                    };
                    (cpath, prep)
                })
                .collect();
            for (child, (cpath, prep)) in batch.iter().zip(prepared) {
                let to = Up::Slot(SlotRef { dir: id, slot });
                slot += 1;
                let (cmeta, cnode) = match prep {
                    Prepared::Entry(e) => *e,
                    Prepared::Excluded => {
                        self.deliver(to, Slot::Dropped)?;
                        continue;
                    }
                    Prepared::Failed(msg) => {
                        self.error(msg);
                        self.deliver(to, Slot::Dropped)?;
                        continue;
                    }
                };
                let cpnode = ptree.as_ref().and_then(|t| t.find(child).cloned());
                self.entry(&cpath, cnode, &cmeta, cpnode, to, root_dev)?;
                // Finished files are applied as the walk goes, so that directories close
                // (and their nodes are freed) even when the readers keep up with the walk.
                self.drain(false)?;
            }
        }
        let d = self.dirs.get_mut(&id).expect("open directory");
        d.walked = true;
        d.parent_tree = ptree;
        if d.pending == 0 {
            self.finish_dir(id)?;
        }
        Ok(())
    }

    fn finish_dir(&mut self, id: usize) -> Result<()> {
        let d = self.dirs.remove(&id).expect("open directory");
        if d.holder {
            let slot = d.slots.into_iter().next().unwrap_or(Slot::Dropped);
            return self.deliver(d.up, slot);
        }
        let mut tree = Tree::default();
        for s in d.slots {
            if let Slot::Ready(n) = s {
                tree.nodes.push(*n);
            }
        }
        // A directory whose entries all equal the parent snapshot's has the parent's tree:
        // no need to encode, hash and store it again (most of a no-change backup's work).
        let tree_id = match (d.parent_subtree, d.parent_tree) {
            (Some(id), Some(old))
                if old.nodes == tree.nodes && self.repo.index().has(&id, BlobType::Tree) =>
            {
                id
            }
            _ => {
                let bytes = tree.to_bytes();
                let tree_id = BlobId::hash(&bytes);
                self.saver.save(BlobType::Tree, tree_id, &bytes)?;
                tree_id
            }
        };
        if !d.had_parent {
            self.summary.dirs_new += 1;
        } else if d.parent_subtree == Some(tree_id) {
            self.summary.dirs_unmodified += 1;
        } else {
            self.summary.dirs_changed += 1;
        }
        self.saver.reached_tree(tree_id, &tree);
        let mut node = d.node;
        node.subtree = Some(tree_id);
        self.deliver(d.up, Slot::Ready(Box::new(node)))
    }

    fn apply(&mut self, done: FileDone) -> Result<()> {
        self.read.progress.done(1, 0);
        match done.result {
            Ok(node) => {
                if done.had_parent {
                    self.summary.files_changed += 1;
                } else {
                    self.summary.files_new += 1;
                }
                self.summary.total_files_processed += 1;
                self.summary.total_bytes_processed += node.size;
                self.deliver(Up::Slot(done.to), Slot::Ready(Box::new(node)))
            }
            Err(msg) => {
                self.error(msg);
                self.deliver(Up::Slot(done.to), Slot::Dropped)
            }
        }
    }

    /// Applies finished files; with `all`, waits until the readers are done.
    fn drain(&mut self, all: bool) -> Result<()> {
        loop {
            let next = if all {
                self.done.recv().ok()
            } else {
                self.done.try_recv().ok()
            };
            match next {
                Some(d) => self.apply(d)?,
                None => return Ok(()),
            }
        }
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

/// One target to walk: its path, its name in the tree, and the parent snapshot's node.
pub struct TargetSpec {
    /// Absolute path.
    pub path: PathBuf,
    /// Name of its node.
    pub name: Vec<u8>,
    /// The node the parent snapshot had at this place.
    pub pnode: Option<Node>,
    /// The device of the nearest target given at or above it (`.` for an entry of `.`);
    /// None: its own.
    pub root_dev: Option<u64>,
}

/// Runs the walk with `workers` reader threads. Returns the target nodes (None for a
/// target that could not be read) and the counts.
pub fn run(
    repo: &Repository,
    opts: &BackupOptions,
    maker: &NodeMaker,
    ctx: &ReadCtx,
    targets: Vec<TargetSpec>,
) -> Result<(Vec<Option<Node>>, BackupSummary)> {
    let (task_tx, task_rx) = crossbeam_channel::bounded::<FileTask>(QUEUE);
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<FileDone>();
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for i in 0..opts.workers.max(1) {
            let (rx, tx) = (task_rx.clone(), done_tx.clone());
            let h = std::thread::Builder::new()
                .name(format!("reader-{i}"))
                .spawn_scoped(s, move || reader(ctx, rx, tx))
                .map_err(EngineError::io("spawn reader thread"))?;
            handles.push(h);
        }
        drop(done_tx);
        drop(task_rx);
        let mut w = Walker {
            repo,
            opts,
            read: ctx,
            maker,
            saver: ctx.saver,
            tasks: Some(task_tx),
            done: done_rx,
            dirs: HashMap::new(),
            next_dir: 0,
            targets: vec![None; targets.len()],
            summary: BackupSummary::default(),
        };
        let mut result = Ok(());
        for (i, t) in targets.into_iter().enumerate() {
            result = wrap_file_target(&mut w, &t, i);
            if result.is_err() {
                break;
            }
        }
        // Closing the queue lets the readers finish; then everything they did is applied.
        w.tasks = None;
        let drained = w.drain(true);
        let mut reader_err = Ok(());
        for h in handles {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => reader_err = Err(e),
                Err(_) => reader_err = Err(EngineError::Corrupt("a reader thread panicked".into())),
            }
        }
        result?;
        reader_err?;
        drained?;
        Ok((w.targets, w.summary))
    })
}

/// A file target has no directory to collect its node: it gets a one-slot holder that
/// passes the node on instead of saving a tree.
fn wrap_file_target(w: &mut Walker, t: &TargetSpec, i: usize) -> Result<()> {
    let meta = match std::fs::symlink_metadata(&t.path) {
        Ok(m) => m,
        Err(e) => {
            w.error(format!("{}: {e}", t.path.display()));
            return Ok(());
        }
    };
    let root_dev = t.root_dev.unwrap_or(meta.dev());
    if w.target_excluded(&t.path, &meta, root_dev) {
        return Ok(());
    }
    let node = match w.maker.node(&t.path, &t.name, &meta) {
        Ok(node) => node,
        Err(msg) => {
            w.error(msg);
            return Ok(());
        }
    };
    if meta.is_dir() {
        return w.entry(
            &t.path,
            node,
            &meta,
            t.pnode.clone(),
            Up::Target(i),
            root_dev,
        );
    }
    let holder = w.next_dir;
    w.next_dir += 1;
    w.dirs.insert(
        holder,
        DirBuild {
            node: Node::default(),
            parent_subtree: None,
            parent_tree: None,
            had_parent: false,
            slots: vec![Slot::Pending],
            pending: 1,
            walked: true,
            holder: true,
            up: Up::Target(i),
        },
    );
    let to = Up::Slot(SlotRef {
        dir: holder,
        slot: 0,
    });
    w.entry(&t.path, node, &meta, t.pnode.clone(), to, root_dev)
}
