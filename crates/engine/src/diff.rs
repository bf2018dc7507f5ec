//! restic 0.14's `diff`: change lines (`+`, `-`, `M`, `T`, `U`) in restic's order and its
//! statistics, including its blob accounting (blobs only in one snapshot, minus those of
//! unchanged subtrees).

use std::collections::{BTreeMap, HashSet};

use restash_format::{BlobId, BlobType, Node, NodeType};

use crate::events::{Control, Event};
use crate::treewalk::join;
use crate::{LockPolicy, RepoLock, Snapshots};
use crate::{Repository, Result};

/// Counters of one side (`added` or `removed`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiffStat {
    /// Files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Everything else.
    pub others: u64,
    /// Data blobs only on this side.
    pub data_blobs: u64,
    /// Tree blobs only on this side.
    pub tree_blobs: u64,
    /// Plaintext bytes of those blobs.
    pub bytes: u64,
}

impl DiffStat {
    fn add(&mut self, n: &Node) {
        match n.node_type {
            NodeType::File => self.files += 1,
            NodeType::Dir => self.dirs += 1,
            _ => self.others += 1,
        }
    }
}

/// The statistics of a diff.
#[derive(Debug, Default, Clone)]
pub struct DiffStats {
    /// Files whose content changed.
    pub changed_files: u64,
    /// What the second snapshot has in addition.
    pub added: DiffStat,
    /// What the first snapshot had in addition.
    pub removed: DiffStat,
}

type BlobSet = HashSet<(BlobId, BlobType)>;

fn add_blobs(bs: &mut BlobSet, n: &Node) {
    match n.node_type {
        NodeType::File => {
            for b in n.content.iter().flatten() {
                bs.insert((*b, BlobType::Data));
            }
        }
        NodeType::Dir => {
            if let Some(s) = n.subtree {
                bs.insert((s, BlobType::Tree));
            }
        }
        _ => {}
    }
}

/// restic's `Node.Equals`: every field, times as instants.
pub fn node_equals(a: &Node, b: &Node) -> bool {
    let xattrs = |n: &Node| {
        let mut v: Vec<_> = n
            .extended_attributes
            .iter()
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect();
        v.sort();
        v
    };
    a.name == b.name
        && a.node_type == b.node_type
        && a.mode == b.mode
        && a.mtime == b.mtime
        && a.atime == b.atime
        && a.ctime == b.ctime
        && a.uid == b.uid
        && a.gid == b.gid
        && a.user == b.user
        && a.group == b.group
        && a.inode == b.inode
        && a.device_id == b.device_id
        && a.size == b.size
        && a.links == b.links
        && a.link_target_bytes() == b.link_target_bytes()
        && a.device == b.device
        && a.content == b.content
        && xattrs(a) == xattrs(b)
        && a.subtree == b.subtree
        && a.error == b.error
}

struct Comparer<'a> {
    repo: &'a Repository,
    metadata: bool,
    out: &'a mut dyn FnMut(&str, &str),
    warn: &'a mut dyn FnMut(String),
    stats: DiffStats,
    before: BlobSet,
    after: BlobSet,
    common: BlobSet,
}

/// Which two snapshots `diff` compares.
#[derive(Debug, Clone, Default)]
pub struct DiffJob {
    /// The first snapshot's id prefix (restic 0.14's diff gives `latest` no meaning).
    pub from: String,
    /// The second snapshot's id prefix.
    pub to: String,
    /// Report metadata changes too.
    pub metadata: bool,
    /// How to lock (a shared lock unless `--no-lock`).
    pub lock: LockPolicy,
}

/// restic's `diff`: sends [`Event::Selected`] for both snapshots, then calls `change`
/// for each change line in restic's order; unreadable subtrees are warnings.
pub fn run(
    repo: &mut Repository,
    job: &DiffJob,
    ctl: &Control,
    change: &mut dyn FnMut(&str, &str),
) -> Result<DiffStats> {
    let _lock = RepoLock::take(repo, false, &job.lock, ctl)?;
    let all = Snapshots::load(repo)?;
    for w in all.load_warnings() {
        ctl.warn(&w);
    }
    let (id1, sn1) = all.find_prefix(&job.from)?;
    let (id2, sn2) = all.find_prefix(&job.to)?;
    for (id, snapshot) in [(id1, sn1), (id2, sn2)] {
        ctl.emit(Event::Selected { id, snapshot });
    }
    repo.load_index()?;
    diff_trees(repo, &sn1.tree, &sn2.tree, job.metadata, change, &mut |w| {
        ctl.warn(&w)
    })
}

/// Compares two root trees. `change(path, modifier)` is called for each change line in
/// restic's order; `warn` for unreadable subtrees (restic warns and goes on).
pub fn diff_trees(
    repo: &Repository,
    tree1: &BlobId,
    tree2: &BlobId,
    metadata: bool,
    change: &mut dyn FnMut(&str, &str),
    warn: &mut dyn FnMut(String),
) -> Result<DiffStats> {
    let mut c = Comparer {
        repo,
        metadata,
        out: change,
        warn,
        stats: DiffStats::default(),
        before: BlobSet::new(),
        after: BlobSet::new(),
        common: BlobSet::new(),
    };
    c.before.insert((*tree1, BlobType::Tree));
    c.after.insert((*tree2, BlobType::Tree));
    c.diff_tree("/", tree1, tree2)?;
    let both: BlobSet = c.before.intersection(&c.after).copied().collect();
    let mut stats = std::mem::take(&mut c.stats);
    for (set, side) in [
        (&c.before, &mut stats.removed),
        (&c.after, &mut stats.added),
    ] {
        for h in set
            .iter()
            .filter(|h| !both.contains(h) && !c.common.contains(h))
        {
            match h.1 {
                BlobType::Data => side.data_blobs += 1,
                BlobType::Tree => side.tree_blobs += 1,
            }
            match repo.index().get(&h.0, h.1) {
                Some(loc) => side.bytes += loc.plaintext_len() as u64,
                None => (c.warn)(format!(
                    "unable to find blob size for <{}/{}>",
                    h.1.as_str(),
                    h.0.short()
                )),
            }
        }
    }
    Ok(stats)
}

fn dir_name(prefix: &str, n: &Node) -> String {
    let mut name = join(prefix, &String::from_utf8_lossy(&n.name));
    if n.node_type == NodeType::Dir {
        name.push('/');
    }
    name
}

impl Comparer<'_> {
    fn print_dir(&mut self, mode: &str, added: bool, prefix: &str, id: &BlobId) -> Result<()> {
        let tree = self.repo.load_tree(id)?;
        for node in &tree.nodes {
            let name = dir_name(prefix, node);
            (self.out)(&name, mode);
            if added {
                self.stats.added.add(node);
                add_blobs(&mut self.after, node);
            } else {
                self.stats.removed.add(node);
                add_blobs(&mut self.before, node);
            }
            if node.node_type == NodeType::Dir {
                if let Some(sub) = node.subtree {
                    if let Err(e) = self.print_dir(mode, added, &name, &sub) {
                        (self.warn)(format!("error: {e}"));
                    }
                }
            }
        }
        Ok(())
    }

    fn collect_dir(&mut self, id: &BlobId) -> Result<()> {
        let tree = self.repo.load_tree(id)?;
        for node in &tree.nodes {
            add_blobs(&mut self.common, node);
            if node.node_type == NodeType::Dir {
                if let Some(sub) = node.subtree {
                    if let Err(e) = self.collect_dir(&sub) {
                        (self.warn)(format!("error: {e}"));
                    }
                }
            }
        }
        Ok(())
    }

    fn diff_tree(&mut self, prefix: &str, id1: &BlobId, id2: &BlobId) -> Result<()> {
        let t1 = self.repo.load_tree(id1)?;
        let t2 = self.repo.load_tree(id2)?;
        // Later duplicates of a name win, as in restic's map; names in byte order.
        let mut names: BTreeMap<&[u8], (Option<&Node>, Option<&Node>)> = BTreeMap::new();
        for n in &t1.nodes {
            names.entry(&n.name).or_default().0 = Some(n);
        }
        for n in &t2.nodes {
            names.entry(&n.name).or_default().1 = Some(n);
        }
        for (name, (n1, n2)) in names {
            if let Some(n) = n1 {
                add_blobs(&mut self.before, n);
            }
            if let Some(n) = n2 {
                add_blobs(&mut self.after, n);
            }
            let name = String::from_utf8_lossy(name);
            match (n1, n2) {
                (Some(a), Some(b)) => {
                    let mut path = join(prefix, &name);
                    let mut m = String::new();
                    if a.node_type != b.node_type {
                        m.push('T');
                    }
                    if b.node_type == NodeType::Dir {
                        path.push('/');
                    }
                    if a.node_type == NodeType::File
                        && b.node_type == NodeType::File
                        && a.content != b.content
                    {
                        m.push('M');
                        self.stats.changed_files += 1;
                    } else if self.metadata && !node_equals(a, b) {
                        m.push('U');
                    }
                    if !m.is_empty() {
                        (self.out)(&path, &m);
                    }
                    if let (&NodeType::Dir, &NodeType::Dir, Some(s1), Some(s2)) =
                        (&a.node_type, &b.node_type, a.subtree, b.subtree)
                    {
                        let r = if s1 == s2 {
                            self.collect_dir(&s1)
                        } else {
                            self.diff_tree(&path, &s1, &s2)
                        };
                        if let Err(e) = r {
                            (self.warn)(format!("error: {e}"));
                        }
                    }
                }
                (Some(a), None) => {
                    let path = dir_name(prefix, a);
                    (self.out)(&path, "-");
                    self.stats.removed.add(a);
                    if let (&NodeType::Dir, Some(s)) = (&a.node_type, a.subtree) {
                        if let Err(e) = self.print_dir("-", false, &path, &s) {
                            (self.warn)(format!("error: {e}"));
                        }
                    }
                }
                (None, Some(b)) => {
                    let path = dir_name(prefix, b);
                    (self.out)(&path, "+");
                    self.stats.added.add(b);
                    if let (&NodeType::Dir, Some(s)) = (&b.node_type, b.subtree) {
                        if let Err(e) = self.print_dir("+", true, &path, &s) {
                            (self.warn)(format!("error: {e}"));
                        }
                    }
                }
                (None, None) => {}
            }
        }
        Ok(())
    }
}
