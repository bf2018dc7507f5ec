//! Helpers shared by the in-memory tests: repositories on a `MemoryBackend`, a source tree
//! with every kind of entry, a tree comparison, a check reporter that keeps the messages,
//! and a backend wrapper that counts writes and can act at the N-th.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use restash_backend::{Backend, BackendError, FileInfo, FileType, Handle, Leftover, MemoryBackend};
use restash_engine::archiver::{backup, BackupOptions, BackupSummary, Source};
use restash_engine::check::{check, CheckOptions, CheckOutcome, ReadDataSubset};
use restash_engine::events::{Control, Event, EventSink};
use restash_engine::{find_subtree, restore, RestoreOptions, Result};
use restash_engine::{EngineError, Repository};
use restash_format::SnapshotId;

/// The password of every test repository.
pub const PASSWORD: &[u8] = b"memory-test";

/// The smallest pack size backup accepts: several packs from a few MiB of data.
pub const SMALL_PACKS: usize = 4 << 20;

/// A new repository of `version` in memory. The KDF is cheap: deriving the key is not
/// what these tests are about, and restic's default costs a second per open.
pub fn new_repo(version: u32) -> (Arc<MemoryBackend>, Repository) {
    let be = Arc::new(MemoryBackend::new());
    let kdf = restash_crypto::KdfParams {
        n: 1024,
        r: 8,
        p: 1,
    };
    let repo = Repository::init(be.clone(), PASSWORD, version, kdf).expect("init");
    (be, repo)
}

/// A copy of the store's files in a new memory store.
pub fn copy(be: &dyn Backend) -> Arc<MemoryBackend> {
    let out = Arc::new(MemoryBackend::new());
    for (h, data) in files(be) {
        out.write(&h, &data).expect("write");
    }
    out
}

/// Opens the repository on `be` as a new process would: nothing is shared with the
/// `Repository` that wrote it.
pub fn open(be: Arc<dyn Backend>) -> Repository {
    Repository::open(be, PASSWORD, None).expect("open")
}

/// Every file of the store, by handle, with its bytes.
pub fn files(be: &dyn Backend) -> BTreeMap<Handle, Vec<u8>> {
    let mut out = BTreeMap::new();
    if let Ok(c) = be.read(&Handle::config()) {
        out.insert(Handle::config(), c);
    }
    for t in FileType::ALL.into_iter().filter(|t| *t != FileType::Config) {
        for f in be.list(t).expect("list") {
            let h = Handle::new(t, f.id);
            out.insert(h, be.read(&h).expect("read"));
        }
    }
    out
}

/// The files of one type.
pub fn handles(be: &dyn Backend, t: FileType) -> BTreeSet<Handle> {
    be.list(t)
        .expect("list")
        .into_iter()
        .map(|f| Handle::new(t, f.id))
        .collect()
}

/// Replaces a file's content (the memory backend, like the others, only creates).
pub fn overwrite(be: &dyn Backend, h: &Handle, data: &[u8]) {
    be.remove(h).expect("remove");
    be.write(h, data).expect("write");
}

/// A backup of `dir` with small packs.
pub fn backup_dir(repo: &mut Repository, dir: &Path, opts: &BackupOptions) -> BackupSummary {
    backup(
        repo,
        Source::Paths(vec![dir.to_path_buf()]),
        opts,
        &Control::default(),
    )
    .expect("backup")
}

/// Backup options for these tests: small packs, so that little data fills several.
pub fn options() -> BackupOptions {
    let mut o = BackupOptions::new("memory-host");
    o.pack_size = SMALL_PACKS;
    o
}

/// Restores the directory `src` of snapshot `snap` into `target`, from a freshly opened
/// repository with its index loaded (what `restash restore id:src target` does).
pub fn restore_dir(be: Arc<dyn Backend>, snap: &SnapshotId, src: &Path, target: &Path) {
    let mut repo = open(be);
    repo.load_index().expect("load index");
    let sn = repo.load_snapshot(snap).expect("load snapshot");
    let sub = find_subtree(&repo, &sn.tree, src.to_str().expect("utf-8 temp dir")).expect("sub");
    let stats = restore(
        &repo,
        &sub,
        &RestoreOptions::new(target),
        &Control::default(),
    )
    .expect("restore");
    assert!(
        stats.errors.is_empty(),
        "restore errors: {:?}",
        stats.errors
    );
}

/// Deterministic bytes that neither compress nor repeat, so every chunk is a new blob.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Sets a path's times without following a symlink there (the only way to give a
/// symlink its own mtime).
pub fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: nanos,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).expect("utimensat");
}

/// Fills `dir` with every kind of entry a backup must keep: files of several sizes (empty,
/// small, several chunks, a few MiB), nested directories, symlinks (one dangling), a hard
/// link pair, names with spaces, UTF-8, a newline and a non-UTF-8 byte, unusual modes and
/// mtimes with nanoseconds. Returns the number of regular files (each name of the hard
/// link pair counted, as the backup counts them).
pub fn make_source(dir: &Path) -> u64 {
    let w = |rel: &str, data: &[u8]| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    w("empty", b"");
    w("small.txt", b"a small file\n");
    // Compressible: in a v2 repository with compression on its blobs are stored compressed.
    w(
        "a/text.txt",
        &b"the same line again and again\n".repeat(40_000),
    );
    // Above the chunker's 512 KiB minimum several times over: more than one chunk.
    w("a/b/medium.bin", &noise(1_700_000, 1));
    w("a/b/c/big.bin", &noise(3 << 20, 2));
    w("a/b/c/deep.txt", b"deep\n");
    w("with space.txt", b"spaces\n");
    w("ünïcödé-файл.txt", b"utf-8\n");
    w("new\nline", b"newline in the name\n");
    w("exec.sh", b"#!/bin/sh\necho hi\n");
    w("readonly.txt", b"read only\n");
    w("hard1", b"one inode, two names\n");
    std::fs::hard_link(dir.join("hard1"), dir.join("a/hard2")).unwrap();
    let odd = dir.join(OsStr::from_bytes(b"not-utf8-\xff-name"));
    std::fs::write(&odd, b"latin-1 name\n").unwrap();
    std::os::unix::fs::symlink("a/b/c/deep.txt", dir.join("link")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", dir.join("a/dangling")).unwrap();
    std::fs::create_dir_all(dir.join("empty-dir")).unwrap();
    std::fs::create_dir_all(dir.join("private")).unwrap();
    w("private/secret", b"secret\n");

    let mode = |rel: &str, m: u32| {
        std::fs::set_permissions(dir.join(rel), std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode("exec.sh", 0o755);
    mode("readonly.txt", 0o444);
    mode("private/secret", 0o600);
    mode("small.txt", 0o640);
    mode("private", 0o700);
    mode("a/b", 0o750);

    // Times last, children before parents: every entry created above changed its
    // directory's mtime.
    let mut all: Vec<PathBuf> = walk(dir).into_keys().collect();
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, rel) in all.iter().enumerate() {
        set_mtime(
            &dir.join(rel),
            1_600_000_000 + 3_600 * i as i64,
            123_456_789,
        );
    }
    walk(dir).values().filter(|m| m.is_file()).count() as u64
}

/// What the comparison looks at for one entry.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    perm: u32,
    mtime: (i64, i64),
    content: Option<Vec<u8>>,
    target: Option<PathBuf>,
}

/// Every entry below `root` (not `root` itself), by relative path, without following
/// symlinks, and the hard link groups (names sharing an inode, for inodes with several).
fn walk(root: &Path) -> BTreeMap<PathBuf, std::fs::Metadata> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                todo.push(p.clone());
            }
            out.insert(p.strip_prefix(root).unwrap().to_path_buf(), m);
        }
    }
    out
}

fn entries(root: &Path) -> (BTreeMap<PathBuf, Entry>, BTreeSet<BTreeSet<PathBuf>>) {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<u64, BTreeSet<PathBuf>> = HashMap::new();
    for (rel, m) in walk(root) {
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else {
            "other"
        };
        let path = root.join(&rel);
        if ft.is_file() && m.nlink() > 1 {
            inodes.entry(m.ino()).or_default().insert(rel.clone());
        }
        let e = Entry {
            kind,
            perm: m.mode() & 0o7777,
            mtime: (m.mtime(), m.mtime_nsec()),
            content: ft.is_file().then(|| std::fs::read(&path).unwrap()),
            target: ft.is_symlink().then(|| std::fs::read_link(&path).unwrap()),
        };
        out.insert(rel, e);
    }
    (out, inodes.into_values().collect())
}

/// Every difference between the trees below `a` and `b` (their roots' own metadata left
/// out: a restore target is not part of the snapshot), one line each; empty when equal.
pub fn differences(a: &Path, b: &Path) -> Vec<String> {
    let (ea, la) = entries(a);
    let (eb, lb) = entries(b);
    let mut diffs = Vec::new();
    for (p, x) in &ea {
        match eb.get(p) {
            None => diffs.push(format!("{p:?}: missing")),
            Some(y) if x != y => {
                // Contents are long: say which fields differ, not what they hold.
                let mut what = Vec::new();
                if x.kind != y.kind {
                    what.push(format!("type {} != {}", x.kind, y.kind));
                }
                if x.perm != y.perm {
                    what.push(format!("mode {:o} != {:o}", x.perm, y.perm));
                }
                if x.mtime != y.mtime {
                    what.push(format!("mtime {:?} != {:?}", x.mtime, y.mtime));
                }
                if x.content != y.content {
                    what.push("content".into());
                }
                if x.target != y.target {
                    what.push(format!("target {:?} != {:?}", x.target, y.target));
                }
                diffs.push(format!("{p:?}: {}", what.join(", ")));
            }
            Some(_) => {}
        }
    }
    for p in eb.keys().filter(|p| !ea.contains_key(*p)) {
        diffs.push(format!("{p:?}: unexpected"));
    }
    if la != lb {
        diffs.push(format!("hard links {la:?} != {lb:?}"));
    }
    diffs
}

/// An event sink that keeps what a check tells: its messages and its problems.
#[derive(Default)]
pub struct Collect {
    info: Mutex<Vec<String>>,
    warn: Mutex<Vec<String>>,
}

impl EventSink for Collect {
    fn event(&self, e: &Event<'_>) {
        match e {
            Event::Message { text, .. } => self.info.lock().unwrap().push(text.to_string()),
            Event::Warning(m) | Event::Error(m) => self.warn.lock().unwrap().push(m.to_string()),
            _ => {}
        }
    }
}

/// How one check ended and what it said.
pub struct Checked {
    /// The check's result (`Err` for what stops it early).
    pub result: Result<CheckOutcome>,
    /// Normal output, at every verbosity.
    pub info: Vec<String>,
    /// Problems (the CLI prints them on stderr).
    pub warn: Vec<String>,
}

impl Checked {
    /// The outcome of a check that ran to the end.
    pub fn outcome(&self) -> &CheckOutcome {
        self.result.as_ref().expect("check ran to the end")
    }

    /// Whether any warning contains `s`.
    pub fn warned(&self, s: &str) -> bool {
        self.warn.iter().any(|w| w.contains(s))
    }

    /// Whether any normal message contains `s`.
    pub fn said(&self, s: &str) -> bool {
        self.info.iter().any(|w| w.contains(s))
    }

    /// Asserts that the check found nothing wrong, warned of nothing, and gave none of
    /// the non-critical hints about the index (which a repository the engine wrote alone
    /// must not need).
    pub fn assert_clean(&self) {
        let out = self.outcome();
        assert!(
            !out.errors_found && self.warn.is_empty(),
            "check found errors: {:?}\n{:?}",
            self.warn,
            out
        );
        let hints = ["several indexes", "old format", "mix of tree and data"];
        assert!(
            !self
                .info
                .iter()
                .any(|m| hints.iter().any(|h| m.contains(h))),
            "{:?}",
            self.info
        );
        assert!(self.said("no errors were found"), "{:?}", self.info);
    }
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "result: {:?}\nwarn: {:#?}\ninfo: {:#?}",
            self.result.as_ref().map(|o| o.errors_found),
            self.warn,
            self.info
        )
    }
}

/// Runs the engine's check on `be` from a freshly opened repository, with `--read-data`
/// when asked.
pub fn run_check(be: Arc<dyn Backend>, read_data: bool) -> Checked {
    let mut repo = open(be);
    let opts = CheckOptions {
        read_data: read_data.then_some(ReadDataSubset::All),
        check_unused: false,
    };
    let rep = Arc::new(Collect::default());
    let result = check(&mut repo, &opts, &Control::new(rep.clone()));
    let rep = Arc::try_unwrap(rep).ok().expect("the check is over");
    Checked {
        result,
        info: rep.info.into_inner().unwrap(),
        warn: rep.warn.into_inner().unwrap(),
    }
}

type Trigger = Box<dyn Fn() + Send + Sync>;

/// A backend that records every write (in order) and can run a function just before the
/// N-th write (0-based) reaches the store, from the thread doing the write.
pub struct Counting {
    inner: Arc<dyn Backend>,
    writes: Mutex<Vec<Handle>>,
    trigger: Mutex<Option<(usize, Arc<Trigger>)>>,
}

impl Counting {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            writes: Mutex::new(Vec::new()),
            trigger: Mutex::new(None),
        })
    }

    /// Runs `f` before write number `n` of from now on (counting starts again at 0).
    pub fn at_write(&self, n: usize, f: Trigger) {
        self.writes.lock().unwrap().clear();
        *self.trigger.lock().unwrap() = Some((n, Arc::new(f)));
    }

    /// The writes since the last [`Counting::at_write`] (or since the start).
    pub fn writes(&self) -> Vec<Handle> {
        self.writes.lock().unwrap().clone()
    }

    fn count(&self, h: &Handle) {
        let n = {
            let mut w = self.writes.lock().unwrap();
            w.push(*h);
            w.len() - 1
        };
        let fire = match &*self.trigger.lock().unwrap() {
            Some((at, f)) if *at == n => Some(f.clone()),
            _ => None,
        };
        if let Some(f) = fire {
            f();
        }
    }
}

impl Backend for Counting {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> Result<(), BackendError> {
        self.inner.create()
    }
    fn read(&self, h: &Handle) -> Result<Vec<u8>, BackendError> {
        self.inner.read(h)
    }
    fn read_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        self.inner.read_range_into(h, offset, length, buf)
    }
    fn read_metadata_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        self.inner.read_metadata_range_into(h, offset, length, buf)
    }
    fn preferred_read_size(&self) -> u64 {
        self.inner.preferred_read_size()
    }
    fn lists_immediately(&self) -> bool {
        self.inner.lists_immediately()
    }
    fn write(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        self.count(h);
        self.inner.write(h, data)
    }
    fn write_metadata(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        self.count(h);
        self.inner.write_metadata(h, data)
    }
    fn stat(&self, h: &Handle) -> Result<u64, BackendError> {
        self.inner.stat(h)
    }
    fn remove(&self, h: &Handle) -> Result<(), BackendError> {
        self.inner.remove(h)
    }
    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, BackendError> {
        self.inner.list(t)
    }
    fn list_leftovers(&self) -> Result<Vec<Leftover>, BackendError> {
        self.inner.list_leftovers()
    }
    fn remove_leftover(&self, l: &Leftover) -> Result<(), BackendError> {
        self.inner.remove_leftover(l)
    }
}

/// Whether `r` is the error a cancelled operation returns.
pub fn is_interrupted<T>(r: &Result<T>) -> bool {
    matches!(r, Err(EngineError::Interrupted))
}

/// What a [`Tap`] runs after a write, with the store itself.
pub type Hook = Box<dyn FnOnce(&Arc<dyn Backend>) + Send>;

/// A memory store that records the listings and reads it serves (`list snapshots`,
/// `read index`, …) and can run a hook once, right after it stores a file of some type:
/// another process acting at that moment.
pub struct Tap {
    /// The store.
    pub inner: MemoryBackend,
    ops: Mutex<Vec<String>>,
    hook: Mutex<Option<(FileType, Hook)>>,
    me: std::sync::Weak<Tap>,
}

impl Tap {
    /// A tap on a new repository of `version` (the [`new_repo`] it was made with is
    /// dropped: open it again with [`open`]).
    pub fn new_repo(version: u32) -> Arc<Tap> {
        let (mem, _) = new_repo(version);
        let inner = Arc::try_unwrap(mem).unwrap_or_else(|_| panic!("the store has one owner"));
        Arc::new_cyclic(|me| Tap {
            inner,
            ops: Mutex::new(Vec::new()),
            hook: Mutex::new(None),
            me: me.clone(),
        })
    }

    /// The operations served since the last call.
    pub fn take_ops(&self) -> Vec<String> {
        std::mem::take(&mut *self.ops.lock().unwrap())
    }

    /// Runs `hook` once, right after the next file of type `t` is stored.
    pub fn after_write(&self, t: FileType, hook: Hook) {
        *self.hook.lock().unwrap() = Some((t, hook));
    }

    fn note(&self, op: &str, t: FileType) {
        self.ops.lock().unwrap().push(format!("{op} {}", t.dir()));
    }
}

impl Backend for Tap {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> std::result::Result<(), BackendError> {
        self.inner.create()
    }
    fn read(&self, h: &Handle) -> std::result::Result<Vec<u8>, BackendError> {
        self.note("read", h.file_type());
        self.inner.read(h)
    }
    fn read_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> std::result::Result<(), BackendError> {
        self.note("read", h.file_type());
        self.inner.read_range_into(h, offset, length, buf)
    }
    fn write(&self, h: &Handle, data: &[u8]) -> std::result::Result<(), BackendError> {
        self.inner.write(h, data)?;
        let hook = {
            let mut slot = self.hook.lock().unwrap();
            match &*slot {
                Some((t, _)) if *t == h.file_type() => slot.take().map(|(_, f)| f),
                _ => None,
            }
        };
        if let (Some(hook), Some(me)) = (hook, self.me.upgrade()) {
            let me: Arc<dyn Backend> = me;
            hook(&me);
        }
        Ok(())
    }
    fn stat(&self, h: &Handle) -> std::result::Result<u64, BackendError> {
        self.inner.stat(h)
    }
    fn remove(&self, h: &Handle) -> std::result::Result<(), BackendError> {
        self.inner.remove(h)
    }
    fn list(&self, t: FileType) -> std::result::Result<Vec<FileInfo>, BackendError> {
        self.note("list", t);
        self.inner.list(t)
    }
    fn list_group(
        &self,
        t: FileType,
        group: &str,
    ) -> std::result::Result<Vec<FileInfo>, BackendError> {
        self.note("list-group", t);
        self.inner.list_group(t, group)
    }
}
