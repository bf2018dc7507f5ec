//! The S3 and REST backends against stores that lie, between restash and a real SeaweedFS
//! (SigV4 enforced) or rclone's REST server, the lies told by mitmproxy in reverse mode:
//! - a body cut short while its `Content-Length` still announces it whole (and the
//!   connection closed): a transport failure, retried;
//! - a body cut short with a matching, shortened `Content-Length`: only the checks behind
//!   the transport can see it (a range answer shorter than asked, an index file or pack
//!   whose bytes do not hash to its name), and they must not take it for damage in the
//!   repository when reading again gives the real bytes;
//! - a `ListObjectsV2` listing split into two pages where the second repeats the last key
//!   of the first, and a REST listing naming every file twice: a file listed twice must
//!   count once.
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
use std::time::{Duration, Instant};

use common::backup::{pack_is_complete, HOST};
use common::tree::write_random_file;
use common::*;
use serde_json::Value;
use servers::{rclone_rest, restash_s3, restic_s3, seaweedfs, unique_name, MitmProxy};

/// The lies (tests/common/lies.py), chosen by `LIE_MODE` (`cut`, `short`, `pages`,
/// `repeat`); what was done is counted in `$ADDON_DIR/counts.json`.
const LIES_ADDON: &str = include_str!("common/lies.py");

/// What the addon of `proxy` counted under `key`.
fn count(proxy: &MitmProxy, key: &str) -> u64 {
    let s = std::fs::read_to_string(proxy.dir().join("counts.json")).unwrap_or_default();
    let v: Value = serde_json::from_str(&s).unwrap_or(Value::Null);
    v[key].as_u64().unwrap_or(0)
}

/// The store behind the lies.
#[derive(Clone, Copy, Debug)]
enum Store {
    /// SeaweedFS's S3 API.
    S3,
    /// `rclone serve restic`.
    Rest,
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

/// A fresh repository on a store, reached directly and through a lying proxy.
struct Lying {
    proxy: MitmProxy,
    /// The repository on the server.
    direct: String,
    /// The repository through the proxy.
    lying: String,
    /// The server's credentials (none for REST: they are in its URL).
    creds: Vec<(&'static str, String)>,
    /// `creds` and debug logs on, so every retry is visible.
    env: Vec<(&'static str, String)>,
    _src: tempfile::TempDir,
    /// The source, as its first backup (made directly on the server) holds it.
    tree: TrickyTree,
}

impl Lying {
    /// The proxy (its addon environment `lies`) in front of `store`, and a fresh repository
    /// there with one backup of the tricky tree; `None` (skipped loudly, failed under CI)
    /// without the server or mitmproxy.
    fn start(store: Store, tag: &str, lies: &[(&str, String)]) -> Option<Lying> {
        let name = unique_name(tag);
        let (upstream, direct, creds) = match store {
            Store::S3 => {
                let sw = seaweedfs()?;
                (sw.endpoint.clone(), sw.url(&name), sw.env())
            }
            Store::Rest => {
                let srv = rclone_rest()?;
                (format!("http://{}", srv.addr), srv.url(&name), Vec::new())
            }
        };
        let bin = servers::mitmdump_bin()?;
        let proxy = MitmProxy::start(bin, &upstream, LIES_ADDON, lies);
        let host = upstream.trim_start_matches("http://");
        let lying = direct.replacen(host, &proxy.listen, 1);
        let mut env = creds.clone();
        env.push(("RESTASH_DEBUG", "1".into()));
        let (src, tree) = common::tree::tricky_source();
        restash_s3(&direct, osargs!["init"], &env).success();
        restash_s3(&direct, osargs!["backup", "--host", HOST, &tree.root], &env).success();
        Some(Lying {
            proxy,
            direct,
            lying,
            creds,
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
        restic_s3(&self.direct, args, &self.creds).success()
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
fn through_lying_bodies(store: Store, mode: &str) -> Option<Lied> {
    let t = Instant::now();
    let l = Lying::start(store, mode, &[("LIE_MODE", mode.into())])?;
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
    let retries = stderr.matches("; retry ").count();
    let told = format!(
        "{} index, {} pack, {} range answers; {retries} retries",
        count(&l.proxy, "index"),
        count(&l.proxy, "pack"),
        count(&l.proxy, "pack range")
    );
    Some(Lied {
        stderr,
        retries,
        told,
        took: t.elapsed(),
    })
}

/// What a run through lying bodies logged and what the proxy did.
struct Lied {
    /// The commands' stderr, debug logs on.
    stderr: String,
    /// Retries logged.
    retries: usize,
    /// The answers cut, by kind, and the retries.
    told: String,
    took: Duration,
}

#[test]
fn s3_bodies_shorter_than_their_length_are_retried() {
    bodies_shorter_than_their_length_are_retried(Store::S3);
}

#[test]
fn rest_bodies_shorter_than_their_length_are_retried() {
    bodies_shorter_than_their_length_are_retried(Store::Rest);
}

fn bodies_shorter_than_their_length_are_retried(store: Store) {
    let Some(lied) = through_lying_bodies(store, "cut") else {
        return;
    };
    assert!(
        lied.retries > 0,
        "the cut bodies were retried and logged:\n{}",
        lied.stderr
    );
    eprintln!(
        "{store:?} bodies cut short of their Content-Length: {}, {:.1?}",
        lied.told, lied.took
    );
}

#[test]
fn s3_short_bodies_with_a_matching_length_are_caught() {
    short_bodies_with_a_matching_length_are_caught(Store::S3);
}

#[test]
fn rest_short_bodies_with_a_matching_length_are_caught() {
    short_bodies_with_a_matching_length_are_caught(Store::Rest);
}

fn short_bodies_with_a_matching_length_are_caught(store: Store) {
    let Some(Lied {
        stderr,
        retries,
        told,
        took,
    }) = through_lying_bodies(store, "short")
    else {
        return;
    };
    // Each lie was seen for what it is: a range shorter than its Content-Range (retried),
    // an index file or whole pack not matching its name (read again).
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
        "{store:?} bodies cut short with a matching Content-Length: {told}, \
         {index_rereads} index and {range_rereads} pack re-reads, {took:.1?}"
    );
}

/// Sorted lines of `list packs`.
fn pack_list(out: &CmdOutput) -> Vec<String> {
    let mut v: Vec<String> = out.stdout_str().lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn s3_a_key_repeated_across_listing_pages_counts_once() {
    let Some((proxy, t)) = a_file_listed_twice_counts_once(Store::S3, "pages") else {
        return;
    };
    let (split, second) = (
        count(&proxy, "split listings"),
        count(&proxy, "second pages"),
    );
    assert!(
        split > 0 && second > 0,
        "no listing was split: {}",
        proxy.log()
    );
    eprintln!(
        "S3 listings repeating a key across pages: {split} split, {second} second pages \
         served, {t:.1?}"
    );
}

#[test]
fn rest_a_listing_naming_files_twice_counts_each_once() {
    let Some((proxy, t)) = a_file_listed_twice_counts_once(Store::Rest, "repeat") else {
        return;
    };
    let repeated = count(&proxy, "repeated listings");
    assert!(repeated > 0, "no listing was repeated: {}", proxy.log());
    eprintln!("REST listings naming every file twice: {repeated} listings, {t:.1?}");
}

/// Backup, snapshots, the list of packs, check, restore and prune through listings that
/// name files twice (`mode`) agree with restic's answers on the server itself. Returns the
/// proxy and the time taken.
fn a_file_listed_twice_counts_once(store: Store, mode: &str) -> Option<(MitmProxy, Duration)> {
    let t = Instant::now();
    let l = Lying::start(store, mode, &[("LIE_MODE", mode.into())])?;
    write_random_file(&l.tree.root.join("added"), 3 << 20, 12);
    let run = |args: Vec<OsString>| {
        let out = l.restash(args);
        assert_eq!(out.code, 0, "{}", out.describe());
        out
    };
    run(osargs!["backup", "--host", HOST, &l.tree.root]);

    let ids = run(osargs!["snapshots", "--json"]).snapshot_ids();
    let truth = l
        .restic_direct(osargs!["snapshots", "--json"])
        .snapshot_ids();
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
    let left = l
        .restic_direct(osargs!["snapshots", "--json"])
        .snapshot_ids();
    assert_eq!(left.len(), 1);
    let target = tempfile::tempdir().unwrap();
    run(osargs!["restore", "latest", "--target", target.path()]);
    l.assert_restored(target.path());
    Some((l.proxy, t.elapsed()))
}

#[test]
fn s3_index_files_always_cut_short_are_reported_by_name() {
    index_files_always_cut_short_are_reported_by_name(Store::S3);
}

#[test]
fn rest_index_files_always_cut_short_are_reported_by_name() {
    index_files_always_cut_short_are_reported_by_name(Store::Rest);
}

fn index_files_always_cut_short_are_reported_by_name(store: Store) {
    let t = Instant::now();
    let lies = [("LIE_MODE", "short".into()), ("LIE_ALWAYS", "1".into())];
    let Some(l) = Lying::start(store, "always", &lies) else {
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
        "{store:?} index files always cut short: restore exits 1 with \"{}\", {:.1?}",
        fatal[0],
        t.elapsed()
    );
}
