//! Prune refuses to run while another process holds a lock, touches nothing then, and
//! once the lock is gone removes what no snapshot uses.

use std::collections::BTreeSet;

use restash_backend::{Backend, FileType, Handle};
use restash_engine::events::Control;
use restash_engine::prune::{prune_locked, PruneOptions};
use restash_engine::{EngineError, LockPolicy, RepoLock};

use crate::common::*;

fn prune_waits_for_a_held_lock(exclusive: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for (dir, seed) in [(&a, 10), (&b, 20)] {
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/data.bin"), noise(1_500_000, seed)).unwrap();
        std::fs::write(dir.join("small.txt"), format!("{seed}\n")).unwrap();
    }
    let (be, mut repo) = new_repo(2);
    let snap_a = backup_dir(&mut repo, &a, &options()).snapshot_id.unwrap();
    let packs_a = handles(be.as_ref(), FileType::Pack);
    // A new process for each command, as the CLI runs them: a repository a backup ran on
    // does not know the blobs it saved, and the next backup would index its packs again.
    let mut repo = open(be.clone());
    repo.load_index().unwrap();
    let snap_b = backup_dir(&mut repo, &b, &options()).snapshot_id.unwrap();
    let packs_b: BTreeSet<Handle> = handles(be.as_ref(), FileType::Pack)
        .difference(&packs_a)
        .copied()
        .collect();
    assert!(!packs_a.is_empty() && !packs_b.is_empty());

    // Another process: its own repository handle on the same store, holding a lock.
    let other = open(be.clone());
    let held = RepoLock::acquire(&other, exclusive, false).unwrap();
    be.remove(&Handle::new(FileType::Snapshot, snap_a.0))
        .unwrap();
    let before = files(be.as_ref());

    let mut repo = open(be.clone());
    let r = prune_locked(
        &mut repo,
        &PruneOptions::default(),
        &LockPolicy::default(),
        &Control::default(),
    );
    match r {
        Err(EngineError::Locked(msg)) => assert!(
            msg.contains(&format!("(exclusive: {exclusive})")),
            "the message names the lock in the way: {msg}"
        ),
        Err(e) => panic!("prune failed for another reason: {e}"),
        Ok(_) => panic!("prune ran against a held lock"),
    }
    assert!(
        files(be.as_ref()) == before,
        "a refused prune changed the store"
    );

    held.release();
    drop(held);
    let stats = prune_locked(
        &mut repo,
        &PruneOptions::default(),
        &LockPolicy::default(),
        &Control::default(),
    )
    .unwrap();
    assert_eq!(stats.packs.remove, packs_a.len() as u64, "{stats:?}");
    assert_eq!(
        handles(be.as_ref(), FileType::Pack),
        packs_b,
        "exactly the packs of the forgotten snapshot are gone"
    );
    assert!(
        handles(be.as_ref(), FileType::Lock).is_empty(),
        "no lock left"
    );
    run_check(be.clone(), true).assert_clean();
    let target = tmp.path().join("restored");
    restore_dir(be, &snap_b, &b, &target);
    let diffs = differences(&b, &target);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn prune_refuses_while_another_process_holds_an_exclusive_lock() {
    prune_waits_for_a_held_lock(true);
}

#[test]
fn prune_refuses_while_another_process_holds_a_shared_lock() {
    prune_waits_for_a_held_lock(false);
}
