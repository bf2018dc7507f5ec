//! restash restores what restic 0.14 backs up into version 2 (compressed) repositories:
//! every compression mode, whole snapshots, a snapshot subfolder, and include/exclude
//! filters that must select exactly what restic's do.
mod common;

use std::path::{Path, PathBuf};

use common::*;
use tempfile::TempDir;

/// Sources backed up into one repository: the tricky tree plus restic's own test trees.
struct Sources {
    _dirs: Vec<TempDir>,
    tricky: TrickyTree,
    fixtures: Vec<PathBuf>,
}

fn make_sources() -> Sources {
    let (tricky_dir, tricky) = common::tree::tricky_source();
    let mut dirs = vec![tricky_dir];
    let mut fixtures = Vec::new();
    for name in SOURCE_FIXTURES {
        let dir = unpack_fixture(name);
        fixtures.push(dir.path().canonicalize().expect("canonicalize"));
        dirs.push(dir);
    }
    Sources {
        _dirs: dirs,
        tricky,
        fixtures,
    }
}

/// Backs up each fixture tree, then the tricky tree last so that it is `latest`; returns
/// the repository and the snapshot id of each fixture tree.
fn backup_all(sources: &Sources, compression: &str) -> (Repo, Vec<String>) {
    let repo = Repo::init_v2();
    let mut ids = Vec::new();
    for source in &sources.fixtures {
        repo.restic_backup(source, compression);
        let snaps = repo.restic_snapshots();
        ids.push(
            snaps.last().expect("snapshot")["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    repo.restic_backup(&sources.tricky.root, compression);
    (repo, ids)
}

/// `restash restore <snapshot> --target <fresh dir>`; the directory is returned.
fn restash_restore(repo: &Repo, snapshot: &str, extra: &[&str]) -> TempDir {
    let target = tempfile::tempdir().expect("tempdir");
    let mut args = osargs!["restore", snapshot, "--target", target.path()];
    args.extend(extra.iter().map(Into::into));
    repo.restash(args).success();
    target
}

fn restic_restore(repo: &Repo, snapshot: &str, extra: &[&str]) -> TempDir {
    let target = tempfile::tempdir().expect("tempdir");
    let mut args = osargs!["restore", snapshot, "--target", target.path()];
    args.extend(extra.iter().map(Into::into));
    repo.restic(args).success();
    target
}

fn roundtrip(compression: &str) {
    let sources = make_sources();
    let (repo, fixture_ids) = backup_all(&sources, compression);
    let tree = &sources.tricky;

    let target = restash_restore(&repo, "latest", &[]);
    let restored = restored_path(target.path(), &tree.root);
    assert_trees_equal(&tree.root, &restored, &tree.restic_compare_options());
    assert_sparse(&restored);

    for (source, id) in sources.fixtures.iter().zip(&fixture_ids) {
        let target = restash_restore(&repo, id, &[]);
        assert_trees_equal(
            source,
            &restored_path(target.path(), source),
            &CompareOptions::default(),
        );
    }
}

/// Runs of zero blobs come back as holes: the 3 MiB zero file and the 8 MiB file with data
/// only at its ends occupy a fraction of their size on disk.
fn assert_sparse(restored: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    for (name, size) in [("zeros-3M.bin", 3u64 << 20), ("ends-8M.bin", 8 << 20)] {
        let m = std::fs::metadata(restored.join("sparse").join(name)).unwrap();
        assert_eq!(m.len(), size, "{name}");
        let on_disk = m.blocks() * 512;
        assert!(
            on_disk < size / 2,
            "{name} was written out in full ({on_disk} bytes on disk), not as holes"
        );
    }
}

#[test]
fn restash_restores_restic_v2_compression_off() {
    roundtrip("off");
}

#[test]
fn restash_restores_restic_v2_compression_auto() {
    roundtrip("auto");
}

#[test]
fn restash_restores_restic_v2_compression_max() {
    roundtrip("max");
}

/// `snapshot:subfolder` puts the subfolder's contents directly into the target, whose own
/// metadata is not in the snapshot. restic 0.14 predates this syntax (0.17 has it), so the
/// source subtree is the reference. "hard" holds two of a triple's three links.
#[test]
fn restore_snapshot_subfolder() {
    let (_dir, tree) = common::tree::tricky_source();
    let repo = Repo::init_v2();
    repo.restic_backup(&tree.root, "auto");
    let opts = CompareOptions {
        root_metadata: false,
        ..tree.restic_compare_options()
    };
    for sub in [
        "hard",
        "names",
        "modes/private-700",
        "deep/level-00/level-01",
    ] {
        let snap = format!("latest:{}", tree.root.join(sub).display());
        let target = restash_restore(&repo, &snap, &[]);
        assert_trees_equal(&tree.root.join(sub), target.path(), &opts);
    }
}

/// restic 0.14 restore filters, each compared with restic's own result for the same flags.
/// Patterns cover basename globs, absolute paths, relative multi-component paths, `**`, case
/// folding, directories (whose contents follow them) and one link of a hard-link group.
#[test]
fn include_exclude_match_restic() {
    let (_dir, tree) = common::tree::tricky_source();
    let repo = Repo::init_v2();
    repo.restic_backup(&tree.root, "auto");
    let root = tree.root.display().to_string();
    let cases: Vec<Vec<String>> = [
        vec!["--exclude", "*.bin"],
        vec!["--include", "*.txt"],
        vec!["--include", &format!("{root}/hard")],
        vec!["--exclude", &format!("{root}/links")],
        vec!["--include", "hard/sub"],
        vec!["--include", "triple-1"],
        vec!["--exclude", "level-1?", "--exclude", "names"],
        vec!["--iinclude", "*.TXT"],
        vec!["--iexclude", "MODES"],
        vec!["--include", &format!("{root}/*/pair-?")],
        vec!["--include", "deep/**/bottom.txt"],
        vec!["-i", "fifo", "-i", "empty-dir"],
        vec!["-e", "*"],
    ]
    .into_iter()
    .map(|c| c.into_iter().map(str::to_owned).collect())
    .collect();
    // The targets are made by the tools, so their own metadata is not compared.
    let opts = CompareOptions {
        root_metadata: false,
        ..tree.restic_compare_options()
    };
    let count = |p: &Path| common::tree::post_order(p).len();
    let all = count(restic_restore(&repo, "latest", &[]).path());
    let mut failures = Vec::new();
    for flags in &cases {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let want = restic_restore(&repo, "latest", &flags);
        // A filter that keeps everything tells no matching semantics apart; `-e *` is the
        // one deliberate case that keeps nothing.
        let n = count(want.path());
        assert!(
            n < all && (n > 1 || flags == ["-e", "*"]),
            "{flags:?} makes restic restore {n} of {all} entries; pick a better case"
        );
        let got = tempfile::tempdir().expect("tempdir");
        let mut args = osargs!["restore", "latest", "--target", got.path()];
        args.extend(flags.iter().map(Into::into));
        let out = repo.restash(args);
        if out.code != 0 {
            failures.push(format!("{flags:?}: restash failed\n{}", out.describe()));
            continue;
        }
        if let Err(diffs) = compare_trees_with(got.path(), want.path(), &opts) {
            failures.push(format!(
                "{flags:?}: restored trees differ (a = restash, b = restic), {} difference(s):{}",
                diffs.len(),
                summarize(&diffs, 25)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} filter cases differ:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
