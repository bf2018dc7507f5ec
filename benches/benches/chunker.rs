//! Chunking throughput: restic-exact Rabin and FastCDC, on random and on compressible
//! (log-like) input, over slices and through the streaming adapter.
//!
//! `cargo bench -p restash-benches --bench chunker`

// criterion_group! expands to an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::io::Write;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use restash_chunker::{BoundaryFinder, FastCdcParams, Pol, RabinParams, StreamChunker};

const SIZE: usize = 64 << 20;

fn random_input() -> Vec<u8> {
    let mut data = vec![0u8; SIZE];
    StdRng::seed_from_u64(0x5eed).fill_bytes(&mut data);
    data
}

/// Log lines with varying fields: compresses well but is not periodic, so cut points
/// stay content-defined.
fn text_input() -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(0x7e47);
    let mut data = Vec::with_capacity(SIZE + 256);
    let paths = [
        "/api/v1/items",
        "/api/v1/users",
        "/static/app.js",
        "/health",
        "/login",
    ];
    let mut i = 0u64;
    while data.len() < SIZE {
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
    data.truncate(SIZE);
    data
}

fn stream_count<C: BoundaryFinder>(data: &[u8], finder: C) -> usize {
    let mut stream = StreamChunker::new(data, finder);
    let mut n = 0;
    while let Some(chunk) = stream.next_chunk().unwrap() {
        n += chunk.len() & 1;
    }
    n
}

fn bench_chunkers(c: &mut Criterion) {
    let rabin = RabinParams::new(Pol::new(0x3da3358b4dc173)).unwrap();
    let fast = FastCdcParams::default();
    for (name, data) in [("random", random_input()), ("text", text_input())] {
        let mut g = c.benchmark_group(format!("chunker/{name}"));
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.sample_size(10);
        g.bench_function("rabin", |b| {
            b.iter(|| rabin.chunks(black_box(&data)).count())
        });
        g.bench_function("fastcdc", |b| {
            b.iter(|| fast.chunks(black_box(&data)).count())
        });
        g.bench_function("rabin-stream", |b| {
            b.iter(|| stream_count(black_box(&data), rabin.chunker()))
        });
        g.bench_function("fastcdc-stream", |b| {
            b.iter(|| stream_count(black_box(&data), fast.chunker()))
        });
        // The fastcdc crate's own slice iterator, for reference.
        g.bench_function("fastcdc-crate", |b| {
            b.iter(|| {
                fastcdc::v2020::FastCDC::new(black_box(&data), 512 << 10, 1 << 20, 8 << 20).count()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench_chunkers);
criterion_main!(benches);
