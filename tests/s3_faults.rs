//! The S3 backend under the network faults object stores really show, between restash and a
//! real SeaweedFS (SigV4 enforced):
//! - bursts of `503 SlowDown` answers, injected per HTTP request by mitmproxy in reverse
//!   mode (an S3-level fault a TCP proxy cannot make);
//! - 300 ms latency on every new connection plus occasional per-operation jitter, through a
//!   fault-cli TCP proxy.
//!
//! In both the backup completes, everything restores, and restic 0.14 checks the repository
//! with `--read-data`. (Connection resets and a blackhole are in s3_backend.rs.)
mod common;
#[path = "common/servers.rs"]
mod servers;

use std::ffi::OsString;
use std::time::Instant;

use common::*;
use servers::{
    fault_bin, restash_s3, restic_s3, seaweedfs, unique_name, FaultProxy, MitmProxy, SeaweedFs,
};

/// The addon: of every `every` requests, the first `burst` get S3's SlowDown answer instead
/// of reaching the server; each injection is counted in a file the test reads.
const SLOWDOWN_ADDON: &str = r#"
import os
from mitmproxy import http

EVERY = int(os.environ["SLOWDOWN_EVERY"])
BURST = int(os.environ["SLOWDOWN_BURST"])
COUNT_FILE = os.path.join(os.environ["ADDON_DIR"], "count")
BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
        b'<Message>Please reduce your request rate.</Message>'
        b'<RequestId>restash-test</RequestId></Error>')
state = {"seen": 0, "injected": 0}

def request(flow: http.HTTPFlow) -> None:
    n = state["seen"]
    state["seen"] += 1
    if n % EVERY < BURST:
        state["injected"] += 1
        flow.response = http.Response.make(
            503, BODY, {"Content-Type": "application/xml", "Retry-After": "1"})
    with open(COUNT_FILE, "w") as f:
        f.write("%d %d\n" % (state["seen"], state["injected"]))
"#;

/// (requests seen, SlowDown answers injected) by the addon in `proxy`.
fn counts(proxy: &MitmProxy) -> (u64, u64) {
    let s = std::fs::read_to_string(proxy.dir().join("count")).unwrap_or_default();
    let mut it = s.split_whitespace().map(|x| x.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Debug logs on, so every retry is visible; a generous retry budget for the bursts.
fn faulty_env(sw: &SeaweedFs) -> Vec<(&'static str, String)> {
    let mut env = sw.env();
    env.push(("RESTASH_DEBUG", "1".into()));
    env
}

/// Backup of the tricky tree through `url`, restore through it, compare, then restic's
/// `check --read-data` directly on the server. Returns the retries logged.
fn round_trip(sw: &SeaweedFs, bucket: &str, url: &str) -> usize {
    let env = faulty_env(sw);
    let (_src, tree) = common::tree::tricky_source();
    let mut retries = 0;
    let mut run = |args: Vec<OsString>| {
        let out = restash_s3(url, args, &env);
        assert_eq!(out.code, 0, "{}", out.describe());
        retries += out.stderr.matches("retry").count();
    };
    run(osargs!["init"]);
    run(osargs!["backup", "--host", "restash-e2e", &tree.root]);
    let target = tempfile::tempdir().unwrap();
    run(osargs!["restore", "latest", "--target", target.path()]);
    assert_trees_equal(
        &tree.root,
        &restored_path(target.path(), &tree.root),
        &tree.restic_compare_options(),
    );
    restic_s3(&sw.url(bucket), osargs!["check", "--read-data"], &sw.env()).success();
    retries
}

#[test]
fn s3_survives_slowdown_bursts() {
    let Some(sw) = seaweedfs() else { return };
    let Some(bin) = servers::mitmdump_bin() else {
        return;
    };
    let t = Instant::now();
    // Of every 15 requests the first 4 are refused: bursts of consecutive SlowDowns, often
    // several for one request when uploads run in parallel.
    let proxy = MitmProxy::start(
        bin,
        &sw.endpoint,
        SLOWDOWN_ADDON,
        &[
            ("SLOWDOWN_EVERY", "15".into()),
            ("SLOWDOWN_BURST", "4".into()),
        ],
    );
    let bucket = unique_name("slowdown");
    let url = format!("s3:http://{}/{bucket}", proxy.listen);
    let retries = round_trip(sw, &bucket, &url);
    let (seen, injected) = counts(&proxy);
    assert!(
        injected >= 4,
        "SlowDown was injected: {seen} seen, {injected}"
    );
    assert!(retries > 0, "the SlowDowns were retried and logged");
    eprintln!(
        "S3 through 503 SlowDown bursts: {injected} of {seen} requests refused, {retries} \
         retries logged, {:.1?}",
        t.elapsed()
    );
}

#[test]
fn s3_survives_300ms_latency() {
    let Some(sw) = seaweedfs() else { return };
    let Some(bin) = fault_bin() else { return };
    let t = Instant::now();
    // 300 ms (±50) before the first answer of every connection, and on 2 % of reads and
    // writes another 300 ms: slow links delay requests in the middle of a transfer too.
    let faults = "- type: latency\n  flow: to-client\n  distribution:\n    type: uniform\n    \
                  min_ms: 250\n    max_ms: 350\n\
                  - type: jitter\n  flow: both\n  min_delay_ms: 250\n  max_delay_ms: 350\n  \
                  probability: 0.02";
    let proxy = FaultProxy::start(
        bin,
        sw.endpoint.trim_start_matches("http://"),
        &[(None, faults)],
    );
    let bucket = unique_name("latency");
    let url = format!("s3:http://{}/{bucket}", proxy.listen);
    round_trip(sw, &bucket, &url);
    // fault-cli's progress lines count the delays it applied: some must have been.
    let log = proxy.log();
    let applied = |key: &str| {
        log.match_indices(&format!("\"{key}\":"))
            .filter_map(|(i, m)| {
                let rest = &log[i + m.len()..];
                let end = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                rest[..end].parse::<u64>().ok()
            })
            .max()
            .unwrap_or(0)
    };
    let (latency, jitter) = (
        applied("latency_applications"),
        applied("jitter_applications"),
    );
    assert!(latency > 0, "no latency was applied: {log}");
    eprintln!(
        "S3 through 300 ms latency: {latency} connections delayed, {jitter} jitters, {:.1?}",
        t.elapsed()
    );
}
