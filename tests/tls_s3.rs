//! HTTPS object stores with a private CA, for real: SeaweedFS (and `rclone serve restic`
//! for REST) behind a TLS proxy (`scripts/tls-proxy.py`) serving certificates that
//! `openssl` makes at test time: signed by a private CA for 127.0.0.1, for another name,
//! expired, and with a client certificate required.
//!
//! * A certificate problem is one error, exit 1, naming the host and the reason, at once:
//!   unknown issuer without `--cacert`, another name, expired, a missing client certificate.
//! * With `--cacert` (or `RESTIC_CACERT`) init, backup and restore work and restic 0.14,
//!   given the same CA, checks every byte of the repository (`check --read-data`).
//! * `--insecure-tls` works without the CA and warns.
//! * `--tls-client-cert` gets through a server that requires one, on S3 and on REST, for
//!   restash and for restic.
//!
//! Outside CI a missing server, openssl or python3 skips the tests loudly; under `CI=true`
//! it fails them.
mod common;
#[path = "common/servers.rs"]
mod servers;
#[path = "common/tls.rs"]
mod tls;

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use common::backup::assert_latest_restores;
use common::*;
use servers::{rclone_rest, restash_s3, restic_s3, seaweedfs, unique_name, S3_SECRET};
use tls::{pki, TlsProxy};

/// `s3:https://ADDR/bucket`.
fn s3_url(proxy: &TlsProxy, bucket: &str) -> String {
    format!("s3:https://{}/{bucket}", proxy.addr)
}

/// SeaweedFS's `host:port`.
fn seaweed_upstream() -> Option<String> {
    let sw = seaweedfs()?;
    Some(sw.endpoint.trim_start_matches("http://").to_string())
}

fn with(mut args: Vec<OsString>, more: Vec<OsString>) -> Vec<OsString> {
    args.extend(more);
    args
}

/// Asserts `out` is one quick certificate error that names `addr` and says `reason`.
#[track_caller]
fn assert_tls_failure(out: &CmdOutput, took: Duration, addr: &str, reason: &str) {
    assert_eq!(out.code, 1, "{}", out.describe());
    let err = out.stderr.trim();
    assert!(err.contains(addr), "host not named: {}", out.describe());
    assert!(err.contains(reason), "reason not given: {}", out.describe());
    assert!(err.contains("TLS"), "{}", out.describe());
    assert!(
        !err.contains("gave up after"),
        "retried: {}",
        out.describe()
    );
    assert!(
        !err.contains(S3_SECRET),
        "secret leaked: {}",
        out.describe()
    );
    assert_eq!(err.lines().count(), 1, "one error: {}", out.describe());
    assert!(took < Duration::from_secs(10), "no retry loop: {took:?}");
}

#[test]
fn certificate_problems_are_one_clear_error() {
    let (Some(pki), Some(up)) = (pki(), seaweed_upstream()) else {
        return;
    };
    let env = seaweedfs().unwrap().env();
    let ca = osargs!["--cacert", &pki.ca];

    // A private CA nobody told restash about.
    let Some(good) = TlsProxy::start(&pki.server, &up, None) else {
        return;
    };
    let url = s3_url(&good, &unique_name("untrusted"));
    for args in [osargs!["init"], osargs!["snapshots"]] {
        let t = Instant::now();
        let out = restash_s3(&url, args, &env);
        assert_tls_failure(&out, t.elapsed(), &good.addr, "unknown issuer");
        assert!(out.stderr.contains("--cacert"), "{}", out.describe());
    }
    // Another CA is no better.
    // `init` asks about the bucket with restash's own client, `snapshots` reads the config
    // through object_store's: both are checked.
    for cmd in ["init", "snapshots"] {
        let t = Instant::now();
        let out = restash_s3(&url, osargs!["--cacert", &pki.other_ca, cmd], &env);
        assert_tls_failure(&out, t.elapsed(), &good.addr, "unknown issuer");
    }

    // The right CA, but a certificate for another name.
    let Some(wrong) = TlsProxy::start(&pki.wrong_name, &up, None) else {
        return;
    };
    let url = s3_url(&wrong, &unique_name("wrongname"));
    for cmd in ["init", "snapshots"] {
        let t = Instant::now();
        let out = restash_s3(&url, with(ca.clone(), osargs![cmd]), &env);
        assert_tls_failure(&out, t.elapsed(), &wrong.addr, "another host name");
        assert!(out.stderr.contains("wrong.example"), "{}", out.describe());
    }

    // The right CA and name, but expired.
    let Some(expired) = TlsProxy::start(&pki.expired, &up, None) else {
        return;
    };
    let url = s3_url(&expired, &unique_name("expired"));
    for cmd in ["init", "snapshots"] {
        let t = Instant::now();
        let out = restash_s3(&url, with(ca.clone(), osargs![cmd]), &env);
        assert_tls_failure(&out, t.elapsed(), &expired.addr, "has expired");
    }

    // REST: the same check on the other HTTP client.
    let Some(rest) = rclone_rest() else { return };
    let Some(rest_tls) = TlsProxy::start(&pki.server, &rest.addr, None) else {
        return;
    };
    let url = format!(
        "rest:https://{}:{}@{}/{}/",
        servers::REST_USER,
        servers::REST_PASS,
        rest_tls.addr,
        unique_name("untrusted")
    );
    let t = Instant::now();
    let out = restash(osargs!["-r", &url, "init"], &[]);
    assert_tls_failure(&out, t.elapsed(), &rest_tls.addr, "unknown issuer");
    assert!(
        !out.stderr.contains(servers::REST_PASS),
        "{}",
        out.describe()
    );
}

#[test]
fn cacert_end_to_end_with_restic() {
    let (Some(pki), Some(up)) = (pki(), seaweed_upstream()) else {
        return;
    };
    let Some(proxy) = TlsProxy::start(&pki.server, &up, None) else {
        return;
    };
    let env = seaweedfs().unwrap().env();
    let (_src, tree) = common::tree::tricky_source();
    let opts = tree.restic_compare_options();
    let url = s3_url(&proxy, &unique_name("cacert"));
    let run = |a: Vec<OsString>| restash_s3(&url, with(osargs!["--cacert", &pki.ca], a), &env);

    run(osargs!["init"]).success();
    run(osargs!["backup", "--host", "restash-tls", &tree.root]).success();
    assert_latest_restores(&run, &tree.root, &opts);

    // restic 0.14 with the same CA reads and verifies every pack restash wrote.
    let restic_run =
        |a: Vec<OsString>| restic_s3(&url, with(osargs!["--cacert", &pki.ca], a), &env);
    restic_run(osargs!["check", "--read-data"]).success();
    assert_latest_restores(&restic_run, &tree.root, &opts);

    // RESTIC_CACERT, a comma-separated list as restic reads it (from 0.16; restic 0.14
    // ignores the variable).
    let list = format!("{},{}", pki.other_ca.display(), pki.ca.display());
    let mut env_ca = env.clone();
    env_ca.push(("RESTIC_CACERT", list));
    let snaps = restash_s3(&url, osargs!["snapshots", "--json"], &env_ca)
        .success()
        .json();
    assert_eq!(snaps.as_array().map(Vec::len), Some(1), "{snaps}");
}

#[test]
fn insecure_tls_works_and_warns() {
    let (Some(pki), Some(up)) = (pki(), seaweed_upstream()) else {
        return;
    };
    // Expired and for another name would do as well: nothing is checked.
    let Some(proxy) = TlsProxy::start(&pki.expired, &up, None) else {
        return;
    };
    let env = seaweedfs().unwrap().env();
    let url = s3_url(&proxy, &unique_name("insecure"));
    let out = restash_s3(&url, osargs!["--insecure-tls", "init"], &env).success();
    assert!(
        out.stderr.contains("warning: --insecure-tls"),
        "{}",
        out.describe()
    );
    let snaps = restash_s3(&url, osargs!["--insecure-tls", "snapshots", "--json"], &env)
        .success()
        .json();
    assert_eq!(snaps.as_array().map(Vec::len), Some(0), "{snaps}");
    restic_s3(&url, osargs!["--insecure-tls", "check"], &env).success();
    // And without the flag, the same server is refused, for its certificate.
    let t = Instant::now();
    let out = restash_s3(&url, osargs!["snapshots"], &env);
    assert_tls_failure(&out, t.elapsed(), &proxy.addr, "has expired");
}

#[test]
fn client_certificate_on_s3_and_rest() {
    let (Some(pki), Some(up)) = (pki(), seaweed_upstream()) else {
        return;
    };
    let Some(s3) = TlsProxy::start(&pki.server, &up, Some(&pki.ca)) else {
        return;
    };
    let env = seaweedfs().unwrap().env();
    let flags = osargs!["--cacert", &pki.ca, "--tls-client-cert", &pki.client];
    let (_src, tree) = common::tree::tricky_source();
    let opts = tree.restic_compare_options();

    // Without a client certificate the server ends the handshake.
    let url = s3_url(&s3, &unique_name("mtls"));
    for cmd in ["init", "snapshots"] {
        let t = Instant::now();
        let out = restash_s3(&url, osargs!["--cacert", &pki.ca, cmd], &env);
        assert_tls_failure(&out, t.elapsed(), &s3.addr, "client certificate");
    }

    let run = |a: Vec<OsString>| restash_s3(&url, with(flags.clone(), a), &env);
    run(osargs!["init"]).success();
    run(osargs!["backup", "--host", "restash-tls", &tree.root]).success();
    assert_latest_restores(&run, &tree.root, &opts);
    restic_s3(
        &url,
        with(flags.clone(), osargs!["check", "--read-data"]),
        &env,
    )
    .success();

    // REST, with the file named by RESTIC_TLS_CLIENT_CERT.
    let Some(rest) = rclone_rest() else { return };
    let Some(rest_tls) = TlsProxy::start(&pki.server, &rest.addr, Some(&pki.ca)) else {
        return;
    };
    let url = format!(
        "rest:https://{}:{}@{}/{}/",
        servers::REST_USER,
        servers::REST_PASS,
        rest_tls.addr,
        unique_name("mtls")
    );
    let client = pki.client.display().to_string();
    let env = [("RESTIC_TLS_CLIENT_CERT", client.as_str())];
    let run = |a: Vec<OsString>| restash(with(osargs!["-r", &url, "--cacert", &pki.ca], a), &env);
    run(osargs!["init"]).success();
    run(osargs!["backup", "--host", "restash-tls", &tree.root]).success();
    assert_latest_restores(&run, &tree.root, &opts);
    restic(
        with(
            osargs!["-r", &url],
            with(flags.clone(), osargs!["check", "--read-data"]),
        ),
        &[],
    )
    .success();
}

/// Like restic, unreadable or unparsable certificate files fail every command, a local
/// repository's too, with exit 1 and the file named.
#[test]
fn bad_certificate_files_fail_early() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let repo = Repo::init_v2();
    let r = |args: Vec<OsString>| restash(with(osargs!["-r", &repo.path], args), &[]);
    let out = r(osargs!["--cacert", &junk, "snapshots"]).expect_code(1);
    assert!(
        out.stderr.contains("cannot parse root certificate"),
        "{}",
        out.describe()
    );
    assert!(out.stderr.contains("junk.pem"), "{}", out.describe());
    let out = r(osargs!["--tls-client-cert", &junk, "snapshots"]).expect_code(1);
    assert!(
        out.stderr.contains("parse TLS client cert or key"),
        "{}",
        out.describe()
    );
    let missing = Path::new("/nonexistent/ca.pem");
    let out = r(osargs!["--cacert", missing, "snapshots"]).expect_code(1);
    assert!(
        out.stderr.contains("unable to read root certificate"),
        "{}",
        out.describe()
    );
    // restic 0.14 refuses the same files, with the same exit code.
    restic(
        osargs!["-r", &repo.path, "--cacert", &junk, "snapshots"],
        &[],
    )
    .expect_code(1);
    restic(
        osargs!["-r", &repo.path, "--tls-client-cert", &junk, "snapshots"],
        &[],
    )
    .expect_code(1);
}
