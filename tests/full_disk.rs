//! A local repository whose file system fills up during a backup, and one that is mounted
//! read-only. Both are real mounts (a small tmpfs, a read-only bind mount), so this needs
//! root; without it the tests are skipped loudly, and under CI they fail.
//!
//! - Full disk: the backup stops with one error that names ENOSPC and the file it was
//!   writing, with restic 0.14's exit code on the same setup (1), and leaves no partial or
//!   temporary file behind. Once space is freed, restic's `check` passes and a backup
//!   restores equal to its source.
//! - Read-only: `backup` fails at once with one clear error (restic retries its lock for
//!   about 45 s and then exits 1 too), while `snapshots`, `restore` and `check` with
//!   `--no-lock` work, as in restic. Nothing in the repository changes.
mod common;
#[path = "common/servers.rs"]
mod servers;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::backup::{
    assert_latest_restores, data_files, pack_is_complete, repo_listing, run_tool, with_repo, Tool,
    HOST,
};
use common::tree::write_random_file;
use common::*;

/// A mount that is undone when the test ends, however it ends.
struct Mounted {
    path: PathBuf,
}

fn mount(args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let out = Command::new("mount")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "mount {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Mounted {
    /// A tmpfs of `size` (`8m`) at `path`, or `None` (skip; a failure under CI) when this
    /// process may not mount.
    fn tmpfs(path: &Path, size: &str) -> Option<Mounted> {
        std::fs::create_dir_all(path).expect("mkdir mount point");
        let opts = format!("size={size},mode=0700");
        match mount(&[
            "-t".as_ref(),
            "tmpfs".as_ref(),
            "-o".as_ref(),
            opts.as_ref(),
            "tmpfs".as_ref(),
            path.as_ref(),
        ]) {
            Ok(()) => Some(Mounted {
                path: path.to_path_buf(),
            }),
            Err(why) => servers::unavailable("a tmpfs mount (needs root)", &why),
        }
    }

    /// `dir` again at `path`, read-only (root ignores file modes, not a read-only mount).
    fn read_only_bind(dir: &Path, path: &Path) -> Option<Mounted> {
        std::fs::create_dir_all(path).expect("mkdir mount point");
        if let Err(why) = mount(&["--bind".as_ref(), dir.as_ref(), path.as_ref()]) {
            return servers::unavailable("a bind mount (needs root)", &why);
        }
        let m = Mounted {
            path: path.to_path_buf(),
        };
        mount(&["-o".as_ref(), "remount,bind,ro".as_ref(), path.as_ref()])
            .unwrap_or_else(|why| panic!("{why}"));
        Some(m)
    }

    /// Gives the tmpfs a new size, keeping its files.
    fn resize(&self, size: &str) {
        let opts = format!("remount,size={size}");
        mount(&["-o".as_ref(), opts.as_ref(), self.path.as_ref()])
            .unwrap_or_else(|why| panic!("{why}"));
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Busy (a child still running after a failed assertion): detach it anyway.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// A fresh directory for a test, and the path of its source (not created) by its
/// canonical name, as snapshots store it.
fn work_dir() -> (tempfile::TempDir, PathBuf) {
    let base = tempfile::tempdir().expect("tempdir");
    let src = base
        .path()
        .canonicalize()
        .expect("canonicalize")
        .join("src");
    (base, src)
}

/// Files and sizes of a source that does not fit: 12 MiB of incompressible data.
fn big_source(root: &Path) {
    std::fs::create_dir_all(root.join("sub")).expect("mkdir source");
    for i in 0..3u64 {
        write_random_file(&root.join(format!("big{i}")), 4 << 20, 100 + i);
    }
    std::fs::write(root.join("sub/small.txt"), "a small file\n").expect("write");
}

/// The "Fatal:" lines of a run: one clear error, not a cascade.
fn fatal_lines(out: &CmdOutput) -> Vec<&str> {
    out.stderr
        .lines()
        .filter(|l| l.starts_with("Fatal:"))
        .collect()
}

/// Every content-addressed file (packs, index, snapshots) holds what its name says: no
/// truncated file stored under a final name, and no temporary file left.
fn assert_no_partial_files(repo: &Path) {
    let mut files = data_files(repo);
    for dir in ["index", "snapshots", "locks"] {
        files.extend(
            repo_listing(&repo.join(dir))
                .into_keys()
                .map(|p| repo.join(dir).join(p)),
        );
    }
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(!name.contains("-tmp-"), "temporary file left behind: {f:?}");
        assert!(
            pack_is_complete(&f),
            "{f:?} does not hold what its name says"
        );
    }
}

/// `tool` backs `src` up into a fresh repository on an 8 MiB tmpfs that a 2 MiB filler
/// shares: the 12 MiB do not fit. Returns the mount, the repository and the backup's
/// outcome.
fn backup_to_full_disk(
    tool: Tool,
    base: &Path,
    src: &Path,
) -> Option<(Mounted, PathBuf, CmdOutput)> {
    let m = Mounted::tmpfs(&base.join(format!("{tool:?}-fs")), "8m")?;
    let repo = m.path.join("repo");
    run_tool(tool, with_repo(&repo, ["init"]), None, None, &[]).success();
    write_random_file(&m.path.join("filler"), 2 << 20, 7);
    let out = run_tool(
        tool,
        with_repo(&repo, osargs!["backup", "--host", HOST, src]),
        None,
        None,
        &[],
    );
    Some((m, repo, out))
}

#[test]
fn backup_onto_a_full_disk_fails_cleanly_and_damages_nothing() {
    let t = Instant::now();
    let (base, src) = work_dir();
    big_source(&src);

    let Some((_restic_fs, _, restic_out)) = backup_to_full_disk(Tool::Restic, base.path(), &src)
    else {
        return;
    };
    assert_ne!(restic_out.code, 0, "restic: {}", restic_out.describe());
    let Some((fs, repo, out)) = backup_to_full_disk(Tool::Restash, base.path(), &src) else {
        return;
    };
    let why = out.describe();
    assert_eq!(out.code, restic_out.code, "restic's exit code\n{why}");
    assert!(!out.stderr.contains("panicked"), "{why}");
    let fatal = fatal_lines(&out);
    assert_eq!(fatal.len(), 1, "one error\n{why}");
    let msg = fatal[0].to_lowercase();
    assert!(msg.contains("no space left on device"), "{why}");
    // What it was writing: a file of this repository.
    assert!(
        msg.contains(&repo.to_string_lossy().to_lowercase()),
        "{why}"
    );
    assert_no_partial_files(&repo);

    // Space again: first only what the filler held (enough for check's lock), then more.
    std::fs::remove_file(fs.path.join("filler")).expect("remove filler");
    restic(osargs!["-r", &repo, "check"], &[]).success();
    restash(osargs!["-r", &repo, "check"], &[]).success();
    fs.resize("64m");
    restash(osargs!["-r", &repo, "backup", "--host", HOST, &src], &[]).success();
    assert_latest_restores(
        &|args| restash(with_repo(&repo, args), &[]),
        &src,
        &CompareOptions::default(),
    );
    restic(osargs!["-r", &repo, "check", "--read-data"], &[]).success();
    assert_no_partial_files(&repo);
    eprintln!(
        "full disk: restash and restic exit {}, \"{}\"; repository intact, {:.1?}",
        out.code,
        fatal[0],
        t.elapsed()
    );
}

#[test]
fn read_only_repository_reads_with_no_lock_and_refuses_backup() {
    let t = Instant::now();
    let (base, src) = work_dir();
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    write_random_file(&src.join("data"), 1 << 20, 3);
    std::fs::write(src.join("sub/note.txt"), "read me\n").expect("write");
    let rw = base.path().join("rw");
    std::fs::create_dir(&rw).expect("mkdir");
    let repo = rw.join("repo");
    restash(osargs!["-r", &repo, "init"], &[]).success();
    restash(osargs!["-r", &repo, "backup", "--host", HOST, &src], &[]).success();
    let before = repo_listing(&repo);
    let Some(ro) = Mounted::read_only_bind(&rw, &base.path().join("ro")) else {
        return;
    };
    let ro_repo = ro.path.join("repo");

    let out = restash(osargs!["-r", &ro_repo, "backup", "--host", HOST, &src], &[]);
    let why = out.describe();
    // restic 0.14 retries its lock for about 45 s, then: "unable to create lock in
    // backend: open …/locks/…: read-only file system", exit 1.
    assert_eq!(out.code, 1, "{why}");
    assert!(!out.stderr.contains("panicked"), "{why}");
    let fatal = fatal_lines(&out);
    assert_eq!(fatal.len(), 1, "one error\n{why}");
    let msg = fatal[0].to_lowercase();
    assert!(msg.contains("read-only file system"), "{why}");
    assert!(
        msg.contains(&ro_repo.to_string_lossy().to_lowercase()),
        "{why}"
    );

    let listed = |tool: Tool| -> Vec<String> {
        run_tool(
            tool,
            with_repo(&ro_repo, ["snapshots", "--no-lock", "--json"]),
            None,
            None,
            &[],
        )
        .success()
        .snapshot_ids()
    };
    let ids = listed(Tool::Restash);
    assert_eq!(ids.len(), 1);
    assert_eq!(ids, listed(Tool::Restic));
    let target = tempfile::tempdir().expect("tempdir");
    restash(
        osargs![
            "-r",
            &ro_repo,
            "restore",
            "latest",
            "--no-lock",
            "--target",
            target.path()
        ],
        &[],
    )
    .success();
    assert_trees_equal(
        &src,
        &restored_path(target.path(), &src),
        &CompareOptions::default(),
    );
    restash(osargs!["-r", &ro_repo, "check", "--no-lock"], &[]).success();

    drop(ro);
    assert_eq!(repo_listing(&repo), before, "the repository changed");
    restic(osargs!["-r", &repo, "check", "--read-data"], &[]).success();
    eprintln!(
        "read-only repository: backup exits {} with \"{}\"; reads work, {:.1?}",
        out.code,
        fatal[0],
        t.elapsed()
    );
}
