//! Eight `restash backup` runs at once into one local repository, from eight hosts whose
//! sources share data (so that their deduplication races), while `restash forget --prune
//! --keep-last 1` and `restash prune` try to run: prune (no `--retry-lock`) exits 11,
//! forget (`--retry-lock`) waits, and neither removes anything a backup needs. SIGSTOP
//! makes the interleavings that matter happen every time:
//!
//! - forget first: forget is frozen holding its lock, before it removes anything. With
//!   `--retry-lock` it reads and applies its policy under a shared lock, beside backups, and
//!   takes the exclusive lock to remove, so the backups either run beside it or wait for
//!   it; then forget removes the round before last, whose shared data is this round's, and
//!   its prune stages beside any backup still running. A backup trusting the index it read
//!   before its lock, or a prune deleting what a backup beside it reused, would leave a
//!   snapshot whose blobs are gone.
//! - backups first: the backups are frozen holding their locks, before they write their
//!   index and snapshot files; forget lists the repository and waits; the backups finish.
//!   A forget or prune trusting what it listed before its lock would miss their
//!   snapshots and delete their packs as unindexed.
//!
//! Afterwards `restic check --read-data` passes and each host's latest snapshot restores
//! equal to its source. The bigger variant: `cargo test -p restash --test
//! concurrent_backups -- --ignored --nocapture`.
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::backup::*;
use common::tree::write_random_file;
use common::*;
use rustix::process::Signal;
use tempfile::TempDir;

const HOSTS: usize = 8;

/// The sizes of one host's source: its own files, files every host has, and a file
/// shared with one neighbour.
struct Sizes {
    own: u64,
    shared_files: u64,
    shared: u64,
    pair: u64,
}

struct Host {
    name: String,
    src: PathBuf,
}

fn hosts(base: &Path) -> Vec<Host> {
    (0..HOSTS)
        .map(|h| {
            let src = base.join(format!("host{h}")).join("src");
            fs::create_dir_all(&src).expect("mkdir src");
            Host {
                name: format!("host-{h}"),
                src,
            }
        })
        .collect()
}

/// Round `round`'s sources. The shared files of even rounds and of odd rounds differ, so
/// round r holds again what round r - 2 held and `forget --keep-last 1` has just dropped.
fn write_round(hosts: &[Host], round: u64, s: &Sizes) {
    for (h, host) in hosts.iter().enumerate() {
        for sub in ["own", "shared", "pair"] {
            let _ = fs::remove_dir_all(host.src.join(sub));
            fs::create_dir_all(host.src.join(sub)).expect("mkdir");
        }
        let h = h as u64;
        write_random_file(
            &host.src.join("own/a.bin"),
            s.own,
            1_000_000 + round * 100 + h,
        );
        for j in 0..s.shared_files {
            write_random_file(
                &host.src.join(format!("shared/s{j}.bin")),
                s.shared,
                2_000_000 + (round % 2) * 100 + j,
            );
        }
        write_random_file(
            &host.src.join("pair/p.bin"),
            s.pair,
            3_000_000 + round * 100 + h / 2,
        );
    }
}

fn backup(repo: &Path, host: &Host) -> Background {
    Background::spawn(
        Tool::Restash,
        with_repo(
            repo,
            osargs![
                "--retry-lock",
                "2m",
                "backup",
                "--host",
                &host.name,
                &host.src
            ],
        ),
        &[],
        false,
    )
}

fn forget_prune(repo: &Path) -> Background {
    Background::spawn(
        Tool::Restash,
        with_repo(
            repo,
            [
                "--retry-lock",
                "2m",
                "forget",
                "--prune",
                "--keep-last",
                "1",
            ],
        ),
        &[],
        false,
    )
}

fn prune(repo: &Path) -> Background {
    Background::spawn(Tool::Restash, with_repo(repo, ["prune"]), &[], false)
}

/// Lock files in place (a write under way is a temporary file until it is complete).
fn lock_files(repo: &Path) -> usize {
    fs::read_dir(repo.join("locks")).map_or(0, |d| {
        d.flatten()
            .filter(|e| !e.file_name().to_string_lossy().contains("-tmp-"))
            .count()
    })
}

/// Waits until `done` holds, failing after a minute.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "waited a minute for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// restic restores `host`'s latest snapshot equal to its source.
fn restic_restores_as_its_source(repo: &Repo, host: &Host) {
    let target = TempDir::new().expect("tempdir");
    repo.restic(osargs![
        "restore",
        "latest",
        "--host",
        &host.name,
        "--target",
        target.path()
    ])
    .success();
    assert_trees_equal(
        &host.src,
        &restored_path(target.path(), &host.src),
        &CompareOptions::default(),
    );
}

/// Who goes first in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// Only the backups: something for the next rounds to forget.
    Seed,
    ForgetFirst,
    BackupsFirst,
}

fn blocked(b: &Background) -> bool {
    b.stderr_so_far().contains("repo already locked")
}

/// One round: eight backups and the two exclusive commands at once (see the file's
/// comment for the two orders).
fn round(repo: &Repo, hosts: &[Host], round: u64, order: Order) {
    let started = Instant::now();
    let path = &repo.path;
    let context = format!("round {round} ({order:?})");
    // Whether prune certainly met a lock, and so must exit 11.
    let mut contended = true;
    let (mut backups, forget, pruner) = match order {
        Order::Seed => {
            let b: Vec<Background> = hosts.iter().map(|h| backup(path, h)).collect();
            (b, None, None)
        }
        Order::ForgetFirst => {
            // With snapshots to remove, forget runs long enough to be caught holding its
            // lock; with none it may be done first, and the round is an ordinary one.
            let removes = snapshots(repo).len() > HOSTS;
            let mut f = forget_prune(path);
            wait_until("forget's lock", || lock_files(path) > 0 || !f.running());
            let stopped = f.running();
            if stopped {
                f.signal(Signal::Stop);
            }
            if lock_files(path) == 0 {
                assert!(
                    !removes,
                    "{context}: forget was done before it could be stopped holding its lock"
                );
                contended = false;
                // Stopped just after it removed its lock: waiting would never end.
                if stopped {
                    f.signal(Signal::Cont);
                }
                let out = f.wait();
                assert_eq!(out.code, 0, "{context}: forget\n{}", out.describe());
                let p = prune(path);
                let b = hosts.iter().map(|h| backup(path, h)).collect();
                (b, None, Some(p))
            } else {
                let mut p = prune(path);
                let b: Vec<Background> = hosts.iter().map(|h| backup(path, h)).collect();
                let mut b = b;
                wait_until("every backup to wait for forget's lock or to end", || {
                    b.iter_mut().all(|x| blocked(x) || !x.running()) && !p.running()
                });
                f.signal(Signal::Cont);
                (b, Some(f), Some(p))
            }
        }
        Order::BackupsFirst => {
            let mut b: Vec<Background> = hosts.iter().map(|h| backup(path, h)).collect();
            // Every backup still running holds its lock (one may be done already).
            wait_until("the backups' locks", || {
                let running: usize = b.iter_mut().map(|b| usize::from(b.running())).sum();
                running > 0 && lock_files(path) == running
            });
            // One not yet reaped stays a zombie, which a signal does not mind.
            for b in &mut b {
                if b.running() {
                    b.signal(Signal::Stop);
                }
            }
            let mut p = prune(path);
            let f = forget_prune(path);
            wait_until("forget to wait for the backups' locks", || {
                blocked(&f) && !p.running()
            });
            for b in &mut b {
                if b.running() {
                    b.signal(Signal::Cont);
                }
            }
            (b, Some(f), Some(p))
        }
    };
    let mut waited = 0;
    for (b, host) in backups.drain(..).zip(hosts) {
        let out = b.wait();
        assert_eq!(
            out.code,
            0,
            "{context}: backup of {} failed\n{}",
            host.name,
            out.describe()
        );
        waited += usize::from(out.stderr.contains("repo already locked"));
    }
    if let Some(f) = forget {
        let out = f.wait();
        assert_eq!(
            out.code,
            0,
            "{context}: forget --prune --retry-lock failed\n{}",
            out.describe()
        );
    }
    if let Some(p) = pruner {
        let out = p.wait();
        let locked = out.code == 11 && out.stderr.contains("locked");
        assert!(
            locked || (out.code == 0 && !contended),
            "{context}: prune without --retry-lock must exit 11 (locked)\n{}",
            out.describe()
        );
    }
    assert_eq!(
        lock_ids(repo),
        Vec::<String>::new(),
        "{context}: locks left"
    );
    let out = repo.restic(["check"]);
    assert_eq!(out.code, 0, "{context}: restic check\n{}", out.describe());
    eprintln!(
        "{context}: {:?}, {waited} of {HOSTS} backups waited for a lock",
        started.elapsed()
    );
}

fn run(rounds: u64, s: &Sizes) {
    let started = Instant::now();
    let dir = TempDir::new().expect("tempdir");
    let base = dir.path().canonicalize().expect("canonicalize");
    let repo = init_repo(Tool::Restash, &base.join("repo"), None);
    let hosts = hosts(&base);
    for r in 0..rounds {
        write_round(&hosts, r, s);
        // Forget first removes data only when the round before last is still there, so
        // three such rounds come before each backups-first one: rounds 2, 5, 6, 9, …
        // remove exactly the shared data their backups hold again.
        let order = match r % 4 {
            _ if r == 0 => Order::Seed,
            3 => Order::BackupsFirst,
            _ => Order::ForgetFirst,
        };
        round(&repo, &hosts, r, order);
    }
    // Alone now, so each host keeps exactly its last snapshot.
    repo.restash(["forget", "--prune", "--keep-last", "1"])
        .success();
    repo.restic(["check", "--read-data"]).success();
    let snaps = snapshots(&repo);
    for host in &hosts {
        let mine: Vec<_> = snaps
            .iter()
            .filter(|s| s["hostname"] == host.name.as_str())
            .collect();
        assert_eq!(
            mine.len(),
            1,
            "{}: keep-last 1 leaves one snapshot per host: {mine:?}",
            host.name
        );
        restic_restores_as_its_source(&repo, host);
    }
    eprintln!(
        "{rounds} rounds of {HOSTS} concurrent backups: {:?}",
        started.elapsed()
    );
}

/// A fleet's nightly Jobs with retention (`backup --forget`), all at once: each takes the
/// exclusive lock in turn to apply its policy to the snapshots its parent hint names, none
/// waits for another forever, and each volume keeps exactly what its policy keeps.
#[test]
fn jobs_that_forget_their_own_snapshots_at_once() {
    let dir = TempDir::new().expect("tempdir");
    let base = dir.path().canonicalize().expect("canonicalize");
    let repo = init_repo(Tool::Restash, &base.join("repo"), None);
    let hosts = hosts(&base);
    let sizes = Sizes {
        own: 256 << 10,
        shared_files: 2,
        shared: 256 << 10,
        pair: 128 << 10,
    };
    for r in 0..3 {
        write_round(&hosts, r, &sizes);
        let jobs: Vec<Background> = hosts
            .iter()
            .map(|host| {
                let args = osargs![
                    "--retry-lock",
                    "2m",
                    "--json",
                    "backup",
                    "--host",
                    &host.name,
                    &host.src,
                    "--forget",
                    "--keep-last",
                    "1"
                ];
                Background::spawn(Tool::Restash, with_repo(&repo.path, args), &[], false)
            })
            .collect();
        for (job, host) in jobs.into_iter().zip(&hosts) {
            let out = job.wait();
            assert_eq!(out.code, 0, "round {r}: {}\n{}", host.name, out.describe());
            let forget = out
                .stdout_str()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["message_type"] == "forget")
                .unwrap_or_else(|| panic!("round {r}: no forget message\n{}", out.describe()));
            assert_eq!(forget["by_hint"], true, "round {r}: {forget}");
            assert_eq!(forget["kept"], 1, "round {r}: {forget}");
        }
        assert_eq!(
            lock_ids(&repo),
            Vec::<String>::new(),
            "round {r}: locks left"
        );
        let snaps = snapshots(&repo);
        assert_eq!(
            snaps.len(),
            HOSTS,
            "round {r}: one snapshot per host: {snaps:?}"
        );
    }
    repo.restic(["check", "--read-data"]).success();
    for host in &hosts {
        restic_restores_as_its_source(&repo, host);
    }
}

/// CI-sized: four rounds; forget removes this round's shared data in round 2.
#[test]
fn concurrent_backups_with_forget_and_prune() {
    run(
        4,
        &Sizes {
            own: 1 << 20,
            shared_files: 4,
            shared: 1 << 20,
            pair: 512 << 10,
        },
    );
}

/// Bigger: ten rounds with more data per host.
#[test]
#[ignore = "bigger concurrency run, minutes; run with --ignored"]
fn concurrent_backups_with_forget_and_prune_big() {
    run(
        10,
        &Sizes {
            own: 4 << 20,
            shared_files: 8,
            shared: 2 << 20,
            pair: 2 << 20,
        },
    );
}
