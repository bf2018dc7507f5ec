//! `restash init` and `restash backup` against the real restic 0.14: restic checks, restores
//! and continues what restash writes (same trees, so restic adds nothing), restash continues
//! restic's repositories, parent snapshots are used, every backup flag selects exactly what
//! restic's does, and an unreadable file gives a snapshot tagged `partial` with exit code 3.
//!
//! Sources that are compared by tree id live in `backup::stable_base()`: restic stores the
//! metadata of every directory on the way to an absolute target, so those directories must
//! not change between the two tools' backups.
mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::backup::*;
use common::oracle::*;
use common::tree::write_random_file;
use common::*;
use restash_engine::PARTIAL_TAG;
use serde_json::Value;
use tempfile::TempDir;

/// The tricky tree and restic's two source fixtures, side by side under a stable base.
struct Sources {
    _base: TempDir,
    tricky: TrickyTree,
    fixtures: Vec<PathBuf>,
}

impl Sources {
    fn new() -> Self {
        let base = stable_base();
        let tricky = tricky_in(base.path());
        let fixtures = SOURCE_FIXTURES
            .iter()
            .map(|name| {
                let dir = base.path().join(format!("fx-{name}"));
                unpack_fixture_into(name, &dir);
                dir
            })
            .collect();
        Sources {
            _base: base,
            tricky,
            fixtures,
        }
    }

    /// Every source with the comparison that fits it; the tricky tree last.
    fn all(&self) -> Vec<(PathBuf, CompareOptions)> {
        let mut v: Vec<_> = self
            .fixtures
            .iter()
            .map(|f| (f.clone(), CompareOptions::default()))
            .collect();
        v.push((
            self.tricky.root.clone(),
            self.tricky.restic_compare_options(),
        ));
        v
    }
}

/// `[--compression C] backup --json --host HOST extra… source`
fn backup_args(
    compression: Option<&str>,
    extra: &[&str],
    source: &Path,
) -> Vec<std::ffi::OsString> {
    let mut args = osargs![];
    if let Some(c) = compression {
        args.extend(osargs!["--compression", c]);
    }
    args.extend(osargs!["backup", "--json", "--host", HOST]);
    args.extend(extra.iter().map(Into::into));
    args.push(source.into());
    args
}

#[track_caller]
fn assert_summary_fields(s: &Summary) {
    for field in SUMMARY_FIELDS {
        assert!(
            s.json.get(*field).is_some(),
            "summary lacks restic's field {field:?}: {}\n{}",
            s.json,
            s.context
        );
    }
}

/// Item 1 of the issue, for one repository version and compression mode.
fn restash_writes_what_restic_reads(version: Option<&str>, compression: Option<&str>, want: u64) {
    let sources = Sources::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = init_repo(Tool::Restash, &dir.path().join("repo"), version);
    assert_eq!(repo_version(&repo), want, "repository version after init");

    let mut made = Vec::new();
    for (source, _) in sources.all() {
        let before = snapshots(&repo);
        let out = repo
            .restash(backup_args(compression, &[], &source))
            .success();
        let s = Summary::of(&out);
        assert_summary_fields(&s);
        s.expect("files_new", count_regular_files(&source));
        let sn = new_snapshot(&repo, &before);
        assert_eq!(sn["paths"], serde_json::json!([source]), "snapshot paths");
        assert_eq!(sn["hostname"], HOST, "snapshot hostname");
        made.push(sn);
    }
    repo.restic(["check", "--read-data"]).success();

    for ((source, opts), sn) in sources.all().iter().zip(&made) {
        let target = tempfile::tempdir().expect("tempdir");
        repo.restic(osargs![
            "restore",
            snapshot_id(sn),
            "--target",
            target.path()
        ])
        .success();
        assert_trees_equal(source, &restored_path(target.path(), source), opts);
    }

    for ((source, _), sn) in sources.all().iter().zip(&made) {
        // restic takes restash's snapshot as parent (same host and paths) and must find
        // every file unchanged: restash stored the mtime, ctime, size and inode restic
        // compares, and byte-identical trees (same JSON), so nothing at all is added.
        let before = snapshots(&repo);
        let out = repo.restic(backup_args(compression, &[], source)).success();
        let s = Summary::of(&out);
        s.expect("files_unmodified", count_regular_files(source));
        s.expect("files_new", 0);
        s.expect("files_changed", 0);
        s.expect("data_added", 0);
        let rsn = new_snapshot(&repo, &before);
        assert_eq!(
            rsn["parent"], sn["id"],
            "restic did not use restash's snapshot as parent"
        );
        assert_eq!(
            rsn["tree"], sn["tree"],
            "restic's root tree differs from restash's for {source:?}"
        );

        // --force makes restic read and chunk every file again: restash's chunk boundaries
        // (the repository's polynomial) and blob ids must be restic's.
        let before = snapshots(&repo);
        let out = repo
            .restic(backup_args(compression, &["--force"], source))
            .success();
        let s = Summary::of(&out);
        s.expect("data_blobs", 0);
        s.expect("data_added", 0);
        let rsn = new_snapshot(&repo, &before);
        assert_eq!(
            rsn["tree"], sn["tree"],
            "restic --force root tree differs for {source:?}"
        );
    }

    // Keeping only the newest snapshot makes prune drop the fixtures' data and repack the
    // packs restash wrote together with the tricky tree's blobs.
    repo.restic(["forget", "--keep-last", "1", "--group-by", "", "--prune"])
        .success();
    assert_eq!(snapshots(&repo).len(), 1, "forget --keep-last 1");
    repo.restic(["check", "--read-data"]).success();
}

#[test]
fn interop_v1() {
    restash_writes_what_restic_reads(Some("1"), None, 1);
}

/// `restash init` without flags makes a version 2 repository, as restic 0.14 does.
#[test]
fn interop_v2_default_init_compression_auto() {
    restash_writes_what_restic_reads(None, Some("auto"), 2);
}

#[test]
fn interop_v2_compression_off() {
    restash_writes_what_restic_reads(Some("2"), Some("off"), 2);
}

#[test]
fn interop_v2_compression_max() {
    restash_writes_what_restic_reads(Some("2"), Some("max"), 2);
}

/// Item 2: restash continues a restic-made repository without adding data, both through
/// restic's parent snapshot and when reading everything again (`--force`).
#[test]
fn restash_backup_into_restic_repo_adds_nothing() {
    let base = stable_base();
    let tree = tricky_in(base.path());
    let n = count_regular_files(&tree.root);
    for version in ["1", "2"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = init_repo(Tool::Restic, &dir.path().join("repo"), Some(version));
        repo.restic(backup_args(None, &[], &tree.root)).success();
        let rsn = new_snapshot(&repo, &[]);
        let blobs = data_blob_count(&repo);

        let out = repo.restash(backup_args(None, &[], &tree.root)).success();
        let s = Summary::of(&out);
        assert_summary_fields(&s);
        s.expect("files_unmodified", n);
        s.expect("files_new", 0);
        s.expect("files_changed", 0);
        s.expect("data_blobs", 0);
        s.expect("data_added", 0);
        let sn = new_snapshot(&repo, std::slice::from_ref(&rsn));
        assert_eq!(
            sn["parent"], rsn["id"],
            "v{version}: parent is not restic's snapshot"
        );
        assert_eq!(
            sn["tree"], rsn["tree"],
            "v{version}: root tree differs from restic's"
        );

        let before = snapshots(&repo);
        let out = repo
            .restash(backup_args(None, &["--force"], &tree.root))
            .success();
        let s = Summary::of(&out);
        s.expect("data_blobs", 0);
        s.expect("data_added", 0);
        let sn = new_snapshot(&repo, &before);
        assert_eq!(
            sn["tree"], rsn["tree"],
            "v{version}: --force root tree differs"
        );
        assert_eq!(
            data_blob_count(&repo),
            blobs,
            "v{version}: data blob count changed"
        );
        repo.restic(["check", "--read-data"]).success();
    }
}

/// Item 3: an unchanged tree is recognised through the parent, then one changed and one
/// new file are counted as such, and the result still restores exactly.
#[test]
fn restash_uses_parent_snapshot() {
    let base = stable_base();
    let tree = tricky_in(base.path());
    let n = count_regular_files(&tree.root);
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = init_repo(Tool::Restash, &dir.path().join("repo"), None);
    let backup = |repo: &Repo| {
        let before = snapshots(repo);
        let s = Summary::of(&repo.restash(backup_args(None, &[], &tree.root)).success());
        (s, new_snapshot(repo, &before))
    };

    let (s, first) = backup(&repo);
    s.expect("files_new", n);

    let (s, second) = backup(&repo);
    s.expect("files_unmodified", n);
    s.expect("files_new", 0);
    s.expect("files_changed", 0);
    s.expect("data_blobs", 0);
    assert_eq!(second["parent"], first["id"], "second snapshot's parent");
    assert_eq!(
        second["tree"], first["tree"],
        "unchanged tree, different root tree"
    );
    repo.restic(["check"]).success();

    // Not a hard link, so exactly one name changes.
    let changed = tree.root.join("files/random-odd.bin");
    let mut data = fs::read(&changed).expect("read");
    data.extend_from_slice(b"one more line\n");
    fs::write(&changed, &data).expect("write");
    let (s, third) = backup(&repo);
    s.expect("files_changed", 1);
    s.expect("files_new", 0);
    s.expect("files_unmodified", n - 1);
    assert_eq!(third["parent"], second["id"], "third snapshot's parent");
    repo.restic(["check"]).success();

    fs::write(tree.root.join("files/brand-new.txt"), b"new\n").expect("write");
    let (s, _) = backup(&repo);
    s.expect("files_new", 1);
    s.expect("files_changed", 0);
    s.expect("files_unmodified", n);

    restic_checks_and_restores_latest(&repo, &tree);
}

/// Parent hints (`restash/hints/`) in a repository restic also works on: restic checks and
/// prunes it without a word and leaves the hints alone; restash's next backup, after
/// restic's prune repacked trees and forgot snapshots, finds its parent (by the hint, or
/// the long way when the hint's trees moved), stores nothing again, and restic restores it.
#[test]
fn parent_hints_live_beside_restic() {
    let base = stable_base();
    let tree = tricky_in(base.path());
    let n = count_regular_files(&tree.root);
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = init_repo(Tool::Restash, &dir.path().join("repo"), None);
    let hints = || -> Vec<PathBuf> { walkdir(&repo.path.join("restash/hints")) };
    let backup = |extra: &[&str]| {
        let out = repo.restash(backup_args(None, extra, &tree.root)).success();
        (Summary::of(&out), out)
    };
    backup(&[]);
    let first = hints();
    assert_eq!(first.len(), 1, "one hint after the first backup");
    fs::write(tree.root.join("files/hint-1.txt"), b"one\n").expect("write");
    let (s, out) = backup(&["-vv"]);
    assert!(
        said(&out).contains("found by its hint"),
        "{}",
        out.describe()
    );
    s.expect("files_new", 1);
    s.expect("files_unmodified", n);
    let second = hints();
    assert_eq!(second.len(), 1, "the older hint is removed");
    assert_ne!(first, second);

    // restic: check, a newer snapshot of its own, forget and prune with repacking.
    repo.restic(["check", "--read-data"]).success();
    fs::write(tree.root.join("files/hint-2.txt"), b"two\n").expect("write");
    repo.restic(osargs!["backup", "--host", HOST, &tree.root])
        .success();
    repo.restic(["forget", "--keep-last", "1", "--prune"])
        .success();
    assert_eq!(hints(), second, "restic leaves the hints alone");

    // The hint's snapshot is gone now: the parent is restic's, found the long way.
    let (s, out) = backup(&["-vv"]);
    assert!(
        said(&out).contains("parent hint not used"),
        "{}",
        out.describe()
    );
    s.expect("files_new", 0);
    s.expect("files_unmodified", n + 2);
    s.expect("data_blobs", 0);
    restic_checks_and_restores_latest(&repo, &tree);

    // --no-parent-hint neither reads nor writes them.
    let before = hints();
    let (_, out) = backup(&["-vv", "--no-parent-hint"]);
    assert!(!said(&out).contains("hint"), "{}", out.describe());
    assert_eq!(hints(), before);
}

/// `restic check --read-data`, and restic's restore of the latest snapshot equals `tree`.
fn restic_checks_and_restores_latest(repo: &Repo, tree: &TrickyTree) {
    repo.restic(["check", "--read-data"]).success();
    let target = tempfile::tempdir().expect("tempdir");
    repo.restic(osargs!["restore", "latest", "--target", target.path()])
        .success();
    assert_trees_equal(
        &tree.root,
        &restored_path(target.path(), &tree.root),
        &tree.restic_compare_options(),
    );
}

/// What a command printed, on either stream.
fn said(out: &CmdOutput) -> String {
    format!("{}{}", out.stdout_str(), out.stderr)
}

/// Every file below `dir` (none if it does not exist).
fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Item 4: host, tags, excludes in all their forms, size limits, file lists, several and
/// relative targets, `-x`; restic with the same command line is the reference.
#[test]
fn backup_flags_match_restic() {
    let base = stable_base();
    let root = base.path().join("flags");
    make_flags_tree(&root);
    let r = root.display().to_string();
    // All list files exist before the first backup: creating them later would change the
    // base directory, which both snapshots store.
    let lists = base.path().join("lists");
    fs::create_dir(&lists).expect("mkdir");
    let list = |name: &str, body: String| {
        let p = lists.join(name);
        fs::write(&p, body).expect("write list");
        p.display().to_string()
    };
    let exclude_file = list(
        "exclude",
        format!("# a comment\n\n*.JPG\n   marked   \n{r}/code/*.rs\n"),
    );
    let iexclude_file = list("iexclude", "*.TXT\nLOGS\n".to_string());
    let files_from = list(
        "files-from",
        format!(
            "# a comment\n{r}/docs\n\n   {r}/logs/*.log   \n{r}/names/with space.txt\n\
             {r}/does-not-exist-*\n"
        ),
    );
    let verbatim = list("verbatim", format!("{r}/code\n{r}/names/with space.txt\n"));
    let logs = format!("{r}/logs");
    let (docs, sub, marked) = (
        format!("{r}/docs"),
        format!("{r}/logs/sub"),
        format!("{r}/marked"),
    );
    let cases = vec![
        case(
            "host and tags",
            &[
                "--host",
                "flag-host",
                "--tag",
                "alpha",
                "--tag",
                "beta,gamma",
            ],
            &[&r],
            false,
        ),
        case(
            "exclude",
            &[
                "--exclude",
                "*.bin",
                "--exclude",
                &logs,
                "-e",
                "code/target",
            ],
            &[&r],
            true,
        ),
        case(
            "iexclude",
            &["--iexclude", "*.log", "--iexclude", "README.txt"],
            &[&r],
            true,
        ),
        case(
            "exclude-file",
            &["--exclude-file", &exclude_file],
            &[&r],
            true,
        ),
        case(
            "iexclude-file",
            &["--iexclude-file", &iexclude_file],
            &[&r],
            true,
        ),
        case(
            "exclude-if-present",
            &["--exclude-if-present", ".nobackup"],
            &[&r],
            true,
        ),
        case(
            "exclude-if-present with header",
            &[
                "--exclude-if-present",
                "CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55",
            ],
            &[&r],
            true,
        ),
        case("exclude-caches", &["--exclude-caches"], &[&r], true),
        case(
            "exclude-larger-than 1k",
            &["--exclude-larger-than", "1k"],
            &[&r],
            true,
        ),
        case(
            "exclude-larger-than 1M",
            &["--exclude-larger-than", "1M"],
            &[&r],
            true,
        ),
        case("files-from", &["--files-from", &files_from], &[], false),
        case(
            "files-from-verbatim",
            &["--files-from-verbatim", &verbatim],
            &[],
            false,
        ),
        case("two targets", &[], &[&docs, &sub], false),
        case(
            "mixed",
            &[
                "-e",
                "*.bin",
                "--exclude-if-present",
                ".nobackup",
                "--exclude-larger-than",
                "40k",
                "--tag",
                "x",
            ],
            &[&docs, &marked],
            false,
        ),
        case("one-file-system", &["-x"], &[&r], false),
        Case {
            cwd: Some(root.clone()),
            ..case("relative targets", &[], &["docs", "logs"], false)
        },
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = init_repo(Tool::Restic, &dir.path().join("repo"), None);
    let failures = run_cases(&repo, &cases);
    assert_no_failures(&failures, cases.len());
    repo.restic(["check", "--read-data"]).success();
}

/// `--one-file-system` across a real mount point: /dev/pts (and /dev/shm) are separate file
/// systems in most containers. `--exclude /dev/shm` is a safety net: a restash that ignored
/// `-x` must not copy a multi-gigabyte shared-memory tmpfs.
#[test]
fn one_file_system_stops_at_mount_points() {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &str| fs::symlink_metadata(p).map(|m| m.dev()).ok();
    if dev("/dev").is_none() || dev("/dev/pts").is_none() || dev("/dev") == dev("/dev/pts") {
        eprintln!("SKIPPED: /dev/pts is not a separate mount here; only the smoke case in backup_flags_match_restic runs");
        return;
    }
    let cases = vec![Case {
        nodes: Nodes::Paths,
        ..case(
            "-x /dev",
            &["-x", "--exclude", "/dev/shm"],
            &["/dev"],
            false,
        )
    }];
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = init_repo(Tool::Restic, &dir.path().join("repo"), None);
    let failures = run_cases(&repo, &cases);
    assert_no_failures(&failures, cases.len());
    let listed = ls_nodes(&repo, "latest");
    assert!(
        !listed.keys().any(|p| p.starts_with("/dev/pts/")),
        "-x descended into /dev/pts"
    );
}

/// `--dry-run` writes nothing (same files, same sizes) and counts like restic's dry run,
/// both into an empty repository and against a parent with one file changed.
#[test]
fn dry_run_writes_nothing() {
    let base = stable_base();
    let root = base.path().join("flags");
    make_flags_tree(&root);
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = init_repo(Tool::Restic, &dir.path().join("repo"), None);
    let dry = |tool: Tool| {
        let args = with_repo(
            &repo.path,
            osargs!["backup", "--dry-run", "--json", "--host", HOST, root],
        );
        let before = repo_listing(&repo.path);
        let out = run_tool(tool, args, None, None, &[]).success();
        let after = repo_listing(&repo.path);
        assert_eq!(
            before,
            after,
            "{tool:?} --dry-run changed the repository\n{}",
            out.describe()
        );
        Summary::of(&out)
    };
    let compare = |step: &str| {
        let (ours, theirs) = (dry(Tool::Restash), dry(Tool::Restic));
        assert_eq!(
            ours.json["dry_run"], true,
            "{step}: summary lacks dry_run: true: {}",
            ours.json
        );
        for field in &SUMMARY_FIELDS[..6] {
            assert_eq!(
                ours.n(field),
                theirs.n(field),
                "{step}: {field}: restash {}, restic {}",
                ours.json,
                theirs.json
            );
        }
        for field in ["total_files_processed", "total_bytes_processed"] {
            assert_eq!(
                ours.n(field),
                theirs.n(field),
                "{step}: {field}: restash {}, restic {}",
                ours.json,
                theirs.json
            );
        }
    };
    compare("empty repository");
    assert!(snapshots(&repo).is_empty(), "a dry run made a snapshot");

    repo.restash(osargs!["backup", "--host", HOST, root])
        .success();
    fs::write(root.join("docs/notes.txt"), b"changed notes\n").expect("write");
    compare("with parent");
    assert_eq!(snapshots(&repo).len(), 1, "a dry run made a snapshot");
}

/// `--stdin --stdin-filename`: the snapshot is `/<name>` with the data, as restic's.
#[test]
fn stdin_backup_matches_restic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = init_repo(Tool::Restic, &dir.path().join("repo"), None);
    let mut data = b"-- a database dump\n".to_vec();
    let rnd = dir.path().join("rnd");
    write_random_file(&rnd, 3_000_000, 21);
    data.extend(fs::read(&rnd).expect("read"));
    let variants: [&[&str]; 2] = [&["--stdin-filename", "dump.sql"], &[]];
    for extra in variants {
        let mut args = osargs!["-r", repo.path, "backup", "--stdin", "--host", HOST, "--tag", "db"];
        args.extend(extra.iter().map(Into::into));
        let mut made = Vec::new();
        for tool in [Tool::Restash, Tool::Restic] {
            let before = snapshots(&repo);
            run_tool(tool, &args, Some(&data), None, &[]).success();
            made.push(new_snapshot(&repo, &before));
        }
        let name = extra.get(1).copied().unwrap_or("stdin");
        for field in ["paths", "hostname", "tags", "username"] {
            assert_eq!(
                made[0].get(field),
                made[1].get(field),
                "{name}: snapshot {field}"
            );
        }
        assert_eq!(made[0]["paths"], serde_json::json!([format!("/{name}")]));
        // The file's times are the backup's, so they differ between the two snapshots.
        let strip = |mut m: std::collections::BTreeMap<String, Value>| {
            for v in m.values_mut() {
                for t in ["mtime", "atime", "ctime"] {
                    v.as_object_mut().expect("node").remove(t);
                }
            }
            m
        };
        let a = strip(ls_nodes(&repo, &snapshot_id(&made[0])));
        let b = strip(ls_nodes(&repo, &snapshot_id(&made[1])));
        let diffs = node_diffs(&a, &b, ("restash", "restic"), 20);
        assert!(
            diffs.is_empty(),
            "{name}: ls differs:\n{}",
            diffs.join("\n")
        );
        let dumped = repo
            .restic(osargs!["dump", snapshot_id(&made[0]), format!("/{name}")])
            .success();
        assert!(
            dumped.stdout == data,
            "{name}: dumped data differs from stdin"
        );
    }
    repo.restic(["check", "--read-data"]).success();
}

/// Item 5: as an unprivileged user, a file and a directory that cannot be read are named
/// on stderr, the rest is saved in a snapshot, the exit code is 3 (restic's "incomplete
/// snapshot"), the snapshot lists what restic's lists, and the repository checks. restash's
/// snapshot is tagged `partial`, restic's `tag` keeps that, and a complete backup of the
/// same source on top of it has no such tag.
#[test]
fn unreadable_input_gives_partial_snapshot() {
    let setpriv = Path::new("/usr/bin/setpriv");
    if !is_root() || !setpriv.exists() {
        eprintln!("SKIPPED: needs root and /usr/bin/setpriv to run the tools as nobody");
        return;
    }
    use std::os::unix::fs::{chown, PermissionsExt};
    let nobody = 65534;
    let base = tempfile::tempdir().expect("tempdir");
    let base = base.path();
    let chmod =
        |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).expect("chmod");
    chmod(base, 0o755);
    let src = base.join("src");
    for d in ["src/sub", "src/closed-dir"] {
        fs::create_dir_all(base.join(d)).expect("mkdir");
    }
    fs::write(src.join("readable.txt"), b"fine\n").expect("write");
    fs::write(src.join("sub/also-fine.txt"), b"fine too\n").expect("write");
    fs::write(src.join("secret.txt"), b"root only\n").expect("write");
    fs::write(src.join("closed-dir/inside.txt"), b"hidden\n").expect("write");
    chmod(&src.join("secret.txt"), 0o000);
    chmod(&src.join("closed-dir"), 0o000);
    let (home, repos) = (base.join("home"), base.join("repos"));
    for d in [&home, &repos] {
        fs::create_dir(d).expect("mkdir");
        chown(d, Some(nobody), Some(nobody)).expect("chown");
    }
    let repo = Repo::new(repos.join("repo"), None);
    let home_s = home.display().to_string();
    let env = [
        ("HOME", home_s.as_str()),
        ("XDG_CACHE_HOME", home_s.as_str()),
    ];
    let as_nobody = |tool: Tool, args: Vec<std::ffi::OsString>| {
        let mut all = osargs![
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            tool.program()
        ];
        all.extend(tool.argv(args));
        common::run::run_cmd(setpriv, all, &env)
    };
    as_nobody(Tool::Restash, with_repo(&repo.path, ["init"])).success();

    let mut made = Vec::new();
    for tool in [Tool::Restash, Tool::Restic] {
        let out = as_nobody(
            tool,
            with_repo(&repo.path, osargs!["backup", "--host", HOST, src]),
        );
        let out = out.expect_code(3);
        for name in ["secret.txt", "closed-dir"] {
            assert!(
                out.stderr.contains(name),
                "{tool:?}: {name} not named on stderr\n{}",
                out.describe()
            );
        }
        let sn = snapshots(&repo);
        assert_eq!(sn.len(), made.len() + 1, "{tool:?}: no snapshot written");
        made.push(sn.last().expect("snapshot").clone());
    }
    // Only entries below the source: /tmp's own metadata may change between the runs.
    let below = |id: &str| -> std::collections::BTreeMap<String, Value> {
        ls_nodes(&repo, id)
            .into_iter()
            .filter(|(p, _)| Path::new(p).starts_with(&src))
            .collect()
    };
    let (a, b) = (below(&snapshot_id(&made[0])), below(&snapshot_id(&made[1])));
    assert!(
        a.contains_key(&src.join("readable.txt").display().to_string()),
        "readable file missing"
    );
    let diffs = node_diffs(&a, &b, ("restash", "restic"), 20);
    assert!(
        diffs.is_empty(),
        "partial snapshots differ:\n{}",
        diffs.join("\n")
    );
    // restash marks its snapshot, where restic shows and keeps the mark.
    assert_eq!(
        made[0]["tags"],
        serde_json::json!([PARTIAL_TAG]),
        "{}",
        made[0]
    );
    let summary = &stored_snapshot(&repo, &snapshot_id(&made[0]))["summary"];
    assert_eq!(summary["total_files_processed"], 2, "{summary}");
    // restic 0.14's `tag` keeps the mark (and drops the summary it does not know).
    repo.restic(["tag", "--add", "x", &snapshot_id(&made[0])])
        .success();
    let retagged = new_snapshot(&repo, &made[1..]);
    assert_eq!(retagged["tags"], serde_json::json!([PARTIAL_TAG, "x"]));
    // Root reads everything: complete, so no mark, though its parent has one.
    let before = snapshots(&repo);
    let parent = snapshot_id(&retagged);
    repo.restash(osargs!["backup", "--host", HOST, "--parent", &parent, &src])
        .success();
    let complete = new_snapshot(&repo, &before);
    assert!(complete.get("tags").is_none(), "{complete}");
    assert_eq!(complete["parent"], retagged["id"], "{complete}");
    repo.restic(["check", "--read-data"]).success();
}
