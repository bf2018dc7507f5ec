//! How a caller steers and watches an operation: one [`Cancel`] token to stop it, one
//! [`EventSink`] that receives everything it has to say while it runs. Every operation
//! reports through this one stream (phases, progress with totals, items done, warnings,
//! errors), so the command line renders terminal text, restic's `--json` messages and the
//! in-pod agent's JSON lines from the same events, and a library user sees the same.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use restash_engine::events::{Control, Event, Phase};
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let log = seen.clone();
//! let ctl = Control::new(Arc::new(move |e: &Event<'_>| {
//!     log.lock().unwrap().push(format!("{e:?}"));
//! }));
//! ctl.emit(Event::PhaseStarted(Phase::LoadIndex));
//! assert!(!ctl.cancel.is_cancelled());
//! assert_eq!(seen.lock().unwrap().len(), 1);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use restash_format::{Snapshot, SnapshotId};

use crate::{EngineError, Result};

/// A stage of an operation, in the words restic prints for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Reading the index files.
    LoadIndex,
    /// Taking the repository lock (this may wait for other processes).
    Lock,
    /// Reading the snapshot files.
    LoadSnapshots,
    /// Walking snapshots' trees to count or search them (`stats`, `find`).
    Scan,
    /// Reading the source and saving its blobs.
    Backup,
    /// Writing files into the target.
    Restore,
    /// Applying a retention policy and removing snapshots.
    Forget,
    /// Finding what prune can remove, and repacking and deleting it.
    Prune,
    /// Checking the repository's structure.
    Check,
    /// Reading and verifying pack data (`check --read-data`).
    ReadData,
    /// Rebuilding the index or snapshots.
    Repair,
    /// Copying snapshots between repositories.
    Copy,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::LoadIndex => "load index files",
            Phase::Lock => "lock repository",
            Phase::LoadSnapshots => "load snapshots",
            Phase::Scan => "scanning",
            Phase::Backup => "backup",
            Phase::Restore => "restore",
            Phase::Forget => "forget",
            Phase::Prune => "prune",
            Phase::Check => "check",
            Phase::ReadData => "read data",
            Phase::Repair => "repair",
            Phase::Copy => "copy",
        })
    }
}

/// Totals of a running phase; `*_total` may grow while the phase runs (a backup's walk
/// runs ahead of its readers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Items (files, packs, snapshots) known so far.
    pub items_total: u64,
    /// Items finished.
    pub items_done: u64,
    /// Bytes known so far.
    pub bytes_total: u64,
    /// Bytes finished.
    pub bytes_done: u64,
}

impl Counts {
    /// Done bytes over total bytes (items when no bytes are counted), at most 1.
    pub fn fraction(&self) -> f64 {
        let (done, total) = if self.bytes_total > 0 {
            (self.bytes_done, self.bytes_total)
        } else {
            (self.items_done, self.items_total)
        };
        if total == 0 {
            0.0
        } else {
            (done as f64 / total as f64).min(1.0)
        }
    }
}

/// One thing an operation has to say.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A phase began.
    PhaseStarted(Phase),
    /// A phase ended (also after a failure inside it).
    PhaseFinished(Phase),
    /// How far a phase is, with `elapsed` since the operation started.
    Progress {
        /// The phase.
        phase: Phase,
        /// What is counted ("files", "packs", "snapshots").
        unit: &'static str,
        /// Its totals.
        counts: Counts,
        /// Time since the [`Control`] was made.
        elapsed: Duration,
    },
    /// One item is done: `kind` says what it is ("snapshot", "file", "lock", "pack"),
    /// `action` what happened to it ("removed", "restored", "kept").
    ItemDone {
        /// What the item is.
        kind: &'static str,
        /// What happened to it.
        action: &'static str,
        /// Its name (a path, a short id).
        name: &'a str,
    },
    /// What a restore did to one entry; sent only when its options ask for it.
    Restored {
        /// What happened to it.
        action: RestoreAction,
        /// Its path within the snapshot (`/dir/file`), or for a deleted entry its path in
        /// the target, as restic names them.
        item: &'a str,
        /// A regular file's size.
        size: Option<u64>,
    },
    /// The snapshot the operation works on was chosen (from `latest` or an id prefix).
    Selected {
        /// Its id.
        id: &'a SnapshotId,
        /// Its contents.
        snapshot: &'a Snapshot,
    },
    /// Text the user reads as the operation goes (restic prints it on stdout): `level` 0
    /// is always shown, 1 unless `--quiet`, 2 with `-vv`.
    Message {
        /// The verbosity it needs.
        level: u8,
        /// The text.
        text: &'a str,
    },
    /// The operation waits for something outside it (another process's lock).
    Blocked {
        /// What it waits for.
        reason: &'a str,
        /// How long the operation waits in all before it gives up (`--retry-lock`).
        wait: Duration,
        /// Whether this is the first wait of the operation (restic says it once).
        first: bool,
    },
    /// Something the user should know; the operation goes on unharmed.
    Warning(&'a str),
    /// Something failed for one item (the message names it); the operation goes on and
    /// its summary counts it.
    Error(&'a str),
}

/// What a restore did to one entry, in restic's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreAction {
    /// Written anew (or, in a dry run, would be).
    Restored,
    /// An existing file whose content differed was rewritten where it differed.
    Updated,
    /// An existing file was left with its content: it matched, or `--overwrite` kept it.
    Unchanged,
    /// Removed because the snapshot does not have it (`--delete`).
    Deleted,
}

impl RestoreAction {
    /// restic's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreAction::Restored => "restored",
            RestoreAction::Updated => "updated",
            RestoreAction::Unchanged => "unchanged",
            RestoreAction::Deleted => "deleted",
        }
    }
}

/// Receives an operation's events. Called from the operation's threads, so it must be
/// cheap and must not block for long.
pub trait EventSink: Send + Sync {
    /// One event.
    fn event(&self, event: &Event<'_>);
}

impl<F: Fn(&Event<'_>) + Send + Sync> EventSink for F {
    fn event(&self, event: &Event<'_>) {
        self(event)
    }
}

/// A sink that drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Discard;

impl EventSink for Discard {
    fn event(&self, _: &Event<'_>) {}
}

/// Stops an operation from another thread or a signal handler. An operation that sees it
/// stops starting new work, saves what it must to leave the repository consistent, and
/// returns [`EngineError::Interrupted`] or [`EngineError::Terminated`].
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    stop: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
}

impl Cancel {
    /// A token nobody has used yet.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Stops the operation as SIGINT does.
    pub fn interrupt(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Stops the operation as SIGTERM does: the caller is going away, so an operation
    /// with a grace period abandons work still in flight when it ends.
    pub fn terminate(&self) {
        self.term.store(true, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether the operation should stop.
    pub fn is_cancelled(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Whether the stop came from [`Cancel::terminate`].
    pub fn is_terminated(&self) -> bool {
        self.term.load(Ordering::SeqCst)
    }

    /// `Err` once cancelled: the error an operation returns when it stops early.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(self.error())
        } else {
            Ok(())
        }
    }

    /// The error that says how this token stopped the operation.
    pub fn error(&self) -> EngineError {
        if self.is_terminated() {
            EngineError::Terminated
        } else {
            EngineError::Interrupted
        }
    }

    /// Sleeps for `d`, or less if the token is cancelled meanwhile; then `Err` if it is.
    /// Waits that may last minutes (a lock held by a prune) must end soon after Ctrl-C.
    pub fn sleep(&self, d: Duration) -> Result<()> {
        let until = std::time::Instant::now() + d;
        loop {
            self.check()?;
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }

    /// The flags a signal handler sets: (stop, terminated). Registering a handler that
    /// sets `stop` for SIGINT, and both for SIGTERM, is the same as calling
    /// [`Cancel::interrupt`] and [`Cancel::terminate`].
    pub fn flags(&self) -> (Arc<AtomicBool>, Arc<AtomicBool>) {
        (self.stop.clone(), self.term.clone())
    }
}

/// What every operation takes besides its options: the cancel token and the event sink.
#[derive(Clone)]
pub struct Control {
    /// Stops the operation.
    pub cancel: Cancel,
    events: Arc<dyn EventSink>,
    started: Instant,
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Control")
            .field("cancel", &self.cancel)
            .finish_non_exhaustive()
    }
}

impl Default for Control {
    fn default() -> Self {
        Control::new(Arc::new(Discard))
    }
}

impl Control {
    /// Events go to `events`; nothing cancels the operation but `self.cancel`.
    pub fn new(events: Arc<dyn EventSink>) -> Control {
        Control {
            cancel: Cancel::new(),
            events,
            started: Instant::now(),
        }
    }

    /// The same sink, stopped by `cancel`.
    pub fn with_cancel(mut self, cancel: Cancel) -> Control {
        self.cancel = cancel;
        self
    }

    /// Sends one event.
    pub fn emit(&self, event: Event<'_>) {
        self.events.event(&event);
    }

    /// Sends a warning.
    pub fn warn(&self, message: &str) {
        self.emit(Event::Warning(message));
    }

    /// Sends an error of one item (see [`Event::Error`]).
    pub fn error(&self, message: &str) {
        self.emit(Event::Error(message));
    }

    /// Sends how far `phase` is when the caller counts itself: `done` of `total` (0:
    /// unknown) `unit`s. Renderers thin these out.
    pub fn progress(&self, phase: Phase, unit: &'static str, done: u64, total: u64) {
        self.emit(Event::Progress {
            phase,
            unit,
            counts: Counts {
                items_total: total,
                items_done: done,
                ..Counts::default()
            },
            elapsed: self.elapsed(),
        });
    }

    /// Runs `f` as `phase`, between its started and finished events.
    pub fn phase<T>(&self, phase: Phase, f: impl FnOnce() -> T) -> T {
        self.emit(Event::PhaseStarted(phase));
        let out = f();
        self.emit(Event::PhaseFinished(phase));
        out
    }

    /// Time since this control was made.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Sends text at a verbosity level (see [`Event::Message`]).
    pub fn say(&self, level: u8, text: &str) {
        self.emit(Event::Message { level, text });
    }

    /// A meter for `phase`, counting `unit`s, that reports through this control.
    pub fn meter(&self, phase: Phase, unit: &'static str) -> Meter {
        Meter {
            phase,
            unit,
            control: self.clone(),
            items_total: AtomicU64::new(0),
            items_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
        }
    }
}

/// How often a [`Meter`] sends a progress event at most; renderers thin them further.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Counters of one phase, updated from any thread; each update sends a progress event
/// when the last one is older than [`PROGRESS_INTERVAL`], so progress flows as work
/// happens and nobody polls.
#[derive(Debug)]
pub struct Meter {
    phase: Phase,
    unit: &'static str,
    control: Control,
    items_total: AtomicU64,
    items_done: AtomicU64,
    bytes_total: AtomicU64,
    bytes_done: AtomicU64,
    /// Milliseconds after the control's start of the last progress event (+1, so 0 is
    /// "never").
    last_ms: AtomicU64,
}

impl Meter {
    /// More work found.
    pub fn found(&self, items: u64, bytes: u64) {
        self.items_total.fetch_add(items, Ordering::Relaxed);
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
        self.tick(false);
    }

    /// Work finished.
    pub fn done(&self, items: u64, bytes: u64) {
        self.items_done.fetch_add(items, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        self.tick(false);
    }

    /// The counters now.
    pub fn counts(&self) -> Counts {
        Counts {
            items_total: self.items_total.load(Ordering::Relaxed),
            items_done: self.items_done.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
        }
    }

    /// Sends the counters now, however recent the last event.
    pub fn flush(&self) {
        self.tick(true);
    }

    fn tick(&self, force: bool) {
        let elapsed = self.control.elapsed();
        let now = elapsed.as_millis() as u64 + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        if !force && last != 0 && now < last + PROGRESS_INTERVAL.as_millis() as u64 {
            return;
        }
        // One thread wins each interval; the others skip.
        if self
            .last_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
            && !force
        {
            return;
        }
        self.control.emit(Event::Progress {
            phase: self.phase,
            unit: self.unit,
            counts: self.counts(),
            elapsed,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn recorder() -> (Control, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let ctl = Control::new(Arc::new(move |e: &Event<'_>| {
            log.lock().unwrap().push(format!("{e:?}"));
        }));
        (ctl, seen)
    }

    #[test]
    fn meter_sends_first_update_and_thins_the_rest() {
        let (ctl, seen) = recorder();
        let m = ctl.meter(Phase::Backup, "files");
        for _ in 0..1000 {
            m.found(1, 10);
        }
        // The first update is sent; the rest fall in the same 100 ms.
        assert_eq!(seen.lock().unwrap().len(), 1);
        m.flush();
        let all = seen.lock().unwrap();
        assert_eq!(all.len(), 2);
        assert!(all[1].contains("items_total: 1000"), "{}", all[1]);
        assert_eq!(m.counts().bytes_total, 10_000);
    }

    #[test]
    fn cancel_says_how_it_stopped() {
        let c = Cancel::new();
        assert!(c.check().is_ok());
        c.interrupt();
        assert!(matches!(c.check(), Err(EngineError::Interrupted)));
        c.terminate();
        assert!(matches!(c.check(), Err(EngineError::Terminated)));
        let (stop, term) = Cancel::new().flags();
        assert!(!stop.load(Ordering::SeqCst) && !term.load(Ordering::SeqCst));
    }

    #[test]
    fn phase_brackets_its_work() {
        let (ctl, seen) = recorder();
        let v = ctl.phase(Phase::Check, || 7);
        assert_eq!(v, 7);
        let all = seen.lock().unwrap();
        assert_eq!(*all, vec!["PhaseStarted(Check)", "PhaseFinished(Check)"]);
    }

    #[test]
    fn fraction_prefers_bytes() {
        let c = Counts {
            items_total: 4,
            items_done: 1,
            bytes_total: 100,
            bytes_done: 50,
        };
        assert_eq!(c.fraction(), 0.5);
        assert_eq!(Counts::default().fraction(), 0.0);
    }
}
