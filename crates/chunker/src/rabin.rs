//! restic/chunker v0.4.0's Rabin-fingerprint chunker, boundary for boundary.
//!
//! The hot loop differs from restic's in two ways that leave every digest unchanged:
//!
//! * The reduction table is linear over GF(2), so sliding a byte out can be folded into
//!   one precomputed term, `out[o]·x^8 mod P`, that is XORed after the shift. This takes
//!   the slide-out off the loop-carried dependency chain.
//! * A digest depends only on the 64 bytes of its window, so a long stretch can be split
//!   into lanes hashed in lockstep, each warmed up on the 64 bytes before it. The chain of
//!   one digest is a shift, a table load and an XOR per byte, so independent lanes keep
//!   the core busy where a single chain would wait on the load.

use std::fmt;
use std::sync::Arc;

use crate::{BoundaryFinder, ChunkerError, Chunks, Pol, DEFAULT_MAX_SIZE, DEFAULT_MIN_SIZE};

/// Bytes in the Rabin window.
pub const WINDOW_SIZE: usize = 64;

/// A cut is made where the window's fingerprint has these bits clear (restic's
/// `splitmask`, 20 bits: about 1 MiB past the minimum on average).
pub const RABIN_SPLIT_MASK: u64 = (1 << 20) - 1;

const LANES: usize = 4;
/// Long enough that the per-lane warm-up (64 bytes) is noise, short enough that the
/// lanes past the cut, which are wasted work, stay small next to a ~1 MiB chunk.
const LANE_LEN: usize = 16 * 1024;
/// Below this per lane the warm-up stops being noise; the rest goes byte by byte.
const MIN_LANE_LEN: usize = 1024;

struct Tables {
    pol: Pol,
    shift: u32,
    /// `mod[b] = (b·x^k mod P) | b·x^k`: one XOR both cancels the 8 bits shifted past
    /// the degree and adds their remainder.
    modt: [u64; 256],
    /// `out[b]·x^8 mod P`, where `out[b] = b·x^(8·63) mod P` is restic's slide-out table.
    slide_out: [u64; 256],
}

impl Tables {
    fn new(pol: Pol) -> Self {
        let k = pol.degree().unwrap_or(0);
        let mut modt = [0u64; 256];
        let mut slide_out = [0u64; 256];
        for b in 0..256u64 {
            modt[b as usize] = Pol::new(b << k).modulo(pol).value() | (b << k);
            slide_out[b as usize] = Pol::new(out_entry(pol, b as u8) << 8).modulo(pol).value();
        }
        Tables {
            pol,
            shift: k - 8,
            modt,
            slide_out,
        }
    }

    /// Shifts `b` into a window whose outgoing byte is zero.
    #[inline(always)]
    fn push(&self, d: u64, b: u8) -> u64 {
        ((d << 8) | u64::from(b)) ^ self.modt[(d >> self.shift) as u8 as usize]
    }

    /// Shifts `b` in and `o` (the byte 64 positions back) out.
    #[inline(always)]
    fn roll(&self, d: u64, b: u8, o: u8) -> u64 {
        // Grouped so that only the final XOR waits on the `modt` load.
        ((d << 8) ^ (u64::from(b) ^ self.slide_out[o as usize]))
            ^ self.modt[(d >> self.shift) as u8 as usize]
    }

    fn fingerprint(&self, window: &[u8]) -> u64 {
        window.iter().fold(0, |d, &b| self.push(d, b))
    }
}

/// restic's `out[b]`: `b` followed by 63 zero bytes, reduced after every byte.
fn out_entry(pol: Pol, b: u8) -> u64 {
    (1..WINDOW_SIZE)
        .fold(Pol::new(u64::from(b)).modulo(pol), |h, _| {
            Pol::new(h.value() << 8).modulo(pol)
        })
        .value()
}

/// Rabin chunking parameters for one repository: the polynomial's lookup tables plus
/// the chunk size limits.
///
/// Building one computes two 256-entry tables (microseconds). Do it once per
/// repository; cloning shares the tables through an [`Arc`], so a chunker per file
/// costs nothing.
#[derive(Clone)]
pub struct RabinParams {
    tables: Arc<Tables>,
    min_size: usize,
    max_size: usize,
}

impl RabinParams {
    /// restic's parameters for `pol`: 512 KiB minimum, 8 MiB maximum, 20-bit mask.
    ///
    /// Fails if `pol` is reducible (restic rejects such a `config`) or its degree is
    /// outside 8..=56, which the 64-bit hash state cannot hold.
    pub fn new(pol: Pol) -> Result<Self, ChunkerError> {
        match pol.degree() {
            Some(8..=56) => {}
            _ => return Err(ChunkerError::UnusableDegree(pol)),
        }
        if !pol.is_irreducible() {
            return Err(ChunkerError::Reducible(pol));
        }
        Ok(RabinParams {
            tables: Arc::new(Tables::new(pol)),
            min_size: DEFAULT_MIN_SIZE,
            max_size: DEFAULT_MAX_SIZE,
        })
    }

    /// The same tables with other size limits. restic itself never changes them; this
    /// exists for experiments and tests. Requires `64 <= min_size <= max_size`.
    pub fn with_sizes(mut self, min_size: usize, max_size: usize) -> Result<Self, ChunkerError> {
        if min_size < WINDOW_SIZE || min_size > max_size {
            return Err(ChunkerError::InvalidSizes(format!(
                "need {WINDOW_SIZE} <= min ({min_size}) <= max ({max_size})"
            )));
        }
        self.min_size = min_size;
        self.max_size = max_size;
        Ok(self)
    }

    /// The polynomial.
    pub fn polynomial(&self) -> Pol {
        self.tables.pol
    }

    /// Smallest chunk, except for the last chunk of a file.
    pub fn min_size(&self) -> usize {
        self.min_size
    }

    /// Largest chunk.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// A fresh boundary finder sharing these tables.
    pub fn chunker(&self) -> RabinChunker {
        RabinChunker {
            params: self.clone(),
            len: 0,
            digest: 0,
            tail: [0; WINDOW_SIZE],
        }
    }

    /// The chunks of a whole in-memory file, as byte ranges.
    pub fn chunks<'a>(&self, data: &'a [u8]) -> Chunks<'a, RabinChunker> {
        Chunks::new(data, self.chunker())
    }

    /// The Rabin fingerprint of the last 64 bytes of `data` (of all of it if shorter,
    /// as if preceded by zeros): the value whose low 20 bits decide a cut.
    pub fn fingerprint(&self, data: &[u8]) -> u64 {
        self.tables
            .fingerprint(&data[data.len().saturating_sub(WINDOW_SIZE)..])
    }
}

impl fmt::Debug for RabinParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabinParams")
            .field("polynomial", &self.tables.pol)
            .field("min_size", &self.min_size)
            .field("max_size", &self.max_size)
            .finish()
    }
}

/// Incremental restic-exact Rabin boundary finder for one stream at a time.
///
/// Feed a file's bytes in buffers of any size through
/// [`next_boundary`](RabinChunker::next_boundary); the cut points do not depend on how
/// the stream is split.
#[derive(Clone, Debug)]
pub struct RabinChunker {
    params: RabinParams,
    /// Bytes of the current chunk seen so far.
    len: usize,
    /// Fingerprint state; meaningful once `len >= min_size - 64`.
    digest: u64,
    /// The chunk's last bytes seen, at index `position % 64`, for windows that straddle
    /// two buffers.
    tail: [u8; WINDOW_SIZE],
}

impl RabinChunker {
    /// The parameters this chunker was made from.
    pub fn params(&self) -> &RabinParams {
        &self.params
    }

    /// Bytes of the unfinished chunk consumed so far.
    pub fn pending_len(&self) -> usize {
        self.len
    }

    /// Forgets the unfinished chunk, to start on a new file.
    pub fn reset(&mut self) {
        self.len = 0;
        self.digest = 0;
    }

    /// Consumes `data`, the next bytes of the stream. Returns `Some(n)` if the current
    /// chunk ends after `data[..n]`; the chunker has then been reset, and `data[n..]`
    /// must be fed again as the start of the next chunk. Returns `None` if all of
    /// `data` belongs to the current chunk. At the end of the stream, whatever was fed
    /// since the last cut is the final chunk.
    pub fn next_boundary(&mut self, data: &[u8]) -> Option<usize> {
        let min = self.params.min_size;
        let max = self.params.max_size;
        let t: &Tables = &self.params.tables;
        let len_at_start = self.len;
        let n = data.len();
        let mut i = 0;

        // restic does not hash the first min-64 bytes: no cut can fall there, and the
        // window at the first possible cut holds only bytes after them.
        let hash_start = min - WINDOW_SIZE;
        if self.len < hash_start {
            let skip = (hash_start - self.len).min(n);
            self.len += skip;
            i = skip;
        }

        // restic resets to a zero window with 0x01 slid in; after 64 more bytes that
        // 0x01 has slid out again, so starting from an all-zero state gives the same
        // digest at every position where a cut is tested.
        while self.len < min && i < n {
            self.digest = t.push(self.digest, data[i]);
            self.len += 1;
            i += 1;
            if self.len == min && (self.digest & RABIN_SPLIT_MASK == 0 || self.len >= max) {
                self.reset();
                return Some(i);
            }
        }

        if self.len >= min && i < n {
            let end = i + (n - i).min(max - self.len);
            let mut d = self.digest;
            // The first 64 positions of this buffer take their outgoing byte from the
            // previous buffer.
            while i < end.min(WINDOW_SIZE) {
                d = t.roll(d, data[i], self.tail[self.len % WINDOW_SIZE]);
                self.len += 1;
                i += 1;
                if d & RABIN_SPLIT_MASK == 0 {
                    self.reset();
                    return Some(i);
                }
            }
            if i < end {
                match scan::<RABIN_SPLIT_MASK>(t, data, i, end, d) {
                    Ok(cut) => {
                        self.reset();
                        return Some(cut);
                    }
                    Err(last) => d = last,
                }
                self.len += end - i;
                i = end;
            }
            self.digest = d;
            if self.len >= max {
                self.reset();
                return Some(i);
            }
        }

        let keep = n.min(WINDOW_SIZE);
        for (j, &b) in data.iter().enumerate().skip(n - keep) {
            self.tail[(len_at_start + j) % WINDOW_SIZE] = b;
        }
        None
    }
}

impl BoundaryFinder for RabinChunker {
    fn next_boundary(&mut self, data: &[u8]) -> Option<usize> {
        RabinChunker::next_boundary(self, data)
    }

    fn reset(&mut self) {
        RabinChunker::reset(self)
    }

    fn max_size(&self) -> usize {
        self.params.max_size
    }
}

/// Rolls the hash over `data[from..to]`, whose outgoing bytes are `data[from - 64..]`,
/// starting from digest `d`. Returns the index just past the first cut, or the final
/// digest if there is none.
fn scan<const MASK: u64>(
    t: &Tables,
    data: &[u8],
    from: usize,
    to: usize,
    mut d: u64,
) -> Result<usize, u64> {
    let mut pos = from;
    while to - pos >= LANES * MIN_LANE_LEN {
        let left = to - pos;
        let lane_len = (left / LANES).min(LANE_LEN);
        let block = &data[pos - WINDOW_SIZE..pos + LANES * lane_len];
        // A literal lane length lets the full-size case address the lanes by constant
        // offsets from one pointer instead of four pointers that spill to the stack.
        let found = if left >= LANES * LANE_LEN {
            scan_block::<MASK>(t, block, LANE_LEN, d)
        } else {
            scan_block::<MASK>(t, block, lane_len, d)
        };
        match found {
            Ok(n) => return Ok(pos + n),
            Err(last) => d = last,
        }
        pos += LANES * lane_len;
    }
    let win = &data[pos - WINDOW_SIZE..to];
    for (k, (&b, &o)) in win[WINDOW_SIZE..].iter().zip(win).enumerate() {
        d = t.roll(d, b, o);
        if d & MASK == 0 {
            return Ok(pos + k + 1);
        }
    }
    Err(d)
}

/// [`scan`] over one block (64 bytes of history, then `LANES` lanes of `lane_len`
/// bytes) in interleaved lanes. The result is relative to the end of the history.
#[inline(always)]
fn scan_block<const MASK: u64>(
    t: &Tables,
    block: &[u8],
    lane_len: usize,
    d: u64,
) -> Result<usize, u64> {
    // Each lane is its bytes paired with the bytes 64 positions back.
    let lane = |k: usize| {
        let s = &block[k * lane_len..(k + 1) * lane_len + WINDOW_SIZE];
        (s, s[WINDOW_SIZE..].iter().zip(&s[..lane_len]))
    };
    let (s1, s2, s3) = (lane(1).0, lane(2).0, lane(3).0);
    let mut h0 = d;
    let mut h1 = t.fingerprint(&s1[..WINDOW_SIZE]);
    let mut h2 = t.fingerprint(&s2[..WINDOW_SIZE]);
    let mut h3 = t.fingerprint(&s3[..WINDOW_SIZE]);
    // First cut (exclusive end within the lane) of lanes 1..=3; a later lane's cut only
    // counts if no earlier lane has one.
    let mut first = [usize::MAX; LANES];
    let lanes = lane(0).1.zip(lane(1).1).zip(lane(2).1).zip(lane(3).1);
    for (j, ((((b0, o0), (b1, o1)), (b2, o2)), (b3, o3))) in lanes.enumerate() {
        h0 = t.roll(h0, *b0, *o0);
        h1 = t.roll(h1, *b1, *o1);
        h2 = t.roll(h2, *b2, *o2);
        h3 = t.roll(h3, *b3, *o3);
        if (h0 & MASK == 0) | (h1 & MASK == 0) | (h2 & MASK == 0) | (h3 & MASK == 0) {
            if h0 & MASK == 0 {
                return Ok(j + 1);
            }
            for (k, h) in [(1, h1), (2, h2), (3, h3)] {
                if h & MASK == 0 && first[k] == usize::MAX {
                    first[k] = j + 1;
                }
            }
        }
    }
    match (1..LANES).find(|&k| first[k] != usize::MAX) {
        Some(k) => Ok(k * lane_len + first[k]),
        None => Err(h3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Pol = Pol::new(0x3da3358b4dc173);
    const BLOCK: usize = LANES * LANE_LEN;

    #[test]
    fn tables_match_restic() {
        let t = Tables::new(P);
        assert_eq!(t.shift, 45);
        assert_eq!(t.modt[1], 0x003da3358b4dc173);
        assert_eq!(t.modt[255], 0x1ff7ac8a5af476a7);
        assert_eq!(out_entry(P, 1), 0x17eb4232e19216);
        assert_eq!(out_entry(P, 255), 0x0b80b98cecc39a);
        let window: Vec<u8> = (0..64).collect();
        assert_eq!(t.fingerprint(&window), 0x044b76cac5cee3);
    }

    /// restic's own slide: XOR out first, then shift. The folded form must agree.
    #[test]
    fn folded_roll_equals_restic_slide() {
        let t = Tables::new(P);
        let out: Vec<u64> = (0..=255).map(|b| out_entry(P, b)).collect();
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let (mut restic, mut win, mut wpos) = (0u64, [0u8; 64], 0usize);
        let mut ours = 0u64;
        for (i, &b) in data.iter().enumerate() {
            let o = win[wpos];
            win[wpos] = b;
            wpos = (wpos + 1) % 64;
            restic ^= out[o as usize];
            restic = ((restic << 8) | u64::from(b)) ^ t.modt[(restic >> 45) as usize];
            ours = t.roll(ours, b, if i >= 64 { data[i - 64] } else { 0 });
            assert_eq!(restic, ours, "at {i}");
            assert!(ours < 1 << 53);
        }
        assert_eq!(ours, t.fingerprint(&data[data.len() - 64..]));
    }

    #[test]
    fn rejects_bad_polynomials_and_sizes() {
        assert_eq!(
            RabinParams::new(Pol::new(0x38f1e565e288df)).unwrap_err(),
            ChunkerError::Reducible(Pol::new(0x38f1e565e288df))
        );
        assert!(matches!(
            RabinParams::new(Pol::new(0b111)),
            Err(ChunkerError::UnusableDegree(_))
        ));
        assert!(matches!(
            RabinParams::new(Pol::new(0)),
            Err(ChunkerError::UnusableDegree(_))
        ));
        let p = RabinParams::new(P).unwrap();
        assert!(p.clone().with_sizes(63, 1000).is_err());
        assert!(p.clone().with_sizes(2000, 1000).is_err());
        assert!(p.with_sizes(64, 64).is_ok());
    }

    /// The lane kernel must find the same cut as a plain scalar roll wherever the cut
    /// falls, including a later lane hitting first in lockstep order.
    #[test]
    fn lanes_agree_with_scalar() {
        let params = RabinParams::new(P).unwrap();
        let t = &*params.tables;
        let mut x = 0x9e3779b97f4a7c15u64;
        let data: Vec<u8> = (0..WINDOW_SIZE + 4 * BLOCK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let scalar = |from: usize, to: usize, mask: u64| {
            let mut d = t.fingerprint(&data[from - 64..from]);
            for i in from..to {
                d = t.roll(d, data[i], data[i - 64]);
                if d & mask == 0 {
                    return Ok(i + 1);
                }
            }
            Err(d)
        };
        const M: u64 = 0xffff;
        let mut lanes_hit = [0; LANES];
        for start in (64..64 + 2 * BLOCK).step_by(251) {
            let d = t.fingerprint(&data[start - 64..start]);
            // Vary the end so that shorter lanes and the scalar tail run too.
            let to = start + BLOCK + (start * 37) % BLOCK;
            let got = scan::<M>(t, &data, start, to, d);
            assert_eq!(got, scalar(start, to, M), "start {start}");
            match got {
                Ok(c) if c - start <= BLOCK => lanes_hit[(c - start - 1) / LANE_LEN] += 1,
                _ => {}
            }
            let got = scan::<RABIN_SPLIT_MASK>(t, &data, start, to, d);
            assert_eq!(got, scalar(start, to, RABIN_SPLIT_MASK), "start {start}");
        }
        assert!(lanes_hit.iter().all(|&n| n > 0), "{lanes_hit:?}");
    }
}
