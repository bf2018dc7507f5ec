//! restash's parent hints (`restash/hints/<group>/<name>`): not part of restic's format, and
//! ignored by restic. A hint names a snapshot and lists where every blob that snapshot
//! reaches is stored, so that the next backup of the same host and paths finds its parent
//! and its deduplication set without reading every snapshot and the whole index of a
//! repository that a fleet of volumes shares.
//!
//! A hint is only ever a shortcut: the snapshot it names is loaded and checked before it is
//! used, and a repository without hints is complete.

use restash_crypto::Key;
use serde::{Deserialize, Serialize};

use crate::gojson::null_as_default;
use crate::{FormatError, GoTime, Id, IndexFile, IndexPack, Snapshot, SnapshotId};

/// Keeps the hint groups apart from any other use of the master key.
const CONTEXT: &str = "restash parent hint v1";

/// The group of a host and its paths: the first half of every hint's name, a keyed hash
/// so that a listing of hints reveals no host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HintGroup([u8; 16]);

impl HintGroup {
    /// The group of backups of `paths` from `host`, as restic chooses a parent: the same
    /// host and the same set of paths, in any order.
    pub fn of(key: &Key, host: &str, paths: &[String]) -> HintGroup {
        let mut sorted: Vec<&str> = paths.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        let mut message = Vec::with_capacity(64);
        message.extend_from_slice(host.as_bytes());
        for p in sorted {
            message.push(0);
            message.extend_from_slice(p.as_bytes());
        }
        let hash = key.keyed_hash(CONTEXT, &message);
        let mut group = [0; 16];
        group.copy_from_slice(&hash[..16]);
        HintGroup(group)
    }

    /// The group a hint's name begins with.
    pub fn of_name(name: &Id) -> HintGroup {
        let mut group = [0; 16];
        group.copy_from_slice(&name.0[..16]);
        HintGroup(group)
    }

    /// The group in hex, as it begins every hint's name.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The name of a hint of this group whose stored bytes are `sealed`: the group, then
    /// the first half of their hash, so that a garbled hint is seen before it is opened.
    pub fn name_for(&self, sealed: &[u8]) -> Id {
        let hash = Id::hash(sealed);
        let mut name = [0; 32];
        name[..16].copy_from_slice(&self.0);
        name[16..].copy_from_slice(&hash.0[..16]);
        Id(name)
    }

    /// Whether `name` is a hint of this group whose bytes are `sealed`.
    pub fn names(&self, name: &Id, sealed: &[u8]) -> bool {
        self.name_for(sealed) == *name
    }
}

/// The contents of a hint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentHint {
    /// The snapshot this hint stands for.
    pub snapshot: SnapshotId,
    /// Its time: of two hints of a group, the later one is the parent.
    pub time: GoTime,
    /// Its host, checked against the snapshot before the hint is used.
    pub hostname: String,
    /// Its paths, likewise.
    #[serde(default, deserialize_with = "null_as_default")]
    pub paths: Vec<String>,
    /// Where every blob the snapshot reaches is stored, in the index's form.
    #[serde(default, deserialize_with = "null_as_default")]
    pub packs: Vec<IndexPack>,
    /// The group's snapshots restash knew of when it wrote the hint, this one included,
    /// oldest first: what `backup --forget` applies its policy to without reading every
    /// volume's snapshots. None where they were not known (a backup given `--parent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Vec<GroupSnapshot>>,
}

/// A snapshot of a hint's group, with what a keep policy looks at (host and paths are the
/// hint's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSnapshot {
    /// The snapshot's id.
    pub id: SnapshotId,
    /// Its time.
    pub time: GoTime,
    /// Its tags.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<String>,
}

impl GroupSnapshot {
    /// The entry for snapshot `id`.
    pub fn of(id: SnapshotId, snap: &Snapshot) -> GroupSnapshot {
        GroupSnapshot {
            id,
            time: snap.time,
            tags: snap.tags.clone(),
        }
    }
}

impl ParentHint {
    /// Decodes a hint's JSON.
    pub fn from_json(data: &[u8]) -> Result<ParentHint, FormatError> {
        serde_json::from_slice(data).map_err(FormatError::json("parent hint"))
    }

    /// Compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("hint serializes")
    }

    /// The blobs' locations as an index file.
    pub fn index(&self) -> IndexFile {
        IndexFile {
            supersedes: Vec::new(),
            packs: self.packs.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlobId, BlobType, IndexBlob, PackId};

    #[test]
    fn groups_depend_on_key_host_and_the_set_of_paths() {
        let key = Key::random();
        let paths = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let g = HintGroup::of(&key, "claim-ada", &paths(&["/home", "/data"]));
        assert_eq!(
            g,
            HintGroup::of(&key, "claim-ada", &paths(&["/data", "/home"]))
        );
        assert_ne!(
            g,
            HintGroup::of(&key, "claim-bob", &paths(&["/data", "/home"]))
        );
        assert_ne!(g, HintGroup::of(&key, "claim-ada", &paths(&["/data"])));
        // The separator keeps host and paths apart.
        assert_ne!(
            HintGroup::of(&key, "a", &paths(&["b/c"])),
            HintGroup::of(&key, "a\0b", &paths(&["c"]))
        );
        assert_ne!(
            g,
            HintGroup::of(&Key::random(), "claim-ada", &paths(&["/data", "/home"]))
        );
        // The name is a keyed hash, not an encoding: the host's bytes do not show (a
        // three-letter search would match random hex about one time in 150).
        assert!(!g.to_hex().contains(&hex::encode("claim-ada")));
    }

    #[test]
    fn names_begin_with_the_group_and_check_the_bytes() {
        let g = HintGroup::of(&Key::random(), "h", &["/x".to_string()]);
        let name = g.name_for(b"sealed");
        assert!(name.to_hex().starts_with(&g.to_hex()));
        assert!(g.names(&name, b"sealed"));
        assert_eq!(HintGroup::of_name(&name), g);
        assert!(!g.names(&name, b"sealeD"));
    }

    #[test]
    fn hints_round_trip() {
        let hint = ParentHint {
            snapshot: SnapshotId(Id([7; 32])),
            time: GoTime::parse("2026-12-07T02:00:00.5+01:00").unwrap(),
            hostname: "claim-ada".into(),
            paths: vec!["/home/jovyan".into()],
            packs: vec![IndexPack {
                id: PackId(Id([1; 32])),
                blobs: vec![IndexBlob {
                    id: BlobId(Id([2; 32])),
                    blob_type: BlobType::Tree,
                    offset: 0,
                    length: 99,
                    uncompressed_length: Some(200),
                }],
            }],
            group: Some(vec![GroupSnapshot {
                id: SnapshotId(Id([7; 32])),
                time: GoTime::parse("2026-12-07T02:00:00.5+01:00").unwrap(),
                tags: vec!["pvc=claim-ada".into()],
            }]),
        };
        let back = ParentHint::from_json(&hint.to_json()).unwrap();
        assert_eq!(back, hint);
        // A hint written before groups were kept reads as one whose group is not known.
        let mut older = hint.clone();
        older.group = None;
        let json = String::from_utf8(older.to_json()).unwrap();
        assert!(!json.contains("group"));
        assert_eq!(ParentHint::from_json(json.as_bytes()).unwrap().group, None);
        assert_eq!(back.index().blob_count(), 1);
        assert!(ParentHint::from_json(b"{\"snapshot\":1}").is_err());
    }
}
