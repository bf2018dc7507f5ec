//! Work that reads the repository runs on its own thread (the backends block, and may run
//! their own runtime); a download's bytes travel from that thread to the response body
//! through a bounded channel, so a slow client slows the reading, nothing piles up in
//! memory, and a client that goes away stops it.

use std::io::Write;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

type Chunk = Result<Bytes, std::io::Error>;

/// Runs `f` on a thread of its own and awaits its result.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
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
