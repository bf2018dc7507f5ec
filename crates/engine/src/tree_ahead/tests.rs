use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use restash_backend::{Backend, BackendError, FileInfo, FileType, Handle};

use crate::treewalk::{enter_if, walk_restic};
use crate::Repository;

/// Counts tree reads and how many were in flight at once; each takes a little while, as
/// a read from a distant store does.
struct Slow {
    inner: Arc<dyn Backend>,
    reads: AtomicUsize,
    in_flight: AtomicUsize,
    most: AtomicUsize,
}

impl Backend for Slow {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> Result<(), BackendError> {
        self.inner.create()
    }
    fn read(&self, h: &Handle) -> Result<Vec<u8>, BackendError> {
        self.inner.read(h)
    }
    fn read_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        self.inner.read_range_into(h, offset, length, buf)
    }
    fn read_metadata_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5));
        let r = self.inner.read_range_into(h, offset, length, buf);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        r
    }
    fn write(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        self.inner.write(h, data)
    }
    fn stat(&self, h: &Handle) -> Result<u64, BackendError> {
        self.inner.stat(h)
    }
    fn remove(&self, h: &Handle) -> Result<(), BackendError> {
        self.inner.remove(h)
    }
    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, BackendError> {
        self.inner.list(t)
    }
}

/// A repository with one snapshot of 3 × 4 × 3 nested directories, each with a file
/// whose content differs, so that every directory has its own tree.
fn repo_with_snapshot(dir: &std::path::Path) -> (Repository, restash_format::BlobId) {
    for a in 0..3 {
        for b in 0..4 {
            for c in 0..3 {
                let d = dir.join(format!("a{a}/b{b}/c{c}"));
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join("f"), format!("{a}{b}{c}")).unwrap();
            }
        }
    }
    let mut repo = crate::test_util::memory_repo();
    let snap = crate::test_util::backup_dir(&mut repo, dir);
    (repo, snap.tree)
}

fn listing(repo: &Repository, root: &restash_format::BlobId) -> Vec<Vec<u8>> {
    let mut paths = Vec::new();
    walk_restic(repo, root, &mut HashSet::new(), &mut |_, p, node| {
        paths.push(p.as_bytes().to_vec());
        Ok(enter_if(true, node))
    })
    .unwrap();
    paths
}

#[test]
fn a_walk_takes_trees_loaded_ahead_in_parallel() {
    let src = tempfile::tempdir().unwrap();
    let (mut repo, root) = repo_with_snapshot(src.path());
    repo.load_index().unwrap();
    let slow = Arc::new(Slow {
        inner: repo.backend().clone(),
        reads: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
    });
    repo.wrap_backend(|_| slow.clone());

    let one_by_one = listing(&repo, &root);
    let trees = slow.reads.swap(0, Ordering::SeqCst);
    assert_eq!(slow.most.swap(0, Ordering::SeqCst), 1);

    let ahead = repo.prefetching_trees(&[root], || listing(&repo, &root));
    assert_eq!(ahead, one_by_one);
    // Every tree was read once, by the loaders or by the walk, and several at a time.
    assert_eq!(slow.reads.load(Ordering::SeqCst), trees);
    assert!(slow.most.load(Ordering::SeqCst) > 1);

    // Nothing is left behind for a later walk: it reads from the store again.
    let again = listing(&repo, &root);
    assert_eq!(again, one_by_one);
    assert_eq!(slow.reads.load(Ordering::SeqCst), 2 * trees);
}

#[test]
fn a_tree_that_fails_ahead_fails_in_the_walk_with_its_own_error() {
    let src = tempfile::tempdir().unwrap();
    let (mut repo, root) = repo_with_snapshot(src.path());
    repo.load_index().unwrap();
    // The index no longer knows the packs: every load fails, ahead and in the walk.
    repo.unload_index();
    let err = repo
        .prefetching_trees(&[root], || repo.load_tree(&root))
        .unwrap_err();
    assert!(err.to_string().contains("not found in index"), "{err}");
}
