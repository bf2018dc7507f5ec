//! The crash matrix on local repositories: `restash backup` killed with SIGKILL at random
//! moments and exactly as each kind of repository file (pack, index, snapshot) appears,
//! seen through inotify. After every kill restic checks the repository as the kill left
//! it and the next backup completes without an unlock; each chain ends with `restic check
//! --read-data` and a restore equal to the source (see tests/common/crash.rs).
//!
//! The full-sized run, 200 kills here and 200 on S3 (tests/crash_matrix_s3.rs):
//! `cargo test -p restash --test crash_matrix -- --ignored --nocapture`.
//! `RESTASH_CRASH_SEED` replays a run.
mod common;
#[path = "common/crash.rs"]
mod crash;

use crash::{run_matrix, Store};
use tempfile::TempDir;

fn run(kills: usize, per_chain: usize) {
    let work = TempDir::new().expect("tempdir");
    run_matrix(
        "local",
        kills,
        per_chain,
        &mut |i| Store::local(work.path().join(format!("repo-{i}"))),
        &mut |s| {
            let _ = std::fs::remove_dir_all(&s.location);
        },
    );
}

/// CI-sized: 12 kills in one chain (8 more on S3 in tests/crash_matrix_s3.rs).
#[test]
fn kills_at_random_and_as_files_appear_leave_usable_repositories() {
    run(12, 12);
}

/// Full-sized: 200 kills in chains of 20.
#[test]
#[ignore = "full-sized crash matrix, several minutes; run with --ignored"]
fn full_crash_matrix_local() {
    run(200, 20);
}
