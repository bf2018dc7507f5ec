//! `rewrite` on the memory backend: the new snapshot restores as the source without the
//! excluded paths, keeps its metadata and names its original; unchanged trees and trees
//! already stored are not written again; a dry run and a snapshot with nothing to exclude
//! leave the store as it was.

use std::path::Path;
use std::sync::{Arc, Mutex};

use restash_backend::{Backend, FileType};
use restash_engine::events::{Control, Event};
use restash_engine::rewrite::{run, RewriteOptions, RewriteSummary, REWRITE_TAG};
use restash_engine::{PatternSet, Repository};
use restash_format::{GoTime, SnapshotId};

use crate::common::*;

/// A control that keeps the messages.
fn messages() -> (Control, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let ctl = Control::new(Arc::new(move |e: &Event<'_>| {
        if let Event::Message { text, .. } = e {
            log.lock().unwrap().push(text.to_string());
        }
    }));
    (ctl, seen)
}

fn excluding(patterns: &[String]) -> RewriteOptions {
    RewriteOptions {
        excludes: PatternSet::parse(patterns).unwrap(),
        pack_size: SMALL_PACKS,
        ..RewriteOptions::default()
    }
}

fn rewrite(be: &Arc<restash_backend::MemoryBackend>, opts: &RewriteOptions) -> RewriteSummary {
    let mut repo = open(be.clone());
    run(&mut repo, opts, &Control::default()).expect("rewrite")
}

/// Removes `rel` below `root` as if it had never been there: its parent keeps its mtime.
fn remove_keeping_parent(root: &Path, rel: &str) {
    use std::os::unix::fs::MetadataExt;
    let p = root.join(rel);
    let parent = p.parent().unwrap().to_path_buf();
    let m = std::fs::symlink_metadata(&parent).unwrap();
    if std::fs::symlink_metadata(&p).unwrap().is_dir() {
        std::fs::remove_dir_all(&p).unwrap();
    } else {
        std::fs::remove_file(&p).unwrap();
    }
    set_mtime(&parent, m.mtime(), m.mtime_nsec());
}

fn backup_source() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Arc<restash_backend::MemoryBackend>,
    SnapshotId,
) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    make_source(&src);
    let (be, _) = new_repo(2);
    let mut repo = open(be.clone());
    let first = backup_dir(&mut repo, &src, &options());
    (tmp, src, be, first.snapshot_id.unwrap())
}

fn snapshot_count(be: &dyn Backend) -> usize {
    handles(be, FileType::Snapshot).len()
}

#[test]
fn excluded_file_and_directory_are_gone_and_the_rest_restores() {
    let (tmp, src, be, old) = backup_source();
    let dir = format!("{}/a/b/c", src.display());
    // One anchored pattern (a directory), one that matches a name anywhere.
    let opts = excluding(&[dir.clone(), "exec.sh".into()]);
    let (ctl, said) = messages();
    let mut repo = open(be.clone());
    let sum = run(&mut repo, &opts, &ctl).expect("rewrite");
    assert_eq!(sum.rewritten.len(), 1);
    let new = sum.rewritten[0].1.expect("saved");
    let said = said.lock().unwrap().clone();
    let exec = format!("excluding {}/exec.sh", src.display());
    assert!(said.contains(&format!("excluding {dir}")), "{said:?}");
    assert!(said.contains(&exec), "{said:?}");
    assert!(said.contains(&format!("saved new snapshot {}", new.short())));

    let repo = open(be.clone());
    let (a, b) = (
        repo.load_snapshot(&old).unwrap(),
        repo.load_snapshot(&new).unwrap(),
    );
    assert_eq!(b.original, Some(old));
    assert_eq!(b.tags, [REWRITE_TAG]);
    assert_eq!(
        (&a.time, &a.hostname, &a.paths),
        (&b.time, &b.hostname, &b.paths)
    );
    assert_ne!(a.tree, b.tree);
    assert_eq!(snapshot_count(be.as_ref()), 2, "the original stays");

    // The old snapshot restored, minus what was excluded, is the new one restored.
    let (want, got) = (tmp.path().join("want"), tmp.path().join("got"));
    restore_dir(be.clone(), &old, &src, &want);
    restore_dir(be.clone(), &new, &src, &got);
    remove_keeping_parent(&want, "a/b/c");
    remove_keeping_parent(&want, "exec.sh");
    let diffs = differences(&want, &got);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    run_check(be.clone(), true).assert_clean();

    // The same rewrite of the new snapshot changes nothing: it is left alone.
    let again = RewriteOptions {
        ids: vec![new.to_string()],
        ..opts
    };
    let before = files(be.as_ref());
    let sum = rewrite(&be, &again);
    assert_eq!((sum.rewritten.len(), sum.unchanged), (0, vec![new]));
    assert_eq!(files(be.as_ref()), before);
}

#[test]
fn dry_run_writes_nothing_and_forget_removes_the_original() {
    let (_tmp, src, be, old) = backup_source();
    let mut opts = excluding(&[format!("{}/a", src.display())]);
    opts.dry_run = true;
    opts.forget = true;
    let before = files(be.as_ref());
    let sum = rewrite(&be, &opts);
    assert_eq!(sum.rewritten, [(old, None)]);
    assert!(sum.removed.is_empty());
    assert_eq!(files(be.as_ref()), before, "a dry run writes nothing");

    opts.dry_run = false;
    let sum = rewrite(&be, &opts);
    let new = sum.rewritten[0].1.expect("saved");
    assert_eq!(sum.removed, [old]);
    let ids: Vec<SnapshotId> = handles(be.as_ref(), FileType::Snapshot)
        .into_iter()
        .filter_map(|h| h.id().map(SnapshotId))
        .collect();
    assert_eq!(ids, [new]);
    let s = open(be.clone()).load_snapshot(&new).unwrap();
    assert!(
        s.tags.is_empty(),
        "no rewrite tag with --forget: {:?}",
        s.tags
    );
    assert_eq!(s.original, Some(old));
    run_check(be, true).assert_clean();
}

#[test]
fn trees_already_stored_are_not_stored_again() {
    let (_tmp, _src, be, old) = backup_source();
    // A second snapshot of the same tree, taken later.
    let repo = open(be.clone());
    let mut twin = repo.load_snapshot(&old).unwrap();
    twin.time = GoTime::parse("2030-01-01T00:00:00Z").unwrap();
    repo.save_unpacked(FileType::Snapshot, &twin.to_json())
        .unwrap();
    let packs = handles(be.as_ref(), FileType::Pack).len();
    let index = handles(be.as_ref(), FileType::Index).len();
    let sum = rewrite(&be, &excluding(&["*.txt".into()]));
    assert_eq!(sum.rewritten.len(), 2);
    let repo = open(be.clone());
    let trees: Vec<_> = sum
        .rewritten
        .iter()
        .map(|(_, n)| repo.load_snapshot(&n.unwrap()).unwrap().tree)
        .collect();
    assert_eq!(trees[0], trees[1]);
    // The first rewrite stored the new trees in one pack with its index; the second
    // found them all in the index.
    assert_eq!(handles(be.as_ref(), FileType::Pack).len(), packs + 1);
    assert_eq!(handles(be.as_ref(), FileType::Index).len(), index + 1);
    run_check(be, true).assert_clean();
}

#[test]
fn new_host_and_time_alone_make_a_new_snapshot() {
    let (_tmp, _src, be, old) = backup_source();
    let time = GoTime::parse("2021-02-03T04:05:06+01:00").unwrap();
    let opts = RewriteOptions {
        new_host: Some("elsewhere".into()),
        new_time: Some(time),
        ..RewriteOptions::default()
    };
    let (ctl, said) = messages();
    let mut repo = open(be.clone());
    let sum = run(&mut repo, &opts, &ctl).expect("rewrite");
    let new = sum.rewritten[0].1.unwrap();
    let repo: Repository = open(be.clone());
    let (a, b) = (
        repo.load_snapshot(&old).unwrap(),
        repo.load_snapshot(&new).unwrap(),
    );
    assert_eq!((b.hostname.as_str(), b.time), ("elsewhere", time));
    assert_eq!(a.tree, b.tree, "nothing excluded: the same tree");
    let said = said.lock().unwrap().clone();
    assert!(
        said.contains(&"setting host to elsewhere".to_string()),
        "{said:?}"
    );
    assert!(
        said.contains(&"setting time to 2021-02-03 04:05:06 +0100 +0100".to_string()),
        "{said:?}"
    );
}

#[test]
fn nothing_to_do_and_unknown_ids() {
    let (_tmp, _src, be, _) = backup_source();
    let mut repo = open(be.clone());
    let err = run(&mut repo, &RewriteOptions::default(), &Control::default()).unwrap_err();
    assert!(err.to_string().starts_with("Nothing to do"), "{err}");
    let before = files(be.as_ref());
    let opts = RewriteOptions {
        ids: vec!["deadbeef".into()],
        ..excluding(&["*".into()])
    };
    let sum = rewrite(&be, &opts);
    assert_eq!(sum, RewriteSummary::default());
    assert_eq!(files(be.as_ref()), before);
}
