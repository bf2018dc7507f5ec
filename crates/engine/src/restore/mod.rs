//! Restore: plan from the trees, then one pass over the packs that reads each needed
//! region once, verifies every blob and writes it at its file offsets, in parallel.
//! Directory metadata comes last so that writing inside a directory cannot undo it.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use restash_backend::{FileType, Handle};
use restash_format::{BlobId, BlobType, Node, NodeType};

mod job;

pub use job::{run, RestoreJob, RestoreSummary};

use crate::events::{Cancel, Control, Event, Phase};
use crate::fsmeta::{self, DirMaker, Meta};
use crate::index::BlobLocation;
use crate::{EngineError, PatternSet, Repository, Result};

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Directory that receives the snapshot's tree.
    pub target: PathBuf,
    /// Only paths matching these (restic `--include`).
    pub include: PatternSet,
    /// Not paths matching these (restic `--exclude`).
    pub exclude: PatternSet,
    /// Parallel pack workers.
    pub workers: usize,
    /// Restore uid/gid (only possible as root).
    pub owners: bool,
}

impl RestoreOptions {
    /// Defaults for `target`: every path, owners when running as root.
    pub fn new(target: impl Into<PathBuf>) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        RestoreOptions {
            target: target.into(),
            include: PatternSet::default(),
            exclude: PatternSet::default(),
            workers: (cores * 2).clamp(2, 16),
            owners: rustix::process::geteuid().is_root(),
        }
    }
}

/// What a restore did.
#[derive(Debug, Default, Clone)]
pub struct RestoreStats {
    /// Regular files restored (hard links included).
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Other entries (symlinks, fifos, devices).
    pub others: u64,
    /// Content bytes written.
    pub bytes: u64,
    /// Everything that went wrong, each naming what it concerns.
    pub errors: Vec<String>,
}

struct FileState {
    handle: Option<Arc<File>>,
    remaining: usize,
    failed: bool,
    // A run of zeros was left as a hole; if it was at the end the file must be extended.
    holes: bool,
}

struct PlannedFile {
    path: PathBuf,
    meta: Meta,
    size: u64,
    state: Mutex<FileState>,
}

#[derive(Clone, Copy)]
struct Target {
    file: u32,
    offset: u64,
}

struct PlannedBlob {
    id: BlobId,
    loc: BlobLocation,
    targets: Vec<Target>,
}

#[derive(Default)]
struct Plan {
    files: Vec<PlannedFile>,
    // pack number → blobs to read from it
    packs: HashMap<u32, Vec<PlannedBlob>>,
    // blob id → (pack number, position): one read per blob however many files share it
    seen_blobs: HashMap<BlobId, (u32, usize)>,
    hardlinks: Vec<(PathBuf, u32)>,
    inodes: HashMap<(u64, u64), u32>,
    symlinks: Vec<(PathBuf, Vec<u8>, Meta)>,
    dirs: Vec<(PathBuf, Meta)>,
    dir_maker: DirMaker,
    stats: RestoreStats,
}

struct Planner<'a> {
    repo: &'a Repository,
    opts: &'a RestoreOptions,
    plan: Plan,
}

impl Planner<'_> {
    fn error(&mut self, msg: String) {
        self.plan.stats.errors.push(msg);
    }

    fn select(&self, item: &[u8], node: &Node) -> (bool, bool) {
        let is_dir = node.node_type == NodeType::Dir;
        if !self.opts.include.is_empty() {
            let sel = self.opts.include.matches(item);
            (
                sel,
                is_dir && (sel || self.opts.include.child_may_match(item)),
            )
        } else {
            let sel = !self.opts.exclude.matches(item);
            (sel, is_dir && sel)
        }
    }

    /// Plans the entries of `tree`; returns whether any of them is restored (a directory
    /// on the way to restored entries gets its metadata back, as in restic).
    fn walk(&mut self, tree: &BlobId, rel: &Path, item: &[u8], depth: usize) -> bool {
        if depth > MAX_DEPTH {
            self.error(format!(
                "{}: directories nested deeper than {MAX_DEPTH} levels, not restored",
                String::from_utf8_lossy(item)
            ));
            return false;
        }
        let t = match self.repo.load_tree(tree) {
            Ok(t) => t,
            Err(e) => {
                self.error(format!(
                    "cannot load tree {} for {}: {e}",
                    tree.short(),
                    String::from_utf8_lossy(item)
                ));
                return false;
            }
        };
        let mut restored = false;
        let mut prev: Option<&[u8]> = None;
        for node in &t.nodes {
            if prev == Some(node.name.as_slice()) {
                self.error(format!(
                    "tree {} lists {:?} twice; skipped the duplicate",
                    tree.short(),
                    node.display_name()
                ));
                continue;
            }
            prev = Some(&node.name);
            if let Err(msg) = fsmeta::check_name(node) {
                self.error(format!("{msg} in tree {}", tree.short()));
                continue;
            }
            let mut child_item = item.to_vec();
            child_item.push(b'/');
            child_item.extend_from_slice(&node.name);
            let child_rel = rel.join(std::ffi::OsStr::from_bytes(&node.name));
            let (selected, descend) = self.select(&child_item, node);
            match self.node(node, &child_rel, &child_item, selected, descend, depth) {
                Ok(r) => restored |= r,
                Err(e) => self.error(e.to_string()),
            }
        }
        restored
    }

    fn node(
        &mut self,
        node: &Node,
        rel: &Path,
        item: &[u8],
        selected: bool,
        descend: bool,
        depth: usize,
    ) -> Result<bool> {
        let root = self.opts.target.clone();
        let parent = rel.parent().unwrap_or(Path::new(""));
        let abs = root.join(rel);
        match node.node_type {
            NodeType::Dir => {
                let Some(sub) = node.subtree else {
                    return Err(EngineError::Corrupt(format!(
                        "dir {} has no subtree",
                        String::from_utf8_lossy(item)
                    )));
                };
                if selected {
                    self.plan.dir_maker.ensure(&root, rel)?;
                }
                let below = descend && self.walk(&sub, rel, item, depth + 1);
                if selected || below {
                    // Post-order: children's metadata is applied before their parent's.
                    self.plan.dirs.push((abs, Meta::of(node)));
                    self.plan.stats.dirs += 1;
                }
                return Ok(selected || below);
            }
            _ if !selected => return Ok(false),
            NodeType::File => {
                self.plan.dir_maker.ensure(&root, parent)?;
                self.file(node, abs)?;
            }
            NodeType::Symlink => {
                self.plan.dir_maker.ensure(&root, parent)?;
                self.plan
                    .symlinks
                    .push((abs, node.link_target_bytes(), Meta::of(node)));
                self.plan.stats.others += 1;
            }
            NodeType::Fifo | NodeType::Dev | NodeType::CharDev => {
                self.plan.dir_maker.ensure(&root, parent)?;
                fsmeta::make_special(&abs, node)?;
                self.plan.stats.errors.extend(fsmeta::apply(
                    &abs,
                    None,
                    &Meta::of(node),
                    self.opts.owners,
                ));
                self.plan.stats.others += 1;
            }
            NodeType::Socket => return Ok(false),
            NodeType::Irregular | NodeType::Other(_) => {
                return Err(EngineError::Corrupt(format!(
                    "{}: unsupported node type {:?}",
                    String::from_utf8_lossy(item),
                    node.node_type.as_str()
                )))
            }
        }
        Ok(true)
    }

    fn file(&mut self, node: &Node, abs: PathBuf) -> Result<()> {
        self.plan.stats.files += 1;
        if node.links > 1 && node.inode != 0 {
            let key = (node.device_id, node.inode);
            if let Some(primary) = self.plan.inodes.get(&key) {
                self.plan.hardlinks.push((abs, *primary));
                return Ok(());
            }
            self.plan.inodes.insert(key, self.plan.files.len() as u32);
        }
        let file_no = self.plan.files.len() as u32;
        let content = node.content.as_deref().unwrap_or(&[]);
        let mut offset = 0u64;
        let mut missing = Vec::new();
        for id in content {
            let Some(loc) = self.repo.index().get(id, BlobType::Data) else {
                missing.push(*id);
                continue;
            };
            let target = Target {
                file: file_no,
                offset,
            };
            offset += loc.plaintext_len() as u64;
            match self.plan.seen_blobs.get(id) {
                Some((pack, pos)) => self.plan.packs.get_mut(pack).expect("planned")[*pos]
                    .targets
                    .push(target),
                None => {
                    let blobs = self.plan.packs.entry(loc.pack).or_default();
                    self.plan.seen_blobs.insert(*id, (loc.pack, blobs.len()));
                    blobs.push(PlannedBlob {
                        id: *id,
                        loc,
                        targets: vec![target],
                    });
                }
            }
        }
        let planned = content.len() - missing.len();
        let state = FileState {
            handle: None,
            remaining: planned,
            failed: !missing.is_empty(),
            holes: false,
        };
        for id in &missing {
            self.error(format!(
                "{}: data blob {} not found in index",
                abs.display(),
                id
            ));
        }
        self.plan.stats.bytes += offset;
        self.plan.files.push(PlannedFile {
            path: abs,
            meta: Meta::of(node),
            size: offset,
            state: Mutex::new(state),
        });
        if planned == 0 && missing.is_empty() {
            // An empty file: nothing to wait for.
            let f = &self.plan.files[file_no as usize];
            let handle = fsmeta::open_for_write(&f.path)?;
            handle
                .set_len(f.size)
                .map_err(EngineError::io(format!("truncate {}", f.path.display())))?;
            let errs = fsmeta::apply(&f.path, Some(&handle), &f.meta, self.opts.owners);
            self.plan.stats.errors.extend(errs);
        }
        Ok(())
    }
}

/// Restores the tree `root` below `opts.target`. Problems with single entries are
/// collected in [`RestoreStats::errors`] and the rest is restored; only failures that make
/// the whole restore impossible are returned as `Err`; each collected problem is also sent
/// as an [`Event::Error`]. A cancelled restore stops after the packs being written and
/// returns the cancel's error: the target then holds a partial restore.
pub fn restore(
    repo: &Repository,
    root: &BlobId,
    opts: &RestoreOptions,
    ctl: &Control,
) -> Result<RestoreStats> {
    ctl.emit(Event::PhaseStarted(Phase::Restore));
    let result = restore_tree(repo, root, opts, &ctl.cancel);
    ctl.emit(Event::PhaseFinished(Phase::Restore));
    if let Ok(stats) = &result {
        for e in &stats.errors {
            ctl.emit(Event::Error(e));
        }
    }
    result
}

fn restore_tree(
    repo: &Repository,
    root: &BlobId,
    opts: &RestoreOptions,
    cancel: &Cancel,
) -> Result<RestoreStats> {
    if !opts.include.is_empty() && !opts.exclude.is_empty() {
        return Err(EngineError::Usage(
            "exclude and include patterns are mutually exclusive".into(),
        ));
    }
    std::fs::create_dir_all(&opts.target)
        .map_err(EngineError::io(format!("create {}", opts.target.display())))?;
    let mut planner = Planner {
        repo,
        opts,
        plan: Plan::default(),
    };
    if opts.include.is_empty() {
        repo.prefetching_trees(&[*root], || planner.walk(root, Path::new(""), b"", 0));
    } else {
        // Only the directories on the way to the included paths are walked; loading the
        // whole snapshot ahead would cost more than it hides.
        planner.walk(root, Path::new(""), b"", 0);
    }
    let mut plan = planner.plan;

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.workers.max(1))
        .build()
        .map_err(|e| EngineError::Usage(format!("thread pool: {e}")))?;
    let mut packs: Vec<(u32, Vec<PlannedBlob>)> = plan.packs.drain().collect();
    packs.sort_by_key(|(p, _)| *p);
    let files = &plan.files;
    let errors: Vec<String> = pool.install(|| {
        packs
            .par_iter_mut()
            .filter(|_| !cancel.is_cancelled())
            .flat_map_iter(|(pack, blobs)| {
                BUFFERS.with(|b| restore_pack(repo, *pack, blobs, files, opts, &mut b.borrow_mut()))
            })
            .collect()
    });
    cancel.check()?;
    plan.stats.errors.extend(errors);

    for (path, primary) in &plan.hardlinks {
        let p = &plan.files[*primary as usize];
        if p.state.lock().expect("file state lock").failed {
            plan.stats.errors.push(format!(
                "{}: not restored, it is a hard link to {} which could not be restored",
                path.display(),
                p.path.display()
            ));
            continue;
        }
        let r = fsmeta::clear_path(path).and_then(|_| {
            std::fs::hard_link(&p.path, path)
                .map_err(EngineError::io(format!("hard link {}", path.display())))
        });
        if let Err(e) = r {
            plan.stats.errors.push(e.to_string());
        }
    }
    for (path, target, meta) in &plan.symlinks {
        match fsmeta::make_symlink(path, target) {
            Ok(()) => plan
                .stats
                .errors
                .extend(fsmeta::apply(path, None, meta, opts.owners)),
            Err(e) => plan.stats.errors.push(e.to_string()),
        }
    }
    // Children before parents (post-order), so a parent's mtime is set after its last change.
    for (path, meta) in &plan.dirs {
        plan.stats
            .errors
            .extend(fsmeta::apply(path, None, meta, opts.owners));
    }
    Ok(plan.stats)
}

/// Deeper trees than any path the kernel accepts are refused instead of recursing on.
const MAX_DEPTH: usize = 2048;

/// Gaps up to this size are read through rather than split into two requests.
const MAX_GAP: u64 = 256 << 10;

thread_local! {
    static BUFFERS: std::cell::RefCell<Buffers> = std::cell::RefCell::new(Buffers::default());
}

/// Per-worker buffers, reused across packs so that reading does not fault in new pages.
#[derive(Default)]
struct Buffers {
    raw: Vec<u8>,
    scratch: Vec<u8>,
    plain: Vec<u8>,
}

fn restore_pack(
    repo: &Repository,
    pack: u32,
    blobs: &mut [PlannedBlob],
    files: &[PlannedFile],
    opts: &RestoreOptions,
    bufs: &mut Buffers,
) -> Vec<String> {
    blobs.sort_by_key(|b| b.loc.offset);
    let pack_id = repo.index().pack_id(pack);
    let handle = Handle::new(FileType::Pack, pack_id);
    let mut errors = Vec::new();
    // Largest single read from the pack; bigger requests are split (a lone blob may
    // exceed it).
    let max_read = repo.backend().preferred_read_size();
    let Buffers {
        raw,
        scratch,
        plain,
    } = bufs;
    let mut start = 0;
    while start < blobs.len() {
        let first = blobs[start].loc.offset as u64;
        let mut end = start + 1;
        let mut last_end = first + blobs[start].loc.length as u64;
        while end < blobs.len() {
            let b = &blobs[end].loc;
            let b_end = b.offset as u64 + b.length as u64;
            if b.offset as u64 > last_end + MAX_GAP || b_end - first > max_read {
                break;
            }
            last_end = last_end.max(b_end);
            end += 1;
        }
        let group = &blobs[start..end];
        start = end;
        if let Err(e) = repo
            .backend()
            .read_range_into(&handle, first, last_end - first, raw)
        {
            {
                for b in group {
                    errors.push(format!(
                        "cannot read pack {} for blob {}: {e}",
                        pack_id.short(),
                        b.id.short()
                    ));
                    fail_blob(b, files, opts, &mut errors);
                }
                continue;
            }
        }
        for b in group {
            let at = (b.loc.offset as u64 - first) as usize;
            let bytes = &raw[at..at + b.loc.length as usize];
            if let Err(e) = repo.decode_blob(&b.id, &b.loc, bytes, scratch, plain) {
                let names: Vec<String> = b
                    .targets
                    .iter()
                    .map(|t| files[t.file as usize].path.display().to_string())
                    .collect();
                errors.push(format!("{e} (needed by {})", names.join(", ")));
                fail_blob(b, files, opts, &mut errors);
                continue;
            }
            // Runs of zeros stay holes (sparse files); the size is fixed when the file is done.
            let zero = plain.iter().all(|x| *x == 0);
            for t in &b.targets {
                let f = &files[t.file as usize];
                let r = file_handle(f).and_then(|h| {
                    if zero {
                        f.state.lock().expect("file state lock").holes = true;
                        return Ok(());
                    }
                    h.write_all_at(plain, t.offset)
                        .map_err(EngineError::io(format!("write {}", f.path.display())))
                });
                if let Err(e) = r {
                    errors.push(e.to_string());
                    mark_failed(f);
                }
                finish_blob(f, opts, &mut errors);
            }
        }
    }
    errors
}

fn file_handle(f: &PlannedFile) -> Result<Arc<File>> {
    let mut st = f.state.lock().expect("file state lock");
    if let Some(h) = &st.handle {
        return Ok(h.clone());
    }
    let h = Arc::new(fsmeta::open_for_write(&f.path)?);
    st.handle = Some(h.clone());
    Ok(h)
}

fn mark_failed(f: &PlannedFile) {
    f.state.lock().expect("file state lock").failed = true;
}

fn fail_blob(
    b: &PlannedBlob,
    files: &[PlannedFile],
    opts: &RestoreOptions,
    errs: &mut Vec<String>,
) {
    for t in &b.targets {
        let f = &files[t.file as usize];
        mark_failed(f);
        finish_blob(f, opts, errs);
    }
}

/// Counts one blob of `f` as done; after the last one, sets the metadata and closes it.
fn finish_blob(f: &PlannedFile, opts: &RestoreOptions, errs: &mut Vec<String>) {
    let (handle, failed, holes) = {
        let mut st = f.state.lock().expect("file state lock");
        st.remaining -= 1;
        if st.remaining > 0 {
            return;
        }
        (st.handle.take(), st.failed, st.holes)
    };
    if failed {
        // Like restic, a file whose content cannot be complete is not left behind looking
        // restored.
        drop(handle);
        let left = match std::fs::remove_file(&f.path) {
            Ok(()) => String::new(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => format!(" (its incomplete copy could not be removed: {e})"),
        };
        errs.push(format!(
            "{}: not restored, some of its data is missing or damaged{left}",
            f.path.display()
        ));
        return;
    }
    if let Some(h) = handle {
        if holes {
            if let Err(e) = h.set_len(f.size) {
                errs.push(format!("{}: cannot set its size: {e}", f.path.display()));
            }
        }
        errs.extend(fsmeta::apply(&f.path, Some(&h), &f.meta, opts.owners));
    }
}
