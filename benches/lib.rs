//! Benchmarks of restash kernels: see `benches/chunker.rs`, `benches/kernels.rs` and the
//! end-to-end harness in `e2e/run.sh` (README.md here).
//!
//! * `chunker`: Rabin and FastCDC chunking throughput.

use std::io::Write;

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// `len` seeded pseudo-random bytes: incompressible input.
pub fn random_input(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

/// `len` bytes of log lines with varying fields: compresses well (zstd 4–6×) but is not
/// periodic, so chunk cut points stay content-defined.
pub fn text_input(len: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(0x7e47);
    let mut data = Vec::with_capacity(len + 256);
    let paths = [
        "/api/v1/items",
        "/api/v1/users",
        "/static/app.js",
        "/health",
        "/login",
    ];
    let mut i = 0u64;
    while data.len() < len {
        writeln!(
            data,
            "2024-03-{:02}T{:02}:{:02}:{:02}.{:03}Z INFO req={:08x} {} {}/{} status={} took={}ms",
            1 + i / 86_400_000 % 28,
            i / 3_600_000 % 24,
            i / 60_000 % 60,
            i / 1000 % 60,
            i % 1000,
            rng.gen::<u32>(),
            ["GET", "POST", "PUT"][rng.gen_range(0..3)],
            paths[rng.gen_range(0..paths.len())],
            rng.gen_range(0..5000),
            [200, 200, 200, 304, 404, 500][rng.gen_range(0..6)],
            rng.gen_range(0..900),
        )
        .unwrap();
        i += rng.gen_range(1..50);
    }
    data.truncate(len);
    data
}
