//! Generator of a "tricky tree": every kind of file system object and metadata a backup tool
//! can get wrong, built deterministically so failures are reproducible.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};
use rustix::io::Errno;

const MIB: u64 = 1024 * 1024;

/// What [`make_tricky_tree`] managed to create, for tests that mutate or inspect it.
#[derive(Debug, Clone)]
pub struct TrickyTree {
    pub root: PathBuf,
    /// The file system accepted `user.*` xattrs.
    pub xattrs: bool,
    /// Character and block devices were created (root with CAP_MKNOD).
    pub devices: bool,
    /// A file owned by uid 1000 / gid 100 was created (root only).
    pub foreign_owner: bool,
    /// The name that is not UTF-8, relative to `root`.
    pub invalid_utf8_name: PathBuf,
}

/// Deterministic xorshift64* stream; the seed picks the content.
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Self {
        // A zero state would stay zero forever.
        Prng((seed ^ 0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Writes `len` bytes of seeded pseudo-random data to `path`.
pub fn write_random_file(path: &Path, len: u64, seed: u64) {
    let mut rng = Prng::new(seed);
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {path:?}: {e}"));
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).expect("write random data");
        left -= n as u64;
    }
}

fn write(path: &Path, data: &[u8]) {
    fs::write(path, data).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
}

fn mkdir(path: &Path) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {path:?}: {e}"));
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {path:?}: {e}"));
}

fn ln_s(target: &str, link: &Path) {
    symlink(target, link).unwrap_or_else(|e| panic!("symlink {link:?} -> {target}: {e}"));
}

fn ln(existing: &Path, new: &Path) {
    fs::hard_link(existing, new).unwrap_or_else(|e| panic!("link {new:?} -> {existing:?}: {e}"));
}

/// A file with `len` bytes whose only data is `block` at the start and at the end; the rest
/// is a hole. `tail_hole` extends the file past the last data without writing.
fn write_sparse(path: &Path, len: u64, block: &[u8], tail_hole: u64) {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .unwrap_or_else(|e| panic!("create {path:?}: {e}"));
    f.set_len(len).expect("set_len");
    f.write_all(block).expect("write head");
    f.seek(SeekFrom::Start(len - block.len() as u64))
        .expect("seek");
    f.write_all(block).expect("write tail");
    if tail_hole > 0 {
        f.set_len(len + tail_hole).expect("extend with hole");
    }
}

/// Tries a `user.*` xattr; false only if the file system refuses xattrs altogether.
fn try_set_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
    match xattr::set(path, name, value) {
        Ok(()) => true,
        Err(e)
            if matches!(
                Errno::from_io_error(&e),
                Some(Errno::NOTSUP) | Some(Errno::PERM)
            ) =>
        {
            eprintln!(
                "NOTICE: file system refuses xattrs ({e}) on {path:?}; xattrs are not tested"
            );
            false
        }
        Err(e) => panic!("setxattr {name} on {path:?}: {e}"),
    }
}

/// Builds the tricky tree inside the existing, empty directory `dir`.
///
/// Contents: empty files, a 20 MiB seeded random file, sparse files and 3 MiB of zeros,
/// relative/absolute/dangling/directory symlinks, hard-link groups of 2 and 3 (across
/// directories), a fifo, awkward names (unicode, invalid UTF-8, quotes, backslash, `<&>`,
/// tab, newline, characters Go's strconv.Quote escapes), `user.*` xattrs on files and directories, odd modes (0o000, 0o7777,
/// setuid, setgid, sticky and private directories), a deep chain, an empty directory, and as
/// root devices and a foreign-owned file. All mtimes are set last, with non-zero
/// nanoseconds: in the past, plus one before 1970 and one in 2200.
pub fn make_tricky_tree(dir: &Path) -> TrickyTree {
    let root = dir.to_path_buf();
    let p = |rel: &str| root.join(rel);

    // Plain files, including duplicates so the repository deduplicates blobs.
    mkdir(&p("files"));
    write(&p("files/empty-1"), b"");
    write(&p("files/empty-2"), b"");
    write(&p("files/small.txt"), b"hello restic\n");
    write(&p("files/small-copy.txt"), b"hello restic\n");
    write_random_file(&p("files/random-20M.bin"), 20 * MIB, 1);
    write_random_file(&p("files/random-odd.bin"), 3 * MIB + 12_345, 2);

    // Holes must come back as zeros (restic writes them unless --sparse is given).
    mkdir(&p("sparse"));
    write_sparse(&p("sparse/ends-8M.bin"), 8 * MIB, &[0xa5; 4096], 0);
    write_sparse(&p("sparse/tail-hole.bin"), MIB, &[0x5a; 100], 2 * MIB);
    write(&p("sparse/zeros-3M.bin"), &vec![0u8; 3 * MIB as usize]);

    mkdir(&p("links/sub"));
    ln_s("../files/small.txt", &p("links/relative"));
    ln_s("/etc/hostname", &p("links/absolute"));
    ln_s("does/not/exist", &p("links/dangling"));
    ln_s("../files", &p("links/to-dir"));
    ln_s("..", &p("links/sub/up"));

    // Hard links: a pair in one directory and a triple spread over three directories.
    mkdir(&p("hard/sub"));
    mkdir(&p("hard-other"));
    write(&p("hard/pair-a"), b"two names, one inode\n");
    ln(&p("hard/pair-a"), &p("hard/pair-b"));
    write_random_file(&p("hard/triple-1"), 70_000, 3);
    ln(&p("hard/triple-1"), &p("hard/sub/triple-2"));
    ln(&p("hard/triple-1"), &p("hard-other/triple-3"));

    mkdir(&p("special"));
    rustix::fs::mknodat(
        CWD,
        p("special/fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o640),
        0,
    )
    .expect("mkfifo");
    let root_user = crate::common::is_root();
    let mut devices = false;
    if root_user {
        let chr = rustix::fs::mknodat(
            CWD,
            p("special/char-1-3"),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        );
        let blk = rustix::fs::mknodat(
            CWD,
            p("special/block-7-200"),
            FileType::BlockDevice,
            Mode::from_raw_mode(0o660),
            rustix::fs::makedev(7, 200),
        );
        match (chr, blk) {
            (Ok(()), Ok(())) => devices = true,
            (c, b) => {
                eprintln!(
                    "NOTICE: root cannot mknod devices ({c:?}, {b:?}); devices are not tested"
                );
                let _ = fs::remove_file(p("special/char-1-3"));
                let _ = fs::remove_file(p("special/block-7-200"));
            }
        }
    } else {
        eprintln!("NOTICE: not root; devices and foreign owners are not tested");
    }

    // Names that shells, XML and terminals choke on. restic passes every node name through
    // Go's strconv.Quote before JSON-encoding it, so escapes must round-trip exactly.
    mkdir(&p("names/ünïcødé dir ✓"));
    let names: &[&[u8]] = &[
        "héllo wörld".as_bytes(),
        "日本語のファイル".as_bytes(),
        "emoji 🦀🎉".as_bytes(),
        "e\u{301}-combining".as_bytes(),
        b"quote\"double",
        b"single'quote",
        b"back\\slash",
        b"<&>",
        b"tab\there",
        b"new\nline",
        b" leading space",
        b"trailing space ",
        b"-starts-with-dash",
        b"*?[glob]",
        b"ctrl\x01\x1b",
        // Not printable for Go's strconv.Quote, which restic applies to every node name:
        // these come out as \u00a0, \u200b, \x7f and \U000e0001 inside the tree JSON.
        "nbsp\u{a0}zwsp\u{200b}del\x7ftag\u{e0001}".as_bytes(),
        "bom\u{feff}".as_bytes(),
    ];
    for (i, name) in names.iter().enumerate() {
        let path = p("names").join(OsStr::from_bytes(name));
        write(&path, format!("name #{i}\n").as_bytes());
    }
    write(&p("names/ünïcødé dir ✓/inside"), b"inside\n");
    let invalid_utf8_name = PathBuf::from("names").join(OsStr::from_bytes(b"bad-\xff\xfe-utf8"));
    write(&root.join(&invalid_utf8_name), b"not UTF-8\n");

    mkdir(&p("modes/sticky-1777"));
    mkdir(&p("modes/private-700"));
    mkdir(&p("modes/setgid-dir-2775"));
    for (name, mode) in [
        ("m000", 0o000),
        ("m7777", 0o7777),
        ("setuid-4755", 0o4755),
        ("setgid-2755", 0o2755),
        ("m444", 0o444),
        ("m751", 0o751),
    ] {
        write(
            &p("modes").join(name),
            format!("mode {mode:o}\n").as_bytes(),
        );
    }
    write(&p("modes/private-700/secret"), b"secret\n");
    write(&p("modes/sticky-1777/in-sticky"), b"sticky\n");

    let mut deep = p("deep");
    for i in 0..40 {
        deep.push(format!("level-{i:02}"));
    }
    mkdir(&deep);
    write(&deep.join("bottom.txt"), b"at the bottom\n");

    mkdir(&p("empty-dir"));

    let mut foreign_owner = false;
    if root_user {
        write(&p("owned-1000-100"), b"owned by someone else\n");
        std::os::unix::fs::lchown(p("owned-1000-100"), Some(1000), Some(100)).expect("chown file");
        mkdir(&p("owned-dir-1000"));
        std::os::unix::fs::lchown(p("owned-dir-1000"), Some(1000), Some(1000)).expect("chown dir");
        std::os::unix::fs::lchown(p("links/relative"), Some(1000), Some(100))
            .expect("chown symlink");
        foreign_owner = true;
    }

    // xattrs before modes: as non-root, a 0o000 or 0o444 file would refuse them.
    let mut xattrs = try_set_xattr(&p("files/small.txt"), "user.comment", b"plain text");
    if xattrs {
        for (path, name, value) in [
            (
                "files/small.txt",
                "user.binary",
                &b"\x00\x01\xff binary"[..],
            ),
            ("files/small.txt", "user.empty", b""),
            ("files", "user.on-a-directory", b"dir value"),
            ("hard/pair-a", "user.shared-by-links", b"links share xattrs"),
            ("modes/m000", "user.on-m000", b"x"),
            ("names/héllo wörld", "user.ünïcødé", "välüe".as_bytes()),
        ] {
            // Linux allows user.* xattrs only on regular files and directories.
            let path = p(path);
            xattr::set(&path, name, value)
                .unwrap_or_else(|e| panic!("setxattr {name} on {path:?}: {e}"));
        }
        // A large value exercises restic's xattr buffer handling.
        xattrs &= try_set_xattr(&p("files/random-odd.bin"), "user.big", &[b'x'; 3000]);
    }

    // chown clears setuid/setgid, so modes come after owners.
    for (name, mode) in [
        ("modes/m000", 0o000),
        ("modes/m7777", 0o7777),
        ("modes/setuid-4755", 0o4755),
        ("modes/setgid-2755", 0o2755),
        ("modes/m444", 0o444),
        ("modes/m751", 0o751),
        ("modes/sticky-1777", 0o1777),
        ("modes/private-700", 0o700),
        ("modes/setgid-dir-2775", 0o2775),
    ] {
        chmod(&p(name), mode);
    }

    set_all_mtimes(&root);
    // Setting a file's mtime leaves its directory's alone, so these can come after.
    write_dated(&p("files"), "pre-epoch", -123_456_789, 987_654_321);
    write_dated(&p("files"), "year-2200", 7_258_118_400, 1);

    TrickyTree {
        root,
        xattrs,
        devices,
        foreign_owner,
        invalid_utf8_name,
    }
}

/// Creates `dir/name` with an mtime outside the usual range, keeping `dir`'s mtime.
fn write_dated(dir: &Path, name: &str, secs: i64, nanos: i64) {
    let md = fs::symlink_metadata(dir).expect("lstat");
    write(&dir.join(name), name.as_bytes());
    set_mtime(&dir.join(name), secs, nanos);
    use std::os::unix::fs::MetadataExt;
    set_mtime(dir, md.mtime(), md.mtime_nsec());
}

/// Lists `dir`'s subtree without following symlinks, children before their directory.
pub fn post_order(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<OsString> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read_dir {dir:?}: {e}"))
            .map(|e| e.expect("dir entry").file_name())
            .collect();
        entries.sort();
        for name in entries {
            let path = dir.join(name);
            if fs::symlink_metadata(&path).expect("lstat").is_dir() {
                walk(&path, out);
            }
            out.push(path);
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.push(dir.to_path_buf());
    out
}

/// Sets the mtime (and atime) of `path` itself, never a symlink's target.
pub fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    let ts = Timespec {
        tv_sec: secs,
        tv_nsec: nanos,
    };
    let times = Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .unwrap_or_else(|e| panic!("utimensat {path:?}: {e}"));
}

/// Gives every entry a distinct past mtime with non-zero nanoseconds. Directories come after
/// their contents because creating the contents would bump the directory's mtime again.
/// Hard links share an inode, so the last name visited wins; that is fine.
pub fn set_all_mtimes(root: &Path) {
    for (i, path) in post_order(root).iter().enumerate() {
        let i = i as i64;
        set_mtime(path, 1_234_567_890 + i * 3_607, 100_000_001 + i * 7_919);
    }
}

/// A tricky tree at `<fresh temp dir>/src` (canonical, so restic's absolute paths match);
/// keep the returned directory alive as long as the tree is used.
pub fn tricky_source() -> (tempfile::TempDir, TrickyTree) {
    let dir = tempfile::Builder::new()
        .prefix("tricky-")
        .tempdir()
        .expect("tempdir");
    let root = dir.path().canonicalize().expect("canonicalize").join("src");
    mkdir(&root);
    let tree = make_tricky_tree(&root);
    (dir, tree)
}

impl TrickyTree {
    /// Options for comparing this source tree with a restore of a restic-made snapshot of it.
    pub fn restic_compare_options(&self) -> crate::common::CompareOptions {
        crate::common::CompareOptions {
            xattrs: self.xattrs,
            ..Default::default()
        }
    }
}
