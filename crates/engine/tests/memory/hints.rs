//! Parent hints: a backup that finds its parent by its hint reads neither the snapshots nor
//! the index of other volumes, deduplicates against its parent, and falls back to the whole
//! repository whenever the hint cannot be trusted.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use restash_backend::{Backend, FileType, Handle};
use restash_engine::archiver::{run, BackupOptions, BackupSummary, JobOptions, Source};
use restash_engine::events::{Control, Event, EventSink};
use restash_engine::forget::{retain_host, ExpirePolicy, Retention};
use restash_engine::{LockPolicy, Repository};
use restash_format::{BlobType, Id, ParentHint, SnapshotId};

use crate::common::{differences, new_repo, options, restore_dir, Tap, PASSWORD};

#[derive(Default)]
struct Said(Mutex<Vec<String>>);

impl EventSink for Said {
    fn event(&self, e: &Event<'_>) {
        match e {
            Event::Message { text, .. } | Event::Warning(text) => {
                self.0.lock().unwrap().push(text.to_string())
            }
            _ => {}
        }
    }
}

impl Said {
    fn has(&self, s: &str) -> bool {
        self.0.lock().unwrap().iter().any(|m| m.contains(s))
    }
}

fn repo_on(be: &Arc<Tap>) -> Repository {
    Repository::open_listing(be.clone(), PASSWORD, None, &[]).expect("open")
}

fn job() -> JobOptions {
    JobOptions {
        parent_hints: true,
        ..JobOptions::default()
    }
}

/// One backup of `dir` as host `host`, as a new process: what it said and its summary.
fn backup_as(be: &Arc<Tap>, dir: &Path, host: &str) -> (BackupSummary, Arc<Said>) {
    let mut repo = repo_on(be);
    let said = Arc::new(Said::default());
    let ctl = Control::new(said.clone());
    let opts = BackupOptions {
        host: host.into(),
        ..options()
    };
    let s = run(
        &mut repo,
        Source::Paths(vec![dir.to_path_buf()]),
        opts,
        &job(),
        &ctl,
    )
    .expect("backup");
    (s, said)
}

fn hints(be: &Arc<Tap>) -> Vec<Id> {
    be.inner
        .list(FileType::Hint)
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect()
}

fn source(dir: &Path, seed: u64) {
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    for i in 0..20u64 {
        let data = crate::common::noise(1000 + 997 * i as usize, seed * 100 + i);
        std::fs::write(dir.join(format!("sub/f{i}")), data).unwrap();
    }
    std::fs::write(
        dir.join("sub/deeper/big"),
        crate::common::noise(3 << 20, seed),
    )
    .unwrap();
}

/// A store with `others` hosts' snapshots besides `claim-ada`'s first backup of `dir`.
fn fleet(dir: &Path, others: usize) -> Arc<Tap> {
    let be = Tap::new_repo(2);
    let tmp = tempfile::tempdir().unwrap();
    for h in 0..others {
        let d = tmp.path().join(format!("v{h}"));
        source(&d, 100 + h as u64);
        backup_as(&be, &d, &format!("claim-other{h}"));
    }
    source(dir, 1);
    let (first, said) = backup_as(&be, dir, "claim-ada");
    assert!(first.parent.is_none());
    assert!(!said.has("found by its hint"));
    be.take_ops();
    be
}

#[test]
fn a_hinted_backup_reads_only_its_own_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("home");
    let be = fleet(&dir, 3);
    assert_eq!(hints(&be).len(), 4, "one hint per volume");
    let before = hints(&be);

    let (s, said) = backup_as(&be, &dir, "claim-ada");
    let ops = be.take_ops();
    assert!(
        said.has("found by its hint"),
        "{:?}",
        said.0.lock().unwrap()
    );
    assert!(s.parent.is_some());
    assert_eq!(
        (s.files_new, s.files_changed),
        (0, 0),
        "every file from the parent"
    );
    assert_eq!(s.data_blobs, 0);
    for forbidden in ["list snapshots", "list index", "list data", "read index"] {
        assert!(
            !ops.iter().any(|o| o == forbidden),
            "{forbidden} in {ops:?}"
        );
    }
    let snapshot_reads = ops.iter().filter(|o| *o == "read snapshots").count();
    assert_eq!(snapshot_reads, 1, "only the parent: {ops:?}");
    // The new hint replaced this volume's old one; the others' are untouched.
    let after = hints(&be);
    assert_eq!(after.len(), 4);
    assert_eq!(before.iter().filter(|h| !after.contains(h)).count(), 1);

    // What was written restores as the source, from a full index.
    let out = tempfile::tempdir().unwrap();
    restore_dir(be.clone(), &s.snapshot_id.unwrap(), &dir, out.path());
    let diffs = differences(&dir, out.path());
    assert!(diffs.is_empty(), "{diffs:?}");
}

#[test]
fn new_data_is_deduplicated_against_the_parent_and_the_hint_names_every_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("home");
    let be = fleet(&dir, 1);
    // A copy of a file already stored, and one new file.
    std::fs::copy(dir.join("sub/deeper/big"), dir.join("copy")).unwrap();
    std::fs::write(dir.join("sub/new"), crate::common::noise(5000, 77)).unwrap();
    let (s, said) = backup_as(&be, &dir, "claim-ada");
    assert!(said.has("found by its hint"));
    assert_eq!(s.files_new, 2);
    assert_eq!(s.data_blobs, 1, "only the new file's blob is stored");

    // The hint names exactly the blobs the snapshot reaches, where the index has them.
    let mut repo = Repository::open(be.clone(), PASSWORD, None).unwrap();
    repo.load_index().unwrap();
    let id = s.snapshot_id.unwrap();
    let mut want = HashSet::new();
    let mut trees = vec![repo.load_snapshot(&id).unwrap().tree];
    while let Some(t) = trees.pop() {
        want.insert((t, BlobType::Tree));
        for n in repo.load_tree(&t).unwrap().nodes {
            trees.extend(n.subtree);
            want.extend(n.content.into_iter().flatten().map(|b| (b, BlobType::Data)));
        }
    }
    let hint = read_hint(&repo, &be, id);
    let mut have = HashSet::new();
    for p in &hint.packs {
        for b in &p.blobs {
            have.insert((b.id, b.blob_type));
            let loc = repo.index().get(&b.id, b.blob_type).expect("indexed");
            assert_eq!(repo.index().pack_id(loc.pack), p.id);
            assert_eq!((loc.offset, loc.length), (b.offset, b.length));
        }
    }
    assert_eq!(have, want);
}

fn read_hint(repo: &Repository, be: &Arc<Tap>, snap: SnapshotId) -> ParentHint {
    for name in hints(be) {
        let sealed = be.inner.read(&Handle::new(FileType::Hint, name)).unwrap();
        let plain = repo.key().open(&sealed).unwrap();
        let json = restash_format::decode_unpacked(repo.version(), plain).unwrap();
        let h = ParentHint::from_json(&json).unwrap();
        if h.snapshot == snap {
            return h;
        }
    }
    panic!("no hint for {snap:?}");
}

#[test]
fn a_forgotten_parent_or_a_pruned_tree_pack_means_the_whole_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("home");
    let be = fleet(&dir, 1);
    let (second, _) = backup_as(&be, &dir, "claim-ada");
    let second = second.snapshot_id.unwrap();

    // Forgotten: the hint names a snapshot that is gone; the parent is the latest left.
    be.inner
        .remove(&Handle::new(FileType::Snapshot, second.0))
        .unwrap();
    be.take_ops();
    let (s, said) = backup_as(&be, &dir, "claim-ada");
    assert!(said.has("was removed"), "{:?}", said.0.lock().unwrap());
    assert!(s.parent.is_some() && s.parent != Some(second));
    assert_eq!(s.files_new, 0);
    assert!(be.take_ops().iter().any(|o| o == "list snapshots"));

    // A tree pack moved by another program's prune: the hint is not used.
    let hint = {
        let repo = repo_on(&be);
        read_hint(&repo, &be, s.snapshot_id.unwrap())
    };
    let tree_pack = hint
        .packs
        .iter()
        .find(|p| p.blobs.iter().any(|b| b.blob_type == BlobType::Tree))
        .unwrap()
        .id;
    let h = Handle::new(FileType::Pack, tree_pack.0);
    let bytes = be.inner.read(&h).unwrap();
    be.inner.remove(&h).unwrap();
    let (_, said) = backup_as(&be, &dir, "claim-ada");
    assert!(
        said.has("with its trees is gone"),
        "{:?}",
        said.0.lock().unwrap()
    );
    be.inner.write(&h, &bytes).unwrap();
}

#[test]
fn a_damaged_hint_is_reported_and_other_groups_never_match() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("home");
    let be = fleet(&dir, 1);
    // Another host backing up the same path has a group of its own.
    let (s, said) = backup_as(&be, &dir, "claim-bob");
    assert!(s.parent.is_none() && !said.has("found by its hint"));

    let mine: BTreeSet<Id> = hints(&be).into_iter().collect();
    let repo = repo_on(&be);
    let ada = restash_format::HintGroup::of(repo.key(), "claim-ada", &[dir_path(&dir)]);
    let name = *mine
        .iter()
        .find(|n| n.to_hex().starts_with(&ada.to_hex()))
        .expect("ada's hint");
    let h = Handle::new(FileType::Hint, name);
    let mut bytes = be.inner.read(&h).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    be.inner.remove(&h).unwrap();
    be.inner.write(&h, &bytes).unwrap();
    let (s, said) = backup_as(&be, &dir, "claim-ada");
    assert!(
        said.has("do not match its name"),
        "{:?}",
        said.0.lock().unwrap()
    );
    assert!(s.parent.is_some(), "the parent is found the long way");
    // The damaged hint is replaced by the new one.
    assert!(!hints(&be).contains(&name));
}

fn dir_path(dir: &Path) -> String {
    dir.to_str().unwrap().to_string()
}

#[test]
fn hints_are_sealed_with_the_repository_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("home");
    let be = fleet(&dir, 0);
    let name = hints(&be)[0];
    let sealed = be.inner.read(&Handle::new(FileType::Hint, name)).unwrap();
    assert!(repo_on(&be).key().open(&sealed).is_ok());
    let (_, other) = new_repo(2);
    assert!(other.key().open(&sealed).is_err());
    assert!(!String::from_utf8_lossy(&sealed).contains("claim-ada"));
}

#[test]
fn prune_moves_the_hints_with_the_trees_it_repacks() {
    use restash_engine::prune::{prune_locked, PruneOptions};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("home");
    let be = fleet(&dir, 1);
    let first_snapshots: Vec<Id> = be
        .inner
        .list(FileType::Snapshot)
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect();
    // A change in one directory: the new snapshot shares the other directories' trees
    // with the first, in the first backup's tree pack.
    std::fs::write(dir.join("sub/f3"), b"changed").unwrap();
    let (second, said) = backup_as(&be, &dir, "claim-ada");
    assert!(said.has("found by its hint"));
    let second = second.snapshot_id.unwrap();
    let before = read_hint(&repo_on(&be), &be, second);

    // The first backups forgotten: their trees are unused, and their tree packs repacked.
    for id in first_snapshots {
        be.inner
            .remove(&Handle::new(FileType::Snapshot, id))
            .unwrap();
    }
    let mut repo = repo_on(&be);
    let said = Arc::new(Said::default());
    let stats = prune_locked(
        &mut repo,
        &PruneOptions::default(),
        &restash_engine::LockPolicy::default(),
        &Control::new(said.clone()),
    )
    .expect("prune");
    assert!(stats.packs_written > 0, "trees were repacked: {stats:?}");
    assert!(said.has("1 rewritten"), "{:?}", said.0.lock().unwrap());
    // The other volume's hint named a forgotten snapshot's blobs: removed.
    assert!(said.has("1 removed"), "{:?}", said.0.lock().unwrap());
    let after = read_hint(&repo_on(&be), &be, second);
    assert_ne!(before.packs, after.packs);
    assert_eq!(hints(&be).len(), 1);

    let (third, said) = backup_as(&be, &dir, "claim-ada");
    assert!(
        said.has("found by its hint"),
        "{:?}",
        said.0.lock().unwrap()
    );
    assert_eq!((third.files_new, third.files_changed), (0, 0));
    crate::common::run_check(be.clone(), true).assert_clean();
}

#[test]
fn a_cache_that_kept_a_forgotten_parent_is_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("home");
    let be = fleet(&dir, 0);
    let cache_dir = tempfile::tempdir().unwrap();
    // Every run through the same persistent cache, as on a laptop.
    let cached = |be: &Arc<Tap>| -> Repository {
        let mut repo = repo_on(be);
        let id = repo.id().to_string();
        repo.wrap_backend(|inner| {
            Arc::new(restash_backend::CachedBackend::new(inner, cache_dir.path(), &id).unwrap())
        });
        repo
    };
    let run_cached = |be: &Arc<Tap>| {
        let mut repo = cached(be);
        let said = Arc::new(Said::default());
        let s = run(
            &mut repo,
            Source::Paths(vec![dir.clone()]),
            BackupOptions {
                host: "claim-ada".into(),
                ..options()
            },
            &job(),
            &Control::new(said.clone()),
        )
        .expect("backup");
        (s, said)
    };
    let (second, said) = run_cached(&be);
    assert!(said.has("found by its hint"));
    // The cache now holds the second snapshot; the repository loses it.
    let gone = second.snapshot_id.unwrap();
    be.inner
        .remove(&Handle::new(FileType::Snapshot, gone.0))
        .unwrap();
    let (third, said) = run_cached(&be);
    assert!(said.has("was removed"), "{:?}", said.0.lock().unwrap());
    assert_ne!(third.parent, Some(gone));
}

fn retain(be: &Arc<Tap>, latest: SnapshotId, last: i64) -> (Retention, Vec<String>) {
    let repo = repo_on(be);
    let policy = ExpirePolicy {
        last,
        ..ExpirePolicy::default()
    };
    let lock = LockPolicy {
        wait: std::time::Duration::from_secs(5),
        ..LockPolicy::default()
    };
    be.take_ops();
    let r = retain_host(
        &repo,
        "claim-ada",
        Some(latest),
        &policy,
        &lock,
        &Control::default(),
    )
    .expect("retain");
    (r, be.take_ops())
}

fn group_of(be: &Arc<Tap>, snap: SnapshotId) -> Vec<SnapshotId> {
    let repo = repo_on(be);
    let hint = read_hint(&repo, be, snap);
    hint.group
        .expect("the group is known")
        .iter()
        .map(|g| g.id)
        .collect()
}

fn snapshots(be: &Arc<Tap>) -> BTreeSet<SnapshotId> {
    be.inner
        .list(FileType::Snapshot)
        .unwrap()
        .into_iter()
        .map(|f| SnapshotId(f.id))
        .collect()
}

#[test]
fn backup_forget_applies_its_policy_to_the_group_its_hint_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("home");
    let be = fleet(&dir, 3);
    let first: Vec<SnapshotId> = snapshots(&be).into_iter().collect();
    let mut ada = Vec::new();
    for i in 0..3u64 {
        std::fs::write(dir.join("changed"), crate::common::noise(100, i)).unwrap();
        let (s, said) = backup_as(&be, &dir, "claim-ada");
        assert!(said.has("found by its hint"));
        ada.push(s.snapshot_id.unwrap());
    }
    // The first hint was written after reading every snapshot: the group is ada's first.
    assert_eq!(group_of(&be, ada[2]).len(), 4);

    let (r, ops) = retain(&be, ada[2], 2);
    assert!(r.by_hint);
    assert_eq!((r.kept, r.removed.len()), (2, 2), "{r:?}");
    assert!(r.removed.contains(&ada[0]));
    assert!(!ops.iter().any(|o| o == "list snapshots"), "{ops:?}");
    let read = ops.iter().filter(|o| *o == "read snapshots").count();
    assert_eq!(read, 1, "only the latest snapshot is read: {ops:?}");
    let left = snapshots(&be);
    assert_eq!(
        left.len(),
        first.len() - 1 + 2,
        "other volumes' snapshots stay"
    );
    assert_eq!(group_of(&be, ada[2]), vec![ada[1], ada[2]]);

    // After the next backup, another program forgets ada[2]: the group names ada[1],
    // ada[2] (gone) and the latest. Counting ada[2] would keep it in place of ada[1] and
    // remove ada[1].
    let (s, _) = backup_as(&be, &dir, "claim-ada");
    let latest = s.snapshot_id.unwrap();
    assert_eq!(group_of(&be, latest), vec![ada[1], ada[2], latest]);
    be.inner
        .remove(&Handle::new(FileType::Snapshot, ada[2].0))
        .unwrap();
    let (r, _) = retain(&be, latest, 2);
    assert!(r.by_hint && r.removed.is_empty(), "{r:?}");
    assert!(snapshots(&be).contains(&ada[1]));
    assert_eq!(
        group_of(&be, latest),
        vec![ada[1], latest],
        "the gone one is dropped"
    );
}

#[test]
fn backup_forget_for_a_snapshot_no_hint_names_reads_every_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("home");
    let be = fleet(&dir, 2);
    let (s, _) = backup_as(&be, &dir, "claim-ada");
    // No hint of this snapshot: the one given is not the group's newest.
    let (r, ops) = retain(&be, s.parent.unwrap(), 1);
    assert!(!r.by_hint);
    assert!(ops.iter().any(|o| o == "list snapshots"), "{ops:?}");
    assert_eq!((r.kept, r.removed.len()), (1, 1), "{r:?}");
}

#[test]
fn backup_forget_after_a_hint_without_its_group_reads_every_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("home");
    let be = fleet(&dir, 2);
    let (s, _) = backup_as(&be, &dir, "claim-ada");
    // A backup given its parent (`--parent`) reads no other snapshot, so it does not know
    // the group: its hint names none.
    let opts = BackupOptions {
        host: "claim-ada".into(),
        parent: s.snapshot_id,
        ..options()
    };
    let given = run(
        &mut repo_on(&be),
        Source::Paths(vec![dir.clone()]),
        opts,
        &job(),
        &Control::default(),
    )
    .expect("backup");
    let latest = given.snapshot_id.unwrap();
    assert_eq!(read_hint(&repo_on(&be), &be, latest).group, None);
    let (r, ops) = retain(&be, latest, 1);
    assert!(!r.by_hint);
    assert!(ops.iter().any(|o| o == "list snapshots"), "{ops:?}");
    assert_eq!((r.kept, r.removed.len()), (1, 2), "{r:?}");
    // The hint learnt its group from that reading: the next Job's retention is by the
    // hint again, not the long way every night from now on.
    assert_eq!(group_of(&be, latest), vec![latest]);
    std::fs::write(dir.join("changed"), b"next night").unwrap();
    let (next, _) = backup_as(&be, &dir, "claim-ada");
    let (r, _) = retain(&be, next.snapshot_id.unwrap(), 1);
    assert!(r.by_hint, "{r:?}");
    assert_eq!((r.kept, r.removed), (1, vec![latest]));
}
