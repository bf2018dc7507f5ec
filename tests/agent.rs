//! The in-pod agent mode of `backup` and `restore`: a PVC's name as the snapshot identity,
//! the termination-log summary, Prometheus metrics (file and push to a real HTTP receiver),
//! JSON log lines, SIGTERM with index and lock guarantees, and stale-lock removal. restic
//! 0.14 checks every repository the agent touched.
mod common;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::backup::*;
use common::*;
use serde_json::Value;

/// A fresh restic repository in a temporary directory.
fn new_repo() -> Repo {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("repo");
    restic(osargs!["-r", path, "init"], &[]).success();
    Repo::new(path, Some(dir))
}

fn small_tree(dir: &Path, tag: &str) {
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    for i in 0..5 {
        std::fs::write(dir.join(format!("f{i}.txt")), format!("{tag} {i}\n")).expect("write");
    }
    std::fs::write(dir.join("sub/notes.md"), format!("# {tag}\n")).expect("write");
}

/// Every stdout line is a JSON object without ANSI escapes; returns them.
#[track_caller]
fn agent_lines(out: &CmdOutput) -> Vec<Value> {
    assert!(
        !out.stdout.contains(&0x1b) && !out.stderr.contains('\x1b'),
        "ANSI escape in output\n{}",
        out.describe()
    );
    let lines = out.json_lines();
    assert!(!lines.is_empty(), "no output\n{}", out.describe());
    for l in &lines[..lines.len() - 1] {
        assert!(
            l["time"].is_string() && l["level"].is_string() && l["msg"].is_string(),
            "not a log line: {l}\n{}",
            out.describe()
        );
    }
    lines
}

/// The summary: the last stdout line.
#[track_caller]
fn last_line(out: &CmdOutput) -> Value {
    agent_lines(out).pop().expect("a line")
}

#[test]
fn pvc_names_the_snapshot_and_restore_finds_it_by_host_tag_and_path() {
    let repo = new_repo();
    let base = tempfile::tempdir().expect("tempdir");
    let (alice, bob) = (base.path().join("alice"), base.path().join("bob"));
    small_tree(&alice, "alice");
    small_tree(&bob, "bob");
    // Alice by flag, Bob by environment, Bob's snapshot the newer one.
    let out = repo.restash(osargs!["backup", "--pvc", "claim-alice", alice]);
    assert_eq!(out.code, 0, "{}", out.describe());
    let summary = last_line(&out);
    assert_eq!(summary["status"], "success");
    assert_eq!(summary["host"], "claim-alice");
    assert_eq!(summary["files_new"], 6);
    let out = restash(
        osargs!["-r", repo.path, "backup", bob],
        &[("RESTASH_PVC", "claim-bob")],
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    assert!(!out.stderr.contains(PASSWORD) && !out.stdout_str().contains(PASSWORD));

    let snaps = repo.restic_snapshots();
    let by_host =
        |h: &str| -> Vec<&Value> { snaps.iter().filter(|s| s["hostname"] == h).collect() };
    let machine = restash_engine::whoami::host_name();
    assert!(snaps.iter().all(|s| s["hostname"] != machine.as_str()));
    for (host, path) in [("claim-alice", &alice), ("claim-bob", &bob)] {
        let s = by_host(host);
        assert_eq!(s.len(), 1, "{host}: {snaps:?}");
        assert_eq!(s[0]["tags"], serde_json::json!([format!("pvc={host}")]));
        assert_eq!(
            s[0]["paths"],
            serde_json::json!([path.display().to_string()])
        );
    }

    // The next backup of Alice uses Alice's snapshot as parent, not Bob's newer one.
    let out = repo.restash(osargs!["backup", "--pvc", "claim-alice", alice]);
    let summary = last_line(&out);
    assert_eq!(summary["files_unmodified"], 6, "{}", out.describe());

    // `latest` resolves per host, tag and path filter.
    let alice_s = alice.display().to_string();
    let filters: [Vec<OsString>; 4] = [
        osargs!["--host", "claim-alice"],
        osargs!["--tag", "pvc=claim-alice"],
        osargs!["--path", alice_s],
        osargs!["--pvc", "claim-alice"],
    ];
    for f in filters {
        let target = tempfile::tempdir().expect("tempdir");
        let tl = target.path().join("termination-log");
        let dest = target.path().join("data");
        let mut args = osargs![
            "restore",
            "latest",
            "--target",
            dest,
            "--termination-log",
            tl
        ];
        args.extend(f.clone());
        let out = repo.restash(args);
        assert_eq!(out.code, 0, "{f:?}\n{}", out.describe());
        assert_trees_equal(
            &alice,
            &restored_path(&dest, &alice),
            &CompareOptions::default(),
        );
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(&tl).expect("termination log"))
                .expect("termination log is JSON");
        assert_eq!(written["command"], "restore");
        assert_eq!(written["status"], "success");
        assert_eq!(written["host"], "claim-alice");
        assert_eq!(written["files_restored"], 6);
    }
    repo.restic(["check"]).success();
}

/// Runs restash as `nobody` (root reads every file, so unreadable files need another user).
fn as_nobody(args: Vec<OsString>, env: &[(&str, &str)]) -> CmdOutput {
    let mut all = osargs![
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        common::run::restash_bin()
    ];
    all.extend(args);
    common::run::run_cmd(Path::new("/usr/bin/setpriv"), all, env)
}

#[test]
fn termination_log_of_a_partial_backup_stays_under_4_kib() {
    if !is_root() || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("SKIPPED: needs root and /usr/bin/setpriv to run restash as nobody");
        return;
    }
    use std::os::unix::fs::{chown, PermissionsExt};
    let base = tempfile::tempdir().expect("tempdir");
    let base = base.path();
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let src = base.join("src");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("readable.txt"), b"fine\n").expect("write");
    for i in 0..1000 {
        let p = src.join(format!("locked-{i:04}-{}.txt", "x".repeat(60)));
        std::fs::write(&p, b"root only\n").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    }
    let work = base.join("work");
    std::fs::create_dir(&work).expect("mkdir");
    chown(&work, Some(65534), Some(65534)).expect("chown");
    let repo_path = work.join("repo");
    let tl = work.join("termination-log");
    let home = work.display().to_string();
    let env = [("HOME", home.as_str())];
    as_nobody(osargs!["-r", repo_path, "init"], &env).success();
    let out = as_nobody(
        osargs![
            "-r",
            repo_path,
            "backup",
            "--pvc",
            "claim-x",
            "--termination-log",
            tl,
            src
        ],
        &env,
    );
    assert_eq!(out.code, 3, "{}", out.describe());
    let text = std::fs::read_to_string(&tl).expect("termination log");
    assert!(text.len() < 4096, "{} bytes: {text}", text.len());
    let written: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        written,
        last_line(&out),
        "the last stdout line is the summary"
    );
    assert_eq!(written["status"], "partial");
    assert_eq!(written["exit_code"], 3);
    assert_eq!(written["errors"], 1000);
    assert_eq!(written["errors_truncated"], true);
    let first = written["first_errors"].as_array().expect("first_errors");
    assert!(!first.is_empty() && first[0].as_str().unwrap().contains("locked-"));
    assert!(written["snapshot_id"]
        .as_str()
        .is_some_and(|s| s.len() == 64));
    // Every unreadable file was logged as a JSON error line.
    let errors = agent_lines(&out)
        .iter()
        .filter(|l| l["level"] == "error")
        .count();
    assert_eq!(errors, 1000, "{}", out.describe());
    Repo::new(repo_path, None).restic(["check"]).success();
}

/// One HTTP request as a tiny receiver saw it.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    content_type: String,
    body: String,
}

/// A real HTTP server on 127.0.0.1 that records each request and answers `status`.
fn receiver(status: u16) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            );
            let (mut len, mut content_type) = (0usize, String::new());
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap_or(("", ""));
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "content-type" => content_type = v.trim().to_string(),
                    _ => {}
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            log.lock().unwrap().push(Request {
                method,
                path,
                content_type,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, seen)
}

fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_file_and_pushgateway() {
    let repo = new_repo();
    let base = tempfile::tempdir().expect("tempdir");
    let src = base.path().join("src");
    small_tree(&src, "m");
    let prom = base.path().join("metrics/restash.prom");
    std::fs::create_dir(prom.parent().unwrap()).expect("mkdir");
    let (url, seen) = receiver(200);
    let out = repo.restash(osargs![
        "backup",
        "--pvc",
        "claim-a\"b",
        "--metrics-file",
        prom,
        "--metrics-push",
        url,
        src
    ]);
    assert_eq!(out.code, 0, "{}", out.describe());
    let text = std::fs::read_to_string(&prom).expect("metrics file");
    let success = sample(
        &text,
        "restash_backup_last_success_timestamp_seconds{host=\"claim-a\\\"b\"}",
    )
    .unwrap_or_else(|| panic!("no escaped last-success sample:\n{text}"));
    for (line, want) in [
        (
            "restash_backup_files{host=\"claim-a\\\"b\",state=\"new\"}",
            6.0,
        ),
        ("restash_backup_errors{", 0.0),
        ("restash_backup_last_run_exit_code{", 0.0),
    ] {
        assert_eq!(sample(&text, line), Some(want), "{line}\n{text}");
    }
    assert!(sample(&text, "restash_backup_bytes_added{").unwrap() > 0.0);
    assert!(sample(&text, "restash_backup_duration_seconds{").is_some());
    for name in [
        "last_success_timestamp_seconds",
        "files",
        "bytes_added",
        "duration_seconds",
    ] {
        assert_eq!(
            text.matches(&format!("# TYPE restash_backup_{name} gauge\n"))
                .count(),
            1,
            "{text}"
        );
        assert_eq!(
            text.matches(&format!("# HELP restash_backup_{name} "))
                .count(),
            1,
            "{text}"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(prom.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "temporary file left: {leftovers:?}");
    {
        let reqs = seen.lock().unwrap();
        assert_eq!(reqs.len(), 1, "{reqs:?}");
        assert_eq!(reqs[0].method, "PUT");
        assert_eq!(reqs[0].path, "/metrics/job/restash/host/claim-a%22b");
        assert!(reqs[0].content_type.starts_with("text/plain"), "{reqs:?}");
        assert_eq!(reqs[0].body, text);
    }

    // A failed run keeps the last success time and records its exit code.
    let out = repo.restash(osargs![
        "backup",
        "--pvc",
        "claim-a\"b",
        "--metrics-file",
        prom,
        "--metrics-push",
        url,
        base.path().join("missing")
    ]);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert_eq!(last_line(&out)["status"], "failed");
    let text = std::fs::read_to_string(&prom).expect("metrics file");
    assert_eq!(
        sample(&text, "restash_backup_last_success_timestamp_seconds{"),
        Some(success),
        "{text}"
    );
    assert_eq!(
        sample(&text, "restash_backup_last_run_exit_code{"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);

    // Without a metrics file the gateway is told only what it may replace (POST, no
    // last-success sample), so it keeps its own last-success time.
    let out = repo.restash(osargs![
        "backup",
        "--pvc",
        "claim-c",
        "--metrics-push",
        url,
        base.path().join("missing")
    ]);
    assert_eq!(out.code, 1);
    {
        let reqs = seen.lock().unwrap();
        let r = reqs.last().unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/metrics/job/restash/host/claim-c")
        );
        assert!(
            !r.body.contains("last_success")
                && r.body
                    .contains("restash_backup_last_run_exit_code{host=\"claim-c\"} 1"),
            "{}",
            r.body
        );
    }

    // A gateway that refuses, or is not there, is a warning: the backup still succeeds.
    let (bad, _) = receiver(500);
    let dead = format!("http://127.0.0.1:{}", common_free_port());
    for gw in [bad, dead] {
        let out = repo.restash(osargs![
            "backup",
            "--pvc",
            "claim-a",
            "--metrics-push",
            gw,
            src
        ]);
        assert_eq!(out.code, 0, "{}", out.describe());
        let lines = agent_lines(&out);
        assert!(
            lines
                .iter()
                .any(|l| l["level"] == "warning" && l["msg"].as_str().unwrap().contains("push")),
            "{}",
            out.describe()
        );
        assert_eq!(lines.last().unwrap()["status"], "success");
    }
}

fn common_free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Writes a lock file as another host's process would have, `age` ago.
fn write_foreign_lock(repo: &Repo, host: &str, age: Duration, exclusive: bool) -> String {
    let backend = std::sync::Arc::new(restash_backend::LocalBackend::new(&repo.path));
    let r = restash_engine::Repository::open(backend, PASSWORD.as_bytes(), None).expect("open");
    let now = restash_format::GoTime::now_local();
    let time = restash_format::GoTime::from_unix(now.unix_secs() - age.as_secs() as i64, 0, 0)
        .expect("time");
    let lock = restash_format::Lock {
        time,
        exclusive,
        hostname: host.into(),
        username: "jovyan".into(),
        pid: 1,
        uid: 1000,
        gid: 100,
    };
    r.save_unpacked(restash_backend::FileType::Lock, &lock.to_json())
        .expect("write lock")
        .to_hex()
}

#[test]
fn stale_lock_of_a_vanished_pod_is_removed_a_fresh_one_blocks() {
    let repo = new_repo();
    let base = tempfile::tempdir().expect("tempdir");
    let src = base.path().join("src");
    small_tree(&src, "l");
    let stale = write_foreign_lock(
        &repo,
        "restash-backup-claim-a-29001-x7k",
        Duration::from_secs(31 * 60),
        true,
    );
    assert_eq!(lock_ids(&repo), vec![stale.clone()]);
    let out = repo.restash(osargs!["backup", "--pvc", "claim-a", src]);
    assert_eq!(out.code, 0, "{}", out.describe());
    let lines = agent_lines(&out);
    let removed = lines
        .iter()
        .find(|l| l["msg"] == "removed stale lock")
        .unwrap_or_else(|| panic!("no removal logged\n{}", out.describe()));
    let why = removed["lock"].as_str().unwrap();
    assert!(
        why.contains(&stale[..8])
            && why.contains("restash-backup-claim-a-29001-x7k")
            && why.contains("not refreshed for 31 minutes"),
        "{why}"
    );
    assert!(lock_ids(&repo).is_empty(), "restic still sees a lock");

    let fresh = write_foreign_lock(
        &repo,
        "restash-backup-claim-a-29002-q2p",
        Duration::from_secs(60),
        true,
    );
    let out = repo.restash(osargs!["backup", "--pvc", "claim-a", src]);
    assert_eq!(out.code, 11, "{}", out.describe());
    assert_eq!(last_line(&out)["status"], "failed");
    assert!(
        agent_lines(&out).iter().any(|l| l["level"] == "error"
            && l["msg"] == "backup failed"
            && l["error"].as_str().unwrap_or("").contains("locked")),
        "{}",
        out.describe()
    );
    assert_eq!(lock_ids(&repo), vec![fresh], "the fresh lock must stay");
    let snaps = repo
        .restic(["--no-lock", "snapshots", "--json"])
        .success()
        .json();
    assert_eq!(snaps.as_array().map(Vec::len), Some(1), "{snaps}");
}

#[test]
fn sigterm_indexes_uploads_unlocks_and_the_next_run_adopts_them() {
    let repo = new_repo();
    let base = tempfile::tempdir().expect("tempdir");
    let src = base.path().join("src");
    write_dataset(&src, 60, 96 << 20, 7);
    let tl = base.path().join("termination-log");
    let mut bg = Background::spawn(
        Tool::Restash,
        osargs![
            "-r",
            repo.path,
            "--pack-size",
            "4",
            "backup",
            "--pvc",
            "claim-big",
            "--termination-log",
            tl,
            src
        ],
        &[],
        false,
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    while data_files(&repo.path)
        .iter()
        .filter(|p| pack_is_complete(p))
        .nth(2)
        .is_none()
    {
        assert!(
            bg.running() && Instant::now() < deadline,
            "backup ended before 3 packs were written\n{}",
            bg.kill().describe()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = Instant::now();
    bg.signal(rustix::process::Signal::Term);
    let out = bg.wait();
    eprintln!("SIGTERM to exit: {:?}", sent.elapsed());
    assert_eq!(out.code, 143, "{}", out.describe());
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&tl).expect("termination log"))
            .expect("JSON");
    assert_eq!(written["status"], "interrupted");
    assert_eq!(written["exit_code"], 143);
    assert_eq!(written, last_line(&out));
    assert!(lock_ids(&repo).is_empty(), "the lock was left behind");
    assert!(repo.restic_snapshots().is_empty());
    // Every complete pack is in an index: restic sees no unreferenced pack.
    let packs_before: Vec<_> = data_files(&repo.path)
        .into_iter()
        .filter(|p| pack_is_complete(p))
        .collect();
    let check = repo.restic(["check"]).success();
    assert!(
        !check.stdout_str().contains("not referenced"),
        "{}",
        check.describe()
    );

    let out = repo.restash(osargs!["backup", "--pvc", "claim-big", src]);
    assert_eq!(out.code, 0, "{}", out.describe());
    let summary = last_line(&out);
    let added = summary["data_added"].as_u64().unwrap();
    let total = tree_bytes(&src);
    assert!(
        added < total,
        "the second run added {added} of {total} bytes: nothing was reused"
    );
    for p in &packs_before {
        assert!(p.exists(), "pack {p:?} from before SIGTERM is gone");
    }
    // Random data does not compress: if anything had been uploaded twice, the packs would
    // hold clearly more than the source.
    let stored: u64 = data_files(&repo.path)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(
        stored < total + total / 50 + (1 << 20),
        "packs hold {stored} bytes for {total} bytes of source"
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
    eprintln!(
        "second run added {added} of {total} bytes; {} packs written before SIGTERM",
        packs_before.len()
    );
}

/// `backup --forget --keep-…`: retention in the same Job, on this volume's snapshots only,
/// keeping exactly what `restic forget --host H` keeps; a missing policy is refused before
/// anything is read.
#[test]
fn backup_forget_applies_the_policy_to_its_own_host_only() {
    let repo = new_repo();
    let base = tempfile::tempdir().expect("tempdir");
    let (alice, bob) = (base.path().join("alice"), base.path().join("bob"));
    small_tree(&alice, "alice");
    small_tree(&bob, "bob");
    for i in 0..4 {
        std::fs::write(alice.join("changing.txt"), format!("{i}")).expect("write");
        repo.restash(osargs!["backup", "-q", "--host", "claim-alice", &alice])
            .success();
        repo.restash(osargs!["backup", "-q", "--host", "claim-bob", &bob])
            .success();
    }
    std::fs::write(alice.join("changing.txt"), "last").expect("write");
    // What restic would keep after the next snapshot, asked before restash runs: the next
    // snapshot is the newest, so restic's keep set is the 2 newest after it is added.
    let out = repo.restash(osargs![
        "backup",
        "--pvc",
        "claim-alice",
        &alice,
        "--forget",
        "--keep-last",
        "2",
        "--keep-hourly",
        "1"
    ]);
    assert_eq!(out.code, 0, "{}", out.describe());
    let summary = last_line(&out);
    assert_eq!(summary["snapshots_kept"], 2, "{summary}");
    assert_eq!(summary["snapshots_removed"], 3, "{summary}");
    // From the snapshots the parent hint names, not from every volume's.
    assert_eq!(summary["forget_by_hint"], 1, "{summary}");
    let snaps = repo.restic_snapshots();
    let count = |h: &str| snaps.iter().filter(|s| s["hostname"] == h).count();
    assert_eq!(
        count("claim-bob"),
        4,
        "another volume's snapshots are untouched"
    );
    assert_eq!(count("claim-alice"), 2);
    // restic's own policy on the result removes nothing more.
    let restic_view = repo
        .restic([
            "forget",
            "--host",
            "claim-alice",
            "--keep-last",
            "2",
            "--keep-hourly",
            "1",
            "--dry-run",
            "--json",
        ])
        .success()
        .json();
    for g in restic_view.as_array().expect("groups") {
        assert!(g["remove"].is_null(), "restic would remove more: {g}");
    }
    repo.restic(["check"]).success();

    for bad in [
        osargs!["backup", &alice, "--forget"],
        osargs!["backup", &alice, "--keep-last", "3"],
    ] {
        let out = repo.restash(bad);
        assert_eq!(out.code, 1, "{}", out.describe());
        assert!(out.stderr.contains("--keep-") || out.stderr.contains("--forget"));
    }
    assert_eq!(
        repo.restic_snapshots().len(),
        6,
        "refused runs saved nothing"
    );
}
