//! Mounting for the end-to-end tests: whether FUSE is there, waiting for a mount, taking
//! it down if a test fails, and comparing a mounted tree with its source.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::backup::Background;

/// What mounting lacks here, if anything: the FUSE device and the setuid helper fuser runs.
/// (Callers report it through `servers::unavailable`, which fails the test under CI.)
pub fn fuse_missing() -> Option<&'static str> {
    let helper = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").is_file()))
        .unwrap_or(false);
    match (Path::new("/dev/fuse").exists(), helper) {
        (true, true) => None,
        (false, _) => Some("/dev/fuse is missing"),
        (true, false) => Some("fusermount3 is not in PATH"),
    }
}

// Every entry below `src` has its twin below `mounted`: type, permissions, owner, mtime,
// size, bytes and link targets. Returns how many entries were compared.
pub fn compare(src: &Path, mounted: &Path) -> usize {
    let mut n = 0;
    let mut names: Vec<_> = fs::read_dir(src)
        .expect("read source dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    let mut seen: Vec<_> = fs::read_dir(mounted)
        .unwrap_or_else(|e| panic!("read {mounted:?}: {e}"))
        .map(|e| e.expect("entry").file_name())
        .collect();
    seen.sort();
    assert_eq!(names, seen, "entries of {mounted:?}");
    for name in names {
        let (s, m) = (src.join(&name), mounted.join(&name));
        let (sm, mm) = (
            fs::symlink_metadata(&s).expect("source meta"),
            fs::symlink_metadata(&m).unwrap_or_else(|e| panic!("stat {m:?}: {e}")),
        );
        assert_eq!(sm.file_type(), mm.file_type(), "type of {m:?}");
        assert_eq!(sm.mode() & 0o7777, mm.mode() & 0o7777, "mode of {m:?}");
        assert_eq!((sm.uid(), sm.gid()), (mm.uid(), mm.gid()), "owner of {m:?}");
        assert_eq!(sm.mtime(), mm.mtime(), "mtime of {m:?}");
        n += 1;
        if sm.is_dir() {
            n += compare(&s, &m);
        } else if sm.file_type().is_symlink() {
            assert_eq!(
                fs::read_link(&s).ok(),
                fs::read_link(&m).ok(),
                "target of {m:?}"
            );
        } else {
            assert_eq!(sm.len(), mm.len(), "size of {m:?}");
            let (a, b) = (
                fs::read(&s).expect("read"),
                fs::read(&m).expect("read mounted"),
            );
            assert!(a == b, "bytes of {m:?} differ from the source");
        }
    }
    n
}

pub fn wait_for(what: &str, mount: &mut Background, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(mount.running(), "mount ended while waiting for {what}");
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn is_mounted(mnt: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let want = mnt.to_str().expect("utf-8 mountpoint");
    info.lines().any(|l| l.split(' ').nth(4) == Some(want))
}

// A failing test kills the mount process; the kernel would keep a dead mount.
pub struct Unmount<'a>(pub &'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        if is_mounted(self.0) {
            let _ = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(self.0)
                .status();
        }
    }
}
