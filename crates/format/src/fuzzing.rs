//! One entry point per parser of untrusted bytes, shared by the libFuzzer targets under
//! `fuzz/` and the stable test that replays their corpora (`tests/fuzz_corpus.rs`), so that
//! both run the same checks.
//!
//! Each function feeds `data` to a parser. Rejecting the bytes is fine; what must hold
//! otherwise is checked with assertions, so a panic here means a bug: the parser panicked,
//! or accepted something it cannot write back the same way, or returned inconsistent
//! values. Allocation bounds are enforced by libFuzzer's `-malloc_limit_mb` with the
//! `-max_len` given in `fuzz/README.md`.

use restash_crypto::OVERHEAD;

use crate::keyfile::master_key_from_json;
use crate::pack::encode_header;
use crate::{
    compress_blob, decode_unpacked, decompress_blob, master_key_json, parse_header, parse_trailer,
    Config, GoTime, IndexFile, KeyFile, Lock, Snapshot, Tree, MAX_HEADER_SIZE,
};

/// A pack's end as `header ‖ length`, the header given decrypted (decryption refuses
/// anything a fuzzer makes up, and is not what is under test).
///
/// The last 4 bytes go through [`parse_trailer`] with the input's size as the pack size;
/// an accepted length must leave room for the header inside the pack and stay within
/// restic's limit. The bytes before them go through [`parse_header`]: the entries must
/// lie back to back from offset 0 below 4 GiB, and encoding them must give the same bytes
/// again (the format has one encoding per header).
pub fn pack_header(data: &[u8]) {
    let Some(split) = data.len().checked_sub(4) else {
        return;
    };
    let (plain, last4) = data.split_at(split);
    let last4: [u8; 4] = last4.try_into().expect("4 bytes");
    if let Ok(hl) = parse_trailer(last4, data.len() as u64) {
        let hl = hl as u64;
        assert!(
            hl >= OVERHEAD as u64,
            "header shorter than the crypto overhead"
        );
        assert!(hl + 4 <= data.len() as u64, "header larger than the pack");
        assert!(
            hl + 4 <= MAX_HEADER_SIZE,
            "header larger than restic allows"
        );
        // The slice the readers take.
        let _ = &data[split - hl as usize..split];
    }
    let Ok(entries) = parse_header(plain) else {
        return;
    };
    let mut end = 0u64;
    for e in &entries {
        assert_eq!(e.offset as u64, end, "entries are back to back");
        end += e.length as u64;
        assert!(end <= u32::MAX as u64, "entry ends beyond 4 GiB");
    }
    assert!(
        entries.len() <= plain.len() / 37,
        "more entries than bytes allow"
    );
    assert_eq!(
        encode_header(&entries),
        plain,
        "header re-encodes differently"
    );
}

/// The decrypted payload of a compressed blob, as `u32 LE uncompressed length ‖ zstd`,
/// and the whole input as the plaintext of an unpacked file (index, snapshot, lock).
///
/// An accepted blob has exactly its stated length and compresses back to itself; a v2
/// unpacked file decodes to JSON or to what its zstd frame holds, a v1 file to itself.
pub fn blob_framing(data: &[u8]) {
    if let Some((len, payload)) = data.split_first_chunk::<4>() {
        let expected = u32::from_le_bytes(*len) as usize;
        let mut out = Vec::new();
        if decompress_blob(payload, expected, &mut out).is_ok() {
            assert_eq!(out.len(), expected, "accepted a blob of another length");
            if out.len() <= 1 << 16 {
                let again = compress_blob(&out, 1);
                let mut back = Vec::new();
                decompress_blob(&again, out.len(), &mut back).expect("own frame decodes");
                assert_eq!(back, out, "round trip through zstd");
            }
        }
    }
    assert_eq!(
        decode_unpacked(1, data.to_vec()).expect("v1 is never decoded"),
        data
    );
    if let Ok(plain) = decode_unpacked(2, data.to_vec()) {
        match data.first() {
            None | Some(b'{' | b'[') => assert_eq!(plain, data, "plain JSON is kept"),
            Some(2) => {}
            Some(other) => panic!("accepted encoding byte {other:#04x}"),
        }
    }
}

/// Index JSON, in the object or the old array form. A decoded index writes back in the
/// object form and decodes to the same index.
pub fn index_json(data: &[u8]) {
    let Ok((idx, _old)) = IndexFile::from_json(data) else {
        return;
    };
    let json = idx.to_json();
    let (back, old) = IndexFile::from_json(&json).expect("own index JSON decodes");
    assert!(!old, "written in the object form");
    assert_eq!(back, idx, "index round trip");
    for b in idx.packs.iter().flat_map(|p| &p.blobs) {
        assert_ne!(b.uncompressed_length, Some(0), "0 means uncompressed");
    }
}

/// Tree JSON (node names, types, modes, sizes, content lists). A decoded tree writes the
/// bytes restic 0.14 writes, and those decode to the same tree; so its id is stable.
/// Only `linktarget_raw` (restic 0.16+, not written by 0.14) is dropped on the way.
pub fn tree_json(data: &[u8]) {
    let Ok(tree) = Tree::from_bytes(data) else {
        return;
    };
    let bytes = tree.to_bytes();
    let back = Tree::from_bytes(&bytes).expect("own tree JSON decodes");
    assert_eq!(back.to_bytes(), bytes, "tree encoding is a fixed point");
    assert_eq!(back.nodes.len(), tree.nodes.len());
    for (a, b) in tree.nodes.iter().zip(&back.nodes) {
        let mut a = a.clone();
        a.linktarget_raw = None;
        normalize_times(&mut a.mtime);
        normalize_times(&mut a.atime);
        normalize_times(&mut a.ctime);
        assert_eq!(&a, b, "node round trip");
    }
    for n in &tree.nodes {
        let _ = (n.display_name(), n.unix_permissions(), n.mode_with_type());
        let _ = crate::go_mode_string(n.mode_with_type());
    }
}

/// A time as it reads back after writing: restic's form has no leap seconds.
fn normalize_times(t: &mut GoTime) {
    *t = GoTime::parse(&t.to_go_string()).expect("own time form parses");
}

/// Snapshot JSON. A decoded snapshot writes JSON that decodes to the same snapshot (an
/// empty `program_version` is omitted, as Go does).
pub fn snapshot_json(data: &[u8]) {
    let Ok(snap) = Snapshot::from_json(data) else {
        return;
    };
    let json = snap.to_json();
    let back = Snapshot::from_json(&json).expect("own snapshot JSON decodes");
    assert_eq!(back.to_json(), json, "snapshot encoding is a fixed point");
    let mut want = snap.clone();
    if want.program_version.as_deref() == Some("") {
        want.program_version = None;
    }
    normalize_times(&mut want.time);
    if let Some(s) = want.summary.as_mut() {
        normalize_times(&mut s.backup_start);
        normalize_times(&mut s.backup_end);
    }
    assert_eq!(back, want, "snapshot round trip");
}

/// A key file, and the same bytes as the decrypted master key JSON inside one.
///
/// A decoded key file writes back to the same key file. With scrypt parameters cheap
/// enough to try, opening it must fail cleanly (no key was sealed under this password).
/// A decoded master key prints (clamped) as JSON that decodes to the same key.
pub fn key_file(data: &[u8]) {
    if let Ok(kf) = KeyFile::from_json(data) {
        let back = KeyFile::from_json(&kf.to_json()).expect("own key JSON decodes");
        let mut want = kf.clone();
        normalize_times(&mut want.created);
        assert_eq!(back, want, "key file round trip");
        // scrypt's cost is the key file's to choose; only cheap ones are tried here.
        if kf.n <= 64 && (kf.r as u64) * (kf.p as u64) <= 8 {
            assert!(kf.open(b"fuzz").is_err(), "opened a made-up key");
        }
    }
    if let Ok(key) = master_key_from_json(data) {
        let json = master_key_json(&key);
        let back = master_key_from_json(json.as_bytes()).expect("own master key decodes");
        assert_eq!(back.encrypt_key(), key.encrypt_key());
        assert_eq!(back.mac_k(), key.mac_k());
        assert_eq!(master_key_json(&back), json, "clamping is idempotent");
    }
}

/// The repository config. A decoded config writes the same config back.
pub fn config_json(data: &[u8]) {
    let Ok(config) = Config::from_json(data) else {
        return;
    };
    let back = Config::from_json(&config.to_json()).expect("own config JSON decodes");
    assert_eq!(back, config, "config round trip");
    if let Ok(p) = config.polynomial() {
        let hex = format!("{p:x}");
        assert_eq!(
            u64::from_str_radix(&hex, 16).ok(),
            Some(p),
            "polynomial round trip"
        );
    }
}

/// A lock file. A decoded lock writes a lock that decodes to the same lock.
pub fn lock_json(data: &[u8]) {
    let Ok(lock) = Lock::from_json(data) else {
        return;
    };
    let back = Lock::from_json(&lock.to_json()).expect("own lock JSON decodes");
    let mut want = lock.clone();
    normalize_times(&mut want.time);
    assert_eq!(back, want, "lock round trip");
}
