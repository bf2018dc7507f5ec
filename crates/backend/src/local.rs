use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{is_leftover_name, Backend, BackendError, FileInfo, FileType, Handle, Id, Leftover};

/// A repository in a local directory, in restic's default layout (`data/ab/<id>`).
#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    /// A backend rooted at `root` (not created until [`Backend::create`]).
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend { root: root.into() }
    }

    fn path(&self, h: &Handle) -> PathBuf {
        let name = h.name();
        match h.file_type() {
            FileType::Config => self.root.join(name),
            t => match t.subdir(&name) {
                Some(sub) => self.root.join(t.dir()).join(sub).join(&name),
                None => self.root.join(t.dir()).join(name),
            },
        }
    }

    fn not_found(&self, h: &Handle, e: std::io::Error) -> BackendError {
        if e.kind() == ErrorKind::NotFound {
            if !self.root.exists() {
                return BackendError::NoRepository(self.root.display().to_string());
            }
            BackendError::NotFound(h.to_string())
        } else {
            BackendError::Io {
                context: format!("{}", self.path(h).display()),
                source: e,
            }
        }
    }

    fn list_dir(&self, dir: &Path, out: &mut Vec<FileInfo>) -> Result<(), BackendError> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(BackendError::io(dir.display().to_string())(e)),
        };
        for entry in entries {
            let entry = entry.map_err(BackendError::io(dir.display().to_string()))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| Id::parse(n).ok()) else {
                continue;
            };
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Removed between the directory read and now (another process's lock
                // going away): not in the listing, as restic's local backend has it.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(BackendError::io(entry.path().display().to_string())(e)),
            };
            if meta.is_file() {
                out.push(FileInfo {
                    id,
                    size: meta.len(),
                });
            }
        }
        Ok(())
    }
}

impl LocalBackend {
    /// Every directory a write may put a file in.
    fn write_dirs(&self) -> Result<Vec<PathBuf>, BackendError> {
        let mut dirs = Vec::new();
        for t in FileType::ALL {
            match t {
                FileType::Config => dirs.push(self.root.clone()),
                FileType::Pack => {
                    let data = self.root.join("data");
                    dirs.push(data.clone());
                    let subdirs = match fs::read_dir(&data) {
                        Ok(s) => s,
                        Err(e) if e.kind() == ErrorKind::NotFound => continue,
                        Err(e) => return Err(BackendError::io(data.display().to_string())(e)),
                    };
                    for sub in subdirs {
                        let sub = sub.map_err(BackendError::io(data.display().to_string()))?;
                        let kind = sub
                            .file_type()
                            .map_err(BackendError::io(sub.path().display().to_string()))?;
                        if kind.is_dir() {
                            dirs.push(sub.path());
                        }
                    }
                }
                t => dirs.push(self.root.join(t.dir())),
            }
        }
        Ok(dirs)
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Backend for LocalBackend {
    // A file is renamed into place before `write` returns, and directory listings see it.
    fn lists_immediately(&self) -> bool {
        true
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> Result<(), BackendError> {
        if self.path(&Handle::config()).exists() {
            return Err(BackendError::AlreadyExists(format!(
                "config file in {}",
                self.root.display()
            )));
        }
        let mk = |p: PathBuf| {
            fs::create_dir_all(&p).map_err(BackendError::io(format!("mkdir {}", p.display())))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o700))
                .map_err(BackendError::io(format!("chmod {}", p.display())))
        };
        mk(self.root.clone())?;
        for t in FileType::ALL {
            if t != FileType::Config {
                mk(self.root.join(t.dir()))?;
            }
        }
        for i in 0..=255u8 {
            mk(self.root.join("data").join(format!("{i:02x}")))?;
        }
        Ok(())
    }

    fn read(&self, h: &Handle) -> Result<Vec<u8>, BackendError> {
        fs::read(self.path(h)).map_err(|e| self.not_found(h, e))
    }

    // Reads cost no round trip here: smaller pieces keep restore's buffers small.
    fn preferred_read_size(&self) -> u64 {
        4 << 20
    }

    fn read_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        let f = File::open(self.path(h)).map_err(|e| self.not_found(h, e))?;
        // The length comes from an index or pack header: the file's size bounds it before
        // anything is allocated for it.
        let size = f.metadata().map_err(|e| self.not_found(h, e))?.len();
        if offset.checked_add(length).is_none_or(|end| end > size) {
            return Err(crate::short_read(h, offset, length, size));
        }
        buf.resize(length as usize, 0);
        match f.read_exact_at(buf, offset) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                Err(crate::short_read(h, offset, length, size))
            }
            Err(e) => Err(self.not_found(h, e)),
        }
    }

    fn write(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        let path = self.path(h);
        let dir = path.parent().expect("repository files live in a directory");
        if !dir.exists() {
            fs::create_dir_all(dir)
                .map_err(BackendError::io(format!("mkdir {}", dir.display())))?;
        }
        let tmp = dir.join(format!("{}-tmp-{:016x}", h.name(), rand::random::<u64>()));
        let ctx = || format!("write {}", path.display());
        let result = (|| -> std::io::Result<()> {
            let mut f = File::options().write(true).create_new(true).open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            drop(f);
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o400))?;
            // link() refuses to replace an existing file, which makes the write create-only
            // and atomic; rename would silently overwrite.
            match fs::hard_link(&tmp, &path) {
                Ok(()) => fs::remove_file(&tmp),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(e),
                Err(_) if !path.exists() => fs::rename(&tmp, &path),
                Err(e) => Err(e),
            }?;
            sync_dir(dir)
        })();
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                if e.kind() == ErrorKind::AlreadyExists {
                    Err(BackendError::AlreadyExists(h.to_string()))
                } else {
                    Err(BackendError::io(ctx())(e))
                }
            }
        }
    }

    fn stat(&self, h: &Handle) -> Result<u64, BackendError> {
        fs::metadata(self.path(h))
            .map(|m| m.len())
            .map_err(|e| self.not_found(h, e))
    }

    fn remove(&self, h: &Handle) -> Result<(), BackendError> {
        match fs::remove_file(self.path(h)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BackendError::io(format!("remove {h}"))(e)),
        }
    }

    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, BackendError> {
        if !self.root.is_dir() {
            return Err(BackendError::NoRepository(self.root.display().to_string()));
        }
        let mut out = Vec::new();
        match t {
            FileType::Config => {}
            FileType::Pack => {
                let data = self.root.join("data");
                // Flat files too: repositories from very old restic versions.
                self.list_dir(&data, &mut out)?;
                // A data/xx directory that cannot be listed would hide its packs from
                // check and repair: an error, not an empty listing.
                for dir in self
                    .write_dirs()?
                    .iter()
                    .filter(|d| d.parent() == Some(&data))
                {
                    self.list_dir(dir, &mut out)?;
                }
            }
            FileType::Hint => {
                let hints = self.root.join(t.dir());
                let groups = match fs::read_dir(&hints) {
                    Ok(g) => g,
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(BackendError::io(hints.display().to_string())(e)),
                };
                for g in groups {
                    let g = g.map_err(BackendError::io(hints.display().to_string()))?;
                    self.list_dir(&g.path(), &mut out)?;
                }
            }
            t => self.list_dir(&self.root.join(t.dir()), &mut out)?,
        }
        Ok(out)
    }

    fn list_group(&self, t: FileType, group: &str) -> Result<Vec<FileInfo>, BackendError> {
        let Some(sub) = t.subdir(group).filter(|s| s.len() == group.len()) else {
            return self.list(t).map(|files| crate::in_group(files, group));
        };
        if !self.root.is_dir() {
            return Err(BackendError::NoRepository(self.root.display().to_string()));
        }
        let mut out = Vec::new();
        self.list_dir(&self.root.join(t.dir()).join(sub), &mut out)?;
        Ok(out)
    }

    fn list_leftovers(&self) -> Result<Vec<Leftover>, BackendError> {
        if !self.root.is_dir() {
            return Err(BackendError::NoRepository(self.root.display().to_string()));
        }
        let mut out = Vec::new();
        for dir in self.write_dirs()? {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(BackendError::io(dir.display().to_string())(e)),
            };
            for entry in entries {
                let entry = entry.map_err(BackendError::io(dir.display().to_string()))?;
                let name = entry.file_name();
                let Some(name) = name.to_str().filter(|n| is_leftover_name(n)) else {
                    continue;
                };
                let meta = entry
                    .metadata()
                    .map_err(BackendError::io(entry.path().display().to_string()))?;
                if !meta.is_file() {
                    continue;
                }
                let rel = entry
                    .path()
                    .strip_prefix(&self.root)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| name.to_string());
                out.push(Leftover {
                    path: rel,
                    size: meta.len(),
                    modified: meta
                        .modified()
                        .map_err(BackendError::io(entry.path().display().to_string()))?,
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn remove_leftover(&self, leftover: &Leftover) -> Result<(), BackendError> {
        // Only a leftover's name in one of the repository's own directories: the path comes
        // from a listing, but a remove must never reach anything else. Checked on the path
        // itself, without listing the 256 data directories for every file.
        let parts: Vec<&str> = Path::new(&leftover.path)
            .components()
            .map(|c| match c {
                std::path::Component::Normal(p) => p.to_str().unwrap_or("/"),
                _ => "/",
            })
            .collect();
        let is_type_dir = |d: &str| FileType::ALL.iter().any(|t| t.dir() == d);
        let dir_ok = match parts.as_slice() {
            [_] => true,
            ["data", sub, _] => sub.len() == 2 && sub.bytes().all(|b| b.is_ascii_hexdigit()),
            [dir, _] => is_type_dir(dir),
            _ => false,
        };
        let name_ok = parts.last().is_some_and(|n| is_leftover_name(n));
        if !name_ok || !dir_ok {
            return Err(BackendError::NotFound(leftover.path.clone()));
        }
        let path = self.root.join(&leftover.path);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BackendError::io(format!("remove {}", path.display()))(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_backend_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let be = LocalBackend::new(dir.path().join("repo"));
        crate::conformance::run(&be).unwrap();
    }

    #[test]
    fn leftovers_of_unfinished_writes_are_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let be = LocalBackend::new(dir.path().join("repo"));
        be.create().unwrap();
        let id = Id([0xab; 32]);
        be.write(&Handle::new(FileType::Pack, id), b"pack").unwrap();
        let pack_tmp = format!("data/ab/{id}-tmp-0123456789abcdef");
        let snap_tmp = format!("snapshots/{id}-tmp-1");
        for p in [&pack_tmp, &snap_tmp, &"data/ab/not-a-leftover".to_string()] {
            fs::write(dir.path().join("repo").join(p), b"partial").unwrap();
        }
        let found = be.list_leftovers().unwrap();
        let paths: Vec<&str> = found.iter().map(|l| l.path.as_str()).collect();
        assert_eq!(paths, [pack_tmp.as_str(), snap_tmp.as_str()]);
        assert_eq!(found[0].size, 7);
        // The finished file is no leftover, and the leftovers are not listed as packs.
        assert_eq!(be.list(FileType::Pack).unwrap().len(), 1);

        let outside = Leftover {
            path: format!("../{id}-tmp-1"),
            ..found[0].clone()
        };
        assert!(be.remove_leftover(&outside).is_err());
        let not_tmp = Leftover {
            path: format!("data/ab/{id}"),
            ..found[0].clone()
        };
        assert!(be.remove_leftover(&not_tmp).is_err());
        for l in &found {
            be.remove_leftover(l).unwrap();
        }
        assert!(be.list_leftovers().unwrap().is_empty());
        assert_eq!(be.list(FileType::Pack).unwrap().len(), 1);
    }

    #[test]
    fn missing_repository_is_named() {
        let be = LocalBackend::new("/nonexistent/restash-test");
        assert!(matches!(
            be.read(&Handle::config()),
            Err(BackendError::NoRepository(_))
        ));
        assert!(matches!(
            be.list(FileType::Key),
            Err(BackendError::NoRepository(_))
        ));
    }
}
