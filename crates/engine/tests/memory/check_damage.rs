//! Check finds each kind of damage, with the messages the CLI prints (the same ones the
//! end-to-end tests in `tests/check_repair.rs` compare with restic's), and says nothing
//! about an intact repository.

use std::sync::{Arc, OnceLock};

use restash_backend::{Backend, FileType, Handle, LocalBackend, MemoryBackend};
use restash_engine::archiver::{backup, Source};
use restash_engine::events::Control;
use restash_engine::{EngineError, Repository};
use restash_format::{
    BlobId, BlobType, Id, IndexFile, Node, NodeType, PackBuilder, PackId, Snapshot, SnapshotId,
    Tree,
};

use crate::common::*;

/// The stored files of a small v2 repository with one snapshot: one data pack (a file of
/// several chunks and two small ones), one tree pack, one index file.
struct Template {
    store: MemoryBackend,
    snapshot: SnapshotId,
}

fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path();
        std::fs::write(src.join("file.bin"), noise(1_200_000, 7)).unwrap();
        std::fs::write(src.join("small.txt"), b"small\n").unwrap();
        std::fs::create_dir(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/other.txt"), b"other\n").unwrap();
        let (be, mut repo) = new_repo(2);
        let s = backup_dir(&mut repo, src, &options());
        drop(repo);
        Template {
            store: Arc::into_inner(be).expect("the only handle left"),
            snapshot: s.snapshot_id.unwrap(),
        }
    })
}

/// A fresh copy of the template (every test damages its own) and the repository opened on
/// it with the index loaded.
fn fresh() -> (Arc<MemoryBackend>, Repository, SnapshotId) {
    let t = template();
    let be = copy(&t.store);
    let mut repo = open(be.clone());
    repo.load_index().unwrap();
    (be, repo, t.snapshot)
}

/// The largest blob of type `t` (so a byte 40 bytes in is still inside it), its pack and
/// its offset there.
fn pack_with(repo: &Repository, t: BlobType) -> (PackId, BlobId, u32) {
    let (id, loc) = repo
        .index()
        .iter()
        .filter(|(_, bt, _)| *bt == t)
        .map(|(id, _, loc)| (*id, loc))
        .max_by_key(|(_, loc)| loc.length)
        .expect("a blob of the type");
    (repo.index().pack_id(loc.pack), id, loc.offset)
}

fn pack(id: PackId) -> Handle {
    Handle::new(FileType::Pack, id)
}

fn assert_warned(c: &Checked, msgs: &[&str]) {
    for m in msgs {
        assert!(c.warned(m), "no warning contains {m:?}\n{c:?}");
    }
}

#[test]
fn an_intact_repository_passes_check_with_read_data() {
    let (be, _, _) = fresh();
    let c = run_check(be, true);
    c.assert_clean();
    let out = c.outcome();
    assert!(out.broken_packs.is_empty() && out.orphaned_packs.is_empty());
    assert_eq!(
        out.packs_read.len(),
        2,
        "the data and the tree pack are read"
    );
}

#[test]
fn a_missing_data_pack_is_named() {
    let (be, repo, _) = fresh();
    let (id, _, _) = pack_with(&repo, BlobType::Data);
    be.remove(&pack(id)).unwrap();
    let c = run_check(be, false);
    assert_warned(&c, &[&format!("pack {id}: does not exist")]);
    assert!(c.outcome().errors_found);
    assert_eq!(c.outcome().broken_packs, [id]);
}

#[test]
fn a_missing_tree_pack_names_the_tree_and_the_pack() {
    let (be, repo, snap) = fresh();
    let (id, _, _) = pack_with(&repo, BlobType::Tree);
    let root = repo.load_snapshot(&snap).unwrap().tree;
    be.remove(&pack(id)).unwrap();
    let c = run_check(be, false);
    assert_warned(
        &c,
        &[
            &format!("pack {id}: does not exist"),
            &format!("error for tree {}:", root.short()),
        ],
    );
    assert!(c.outcome().errors_found);
}

#[test]
fn a_truncated_pack_has_the_wrong_size() {
    let (be, repo, _) = fresh();
    let (id, _, _) = pack_with(&repo, BlobType::Data);
    let data = be.read(&pack(id)).unwrap();
    overwrite(be.as_ref(), &pack(id), &data[..data.len() - 10]);
    let c = run_check(be, false);
    let (got, want) = (data.len() - 10, data.len());
    assert_warned(
        &c,
        &[&format!(
            "pack {id}: unexpected file size: got {got}, expected {want}"
        )],
    );
    assert_eq!(c.outcome().broken_packs, [id]);
}

#[test]
fn a_flipped_byte_is_found_by_read_data_only() {
    let (be, repo, _) = fresh();
    let (id, blob, offset) = pack_with(&repo, BlobType::Data);
    let mut data = be.read(&pack(id)).unwrap();
    data[offset as usize + 40] ^= 0x40;
    overwrite(be.as_ref(), &pack(id), &data);
    // The structure is intact: only reading the data finds the damage.
    run_check(be.clone(), false).assert_clean();
    let c = run_check(be, true);
    assert!(c.outcome().errors_found, "{c:?}");
    assert_warned(
        &c,
        &[
            &format!("Pack ID does not match, want {id}"),
            &format!("blob {blob}"),
        ],
    );
}

/// Rewrites the index file that lists `pack` with `f` applied to that pack's entries.
fn rewrite_index(be: &dyn Backend, repo: &Repository, pack: PackId, f: impl Fn(&mut IndexFile)) {
    for id in repo.list_ids(FileType::Index).unwrap() {
        let (mut file, _) =
            IndexFile::from_json(&repo.load_unpacked(FileType::Index, &id).unwrap()).unwrap();
        if file.packs.iter().any(|p| p.id == pack) {
            f(&mut file);
            be.remove(&Handle::new(FileType::Index, id)).unwrap();
            repo.save_unpacked(FileType::Index, &file.to_json())
                .unwrap();
        }
    }
}

#[test]
fn a_blob_the_index_places_in_a_pack_that_lacks_it_is_found() {
    let (be, repo, _) = fresh();
    let (id, real, _) = pack_with(&repo, BlobType::Data);
    // Same offset and length, another id: the pack's size still matches the index.
    let ghost = BlobId::hash(b"listed, never stored");
    rewrite_index(be.as_ref(), &repo, id, |file| {
        for p in file.packs.iter_mut().filter(|p| p.id == id) {
            for b in p.blobs.iter_mut().filter(|b| b.id == real) {
                b.id = ghost;
            }
        }
    });
    // The structure check misses the blob the file needs …
    let c = run_check(be.clone(), false);
    assert_warned(&c, &[&format!("blob {real} not found in index")]);
    // … and reading the pack finds what is really there.
    let c = run_check(be, true);
    assert_warned(
        &c,
        &[
            &format!("pack {id} contains"),
            &format!("blob {ghost}: read blob <data/{}>", ghost.short()),
            &format!("Blob {real} is not contained in index or position is incorrect"),
        ],
    );
}

fn loading_fails(c: &Checked, id: &Id, why: &str) {
    match &c.result {
        Err(EngineError::Corrupt(m)) if m == "LoadIndex returned errors" => {}
        _ => panic!("check did not stop at the index: {c:?}"),
    }
    assert_warned(c, &[&format!("error loading index {id}"), why]);
}

#[test]
fn an_index_file_that_cannot_be_decrypted_stops_check() {
    let (be, repo, _) = fresh();
    let old = repo.list_ids(FileType::Index).unwrap()[0];
    be.remove(&Handle::new(FileType::Index, old)).unwrap();
    // Named by its hash, so only the decryption can fail.
    let garbage = noise(300, 3);
    let id = Id::hash(&garbage);
    be.write(&Handle::new(FileType::Index, id), &garbage)
        .unwrap();
    loading_fails(&run_check(be, false), &id, "decryption failed");
}

#[test]
fn a_truncated_index_file_stops_check() {
    let (be, repo, _) = fresh();
    let id = repo.list_ids(FileType::Index).unwrap()[0];
    let h = Handle::new(FileType::Index, id);
    let data = be.read(&h).unwrap();
    overwrite(be.as_ref(), &h, &data[..data.len() / 2]);
    loading_fails(&run_check(be, false), &id, "hash does not match");
}

/// Stores `tree` in a new pack, indexes it, and writes a snapshot of it.
fn store_snapshot_of(repo: &Repository, tree: &Tree, template: &Snapshot) -> BlobId {
    let bytes = tree.to_bytes();
    let id = BlobId::hash(&bytes);
    let mut pb = PackBuilder::new();
    pb.add_blob(repo.key(), BlobType::Tree, id, &bytes, None);
    let (data, pack_id, entries) = pb.finish(repo.key());
    repo.backend().write(&pack(pack_id), &data).unwrap();
    let index = IndexFile {
        supersedes: Vec::new(),
        packs: vec![restash_format::IndexPack {
            id: pack_id,
            blobs: entries.into_iter().map(Into::into).collect(),
        }],
    };
    repo.save_unpacked(FileType::Index, &index.to_json())
        .unwrap();
    let snap = Snapshot {
        tree: id,
        ..template.clone()
    };
    repo.save_unpacked(FileType::Snapshot, &snap.to_json())
        .unwrap();
    id
}

#[test]
fn a_snapshot_whose_tree_is_missing_is_reported() {
    let (be, repo, snap) = fresh();
    let missing = BlobId::hash(b"no such tree");
    let sn = Snapshot {
        tree: missing,
        ..repo.load_snapshot(&snap).unwrap()
    };
    repo.save_unpacked(FileType::Snapshot, &sn.to_json())
        .unwrap();
    let c = run_check(be, false);
    assert!(c.outcome().errors_found);
    assert_warned(
        &c,
        &[
            &format!("error for tree {}:", missing.short()),
            &format!("id {missing} not found in repository"),
        ],
    );
}

#[test]
fn a_tree_naming_a_missing_data_blob_is_reported() {
    let (be, repo, snap) = fresh();
    let missing = BlobId::hash(b"data never stored");
    let tree = Tree {
        nodes: vec![Node {
            name: b"ghost".to_vec(),
            node_type: NodeType::File,
            mode: 0o644,
            size: 10,
            content: Some(vec![missing]),
            ..Node::default()
        }],
    };
    let tree_id = store_snapshot_of(&repo, &tree, &repo.load_snapshot(&snap).unwrap());
    let c = run_check(be, false);
    assert!(c.outcome().errors_found);
    assert_warned(
        &c,
        &[
            &format!("error for tree {}:", tree_id.short()),
            &format!("tree {tree_id}: file \"ghost\" blob {missing} not found in index"),
        ],
    );
}

#[test]
fn an_unreferenced_pack_is_a_hint_not_an_error() {
    let (be, repo, _) = fresh();
    let mut pb = PackBuilder::new();
    let blob = b"in no index";
    pb.add_blob(repo.key(), BlobType::Data, BlobId::hash(blob), blob, None);
    let (data, id, _) = pb.finish(repo.key());
    be.write(&pack(id), &data).unwrap();
    let c = run_check(be, false);
    c.assert_clean();
    assert_eq!(c.outcome().orphaned_packs, [id]);
    assert!(c.said(&format!("pack {id}: not referenced in any index")));
    assert!(c.said("1 additional files were found in the repo"));
}

/// The memory store's writes cannot be interrupted, so it has no leftovers; a local
/// repository does, and check must name them without counting them as errors or packs.
#[test]
fn a_leftover_temporary_file_is_named_not_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, src) = (tmp.path().join("repo"), tmp.path().join("src"));
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"content\n").unwrap();
    let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(&root));
    let kdf = restash_crypto::KdfParams {
        n: 1024,
        r: 8,
        p: 1,
    };
    let mut repo = Repository::init(be.clone(), PASSWORD, 2, kdf).unwrap();
    backup(
        &mut repo,
        Source::Paths(vec![src]),
        &options(),
        &Control::default(),
    )
    .unwrap();
    let id = Id::hash(b"a pack whose write was killed");
    let hex = id.to_hex();
    let rel = format!("data/{}/{hex}-tmp-0123456789abcdef", &hex[..2]);
    std::fs::create_dir_all(root.join(&rel).parent().unwrap()).unwrap();
    std::fs::write(root.join(&rel), b"half a pack").unwrap();

    let c = run_check(be, false);
    c.assert_clean();
    let out = c.outcome();
    assert_eq!(out.leftovers.len(), 1, "{c:?}");
    assert_eq!(out.leftovers[0].path, rel);
    assert!(out.orphaned_packs.is_empty(), "a leftover is no pack");
    assert!(c.said("1 temporary files were left by interrupted writes"));
    assert!(c.said(&rel));
}
