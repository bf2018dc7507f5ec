//! The S3 backend against an object store that lies, between restash and a real SeaweedFS
//! (SigV4 enforced), the lies told by mitmproxy in reverse mode:
//! - a body cut short while its `Content-Length` still announces it whole (and the
//!   connection closed): a transport failure, retried;
//! - a body cut short with a matching, shortened `Content-Length`: only the checks behind
//!   the transport can see it (a range answer shorter than asked, an index file or pack
//!   whose bytes do not hash to its name), and they must not take it for damage in the
//!   repository when reading again gives the real bytes;
//! - a `ListObjectsV2` listing split into two pages where the second repeats the last key
//!   of the first: a file listed twice must count once.
//!
//! Every other `GET` of the same index file, pack, or range of a pack is lied about (the
//! first, third…), so each command meets the lies and a second reading gets the truth.
//! When every reading lies, the command fails with one error naming the file.
//! Backup, check and restore through the lies must give what they give without them:
//! restores equal to their source, caches holding only what names say, and restic 0.14
//! checking the repository with `--read-data` directly on the server afterwards.
mod common;
#[path = "common/servers.rs"]
mod servers;

use std::ffi::OsString;
use std::path::Path;
use std::time::Instant;

use common::backup::{pack_is_complete, HOST};
use common::tree::write_random_file;
use common::*;
use serde_json::Value;
use servers::{restash_s3, restic_s3, seaweedfs, unique_name, MitmProxy, SeaweedFs};

/// The lies, chosen by `LIE_MODE` (`cut`, `short`, `pages`); what was done is counted in
/// `$ADDON_DIR/counts.json`.
const LIES_ADDON: &str = r#"
import itertools, json, os, re
from mitmproxy import http

MODE = os.environ["LIE_MODE"]
# Every GET lied about, not every other one: a lie no second reading cures.
ALWAYS = os.environ.get("LIE_ALWAYS") == "1"
COUNTS = os.path.join(os.environ["ADDON_DIR"], "counts.json")
OBJECT = re.compile(r"/(index|data/[0-9a-f]{2})/[0-9a-f]{64}$")
CONTENTS = re.compile(rb"<Contents>.*?</Contents>", re.S)
counts = {"requests": 0}
gets = {}
pages = {}
tokens = itertools.count()

def bump(key):
    counts[key] = counts.get(key, 0) + 1
    with open(COUNTS + ".tmp", "w") as f:
        json.dump(counts, f)
    os.replace(COUNTS + ".tmp", COUNTS)

def request(flow: http.HTTPFlow) -> None:
    bump("requests")
    if MODE == "pages" and flow.request.method == "GET":
        token = flow.request.query.get("continuation-token")
        if token is not None:
            print("continued %s (%s)" % (flow.request.path, token in pages), flush=True)
        if token in pages:
            flow.response = http.Response.make(
                200, pages.pop(token), {"Content-Type": "application/xml"})
            bump("second pages")

def split_listing(flow):
    q = flow.request.query
    if q.get("list-type") != "2" or "continuation-token" in q:
        return
    text = flow.response.content
    items = CONTENTS.findall(text)
    if len(items) < 2 or b"<NextContinuationToken>" in text:
        return
    head = text[: text.find(b"<Contents>")]
    tail = text[text.rfind(b"</Contents>") + len(b"</Contents>"):]
    k = len(items) // 2
    token = "restash-lie-%d" % next(tokens)
    first = (head + b"".join(items[:k]) + tail).replace(
        b"<IsTruncated>false</IsTruncated>",
        b"<IsTruncated>true</IsTruncated><NextContinuationToken>%s</NextContinuationToken>"
        % token.encode())
    if b"<NextContinuationToken>" not in first:
        return
    # The second page starts with the last key of the first.
    pages[token] = head + b"".join(items[k - 1:]) + tail
    flow.response.content = first
    bump("split listings")
    print("split %s: %d + %d keys" % (flow.request.path, k, len(items) - k + 1), flush=True)

def response(flow: http.HTTPFlow) -> None:
    if flow.request.method != "GET" or flow.response.status_code not in (200, 206):
        return
    if MODE == "pages":
        split_listing(flow)
        return
    path = flow.request.path.split("?")[0]
    m = OBJECT.search(path)
    if not m:
        return
    key = (path, flow.request.headers.get("range", ""))
    n = gets.get(key, 0)
    gets[key] = n + 1
    body = flow.response.content
    if (n % 2 == 1 and not ALWAYS) or len(body) < 2:
        return
    # Setting the content sets a matching Content-Length.
    flow.response.content = body[: len(body) // 2]
    if MODE == "cut":
        flow.response.headers["content-length"] = str(len(body))
        flow.response.headers["connection"] = "close"
    if m.group(1) == "index":
        bump("index")
    elif flow.response.status_code == 206:
        bump("pack range")
    else:
        bump("pack")
"#;

/// What the addon of `proxy` counted under `key`.
fn count(proxy: &MitmProxy, key: &str) -> u64 {
    let s = std::fs::read_to_string(proxy.dir().join("counts.json")).unwrap_or_default();
    let v: Value = serde_json::from_str(&s).unwrap_or(Value::Null);
    v[key].as_u64().unwrap_or(0)
}

/// Debug logs on, so every retry is visible.
fn debug_env(sw: &SeaweedFs) -> Vec<(&'static str, String)> {
    let mut env = sw.env();
    env.push(("RESTASH_DEBUG", "1".into()));
    env
}

/// Every file of a cache holds what its name says: a lie is never kept. Returns how many
/// files there are.
fn cache_intact(cache: &Path) -> usize {
    let mut n = 0;
    for f in common::tree::post_order(cache) {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if f.is_file() && name.len() == 64 {
            assert!(
                pack_is_complete(&f),
                "cached {f:?} does not hold what its name says"
            );
            n += 1;
        }
    }
    n
}

fn assert_cache_intact(cache: &Path) {
    assert!(cache_intact(cache) > 0, "nothing was cached in {cache:?}");
}

/// A repository in a fresh bucket of SeaweedFS, reached directly and through a lying proxy.
struct Lying {
    sw: &'static SeaweedFs,
    proxy: MitmProxy,
    /// The bucket on the server.
    direct: String,
    /// The bucket through the proxy.
    lying: String,
    /// The server's credentials, debug logs on.
    env: Vec<(&'static str, String)>,
    _src: tempfile::TempDir,
    /// The source, as its first backup (made directly on the server) holds it.
    tree: TrickyTree,
}

impl Lying {
    /// The proxy (its addon environment `lies`) in front of SeaweedFS, and a repository in a
    /// fresh bucket with one backup of the tricky tree; `None` (skipped loudly, failed under
    /// CI) without the server or mitmproxy.
    fn start(tag: &str, lies: &[(&str, String)]) -> Option<Lying> {
        let sw = seaweedfs()?;
        let bin = servers::mitmdump_bin()?;
        let proxy = MitmProxy::start(bin, &sw.endpoint, LIES_ADDON, lies);
        let bucket = unique_name(tag);
        let direct = sw.url(&bucket);
        let lying = format!("s3:http://{}/{bucket}", proxy.listen);
        let env = debug_env(sw);
        let (src, tree) = common::tree::tricky_source();
        restash_s3(&direct, osargs!["init"], &env).success();
        restash_s3(&direct, osargs!["backup", "--host", HOST, &tree.root], &env).success();
        Some(Lying {
            sw,
            proxy,
            direct,
            lying,
            env,
            _src: src,
            tree,
        })
    }

    /// restash through the lies.
    fn restash(&self, args: Vec<OsString>) -> CmdOutput {
        restash_s3(&self.lying, args, &self.env)
    }

    /// restic 0.14 directly on the server, which must succeed.
    fn restic_direct(&self, args: Vec<OsString>) -> CmdOutput {
        restic_s3(&self.direct, args, &self.sw.env()).success()
    }

    /// Asserts that the restore into `target` equals the source.
    fn assert_restored(&self, target: &Path) {
        assert_trees_equal(
            &self.tree.root,
            &restored_path(target, &self.tree.root),
            &self.tree.restic_compare_options(),
        );
    }
}

/// A repository in a fresh bucket, its first backup made directly on the server; then a
/// second backup (of the source grown by a file), a check and a restore through the
/// lying proxy. Returns the stderr of the commands through the proxy.
fn through_lying_bodies(mode: &str) -> Option<(MitmProxy, String)> {
    let l = Lying::start(mode, &[("LIE_MODE", mode.into())])?;
    write_random_file(&l.tree.root.join("added"), 3 << 20, 11);

    let mut stderr = String::new();
    let mut run = |args: Vec<OsString>| {
        let out = l.restash(args);
        assert_eq!(out.code, 0, "{}", out.describe());
        assert!(!out.stderr.contains("panicked"), "{}", out.describe());
        stderr.push_str(&out.stderr);
    };
    // Fresh caches: the index and the packs of trees are fetched whole through the lies.
    let cache = tempfile::tempdir().unwrap();
    run(osargs![
        "--cache-dir",
        cache.path(),
        "backup",
        "--host",
        HOST,
        &l.tree.root
    ]);
    assert_cache_intact(cache.path());
    // Without a cache, trees are read as ranges; every pack is read in ranges.
    run(osargs!["--no-cache", "check", "--read-data"]);
    let cache = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    run(osargs![
        "--cache-dir",
        cache.path(),
        "restore",
        "latest",
        "--target",
        target.path()
    ]);
    l.assert_restored(target.path());
    assert_cache_intact(cache.path());
    l.restic_direct(osargs!["check", "--read-data"]);
    for kind in ["index", "pack", "pack range"] {
        assert!(
            count(&l.proxy, kind) > 0,
            "no lie about a {kind}: {}",
            l.proxy.log()
        );
    }
    Some((l.proxy, stderr))
}

#[test]
fn bodies_shorter_than_their_length_are_retried() {
    let t = Instant::now();
    let Some((proxy, stderr)) = through_lying_bodies("cut") else {
        return;
    };
    let retries = stderr.matches("; retry ").count();
    assert!(
        retries > 0,
        "the cut bodies were retried and logged:\n{stderr}"
    );
    eprintln!(
        "S3 bodies cut short of their Content-Length: {} index, {} pack, {} range answers; \
         {retries} retries, {:.1?}",
        count(&proxy, "index"),
        count(&proxy, "pack"),
        count(&proxy, "pack range"),
        t.elapsed()
    );
}

#[test]
fn short_bodies_with_a_matching_length_are_caught() {
    let t = Instant::now();
    let Some((proxy, stderr)) = through_lying_bodies("short") else {
        return;
    };
    // Each lie was seen for what it is: a range shorter than its Content-Range (retried),
    // an index file or whole pack not matching its name (read again).
    let retries = stderr.matches("; retry ").count();
    let index_rereads = stderr
        .matches("do not hash to its name; reading it again")
        .count();
    let range_rereads = stderr
        .matches("does not hash to its name; reading the range")
        .count();
    assert!(retries > 0, "short ranges were retried:\n{stderr}");
    assert!(index_rereads > 0, "index files were read again:\n{stderr}");
    assert!(
        range_rereads > 0,
        "cut packs were read again as ranges:\n{stderr}"
    );
    eprintln!(
        "S3 bodies cut short with a matching Content-Length: {} index, {} pack, {} range \
         answers; {retries} retries, {index_rereads} index and {range_rereads} pack re-reads, \
         {:.1?}",
        count(&proxy, "index"),
        count(&proxy, "pack"),
        count(&proxy, "pack range"),
        t.elapsed()
    );
}

/// Sorted ids of the snapshots `--json` lists.
fn snapshot_ids(out: &CmdOutput) -> Vec<String> {
    let mut ids: Vec<String> = out
        .json()
        .as_array()
        .expect("snapshot array")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    ids
}

/// Sorted lines of `list packs`.
fn pack_list(out: &CmdOutput) -> Vec<String> {
    let mut v: Vec<String> = out.stdout_str().lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn a_key_repeated_across_listing_pages_counts_once() {
    let t = Instant::now();
    let Some(l) = Lying::start("pages", &[("LIE_MODE", "pages".into())]) else {
        return;
    };
    write_random_file(&l.tree.root.join("added"), 3 << 20, 12);
    let run = |args: Vec<OsString>| {
        let out = l.restash(args);
        assert_eq!(out.code, 0, "{}", out.describe());
        out
    };
    run(osargs!["backup", "--host", HOST, &l.tree.root]);

    let ids = snapshot_ids(&run(osargs!["snapshots", "--json"]));
    let truth = snapshot_ids(&l.restic_direct(osargs!["snapshots", "--json"]));
    assert_eq!(truth.len(), 2);
    assert_eq!(ids, truth, "snapshots through the repeating listing");
    let packs = pack_list(&run(osargs!["list", "packs"]));
    let truth = pack_list(&l.restic_direct(osargs!["list", "packs"]));
    assert_eq!(packs, truth, "packs through the repeating listing");
    let check = run(osargs!["check"]);
    assert!(
        check.stdout_str().contains("no errors were found"),
        "{}",
        check.describe()
    );
    let target = tempfile::tempdir().unwrap();
    run(osargs!["restore", "latest", "--target", target.path()]);
    l.assert_restored(target.path());
    // Prune decides what to delete and repack from the listing of packs.
    run(osargs!["forget", "--keep-last", "1", "--prune"]);
    l.restic_direct(osargs!["check", "--read-data"]);
    let left = snapshot_ids(&l.restic_direct(osargs!["snapshots", "--json"]));
    assert_eq!(left.len(), 1);
    let target = tempfile::tempdir().unwrap();
    run(osargs!["restore", "latest", "--target", target.path()]);
    l.assert_restored(target.path());
    let (split, second) = (
        count(&l.proxy, "split listings"),
        count(&l.proxy, "second pages"),
    );
    assert!(
        split > 0 && second > 0,
        "no listing was split: {}",
        l.proxy.log()
    );
    eprintln!(
        "S3 listings repeating a key across pages: {split} split, {second} second pages \
         served, {:.1?}",
        t.elapsed()
    );
}

#[test]
fn index_files_always_cut_short_are_reported_by_name() {
    let t = Instant::now();
    let lies = [("LIE_MODE", "short".into()), ("LIE_ALWAYS", "1".into())];
    let Some(l) = Lying::start("always", &lies) else {
        return;
    };

    let cache = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let out = l.restash(osargs![
        "--cache-dir",
        cache.path(),
        "restore",
        "latest",
        "--target",
        target.path()
    ]);
    let why = out.describe();
    assert_eq!(out.code, 1, "{why}");
    assert!(!out.stderr.contains("panicked"), "{why}");
    let fatal: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("Fatal:"))
        .collect();
    assert_eq!(fatal.len(), 1, "one error\n{why}");
    assert!(
        fatal[0].contains("load index/") && fatal[0].contains("hash does not match"),
        "{why}"
    );
    assert!(
        count(&l.proxy, "index") >= 2,
        "read twice: {}",
        l.proxy.log()
    );
    // Nothing restored from it, nothing cached from it.
    assert_eq!(
        std::fs::read_dir(target.path()).unwrap().count(),
        0,
        "{why}"
    );
    cache_intact(cache.path());
    l.restic_direct(osargs!["check", "--read-data"]);
    eprintln!(
        "S3 index files always cut short: restore exits 1 with \"{}\", {:.1?}",
        fatal[0],
        t.elapsed()
    );
}
