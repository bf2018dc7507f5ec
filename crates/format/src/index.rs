use serde::{Deserialize, Serialize};

use crate::gojson::null_as_default;
use crate::{BlobId, BlobType, FormatError, IndexId, PackEntry, PackId};

/// One blob in an index file.
///
/// `id`, `type` and `length` are required: Go would decode an absent one as a zero id, an
/// invalid type or an empty blob and fail only when the blob is read. `offset` 0 is a real
/// offset, so it may be absent. Unknown fields are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexBlob {
    /// Blob id.
    pub id: BlobId,
    /// Data or tree.
    #[serde(rename = "type")]
    pub blob_type: BlobType,
    /// Offset in the pack.
    #[serde(default, deserialize_with = "null_as_default")]
    pub offset: u32,
    /// Stored length.
    pub length: u32,
    /// Present only for compressed blobs.
    #[serde(
        default,
        deserialize_with = "zero_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub uncompressed_length: Option<u32>,
}

// Go's `uint` with `omitempty`: 0 (or null, or absence) means "not compressed", so it must
// not become `Some(0)`, which would read as a compressed blob (and a v2 feature in v1).
fn zero_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Ok(Option::<u32>::deserialize(d)?.filter(|n| *n != 0))
}

impl From<PackEntry> for IndexBlob {
    fn from(e: PackEntry) -> Self {
        IndexBlob {
            id: e.id,
            blob_type: e.blob_type,
            offset: e.offset,
            length: e.length,
            uncompressed_length: e.uncompressed_length,
        }
    }
}

/// The blobs of one pack in an index file. Only `id` is required; unknown fields (rustic's
/// per-pack `time`) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    /// Pack storage id.
    pub id: PackId,
    /// Its blobs, in any order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub blobs: Vec<IndexBlob>,
}

/// An index file: which blobs live in which packs. Both fields may be absent or `null`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    /// Index files this one replaces (informational).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub supersedes: Vec<IndexId>,
    /// The packs.
    #[serde(default, deserialize_with = "null_as_default")]
    pub packs: Vec<IndexPack>,
}

impl IndexFile {
    /// Decodes an index in the current object form or the old top-level array form.
    /// Returns whether the old form was seen, which `check` reports.
    pub fn from_json(data: &[u8]) -> Result<(IndexFile, bool), FormatError> {
        let first = data.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'[') {
            let packs: Vec<IndexPack> =
                serde_json::from_slice(data).map_err(FormatError::json("index"))?;
            return Ok((
                IndexFile {
                    supersedes: Vec::new(),
                    packs,
                },
                true,
            ));
        }
        let idx = serde_json::from_slice(data).map_err(FormatError::json("index"))?;
        Ok((idx, false))
    }

    /// Compact JSON plus a newline, as restic's json.Encoder writes it.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("index serializes");
        v.push(b'\n');
        v
    }

    /// Number of blob entries.
    pub fn blob_count(&self) -> usize {
        self.packs.iter().map(|p| p.blobs.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kat_index_round_trips() {
        let json = concat!(
            r#"{"packs":[{"id":"999abe50f94e557716c527ea00c3890d84e10e5bad506e79154e8fc223941929","blobs":[{"id":"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03","type":"data","offset":0,"length":47,"uncompressed_length":6}]},"#,
            r#"{"id":"a22694dc5f4e6d71b085823ea0158a6d8556982fbfeacf053e0eb3022a82cde0","blobs":[{"id":"2335ceed5e5918f805c6b6ff006fe90ffb0ee77b6aa9904f91678a2649cc58d5","type":"tree","offset":271,"length":266,"uncompressed_length":340}]}]}"#,
            "\n"
        );
        let (idx, old) = IndexFile::from_json(json.as_bytes()).unwrap();
        assert!(!old);
        assert_eq!(idx.blob_count(), 2);
        assert_eq!(idx.to_json(), json.as_bytes());
        let old_form = br#"[{"id":"999abe50f94e557716c527ea00c3890d84e10e5bad506e79154e8fc223941929","blobs":[{"id":"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03","type":"data","offset":0,"length":38}]}]"#;
        let (idx, old) = IndexFile::from_json(old_form).unwrap();
        assert!(old);
        assert_eq!(idx.packs[0].blobs[0].uncompressed_length, None);
        assert!(IndexFile::from_json(b"{\"packs\":[{\"id\":\"zz\"}]}").is_err());
    }

    const PACK: &str = "999abe50f94e557716c527ea00c3890d84e10e5bad506e79154e8fc223941929";
    const BLOB: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

    #[test]
    fn only_required_fields() {
        let (idx, _) = IndexFile::from_json(b"{}").unwrap();
        assert_eq!(idx, IndexFile::default());
        let (idx, _) = IndexFile::from_json(br#"{"supersedes":null,"packs":null}"#).unwrap();
        assert_eq!(idx, IndexFile::default());
        let json = format!(
            r#"{{"packs":[{{"id":"{PACK}"}},{{"id":"{PACK}","blobs":[{{"id":"{BLOB}","type":"data","length":38}}]}}]}}"#
        );
        let (idx, _) = IndexFile::from_json(json.as_bytes()).unwrap();
        assert!(idx.packs[0].blobs.is_empty());
        let b = idx.packs[1].blobs[0];
        assert_eq!((b.offset, b.length, b.uncompressed_length), (0, 38, None));
    }

    #[test]
    fn zero_uncompressed_length_means_uncompressed() {
        for ulen in ["0", "null"] {
            let json = format!(
                r#"{{"packs":[{{"id":"{PACK}","blobs":[{{"id":"{BLOB}","type":"data","offset":0,"length":38,"uncompressed_length":{ulen}}}]}}]}}"#
            );
            let (idx, _) = IndexFile::from_json(json.as_bytes()).unwrap();
            assert_eq!(idx.packs[0].blobs[0].uncompressed_length, None, "{ulen}");
            // Written back the way Go's omitempty writes it.
            assert!(!String::from_utf8(idx.to_json())
                .unwrap()
                .contains("uncompressed_length"));
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        // The shape rustic 0.11.4 writes: a `time` per pack.
        let json = format!(
            r#"{{"packs":[{{"id":"{PACK}","blobs":[{{"id":"{BLOB}","type":"data","offset":0,"length":49,"uncompressed_length":8,"x":[]}}],"time":"2026-12-02T12:32:21.49179791+00:00","size":9}}],"future":{{}}}}"#
        );
        let (idx, old) = IndexFile::from_json(json.as_bytes()).unwrap();
        assert!(!old);
        assert_eq!(idx.packs[0].blobs[0].uncompressed_length, Some(8));
    }

    #[test]
    fn missing_required_blob_fields_are_named() {
        for field in ["id", "type", "length"] {
            let mut blob =
                serde_json::json!({"id": BLOB, "type": "tree", "offset": 5, "length": 38});
            blob.as_object_mut().unwrap().remove(field);
            let json = serde_json::json!({"packs": [{"id": PACK, "blobs": [blob]}]}).to_string();
            let err = IndexFile::from_json(json.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("missing field `{field}`")),
                "{field}: {err}"
            );
        }
        let err = IndexFile::from_json(br#"{"packs":[{"blobs":[]}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `id`"), "{err}");
    }
}
