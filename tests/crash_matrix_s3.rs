//! The crash matrix on S3 (SeaweedFS): `restash backup` killed with SIGKILL at random
//! moments and as each kind of repository file (pack, index, snapshot) appears. SeaweedFS
//! keeps objects in its own volume files, so appearances are seen by polling the bucket's
//! listing (a completed PUT is listed at once). Otherwise as tests/crash_matrix.rs.
//!
//! The full-sized part, 200 kills: `cargo test -p restash --test crash_matrix_s3 --
//! --ignored --nocapture`.
mod common;
#[path = "common/crash.rs"]
mod crash;
#[path = "common/servers.rs"]
mod servers;

use std::collections::HashMap;
use std::sync::Arc;

use crash::{run_matrix, Store};
use restash_backend::{BackendOptions, S3Backend};
use servers::{seaweedfs, unique_name, SeaweedFs};

fn store(sw: &SeaweedFs) -> Store {
    let url = sw.url(&unique_name("crash"));
    let env = sw.env();
    let vars: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let lister = S3Backend::open_with_env(&url, BackendOptions::default(), &move |k| {
        vars.get(k).cloned()
    })
    .unwrap_or_else(|e| panic!("open {url}: {e}"));
    Store::remote("s3", &url, env, Arc::new(lister))
}

fn run(sw: &SeaweedFs, kills: usize, per_chain: usize) {
    // Buckets go with the server when the test process ends.
    run_matrix("S3", kills, per_chain, &mut |_| store(sw), &mut |_| {});
}

/// CI-sized: 8 kills in one chain (12 more on local repositories).
#[test]
fn kills_on_s3_leave_usable_repositories() {
    if let Some(sw) = seaweedfs() {
        run(sw, 8, 8);
    }
}

/// Full-sized: 200 kills in chains of 20.
#[test]
#[ignore = "full-sized crash matrix on S3, minutes; run with --ignored"]
fn full_crash_matrix_s3() {
    if let Some(sw) = seaweedfs() {
        run(sw, 200, 20);
    }
}
