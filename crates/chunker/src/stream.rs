//! Chunking a [`Read`] with bounded memory.

use std::io::{self, Read};

use crate::BoundaryFinder;

/// Bytes asked of the reader at a time.
pub const DEFAULT_READ_SIZE: usize = 256 * 1024;

/// Splits a reader into chunks, holding at most one maximum-size chunk plus one read.
///
/// Reads go straight into the buffer that holds the current chunk, and each read is
/// fed to the boundary finder once; only the bytes read past a cut are moved, to the
/// front of the buffer. The buffer grows as a file needs it, so small files stay cheap,
/// and [`restart`](StreamChunker::restart) reuses it for the next file.
///
/// [`next_chunk`](StreamChunker::next_chunk) lends each chunk without copying; the
/// [`Iterator`] implementation copies it into an owned `Vec<u8>`.
///
/// ```
/// use restash_chunker::{FastCdcParams, StreamChunker};
///
/// let params = FastCdcParams::new(1024, 4096, 16384).unwrap();
/// let data: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
/// let mut stream = StreamChunker::new(&data[..], params.chunker());
/// let mut total = 0;
/// while let Some(chunk) = stream.next_chunk()? {
///     assert!(chunk.len() <= 16384);
///     total += chunk.len();
/// }
/// assert_eq!(total, data.len());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct StreamChunker<R, C> {
    reader: R,
    finder: C,
    /// Initialised bytes; only `..filled` hold data.
    buf: Vec<u8>,
    filled: usize,
    /// `buf[..fed]` has gone through the finder.
    fed: usize,
    /// Length of the chunk last handed out, still at the front of `buf`.
    handed_out: usize,
    eof: bool,
    read_size: usize,
}

impl<R: Read, C: BoundaryFinder> StreamChunker<R, C> {
    /// Chunks `reader` with `finder`, reading [`DEFAULT_READ_SIZE`] bytes at a time.
    pub fn new(reader: R, finder: C) -> Self {
        Self::with_read_size(reader, finder, DEFAULT_READ_SIZE)
    }

    /// As [`new`](Self::new), asking the reader for at most `read_size` bytes per call
    /// (at least 1).
    pub fn with_read_size(reader: R, finder: C, read_size: usize) -> Self {
        StreamChunker {
            reader,
            finder,
            buf: Vec::new(),
            filled: 0,
            fed: 0,
            handed_out: 0,
            eof: false,
            read_size: read_size.max(1),
        }
    }

    /// The next chunk, borrowed until the next call; `None` at the end of the input.
    /// An empty input has no chunks.
    pub fn next_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        if self.handed_out > 0 {
            self.buf.copy_within(self.handed_out..self.filled, 0);
            self.filled -= self.handed_out;
            self.handed_out = 0;
            self.fed = 0;
        }
        loop {
            if self.fed < self.filled {
                if let Some(n) = self.finder.next_boundary(&self.buf[self.fed..self.filled]) {
                    self.handed_out = self.fed + n;
                    return Ok(Some(&self.buf[..self.handed_out]));
                }
                self.fed = self.filled;
            }
            if self.eof {
                self.finder.reset();
                if self.filled == 0 {
                    return Ok(None);
                }
                self.handed_out = self.filled;
                return Ok(Some(&self.buf[..self.filled]));
            }
            // Everything buffered belongs to an unfinished chunk, which the finder
            // keeps below its maximum size: the buffer never exceeds max + read_size.
            let want = self.filled + self.read_size;
            if self.buf.len() < want {
                self.buf.resize(want, 0);
            }
            match self.reader.read(&mut self.buf[self.filled..want]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.filled += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts over on another reader, keeping the buffer; returns the old reader.
    pub fn restart(&mut self, reader: R) -> R {
        self.finder.reset();
        self.filled = 0;
        self.fed = 0;
        self.handed_out = 0;
        self.eof = false;
        std::mem::replace(&mut self.reader, reader)
    }

    /// The boundary finder.
    pub fn finder(&self) -> &C {
        &self.finder
    }

    /// Gives back the reader.
    pub fn into_inner(self) -> R {
        self.reader
    }
}

impl<R: Read, C: BoundaryFinder> Iterator for StreamChunker<R, C> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().map(|c| c.map(<[u8]>::to_vec)).transpose()
    }
}
