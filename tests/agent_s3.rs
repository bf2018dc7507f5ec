//! SIGTERM to the agent's backup while packs crawl to S3 through a bandwidth-limited fault
//! proxy (fault-cli in front of SeaweedFS), as on a node drain with a slow object store:
//! the process ends with 143 within the grace period, leaves no lock, writes its summary,
//! and the next run reuses what arrived instead of uploading it again.
mod common;
#[path = "common/servers.rs"]
mod servers;

use std::time::{Duration, Instant};

use common::backup::*;
use common::*;
use serde_json::Value;
use servers::{fault_bin, seaweedfs, unique_name, FaultProxy};

/// Bytes of the objects under `data/` and their count, as restic lists them.
fn packs(url: &str, env: &[(&str, &str)]) -> usize {
    restic(["-r", url, "--no-lock", "list", "packs"], env)
        .success()
        .stdout_str()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// Starts a backup through a proxy limited to `rate` bytes/s per connection, sends SIGTERM
/// `settle` after `wait_packs` packs have arrived, checks what the run left, then lets a
/// direct run finish the snapshot. Returns the termination-log summary of the terminated
/// run.
fn terminate_and_resume(rate: u64, wait_packs: usize, settle: Duration, grace: &str) -> Value {
    let (Some(sw), Some(bin)) = (seaweedfs(), fault_bin()) else {
        return Value::Null;
    };
    let proxy = FaultProxy::start(
        bin,
        sw.endpoint.trim_start_matches("http://"),
        &[(
            None,
            &format!("- type: bandwidth\n  flow: to-upstream\n  bytes_per_second: {rate}"),
        )],
    );
    let bucket = unique_name("agent-term");
    let direct = sw.url(&bucket);
    let slow = format!("s3:http://{}/{bucket}", proxy.listen);
    let env_owned = sw.env();
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    restic(["-r", direct.as_str(), "init"], &env).success();

    let base = tempfile::tempdir().expect("tempdir");
    let src = base.path().join("src");
    write_dataset(&src, 40, 48 << 20, 3);
    let tl = base.path().join("termination-log");
    let mut bg = Background::spawn(
        Tool::Restash,
        osargs![
            "-r",
            slow,
            "--pack-size",
            "4",
            "backup",
            "--pvc",
            "claim-slow",
            "--termination-log",
            tl,
            "--term-grace",
            grace,
            src
        ],
        &env,
        false,
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    while packs(&direct, &env) < wait_packs {
        assert!(
            bg.running() && Instant::now() < deadline,
            "the backup ended before {wait_packs} packs arrived\n{}",
            bg.kill().describe()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(settle);
    let sent = Instant::now();
    bg.signal(rustix::process::Signal::Term);
    let out = bg.wait();
    let took = sent.elapsed();
    assert_eq!(out.code, 143, "{}", out.describe());
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&tl).expect("termination log"))
            .expect("JSON");
    assert_eq!(written["status"], "interrupted", "{written}");
    assert_eq!(
        Some(&written),
        out.json_lines().last(),
        "{}",
        out.describe()
    );
    let locks = restic(["-r", direct.as_str(), "--no-lock", "list", "locks"], &env).success();
    assert!(
        locks.stdout_str().trim().is_empty(),
        "lock left: {}",
        locks.describe()
    );
    let arrived = packs(&direct, &env);

    // The next run (straight to the store) keeps every pack that arrived.
    let out = restash(
        osargs!["-r", direct, "backup", "--pvc", "claim-slow", src],
        &env,
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    let summary: Value = out.json_lines().pop().expect("summary");
    let added = summary["data_added"].as_u64().expect("data_added");
    let total = tree_bytes(&src);
    assert!(added < total, "added {added} of {total}: nothing reused");
    eprintln!(
        "{rate} B/s per connection, grace {grace} s: exit {took:?} after SIGTERM; {arrived} packs \
         had arrived; the next run added {added} of {total} bytes"
    );
    restic(["-r", direct.as_str(), "check", "--read-data"], &env).success();
    drop(proxy);
    written
}

/// 1 MiB/s: the uploads in flight finish within the grace period and are indexed.
#[test]
fn sigterm_during_slow_s3_uploads_finishes_them() {
    let written = terminate_and_resume(1 << 20, 2, Duration::ZERO, "60");
    assert!(
        written.is_null() || written["error"] == "terminated by SIGTERM",
        "{written}"
    );
}

/// 128 KiB/s: a 4 MiB pack needs half a minute, so after the grace period the uploads are
/// abandoned; the lock is still removed and what arrived is adopted by the next run.
#[test]
fn sigterm_during_crawling_s3_uploads_abandons_them_after_the_grace_period() {
    // Uploads start together, one per reader: the first pack's siblings land within a
    // moment of it. Three seconds later every upload in flight is a fresh one, half a
    // minute from done, so the grace period always runs out (without the wait, a sibling
    // finishing inside the grace made this test flaky).
    let written = terminate_and_resume(128 << 10, 1, Duration::from_secs(3), "3");
    assert!(
        written.is_null()
            || written["error"]
                .as_str()
                .unwrap_or("")
                .contains("abandoned"),
        "{written}"
    );
}

/// A restore cut short by SIGTERM (downloads at 128 KiB/s) still reports: exit 143 and an
/// `interrupted` summary naming the snapshot, so the operator knows the volume is partial.
#[test]
fn sigterm_during_a_slow_restore_is_reported() {
    let (Some(sw), Some(bin)) = (seaweedfs(), fault_bin()) else {
        return;
    };
    let proxy = FaultProxy::start(
        bin,
        sw.endpoint.trim_start_matches("http://"),
        &[(
            None,
            "- type: bandwidth\n  flow: to-client\n  bytes_per_second: 131072",
        )],
    );
    let bucket = unique_name("agent-restore-term");
    let direct = sw.url(&bucket);
    let slow = format!("s3:http://{}/{bucket}", proxy.listen);
    let env_owned = sw.env();
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    restic(["-r", direct.as_str(), "init"], &env).success();
    let base = tempfile::tempdir().expect("tempdir");
    let src = base.path().join("src");
    write_dataset(&src, 8, 16 << 20, 5);
    let out = restash(
        osargs!["-r", direct, "backup", "--pvc", "claim-r", src],
        &env,
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    let snapshot = out.json_lines().pop().expect("summary")["snapshot_id"].clone();

    let target = base.path().join("target");
    let tl = base.path().join("termination-log");
    let mut bg = Background::spawn(
        Tool::Restash,
        osargs![
            "-r",
            slow,
            "restore",
            "latest",
            "--pvc",
            "claim-r",
            "--target",
            target,
            "--termination-log",
            tl
        ],
        &env,
        false,
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while !target.exists() {
        assert!(
            bg.running() && Instant::now() < deadline,
            "the restore ended before it began writing\n{}",
            bg.kill().describe()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    bg.signal(rustix::process::Signal::Term);
    let out = bg.wait();
    assert_eq!(out.code, 143, "{}", out.describe());
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&tl).expect("termination log"))
            .expect("JSON");
    assert_eq!(written["command"], "restore");
    assert_eq!(written["status"], "interrupted", "{written}");
    assert_eq!(written["host"], "claim-r");
    assert_eq!(written["snapshot_id"], snapshot);
    assert_eq!(
        Some(&written),
        out.json_lines().last(),
        "{}",
        out.describe()
    );
    drop(proxy);
}
