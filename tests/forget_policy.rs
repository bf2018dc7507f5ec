//! `restash forget` and `restash tag` against restic 0.14 on one repository holding ~200
//! snapshots over three years, three hosts, several path sets and tags: for many policies
//! `forget --dry-run --json` must agree group for group (keep, remove, reasons), a real
//! run must leave exactly the snapshots restic's own run leaves, and `tag` must write what
//! restic writes. Both tools run with TZ=Europe/Berlin: restic's buckets use the wall clock
//! of each snapshot's offset, and `--keep-within*` do calendar arithmetic in the local zone.
mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use common::backup::copy_dir;
use common::tree::Prng;
use common::*;
use restash_backend::{FileType, LocalBackend};
use restash_engine::Repository;
use restash_format::{BlobId, GoTime, Snapshot};
use serde_json::Value;

const TZ: &[(&str, &str)] = &[("TZ", "Europe/Berlin")];

fn with_repo(repo: &Path, args: &[&str]) -> Vec<OsString> {
    let mut v = osargs!["-r", repo];
    v.extend(args.iter().map(OsString::from));
    v
}

fn restic_on(repo: &Path, args: &[&str]) -> CmdOutput {
    restic(with_repo(repo, args), TZ)
}

fn restash_on(repo: &Path, args: &[&str]) -> CmdOutput {
    restash(with_repo(repo, args), TZ)
}

fn last_sunday(year: i32, month: u32) -> NaiveDate {
    let mut d = NaiveDate::from_ymd_opt(year, month + 1, 1).expect("date") - Duration::days(1);
    while d.weekday() != Weekday::Sun {
        d -= Duration::days(1);
    }
    d
}

/// Berlin's offset at `t` (EU rule: summer time between the last Sundays of March and
/// October, 01:00 UTC), so these times parse as Go's `Local` and not as a fixed zone.
fn berlin_offset(t: DateTime<Utc>) -> i32 {
    let y = t.year();
    let start = last_sunday(y, 3)
        .and_hms_opt(1, 0, 0)
        .expect("time")
        .and_utc();
    let end = last_sunday(y, 10)
        .and_hms_opt(1, 0, 0)
        .expect("time")
        .and_utc();
    if t >= start && t < end {
        7200
    } else {
        3600
    }
}

/// Writes the synthetic snapshots (all pointing at `tree`) through the engine.
fn write_snapshots(repo: &Path, tree: BlobId, username: &str) -> usize {
    let backend = Arc::new(LocalBackend::new(repo));
    let r = Repository::open(backend, PASSWORD.as_bytes(), None).expect("open repository");
    let hosts = ["alpha", "beta", "gamma"];
    let path_sets: [&[&str]; 3] = [&["/srv/data"], &["/srv/www", "/etc"], &["/home"]];
    let tag_sets: [&[&str]; 5] = [&[], &["daily"], &["keep", "x"], &["x", "keep"], &["x"]];
    let mut rng = Prng::new(14);
    let mut times = Vec::new();
    // Dense recent history, sparse old history, and some bucket edges on purpose.
    for i in 0..150u64 {
        let span = if i < 60 { 90 * 86400 } else { 3 * 365 * 86400 };
        let end = Utc.with_ymd_and_hms(2025, 12, 31, 0, 0, 0).unwrap();
        let secs = rng.next_u64() % span;
        times.push(end - Duration::seconds(secs as i64));
    }
    for edge in [
        "2024-12-29T23:59:59Z", // Sunday of ISO week 2024-52
        "2024-12-30T00:00:01Z", // Monday: ISO week 2025-01
        "2025-03-30T00:59:59Z", // just before summer time
        "2025-03-30T01:00:01Z", // just after
        "2025-10-26T00:30:00Z", // the repeated hour
        "2025-10-26T01:30:00Z",
        "2024-02-29T12:00:00Z",
        "2025-12-31T22:59:30Z", // new year in Berlin
        "2025-12-31T23:00:30Z", // the newest: 2026-01-01T00:00:30+01:00
        // Six months before the newest is 2025-07-01T00:00:30 in Berlin, summer time:
        // 22:00:30 UTC, not 23:00:30 as a fixed +01:00 would give.
        "2025-06-30T22:30:00Z",
    ] {
        times.push(
            DateTime::parse_from_rfc3339(edge)
                .unwrap()
                .with_timezone(&Utc),
        );
    }
    let mut n = 0;
    for (i, t) in times.iter().enumerate() {
        let host = hosts[(rng.next_u64() % 3) as usize];
        let paths = path_sets[(rng.next_u64() % 3) as usize];
        let tags = tag_sets[(rng.next_u64() % 5) as usize];
        // Mostly Berlin's own offset; every seventh a foreign fixed zone.
        let offset = if i % 7 == 3 {
            -5 * 3600
        } else {
            berlin_offset(*t)
        };
        let nanos = (rng.next_u64() % 1_000_000_000) as u32;
        let s = Snapshot {
            time: GoTime::from_unix(t.timestamp(), nanos, offset).expect("time"),
            parent: None,
            tree,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            hostname: host.into(),
            username: username.into(),
            uid: 0,
            gid: 0,
            excludes: vec![],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            original: None,
            program_version: None,
            summary: None,
        };
        r.save_unpacked(FileType::Snapshot, &s.to_json())
            .expect("save snapshot");
        n += 1;
    }
    // One snapshot in the future: never "the newest" for --keep-within*.
    let future = Snapshot {
        time: GoTime::parse("2099-01-01T00:00:00+01:00").unwrap(),
        parent: None,
        tree,
        paths: vec!["/srv/data".into()],
        hostname: "alpha".into(),
        username: username.into(),
        uid: 0,
        gid: 0,
        excludes: vec![],
        tags: vec![],
        original: None,
        program_version: None,
        summary: None,
    };
    r.save_unpacked(FileType::Snapshot, &future.to_json())
        .expect("save snapshot");
    n + 1
}

/// A repository with one real restic backup plus the synthetic snapshots.
fn build_repo(dir: &Path) -> std::path::PathBuf {
    let repo = dir.join("repo");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("file"), b"forget me not").unwrap();
    restic(
        osargs!["-r", repo, "init", "--repository-version", "2"],
        &[],
    )
    .success();
    restic_on(
        &repo,
        &["backup", "--json", "--host", "seed", src.to_str().unwrap()],
    )
    .success();
    let snaps = restic_on(&repo, &["snapshots", "--json"]).success().json();
    let first = &snaps[0];
    let tree = BlobId::parse(first["tree"].as_str().unwrap()).unwrap();
    let n = write_snapshots(&repo, tree, first["username"].as_str().unwrap_or(""));
    assert!(n > 150);
    repo
}

/// `forget --json` groups keyed by their group key (restic's order is a Go map's).
fn groups_by_key(out: &CmdOutput) -> BTreeMap<String, Value> {
    if out.stdout.is_empty() {
        return BTreeMap::new();
    }
    let Value::Array(groups) = out.json() else {
        panic!("{}: not an array", out.cmd)
    };
    groups
        .into_iter()
        .map(|g| {
            let key = format!("{} {} {}", g["host"], g["tags"], g["paths"]);
            (key, g)
        })
        .collect()
}

const POLICIES: &[&[&str]] = &[
    &["--keep-last", "5"],
    &[
        "--keep-daily",
        "7",
        "--keep-weekly",
        "5",
        "--keep-monthly",
        "12",
        "--keep-yearly",
        "3",
    ],
    &["--keep-hourly", "10", "--keep-last", "2"],
    &["--keep-within", "2m15d"],
    &[
        "--keep-within",
        "1y2m3d4h",
        "--path",
        "/srv/data",
        "--group-by",
        "paths,tags",
    ],
    &[
        "--keep-within-hourly",
        "3d",
        "--keep-within-daily",
        "1m",
        "--keep-within-weekly",
        "6m",
        "--keep-within-monthly",
        "1y6m",
        "--keep-within-yearly",
        "3y",
    ],
    &[
        "--keep-tag",
        "keep",
        "--keep-tag",
        "daily,x",
        "--keep-monthly",
        "3",
    ],
    &["--keep-tag", "", "--keep-last", "1"],
    &["--keep-weekly", "8", "--group-by", "host"],
    &["--keep-monthly", "6", "--group-by", "tags"],
    &["--keep-yearly", "2", "--keep-last", "3", "--group-by", ""],
    &[
        "--keep-within",
        "6m",
        "--keep-within-hourly",
        "6m",
        "--group-by",
        "",
        "--host",
        "alpha",
        "--host",
        "beta",
        "--host",
        "gamma",
    ],
    &["--keep-daily", "30", "--host", "beta"],
    &["--keep-weekly", "4", "--tag", "keep", "--tag", "daily"],
    &["--keep-last", "-1", "--keep-tag", "x"],
    &[
        "--keep-weekly",
        "0",
        "--keep-within",
        "0d",
        "--keep-monthly",
        "2",
    ],
    &[
        "-l",
        "1",
        "-H",
        "3",
        "-d",
        "2",
        "-w",
        "2",
        "-m",
        "2",
        "-y",
        "1",
        "-g",
        "host,tags",
    ],
];

#[test]
fn forget_dry_run_json_matches_restic() {
    let dir = tempfile::tempdir().unwrap();
    let repo = build_repo(dir.path());
    let mut failures = Vec::new();
    for policy in POLICIES {
        let mut args = vec!["forget", "--dry-run", "--json"];
        args.extend_from_slice(policy);
        let want = groups_by_key(&restic_on(&repo, &args).success());
        let got = groups_by_key(&restash_on(&repo, &args).success());
        assert!(!want.is_empty(), "{policy:?}: restic found no groups");
        if want != got {
            let keys: Vec<_> = want.keys().collect();
            let first = want
                .iter()
                .find(|(k, v)| got.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k}: restic {v}\nrestash {:?}", got.get(k)));
            failures.push(format!("{policy:?} (groups {keys:?}): {first:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Without a policy restic prints no JSON at all.
    let out = restash_on(&repo, &["forget", "--dry-run", "--json"]).success();
    assert!(out.stdout.is_empty(), "{}", out.stdout_str());
}

/// The text output (tables with reasons, the dry-run list) is restic's byte for byte when
/// there is one group, so restic's random group order does not matter.
#[test]
fn forget_text_output_matches_restic() {
    let dir = tempfile::tempdir().unwrap();
    let repo = build_repo(dir.path());
    for policy in [
        &[
            "--keep-daily",
            "5",
            "--keep-yearly",
            "2",
            "--keep-tag",
            "keep,x",
            "-g",
            "",
        ][..],
        &[
            "--keep-last",
            "3",
            "--host",
            "gamma",
            "--path",
            "/home",
            "-c",
        ][..],
        &[
            "--keep-within-weekly",
            "2m",
            "--host",
            "beta",
            "--path",
            "/etc",
            "--tag",
            "x",
        ][..],
        &[
            "--keep-monthly",
            "2",
            "-v",
            "--host",
            "alpha",
            "--path",
            "/home",
        ][..],
        &[][..],
    ] {
        let mut args = vec!["forget", "--dry-run"];
        args.extend_from_slice(policy);
        let want = restic_on(&repo, &args).success();
        let got = restash_on(&repo, &args).success();
        assert_eq!(got.stdout_str(), want.stdout_str(), "{policy:?}");
    }
}

fn snapshot_ids(repo: &Path) -> Vec<String> {
    let Value::Array(v) = restic_on(repo, &["snapshots", "--json"]).success().json() else {
        panic!("snapshots --json is not an array")
    };
    let mut ids: Vec<String> = v.iter().map(|s| s["id"].as_str().unwrap().into()).collect();
    ids.sort();
    ids
}

#[test]
fn forget_removes_what_restic_removes() {
    let dir = tempfile::tempdir().unwrap();
    let repo = build_repo(dir.path());
    let theirs = dir.path().join("theirs");
    copy_dir(&repo, &theirs);
    let before = snapshot_ids(&repo);
    for policy in [
        &[
            "--keep-tag",
            "keep",
            "--keep-weekly",
            "10",
            "--keep-within",
            "1m",
        ][..],
        &[
            "--keep-monthly",
            "4",
            "--keep-yearly",
            "1",
            "-g",
            "tags",
            "--host",
            "alpha",
        ][..],
    ] {
        let mut args = vec!["forget"];
        args.extend_from_slice(policy);
        restic_on(&theirs, &args).success();
        restash_on(&repo, &args).success();
        assert_eq!(snapshot_ids(&repo), snapshot_ids(&theirs), "{policy:?}");
    }
    let left = snapshot_ids(&repo);
    assert!(
        left.len() < before.len() && left.len() > 10,
        "{}",
        left.len()
    );
    // Explicit ids (prefixes and `latest` with a filter) remove just those: three distinct
    // snapshots, so the two named ones are not beta's latest.
    let latest_beta = restash_on(&repo, &["snapshots", "--json", "--host", "beta", "latest"])
        .success()
        .json()[0]["id"]
        .as_str()
        .expect("beta's latest")
        .to_string();
    let named: Vec<&String> = left.iter().filter(|id| **id != latest_beta).collect();
    let prefix = &named[0][..8];
    let args = [
        "forget", prefix, named[1], "latest", "--host", "beta", "nosuchid",
    ];
    restic_on(&theirs, &args).success();
    let out = restash_on(&repo, &args).success();
    assert!(out.stderr.contains("nosuchid"), "{}", out.stderr);
    assert_eq!(snapshot_ids(&repo), snapshot_ids(&theirs));
    assert_eq!(snapshot_ids(&repo).len(), left.len() - 3);
    restic_on(&repo, &["check"]).success();
    // A held lock blocks a real run.
    let out = restash_on(&repo, &["--no-lock", "forget", "--keep-last", "1"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    // forget --prune: the same snapshots go, then prune runs under forget's lock; the
    // repository ends up as small as restic's and restic checks every byte of it.
    let args = ["forget", "--keep-last", "1", "--prune"];
    restic_on(&theirs, &args).success();
    let out = restash_on(&repo, &args).success();
    assert!(
        out.stdout_str()
            .contains("snapshots have been removed, running prune"),
        "{}",
        out.describe()
    );
    assert_eq!(snapshot_ids(&repo), snapshot_ids(&theirs));
    let (ours, restics) = (
        dir_bytes(&repo.join("data")),
        dir_bytes(&theirs.join("data")),
    );
    assert!(
        ours.abs_diff(restics) * 20 <= restics,
        "pack bytes after forget --prune: restash {ours}, restic {restics}"
    );
    restic_on(&repo, &["check", "--read-data"]).success();
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let e = e.expect("entry");
        let m = e.metadata().expect("metadata");
        total += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    total
}

/// Snapshots without their ids (the tools encrypt differently), sorted.
fn contents(repo: &Path) -> Vec<String> {
    let Value::Array(v) = restic_on(repo, &["snapshots", "--json"]).success().json() else {
        panic!("snapshots --json is not an array")
    };
    let mut out: Vec<String> = v
        .into_iter()
        .map(|mut s| {
            let o = s.as_object_mut().unwrap();
            o.remove("id");
            o.remove("short_id");
            s.to_string()
        })
        .collect();
    out.sort();
    out
}

#[test]
fn tag_writes_what_restic_writes() {
    let dir = tempfile::tempdir().unwrap();
    let repo = build_repo(dir.path());
    let theirs = dir.path().join("theirs");
    copy_dir(&repo, &theirs);
    let ids = snapshot_ids(&repo);
    let steps: Vec<Vec<&str>> = vec![
        vec!["tag", "--add", "new,x", "--add", "more", "--host", "beta"],
        vec!["tag", "--remove", "x", "--tag", "keep"],
        vec!["tag", "--set", "only", "--path", "/home", "--host", "gamma"],
        vec!["tag", "--add", "picked", &ids[0][..10], &ids[5]],
        vec![
            "tag", "--remove", "new", "--add", "renewed", "--tag", "more",
        ],
        vec!["tag", "--set", "", "--host", "alpha"],
    ];
    for step in &steps {
        let want = restic_on(&theirs, step).success();
        let got = restash_on(&repo, step).success();
        assert_eq!(got.stdout_str(), want.stdout_str(), "{step:?}");
        assert_eq!(contents(&repo), contents(&theirs), "{step:?}");
    }
    let all = contents(&repo);
    assert!(all.iter().any(|s| s.contains("\"original\"")));
    assert!(all.iter().any(|s| s.contains("\"renewed\"")));
    // restic continues on what restash wrote, and the repository checks.
    restic_on(&repo, &["tag", "--add", "by-restic", "--tag", "only"]).success();
    restic_on(&theirs, &["tag", "--add", "by-restic", "--tag", "only"]).success();
    assert_eq!(contents(&repo), contents(&theirs));
    restic_on(&repo, &["check"]).success();
    let out = restash_on(&repo, &["tag", "--host", "alpha"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert!(out.stderr.contains("nothing to do"), "{}", out.stderr);
}

/// restic writes a zero offset as `Z`, which Go reads as UTC even where the local zone has
/// offset 0 in winter: `--keep-within 6m` must then not follow London's summer time.
#[test]
fn zero_offset_times_are_utc_not_local() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"z").unwrap();
    restic(osargs!["-r", repo, "init"], &[]).success();
    let utc = &[("TZ", "UTC")][..];
    for t in [
        "2025-01-01 00:00:30",
        "2024-06-30 23:30:00",
        "2024-06-30 22:30:00",
    ] {
        restic(osargs!["-r", repo, "backup", "--time", t, src], utc).success();
    }
    let london = &[("TZ", "Europe/London")][..];
    let args = osargs![
        "-r",
        repo,
        "forget",
        "--dry-run",
        "--json",
        "--keep-within",
        "6m"
    ];
    let want = restic(args.clone(), london).success().json();
    let got = restash(args, london).success().json();
    assert_eq!(got, want);
    assert_eq!(want[0]["keep"].as_array().map(Vec::len), Some(1), "{want}");
}
