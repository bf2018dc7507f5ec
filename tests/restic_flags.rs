//! restic 0.16–0.18's everyday flags against the real restic 0.14: `--retry-lock` waiting
//! for a lock restic holds, `backup --skip-if-unchanged`, `snapshots --group-by`,
//! `--password-command`, `version` and `generate`.
mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::backup::{Background, Tool};
use common::run::run_cmd;
use common::*;
use serde_json::Value;

fn write(path: &Path, data: &str) {
    fs::write(path, data).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
}

/// A repository written by restic with a small source tree, in a directory whose
/// ancestors no other test changes (an unchanged source must give an unchanged tree).
fn repo_with_source() -> (tempfile::TempDir, Repo, std::path::PathBuf) {
    let dir = common::backup::stable_base();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("sub")).expect("mkdir");
    write(&src.join("a.txt"), "alpha\n");
    write(&src.join("sub/b.txt"), "beta\n");
    let repo = Repo::new(dir.path().join("repo"), None);
    repo.restic(["init"]).success();
    (dir, repo, src)
}

/// restic 0.14 holding an exclusive lock: `key passwd` takes it, then waits for the new
/// password on stdin until [`Background::close_stdin`].
fn restic_holding_exclusive_lock(repo: &Repo) -> Background {
    let held = Background::spawn(
        Tool::Restic,
        osargs!["-r", repo.path, "key", "passwd"],
        &[],
        true,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while fs::read_dir(repo.path.join("locks"))
        .expect("locks")
        .count()
        == 0
    {
        assert!(Instant::now() < deadline, "restic never took its lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    held
}

#[test]
fn retry_lock_waits_for_restics_exclusive_lock() {
    let (_dir, repo, src) = repo_with_source();
    let mut held = restic_holding_exclusive_lock(&repo);

    // Without --retry-lock: restic's exit code 11 at once, naming the holder.
    let t = Instant::now();
    let out = repo
        .restash(osargs!["backup", "--host", "h", &src])
        .expect_code(11);
    assert!(out.stderr.contains("already locked"), "{}", out.describe());
    assert!(out.stderr.contains("exclusive: true"), "{}", out.describe());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // With a short --retry-lock it still gives up with 11, after the wait.
    let t = Instant::now();
    let out = repo
        .restash(["--retry-lock", "2s", "prune"])
        .expect_code(11);
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        out.stderr
            .contains("repo already locked, waiting up to 2s for the lock"),
        "{}",
        out.describe()
    );

    // With a long one it waits for restic to let go, then backs up.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        held.close_stdin();
        held.wait()
    });
    let t = Instant::now();
    let out = repo
        .restash(osargs!["--retry-lock", "1m", "backup", "--host", "h", &src])
        .success();
    assert!(t.elapsed() >= Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(out.stdout_str().contains("snapshot"), "{}", out.describe());
    // restic's key passwd failed for want of a password, and removed its lock.
    releaser.join().expect("releaser");
    assert_eq!(repo.restic_snapshots().len(), 1);
    repo.restic(["check", "--read-data"]).success();
}

#[test]
fn retry_lock_rejects_what_go_would_reject() {
    let (_dir, repo, _src) = repo_with_source();
    for bad in ["5", "-1m", "1x", "soon"] {
        let out = repo.restash([format!("--retry-lock={bad}").as_str(), "snapshots"]);
        assert_eq!(out.code, 1, "{bad}: {}", out.describe());
        assert!(out.stderr.contains("retry-lock"), "{}", out.describe());
    }
    repo.restash(["--retry-lock", "1h30m", "snapshots"])
        .success();
}

#[test]
fn skip_if_unchanged_saves_no_snapshot_for_an_idle_volume() {
    let (_dir, repo, src) = repo_with_source();
    let backup = |extra: &[&str]| {
        let mut args = osargs!["backup", "--host", "h", "--skip-if-unchanged"];
        args.extend(extra.iter().map(Into::into));
        args.push(src.clone().into());
        repo.restash(args).success()
    };
    let first = backup(&[]);
    assert!(
        first.stdout_str().contains("snapshot "),
        "{}",
        first.describe()
    );
    let second = backup(&[]);
    assert!(
        second.stdout_str().contains("skipped creating snapshot"),
        "{}",
        second.describe()
    );
    let json = backup(&["--json"]);
    let summary = json
        .json_lines()
        .into_iter()
        .find(|m| m["message_type"] == "summary")
        .expect("summary");
    assert!(summary.get("snapshot_id").is_none(), "{summary}");
    assert_eq!(repo.restic_snapshots().len(), 1);

    // A changed file, or a changed mode, is a new snapshot.
    write(&src.join("a.txt"), "alpha, changed\n");
    backup(&[]);
    assert_eq!(repo.restic_snapshots().len(), 2);
    // Without the flag an unchanged backup still saves one, as restic does.
    repo.restash(osargs!["backup", "--host", "h", &src])
        .success();
    assert_eq!(repo.restic_snapshots().len(), 3);
    repo.restic(["check"]).success();
}

/// The blocks of restic's grouped table, one per group: restic prints groups in Go's
/// map order, which is random, so they are compared as a set.
fn group_blocks(text: &str) -> BTreeSet<String> {
    let mut blocks = BTreeSet::new();
    let mut cur = String::new();
    for line in text.lines() {
        if line.starts_with("snapshots for (") && !cur.is_empty() {
            blocks.insert(std::mem::take(&mut cur));
        }
        cur.push_str(line);
        cur.push('\n');
    }
    if !cur.is_empty() {
        blocks.insert(cur);
    }
    blocks
}

#[test]
fn snapshots_group_by_matches_restic() {
    let (dir, repo, src) = repo_with_source();
    let other = dir.path().join("other");
    fs::create_dir_all(&other).expect("mkdir");
    write(&other.join("c.txt"), "gamma\n");
    for (host, tags, paths) in [
        ("h1", "", vec![&src]),
        ("h2", "t1", vec![&other]),
        ("h1", "t1,t2", vec![&src, &other]),
        ("h1", "", vec![&src]),
    ] {
        let mut args = osargs!["backup", "--host", host];
        if !tags.is_empty() {
            args.extend(osargs!["--tag", tags]);
        }
        args.extend(paths.into_iter().map(|p| p.clone().into_os_string()));
        repo.restic(args).success();
    }
    for flags in [
        &["--group-by", "host"][..],
        &["--group-by", "host,tags"],
        &["-g", "paths", "--compact"],
        &["--group-by", "tags", "--latest", "1"],
        &["--latest", "1"],
        &["--compact"],
    ] {
        let mut args = vec!["snapshots"];
        args.extend(flags);
        // restic 0.14 keeps the newest per host and paths even inside a group; restic
        // 0.17 and restash keep the newest N of each group (see the test below).
        if flags.contains(&"--latest") && flags.contains(&"tags") {
            continue;
        }
        let ours = repo.restash(&args).success();
        let mut restic_args = vec!["--no-lock"];
        restic_args.extend(&args);
        let theirs = repo.restic(&restic_args).success();
        assert_eq!(
            group_blocks(ours.stdout_str()),
            group_blocks(theirs.stdout_str()),
            "{flags:?}\n--- restash\n{}\n--- restic\n{}",
            ours.stdout_str(),
            theirs.stdout_str()
        );
        // The JSON: the same groups with the same keys and snapshot ids.
        let json_set = |out: &CmdOutput| -> BTreeSet<String> {
            match out.json() {
                Value::Array(items) => items
                    .iter()
                    .map(|g| match g.get("group_key") {
                        Some(k) => {
                            let ids: Vec<_> = g["snapshots"]
                                .as_array()
                                .expect("snapshots")
                                .iter()
                                .map(|s| s["id"].clone())
                                .collect();
                            format!("{k} {ids:?}")
                        }
                        None => g["id"].to_string(),
                    })
                    .collect(),
                other => panic!("not an array: {other}"),
            }
        };
        let mut json_args = args.clone();
        json_args.push("--json");
        restic_args.push("--json");
        let ours = repo.restash(&json_args).success();
        let theirs = repo.restic(&restic_args).success();
        assert_eq!(json_set(&ours), json_set(&theirs), "{flags:?}");
    }
}

#[test]
fn snapshots_latest_counts_per_group_as_newer_restic_does() {
    let (_dir, repo, src) = repo_with_source();
    for _ in 0..3 {
        repo.restic(osargs!["backup", "--host", "h1", &src])
            .success();
    }
    repo.restic(osargs!["backup", "--host", "h2", &src])
        .success();
    let out = repo
        .restash(["snapshots", "--group-by", "host", "--latest", "2", "--json"])
        .success()
        .json();
    let mut counts: Vec<(String, usize)> = out
        .as_array()
        .expect("array")
        .iter()
        .map(|g| {
            let host = g["group_key"]["hostname"]
                .as_str()
                .expect("host")
                .to_string();
            (host, g["snapshots"].as_array().expect("list").len())
        })
        .collect();
    counts.sort();
    assert_eq!(counts, [("h1".to_string(), 2), ("h2".to_string(), 1)]);
}

#[test]
fn password_command_as_restic_runs_it() {
    let (_dir, repo, _src) = repo_with_source();
    let no_password = [("RESTIC_PASSWORD", "")];
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = osargs!["-r", repo.path];
        all.extend(args.iter().map(Into::into));
        restash(all, env)
    };
    run(
        &["--password-command", "echo geheim", "snapshots"],
        &no_password,
    )
    .success();
    // Quoted words, run without a shell: `sh -c` is how a pipeline is written.
    run(
        &[
            "--password-command",
            "sh -c 'printf \"%s\\n\" geheim'",
            "snapshots",
        ],
        &no_password,
    )
    .success();
    run(
        &["snapshots"],
        &[
            ("RESTIC_PASSWORD", ""),
            ("RESTIC_PASSWORD_COMMAND", "echo geheim"),
        ],
    )
    .success();
    // The command's answer is the password: a wrong one is restic's exit 12.
    run(
        &["--password-command", "echo wrong", "snapshots"],
        &no_password,
    )
    .expect_code(12);
    // A failing command, or both a file and a command, are exit 1, and the output of the
    // command never shows.
    let out = run(
        &[
            "--password-command",
            "sh -c 'echo secret-out; exit 3'",
            "snapshots",
        ],
        &no_password,
    )
    .expect_code(1);
    assert!(!out.stderr.contains("secret-out"), "{}", out.describe());
    assert!(
        out.stderr.contains("Resolving password failed"),
        "{}",
        out.describe()
    );
    let out = run(
        &[
            "--password-command",
            "echo geheim",
            "--password-file",
            "/dev/null",
            "snapshots",
        ],
        &no_password,
    )
    .expect_code(1);
    assert!(
        out.stderr.contains("mutually exclusive"),
        "{}",
        out.describe()
    );
}

#[test]
fn version_prints_restics_shape() {
    let out = restash(["version"], &[]).success();
    let line = out.stdout_str().trim().to_string();
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(words[0], "restash", "{line}");
    assert_eq!(words[2..4], ["compiled", "with"], "{line}");
    assert!(words.last().expect("platform").contains('/'), "{line}");
    let json = restash(["version", "--json"], &[]).success().json();
    assert_eq!(json["message_type"], "version");
    assert_eq!(json["version"], words[1]);
}

#[test]
fn generate_writes_completions_and_man_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |name: &str| dir.path().join(name);
    restash(
        osargs![
            "generate",
            "--bash-completion",
            p("restash.bash"),
            "--zsh-completion",
            p("_restash"),
            "--fish-completion",
            p("restash.fish"),
            "--man",
            p("man")
        ],
        &[],
    )
    .success();
    // bash accepts the file and registers the completion.
    let out = run_cmd(
        Path::new("/bin/bash"),
        osargs![
            "-c",
            format!(
                "source {} && complete -p restash",
                p("restash.bash").display()
            )
        ],
        &[],
    )
    .success();
    assert!(out.stdout_str().contains("_restash"), "{}", out.describe());
    let zsh = fs::read_to_string(p("_restash")).expect("zsh");
    assert!(
        zsh.starts_with("#compdef restash"),
        "{}",
        &zsh[..80.min(zsh.len())]
    );
    let fish = fs::read_to_string(p("restash.fish")).expect("fish");
    assert!(fish.contains("complete -c restash"));
    for flag in ["retry-lock", "skip-if-unchanged", "password-command"] {
        assert!(zsh.contains(flag) && fish.contains(flag), "{flag}");
    }
    // One page per command, each a roff document naming itself.
    let pages: BTreeSet<String> = fs::read_dir(p("man"))
        .expect("man dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    for page in [
        "restash.1",
        "restash-backup.1",
        "restash-generate.1",
        "restash-version.1",
    ] {
        assert!(pages.contains(page), "{page} missing: {pages:?}");
    }
    let backup = fs::read_to_string(p("man").join("restash-backup.1")).expect("page");
    assert!(
        backup.contains(".TH restash-backup 1"),
        "{}",
        &backup[..200]
    );

    // Completion to stdout, one shell at a time; nothing asked is an error.
    let out = restash(["generate", "--bash-completion", "-"], &[]).success();
    assert!(out.stdout_str().contains("_restash()"));
    restash(
        [
            "generate",
            "--bash-completion",
            "-",
            "--zsh-completion",
            "-",
        ],
        &[],
    )
    .expect_code(1);
    let out = restash(["generate"], &[]).expect_code(1);
    assert!(out.stderr.contains("nothing to do"), "{}", out.describe());
}
