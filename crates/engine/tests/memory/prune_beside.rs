//! Prune beside backups (`--retry-lock`): planning and repacking under a shared lock, the
//! exclusive lock only to delete. A backup that runs meanwhile and reuses a blob prune found
//! unused keeps that blob's pack; a pack whose index arrives late is not deleted as
//! unreferenced; a shared lock held to the end makes prune give up, leaving no new index.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use restash_backend::{Backend, FileType, Handle};
use restash_engine::archiver::{run, JobOptions, Source};
use restash_engine::events::Control;
use restash_engine::prune::{prune_locked, PruneOptions};
use restash_engine::{EngineError, LockPolicy, RepoLock, Repository};

use crate::common::*;

fn waiting() -> LockPolicy {
    LockPolicy {
        wait: Duration::from_secs(1),
        ..LockPolicy::default()
    }
}

fn source(dir: &Path, seed: u64) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/data.bin"), noise(1_500_000, seed)).unwrap();
    std::fs::write(dir.join("small.txt"), format!("{seed}\n")).unwrap();
}

/// Snapshots of `a` and then `b`; `a`'s is forgotten. Returns the store and `b`'s id.
fn forgotten_a(a: &Path, b: &Path) -> (Arc<Tap>, restash_format::SnapshotId) {
    source(a, 10);
    source(b, 20);
    // A blob of `a` that `b` reuses: once `a` is forgotten, its pack is repacked.
    std::fs::copy(a.join("small.txt"), b.join("copied.txt")).unwrap();
    let be = Tap::new_repo(2);
    let dyn_be: Arc<dyn Backend> = be.clone();
    let mut repo = open(dyn_be.clone());
    let snap_a = backup_dir(&mut repo, a, &options()).snapshot_id.unwrap();
    let mut repo = open(dyn_be);
    repo.load_index().unwrap();
    let snap_b = backup_dir(&mut repo, b, &options()).snapshot_id.unwrap();
    be.remove(&Handle::new(FileType::Snapshot, snap_a.0))
        .unwrap();
    (be, snap_b)
}

fn prune(be: &Arc<Tap>) -> restash_engine::Result<restash_engine::prune::PruneStats> {
    let mut repo = open(be.clone());
    prune_locked(
        &mut repo,
        &PruneOptions::default(),
        &waiting(),
        &Control::default(),
    )
}

#[test]
fn a_backup_beside_prune_keeps_the_unused_blobs_it_reuses() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (be, _) = forgotten_a(&a, &b);
    let snap_c = Arc::new(Mutex::new(None));
    let got = snap_c.clone();
    let a2 = a.clone();
    // While prune stages: a backup of `a` again, which finds `a`'s blobs in the index.
    be.after_write(
        FileType::Index,
        Box::new(move |be| {
            // One new file too: new trees, in a pack indexed after prune listed the packs.
            std::fs::write(a2.join("extra.txt"), "written beside prune\n").unwrap();
            let mut repo = Repository::open(be.clone(), PASSWORD, None).unwrap();
            let opts = restash_engine::archiver::BackupOptions {
                host: "other-host".into(),
                ..options()
            };
            let s = run(
                &mut repo,
                Source::Paths(vec![a2]),
                opts,
                &JobOptions::default(),
                &Control::default(),
            )
            .expect("backup beside prune");
            assert_eq!(
                s.data_blobs, 1,
                "a's blobs reused, only the new file stored"
            );
            *got.lock().unwrap() = s.snapshot_id;
        }),
    );
    let stats = prune(&be).expect("prune");
    let snap_c = snap_c.lock().unwrap().expect("the backup ran beside prune");
    assert!(
        stats.packs.remove > 0 || stats.packs.repack > 0,
        "{stats:?}"
    );
    run_check(be.clone(), true).assert_clean();
    let target = tmp.path().join("restored");
    restore_dir(be.clone(), &snap_c, &a, &target);
    let diffs = differences(&a, &target);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    assert!(
        handles(be.as_ref(), FileType::Lock).is_empty(),
        "no lock left"
    );
}

#[test]
fn a_pack_indexed_while_prune_stages_is_not_deleted_as_unreferenced() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (be, _) = forgotten_a(&a, &b);
    // A third backup's packs and its index, as a backup writes them apart: the index comes
    // late, after prune listed the packs.
    let c = tmp.path().join("c");
    source(&c, 30);
    let before = handles(be.as_ref(), FileType::Index);
    let mut repo = open(be.clone());
    repo.load_index().unwrap();
    let snap_c = backup_dir(&mut repo, &c, &options()).snapshot_id.unwrap();
    be.remove(&Handle::new(FileType::Snapshot, snap_c.0))
        .unwrap();
    let late_h = *handles(be.as_ref(), FileType::Index)
        .difference(&before)
        .next()
        .expect("c's index");
    let json = repo
        .load_unpacked(FileType::Index, &late_h.id().unwrap())
        .unwrap();
    let (file, _) = restash_format::IndexFile::from_json(&json).unwrap();
    let pack = file.packs[0].id;
    let late_bytes = be.inner.read(&late_h).unwrap();
    be.inner.remove(&late_h).unwrap();
    let back = late_bytes.clone();
    be.after_write(
        FileType::Index,
        Box::new(move |be| {
            // Another process, holding its own shared lock, indexes the pack now.
            let other = Repository::open(be.clone(), PASSWORD, None).unwrap();
            let lock = RepoLock::acquire(&other, false, false).unwrap();
            be.write(&late_h, &back).unwrap();
            lock.release();
        }),
    );
    prune(&be).expect("prune");
    assert!(
        be.inner.stat(&Handle::new(FileType::Pack, pack.0)).is_ok(),
        "the pack its late index names is still there"
    );
    run_check(be.clone(), true).assert_clean();
}

#[test]
fn a_lock_held_to_the_end_makes_prune_give_up_without_its_new_index() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (be, _) = forgotten_a(&a, &b);
    let before: Vec<Handle> = handles(be.as_ref(), FileType::Index).into_iter().collect();
    let held = Arc::new(Mutex::new(None));
    let keep = held.clone();
    be.after_write(
        FileType::Index,
        Box::new(move |be| {
            let other = Repository::open(be.clone(), PASSWORD, None).unwrap();
            *keep.lock().unwrap() = Some(RepoLock::acquire(&other, false, false).unwrap());
        }),
    );
    match prune(&be) {
        Err(EngineError::Locked(_)) => {}
        other => panic!("prune should give up on the lock: {other:?}"),
    }
    // Every index file it read is there; its new full index is gone; nothing deleted.
    let after: Vec<Handle> = handles(be.as_ref(), FileType::Index).into_iter().collect();
    for h in &before {
        assert!(after.contains(h), "{h} was deleted");
    }
    run_check(be.clone(), true).assert_clean();
    drop(held.lock().unwrap().take());
    prune(&be).expect("prune once the lock is gone");
    run_check(be, true).assert_clean();
}
