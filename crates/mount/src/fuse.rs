//! The kernel's side: FUSE requests answered from a [`MountModel`].

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, Generation,
    INodeNo, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry,
    Request, SessionACL,
};

use crate::model::{Attr, FileKind, MountModel};
use crate::MountError;

/// restic's mount options.
#[derive(Debug, Clone, Copy, Default)]
pub struct MountOptions {
    /// `--allow-other`: other users may use the mount.
    pub allow_other: bool,
    /// `--no-default-permissions`: with `allow_other`, the kernel does not check the
    /// stored permissions.
    pub no_default_permissions: bool,
}

struct Fs {
    model: Arc<MountModel>,
}

fn file_type(k: FileKind) -> FileType {
    match k {
        FileKind::Dir => FileType::Directory,
        FileKind::File => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Block => FileType::BlockDevice,
        FileKind::Char => FileType::CharDevice,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        flags: 0,
        blksize: 512,
    }
}

impl Fs {
    // Damage and I/O failures are told to the user, never turned into data.
    fn errno(&self, what: &str, e: MountError) -> Errno {
        if e.is_io() {
            self.model.warn(&format!("{what}: {e}"));
            return Errno::EIO;
        }
        match e {
            MountError::NotFound => Errno::ENOENT,
            MountError::NotDir => Errno::ENOTDIR,
            _ => Errno::EINVAL,
        }
    }

    fn ttl(&self, ino: u64) -> std::time::Duration {
        match self.model.kind(ino) {
            Ok(k) => self.model.ttl(&k),
            Err(_) => std::time::Duration::ZERO,
        }
    }
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.model.lookup(parent.0, name.as_bytes()) {
            Ok(a) => reply.entry(&self.ttl(a.ino), &file_attr(&a), Generation(0)),
            Err(e) => reply.error(self.errno(&format!("lookup {name:?}"), e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.model.attr(ino.0) {
            Ok(a) => reply.attr(&self.ttl(ino.0), &file_attr(&a)),
            Err(e) => reply.error(self.errno("getattr", e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.model.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(self.errno("readlink", e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.model.read(ino.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(self.errno(&format!("read inode {}", ino.0), e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.model.readdir(ino.0) {
            Ok(e) => e,
            Err(e) => return reply.error(self.errno("readdir", e)),
        };
        let parent = self.model.parent(ino.0).unwrap_or(ino.0);
        let dots = [
            (ino.0, FileKind::Dir, b".".to_vec()),
            (parent, FileKind::Dir, b"..".to_vec()),
        ];
        for (i, (child, kind, name)) in dots
            .into_iter()
            .chain(entries)
            .enumerate()
            .skip(offset as usize)
        {
            if reply.add(
                INodeNo(child),
                i as u64 + 1,
                file_type(kind),
                OsStr::from_bytes(&name),
            ) {
                break;
            }
        }
        reply.ok();
    }
}

/// Mounts `model` at `mountpoint` on a background thread; dropping the session unmounts.
pub fn spawn(
    model: Arc<MountModel>,
    mountpoint: &Path,
    opts: MountOptions,
) -> std::io::Result<BackgroundSession> {
    let mut cfg = Config::default();
    cfg.mount_options = vec![MountOption::RO, MountOption::FSName("restash".into())];
    if opts.allow_other {
        cfg.acl = SessionACL::All;
        // As restic: the kernel checks the stored permissions unless told not to.
        if !opts.no_default_permissions {
            cfg.mount_options.push(MountOption::DefaultPermissions);
        }
    }
    fuser::spawn_mount(Fs { model }, mountpoint, &cfg)
}
