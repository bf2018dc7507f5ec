//! Self-test of the e2e helpers against restic alone: the tricky tree survives a restic 0.14
//! round trip under the comparator (so the harness can pass), and the comparator reports
//! each deliberate change to a restored copy (so the harness can fail).
mod common;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::tree::set_mtime;
use common::*;

/// Backs `source` up with restic into a fresh v2 repository and restores it with restic;
/// returns the repository, the restore target and the restored copy of `source`.
fn restic_roundtrip(source: &Path, compression: &str) -> (Repo, tempfile::TempDir, PathBuf) {
    let repo = Repo::init_v2();
    repo.restic_backup(source, compression);
    let target = tempfile::tempdir().expect("tempdir");
    repo.restic(osargs!["restore", "latest", "--target", target.path()])
        .success();
    let restored = restored_path(target.path(), source);
    (repo, target, restored)
}

fn roundtrip_tricky_tree(compression: &str) {
    let start = Instant::now();
    let (_src, tree) = common::tree::tricky_source();
    let (_repo, _target, restored) = restic_roundtrip(&tree.root, compression);
    assert_trees_equal(&tree.root, &restored, &tree.restic_compare_options());
    eprintln!(
        "tricky tree round trip through restic (--compression {compression}): {:?}",
        start.elapsed()
    );
}

#[test]
fn restic_roundtrip_tricky_tree_compression_off() {
    roundtrip_tricky_tree("off");
}

#[test]
fn restic_roundtrip_tricky_tree_compression_auto() {
    roundtrip_tricky_tree("auto");
}

#[test]
fn restic_roundtrip_tricky_tree_compression_max() {
    roundtrip_tricky_tree("max");
}

#[test]
fn restic_roundtrip_source_fixtures() {
    for name in SOURCE_FIXTURES {
        let unpacked = unpack_fixture(name);
        let source = unpacked.path().canonicalize().expect("canonicalize");
        let (_repo, _target, restored) = restic_roundtrip(&source, "auto");
        assert_trees_equal(&source, &restored, &CompareOptions::default());
    }
}

#[test]
fn tree_generator_is_deterministic_in_content() {
    let (_a, ta) = common::tree::tricky_source();
    let (_b, tb) = common::tree::tricky_source();
    // Owners, modes, mtimes and content must match; only inodes differ, and those are
    // compared only through hard-link groups.
    assert_trees_equal(&ta.root, &tb.root, &CompareOptions::default());
    assert!(
        compare_trees(&ta.root, &ta.root).is_ok(),
        "a tree differs from itself"
    );
}

/// Guards against the generator silently producing a tamer tree than intended.
#[test]
fn tricky_tree_has_everything() {
    use std::os::unix::fs::FileTypeExt;
    let (_dir, tree) = common::tree::tricky_source();
    let md = |rel: &str| std::fs::symlink_metadata(tree.root.join(rel)).expect(rel);
    eprintln!(
        "tricky tree: xattrs={} devices={} foreign_owner={}",
        tree.xattrs, tree.devices, tree.foreign_owner
    );
    assert_eq!(md("files/random-20M.bin").len(), 20 << 20);
    let sparse = md("sparse/ends-8M.bin");
    assert_eq!(sparse.len(), 8 << 20);
    if sparse.blocks() * 512 >= sparse.len() {
        eprintln!("NOTICE: file system did not keep holes; sparse files are plain files here");
    }
    assert_eq!(md("sparse/tail-hole.bin").len(), 3 << 20);
    assert_eq!(md("hard/pair-b").nlink(), 2);
    assert_eq!(md("hard-other/triple-3").nlink(), 3);
    assert_eq!(md("hard/sub/triple-2").ino(), md("hard/triple-1").ino());
    assert!(md("special/fifo").file_type().is_fifo());
    assert!(md("links/dangling").file_type().is_symlink());
    assert_eq!(md("modes/m7777").mode() & 0o7777, 0o7777);
    assert_eq!(md("modes/m000").mode() & 0o7777, 0);
    assert_eq!(md("modes/sticky-1777").mode() & 0o7777, 0o1777);
    assert_eq!(md("modes/setuid-4755").mode() & 0o7777, 0o4755);
    assert!(tree.root.join(&tree.invalid_utf8_name).exists());
    assert_eq!(md("files/pre-epoch").mtime(), -123_456_789);
    if is_root() {
        assert!(tree.foreign_owner);
        assert_eq!(
            (md("owned-1000-100").uid(), md("owned-1000-100").gid()),
            (1000, 100)
        );
    }
    if tree.devices {
        assert!(md("special/char-1-3").file_type().is_char_device());
        assert_eq!(
            md("special/block-7-200").rdev(),
            rustix::fs::makedev(7, 200)
        );
    }
    if tree.xattrs {
        let x = common::compare::user_xattrs(&tree.root.join("files")).expect("xattrs");
        assert_eq!(
            x.get(&b"user.on-a-directory"[..]).map(Vec::as_slice),
            Some(&b"dir value"[..])
        );
    }
    for path in common::tree::post_order(&tree.root) {
        let m = std::fs::symlink_metadata(&path).expect("lstat");
        assert!(m.mtime_nsec() != 0, "{path:?}: mtime not set");
    }
}

/// Asserts that some reported difference names `path` and contains `what`.
#[track_caller]
fn expect_diff(a: &Path, b: &Path, opts: &CompareOptions, path: &Path, what: &str) {
    let diffs = compare_trees_with(a, b, opts).expect_err("comparator missed a change");
    let shown = format!("{path:?}");
    assert!(
        diffs
            .iter()
            .any(|d| d.starts_with(&format!("{shown}:")) && d.contains(what)),
        "no difference for {shown} mentioning {what:?}; got:\n  {}",
        diffs.join("\n  ")
    );
}

#[test]
fn comparator_reports_each_mutation() {
    let (_src, tree) = common::tree::tricky_source();
    let opts = tree.restic_compare_options();
    let (_repo, _target, restored) = restic_roundtrip(&tree.root, "off");
    let a = tree.root.as_path();
    let b = restored.as_path();
    assert_trees_equal(a, b, &opts);
    let r = |rel: &str| b.join(rel);
    let mtime_of = |p: &Path| {
        let md = std::fs::symlink_metadata(p).expect("lstat");
        (md.mtime(), md.mtime_nsec())
    };

    // One byte in the middle of the 20 MiB file, with the mtime put back so only the
    // content differs.
    let big = r("files/random-20M.bin");
    let (s, ns) = mtime_of(&big);
    let mut f = OpenOptions::new().write(true).open(&big).expect("open");
    f.seek(SeekFrom::Start(10 * 1024 * 1024 + 7)).expect("seek");
    f.write_all(&[0x42]).expect("write");
    drop(f);
    set_mtime(&big, s, ns);
    expect_diff(
        a,
        b,
        &opts,
        Path::new("files/random-20M.bin"),
        "content sha256",
    );

    let link = r("links/dangling");
    let (s, ns) = mtime_of(&link);
    set_mtime(&link, s, ns + 1);
    expect_diff(a, b, &opts, Path::new("links/dangling"), "mtime");
    let dir = r("deep");
    let (s, ns) = mtime_of(&dir);
    set_mtime(&dir, s, ns - 1);
    expect_diff(a, b, &opts, Path::new("deep"), "mtime");

    let suid = r("modes/setuid-4755");
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    expect_diff(
        a,
        b,
        &opts,
        Path::new("modes/setuid-4755"),
        "mode 4755 != 0755",
    );
    let sticky = r("modes/sticky-1777");
    std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    expect_diff(
        a,
        b,
        &opts,
        Path::new("modes/sticky-1777"),
        "mode 1777 != 0777",
    );

    if tree.xattrs {
        xattr::remove(r("files/small.txt"), "user.comment").expect("removexattr");
        expect_diff(a, b, &opts, Path::new("files/small.txt"), "xattrs");
        xattr::set(r("files"), "user.on-a-directory", b"changed").expect("setxattr");
        expect_diff(a, b, &opts, Path::new("files"), "xattrs");
    } else {
        eprintln!("NOTICE: xattr mutations skipped: file system refuses xattrs");
    }

    // Break the pair: replace pair-b by an independent copy with identical metadata.
    let pb = r("hard/pair-b");
    let (s, ns) = mtime_of(&pb);
    let copy = r("hard/pair-b.tmp");
    std::fs::copy(&pb, &copy).expect("copy");
    std::fs::rename(&copy, &pb).expect("rename");
    set_mtime(&pb, s, ns);
    for p in ["hard/pair-a", "hard/pair-b"] {
        expect_diff(a, b, &opts, Path::new(p), "hard links");
    }

    std::fs::remove_file(r("links/relative")).expect("rm");
    std::os::unix::fs::symlink("../files/small-copy.txt", r("links/relative")).expect("ln -s");
    expect_diff(a, b, &opts, Path::new("links/relative"), "symlink target");

    if is_root() {
        std::os::unix::fs::lchown(r("files/empty-1"), Some(4242), None).expect("chown");
        expect_diff(
            a,
            b,
            &opts,
            Path::new("files/empty-1"),
            "owner 0:0 != 4242:0",
        );
    }

    std::fs::remove_file(r("names/<&>")).expect("rm");
    expect_diff(a, b, &opts, Path::new("names/<&>"), "only in a");
    std::fs::write(r("empty-dir/new"), b"").expect("write");
    expect_diff(a, b, &opts, Path::new("empty-dir/new"), "only in b");
    std::fs::remove_file(r("special/fifo")).expect("rm");
    std::fs::write(r("special/fifo"), b"").expect("write");
    expect_diff(a, b, &opts, Path::new("special/fifo"), "type Fifo != File");
}
