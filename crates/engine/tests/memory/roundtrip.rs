//! Backup → restore in one process, and a second backup that finds everything unchanged.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use restash_engine::{find_subtree, Repository};
use restash_format::{BlobId, BlobType, Compression, SnapshotId};

use crate::common::*;

/// The metadata of the directories above `dir` that a backup stores in their nodes.
fn above(dir: &Path) -> Vec<(i64, i64, i64, i64, u32)> {
    dir.ancestors()
        .skip(1)
        .map(|a| {
            let m = std::fs::symlink_metadata(a).unwrap();
            (
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
                m.mode(),
            )
        })
        .collect()
}

fn subtree(repo: &Repository, snap: &SnapshotId, dir: &Path) -> BlobId {
    let root = repo.load_snapshot(snap).unwrap().tree;
    find_subtree(repo, &root, dir.to_str().unwrap()).unwrap()
}

/// One repository format and compression setting.
struct Case {
    version: u32,
    compression: Compression,
    /// Whether some data blob must be stored compressed (the text file compresses well).
    compressed: bool,
}

fn round_trip(case: Case) {
    // Apart: the directories above a backup target are stored too, and a restore next
    // to the source would change its parent's mtime before the second backup.
    let (tmp, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, target) = (tmp.path().join("src"), out.path().join("restored"));
    std::fs::create_dir(&src).unwrap();
    let n_files = make_source(&src);
    let (be, _) = new_repo(case.version);
    let mut opts = options();
    opts.compression = case.compression;

    // Every backup from a freshly opened repository with its index loaded, as the CLI
    // runs it: what the second one finds must come from what the first one stored.
    let mut repo = open(be.clone());
    repo.load_index().unwrap();
    let before_first = above(&src);
    let first = backup_dir(&mut repo, &src, &opts);
    let after_first = above(&src);
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!(first.files_new, n_files);
    assert_eq!(first.files_unmodified, 0);
    assert!(first.data_blobs > 5, "several chunks: {first:?}");
    let first_id = first.snapshot_id.expect("snapshot written");

    restore_dir(be.clone(), &first_id, &src, &target);
    let diffs = differences(&src, &target);
    assert!(
        diffs.is_empty(),
        "restored tree differs:\n{}",
        diffs.join("\n")
    );

    let mut repo = open(be.clone());
    repo.load_index().unwrap();
    let compressed = repo
        .index()
        .iter()
        .filter(|(_, t, loc)| *t == BlobType::Data && loc.is_compressed())
        .count();
    assert_eq!(
        compressed > 0,
        case.compressed,
        "{compressed} compressed blobs"
    );

    let before_second = above(&src);
    let second = backup_dir(&mut repo, &src, &opts);
    let ancestors_unchanged = [&after_first, &before_second, &above(&src)]
        .iter()
        .all(|m| **m == before_first);
    assert_eq!(second.parent, Some(first_id), "the first is the parent");
    assert_eq!(
        (
            second.files_new,
            second.files_changed,
            second.files_unmodified
        ),
        (0, 0, n_files),
        "{second:?}"
    );
    assert_eq!((second.dirs_new, second.dirs_changed), (0, 0), "{second:?}");
    // Nothing read means no new data, and the backed-up directory has the same tree.
    assert_eq!(second.data_blobs, 0, "{second:?}");
    let second_id = second.snapshot_id.unwrap();
    // The repository a backup ran on does not know the blobs it just saved: reopen.
    let mut repo = open(be.clone());
    repo.load_index().unwrap();
    assert_eq!(
        subtree(&repo, &first_id, &src),
        subtree(&repo, &second_id, &src)
    );
    let a = repo.load_snapshot(&first_id).unwrap();
    let b = repo.load_snapshot(&second_id).unwrap();
    if ancestors_unchanged {
        assert_eq!(a.tree, b.tree, "the same root tree is stored");
        assert_eq!((second.tree_blobs, second.data_added), (0, 0), "{second:?}");
    } else {
        // Other tests create files in /tmp at the same time: the directories above the
        // target are stored with their metadata, so their trees may be new, no others.
        let ancestors = src.ancestors().count() as u64 - 1;
        assert!(second.tree_blobs <= ancestors, "{second:?}");
    }
    run_check(be, true).assert_clean();
}

#[test]
fn round_trip_v1() {
    round_trip(Case {
        version: 1,
        compression: Compression::Auto,
        compressed: false,
    });
}

#[test]
fn round_trip_v2_compressed() {
    round_trip(Case {
        version: 2,
        compression: Compression::Auto,
        compressed: true,
    });
}

#[test]
fn round_trip_v2_uncompressed() {
    round_trip(Case {
        version: 2,
        compression: Compression::Off,
        compressed: false,
    });
}
