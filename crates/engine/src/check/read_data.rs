//! `--read-data`: every selected pack is read once from start to end, in windows of a
//! few MiB, hashing as it goes; each blob is decrypted, decompressed and hashed against
//! its id; the header at the end is compared with the index. restic's `checkPack`, with
//! its messages.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use restash_backend::{FileType, Handle};
use restash_format::{PackEntry, PackId, MAX_HEADER_SIZE};
use sha2::{Digest, Sha256};

use super::index_files::{entry_size, HEADER_OVERHEAD};
use super::worker_pool;
use crate::events::{Control, Event, Phase};
use crate::pack::{header_length, open_blob, open_header, BlobFault, HeaderFault};
use crate::Repository;

/// Bytes read per request: large enough for few round trips, small enough that the
/// workers together hold little memory. A larger blob is read in one request.
const WINDOW: u64 = 4 << 20;

/// restic's `BlobHandle` string: `<data/1234abcd>`.
fn handle(e: &PackEntry) -> String {
    format!("<{}/{}>", e.blob_type.as_str(), e.id.short())
}

/// Verifies one blob's stored bytes; the message says what failed, as restic's
/// `StreamPack` does.
fn verify_blob(
    repo: &Repository,
    pack: &PackId,
    e: &PackEntry,
    raw: &[u8],
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if raw.len() <= restash_crypto::IV_LEN {
        return Err(format!(
            "invalid blob length {} of {}",
            raw.len(),
            handle(e)
        ));
    }
    let ulen = e.uncompressed_length.unwrap_or(0);
    open_blob(repo.key(), &e.id, ulen, raw, scratch, out).map_err(|fault| match fault {
        BlobFault::Open(err) => err.to_string(),
        BlobFault::Decompress(err) => format!("decompressing blob {} failed: {err}", handle(e)),
        BlobFault::Mismatch(got) => format!(
            "read blob {} from {}: wrong data returned, hash is {got}",
            handle(e),
            pack.short()
        ),
    })
}

fn go_list(errs: &[String]) -> String {
    format!("[{}]", errs.join(" "))
}

/// Reads and verifies one pack of `size` bytes (as the index computes it) whose index
/// entries are `blobs`. Returns restic's error lines; empty when the pack is sound.
pub(crate) fn check_pack(
    repo: &Repository,
    id: &PackId,
    size: u64,
    mut blobs: Vec<PackEntry>,
) -> Vec<String> {
    if blobs.is_empty() {
        return vec![format!("pack {id} is empty or not indexed")];
    }
    blobs.sort_by_key(|b| b.offset);
    let idx_hdr_size = HEADER_OVERHEAD + blobs.iter().map(entry_size).sum::<u64>();
    let mut errs = Vec::new();
    let mut last_end = 0u64;
    let mut gaps = false;
    for b in &blobs {
        gaps |= b.offset as u64 != last_end;
        last_end = b.offset as u64 + b.length as u64;
    }
    if gaps {
        errs.push("Index for pack contains gaps / overlapping blobs".to_string());
    }

    let h = Handle::new(FileType::Pack, *id);
    let failed = |e: String| vec![format!("pack {id} failed to download: {e}")];
    let mut hasher = Sha256::new();
    let (mut buf, mut scratch, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    let mut pos = 0u64;
    let mut i = 0;
    while i < blobs.len() {
        let start = blobs[i].offset as u64;
        if start < pos {
            return failed(format!("overlapping blobs in pack {id}"));
        }
        // One window: the gap before the blob, the blob, and the blobs after it that fit.
        let mut j = i + 1;
        let mut end = start + blobs[i].length as u64;
        while j < blobs.len() {
            let b = &blobs[j];
            let b_end = b.offset as u64 + b.length as u64;
            if (b.offset as u64) < end || b_end - pos > WINDOW.max(end - pos) {
                break;
            }
            end = b_end;
            j += 1;
        }
        if end > size {
            return failed(format!("blob beyond the end of the pack ({end} > {size})"));
        }
        if let Err(e) = repo.backend().read_range_into(&h, pos, end - pos, &mut buf) {
            return failed(e.to_string());
        }
        hasher.update(&buf);
        for e in &blobs[i..j] {
            let at = (e.offset as u64 - pos) as usize;
            let raw = &buf[at..at + e.length as usize];
            if let Err(msg) = verify_blob(repo, id, e, raw, &mut scratch, &mut plain) {
                errs.push(format!("blob {}: {msg}", e.id));
            }
        }
        pos = end;
        i = j;
    }
    // The rest of the file: its last part (at most the largest header) is the header.
    let hdr_start = pos.max(size.saturating_sub(MAX_HEADER_SIZE));
    let mut header = Vec::new();
    while pos < size {
        let n = WINDOW.min(size - pos);
        if let Err(e) = repo.backend().read_range_into(&h, pos, n, &mut buf) {
            return failed(e.to_string());
        }
        hasher.update(&buf);
        if pos + n > hdr_start {
            let from = hdr_start.saturating_sub(pos) as usize;
            header.extend_from_slice(&buf[from..]);
        }
        pos += n;
    }
    let hash = PackId(restash_format::Id(hasher.finalize().into()));
    if hash != *id {
        let mut out = vec![format!("Pack ID does not match, want {id}, got {hash}")];
        // restic stops here; the blobs that failed say where the damage is.
        if !errs.is_empty() {
            out.push(format!(
                "pack {id} contains {} errors: {}",
                errs.len(),
                go_list(&errs)
            ));
        }
        return out;
    }
    // restic reports only a header that does not parse; the blob errors say more.
    match parse_pack_header(repo, &header) {
        Err(e) => errs.push(e),
        Ok((hdr_size, entries)) => {
            if idx_hdr_size != hdr_size {
                errs.push(format!(
                    "Pack header size does not match, want {idx_hdr_size}, got {hdr_size}"
                ));
            }
            for e in &entries {
                if !blobs.contains(e) {
                    errs.push(format!(
                        "Blob {} is not contained in index or position is incorrect",
                        e.id
                    ));
                }
            }
        }
    }
    if errs.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "pack {id} contains {} errors: {}",
            errs.len(),
            go_list(&errs)
        )]
    }
}

/// Parses the header at the end of `tail` (the pack's last bytes); returns the header's
/// size on disk (length field included) and its entries.
fn parse_pack_header(repo: &Repository, tail: &[u8]) -> Result<(u64, Vec<PackEntry>), String> {
    let n = tail.len();
    let fault = |f: HeaderFault| match f {
        HeaderFault::TooShort => "readHeader: file is too small".to_string(),
        f => f.to_string(),
    };
    let hl = header_length(tail, n as u64).map_err(fault)? as usize;
    let entries = open_header(repo.key(), &tail[n - 4 - hl..n - 4]).map_err(fault)?;
    Ok((hl as u64 + 4, entries))
}

/// Reads the given packs with a few workers; every problem goes to `rep.warn`.
/// Returns whether any was found.
pub(crate) fn read_packs(
    repo: &Repository,
    packs: Vec<(PackId, u64, Vec<PackEntry>)>,
    rep: &Control,
) -> bool {
    let total = packs.len() as u64;
    let done = AtomicU64::new(0);
    let bad = AtomicU64::new(0);
    rep.progress(Phase::ReadData, "packs", 0, total);
    let run = || {
        packs.into_par_iter().for_each(|(id, size, blobs)| {
            let errs = check_pack(repo, &id, size, blobs);
            if !errs.is_empty() {
                bad.fetch_add(1, Ordering::Relaxed);
                for e in errs {
                    rep.error(&e);
                }
            }
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            rep.progress(Phase::ReadData, "packs", d, total);
        })
    };
    match worker_pool() {
        Some(pool) => pool.install(run),
        None => run(),
    }
    rep.emit(Event::PhaseFinished(Phase::ReadData));
    bad.load(Ordering::Relaxed) > 0
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use restash_backend::LocalBackend;
    use restash_format::{compress_blob, BlobId, BlobType, PackBuilder};

    use super::*;

    fn repo(dir: &std::path::Path) -> Repository {
        crate::test_util::repo_on(Arc::new(LocalBackend::new(dir)))
    }

    /// A pack of three blobs (the second compressed), stored; its id, size and entries.
    fn store(repo: &Repository) -> (PackId, u64, Vec<PackEntry>) {
        let mut pb = PackBuilder::new();
        let plain: [&[u8]; 3] = [b"first blob", &[7u8; 5000], b"third"];
        for (i, p) in plain.iter().enumerate() {
            let id = BlobId::hash(p);
            if i == 1 {
                let z = compress_blob(p, 3);
                pb.add_blob(repo.key(), BlobType::Data, id, &z, Some(p.len() as u32));
            } else {
                pb.add_blob(repo.key(), BlobType::Data, id, p, None);
            }
        }
        let (bytes, id, entries) = pb.finish(repo.key());
        let h = Handle::new(FileType::Pack, id);
        repo.backend().write(&h, &bytes).unwrap();
        (id, bytes.len() as u64, entries)
    }

    fn pack_file(dir: &std::path::Path, id: &PackId) -> std::path::PathBuf {
        let hex = id.to_string();
        dir.join("data").join(&hex[..2]).join(hex)
    }

    #[test]
    fn sound_pack_passes() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        let (id, size, entries) = store(&repo);
        let idx_size = HEADER_OVERHEAD
            + entries
                .iter()
                .map(|e| e.length as u64 + entry_size(e))
                .sum::<u64>();
        assert_eq!(idx_size, size, "the index computes the pack size");
        assert!(check_pack(&repo, &id, size, entries).is_empty());
    }

    #[test]
    fn flipped_byte_names_pack_and_blob() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        let (id, size, entries) = store(&repo);
        let path = pack_file(dir.path(), &id);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[entries[1].offset as usize + 20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let errs = check_pack(&repo, &id, size, entries.clone());
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with(&format!("Pack ID does not match, want {id}, got ")));
        assert!(errs[1].contains(&format!(
            "blob {}: ciphertext verification failed",
            entries[1].id
        )));
        assert!(!errs[1].contains(&entries[0].id.to_string()));
    }

    #[test]
    fn index_that_disagrees_with_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        let (id, size, mut entries) = store(&repo);
        // The index forgets the last blob: a gap-free prefix, but the header has more.
        let last = entries.pop().unwrap();
        let errs = check_pack(&repo, &id, size, entries.clone());
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with(&format!("pack {id} contains 2 errors: [")));
        assert!(errs[0].contains("Pack header size does not match"));
        assert!(errs[0].contains(&format!("Blob {} is not contained in index", last.id)));
        // A blob the index places wrongly.
        entries.push(PackEntry {
            offset: last.offset + 1,
            ..last
        });
        let errs = check_pack(&repo, &id, size, entries);
        assert!(errs[0].contains("gaps / overlapping blobs"), "{errs:?}");
    }

    #[test]
    fn missing_and_short_packs_fail_to_download() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        let (id, size, entries) = store(&repo);
        let path = pack_file(dir.path(), &id);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let errs = check_pack(&repo, &id, size, entries.clone());
        assert!(
            errs[0].starts_with(&format!("pack {id} failed to download: ")),
            "{errs:?}"
        );
        std::fs::remove_file(&path).unwrap();
        let errs = check_pack(&repo, &id, size, entries);
        assert!(
            errs[0].starts_with(&format!("pack {id} failed to download: ")),
            "{errs:?}"
        );
    }
}
