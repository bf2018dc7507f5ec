//! The two rules for reading what a pack stores, kept once: how a stored blob is opened
//! and verified, and how the header is found at the end of a pack. Each caller words the
//! failure its own way (restic's `check --read-data` messages differ from a restore's), so
//! these return what failed and leave the words to the caller.

use restash_crypto::{CryptoError, Key};
use restash_format::{
    decompress_blob, parse_header, parse_trailer, BlobId, FormatError, PackEntry,
};

/// The constant part of a pack header: length field plus crypto overhead.
pub(crate) const HEADER_OVERHEAD: u64 = 4 + restash_crypto::OVERHEAD as u64;

/// Size of one header entry, as restic's `pack.CalculateEntrySize`: a compressed blob's
/// entry also holds its plaintext length.
pub(crate) fn header_entry_size(compressed: bool) -> u64 {
    if compressed {
        41
    } else {
        37
    }
}

/// What went wrong opening a stored blob.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BlobFault {
    /// Decryption or authentication failed.
    #[error("{0}")]
    Open(CryptoError),
    /// The zstd payload does not decompress to its stated length.
    #[error("{0}")]
    Decompress(FormatError),
    /// The plaintext hashes to this id instead.
    #[error("content does not match its id")]
    Mismatch(BlobId),
}

/// Decrypts `raw` (a blob as stored), decompresses it when `uncompressed_length` is not 0
/// (through `scratch`, kept by the caller so that a loop of blobs allocates once), and
/// checks that `out` hashes to `id`.
pub(crate) fn open_blob(
    key: &Key,
    id: &BlobId,
    uncompressed_length: u32,
    raw: &[u8],
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), BlobFault> {
    if uncompressed_length != 0 {
        key.open_into(raw, scratch).map_err(BlobFault::Open)?;
        decompress_blob(scratch, uncompressed_length as usize, out)
            .map_err(BlobFault::Decompress)?;
    } else {
        key.open_into(raw, out).map_err(BlobFault::Open)?;
    }
    let got = BlobId::hash(out);
    if got != *id {
        return Err(BlobFault::Mismatch(got));
    }
    Ok(())
}

/// What went wrong reading a pack header.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeaderFault {
    /// Fewer than the 4 bytes of the length field.
    #[error("too short")]
    TooShort,
    /// The length field is one restic refuses.
    #[error("{0}")]
    Length(FormatError),
    /// The header does not decrypt.
    #[error("header: {0}")]
    Open(CryptoError),
    /// The decrypted header does not parse.
    #[error("{0}")]
    Parse(FormatError),
}

/// The length of the encrypted header, from the last 4 bytes of `tail` (the end of a pack,
/// or of the part of it at hand), refused when it does not fit in `within` bytes.
pub(crate) fn header_length(tail: &[u8], within: u64) -> Result<u64, HeaderFault> {
    let n = tail.len();
    let last4: [u8; 4] = tail
        .get(n.wrapping_sub(4)..)
        .and_then(|s| s.try_into().ok())
        .ok_or(HeaderFault::TooShort)?;
    Ok(parse_trailer(last4, within).map_err(HeaderFault::Length)? as u64)
}

/// Decrypts and parses an encrypted header.
pub(crate) fn open_header(key: &Key, sealed: &[u8]) -> Result<Vec<PackEntry>, HeaderFault> {
    let plain = key.open(sealed).map_err(HeaderFault::Open)?;
    parse_header(&plain).map_err(HeaderFault::Parse)
}

#[cfg(test)]
mod tests {
    use restash_format::{compress_blob, BlobType, PackBuilder};

    use super::*;

    #[test]
    fn blobs_and_headers_open_and_faults_are_told_apart() {
        let key = Key::random();
        let plain = [9u8; 3000];
        let id = BlobId::hash(&plain);
        let mut pb = PackBuilder::new();
        pb.add_blob(&key, BlobType::Data, id, &plain, None);
        let z = compress_blob(&plain, 3);
        pb.add_blob(&key, BlobType::Tree, id, &z, Some(plain.len() as u32));
        let (bytes, _, entries) = pb.finish(&key);
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        for e in &entries {
            let raw = &bytes[e.offset as usize..(e.offset + e.length) as usize];
            let ulen = e.uncompressed_length.unwrap_or(0);
            open_blob(&key, &id, ulen, raw, &mut scratch, &mut out).unwrap();
            assert_eq!(out, plain);
            let other = BlobId::hash(b"other");
            let err = open_blob(&key, &other, ulen, raw, &mut scratch, &mut out).unwrap_err();
            assert!(matches!(err, BlobFault::Mismatch(got) if got == id));
            let mut bad = raw.to_vec();
            bad[20] ^= 1;
            let err = open_blob(&key, &id, ulen, &bad, &mut scratch, &mut out).unwrap_err();
            assert!(matches!(err, BlobFault::Open(_)), "{err}");
        }

        let size = bytes.len() as u64;
        let hl = header_length(&bytes, size).unwrap();
        let sealed = &bytes[(size - 4 - hl) as usize..(size - 4) as usize];
        assert_eq!(open_header(&key, sealed).unwrap(), entries);
        assert!(matches!(
            header_length(&bytes[..3], 3),
            Err(HeaderFault::TooShort)
        ));
        // A header longer than the bytes at hand.
        assert!(matches!(
            header_length(&bytes[bytes.len() - 8..], 8),
            Err(HeaderFault::Length(_))
        ));
        assert!(matches!(
            open_header(&Key::random(), sealed),
            Err(HeaderFault::Open(_))
        ));
    }
}
