//! The model without the kernel: a snapshot in a memory repository, browsed through the
//! layout, files read in ranges that cross blob boundaries, only the needed blobs loaded,
//! and a repository missing its data giving errors, never bytes.

use std::path::Path;
use std::sync::{Arc, Mutex};

use restash_backend::{Backend, FileType, Handle, MemoryBackend};
use restash_crypto::KdfParams;
use restash_engine::archiver::{backup, BackupOptions, Source};
use restash_engine::events::Control;
use restash_engine::Repository;
use restash_format::BlobType;
use restash_mount::model::ROOT;
use restash_mount::{MountError, MountModel, Settings};

fn content(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Setup {
    model: MountModel,
    backend: Arc<MemoryBackend>,
    data_packs: Vec<restash_format::PackId>,
    warnings: Arc<Mutex<Vec<String>>>,
    file: Vec<u8>,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("src");
    std::fs::create_dir_all(path.join("sub")).expect("mkdir");
    // Above the chunker's 8 MiB maximum: at least two blobs, whatever the polynomial.
    let file = content(12 << 20 | 777);
    std::fs::write(path.join("sub/big"), &file).expect("write");
    std::os::unix::fs::symlink("sub/big", path.join("link")).expect("symlink");
    let backend = Arc::new(MemoryBackend::new());
    let kdf = KdfParams {
        n: 1024,
        r: 8,
        p: 1,
    };
    let mut repo = Repository::init(backend.clone(), b"pw", 2, kdf).expect("init");
    let opts = BackupOptions::new("host");
    backup(
        &mut repo,
        Source::Paths(vec![path.clone()]),
        &opts,
        &Control::default(),
    )
    .expect("backup");
    repo.load_index().expect("index");
    let mut data_packs: Vec<_> = repo
        .index()
        .iter()
        .filter(|(_, t, _)| *t == BlobType::Data)
        .map(|(_, _, loc)| repo.index().pack_id(loc.pack))
        .collect();
    data_packs.dedup();
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let w = warnings.clone();
    let warn = Box::new(move |s: &str| w.lock().expect("warnings").push(s.to_string()));
    let model = MountModel::new(repo, Settings::default(), warn).expect("model");
    Setup {
        model,
        backend,
        data_packs,
        warnings,
        file,
        _dir: dir,
        path,
    }
}

// The inode at `rel` below the latest snapshot.
fn find(m: &MountModel, snapshot_path: &Path, rel: &str) -> u64 {
    let snaps = m.lookup(ROOT, b"snapshots").expect("snapshots").ino;
    let target = m
        .readlink(m.lookup(snaps, b"latest").expect("latest").ino)
        .expect("link");
    let mut ino = m.lookup(snaps, &target).expect("snapshot dir").ino;
    let full = snapshot_path.join(rel);
    for c in full.strip_prefix("/").expect("absolute").components() {
        let name = c.as_os_str().as_encoded_bytes();
        ino = m.lookup(ino, name).expect("component").ino;
    }
    ino
}

#[test]
fn reads_ranges_from_only_the_blobs_that_cover_them() {
    let s = setup();
    let m = &s.model;
    let names: Vec<Vec<u8>> = m
        .readdir(ROOT)
        .expect("root")
        .into_iter()
        .map(|e| e.2)
        .collect();
    assert_eq!(names, [&b"hosts"[..], b"ids", b"snapshots", b"tags"]);
    let ino = find(m, &s.path, "sub/big");
    assert_eq!(m.attr(ino).expect("attr").size, s.file.len() as u64);
    let len = s.file.len() as u64;

    let tail = m.read(ino, len - 10, 4096).expect("tail");
    assert_eq!(tail, s.file[s.file.len() - 10..]);
    let one_blob = m.cached_bytes();
    assert!(
        one_blob > 0 && one_blob < s.file.len(),
        "the tail loaded one blob, not the file ({one_blob} bytes held)"
    );

    let mut whole = Vec::new();
    let mut at = 0;
    while at < len {
        let part = m.read(ino, at, 131_072).expect("read");
        assert!(!part.is_empty());
        at += part.len() as u64;
        whole.extend(part);
    }
    assert!(whole == s.file, "the file read in pieces is the file");
    assert!(m.read(ino, len + 5, 10).expect("past the end").is_empty());

    let link = find(m, &s.path, "link");
    assert_eq!(m.readlink(link).expect("readlink"), b"sub/big");
    assert!(s.warnings.lock().expect("warnings").is_empty());
}

#[test]
fn a_missing_pack_is_an_error_never_data() {
    let s = setup();
    let ino = find(&s.model, &s.path, "sub/big");
    assert!(!s.data_packs.is_empty());
    for p in &s.data_packs {
        s.backend
            .remove(&Handle::new(FileType::Pack, *p))
            .expect("remove pack");
    }
    let err = s.model.read(ino, 0, 4096).expect_err("no data");
    assert!(err.is_io(), "{err}");
    assert!(matches!(err, MountError::Engine { .. }), "{err:?}");
    assert!(err.to_string().contains("load data blob"), "{err}");
}

#[test]
fn inodes_live_as_long_as_the_kernel_holds_lookups() {
    let s = setup();
    let m = &s.model;
    let start = m.inode_count();
    let snaps = m.lookup(ROOT, b"snapshots").expect("snapshots").ino;
    let target = m
        .readlink(m.lookup(snaps, b"latest").expect("latest").ino)
        .expect("link");
    let snap = m.lookup(snaps, &target).expect("snapshot dir").ino;
    let mut dir = snap;
    for c in s.path.strip_prefix("/").expect("absolute").components() {
        dir = m
            .lookup(dir, c.as_os_str().as_encoded_bytes())
            .expect("component")
            .ino;
    }
    let held = m.inode_count();
    assert_eq!(held, start + 3 + s.path.components().count() - 1);

    // Listing makes no inodes, and numbers what a lookup then gives.
    let listed = m.readdir(dir).expect("readdir");
    assert_eq!(m.inode_count(), held, "readdir holds no inodes");
    let (sub_listed, _, _) = listed
        .iter()
        .find(|e| e.2 == b"sub")
        .expect("sub listed")
        .clone();
    let sub = m.lookup(dir, b"sub").expect("sub");
    assert_eq!(sub.ino, sub_listed);
    let big = m.lookup(sub.ino, b"big").expect("big").ino;
    assert_eq!(m.inode_count(), held + 2);
    // Looked up twice, forgotten once: still there.
    assert_eq!(m.lookup(sub.ino, b"big").expect("again").ino, big);
    m.forget(big, 1);
    assert_eq!(m.read(big, 0, 10).expect("read").len(), 10);
    m.forget(big, 1);
    assert!(
        matches!(m.attr(big), Err(MountError::NotFound)),
        "a forgotten inode is gone"
    );
    assert_eq!(m.inode_count(), held + 1);
    m.forget(sub.ino, 1);
    assert_eq!(m.inode_count(), held);
    // Looked up again, an entry has the number it had.
    let sub_again = m.lookup(dir, b"sub").expect("sub again").ino;
    assert_eq!(sub_again, sub.ino);
    assert_eq!(m.lookup(sub_again, b"big").expect("big again").ino, big);
    assert_eq!(m.read(big, 0, 10).expect("read").as_slice(), &s.file[..10]);
    // The root is never dropped.
    m.forget(ROOT, 1);
    assert!(m.attr(ROOT).is_ok());
}
