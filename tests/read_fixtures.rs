//! restash reads every repository restic's own test data holds, and its output matches
//! restic 0.14's: snapshots, restores, ls, cat, dump, key list, and the exit codes for a
//! missing pack, a wrong password and a missing repository.
mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use serde_json::Value;

/// Collects failures across all fixtures so one run shows the whole picture.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, context: &str, result: Result<(), String>) {
        if let Err(e) = result {
            self.0.push(format!("[{context}] {e}"));
        }
    }

    #[track_caller]
    fn assert_none(self) {
        if !self.0.is_empty() {
            panic!("{} failure(s):\n\n{}", self.0.len(), self.0.join("\n\n"));
        }
    }
}

fn ok(out: &CmdOutput) -> Result<(), String> {
    if out.code == 0 {
        Ok(())
    } else {
        Err(format!("restash failed\n{}", out.describe()))
    }
}

fn parse_json(out: &CmdOutput) -> Result<Value, String> {
    ok(out)?;
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("stdout is not JSON ({e})\n{}", out.describe()))
}

fn parse_json_lines(out: &CmdOutput) -> Result<Vec<Value>, String> {
    ok(out)?;
    let text = std::str::from_utf8(&out.stdout)
        .map_err(|e| format!("stdout is not UTF-8 ({e})\n{}", out.describe()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| format!("line is not JSON ({e}): {l:?}\n{}", out.describe()))
        })
        .collect()
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(
    what: &str,
    restash: T,
    restic: T,
) -> Result<(), String> {
    if restash == restic {
        Ok(())
    } else {
        Err(format!(
            "{what} differ\n  restash: {restash:?}\n  restic:  {restic:?}"
        ))
    }
}

/// Snapshot fields restic 0.14 prints in `snapshots --json`; absent and null are different
/// JSON to a consumer, so a missing key must stay missing.
const SNAPSHOT_KEYS: &[&str] = &[
    "id", "short_id", "time", "tree", "paths", "hostname", "username", "tags", "parent",
];

/// The [`SNAPSHOT_KEYS`] of one snapshot, in order.
type Projection = Vec<(&'static str, Option<Value>)>;

fn snapshot_projection(list: &Value) -> Result<Vec<Projection>, String> {
    let items = list
        .as_array()
        .ok_or_else(|| format!("not a JSON array: {list}"))?;
    Ok(items
        .iter()
        .map(|s| {
            SNAPSHOT_KEYS
                .iter()
                .map(|k| (*k, s.get(*k).cloned()))
                .collect()
        })
        .collect())
}

fn snapshot_ids(repo: &Repo) -> Vec<String> {
    repo.restic_snapshots()
        .iter()
        .map(|s| s["id"].as_str().expect("snapshot id").to_owned())
        .collect()
}

fn open_fixture(name: &str) -> Repo {
    let dir = unpack_fixture(name);
    let path = fixture_repo(&dir);
    Repo::new(path, Some(dir))
}

#[test]
fn snapshots_json_matches_restic() {
    let mut failures = Failures::default();
    for fx in REPO_FIXTURES {
        let repo = open_fixture(fx.name);
        let restic_list = repo.restic(["snapshots", "--json"]).success().json();
        let expected = snapshot_projection(&restic_list).expect("restic output");
        assert_eq!(
            expected.len(),
            fx.snapshots,
            "{}: fixture README is stale",
            fx.name
        );
        let result = parse_json(&repo.restash(["snapshots", "--json"]))
            .and_then(|v| snapshot_projection(&v))
            .and_then(|got| expect_eq("snapshots", got, expected));
        failures.check(fx.name, result);
    }
    failures.assert_none();
}

#[test]
fn restore_of_every_snapshot_matches_restic() {
    let mut failures = Failures::default();
    // The restore targets are created by the tools, so their own metadata is not compared.
    let opts = CompareOptions {
        root_metadata: false,
        ..Default::default()
    };
    for fx in REPO_FIXTURES.iter().filter(|f| f.restore_ok) {
        let repo = open_fixture(fx.name);
        for id in snapshot_ids(&repo) {
            let context = format!("{} {}", fx.name, &id[..8]);
            let work = tempfile::tempdir().expect("tempdir");
            let (a, b) = (work.path().join("restash"), work.path().join("restic"));
            repo.restic(osargs!["restore", id, "--target", b]).success();
            let out = repo.restash(osargs!["restore", id, "--target", a]);
            let result = ok(&out).and_then(|()| {
                compare_trees_with(&a, &b, &opts).map_err(|d| {
                    format!(
                        "restored trees differ (a = restash, b = restic), {} difference(s):{}",
                        d.len(),
                        summarize(&d, 40)
                    )
                })
            });
            failures.check(&context, result);
        }
    }
    failures.assert_none();
}

/// repo-data-missing lacks pack 1959b7f2…, which holds blob f2ca1bb6… of
/// /home/thinkpad/data/test (found with `restic find --pack`).
#[test]
fn restore_with_missing_pack_exits_3_and_restores_the_rest() {
    let repo = open_fixture("repo-data-missing");
    let work = tempfile::tempdir().expect("tempdir");
    let (a, b) = (work.path().join("restash"), work.path().join("restic"));
    // restic retries the missing pack for about 40 s; run it alongside restash.
    let (restic_out, restash_out) = std::thread::scope(|s| {
        let r = s.spawn(|| repo.restic(osargs!["restore", "latest", "--target", b]));
        let o = repo.restash(osargs!["restore", "latest", "--target", a]);
        (r.join().expect("restic thread"), o)
    });
    assert_ne!(
        restic_out.code,
        0,
        "restic should fail here\n{}",
        restic_out.describe()
    );
    assert_eq!(
        restash_out.code,
        3,
        "restash restore with a missing pack\n{}",
        restash_out.describe()
    );
    let stderr = &restash_out.stderr;
    assert!(
        ["1959b7f2", "f2ca1bb6", "data/test"]
            .iter()
            .any(|s| stderr.contains(s)),
        "restash's stderr names neither the missing pack, the blob nor the file\n{}",
        restash_out.describe()
    );
    // Neither tool can produce the damaged file; everything else must agree.
    let opts = CompareOptions {
        root_metadata: false,
        skip: vec!["home/thinkpad/data/test".into()],
        ..Default::default()
    };
    assert_trees_equal(&a, &b, &opts);
}

#[test]
fn wrong_password_exits_12() {
    let repo = open_fixture("small-repo");
    let out = restash(
        osargs!["-r", repo.path, "snapshots"],
        &[("RESTIC_PASSWORD", "not-the-password")],
    );
    assert_eq!(out.code, 12, "{}", out.describe());
    assert!(
        out.stderr.contains("wrong password or no key found"),
        "{}",
        out.describe()
    );
}

#[test]
fn missing_repository_exits_10() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = restash(osargs!["-r", dir.path().join("nope"), "snapshots"], &[]);
    assert_eq!(out.code, 10, "{}", out.describe());
}

fn ls_paths(lines: &[Value]) -> Result<BTreeSet<String>, String> {
    let first = lines.first().ok_or("no output")?;
    if first.get("struct_type").and_then(Value::as_str) != Some("snapshot") {
        return Err(format!("first line is not the snapshot: {first}"));
    }
    lines[1..]
        .iter()
        .map(|n| {
            n.get("path")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("node without path: {n}"))
        })
        .collect()
}

#[test]
fn ls_json_lists_same_paths_as_restic() {
    let mut failures = Failures::default();
    for fx in REPO_FIXTURES.iter().filter(|f| f.restore_ok) {
        let repo = open_fixture(fx.name);
        for id in snapshot_ids(&repo) {
            let want = ls_paths(
                &repo
                    .restic(["ls", "--json", id.as_str()])
                    .success()
                    .json_lines(),
            )
            .expect("restic ls --json");
            let result = parse_json_lines(&repo.restash(["ls", "--json", id.as_str()]))
                .and_then(|lines| {
                    let snap_id = lines.first().and_then(|s| s.get("id")).cloned();
                    expect_eq("snapshot id", snap_id, Some(Value::from(id.clone())))?;
                    ls_paths(&lines)
                })
                .and_then(|got| expect_eq("paths", got, want));
            failures.check(&format!("{} {}", fx.name, &id[..8]), result);
        }
    }
    failures.assert_none();
}

#[test]
fn ls_long_matches_restic() {
    let mut failures = Failures::default();
    for fx in REPO_FIXTURES.iter().filter(|f| f.restore_ok) {
        let repo = open_fixture(fx.name);
        for id in snapshot_ids(&repo) {
            let want = repo.restic(["ls", "-l", id.as_str()]).success();
            let got = repo.restash(["ls", "-l", id.as_str()]);
            let result = ok(&got).and_then(|()| {
                let (g, w) = (got.stdout_str(), want.stdout_str());
                let first = g.lines().zip(w.lines()).position(|(x, y)| x != y);
                match (first, g.lines().count() == w.lines().count()) {
                    (None, true) => Ok(()),
                    _ => Err(format!(
                        "`ls -l` output differs\n--- restash ---\n{g}\n--- restic ---\n{w}"
                    )),
                }
            });
            failures.check(&format!("{} {}", fx.name, &id[..8]), result);
        }
    }
    failures.assert_none();
}

#[test]
fn cat_config_and_masterkey_match_restic() {
    let mut failures = Failures::default();
    for fx in REPO_FIXTURES {
        let repo = open_fixture(fx.name);
        for what in ["config", "masterkey"] {
            let want = repo.restic(["cat", what]).success().json();
            let result =
                parse_json(&repo.restash(["cat", what])).and_then(|got| expect_eq(what, got, want));
            failures.check(&format!("{} cat {what}", fx.name), result);
        }
    }
    failures.assert_none();
}

#[test]
fn key_list_matches_restic() {
    let mut failures = Failures::default();
    for fx in REPO_FIXTURES {
        let repo = open_fixture(fx.name);
        let want = repo.restic(["key", "list", "--json"]).success().json();
        let ids = |v: &Value| -> Option<BTreeSet<String>> {
            v.as_array()?
                .iter()
                .map(|k| k.get("id").and_then(Value::as_str).map(str::to_owned))
                .collect()
        };
        let result = parse_json(&repo.restash(["key", "list", "--json"])).and_then(|got| {
            expect_eq("key ids", ids(&got), ids(&want))?;
            expect_eq("key list", got, want)
        });
        failures.check(fx.name, result);
    }
    failures.assert_none();
}

/// Up to `n` regular files of `snapshot`, preferring the largest (multi-blob) ones.
fn some_files(repo: &Repo, snapshot: &str, n: usize) -> Vec<String> {
    let lines = repo
        .restic(["ls", "--json", snapshot])
        .success()
        .json_lines();
    let mut files: Vec<(u64, String)> = lines
        .iter()
        .filter(|l| l.get("type").and_then(Value::as_str) == Some("file"))
        .filter_map(|l| {
            Some((
                l.get("size").and_then(Value::as_u64).unwrap_or(0),
                l.get("path")?.as_str()?.to_owned(),
            ))
        })
        .collect();
    files.sort_by(|x, y| y.cmp(x));
    files.into_iter().take(n).map(|(_, p)| p).collect()
}

#[test]
fn dump_matches_restic() {
    let mut failures = Failures::default();
    for fx in REPO_FIXTURES
        .iter()
        .filter(|f| f.restore_ok && f.snapshots > 0)
    {
        let repo = open_fixture(fx.name);
        let ids = snapshot_ids(&repo);
        let id = ids.last().expect("a snapshot");
        for file in some_files(&repo, id, 3) {
            let want = repo.restic(["dump", id, file.as_str()]).success().stdout;
            let got = repo.restash(["dump", id, file.as_str()]);
            let result = ok(&got).and_then(|()| {
                if got.stdout == want {
                    Ok(())
                } else {
                    Err(format!(
                        "dump bytes differ: restash {} bytes, restic {} bytes",
                        got.stdout.len(),
                        want.len()
                    ))
                }
            });
            failures.check(&format!("{} dump {file}", fx.name), result);
        }
    }
    failures.assert_none();
}

/// What an archive holds, entry by entry: (is a directory, unix mode, file bytes or
/// symlink target). Two archives of the same tree must hold the same, whoever wrote them
/// (deflate output and header padding may differ).
type Entries = std::collections::BTreeMap<String, (bool, u32, Vec<u8>)>;

fn zip_entries(bytes: &[u8]) -> Result<Entries, String> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let mut out = Entries::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).map_err(|e| e.to_string())?;
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut data).map_err(|e| e.to_string())?;
        let mode = f.unix_mode().unwrap_or(0) & 0o7777;
        let name = f.name().map_err(|e| e.to_string())?;
        out.insert(
            name.trim_end_matches('/').to_string(),
            (f.is_dir(), mode, data),
        );
    }
    Ok(out)
}

fn tar_entries(bytes: &[u8]) -> Result<Entries, String> {
    let mut a = tar::Archive::new(bytes);
    let mut out = Entries::new();
    for e in a.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        let h = e.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).map_err(|e| e.to_string())?;
        // The entry's name and link target, not the header's: restic writes long or
        // non-ASCII ones as PAX records.
        if let Some(link) = e.link_name_bytes() {
            data = link.into_owned();
        }
        let name = String::from_utf8_lossy(&e.path_bytes())
            .trim_end_matches('/')
            .to_string();
        let dir = h.entry_type() == tar::EntryType::Directory;
        out.insert(name, (dir, h.mode().unwrap_or(0) & 0o7777, data));
    }
    Ok(out)
}

/// `dump` of a whole snapshot as tar and as zip (restic's `--archive zip`) holds what
/// restic's holds: the same entries, modes, bytes and link targets.
#[test]
fn dump_archives_match_restic() {
    let mut failures = Failures::default();
    for fx in REPO_FIXTURES
        .iter()
        .filter(|f| f.restore_ok && f.snapshots > 0)
    {
        let repo = open_fixture(fx.name);
        let ids = snapshot_ids(&repo);
        let id = ids.last().expect("a snapshot");
        for (format, read) in [
            ("tar", tar_entries as fn(&[u8]) -> Result<Entries, String>),
            ("zip", zip_entries),
        ] {
            let want = repo
                .restic(["dump", "--archive", format, id, "/"])
                .success()
                .stdout;
            let got = repo.restash(["dump", "--archive", format, id, "/"]);
            let result = ok(&got).and_then(|()| {
                let (w, g) = (read(&want)?, read(&got.stdout)?);
                if w.is_empty() {
                    return Err("restic's archive is empty".into());
                }
                match w == g {
                    true => Ok(()),
                    false => {
                        let differ: Vec<_> = w
                            .keys()
                            .chain(g.keys())
                            .filter(|k| w.get(*k) != g.get(*k))
                            .take(5)
                            .collect();
                        Err(format!("{format} entries differ: {differ:?}"))
                    }
                }
            });
            failures.check(&format!("{} dump --archive {format}", fx.name), result);
        }
    }
    failures.assert_none();
}

/// Guards the premise of the restore tests: the repositories unpack and restic reads them.
#[test]
fn fixtures_unpack_and_restic_reads_them() {
    for fx in REPO_FIXTURES {
        let repo = open_fixture(fx.name);
        assert_eq!(snapshot_ids(&repo).len(), fx.snapshots, "{}", fx.name);
        assert!(Path::new(&repo.path).join("keys").is_dir(), "{}", fx.name);
    }
}
