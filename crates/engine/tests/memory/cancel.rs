//! A backup cancelled at any write leaves a repository that check accepts and that the
//! next backup completes from.

use std::path::Path;
use std::sync::Arc;

use restash_backend::{Backend, FileType, Handle};
use restash_engine::archiver::{backup, BackupOptions, Source};
use restash_engine::events::Control;
use restash_format::BlobType;

use crate::common::*;

/// What cancels the backup run under `ctl`, as SIGINT does.
fn canceller(ctl: &Control) -> impl Fn() + Send + Sync + 'static {
    let cancel = ctl.cancel.clone();
    move || cancel.interrupt()
}

/// Cancels the backup run under `ctl` just before the `n`-th write (0-based) of `store`
/// reaches the repository, or before the backup starts for `None`.
fn cancel_backup_at(store: &Counting, n: Option<usize>, ctl: &Control) {
    match n {
        Some(n) => store.at_write(n, Box::new(canceller(ctl))),
        None => canceller(ctl)(),
    }
}

/// A source that fills a few 4 MiB packs: packs are uploaded while files are still being
/// read, so cancels land between packs as well as in the final flush.
fn source(dir: &Path) {
    for i in 0..4u64 {
        let d = dir.join(format!("d{i}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("data.bin"), noise(2_600_000, 100 + i)).unwrap();
        std::fs::write(d.join("note.txt"), format!("note {i}\n")).unwrap();
    }
}

/// What one run wrote, by kind: packs, index files, snapshots.
fn kind(h: &Handle) -> &'static str {
    match h.file_type() {
        FileType::Pack => "pack",
        FileType::Index => "index",
        FileType::Snapshot => "snapshot",
        FileType::Lock => "lock",
        FileType::Key => "key",
        FileType::Config => "config",
        FileType::Hint => "hint",
    }
}

/// The distinct data blobs of the repository; fails if any is stored twice.
fn data_blobs(be: Arc<dyn Backend>) -> u64 {
    let mut repo = open(be);
    repo.load_index().unwrap();
    let idx = repo.index();
    let data: Vec<_> = idx
        .iter()
        .filter(|(_, t, _)| *t == BlobType::Data)
        .collect();
    for (id, t, _) in &data {
        assert_eq!(idx.all(id, *t).len(), 1, "blob {id} stored twice");
    }
    data.len() as u64
}

fn options_one_reader() -> BackupOptions {
    let mut o = options();
    // One reader: packs fill in the same order every run, so write N of one run is the
    // same stage as write N of another and the loop below covers every stage.
    o.workers = 1;
    o
}

#[test]
fn a_backup_cancelled_at_any_write_leaves_a_repository_check_accepts() {
    let (tmp, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = tmp.path().join("src");
    source(&src);

    // Every run starts from a copy of one empty repository: the same chunker polynomial
    // cuts the same chunks, so write N is the same stage in every run.
    let (empty, _) = new_repo(2);

    // The uncancelled run: how many writes there are and what each one is.
    let be = copy(empty.as_ref());
    let store = Counting::new(be.clone());
    let mut repo = open(store.clone());
    repo.load_index().unwrap();
    let full = backup(
        &mut repo,
        Source::Paths(vec![src.clone()]),
        &options_one_reader(),
        &Control::default(),
    )
    .unwrap();
    let plan: Vec<&str> = store.writes().iter().map(kind).collect();
    let packs = plan.iter().filter(|k| **k == "pack").count();
    assert!(packs >= 3, "several packs are written: {plan:?}");
    assert_eq!(plan.last(), Some(&"snapshot"), "{plan:?}");
    let want_blobs = data_blobs(be);
    assert_eq!(want_blobs, full.data_blobs);

    let mut outcomes = Vec::new();
    // Before the backup starts, at every write it makes, and never (n = plan.len()).
    let stages = std::iter::once(None).chain((0..=plan.len()).map(Some));
    for stage in stages {
        let be = copy(empty.as_ref());
        let store = Counting::new(be.clone());
        let mut repo = open(store.clone());
        repo.load_index().unwrap();
        let opts = options_one_reader();
        let ctl = Control::default();
        cancel_backup_at(&store, stage, &ctl);
        let r = backup(&mut repo, Source::Paths(vec![src.clone()]), &opts, &ctl);
        let n = stage.map_or(-1, |n| n as i64);
        let at = match stage {
            None => "start",
            Some(n) => plan.get(n).copied().unwrap_or("none"),
        };
        let snapshots = handles(be.as_ref(), FileType::Snapshot).len();
        match &r {
            Err(restash_engine::EngineError::Interrupted) => {
                assert_eq!(
                    snapshots, 0,
                    "cancelled at {n} ({at}) but a snapshot exists"
                )
            }
            Ok(_) => assert_eq!(snapshots, 1, "completed at {n} ({at})"),
            Err(e) => panic!("cancel at write {n} ({at}): {e}"),
        }
        outcomes.push((at, is_interrupted(&r)));

        let checked = run_check(be.clone(), true);
        assert!(
            checked.result.is_ok() && checked.warn.is_empty(),
            "cancel at write {n} ({at}): {checked:?}"
        );
        checked.assert_clean();
        assert!(
            checked.outcome().orphaned_packs.is_empty(),
            "what was uploaded is indexed: {checked:?}"
        );

        // The next run completes and stores only what the cancelled one had not.
        let kept = data_blobs(be.clone());
        let mut repo = open(be.clone());
        repo.load_index().unwrap();
        let next = backup_dir(&mut repo, &src, &options_one_reader());
        assert_eq!(kept + next.data_blobs, want_blobs, "cancel at {n}");
        assert_eq!(data_blobs(be.clone()), want_blobs, "cancel at {n}");
        let target = out.path().join(format!("restored-{n}"));
        restore_dir(be.clone(), &next.snapshot_id.unwrap(), &src, &target);
        let diffs = differences(&src, &target);
        assert!(diffs.is_empty(), "cancel at {n}:\n{}", diffs.join("\n"));
        std::fs::remove_dir_all(&target).unwrap();
    }
    eprintln!("write at which the cancel came → interrupted: {outcomes:?}");

    // Before the start and before the first pack the backup stops; without a cancel it
    // completes.
    assert!(outcomes[0].1 && outcomes[1].1, "{outcomes:?}");
    assert!(!outcomes.last().unwrap().1, "{outcomes:?}");
    // A later cancel never stops a backup an earlier one let complete.
    let first_ok = outcomes.iter().position(|(_, i)| !i).unwrap();
    assert!(outcomes[first_ok..].iter().all(|(_, i)| !i), "{outcomes:?}");
    // Once every file is read, the backup only saves what it holds and commits: the
    // index and the snapshot are written whatever the flag says.
    assert!(
        outcomes
            .iter()
            .filter(|(at, _)| matches!(*at, "index" | "snapshot"))
            .all(|(_, i)| !i),
        "{outcomes:?}"
    );
}
