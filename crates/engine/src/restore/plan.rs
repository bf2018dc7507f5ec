//! Planning a restore from the trees: which blobs of which packs go to which file offsets,
//! what already exists in the target and what becomes of it, and which directories to clean
//! with `--delete`.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use restash_format::{BlobId, BlobType, Node, NodeType};

use super::delete::Cleanup;
use super::overwrite::{self, Existing, Matches};
use super::{item_of, RestoreOptions, RestoreStats, MAX_DEPTH};
use crate::events::{Control, Event, RestoreAction};
use crate::fsmeta::{self, DirMaker, Meta};
use crate::index::BlobLocation;
use crate::{EngineError, Repository, Result};

pub(super) struct FileState {
    pub handle: Option<Arc<File>>,
    pub remaining: usize,
    pub failed: bool,
    // Runs of zeros were left as holes, or the file existed with another length: its size
    // must be set when it is done.
    pub holes: bool,
}

/// How a planned file is opened, and whether it is written at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Open {
    /// Nothing there before: created.
    Create,
    /// Something there that cannot be updated in place: removed, then created.
    Replace,
    /// An existing file of which only the differing blobs are written.
    Keep,
    /// An existing file whose content stays; only its metadata is restored.
    MetadataOnly,
    /// An existing file left as it is (`--overwrite if-newer|never`).
    Skip,
}

pub(super) struct PlannedFile {
    pub path: PathBuf,
    pub meta: Meta,
    pub size: u64,
    pub open: Open,
    pub state: Mutex<FileState>,
}

#[derive(Clone, Copy)]
pub(super) struct Target {
    pub file: u32,
    pub offset: u64,
}

pub(super) struct PlannedBlob {
    pub id: BlobId,
    pub loc: BlobLocation,
    pub targets: Vec<Target>,
}

/// An existing file whose content is compared with the snapshot's before it is planned.
struct Check {
    file: u32,
    content: Vec<BlobId>,
}

#[derive(Default)]
pub(super) struct Plan {
    pub files: Vec<PlannedFile>,
    // pack number → blobs to read from it
    pub packs: HashMap<u32, Vec<PlannedBlob>>,
    // blob id → (pack number, position): one read per blob however many files share it
    seen_blobs: HashMap<BlobId, (u32, usize)>,
    pub hardlinks: Vec<(PathBuf, u32)>,
    inodes: HashMap<(u64, u64), u32>,
    pub symlinks: Vec<(PathBuf, Vec<u8>, Meta)>,
    pub dirs: Vec<(PathBuf, Meta)>,
    pub cleanups: Vec<Cleanup>,
    checks: Vec<Check>,
    pub stats: RestoreStats,
}

pub(super) struct Planner<'a> {
    pub repo: &'a Repository,
    pub opts: &'a RestoreOptions,
    pub ctl: &'a Control,
    pub root: &'a Path,
    dir_maker: DirMaker,
    // Off once a tree holds a name that cannot be restored: what the snapshot has in that
    // directory is then not known for sure, and nothing is deleted anywhere.
    delete: bool,
    pub plan: Plan,
}

impl<'a> Planner<'a> {
    pub fn new(
        repo: &'a Repository,
        opts: &'a RestoreOptions,
        ctl: &'a Control,
        root: &'a Path,
        root_new: bool,
    ) -> Self {
        Planner {
            repo,
            opts,
            ctl,
            root,
            dir_maker: DirMaker::new(root, root_new, opts.dry_run, opts.delete),
            delete: opts.delete,
            plan: Plan::default(),
        }
    }

    fn error(&mut self, msg: String) {
        self.plan.stats.errors.push(msg);
    }

    fn item_event(&self, action: RestoreAction, path: &Path, size: Option<u64>) {
        if self.opts.item_events {
            self.ctl.emit(Event::Restored {
                action,
                item: &item_of(self.root, path),
                size,
            });
        }
    }

    /// The directory at `rel`, made if needed; whether it is new (nothing in it existed).
    fn dir(&mut self, rel: &Path) -> Result<bool> {
        self.dir_maker.ensure(self.root, rel)
    }

    /// Plans the entries of `tree`; returns whether any of them is restored (a directory
    /// on the way to restored entries gets its metadata back, as in restic).
    pub fn walk(
        &mut self,
        tree: &BlobId,
        rel: &Path,
        item: &[u8],
        depth: usize,
        selected: bool,
    ) -> bool {
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
                self.delete = false;
                continue;
            }
            let mut child_item = item.to_vec();
            child_item.push(b'/');
            child_item.extend_from_slice(&node.name);
            let child_rel = rel.join(std::ffi::OsStr::from_bytes(&node.name));
            let (sel, descend) = self
                .opts
                .select(&child_item, node.node_type == NodeType::Dir);
            match self.node(node, &child_rel, &child_item, sel, descend, depth) {
                Ok(r) => restored |= r,
                Err(e) => self.error(e.to_string()),
            }
        }
        if self.delete && (selected || restored) {
            // Only a directory that existed can hold what the snapshot does not have.
            match self.dir(rel) {
                Ok(true) => {}
                Ok(false) => {
                    let mut names: Vec<Vec<u8>> = t.nodes.iter().map(|n| n.name.clone()).collect();
                    names.sort();
                    self.plan.cleanups.push(Cleanup {
                        dir: self.root.join(rel),
                        item: item.to_vec(),
                        names,
                    });
                }
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
        let parent = rel.parent().unwrap_or(Path::new(""));
        let abs = self.root.join(rel);
        match node.node_type {
            NodeType::Dir => {
                let sub = crate::dir_subtree(node, &String::from_utf8_lossy(item))?;
                if selected {
                    self.dir(rel)?;
                }
                let below = descend && self.walk(&sub, rel, item, depth + 1, selected);
                if selected || below {
                    // Post-order: children's metadata is applied before their parent's.
                    self.plan.dirs.push((abs, Meta::of(node)));
                    self.plan.stats.dirs += 1;
                }
                return Ok(selected || below);
            }
            _ if !selected => return Ok(false),
            NodeType::Socket => return Ok(false),
            NodeType::Irregular | NodeType::Other(_) => {
                return Err(EngineError::Corrupt(format!(
                    "{}: unsupported node type {:?}",
                    String::from_utf8_lossy(item),
                    node.node_type.as_str()
                )))
            }
            _ => {}
        }
        let parent_new = self.dir(parent)?;
        if node.node_type == NodeType::File {
            self.file(node, abs, parent_new)?;
            return Ok(true);
        }
        if !parent_new
            && overwrite::decide(self.opts.overwrite, node, &abs, false)? == Existing::Skip
        {
            self.skipped(&abs, node.size);
            return Ok(true);
        }
        if node.node_type == NodeType::Symlink {
            self.plan
                .symlinks
                .push((abs, node.link_target_bytes(), Meta::of(node)));
            self.plan.stats.others += 1;
            return Ok(true);
        }
        if !self.opts.dry_run {
            fsmeta::remove_entry(&abs, self.opts.delete)?;
            fsmeta::make_special(&abs, node)?;
            let errs = fsmeta::apply(&abs, None, &Meta::of(node), self.opts.owners);
            self.plan.stats.errors.extend(errs);
        }
        self.item_event(RestoreAction::Restored, &abs, None);
        self.plan.stats.others += 1;
        Ok(true)
    }

    fn skipped(&mut self, abs: &Path, size: u64) {
        self.plan.stats.skipped += 1;
        self.plan.stats.bytes_skipped += size;
        self.item_event(RestoreAction::Unchanged, abs, Some(size));
    }

    fn file(&mut self, node: &Node, abs: PathBuf, parent_new: bool) -> Result<()> {
        let existing = if parent_new {
            Existing::Absent
        } else {
            overwrite::decide(self.opts.overwrite, node, &abs, true)?
        };
        if node.links > 1 && node.inode != 0 {
            let key = (node.device_id, node.inode);
            if let Some(primary) = self.plan.inodes.get(&key) {
                if existing == Existing::Skip {
                    self.skipped(&abs, 0);
                } else {
                    self.plan.stats.files += 1;
                    self.plan.hardlinks.push((abs, *primary));
                }
                return Ok(());
            }
            self.plan.inodes.insert(key, self.plan.files.len() as u32);
        }
        let file_no = self.plan.files.len() as u32;
        let open = match existing {
            Existing::Absent => Open::Create,
            Existing::Replace => Open::Replace,
            Existing::Verify => Open::Keep,
            Existing::MetadataOnly => Open::MetadataOnly,
            Existing::Skip => Open::Skip,
        };
        self.plan.files.push(PlannedFile {
            path: abs,
            meta: Meta::of(node),
            size: node.size,
            open,
            state: Mutex::new(FileState {
                handle: None,
                remaining: 0,
                failed: false,
                holes: false,
            }),
        });
        let content = node.content.as_deref().unwrap_or(&[]);
        match open {
            Open::Create | Open::Replace => self.blobs(file_no, content, None),
            Open::Keep => self.plan.checks.push(Check {
                file: file_no,
                content: content.to_vec(),
            }),
            Open::MetadataOnly | Open::Skip => {
                let f = &self.plan.files[file_no as usize];
                let path = f.path.clone();
                self.skipped(&path, node.size);
            }
        }
        Ok(())
    }

    /// Compares the existing files that need it with the snapshot (in parallel: it reads
    /// them whole), then plans what differs.
    pub fn check_existing(&mut self, pool: &rayon::ThreadPool) {
        if !self.delete {
            // Turned off by a bad name somewhere: directories cleaned before it would be
            // the only ones, which is no clearer than none.
            self.plan.cleanups.clear();
        }
        let checks = std::mem::take(&mut self.plan.checks);
        let files = &self.plan.files;
        let repo = self.repo;
        let results: Vec<Result<Option<Matches>>> = pool.install(|| {
            checks
                .par_iter()
                .map_init(Vec::new, |buf, c| {
                    overwrite::verify(repo, &files[c.file as usize].path, &c.content, buf)
                })
                .collect()
        });
        for (c, m) in checks.iter().zip(results) {
            let f = &mut self.plan.files[c.file as usize];
            match m {
                Err(e) => {
                    // It is restored whole, as asked; the user learns why it was not
                    // compared.
                    self.ctl.warn(&format!(
                        "{e}: cannot compare it with the snapshot, restoring it whole"
                    ));
                    f.open = Open::Replace;
                    self.blobs(c.file, &c.content, None);
                }
                Ok(Some(m)) if m.complete() => {
                    f.open = Open::MetadataOnly;
                    let (path, size) = (f.path.clone(), f.size);
                    self.skipped(&path, size);
                }
                Ok(Some(m)) => self.blobs(c.file, &c.content, Some(&m)),
                Ok(None) => {
                    f.open = Open::Replace;
                    self.blobs(c.file, &c.content, None);
                }
            }
        }
    }

    /// Plans the blobs of file `file_no` that `matches` does not say it already holds.
    /// A file with a blob the index lacks cannot be restored: nothing is planned for it,
    /// so an existing file at its place is left as it is rather than half rewritten.
    fn blobs(&mut self, file_no: u32, content: &[BlobId], matches: Option<&Matches>) {
        let locs: Vec<Option<BlobLocation>> = content
            .iter()
            .map(|id| self.repo.index().get(id, BlobType::Data))
            .collect();
        if locs.iter().any(Option::is_none) {
            let f = &mut self.plan.files[file_no as usize];
            f.state.get_mut().expect("file state lock").failed = true;
            if f.open != Open::Create {
                f.open = Open::Skip;
            }
            let path = f.path.clone();
            for (id, _) in content.iter().zip(&locs).filter(|(_, l)| l.is_none()) {
                self.error(format!(
                    "{}: data blob {} not found in index",
                    path.display(),
                    id
                ));
            }
            self.plan.stats.files += 1;
            return;
        }
        let mut offset = 0u64;
        let mut planned = 0;
        for (i, (id, loc)) in content.iter().zip(locs.into_iter().flatten()).enumerate() {
            let target = Target {
                file: file_no,
                offset,
            };
            offset += loc.plaintext_len() as u64;
            if matches.is_some_and(|m| m.blobs[i]) {
                continue;
            }
            planned += 1;
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
        let f = &mut self.plan.files[file_no as usize];
        f.size = offset;
        {
            let st = f.state.get_mut().expect("file state lock");
            st.remaining = planned;
            // A file written in place may have had another length.
            st.holes = f.open == Open::Keep;
        }
        let keep = f.open == Open::Keep;
        self.plan.stats.files += 1;
        self.plan.stats.bytes += offset;
        if self.opts.dry_run {
            let action = match keep {
                true => RestoreAction::Updated,
                false => RestoreAction::Restored,
            };
            self.item_event(action, &self.plan_file(file_no).path, Some(offset));
        } else if planned == 0 {
            // Nothing to wait for (an empty file, or one that only needs its length set).
            let errs = super::write::complete(self.plan_file(file_no), self.writer());
            self.plan.stats.errors.extend(errs);
        }
    }

    fn plan_file(&self, file_no: u32) -> &PlannedFile {
        &self.plan.files[file_no as usize]
    }

    fn writer(&self) -> super::write::Writer<'_> {
        super::write::Writer {
            opts: self.opts,
            ctl: self.ctl,
            root: self.root,
        }
    }
}
