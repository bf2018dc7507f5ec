//! The REST backend against a real rest-server implementation (`rclone serve restic`, with
//! basic auth): the shared conformance suite, a wrong password, the password never shown,
//! end to end with restic 0.14 on the same repositories in both directions, and through a
//! fault-cli proxy: reset connections (retried) and a blackhole (a clean timeout error).
//!
//! Each test uses its own repository path on one server per test binary. Outside CI a
//! missing rclone skips the tests loudly; under `CI=true` it fails them.
mod common;
#[path = "common/servers.rs"]
mod servers;

use std::ffi::OsString;
use std::time::{Duration, Instant};

use common::backup::assert_latest_restores;
use common::*;
use restash_backend::{conformance, Backend, BackendError, BackendOptions, FileType, RestBackend};
use servers::{fault_bin, rclone_rest, unique_name, FaultProxy, REST_PASS};

fn restash_rest(url: &str, args: Vec<OsString>) -> CmdOutput {
    let mut all = osargs!["-r", url];
    all.extend(args);
    let out = restash(all, &[]);
    assert!(
        !out.stderr.contains(REST_PASS),
        "password in stderr: {}",
        out.describe()
    );
    out
}

fn restic_rest(url: &str, args: Vec<OsString>) -> CmdOutput {
    let mut all = osargs!["-r", url];
    all.extend(args);
    restic(all, &[])
}

#[test]
fn rest_conformance_suite() {
    let Some(srv) = rclone_rest() else { return };
    let t = Instant::now();
    let name = unique_name("conf");
    let be = RestBackend::open(&srv.url(&name), BackendOptions::default()).unwrap();
    conformance::run(&be).unwrap();
    let shown = be.location();
    assert!(!shown.contains(REST_PASS), "{shown}");
    assert!(shown.contains(":***@"), "{shown}");
    assert!(!format!("{be:?}").contains(REST_PASS));
    // Names that are not ids are skipped by list. A handle cannot name such a file: it
    // goes straight into the directory the server serves.
    std::fs::write(
        srv.dir.join("data").join(&name).join("index/notes.txt"),
        b"x",
    )
    .unwrap();
    assert!(be.list(FileType::Index).unwrap().is_empty());
    eprintln!("rest conformance: {:.1?}", t.elapsed());
}

#[test]
fn rest_wrong_password_fails_without_retrying() {
    let Some(srv) = rclone_rest() else { return };
    let name = unique_name("auth");
    let url = srv.url(&name);
    restash_rest(&url, osargs!["init"]).success();
    let bad = url.replace(REST_PASS, "wrong-pass");
    let t = Instant::now();
    let out = restash_rest(&bad, osargs!["snapshots"]).expect_code(1);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "no retry on 401: {:?}",
        t.elapsed()
    );
    assert!(out.stderr.contains("401"), "{}", out.describe());
    assert!(!out.stderr.contains("wrong-pass"), "{}", out.describe());
    let be = RestBackend::open(&bad, BackendOptions::default()).unwrap();
    match be.list(FileType::Key) {
        Err(e @ BackendError::Other { .. }) => assert!(!e.is_retryable(), "{e}"),
        other => panic!("expected a 401 error, got {other:?}"),
    }
}

#[test]
fn rest_end_to_end_with_restic() {
    let Some(srv) = rclone_rest() else { return };
    let (_src, tree) = common::tree::tricky_source();
    let opts = tree.restic_compare_options();

    // restash writes, restash and restic read.
    let t = Instant::now();
    let url = srv.url(&unique_name("e2e"));
    restash_rest(&url, osargs!["init"]).success();
    let out = restash_rest(&url, osargs!["backup", "--host", "restash-e2e", &tree.root]).success();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(REST_PASS));
    let snaps = restash_rest(&url, osargs!["snapshots", "--json"])
        .success()
        .json();
    assert_eq!(snaps.as_array().map(Vec::len), Some(1), "{snaps}");
    assert_latest_restores(&|a| restash_rest(&url, a), &tree.root, &opts);
    restic_rest(&url, osargs!["check", "--read-data"]).success();
    assert_latest_restores(&|a| restic_rest(&url, a), &tree.root, &opts);
    eprintln!(
        "restash on REST, checked and restored by restic: {:.1?}",
        t.elapsed()
    );

    // restic writes, restash reads and extends, restic checks.
    let t = Instant::now();
    let url = srv.url(&unique_name("e2er"));
    restic_rest(&url, osargs!["init"]).success();
    restic_rest(&url, osargs!["backup", "--host", "restash-e2e", &tree.root]).success();
    assert_latest_restores(&|a| restash_rest(&url, a), &tree.root, &opts);
    restash_rest(&url, osargs!["backup", "--host", "restash-e2e", &tree.root]).success();
    restic_rest(&url, osargs!["check", "--read-data"]).success();
    let snaps = restash_rest(&url, osargs!["snapshots", "--json"])
        .success()
        .json();
    assert_eq!(snaps.as_array().map(Vec::len), Some(2), "{snaps}");
    eprintln!(
        "restic-written REST repo read and extended by restash: {:.1?}",
        t.elapsed()
    );
}

fn restash_env(url: &str, args: Vec<OsString>, env: &[(&str, &str)]) -> CmdOutput {
    let mut all = osargs!["-r", url];
    all.extend(args);
    let out = restash(all, env);
    assert!(
        !out.stderr.contains(REST_PASS),
        "password in stderr: {}",
        out.describe()
    );
    out
}

/// Debug logs on, short timeouts (defaults: 60 s without data, 120 s of retries).
const FAULTY_ENV: &[(&str, &str)] = &[
    ("RESTASH_DEBUG", "1"),
    ("RESTASH_HTTP_TIMEOUT", "2"),
    ("RESTASH_RETRY_TIMEOUT", "8"),
];

#[test]
fn rest_survives_connection_resets_and_blackhole_ends_cleanly() {
    let Some(srv) = rclone_rest() else { return };
    let Some(bin) = fault_bin() else { return };
    let reset = |p: f64| format!("- type: connection-reset\n  flow: both\n  probability: {p}");
    let proxy = FaultProxy::start(
        bin,
        &srv.addr,
        &[(Some("1s"), &reset(1.0)), (None, &reset(0.3))],
    );
    let name = unique_name("reset");
    let faulty = srv.url(&name).replace(&srv.addr, &proxy.listen);
    let (_src, tree) = common::tree::tricky_source();
    let out = restash_env(&faulty, osargs!["init"], FAULTY_ENV).success();
    assert!(
        out.stderr.contains("retry"),
        "resets were retried: {}",
        out.describe()
    );
    restash_env(
        &faulty,
        osargs!["backup", "--host", "restash-e2e", &tree.root],
        FAULTY_ENV,
    )
    .success();
    let target = tempfile::tempdir().unwrap();
    restash_env(
        &faulty,
        osargs!["restore", "latest", "--target", target.path()],
        FAULTY_ENV,
    )
    .success();
    assert_trees_equal(
        &tree.root,
        &restored_path(target.path(), &tree.root),
        &tree.restic_compare_options(),
    );
    drop(proxy);
    restic_rest(&srv.url(&name), osargs!["check", "--read-data"]).success();

    let proxy = FaultProxy::start(bin, &srv.addr, &[(None, "- type: blackhole\n  flow: both")]);
    let faulty = srv.url(&name).replace(&srv.addr, &proxy.listen);
    let t = Instant::now();
    let out = restash_env(&faulty, osargs!["snapshots"], FAULTY_ENV);
    let took = t.elapsed();
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(took < Duration::from_secs(40), "bounded: {took:?}");
    let fatal = out
        .stderr
        .lines()
        .find(|l| l.starts_with("Fatal:"))
        .unwrap_or_default();
    assert!(
        fatal.contains("timed out"),
        "clear message: {}",
        out.describe()
    );
    assert!(fatal.contains(":***@"), "location shown redacted: {fatal}");
    eprintln!("blackholed REST snapshots ended after {took:.1?}");
}
