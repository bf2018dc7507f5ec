//! The snapshot file restash's `backup` writes carries restic 0.17's `program_version` and
//! `summary` after restic 0.14's fields, which restic 0.14 reads past: it lists and checks
//! the snapshot, and both tools' `cat snapshot` still print the same. restash's `tag` and
//! `copy` keep both fields as they were, `rewrite` recounts the summary's totals as restic
//! 0.17 does.
mod common;

use std::fs;

use common::backup::*;
use common::tree::write_random_file;
use common::*;
use serde_json::Value;

/// The fields of restic 0.17's snapshot summary, in its order.
const SNAPSHOT_SUMMARY_FIELDS: &[&str] = &[
    "backup_start",
    "backup_end",
    "files_new",
    "files_changed",
    "files_unmodified",
    "dirs_new",
    "dirs_changed",
    "dirs_unmodified",
    "data_blobs",
    "tree_blobs",
    "data_added",
    "data_added_packed",
    "total_files_processed",
    "total_bytes_processed",
];

/// The snapshot file records restic 0.17's `program_version` and `summary` (the numbers of
/// the `--json` summary line) after restic 0.14's fields; restic lists and checks it, both
/// tools' `cat snapshot` print the same, and restash's `tag`, `rewrite` and `copy` keep both
/// fields (rewrite with the files and bytes left after excluding).
#[test]
fn snapshot_records_program_version_and_summary() {
    let base = tempfile::tempdir().expect("tempdir");
    let src = base.path().join("src");
    fs::create_dir_all(src.join("sub/deeper")).expect("mkdir");
    fs::write(src.join("a.txt"), b"alpha\n").expect("write");
    fs::write(src.join("empty"), b"").expect("write");
    fs::write(src.join("sub/deeper/c.txt"), b"gamma\n").expect("write");
    write_random_file(&src.join("sub/b.bin"), 300_000, 7);
    let (files, bytes) = (count_regular_files(&src), tree_bytes(&src));
    assert_eq!(files, 4);
    let repo = init_repo(Tool::Restash, &base.path().join("repo"), None);

    let out = repo
        .restash(osargs!["backup", "--json", "--host", HOST, &src])
        .success();
    let line = Summary::of(&out);
    let sn = new_snapshot(&repo, &[]);
    repo.restic(["check", "--read-data"]).success();
    let id = snapshot_id(&sn);
    let stored = stored_snapshot(&repo, &id);
    let keys: Vec<&str> = stored
        .as_object()
        .expect("object")
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys[keys.len() - 2..],
        ["program_version", "summary"],
        "{stored}"
    );
    let version = stored["program_version"].as_str().expect("program_version");
    assert!(version.starts_with("restash "), "{version}");
    assert!(
        stored.get("tags").is_none(),
        "a complete backup has no tags: {stored}"
    );

    let summary = &stored["summary"];
    let fields: Vec<&str> = summary
        .as_object()
        .expect("summary")
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(fields, SNAPSHOT_SUMMARY_FIELDS, "{summary}");
    assert_eq!(summary["total_files_processed"], files, "{summary}");
    assert_eq!(summary["total_bytes_processed"], bytes, "{summary}");
    for f in &SNAPSHOT_SUMMARY_FIELDS[2..] {
        assert_eq!(
            summary[*f], line.json[*f],
            "{f}: snapshot {summary}, line {}",
            line.json
        );
    }
    assert!(summary["data_added_packed"].as_u64().expect("packed") > 0);
    let time = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().expect("time")).expect("RFC 3339")
    };
    assert_eq!(summary["backup_start"], stored["time"]);
    assert!(
        time(&summary["backup_start"]) <= time(&summary["backup_end"]),
        "{summary}"
    );

    // What is shown stays restic 0.14's.
    let shown = repo.restash(["cat", "snapshot", &id]).success();
    assert_eq!(
        shown.stdout,
        repo.restic(["cat", "snapshot", &id]).success().stdout
    );

    let before = snapshots(&repo);
    repo.restash(["tag", "--add", "x", &id]).success();
    let tagged = snapshot_id(&new_snapshot(&repo, &before));
    let before = snapshots(&repo);
    repo.restash(osargs!["rewrite", "--exclude", src.join("a.txt"), &tagged])
        .success();
    let rewritten = snapshot_id(&new_snapshot(&repo, &before));
    let dst = init_repo(Tool::Restash, &base.path().join("dst"), None);
    restash(
        osargs![
            "-r",
            &dst.path,
            "copy",
            "--from-repo",
            &repo.path,
            &rewritten
        ],
        &[("RESTIC_FROM_PASSWORD", PASSWORD)],
    )
    .success();
    let copied = snapshot_id(&new_snapshot(&dst, &[]));
    // As restic 0.17's: rewrite counts what is left, the rest stays as the backup saw it.
    let mut after_rewrite = summary.clone();
    after_rewrite["total_files_processed"] = (files - 1).into();
    after_rewrite["total_bytes_processed"] = (bytes - 6).into();
    for (r, id, want, what) in [
        (&repo, &tagged, summary, "tag"),
        (&repo, &rewritten, &after_rewrite, "rewrite"),
        (&dst, &copied, &after_rewrite, "copy"),
    ] {
        let s = stored_snapshot(r, id);
        assert_eq!(s["summary"], *want, "{what}: {s}");
        assert_eq!(s["program_version"], version, "{what}: {s}");
    }
}
