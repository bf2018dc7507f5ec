//! Restore: plan from the trees, then one pass over the packs that reads each needed
//! region once, verifies every blob and writes it at its file offsets, in parallel.
//! Directory metadata comes last so that writing inside a directory cannot undo it.
//!
//! Into a target that already holds entries, restic 0.17's rules apply: `--overwrite`
//! decides what becomes of an existing entry (files whose content already matches are not
//! rewritten), `--delete` removes what the snapshot does not have, and `--dry-run` only
//! reports what would be done.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use restash_format::BlobId;

mod delete;
mod job;
mod overwrite;
mod plan;
mod write;

pub use job::{run, RestoreJob, RestoreSummary};
pub use overwrite::Overwrite;

use crate::events::{Control, Event, Phase, RestoreAction};
use crate::fsmeta;
use crate::{EngineError, PatternSet, Repository, Result};
use plan::{Open, PlannedBlob, Planner};

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
    /// What becomes of entries that already exist in the target (restic `--overwrite`).
    pub overwrite: Overwrite,
    /// Remove entries of restored directories that the snapshot does not have, within the
    /// include/exclude selection (restic `--delete`).
    pub delete: bool,
    /// Write nothing; only decide, count and report (restic `--dry-run`).
    pub dry_run: bool,
    /// Send an [`Event::Restored`] for every entry (restic's `-vv` lines); off, a restore
    /// of millions of files does not build a name for each.
    pub item_events: bool,
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
            overwrite: Overwrite::default(),
            delete: false,
            dry_run: false,
            item_events: false,
        }
    }

    /// Whether `item` (a path within the snapshot) is restored, and whether entries below
    /// it may be, as restic's include and exclude filters decide.
    fn select(&self, item: &[u8], is_dir: bool) -> (bool, bool) {
        if !self.include.is_empty() {
            let sel = self.include.matches(item);
            (sel, is_dir && (sel || self.include.child_may_match(item)))
        } else {
            let sel = !self.exclude.matches(item);
            (sel, is_dir && sel)
        }
    }
}

/// What a restore did.
#[derive(Debug, Default, Clone)]
pub struct RestoreStats {
    /// Regular files restored or updated (hard links included).
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Other entries (symlinks, fifos, devices).
    pub others: u64,
    /// Content bytes of the files restored or updated.
    pub bytes: u64,
    /// Existing entries left with their content (it matched, or `--overwrite` kept them).
    pub skipped: u64,
    /// Content bytes of the skipped files.
    pub bytes_skipped: u64,
    /// Entries removed by `--delete` (each file and directory below a removed one counts).
    pub deleted: u64,
    /// Everything that went wrong, each naming what it concerns.
    pub errors: Vec<String>,
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
    let result = restore_tree(repo, root, opts, ctl);
    ctl.emit(Event::PhaseFinished(Phase::Restore));
    if let Ok(stats) = &result {
        for e in &stats.errors {
            ctl.emit(Event::Error(e));
        }
    }
    result
}

/// restic's name of an entry: its path below the target, from `/`.
fn item_of(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    format!("/{}", rel.to_string_lossy())
}

fn check_options(opts: &RestoreOptions, target: &Path) -> Result<()> {
    let filtered = !opts.include.is_empty() || !opts.exclude.is_empty();
    if !opts.include.is_empty() && !opts.exclude.is_empty() {
        return Err(EngineError::Usage(
            "exclude and include patterns are mutually exclusive".into(),
        ));
    }
    let is_root = target == Path::new("/")
        || std::fs::canonicalize(target).is_ok_and(|p| p == Path::new("/"));
    if opts.delete && is_root && !filtered {
        return Err(EngineError::Usage(
            "'--target / --delete' must be combined with an include or exclude filter".into(),
        ));
    }
    Ok(())
}

fn restore_tree(
    repo: &Repository,
    root: &BlobId,
    opts: &RestoreOptions,
    ctl: &Control,
) -> Result<RestoreStats> {
    let target = std::path::absolute(&opts.target)
        .map_err(EngineError::io(format!("{}", opts.target.display())))?;
    check_options(opts, &target)?;
    let root_new = match std::fs::symlink_metadata(&target) {
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(EngineError::io(format!("stat {}", target.display()))(e)),
    };
    if !opts.dry_run {
        std::fs::create_dir_all(&target)
            .map_err(EngineError::io(format!("create {}", target.display())))?;
    }
    let mut planner = Planner::new(repo, opts, ctl, &target, root_new);
    if opts.include.is_empty() {
        repo.prefetching_trees(&[*root], || {
            planner.walk(root, Path::new(""), b"", 0, false)
        });
    } else {
        // Only the directories on the way to the included paths are walked; loading the
        // whole snapshot ahead would cost more than it hides.
        planner.walk(root, Path::new(""), b"", 0, false);
    }
    // Made after the walk: a pool started before it raised the peak resident memory of a
    // 100,000-file restore by about 20 MiB (its threads' allocations interleave with the
    // plan's).
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.workers.max(1))
        .build()
        .map_err(|e| EngineError::Usage(format!("thread pool: {e}")))?;
    planner.check_existing(&pool);
    let mut plan = planner.plan;
    let w = write::Writer {
        opts,
        ctl,
        root: &target,
    };

    if !opts.dry_run {
        let mut packs: Vec<(u32, Vec<PlannedBlob>)> = plan.packs.drain().collect();
        packs.sort_by_key(|(p, _)| *p);
        let files = &plan.files;
        let errors: Vec<String> = pool.install(|| {
            packs
                .par_iter_mut()
                .filter(|_| !ctl.cancel.is_cancelled())
                .flat_map_iter(|(pack, blobs)| {
                    write::BUFFERS.with(|b| {
                        write::restore_pack(repo, *pack, blobs, files, w, &mut b.borrow_mut())
                    })
                })
                .collect()
        });
        ctl.cancel.check()?;
        plan.stats.errors.extend(errors);
    }

    let event = |action: RestoreAction, path: &Path| {
        if opts.item_events {
            ctl.emit(Event::Restored {
                action,
                item: &item_of(&target, path),
                size: None,
            });
        }
    };
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
        if !opts.dry_run {
            let r = fsmeta::remove_entry(path, opts.delete).and_then(|_| {
                std::fs::hard_link(&p.path, path)
                    .map_err(EngineError::io(format!("hard link {}", path.display())))
            });
            if let Err(e) = r {
                plan.stats.errors.push(e.to_string());
                continue;
            }
        }
        event(RestoreAction::Restored, path);
    }
    for (path, link, meta) in &plan.symlinks {
        if !opts.dry_run {
            let r = fsmeta::remove_entry(path, opts.delete)
                .and_then(|_| fsmeta::make_symlink(path, link));
            if let Err(e) = r {
                plan.stats.errors.push(e.to_string());
                continue;
            }
            let errs = fsmeta::apply(path, None, meta, opts.owners);
            plan.stats.errors.extend(errs);
        }
        event(RestoreAction::Restored, path);
    }
    if !opts.dry_run {
        for f in plan.files.iter().filter(|f| f.open == Open::MetadataOnly) {
            let errs = fsmeta::apply(&f.path, None, &f.meta, opts.owners);
            plan.stats.errors.extend(errs);
        }
    }
    let events = opts.item_events.then_some(ctl);
    let selected = |item: &[u8]| opts.select(item, false).0;
    for c in &plan.cleanups {
        delete::clean(c, &selected, opts.dry_run, events, &mut plan.stats);
    }
    // Children before parents (post-order), so a parent's mtime is set after its last change.
    for (path, meta) in &plan.dirs {
        if !opts.dry_run {
            let errs = fsmeta::apply(path, None, meta, opts.owners);
            plan.stats.errors.extend(errs);
        }
        event(RestoreAction::Restored, path);
    }
    Ok(plan.stats)
}

/// Deeper trees than any path the kernel accepts are refused instead of recursing on.
const MAX_DEPTH: usize = 2048;
