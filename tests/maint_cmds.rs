//! `key add|remove|passwd`, `stats`, `find`, `diff` and `copy` against the real restic
//! 0.14: restic opens repositories with the keys restash adds, and restash prints the same
//! numbers, matches, change lines and copies as restic on the same repositories.
mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::tree::write_random_file;
use common::*;
use serde_json::Value;
use tempfile::TempDir;

/// A restic-written repository with two snapshots of a tree that has hard links,
/// duplicate files, a symlink and a file that becomes a directory in between.
struct History {
    _dir: TempDir,
    src: PathBuf,
    repo: Repo,
    first: String,
    second: String,
}

fn write(path: &Path, data: &str) {
    fs::write(path, data).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
}

fn build_history() -> History {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    for d in ["a/b", "c", "e/deep/er"] {
        fs::create_dir_all(src.join(d)).expect("mkdir");
    }
    write(&src.join("a/f1"), "hello\n");
    write(&src.join("c/f1dup"), "hello\n");
    write(&src.join("a/b/x"), "x\n");
    write(&src.join("e/deep/er/leaf.txt"), "leaf\n");
    write_random_file(&src.join("a/big"), 3_000_000, 7);
    fs::copy(src.join("a/big"), src.join("c/bigcopy")).expect("copy");
    fs::hard_link(src.join("a/f1"), src.join("a/hl")).expect("hard link");
    fs::hard_link(src.join("a/big"), src.join("c/big-hl")).expect("hard link");
    std::os::unix::fs::symlink("../a/f1", src.join("c/link")).expect("symlink");
    std::os::unix::fs::symlink("nowhere", src.join("e/gone")).expect("symlink");
    let repo = Repo::init_v2();
    repo.restic(osargs!["backup", "--host", "h1", "--tag", "t1", &src])
        .success();
    // Second snapshot: an added file, a modified file, removed entries, a file that is a
    // directory now, a symlink that is a file now, changed metadata only.
    write(&src.join("a/f1x"), "changed\n");
    write(&src.join("a/b/x"), "x\nmore\n");
    fs::remove_file(src.join("c/f1dup")).expect("rm");
    fs::create_dir(src.join("c/f1dup")).expect("mkdir");
    write(&src.join("c/f1dup/y"), "y\n");
    fs::remove_dir_all(src.join("e/deep")).expect("rm -r");
    fs::remove_file(src.join("e/gone")).expect("rm");
    write(&src.join("e/gone"), "now a file\n");
    common::tree::set_mtime(&src.join("a/big"), 1_577_836_800, 0);
    let mut perm = fs::metadata(src.join("c/bigcopy"))
        .expect("stat")
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
    fs::set_permissions(src.join("c/bigcopy"), perm).expect("chmod");
    repo.restic(osargs!["backup", "--host", "h2", &src])
        .success();
    let snaps = repo.restic_snapshots();
    let id = |host: &str| {
        snaps
            .iter()
            .find(|s| s["hostname"] == host)
            .and_then(|s| s["id"].as_str())
            .expect("snapshot of host")
            .to_string()
    };
    History {
        first: id("h1"),
        second: id("h2"),
        _dir: dir,
        src,
        repo,
    }
}

fn pw_file(dir: &Path, name: &str, pw: &str) -> PathBuf {
    let p = dir.join(name);
    write(&p, &format!("{pw}\n"));
    p
}

fn key_list(repo: &Repo, pw: &str) -> CmdOutput {
    restic(
        osargs!["-r", &repo.path, "key", "list", "--json"],
        &[("RESTIC_PASSWORD", pw)],
    )
}

fn current_key(repo: &Repo, pw: &str) -> String {
    let v = key_list(repo, pw).success().json();
    v.as_array()
        .expect("array")
        .iter()
        .find(|k| k["current"] == true)
        .and_then(|k| k["id"].as_str())
        .expect("current key")
        .to_string()
}

#[test]
fn key_add_remove_passwd() {
    let repo = Repo::init_v2();
    let tmp = tempfile::tempdir().expect("tempdir");
    let second = pw_file(tmp.path(), "second", "zweites");
    let third = pw_file(tmp.path(), "third", "drittes");
    let original = current_key(&repo, PASSWORD);

    repo.restash(osargs![
        "key",
        "add",
        "--new-password-file",
        &second,
        "--user",
        "bob",
        "--host",
        "box"
    ])
    .success();
    let keys = key_list(&repo, "zweites").success().json();
    let added = keys
        .as_array()
        .expect("array")
        .iter()
        .find(|k| k["current"] == true)
        .expect("restic opens the repository with the new password")
        .clone();
    assert_eq!(added["userName"], "bob");
    assert_eq!(added["hostName"], "box");
    let added_id = added["id"].as_str().expect("id").to_string();
    assert_ne!(added_id, original);
    // restic's calibrated scrypt parameters, as `init` uses them.
    let key_file = fs::read_dir(repo.path.join("keys"))
        .expect("keys")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&added_id))
        })
        .expect("new key file");
    let kf: Value = serde_json::from_slice(&fs::read(&key_file).expect("read key")).expect("json");
    assert_eq!(
        (kf["kdf"].as_str(), kf["N"].as_u64(), kf["r"].as_u64()),
        (Some("scrypt"), Some(32768), Some(8))
    );
    assert!(kf["p"].as_u64().is_some_and(|p| p >= 1), "{kf}");

    // The key in use may not be removed: restic's message, exit code 1.
    let out = repo
        .restash(osargs!["key", "remove", &original])
        .expect_code(1);
    assert!(
        out.stderr
            .contains("refusing to remove key currently used to access repository"),
        "{}",
        out.describe()
    );
    key_list(&repo, PASSWORD).success();

    // passwd with the second password: a new key for the third, the second one removed.
    repo.restash(osargs![
        "-p",
        &second,
        "key",
        "passwd",
        "--new-password-file",
        &third
    ])
    .success();
    key_list(&repo, "drittes").success();
    assert_ne!(key_list(&repo, "zweites").code, 0, "old password refused");
    key_list(&repo, PASSWORD).success();

    // The original key can go now that another one is used.
    let prefix = &original[..6];
    let out = repo
        .restash(osargs!["-p", &third, "key", "remove", prefix])
        .success();
    assert!(
        out.stdout_str().starts_with("removed key "),
        "{}",
        out.describe()
    );
    assert_ne!(key_list(&repo, PASSWORD).code, 0, "removed key refused");
    let left = key_list(&repo, "drittes").success().json();
    assert_eq!(left.as_array().map(Vec::len), Some(1));
    repo.restic(osargs!["-p", &third, "check"]).success();
    assert_eq!(
        fs::read_dir(repo.path.join("locks"))
            .expect("locks")
            .count(),
        0,
        "locks are released"
    );
}

fn stats_json(repo: &Path, tool: &str, args: &[&str]) -> Value {
    let mut all = osargs!["-r", repo, "stats", "--json"];
    all.extend(args.iter().map(std::ffi::OsString::from));
    let out = if tool == "restic" {
        restic(all, &[])
    } else {
        restash(all, &[])
    };
    out.success().json()
}

const MODES: &[&str] = &[
    "restore-size",
    "files-by-contents",
    "raw-data",
    "blobs-per-file",
];

#[test]
fn stats_matches_restic_on_fixtures() {
    for fx in REPO_FIXTURES.iter().filter(|f| f.check_ok) {
        let dir = unpack_fixture(fx.name);
        let repo = fixture_repo(&dir);
        for mode in MODES {
            let want = stats_json(&repo, "restic", &["--mode", mode]);
            let got = stats_json(&repo, "restash", &["--mode", mode]);
            assert_eq!(got, want, "{} --mode {mode}", fx.name);
        }
    }
}

#[test]
fn stats_matches_restic_with_hard_links_and_duplicates() {
    let h = build_history();
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec![&h.first],
        vec![&h.second[..8]],
        vec!["latest"],
        vec!["latest", "--host", "h1"],
        vec!["--host", "h2"],
        vec!["--tag", "t1"],
        vec![&h.first, &h.second],
    ];
    for args in &cases {
        for mode in MODES {
            let mut a = args.clone();
            a.extend(["--mode", mode]);
            let want = stats_json(&h.repo.path, "restic", &a);
            let got = stats_json(&h.repo.path, "restash", &a);
            assert_eq!(got, want, "stats {a:?}");
        }
    }
    // The text form too.
    let want = h.repo.restic(["stats", "--mode", "raw-data"]).success();
    let got = h.repo.restash(["stats", "--mode", "raw-data"]).success();
    assert_eq!(got.stdout_str(), want.stdout_str());
    let bad = h.repo.restash(["stats", "--mode", "nope"]);
    assert_eq!(bad.code, 1, "{}", bad.describe());
}

/// restic visits snapshots in an order it does not fix (parallel loads), so outputs are
/// compared as sets of lines (text) or of per-snapshot groups (JSON).
fn find_compare(repo: &Repo, args: &[&str]) {
    let mut a = vec!["find"];
    a.extend_from_slice(args);
    let want = repo.restic(&a);
    let got = repo.restash(&a);
    assert_eq!(got.code, want.code, "find {args:?}\n{}", got.describe());
    if args.contains(&"--json") && want.code == 0 {
        let norm = |v: Value| -> BTreeSet<String> {
            v.as_array()
                .expect("array")
                .iter()
                .map(|x| x.to_string())
                .collect()
        };
        assert_eq!(norm(got.json()), norm(want.json()), "find {args:?}");
        return;
    }
    let lines = |o: &CmdOutput| -> BTreeSet<String> {
        o.stdout_str().lines().map(str::to_string).collect()
    };
    assert_eq!(lines(&got), lines(&want), "find {args:?}");
}

#[test]
fn find_matches_restic() {
    let h = build_history();
    let repo = &h.repo;
    for args in [
        vec!["f1"],
        vec!["f1", "x", "*.txt"],
        vec!["-i", "F1*"],
        vec!["-l", "big"],
        vec!["--long", "link", "gone"],
        vec!["--json", "f1"],
        vec!["--json", "nomatch"],
        vec!["b"],
        vec!["deep"],
        vec!["*/c/*"],
        vec!["-s", &h.first[..8], "f1*"],
        vec!["--host", "h2", "x"],
        vec!["--tag", "t1", "--json", "*"],
        vec!["--newest", "2021-01-01", "big"],
        vec!["--oldest", "2021-01-01 00:00", "-l", "big"],
    ] {
        find_compare(repo, &args);
    }
    let blobs = repo.restic(["list", "blobs"]).success();
    let list: Vec<(String, String)> = blobs
        .stdout_str()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(t, id)| (t.to_string(), id.to_string()))
        .collect();
    let data = list.iter().find(|(t, _)| t == "data").expect("data blob");
    let trees: Vec<_> = list.iter().filter(|(t, _)| t == "tree").collect();
    let tree = trees[trees.len() / 2];
    find_compare(repo, &["--blob", &data.1]);
    find_compare(repo, &["--blob", &data.1[..8], "--show-pack-id"]);
    find_compare(repo, &["--json", "--blob", &data.1[..8]]);
    find_compare(repo, &["--tree", &tree.1, "--show-pack-id"]);
    find_compare(repo, &["--json", "--tree", &tree.1[..8]]);
    find_compare(repo, &["--blob", "--tree", "x"]);
    let packs = repo.restic(["list", "packs"]).success();
    let pack = packs
        .stdout_str()
        .lines()
        .next()
        .expect("a pack")
        .to_string();
    find_compare(repo, &["--pack", &pack]);
    find_compare(repo, &["--pack", &pack[..8], "--json"]);
    find_compare(repo, &["--pack", "deadbeef"]);
}

#[test]
fn diff_matches_restic() {
    let h = build_history();
    let (a, b) = (&h.first[..8], &h.second[..8]);
    for args in [
        vec![a, b],
        vec![b, a],
        vec!["--metadata", a, b],
        vec!["--json", a, b],
        vec!["--json", "--metadata", b, a],
        vec!["-q", a, b],
        vec![a, a],
        vec![a],
        vec!["latest", b],
    ] {
        let mut all = vec!["diff"];
        all.extend_from_slice(&args);
        let want = h.repo.restic(&all);
        let got = h.repo.restash(&all);
        assert_eq!(got.code, want.code, "diff {args:?}\n{}", got.describe());
        assert_eq!(got.stdout_str(), want.stdout_str(), "diff {args:?}");
    }
    // The cases above cover every modifier.
    let out = h.repo.restash(["diff", "--metadata", a, b]).success();
    let text = out.stdout_str();
    for m in ["+    ", "-    ", "M    ", "T", "U    "] {
        assert!(
            text.lines().any(|l| l.starts_with(m)),
            "no {m:?} line in\n{text}"
        );
    }
    drop(h.src);
}

/// The restore targets themselves are not part of the snapshots.
fn target_only() -> CompareOptions {
    CompareOptions {
        root_metadata: false,
        ..Default::default()
    }
}

fn restore(repo: &Path, tool: &str, snapshot: &str, target: &Path, env: &[(&str, &str)]) {
    let args = osargs!["-r", repo, "restore", snapshot, "--target", target];
    let out = if tool == "restic" {
        restic(args, env)
    } else {
        restash(args, env)
    };
    out.success();
}

fn snapshot_map(repo: &Path, env: &[(&str, &str)]) -> Vec<Value> {
    let v = restic(osargs!["-r", repo, "snapshots", "--json"], env)
        .success()
        .json();
    v.as_array().expect("array").clone()
}

#[test]
fn copy_between_repositories() {
    let h = build_history();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dst_path = tmp.path().join("dst");
    let dst_env = [("RESTIC_PASSWORD", "ziel")];
    restic(osargs!["-r", &dst_path, "init"], &dst_env).success();
    let src_pw = pw_file(tmp.path(), "srcpw", PASSWORD);

    let out = restash(
        osargs![
            "-r",
            &dst_path,
            "copy",
            "--from-repo",
            &h.repo.path,
            "--from-password-file",
            &src_pw
        ],
        &dst_env,
    )
    .success();
    assert_eq!(
        out.stdout_str().matches("copy started").count(),
        2,
        "{}",
        out.describe()
    );
    restic(osargs!["-r", &dst_path, "check", "--read-data"], &dst_env).success();

    let copies = snapshot_map(&dst_path, &dst_env);
    assert_eq!(copies.len(), 2);
    for sn in h.repo.restic_snapshots() {
        let id = sn["id"].as_str().expect("id");
        let copy = copies
            .iter()
            .find(|c| c["original"] == id)
            .expect("a copy whose original is the source snapshot");
        assert_eq!(copy["tree"], sn["tree"], "same tree id");
        assert!(copy.get("parent").is_none(), "copies have no parent");
        let a = tmp.path().join(format!("a-{id}"));
        let b = tmp.path().join(format!("b-{id}"));
        restore(&h.repo.path, "restic", id, &a, &[]);
        restore(
            &dst_path,
            "restic",
            copy["id"].as_str().expect("id"),
            &b,
            &dst_env,
        );
        assert_trees_equal(&a, &b, &target_only());
    }

    // A second copy finds both snapshots copied and writes nothing.
    let before = common::backup::repo_listing(&dst_path);
    let out = restash(
        osargs![
            "-r",
            &dst_path,
            "copy",
            "--from-repo",
            &h.repo.path,
            "--from-password-file",
            &src_pw
        ],
        &dst_env,
    )
    .success();
    assert_eq!(
        out.stdout_str().matches("skipping source snapshot").count(),
        2
    );
    let after = common::backup::repo_listing(&dst_path);
    let changed: Vec<_> = after
        .keys()
        .filter(|k| !before.contains_key(*k) && !k.starts_with("locks"))
        .collect();
    assert!(changed.is_empty(), "second copy wrote {changed:?}");

    // restic's own copy agrees that nothing is left to copy.
    let out = restic(
        osargs![
            "-r",
            &dst_path,
            "copy",
            "--from-repo",
            &h.repo.path,
            "--from-password-file",
            &src_pw
        ],
        &dst_env,
    )
    .success();
    assert!(
        !out.stdout_str().contains("copy started"),
        "{}",
        out.describe()
    );

    // Into a restash-made v1 repository, source from the environment, one snapshot.
    let v1 = tmp.path().join("v1");
    restash(
        osargs!["-r", &v1, "init", "--repository-version", "1"],
        &dst_env,
    )
    .success();
    restash(
        osargs!["-r", &v1, "copy", "latest", "--host", "h1"],
        &[
            ("RESTIC_PASSWORD", "ziel"),
            (
                "RESTIC_FROM_REPOSITORY",
                h.repo.path.to_str().expect("utf-8"),
            ),
            ("RESTIC_FROM_PASSWORD", PASSWORD),
        ],
    )
    .success();
    restic(osargs!["-r", &v1, "check", "--read-data"], &dst_env).success();
    let v1_snaps = snapshot_map(&v1, &dst_env);
    assert_eq!(v1_snaps.len(), 1);
    assert_eq!(v1_snaps[0]["original"].as_str(), Some(h.first.as_str()));
    let a = tmp.path().join("v1-a");
    let b = tmp.path().join("v1-b");
    restore(&h.repo.path, "restic", &h.first, &a, &[]);
    restore(&v1, "restash", "latest", &b, &dst_env);
    assert_trees_equal(&a, &b, &target_only());
}

/// restic's copy fixture (trees whose JSON restic would write differently today, copied as
/// raw bytes) and the fixtures with duplicate blobs: the copies pass `check --read-data`
/// and keep every tree id.
#[test]
fn copy_fixtures_keeps_trees() {
    for name in [
        "copy-unstable-json",
        "repo-duplicates",
        "duplicate-packs-in-index-test-repo",
        "small-repo",
    ] {
        let dir = unpack_fixture(name);
        let src = fixture_repo(&dir);
        let tmp = tempfile::tempdir().expect("tempdir");
        let dst = tmp.path().join("dst");
        let env = [("RESTIC_PASSWORD", "ziel")];
        restic(osargs!["-r", &dst, "init"], &env).success();
        if name == "small-repo" {
            // restic 0.14's deprecated form: the source is `-r`, the destination `--repo2`.
            let pw = pw_file(tmp.path(), "dstpw", "ziel");
            restash(
                osargs!["-r", &src, "copy", "--repo2", &dst, "--password-file2", &pw],
                &[],
            )
            .success();
        } else {
            restash(
                osargs!["-r", &dst, "copy", "--from-repo", &src],
                &[
                    ("RESTIC_PASSWORD", "ziel"),
                    ("RESTIC_FROM_PASSWORD", PASSWORD),
                ],
            )
            .success();
        }
        restic(osargs!["-r", &dst, "check", "--read-data"], &env).success();
        let trees = |snaps: Vec<Value>| -> BTreeSet<String> {
            snaps.iter().map(|s| s["tree"].to_string()).collect()
        };
        assert_eq!(
            trees(snapshot_map(&dst, &env)),
            trees(snapshot_map(&src, &[])),
            "{name}"
        );
    }
}

/// `key add` takes a shared lock, `key remove` and `key passwd` an exclusive one: while a
/// restic backup holds its lock, adding works and the others fail with exit code 11.
#[test]
fn key_locks_like_restic() {
    use common::backup::{Background, Tool};
    let repo = Repo::init_v2();
    let tmp = tempfile::tempdir().expect("tempdir");
    let second = pw_file(tmp.path(), "second", "zweites");
    let third = pw_file(tmp.path(), "third", "drittes");
    repo.restash(osargs!["key", "add", "--new-password-file", &second])
        .success();
    let other = current_key(&repo, "zweites");

    // restic backup --stdin holds its shared lock until stdin closes.
    let mut backup = Background::spawn(
        Tool::Restic,
        osargs!["-r", &repo.path, "backup", "--stdin"],
        &[],
        true,
    );
    let locks = repo.path.join("locks");
    // Waits for the lock file (bounded so that a broken restic cannot hang the test).
    for _ in 0..600 {
        if fs::read_dir(&locks).map(|d| d.count()).unwrap_or(0) > 0 || !backup.running() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(backup.running(), "restic backup ended early");
    assert_eq!(fs::read_dir(&locks).expect("locks").count(), 1);

    let out = repo
        .restash(osargs!["key", "remove", &other])
        .expect_code(11);
    assert!(out.stderr.contains("locked"), "{}", out.describe());
    repo.restash(osargs!["key", "passwd", "--new-password-file", &third])
        .expect_code(11);
    repo.restash(osargs!["key", "add", "--new-password-file", &third])
        .success();

    // Nothing was written to stdin: restic refuses the empty snapshot, and unlocks.
    backup.close_stdin();
    backup.wait().expect_code(1);
    assert_eq!(fs::read_dir(&locks).expect("locks").count(), 0);
    key_list(&repo, "drittes").success();
    key_list(&repo, "zweites").success();
    repo.restash(osargs!["key", "remove", &other]).success();
    assert_ne!(key_list(&repo, "zweites").code, 0);
}
