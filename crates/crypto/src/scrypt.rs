//! scrypt (RFC 7914) with the p lanes of ROMix run in parallel.
//!
//! Every command derives the user key before it can read anything, so this is on the
//! critical path of each one. The `scrypt` crate runs restic's 3 to 5 lanes one after
//! another; here they run on up to [`MAX_LANE_THREADS`] threads, which is where the time
//! is won. A lane is converted to words once, but one lane costs about what it costs in
//! the crate: its per-block byte/word conversions turned out cheap next to Salsa20/8.
//!
//! Salsa20/8 is plain scalar code on a `[u32; 16]`: BlockMix chains every block on the
//! previous one, so a lane offers no parallelism beyond the four quarter-rounds of a
//! round, which already keep the integer units busy. Keeping the block in the "diagonal"
//! order that SSE implementations use measured ~40 % slower (the compiler half-vectorises
//! it), the `salsa20` crate's core no faster, and interleaving two lanes on one thread
//! took twice as long as one.

use std::sync::Mutex;

use pbkdf2::pbkdf2_hmac;
use sha2::Sha256;
use zeroize::Zeroize;

/// Lanes that may run at once: each holds its own V (32 MiB at restic's N = 2^15, r = 8).
const MAX_LANE_THREADS: usize = 4;

/// Memory that parallel lanes may use together; a single lane is always allowed its V,
/// however large, as sequential scrypt would need it too.
const PARALLEL_MEMORY_BUDGET: usize = 256 << 20;

/// Words of a 64-byte Salsa20 block.
const BLOCK_WORDS: usize = 16;

/// Checks what RFC 7914 and the memory arithmetic require of (log2 N, r, p), so that no
/// allocation size below can overflow. The caller has already checked N, r, p against
/// restic's own limits.
pub(crate) fn check_params(log_n: u8, r: u32, p: u32) -> Result<(), String> {
    let invalid = || format!("log2(N)={log_n} r={r} p={p} out of range");
    if r == 0 || p == 0 || u32::from(log_n) >= usize::BITS {
        return Err(invalid());
    }
    let r = usize::try_from(r).map_err(|_| invalid())?;
    let p = usize::try_from(p).map_err(|_| invalid())?;
    let r128 = r.checked_mul(128).ok_or_else(invalid)?;
    r128.checked_mul(1usize << log_n).ok_or_else(invalid)?;
    r128.checked_mul(p).ok_or_else(invalid)?;
    // RFC 7914 §2: N < 2^(128·r/8).
    if usize::from(log_n) >= r.saturating_mul(16) {
        return Err(invalid());
    }
    // RFC 7914 §2: p ≤ ((2^32 − 1)·32) / (128·r).
    if r.saturating_mul(p) >= 1 << 30 {
        return Err(invalid());
    }
    Ok(())
}

/// scrypt(password, salt, N = 2^log_n, r, p) into `out`. The parameters must have passed
/// [`check_params`]. The only failure left is running out of memory for V.
pub(crate) fn scrypt(
    password: &[u8],
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
    out: &mut [u8],
) -> Result<(), String> {
    let n = 1usize << log_n;
    let lane_bytes = 128 * r as usize;
    let mut b = Vec::new();
    // A hostile key file may ask for more than the machine has: fail, do not abort.
    b.try_reserve_exact(lane_bytes * p as usize).map_err(|_| {
        format!(
            "cannot allocate {} bytes for r={r} p={p}",
            lane_bytes as u128 * u128::from(p)
        )
    })?;
    b.resize(lane_bytes * p as usize, 0);
    pbkdf2_hmac::<Sha256>(password, salt, 1, &mut b);

    let v_words = n * (lane_bytes / 4);
    let threads = lane_threads(p as usize, v_words * 4);
    let mut vs = Vec::with_capacity(threads);
    for _ in 0..threads {
        let mut v: Vec<u32> = Vec::new();
        if v.try_reserve_exact(v_words).is_err() {
            break;
        }
        vs.push(v);
    }
    if vs.is_empty() {
        b.zeroize();
        return Err(format!(
            "cannot allocate {} bytes for N={n} r={r}",
            v_words as u128 * 4
        ));
    }

    let lanes = Mutex::new(b.chunks_mut(lane_bytes));
    std::thread::scope(|s| {
        let mut vs = vs.into_iter();
        let mine = vs.next();
        for v in vs {
            // A thread that cannot be started leaves its lanes to the others.
            let _ = std::thread::Builder::new().spawn_scoped(s, || lane_worker(&lanes, v, n));
        }
        if let Some(v) = mine {
            lane_worker(&lanes, v, n);
        }
    });

    pbkdf2_hmac::<Sha256>(password, &b, 1, out);
    b.zeroize();
    Ok(())
}

/// How many lanes to run at once: no more than there are lanes, cores,
/// [`MAX_LANE_THREADS`], or than fit [`PARALLEL_MEMORY_BUDGET`].
fn lane_threads(p: usize, v_bytes: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let by_memory = (PARALLEL_MEMORY_BUDGET / v_bytes.max(1)).max(1);
    p.min(cores).min(MAX_LANE_THREADS).min(by_memory).max(1)
}

/// Takes lanes until none are left; each thread reuses one V for all its lanes.
fn lane_worker<'a, I>(lanes: &Mutex<I>, mut v: Vec<u32>, n: usize)
where
    I: Iterator<Item = &'a mut [u8]>,
{
    let mut x = Vec::new();
    let mut y = Vec::new();
    // The guard is dropped inside `and_then`: the lock is not held while a lane runs. A
    // poisoned lock means another lane thread panicked, which the scope re-raises.
    while let Some(lane) = lanes.lock().ok().and_then(|mut it| it.next()) {
        lane_to_words(lane, &mut x);
        y.resize(x.len(), 0);
        ro_mix(&mut x, &mut y, &mut v, n);
        words_to_lane(&x, lane);
    }
    // V, X and Y hold intermediate states from which the password can be tested without
    // the memory-hard part: do not leave them in freed memory.
    v.as_mut_slice().zeroize();
    x.as_mut_slice().zeroize();
    y.as_mut_slice().zeroize();
}

/// Little-endian bytes of one lane → words.
fn lane_to_words(lane: &[u8], words: &mut Vec<u32>) {
    words.clear();
    words.extend(
        lane.chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])),
    );
}

/// Inverse of [`lane_to_words`].
fn words_to_lane(words: &[u32], lane: &mut [u8]) {
    for (bytes, w) in lane.chunks_exact_mut(4).zip(words) {
        bytes.copy_from_slice(&w.to_le_bytes());
    }
}

/// ROMix (RFC 7914 §5) on one lane of 32·r words; `y` is scratch of the same length and
/// `v` should have capacity for N lanes.
fn ro_mix(x: &mut [u32], y: &mut [u32], v: &mut Vec<u32>, n: usize) {
    let len = x.len();
    v.clear();
    // Filling V by appending writes each word once; `vec![0; ..]` would write it twice.
    for _ in 0..n {
        let start = v.len();
        v.extend_from_slice(x);
        block_mix(&v[start..], x);
    }
    let last = len - BLOCK_WORDS;
    for _ in 0..n {
        // Integerify: the first 64 bits of the last block, modulo N.
        let j = (u64::from(x[last]) | u64::from(x[last + 1]) << 32) as usize & (n - 1);
        block_mix_xor(x, &v[j * len..(j + 1) * len], y);
        x.copy_from_slice(y);
    }
}

/// BlockMix (RFC 7914 §4) of `input` into `output`.
fn block_mix(input: &[u32], output: &mut [u32]) {
    let blocks = input.len() / BLOCK_WORDS;
    let mut x = [0u32; BLOCK_WORDS];
    x.copy_from_slice(&input[input.len() - BLOCK_WORDS..]);
    for (i, block) in input.chunks_exact(BLOCK_WORDS).enumerate() {
        for (xw, &bw) in x.iter_mut().zip(block) {
            *xw ^= bw;
        }
        salsa20_8(&mut x);
        output[out_pos(i, blocks)..][..BLOCK_WORDS].copy_from_slice(&x);
    }
}

/// BlockMix of `a XOR b`, without materialising the XOR (ROMix's second loop).
fn block_mix_xor(a: &[u32], b: &[u32], output: &mut [u32]) {
    let blocks = a.len() / BLOCK_WORDS;
    let tail = a.len() - BLOCK_WORDS;
    let mut x = [0u32; BLOCK_WORDS];
    for (k, xw) in x.iter_mut().enumerate() {
        *xw = a[tail + k] ^ b[tail + k];
    }
    for (i, (ba, bb)) in a
        .chunks_exact(BLOCK_WORDS)
        .zip(b.chunks_exact(BLOCK_WORDS))
        .enumerate()
    {
        for ((xw, &wa), &wb) in x.iter_mut().zip(ba).zip(bb) {
            *xw ^= wa ^ wb;
        }
        salsa20_8(&mut x);
        output[out_pos(i, blocks)..][..BLOCK_WORDS].copy_from_slice(&x);
    }
}

/// BlockMix's output order: even blocks first, then odd ones.
#[inline(always)]
fn out_pos(i: usize, blocks: usize) -> usize {
    (i / 2 + (i % 2) * (blocks / 2)) * BLOCK_WORDS
}

/// Salsa20/8 core in place: `B ← B + Salsa20/8(B)` (RFC 7914 §3).
#[inline(always)]
fn salsa20_8(block: &mut [u32; BLOCK_WORDS]) {
    let mut x = *block;
    macro_rules! quarter {
        ($a:literal, $b:literal, $c:literal, $d:literal) => {
            x[$b] ^= x[$a].wrapping_add(x[$d]).rotate_left(7);
            x[$c] ^= x[$b].wrapping_add(x[$a]).rotate_left(9);
            x[$d] ^= x[$c].wrapping_add(x[$b]).rotate_left(13);
            x[$a] ^= x[$d].wrapping_add(x[$c]).rotate_left(18);
        };
    }
    for _ in 0..4 {
        quarter!(0, 4, 8, 12);
        quarter!(5, 9, 13, 1);
        quarter!(10, 14, 2, 6);
        quarter!(15, 3, 7, 11);
        quarter!(0, 1, 2, 3);
        quarter!(5, 6, 7, 4);
        quarter!(10, 11, 8, 9);
        quarter!(15, 12, 13, 14);
    }
    for (b, x) in block.iter_mut().zip(x) {
        *b = b.wrapping_add(x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrypt_hex(password: &str, salt: &str, n: u64, r: u32, p: u32) -> String {
        let log_n = n.trailing_zeros() as u8;
        check_params(log_n, r, p).unwrap();
        let mut out = [0u8; 64];
        scrypt(password.as_bytes(), salt.as_bytes(), log_n, r, p, &mut out).unwrap();
        hex::encode(out)
    }

    // RFC 7914 §12.
    #[test]
    fn rfc7914_empty() {
        assert_eq!(
            scrypt_hex("", "", 16, 1, 1),
            "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442\
             fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906"
        );
    }

    #[test]
    fn rfc7914_password_nacl() {
        assert_eq!(
            scrypt_hex("password", "NaCl", 1024, 8, 16),
            "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162\
             2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
        );
    }

    #[test]
    fn rfc7914_pleaseletmein() {
        assert_eq!(
            scrypt_hex("pleaseletmein", "SodiumChloride", 16384, 8, 1),
            "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2\
             d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887"
        );
    }

    // 1 GiB of V, about 4 s in the test profile: the only vector with N above 2^16.
    #[test]
    fn rfc7914_pleaseletmein_1m() {
        assert_eq!(
            scrypt_hex("pleaseletmein", "SodiumChloride", 1048576, 8, 1),
            "2101cb9b6a511aaeaddbbe09cf70f881ec568d574a2ffd4dabe5ee9820adaa47\
             8e56fd8f4ba5d09ffa1c6d927c40f4c337304049e8a952fbcbf45c6fa77a41a4"
        );
    }

    #[test]
    fn salsa20_8_rfc7914_vector() {
        // RFC 7914 §8.
        let input = hex::decode(
            "7e879a214f3ec9867ca940e641718f26baee555b8c61c1b50df846116dcd3b1d\
             ee24f319df9b3d8514121e4b5ac5aa3276021d2909c74829edebc68db8b8c25e",
        )
        .unwrap();
        let mut words = Vec::new();
        lane_to_words(&input, &mut words);
        let mut block = [0u32; BLOCK_WORDS];
        block.copy_from_slice(&words);
        salsa20_8(&mut block);
        let mut out = [0u8; 64];
        words_to_lane(&block, &mut out);
        assert_eq!(
            hex::encode(out),
            "a41f859c6608cc993b81cacb020cef05044b2181a2fd337dfd7b1c6396682f29\
             b4393168e3c9e6bcfe6bc5b7a06d96bae424cc102c91745c24ad673dc7618f81"
        );
    }

    #[test]
    fn parallel_lanes_match_one_thread() {
        // p above MAX_LANE_THREADS so that some thread runs several lanes with one V.
        let (log_n, r, p) = (6u8, 2u32, 7u32);
        let mut parallel = [0u8; 64];
        scrypt(b"pw", b"salt", log_n, r, p, &mut parallel).unwrap();

        let lane_bytes = 128 * r as usize;
        let mut b = vec![0u8; lane_bytes * p as usize];
        pbkdf2_hmac::<Sha256>(b"pw", b"salt", 1, &mut b);
        let (mut x, mut y, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for lane in b.chunks_mut(lane_bytes) {
            lane_to_words(lane, &mut x);
            y.resize(x.len(), 0);
            ro_mix(&mut x, &mut y, &mut v, 1 << log_n);
            words_to_lane(&x, lane);
        }
        let mut sequential = [0u8; 64];
        pbkdf2_hmac::<Sha256>(b"pw", &b, 1, &mut sequential);
        assert_eq!(parallel, sequential);
    }

    #[test]
    fn matches_scrypt_crate() {
        use rand::{Rng, RngCore, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7914);
        for _ in 0..24 {
            let r = rng.gen_range(1..=9u32);
            let p = rng.gen_range(1..=6u32);
            let log_n = rng.gen_range(1..=9u8);
            let mut password = vec![0u8; rng.gen_range(0..80)];
            let mut salt = vec![0u8; rng.gen_range(0..80)];
            rng.fill_bytes(&mut password);
            rng.fill_bytes(&mut salt);
            let len = rng.gen_range(10..=64);
            let mut ours = vec![0u8; len];
            scrypt(&password, &salt, log_n, r, p, &mut ours).unwrap();
            let mut theirs = vec![0u8; len];
            let params = ::scrypt::Params::new(log_n, r, p, len).unwrap();
            ::scrypt::scrypt(&password, &salt, &params, &mut theirs).unwrap();
            assert_eq!(ours, theirs, "log_n={log_n} r={r} p={p} len={len}");
        }
    }

    #[test]
    fn check_params_rejects_what_rfc_forbids() {
        assert!(check_params(4, 1, 1).is_ok());
        assert!(check_params(16, 1, 1).is_err()); // N ≥ 2^(16·r)
        assert!(check_params(4, 0, 1).is_err());
        assert!(check_params(4, 1, 0).is_err());
        assert!(check_params(4, 1 << 15, 1 << 15).is_err());
        assert!(check_params(63, 8, 1).is_err()); // N·128·r overflows usize
        assert!(check_params(64, 8, 1).is_err());
    }
}
