//! Work that reads the repository runs on its own thread (the backends block, and may run
//! their own runtime); a download's bytes travel from that thread to the response body
//! through a bounded channel, so a slow client slows the reading, nothing piles up in
//! memory, and a client that goes away stops it.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

type Chunk = Result<Bytes, std::io::Error>;

/// The threads doing requests' work. A download holds restic's read lock while it runs,
/// so the server waits for them before it exits: a lock left behind would block the next
/// prune until someone unlocks by hand.
#[derive(Debug, Default)]
pub struct Workers {
    running: Mutex<usize>,
    idle: Condvar,
}

struct Running(Arc<Workers>);

impl Drop for Running {
    fn drop(&mut self) {
        let mut n = self.0.running.lock().unwrap_or_else(|p| p.into_inner());
        *n -= 1;
        self.0.idle.notify_all();
    }
}

impl Workers {
    /// Runs `f` on a thread of its own, counted until it ends (even by a panic).
    pub fn spawn(self: &Arc<Self>, f: impl FnOnce() + Send + 'static) {
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        let running = Running(self.clone());
        std::thread::spawn(move || {
            let _running = running;
            f();
        });
    }

    /// Waits up to `limit` for every thread to end; false if some still run.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut n = self.running.lock().unwrap_or_else(|p| p.into_inner());
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            n = self
                .idle
                .wait_timeout(n, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

/// Runs `f` on a thread of `workers` and awaits its result.
pub async fn blocking<T: Send + 'static>(
    workers: &Arc<Workers>,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = oneshot::channel();
    workers.spawn(move || {
        let _ = tx.send(f());
    });
    match rx.await {
        Ok(v) => v,
        // The thread panicked: its message is already on stderr.
        Err(_) => std::panic::resume_unwind(Box::new("a request's worker thread panicked")),
    }
}

/// The writing half: a `Write` whose bytes become the response body.
pub struct BodyWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
}

const CHUNK: usize = 256 * 1024;

impl BodyWriter {
    /// A writer and the receiver the body reads from.
    pub fn new() -> (BodyWriter, mpsc::Receiver<Chunk>) {
        let (tx, rx) = mpsc::channel(8);
        (
            BodyWriter {
                tx,
                buf: Vec::with_capacity(CHUNK),
            },
            rx,
        )
    }

    fn send(&mut self, chunk: Chunk) -> std::io::Result<()> {
        self.tx.blocking_send(chunk).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }

    /// Ends the body with an error: the connection is cut instead of finishing the
    /// response, so no client takes a broken download for a whole one.
    pub fn fail(mut self, why: String) {
        let _ = self.send(Err(std::io::Error::other(why)));
    }
}

impl Write for BodyWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.send(Ok(Bytes::from(chunk)))
    }
}

/// The response body reading from `rx`.
pub fn body(rx: mpsc::Receiver<Chunk>) -> axum::body::Body {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    axum::body::Body::from_stream(stream)
}
