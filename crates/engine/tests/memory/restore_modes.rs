//! Restoring into a target that already holds entries: each `--overwrite` mode against an
//! unchanged, a changed, a newer and an older file, `--delete` within and outside the
//! selection, and a dry run that writes nothing but says what it would do.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use restash_engine::events::{Control, Event, RestoreAction};
use restash_engine::{find_subtree, restore, Overwrite, PatternSet, RestoreOptions, RestoreStats};
use restash_format::BlobId;

use crate::common::*;

/// Snapshot mtime of every source file: the target's "newer" file is after it, the
/// "older" one before.
const SNAP_MTIME: i64 = 1_600_000_000;

struct Fixture {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    src: PathBuf,
    target: PathBuf,
    be: Arc<restash_backend::MemoryBackend>,
    tree: BlobId,
}

/// A source with small files, a multi-chunk one and a subdirectory, backed up; the target
/// holds a plain restore of it.
fn fixture() -> Fixture {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = a.path().join("src");
    let target = b.path().join("t");
    for (rel, data) in [
        ("same", b"same content".to_vec()),
        ("changed", b"snapshot content".to_vec()),
        ("newer", b"snapshot newer".to_vec()),
        ("older", b"snapshot older".to_vec()),
        ("sub/big", noise(3 << 20, 7)),
        ("sub/keep", b"keep".to_vec()),
    ] {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        set_mtime(&p, SNAP_MTIME, 0);
    }
    let (be, mut repo) = new_repo(2);
    let sum = backup_dir(&mut repo, &src, &options());
    let id = sum.snapshot_id.unwrap();
    let mut repo = open(be.clone());
    repo.load_index().unwrap();
    let root = repo.load_snapshot(&id).unwrap().tree;
    let tree = find_subtree(&repo, &root, src.to_str().unwrap()).unwrap();
    let f = Fixture {
        _dirs: (a, b),
        src,
        target,
        be,
        tree,
    };
    let (stats, _) = f.restore(|_| {});
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    f
}

type Actions = BTreeMap<String, &'static str>;

impl Fixture {
    fn restore(&self, set: impl FnOnce(&mut RestoreOptions)) -> (RestoreStats, Actions) {
        let mut repo = open(self.be.clone());
        repo.load_index().unwrap();
        let mut o = RestoreOptions::new(&self.target);
        o.item_events = true;
        set(&mut o);
        let seen = Arc::new(Mutex::new(Actions::new()));
        let s = seen.clone();
        let ctl = Control::new(Arc::new(move |e: &Event<'_>| {
            if let Event::Restored { action, item, .. } = e {
                let prev = s.lock().unwrap().insert(item.to_string(), action.as_str());
                assert!(prev.is_none(), "{item} reported twice");
            }
        }));
        let stats = restore(&repo, &self.tree, &o, &ctl).unwrap();
        let actions = seen.lock().unwrap().clone();
        (stats, actions)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.target.join(rel)
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap()
    }

    /// The target's files made to differ from the snapshot: `changed` has other content
    /// of the same size and the snapshot's mtime (only reading it tells), `newer` and
    /// `older` other content with a later and an earlier mtime, `sub/big` one changed
    /// byte in its middle.
    fn disturb(&self) {
        let w = |rel: &str, data: &[u8], mtime: i64| {
            std::fs::write(self.path(rel), data).unwrap();
            set_mtime(&self.path(rel), mtime, 0);
        };
        w("changed", b"SNAPSHOT CONTENT", SNAP_MTIME);
        w("newer", b"target newer", SNAP_MTIME + 100);
        w("older", b"target older", SNAP_MTIME - 100);
        let mut big = self.read("sub/big");
        big[1 << 20] ^= 0xff;
        w("sub/big", &big, SNAP_MTIME + 5);
    }
}

fn src_bytes(f: &Fixture, rel: &str) -> Vec<u8> {
    std::fs::read(f.src.join(rel)).unwrap()
}

fn mtime(p: &Path) -> i64 {
    std::fs::symlink_metadata(p).unwrap().mtime()
}

#[test]
fn always_rewrites_what_differs_and_keeps_what_matches() {
    let f = fixture();
    f.disturb();
    let same_ino = std::fs::metadata(f.path("same")).unwrap().ino();
    let big_ino = std::fs::metadata(f.path("sub/big")).unwrap().ino();
    let (stats, acts) = f.restore(|o| o.overwrite = Overwrite::Always);
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    for rel in ["same", "changed", "newer", "older", "sub/big", "sub/keep"] {
        assert_eq!(f.read(rel), src_bytes(&f, rel), "{rel}");
        assert_eq!(mtime(&f.path(rel)), SNAP_MTIME, "{rel} mtime");
    }
    // Same-sized content with the snapshot's mtime is found by reading it.
    assert_eq!(acts["/changed"], "updated");
    assert_eq!(acts["/newer"], "updated");
    assert_eq!(acts["/older"], "updated");
    assert_eq!(acts["/sub/big"], "updated");
    assert_eq!(acts["/same"], "unchanged");
    assert_eq!(acts["/sub/keep"], "unchanged");
    assert_eq!(acts["/sub"], "restored");
    assert_eq!((stats.files, stats.skipped), (4, 2));
    // Written in place, not replaced.
    assert_eq!(std::fs::metadata(f.path("same")).unwrap().ino(), same_ino);
    assert_eq!(std::fs::metadata(f.path("sub/big")).unwrap().ino(), big_ino);
}

#[test]
fn if_changed_trusts_size_and_mtime() {
    let f = fixture();
    f.disturb();
    let (stats, acts) = f.restore(|o| o.overwrite = Overwrite::IfChanged);
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    // Same size, same mtime: taken as unchanged without reading, as restic does.
    assert_eq!(acts["/changed"], "unchanged");
    assert_eq!(f.read("changed"), b"SNAPSHOT CONTENT");
    for rel in ["newer", "older", "sub/big"] {
        assert_eq!(acts[&format!("/{rel}")], "updated", "{rel}");
        assert_eq!(f.read(rel), src_bytes(&f, rel), "{rel}");
    }
    assert_eq!(acts["/same"], "unchanged");
}

#[test]
fn if_newer_replaces_only_older_files() {
    let f = fixture();
    f.disturb();
    let (stats, acts) = f.restore(|o| o.overwrite = Overwrite::IfNewer);
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert_eq!(acts["/older"], "updated");
    assert_eq!(f.read("older"), src_bytes(&f, "older"));
    assert_eq!(acts["/newer"], "unchanged");
    assert_eq!(f.read("newer"), b"target newer");
    assert_eq!(mtime(&f.path("newer")), SNAP_MTIME + 100, "left as it was");
    // Equal mtimes are not newer.
    assert_eq!(acts["/changed"], "unchanged");
    assert_eq!(f.read("changed"), b"SNAPSHOT CONTENT");
    assert_eq!(acts["/sub/big"], "unchanged");
}

#[test]
fn never_leaves_existing_files_and_restores_missing_ones() {
    let f = fixture();
    f.disturb();
    std::fs::remove_file(f.path("same")).unwrap();
    let (stats, acts) = f.restore(|o| o.overwrite = Overwrite::Never);
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert_eq!(acts["/same"], "restored");
    assert_eq!(f.read("same"), src_bytes(&f, "same"));
    for (rel, want) in [
        ("changed", &b"SNAPSHOT CONTENT"[..]),
        ("newer", b"target newer"),
        ("older", b"target older"),
    ] {
        assert_eq!(acts[&format!("/{rel}")], "unchanged");
        assert_eq!(f.read(rel), want, "{rel}");
    }
    assert_eq!((stats.files, stats.skipped), (1, 5));
}

#[test]
fn delete_removes_what_the_snapshot_lacks() {
    let f = fixture();
    std::fs::write(f.path("extra"), b"x").unwrap();
    std::fs::create_dir_all(f.path("sub/extra_dir/deeper")).unwrap();
    std::fs::write(f.path("sub/extra_dir/deeper/file"), b"x").unwrap();
    std::os::unix::fs::symlink("/", f.path("sub/extra_link")).unwrap();
    // A directory where the snapshot has a file, and a file where it has a directory.
    std::fs::remove_file(f.path("same")).unwrap();
    std::fs::create_dir(f.path("same")).unwrap();
    std::fs::write(f.path("same/inside"), b"x").unwrap();
    let (stats, acts) = f.restore(|o| o.delete = true);
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert!(!f.path("extra").exists());
    assert!(!f.path("sub/extra_dir").exists());
    assert!(std::fs::symlink_metadata(f.path("sub/extra_link")).is_err());
    assert_eq!(f.read("same"), src_bytes(&f, "same"));
    assert_eq!(stats.deleted, 5);
    let deleted = |p: &str| acts.get(f.path(p).to_str().unwrap()).copied();
    assert_eq!(deleted("sub/extra_dir/deeper/file"), Some("deleted"));
    assert_eq!(deleted("sub/extra_dir"), Some("deleted"));
    assert!(
        differences(&f.src, &f.target).is_empty(),
        "{:?}",
        differences(&f.src, &f.target)
    );

    // A file where the snapshot has a directory gives way to it.
    std::fs::remove_dir_all(f.path("sub")).unwrap();
    std::fs::write(f.path("sub"), b"x").unwrap();
    let (stats, _) = f.restore(|o| o.delete = true);
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert!(
        differences(&f.src, &f.target).is_empty(),
        "{:?}",
        differences(&f.src, &f.target)
    );
}

#[test]
fn delete_stays_inside_the_included_paths() {
    let f = fixture();
    std::fs::write(f.path("extra"), b"x").unwrap();
    std::fs::write(f.path("sub/extra"), b"x").unwrap();
    let (stats, _) = f.restore(|o| {
        o.delete = true;
        o.include = PatternSet::parse(&["/sub".to_string()]).unwrap();
    });
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert!(f.path("extra").exists(), "outside the selection");
    assert!(!f.path("sub/extra").exists());
    assert_eq!(stats.deleted, 1);

    // An excluded name is not deleted either.
    std::fs::write(f.path("sub/extra.tmp"), b"x").unwrap();
    let (stats, _) = f.restore(|o| {
        o.delete = true;
        o.exclude = PatternSet::parse(&["*.tmp".to_string()]).unwrap();
    });
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert!(f.path("sub/extra.tmp").exists());
    assert!(!f.path("extra").exists());
}

#[test]
fn delete_refuses_the_root_without_a_filter() {
    let f = fixture();
    let repo = {
        let mut r = open(f.be.clone());
        r.load_index().unwrap();
        r
    };
    let mut o = RestoreOptions::new("/");
    o.delete = true;
    o.dry_run = true;
    let e = restore(&repo, &f.tree, &o, &Control::default()).unwrap_err();
    assert!(e.to_string().contains("--target / --delete"), "{e}");
}

/// Every path below `dir` with its type, size, mode and mtime.
fn snapshot_of(dir: &Path) -> Vec<(PathBuf, u32, u64, i64, i64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        out.push((p.clone(), m.mode(), m.size(), m.mtime(), m.mtime_nsec()));
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn dry_run_writes_nothing_and_reports_every_action() {
    let f = fixture();
    f.disturb();
    std::fs::remove_file(f.path("same")).unwrap();
    std::fs::write(f.path("extra"), b"x").unwrap();
    let before = snapshot_of(&f.target);
    let contents: Vec<Vec<u8>> = ["changed", "newer", "older", "sub/big"]
        .iter()
        .map(|r| f.read(r))
        .collect();
    let (stats, acts) = f.restore(|o| {
        o.dry_run = true;
        o.delete = true;
    });
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert_eq!(
        snapshot_of(&f.target),
        before,
        "a dry run changed the target"
    );
    let after: Vec<Vec<u8>> = ["changed", "newer", "older", "sub/big"]
        .iter()
        .map(|r| f.read(r))
        .collect();
    assert_eq!(after, contents);
    assert_eq!(acts["/same"], "restored");
    assert_eq!(acts["/changed"], "updated");
    assert_eq!(acts["/sub/keep"], "unchanged");
    assert_eq!(acts[f.path("extra").to_str().unwrap()], "deleted");
    assert_eq!((stats.files, stats.skipped, stats.deleted), (5, 1, 1));

    // Into a target that does not exist: nothing is made, everything would be restored.
    std::fs::remove_dir_all(&f.target).unwrap();
    let (stats, acts) = f.restore(|o| o.dry_run = true);
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert!(!f.target.exists());
    assert_eq!(stats.files, 6);
    // Every file is reported, and only as restored.
    assert!(acts.len() >= 6, "{acts:?}");
    assert!(acts
        .values()
        .all(|a| *a == RestoreAction::Restored.as_str()));
}

#[test]
fn a_file_with_other_hard_links_is_replaced_not_written_through() {
    let f = fixture();
    let outside = f._dirs.0.path().join("outside");
    std::fs::write(&outside, b"SNAPSHOT CONTENT").unwrap();
    std::fs::remove_file(f.path("changed")).unwrap();
    std::fs::hard_link(&outside, f.path("changed")).unwrap();
    let (stats, acts) = f.restore(|_| {});
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert_eq!(acts["/changed"], "restored");
    assert_eq!(f.read("changed"), src_bytes(&f, "changed"));
    assert_eq!(std::fs::read(&outside).unwrap(), b"SNAPSHOT CONTENT");
}
