//! Grows a repository into a fleet's: hosts `claim-userNNNNN` for N in FROM..TO, each with
//! its own data (FILES files of BLOBS small data blobs, in one data pack), one tree, one
//! index file and SNAPSHOTS snapshots a day apart, cloned from a template snapshot of the
//! repository (its paths, tags, user and program version; hostname, tree and time are the
//! host's own). Every file is valid restic: `restic check --read-data` passes.
//!
//! ```text
//! RESTIC_PASSWORD=… fleet-gen REPO_URL TEMPLATE_SNAPSHOT_ID FROM TO \
//!     [--snapshots 17] [--files 100] [--blobs 50] [--threads 16]
//! ```
//!
//! REPO_URL is a local path or `s3:http://host:port/bucket` (credentials from
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`). The same host number always gets the
//! same blobs, so a run can be repeated or extended (FROM = the last TO).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use restash_backend::{Backend, BackendOptions, FileType, Handle, LocalBackend, S3Backend};
use restash_engine::Repository;
use restash_format::{
    BlobId, BlobType, GoTime, IndexBlob, IndexFile, IndexPack, Node, NodeType, PackBuilder,
    Snapshot, SnapshotId, Tree,
};

struct Args {
    url: String,
    template: String,
    from: usize,
    to: usize,
    snapshots: usize,
    files: usize,
    blobs: usize,
    threads: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: fleet-gen REPO_URL TEMPLATE_SNAPSHOT_ID FROM TO [--snapshots N] [--files N] \
         [--blobs N] [--threads N]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut pos = Vec::new();
    let mut opts = [
        ("--snapshots", 17),
        ("--files", 100),
        ("--blobs", 50),
        ("--threads", 16),
    ];
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match opts.iter_mut().find(|(name, _)| *name == a) {
            Some((_, v)) => {
                *v = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            None => pos.push(a),
        }
    }
    let [url, template, from, to] = <[String; 4]>::try_from(pos).unwrap_or_else(|_| usage());
    let num = |s: &str| s.parse().unwrap_or_else(|_| usage());
    Args {
        url,
        template,
        from: num(&from),
        to: num(&to),
        snapshots: opts[0].1,
        files: opts[1].1,
        blobs: opts[2].1,
        threads: opts[3].1,
    }
}

fn open_backend(url: &str) -> Arc<dyn Backend> {
    let opts = BackendOptions::default();
    let be: Arc<dyn Backend> = if url.starts_with("s3:") {
        Arc::new(S3Backend::open(url, opts).unwrap_or_else(|e| fail(&format!("open {url}: {e}"))))
    } else {
        Arc::new(LocalBackend::new(url))
    };
    be
}

fn fail(msg: &str) -> ! {
    eprintln!("fleet-gen: {msg}");
    std::process::exit(1)
}

/// Writes host `n`: its data pack, tree pack, index file and snapshots. Returns the bytes
/// of its packs.
fn write_host(repo: &Repository, template: &Snapshot, a: &Args, n: usize) -> u64 {
    let key = repo.key();
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
    let mut data = PackBuilder::new();
    let mut nodes = Vec::with_capacity(a.files);
    for f in 0..a.files {
        let mut content = Vec::with_capacity(a.blobs);
        let mut size = 0u64;
        for b in 0..a.blobs {
            // Distinct per host and position: a fleet of users with their own files.
            let len = rng.gen_range(16..64);
            let mut plain = format!("{n}/{f}/{b}/").into_bytes();
            plain.extend((0..len).map(|_| rng.gen::<u8>()));
            let id = BlobId::hash(&plain);
            data.add_blob(key, BlobType::Data, id, &plain, None);
            content.push(id);
            size += plain.len() as u64;
        }
        nodes.push(Node {
            name: format!("notebook-{f:04}.ipynb").into_bytes(),
            node_type: NodeType::File,
            mode: 0o644,
            mtime: template.time,
            atime: template.time,
            ctime: template.time,
            uid: 1000,
            gid: 100,
            user: "jovyan".into(),
            group: "users".into(),
            inode: f as u64 + 1,
            size,
            links: 1,
            content: Some(content),
            ..Node::default()
        });
    }
    let tree = Tree { nodes }.to_bytes();
    let tree_id = BlobId::hash(&tree);
    let mut trees = PackBuilder::new();
    trees.add_blob(key, BlobType::Tree, tree_id, &tree, None);

    let mut packs = Vec::new();
    let mut bytes = 0;
    for pb in [data, trees] {
        let (raw, id, entries) = pb.finish(key);
        bytes += raw.len() as u64;
        repo.backend()
            .write(&Handle::new(FileType::Pack, id.0), &raw)
            .unwrap_or_else(|e| fail(&format!("host {n}: write pack: {e}")));
        packs.push(IndexPack {
            id,
            blobs: entries.into_iter().map(IndexBlob::from).collect(),
        });
    }
    let index = IndexFile {
        supersedes: Vec::new(),
        packs,
    };
    repo.save_unpacked(FileType::Index, &index.to_json())
        .unwrap_or_else(|e| fail(&format!("host {n}: write index: {e}")));

    let base = template.time.unix_secs() - n as i64;
    for k in 0..a.snapshots {
        let mut s = template.clone();
        s.hostname = format!("claim-user{n:05}");
        s.tree = tree_id;
        s.parent = None;
        s.summary = None;
        s.time = GoTime::from_unix(base - 86_400 * k as i64, 0, 0).expect("a time after 1970");
        repo.save_unpacked(FileType::Snapshot, &s.to_json())
            .unwrap_or_else(|e| fail(&format!("host {n}: write snapshot: {e}")));
    }
    bytes
}

fn main() {
    let a = parse_args();
    let password =
        std::env::var("RESTIC_PASSWORD").unwrap_or_else(|_| fail("RESTIC_PASSWORD is not set"));
    let repo = Repository::open(open_backend(&a.url), password.as_bytes(), None)
        .unwrap_or_else(|e| fail(&format!("open repository: {e}")));
    let id = SnapshotId::parse(&a.template).unwrap_or_else(|e| fail(&format!("template: {e}")));
    let template = repo
        .load_snapshot(&id)
        .unwrap_or_else(|e| fail(&format!("load template snapshot: {e}")));

    let t = Instant::now();
    let next = AtomicUsize::new(a.from);
    let bytes = std::thread::scope(|s| {
        let workers: Vec<_> = (0..a.threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut bytes = 0;
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= a.to {
                            return bytes;
                        }
                        bytes += write_host(&repo, &template, &a, n);
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .sum::<u64>()
    });
    eprintln!(
        "fleet-gen: hosts {}..{}: {} snapshots, {} data blobs, {:.1} MiB of packs in {:.1?}",
        a.from,
        a.to,
        (a.to - a.from) * a.snapshots,
        (a.to - a.from) * a.files * a.blobs,
        bytes as f64 / (1 << 20) as f64,
        t.elapsed()
    );
}
