//! Chunking throughput: restic-exact Rabin and FastCDC, on random and on compressible
//! (log-like) input, over slices and through the streaming adapter.
//!
//! `cargo bench -p restash-benches --bench chunker`

// criterion_group! expands to an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use restash_benches::{random_input, text_input};
use restash_chunker::{BoundaryFinder, FastCdcParams, Pol, RabinParams, StreamChunker};

const SIZE: usize = 64 << 20;

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
    for (name, data) in [
        ("random", random_input(SIZE, 0x5eed)),
        ("text", text_input(SIZE)),
    ] {
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
