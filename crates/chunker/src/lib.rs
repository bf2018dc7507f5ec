//! Content-defined chunking for restash: restic's Rabin chunker, cut for cut, and
//! FastCDC. No I/O, except an optional adapter over [`std::io::Read`].
//!
//! * [`Pol`] is a repository's `chunker_polynomial`: parsing, formatting, the
//!   irreducibility test and random generation as restic does them.
//! * [`RabinParams`] holds the polynomial's lookup tables. Build it once per repository
//!   and clone it freely (the tables are shared). It gives [`RabinChunker`]s, which find
//!   exactly the boundaries restic 0.14 (restic/chunker v0.4.0) finds.
//! * [`FastCdcParams`] does the same for FastCDC (`fastcdc::v2020` cut points).
//! * [`ChunkerParams`] and [`Chunker`] select either one at run time.
//!
//! Every chunker implements [`BoundaryFinder`]: feed it successive buffers and it says
//! where the current chunk ends. On top of that, `chunks(&data)` splits a slice and
//! [`StreamChunker`] splits a reader.
//!
//! ```
//! use restash_chunker::{ChunkerParams, Pol, RabinParams, StreamChunker};
//!
//! let pol: Pol = "3da3358b4dc173".parse()?;
//! let params = ChunkerParams::Rabin(RabinParams::new(pol)?);
//!
//! // 3,000,000 zero bytes: every window fingerprint is 0, so restic cuts at the
//! // minimum size, 512 KiB.
//! let data = vec![0u8; 3_000_000];
//! let ranges: Vec<_> = params.chunks(&data).collect();
//! assert_eq!(ranges.len(), 6);
//! assert_eq!(ranges[0], 0..524_288);
//! assert_eq!(ranges[5], 2_621_440..3_000_000);
//!
//! // The same cuts from a reader, with at most one chunk plus one read in memory.
//! let mut stream = StreamChunker::new(&data[..], params.chunker());
//! let mut lengths = Vec::new();
//! while let Some(chunk) = stream.next_chunk()? {
//!     lengths.push(chunk.len());
//! }
//! assert_eq!(lengths, ranges.iter().map(|r| r.len()).collect::<Vec<_>>());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod gear;
mod pol;
mod rabin;
mod stream;

use std::io::Read;
use std::ops::Range;

pub use error::ChunkerError;
pub use gear::{
    FastCdcChunker, FastCdcParams, FASTCDC_DEFAULT_AVG_SIZE, FASTCDC_DEFAULT_MAX_SIZE,
    FASTCDC_DEFAULT_MIN_SIZE, FASTCDC_DEFAULT_NORMALIZATION,
};
pub use pol::Pol;
pub use rabin::{RabinChunker, RabinParams, RABIN_SPLIT_MASK, WINDOW_SIZE};
pub use stream::{StreamChunker, DEFAULT_READ_SIZE};

/// restic's minimum chunk size, 512 KiB (the last chunk of a file may be shorter).
pub const DEFAULT_MIN_SIZE: usize = 512 * 1024;
/// restic's maximum chunk size, 8 MiB.
pub const DEFAULT_MAX_SIZE: usize = 8 * 1024 * 1024;

/// Finds chunk boundaries in a stream fed one buffer at a time.
pub trait BoundaryFinder {
    /// Consumes `data`, the next bytes of the stream. `Some(n)`: the current chunk ends
    /// after `data[..n]`, the finder has been reset, and `data[n..]` must be fed again
    /// as the start of the next chunk (`n` may be 0: the chunk ended with the previous
    /// buffer). `None`: all of `data` belongs to the current chunk. At the end of the
    /// stream, the bytes fed since the last cut form the final chunk; call
    /// [`reset`](Self::reset) before reusing the finder.
    fn next_boundary(&mut self, data: &[u8]) -> Option<usize>;

    /// Forgets the unfinished chunk.
    fn reset(&mut self);

    /// No chunk is longer than this.
    fn max_size(&self) -> usize;
}

/// Either chunking algorithm's parameters, chosen at run time (per backup, say).
#[derive(Clone, Debug)]
pub enum ChunkerParams {
    /// restic's Rabin chunker.
    Rabin(RabinParams),
    /// FastCDC.
    FastCdc(FastCdcParams),
}

impl ChunkerParams {
    /// A fresh boundary finder.
    pub fn chunker(&self) -> Chunker {
        match self {
            ChunkerParams::Rabin(p) => Chunker::Rabin(p.chunker()),
            ChunkerParams::FastCdc(p) => Chunker::FastCdc(p.chunker()),
        }
    }

    /// The chunks of a whole in-memory file, as byte ranges.
    pub fn chunks<'a>(&self, data: &'a [u8]) -> Chunks<'a, Chunker> {
        Chunks::new(data, self.chunker())
    }

    /// Chunks a reader; see [`StreamChunker`].
    pub fn stream<R: Read>(&self, reader: R) -> StreamChunker<R, Chunker> {
        StreamChunker::new(reader, self.chunker())
    }

    /// Smallest chunk, except for the last chunk of a file.
    pub fn min_size(&self) -> usize {
        match self {
            ChunkerParams::Rabin(p) => p.min_size(),
            ChunkerParams::FastCdc(p) => p.min_size(),
        }
    }

    /// Largest chunk.
    pub fn max_size(&self) -> usize {
        match self {
            ChunkerParams::Rabin(p) => p.max_size(),
            ChunkerParams::FastCdc(p) => p.max_size(),
        }
    }
}

impl From<RabinParams> for ChunkerParams {
    fn from(p: RabinParams) -> Self {
        ChunkerParams::Rabin(p)
    }
}

impl From<FastCdcParams> for ChunkerParams {
    fn from(p: FastCdcParams) -> Self {
        ChunkerParams::FastCdc(p)
    }
}

/// A boundary finder of either algorithm.
#[derive(Clone, Debug)]
pub enum Chunker {
    /// restic's Rabin chunker.
    Rabin(RabinChunker),
    /// FastCDC.
    FastCdc(FastCdcChunker),
}

impl BoundaryFinder for Chunker {
    fn next_boundary(&mut self, data: &[u8]) -> Option<usize> {
        match self {
            Chunker::Rabin(c) => c.next_boundary(data),
            Chunker::FastCdc(c) => c.next_boundary(data),
        }
    }

    fn reset(&mut self) {
        match self {
            Chunker::Rabin(c) => c.reset(),
            Chunker::FastCdc(c) => c.reset(),
        }
    }

    fn max_size(&self) -> usize {
        match self {
            Chunker::Rabin(c) => BoundaryFinder::max_size(c),
            Chunker::FastCdc(c) => BoundaryFinder::max_size(c),
        }
    }
}

/// Iterator over the chunks of a slice, as ranges that tile it in order.
///
/// An empty slice has no chunks.
#[derive(Clone, Debug)]
pub struct Chunks<'a, C> {
    data: &'a [u8],
    pos: usize,
    finder: C,
}

impl<'a, C: BoundaryFinder> Chunks<'a, C> {
    /// Chunks `data` with `finder`, which must be fresh (or reset).
    pub fn new(data: &'a [u8], finder: C) -> Self {
        Chunks {
            data,
            pos: 0,
            finder,
        }
    }
}

impl<C: BoundaryFinder> Iterator for Chunks<'_, C> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let start = self.pos;
        if start >= self.data.len() {
            return None;
        }
        let end = match self.finder.next_boundary(&self.data[start..]) {
            Some(n) => start + n,
            None => {
                self.finder.reset();
                self.data.len()
            }
        };
        self.pos = end;
        Some(start..end)
    }
}

impl<C: BoundaryFinder> std::iter::FusedIterator for Chunks<'_, C> {}
