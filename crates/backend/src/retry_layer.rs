//! A layer that retries any backend's failed calls, as restic's `retry` backend does: the
//! S3 and REST backends send one request per call and only say whether a failure is worth
//! another try ([`BackendError::is_retryable`]); this layer decides when to try again,
//! with the policy of [`crate::retry`] (backoff with jitter, bounded by `max-retries` and
//! `retry-timeout`). Each retry is logged at debug level as `…; retry N in D`, and an error
//! that outlives the budget says `(gave up after N retries in D)`. Every attempt is logged
//! at debug level too, with its duration (`RESTASH_DEBUG=1`): the requests a command makes
//! and the round trips it waits for.
//!
//! Every call is retried as a whole, so a retried call starts from a clean slate (a ranged
//! read refills its buffer from the start, a listing is fetched again). A create-only
//! `write` is the one call whose retry can meet its own earlier attempt: an attempt whose
//! answer was lost may have stored the file, and the next one then finds it there. So after
//! a retryable failure, `AlreadyExists` is checked: a file holding exactly these bytes is
//! this write's, and is success. Names are content hashes (or the config's, written once),
//! so identical content is the only way another writer could have put that file there too;
//! a file with other content stays `AlreadyExists`.

use std::sync::Arc;
use std::time::Instant;

use tracing::debug;

use crate::options::BackendOptions;
use crate::retry::RetryState;
use crate::{Backend, BackendError, FileInfo, FileType, Handle, Leftover};

/// Wraps a backend and retries its calls that fail with a retryable error.
pub struct RetryBackend {
    inner: Arc<dyn Backend>,
    // Only the retry budget and backoffs are read.
    opts: BackendOptions,
}

impl RetryBackend {
    /// `inner`, retried within `opts.max_retries` and `opts.retry_timeout`, backing off
    /// from `opts.initial_backoff` up to `opts.max_backoff`.
    pub fn new(inner: Arc<dyn Backend>, opts: &BackendOptions) -> RetryBackend {
        crate::debug_log::init_from_env();
        RetryBackend {
            inner,
            opts: opts.clone(),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    /// Runs `call` (`op` on `what`, for the debug log) until it succeeds, fails for good,
    /// or the budget is spent.
    fn retry<T>(
        &self,
        op: &str,
        what: &dyn std::fmt::Display,
        mut call: impl FnMut(&dyn Backend) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let mut state = RetryState::new(&self.opts);
        loop {
            let start = Instant::now();
            let outcome = call(self.inner.as_ref());
            log_attempt(op, what, start, &outcome);
            match outcome {
                Err(e) if e.is_retryable() => pause(&mut state, e)?,
                done => return done,
            }
        }
    }

    /// Whether `h` holds exactly `data`: the size first, so that a different file is
    /// usually told apart without downloading it.
    fn holds(&self, h: &Handle, data: &[u8]) -> Result<bool, BackendError> {
        if self.inner.stat(h)? != data.len() as u64 {
            return Ok(false);
        }
        Ok(self.inner.read(h)? == data)
    }
}

/// With `RESTASH_DEBUG`, every call that reaches the store is one line: where a command's
/// requests go and how long each round trip takes.
fn log_attempt<T>(
    op: &str,
    what: &dyn std::fmt::Display,
    start: Instant,
    outcome: &Result<T, BackendError>,
) {
    let took = start.elapsed();
    match outcome {
        Ok(_) => debug!("{op} {what}: ok in {took:.1?}"),
        Err(e) => debug!("{op} {what}: failed in {took:.1?}: {e}"),
    }
}

/// Sleeps before the next attempt after `e`, or hands `e` back as the final error once the
/// budget is spent.
fn pause(state: &mut RetryState, e: BackendError) -> Result<(), BackendError> {
    match state.next_delay() {
        Some(d) => {
            debug!("{e}; retry {} in {d:?}", state.retries());
            std::thread::sleep(d);
            Ok(())
        }
        None => Err(gave_up(e, state)),
    }
}

/// `e` with how long it was retried, so that the user sees it was not a one-off.
fn gave_up(e: BackendError, state: &RetryState) -> BackendError {
    if state.retries() == 0 {
        return e;
    }
    let note = format!(
        " (gave up after {} retries in {:.1?})",
        state.retries(),
        state.elapsed()
    );
    match e {
        BackendError::Other { message, retryable } => BackendError::Other {
            message: message + &note,
            retryable,
        },
        BackendError::Io { context, source } => BackendError::Io {
            context: context + &note,
            source,
        },
        e => e,
    }
}

impl std::fmt::Debug for RetryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryBackend")
            .field("inner", &self.inner.location())
            .field("max_retries", &self.opts.max_retries)
            .field("retry_timeout", &self.opts.retry_timeout)
            .finish()
    }
}

// Every method, provided ones included, goes to the inner backend explicitly: a default
// left in place would silently replace the inner backend's own behaviour.
impl Backend for RetryBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    // `create` writes no file (the config comes later), so an `AlreadyExists` after a
    // retry is a real existing repository.
    fn create(&self) -> Result<(), BackendError> {
        self.retry("create", &self.inner.location(), |be| be.create())
    }

    fn read(&self, h: &Handle) -> Result<Vec<u8>, BackendError> {
        self.retry("read", h, |be| be.read(h))
    }

    fn read_range(&self, h: &Handle, offset: u64, length: u64) -> Result<Vec<u8>, BackendError> {
        self.retry("read range", h, |be| be.read_range(h, offset, length))
    }

    // A failed attempt may have filled part of `buf`; the next one replaces it whole.
    fn read_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        self.retry("read range", h, |be| {
            buf.clear();
            be.read_range_into(h, offset, length, buf)
        })
    }

    fn read_metadata_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        self.retry("read range", h, |be| {
            buf.clear();
            be.read_metadata_range_into(h, offset, length, buf)
        })
    }

    fn preferred_read_size(&self) -> u64 {
        self.inner.preferred_read_size()
    }

    fn lists_immediately(&self) -> bool {
        self.inner.lists_immediately()
    }

    fn write(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        let mut state = RetryState::new(&self.opts);
        // Whether an earlier attempt failed in a way that may have stored the file.
        let mut may_have_landed = false;
        loop {
            let start = Instant::now();
            let outcome = self.inner.write(h, data);
            log_attempt("write", h, start, &outcome);
            let e = match outcome {
                Ok(()) => return Ok(()),
                Err(BackendError::AlreadyExists(what)) if may_have_landed => {
                    match self.holds(h, data) {
                        Ok(true) => {
                            debug!("write {h}: already there with this content, from an earlier attempt");
                            return Ok(());
                        }
                        Ok(false) => return Err(BackendError::AlreadyExists(what)),
                        // Removed between the write and the check: write it again.
                        Err(BackendError::NotFound(_)) => BackendError::Other {
                            message: format!(
                                "{h} in {} vanished while checking an earlier attempt",
                                self.inner.location()
                            ),
                            retryable: true,
                        },
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            if !e.is_retryable() {
                return Err(e);
            }
            may_have_landed = true;
            pause(&mut state, e)?;
        }
    }

    fn stat(&self, h: &Handle) -> Result<u64, BackendError> {
        self.retry("stat", h, |be| be.stat(h))
    }

    fn remove(&self, h: &Handle) -> Result<(), BackendError> {
        self.retry("remove", h, |be| be.remove(h))
    }

    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, BackendError> {
        self.retry("list", &format_args!("{}/", t.dir()), |be| be.list(t))
    }

    fn list_group(&self, t: FileType, group: &str) -> Result<Vec<FileInfo>, BackendError> {
        self.retry("list", &format_args!("{}/{group}/", t.dir()), |be| {
            be.list_group(t, group)
        })
    }

    fn keeps(&self, t: FileType) -> bool {
        self.inner.keeps(t)
    }

    fn list_leftovers(&self) -> Result<Vec<Leftover>, BackendError> {
        self.retry("list leftovers", &self.inner.location(), |be| {
            be.list_leftovers()
        })
    }

    fn remove_leftover(&self, leftover: &Leftover) -> Result<(), BackendError> {
        self.retry("remove leftover", &leftover.path, |be| {
            be.remove_leftover(leftover)
        })
    }

    fn exists(&self, h: &Handle) -> Result<bool, BackendError> {
        self.retry("stat", h, |be| be.exists(h))
    }
}

#[cfg(test)]
mod tests;
