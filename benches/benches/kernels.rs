//! Per-blob kernels of the backup and restore pipelines: authenticated encryption
//! (AES-256-CTR + Poly1305-AES), SHA-256 blob ids, zstd blob (de)compression, the
//! Go-exact tree JSON codec, and the scrypt key derivation every command starts with.
//!
//! `cargo bench -p restash-benches --bench kernels`

// criterion_group! expands to an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use restash_benches::{random_input, text_input};
use restash_crypto::{derive_key, KdfParams, Key};
use restash_format::{compress_blob, decompress_blob, BlobId, GoTime, Node, NodeType, Tree};
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;
const KIB4: usize = 4 << 10;
const TREE_NODES: usize = 1000;

/// A directory listing like one `restic backup` writes for a source tree: mostly regular
/// files with one to four content blobs, some subdirectories and symlinks, nanosecond
/// times in a non-UTC zone.
fn sample_tree(n: usize) -> Tree {
    let mut rng = StdRng::seed_from_u64(0x7aee);
    let mut id = || {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        BlobId::hash(&b)
    };
    let mut rng2 = StdRng::seed_from_u64(0x7aee + 1);
    let nodes = (0..n)
        .map(|i| {
            let t = |d: i64, ns: u32| GoTime::from_unix(1_700_000_000 + d, ns, 3600).unwrap();
            let kind = i % 20;
            let mut node = Node {
                name: format!("entry-{i:05}.dat").into_bytes(),
                mode: 0o644,
                mtime: t(i as i64, rng2.gen_range(0..1_000_000_000)),
                atime: t(i as i64 + 7, rng2.gen_range(0..1_000_000_000)),
                ctime: t(i as i64 + 9, rng2.gen_range(0..1_000_000_000)),
                uid: 1000,
                gid: 1000,
                user: "alice".into(),
                group: "users".into(),
                inode: 4_000_000 + i as u64,
                device_id: 66306,
                links: 1,
                ..Node::default()
            };
            match kind {
                0 => {
                    node.node_type = NodeType::Dir;
                    node.mode = 0o755 | (1 << 31);
                    node.subtree = Some(id());
                }
                1 => {
                    node.node_type = NodeType::Symlink;
                    node.mode = 0o777 | (1 << 27);
                    node.linktarget = format!("../target/entry-{:05}.dat", i / 2);
                }
                _ => {
                    let blobs = rng2.gen_range(1..=4);
                    node.size = rng2.gen_range(1..4 << 20);
                    node.content = Some((0..blobs).map(|_| id()).collect());
                }
            }
            node
        })
        .collect();
    Tree { nodes }
}

fn bench_crypto(c: &mut Criterion) {
    let key = Key::random();
    for (label, len) in [("1MiB", MIB), ("4KiB", KIB4)] {
        let plain = random_input(len, 0xc0de);
        let sealed = key.seal(&plain);
        let mut g = c.benchmark_group(format!("crypto/{label}"));
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function("seal", |b| b.iter(|| key.seal(black_box(&plain))));
        g.bench_function("open", |b| b.iter(|| key.open(black_box(&sealed)).unwrap()));
        g.finish();
    }
}

fn bench_hash(c: &mut Criterion) {
    let data = random_input(MIB, 0x5a);
    let mut g = c.benchmark_group("sha256/1MiB");
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function("sha2::Sha256::digest", |b| {
        b.iter(|| Sha256::digest(black_box(&data)))
    });
    g.bench_function("BlobId::hash", |b| {
        b.iter(|| BlobId::hash(black_box(&data)))
    });
    g.finish();
}

fn bench_zstd(c: &mut Criterion) {
    for (name, data) in [
        ("random", random_input(MIB, 0x5eed)),
        ("text", text_input(MIB)),
    ] {
        let mut g = c.benchmark_group(format!("zstd/{name}-1MiB"));
        g.throughput(Throughput::Bytes(MIB as u64));
        for level in [3, 19] {
            // Level 19 on 1 MiB takes hundreds of milliseconds: keep the sample count low.
            if level == 19 {
                g.sample_size(10);
            }
            g.bench_function(format!("compress-l{level}"), |b| {
                b.iter(|| compress_blob(black_box(&data), level))
            });
        }
        // Decompression speed barely depends on the level; decode the level-3 frame,
        // which is what `restic backup --compression auto` writes.
        let frame = compress_blob(&data, 3);
        eprintln!(
            "zstd/{name}-1MiB: level 3 → {} bytes ({:.2}×), level 19 → {} bytes",
            frame.len(),
            data.len() as f64 / frame.len() as f64,
            compress_blob(&data, 19).len()
        );
        let mut out = Vec::with_capacity(MIB);
        g.sample_size(100);
        g.bench_function("decompress-l3", |b| {
            b.iter(|| decompress_blob(black_box(&frame), MIB, &mut out).unwrap())
        });
        g.finish();
    }
}

fn bench_tree(c: &mut Criterion) {
    let tree = sample_tree(TREE_NODES);
    let bytes = tree.to_bytes();
    assert_eq!(Tree::from_bytes(&bytes).unwrap(), tree);
    eprintln!("tree/{TREE_NODES}-nodes: {} bytes of JSON", bytes.len());
    let mut g = c.benchmark_group(format!("tree/{TREE_NODES}-nodes"));
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("to_bytes", |b| b.iter(|| black_box(&tree).to_bytes()));
    g.bench_function("from_bytes", |b| {
        b.iter(|| Tree::from_bytes(black_box(&bytes)).unwrap())
    });
    g.finish();
}

/// restic's key-file parameters (N = 2^15, r = 8): p = 3 is what its calibration picks on
/// typical machines, p = 1 isolates one lane from the parallelism across lanes. The
/// `scrypt` crate, which `derive_key` used before it had its own, runs in the same process
/// as the reference: on a shared machine, numbers from separate runs do not compare.
fn bench_kdf(c: &mut Criterion) {
    let salt = random_input(64, 0x5a17);
    let mut g = c.benchmark_group("kdf");
    // One derivation costs a tenth of a second or more: criterion's default 100 samples
    // would not fit any reasonable measurement time.
    g.sample_size(10);
    for p in [3, 1] {
        let params = KdfParams { n: 32768, r: 8, p };
        g.bench_function(format!("derive_key/N32768-r8-p{p}"), |b| {
            b.iter(|| derive_key(black_box(b"password"), black_box(&salt), params).unwrap())
        });
        let reference = scrypt::Params::new(15, 8, p, 64).unwrap();
        g.bench_function(format!("scrypt-crate/N32768-r8-p{p}"), |b| {
            b.iter(|| {
                let mut dk = [0u8; 64];
                scrypt::scrypt(
                    black_box(b"password"),
                    black_box(&salt),
                    &reference,
                    &mut dk,
                )
                .unwrap();
                dk
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_crypto,
    bench_hash,
    bench_zstd,
    bench_tree,
    bench_kdf
);
criterion_main!(benches);
