use serde::{Deserialize, Serialize};

use crate::gojson::null_as_default;
use crate::{BlobId, FormatError, GoTime, SnapshotId};

/// A snapshot file: the root tree of one backup run and where it came from.
///
/// Field order and omissions are restic 0.14's (`uid`/`gid` omitted when 0). Every field but
/// `tree` may be absent or `null` and reads as Go's zero value; unknown fields (rustic's
/// `program_version`, `summary`, …) are ignored, as Go does. A snapshot without a tree
/// has nothing to restore, so that is an error naming the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Start time of the backup, in the zone it ran in (Go's zero time when absent).
    #[serde(default, deserialize_with = "null_as_default")]
    pub time: GoTime,
    /// The snapshot used for change detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SnapshotId>,
    /// The root tree.
    pub tree: BlobId,
    /// The backup targets as given (restic makes them absolute, rustic keeps `.`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub paths: Vec<String>,
    /// Host name (per volume for restash's agent).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub hostname: String,
    /// User who ran the backup.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub username: String,
    /// uid of that user.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub uid: u32,
    /// gid of that user.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub gid: u32,
    /// Exclude patterns in effect.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub excludes: Vec<String>,
    /// Tags.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<String>,
    /// The first version of a snapshot rewritten by `tag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<SnapshotId>,
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

    // snapshots/0c5e351d… of fixtures/rustic-testdata as rustic 0.11.4 wrote it, `summary`
    // shortened.
    const RUSTIC_SNAPSHOT: &str = concat!(
        r#"{"time":"2026-12-02T12:32:20.618645388+00:00","program_version":"rustic 0.11.4","#,
        r#""tree":"8aed67afecd19b0497b5def90135755814853a9d3100c7c76a449f3efe27c6f1","#,
        r#""paths":["."],"hostname":"fixture-host","username":"","uid":0,"gid":0,"tags":[],"#,
        r#""summary":{"files_new":76,"files_changed":0,"files_unmodified":0,"#,
        r#""total_files_processed":76,"total_bytes_processed":1125905,"dirs_new":6,"#,
        r#""command":"rustic -r ../repo backup --host fixture-host .","#,
        r#""backup_start":"2026-12-02T12:32:20.626769922+00:00","backup_duration":0.129570793}}"#
    );

    const TREE: &str = "7aeffdd44d9e955aadbaba59da1f5ae4e042198ac9e20c56be8cd434919d5ff0";

    #[test]
    fn only_the_tree_is_required() {
        let s = Snapshot::from_json(format!(r#"{{"tree":"{TREE}"}}"#).as_bytes()).unwrap();
        assert_eq!(s.time, GoTime::zero());
        assert!(s.paths.is_empty() && s.hostname.is_empty() && s.parent.is_none());
        // Go marshals the zero time and, for a decoded snapshot, the paths it read.
        assert_eq!(
            String::from_utf8(s.to_json()).unwrap(),
            format!(r#"{{"time":"0001-01-01T00:00:00Z","tree":"{TREE}","paths":[]}}"#)
        );
        let nulls = format!(
            r#"{{"time":null,"parent":null,"tree":"{TREE}","paths":null,"hostname":null,"username":null,"uid":null,"gid":null,"excludes":null,"tags":null,"original":null}}"#
        );
        assert_eq!(Snapshot::from_json(nulls.as_bytes()).unwrap(), s);
    }

    #[test]
    fn missing_tree_is_named() {
        let err = Snapshot::from_json(br#"{"time":"2015-01-01T00:00:00Z","paths":["/a"]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `tree`"), "{err}");
    }

    #[test]
    fn rustic_snapshot_with_unknown_fields() {
        let s = Snapshot::from_json(RUSTIC_SNAPSHOT.as_bytes()).unwrap();
        assert_eq!(s.paths, ["."]);
        assert_eq!(s.hostname, "fixture-host");
        assert!(s.username.is_empty() && s.parent.is_none());
        assert_eq!(
            String::from_utf8(s.to_json()).unwrap(),
            r#"{"time":"2026-12-02T12:32:20.618645388Z","tree":"8aed67afecd19b0497b5def90135755814853a9d3100c7c76a449f3efe27c6f1","paths":["."],"hostname":"fixture-host"}"#
        );
    }
}
