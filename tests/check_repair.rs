//! `restash check`, `repair index` (`rebuild-index`) and `repair snapshots` against restic
//! 0.14 as the oracle: on every fixture repository restash reports the same damage as
//! restic (same messages, same ids, same exit code), with and without `--read-data`;
//! damage made here (a flipped byte, a deleted pack, a truncated index) is named; the
//! repairs leave repositories that `restic check --read-data` accepts; and
//! `--read-data-subset n/t` reads exactly the packs restic reads.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use common::backup::{copy_dir, data_files, write_dataset};
use common::*;
use serde_json::Value;
use tempfile::TempDir;

/// Every 64-digit hex id in `s`.
fn hex_ids(s: &str) -> BTreeSet<String> {
    s.split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() == 64)
        .map(str::to_owned)
        .collect()
}

/// Message lines of stdout: restic's non-terminal progress lines (`[0:00] …`) and blank
/// lines left out, order ignored (both tools check in parallel).
fn stdout_lines(out: &CmdOutput) -> BTreeSet<String> {
    out.stdout_str()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('['))
        .map(str::to_owned)
        .collect()
}

/// Message lines of stderr without restic's retry notices.
fn stderr_lines(out: &CmdOutput) -> BTreeSet<String> {
    out.stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("Load("))
        .map(str::to_owned)
        .collect()
}

fn copy_repo(from: &Path) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let to = dir.path().join("repo");
    copy_dir(from, &to);
    (dir, to)
}

fn restic_at(repo: &Path, args: &[&str]) -> CmdOutput {
    let mut all = osargs!["-r", repo];
    all.extend(args.iter().map(Into::into));
    restic(all, &[])
}

fn restash_at(repo: &Path, args: &[&str]) -> CmdOutput {
    let mut all = osargs!["-r", repo];
    all.extend(args.iter().map(Into::into));
    restash(all, &[])
}

fn expected_code(fx: &RepoFixture) -> i32 {
    if fx.check_ok {
        0
    } else {
        1
    }
}

#[test]
fn fixtures_check_reports_what_restic_reports() {
    let mut failures = Vec::new();
    for fx in REPO_FIXTURES {
        let unpacked = unpack_fixture(fx.name);
        let repo = fixture_repo(&unpacked);
        let theirs = restic_at(&repo, &["check"]);
        let ours = restash_at(&repo, &["check"]);
        if theirs.code != expected_code(fx) {
            failures.push(format!("{}: restic itself\n{}", fx.name, theirs.describe()));
        }
        if ours.code != theirs.code {
            failures.push(format!(
                "{}: exit {} (restic {})\n{}",
                fx.name,
                ours.code,
                theirs.code,
                ours.describe()
            ));
        }
        for (what, a, b) in [
            ("stdout", stdout_lines(&ours), stdout_lines(&theirs)),
            ("stderr", stderr_lines(&ours), stderr_lines(&theirs)),
        ] {
            if a != b {
                failures.push(format!(
                    "{}: {what} differs\n  restash only: {:?}\n  restic only: {:?}",
                    fx.name,
                    a.difference(&b).collect::<Vec<_>>(),
                    b.difference(&a).collect::<Vec<_>>()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn fixtures_read_data_reports_what_restic_reports() {
    // restic retries a missing pack for about a minute; the fixtures run side by side.
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = REPO_FIXTURES
            .iter()
            .map(|fx| {
                s.spawn(move || {
                    let unpacked = unpack_fixture(fx.name);
                    let repo = fixture_repo(&unpacked);
                    let ours = restash_at(&repo, &["check", "--read-data"]);
                    let theirs = restic_at(&repo, &["check", "--read-data"]);
                    (fx, ours, theirs)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut failures = Vec::new();
    for (fx, ours, theirs) in results {
        if ours.code != expected_code(fx) || ours.code != theirs.code {
            failures.push(format!(
                "{}: exit {} (restic {})\n{}",
                fx.name,
                ours.code,
                theirs.code,
                ours.describe()
            ));
        }
        let (a, b) = (hex_ids(&ours.stderr), hex_ids(&theirs.stderr));
        if a != b {
            failures.push(format!(
                "{}: ids named differ\n  restash: {a:?}\n  restic: {b:?}",
                fx.name
            ));
        }
        if fx.check_ok && !ours.stdout_str().contains("no errors were found") {
            failures.push(format!("{}: no all-clear\n{}", fx.name, ours.describe()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A v2 repository written by restic with 4 MiB packs, so that it has several data packs.
struct Made {
    _dir: TempDir,
    repo: PathBuf,
    src: PathBuf,
}

fn made_repo() -> Made {
    let dir = tempfile::tempdir().expect("tempdir");
    let (repo, src) = (dir.path().join("repo"), dir.path().join("src"));
    write_dataset(&src, 24, 14 << 20, 7);
    fs::write(src.join("small.txt"), b"a small file\n").unwrap();
    restic(
        osargs!["-r", repo, "init", "--repository-version", "2"],
        &[],
    )
    .success();
    restic(
        osargs!["-r", repo, "backup", "--pack-size", "4", "--host", "h", src],
        &[],
    )
    .success();
    Made {
        _dir: dir,
        repo,
        src,
    }
}

/// The decrypted index, from `restic cat index`: pack id → its blobs (JSON objects).
fn index_packs(repo: &Path) -> BTreeMap<String, Vec<Value>> {
    let mut out = BTreeMap::new();
    let ids = restic_at(repo, &["list", "index"]).success();
    for id in ids.stdout_str().lines().filter(|l| !l.is_empty()) {
        let idx = restic_at(repo, &["cat", "index", id]).success().json();
        for p in idx["packs"].as_array().unwrap() {
            out.insert(
                p["id"].as_str().unwrap().to_owned(),
                p["blobs"].as_array().unwrap().clone(),
            );
        }
    }
    out
}

fn packs_of_type(packs: &BTreeMap<String, Vec<Value>>, t: &str) -> Vec<String> {
    packs
        .iter()
        .filter(|(_, blobs)| blobs.iter().all(|b| b["type"] == t))
        .map(|(id, _)| id.clone())
        .collect()
}

fn pack_path(repo: &Path, id: &str) -> PathBuf {
    repo.join("data").join(&id[..2]).join(id)
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = fs::read(path).unwrap();
    b[at] ^= 0x40;
    fs::write(path, b).unwrap();
}

#[test]
fn flipped_byte_is_found_by_read_data_with_pack_and_blob() {
    let made = made_repo();
    let packs = index_packs(&made.repo);
    let data = packs_of_type(&packs, "data");
    assert!(data.len() >= 3, "want several data packs: {packs:?}");
    let pack = &data[1];
    let blob = &packs[pack][1];
    let offset = blob["offset"].as_u64().unwrap() as usize;
    flip_byte(&pack_path(&made.repo, pack), offset + 40);

    // The structure is intact: only reading the data finds the damage.
    restash_at(&made.repo, &["check"]).success();
    let ours = restash_at(&made.repo, &["check", "--read-data"]).expect_code(1);
    assert!(ours.stderr.contains(pack.as_str()), "{}", ours.describe());
    assert!(
        ours.stderr
            .contains(&format!("blob {}", blob["id"].as_str().unwrap())),
        "the damaged blob is not named\n{}",
        ours.describe()
    );
    assert!(ours.stderr.contains("Fatal: repository contains errors"));
    let theirs = restic_at(&made.repo, &["check", "--read-data"]).expect_code(1);
    assert!(
        theirs.stderr.contains(pack.as_str()),
        "{}",
        theirs.describe()
    );
}

#[test]
fn deleted_data_pack_is_named_like_restic() {
    let made = made_repo();
    let packs = index_packs(&made.repo);
    let victim = &packs_of_type(&packs, "data")[0];
    fs::remove_file(pack_path(&made.repo, victim)).unwrap();
    let ours = restash_at(&made.repo, &["check"]).expect_code(1);
    let theirs = restic_at(&made.repo, &["check"]).expect_code(1);
    assert!(
        ours.stderr
            .contains(&format!("pack {victim}: does not exist")),
        "{}",
        ours.describe()
    );
    assert_eq!(stderr_lines(&ours), stderr_lines(&theirs));
    assert_eq!(stdout_lines(&ours), stdout_lines(&theirs));
}

#[test]
fn deleted_tree_pack_names_the_tree() {
    let made = made_repo();
    let packs = index_packs(&made.repo);
    let victim = &packs_of_type(&packs, "tree")[0];
    let snaps = restic_at(&made.repo, &["snapshots", "--json"])
        .success()
        .json();
    let root = snaps[0]["tree"].as_str().unwrap().to_owned();
    fs::remove_file(pack_path(&made.repo, victim)).unwrap();
    let ours = restash_at(&made.repo, &["check"]).expect_code(1);
    assert!(
        ours.stderr
            .contains(&format!("error for tree {}:", &root[..8])),
        "{}",
        ours.describe()
    );
    assert!(ours
        .stderr
        .contains(&format!("pack {victim}: does not exist")));
}

#[test]
fn truncated_index_is_named_like_restic() {
    let made = made_repo();
    let blobs = |repo: &Path| -> BTreeSet<String> {
        let out = restic_at(repo, &["list", "blobs"]).success();
        out.stdout_str().lines().map(str::to_owned).collect()
    };
    let before = blobs(&made.repo);
    let index = fs::read_dir(made.repo.join("index"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let id = index.file_name().unwrap().to_str().unwrap().to_owned();
    let len = fs::metadata(&index).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let ours = restash_at(&made.repo, &["check"]).expect_code(1);
    let theirs = restic_at(&made.repo, &["check"]).expect_code(1);
    for out in [&ours, &theirs] {
        assert!(
            out.stderr.contains(&format!("error loading index {id}")),
            "{}",
            out.describe()
        );
        assert!(out.stderr.contains("Fatal: LoadIndex returned errors"));
    }
    // repair index drops the broken file and indexes the packs again.
    restash_at(&made.repo, &["repair", "index"]).success();
    restic_at(&made.repo, &["check", "--read-data"]).success();
    assert_eq!(
        blobs(&made.repo),
        before,
        "the rebuilt index lost or invented blobs"
    );
    restash_at(&made.repo, &["rebuild-index", "--read-all-packs"]).success();
    assert_eq!(blobs(&made.repo), before);
    restic_at(&made.repo, &["check", "--read-data"]).success();
}

#[test]
fn repair_index_makes_broken_fixtures_pass_restic_check() {
    for (name, args) in [
        ("repo-index-missing", &["rebuild-index"][..]),
        (
            "repo-index-missing",
            &["repair", "index", "--read-all-packs"][..],
        ),
        ("repo-index-missing-blob", &["repair", "index"][..]),
        ("repo-unused-data-missing", &["repair", "index"][..]),
        (
            "duplicate-packs-in-index-test-repo",
            &["repair", "index"][..],
        ),
    ] {
        let unpacked = unpack_fixture(name);
        let repo = fixture_repo(&unpacked);
        let before = restic_at(&repo, &["list", "index"]).success();
        let ours = restash_at(&repo, args);
        assert_eq!(ours.code, 0, "{name} {args:?}\n{}", ours.describe());
        let after = restic_at(&repo, &["list", "index"]).success();
        assert!(
            hex_ids(before.stdout_str()).is_disjoint(&hex_ids(after.stdout_str())),
            "{name}: the old index files are still there"
        );
        let check = restic_at(&repo, &["check", "--read-data"]);
        assert_eq!(check.code, 0, "{name} {args:?}\n{}", check.describe());
        restash_at(&repo, &["check", "--read-data"]).success();
        // What the snapshots need is there: the first snapshot restores with restic.
        let target = unpacked.path().join("restored");
        let snaps = restic_at(&repo, &["snapshots", "--json"]).success().json();
        if let Some(first) = snaps.as_array().unwrap().first() {
            let id = first["id"].as_str().unwrap();
            restic(osargs!["-r", repo, "restore", id, "--target", target], &[]).success();
        }
    }
}

/// Files below `dir` (relative path → bytes).
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn repair_snapshots_after_a_lost_data_pack() {
    let made = made_repo();
    let packs = index_packs(&made.repo);
    let victim = &packs_of_type(&packs, "data")[1];
    fs::remove_file(pack_path(&made.repo, victim)).unwrap();
    restash_at(&made.repo, &["repair", "index"]).success();
    restic_at(&made.repo, &["check"]).expect_code(1);

    let before = restic_at(&made.repo, &["list", "snapshots"]).success();
    let dry = restash_at(&made.repo, &["repair", "snapshots", "--dry-run"]).success();
    assert!(dry.stdout_str().contains("removed missing content"));
    assert!(dry.stdout_str().contains("would modify 1 snapshots"));
    let same = restic_at(&made.repo, &["list", "snapshots"]).success();
    assert_eq!(
        before.stdout, same.stdout,
        "--dry-run changed the snapshots"
    );

    // Without --forget the original stays and the new one is tagged.
    let (_keep, copy) = copy_repo(&made.repo);
    restash_at(&copy, &["repair", "snapshots"]).success();
    let snaps = restic_at(&copy, &["snapshots", "--json"]).success().json();
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 2);
    let repaired: Vec<_> = snaps
        .iter()
        .filter(|s| {
            s["tags"]
                .as_array()
                .is_some_and(|t| t.contains(&"repaired".into()))
        })
        .collect();
    assert_eq!(repaired.len(), 1);
    let old_id = hex_ids(before.stdout_str()).into_iter().next().unwrap();
    assert_eq!(repaired[0]["original"].as_str(), Some(old_id.as_str()));

    let out = restash_at(&made.repo, &["repair", "snapshots", "--forget"]).success();
    assert!(
        out.stdout_str().contains("modified 1 snapshots"),
        "{}",
        out.describe()
    );
    let check = restic_at(&made.repo, &["check", "--read-data"]);
    assert_eq!(check.code, 0, "{}", check.describe());
    restash_at(&made.repo, &["check", "--read-data"]).success();

    // What remains restores: files whose blobs all survived are intact, the others shrank.
    let target = made._dir.path().join("restored");
    restic(
        osargs!["-r", made.repo, "restore", "latest", "--target", target],
        &[],
    )
    .success();
    let want = files(&made.src);
    let got = files(&common::restored_path(&target, &made.src));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    let intact = want.iter().filter(|(p, d)| got[*p] == **d).count();
    let damaged: Vec<_> = want.keys().filter(|p| got[*p] != want[*p]).collect();
    assert!(
        intact > 0 && !damaged.is_empty(),
        "intact {intact}, damaged {damaged:?}"
    );
    for p in damaged {
        assert!(
            got[p].len() < want[p].len(),
            "{p:?} should have lost content"
        );
    }
}

#[test]
fn repair_snapshots_drops_a_snapshot_without_root() {
    let made = made_repo();
    let packs = index_packs(&made.repo);
    for tree_pack in packs_of_type(&packs, "tree") {
        fs::remove_file(pack_path(&made.repo, &tree_pack)).unwrap();
    }
    restash_at(&made.repo, &["repair", "index"]).success();
    let out = restash_at(&made.repo, &["repair", "snapshots"]).success();
    assert!(
        out.stdout_str().contains("dir \"/\": not readable"),
        "{}",
        out.describe()
    );
    assert!(out.stdout_str().contains("removed empty snapshot"));
    restic_at(&made.repo, &["check"]).success();
}

/// A repository of many small packs (one data and one tree pack per backup), every one of
/// them damaged, so that a check names exactly the packs it read.
fn many_damaged_packs() -> (TempDir, PathBuf, BTreeSet<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (repo, src) = (dir.path().join("repo"), dir.path().join("src"));
    fs::create_dir_all(&src).unwrap();
    restic(
        osargs!["-r", repo, "init", "--repository-version", "2"],
        &[],
    )
    .success();
    for i in 0..20 {
        fs::write(src.join(format!("f{i}")), format!("content number {i}\n")).unwrap();
        restic(osargs!["-r", repo, "backup", "-q", "--host", "h", src], &[]).success();
    }
    let mut all = BTreeSet::new();
    for p in data_files(&repo) {
        all.insert(p.file_name().unwrap().to_str().unwrap().to_owned());
        flip_byte(&p, 0);
    }
    assert!(all.len() >= 40, "{} packs", all.len());
    (dir, repo, all)
}

/// Packs a `check` run found damaged ("Pack ID does not match, want <id>, …").
fn mismatched(out: &CmdOutput) -> BTreeSet<String> {
    out.stderr
        .lines()
        .filter_map(|l| l.strip_prefix("Pack ID does not match, want "))
        .map(|l| l[..64].to_owned())
        .collect()
}

#[test]
fn read_data_subset_reads_the_packs_restic_reads() {
    let (_dir, repo, all) = many_damaged_packs();
    let mut union = BTreeSet::new();
    for n in 1..=3 {
        let subset = format!("--read-data-subset={n}/3");
        let ours = restash_at(&repo, &["check", &subset]).expect_code(1);
        let theirs = restic_at(&repo, &["check", &subset]).expect_code(1);
        let (a, b) = (mismatched(&ours), mismatched(&theirs));
        assert_eq!(a, b, "group {n}/3");
        assert!(
            !a.is_empty(),
            "group {n}/3 read nothing\n{}",
            ours.describe()
        );
        let group = |o: &CmdOutput| {
            o.stdout_str()
                .lines()
                .find(|l| l.starts_with("read group"))
                .map(str::to_owned)
        };
        assert_eq!(group(&ours), group(&theirs));
        union.extend(a);
    }
    assert_eq!(union, all, "the three groups together are every pack");
    let whole = restash_at(&repo, &["check", "--read-data"]).expect_code(1);
    assert_eq!(mismatched(&whole), all);
    // Random subsets: the same number of packs as restic reads.
    for subset in ["--read-data-subset=25%", "--read-data-subset=1k"] {
        let ours = restash_at(&repo, &["check", subset]).expect_code(1);
        let theirs = restic_at(&repo, &["check", subset]).expect_code(1);
        assert_eq!(
            mismatched(&ours).len(),
            mismatched(&theirs).len(),
            "{subset}\n{}\n{}",
            ours.describe(),
            theirs.describe()
        );
        assert!(mismatched(&ours).is_subset(&all));
    }
}

#[test]
fn check_flags_are_validated_like_restic() {
    let unpacked = unpack_fixture("small-repo");
    let repo = fixture_repo(&unpacked);
    for args in [
        &["check", "--read-data", "--read-data-subset=1/2"][..],
        &["check", "--read-data-subset=0/2"][..],
        &["check", "--read-data-subset=3/2"][..],
        &["check", "--read-data-subset=1/300"][..],
        &["check", "--read-data-subset=150%"][..],
        &["check", "--read-data-subset=12"][..],
        &["check", "--read-data-subset=0k"][..],
        &["check", "extra-argument"][..],
    ] {
        let ours = restash_at(&repo, args);
        let theirs = restic_at(&repo, args);
        assert_eq!(ours.code, theirs.code, "{args:?}\n{}", ours.describe());
        let fatal = |o: &CmdOutput| {
            o.stderr
                .lines()
                .find(|l| l.starts_with("Fatal:"))
                .map(str::to_owned)
        };
        assert_eq!(fatal(&ours), fatal(&theirs), "{args:?}");
    }
    // A subset that is valid for both.
    restash_at(&repo, &["check", "--read-data-subset=2/2"]).success();
}
