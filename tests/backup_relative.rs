//! `restash backup` of relative targets (`.`, `sub`, `../x`, several at once) stores what
//! restic 0.14 stores: the same root tree (so restic's next backup, which takes restash's
//! snapshot as its parent, adds nothing) and the same `paths`, in the order given.
//!
//! Each case backs up the same unchanged sources from the same working directory with
//! restash and then restic into one repository and compares the two snapshots' files.
//! restic's layout, for reference: a target is stored under its path components (`../x/y`
//! as `x` → `y`), `.` and `..` as their entries, a top-level name that comes from another
//! directory as `x-1`; `paths` are the targets made absolute, duplicates kept.
mod common;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use common::backup::*;
use common::tree::set_all_mtimes;
use common::*;
use serde_json::Value;
use tempfile::TempDir;

/// Sources under a stable base, a working directory among them, and a repository.
///
/// ```text
/// base/w/            the working directory
///        f  a/h  sub/deeper/g  sub/h2  x/q/r  link-to-sub -> sub
/// base/x/y/z
/// base/other/a/i
/// ```
struct Setup {
    base: TempDir,
    _repo_dir: TempDir,
    repo: Repo,
}

impl Setup {
    fn new() -> Self {
        let base = stable_base();
        let write = |rel: &str, data: &[u8]| {
            let p = base.path().join(rel);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(&p, data).unwrap_or_else(|e| panic!("write {p:?}: {e}"));
        };
        write("w/f", b"f\n");
        write("w/a/h", b"h\n");
        write("w/sub/deeper/g", &[7; 70_000]);
        write("w/sub/h2", b"h2\n");
        write("w/x/q/r", b"r\n");
        write("x/y/z", b"z\n");
        write("other/a/i", b"i\n");
        std::os::unix::fs::symlink("sub", base.path().join("w/link-to-sub")).expect("symlink");
        set_all_mtimes(base.path());
        let repo_dir = tempfile::tempdir().expect("tempdir");
        let repo = init_repo(Tool::Restash, &repo_dir.path().join("repo"), None);
        Setup {
            base,
            _repo_dir: repo_dir,
            repo,
        }
    }

    fn at(&self, rel: &str) -> PathBuf {
        self.base.path().join(rel)
    }

    fn w(&self) -> PathBuf {
        self.at("w")
    }

    fn abs(&self, rel: &str) -> String {
        self.at(rel).display().to_string()
    }
}

/// `backup --json --host HOST args…` run by `tool` in `cwd`, with `$PWD` set as a shell
/// sets it (restic names the working directory after it).
fn backup_in(repo: &Repo, tool: Tool, cwd: &Path, pwd: &Path, args: &[&str]) -> CmdOutput {
    let mut all: Vec<OsString> = osargs!["backup", "--json", "--host", HOST];
    all.extend(args.iter().map(OsString::from));
    let pwd = pwd.to_str().expect("UTF-8 test path");
    run_tool(
        tool,
        with_repo(&repo.path, all),
        None,
        Some(cwd),
        &[("PWD", pwd)],
    )
}

/// The snapshot file as stored (`paths` in the order written, not sorted for display).
fn stored(repo: &Repo, id: &str) -> Value {
    repo.restic(["--no-lock", "cat", "snapshot", id])
        .success()
        .json()
}

/// Backs up `args` from `cwd` with restash (exit code `code`), then with restic; asserts
/// restic took restash's snapshot as its parent, added nothing, and stored the same tree
/// and paths. Returns restash's stored snapshot with its `id`.
#[track_caller]
fn same_as_restic(s: &Setup, cwd: &Path, pwd: &Path, args: &[&str], code: i32) -> Value {
    let before = snapshots(&s.repo);
    let ours = backup_in(&s.repo, Tool::Restash, cwd, pwd, args);
    let ours_out = ours.clone().expect_code(code);
    let ours = new_snapshot(&s.repo, &before);
    let before = snapshots(&s.repo);
    let out = backup_in(&s.repo, Tool::Restic, cwd, pwd, args).success();
    let theirs = new_snapshot(&s.repo, &before);
    let (a, b) = (snapshot_id(&ours), snapshot_id(&theirs));
    let (sa, sb) = (stored(&s.repo, &a), stored(&s.repo, &b));
    if sa["tree"] != sb["tree"] {
        let diffs = node_diffs(
            &ls_nodes(&s.repo, &a),
            &ls_nodes(&s.repo, &b),
            ("restash", "restic"),
            30,
        );
        panic!(
            "{args:?}: root trees differ\n{}\nrestash run:\n{}",
            diffs.join("\n"),
            ours_out.describe()
        );
    }
    assert_eq!(sa["paths"], sb["paths"], "{args:?}: stored paths");
    assert_eq!(
        theirs["parent"],
        Value::from(a.clone()),
        "{args:?}: restic's parent"
    );
    Summary::of(&out).expect("data_added", 0);
    let mut sa = sa;
    sa["id"] = Value::from(a);
    sa
}

/// The names at the top of a snapshot, sorted.
fn top_names(repo: &Repo, id: &str) -> Vec<String> {
    ls_nodes(repo, id)
        .keys()
        .filter(|p| p.matches('/').count() == 1)
        .map(|p| p[1..].to_owned())
        .collect()
}

fn id(sn: &Value) -> String {
    sn["id"].as_str().expect("id").to_owned()
}

#[test]
fn dot_is_stored_as_its_entries() {
    let s = Setup::new();
    let w = s.w();
    let sn = same_as_restic(&s, &w, &w, &["."], 0);
    assert_eq!(sn["paths"], serde_json::json!([s.abs("w")]));
    assert_eq!(
        top_names(&s.repo, &id(&sn)),
        ["a", "f", "link-to-sub", "sub", "x"]
    );

    // `..` too, from a directory below, and `./` spelled differently.
    let sub = s.at("w/sub");
    let sn = same_as_restic(&s, &sub, &sub, &["..", "./"], 0);
    assert_eq!(sn["paths"], serde_json::json!([s.abs("w"), s.abs("w/sub")]));
    assert_eq!(
        top_names(&s.repo, &id(&sn)),
        ["a", "deeper", "f", "h2", "link-to-sub", "sub", "x"]
    );
    s.repo.restic(["check", "--read-data"]).success();
}

#[test]
fn relative_targets_keep_their_components() {
    let s = Setup::new();
    let w = s.w();
    for (args, top) in [
        (&["sub"][..], &["sub"][..]),
        (&["./sub/"], &["sub"]),
        (&["sub/deeper"], &["sub"]),
        (&["../x"], &["x"]),
        (&["../x/y"], &["x"]),
    ] {
        let sn = same_as_restic(&s, &w, &w, args, 0);
        assert_eq!(top_names(&s.repo, &id(&sn)), top, "{args:?}");
    }
    // restic follows a symlink on the way to a target: `link-to-sub` is a directory.
    let sn = same_as_restic(&s, &w, &w, &["link-to-sub/deeper"], 0);
    let nodes = ls_nodes(&s.repo, &id(&sn));
    assert_eq!(nodes["/link-to-sub"]["type"], "dir", "{nodes:?}");
    s.repo.restic(["check", "--read-data"]).success();
}

#[test]
fn several_targets_keep_their_order_and_duplicates() {
    let s = Setup::new();
    let w = s.w();
    let sn = same_as_restic(&s, &w, &w, &["sub", "f"], 0);
    assert_eq!(
        sn["paths"],
        serde_json::json!([s.abs("w/sub"), s.abs("w/f")])
    );
    let sn = same_as_restic(&s, &w, &w, &["f", "f", "./f"], 0);
    assert_eq!(sn["paths"].as_array().map(Vec::len), Some(3));
    assert_eq!(top_names(&s.repo, &id(&sn)), ["f"]);

    let sn = same_as_restic(&s, &w, &w, &[".", "../other"], 0);
    assert_eq!(sn["paths"], serde_json::json!([s.abs("w"), s.abs("other")]));
    assert_eq!(
        top_names(&s.repo, &id(&sn)),
        ["a", "f", "link-to-sub", "other", "sub", "x"]
    );
    same_as_restic(&s, &w, &w, &["a", "../other/a", "sub/deeper"], 0);
    s.repo.restic(["check", "--read-data"]).success();
}

#[test]
fn same_name_from_another_directory_is_numbered() {
    let s = Setup::new();
    let w = s.w();
    for (args, first) in [
        (["x", "../x"], "/x/q/r"),
        (["../x", "x"], "/x/y/z"),
        (["../x/y", "x/q"], "/x/y/z"),
    ] {
        let sn = same_as_restic(&s, &w, &w, &args, 0);
        assert_eq!(top_names(&s.repo, &id(&sn)), ["x", "x-1"], "{args:?}");
        // The first target given keeps the plain name.
        let nodes = ls_nodes(&s.repo, &id(&sn));
        assert!(nodes.contains_key(first), "{args:?}: {:?}", nodes.keys());
    }
    // `.` brings `x` (and `a`) from the working directory, `..` its own `x` and `other`.
    let sn = same_as_restic(&s, &w, &w, &[".", ".."], 0);
    let names: BTreeSet<String> = top_names(&s.repo, &id(&sn)).into_iter().collect();
    for name in ["x", "x-1", "w", "other", "a"] {
        assert!(names.contains(name), "{name} missing: {names:?}");
    }
    s.repo.restic(["check", "--read-data"]).success();
}

#[test]
fn nested_targets_are_stored_once() {
    let s = Setup::new();
    let w = s.w();
    for args in [["sub", "sub/deeper"], ["sub/deeper", "sub"]] {
        let sn = same_as_restic(&s, &w, &w, &args, 0);
        assert_eq!(sn["paths"].as_array().map(Vec::len), Some(2), "{args:?}");
        let nodes = ls_nodes(&s.repo, &id(&sn));
        let paths: Vec<&str> = nodes.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            ["/sub", "/sub/deeper", "/sub/deeper/g", "/sub/h2"],
            "{args:?}"
        );
    }
    same_as_restic(&s, &w, &w, &[".", "sub/deeper", "../x/y", ".."], 0);
    s.repo.restic(["check", "--read-data"]).success();
}

#[test]
fn absolute_and_relative_targets_together() {
    let s = Setup::new();
    let w = s.w();
    let abs = s.abs("w/sub");
    let sn = same_as_restic(&s, &w, &w, &[abs.as_str()], 0);
    assert_eq!(sn["paths"], serde_json::json!([abs]));
    let other = s.abs("x");
    let sn = same_as_restic(&s, &w, &w, &[other.as_str(), "f"], 0);
    assert_eq!(sn["paths"], serde_json::json!([other, s.abs("w/f")]));
    // One directory named from `/` and from the working directory is stored twice: the
    // two names come from different places as far as restic is concerned.
    let depth = w.components().count() - 1;
    let up = format!("{}{}", "../".repeat(depth), &other[1..]);
    let sn = same_as_restic(&s, &w, &w, &[other.as_str(), up.as_str()], 0);
    let first = other[1..].split('/').next().expect("first component");
    assert_eq!(
        top_names(&s.repo, &id(&sn)),
        [first.to_owned(), format!("{first}-1")]
    );
    s.repo.restic(["check", "--read-data"]).success();
}

#[test]
fn excludes_apply_to_the_targets_themselves() {
    let s = Setup::new();
    let w = s.w();
    let sn = same_as_restic(&s, &w, &w, &["--exclude", "f", "."], 0);
    assert!(!top_names(&s.repo, &id(&sn)).contains(&"f".to_owned()));
    // The directory above an excluded target stays, empty.
    let sn = same_as_restic(&s, &w, &w, &["--exclude", "deeper", "sub/deeper"], 0);
    let nodes = ls_nodes(&s.repo, &id(&sn));
    assert_eq!(nodes.keys().collect::<Vec<_>>(), ["/sub"]);
    s.repo.restic(["check", "--read-data"]).success();
}

#[test]
fn missing_targets_are_left_out() {
    let s = Setup::new();
    let w = s.w();
    // restic only warns; restash names it as an error too (exit code 3), and neither
    // records it in the snapshot.
    let sn = same_as_restic(&s, &w, &w, &["sub", "missing"], 3);
    assert_eq!(sn["paths"], serde_json::json!([s.abs("w/sub")]));
    for tool in [Tool::Restash, Tool::Restic] {
        let out = backup_in(&s.repo, tool, &w, &w, &["sub", "missing"]);
        assert!(
            out.stderr.contains("missing does not exist, skipping"),
            "{tool:?}\n{}",
            out.describe()
        );
        let out = backup_in(&s.repo, tool, &w, &w, &["missing"]).expect_code(1);
        assert!(
            out.stderr
                .contains("all target directories/files do not exist"),
            "{tool:?}\n{}",
            out.describe()
        );
    }
}

#[test]
fn empty_directory_makes_no_snapshot() {
    let s = Setup::new();
    let empty = s.at("empty");
    fs::create_dir(&empty).expect("mkdir");
    let w = s.w();
    for (cwd, args) in [(&empty, &["."][..]), (&w, &["--exclude", "x", "x"][..])] {
        let before = snapshots(&s.repo);
        for tool in [Tool::Restash, Tool::Restic] {
            let out = backup_in(&s.repo, tool, cwd, cwd, args).expect_code(1);
            assert!(
                out.stderr.contains("snapshot is empty"),
                "{tool:?}\n{}",
                out.describe()
            );
        }
        assert_eq!(snapshots(&s.repo).len(), before.len(), "{args:?}");
    }
}

/// restic names the working directory as the shell does (`$PWD`), also when that path
/// goes through a symlink; what it reads is the same.
#[test]
fn working_directory_through_a_symlink_keeps_its_name() {
    let s = Setup::new();
    let link = s.at("link-to-w");
    std::os::unix::fs::symlink("w", &link).expect("symlink");
    let sn = same_as_restic(&s, &link, &link, &[".", "sub"], 0);
    assert_eq!(
        sn["paths"],
        serde_json::json!([s.abs("link-to-w"), s.abs("link-to-w/sub")])
    );
    // A `$PWD` that is not the working directory is ignored.
    let w = s.w();
    let sn = same_as_restic(&s, &w, &s.at("x"), &["f"], 0);
    assert_eq!(sn["paths"], serde_json::json!([s.abs("w/f")]));
}

/// The tricky tree (odd names, hard links, special files) backed up as `.` from inside.
#[test]
fn dot_of_the_tricky_tree() {
    let s = Setup::new();
    let tricky = tricky_in(s.base.path());
    let root = tricky.root.clone();
    let sn = same_as_restic(&s, &root, &root, &["."], 0);
    assert_eq!(sn["paths"], serde_json::json!([root.display().to_string()]));
    s.repo.restic(["check", "--read-data"]).success();
}
