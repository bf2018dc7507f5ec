//! `restash restore --overwrite`, `--delete` and `--dry-run` (restic 0.17/0.18's flags) on
//! a repository written by restic 0.14, which has none of them: real files, the real
//! binary. Every run that exits 0 is followed by a look at the content it left.
mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::tree::{set_mtime, write_random_file};
use common::*;
use tempfile::TempDir;

/// mtime of every source entry: the target's "newer" file is after it, "older" before.
const SNAP_MTIME: i64 = 1_600_000_000;

struct Setup {
    _dir: TempDir,
    src: PathBuf,
    target: PathBuf,
    repo: Repo,
}

impl Setup {
    /// A source backed up by restic 0.14 and restored once by restash into `target`.
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("sub")).expect("mkdir");
        for (rel, data) in [
            ("same", &b"same content"[..]),
            ("changed", b"snapshot content"),
            ("newer", b"snapshot newer"),
            ("older", b"snapshot older"),
            ("sub/keep", b"keep"),
        ] {
            fs::write(src.join(rel), data).expect("write");
        }
        write_random_file(&src.join("sub/big"), 3 << 20, 11);
        for rel in [
            "same", "changed", "newer", "older", "sub/keep", "sub/big", "sub", "",
        ] {
            set_mtime(&src.join(rel), SNAP_MTIME, 0);
        }
        let repo = Repo::new(dir.path().join("repo"), None);
        restic(osargs!["-r", repo.path, "init"], &[]).success();
        restic(osargs!["-r", repo.path, "backup", src], &[]).success();
        let s = Setup {
            target: dir.path().join("target"),
            _dir: dir,
            src,
            repo,
        };
        s.restore(&[]).success();
        s.assert_restored();
        s
    }

    /// `restash restore latest:SRC --target TARGET` with `extra` flags.
    fn restore(&self, extra: &[&str]) -> CmdOutput {
        let mut args: Vec<OsString> = osargs![
            "-r",
            self.repo.path,
            "restore",
            format!("latest:{}", self.src.display()),
            "--target",
            self.target
        ];
        args.extend(extra.iter().map(OsString::from));
        restash(args, &[])
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.target.join(rel)
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        fs::read(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    fn source(&self, rel: &str) -> Vec<u8> {
        fs::read(self.src.join(rel)).expect("read source")
    }

    #[track_caller]
    fn assert_restored(&self) {
        let opts = CompareOptions {
            root_metadata: false,
            ..Default::default()
        };
        assert_trees_equal(&self.src, &self.target, &opts);
    }

    /// `changed`: other bytes, same size and mtime (only reading tells); `newer`/`older`:
    /// other bytes with a later/earlier mtime; `sub/big`: one byte flipped in its middle.
    fn disturb(&self) {
        let w = |rel: &str, data: &[u8], mtime: i64| {
            fs::write(self.path(rel), data).expect("write");
            set_mtime(&self.path(rel), mtime, 0);
        };
        w("changed", b"SNAPSHOT CONTENT", SNAP_MTIME);
        w("newer", b"target newer", SNAP_MTIME + 100);
        w("older", b"target older", SNAP_MTIME - 100);
        let mut big = self.read("sub/big");
        big[1 << 20] ^= 0xff;
        w("sub/big", &big, SNAP_MTIME + 5);
    }
}

/// The `-vv` lines of a run, by item: restic's `%-9v %v[ with size %v]`.
fn actions(out: &CmdOutput) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for line in out.stdout_str().lines() {
        let Some((action, rest)) = line.split_once(' ') else {
            continue;
        };
        if !["restored", "updated", "unchanged", "deleted"].contains(&action) {
            continue;
        }
        let item = rest.trim_start();
        let item = item.split(" with size ").next().expect("item");
        assert!(
            m.insert(item.to_string(), action.to_string()).is_none(),
            "{item} listed twice\n{}",
            out.describe()
        );
    }
    m
}

#[test]
fn each_overwrite_mode_on_changed_unchanged_newer_and_older_files() {
    let s = Setup::new();
    // mode → (what it reports for changed, newer, older, sub/big; whether they hold the
    // snapshot's content afterwards)
    let cases = [
        ("always", ["updated"; 4], [true; 4]),
        (
            "if-changed",
            ["unchanged", "updated", "updated", "updated"],
            [false, true, true, true],
        ),
        (
            "if-newer",
            ["unchanged", "unchanged", "updated", "unchanged"],
            [false, false, true, false],
        ),
        ("never", ["unchanged"; 4], [false; 4]),
    ];
    for (mode, acts, restored) in cases {
        s.disturb();
        let disturbed: Vec<Vec<u8>> = ["changed", "newer", "older", "sub/big"]
            .iter()
            .map(|r| s.read(r))
            .collect();
        let out = s.restore(&["--overwrite", mode, "-vv"]).success();
        let got = actions(&out);
        assert_eq!(got["/same"], "unchanged", "{mode}\n{}", out.describe());
        assert_eq!(got["/sub/keep"], "unchanged", "{mode}");
        assert_eq!(s.read("same"), s.source("same"), "{mode}");
        for (i, rel) in ["changed", "newer", "older", "sub/big"].iter().enumerate() {
            assert_eq!(
                got[&format!("/{rel}")],
                acts[i],
                "{mode} {rel}\n{}",
                out.describe()
            );
            let want = if restored[i] {
                s.source(rel)
            } else {
                disturbed[i].clone()
            };
            assert!(s.read(rel) == want, "{mode}: {rel} has the wrong content");
        }
        // An updated file names its size as restic does.
        if mode == "always" {
            assert!(
                out.stdout_str()
                    .contains("updated   /changed with size 16 B\n"),
                "{}",
                out.describe()
            );
            s.assert_restored();
        }
        // Back to the snapshot for the next mode.
        s.restore(&[]).success();
        s.assert_restored();
    }
}

#[test]
fn unchanged_files_are_not_rewritten() {
    let s = Setup::new();
    let ino = |rel: &str| fs::metadata(s.path(rel)).expect("stat").ino();
    let before = (ino("sub/big"), ino("same"));
    let out = s.restore(&["--json", "-vv"]).success();
    let lines = out.json_lines();
    let summary = lines
        .iter()
        .find(|l| l["message_type"] == "summary")
        .expect("summary");
    assert_eq!(summary["files_skipped"], 6, "{summary}");
    assert_eq!(summary["bytes_skipped"], (3u64 << 20) + 60, "{summary}");
    let status: Vec<_> = lines
        .iter()
        .filter(|l| l["message_type"] == "verbose_status")
        .collect();
    assert!(status
        .iter()
        .any(|l| l["action"] == "unchanged" && l["item"] == "/sub/big" && l["size"] == 3 << 20));
    assert_eq!((ino("sub/big"), ino("same")), before);
    s.assert_restored();
}

#[test]
fn delete_removes_extras_only_inside_the_selection() {
    let s = Setup::new();
    fs::write(s.path("extra"), b"x").expect("write");
    fs::write(s.path("sub/extra"), b"x").expect("write");
    fs::create_dir_all(s.path("sub/extra_dir/deeper")).expect("mkdir");
    fs::write(s.path("sub/extra_dir/deeper/f"), b"x").expect("write");
    std::os::unix::fs::symlink("/", s.path("sub/to_root")).expect("symlink");

    let out = s
        .restore(&["--include", "/sub", "--delete", "-vv"])
        .success();
    assert!(
        s.path("extra").exists(),
        "outside --include\n{}",
        out.describe()
    );
    for gone in ["sub/extra", "sub/extra_dir", "sub/to_root"] {
        assert!(fs::symlink_metadata(s.path(gone)).is_err(), "{gone} left");
    }
    let got = actions(&out);
    for (p, want) in [
        ("sub/extra_dir/deeper/f", "deleted"),
        ("sub/extra_dir/deeper", "deleted"),
        ("sub/extra_dir", "deleted"),
        ("sub/extra", "deleted"),
    ] {
        let key = s.path(p).display().to_string();
        assert_eq!(
            got.get(&key).map(String::as_str),
            Some(want),
            "{p}\n{}",
            out.describe()
        );
    }
    assert!(
        out.stdout_str().contains(", deleted 5 files/dirs"),
        "{}",
        out.describe()
    );
    assert!(
        fs::metadata("/").is_ok(),
        "the symlink's target is untouched"
    );

    // Excluded names stay; everything else not in the snapshot goes.
    fs::write(s.path("sub/x.tmp"), b"x").expect("write");
    s.restore(&["--exclude", "*.tmp", "--delete"]).success();
    assert!(s.path("sub/x.tmp").exists());
    assert!(!s.path("extra").exists());
    s.restore(&["--delete"]).success();
    assert!(!s.path("sub/x.tmp").exists());
    s.assert_restored();

    // A directory where the snapshot has a file, a file where it has a directory.
    fs::remove_file(s.path("same")).expect("rm");
    fs::create_dir_all(s.path("same/inside")).expect("mkdir");
    fs::remove_dir_all(s.path("sub")).expect("rm");
    fs::write(s.path("sub"), b"x").expect("write");
    s.restore(&["--delete"]).success();
    s.assert_restored();
}

/// Every path below `dir` with its mode, size, mtime and content.
fn state(dir: &Path) -> BTreeMap<PathBuf, (u32, u64, i64, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).expect("stat");
        let content = if m.is_file() {
            fs::read(&p).expect("read")
        } else {
            Vec::new()
        };
        if m.is_dir() {
            for e in fs::read_dir(&p).expect("readdir") {
                stack.push(e.expect("entry").path());
            }
        }
        out.insert(p, (m.mode(), m.size(), m.mtime(), m.mtime_nsec(), content));
    }
    out
}

#[test]
fn dry_run_writes_nothing_and_lists_what_it_would_do() {
    let s = Setup::new();
    s.disturb();
    fs::remove_file(s.path("same")).expect("rm");
    fs::write(s.path("extra"), b"x").expect("write");
    let before = state(&s.target);
    let out = s.restore(&["--dry-run", "--delete", "-vv"]).success();
    assert_eq!(state(&s.target), before, "a dry run changed the target");
    let text = out.stdout_str();
    for line in [
        "restored  /same with size 12 B\n",
        "updated   /changed with size 16 B\n",
        "unchanged /sub/keep with size 4 B\n",
        "restored  /sub\n",
    ] {
        assert!(text.contains(line), "missing {line:?}\n{}", out.describe());
    }
    let extra = format!("deleted   {}\n", s.path("extra").display());
    assert!(text.contains(&extra), "{}", out.describe());

    // Without -vv no entry is listed, only the summary.
    let out = s.restore(&["--dry-run", "--delete"]).success();
    assert!(actions(&out).is_empty(), "{}", out.describe());
    assert!(
        out.stdout_str().starts_with("Summary: Restored "),
        "{}",
        out.describe()
    );
    assert_eq!(state(&s.target), before);

    // --json -vv: restic's verbose_status messages.
    let out = s.restore(&["--dry-run", "--json", "-vv"]).success();
    let lines = out.json_lines();
    assert!(lines.iter().any(|l| l["message_type"] == "verbose_status"
        && l["action"] == "updated"
        && l["item"] == "/older"
        && l["size"] == 14));
    assert_eq!(state(&s.target), before);

    // Into a target that does not exist: nothing is created.
    let fresh = s.target.with_file_name("fresh");
    let out = restash(
        osargs![
            "-r",
            s.repo.path,
            "restore",
            format!("latest:{}", s.src.display()),
            "--target",
            fresh,
            "--dry-run",
            "-vv"
        ],
        &[],
    )
    .success();
    assert!(!fresh.exists());
    let acts = actions(&out);
    assert!(!acts.is_empty(), "{}", out.describe());
    assert!(acts.values().all(|a| a == "restored"), "{}", out.describe());
}

#[test]
fn bad_flag_values_are_refused() {
    let s = Setup::new();
    let out = s.restore(&["--overwrite", "sometimes"]);
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(
        out.stderr.contains("invalid overwrite behavior"),
        "{}",
        out.describe()
    );
    let out = s.restore(&["--dry-run", "--verify"]).expect_code(1);
    assert!(
        out.stderr.contains("mutually exclusive"),
        "{}",
        out.describe()
    );
    let out = restash(
        // --dry-run too: were the check missing, nothing may happen to this machine.
        osargs![
            "-r",
            s.repo.path,
            "restore",
            "latest",
            "--target",
            "/",
            "--delete",
            "--dry-run"
        ],
        &[],
    )
    .expect_code(1);
    assert!(
        out.stderr.contains("--target / --delete"),
        "{}",
        out.describe()
    );
    s.assert_restored();
}
