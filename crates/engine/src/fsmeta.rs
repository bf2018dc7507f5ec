//! Creating restored entries safely and giving them their metadata back.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use restash_format::{GoTime, Node, NodeType};
use rustix::fs::{AtFlags, Mode, Timespec, Timestamps, CWD};

use crate::{EngineError, Result};

/// Refuses node names that could escape the restore target or that no file system allows.
pub fn check_name(node: &Node) -> std::result::Result<(), String> {
    let n = &node.name;
    if n.is_empty() || n == b"." || n == b".." || n.contains(&b'/') || n.contains(&0) {
        return Err(format!(
            "refusing to restore node with invalid name {:?}",
            node.display_name()
        ));
    }
    Ok(())
}

/// Creates directories below the target, refusing to go through anything that is not a
/// real directory (a symlink planted in the target must never redirect writes).
#[derive(Default)]
pub struct DirMaker {
    // Directory → whether this run made it: nothing in it comes from before the restore,
    // so what goes in need not be checked against existing entries.
    made: HashMap<PathBuf, bool>,
    dry_run: bool,
    replace: bool,
}

impl DirMaker {
    /// A maker below `root`, which `root_new` says this run created. With `dry_run` nothing
    /// is made, only looked at; with `replace` a non-directory in the way of a directory is
    /// removed (restic does so with `--delete`) instead of refused.
    pub fn new(root: &Path, root_new: bool, dry_run: bool, replace: bool) -> DirMaker {
        DirMaker {
            made: HashMap::from([(root.to_path_buf(), root_new)]),
            dry_run,
            replace,
        }
    }

    /// Ensures every component of `rel` below `root` is a real directory; returns whether
    /// the last one is new (made by this run, or in a dry run not there yet).
    pub fn ensure(&mut self, root: &Path, rel: &Path) -> Result<bool> {
        // Called for every restored file: the usual case, a parent already made, is one
        // look-up instead of one per path component.
        let full = root.join(rel);
        if let Some(new) = self.made.get(&full) {
            return Ok(*new);
        }
        let mut p = root.to_path_buf();
        let mut new = self.made.get(root).copied().unwrap_or(false);
        for comp in rel.components() {
            p.push(comp);
            if let Some(n) = self.made.get(&p) {
                new = *n;
                continue;
            }
            new = (new && self.dry_run) || self.make(&p)?;
            self.made.insert(p.clone(), new);
        }
        Ok(new)
    }

    fn make(&self, p: &Path) -> Result<bool> {
        let refuse = || EngineError::Io {
            context: format!(
                "refusing to restore into {}: it exists and is not a directory",
                p.display()
            ),
            source: std::io::Error::from(ErrorKind::AlreadyExists),
        };
        if self.dry_run {
            return match fs::symlink_metadata(p) {
                Ok(m) if m.is_dir() => Ok(false),
                Ok(_) if self.replace => Ok(true),
                Ok(_) => Err(refuse()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(true),
                Err(e) => Err(EngineError::io(format!("stat {}", p.display()))(e)),
            };
        }
        match fs::create_dir(p) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let meta = fs::symlink_metadata(p)
                    .map_err(EngineError::io(format!("stat {}", p.display())))?;
                if meta.file_type().is_dir() {
                    return Ok(false);
                }
                if !self.replace {
                    return Err(refuse());
                }
                fs::remove_file(p).map_err(EngineError::io(format!("remove {}", p.display())))?;
                fs::create_dir(p).map_err(EngineError::io(format!("mkdir {}", p.display())))?;
            }
            Err(e) => return Err(EngineError::io(format!("mkdir {}", p.display()))(e)),
        }
        // Owner-writable until the final metadata pass, whatever the stored mode.
        let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
        Ok(true)
    }
}

/// Removes a non-directory entry at `path` so that a restored entry can take its place.
pub fn clear_path(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(EngineError::Io {
            context: format!("cannot replace directory {}", path.display()),
            source: std::io::Error::from(ErrorKind::AlreadyExists),
        }),
        Ok(_) => {
            fs::remove_file(path).map_err(EngineError::io(format!("remove {}", path.display())))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::Io {
            context: format!("stat {}", path.display()),
            source: e,
        }),
    }
}

/// Removes whatever is at `path` so that a restored entry can take its place; a directory
/// only when it is empty, or with everything in it when `dirs` allows (restic `--delete`).
pub fn remove_entry(path: &Path, dirs: bool) -> Result<()> {
    let r = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() && dirs => fs::remove_dir_all(path),
        Ok(m) if m.is_dir() => fs::remove_dir(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => return Err(EngineError::io(format!("stat {}", path.display()))(e)),
    };
    r.map_err(EngineError::io(format!("remove {}", path.display())))
}

/// Opens an existing regular file for writing in place (parts of it already hold the
/// restored content), refusing a symlink or a file with other hard links, which writing
/// would change too.
pub fn open_in_place(path: &Path) -> Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let open = || {
        fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
    };
    let f = match open() {
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            // A read-only file from an earlier restore: its mode is set again afterwards.
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                .map_err(EngineError::io(format!("chmod {}", path.display())))?;
            open()
        }
        r => r,
    }
    .map_err(EngineError::io(format!("open {}", path.display())))?;
    let m = f
        .metadata()
        .map_err(EngineError::io(format!("stat {}", path.display())))?;
    if !m.is_file() || m.nlink() > 1 {
        return Err(EngineError::Io {
            context: format!(
                "{}: changed while restoring, it is no longer a single regular file",
                path.display()
            ),
            source: std::io::Error::from(ErrorKind::AlreadyExists),
        });
    }
    Ok(f)
}

/// Opens a regular file for writing without following a symlink at its place; a symlink
/// there is replaced.
pub fn open_for_write(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = || {
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
    };
    match open() {
        Ok(f) => Ok(f),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            clear_path(path)?;
            open().map_err(EngineError::io(format!("create {}", path.display())))
        }
        Err(e) => Err(EngineError::io(format!("create {}", path.display()))(e)),
    }
}

fn timespec(t: &GoTime) -> Timespec {
    Timespec {
        tv_sec: t.unix_secs(),
        tv_nsec: t.nanos() as _,
    }
}

fn errno(ctx: String) -> impl FnOnce(rustix::io::Errno) -> EngineError {
    move |e| EngineError::io(ctx)(std::io::Error::from(e))
}

/// Creates a fifo or device node.
pub fn make_special(path: &Path, node: &Node) -> Result<()> {
    clear_path(path)?;
    let (ft, dev) = match node.node_type {
        NodeType::Fifo => (rustix::fs::FileType::Fifo, 0),
        NodeType::Dev => (rustix::fs::FileType::BlockDevice, node.device),
        NodeType::CharDev => (rustix::fs::FileType::CharacterDevice, node.device),
        _ => unreachable!("only special files are made here"),
    };
    rustix::fs::mknodat(CWD, path, ft, Mode::from_raw_mode(0o600), dev)
        .map_err(errno(format!("mknod {}", path.display())))
}

/// Creates a symlink to `target` (replacing a non-directory entry).
pub fn make_symlink(path: &Path, target: &[u8]) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    clear_path(path)?;
    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), path)
        .map_err(EngineError::io(format!("symlink {}", path.display())))
}

/// The metadata a restored entry gets back: what [`apply`] needs of a node, and no more,
/// so that a plan for millions of files stays small.
#[derive(Debug, Clone)]
pub struct Meta {
    symlink: bool,
    perms: u32,
    uid: u32,
    gid: u32,
    atime: Timespec,
    mtime: Timespec,
    xattrs: Box<[restash_format::ExtendedAttribute]>,
}

impl Meta {
    /// Takes the metadata of `node`.
    pub fn of(node: &Node) -> Meta {
        Meta {
            symlink: node.node_type == NodeType::Symlink,
            perms: node.unix_permissions(),
            uid: node.uid,
            gid: node.gid,
            atime: timespec(&node.atime),
            mtime: timespec(&node.mtime),
            xattrs: node.extended_attributes.clone().into_boxed_slice(),
        }
    }
}

/// Gives a restored entry its owner, mode, extended attributes and times, in that order
/// (chown clears setuid bits, and every change but the times touches ctime/mtime).
/// Uses the open file when there is one. Returns the problems, which do not stop a restore.
pub fn apply(path: &Path, file: Option<&File>, node: &Meta, owners: bool) -> Vec<String> {
    let mut errs = Vec::new();
    let symlink = node.symlink;
    let show = path.display();
    if owners {
        let (uid, gid) = (Some(node.uid), Some(node.gid));
        let r = match file {
            Some(f) => std::os::unix::fs::fchown(f, uid, gid),
            None => std::os::unix::fs::lchown(path, uid, gid),
        };
        if let Err(e) = r {
            errs.push(format!("failed to restore owner of {show}: {e}"));
        }
    }
    if !symlink {
        let mode = Mode::from_raw_mode(node.perms);
        let r = match file {
            Some(f) => rustix::fs::fchmod(f, mode),
            None => rustix::fs::chmodat(CWD, path, mode, AtFlags::empty()),
        };
        if let Err(e) = r {
            errs.push(format!("failed to restore mode of {show}: {e}"));
        }
        for a in node.xattrs.iter() {
            let r = match file {
                Some(f) => xattr::FileExt::set_xattr(f, &a.name, &a.value),
                None => xattr::set(path, &a.name, &a.value),
            };
            if let Err(e) = r {
                errs.push(format!(
                    "failed to restore extended attribute {} of {show}: {e}",
                    a.name
                ));
            }
        }
    }
    let times = Timestamps {
        last_access: node.atime,
        last_modification: node.mtime,
    };
    let r = match file {
        Some(f) => rustix::fs::futimens(f, &times),
        None => rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW),
    };
    if let Err(e) = r {
        errs.push(format!("failed to restore timestamps of {show}: {e}"));
    }
    errs
}
