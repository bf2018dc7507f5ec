//! Backup: walk → read → chunk → hash → dedup → compress → seal → pack → upload → index
//! → trees → snapshot. Files are read by a pool of workers; packs are uploaded as they
//! fill and indexed every few seconds; the snapshot is written last and is the commit point.

mod fsnode;
pub(crate) mod saver;
mod walker;

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use restash_backend::FileType;
use restash_chunker::ChunkerParams;
use restash_format::{
    BlobId, BlobType, Compression, GoTime, Node, NodeType, Snapshot, SnapshotId, Tree,
};

pub use fsnode::{go_mode, local_time, NodeMaker};
pub use saver::adopt_orphan_packs;
pub use saver::Saver;
use walker::{read_content, ReadCtx, TargetSpec};

use crate::{whoami, EngineError, PatternSet, Repository, Result};

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

/// Live counters of a running backup, for status lines and progress bars. The walk runs
/// ahead of the readers, so `*_seen` grows while the backup runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Files found so far.
    pub files_seen: AtomicU64,
    /// Bytes in the files found so far.
    pub bytes_seen: AtomicU64,
    /// Files finished (read or unchanged).
    pub files_done: AtomicU64,
    /// Bytes finished.
    pub bytes_done: AtomicU64,
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
    /// Set from a signal handler: stop reading, save what was uploaded, return Interrupted.
    pub interrupt: Arc<AtomicBool>,
    /// Counters the caller may watch.
    pub progress: Arc<Progress>,
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
            compression: Compression::Auto,
            pack_size: 16 << 20,
            dry_run: false,
            with_atime: false,
            chunker: None,
            workers: cores.clamp(2, 8),
            interrupt: Arc::new(AtomicBool::new(false)),
            progress: Arc::new(Progress::default()),
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
    /// The new snapshot (None on dry run).
    pub snapshot_id: Option<SnapshotId>,
    /// The parent used.
    pub parent: Option<SnapshotId>,
    /// Files that could not be read, each with the reason. Not in the snapshot.
    pub errors: Vec<String>,
}

/// Cleans a path lexically (like Go's filepath.Clean) without touching the file system.
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The targets as (absolute path, tree components), nested targets removed.
fn targets(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Vec<Vec<u8>>)>> {
    use std::os::unix::ffi::OsStrExt;
    let cwd = std::env::current_dir().map_err(EngineError::io("current directory"))?;
    let mut out: Vec<(PathBuf, Vec<Vec<u8>>)> = Vec::new();
    for p in paths {
        let abs = clean(&cwd.join(p));
        // restic mirrors the path as given: absolute targets keep the full chain, relative
        // ones start at their first component.
        let shown = if p.is_absolute() {
            abs.clone()
        } else {
            clean(p)
        };
        let comps: Vec<Vec<u8>> = shown
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.as_bytes().to_vec()),
                _ => None,
            })
            .collect();
        if comps.is_empty() {
            return Err(EngineError::Usage(format!(
                "cannot back up {:?}: it has no name (use an absolute path)",
                p
            )));
        }
        out.push((abs, comps));
    }
    if !out
        .iter()
        .any(|(p, _)| std::fs::symlink_metadata(p).is_ok())
    {
        // restic refuses to write a snapshot of nothing.
        return Err(EngineError::Usage(
            "all target directories/files do not exist".into(),
        ));
    }
    out.sort();
    out.dedup_by(|b, a| a.0 == b.0);
    let all: Vec<PathBuf> = out.iter().map(|(p, _)| p.clone()).collect();
    out.retain(|(p, _)| !all.iter().any(|q| q != p && p.starts_with(q)));
    Ok(out)
}

fn parse_pack_size_error(n: usize) -> EngineError {
    EngineError::Usage(format!(
        "pack size {} MiB is out of range (4 to 128 MiB)",
        n >> 20
    ))
}

/// Runs a backup and writes the snapshot (unless dry run). Files that cannot be read are
/// reported in [`BackupSummary::errors`] and left out; the snapshot is still written.
pub fn backup(
    repo: &mut Repository,
    source: Source,
    opts: &BackupOptions,
) -> Result<BackupSummary> {
    let start = Instant::now();
    let time = GoTime::now_local();
    if !(4 << 20..=128 << 20).contains(&opts.pack_size) {
        return Err(parse_pack_size_error(opts.pack_size));
    }
    if !opts.dry_run {
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
    let saver = Saver::new(repo, opts.compression, opts.pack_size, opts.dry_run);
    let (mut paths, built, parent) = match source {
        Source::Paths(paths) => {
            let targets = targets(&paths)?;
            let snapshot_paths: Vec<String> = targets
                .iter()
                .map(|(p, _)| p.to_string_lossy().into_owned())
                .collect();
            let parent = find_parent(repo, opts, &snapshot_paths)?;
            let parent_tree = parent.as_ref().map(|(_, s)| s.tree);
            let built = backup_paths(repo, opts, &maker, &saver, &chunker, &targets, parent_tree);
            (snapshot_paths, built, parent.map(|(id, _)| id))
        }
        Source::Stdin { name, reader } => {
            let built = backup_stdin(repo, opts, &saver, &chunker, &name, reader, time);
            (vec![format!("/{name}")], built, None)
        }
    };
    let (root, mut summary) = match built {
        Ok(b) => b,
        Err(e) => {
            // Keep what was uploaded: it is indexed and the next run reuses it.
            let _ = saver.flush();
            return Err(e);
        }
    };
    saver.flush()?;
    summary.parent = parent;
    summary.data_blobs = saver.stats.data_blobs.load(Ordering::Relaxed);
    summary.tree_blobs = saver.stats.tree_blobs.load(Ordering::Relaxed);
    summary.data_added = saver.stats.data_added.load(Ordering::Relaxed);
    summary.data_added_packed = saver.stats.data_added_packed.load(Ordering::Relaxed);

    paths.sort();
    let snap = Snapshot {
        time,
        parent,
        tree: root,
        paths,
        hostname: opts.host.clone(),
        username: whoami::user_name(),
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        excludes: opts.exclude_strings.clone(),
        tags: opts.tags.clone(),
        original: None,
    };
    if !opts.dry_run {
        let id = repo.save_unpacked(FileType::Snapshot, &snap.to_json())?;
        summary.snapshot_id = Some(SnapshotId(id));
    }
    summary.total_duration = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// The directories above the targets (absolute targets keep their whole chain).
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

fn backup_paths(
    repo: &Repository,
    opts: &BackupOptions,
    maker: &NodeMaker,
    saver: &Saver,
    chunker: &ChunkerParams,
    targets: &[(PathBuf, Vec<Vec<u8>>)],
    parent_root: Option<BlobId>,
) -> Result<(BlobId, BackupSummary)> {
    use std::os::unix::ffi::OsStrExt;
    let mut root = Above {
        node: None,
        parent_subtree: parent_root,
        had_parent: parent_root.is_some(),
        children: Vec::new(),
    };
    let mut specs = Vec::new();
    let mut errors = Vec::new();
    'targets: for (abs, comps) in targets {
        let mut real = abs.clone();
        for _ in 0..comps.len() {
            real.pop();
        }
        let mut dir = &mut root;
        for comp in &comps[..comps.len() - 1] {
            real.push(std::ffi::OsStr::from_bytes(comp));
            let found = dir.children.iter().position(|c| {
                matches!(c, AboveChild::Dir(d) if d.node.as_ref().is_some_and(|n| n.name == *comp))
            });
            let pos = match found {
                Some(p) => p,
                None => {
                    let meta = match std::fs::symlink_metadata(&real) {
                        Ok(m) => m,
                        Err(e) => {
                            errors.push(format!("{}: {e}", real.display()));
                            continue 'targets;
                        }
                    };
                    let pnode = lookup(repo, dir.parent_subtree, comp);
                    dir.children.push(AboveChild::Dir(Box::new(Above {
                        node: Some(maker.node(&real, comp, &meta)),
                        parent_subtree: pnode.as_ref().and_then(|n| n.subtree),
                        had_parent: pnode.is_some(),
                        children: Vec::new(),
                    })));
                    dir.children.len() - 1
                }
            };
            let AboveChild::Dir(d) = &mut dir.children[pos] else {
                unreachable!("found as a directory")
            };
            dir = d;
        }
        let name = comps[comps.len() - 1].clone();
        specs.push(TargetSpec {
            path: abs.clone(),
            pnode: lookup(repo, dir.parent_subtree, &name),
            name,
        });
        dir.children.push(AboveChild::Target(specs.len() - 1));
    }
    let (nodes, mut summary) = walker::run(repo, opts, maker, saver, chunker, specs)?;
    summary.errors.splice(0..0, errors);
    let root = save_above(saver, &root, &nodes, &mut summary)?;
    Ok((root, summary))
}

fn lookup(repo: &Repository, tree: Option<BlobId>, name: &[u8]) -> Option<Node> {
    repo.load_tree(&tree?).ok()?.find(name).cloned()
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
    Ok(id)
}

fn backup_stdin(
    repo: &Repository,
    opts: &BackupOptions,
    saver: &Saver,
    chunker: &ChunkerParams,
    name: &str,
    reader: Box<dyn Read + Send>,
    time: GoTime,
) -> Result<(BlobId, BackupSummary)> {
    let _ = repo;
    let ctx = ReadCtx {
        saver,
        chunker,
        interrupt: &opts.interrupt,
        progress: &opts.progress,
    };
    let mut sc = restash_chunker::StreamChunker::new(reader, chunker.chunker());
    let (content, size) = read_content(&ctx, &mut sc, Path::new(name))?;
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
    saver.save(BlobType::Tree, id, &bytes)?;
    let summary = BackupSummary {
        files_new: 1,
        total_files_processed: 1,
        total_bytes_processed: size,
        ..BackupSummary::default()
    };
    Ok((id, summary))
}

/// The latest snapshot of the same host and paths, or the one named by `--parent`.
fn find_parent(
    repo: &Repository,
    opts: &BackupOptions,
    paths: &[String],
) -> Result<Option<(SnapshotId, Snapshot)>> {
    if opts.force {
        return Ok(None);
    }
    if let Some(id) = opts.parent {
        return Ok(Some((id, repo.load_snapshot(&id)?)));
    }
    let mut want: Vec<&String> = paths.iter().collect();
    want.sort();
    let snaps = repo.load_snapshots()?;
    let parent = snaps
        .latest_where(|s| {
            let mut have: Vec<&String> = s.paths.iter().collect();
            have.sort();
            s.hostname == opts.host && have == want
        })
        .map_err(|_| {
            // Backing up without the parent would be correct but reads everything again;
            // the user decides.
            let bad: Vec<String> = snaps.unreadable().iter().map(|u| u.to_string()).collect();
            EngineError::UnreadableSnapshot(format!(
                "cannot choose the parent snapshot: {}; remove the damaged snapshot \
                 (forget or repair snapshots), name a parent with --parent, or use --force",
                bad.join("; ")
            ))
        })?;
    Ok(parent.cloned())
}
