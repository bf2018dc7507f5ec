//! Snapshot selection: restic's `--host/--tag/--path` filter, and the one rule that turns
//! `latest` or an id prefix into a snapshot while some snapshot files cannot be read.

use restash_format::{Snapshot, SnapshotId};

use crate::{EngineError, Result};

/// A snapshot with its id.
pub type SnapshotEntry = (SnapshotId, Snapshot);

/// restic's `--host`, `--tag` and `--path` snapshot filters.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    /// Any of these hosts (empty: all).
    pub hosts: Vec<String>,
    /// Each entry is a comma-separated list that must all be present; any entry may match.
    pub tags: Vec<String>,
    /// The snapshot's paths must contain all of these.
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// Whether `s` passes the filter.
    pub fn matches(&self, s: &Snapshot) -> bool {
        if !self.hosts.is_empty() && !self.hosts.contains(&s.hostname) {
            return false;
        }
        if !self.tags.is_empty()
            && !self.tags.iter().any(|group| {
                group
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .all(|t| s.has_tag(t))
            })
        {
            return false;
        }
        self.paths.iter().all(|p| s.paths.iter().any(|sp| sp == p))
    }
}

/// A snapshot file that could not be read or decoded, and why.
#[derive(Debug)]
pub struct UnreadableSnapshot {
    /// Its file name.
    pub id: SnapshotId,
    /// Why it could not be used.
    pub error: EngineError,
}

impl std::fmt::Display for UnreadableSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "snapshot {} cannot be read: {}",
            self.id.short(),
            self.error
        )
    }
}

/// Every snapshot file of a repository: the readable ones, oldest first, and the ones that
/// could not be read. Nothing that picks one snapshot out of several may look at the
/// readable ones alone: an unreadable file may be the one that was asked for.
#[derive(Debug, Default)]
pub struct Snapshots {
    readable: Vec<SnapshotEntry>,
    unreadable: Vec<UnreadableSnapshot>,
}

impl Snapshots {
    /// Builds the set; `readable` is sorted by time (then id), `unreadable` by id.
    pub fn new(mut readable: Vec<SnapshotEntry>, mut unreadable: Vec<UnreadableSnapshot>) -> Self {
        readable.sort_by(|a, b| a.1.time.0.cmp(&b.1.time.0).then(a.0.cmp(&b.0)));
        unreadable.sort_by_key(|u| u.id);
        Snapshots {
            readable,
            unreadable,
        }
    }

    /// The snapshots that could be read, oldest first. For listings, which name the
    /// unreadable ones separately; never for choosing one snapshot.
    pub fn readable(&self) -> &[SnapshotEntry] {
        &self.readable
    }

    /// The snapshot files that could not be read.
    pub fn unreadable(&self) -> &[UnreadableSnapshot] {
        &self.unreadable
    }

    /// The readable snapshots, owned (see [`Self::readable`]).
    pub fn into_readable(self) -> Vec<SnapshotEntry> {
        self.readable
    }

    /// The newest snapshot for which `pred` holds. An unreadable snapshot might be newer
    /// and match, so while there is one the answer is unknown and this is an error.
    pub fn latest_where(&self, pred: impl Fn(&Snapshot) -> bool) -> Result<Option<&SnapshotEntry>> {
        if let Some(bad) = self.unreadable.first() {
            return Err(EngineError::UnreadableSnapshot(format!(
                "cannot tell which snapshot is the latest: {bad}{}; name a snapshot by its \
                 id, or remove the damaged one (forget or repair snapshots)",
                self.more_unreadable()
            )));
        }
        Ok(self.readable.iter().rev().find(|(_, s)| pred(s)))
    }

    /// The newest snapshot that passes `filter` (see [`Self::latest_where`]).
    pub fn latest(&self, filter: &SnapshotFilter) -> Result<Option<&SnapshotEntry>> {
        self.latest_where(|s| filter.matches(s))
    }

    /// Resolves `latest` (through `filter`) or a unique id prefix, like restic's
    /// `FindSnapshot`/`FindLatestSnapshot`.
    pub fn find(&self, spec: &str, filter: &SnapshotFilter) -> Result<&SnapshotEntry> {
        if spec == "latest" {
            return self
                .latest(filter)?
                .ok_or_else(|| EngineError::NotFound("no snapshot found".into()));
        }
        self.find_prefix(spec)
    }

    /// Resolves a unique id prefix (`latest` is not special). The prefix is matched against
    /// every snapshot file, readable or not, so a damaged one is named instead of skipped.
    pub fn find_prefix(&self, spec: &str) -> Result<&SnapshotEntry> {
        let lower = spec.to_ascii_lowercase();
        let hit = |id: &SnapshotId| !spec.is_empty() && id.to_string().starts_with(&lower);
        let good: Vec<&SnapshotEntry> = self.readable.iter().filter(|(id, _)| hit(id)).collect();
        let bad: Vec<&UnreadableSnapshot> = self.unreadable.iter().filter(|u| hit(&u.id)).collect();
        match (good.as_slice(), bad.as_slice()) {
            ([one], []) => Ok(one),
            ([], [one]) => Err(EngineError::UnreadableSnapshot(one.to_string())),
            ([], []) => Err(EngineError::NotFound(format!(
                "no matching ID found for prefix {spec:?}"
            ))),
            _ => Err(EngineError::NotFound(format!(
                "multiple IDs with prefix {spec:?} found"
            ))),
        }
    }

    fn more_unreadable(&self) -> String {
        match self.unreadable.len() {
            0 | 1 => String::new(),
            n => format!(" (and {} more unreadable snapshots)", n - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use restash_format::{GoTime, Id};

    fn snap(n: u8, secs: i64) -> SnapshotEntry {
        let time = GoTime::from_unix(secs, 0, 0).expect("time").to_go_string();
        let json = format!(
            r#"{{"time":"{time}","tree":"{}","paths":["/x"],"hostname":"h"}}"#,
            Id::hash(&[n]).to_hex()
        );
        (
            SnapshotId(Id::hash(&[n, n])),
            Snapshot::from_json(json.as_bytes()).expect("snapshot"),
        )
    }

    fn bad(id: SnapshotId) -> UnreadableSnapshot {
        UnreadableSnapshot {
            id,
            error: EngineError::Corrupt("invalid data returned".into()),
        }
    }

    #[test]
    fn latest_is_unknown_while_a_snapshot_is_unreadable() {
        let set = Snapshots::new(vec![snap(2, 200), snap(1, 100)], vec![]);
        let (id, _) = set
            .find("latest", &SnapshotFilter::default())
            .expect("latest");
        assert_eq!(*id, snap(2, 0).0);

        let broken = snap(3, 0).0;
        let set = Snapshots::new(vec![snap(1, 100)], vec![bad(broken)]);
        let err = set.find("latest", &SnapshotFilter::default()).unwrap_err();
        assert!(matches!(err, EngineError::UnreadableSnapshot(_)));
        assert!(err.to_string().contains(&broken.short()), "{err}");
        assert!(set.latest_where(|_| false).is_err());
    }

    #[test]
    fn a_prefix_naming_an_unreadable_snapshot_is_an_error() {
        let (good, _) = snap(1, 100);
        let mut twin = good;
        twin.0 .0[31] ^= 1; // same first 62 hex digits as `good`
        let other = snap(3, 0).0;
        let set = Snapshots::new(vec![snap(1, 100)], vec![bad(twin), bad(other)]);
        let filter = SnapshotFilter::default();
        assert_eq!(
            set.find(&good.to_string(), &filter).expect("full id").0,
            good
        );
        let err = set.find_prefix(&other.short()).unwrap_err();
        assert!(matches!(err, EngineError::UnreadableSnapshot(_)), "{err}");
        // A prefix shared by a readable and an unreadable snapshot is ambiguous: never
        // quietly the readable one.
        let err = set.find_prefix(&good.short()).unwrap_err();
        assert!(err.to_string().contains("multiple"), "{err}");
        assert!(matches!(set.find_prefix(""), Err(EngineError::NotFound(_))));
    }
}
