//! restash opens a repository written by rustic 0.11.4 (fixtures/rustic-testdata): a key file
//! without `created`, `username` and `hostname`, an unclamped Poly1305 `r` in the master key,
//! snapshots of `.` carrying fields restic does not know, index and tree JSON in rustic's
//! shape. It lists, browses, restores and checks it, and its output is restic 0.14's.
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::backup::{stored_snapshot, unpack_fixture_into};
use common::fixtures::{rustic_fixtures_dir, unpack_archive};
use common::tree::set_mtime;
use common::*;
use serde_json::{json, Value};

const ARCHIVE: &str = "rustic-0.11.4-repo.tar.gz";
/// The backup of `backup-data` as unpacked.
const FIRST: &str = "0c5e351d3978a2bea95b47735ec3e48d5bd2eda4a915957336ccb59c41af0698";
/// The same plus `0/added.txt`.
const SECOND: &str = "32c2d378620c5024bc95d61d6916fa9dbae838c1162bbaa4dbebea12047330cf";
/// mtime of `0/added.txt` and of `0/` in [`SECOND`]: 2026-12-02T12:32:20.757272887Z.
const ADDED_MTIME: (i64, i64) = (1_796_214_740, 757_272_887);

fn open_repo() -> Repo {
    let dir = unpack_archive(&rustic_fixtures_dir().join(ARCHIVE));
    let path = fixture_repo(&dir);
    Repo::new(path, Some(dir))
}

/// Runs `args` with restic and restash; both must succeed with the same stdout, byte for byte.
#[track_caller]
fn same_as_restic(repo: &Repo, args: &[&str]) -> CmdOutput {
    let want = repo.restic(args).success();
    let got = repo.restash(args).success();
    assert!(
        got.stdout == want.stdout,
        "`{}`: restash's stdout differs from restic's\n--- restash ---\n{}\n--- restic ---\n{}",
        args.join(" "),
        String::from_utf8_lossy(&got.stdout),
        String::from_utf8_lossy(&want.stdout),
    );
    got
}

#[test]
fn snapshots_match_restic() {
    let repo = open_repo();
    let list = same_as_restic(&repo, &["snapshots", "--json"]).json();
    let list = list.as_array().expect("an array");
    let ids: Vec<&str> = list.iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids, [FIRST, SECOND]);
    for s in list {
        assert_eq!(s["paths"], json!(["."]), "{s}");
        assert_eq!(s["hostname"], "fixture-host", "{s}");
        assert_eq!(s.get("username"), None, "rustic records an empty user: {s}");
    }
    assert_eq!(list[1]["parent"], FIRST);

    // The tables, byte for byte.
    same_as_restic(&repo, &["snapshots"]);
    same_as_restic(&repo, &["snapshots", "--compact"]);
}

#[test]
fn ls_matches_restic() {
    let repo = open_repo();
    let long = same_as_restic(&repo, &["ls", "-l", "latest"]);
    assert!(long.stdout_str().contains(" /0/added.txt\n"));
    let short = same_as_restic(&repo, &["ls", FIRST]);
    assert!(short
        .stdout_str()
        .contains("\n/0/tests/testfile-hardlink\n"));
    assert!(!short.stdout_str().contains("added.txt"));
    // Directory filters: the directory itself and its children (restic 0.14's rule), a
    // file alone, descendants with --recursive, several at once, the root.
    for filter in [
        &["/0/for_cmd_ls"][..],
        &["/0/for_cmd_ls/"],
        &["/0/for_cmd_ls/file1.txt"],
        &["/0/0", "--recursive"],
        &["/0/for_cmd_ls", "/0/0/9/28"],
        &["/"],
    ] {
        let mut args = vec!["ls", "latest"];
        args.extend_from_slice(filter);
        same_as_restic(&repo, &args);
    }
    repo.restash(["ls", "latest", "0/for_cmd_ls"])
        .expect_code(1);
    for id in [FIRST, SECOND] {
        let lines = same_as_restic(&repo, &["ls", "--json", id]).json_lines();
        assert_eq!(lines[0]["struct_type"], "snapshot");
        assert_eq!(lines[0]["paths"], json!(["."]));
        // 76 or 77 files (counting the symlink) and 5 directories below the root.
        let want = if id == FIRST { 81 } else { 82 };
        assert_eq!(lines.len() - 1, want, "nodes of {id}");
    }
}

#[test]
fn cat_and_key_list_match_restic() {
    let repo = open_repo();
    for id in [FIRST, SECOND] {
        let snap = same_as_restic(&repo, &["cat", "snapshot", id]).json();
        assert_eq!(snap["paths"], json!(["."]));
    }
    same_as_restic(&repo, &["cat", "config"]);
    // restic prints the MAC key's `r` clamped; rustic stores it unclamped.
    same_as_restic(&repo, &["cat", "masterkey"]);

    let keys: Vec<String> = fs::read_dir(repo.path.join("keys"))
        .expect("keys/")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let raw: Value =
        serde_json::from_slice(&fs::read(repo.path.join("keys").join(&keys[0])).expect("key file"))
            .expect("key JSON");
    assert_eq!(
        raw.get("created"),
        None,
        "the premise: rustic writes no `created`"
    );
    let key = same_as_restic(&repo, &["cat", "key", &keys[0]]).json();
    assert_eq!(key["created"], "0001-01-01T00:00:00Z");
    assert_eq!(
        (&key["username"], &key["hostname"]),
        (&json!(""), &json!(""))
    );

    let list = same_as_restic(&repo, &["key", "list", "--json"]).json();
    let short = list[0]["id"].as_str().expect("key id");
    assert!(keys[0].starts_with(short), "{list}");
}

/// rustic 0.11.4's `summary` holds restic 0.17's fields among its own: restash reads those,
/// and the program that wrote the snapshot, from the files as stored.
#[test]
fn summary_and_program_version_are_read() {
    let repo = open_repo();
    let backend = std::sync::Arc::new(restash_backend::LocalBackend::new(&repo.path));
    let r = restash_engine::Repository::open(backend, PASSWORD.as_bytes(), None).expect("open");
    for id in [FIRST, SECOND] {
        let raw = stored_snapshot(&repo, id);
        let sn = r
            .load_snapshot(&restash_format::SnapshotId::parse(id).expect("id"))
            .expect("load snapshot");
        assert_eq!(sn.program_version.as_deref(), Some("rustic 0.11.4"));
        let summary = sn.summary.expect("summary read");
        let read = serde_json::to_value(&summary).expect("summary JSON");
        for (field, value) in read.as_object().expect("object") {
            if field.starts_with("backup_") {
                let want =
                    restash_format::GoTime::parse(raw["summary"][field].as_str().expect(field));
                assert_eq!(
                    value,
                    &json!(want.expect(field).to_go_string()),
                    "{id}: {field}"
                );
            } else {
                assert_eq!(value, &raw["summary"][field], "{id}: {field}");
            }
        }
    }
    let first = r
        .load_snapshot(&restash_format::SnapshotId::parse(FIRST).expect("id"))
        .expect("load snapshot");
    let summary = first.summary.expect("summary");
    assert_eq!(
        (summary.total_files_processed, summary.total_bytes_processed),
        (76, 1_125_905)
    );
}

#[test]
fn dump_matches_restic() {
    let repo = open_repo();
    let added = same_as_restic(&repo, &["dump", SECOND, "/0/added.txt"]);
    assert_eq!(added.stdout, b"changed\n");
    same_as_restic(&repo, &["dump", FIRST, "/0/tests/testfile"]);
    same_as_restic(&repo, &["dump", FIRST, "/0/0/9/37"]);
}

/// `backup-data` unpacked into `dest` as rustic saw it. Unpacking gives directories the time
/// their last entry was written; they get back the archive's mtimes here.
fn source(dest: &Path) {
    unpack_fixture_into("backup-data", dest);
    let archive = fs::File::open(fixture_path("backup-data")).expect("open backup-data");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in archive.entries().expect("tar entries") {
        let entry = entry.expect("tar entry");
        if entry.header().entry_type().is_dir() {
            let mtime = entry.header().mtime().expect("tar mtime");
            let path = dest.join(entry.path().expect("tar path"));
            set_mtime(&path, i64::try_from(mtime).expect("mtime"), 0);
        }
    }
}

/// What the second backup saw: [`source`] plus `0/added.txt`, with the times rustic recorded
/// for the new file and its directory.
fn second_source(dest: &Path) {
    source(dest);
    let added = dest.join("0/added.txt");
    fs::write(&added, "changed\n").expect("write added.txt");
    fs::set_permissions(&added, fs::Permissions::from_mode(0o644)).expect("chmod added.txt");
    set_mtime(&added, ADDED_MTIME.0, ADDED_MTIME.1);
    set_mtime(&dest.join("0"), ADDED_MTIME.0, ADDED_MTIME.1);
}

#[test]
fn restores_equal_the_source_and_restic() {
    let repo = open_repo();
    let work = tempfile::tempdir().expect("tempdir");
    let first_src = work.path().join("src-first");
    source(&first_src);
    let second_src = work.path().join("src-second");
    second_source(&second_src);
    // The snapshots' root is the directory rustic ran in, which no tree node describes.
    let opts = CompareOptions {
        root_metadata: false,
        ..Default::default()
    };
    for (id, src) in [(FIRST, &first_src), (SECOND, &second_src)] {
        let short = &id[..8];
        let a = work.path().join(format!("restash-{short}"));
        let b = work.path().join(format!("restic-{short}"));
        repo.restic(osargs!["restore", id, "--target", b]).success();
        repo.restash(osargs!["restore", id, "--target", a])
            .success();
        assert_trees_equal(&a, &b, &opts);
        assert_trees_equal(&a, src, &opts);
    }
    let added = work
        .path()
        .join(format!("restash-{}/0/added.txt", &SECOND[..8]));
    assert_eq!(fs::read(added).expect("restored added.txt"), b"changed\n");
}

#[test]
fn check_read_data_passes() {
    let repo = open_repo();
    repo.restic(["check", "--read-data"]).success();
    let out = repo.restash(["check", "--read-data"]).success();
    assert!(
        out.stdout_str().contains("no errors were found"),
        "{}",
        out.describe()
    );
}
