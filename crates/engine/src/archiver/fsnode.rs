//! Nodes from `lstat`, exactly as restic 0.14 fills them, so that trees (and their ids)
//! match restic's for the same directory.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Mutex;

use chrono::{Offset, TimeZone};
use restash_format::{go_mode, ExtendedAttribute, GoTime, Node, NodeType};

use crate::whoami::lookup_name;

/// Go's `os.FileMode` for a Unix `st_mode`, masked as restic stores it.
pub fn go_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    m |= match st_mode & 0o170000 {
        0o060000 => go_mode::DEVICE,
        0o020000 => go_mode::DEVICE | go_mode::CHAR_DEVICE,
        0o040000 => go_mode::DIR,
        0o010000 => go_mode::NAMED_PIPE,
        0o120000 => go_mode::SYMLINK,
        0o140000 => go_mode::SOCKET,
        _ => 0,
    };
    if st_mode & 0o4000 != 0 {
        m |= go_mode::SETUID;
    }
    if st_mode & 0o2000 != 0 {
        m |= go_mode::SETGID;
    }
    if st_mode & 0o1000 != 0 {
        m |= go_mode::STICKY;
    }
    m
}

/// A time as restic writes it: in the local zone at that instant (TZ), nanoseconds kept.
pub fn local_time(secs: i64, nanos: i64) -> GoTime {
    let nanos = nanos.clamp(0, 999_999_999) as u32;
    let offset = chrono::DateTime::from_timestamp(secs, nanos)
        .map(|utc| {
            chrono::Local
                .offset_from_utc_datetime(&utc.naive_utc())
                .fix()
                .local_minus_utc()
        })
        .unwrap_or(0);
    GoTime::from_unix(secs, nanos, offset).unwrap_or_else(GoTime::zero)
}

/// Builds nodes and caches uid/gid → name look-ups.
#[derive(Default)]
pub struct NodeMaker {
    users: Mutex<HashMap<u32, String>>,
    groups: Mutex<HashMap<u32, String>>,
    with_atime: bool,
    /// Attributes that could not be read, for the backup's warnings.
    warnings: Mutex<Vec<String>>,
}

impl NodeMaker {
    /// `with_atime`: record the real atime (`--with-atime`); restic stores the mtime
    /// otherwise.
    pub fn new(with_atime: bool) -> Self {
        NodeMaker {
            with_atime,
            ..NodeMaker::default()
        }
    }

    /// The warnings gathered so far (extended attributes that could not be read).
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn name_of(cache: &Mutex<HashMap<u32, String>>, file: &str, id: u32) -> String {
        let mut c = cache.lock().expect("name cache");
        c.entry(id)
            .or_insert_with(|| lookup_name(file, id).unwrap_or_default())
            .clone()
    }

    /// The node for `path` (already `lstat`ed as `meta`), named `name`. Content and
    /// subtree are left for the caller.
    ///
    /// A symlink whose target cannot be read is an error for that entry (as restic's
    /// `Readlink` error): storing it with an empty target would pass wrong data off as
    /// the link.
    pub fn node(&self, path: &Path, name: &[u8], meta: &Metadata) -> Result<Node, String> {
        let ft = meta.file_type();
        let node_type = if ft.is_file() {
            NodeType::File
        } else if ft.is_dir() {
            NodeType::Dir
        } else if ft.is_symlink() {
            NodeType::Symlink
        } else if ft.is_block_device() {
            NodeType::Dev
        } else if ft.is_char_device() {
            NodeType::CharDev
        } else if ft.is_fifo() {
            NodeType::Fifo
        } else {
            NodeType::Socket
        };
        let mtime = local_time(meta.mtime(), meta.mtime_nsec());
        let atime = if self.with_atime {
            local_time(meta.atime(), meta.atime_nsec())
        } else {
            mtime
        };
        let links = match node_type {
            NodeType::File | NodeType::Symlink | NodeType::Dev | NodeType::CharDev => meta.nlink(),
            _ => 0,
        };
        let mut node = Node {
            name: name.to_vec(),
            mode: go_mode(meta.mode()),
            mtime,
            atime,
            ctime: local_time(meta.ctime(), meta.ctime_nsec()),
            uid: meta.uid(),
            gid: meta.gid(),
            user: Self::name_of(&self.users, "/etc/passwd", meta.uid()),
            group: Self::name_of(&self.groups, "/etc/group", meta.gid()),
            inode: meta.ino(),
            device_id: meta.dev(),
            size: if node_type == NodeType::File {
                meta.len()
            } else {
                0
            },
            links,
            device: match node_type {
                NodeType::Dev | NodeType::CharDev => meta.rdev(),
                _ => 0,
            },
            content: None,
            node_type,
            ..Node::default()
        };
        if node.node_type == NodeType::Symlink {
            let t = std::fs::read_link(path)
                .map_err(|e| format!("{}: readlink: {e}", path.display()))?;
            node.linktarget = String::from_utf8_lossy(t.as_os_str().as_bytes()).into_owned();
        } else {
            node.extended_attributes = xattrs(path, &self.warnings)?;
        }
        Ok(node)
    }
}

/// Whether an xattr error only means "none here": the file system has no xattrs
/// (`ENOTSUP`), or the attribute vanished between list and get (`ENODATA`), as restic's
/// `handleXattrErr`.
fn no_xattr(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == rustix::io::Errno::NOTSUP.raw_os_error()
            || code == rustix::io::Errno::NODATA.raw_os_error()
    )
}

/// The extended attributes of `path`, as restic 0.14 reads them: a list that fails is an
/// error for the entry; an attribute that cannot be read is left out and named in
/// `warnings`.
fn xattrs(path: &Path, warnings: &Mutex<Vec<String>>) -> Result<Vec<ExtendedAttribute>, String> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if no_xattr(&e) => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: listxattr: {e}", path.display())),
    };
    let mut out = Vec::new();
    for name in names {
        match xattr::get(path, &name) {
            Ok(Some(value)) => out.push(ExtendedAttribute {
                name: name.to_string_lossy().into_owned(),
                value,
            }),
            Ok(None) => {}
            Err(e) if no_xattr(&e) => {}
            Err(e) => warnings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!(
                    "{}: extended attribute {} left out: {e}",
                    path.display(),
                    name.to_string_lossy()
                )),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_mode_values() {
        assert_eq!(go_mode(0o100644), 420);
        assert_eq!(go_mode(0o104755), 8389101);
        assert_eq!(go_mode(0o040755), 2147484141);
        assert_eq!(go_mode(0o041777), 2148532735);
        assert_eq!(go_mode(0o120777), 134218239);
        assert_eq!(go_mode(0o060644), 67109284);
        assert_eq!(go_mode(0o020644), 69206436);
        assert_eq!(go_mode(0o010644), 33554852);
        assert_eq!(go_mode(0o140755), 16777709);
    }
}
