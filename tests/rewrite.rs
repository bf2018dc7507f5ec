//! `restash rewrite` (restic 0.17's command) with restic 0.14 as the oracle, which has no
//! `rewrite` but reads what it leaves: on repositories written by restic and by restash,
//! excluding a file and directories yields a new snapshot (tag `rewrite`, `original` the
//! old id) that `restic check --read-data` accepts and `restic restore` brings back as the
//! source without the excluded paths; `--forget` removes the original; `--dry-run` and a
//! snapshot with nothing to exclude leave every repository file as it was; exclude files
//! work; unknown ids and nothing to do are answered as restic answers them.
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::backup::{init_repo, run_tool, snapshots, with_repo, Tool, HOST};
use common::tree::{post_order, tricky_source};
use common::*;
use serde_json::Value;
use tempfile::TempDir;

/// A repository with one snapshot of the tricky tree, written by `tool`.
struct Setup {
    dir: TempDir,
    tree: TrickyTree,
    repo: Repo,
    id: String,
}

fn setup(tool: Tool) -> Setup {
    let (dir, tree) = tricky_source();
    let path = dir.path().join("repo");
    init_repo(tool, &path, Some("2"));
    run_tool(
        tool,
        with_repo(&path, osargs!["backup", "--host", HOST, &tree.root]),
        None,
        None,
        &[],
    )
    .success();
    let repo = Repo::new(path, None);
    let snaps = snapshots(&repo);
    assert_eq!(snaps.len(), 1);
    let id = snaps[0]["id"].as_str().expect("id").to_string();
    Setup {
        dir,
        tree,
        repo,
        id,
    }
}

/// Every file below `dir` with its content: "nothing was written" compares these.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    post_order(dir)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let data = fs::read(&p).expect("read");
            (p.strip_prefix(dir).expect("below").to_path_buf(), data)
        })
        .collect()
}

fn find<'a>(snaps: &'a [Value], id: &str) -> Option<&'a Value> {
    snaps.iter().find(|s| s["id"] == id)
}

/// The snapshot whose `original` is `id`.
fn rewritten_from<'a>(snaps: &'a [Value], id: &str) -> &'a Value {
    snaps
        .iter()
        .find(|s| s["original"] == id)
        .unwrap_or_else(|| panic!("no snapshot with original {id}: {snaps:?}"))
}

/// `restic restore` of `snapshot` equals the source without `excluded` (relative paths),
/// and `restic check --read-data` accepts the repository.
fn assert_restores_without(s: &Setup, snapshot: &str, excluded: &[&str]) {
    s.repo.restic(["check", "--read-data"]).success();
    let target = s.dir.path().join(format!("restored-{}", &snapshot[..8]));
    s.repo
        .restic(osargs!["restore", snapshot, "--target", &target])
        .success();
    let restored = restored_path(&target, &s.tree.root);
    for rel in excluded {
        assert!(
            fs::symlink_metadata(restored.join(rel)).is_err(),
            "{rel} was restored"
        );
    }
    let mut opts = s.tree.restic_compare_options();
    opts.skip = excluded.iter().map(PathBuf::from).collect();
    assert_trees_equal(&s.tree.root, &restored, &opts);
}

/// The relative paths excluded in the main cases: a 20 MiB file named anywhere, a
/// directory by its absolute path, and an entry of the directory with the awkward names
/// (so that its tree, which restic wrote, is encoded again).
const EXCLUDED: [&str; 3] = [
    "files/random-20M.bin",
    "sparse",
    "names/ünïcødé dir ✓/inside",
];

fn exclude_and_restore(tool: Tool) {
    let s = setup(tool);
    let root = s.tree.root.display().to_string();
    let out = s
        .repo
        .restash(osargs![
            "rewrite",
            "--exclude",
            "random-20M.bin",
            "--exclude",
            format!("{root}/sparse"),
            "--iexclude",
            format!("{root}/NAMES/*/INSIDE"),
        ])
        .success();
    let stdout = out.stdout_str();
    let snaps = snapshots(&s.repo);
    assert_eq!(snaps.len(), 2, "the original stays");
    let new = rewritten_from(&snaps, &s.id);
    let old = find(&snaps, &s.id).expect("original");
    let new_id = new["id"].as_str().expect("id");
    // restic 0.17's lines, in its order.
    let expected = [
        format!("snapshot {} of [{root}] at ", &s.id[..8]),
        format!("excluding {root}/files/random-20M.bin"),
        format!("excluding {root}/names/ünïcødé dir ✓/inside"),
        format!("excluding {root}/sparse"),
        format!("saved new snapshot {}", &new_id[..8]),
        "modified 1 snapshots".to_string(),
    ];
    let mut rest = stdout;
    for want in &expected {
        let at = rest
            .find(want.as_str())
            .unwrap_or_else(|| panic!("{want:?} missing or out of order in\n{stdout}"));
        rest = &rest[at + want.len()..];
    }
    assert_eq!(new["tags"], serde_json::json!(["rewrite"]));
    for field in ["time", "hostname", "paths", "username"] {
        assert_eq!(new[field], old[field], "{field}");
    }
    assert_ne!(new["tree"], old["tree"]);
    assert_restores_without(&s, new_id, &EXCLUDED);
    assert_restores_without(&s, &s.id, &[]);
}

#[test]
fn exclude_from_a_restic_repository() {
    exclude_and_restore(Tool::Restic);
}

#[test]
fn exclude_from_a_restash_repository() {
    exclude_and_restore(Tool::Restash);
}

#[test]
fn forget_removes_the_original_and_dry_run_writes_nothing() {
    let s = setup(Tool::Restic);
    let root = s.tree.root.display().to_string();
    let exclude = format!("{root}/files");
    let before = contents(&s.repo.path);
    let out = s
        .repo
        .restash(osargs!["rewrite", "-n", "--forget", "--exclude", &exclude])
        .success();
    let stdout = out.stdout_str();
    for want in [
        "create exclusive lock for repository",
        &format!("excluding {exclude}"),
        "would save new snapshot",
        "would remove old snapshot",
        "would modify 1 snapshots",
    ] {
        assert!(stdout.contains(want), "{want:?} missing in\n{stdout}");
    }
    assert_eq!(contents(&s.repo.path), before, "a dry run writes nothing");

    let out = s
        .repo
        .restash(osargs![
            "rewrite",
            "--forget",
            "--exclude",
            &exclude,
            &s.id[..8]
        ])
        .success();
    let snaps = snapshots(&s.repo);
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let new = rewritten_from(&snaps, &s.id);
    assert!(
        new.get("tags").is_none(),
        "no rewrite tag with --forget: {new}"
    );
    assert!(
        out.stdout_str()
            .contains(&format!("removed old snapshot {}", &s.id[..8])),
        "{}",
        out.describe()
    );
    assert_restores_without(&s, new["id"].as_str().expect("id"), &["files"]);
}

#[test]
fn nothing_to_exclude_leaves_the_snapshot_alone() {
    let s = setup(Tool::Restash);
    let before = contents(&s.repo.path);
    let out = s
        .repo
        .restash([
            "rewrite",
            "--exclude",
            "/no/such/path",
            "--exclude",
            "*.nothing",
        ])
        .success();
    assert!(
        out.stdout_str().contains("no snapshots were modified"),
        "{}",
        out.describe()
    );
    assert_eq!(contents(&s.repo.path), before);
}

#[test]
fn exclude_file_with_comments_and_case_insensitive_file() {
    let s = setup(Tool::Restic);
    let root = s.tree.root.display().to_string();
    let list = s.dir.path().join("excludes");
    fs::write(&list, format!("# big files\n\n{root}/files/random-*.bin\n")).expect("write");
    let ilist = s.dir.path().join("iexcludes");
    fs::write(&ilist, "EMPTY-DIR\n").expect("write");
    s.repo
        .restash(osargs![
            "rewrite",
            "--exclude-file",
            &list,
            "--iexclude-file",
            &ilist
        ])
        .success();
    let snaps = snapshots(&s.repo);
    let new = rewritten_from(&snaps, &s.id)["id"].as_str().expect("id");
    assert_restores_without(
        &s,
        new,
        &["files/random-20M.bin", "files/random-odd.bin", "empty-dir"],
    );
}

#[test]
fn unknown_ids_and_nothing_to_do_are_answered_as_restic_answers() {
    let s = setup(Tool::Restash);
    let before = contents(&s.repo.path);
    // restic 0.17 skips an id it cannot find, with a warning, and succeeds.
    let out = s
        .repo
        .restash(["rewrite", "--exclude", "*", "deadbeef"])
        .success();
    assert!(
        out.stderr
            .contains(r#"Ignoring "deadbeef": no matching ID found for prefix "deadbeef""#),
        "{}",
        out.describe()
    );
    assert!(out.stdout_str().contains("no snapshots were modified"));
    let out = s.repo.restash(["rewrite"]).expect_code(1);
    assert!(
        out.stderr
            .contains("Fatal: Nothing to do: no excludes provided and no new metadata provided"),
        "{}",
        out.describe()
    );
    assert_eq!(contents(&s.repo.path), before);
}

#[test]
fn new_host_and_time() {
    let s = setup(Tool::Restic);
    s.repo
        .restash([
            "rewrite",
            "--new-host",
            "elsewhere",
            "--new-time",
            "2021-02-03 04:05:06",
        ])
        .success();
    let snaps = snapshots(&s.repo);
    let new = rewritten_from(&snaps, &s.id);
    let old = find(&snaps, &s.id).expect("original");
    assert_eq!(new["hostname"], "elsewhere");
    // The tests run with TZ=UTC: the local time is UTC.
    assert_eq!(new["time"], "2021-02-03T04:05:06Z");
    assert_eq!(new["tree"], old["tree"]);
    let bad = s
        .repo
        .restash(["rewrite", "--new-time", "yesterday"])
        .expect_code(1);
    assert!(
        bad.stderr.contains("error in time option"),
        "{}",
        bad.describe()
    );
}
