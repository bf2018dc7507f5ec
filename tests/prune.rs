//! `restash prune` against restic 0.14's: a long-lived repository (30 daily backups with
//! changes and deletions, thinned by restash's `forget`) pruned by both tools ends up
//! the same size, passes `restic check --read-data` and restores every kept snapshot
//! identically; prune aborted at each step of its execution (and killed at random moments)
//! leaves a repository restic checks clean and the next prune completes; a running
//! backup's lock makes prune exit 11; `--dry-run` changes nothing.
mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::backup::*;
use common::tree::{write_random_file, Prng};
use common::*;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// The long-lived repository after `forget`, built once per test binary; each test works
/// on its own copy.
struct History {
    _dir: TempDir,
    repo: PathBuf,
    /// Where the source lived: restores put it back under this path.
    src: PathBuf,
}

static HISTORY: OnceLock<History> = OnceLock::new();

fn history() -> &'static History {
    HISTORY.get_or_init(build_history)
}

/// One "day" of changes: rewrite a few files, delete a few, add a few.
fn mutate(src: &Path, day: u64, rng: &mut Prng) {
    let mut files: Vec<PathBuf> = common::tree::post_order(src)
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for _ in 0..4 {
        if files.is_empty() {
            break;
        }
        let i = (rng.next_u64() % files.len() as u64) as usize;
        let len = 8_000 + rng.next_u64() % 400_000;
        write_random_file(&files[i], len, rng.next_u64());
    }
    for _ in 0..3 {
        if files.len() < 10 {
            break;
        }
        let i = (rng.next_u64() % files.len() as u64) as usize;
        fs::remove_file(files.remove(i)).expect("rm");
    }
    for k in 0..4 {
        let dir = src.join(format!("d{:02}", rng.next_u64() % 8));
        fs::create_dir_all(&dir).expect("mkdir");
        let len = 4_000 + rng.next_u64() % 300_000;
        write_random_file(
            &dir.join(format!("day{day:02}-{k}.bin")),
            len,
            rng.next_u64(),
        );
    }
}

fn build_history() -> History {
    let dir = tempfile::Builder::new()
        .prefix("prune-history-")
        .tempdir()
        .expect("tempdir");
    let src = dir.path().canonicalize().expect("canonical").join("src");
    let repo_path = dir.path().join("repo");
    let repo = init_repo(Tool::Restic, &repo_path, Some("2"));
    write_dataset(&src, 60, 6 << 20, 7);
    let mut rng = Prng::new(42);
    for day in 1..=30u64 {
        if day > 1 {
            mutate(&src, day, &mut rng);
        }
        if day < 30 {
            let time = format!("2026-10-{day:02} 03:00:00");
            repo.restic(osargs!["backup", "--host", HOST, "--time", time, &src])
                .success();
        } else {
            // The newest day is written by restash: prune must handle its packs too.
            repo.restash(osargs!["backup", "--host", HOST, &src])
                .success();
        }
    }
    // restash's forget (tests/forget_policy.rs shows it keeps what restic keeps).
    repo.restash([
        "forget",
        "--keep-daily",
        "5",
        "--keep-weekly",
        "2",
        "--keep-monthly",
        "2",
    ])
    .success();
    // A pack no index names, as an interrupted backup leaves one: back up one more file,
    // then drop that run's snapshot and index file.
    let index_before = listing_of(&repo_path.join("index"));
    let snaps_before = listing_of(&repo_path.join("snapshots"));
    let extra = dir.path().join("extra");
    fs::create_dir(&extra).expect("mkdir extra");
    write_random_file(&extra.join("orphan.bin"), 300_000, 99);
    repo.restic(osargs!["backup", "--host", "orphan", &extra])
        .success();
    for (sub, before) in [("index", &index_before), ("snapshots", &snaps_before)] {
        for f in listing_of(&repo_path.join(sub)).keys() {
            if !before.contains_key(f) {
                fs::remove_file(repo_path.join(sub).join(f)).expect("rm");
            }
        }
    }
    History {
        _dir: dir,
        repo: repo_path,
        src,
    }
}

fn listing_of(dir: &Path) -> BTreeMap<String, u64> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.expect("entry"))
                .map(|e| {
                    let len = e.metadata().expect("stat").len();
                    (e.file_name().to_string_lossy().into_owned(), len)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every file of the repository with the hash of its content.
fn content_listing(repo: &Path) -> BTreeMap<PathBuf, String> {
    repo_listing(repo)
        .into_keys()
        .map(|rel| {
            let data = fs::read(repo.join(&rel)).expect("read repo file");
            (rel, hex::encode(Sha256::digest(&data)))
        })
        .collect()
}

fn du(repo: &Path) -> u64 {
    repo_listing(repo).values().sum()
}

/// A copy of the history repository in its own temporary directory.
fn copy_of_history(name: &str) -> (TempDir, Repo) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("prune-{name}-"))
        .tempdir()
        .expect("tempdir");
    let path = dir.path().join("repo");
    copy_dir(&history().repo, &path);
    (dir, Repo::new(path, None))
}

#[track_caller]
fn check(repo: &Repo, read_data: bool, context: &str) {
    let mut args = vec!["check"];
    if read_data {
        args.push("--read-data");
    }
    let out = repo.restic(&args);
    assert_eq!(
        out.code,
        0,
        "{context}: restic check failed\n{}",
        out.describe()
    );
}

fn snapshot_ids(repo: &Repo) -> Vec<String> {
    let mut v: Vec<String> = snapshots(repo).iter().map(snapshot_id).collect();
    v.sort();
    v
}

fn restore(tool: Tool, repo: &Repo, id: &str, target: &Path) {
    let out = run_tool(
        tool,
        with_repo(&repo.path, osargs!["restore", id, "--target", target]),
        None,
        None,
        &[],
    );
    assert_eq!(out.code, 0, "restore {id} failed\n{}", out.describe());
}

#[test]
fn long_lived_repository_prunes_like_restic() {
    let h = history();
    let (_a_dir, a) = copy_of_history("restic");
    let (_b_dir, b) = copy_of_history("restash");
    let kept = snapshot_ids(&a);
    assert!(
        (5..30).contains(&kept.len()),
        "forget kept {} snapshots",
        kept.len()
    );
    let before = du(&b.path);
    a.restic(["prune"]).success();
    let out = b.restash(["prune", "-v"]).success();
    let text = out.stdout_str();
    for phrase in [
        "to repack:",
        "this removes:",
        "to delete:",
        "total prune:",
        "remaining:",
        "unused size after prune:",
        "done",
    ] {
        assert!(text.contains(phrase), "no {phrase:?} in\n{text}");
    }
    let (size_a, size_b) = (du(&a.path), du(&b.path));
    eprintln!("before {before}, after restic prune {size_a}, after restash prune {size_b}");
    assert!(size_b < before, "restash prune removed nothing\n{text}");
    let diff = size_a.abs_diff(size_b) as f64 / size_a as f64;
    assert!(
        diff <= 0.05,
        "restash's pruned repository is {size_b} bytes, restic's {size_a} ({:.1}% apart)\n{text}",
        diff * 100.0
    );
    check(&b, true, "after restash prune");
    assert_eq!(snapshot_ids(&b), kept, "prune changed the snapshots");

    let work = tempfile::tempdir().expect("tempdir");
    let opts = CompareOptions::default();
    for id in &kept {
        let short = &id[..8];
        let want = work.path().join(format!("{short}-a"));
        restore(Tool::Restic, &a, id, &want);
        for (tool, name) in [(Tool::Restic, "restic"), (Tool::Restash, "restash")] {
            let got = work.path().join(format!("{short}-b-{name}"));
            restore(tool, &b, id, &got);
            assert_trees_equal(
                &restored_path(&want, &h.src),
                &restored_path(&got, &h.src),
                &opts,
            );
            fs::remove_dir_all(&got).expect("rm restore");
        }
        fs::remove_dir_all(&want).expect("rm restore");
    }
    // A second prune finds nothing worth repacking and keeps the repository valid.
    let again = b.restash(["prune"]).success();
    assert!(
        again
            .stdout_str()
            .contains("this removes:          0 blobs"),
        "second prune still removes data\n{}",
        again.stdout_str()
    );
    check(&b, false, "after a second restash prune");
}

/// The points at which the debug build's `RESTASH_PRUNE_CRASH_AFTER` aborts prune, in the
/// order they are reached.
const STEPS: &[&str] = &[
    "repack-chunk",
    "repack",
    "index-write",
    "index",
    "staged",
    "unref",
    "index-delete-one",
    "index-delete",
    "pack-delete",
];

/// Unlock (the aborted prune's lock stays, as a killed restic's would), check, prune again
/// to the end, check the data.
fn recover(repo: &Repo, kept: &[String], context: &str) {
    repo.restic(["unlock"]).success();
    check(repo, false, context);
    let out = repo.restash(["prune"]);
    assert_eq!(
        out.code,
        0,
        "{context}: the next restash prune failed\n{}",
        out.describe()
    );
    check(repo, true, &format!("{context}, after the next prune"));
    assert_eq!(snapshot_ids(repo), kept, "{context}: snapshots changed");
}

#[test]
fn prune_aborted_at_every_step_leaves_a_valid_repository() {
    if !cfg!(debug_assertions) && std::env::var_os("RESTASH_TEST_BIN").is_none() {
        // The hook is compiled into debug builds only; the random kills below still run.
        eprintln!("release build: no crash hook, only random kills");
    }
    for step in STEPS {
        let (_dir, repo) = copy_of_history(step);
        let kept = snapshot_ids(&repo);
        // With a lock wait, prune stages beside backups and commits alone: every step.
        let out = restash(
            with_repo(&repo.path, ["prune", "--retry-lock", "1m"]),
            &[("RESTASH_PRUNE_CRASH_AFTER", step)],
        );
        if cfg!(debug_assertions) {
            // 134 = 128 + SIGABRT: the hook fired, so the step was reached.
            assert_eq!(
                out.code,
                134,
                "step {step} was not reached\n{}",
                out.describe()
            );
        }
        recover(&repo, &kept, &format!("aborted after {step}"));
    }
}

#[test]
fn prune_killed_at_random_moments_leaves_a_valid_repository() {
    // How long an undisturbed prune takes bounds the kill delays.
    let (_dir, calib) = copy_of_history("calibration");
    let start = Instant::now();
    calib.restash(["prune"]).success();
    let full = start.elapsed();
    let trials = 8;
    let mut killed = 0;
    for i in 0..trials {
        let (_dir, repo) = copy_of_history(&format!("kill-{i}"));
        let kept = snapshot_ids(&repo);
        let delay = full.mul_f64((i as f64 + 0.5) / trials as f64);
        let bg = Background::spawn(Tool::Restash, with_repo(&repo.path, ["prune"]), &[], false);
        std::thread::sleep(delay);
        let out = bg.kill();
        if out.code == 137 {
            killed += 1;
        } else {
            assert_eq!(out.code, 0, "prune failed by itself\n{}", out.describe());
        }
        recover(
            &repo,
            &kept,
            &format!("killed after {delay:?} (exit {})", out.code),
        );
    }
    eprintln!("{killed} of {trials} kills landed during prune (full run {full:?})");
}

/// `restic backup --stdin`, which holds its (shared) lock until stdin closes, once the lock
/// is there.
fn restic_backup_holding_its_lock(repo: &Repo) -> Background {
    let mut bg = Background::spawn(
        Tool::Restic,
        with_repo(&repo.path, ["backup", "--stdin", "--host", HOST]),
        &[],
        true,
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while lock_ids(repo).is_empty() {
        assert!(bg.running(), "restic backup ended before taking its lock");
        assert!(Instant::now() < deadline, "restic backup never took a lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    bg
}

#[test]
fn prune_refuses_while_a_backup_holds_a_lock() {
    let (_dir, repo) = copy_of_history("locked");
    let mut bg = restic_backup_holding_its_lock(&repo);
    let before = content_listing(&repo.path);
    let out = repo.restash(["prune"]);
    assert_eq!(
        out.code,
        11,
        "prune under a foreign lock\n{}",
        out.describe()
    );
    assert!(
        out.stderr
            .contains("unable to create lock in backend: repository is already locked"),
        "no lock message\n{}",
        out.describe()
    );
    // Nothing but restic's own lock refresh may have changed.
    let after = content_listing(&repo.path);
    let no_locks = |m: &BTreeMap<PathBuf, String>| -> BTreeMap<PathBuf, String> {
        m.iter()
            .filter(|(p, _)| !p.starts_with("locks"))
            .map(|(p, h)| (p.clone(), h.clone()))
            .collect()
    };
    assert_eq!(
        no_locks(&before),
        no_locks(&after),
        "prune changed the repository"
    );
    bg.write_stdin(b"data that arrives after the refused prune\n");
    bg.close_stdin();
    bg.wait().success();
    assert!(lock_ids(&repo).is_empty(), "locks left behind");
    check(&repo, false, "after the refused prune");
}

/// With `--retry-lock`, prune plans and repacks beside a restic backup that holds its lock,
/// then waits for it and deletes alone: restic checks the result, and the backup's new
/// snapshot restores.
#[test]
fn prune_with_a_lock_wait_works_beside_a_backup() {
    beside_a_backup(&["prune"]);
}

/// The same for `forget --prune`: the policy applied beside the backup, the removal and
/// prune's deletions alone.
#[test]
fn forget_prune_with_a_lock_wait_works_beside_a_backup() {
    beside_a_backup(&["forget", "--keep-last", "2", "--prune"]);
}

fn beside_a_backup(command: &[&str]) {
    let (_dir, repo) = copy_of_history(&format!("beside-{}", command[0]));
    let mut bg = restic_backup_holding_its_lock(&repo);
    let mut prune = Background::spawn(
        Tool::Restash,
        with_repo(
            &repo.path,
            [command, &["--retry-lock", "2m", "-vv"]].concat(),
        ),
        &[],
        false,
    );
    // Prune stages while the backup holds its lock, then waits for it.
    let deadline = Instant::now() + Duration::from_secs(120);
    while lock_ids(&repo).len() < 2 {
        assert!(prune.running(), "prune ended before it locked");
        assert!(
            Instant::now() < deadline,
            "prune never locked beside the backup"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        prune.running(),
        "prune finished while the backup still held its lock"
    );
    bg.write_stdin(b"data written while prune waited\n");
    bg.close_stdin();
    bg.wait().success();
    let out = prune.wait().success();
    let text = out.stdout_str();
    assert!(
        text.contains("waiting for backups to finish"),
        "{}",
        out.describe()
    );
    assert!(
        text.contains("the exclusive lock was held for"),
        "{}",
        out.describe()
    );
    assert!(lock_ids(&repo).is_empty(), "locks left behind");
    check(&repo, true, "after prune beside a backup");
    let target = tempfile::tempdir().expect("tempdir");
    repo.restic(osargs!["restore", "latest", "--target", target.path()])
        .success();
    let restored = std::fs::read(target.path().join("stdin")).expect("restored stdin");
    assert_eq!(restored, b"data written while prune waited\n");
}

#[test]
fn dry_run_changes_nothing() {
    let (_dir, repo) = copy_of_history("dry-run");
    let before = content_listing(&repo.path);
    let out = repo.restash(["prune", "--dry-run", "-v"]).success();
    let text = out.stdout_str();
    assert!(
        text.contains("Would have repacked and removed the following packs:"),
        "{text}"
    );
    assert!(text.contains("to delete:"), "{text}");
    assert_eq!(
        before,
        content_listing(&repo.path),
        "--dry-run changed files"
    );
    repo.restash(["prune", "-n", "--max-unused", "unlimited"])
        .success();
    assert_eq!(before, content_listing(&repo.path), "-n changed files");
}

#[test]
fn statistics_match_restic_dry_run() {
    let (_dir, repo) = copy_of_history("stats");
    let pick = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| {
                [
                    "to repack:",
                    "this removes:",
                    "to delete:",
                    "total prune:",
                    "remaining:",
                ]
                .iter()
                .any(|p| l.starts_with(p))
                    || l.starts_with("used:")
                    || l.starts_with("unused:")
                    || l.starts_with("unreferenced:")
            })
            .map(str::to_owned)
            .collect()
    };
    for flags in [
        vec![],
        vec!["--max-unused", "unlimited"],
        vec!["--max-unused", "0"],
        vec!["--max-repack-size", "1M"],
        vec!["--repack-cacheable-only"],
        vec!["--repack-small"],
    ] {
        let mut args: Vec<OsString> = osargs!["prune", "-n", "-v"];
        args.extend(flags.iter().map(OsString::from));
        let ours = repo.restash(&args).success();
        let theirs = repo.restic(&args).success();
        assert_eq!(
            pick(ours.stdout_str()),
            pick(theirs.stdout_str()),
            "prune {flags:?}: statistics differ\nrestash:\n{}\nrestic:\n{}",
            ours.stdout_str(),
            theirs.stdout_str()
        );
    }
}

#[test]
fn missing_needed_pack_makes_prune_refuse() {
    let (_dir, repo) = copy_of_history("missing");
    // After a prune every pack holds used blobs; losing one must stop the next prune.
    repo.restash(["prune"]).success();
    let mut packs: Vec<(u64, PathBuf)> = data_files(&repo.path)
        .into_iter()
        .map(|p| (fs::metadata(&p).expect("stat").len(), p))
        .collect();
    packs.sort();
    let (_, victim) = packs.pop().expect("a pack");
    fs::remove_file(&victim).expect("rm pack");
    let before = content_listing(&repo.path);
    let theirs = repo.restic(["prune"]);
    assert_eq!(theirs.code, 1, "restic\n{}", theirs.describe());
    let ours = repo.restash(["prune"]);
    assert_eq!(ours.code, 1, "restash\n{}", ours.describe());
    let name = victim
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        ours.stderr.contains(&name) || ours.stderr.contains(&name[..8]),
        "the error does not name the missing pack {name}\n{}",
        ours.describe()
    );
    assert_eq!(
        before,
        content_listing(&repo.path),
        "refused prune changed files"
    );
}

#[test]
fn duplicate_blobs_from_concurrent_backups_are_pruned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().canonicalize().expect("canonical").join("src");
    write_dataset(&src, 20, 3 << 20, 11);
    let path = dir.path().join("repo");
    let repo = init_repo(Tool::Restic, &path, Some("2"));
    // Two backups at once do not see each other's index: both store every blob.
    let runs: Vec<Background> = (0..2)
        .map(|_| {
            Background::spawn(
                Tool::Restic,
                with_repo(&path, osargs!["backup", "--host", HOST, &src]),
                &[],
                false,
            )
        })
        .collect();
    for r in runs {
        r.wait().success();
    }
    let copy = dir.path().join("copy");
    copy_dir(&path, &copy);
    let copy = Repo::new(copy, None);
    let lines = |s: &str, what: &[&str]| -> Vec<String> {
        s.lines()
            .filter(|l| what.iter().any(|w| l.starts_with(w)))
            .map(str::to_owned)
            .collect()
    };
    let what = ["used:", "duplicates:", "unused:", "total:"];
    let ours = repo.restash(["prune", "-n", "-v"]).success();
    let theirs = repo.restic(["prune", "-n", "-v"]).success();
    assert_eq!(
        lines(ours.stdout_str(), &what),
        lines(theirs.stdout_str(), &what),
        "restash:\n{}\nrestic:\n{}",
        ours.stdout_str(),
        theirs.stdout_str()
    );
    let dup = lines(ours.stdout_str(), &["duplicates:"]);
    eprintln!("{dup:?}");
    repo.restash(["prune"]).success();
    copy.restic(["prune"]).success();
    check(&repo, true, "after pruning duplicates");
    let (a, b) = (du(&copy.path), du(&repo.path));
    assert!(
        a.abs_diff(b) as f64 / a as f64 <= 0.05,
        "restic left {a} bytes, restash {b}"
    );
    let work = tempfile::tempdir().expect("tempdir");
    for id in snapshot_ids(&repo) {
        let target = work.path().join(&id[..8]);
        restore(Tool::Restash, &repo, &id, &target);
        assert_trees_equal(
            &src,
            &restored_path(&target, &src),
            &CompareOptions::default(),
        );
    }
}

/// A repository version 1 (no compression anywhere) with a few changed backups, pruned
/// with different flags: every result passes `check --read-data` and restores the last
/// backup; nothing compressed is written into the v1 repository.
#[test]
fn version_1_repository_with_flag_variants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().canonicalize().expect("canonical").join("src");
    write_dataset(&src, 30, 3 << 20, 5);
    let path = dir.path().join("repo");
    let repo = init_repo(Tool::Restic, &path, Some("1"));
    let mut rng = Prng::new(9);
    for day in 1..=4u64 {
        if day > 1 {
            mutate(&src, day, &mut rng);
        }
        repo.restic(osargs!["backup", "--host", HOST, &src])
            .success();
    }
    repo.restic(["forget", "--keep-last", "1"]).success();
    for (n, flags) in [
        vec!["--max-unused", "0"],
        vec!["--repack-cacheable-only"],
        vec!["--max-repack-size", "1k"],
        vec!["--max-unused", "unlimited"],
    ]
    .into_iter()
    .enumerate()
    {
        let copy = dir.path().join(format!("copy-{n}"));
        copy_dir(&path, &copy);
        let copy = Repo::new(copy, None);
        let mut args = vec!["prune"];
        args.extend(&flags);
        copy.restash(&args).success();
        check(&copy, true, &format!("v1 after prune {flags:?}"));
        let blobs = copy.restic(["list", "blobs"]).success();
        assert!(!blobs.stdout_str().is_empty());
        let index = copy.restic(["list", "index"]).success();
        for id in index.stdout_str().lines() {
            let json = copy.restic(["cat", "index", id]).success();
            assert!(
                !json.stdout_str().contains("uncompressed_length"),
                "compressed blobs in a v1 repository after prune {flags:?}"
            );
        }
        let target = dir.path().join(format!("restore-{n}"));
        restore(Tool::Restash, &copy, "latest", &target);
        assert_trees_equal(
            &src,
            &restored_path(&target, &src),
            &CompareOptions::default(),
        );
    }
}

/// An index file lost: blobs the snapshots need are in no index, and their packs look
/// unreferenced. Deleting those packs would destroy data, so prune must refuse before it
/// touches anything, as restic does.
#[test]
fn blobs_missing_from_the_index_make_prune_refuse() {
    let (_dir, repo) = copy_of_history("lost-index");
    let index = repo.path.join("index");
    let (_, largest) = listing_of(&index)
        .into_iter()
        .map(|(name, len)| (len, name))
        .max()
        .expect("an index file");
    fs::remove_file(index.join(&largest)).expect("rm index");
    let before = content_listing(&repo.path);
    let theirs = repo.restic(["prune"]);
    assert_eq!(theirs.code, 1, "restic\n{}", theirs.describe());
    let ours = repo.restash(["prune"]);
    assert_eq!(ours.code, 1, "restash\n{}", ours.describe());
    assert!(
        ours.stderr.contains("not found in the index")
            && ours.stderr.contains("Will not start prune"),
        "{}",
        ours.describe()
    );
    assert_eq!(
        before,
        content_listing(&repo.path),
        "refused prune changed files"
    );
}

/// restic's own test repositories (old index format, duplicates, mixed packs, obsolete
/// indexes, unreferenced and missing data): restash prune succeeds or refuses exactly when
/// restic does, with restic's first stderr line when it refuses, changes nothing then, and
/// otherwise leaves a repository of restic's size that passes `check --read-data`.
#[test]
fn restic_fixture_repositories_prune_like_restic() {
    for fx in REPO_FIXTURES {
        let unpacked = unpack_fixture(fx.name);
        let src = fixture_repo(&unpacked);
        let (a, b) = (unpacked.path().join("a"), unpacked.path().join("b"));
        copy_dir(&src, &a);
        copy_dir(&src, &b);
        let (a, b) = (Repo::new(a, None), Repo::new(b, None));
        let theirs = a.restic(["prune"]);
        let before = content_listing(&b.path);
        let ours = b.restash(["prune"]);
        let context = format!(
            "{}\nrestic:\n{}\nrestash:\n{}",
            fx.name,
            theirs.describe(),
            ours.describe()
        );
        assert_eq!(ours.code, theirs.code, "{context}");
        if theirs.code != 0 {
            assert_eq!(before, content_listing(&b.path), "{context}");
            let first = |s: &str| s.lines().next().unwrap_or("").to_owned();
            // restic fails a missing tree with a Go stack trace; restash names the blob.
            if !theirs.stderr.contains("not found in repository") {
                assert_eq!(first(&ours.stderr), first(&theirs.stderr), "{context}");
            }
            continue;
        }
        check(&b, true, fx.name);
        let (size_a, size_b) = (du(&a.path), du(&b.path));
        assert!(
            size_a.abs_diff(size_b) as f64 / size_a as f64 <= 0.05,
            "{}: restic left {size_a} bytes, restash {size_b}",
            fx.name
        );
        assert_eq!(snapshot_ids(&a), snapshot_ids(&b), "{}", fx.name);
    }
}

/// Ctrl-C stops prune at the next safe point: exit 130 (or 0 if it had finished), no lock
/// left behind, a repository restic checks clean, and the next prune completes.
#[test]
fn interrupted_prune_releases_its_lock() {
    let (_dir, calib) = copy_of_history("sigint-calibration");
    let start = Instant::now();
    calib.restash(["prune"]).success();
    let full = start.elapsed();
    for i in 0..3 {
        let (_dir, repo) = copy_of_history(&format!("sigint-{i}"));
        let kept = snapshot_ids(&repo);
        let bg = Background::spawn(Tool::Restash, with_repo(&repo.path, ["prune"]), &[], false);
        std::thread::sleep(full.mul_f64((i as f64 + 0.5) / 3.0));
        bg.signal(rustix::process::Signal::Int);
        let out = bg.wait();
        assert!(
            out.code == 130 || out.code == 0,
            "prune after SIGINT\n{}",
            out.describe()
        );
        assert!(lock_ids(&repo).is_empty(), "lock left after SIGINT");
        check(&repo, false, "after SIGINT");
        recover(&repo, &kept, &format!("SIGINT {i} (exit {})", out.code));
    }
}
