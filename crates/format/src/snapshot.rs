use serde::{Deserialize, Serialize};

use crate::gojson::null_as_default;
use crate::{BlobId, FormatError, GoTime, SnapshotId};

/// A snapshot file: the root tree of one backup run and where it came from.
///
/// Field order and omissions are restic 0.17's: restic 0.14's (`uid`/`gid` omitted when 0)
/// followed by `program_version` and `summary`, which older restic ignores on reading and
/// drops when it rewrites a snapshot. Every field but `tree` may be absent or `null` and
/// reads as Go's zero value; unknown fields (rustic's extra summary keys, …) are ignored, as
/// Go does. A snapshot without a tree has nothing to restore, so that is an error naming
/// the field.
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
    /// The program that wrote the snapshot (`restic 0.17.0`, `restash 0.1.0`); empty is
    /// omitted, as Go's `omitempty` does.
    #[serde(default, skip_serializing_if = "is_absent")]
    pub program_version: Option<String>,
    /// What the backup did and found, as restic 0.17+ records it.
    #[serde(
        default,
        deserialize_with = "summary_or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub summary: Option<SnapshotSummary>,
}

/// restic's `SnapshotSummary`: the statistics of the backup that made the snapshot, the
/// numbers its `backup --json` summary line prints. restic writes every field, zero or not;
/// each may be absent or `null` on reading (rustic omits some and adds others).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    /// When the backup started.
    #[serde(default, deserialize_with = "null_as_default")]
    pub backup_start: GoTime,
    /// When the backup finished, just before the snapshot was saved.
    #[serde(default, deserialize_with = "null_as_default")]
    pub backup_end: GoTime,
    /// Files not in the parent.
    #[serde(default, deserialize_with = "null_as_default")]
    pub files_new: u64,
    /// Files read again because they changed.
    #[serde(default, deserialize_with = "null_as_default")]
    pub files_changed: u64,
    /// Files taken from the parent unread.
    #[serde(default, deserialize_with = "null_as_default")]
    pub files_unmodified: u64,
    /// Directories not in the parent.
    #[serde(default, deserialize_with = "null_as_default")]
    pub dirs_new: u64,
    /// Directories whose tree changed.
    #[serde(default, deserialize_with = "null_as_default")]
    pub dirs_changed: u64,
    /// Directories with the parent's tree.
    #[serde(default, deserialize_with = "null_as_default")]
    pub dirs_unmodified: u64,
    /// Data blobs the backup added.
    #[serde(default, deserialize_with = "null_as_default")]
    pub data_blobs: u64,
    /// Tree blobs the backup added.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tree_blobs: u64,
    /// Plaintext bytes of the blobs added.
    #[serde(default, deserialize_with = "null_as_default")]
    pub data_added: u64,
    /// Bytes the added blobs take in the repository (compressed and encrypted).
    #[serde(default, deserialize_with = "null_as_default")]
    pub data_added_packed: u64,
    /// Files in the snapshot.
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_files_processed: u64,
    /// Bytes of the files in the snapshot.
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_bytes_processed: u64,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_absent(v: &Option<String>) -> bool {
    v.as_deref().is_none_or(str::is_empty)
}

/// A summary that does not decode (a writer with other ideas of its fields' types) reads
/// as absent: restic before 0.17 ignores the field, and statistics must not make a
/// snapshot's tree unreachable.
fn summary_or_none<'de, D>(d: D) -> Result<Option<SnapshotSummary>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(v.and_then(|v| serde_json::from_value(v).ok()))
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
            r#"{{"time":null,"parent":null,"tree":"{TREE}","paths":null,"hostname":null,"username":null,"uid":null,"gid":null,"excludes":null,"tags":null,"original":null,"program_version":null,"summary":null}}"#
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
        assert_eq!(s.program_version.as_deref(), Some("rustic 0.11.4"));
        let sum = s.summary.as_ref().expect("summary read");
        assert_eq!((sum.files_new, sum.dirs_new), (76, 6));
        assert_eq!(
            (sum.total_files_processed, sum.total_bytes_processed),
            (76, 1_125_905)
        );
        // rustic's `backup_end` is cut from the sample: Go's zero time, written as such.
        assert_eq!(sum.backup_end, GoTime::zero());
        // Written in restic's shape: rustic's own summary keys are gone, restic's all there.
        assert_eq!(
            String::from_utf8(s.to_json()).unwrap(),
            concat!(
                r#"{"time":"2026-12-02T12:32:20.618645388Z","#,
                r#""tree":"8aed67afecd19b0497b5def90135755814853a9d3100c7c76a449f3efe27c6f1","#,
                r#""paths":["."],"hostname":"fixture-host","program_version":"rustic 0.11.4","#,
                r#""summary":{"backup_start":"2026-12-02T12:32:20.626769922Z","#,
                r#""backup_end":"0001-01-01T00:00:00Z","files_new":76,"files_changed":0,"#,
                r#""files_unmodified":0,"dirs_new":6,"dirs_changed":0,"dirs_unmodified":0,"#,
                r#""data_blobs":0,"tree_blobs":0,"data_added":0,"data_added_packed":0,"#,
                r#""total_files_processed":76,"total_bytes_processed":1125905}}"#
            )
        );
    }

    // As restic 0.17.0 writes a snapshot (`restic cat snapshot` shows it indented).
    const RESTIC_017_SNAPSHOT: &str = concat!(
        r#"{"time":"2024-08-12T21:14:03.127498183+02:00","#,
        r#""parent":"9bce233588502361778c15bc56cdea67f92c28109367ff292998ad174d260126","#,
        r#""tree":"3e38dd2cef7bf6b4d940a3c054c0aaa8553862748186dbc05af8c067334a29e7","#,
        r#""paths":["/home/user/work"],"hostname":"laptop","username":"user","uid":1000,"#,
        r#""gid":1000,"excludes":["*.o"],"tags":["daily"],"program_version":"restic 0.17.0","#,
        r#""summary":{"backup_start":"2024-08-12T21:14:03.127498183+02:00","#,
        r#""backup_end":"2024-08-12T21:14:05.49811066+02:00","files_new":3,"files_changed":1,"#,
        r#""files_unmodified":1520,"dirs_new":1,"dirs_changed":4,"dirs_unmodified":210,"#,
        r#""data_blobs":5,"tree_blobs":6,"data_added":70311,"data_added_packed":24010,"#,
        r#""total_files_processed":1524,"total_bytes_processed":91238841}}"#
    );

    #[test]
    fn restic_017_snapshot_decodes_every_field_and_round_trips() {
        let s = Snapshot::from_json(RESTIC_017_SNAPSHOT.as_bytes()).unwrap();
        assert_eq!(s.program_version.as_deref(), Some("restic 0.17.0"));
        let want = SnapshotSummary {
            backup_start: GoTime::parse("2024-08-12T21:14:03.127498183+02:00").unwrap(),
            backup_end: GoTime::parse("2024-08-12T21:14:05.49811066+02:00").unwrap(),
            files_new: 3,
            files_changed: 1,
            files_unmodified: 1520,
            dirs_new: 1,
            dirs_changed: 4,
            dirs_unmodified: 210,
            data_blobs: 5,
            tree_blobs: 6,
            data_added: 70311,
            data_added_packed: 24010,
            total_files_processed: 1524,
            total_bytes_processed: 91_238_841,
        };
        assert_eq!(s.summary.as_ref(), Some(&want));
        assert_eq!(s.summary.as_ref().unwrap().backup_start, s.time);
        assert_eq!(String::from_utf8(s.to_json()).unwrap(), RESTIC_017_SNAPSHOT);
    }

    #[test]
    fn summary_round_trips_with_zeros_written() {
        let mut s = Snapshot::from_json(format!(r#"{{"tree":"{TREE}"}}"#).as_bytes()).unwrap();
        s.program_version = Some("restash 1.2.3".into());
        s.summary = Some(SnapshotSummary {
            backup_start: GoTime::parse("2026-01-02T03:04:05.5+01:00").unwrap(),
            backup_end: GoTime::parse("2026-01-02T03:04:06Z").unwrap(),
            total_files_processed: 2,
            total_bytes_processed: 10,
            ..SnapshotSummary::default()
        });
        let json = String::from_utf8(s.to_json()).unwrap();
        assert!(
            json.ends_with(concat!(
                r#""program_version":"restash 1.2.3","summary":{"#,
                r#""backup_start":"2026-01-02T03:04:05.5+01:00","#,
                r#""backup_end":"2026-01-02T03:04:06Z","files_new":0,"files_changed":0,"#,
                r#""files_unmodified":0,"dirs_new":0,"dirs_changed":0,"dirs_unmodified":0,"#,
                r#""data_blobs":0,"tree_blobs":0,"data_added":0,"data_added_packed":0,"#,
                r#""total_files_processed":2,"total_bytes_processed":10}}"#
            )),
            "{json}"
        );
        assert_eq!(Snapshot::from_json(json.as_bytes()).unwrap(), s);
        // Go's omitempty: an empty program version is not written.
        s.program_version = Some(String::new());
        s.summary = None;
        assert_eq!(
            String::from_utf8(s.to_json()).unwrap(),
            format!(r#"{{"time":"0001-01-01T00:00:00Z","tree":"{TREE}","paths":[]}}"#)
        );
    }

    #[test]
    fn summary_fields_may_be_null_or_missing_and_a_bad_summary_reads_as_none() {
        let s = Snapshot::from_json(
            format!(r#"{{"tree":"{TREE}","summary":{{"files_new":null,"dirs_new":2}}}}"#)
                .as_bytes(),
        )
        .unwrap();
        let want = SnapshotSummary {
            dirs_new: 2,
            ..SnapshotSummary::default()
        };
        assert_eq!(s.summary, Some(want));
        for bad in [r#"{"files_new":-1}"#, r#"{"backup_end":"yesterday"}"#, "7"] {
            let json = format!(r#"{{"tree":"{TREE}","summary":{bad}}}"#);
            let s = Snapshot::from_json(json.as_bytes()).unwrap();
            assert_eq!(s.summary, None, "{bad}");
        }
    }
}
