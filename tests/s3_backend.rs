//! The S3 backend against real S3 servers (SeaweedFS and Ceph RGW, SigV4 enforced, started
//! by `scripts/s3-server.sh` and `scripts/ceph-rgw.sh`): the shared conformance suite, multipart uploads, listing past
//! one page, restic's s3legacy layout, credentials from variables, files and a profile,
//! clean failures for a wrong secret and for missing credentials, end to end with
//! restic 0.14 on the same buckets in both directions, and network faults injected by a
//! fault-cli TCP proxy: reset connections (retried, the backup completes) and a blackhole
//! (a clean timeout error, not a hang).
//!
//! Each test uses its own bucket on one server per test binary. Outside CI a missing
//! server skips the tests loudly; under `CI=true` it fails them.
mod common;
#[path = "common/servers.rs"]
mod servers;

use std::collections::HashMap;
use std::ffi::OsString;
use std::time::{Duration, Instant};

use common::backup::assert_latest_restores;
use common::*;
use restash_backend::{
    conformance, Backend, BackendError, BackendOptions, FileType, Handle, Id, S3Backend, S3Layout,
};
use servers::{
    ceph_rgw, fault_bin, restash_s3, restic_s3, seaweedfs, unique_name, FaultProxy, S3Server,
    SeaweedFs,
};

/// The cases that must hold on every S3 server, each a test per server: SeaweedFS and Ceph
/// RGW (what Open Storage Network runs; stricter about bucket names, other ETags and error
/// bodies).
macro_rules! on_every_server {
    ($($case:ident),* $(,)?) => {
        mod seaweedfs {
            $(#[test]
            fn $case() {
                if let Some(s) = super::seaweedfs() {
                    super::$case(s)
                }
            })*
        }
        mod ceph_rgw {
            $(#[test]
            fn $case() {
                if let Some(s) = super::ceph_rgw() {
                    super::$case(s)
                }
            })*
        }
    };
}

on_every_server!(
    conformance_suite,
    multipart_ranges_and_pagination,
    legacy_layout_is_detected,
    wrong_secret_fails_cleanly,
    end_to_end_with_restic,
);

/// An S3 backend on `bucket[/prefix]` seeing only `vars` as its environment.
fn open(sw: &S3Server, path: &str, opts: BackendOptions, vars: &[(&str, String)]) -> S3Backend {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    S3Backend::open_with_env(&sw.url(path), opts, &move |k| env.get(k).cloned())
        .unwrap_or_else(|e| panic!("open {}: {e}", sw.url(path)))
}

fn backend(sw: &S3Server, path: &str) -> S3Backend {
    open(sw, path, BackendOptions::default(), &sw.env())
}

fn id(n: u32) -> Id {
    Id::parse(&format!("{:064x}", 0xabcd_0000_0000u64 + n as u64)).unwrap()
}

fn conformance_suite(sw: &S3Server) {
    let t = Instant::now();
    // The bucket does not exist yet: create() makes it, as restic init does.
    let be = backend(sw, &unique_name("conf"));
    conformance::run(&be).unwrap();
    // Again below a prefix, in a bucket that now exists.
    let bucket = unique_name("confp");
    let be = backend(sw, &format!("{bucket}/some/prefix"));
    conformance::run(&be).unwrap();
    // A second repository under another prefix of the same bucket is independent.
    let other = backend(sw, &format!("{bucket}/other"));
    other.create().unwrap();
    assert!(other.list(FileType::Pack).unwrap().is_empty());
    // Names that are not ids are skipped by list, as restic does. A handle always names
    // a file by id, except the config's: one a level down puts `keys/config` in place.
    backend(sw, &format!("{bucket}/some/prefix/keys"))
        .write(&Handle::config(), b"not a key")
        .unwrap();
    let keys = be.list(FileType::Key).unwrap();
    assert_eq!(keys.len(), 1, "only the suite's key: {keys:?}");
    assert!(be
        .location()
        .starts_with(&format!("s3:{}/{bucket}/some/prefix", sw.endpoint)));
    eprintln!("s3 conformance (2 runs): {:.1?}", t.elapsed());
}

fn multipart_ranges_and_pagination(sw: &S3Server) {
    let t = Instant::now();
    let opts = BackendOptions {
        multipart_threshold: 6 << 20,
        part_size: 5 << 20,
        ..BackendOptions::default()
    };
    let be = open(sw, &unique_name("mp"), opts, &sw.env());
    be.create().unwrap();
    let big: Vec<u8> = (0..13u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let h = Handle::new(FileType::Pack, id(1));
    be.write(&h, &big).unwrap();
    assert_eq!(be.stat(&h).unwrap(), big.len() as u64);
    let etag = be.etag(&h).unwrap().unwrap_or_default();
    assert!(
        etag.trim_matches('"').ends_with("-3"),
        "3 parts: ETag {etag}"
    );
    let small = Handle::new(FileType::Pack, id(2));
    be.write(&small, &big[..1 << 20]).unwrap();
    let etag = be.etag(&small).unwrap().unwrap_or_default();
    assert!(
        !etag.contains('-'),
        "a single PUT below the threshold: ETag {etag}"
    );
    assert!(be.read(&h).unwrap() == big, "multipart object reads back");
    let (off, len) = ((5 << 20) - 100, 200u64);
    assert_eq!(
        be.read_range(&h, off, len).unwrap(),
        big[off as usize..][..len as usize]
    );
    assert!(matches!(
        be.read_range(&h, big.len() as u64 - 10, 20),
        Err(BackendError::ShortRead { got: 10, .. })
    ));
    assert!(matches!(
        be.write(&h, &big),
        Err(BackendError::AlreadyExists(_))
    ));
    eprintln!("13 MiB multipart: {:.1?}", t.elapsed());

    // More files than one ListObjectsV2 page (1000 keys).
    let t = Instant::now();
    let n = 1010u32;
    std::thread::scope(|s| {
        for worker in 0..10u32 {
            let be = &be;
            s.spawn(move || {
                for i in (worker..n).step_by(10) {
                    be.write(&Handle::new(FileType::Snapshot, id(i)), b"s")
                        .unwrap();
                }
            });
        }
    });
    let listed = be.list(FileType::Snapshot).unwrap();
    assert_eq!(listed.len(), n as usize, "listing crosses pages");
    assert!(listed.iter().all(|f| f.size == 1));
    eprintln!(
        "{n} writes with 10 threads and a 2-page listing: {:.1?}",
        t.elapsed()
    );
}

fn legacy_layout_is_detected(sw: &S3Server) {
    let bucket = unique_name("legacy");
    let legacy_opts = BackendOptions {
        s3_layout: Some(S3Layout::S3Legacy),
        ..BackendOptions::default()
    };
    let legacy = open(sw, &bucket, legacy_opts, &sw.env());
    legacy.create().unwrap();
    legacy.write(&Handle::config(), b"cfg").unwrap();
    let files = [
        Handle::new(FileType::Key, id(1)),
        Handle::new(FileType::Snapshot, id(2)),
        Handle::new(FileType::Index, id(3)),
        Handle::new(FileType::Pack, id(4)),
        Handle::new(FileType::Lock, id(5)),
    ];
    for h in &files {
        legacy.write(h, h.name().as_bytes()).unwrap();
    }
    // Forced default layout sees none of them (they are in key/, snapshot/, data/<id>…).
    let forced = BackendOptions {
        s3_layout: Some(S3Layout::Default),
        ..BackendOptions::default()
    };
    let default = open(sw, &bucket, forced, &sw.env());
    assert!(default.list(FileType::Key).unwrap().is_empty());
    assert!(matches!(
        default.read(&files[3]),
        Err(BackendError::NotFound(_))
    ));
    // Auto-detection finds the legacy layout and reads everything.
    let auto = backend(sw, &bucket);
    assert_eq!(auto.layout().unwrap(), S3Layout::S3Legacy);
    for h in &files {
        assert_eq!(auto.read(h).unwrap(), h.name().as_bytes(), "{h}");
        assert_eq!(auto.list(h.file_type()).unwrap().len(), 1, "{h}");
    }
    assert_eq!(auto.read(&Handle::config()).unwrap(), b"cfg");

    // An empty bucket and a default-layout repository are detected as default.
    let empty = unique_name("empty");
    backend(sw, &empty).create().unwrap();
    assert_eq!(backend(sw, &empty).layout().unwrap(), S3Layout::Default);
}

fn wrong_secret_fails_cleanly(sw: &S3Server) {
    let secret = "WRONG-s3cr3t-Value";
    let mut bad = sw.env();
    bad.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY");
    bad.push(("AWS_SECRET_ACCESS_KEY", secret.to_string()));

    // init into a new bucket: refused before anything is created.
    let bucket = unique_name("badkey");
    let url = sw.url(&bucket);
    let t = Instant::now();
    let out = restash_s3(&url, osargs!["init"], &bad).expect_code(1);
    let took = t.elapsed();
    assert!(
        out.stderr.contains("SignatureDoesNotMatch"),
        "{}",
        out.describe()
    );
    assert!(
        !out.stderr.contains(secret),
        "secret leaked: {}",
        out.describe()
    );
    assert!(
        took < Duration::from_secs(20),
        "no retry loop on a 403: {took:?}"
    );
    let good = backend(sw, &bucket);
    assert!(matches!(
        good.stat(&Handle::config()),
        Err(BackendError::NotFound(_))
    ));
    assert!(
        good.list(FileType::Key)
            .map(|k| k.is_empty())
            .unwrap_or(true),
        "nothing written"
    );

    // An existing repository: reads and backups are refused, nothing changes.
    let bucket = unique_name("badkey2");
    let url = sw.url(&bucket);
    restash_s3(&url, osargs!["init"], &sw.env()).success();
    let be = backend(sw, &bucket);
    let before: Vec<_> = FileType::ALL.iter().map(|t| be.list(*t).unwrap()).collect();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), b"data").unwrap();
    for args in [osargs!["snapshots"], osargs!["backup", src.path()]] {
        let out = restash_s3(&url, args, &bad).expect_code(1);
        assert!(
            out.stderr.contains("SignatureDoesNotMatch"),
            "{}",
            out.describe()
        );
        assert!(
            !out.stderr.contains(secret),
            "secret leaked: {}",
            out.describe()
        );
    }
    let after: Vec<_> = FileType::ALL.iter().map(|t| be.list(*t).unwrap()).collect();
    assert_eq!(before, after, "a refused backup writes nothing");
}

#[test]
fn s3_missing_credentials_is_one_clear_error() {
    let Some(sw) = seaweedfs() else { return };
    let home = tempfile::tempdir().unwrap();
    let args = osargs!["-r", sw.url(&unique_name("nocreds")), "init"];
    let (mut cmd, rendered) = run::prepare_cmd(&run::restash_bin(), args, &[]);
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ACCESS_KEY_ID_FILE",
        "AWS_SECRET_ACCESS_KEY_FILE",
        "AWS_SESSION_TOKEN_FILE",
        "AWS_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home.path());
    let t = Instant::now();
    let out = run::cmd_output(rendered, cmd.output().expect("run restash"));
    let out = out.expect_code(1);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(
        out.stderr.contains("no S3 credentials"),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("AWS_ACCESS_KEY_ID"),
        "{}",
        out.describe()
    );
    assert_eq!(
        out.stderr.lines().count(),
        1,
        "one clear line: {}",
        out.describe()
    );
}

#[test]
fn s3_credentials_from_files_and_profile() {
    let Some(sw) = seaweedfs() else { return };
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    // A Kubernetes Secret mounted as files: one value per file, trailing newline.
    let files = vec![
        (
            "AWS_ACCESS_KEY_ID_FILE",
            write("key", &format!("{}\n", servers::S3_KEY)),
        ),
        (
            "AWS_SECRET_ACCESS_KEY_FILE",
            write("secret", &format!("{}\n", servers::S3_SECRET)),
        ),
        ("AWS_ACCESS_KEY_ID", String::new()),
        ("AWS_SECRET_ACCESS_KEY", String::new()),
    ];
    let url = sw.url(&unique_name("files"));
    restash_s3(&url, osargs!["init"], &files).success();

    let creds = write(
        "credentials",
        &format!(
            "[default]\naws_access_key_id = nobody\naws_secret_access_key = nothing\n\n\
             [backup]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            servers::S3_KEY,
            servers::S3_SECRET
        ),
    );
    let profile = vec![
        ("AWS_SHARED_CREDENTIALS_FILE", creds),
        ("AWS_PROFILE", "backup".to_string()),
        ("AWS_ACCESS_KEY_ID", String::new()),
        ("AWS_SECRET_ACCESS_KEY", String::new()),
    ];
    let out = restash_s3(&url, osargs!["snapshots", "--json"], &profile).success();
    assert_eq!(out.json(), serde_json::json!([]));
}

fn end_to_end_with_restic(sw: &S3Server) {
    let env = sw.env();
    let (_src, tree) = common::tree::tricky_source();
    let opts = tree.restic_compare_options();

    // restash writes, restash and restic read.
    let t = Instant::now();
    let url = sw.url(&unique_name("e2e"));
    restash_s3(&url, osargs!["init"], &env).success();
    restash_s3(
        &url,
        osargs!["backup", "--host", "restash-e2e", &tree.root],
        &env,
    )
    .success();
    let snaps = restash_s3(&url, osargs!["snapshots", "--json"], &env)
        .success()
        .json();
    assert_eq!(snaps.as_array().map(Vec::len), Some(1), "{snaps}");
    assert_latest_restores(&|a| restash_s3(&url, a, &env), &tree.root, &opts);
    eprintln!(
        "restash init/backup/snapshots/restore on S3: {:.1?}",
        t.elapsed()
    );

    let t = Instant::now();
    restic_s3(&url, osargs!["check", "--read-data"], &env).success();
    assert_latest_restores(&|a| restic_s3(&url, a, &env), &tree.root, &opts);
    eprintln!(
        "restic check --read-data and restore of restash's S3 repo: {:.1?}",
        t.elapsed()
    );

    // restic writes, restash reads.
    let t = Instant::now();
    let url = sw.url(&format!("{}/nested/repo", unique_name("e2er")));
    restic_s3(&url, osargs!["init"], &env).success();
    restic_s3(
        &url,
        osargs!["backup", "--host", "restash-e2e", &tree.root],
        &env,
    )
    .success();
    let snaps = restash_s3(&url, osargs!["snapshots", "--json"], &env)
        .success()
        .json();
    assert_eq!(snaps.as_array().map(Vec::len), Some(1), "{snaps}");
    assert_latest_restores(&|a| restash_s3(&url, a, &env), &tree.root, &opts);
    // restash adds a snapshot to restic's repository; restic checks it.
    restash_s3(
        &url,
        osargs!["backup", "--host", "restash-e2e", &tree.root],
        &env,
    )
    .success();
    restic_s3(&url, osargs!["check", "--read-data"], &env).success();
    eprintln!(
        "restic-written S3 repo read and extended by restash: {:.1?}",
        t.elapsed()
    );
}

/// Environment for a run through a fault proxy: debug logs on (every retry is logged) and
/// short timeouts so a blackhole is detected in seconds (defaults: 60 s and 120 s).
fn faulty_env(sw: &SeaweedFs) -> Vec<(&'static str, String)> {
    let mut env = sw.env();
    env.push(("RESTASH_DEBUG", "1".into()));
    env.push(("RESTASH_HTTP_TIMEOUT", "2".into()));
    env.push(("RESTASH_RETRY_TIMEOUT", "8".into()));
    env
}

#[test]
fn s3_survives_connection_resets() {
    let Some(sw) = seaweedfs() else { return };
    let Some(bin) = fault_bin() else { return };
    let t = Instant::now();
    // Every connection is reset for the first second (so retries certainly happen), then
    // 30 % of new connections are.
    let reset = |p: f64| format!("- type: connection-reset\n  flow: both\n  probability: {p}");
    let proxy = FaultProxy::start(
        bin,
        sw.endpoint.trim_start_matches("http://"),
        &[(Some("1s"), &reset(1.0)), (None, &reset(0.3))],
    );
    let bucket = unique_name("reset");
    let faulty = format!("s3:http://{}/{bucket}", proxy.listen);
    let env = faulty_env(sw);
    let (_src, tree) = common::tree::tricky_source();
    let retries = std::cell::Cell::new(0);
    let run = |args: Vec<OsString>| {
        let out = restash_s3(&faulty, args, &env).success();
        retries.set(retries.get() + out.stderr.matches("retry").count());
    };
    run(osargs!["init"]);
    assert!(retries.get() > 0, "the first second's resets were retried");
    run(osargs!["backup", "--host", "restash-e2e", &tree.root]);
    let target = tempfile::tempdir().unwrap();
    run(osargs!["restore", "latest", "--target", target.path()]);
    assert_trees_equal(
        &tree.root,
        &restored_path(target.path(), &tree.root),
        &tree.restic_compare_options(),
    );
    // The repository written through the faults is intact.
    restic_s3(&sw.url(&bucket), osargs!["check", "--read-data"], &sw.env()).success();
    eprintln!(
        "S3 through connection resets (p=0.3): {} retries logged, {:.1?}",
        retries.get(),
        t.elapsed()
    );
}

#[test]
fn s3_blackhole_ends_in_clean_error() {
    let Some(sw) = seaweedfs() else { return };
    let Some(bin) = fault_bin() else { return };
    let bucket = unique_name("hole");
    restash_s3(&sw.url(&bucket), osargs!["init"], &sw.env()).success();
    let proxy = FaultProxy::start(
        bin,
        sw.endpoint.trim_start_matches("http://"),
        &[(None, "- type: blackhole\n  flow: both")],
    );
    let faulty = format!("s3:http://{}/{bucket}", proxy.listen);
    let env = faulty_env(sw);
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), b"data").unwrap();
    for args in [
        osargs!["snapshots"],
        osargs!["backup", src.path()],
        osargs!["init"],
    ] {
        let t = Instant::now();
        let out = restash_s3(&faulty, args, &env);
        let took = t.elapsed();
        assert_ne!(out.code, 0, "{}", out.describe());
        assert!(
            took < Duration::from_secs(40),
            "bounded: {took:?}\n{}",
            out.describe()
        );
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
        eprintln!(
            "blackholed `{}` ended after {took:.1?}: {}",
            out.cmd,
            &fatal[..fatal.len().min(200)]
        );
    }
    // An upload into the blackhole fails too, within its budget, as a retryable error.
    let opts = BackendOptions {
        read_timeout: Duration::from_secs(2),
        retry_timeout: Duration::from_secs(6),
        s3_layout: Some(S3Layout::Default),
        ..BackendOptions::default()
    };
    let vars = sw.env();
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let be = S3Backend::open_with_env(&faulty, opts, &move |k| env.get(k).cloned()).unwrap();
    let t = Instant::now();
    let err = be
        .write(&Handle::new(FileType::Pack, id(7)), &[7u8; 100_000])
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(40), "{:?}", t.elapsed());
    assert!(err.is_retryable(), "{err}");
    drop(proxy);
    // Nothing half-written: the pack is absent once the network is back.
    assert!(matches!(
        backend(sw, &bucket).stat(&Handle::new(FileType::Pack, id(7))),
        Err(BackendError::NotFound(_))
    ));
    // And the repository the failed commands ran against is as good as before.
    restic_s3(&sw.url(&bucket), osargs!["check", "--read-data"], &sw.env()).success();
}
