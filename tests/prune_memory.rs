//! Peak memory of `restash check` and `prune` against restic's on a synthetic repository with a
//! million blobs. Slow and machine-dependent, so ignored; run it with
//! `cargo test -p restash --test prune_memory -- --ignored --nocapture`
//! (`PRUNE_MEMORY_BLOBS` changes the blob count).
//!
//! The repository is written directly through the engine: 100 packs of 10 000 small data
//! blobs; packs 0–59 are fully used, 60–79 half used, 80–99 unused, so prune deletes,
//! repacks and keeps. 100 directories of 10 files reference the used blobs.
mod common;

use std::path::Path;
use std::sync::Arc;

use common::backup::*;
use common::run::{restash_bin, restic_bin};
use common::*;
use restash_backend::{FileType, Handle, LocalBackend};
use restash_engine::Repository;
use restash_format::{
    compress_blob, BlobId, BlobType, GoTime, IndexFile, IndexPack, Node, NodeType, PackBuilder,
    Snapshot, Tree,
};

const PER_PACK: usize = 10_000;

fn blob_data(i: usize) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(i as u64).to_le_bytes());
    b[8..].copy_from_slice(b"synthblb");
    b
}

fn is_used(i: usize) -> bool {
    let pack = i / PER_PACK;
    pack < 60 || (pack < 80 && i % 2 == 0)
}

fn upload(repo: &Repository, pack: PackBuilder, index: &mut IndexFile) {
    let (bytes, id, entries) = pack.finish(repo.key());
    repo.backend()
        .write(&Handle::new(FileType::Pack, id), &bytes)
        .expect("write pack");
    index.packs.push(IndexPack {
        id,
        blobs: entries.into_iter().map(Into::into).collect(),
    });
}

fn synthesize(path: &Path, blobs: usize) {
    init_repo(Tool::Restash, path, Some("2"));
    let backend = Arc::new(LocalBackend::new(path.to_str().expect("utf-8 path")));
    let repo = Repository::open(backend, PASSWORD.as_bytes(), None).expect("open");
    let mut index = IndexFile::default();
    let mut used = Vec::new();
    let mut pack = PackBuilder::new();
    for i in 0..blobs {
        let data = blob_data(i);
        let id = BlobId::hash(&data);
        pack.add_blob(repo.key(), BlobType::Data, id, &data, None);
        if is_used(i) {
            used.push(id);
        }
        if pack.count() == PER_PACK {
            upload(&repo, std::mem::take(&mut pack), &mut index);
        }
    }
    if !pack.is_empty() {
        upload(&repo, std::mem::take(&mut pack), &mut index);
    }
    // Trees: files of 500 blobs, 10 files a directory.
    let mut tree_pack = PackBuilder::new();
    let mut dirs = Vec::new();
    for (d, dir_blobs) in used.chunks(5_000).enumerate() {
        let mut tree = Tree::default();
        for (f, content) in dir_blobs.chunks(500).enumerate() {
            tree.nodes.push(Node {
                name: format!("f{f:02}").into_bytes(),
                node_type: NodeType::File,
                mode: 0o644,
                size: 16 * content.len() as u64,
                content: Some(content.to_vec()),
                ..Default::default()
            });
        }
        let bytes = tree.to_bytes();
        let id = BlobId::hash(&bytes);
        let z = compress_blob(&bytes, 3);
        tree_pack.add_blob(repo.key(), BlobType::Tree, id, &z, Some(bytes.len() as u32));
        dirs.push(Node {
            name: format!("d{d:04}").into_bytes(),
            node_type: NodeType::Dir,
            mode: 0o20000000755,
            subtree: Some(id),
            ..Default::default()
        });
    }
    let root = Tree { nodes: dirs };
    let bytes = root.to_bytes();
    let root_id = BlobId::hash(&bytes);
    let z = compress_blob(&bytes, 3);
    tree_pack.add_blob(
        repo.key(),
        BlobType::Tree,
        root_id,
        &z,
        Some(bytes.len() as u32),
    );
    upload(&repo, tree_pack, &mut index);
    for chunk in index.packs.chunks(10) {
        let file = IndexFile {
            supersedes: Vec::new(),
            packs: chunk.to_vec(),
        };
        repo.save_unpacked(FileType::Index, &file.to_json())
            .expect("save index");
    }
    let sn = Snapshot {
        time: GoTime::now_local(),
        parent: None,
        tree: root_id,
        paths: vec!["/synthetic".into()],
        hostname: "synthetic".into(),
        username: "bench".into(),
        uid: 0,
        gid: 0,
        excludes: Vec::new(),
        tags: Vec::new(),
        original: None,
        program_version: None,
        summary: None,
    };
    repo.save_unpacked(FileType::Snapshot, &sn.to_json())
        .expect("save snapshot");
}

/// Runs a command under `/usr/bin/time -v`; returns (peak RSS in KiB, wall seconds).
fn measure(program: &Path, repo: &Path, command: &str) -> (u64, String) {
    let out = std::process::Command::new("/usr/bin/time")
        .arg("-v")
        .arg(program)
        .args(["--no-cache", "-r"])
        .arg(repo)
        .arg(command)
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .expect("run /usr/bin/time");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program:?} {command} failed\n{err}");
    let field = |name: &str| {
        err.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {name} in\n{err}"))
    };
    let rss = field("Maximum resident set size (kbytes):")
        .parse()
        .expect("rss");
    (rss, field("Elapsed (wall clock) time (h:mm:ss or m:ss):"))
}

#[test]
#[ignore = "slow: synthesises a million-blob repository"]
fn peak_memory_of_prune_with_a_million_blobs() {
    let blobs: usize = std::env::var("PRUNE_MEMORY_BLOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    // PRUNE_MEMORY_KEEP=<dir> keeps the synthetic repository there for further study.
    let template = match std::env::var_os("PRUNE_MEMORY_KEEP") {
        Some(d) => std::path::PathBuf::from(d).join("template"),
        None => dir.path().join("template"),
    };
    synthesize(&template, blobs);
    // check of the same repository (it changes nothing), by both tools.
    let (restic_rss, restic_wall) = measure(&restic_bin(), &template, "check");
    let (restash_rss, restash_wall) = measure(&restash_bin(), &template, "check");
    eprintln!(
        "{blobs} blobs: restic check peak RSS {restic_rss} KiB in {restic_wall}; \
         restash check peak RSS {restash_rss} KiB in {restash_wall}"
    );
    let (a, b) = (dir.path().join("restic"), dir.path().join("restash"));
    copy_dir(&template, &a);
    copy_dir(&template, &b);
    let (restic_rss, restic_wall) = measure(&restic_bin(), &a, "prune");
    let (restash_rss, restash_wall) = measure(&restash_bin(), &b, "prune");
    eprintln!(
        "{blobs} blobs: restic prune peak RSS {restic_rss} KiB in {restic_wall}; \
         restash prune peak RSS {restash_rss} KiB in {restash_wall}"
    );
    Repo::new(b, None).restic(["check"]).success();
}
