//! The retry policy and what counts as transient. [`RetryBackend`](crate::RetryBackend)
//! retries with [`RetryState`]: exponential backoff with decorrelated jitter, bounded both
//! in count and in total time. The S3 and REST backends send one request per call and use
//! the classifiers here to mark their errors retryable: 5xx, 408, 429, refused or reset
//! connections and timeouts; never any other 4xx.

use std::time::{Duration, Instant};

use rand::Rng;

use crate::options::BackendOptions;

/// Backoff and budget of one logical request.
pub(crate) struct RetryState {
    start: Instant,
    retries: usize,
    max_retries: usize,
    retry_timeout: Duration,
    init: Duration,
    max: Duration,
    prev: Duration,
}

impl RetryState {
    pub(crate) fn new(o: &BackendOptions) -> RetryState {
        RetryState {
            start: Instant::now(),
            retries: 0,
            max_retries: o.max_retries,
            retry_timeout: o.retry_timeout,
            init: o.initial_backoff,
            max: o.max_backoff,
            prev: Duration::ZERO,
        }
    }

    /// How long to sleep before the next attempt, or `None` once the budget is spent.
    /// The first backoff is `init`; each later one is drawn uniformly from
    /// `[init, 3 × previous]` and capped at `max` ("decorrelated jitter").
    pub(crate) fn next_delay(&mut self) -> Option<Duration> {
        if self.retries >= self.max_retries || self.start.elapsed() >= self.retry_timeout {
            return None;
        }
        self.retries += 1;
        let d = if self.prev.is_zero() {
            self.init
        } else {
            let hi = (self.prev * 3).max(self.init + Duration::from_millis(1));
            let ms = rand::thread_rng().gen_range(self.init.as_millis()..=hi.as_millis());
            Duration::from_millis(ms as u64)
        };
        let d = d.min(self.max);
        self.prev = d;
        // Never sleep past the budget: the last attempt starts at its end at the latest.
        let d = d.min(self.retry_timeout.saturating_sub(self.start.elapsed()));
        Some(d)
    }

    /// Retries done so far.
    pub(crate) fn retries(&self) -> usize {
        self.retries
    }

    /// Time since the first attempt.
    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Whether an HTTP status is worth retrying: 5xx but 501 Not Implemented (which says the
/// server never will), 408 Request Timeout, 429 Too Many Requests.
pub(crate) fn status_is_transient(status: u16) -> bool {
    (status >= 500 && status != 501) || status == 408 || status == 429
}

/// Whether a transport error from reqwest is transient: timeouts, refused, reset or
/// truncated connections. Errors in building the request or decoding are not.
pub(crate) fn reqwest_is_transient(e: &reqwest::Error) -> bool {
    if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() {
        return true;
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | TimedOut
            ) {
                return true;
            }
        }
        src = s.source();
    }
    false
}

/// A reqwest error as text, with its causes and without any URL (URLs are named by the
/// caller; this keeps credentials that might be in one out of messages).
pub(crate) fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    parts.push(kind.to_string());
    push_causes(&mut parts, e);
    parts.join(": ")
}

/// The messages of `e`'s sources (not `e` itself), each unless an earlier part already
/// says it: reqwest's own message is generic, the cause names what went wrong.
pub(crate) fn push_causes(parts: &mut Vec<String>, e: &dyn std::error::Error) {
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let o = BackendOptions {
            max_retries: 6,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..BackendOptions::default()
        };
        let mut r = RetryState::new(&o);
        let delays: Vec<_> = std::iter::from_fn(|| r.next_delay()).collect();
        assert_eq!(delays.len(), 6);
        assert_eq!(delays[0], Duration::from_millis(100));
        assert!(delays
            .iter()
            .all(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_secs(1)));
        let o = BackendOptions {
            retry_timeout: Duration::ZERO,
            ..o
        };
        assert!(RetryState::new(&o).next_delay().is_none());
    }

    #[test]
    fn transient_statuses() {
        for s in [500, 502, 503, 504, 429, 408] {
            assert!(status_is_transient(s), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 412, 416, 501] {
            assert!(!status_is_transient(s), "{s}");
        }
    }
}
