use serde::{Deserialize, Serialize};

use crate::{BlobId, BlobType, FormatError, IndexId, PackEntry, PackId};

/// One blob in an index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexBlob {
    /// Blob id.
    pub id: BlobId,
    /// Data or tree.
    #[serde(rename = "type")]
    pub blob_type: BlobType,
    /// Offset in the pack.
    pub offset: u32,
    /// Stored length.
    pub length: u32,
    /// Present only for compressed blobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_length: Option<u32>,
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

/// The blobs of one pack in an index file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    /// Pack storage id.
    pub id: PackId,
    /// Its blobs, in any order.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub blobs: Vec<IndexBlob>,
}

// Go writes nil slices as `null`.
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// An index file: which blobs live in which packs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    /// Index files this one replaces (informational).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<IndexId>,
    /// The packs.
    #[serde(default, deserialize_with = "null_as_empty")]
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
}
