use serde::{Deserialize, Serialize};

use crate::{BlobId, FormatError, GoTime, SnapshotId};

/// A snapshot file: the root tree of one backup run and where it came from.
///
/// Field order and omissions are restic 0.14's (`uid`/`gid` omitted when 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Start time of the backup, in the zone it ran in.
    pub time: GoTime,
    /// The snapshot used for change detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SnapshotId>,
    /// The root tree.
    pub tree: BlobId,
    /// Absolute paths of the backup targets.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub paths: Vec<String>,
    /// Host name (per volume for restash's agent).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// User who ran the backup.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// uid of that user.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uid: u32,
    /// gid of that user.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gid: u32,
    /// Exclude patterns in effect.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub excludes: Vec<String>,
    /// Tags.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<String>,
    /// The first version of a snapshot rewritten by `tag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<SnapshotId>,
}

// Go writes nil slices as `null`.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Snapshot {
    /// Decodes snapshot JSON. `paths: null` and missing fields are accepted.
    pub fn from_json(data: &[u8]) -> Result<Snapshot, FormatError> {
        serde_json::from_slice(data).map_err(FormatError::json("snapshot"))
    }

    /// Compact JSON, as restic writes it.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("snapshot serializes")
    }

    /// Whether the snapshot carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_snapshots_round_trip() {
        for s in [
            r#"{"time":"2026-11-24T03:21:56.101476311Z","parent":"9bce233588502361778c15bc56cdea67f92c28109367ff292998ad174d260126","tree":"7aeffdd44d9e955aadbaba59da1f5ae4e042198ac9e20c56be8cd434919d5ff0","paths":["/tmp/src"],"hostname":"testhost","username":"root"}"#,
            r#"{"time":"2026-11-24T03:27:41.841257411Z","tree":"3e38dd2cef7bf6b4d940a3c054c0aaa8553862748186dbc05af8c067334a29e7","paths":["/usr/f"],"hostname":"vm","username":"tuser","uid":1234,"gid":1234,"excludes":["*.tmp"],"tags":["a"]}"#,
        ] {
            let snap = Snapshot::from_json(s.as_bytes()).unwrap();
            assert_eq!(String::from_utf8(snap.to_json()).unwrap(), s);
        }
        let s = Snapshot::from_json(
            br#"{"time":"2015-01-01T00:00:00Z","tree":"7aeffdd44d9e955aadbaba59da1f5ae4e042198ac9e20c56be8cd434919d5ff0","paths":null,"tags":null}"#,
        )
        .unwrap();
        assert!(s.paths.is_empty() && s.tags.is_empty());
    }
}
