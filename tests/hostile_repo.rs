//! A repository is untrusted input: a correctly encrypted repository whose trees hold
//! names like `../escape`, duplicate names that pair a symlink with a directory, names with
//! a slash, and a target that already contains a symlink pointing elsewhere. Restore must
//! write nothing outside `--target`, name every refused entry and exit 3.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use restash_backend::{FileType, Handle, LocalBackend};
use restash_crypto::KdfParams;
use restash_engine::Repository;
use restash_format::{
    BlobId, BlobType, GoTime, IndexFile, IndexPack, Node, NodeType, PackBuilder, Snapshot, Tree,
};

fn file_node(name: &[u8], content: Vec<BlobId>, size: u64) -> Node {
    Node {
        name: name.to_vec(),
        node_type: NodeType::File,
        mode: 0o644,
        size,
        content: Some(content),
        ..Node::default()
    }
}

fn dir_node(name: &[u8], subtree: BlobId) -> Node {
    Node {
        name: name.to_vec(),
        node_type: NodeType::Dir,
        mode: 0x8000_0000 | 0o755,
        subtree: Some(subtree),
        ..Node::default()
    }
}

fn symlink_node(name: &[u8], target: &str) -> Node {
    Node {
        name: name.to_vec(),
        node_type: NodeType::Symlink,
        mode: 0x0800_0000 | 0o777,
        linktarget: target.to_string(),
        ..Node::default()
    }
}

/// Stores blobs of one type in one pack and returns their index entries.
fn store_pack(repo: &Repository, t: BlobType, blobs: &[Vec<u8>]) -> IndexPack {
    let mut pb = PackBuilder::new();
    for b in blobs {
        pb.add_sealed(t, BlobId::hash(b), &repo.key().seal(b), None);
    }
    let (bytes, id, entries) = pb.finish(repo.key());
    repo.backend()
        .write(&Handle::new(FileType::Pack, id), &bytes)
        .unwrap();
    IndexPack {
        id,
        blobs: entries.into_iter().map(Into::into).collect(),
    }
}

fn list_all(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        out.push(e.unwrap().file_name().to_string_lossy().into_owned());
    }
    out.sort();
    out
}

#[test]
fn hostile_names_never_escape_the_target() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let outside = tmp.path().join("outside");
    let work = tmp.path().join("work");
    let target = work.join("target");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&target).unwrap();
    // A symlink planted in the target before the restore.
    std::os::unix::fs::symlink(&outside, target.join("pre")).unwrap();

    let cheap = KdfParams {
        n: 1024,
        r: 8,
        p: 1,
    };
    let backend = Arc::new(LocalBackend::new(&repo_dir));
    let repo = Repository::init(backend, b"pw", 2, cheap).unwrap();

    let data = b"pwned!\n".to_vec();
    let data_id = BlobId::hash(&data);
    let data_pack = store_pack(&repo, BlobType::Data, std::slice::from_ref(&data));

    let inner = Tree {
        nodes: vec![file_node(b"pwned", vec![data_id], 7)],
    };
    let inner_bytes = inner.to_bytes();
    let inner_id = BlobId::hash(&inner_bytes);
    let outside_str = outside.to_str().unwrap();
    let root = Tree {
        nodes: vec![
            file_node(b"../escape", vec![data_id], 7),
            symlink_node(b"a", outside_str),
            dir_node(b"a", inner_id),
            file_node(b"b/c", vec![data_id], 7),
            file_node(b"ok.txt", vec![data_id], 7),
            dir_node(b"pre", inner_id),
        ],
    };
    let root_bytes = root.to_bytes();
    let root_id = BlobId::hash(&root_bytes);
    let tree_pack = store_pack(&repo, BlobType::Tree, &[inner_bytes, root_bytes]);
    let index = IndexFile {
        supersedes: vec![],
        packs: vec![data_pack, tree_pack],
    };
    repo.save_unpacked(FileType::Index, &index.to_json())
        .unwrap();
    let snap = Snapshot {
        time: GoTime::now_local(),
        parent: None,
        tree: root_id,
        paths: vec!["/hostile".into()],
        hostname: "evil".into(),
        username: "mallory".into(),
        uid: 0,
        gid: 0,
        excludes: vec![],
        tags: vec![],
        original: None,
        program_version: None,
        summary: None,
    };
    repo.save_unpacked(FileType::Snapshot, &snap.to_json())
        .unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_restash"))
        .args([
            "-r",
            repo_dir.to_str().unwrap(),
            "restore",
            "latest",
            "--target",
        ])
        .arg(&target)
        .env("RESTIC_PASSWORD", "pw")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");

    // Nothing was written outside the target, through any route.
    assert!(
        list_all(&outside).is_empty(),
        "outside: {:?}",
        list_all(&outside)
    );
    assert_eq!(list_all(&work), vec!["target"]);
    assert!(!tmp.path().join("escape").exists());
    // Each refused entry is named.
    assert!(stderr.contains("../escape"), "{stderr}");
    assert!(stderr.contains("\"b/c\""), "{stderr}");
    assert!(stderr.contains("lists \"a\" twice"), "{stderr}");
    assert!(stderr.contains("pre"), "{stderr}");
    // The harmless entries are restored.
    assert_eq!(std::fs::read(target.join("ok.txt")).unwrap(), b"pwned!\n");
    assert_eq!(
        std::fs::read_link(target.join("a")).unwrap(),
        Path::new(outside_str)
    );
    assert!(std::fs::symlink_metadata(target.join("pre"))
        .unwrap()
        .file_type()
        .is_symlink());
}
