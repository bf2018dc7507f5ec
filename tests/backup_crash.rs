//! `restash backup` killed with SIGKILL at random moments never leaves a repository that
//! restic 0.14 cannot check or that the next `restash backup` cannot complete; packs
//! uploaded before a kill are reused; and backup's locks are restic's locks, both ways.
mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::backup::*;
use common::tree::Prng;
use common::*;
use rustix::process::Signal;
use tempfile::TempDir;

/// The tests run one at a time: on two cores, a parallel test would make the calibrated
/// backup duration of the crash test meaningless.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    // A failed test poisons the mutex; the next one still runs.
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// About 48 MiB in 300 files: a full backup takes a second or more, so random kills land in
/// every phase (opening, chunking, pack uploads, index, snapshot, unlock).
const FILES: u64 = 300;
const BYTES: u64 = 48 << 20;

fn dataset(count: u64, bytes: u64, seed: u64) -> (TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("crash-src-")
        .tempdir()
        .expect("tempdir");
    let src = dir.path().canonicalize().expect("canonicalize").join("src");
    write_dataset(&src, count, bytes, seed);
    (dir, src)
}

/// `-r repo backup --json --host HOST src`
fn backup_args(repo: &Path, src: &Path) -> Vec<OsString> {
    with_repo(repo, osargs!["backup", "--json", "--host", HOST, src])
}

/// Runs `restash -r repo backup …` to completion.
fn restash_backup(repo: &Path, src: &Path) -> CmdOutput {
    run_tool(Tool::Restash, backup_args(repo, src), None, None, &[])
}

/// `restic unlock` and `restic check --read-data` after a kill. A killed restash leaves its
/// lock behind, as a killed restic would, and restic's check wants an exclusive lock, so the
/// lock must go first. Plain `unlock` removes only locks it judges stale (this host, a pid
/// that no longer runs): it also proves restash's lock carries what restic needs for that.
#[track_caller]
fn unlock_and_check(repo: &Repo, context: &str) {
    let out = repo.restic(["unlock"]);
    assert_eq!(
        out.code,
        0,
        "{context}: restic unlock failed\n{}",
        out.describe()
    );
    let out = repo.restic(["check", "--read-data"]);
    assert_eq!(
        out.code,
        0,
        "{context}: restic check --read-data failed after the kill\n{}",
        out.describe()
    );
}

/// A fresh repository made by `restash init`, plus how an uninterrupted backup of `src` into
/// a copy of it went: its duration, when the first file appeared in data/, its data_added.
struct Template {
    path: PathBuf,
    full: Duration,
    first_pack: Duration,
    full_added: u64,
}

fn template(work: &Path, src: &Path) -> Template {
    let path = work.join("template");
    init_repo(Tool::Restash, &path, None);
    let calibration = work.join("calibration");

    // First run undisturbed: its duration bounds the kill delays.
    copy_dir(&path, &calibration);
    let start = Instant::now();
    let out = restash_backup(&calibration, src).success();
    let full = start.elapsed();
    let full_added = Summary::of(&out).n("data_added");
    std::fs::remove_dir_all(&calibration).expect("rm calibration");

    // Second run watched for the first file in data/. Watching 256 directories costs CPU
    // and slows the backup on two cores, so only the fraction of the run before the first
    // pack is kept, applied to the undisturbed duration.
    copy_dir(&path, &calibration);
    let start = Instant::now();
    let mut bg = Background::spawn(Tool::Restash, backup_args(&calibration, src), &[], false);
    let mut first = None;
    while bg.running() {
        if first.is_none() && !data_files(&calibration).is_empty() {
            first = Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let watched = start.elapsed();
    bg.wait().success();
    std::fs::remove_dir_all(&calibration).expect("rm calibration");
    let fraction = first.map_or(0.0, |f| f.as_secs_f64() / watched.as_secs_f64());
    let first_pack = full.mul_f64(fraction.min(1.0));
    eprintln!(
        "uninterrupted backup: {full:?}, first pack file after ~{first_pack:?}, data_added \
         {full_added}"
    );
    Template {
        path,
        full,
        first_pack,
        full_added,
    }
}

/// Item 6: 20 kills at a random moment in [0, duration of a full backup], each into a fresh
/// copy of an empty repository so every kill interrupts real uploads. After each:
/// unlock, `check --read-data`, a completing `restash backup`, `check`. The last repository
/// must restore identical to the source. `RESTASH_CRASH_SEED` replays a run.
#[test]
fn kill_9_at_random_points_leaves_a_usable_repository() {
    let _serial = serial();
    let started = Instant::now();
    let (_src_dir, src) = dataset(FILES, BYTES, 1);
    let work = tempfile::tempdir().expect("tempdir");
    let tpl = template(work.path(), &src);
    let seed = seed_from_env("RESTASH_CRASH_SEED");
    let mut rng = Prng::new(seed);
    // A kill counts only if it lands before the backup ends by itself. Timing on two busy
    // cores is noisy, so each run that beats its kill shrinks the duration estimate.
    let trials = 20;
    let fraction = tpl.first_pack.as_secs_f64() / tpl.full.as_secs_f64();
    let mut full = tpl.full;
    let (mut killed, mut attempts, mut with_packs) = (0, 0, 0);
    let mut last: Option<Repo> = None;
    while killed < trials {
        attempts += 1;
        assert!(
            attempts <= 3 * trials,
            "only {killed} of {attempts} kills landed before the backup ended"
        );
        let path = work.path().join(format!("attempt-{attempts:02}"));
        copy_dir(&tpl.path, &path);
        let repo = Repo::new(path.clone(), None);
        // Opening the repository and chunking take most of a backup, so every other kill is
        // drawn from the part after the first pack appeared, where packs, indexes, the
        // snapshot and the lock removal are written; all stay within [0, full duration].
        let from = if attempts % 2 == 0 {
            full.mul_f64(fraction)
        } else {
            Duration::ZERO
        };
        let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let delay = from + full.saturating_sub(from).mul_f64(unit);
        let bg = Background::spawn(Tool::Restash, backup_args(&path, &src), &[], false);
        std::thread::sleep(delay);
        let out = bg.kill();
        let packs = data_files(&path).len();
        let context = format!(
            "attempt {attempts} (RESTASH_CRASH_SEED={seed}, kill after {delay:?}, exit code {}, \
             {packs} file(s) in data/)",
            out.code
        );
        // 137 = 128 + SIGKILL: the kill landed before the backup finished by itself.
        if out.code != 137 {
            assert_eq!(
                out.code,
                0,
                "{context}: backup failed by itself\n{}",
                out.describe()
            );
            full = full.mul_f64(0.9);
            std::fs::remove_dir_all(&path).expect("rm attempt repo");
            continue;
        }
        killed += 1;
        with_packs += usize::from(packs > 0);
        unlock_and_check(&repo, &context);
        let next = restash_backup(&path, &src);
        assert_eq!(
            next.code,
            0,
            "{context}: the next backup failed\n{}",
            next.describe()
        );
        // Whatever the killed run left behind, the next snapshot holds every file.
        Summary::of(&next).expect("total_files_processed", FILES);
        let out = repo.restic(["check"]);
        assert_eq!(
            out.code,
            0,
            "{context}: check after the next backup\n{}",
            out.describe()
        );
        // Only the last repository is needed; the others would fill the disk.
        if let Some(prev) = last.replace(repo) {
            std::fs::remove_dir_all(&prev.path).expect("rm trial repo");
        }
    }
    eprintln!(
        "{killed} kills landed mid-backup in {attempts} attempts, {with_packs} after pack files \
         appeared"
    );
    let repo = last.expect("trials ran");
    repo.restic(["check", "--read-data"]).success();
    let target = tempfile::tempdir().expect("tempdir");
    repo.restic(osargs!["restore", "latest", "--target", target.path()])
        .success();
    assert_trees_equal(
        &src,
        &restored_path(target.path(), &src),
        &CompareOptions::default(),
    );
    eprintln!("crash test took {:?}", started.elapsed());
}

/// Item 6, reuse: killed right after the first complete pack file appears, the next backup
/// keeps that pack's data instead of uploading everything again (restash writes indexes
/// along the way and adopts packs no index names). restic 0.14 itself re-uploads here.
#[test]
fn backup_after_kill_reuses_uploaded_packs() {
    let _serial = serial();
    let (_src_dir, src) = dataset(FILES, BYTES, 2);
    let work = tempfile::tempdir().expect("tempdir");
    let tpl = template(work.path(), &src);
    let path = work.path().join("repo");
    copy_dir(&tpl.path, &path);
    let repo = Repo::new(path.clone(), None);

    let mut bg = Background::spawn(Tool::Restash, backup_args(&path, &src), &[], false);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if data_files(&path).iter().any(|p| pack_is_complete(p)) {
            break;
        }
        if !bg.running() || Instant::now() > deadline {
            panic!(
                "the backup ended before a complete pack file was seen\n{}",
                bg.kill().describe()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = bg.kill();
    let complete = data_files(&path)
        .iter()
        .filter(|p| pack_is_complete(p))
        .count();
    let context = format!(
        "killed with {complete} complete pack(s), exit code {}",
        out.code
    );
    unlock_and_check(&repo, &context);

    let out = restash_backup(&path, &src);
    assert_eq!(
        out.code,
        0,
        "{context}: the next backup failed\n{}",
        out.describe()
    );
    let added = Summary::of(&out).n("data_added");
    assert!(
        added < tpl.full_added,
        "{context}: the next backup added {added} bytes, an uninterrupted one adds {}: \
         nothing uploaded before the kill was reused",
        tpl.full_added
    );
    repo.restic(["check", "--read-data"]).success();
    let target = tempfile::tempdir().expect("tempdir");
    repo.restic(osargs!["restore", "latest", "--target", target.path()])
        .success();
    assert_trees_equal(
        &src,
        &restored_path(target.path(), &src),
        &CompareOptions::default(),
    );
}

/// Waits until the repository has a lock file, while `bg` still runs.
fn wait_for_lock_file(bg: &mut Background, repo: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let has_lock = std::fs::read_dir(repo.join("locks"))
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if has_lock {
            return;
        }
        assert!(
            bg.running() && Instant::now() < deadline,
            "{} ended (or hung) before any lock file appeared",
            bg.cmd
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The one lock in the repository, decoded by `restic cat lock`. A lock file can be seen
/// before it is completely written, so this retries, letting `bg` run in between.
fn decoded_lock(repo: &Repo, bg: &Background, stopped: bool) -> serde_json::Value {
    for _ in 0..50 {
        let ids = lock_ids(repo);
        if let [id] = ids.as_slice() {
            let out = repo.restic(["--no-lock", "cat", "lock", id]);
            if out.code == 0 {
                return out.json();
            }
        }
        if stopped {
            bg.signal(Signal::Cont);
        }
        std::thread::sleep(Duration::from_millis(10));
        if stopped {
            bg.signal(Signal::Stop);
        }
    }
    panic!("no single decodable lock while {} runs", bg.cmd);
}

fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Item 7: a running backup holds one non-exclusive lock naming this host and its pid, which
/// restic honours (its exclusive `check` is refused, a `snapshots` goes ahead); the lock is
/// gone when the backup ends. The backup is frozen with SIGSTOP while restic looks.
#[test]
fn backup_holds_a_non_exclusive_restic_lock() {
    let _serial = serial();
    let (_src_dir, src) = dataset(40, 8 << 20, 3);
    let work = tempfile::tempdir().expect("tempdir");
    let repo = init_repo(Tool::Restic, &work.path().join("repo"), None);
    let mut bg = Background::spawn(Tool::Restash, backup_args(&repo.path, &src), &[], false);
    wait_for_lock_file(&mut bg, &repo.path);
    bg.signal(Signal::Stop);
    let lock = decoded_lock(&repo, &bg, true);
    let checks = || {
        assert_eq!(lock["exclusive"], false, "backup lock: {lock}");
        assert_eq!(lock["pid"], bg.pid(), "lock pid: {lock}");
        assert_eq!(lock["hostname"], hostname(), "lock hostname: {lock}");
        let out = repo.restic(["check"]);
        assert_ne!(
            out.code,
            0,
            "restic check ran despite restash's lock\n{}",
            out.describe()
        );
        assert!(out.stderr.contains("locked"), "{}", out.describe());
        repo.restic(["snapshots"]).success();
    };
    // Resume the backup even if a check failed, so it does not stay stopped.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(checks));
    bg.signal(Signal::Cont);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    let out = bg.wait();
    assert_eq!(out.code, 0, "backup after SIGCONT\n{}", out.describe());
    assert_eq!(
        lock_ids(&repo),
        Vec::<String>::new(),
        "lock left after the backup"
    );
    repo.restic(["check"]).success();
}

/// Item 7, the other way: while restic holds an exclusive lock, `restash backup` refuses
/// with restic's "already locked" error and exit code 11 (restic 0.14 itself exits 1), and
/// writes no snapshot. `restic key passwd` is a deterministic exclusive lock holder: it
/// takes the lock, then waits for the new password on stdin, which we keep open.
#[test]
fn backup_refuses_an_exclusively_locked_repository() {
    let _serial = serial();
    let (_src_dir, src) = dataset(4, 100_000, 4);
    let work = tempfile::tempdir().expect("tempdir");
    let repo = init_repo(Tool::Restic, &work.path().join("repo"), None);
    let mut holder = Background::spawn(
        Tool::Restic,
        with_repo(&repo.path, ["key", "passwd"]),
        &[],
        true,
    );
    wait_for_lock_file(&mut holder, &repo.path);
    let lock = decoded_lock(&repo, &holder, false);
    assert_eq!(lock["exclusive"], true, "restic key passwd lock: {lock}");

    let out = restash_backup(&repo.path, &src);
    let still_locked = holder.running();
    assert!(
        still_locked,
        "restic key passwd ended early: {}",
        holder.cmd
    );
    assert!(
        out.stderr.contains("locked"),
        "restash did not report the lock\n{}",
        out.describe()
    );
    assert!(
        snapshots(&repo).is_empty(),
        "a snapshot was written despite the lock"
    );
    assert_eq!(
        out.code,
        11,
        "exit code for a locked repository\n{}",
        out.describe()
    );

    // An empty new password makes restic give up and remove its lock.
    holder.close_stdin();
    let out = holder.wait();
    assert_ne!(out.code, 0, "restic key passwd accepted an empty password?");
    assert_eq!(
        lock_ids(&repo),
        Vec::<String>::new(),
        "restic left its lock behind"
    );
    restash_backup(&repo.path, &src).success();
    repo.restic(["check"]).success();
}
