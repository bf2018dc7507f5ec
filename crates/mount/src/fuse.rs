//! The kernel's side: FUSE requests answered from a [`MountModel`], on several threads so
//! that a slow fetch of one blob does not hold up every other request.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, Request, SessionACL,
};

use crate::model::{Attr, DirEntry, FileKind, MountModel};
use crate::MountError;

/// Threads answering the kernel. Each can wait for a blob or tree at a time; restic's
/// mount serves every request on its own goroutine.
const THREADS: usize = 8;

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
    // Listings of open directories by handle: made once per opendir, not per readdir
    // batch (a directory of 100,000 entries takes hundreds of batches).
    dirs: Mutex<HashMap<u64, Arc<Vec<DirEntry>>>>,
    next_fh: AtomicU64,
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

    // A directory's entries with `.` and `..` first, as the kernel gets them.
    fn listing(&self, ino: u64) -> crate::Result<Vec<DirEntry>> {
        let entries = self.model.readdir(ino)?;
        let parent = self.model.parent(ino)?;
        let mut all = Vec::with_capacity(entries.len() + 2);
        all.push((ino, FileKind::Dir, b".".to_vec()));
        all.push((parent, FileKind::Dir, b"..".to_vec()));
        all.extend(entries);
        Ok(all)
    }
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.model.lookup(parent.0, name.as_bytes()) {
            Ok(a) => reply.entry(&a.ttl, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(self.errno(&format!("lookup {name:?}"), e)),
        }
    }

    // fuser's default `batch_forget` comes here for each inode of the batch (its
    // `ForgetOne` is not exported, so it cannot be overridden).
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.model.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.model.attr(ino.0) {
            Ok(a) => reply.attr(&a.ttl, &file_attr(&a)),
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

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.listing(ino.0) {
            Ok(l) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                crate::lock(&self.dirs).insert(fh, Arc::new(l));
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(self.errno("opendir", e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let open = crate::lock(&self.dirs).get(&fh.0).cloned();
        let listing = match open {
            Some(l) => l,
            // Not opened through opendir (the kernel always does): list it now.
            None => match self.listing(ino.0) {
                Ok(l) => Arc::new(l),
                Err(e) => return reply.error(self.errno("readdir", e)),
            },
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (child, kind, name)) in listing.iter().enumerate().skip(start) {
            if reply.add(
                INodeNo(*child),
                i as u64 + 1,
                file_type(*kind),
                OsStr::from_bytes(name),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        crate::lock(&self.dirs).remove(&fh.0);
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
    cfg.n_threads = Some(THREADS);
    cfg.mount_options = vec![MountOption::RO, MountOption::FSName("restash".into())];
    if opts.allow_other {
        cfg.acl = SessionACL::All;
        // As restic: the kernel checks the stored permissions unless told not to.
        if !opts.no_default_permissions {
            cfg.mount_options.push(MountOption::DefaultPermissions);
        }
    }
    let fs = Fs {
        model,
        dirs: Mutex::new(HashMap::new()),
        next_fh: AtomicU64::new(1),
    };
    fuser::spawn_mount(fs, mountpoint, &cfg)
}
