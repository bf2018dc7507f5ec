use crate::FormatError;

/// Compression mode for data blobs, like restic's `--compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Store data blobs as they are (trees and metadata are still compressed in v2).
    Off,
    /// zstd at its default level, as restic's "auto".
    #[default]
    Auto,
    /// zstd at a high level, as restic's "max".
    Max,
}

impl Compression {
    /// The zstd level this mode uses, or `None` for off.
    pub fn level(&self) -> Option<i32> {
        match self {
            Compression::Off => None,
            Compression::Auto => Some(3),
            Compression::Max => Some(19),
        }
    }
}

/// Decodes the plaintext of an unpacked file (index, snapshot, lock). In a v2 repository a
/// leading `0x02` means zstd follows, and `{`/`[` mean plain JSON (files from before an
/// upgrade).
pub fn decode_unpacked(repo_version: u32, plain: Vec<u8>) -> Result<Vec<u8>, FormatError> {
    if repo_version < 2 || plain.is_empty() {
        return Ok(plain);
    }
    match plain[0] {
        b'{' | b'[' => Ok(plain),
        2 => zstd::stream::decode_all(&plain[1..]).map_err(FormatError::Zstd),
        other => Err(FormatError::UnknownEncoding(other)),
    }
}

/// Encodes JSON for an unpacked file: as is in v1, `0x02 ‖ zstd` in v2 (what restic 0.14
/// always writes there, whatever `--compression` says).
pub fn encode_unpacked(repo_version: u32, json: &[u8]) -> Vec<u8> {
    if repo_version < 2 {
        return json.to_vec();
    }
    let mut out = vec![2u8];
    let z = zstd::bulk::compress(json, 3).expect("in-memory zstd cannot fail");
    out.extend_from_slice(&z);
    out
}

/// Compresses a blob payload at `level` into a single zstd frame without checksum.
pub fn compress_blob(plain: &[u8], level: i32) -> Vec<u8> {
    zstd::bulk::compress(plain, level).expect("in-memory zstd cannot fail")
}

/// How many times its compressed size a blob may claim before the claim alone no longer
/// decides how much memory is reserved for it. Ordinary data and trees stay far below;
/// beyond it (runs of zeros, or a header lying about the size) the output buffer grows
/// with what the payload really yields.
const TRUSTED_RATIO: usize = 64;

/// Decompresses a blob payload whose header says it is `expected_len` bytes long.
///
/// The stated length comes from a pack header or an index, so it is not trusted with
/// memory: at most [`TRUSTED_RATIO`] times the payload is reserved up front from it, and a
/// larger claim is checked against what the payload decompresses to, never past
/// `expected_len + 1` bytes.
pub fn decompress_blob(
    payload: &[u8],
    expected_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    out.clear();
    if expected_len <= payload.len().saturating_mul(TRUSTED_RATIO) {
        decompress_reserved(payload, expected_len, out)?;
    } else {
        decompress_streaming(payload, expected_len, out)?;
    }
    if out.len() != expected_len {
        return Err(FormatError::Invalid(format!(
            "decompressed blob is {} bytes, the header says {expected_len}",
            out.len()
        )));
    }
    Ok(())
}

/// One-shot decoding into `expected_len` reserved bytes; libzstd also accepts concatenated
/// frames here, as restic's DecodeAll does. A header that understates the size fails.
fn decompress_reserved(
    payload: &[u8],
    expected_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    out.reserve(expected_len);
    // A decompression context per thread: creating one per blob costs more than small
    // blobs take to decode.
    thread_local! {
        static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(FormatError::Zstd)?);
        }
        let d = slot.as_mut().expect("initialised above");
        d.decompress_to_buffer(payload, out)
            .map_err(FormatError::Zstd)
            .map(|_| ())
    })
}

/// Streaming decoding (concatenated frames too) that stops one byte past `expected_len`,
/// enough for the caller to tell an understated size.
fn decompress_streaming(
    payload: &[u8],
    expected_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    use std::io::Read;
    let decoder = zstd::stream::read::Decoder::with_buffer(payload).map_err(FormatError::Zstd)?;
    let limit = (expected_len as u64).saturating_add(1);
    decoder
        .take(limit)
        .read_to_end(out)
        .map_err(FormatError::Zstd)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacked_round_trip() {
        let json = br#"{"a":1}"#;
        assert_eq!(encode_unpacked(1, json), json);
        let v2 = encode_unpacked(2, json);
        assert_eq!(v2[0], 2);
        assert_eq!(decode_unpacked(2, v2).unwrap(), json);
        assert_eq!(decode_unpacked(2, json.to_vec()).unwrap(), json);
        assert!(matches!(
            decode_unpacked(2, vec![9, 1]),
            Err(FormatError::UnknownEncoding(9))
        ));
        let big = vec![7u8; 100_000];
        let z = compress_blob(&big, 3);
        let mut out = Vec::new();
        decompress_blob(&z, big.len(), &mut out).unwrap();
        assert_eq!(out, big);
        assert!(decompress_blob(&z, 5, &mut out).is_err());
    }

    #[test]
    fn stated_lengths_beyond_the_ratio_are_checked_by_decoding() {
        let big = vec![0u8; 1 << 20];
        let z = compress_blob(&big, 3);
        assert!(
            big.len() > z.len() * TRUSTED_RATIO,
            "takes the streaming path"
        );
        let mut out = Vec::new();
        decompress_blob(&z, big.len(), &mut out).unwrap();
        assert_eq!(out, big);
        for wrong in [big.len() - 1, big.len() + 1, u32::MAX as usize] {
            let err = decompress_blob(&z, wrong, &mut out).unwrap_err();
            assert!(matches!(err, FormatError::Invalid(_)), "{wrong}: {err}");
            assert!(out.capacity() < 4 << 20, "{wrong}: {}", out.capacity());
        }
        let mut two = z.clone();
        two.extend_from_slice(&z);
        decompress_blob(&two, 2 * big.len(), &mut out).unwrap();
        assert_eq!(out.len(), 2 * big.len());
        assert!(decompress_blob(b"\x28\xb5\x2f\xfd junk", 1 << 30, &mut out).is_err());
    }
}
