use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;

use super::*;
use crate::{conformance, LimitedBackend, Limits, LocalBackend, MemoryBackend};

const REPO_ID: &str = "5e1f3a9c0b7d4e2f8a6c1b3d5e7f9a0b2c4d6e8f0a1b3c5d7e9f1a2b4c6d8e0f";

/// A memory store that counts the requests that reach it and can be slow, to show what the
/// cache saves and to make concurrent fills overlap. With `cut_whole`, its whole-file
/// answers lose their second half on the way (a proxy that cuts bodies and shortens their
/// length to match), while ranges arrive intact.
#[derive(Default)]
struct Counting {
    mem: MemoryBackend,
    reads: AtomicUsize,
    metadata_reads: AtomicUsize,
    /// Whole-file reads under way, and the most there ever were at once.
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    delay: Duration,
    cut_whole: bool,
}

impl Counting {
    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
}

impl Backend for Counting {
    fn location(&self) -> String {
        "counting:".into()
    }
    fn create(&self) -> Result<(), BackendError> {
        self.mem.create()
    }
    fn read(&self, h: &Handle) -> Result<Vec<u8>, BackendError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut data = self.mem.read(h)?;
        if self.cut_whole {
            data.truncate(data.len() / 2);
        }
        Ok(data)
    }
    fn read_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.mem.read_range_into(h, offset, length, buf)
    }
    fn read_metadata_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        self.metadata_reads.fetch_add(1, Ordering::SeqCst);
        self.read_range_into(h, offset, length, buf)
    }
    fn write(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        self.mem.write(h, data)
    }
    fn stat(&self, h: &Handle) -> Result<u64, BackendError> {
        self.mem.stat(h)
    }
    fn remove(&self, h: &Handle) -> Result<(), BackendError> {
        self.mem.remove(h)
    }
    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, BackendError> {
        self.mem.list(t)
    }
}

/// A file stored under the hash of its bytes, as restic names snapshots, indexes and packs.
fn put(store: &dyn Backend, t: FileType, data: &[u8]) -> Handle {
    let h = Handle::new(t, Id::hash(data));
    store.write(&h, data).unwrap();
    h
}

fn setup(delay: Duration) -> (tempfile::TempDir, Arc<Counting>, CachedBackend) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Counting {
        delay,
        ..Counting::default()
    });
    let cached = CachedBackend::new(store.clone(), dir.path(), REPO_ID).unwrap();
    (dir, store, cached)
}

#[test]
fn conformance_over_memory() {
    let dir = tempfile::tempdir().unwrap();
    let be = CachedBackend::new(Arc::new(MemoryBackend::new()), dir.path(), REPO_ID).unwrap();
    conformance::run(&be).unwrap();
}

#[test]
fn conformance_over_local() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalBackend::new(dir.path().join("repo")));
    let be = CachedBackend::new(store, &dir.path().join("cache"), REPO_ID).unwrap();
    conformance::run(&be).unwrap();
}

#[test]
fn layout_is_restics() {
    let (dir, store, be) = setup(Duration::ZERO);
    assert_eq!(
        fs::read_to_string(dir.path().join("CACHEDIR.TAG")).unwrap(),
        "Signature: 8a477f597d28d172789f06886806bc55\n"
    );
    assert_eq!(be.dir(), dir.path().join(REPO_ID));
    assert_eq!(fs::read_to_string(be.dir().join("version")).unwrap(), "1");
    let snap = put(store.as_ref(), FileType::Snapshot, b"snapshot bytes");
    let idx = put(store.as_ref(), FileType::Index, b"index bytes");
    be.read(&snap).unwrap();
    be.read(&idx).unwrap();
    for (h, sub) in [(&snap, "snapshots"), (&idx, "index")] {
        let p = be.dir().join(sub).join(&h.name()[..2]).join(h.name());
        assert_eq!(be.cache_path(h).unwrap(), p);
        assert!(p.is_file(), "{p:?}");
    }
    // Not cached: keys, locks, the config.
    assert!(be.cache_path(&Handle::config()).is_none());
    assert!(be
        .cache_path(&Handle::new(FileType::Key, Id([0xab; 32])))
        .is_none());
}

#[test]
fn refuses_bad_repository_ids_and_newer_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    for bad in ["", "../x", &"g".repeat(64)] {
        assert!(matches!(
            CachedBackend::new(store.clone(), dir.path(), bad),
            Err(BackendError::Config(_))
        ));
    }
    let repo_dir = dir.path().join(REPO_ID);
    fs::create_dir_all(&repo_dir).unwrap();
    fs::write(repo_dir.join("version"), "2").unwrap();
    assert!(CachedBackend::new(store, dir.path(), REPO_ID).is_err());
}

#[test]
fn second_read_does_not_reach_the_store() {
    let (_dir, store, be) = setup(Duration::ZERO);
    let h = put(store.as_ref(), FileType::Snapshot, b"a snapshot");
    assert_eq!(be.read(&h).unwrap(), b"a snapshot");
    assert_eq!(store.reads(), 1);
    assert_eq!(be.read(&h).unwrap(), b"a snapshot");
    assert_eq!(store.reads(), 1, "the second read came from the cache");
    // A second process with the same cache directory starts warm too.
    let other = CachedBackend::new(store.clone(), be.base(), REPO_ID).unwrap();
    assert_eq!(other.read(&h).unwrap(), b"a snapshot");
    assert_eq!(store.reads(), 1);
}

#[test]
fn damaged_entry_is_refetched_and_replaced() {
    let (_dir, store, be) = setup(Duration::ZERO);
    let h = put(store.as_ref(), FileType::Index, b"an index file");
    be.read(&h).unwrap();
    let path = be.cache_path(&h).unwrap();
    for damage in [&b"an index filE"[..], b"", b"an index file and more"] {
        fs::write(&path, damage).unwrap();
        let before = store.reads();
        assert_eq!(be.read(&h).unwrap(), b"an index file");
        assert_eq!(
            store.reads(),
            before + 1,
            "damage sent the read to the store"
        );
        assert_eq!(fs::read(&path).unwrap(), b"an index file", "entry replaced");
    }
}

#[test]
fn bytes_that_do_not_match_their_name_are_returned_but_not_cached() {
    let (_dir, store, be) = setup(Duration::ZERO);
    let h = Handle::new(FileType::Snapshot, Id([0xab; 32]));
    store.write(&h, b"not what the name says").unwrap();
    assert_eq!(be.read(&h).unwrap(), b"not what the name says");
    assert!(!be.cache_path(&h).unwrap().exists());
    be.read(&h).unwrap();
    assert_eq!(store.reads(), 2);
}

#[test]
fn writes_go_to_the_store_then_the_cache_and_removes_leave_both() {
    let (_dir, store, be) = setup(Duration::ZERO);
    let data = b"new snapshot";
    let h = Handle::new(FileType::Snapshot, Id::hash(data));
    be.write(&h, data).unwrap();
    assert_eq!(store.mem.read(&h).unwrap(), data);
    let path = be.cache_path(&h).unwrap();
    assert_eq!(fs::read(&path).unwrap(), data);
    assert_eq!(be.read(&h).unwrap(), data);
    assert_eq!(store.reads(), 0);
    // A refused write caches nothing new and keeps the old entry.
    assert!(matches!(
        be.write(&h, data),
        Err(BackendError::AlreadyExists(_))
    ));
    be.remove(&h).unwrap();
    assert!(!path.exists());
    assert!(!store.mem.exists(&h).unwrap());
    // A new data pack is not cached on write; a tree pack is, and is read from there.
    let p = Handle::new(FileType::Pack, Id::hash(b"pack"));
    be.write(&p, b"pack").unwrap();
    assert!(!be.cache_path(&p).unwrap().exists());
    let t = Handle::new(FileType::Pack, Id::hash(b"trees"));
    be.write_metadata(&t, b"trees").unwrap();
    assert_eq!(store.mem.read(&t).unwrap(), b"trees");
    assert_eq!(fs::read(be.cache_path(&t).unwrap()).unwrap(), b"trees");
    let mut buf = Vec::new();
    be.read_metadata_range_into(&t, 1, 3, &mut buf).unwrap();
    assert_eq!(buf, b"ree");
    assert_eq!(store.reads(), 0);
}

#[test]
fn files_gone_from_the_store_leave_the_cache_at_the_next_listing() {
    let (_dir, store, be) = setup(Duration::ZERO);
    let keep = put(store.as_ref(), FileType::Snapshot, b"kept");
    let gone = put(store.as_ref(), FileType::Snapshot, b"forgotten elsewhere");
    let idx = put(store.as_ref(), FileType::Index, b"index");
    for h in [&keep, &gone, &idx] {
        be.read(h).unwrap();
    }
    // Another client removes a snapshot behind this cache's back.
    store.mem.remove(&gone).unwrap();
    assert!(be.cache_path(&gone).unwrap().exists());
    let listed = be.list(FileType::Snapshot).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!be.cache_path(&gone).unwrap().exists());
    assert!(be.cache_path(&keep).unwrap().exists());
    assert!(
        be.cache_path(&idx).unwrap().exists(),
        "other types untouched"
    );
    // Until its type is listed again, a cached file stays.
    store.mem.remove(&idx).unwrap();
    assert!(be.cache_path(&idx).unwrap().exists());
}

#[test]
fn a_file_the_store_lists_with_another_size_leaves_the_cache() {
    let (_dir, store, be) = setup(Duration::ZERO);
    let h = put(store.as_ref(), FileType::Snapshot, b"snapshot");
    be.read(&h).unwrap();
    // The store's copy is damaged: the cache must not go on hiding that.
    store.mem.remove(&h).unwrap();
    store.mem.write(&h, b"snapshot+garbage").unwrap();
    be.list(FileType::Snapshot).unwrap();
    assert!(!be.cache_path(&h).unwrap().exists());
    assert_eq!(be.read(&h).unwrap(), b"snapshot+garbage");
    assert!(
        !be.cache_path(&h).unwrap().exists(),
        "damaged bytes are not cached"
    );
}

#[test]
fn stale_temporary_files_are_removed_at_listing_and_fresh_ones_kept() {
    let (_dir, store, be) = setup(Duration::ZERO);
    let h = put(store.as_ref(), FileType::Snapshot, b"s");
    be.read(&h).unwrap();
    let sub = be.cache_path(&h).unwrap().parent().unwrap().to_path_buf();
    let old = sub.join(format!("{}-tmp-0123", h.name()));
    let fresh = sub.join(format!("{}-tmp-4567", h.name()));
    fs::write(&old, b"half").unwrap();
    fs::write(&fresh, b"half").unwrap();
    let f = fs::File::options().write(true).open(&old).unwrap();
    f.set_modified(SystemTime::now() - 2 * STALE_TEMP).unwrap();
    be.list(FileType::Snapshot).unwrap();
    assert!(!old.exists());
    assert!(
        fresh.exists(),
        "maybe another process is filling it right now"
    );
}

#[test]
fn concurrent_readers_of_an_uncached_file_both_get_its_bytes() {
    let (_dir, store, be) = setup(Duration::from_millis(100));
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let h = put(store.as_ref(), FileType::Index, &data);
    let be = Arc::new(be);
    let start = Arc::new(Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (be, h, start) = (be.clone(), h, start.clone());
            std::thread::spawn(move || {
                start.wait();
                be.read(&h).unwrap()
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap() == data);
    }
    assert_eq!(
        store.reads(),
        1,
        "the second reader waited for the first fill"
    );
    assert!(fs::read(be.cache_path(&h).unwrap()).unwrap() == data);
}

#[test]
fn files_with_neighbouring_names_are_fetched_in_parallel() {
    // Commands load snapshot and index files in the sorted order of their names, so the
    // files loaded at the same time share their first bytes: here all of them.
    let (_dir, store, be) = setup(Duration::from_millis(50));
    let handles: Vec<Handle> = (0u32..)
        .map(|i| i.to_le_bytes().to_vec())
        .filter(|d| Id::hash(d).0[0] == 0)
        .take(8)
        .map(|d| put(store.as_ref(), FileType::Snapshot, &d))
        .collect();
    let be = Arc::new(be);
    let start = Arc::new(Barrier::new(handles.len()));
    let threads: Vec<_> = handles
        .iter()
        .map(|h| {
            let (be, h, start) = (be.clone(), *h, start.clone());
            std::thread::spawn(move || {
                start.wait();
                be.read(&h).unwrap()
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let most = store.most_in_flight.load(Ordering::SeqCst);
    assert!(
        most > 1,
        "8 uncached files with one first byte were fetched {most} at a time"
    );
}

#[test]
fn concurrent_processes_see_whole_entries_only() {
    // Two caches on one directory stand for two processes: each fills the same entry.
    let (_dir, store, a) = setup(Duration::from_millis(50));
    let b = CachedBackend::new(store.clone(), a.base(), REPO_ID).unwrap();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
    let h = put(store.as_ref(), FileType::Pack, &data);
    std::thread::scope(|s| {
        for be in [&a, &b] {
            let (h, data) = (&h, &data);
            s.spawn(move || {
                let mut buf = Vec::new();
                for i in 0..20u64 {
                    be.read_metadata_range_into(h, i * 1000, 500, &mut buf)
                        .unwrap();
                    assert!(buf[..] == data[(i * 1000) as usize..(i * 1000 + 500) as usize]);
                }
            });
        }
    });
    let sub = a.cache_path(&h).unwrap();
    let names: Vec<_> = fs::read_dir(sub.parent().unwrap()).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
}

#[test]
fn metadata_ranges_fetch_a_pack_once_and_verify_it() {
    let (_dir, store, be) = setup(Duration::ZERO);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let h = put(store.as_ref(), FileType::Pack, &data);
    let mut buf = vec![0xee; 10];
    for off in [0u64, 5000, 99_000] {
        be.read_metadata_range_into(&h, off, 1000, &mut buf)
            .unwrap();
        assert!(buf[..] == data[off as usize..off as usize + 1000]);
    }
    assert_eq!(store.reads(), 1, "one whole read of the pack");
    let path = be.cache_path(&h).unwrap();
    assert!(path.starts_with(be.dir().join("data").join(&h.name()[..2])));
    assert!(matches!(
        be.read_metadata_range_into(&h, 99_990, 100, &mut buf),
        Err(BackendError::ShortRead { .. })
    ));
    // Plain ranged reads (file contents) still go to the store.
    be.read_range(&h, 0, 10).unwrap();
    assert_eq!(store.reads(), 2);

    // A rewrite changes the file's stamp, so it is hashed again, caught and replaced. (The
    // clock may not tick between two writes this quick, so the new time is set.)
    let mut bad = data.clone();
    bad[50_000] ^= 1;
    fs::write(&path, &bad).unwrap();
    let f = fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    be.read_metadata_range_into(&h, 49_990, 20, &mut buf)
        .unwrap();
    assert!(buf[..] == data[49_990..50_010]);
    assert_eq!(store.reads(), 3);
    assert!(fs::read(&path).unwrap() == data);

    // A fresh process verifies before its first use.
    let other = CachedBackend::new(store.clone(), be.base(), REPO_ID).unwrap();
    fs::write(&path, &bad).unwrap();
    other
        .read_metadata_range_into(&h, 49_990, 20, &mut buf)
        .unwrap();
    assert!(buf[..] == data[49_990..50_010]);
    assert_eq!(store.reads(), 4);
}

#[test]
fn a_pack_that_does_not_match_its_name_is_served_but_not_cached() {
    let (_dir, store, be) = setup(Duration::ZERO);
    let h = Handle::new(FileType::Pack, Id([0xcd; 32]));
    store.write(&h, b"0123456789").unwrap();
    let mut buf = Vec::new();
    be.read_metadata_range_into(&h, 2, 3, &mut buf).unwrap();
    assert_eq!(buf, b"234");
    assert!(!be.cache_path(&h).unwrap().exists());
}

#[test]
fn a_pack_cut_short_on_the_way_is_read_again_as_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Counting {
        cut_whole: true,
        ..Counting::default()
    });
    let be = CachedBackend::new(store.clone(), dir.path(), REPO_ID).unwrap();
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let h = put(store.as_ref(), FileType::Pack, &data);
    let mut buf = Vec::new();
    // Past the half that arrived: the range is read from the store.
    be.read_metadata_range_into(&h, 900, 50, &mut buf).unwrap();
    assert_eq!(buf, data[900..950]);
    assert_eq!(store.reads(), 2, "the whole pack, then the range");
    assert!(
        !be.cache_path(&h).unwrap().exists(),
        "a cut pack is not cached"
    );
}

#[test]
fn metadata_reads_of_other_types_and_layers_are_forwarded() {
    let (_dir, store, be) = setup(Duration::ZERO);
    let h = put(store.as_ref(), FileType::Snapshot, b"snap");
    let mut buf = Vec::new();
    be.read_metadata_range_into(&h, 0, 2, &mut buf).unwrap();
    assert_eq!(store.metadata_reads.load(Ordering::SeqCst), 1);
    // The rate-limit layer passes the method through rather than using the default.
    let limited = LimitedBackend::new(store.clone(), Limits::default());
    limited
        .read_metadata_range_into(&h, 0, 2, &mut buf)
        .unwrap();
    assert_eq!(store.metadata_reads.load(Ordering::SeqCst), 2);
}

#[test]
fn an_unwritable_cache_directory_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"").unwrap();
    let err = CachedBackend::new(Arc::new(MemoryBackend::new()), &file, REPO_ID).unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}
