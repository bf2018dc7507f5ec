//! Tree comparator: walks two trees without following symlinks and lists every difference.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Which differences count. [`CompareOptions::default`] is fully strict; every relaxation
/// below exists because restic itself (the reference) cannot do better.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Compare the metadata of the two roots themselves. Off when `b` is a restore target
    /// whose own directory is not part of the snapshot (e.g. `restore latest:sub`).
    pub root_metadata: bool,
    /// Compare `user.*` xattrs. Off only when the file system refused xattrs.
    pub xattrs: bool,
    /// Relative paths left out of the comparison together with everything below them.
    pub skip: Vec<PathBuf>,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            root_metadata: true,
            xattrs: true,
            skip: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    /// Permission bits including setuid, setgid and sticky.
    perm: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    sha256: Option<[u8; 32]>,
    target: Option<PathBuf>,
    rdev: u64,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    inode: (u64, u64),
}

/// Path as shown in reports: Debug escapes newlines, tabs and invalid UTF-8.
struct Shown<'a>(&'a Path);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.as_os_str().is_empty() {
            f.write_str("<root>")
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

fn sha256_file(path: &Path) -> Result<[u8; 32], String> {
    let mut f = File::open(path).map_err(|e| format!("open {path:?}: {e}"))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("read {path:?}: {e}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// `user.*` xattrs of `path` itself; other namespaces belong to the system (security.*,
/// trusted.*, system.posix_acl_*) and are not what restic's user-facing backup promises.
pub fn user_xattrs(path: &Path) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let mut out = BTreeMap::new();
    let names = match xattr::list(path) {
        Ok(names) => names,
        // Some file systems refuse xattr calls on special files; that means "none".
        Err(e) if rustix::io::Errno::from_io_error(&e) == Some(rustix::io::Errno::NOTSUP) => {
            return Ok(out)
        }
        Err(e) => return Err(format!("listxattr {path:?}: {e}")),
    };
    for name in names {
        if !name.as_bytes().starts_with(b"user.") {
            continue;
        }
        let value = xattr::get(path, &name)
            .map_err(|e| format!("getxattr {name:?} {path:?}: {e}"))?
            .unwrap_or_default();
        out.insert(name.as_bytes().to_vec(), value);
    }
    Ok(out)
}

fn read_entry(path: &Path, opts: &CompareOptions) -> Result<Entry, String> {
    let md = fs::symlink_metadata(path).map_err(|e| format!("lstat {path:?}: {e}"))?;
    let ft = md.file_type();
    let kind = if ft.is_file() {
        Kind::File
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_char_device() {
        Kind::CharDevice
    } else if ft.is_block_device() {
        Kind::BlockDevice
    } else if ft.is_socket() {
        Kind::Socket
    } else {
        return Err(format!("{path:?}: unknown file type {ft:?}"));
    };
    Ok(Entry {
        kind,
        perm: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        size: md.size(),
        mtime: (md.mtime(), md.mtime_nsec()),
        sha256: if kind == Kind::File {
            Some(sha256_file(path)?)
        } else {
            None
        },
        target: if kind == Kind::Symlink {
            Some(fs::read_link(path).map_err(|e| format!("readlink {path:?}: {e}"))?)
        } else {
            None
        },
        rdev: md.rdev(),
        xattrs: if opts.xattrs {
            user_xattrs(path)?
        } else {
            BTreeMap::new()
        },
        inode: (md.dev(), md.ino()),
    })
}

/// All entries below `root` (the root itself under the empty path), keyed by relative path.
fn scan(root: &Path, opts: &CompareOptions) -> Result<BTreeMap<PathBuf, Entry>, String> {
    fn walk(
        root: &Path,
        rel: &Path,
        opts: &CompareOptions,
        out: &mut BTreeMap<PathBuf, Entry>,
    ) -> Result<(), String> {
        let abs = root.join(rel);
        let entry = read_entry(&abs, opts)?;
        let is_dir = entry.kind == Kind::Dir;
        out.insert(rel.to_path_buf(), entry);
        if is_dir {
            let dir = fs::read_dir(&abs).map_err(|e| format!("read_dir {abs:?}: {e}"))?;
            for child in dir {
                let child = child.map_err(|e| format!("read_dir {abs:?}: {e}"))?;
                let child_rel = rel.join(child.file_name());
                if opts.skip.iter().any(|s| child_rel.starts_with(s)) {
                    continue;
                }
                walk(root, &child_rel, opts, out)?;
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), opts, &mut out)?;
    Ok(out)
}

/// For every non-directory path, the other paths in the tree sharing its inode.
fn link_groups(entries: &BTreeMap<PathBuf, Entry>) -> BTreeMap<&Path, BTreeSet<&Path>> {
    let mut by_inode: BTreeMap<(u64, u64), BTreeSet<&Path>> = BTreeMap::new();
    for (path, e) in entries {
        if e.kind != Kind::Dir {
            by_inode.entry(e.inode).or_default().insert(path);
        }
    }
    let mut out = BTreeMap::new();
    for group in by_inode.values() {
        for &p in group {
            let others: BTreeSet<&Path> = group.iter().copied().filter(|&o| o != p).collect();
            out.insert(p, others);
        }
    }
    out
}

fn fmt_time((s, ns): (i64, i64)) -> String {
    format!("{s}.{ns:09}")
}

fn compare_entry(
    path: &Path,
    a: &Entry,
    b: &Entry,
    opts: &CompareOptions,
    diffs: &mut Vec<String>,
) {
    let p = Shown(path);
    if a.kind != b.kind {
        diffs.push(format!("{p}: type {:?} != {:?}", a.kind, b.kind));
        return;
    }
    if path.as_os_str().is_empty() && !opts.root_metadata {
        return;
    }
    if a.perm != b.perm {
        diffs.push(format!("{p}: mode {:04o} != {:04o}", a.perm, b.perm));
    }
    if (a.uid, a.gid) != (b.uid, b.gid) {
        diffs.push(format!(
            "{p}: owner {}:{} != {}:{}",
            a.uid, a.gid, b.uid, b.gid
        ));
    }
    // Directory sizes depend on the file system's history, not on the content.
    if a.kind == Kind::File && a.size != b.size {
        diffs.push(format!("{p}: size {} != {}", a.size, b.size));
    } else if a.sha256 != b.sha256 {
        diffs.push(format!(
            "{p}: content sha256 {} != {}",
            hex::encode(a.sha256.unwrap_or_default()),
            hex::encode(b.sha256.unwrap_or_default())
        ));
    }
    if a.target != b.target {
        diffs.push(format!(
            "{p}: symlink target {:?} != {:?}",
            a.target, b.target
        ));
    }
    if matches!(a.kind, Kind::CharDevice | Kind::BlockDevice) && a.rdev != b.rdev {
        diffs.push(format!("{p}: device {:#x} != {:#x}", a.rdev, b.rdev));
    }
    if a.mtime != b.mtime {
        diffs.push(format!(
            "{p}: mtime {} != {}",
            fmt_time(a.mtime),
            fmt_time(b.mtime)
        ));
    }
    if opts.xattrs && a.xattrs != b.xattrs {
        let show = |x: &BTreeMap<Vec<u8>, Vec<u8>>| {
            x.iter()
                .map(|(k, v)| {
                    format!(
                        "{}={:?}",
                        String::from_utf8_lossy(k),
                        String::from_utf8_lossy(v)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        diffs.push(format!(
            "{p}: xattrs {{{}}} != {{{}}}",
            show(&a.xattrs),
            show(&b.xattrs)
        ));
    }
}

/// Compares the trees at `a` and `b` strictly: file type, size, content, permission bits
/// (with setuid/setgid/sticky), owner, mtime to the nanosecond (also of symlinks and
/// directories), symlink targets, device numbers, `user.*` xattrs and hard-link groups.
/// atime and ctime are never compared: reading and restoring necessarily change them.
pub fn compare_trees(a: &Path, b: &Path) -> Result<(), Vec<String>> {
    compare_trees_with(a, b, &CompareOptions::default())
}

/// [`compare_trees`] with relaxations; see [`CompareOptions`].
pub fn compare_trees_with(a: &Path, b: &Path, opts: &CompareOptions) -> Result<(), Vec<String>> {
    let ea = scan(a, opts).map_err(|e| vec![format!("scanning a ({a:?}): {e}")])?;
    let eb = scan(b, opts).map_err(|e| vec![format!("scanning b ({b:?}): {e}")])?;
    let mut diffs = Vec::new();
    for (path, x) in &ea {
        match eb.get(path) {
            Some(y) => compare_entry(path, x, y, opts, &mut diffs),
            None => diffs.push(format!("{}: only in a ({:?})", Shown(path), x.kind)),
        }
    }
    for (path, y) in &eb {
        if !ea.contains_key(path) {
            diffs.push(format!("{}: only in b ({:?})", Shown(path), y.kind));
        }
    }
    let (ga, gb) = (link_groups(&ea), link_groups(&eb));
    for (path, la) in &ga {
        if let Some(lb) = gb.get(path) {
            if la != lb {
                let show = |s: &BTreeSet<&Path>| {
                    s.iter()
                        .map(|p| Shown(p).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                diffs.push(format!(
                    "{}: hard links [{}] != [{}]",
                    Shown(path),
                    show(la),
                    show(lb)
                ));
            }
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs)
    }
}

/// The first `max` differences, indented one per line, and how many more there are; deep
/// trees can differ in thousands of entries, which would drown the first, telling ones.
pub fn summarize(diffs: &[String], max: usize) -> String {
    let mut out = String::new();
    for d in diffs.iter().take(max) {
        out.push_str("\n  ");
        out.push_str(d);
    }
    if diffs.len() > max {
        out.push_str(&format!("\n  … and {} more", diffs.len() - max));
    }
    out
}

/// Panics with the differences (the first 200) if the trees differ.
#[track_caller]
pub fn assert_trees_equal(a: &Path, b: &Path, opts: &CompareOptions) {
    if let Err(diffs) = compare_trees_with(a, b, opts) {
        panic!(
            "trees differ\n  a = {a:?}\n  b = {b:?}\n{} difference(s):{}",
            diffs.len(),
            summarize(&diffs, 200)
        );
    }
}
