use serde::{Deserialize, Serialize};

use restash_crypto::{Key, OVERHEAD};

use crate::{BlobId, FormatError, PackId};

/// Data chunk or tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobType {
    /// A chunk of file content.
    Data,
    /// A serialized directory listing.
    Tree,
}

impl BlobType {
    /// `"data"` or `"tree"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
        }
    }
}

/// One blob's place in a pack, as the pack header (and the index) describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackEntry {
    /// Data or tree.
    pub blob_type: BlobType,
    /// SHA-256 of the uncompressed plaintext.
    pub id: BlobId,
    /// Byte offset inside the pack.
    pub offset: u32,
    /// Stored length: IV + (compressed) ciphertext + MAC.
    pub length: u32,
    /// Plaintext length after decompression; `None` for uncompressed blobs.
    pub uncompressed_length: Option<u32>,
}

impl PackEntry {
    /// The plaintext length of the blob.
    pub fn plaintext_len(&self) -> u32 {
        self.uncompressed_length
            .unwrap_or(self.length.saturating_sub(OVERHEAD as u32))
    }
}

/// How many trailing bytes restic reads first to find the header: enough for 15 compressed
/// entries plus crypto overhead and the length field, so small packs need one request.
pub const HEADER_TAIL_READ: u64 = 15 * 41 + 36;
/// The largest header restic accepts, length field included.
pub const MAX_HEADER_SIZE: u64 = 16 * 1024 * 1024 + 4;

/// Reads the 4-byte trailer of a pack of `pack_size` bytes and returns the length of the
/// encrypted header in front of it, refusing lengths restic would refuse.
pub fn parse_trailer(last4: [u8; 4], pack_size: u64) -> Result<u32, FormatError> {
    let hl = u32::from_le_bytes(last4);
    let bad = |why: &str| FormatError::PackHeader(format!("header length {hl}: {why}"));
    if pack_size < 4 {
        return Err(FormatError::PackHeader(format!(
            "pack of {pack_size} bytes is too short"
        )));
    }
    if hl == 0 {
        return Err(bad("zero"));
    }
    if (hl as usize) < OVERHEAD {
        return Err(bad("shorter than the crypto overhead"));
    }
    if hl as u64 > pack_size - 4 {
        return Err(bad("larger than the pack"));
    }
    if hl as u64 + 4 > MAX_HEADER_SIZE {
        return Err(bad("larger than 16 MiB"));
    }
    Ok(hl)
}

/// Parses a decrypted pack header into its entries, computing offsets.
pub fn parse_header(plain: &[u8]) -> Result<Vec<PackEntry>, FormatError> {
    let mut entries = Vec::with_capacity(plain.len() / 37);
    let mut pos = 0usize;
    let mut offset: u64 = 0;
    while pos < plain.len() {
        let t = plain[pos];
        let (blob_type, compressed) = match t {
            0 => (BlobType::Data, false),
            1 => (BlobType::Tree, false),
            2 => (BlobType::Data, true),
            3 => (BlobType::Tree, true),
            _ => {
                return Err(FormatError::PackHeader(format!(
                    "invalid blob type {t} in entry {}",
                    entries.len()
                )))
            }
        };
        let size = if compressed { 41 } else { 37 };
        let e = plain.get(pos..pos + size).ok_or_else(|| {
            FormatError::PackHeader(format!("entry {} is truncated", entries.len()))
        })?;
        let u32at = |i: usize| u32::from_le_bytes(e[i..i + 4].try_into().expect("4 bytes"));
        let length = u32at(1);
        let (uncompressed_length, id_at) = if compressed {
            (Some(u32at(5)), 9)
        } else {
            (None, 5)
        };
        let mut id = [0u8; 32];
        id.copy_from_slice(&e[id_at..id_at + 32]);
        if offset + length as u64 > u32::MAX as u64 {
            return Err(FormatError::PackHeader("offsets exceed 4 GiB".into()));
        }
        entries.push(PackEntry {
            blob_type,
            id: BlobId(crate::Id(id)),
            offset: offset as u32,
            length,
            uncompressed_length,
        });
        offset += length as u64;
        pos += size;
    }
    Ok(entries)
}

pub(crate) fn encode_header(entries: &[PackEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 41);
    for e in entries {
        let t = match (e.blob_type, e.uncompressed_length.is_some()) {
            (BlobType::Data, false) => 0u8,
            (BlobType::Tree, false) => 1,
            (BlobType::Data, true) => 2,
            (BlobType::Tree, true) => 3,
        };
        out.push(t);
        out.extend_from_slice(&e.length.to_le_bytes());
        if let Some(u) = e.uncompressed_length {
            out.extend_from_slice(&u.to_le_bytes());
        }
        out.extend_from_slice(&e.id.0 .0);
    }
    out
}

/// Builds a pack in memory: sealed blobs back to back, then the sealed header and its
/// length. Pure: the caller uploads the bytes.
#[derive(Default)]
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl PackBuilder {
    /// An empty pack.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes so far (blobs only, header not yet added).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Reserves room for `n` more bytes, so that a pack does not double its buffer as it
    /// fills (untouched capacity costs no memory).
    pub fn reserve(&mut self, n: usize) {
        self.buf.reserve(n);
    }

    /// Number of blobs.
    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// Appends an already sealed blob. `uncompressed_length` is `Some` when the sealed
    /// payload is a zstd frame.
    pub fn add_sealed(
        &mut self,
        blob_type: BlobType,
        id: BlobId,
        sealed: &[u8],
        uncompressed_length: Option<u32>,
    ) {
        self.entries.push(PackEntry {
            blob_type,
            id,
            offset: self.buf.len() as u32,
            length: sealed.len() as u32,
            uncompressed_length,
        });
        self.buf.extend_from_slice(sealed);
    }

    /// Seals `payload` with `key` straight into the pack (no intermediate copy).
    /// `uncompressed_length` is `Some` when `payload` is a zstd frame.
    pub fn add_blob(
        &mut self,
        key: &Key,
        blob_type: BlobType,
        id: BlobId,
        payload: &[u8],
        uncompressed_length: Option<u32>,
    ) -> u32 {
        let offset = self.buf.len();
        key.seal_append(payload, &mut self.buf);
        let length = (self.buf.len() - offset) as u32;
        self.entries.push(PackEntry {
            blob_type,
            id,
            offset: offset as u32,
            length,
            uncompressed_length,
        });
        length
    }

    /// Moves `other`'s sealed blobs behind this pack's: a sealed blob does not depend on
    /// where it sits, so partly filled packs can be joined before they are finished.
    pub fn append(&mut self, other: PackBuilder) {
        let base = self.buf.len() as u32;
        self.entries
            .extend(other.entries.into_iter().map(|e| PackEntry {
                offset: e.offset + base,
                ..e
            }));
        self.buf.extend_from_slice(&other.buf);
    }

    /// Starts a pack in a recycled buffer (its contents are discarded, its capacity kept).
    pub fn with_buffer(mut buf: Vec<u8>) -> Self {
        buf.clear();
        PackBuilder {
            buf,
            entries: Vec::new(),
        }
    }

    /// Seals the header and returns the finished pack bytes, its storage id and entries.
    pub fn finish(mut self, key: &Key) -> (Vec<u8>, PackId, Vec<PackEntry>) {
        let header = key.seal(&encode_header(&self.entries));
        self.buf.extend_from_slice(&header);
        self.buf
            .extend_from_slice(&(header.len() as u32).to_le_bytes());
        let id = PackId::hash(&self.buf);
        (self.buf, id, self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_then_parse() {
        let key = Key::random();
        let mut b = PackBuilder::new();
        let a = key.seal(b"alpha");
        b.add_sealed(BlobType::Data, BlobId::hash(b"alpha"), &a, None);
        let z = key.seal(b"zzzz");
        b.add_sealed(BlobType::Data, BlobId::hash(b"x"), &z, Some(100));
        let (bytes, id, entries) = b.finish(&key);
        assert_eq!(id, PackId::hash(&bytes));
        let hl = parse_trailer(
            bytes[bytes.len() - 4..].try_into().unwrap(),
            bytes.len() as u64,
        )
        .unwrap();
        assert_eq!(hl as usize, 32 + 37 + 41);
        let start = bytes.len() - 4 - hl as usize;
        let plain = key.open(&bytes[start..bytes.len() - 4]).unwrap();
        assert_eq!(parse_header(&plain).unwrap(), entries);
        assert_eq!(entries[1].offset, a.len() as u32);
        assert_eq!(entries[1].plaintext_len(), 100);
        assert_eq!(entries[0].plaintext_len(), 5);
    }

    #[test]
    fn appended_packs_keep_every_blob_readable() {
        let key = Key::random();
        let (mut a, mut b) = (PackBuilder::new(), PackBuilder::new());
        a.add_blob(&key, BlobType::Data, BlobId::hash(b"one"), b"one", None);
        b.add_blob(&key, BlobType::Data, BlobId::hash(b"two"), b"two", None);
        b.add_blob(&key, BlobType::Data, BlobId::hash(b"three"), b"three", None);
        a.append(b);
        assert_eq!(a.count(), 3);
        let (bytes, _, entries) = a.finish(&key);
        for (e, want) in entries.iter().zip([&b"one"[..], b"two", b"three"]) {
            let sealed = &bytes[e.offset as usize..][..e.length as usize];
            assert_eq!(key.open(sealed).unwrap(), want);
            assert_eq!(e.id, BlobId::hash(want));
        }
    }

    #[test]
    fn bad_headers_are_errors() {
        assert!(parse_trailer(0u32.to_le_bytes(), 100).is_err());
        assert!(parse_trailer(10u32.to_le_bytes(), 100).is_err());
        assert!(parse_trailer(97u32.to_le_bytes(), 100).is_err());
        assert!(parse_trailer(96u32.to_le_bytes(), 100).is_ok());
        assert!(parse_header(&[7; 37]).is_err());
        assert!(parse_header(&[0; 36]).is_err());
        assert!(parse_header(&[2; 40]).is_err());
    }
}
