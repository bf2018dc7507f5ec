//! Backup: walk → read → chunk → hash → dedup → compress → seal → pack → upload → index
//! → trees → snapshot. Files are read by a pool of workers; packs are uploaded as they
//! fill and indexed every few seconds; the snapshot is written last and is the commit point.

mod fsnode;

mod job;
mod plan;
pub(crate) mod saver;
pub mod sources;
mod walker;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use restash_backend::FileType;
use restash_chunker::ChunkerParams;
use restash_format::{
    BlobId, BlobType, Compression, GoTime, GroupSnapshot, Node, NodeType, Snapshot, SnapshotId,
    SnapshotSummary, Tree,
};

pub use fsnode::{go_mode, local_time, NodeMaker};
pub use job::{run, JobOptions, OnAbandon, Watchdog};
pub use saver::adopt_orphan_packs;
pub use saver::Saver;
use walker::{read_content, ReadCtx, TargetSpec};

use crate::events::{Control, Event, Phase};
use crate::hints;
use crate::{whoami, EngineError, PatternSet, Repository, Result};

/// The tag a snapshot gets when files or directories could not be read (backup exits 3).
///
/// A tag, because it is the only place in restic's snapshot format for such a mark: the
/// snapshot has no error count, and its summary (restic 0.17+) is dropped by older restic
/// when it rewrites a snapshot, while tags are shown by `snapshots`, filtered by `--tag`,
/// and kept by restic's `tag`, `rewrite` and `copy`. It does not change what `forget`
/// keeps: restic groups by host and paths by default, and so does `backup --forget`.
pub const PARTIAL_TAG: &str = "partial";

/// What the snapshot's `program_version` says, as restic writes `restic 0.17.0`.
pub const PROGRAM_VERSION: &str = concat!("restash ", env!("CARGO_PKG_VERSION"));

/// Where the data comes from.
pub enum Source {
    /// Files and directories on disk.
    Paths(Vec<PathBuf>),
    /// One stream, stored as a file of this name (restic's `--stdin`).
    Stdin {
        /// The file name in the snapshot.
        name: String,
        /// The data.
        reader: Box<dyn Read + Send>,
    },
}

/// restic's backup flags.
pub struct BackupOptions {
    /// Host name recorded in the snapshot.
    pub host: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Exclude patterns (already parsed, all kinds) …
    pub excludes: PatternSet,
    /// … and the `--exclude` ones as given, for the snapshot's `excludes` field (restic
    /// records only those).
    pub exclude_strings: Vec<String>,
    /// Keep only the tag file of directories holding a file of this name
    /// (`name[:header]`).
    pub exclude_if_present: Vec<String>,
    /// Skip files larger than this.
    pub exclude_larger_than: Option<u64>,
    /// Stay on the file system of each target.
    pub one_file_system: bool,
    /// Use this snapshot as parent instead of the latest matching one.
    pub parent: Option<SnapshotId>,
    /// Read every file, ignoring the parent.
    pub force: bool,
    /// Save no snapshot when the tree equals the parent's (restic 0.17's
    /// `--skip-if-unchanged`): an idle volume adds nothing each night.
    pub skip_if_unchanged: bool,
    /// Data blob compression.
    pub compression: Compression,
    /// Target pack size in bytes.
    pub pack_size: usize,
    /// Do everything but write to the repository.
    pub dry_run: bool,
    /// Record real access times.
    pub with_atime: bool,
    /// The chunker (restic's Rabin with the repository polynomial by default).
    pub chunker: Option<ChunkerParams>,
    /// Reader threads.
    pub workers: usize,
}

impl BackupOptions {
    /// restic's defaults for a host.
    pub fn new(host: impl Into<String>) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        BackupOptions {
            host: host.into(),
            tags: Vec::new(),
            excludes: PatternSet::default(),
            exclude_strings: Vec::new(),
            exclude_if_present: Vec::new(),
            exclude_larger_than: None,
            one_file_system: false,
            parent: None,
            force: false,
            skip_if_unchanged: false,
            compression: Compression::Auto,
            pack_size: 16 << 20,
            dry_run: false,
            with_atime: false,
            chunker: None,
            workers: cores.clamp(2, 8),
        }
    }
}

/// restic's backup summary (`--json` `message_type: summary`).
#[derive(Debug, Default, Clone)]
pub struct BackupSummary {
    /// Files not in the parent.
    pub files_new: u64,
    /// Files read again because they changed.
    pub files_changed: u64,
    /// Files taken from the parent unread.
    pub files_unmodified: u64,
    /// Directories not in the parent.
    pub dirs_new: u64,
    /// Directories whose tree changed.
    pub dirs_changed: u64,
    /// Directories with the parent's tree.
    pub dirs_unmodified: u64,
    /// New data blobs.
    pub data_blobs: u64,
    /// New tree blobs.
    pub tree_blobs: u64,
    /// Plaintext bytes added.
    pub data_added: u64,
    /// Bytes added as stored.
    pub data_added_packed: u64,
    /// Files in the snapshot.
    pub total_files_processed: u64,
    /// Bytes in the snapshot's files.
    pub total_bytes_processed: u64,
    /// Seconds.
    pub total_duration: f64,
    /// The new snapshot (None on dry run, or when skipped as unchanged).
    pub snapshot_id: Option<SnapshotId>,
    /// No snapshot was saved because the tree equals the parent's (`skip_if_unchanged`).
    pub skipped_unchanged: bool,
    /// The parent used.
    pub parent: Option<SnapshotId>,
    /// Whether the parent was found by its parent hint (and the hint was the index).
    pub parent_by_hint: bool,
    /// Files that could not be read, each with the reason. Not in the snapshot.
    pub errors: Vec<String>,
    /// What went wrong without costing the snapshot anything (a parent tree that could not
    /// be loaded, so its files were read again).
    pub warnings: Vec<String>,
}

impl BackupSummary {
    /// The statistics restic 0.17+ records in the snapshot: this summary's numbers, and the
    /// backup's start and end.
    pub fn snapshot_summary(&self, backup_start: GoTime, backup_end: GoTime) -> SnapshotSummary {
        SnapshotSummary {
            backup_start,
            backup_end,
            files_new: self.files_new,
            files_changed: self.files_changed,
            files_unmodified: self.files_unmodified,
            dirs_new: self.dirs_new,
            dirs_changed: self.dirs_changed,
            dirs_unmodified: self.dirs_unmodified,
            data_blobs: self.data_blobs,
            tree_blobs: self.tree_blobs,
            data_added: self.data_added,
            data_added_packed: self.data_added_packed,
            total_files_processed: self.total_files_processed,
            total_bytes_processed: self.total_bytes_processed,
        }
    }
}

/// The warning for a parent tree that could not be loaded: the backup stays complete, but
/// the damage in the repository must not go unseen.
fn parent_tree_warning(id: &BlobId, e: &EngineError) -> String {
    format!(
        "tree {} of the parent snapshot could not be loaded, its files are read again \
         (run check: the repository may be damaged): {e}",
        id.short()
    )
}

fn parse_pack_size_error(n: usize) -> EngineError {
    EngineError::Usage(format!(
        "pack size {} MiB is out of range (4 to 128 MiB)",
        n >> 20
    ))
}

/// Runs a backup and writes the snapshot (unless dry run). Files that cannot be read are
/// reported in [`BackupSummary::errors`] (and as [`Event::Error`]s) and left out; the
/// snapshot is still written. `repo` must have its index loaded. The blobs this run saved
/// are in the index files it wrote, not in `repo`'s loaded index (which would cost a
/// backup of many small files memory it never uses): load the index again before using
/// `repo` to read them or for another backup.
pub fn backup(
    repo: &mut Repository,
    source: Source,
    opts: &BackupOptions,
    ctl: &Control,
) -> Result<BackupSummary> {
    backup_hinted(repo, source, opts, ctl, None)
}

/// [`backup`] with its group's parent hints: with a checked parent, `repo`'s index is the
/// hint's; either way a new hint is written for the snapshot.
pub(crate) fn backup_hinted(
    repo: &mut Repository,
    source: Source,
    opts: &BackupOptions,
    ctl: &Control,
    hints: Option<&hints::Plan>,
) -> Result<BackupSummary> {
    let start = Instant::now();
    let time = GoTime::now_local();
    if !(4 << 20..=128 << 20).contains(&opts.pack_size) {
        return Err(parse_pack_size_error(opts.pack_size));
    }
    let hinted_parent = hints.and_then(|h| h.parent.as_ref());
    // Which packs no index names cannot be told from a hint's index: a killed run's packs
    // wait for the next backup that reads the whole index (or for prune).
    if !opts.dry_run && hinted_parent.is_none() {
        adopt_orphan_packs(repo)?;
    }
    let chunker = match &opts.chunker {
        Some(c) => c.clone(),
        None => {
            let pol = repo
                .config()
                .polynomial()
                .map_err(EngineError::format("config"))?;
            let params = restash_chunker::RabinParams::new(restash_chunker::Pol::new(pol))
                .map_err(|e| EngineError::Corrupt(format!("chunker polynomial: {e}")))?;
            ChunkerParams::Rabin(params)
        }
    };
    let maker = NodeMaker::new(opts.with_atime);
    let mut saver = Saver::new(repo, opts.compression, opts.pack_size, opts.dry_run);
    if hints.is_some() && !opts.dry_run {
        saver = saver.recording_reach();
    }
    let meter = ctl.meter(Phase::Backup, "files");
    let read = ReadCtx {
        saver: &saver,
        chunker: &chunker,
        cancel: &ctl.cancel,
        progress: &meter,
    };
    ctl.emit(Event::PhaseStarted(Phase::Backup));
    let (paths, built, parent, parent_tree, known_group) = match source {
        Source::Paths(paths) => {
            let plan = plan::plan(&paths)?;
            let (parent, group) = find_parent(repo, opts, &plan.paths, hints)?;
            let parent_tree = parent.as_ref().map(|(_, s)| s.tree);
            let paths = plan.paths.clone();
            let built = backup_paths(repo, opts, &maker, &read, plan, parent_tree);
            (paths, built, parent.map(|(id, _)| id), parent_tree, group)
        }
        Source::Stdin { name, reader } => {
            let built = backup_stdin(&read, &name, reader, time);
            (vec![format!("/{name}")], built, None, None, None)
        }
    };
    let (root, mut summary) = match built {
        Ok(b) => b,
        Err(e) => {
            // Keep what was uploaded: it is indexed and the next run reuses it.
            let _ = saver.flush();
            meter.flush();
            ctl.emit(Event::PhaseFinished(Phase::Backup));
            return Err(e);
        }
    };
    saver.flush()?;
    meter.flush();
    ctl.emit(Event::PhaseFinished(Phase::Backup));
    summary.warnings.extend(maker.take_warnings());
    for w in &summary.warnings {
        ctl.emit(Event::Warning(w));
    }
    for e in &summary.errors {
        ctl.emit(Event::Error(e));
    }
    summary.parent = parent;
    summary.parent_by_hint = parent.is_some() && parent == hinted_parent.map(|(id, _)| *id);
    summary.data_blobs = saver.stats.data_blobs.load(Ordering::Relaxed);
    summary.tree_blobs = saver.stats.tree_blobs.load(Ordering::Relaxed);
    summary.data_added = saver.stats.data_added.load(Ordering::Relaxed);
    summary.data_added_packed = saver.stats.data_added_packed.load(Ordering::Relaxed);

    let mut tags = opts.tags.clone();
    if !summary.errors.is_empty() && !tags.iter().any(|t| t == PARTIAL_TAG) {
        tags.push(PARTIAL_TAG.into());
    }
    // restic keeps the targets in the order given, duplicates too.
    let mut snap = Snapshot {
        time,
        parent,
        tree: root,
        paths,
        hostname: opts.host.clone(),
        username: whoami::user_name(),
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        excludes: opts.exclude_strings.clone(),
        tags,
        original: None,
        program_version: Some(PROGRAM_VERSION.into()),
        summary: None,
    };
    // restic compares only the root tree: equal trees mean equal contents and metadata.
    summary.skipped_unchanged = opts.skip_if_unchanged && parent_tree == Some(root);
    if !opts.dry_run && !summary.skipped_unchanged {
        // The snapshot's time is when the backup started, as restic's is without --time.
        snap.summary = Some(summary.snapshot_summary(time, GoTime::now_local()));
        let id = SnapshotId(repo.save_unpacked(FileType::Snapshot, &snap.to_json())?);
        summary.snapshot_id = Some(id);
        if let Some(h) = hints {
            // The snapshot is saved: without a hint the next backup only reads more.
            if let Err(w) = write_hint(repo, &saver, h, id, &snap, known_group) {
                ctl.emit(Event::Warning(&w));
                summary.warnings.push(w);
            }
        }
    }
    summary.total_duration = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// The directories above the targets (`srv` and `data` for `/srv/data/x`, `sub` for
/// `sub/x`): restic stores them with their own metadata and only the entries that lead to
/// targets.
struct Above {
    node: Option<Node>,
    parent_subtree: Option<BlobId>,
    had_parent: bool,
    children: Vec<AboveChild>,
}

enum AboveChild {
    Dir(Box<Above>),
    Target(usize),
}

/// What building the directories above the targets needs at every level.
struct AboveCtx<'a> {
    repo: &'a Repository,
    maker: &'a NodeMaker,
    plan: &'a plan::Plan,
    /// Device of each target as given, by absolute path: `-x` keeps what is below the
    /// nearest one to its file system, as restic's device map does.
    devices: HashMap<PathBuf, u64>,
    specs: Vec<TargetSpec>,
    errors: Vec<String>,
    warnings: Vec<String>,
}

fn backup_paths(
    repo: &Repository,
    opts: &BackupOptions,
    maker: &NodeMaker,
    read: &ReadCtx,
    mut plan: plan::Plan,
    parent_root: Option<BlobId>,
) -> Result<(BlobId, BackupSummary)> {
    let mut root = Above {
        node: None,
        parent_subtree: parent_root,
        had_parent: parent_root.is_some(),
        children: Vec::new(),
    };
    let devices = plan
        .origins
        .iter()
        .filter_map(|p| Some((p.clone(), std::fs::symlink_metadata(p).ok()?.dev())))
        .collect();
    let errors = std::mem::take(&mut plan.errors);
    let mut ctx = AboveCtx {
        repo,
        maker,
        plan: &plan,
        devices,
        specs: Vec::new(),
        errors,
        warnings: Vec::new(),
    };
    // The parent's trees are compared with every directory: fetched ahead of the walk.
    let walked = repo.prefetching_trees(parent_root.as_slice(), || {
        plan_above(&mut ctx, &plan.top, &mut root);
        let (specs, errors, warnings) = (ctx.specs, ctx.errors, ctx.warnings);
        walker::run(repo, opts, maker, read, specs).map(|r| (r, errors, warnings))
    });
    let ((nodes, mut summary), errors, warnings) = walked?;
    summary.errors.splice(0..0, errors);
    summary.warnings.splice(0..0, warnings);
    let empty = root
        .children
        .iter()
        .all(|c| matches!(c, AboveChild::Target(i) if nodes[*i].is_none()));
    if empty {
        let mut msg = "unable to save snapshot: snapshot is empty".to_string();
        if !summary.errors.is_empty() {
            msg = format!("{msg} ({})", summary.errors.join("; "));
        }
        return Err(EngineError::Usage(msg));
    }
    let root = save_above(read.saver, &root, &nodes, &mut summary)?;
    Ok((root, summary))
}

/// Fills `dir` with the planned `entries`: leaves become targets for the walker, the rest
/// directories above targets.
fn plan_above(ctx: &mut AboveCtx, entries: &BTreeMap<Vec<u8>, plan::Entry>, dir: &mut Above) {
    // A parent tree that cannot be read only means files are read again.
    let ptree = dir
        .parent_subtree
        .and_then(|id| match ctx.repo.load_tree(&id) {
            Ok(t) => Some(t),
            Err(e) => {
                ctx.warnings.push(parent_tree_warning(&id, &e));
                None
            }
        });
    let previous = |name: &[u8]| ptree.as_ref().and_then(|t| t.find(name).cloned());
    for (name, e) in entries {
        if let Some(path) = &e.path {
            let path = ctx.plan.on_disk(path);
            let root_dev = path.ancestors().find_map(|a| ctx.devices.get(a).copied());
            ctx.specs.push(TargetSpec {
                path,
                name: name.clone(),
                pnode: previous(name),
                root_dev,
            });
            dir.children.push(AboveChild::Target(ctx.specs.len() - 1));
            continue;
        }
        let Some(info) = &e.info else { continue };
        let on_disk = ctx.plan.on_disk(info);
        // restic follows a symlink here (stat, not lstat): `link/x` is stored below a
        // directory named `link`.
        let meta = match std::fs::metadata(&on_disk) {
            Ok(m) if m.is_dir() => m,
            Ok(_) => {
                ctx.errors
                    .push(format!("path is not a directory: {}", on_disk.display()));
                continue;
            }
            Err(err) => {
                ctx.errors.push(format!("{}: {err}", on_disk.display()));
                continue;
            }
        };
        let node = match ctx.maker.node(&on_disk, name, &meta) {
            Ok(node) => node,
            Err(msg) => {
                ctx.errors.push(msg);
                continue;
            }
        };
        let pnode = previous(name);
        let mut sub = Above {
            node: Some(node),
            parent_subtree: pnode.as_ref().and_then(|n| n.subtree),
            had_parent: pnode.is_some(),
            children: Vec::new(),
        };
        plan_above(ctx, &e.children, &mut sub);
        dir.children.push(AboveChild::Dir(Box::new(sub)));
    }
}

fn save_above(
    saver: &Saver,
    dir: &Above,
    targets: &[Option<Node>],
    summary: &mut BackupSummary,
) -> Result<BlobId> {
    let mut tree = Tree::default();
    for c in &dir.children {
        match c {
            AboveChild::Target(i) => {
                if let Some(n) = &targets[*i] {
                    tree.nodes.push(n.clone());
                }
            }
            AboveChild::Dir(d) => {
                let id = save_above(saver, d, targets, summary)?;
                let mut node = d.node.clone().expect("only the root has no node");
                node.subtree = Some(id);
                if !d.had_parent {
                    summary.dirs_new += 1;
                } else if d.parent_subtree == Some(id) {
                    summary.dirs_unmodified += 1;
                } else {
                    summary.dirs_changed += 1;
                }
                tree.nodes.push(node);
            }
        }
    }
    tree.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let bytes = tree.to_bytes();
    let id = BlobId::hash(&bytes);
    saver.save(BlobType::Tree, id, &bytes)?;
    saver.reached_tree(id, &tree);
    Ok(id)
}

fn backup_stdin(
    ctx: &ReadCtx,
    name: &str,
    reader: Box<dyn Read + Send>,
    time: GoTime,
) -> Result<(BlobId, BackupSummary)> {
    let mut sc = restash_chunker::StreamChunker::new(reader, ctx.chunker.chunker());
    let (content, size) = read_content(ctx, &mut sc, Path::new(name))?;
    let now = fsnode::local_time(time.unix_secs(), time.nanos() as i64);
    let node = Node {
        name: name.as_bytes().to_vec(),
        node_type: NodeType::File,
        mode: 0o644,
        mtime: now,
        atime: now,
        ctime: now,
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        size,
        content: Some(content),
        ..Node::default()
    };
    let tree = Tree { nodes: vec![node] };
    let bytes = tree.to_bytes();
    let id = BlobId::hash(&bytes);
    ctx.saver.save(BlobType::Tree, id, &bytes)?;
    let summary = BackupSummary {
        files_new: 1,
        total_files_processed: 1,
        total_bytes_processed: size,
        ..BackupSummary::default()
    };
    Ok((id, summary))
}

/// The hint for the snapshot just saved (see [`hints`]), or why there is none.
fn write_hint(
    repo: &Repository,
    saver: &Saver,
    h: &hints::Plan,
    id: SnapshotId,
    snap: &Snapshot,
    group: Option<Vec<GroupSnapshot>>,
) -> std::result::Result<(), String> {
    let Some((reached, written)) = saver.take_reach() else {
        return Ok(());
    };
    let index = hints::locate(repo.index(), &written, &reached)
        .ok_or("parent hint not saved: a blob of the snapshot is in no index read")?;
    let group = group.map(|g| hints::with_snapshot(g, id, snap));
    hints::write(repo, &h.found, id, snap, index, group)
        .map_err(|e| format!("parent hint not saved: {e}"))
}

/// restic's rule for a parent's paths: the same set, in any order.
pub(crate) fn same_paths(a: &[String], b: &[String]) -> bool {
    fn sorted(p: &[String]) -> Vec<&String> {
        let mut v: Vec<&String> = p.iter().collect();
        v.sort();
        v
    }
    sorted(a) == sorted(b)
}

/// The parent and the snapshots of its group where they are known (see
/// [`GroupSnapshot`]).
type Parent = (Option<(SnapshotId, Snapshot)>, Option<Vec<GroupSnapshot>>);

/// The latest snapshot of the same host and paths, or the one named by `--parent`, or the
/// one a checked parent hint names; with the group's snapshots from the hint, or from the
/// snapshots read to choose the parent.
fn find_parent(
    repo: &Repository,
    opts: &BackupOptions,
    paths: &[String],
    hints: Option<&hints::Plan>,
) -> Result<Parent> {
    if opts.force {
        return Ok((None, None));
    }
    if let Some(id) = opts.parent {
        return Ok((Some((id, repo.load_snapshot(&id)?)), None));
    }
    if let Some(h) = hints {
        if let Some(p) = &h.parent {
            let group = h.found.newest.as_ref().and_then(|(_, n)| n.group.clone());
            return Ok((Some(p.clone()), group));
        }
    }
    let snaps = repo.load_snapshots()?;
    let mine = |s: &Snapshot| s.hostname == opts.host && same_paths(&s.paths, paths);
    let group = snaps
        .readable()
        .iter()
        .filter(|(_, s)| mine(s))
        .map(|(id, s)| GroupSnapshot::of(*id, s))
        .collect();
    let parent = snaps.latest_where(mine).map_err(|_| {
        // Backing up without the parent would be correct but reads everything again;
        // the user decides.
        let bad: Vec<String> = snaps.unreadable().iter().map(|u| u.to_string()).collect();
        EngineError::UnreadableSnapshot(format!(
            "cannot choose the parent snapshot: {}; remove the damaged snapshot \
                 (forget or repair snapshots), name a parent with --parent, or use --force",
            bad.join("; ")
        ))
    })?;
    Ok((parent.cloned(), Some(group)))
}
