//! FastCDC (the 2020 variant of the `fastcdc` crate), made incremental.
//!
//! `fastcdc::v2020` needs a chunk's bytes in one slice, up to the maximum size, before
//! it can cut: a stream would have to keep 8 MiB of look-ahead and move it after every
//! chunk. The gear hash forgets a byte after 64 shifts, so the same cut points can be
//! found incrementally. This module does that with the crate's gear table, masks and
//! normalization, and the tests check it against `fastcdc::v2020::FastCDC` itself.

use std::fmt;
use std::sync::Arc;

use fastcdc::v2020;

use crate::{BoundaryFinder, ChunkerError, Chunks};

/// Default FastCDC minimum chunk size (as restic's Rabin minimum).
pub const FASTCDC_DEFAULT_MIN_SIZE: u32 = 512 * 1024;
/// Default FastCDC average chunk size.
pub const FASTCDC_DEFAULT_AVG_SIZE: u32 = 1024 * 1024;
/// Default FastCDC maximum chunk size (as restic's Rabin maximum).
pub const FASTCDC_DEFAULT_MAX_SIZE: u32 = 8 * 1024 * 1024;
/// Default normalization level, the one `fastcdc::v2020::FastCDC::new` uses.
pub const FASTCDC_DEFAULT_NORMALIZATION: u8 = 1;

/// FastCDC parameters: size limits, normalization level and the gear table.
///
/// Cloning shares the table through an [`Arc`].
#[derive(Clone)]
pub struct FastCdcParams {
    gear: Arc<[u64; 256]>,
    min_size: usize,
    avg_size: usize,
    max_size: usize,
    normalization: u8,
    /// Mask before the average size (harder to hit).
    mask_s: u64,
    /// Mask from the average size on (easier to hit).
    mask_l: u64,
}

impl FastCdcParams {
    /// Parameters with normalization level 1, as `fastcdc::v2020::FastCDC::new`.
    ///
    /// The sizes must lie in the ranges `fastcdc::v2020` accepts (minimum 64 B..1 MiB,
    /// average 256 B..4 MiB, maximum 1 KiB..16 MiB) and satisfy
    /// `min <= avg <= max`.
    pub fn new(min_size: u32, avg_size: u32, max_size: u32) -> Result<Self, ChunkerError> {
        Self::with_normalization(min_size, avg_size, max_size, FASTCDC_DEFAULT_NORMALIZATION)
    }

    /// Parameters with a normalization level from 0 (widest spread of sizes) to 3.
    pub fn with_normalization(
        min_size: u32,
        avg_size: u32,
        max_size: u32,
        level: u8,
    ) -> Result<Self, ChunkerError> {
        let in_range = (v2020::MINIMUM_MIN..=v2020::MINIMUM_MAX).contains(&min_size)
            && (v2020::AVERAGE_MIN..=v2020::AVERAGE_MAX).contains(&avg_size)
            && (v2020::MAXIMUM_MIN..=v2020::MAXIMUM_MAX).contains(&max_size);
        if !in_range || min_size > avg_size || avg_size > max_size || level > 3 {
            return Err(ChunkerError::InvalidSizes(format!(
                "FastCDC min {min_size}, avg {avg_size}, max {max_size}, normalization {level}"
            )));
        }
        // Same mask choice as v2020::FastCDC::with_level.
        let bits = v2020::logarithm2(avg_size);
        let (gear, _) = v2020::get_gear_with_seed(0);
        Ok(FastCdcParams {
            gear: Arc::from(gear),
            min_size: min_size as usize,
            avg_size: avg_size as usize,
            max_size: max_size as usize,
            normalization: level,
            mask_s: v2020::MASKS[(bits + u32::from(level)) as usize],
            mask_l: v2020::MASKS[(bits - u32::from(level)) as usize],
        })
    }

    /// Smallest chunk, except for the last chunk of a file.
    pub fn min_size(&self) -> usize {
        self.min_size
    }

    /// Target average chunk size.
    pub fn avg_size(&self) -> usize {
        self.avg_size
    }

    /// Largest chunk.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Normalization level, 0 to 3.
    pub fn normalization(&self) -> u8 {
        self.normalization
    }

    /// A fresh boundary finder sharing this table.
    pub fn chunker(&self) -> FastCdcChunker {
        FastCdcChunker {
            params: self.clone(),
            len: 0,
            hash: 0,
        }
    }

    /// The chunks of a whole in-memory file, as byte ranges.
    pub fn chunks<'a>(&self, data: &'a [u8]) -> Chunks<'a, FastCdcChunker> {
        Chunks::new(data, self.chunker())
    }
}

impl Default for FastCdcParams {
    /// 512 KiB / 1 MiB / 8 MiB, normalization level 1.
    fn default() -> Self {
        Self::new(
            FASTCDC_DEFAULT_MIN_SIZE,
            FASTCDC_DEFAULT_AVG_SIZE,
            FASTCDC_DEFAULT_MAX_SIZE,
        )
        .expect("default FastCDC sizes are valid")
    }
}

impl fmt::Debug for FastCdcParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastCdcParams")
            .field("min_size", &self.min_size)
            .field("avg_size", &self.avg_size)
            .field("max_size", &self.max_size)
            .field("normalization", &self.normalization)
            .finish()
    }
}

/// Incremental FastCDC boundary finder, giving the same cuts as
/// `fastcdc::v2020::FastCDC` whatever the buffer sizes, with one exception at the end
/// of a file.
///
/// fastcdc hashes bytes in pairs and skips a pair whose second byte lies past the end
/// of the input. When the hash hits on the file's last byte and that byte opens a pair,
/// fastcdc therefore keeps the byte in the final chunk, while this chunker cuts before
/// it and ends the file with a one-byte chunk. Matching fastcdc there would make a cut
/// depend on whether another byte follows, which a stream cannot know without reading
/// ahead; this way every cut depends only on the bytes before it.
#[derive(Clone, Debug)]
pub struct FastCdcChunker {
    params: FastCdcParams,
    len: usize,
    hash: u64,
}

impl FastCdcChunker {
    /// The parameters this chunker was made from.
    pub fn params(&self) -> &FastCdcParams {
        &self.params
    }

    /// Bytes of the unfinished chunk consumed so far.
    pub fn pending_len(&self) -> usize {
        self.len
    }

    /// Forgets the unfinished chunk, to start on a new file.
    pub fn reset(&mut self) {
        self.len = 0;
        self.hash = 0;
    }

    /// Consumes `data`, the next bytes of the stream. Returns `Some(n)` if the current
    /// chunk ends after `data[..n]`; the chunker has then been reset, and `data[n..]`
    /// must be fed again as the start of the next chunk. Returns `None` if all of
    /// `data` belongs to the current chunk. At the end of the stream, whatever was fed
    /// since the last cut is the final chunk.
    ///
    /// Unlike the Rabin chunker this can return `Some(0)`: the hash hit on the first
    /// byte of `data`, and fastcdc cuts before the byte that hits.
    pub fn next_boundary(&mut self, data: &[u8]) -> Option<usize> {
        let p = &self.params;
        let gear: &[u64; 256] = &p.gear;
        let max = p.max_size;
        // fastcdc hashes byte pairs (2i, 2i+1) from i = min/2, switches masks by pair
        // index, and tests a pair only if both its bytes lie within the chunk's limit.
        let hash_start = p.min_size & !1;
        let small_mask_end = p.avg_size & !1;
        let n = data.len();
        let mut i = 0;
        if self.len < hash_start {
            let skip = (hash_start - self.len).min(n);
            self.len += skip;
            i = skip;
        }
        while i < n && self.len < max {
            let (mask, region_end) = if self.len < small_mask_end {
                (p.mask_s, small_mask_end.min(max))
            } else {
                (p.mask_l, max)
            };
            let take = (region_end - self.len).min(n - i);
            let (h, hit) = gear_scan(gear, self.hash, mask, &data[i..i + take]);
            self.hash = h;
            match hit {
                None => {
                    self.len += take;
                    i += take;
                }
                Some(k) => {
                    let pos = self.len + k;
                    let at = i + k;
                    // fastcdc cuts just *before* the byte whose hash hit; that byte
                    // opens the next chunk. It tests a pair's first byte only if the
                    // pair fits under the maximum, and (see the type's docs) only if
                    // the input has a byte after it, which is not checked here.
                    if pos % 2 == 1 || pos + 1 < max {
                        self.reset();
                        return Some(at);
                    }
                    self.len = pos + 1;
                    i = at + 1;
                }
            }
        }
        if self.len >= max {
            self.reset();
            return Some(i);
        }
        None
    }
}

impl BoundaryFinder for FastCdcChunker {
    fn next_boundary(&mut self, data: &[u8]) -> Option<usize> {
        FastCdcChunker::next_boundary(self, data)
    }

    fn reset(&mut self) {
        FastCdcChunker::reset(self)
    }

    fn max_size(&self) -> usize {
        self.params.max_size
    }
}

/// Rolls the gear hash over `seg`; returns the hash and the index of the first byte
/// after which `hash & mask == 0`.
#[inline(always)]
fn gear_scan(gear: &[u64; 256], mut h: u64, mask: u64, seg: &[u8]) -> (u64, Option<usize>) {
    let g = |b: u8| gear[usize::from(b)];
    let mut quads = seg.chunks_exact(4);
    let mut base = 0;
    for q in &mut quads {
        let (g0, g1, g2, g3) = (g(q[0]), g(q[1]), g(q[2]), g(q[3]));
        // The hash after four bytes comes straight from `h`, so the three in between,
        // needed only for their test, stay off the loop-carried chain.
        let h1 = (h << 1).wrapping_add(g0);
        let h2 = (h1 << 1).wrapping_add(g1);
        let h3 = (h2 << 1).wrapping_add(g2);
        let t = (g0 << 3)
            .wrapping_add(g1 << 2)
            .wrapping_add(g2 << 1)
            .wrapping_add(g3);
        let h4 = (h << 4).wrapping_add(t);
        if h1 & mask == 0 {
            return (h1, Some(base));
        }
        if h2 & mask == 0 {
            return (h2, Some(base + 1));
        }
        if h3 & mask == 0 {
            return (h3, Some(base + 2));
        }
        if h4 & mask == 0 {
            return (h4, Some(base + 3));
        }
        h = h4;
        base += 4;
    }
    for (k, &b) in quads.remainder().iter().enumerate() {
        h = (h << 1).wrapping_add(g(b));
        if h & mask == 0 {
            return (h, Some(base + k));
        }
    }
    (h, None)
}
