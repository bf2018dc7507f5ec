//! A repository with one damaged file is still answered truthfully: a damaged snapshot is
//! named and never quietly replaced by an older one, a damaged key file does not lock out
//! the holders of other keys and `check` reports it, and the temporary files of killed
//! backups are reported by `check` and removed by `prune`. restic 0.14 is the oracle for
//! what the repository holds and for exit codes.
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::backup::*;
use common::*;
use tempfile::TempDir;

const HOST: &str = "damage-host";

fn write(path: &Path, data: &str) {
    fs::write(path, data).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
}

/// Appends to a read-only repository file, as damage on disk would.
fn damage(path: &Path) {
    let mut perm = fs::metadata(path).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
    fs::set_permissions(path, perm).expect("chmod");
    let mut data = fs::read(path).expect("read");
    data.extend_from_slice(b"garbage\n");
    fs::write(path, data).expect("write");
}

/// Two restash snapshots of `src/f`: "one", then "two". Returns (dir, src, repo, first id,
/// second id).
fn two_snapshots() -> (TempDir, PathBuf, Repo, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    let repo = init_repo(Tool::Restash, &dir.path().join("repo"), None);
    write(&src.join("f"), "one\n");
    repo.restash(osargs!["backup", "--host", HOST, &src])
        .success();
    let first = snapshot_id(&snapshots(&repo)[0]);
    write(&src.join("f"), "two\n");
    let before = snapshots(&repo);
    repo.restash(osargs!["backup", "--host", HOST, &src])
        .success();
    let second = snapshot_id(&new_snapshot(&repo, &before));
    (dir, src, repo, first, second)
}

#[track_caller]
fn fails_naming(out: CmdOutput, code: i32, id: &str) {
    let out = out.expect_code(code);
    assert!(
        out.stderr.contains(&id[..8]),
        "stderr does not name snapshot {}\n{}",
        &id[..8],
        out.describe()
    );
}

/// Item 3: the newest snapshot damaged. Every command that must choose a snapshot
/// (`latest`, the damaged one's prefix, a backup's parent) fails naming it, as restic does,
/// instead of answering with the older snapshot; commands naming the readable one work and
/// still name the damaged one; `snapshots` lists the readable one, names the other and
/// exits 0 like restic 0.14.
#[test]
fn damaged_newest_snapshot_is_never_replaced_by_an_older_one() {
    let (dir, src, repo, first, second) = two_snapshots();
    damage(&repo.path.join("snapshots").join(&second));
    let target = dir.path().join("out");

    // The oracle: restic refuses `restore latest`.
    repo.restic(osargs![
        "restore",
        "latest",
        "--target",
        dir.path().join("restic-out")
    ])
    .expect_code(1);

    fails_naming(
        repo.restash(osargs!["restore", "latest", "--target", &target]),
        1,
        &second,
    );
    assert!(!target.exists(), "a failed restore wrote {target:?}");
    fails_naming(repo.restash(["ls", "latest"]), 1, &second);
    fails_naming(repo.restash(["cat", "snapshot", "latest"]), 1, &second);
    fails_naming(repo.restash(["dump", "latest", "f"]), 1, &second);
    fails_naming(
        repo.restash(["restore", &second[..8], "--target", "/nonexistent"]),
        1,
        &second,
    );
    fails_naming(
        repo.restash(["diff", &first[..8], &second[..8]]),
        1,
        &second,
    );
    // The parent of the next backup would be chosen among the snapshots too.
    fails_naming(
        repo.restash(osargs!["backup", "--host", HOST, &src]),
        1,
        &second,
    );

    // Named explicitly, the readable snapshot restores (the damaged one is still named).
    let out = repo
        .restash(osargs!["restore", &first, "--target", &target])
        .success();
    assert!(out.stderr.contains(&second[..8]), "{}", out.describe());
    let restored = fs::read_to_string(restored_path(&target, &src).join("f")).expect("read f");
    assert_eq!(restored, "one\n");

    // `snapshots`: the readable one listed, the damaged one named, exit 0 as restic.
    let out = repo.restash(["snapshots", "--json"]);
    let restic_code = repo.restic(["snapshots", "--json"]).code;
    assert_eq!(out.code, restic_code, "{}", out.describe());
    let listed: Vec<String> = out
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(snapshot_id)
        .collect();
    assert_eq!(listed, [first]);
    assert!(out.stderr.contains(&second[..8]), "{}", out.describe());

    // `--force` backs up without a parent; the new snapshot restores the current data.
    repo.restash(osargs!["backup", "--force", "--host", HOST, &src])
        .success();
    let out = repo.restash(["check"]);
    fails_naming(out, 1, &second);
}

/// Item 5: two keys, the first (in listing order) damaged. The other key's password still
/// opens the repository with a warning naming the damaged file; `key list` lists the good
/// key and names the other; `check` reports the damaged key, and also one whose JSON is
/// intact but whose bytes no longer match its name.
#[test]
fn a_damaged_key_file_locks_nobody_out_and_check_reports_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = init_repo(Tool::Restash, &dir.path().join("repo"), None);
    let pw2 = dir.path().join("pw2");
    write(&pw2, "second password\n");
    repo.restash(osargs!["key", "add", "--new-password-file", &pw2])
        .success();
    let keys: Vec<String> = {
        let mut v: Vec<String> = fs::read_dir(repo.path.join("keys"))
            .expect("keys")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(keys.len(), 2);
    // Damage the key sorted first, so every open meets it before the good one, and make
    // the good one the second password's key whichever it is.
    let (bad, good) = (&keys[0], &keys[1]);
    let opened_by = |pw: &str| -> CmdOutput {
        restash(
            osargs!["-r", &repo.path, "key", "list", "--json"],
            &[("RESTIC_PASSWORD", pw)],
        )
    };
    let good_pw = if opened_by(PASSWORD)
        .json()
        .as_array()
        .expect("keys")
        .iter()
        .any(|k| k["current"] == true && good.starts_with(k["id"].as_str().unwrap_or("-")))
    {
        PASSWORD
    } else {
        "second password"
    };
    damage(&repo.path.join("keys").join(bad));

    let env = [("RESTIC_PASSWORD", good_pw)];
    let out = restash(osargs!["-r", &repo.path, "snapshots"], &env).success();
    assert!(out.stderr.contains(&bad[..8]), "{}", out.describe());
    let out = restash(osargs!["-r", &repo.path, "key", "list", "--json"], &env).success();
    let listed: Vec<String> = out
        .json()
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(listed, [good[..8].to_string()]);
    assert!(out.stderr.contains(&bad[..8]), "{}", out.describe());
    let out = restash(osargs!["-r", &repo.path, "check"], &env).expect_code(1);
    assert!(out.stderr.contains(&bad[..8]), "{}", out.describe());

    // The damaged key's own password: no key opens, but it is not called a wrong password
    // (exit 12) while a key that may be its key cannot be read.
    let other_pw = if good_pw == PASSWORD {
        "second password"
    } else {
        PASSWORD
    };
    let out = restash(
        osargs!["-r", &repo.path, "snapshots"],
        &[("RESTIC_PASSWORD", other_pw)],
    )
    .expect_code(1);
    assert!(out.stderr.contains(&bad[..8]), "{}", out.describe());
    // A password no key holds while every key file reads: restic's exit code 12.
    fs::remove_file(repo.path.join("keys").join(bad)).expect("rm key");
    restash(
        osargs!["-r", &repo.path, "snapshots"],
        &[("RESTIC_PASSWORD", "nobody's")],
    )
    .expect_code(12);

    // Damage that leaves valid JSON: one character of the base64 salt changed. A third key
    // keeps the repository open.
    let pw3 = dir.path().join("pw3");
    write(&pw3, "third password\n");
    restash(
        osargs!["-r", &repo.path, "key", "add", "--new-password-file", &pw3],
        &env,
    )
    .success();
    let path = repo.path.join("keys").join(good);
    let text = fs::read_to_string(&path).expect("key");
    let at = text.find("\"salt\":\"").expect("salt") + 8;
    let old = text.as_bytes()[at];
    let new = if old == b'A' { "B" } else { "A" };
    let changed = format!("{}{new}{}", &text[..at], &text[at + 1..]);
    let mut perm = fs::metadata(&path).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
    fs::set_permissions(&path, perm).expect("chmod");
    write(&path, &changed);
    let out = restash(
        osargs!["-r", &repo.path, "check"],
        &[("RESTIC_PASSWORD", "third password")],
    );
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(out.stderr.contains(&good[..8]), "{}", out.describe());
}

/// `<id>-tmp-<random>` files in the repository: written here as a killed write leaves
/// them, plus whatever real killed backups left.
fn leftovers(repo: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in common::tree::post_order(repo) {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.len() > 64 && name[64..].starts_with("-tmp-") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Kills backups the moment a temporary file appears in `data/`, so they leave one behind
/// (at most `tries` backups). Returns how many were left.
fn kill_backups_mid_write(repo: &Path, src: &Path, tries: usize) -> usize {
    for _ in 0..tries {
        let bg = Background::spawn(
            Tool::Restash,
            with_repo(repo, osargs!["backup", "--force", "--host", HOST, src]),
            &[],
            false,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut bg = bg;
        while bg.running() && Instant::now() < deadline && leftovers(repo).is_empty() {
            std::thread::sleep(Duration::from_micros(200));
        }
        bg.kill();
        // A killed backup leaves its lock; prune needs it gone.
        run_tool(Tool::Restic, with_repo(repo, ["unlock"]), None, None, &[]).success();
        if !leftovers(repo).is_empty() {
            break;
        }
    }
    leftovers(repo).len()
}

/// Item 4: temporary files of killed writes. `check` names each; `prune` removes those
/// older than a stale lock and keeps a fresh one (a write may still be filling it);
/// restic's check is clean before and after.
#[test]
fn leftovers_of_killed_backups_are_reported_and_pruned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    write_dataset(&src, 40, 64 << 20, 3);
    let repo = init_repo(Tool::Restash, &dir.path().join("repo"), None);
    let natural = kill_backups_mid_write(&repo.path, &src, 10);
    eprintln!("{natural} temporary file(s) left by killed backups");
    for p in leftovers(&repo.path) {
        // Those made by killed backups are as old as a stale lock by now, for prune.
        common::tree::set_mtime(&p, now_secs() - 7200, 0);
    }

    let id = "ab".repeat(32);
    let stale = [
        repo.path.join(format!("data/ab/{id}-tmp-0123456789abcdef")),
        repo.path.join(format!("snapshots/{id}-tmp-1")),
    ];
    let fresh = repo.path.join(format!("index/{id}-tmp-2"));
    for p in stale.iter().chain([&fresh]) {
        write(p, "partial");
    }
    for p in &stale {
        common::tree::set_mtime(p, now_secs() - 7200, 0);
    }
    let all = leftovers(&repo.path);
    assert_eq!(all.len(), natural + 3);

    repo.restic(["check"]).success();
    let out = repo.restash(["check"]).success();
    let text = out.stdout_str();
    for p in &all {
        let rel = p.strip_prefix(&repo.path).expect("in repo");
        assert!(
            text.contains(rel.to_str().expect("utf-8")),
            "check does not name {rel:?}\n{}",
            out.describe()
        );
    }

    repo.restash(["prune", "--dry-run"]).success();
    assert_eq!(leftovers(&repo.path), all, "a dry run removed something");
    let out = repo.restash(["prune"]).success();
    assert!(
        out.stdout_str()
            .contains(&format!("removed {} temporary files", natural + 2)),
        "{}",
        out.describe()
    );
    assert_eq!(leftovers(&repo.path), [fresh]);
    repo.restic(["check", "--read-data"]).success();
    repo.restash(["check", "--read-data"]).success();
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A lock file that cannot be read may be a live lock: locking fails naming it (exit 11,
/// as newer restic), and `unlock` removes it, since a damaged lock protects nothing.
#[test]
fn a_damaged_lock_blocks_until_unlock_removes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    write(&src.join("f"), "data\n");
    let repo = init_repo(Tool::Restash, &dir.path().join("repo"), None);
    let lock = "cd".repeat(32);
    write(&repo.path.join("locks").join(&lock), "not a lock");
    let out = repo.restash(osargs!["backup", "--host", HOST, &src]);
    fails_naming(out, 11, &lock);
    repo.restash(["unlock"]).success();
    assert!(!repo.path.join("locks").join(&lock).exists());
    repo.restash(osargs!["backup", "--host", HOST, &src])
        .success();
}

/// A parent whose trees cannot be read costs the new snapshot nothing (its files are read
/// again), but the damage is named on stderr instead of passing unseen.
#[test]
fn a_damaged_parent_tree_is_named_and_the_backup_completes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("sub")).expect("mkdir");
    write(&src.join("sub/f"), "data\n");
    let repo = init_repo(Tool::Restash, &dir.path().join("repo"), None);
    repo.restash(osargs!["backup", "--host", HOST, &src])
        .success();
    // Overwrite the pack of tree blobs with garbage of the same size.
    let mut tree_packs = Vec::new();
    for index in repo
        .restic(["list", "index"])
        .success()
        .stdout_str()
        .lines()
    {
        let v = repo.restic(["cat", "index", index]).success().json();
        for pack in v["packs"].as_array().expect("packs") {
            if pack["blobs"]
                .as_array()
                .expect("blobs")
                .iter()
                .all(|b| b["type"] == "tree")
            {
                tree_packs.push(pack["id"].as_str().expect("id").to_string());
            }
        }
    }
    assert_eq!(tree_packs.len(), 1, "{tree_packs:?}");
    let path = repo
        .path
        .join("data")
        .join(&tree_packs[0][..2])
        .join(&tree_packs[0]);
    let len = fs::metadata(&path).expect("stat").len() as usize;
    fs::remove_file(&path).expect("rm");
    fs::write(&path, vec![0x5a; len]).expect("write");

    // Without the cache, which kept the good pack when the first backup wrote it: a pod
    // whose cache is new each night reads the damaged one.
    let out = repo
        .restash(osargs!["--no-cache", "backup", "--host", HOST, &src])
        .success();
    assert!(
        out.stderr
            .contains("of the parent snapshot could not be loaded"),
        "{}",
        out.describe()
    );
}
