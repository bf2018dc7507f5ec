//! The file system as restic's `mount` shows it, independent of FUSE: inodes for what the
//! kernel holds (dropped when it forgets them), the snapshot layout (re-read when it is
//! browsed), trees loaded only when a directory is looked into, and file ranges read from
//! the blobs that cover them. Requests may come from several threads at once.

use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use restash_engine::{Repository, SnapshotEntry, SnapshotFilter, Snapshots};
use restash_format::{BlobId, BlobType, GoTime, Node, NodeType, SnapshotId, Tree};

use crate::cache::Shared;
use crate::inodes::{dynamic_inode, Inodes};
use crate::layout::{self, Layout};
use crate::{lock, MountError, Result};

pub use crate::inodes::ROOT;

// Decoded trees kept for the lookups that follow a listing (the size is an estimate).
const TREE_CACHE_BYTES: usize = 16 << 20;
const NODE_BYTES: usize = 256;

/// How the model is set up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Which snapshots are shown (`--host`, `--tag`, `--path`).
    pub filter: SnapshotFilter,
    /// restic's `--path-template`s.
    pub templates: Vec<String>,
    /// restic's `--time-template` (a Go time layout).
    pub time_template: String,
    /// `--owner-root`: everything belongs to root.
    pub owner_root: bool,
    /// Bytes of decrypted blobs kept in memory.
    pub cache_bytes: usize,
    /// The snapshot list is re-read when browsed at most this often.
    pub refresh_every: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            filter: SnapshotFilter::default(),
            templates: layout::DEFAULT_TEMPLATES.map(String::from).to_vec(),
            time_template: layout::DEFAULT_TIME_TEMPLATE.into(),
            owner_root: false,
            cache_bytes: 64 << 20,
            refresh_every: Duration::from_secs(5),
        }
    }
}

/// What an inode is.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A directory of the layout (`/`, `snapshots`, `hosts/<host>`…), by its layout path.
    Meta(String),
    /// A snapshot's root directory.
    SnapshotRoot {
        /// Its root tree.
        tree: BlobId,
        /// The snapshot's time.
        time: GoTime,
    },
    /// A `latest` link.
    Link {
        /// The name it points to.
        target: String,
        /// The linked snapshot's time.
        time: GoTime,
    },
    /// A node of a snapshot's tree.
    Node(Arc<Node>),
}

/// The type of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A block device.
    Block,
    /// A character device.
    Char,
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
}

/// An entry's attributes.
#[derive(Debug, Clone)]
pub struct Attr {
    /// Its inode.
    pub ino: u64,
    /// Its type.
    pub kind: FileKind,
    /// Permission bits (with setuid, setgid, sticky).
    pub perm: u16,
    /// Size in bytes.
    pub size: u64,
    /// Link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a device node.
    pub rdev: u32,
    /// Access time.
    pub atime: SystemTime,
    /// Modification time.
    pub mtime: SystemTime,
    /// Status change time.
    pub ctime: SystemTime,
    /// How long the kernel may keep the entry and these attributes.
    pub ttl: Duration,
}

struct Inode {
    kind: Kind,
    parent: u64,
    // A file's blob boundaries (from the index), computed on its first read.
    starts: OnceLock<std::result::Result<Vec<u64>, BlobId>>,
}

impl Inode {
    fn new(kind: Kind, parent: u64) -> Inode {
        Inode {
            kind,
            parent,
            starts: OnceLock::new(),
        }
    }
}

#[derive(Clone, Hash, PartialEq, Eq)]
enum Key {
    // A layout path, with the snapshot and link target it stands for: when a refresh
    // moves a name to another snapshot, it becomes another inode.
    Meta(String, Option<SnapshotId>, Option<String>),
    Child(u64, Vec<u8>),
}

/// A directory entry: its inode number, type and name.
pub type DirEntry = (u64, FileKind, Vec<u8>);

struct State {
    // Every snapshot file read so far: a refresh reads only new ones.
    all: Snapshots,
    snapshots: Vec<SnapshotEntry>,
    layout: Layout,
    seen: Vec<SnapshotId>,
    checked: Instant,
}

/// The mounted repository.
pub struct MountModel {
    repo: RwLock<Repository>,
    settings: Settings,
    table: Mutex<Inodes<Key, Inode>>,
    state: Mutex<State>,
    cache: Shared<Vec<u8>>,
    trees: Shared<Tree>,
    uid: u32,
    gid: u32,
    started: SystemTime,
    warn: Box<dyn Fn(&str) + Send + Sync>,
}

fn system_time(t: &GoTime) -> SystemTime {
    let secs = t.unix_secs();
    let base = if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    };
    base + Duration::from_nanos(t.nanos().into())
}

fn engine(context: String) -> impl FnOnce(restash_engine::EngineError) -> MountError {
    move |source| MountError::Engine { context, source }
}

impl MountModel {
    /// Loads the snapshot list; `repo` must have its index loaded. `warn` receives what
    /// the user must learn about (unreadable snapshots, blobs that fail).
    pub fn new(
        repo: Repository,
        settings: Settings,
        warn: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Result<MountModel> {
        let all = Snapshots::load(&repo).map_err(engine("load snapshots".into()))?;
        Self::with_snapshots(repo, settings, warn, all)
    }

    /// [`MountModel::new`] with the snapshot list already loaded (while the index loaded).
    pub fn with_snapshots(
        repo: Repository,
        settings: Settings,
        warn: Box<dyn Fn(&str) + Send + Sync>,
        all: Snapshots,
    ) -> Result<MountModel> {
        let (uid, gid) = if settings.owner_root {
            (0, 0)
        } else {
            (
                rustix::process::getuid().as_raw(),
                rustix::process::getgid().as_raw(),
            )
        };
        let model = MountModel {
            repo: RwLock::new(repo),
            cache: Shared::new(settings.cache_bytes),
            trees: Shared::new(TREE_CACHE_BYTES),
            settings,
            table: Mutex::new(Inodes::new(
                Key::Meta(String::new(), None, None),
                Inode::new(Kind::Meta(String::new()), ROOT),
            )),
            state: Mutex::new(State {
                all: Snapshots::default(),
                snapshots: Vec::new(),
                layout: Layout::new(),
                seen: Vec::new(),
                checked: Instant::now(),
            }),
            uid,
            gid,
            started: SystemTime::now(),
            warn,
        };
        model.apply(&mut lock(&model.state), all, false)?;
        Ok(model)
    }

    fn repo(&self) -> std::sync::RwLockReadGuard<'_, Repository> {
        self.repo.read().unwrap_or_else(|p| p.into_inner())
    }

    // Re-reads the snapshot list; when it changed, the index too (new snapshots bring
    // new blobs), unless this is the first load.
    fn reload(&self, st: &mut State, index: bool) -> Result<()> {
        let all = st
            .all
            .reload(&self.repo())
            .map_err(engine("load snapshots".into()))?;
        self.apply(st, all, index)
    }

    // Shows the snapshots of `all` that the filter lets through.
    fn apply(&self, st: &mut State, all: Snapshots, index: bool) -> Result<()> {
        // Oldest first, then by id: the order `Snapshots` keeps them in.
        let chosen: Vec<SnapshotEntry> = all.matching(&self.settings.filter).cloned().collect();
        let mut seen: Vec<SnapshotId> = chosen.iter().map(|(id, _)| *id).collect();
        seen.extend(all.unreadable().iter().map(|u| u.id));
        st.checked = Instant::now();
        if seen == st.seen && !st.layout.is_empty() {
            st.all = all;
            return Ok(());
        }
        for w in all.load_warnings() {
            (self.warn)(&w);
        }
        if index {
            let fresh = self
                .repo()
                .read_index()
                .map_err(engine("load index".into()))?;
            self.repo
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .set_index(fresh);
        }
        st.layout = layout::build(
            &chosen,
            &self.settings.templates,
            &self.settings.time_template,
        );
        st.snapshots = chosen;
        st.seen = seen;
        st.all = all;
        Ok(())
    }

    fn refresh(&self) -> std::sync::MutexGuard<'_, State> {
        let mut st = lock(&self.state);
        if st.checked.elapsed() >= self.settings.refresh_every {
            if let Err(e) = self.reload(&mut st, true) {
                // The old list is still right for what it shows.
                (self.warn)(&format!("cannot refresh the snapshot list: {e}"));
            }
        }
        st
    }

    fn inode(&self, ino: u64) -> Result<Arc<Inode>> {
        lock(&self.table).get(ino).ok_or(MountError::NotFound)
    }

    /// The kernel forgets `n` lookups of `ino`: once it holds none, the inode is dropped
    /// (FUSE's `forget`).
    pub fn forget(&self, ino: u64, n: u64) {
        lock(&self.table).forget(ino, n);
    }

    /// How many inodes are held, the root included.
    pub fn inode_count(&self) -> usize {
        lock(&self.table).len()
    }

    /// The kind of an inode.
    pub fn kind(&self, ino: u64) -> Result<Kind> {
        Ok(self.inode(ino)?.kind.clone())
    }

    /// The inode's parent (the root's is itself).
    pub fn parent(&self, ino: u64) -> Result<u64> {
        Ok(self.inode(ino)?.parent)
    }

    fn tree(&self, id: &BlobId) -> Result<Arc<Tree>> {
        self.trees.get_or_load(id, || {
            let tree = self
                .repo()
                .load_tree(id)
                .map_err(engine(format!("load tree {}", id.short())))?;
            let size = (tree.nodes.len() + 1) * NODE_BYTES;
            Ok((tree, size))
        })
    }

    // The tree a directory inode lists, if it is a tree.
    fn subtree(kind: &Kind) -> Result<Option<BlobId>> {
        match kind {
            Kind::Meta(_) => Ok(None),
            Kind::SnapshotRoot { tree, .. } => Ok(Some(*tree)),
            Kind::Node(n) if n.node_type == NodeType::Dir => {
                let name = n.display_name();
                restash_engine::dir_subtree(n, &name)
                    .map(Some)
                    .map_err(engine(format!("directory {name}")))
            }
            _ => Err(MountError::NotDir),
        }
    }

    // What `name` in the layout directory `path` is, if it is there.
    fn meta_child(st: &State, path: &str, name: &str) -> Option<(Key, Kind)> {
        let child = format!("{path}/{name}");
        let e = st.layout.get(&child)?;
        Some(match (e.snapshot, &e.link) {
            (Some(n), Some(target)) => {
                let (id, s) = &st.snapshots[n];
                (
                    Key::Meta(child, Some(*id), Some(target.clone())),
                    Kind::Link {
                        target: target.clone(),
                        time: s.time,
                    },
                )
            }
            (Some(n), None) => {
                let (id, s) = &st.snapshots[n];
                (
                    Key::Meta(child, Some(*id), None),
                    Kind::SnapshotRoot {
                        tree: s.tree,
                        time: s.time,
                    },
                )
            }
            _ => (Key::Meta(child.clone(), None, None), Kind::Meta(child)),
        })
    }

    // The entry for the kernel's lookup, counted until the kernel forgets it.
    // `kind` is made only for an entry the kernel does not hold yet.
    fn looked_up(
        &self,
        parent: u64,
        name: &[u8],
        key: Key,
        kind: impl FnOnce() -> Kind,
    ) -> Result<Attr> {
        let hash = dynamic_inode(parent, name);
        let (ino, inode) = lock(&self.table).lookup(key, hash, || Inode::new(kind(), parent));
        Ok(self.attr_of(ino, &inode))
    }

    /// The entry `name` in directory `parent`. The kernel now holds one more lookup of
    /// it, until [`MountModel::forget`].
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Attr> {
        let kind = self.kind(parent)?;
        if let Kind::Meta(path) = &kind {
            let st = self.refresh();
            let utf8 = std::str::from_utf8(name).map_err(|_| MountError::NotFound)?;
            let (key, kind) = Self::meta_child(&st, path, utf8).ok_or(MountError::NotFound)?;
            // Under the state lock: a refresh cannot move the name meanwhile.
            return self.looked_up(parent, name, key, || kind);
        }
        let tree = Self::subtree(&kind)?.ok_or(MountError::NotDir)?;
        let tree = self.tree(&tree)?;
        let node = tree.find(name).ok_or(MountError::NotFound)?;
        let key = Key::Child(parent, name.to_vec());
        self.looked_up(parent, name, key, || Kind::Node(Arc::new(node.clone())))
    }

    /// A directory's entries (without `.` and `..`), with their inode numbers (those a
    /// lookup gives them) and types. Listing does not make the entries inodes: the kernel
    /// looks up what it uses.
    pub fn readdir(&self, ino: u64) -> Result<Vec<DirEntry>> {
        let kind = self.kind(ino)?;
        if let Kind::Meta(path) = &kind {
            let st = self.refresh();
            let Some(e) = st.layout.get(path) else {
                return Ok(Vec::new());
            };
            let t = lock(&self.table);
            let mut out = Vec::with_capacity(e.names.len());
            for name in &e.names {
                if let Some((key, kind)) = Self::meta_child(&st, path, name) {
                    let kind = match kind {
                        Kind::Link { .. } => FileKind::Symlink,
                        _ => FileKind::Dir,
                    };
                    let child = t.number(&key, dynamic_inode(ino, name.as_bytes()));
                    out.push((child, kind, name.clone().into_bytes()));
                }
            }
            return Ok(out);
        }
        let tree = Self::subtree(&kind)?.ok_or(MountError::NotDir)?;
        let tree = self.tree(&tree)?;
        let t = lock(&self.table);
        Ok(tree
            .nodes
            .iter()
            .map(|n| {
                let key = Key::Child(ino, n.name.clone());
                let child = t.number(&key, dynamic_inode(ino, &n.name));
                (child, node_kind(&n.node_type), n.name.clone())
            })
            .collect())
    }

    /// A symlink's target.
    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        match self.kind(ino)? {
            Kind::Link { target, .. } => Ok(target.into_bytes()),
            Kind::Node(n) if n.node_type == NodeType::Symlink => Ok(n.link_target_bytes()),
            _ => Err(MountError::Invalid),
        }
    }

    // Where each blob of a file starts, and its end, from the index's plaintext lengths.
    fn starts<'a>(&self, inode: &'a Inode, node: &Node) -> Result<&'a [u64]> {
        let starts = inode.starts.get_or_init(|| {
            let repo = self.repo();
            let mut at = 0u64;
            let mut out = vec![0];
            for id in node.content.iter().flatten() {
                let loc = repo.index().get(id, BlobType::Data).ok_or(*id)?;
                at += u64::from(loc.plaintext_len());
                out.push(at);
            }
            Ok(out)
        });
        starts.as_deref().map_err(|id| MountError::MissingBlob(*id))
    }

    fn blob(&self, id: &BlobId, want: u32) -> Result<Arc<Vec<u8>>> {
        self.cache.get_or_load(id, || {
            let data = self
                .repo()
                .load_blob(id, BlobType::Data)
                .map_err(engine(format!("load data blob {id}")))?;
            if data.len() != want as usize {
                return Err(MountError::BlobLength {
                    id: *id,
                    got: data.len(),
                    want,
                });
            }
            let size = data.len();
            Ok((data, size))
        })
    }

    /// Up to `size` bytes of a file from `offset`; fewer only at its end. Only the blobs
    /// covering the range are loaded.
    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let inode = self.inode(ino)?;
        let Kind::Node(node) = &inode.kind else {
            return Err(MountError::Invalid);
        };
        if node.node_type != NodeType::File {
            return Err(MountError::Invalid);
        }
        let starts = self.starts(&inode, node)?;
        let blobs: &[BlobId] = node.content.as_deref().unwrap_or(&[]);
        let end = offset
            .saturating_add(size.into())
            .min(*starts.last().unwrap_or(&0));
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        // The first blob that ends after `offset`.
        let mut i = starts.partition_point(|&s| s <= offset).saturating_sub(1);
        let mut at = offset;
        while at < end && i < blobs.len() {
            let (from, to) = (starts[i], starts[i + 1]);
            let data = self.blob(&blobs[i], (to - from) as u32)?;
            let lo = (at - from) as usize;
            let hi = (end.min(to) - from) as usize;
            out.extend_from_slice(&data[lo..hi]);
            at = end.min(to);
            i += 1;
        }
        Ok(out)
    }

    /// An inode's attributes, as restic's mount shows them.
    pub fn attr(&self, ino: u64) -> Result<Attr> {
        let inode = self.inode(ino)?;
        Ok(self.attr_of(ino, &inode))
    }

    fn attr_of(&self, ino: u64, inode: &Inode) -> Attr {
        // The layout changes, snapshots do not.
        let ttl = match inode.kind {
            Kind::Meta(_) | Kind::Link { .. } => Duration::ZERO,
            _ => Duration::from_secs(60),
        };
        let dir = |perm, nlink, t: SystemTime| Attr {
            ino,
            kind: FileKind::Dir,
            perm,
            size: 0,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            atime: t,
            mtime: t,
            ctime: t,
            ttl,
        };
        match &inode.kind {
            Kind::Meta(_) => dir(0o555, 1, self.started),
            Kind::SnapshotRoot { time, .. } => dir(0o555, 2, system_time(time)),
            Kind::Link { target, time } => Attr {
                kind: FileKind::Symlink,
                perm: 0o777,
                size: target.len() as u64,
                ..dir(0o777, 1, system_time(time))
            },
            Kind::Node(n) => {
                let kind = node_kind(&n.node_type);
                let size = match kind {
                    // The blobs' lengths, when known, are what reads return.
                    FileKind::File => match self.starts(inode, n) {
                        Ok(s) => *s.last().unwrap_or(&0),
                        Err(_) => n.size,
                    },
                    FileKind::Symlink => n.link_target_bytes().len() as u64,
                    _ => 0,
                };
                let (uid, gid) = if self.settings.owner_root {
                    (0, 0)
                } else {
                    (n.uid, n.gid)
                };
                Attr {
                    ino,
                    kind,
                    // restic's mount shows neither setuid, setgid nor sticky bits.
                    perm: (n.unix_permissions() & 0o777) as u16,
                    size,
                    // As restic's mount: devices, pipes and sockets show no links.
                    nlink: match kind {
                        FileKind::Dir => 2,
                        FileKind::File | FileKind::Symlink => {
                            n.links.clamp(1, u32::MAX.into()) as u32
                        }
                        _ => 0,
                    },
                    uid,
                    gid,
                    rdev: n.device as u32,
                    atime: system_time(&n.atime),
                    mtime: system_time(&n.mtime),
                    ctime: system_time(&n.ctime),
                    ttl,
                }
            }
        }
    }

    /// Bytes of decrypted blobs held in memory.
    pub fn cached_bytes(&self) -> usize {
        self.cache.held()
    }

    /// Reports a failed request the user has to learn about.
    pub fn warn(&self, what: &str) {
        (self.warn)(what);
    }
}

fn node_kind(t: &NodeType) -> FileKind {
    match t {
        NodeType::Dir => FileKind::Dir,
        NodeType::Symlink => FileKind::Symlink,
        NodeType::Dev => FileKind::Block,
        NodeType::CharDev => FileKind::Char,
        NodeType::Fifo => FileKind::Fifo,
        NodeType::Socket => FileKind::Socket,
        _ => FileKind::File,
    }
}
