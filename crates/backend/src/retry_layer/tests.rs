use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::Id;
use crate::MemoryBackend;

/// Tiny backoffs, so that tests that retry take milliseconds.
fn fast(max_retries: usize) -> BackendOptions {
    BackendOptions {
        max_retries,
        retry_timeout: Duration::from_secs(30),
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
        ..BackendOptions::default()
    }
}

fn retryable() -> BackendError {
    BackendError::Other {
        message: "server answered 503".into(),
        retryable: true,
    }
}

/// A memory backend with scripted faults. A failing call fails before it does anything,
/// except a write while `lose_write_answers` lasts: it stores the file and then fails, as a
/// PUT does whose answer is lost on the way back.
struct Flaky {
    mem: MemoryBackend,
    calls: AtomicUsize,
    writes: AtomicUsize,
    /// The next this many calls fail.
    fail_next: AtomicUsize,
    /// The next this many writes store the file, then fail.
    lose_write_answers: AtomicUsize,
    /// The next this many stats fail.
    fail_stats: AtomicUsize,
    /// Nonzero: a xorshift state, and about one call in three fails at random.
    random: AtomicU64,
    error: fn() -> BackendError,
}

impl Flaky {
    fn new() -> Flaky {
        Flaky {
            mem: MemoryBackend::new(),
            calls: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
            fail_next: AtomicUsize::new(0),
            lose_write_answers: AtomicUsize::new(0),
            fail_stats: AtomicUsize::new(0),
            random: AtomicU64::new(0),
            error: retryable,
        }
    }

    fn failing(n: usize, error: fn() -> BackendError) -> Flaky {
        let f = Flaky::new();
        f.fail_next.store(n, Ordering::SeqCst);
        Flaky { error, ..f }
    }

    fn take(counter: &AtomicUsize) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn unlucky(&self) -> bool {
        let mut x = self.random.load(Ordering::SeqCst);
        if x == 0 {
            return false;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random.store(x, Ordering::SeqCst);
        x % 3 == 0
    }

    fn call(&self) -> Result<(), BackendError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if Flaky::take(&self.fail_next) || self.unlucky() {
            return Err((self.error)());
        }
        Ok(())
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Backend for Flaky {
    fn location(&self) -> String {
        "flaky:".into()
    }
    fn create(&self) -> Result<(), BackendError> {
        self.call()?;
        self.mem.create()
    }
    fn read(&self, h: &Handle) -> Result<Vec<u8>, BackendError> {
        self.call()?;
        self.mem.read(h)
    }
    fn read_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        if let Err(e) = self.call() {
            // A connection that broke mid-body leaves part of it behind.
            buf.extend_from_slice(b"partial body");
            return Err(e);
        }
        self.mem.read_range_into(h, offset, length, buf)
    }
    fn write(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if Flaky::take(&self.lose_write_answers) {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let _ = self.mem.write(h, data);
            return Err((self.error)());
        }
        if self.unlucky() {
            // The random faults lose answers of writes too, stored or refused.
            self.calls.fetch_add(1, Ordering::SeqCst);
            let _ = self.mem.write(h, data);
            return Err((self.error)());
        }
        self.call()?;
        self.mem.write(h, data)
    }
    fn stat(&self, h: &Handle) -> Result<u64, BackendError> {
        if Flaky::take(&self.fail_stats) {
            self.calls.fetch_add(1, Ordering::SeqCst);
            return Err((self.error)());
        }
        self.call()?;
        self.mem.stat(h)
    }
    fn remove(&self, h: &Handle) -> Result<(), BackendError> {
        self.call()?;
        self.mem.remove(h)
    }
    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, BackendError> {
        self.call()?;
        self.mem.list(t)
    }
}

fn pack(n: u8) -> Handle {
    Handle::new(FileType::Pack, Id([n; 32]))
}

#[test]
fn retried_memory_backend_conforms() {
    let be = RetryBackend::new(Arc::new(MemoryBackend::new()), &fast(3));
    crate::conformance::run(&be).unwrap();
}

#[test]
fn conforms_when_a_third_of_all_calls_fail() {
    let flaky = Arc::new(Flaky::new());
    flaky.random.store(0x9e37_79b9_7f4a_7c15, Ordering::SeqCst);
    let be = RetryBackend::new(flaky.clone(), &fast(40));
    crate::conformance::run(&be).unwrap();
    let (calls, writes) = (flaky.calls(), flaky.writes.load(Ordering::SeqCst));
    assert!(
        calls > 60,
        "the suite ran through the faults: {calls} calls"
    );
    assert!(writes > 7, "writes were retried: {writes}");
}

#[test]
fn retryable_failures_are_retried_until_success() {
    let flaky = Arc::new(Flaky::failing(2, retryable));
    flaky.mem.write(&pack(1), b"data").unwrap();
    let be = RetryBackend::new(flaky.clone(), &fast(3));
    assert_eq!(be.read(&pack(1)).unwrap(), b"data");
    assert_eq!(flaky.calls(), 3);
}

#[test]
fn final_failures_are_not_retried() {
    let errors: [fn() -> BackendError; 4] = [
        || BackendError::Config("bad URL".into()),
        || BackendError::Other {
            message: "server answered 403 Forbidden".into(),
            retryable: false,
        },
        || BackendError::NotFound("keys/ab".into()),
        || BackendError::Io {
            context: "reading data/ab".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        },
    ];
    for error in errors {
        let flaky = Arc::new(Flaky::failing(usize::MAX, error));
        let be = RetryBackend::new(flaky.clone(), &fast(5));
        let e = be.stat(&pack(1)).unwrap_err();
        assert_eq!(flaky.calls(), 1, "{e}");
        assert!(!e.to_string().contains("gave up"), "{e}");
    }
    // Nor are the answers of a healthy store that a caller acts on.
    let flaky = Arc::new(Flaky::new());
    let be = RetryBackend::new(flaky.clone(), &fast(5));
    be.write(&pack(1), b"a").unwrap();
    assert!(matches!(
        be.write(&pack(1), b"a"),
        Err(BackendError::AlreadyExists(_))
    ));
    assert!(matches!(
        be.read_range(&pack(1), 0, 2),
        Err(BackendError::ShortRead { .. })
    ));
    assert_eq!(
        flaky.calls(),
        3,
        "an AlreadyExists without an earlier failure is not checked"
    );
}

#[test]
fn retries_stop_at_max_retries() {
    let flaky = Arc::new(Flaky::failing(usize::MAX, retryable));
    let be = RetryBackend::new(flaky.clone(), &fast(3));
    let e = be.list(FileType::Snapshot).unwrap_err();
    assert_eq!(flaky.calls(), 4, "1 attempt + max_retries 3");
    assert!(e.is_retryable(), "{e}");
    let text = e.to_string();
    assert!(text.starts_with("server answered 503"), "{text}");
    assert!(text.contains("(gave up after 3 retries in "), "{text}");

    // An I/O error keeps its kind and cause, with the note in its context.
    let flaky = Arc::new(Flaky::failing(usize::MAX, || BackendError::Io {
        context: "reading config".into(),
        source: std::io::Error::from(std::io::ErrorKind::TimedOut),
    }));
    let be = RetryBackend::new(flaky.clone(), &fast(2));
    let e = be.read(&Handle::config()).unwrap_err();
    assert!(
        matches!(&e, BackendError::Io { source, .. } if source.kind() == std::io::ErrorKind::TimedOut)
    );
    assert!(e.to_string().contains("gave up after 2 retries"), "{e}");
}

#[test]
fn retries_stop_at_retry_timeout() {
    let flaky = Arc::new(Flaky::failing(usize::MAX, retryable));
    let opts = BackendOptions {
        max_retries: 1_000_000,
        retry_timeout: Duration::from_millis(200),
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
        ..BackendOptions::default()
    };
    let be = RetryBackend::new(flaky.clone(), &opts);
    let start = Instant::now();
    let e = be.read(&pack(1)).unwrap_err();
    let took = start.elapsed();
    assert!(e.is_retryable(), "{e}");
    assert!(took >= Duration::from_millis(200), "took {took:?}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(
        flaky.calls() >= 2 && flaky.calls() <= 22,
        "{}",
        flaky.calls()
    );

    // No budget at all: one attempt, the error as it came.
    let flaky = Arc::new(Flaky::failing(usize::MAX, retryable));
    let be = RetryBackend::new(flaky.clone(), &fast(0));
    assert_eq!(
        be.read(&pack(1)).unwrap_err().to_string(),
        "server answered 503"
    );
    assert_eq!(flaky.calls(), 1);
}

#[test]
fn a_write_finding_its_own_earlier_attempt_succeeds() {
    let flaky = Arc::new(Flaky::new());
    flaky.lose_write_answers.store(1, Ordering::SeqCst);
    let be = RetryBackend::new(flaky.clone(), &fast(3));
    be.write(&pack(1), b"pack bytes").unwrap();
    assert_eq!(flaky.mem.read(&pack(1)).unwrap(), b"pack bytes");
    assert_eq!(flaky.writes.load(Ordering::SeqCst), 2);

    // The same for a file that is not content-addressed: the config.
    flaky.lose_write_answers.store(2, Ordering::SeqCst);
    be.write(&Handle::config(), b"cfg").unwrap();
    assert_eq!(flaky.mem.read(&Handle::config()).unwrap(), b"cfg");
}

#[test]
fn a_different_existing_file_is_still_a_conflict() {
    for existing in [&b"other bytes"[..], b"pack bytEs", b""] {
        let flaky = Arc::new(Flaky::new());
        flaky.mem.write(&pack(1), existing).unwrap();
        // The first attempt fails before it is sent; the second finds the other file.
        flaky.fail_next.store(1, Ordering::SeqCst);
        let be = RetryBackend::new(flaky.clone(), &fast(3));
        assert!(matches!(
            be.write(&pack(1), b"pack bytes"),
            Err(BackendError::AlreadyExists(_))
        ));
        assert_eq!(flaky.mem.read(&pack(1)).unwrap(), existing, "unchanged");
    }
}

#[test]
fn a_failing_check_of_an_earlier_attempt_is_retried() {
    let flaky = Arc::new(Flaky::new());
    flaky.lose_write_answers.store(1, Ordering::SeqCst);
    flaky.fail_stats.store(1, Ordering::SeqCst);
    let be = RetryBackend::new(flaky.clone(), &fast(5));
    // Write 1 stores and fails; write 2 finds the file, and the stat checking it fails;
    // write 3 finds the file again, and the check passes.
    be.write(&pack(2), b"x").unwrap();
    assert_eq!(flaky.mem.read(&pack(2)).unwrap(), b"x");
    assert_eq!(flaky.writes.load(Ordering::SeqCst), 3);
}

#[test]
fn a_retried_range_read_replaces_the_partial_body() {
    let flaky = Arc::new(Flaky::failing(2, retryable));
    flaky.mem.write(&pack(1), b"0123456789").unwrap();
    let be = RetryBackend::new(flaky.clone(), &fast(3));
    let mut buf = b"old".to_vec();
    be.read_range_into(&pack(1), 2, 5, &mut buf).unwrap();
    assert_eq!(buf, b"23456");
    flaky.fail_next.store(1, Ordering::SeqCst);
    be.read_metadata_range_into(&pack(1), 0, 3, &mut buf)
        .unwrap();
    assert_eq!(buf, b"012");
    assert_eq!(flaky.calls(), 5);
}

/// Answers every provided trait method differently from the trait's default, so a wrapper
/// that forgets to forward one is caught.
struct Probe {
    removed: Mutex<Vec<String>>,
}

fn leftover() -> Leftover {
    Leftover {
        path: format!("data/ab/{}-tmp-1", "ab".repeat(32)),
        size: 3,
        modified: SystemTime::UNIX_EPOCH,
    }
}

impl Backend for Probe {
    fn location(&self) -> String {
        "probe:".into()
    }
    fn create(&self) -> Result<(), BackendError> {
        Ok(())
    }
    fn read(&self, _: &Handle) -> Result<Vec<u8>, BackendError> {
        Ok(Vec::new())
    }
    fn read_range(&self, _: &Handle, _: u64, _: u64) -> Result<Vec<u8>, BackendError> {
        Ok(b"probe-range".to_vec())
    }
    fn read_range_into(
        &self,
        _: &Handle,
        _: u64,
        _: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        buf.extend_from_slice(b"plain");
        Ok(())
    }
    fn read_metadata_range_into(
        &self,
        _: &Handle,
        _: u64,
        _: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        buf.extend_from_slice(b"metadata");
        Ok(())
    }
    fn preferred_read_size(&self) -> u64 {
        12345
    }
    fn lists_immediately(&self) -> bool {
        true
    }
    fn write(&self, _: &Handle, _: &[u8]) -> Result<(), BackendError> {
        Ok(())
    }
    fn stat(&self, _: &Handle) -> Result<u64, BackendError> {
        Err(BackendError::NotFound("probe".into()))
    }
    fn remove(&self, _: &Handle) -> Result<(), BackendError> {
        Ok(())
    }
    fn list(&self, _: FileType) -> Result<Vec<FileInfo>, BackendError> {
        Ok(Vec::new())
    }
    fn list_leftovers(&self) -> Result<Vec<Leftover>, BackendError> {
        Ok(vec![leftover()])
    }
    fn remove_leftover(&self, l: &Leftover) -> Result<(), BackendError> {
        self.removed.lock().unwrap().push(l.path.clone());
        Ok(())
    }
    fn exists(&self, _: &Handle) -> Result<bool, BackendError> {
        Ok(true)
    }
}

#[test]
fn every_provided_method_reaches_the_inner_backend() {
    let probe = Arc::new(Probe {
        removed: Mutex::new(Vec::new()),
    });
    let be = RetryBackend::new(probe.clone(), &fast(1));
    assert_eq!(be.location(), "probe:");
    assert_eq!(be.preferred_read_size(), 12345);
    assert!(be.lists_immediately());
    assert!(
        be.exists(&pack(1)).unwrap(),
        "the probe says everything exists"
    );
    assert_eq!(be.read_range(&pack(1), 0, 5).unwrap(), b"probe-range");
    let mut buf = Vec::new();
    be.read_metadata_range_into(&pack(1), 0, 5, &mut buf)
        .unwrap();
    assert_eq!(buf, b"metadata");
    assert_eq!(be.list_leftovers().unwrap(), [leftover()]);
    be.remove_leftover(&leftover()).unwrap();
    assert_eq!(*probe.removed.lock().unwrap(), [leftover().path]);
    assert!(format!("{be:?}").contains("probe:"));
}
