use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use super::*;
use crate::Id;
use crate::{LocalBackend, MemoryBackend};

/// A memory backend that counts requests in flight, can be slow, and answers every
/// provided trait method differently from the trait's default, so a wrapper that forgets
/// to forward one is caught.
#[derive(Default)]
struct Probe {
    mem: MemoryBackend,
    delay: Duration,
    in_flight: AtomicUsize,
    max_seen: AtomicUsize,
    removed_leftovers: Mutex<Vec<String>>,
}

impl Probe {
    fn slow(delay: Duration) -> Probe {
        Probe {
            delay,
            ..Probe::default()
        }
    }

    fn track<T>(&self, f: impl FnOnce() -> T) -> T {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_seen.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        let r = f();
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        r
    }
}

impl Backend for Probe {
    fn location(&self) -> String {
        "probe:".into()
    }
    fn create(&self) -> Result<(), BackendError> {
        self.track(|| self.mem.create())
    }
    fn read(&self, h: &Handle) -> Result<Vec<u8>, BackendError> {
        self.track(|| self.mem.read(h))
    }
    fn read_range(&self, _: &Handle, _: u64, _: u64) -> Result<Vec<u8>, BackendError> {
        Ok(b"probe-range".to_vec())
    }
    fn read_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        self.track(|| self.mem.read_range_into(h, offset, length, buf))
    }
    fn preferred_read_size(&self) -> u64 {
        12345
    }
    fn lists_immediately(&self) -> bool {
        true
    }
    fn write(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        self.track(|| self.mem.write(h, data))
    }
    fn stat(&self, h: &Handle) -> Result<u64, BackendError> {
        self.track(|| self.mem.stat(h))
    }
    fn remove(&self, h: &Handle) -> Result<(), BackendError> {
        self.track(|| self.mem.remove(h))
    }
    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, BackendError> {
        self.track(|| self.mem.list(t))
    }
    fn list_leftovers(&self) -> Result<Vec<Leftover>, BackendError> {
        Ok(vec![leftover()])
    }
    fn remove_leftover(&self, l: &Leftover) -> Result<(), BackendError> {
        lock(&self.removed_leftovers).push(l.path.clone());
        Ok(())
    }
    fn exists(&self, _: &Handle) -> Result<bool, BackendError> {
        Ok(true)
    }
}

fn leftover() -> Leftover {
    Leftover {
        path: format!("data/ab/{}-tmp-1", "ab".repeat(32)),
        size: 3,
        modified: SystemTime::UNIX_EPOCH,
    }
}

fn pack(n: u8) -> Handle {
    Handle::new(FileType::Pack, Id([n; 32]))
}

fn rate_kib(upload: u64, download: u64) -> Limits {
    Limits::from_kib_per_sec(upload, download)
}

#[test]
fn limited_memory_backend_conforms() {
    let limits = Limits {
        max_in_flight: 2,
        ..rate_kib(64 << 10, 64 << 10)
    };
    let be = LimitedBackend::new(Arc::new(MemoryBackend::new()), limits);
    crate::conformance::run(&be).unwrap();
}

#[test]
fn limited_local_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let local = Arc::new(LocalBackend::new(dir.path().join("repo")));
    let limits = Limits {
        max_in_flight: 1,
        ..rate_kib(64 << 10, 64 << 10)
    };
    let be = LimitedBackend::new(local, limits);
    crate::conformance::run(&be).unwrap();
    assert_eq!(be.location(), dir.path().join("repo").display().to_string());
}

#[test]
fn every_provided_method_reaches_the_inner_backend() {
    let probe = Arc::new(Probe::default());
    let be = LimitedBackend::new(probe.clone(), rate_kib(1 << 20, 1 << 20));
    assert_eq!(be.location(), "probe:");
    assert_eq!(be.preferred_read_size(), 12345);
    assert!(be.lists_immediately());
    assert!(
        be.exists(&pack(1)).unwrap(),
        "the probe says everything exists"
    );
    assert_eq!(be.read_range(&pack(1), 0, 5).unwrap(), b"probe-range");
    assert_eq!(be.list_leftovers().unwrap(), [leftover()]);
    be.remove_leftover(&leftover()).unwrap();
    assert_eq!(*lock(&probe.removed_leftovers), [leftover().path]);
}

#[test]
fn concurrency_cap_is_never_exceeded() {
    let run = |max_in_flight: usize| {
        let probe = Arc::new(Probe::slow(Duration::from_millis(15)));
        let limits = Limits {
            max_in_flight,
            ..Limits::default()
        };
        let be = Arc::new(LimitedBackend::new(probe.clone(), limits));
        let threads: Vec<_> = (0..8u8)
            .map(|i| {
                let be = be.clone();
                std::thread::spawn(move || {
                    be.write(&pack(i), &[i; 100]).unwrap();
                    for _ in 0..4 {
                        assert_eq!(be.stat(&pack(i)).unwrap(), 100);
                        assert_eq!(be.read(&pack(i)).unwrap(), [i; 100]);
                    }
                    be.list(FileType::Pack).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        probe.max_seen.load(Ordering::SeqCst)
    };
    assert_eq!(run(3), 3, "the cap is reached but never exceeded");
    assert_eq!(run(1), 1);
    // Without a cap the probe does see more at once, so the counts above mean something.
    assert!(run(0) > 3);
}

#[test]
fn upload_rate_delays_writes() {
    let be = LimitedBackend::new(Arc::new(MemoryBackend::new()), rate_kib(512, 0));
    let start = Instant::now();
    be.write(&pack(1), &vec![7; 256 << 10]).unwrap();
    let took = start.elapsed();
    // 256 KiB at 512 KiB/s: half a second; generous bounds for a busy machine.
    assert!(took >= Duration::from_millis(400), "took {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // Downloads are not limited by the upload rate: at a 1 KiB/s upload limit, 256 KiB
    // charged to the wrong bucket would take minutes, so the bound cannot flake.
    let mem = Arc::new(MemoryBackend::new());
    mem.write(&pack(1), &vec![7; 256 << 10]).unwrap();
    let slow_up = LimitedBackend::new(mem, rate_kib(1, 0));
    let start = Instant::now();
    assert_eq!(slow_up.read(&pack(1)).unwrap().len(), 256 << 10);
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn download_rate_delays_reads() {
    let mem = Arc::new(MemoryBackend::new());
    mem.write(&pack(1), &vec![7; 256 << 10]).unwrap();
    let be = LimitedBackend::new(mem, rate_kib(0, 512));
    let start = Instant::now();
    let mut buf = Vec::new();
    be.read_range_into(&pack(1), 0, 128 << 10, &mut buf)
        .unwrap();
    be.read_range_into(&pack(1), 128 << 10, 128 << 10, &mut buf)
        .unwrap();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(400), "took {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // The whole-file read is charged too: another 256 KiB, another half second.
    let start = Instant::now();
    be.read(&pack(1)).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(400));
}

#[test]
fn concurrent_transfers_share_the_rate() {
    let be = Arc::new(LimitedBackend::new(
        Arc::new(MemoryBackend::new()),
        rate_kib(512, 0),
    ));
    let start = Instant::now();
    let threads: Vec<_> = (0..2u8)
        .map(|i| {
            let be = be.clone();
            std::thread::spawn(move || {
                be.write(&pack(i), &vec![i; 128 << 10]).unwrap();
                start.elapsed()
            })
        })
        .collect();
    let took: Vec<Duration> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // Together 256 KiB at 512 KiB/s. Taking turns piece by piece, both finish near the
    // end; one whole write after the other would finish the first after a quarter second.
    for t in &took {
        assert!(*t >= Duration::from_millis(350), "took {took:?}");
    }
}

#[test]
fn zero_means_unlimited() {
    let limits = rate_kib(0, 0);
    assert!(limits.is_unlimited());
    assert_eq!(rate_kib(1, 2).upload_bytes_per_sec, 1024);
    assert_eq!(rate_kib(1, 2).download_bytes_per_sec, 2048);
    assert!(!rate_kib(1, 0).is_unlimited());
    let be = LimitedBackend::new(Arc::new(MemoryBackend::new()), limits);
    let start = Instant::now();
    be.write(&pack(1), &vec![1; 8 << 20]).unwrap();
    assert_eq!(be.read(&pack(1)).unwrap().len(), 8 << 20);
    // 0 taken as a rate would stall here; the bound is far above any real run.
    assert!(start.elapsed() < Duration::from_secs(30));
}
