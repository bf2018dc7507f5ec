use restash_format::{Snapshot, SnapshotId};

use crate::{EngineError, Result};

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

    /// The newest snapshot that passes (input sorted by time, oldest first).
    pub fn latest<'a>(
        &self,
        snaps: &'a [(SnapshotId, Snapshot)],
    ) -> Option<&'a (SnapshotId, Snapshot)> {
        snaps.iter().rev().find(|(_, s)| self.matches(s))
    }
}

/// Resolves `latest` or a unique id prefix to a snapshot, like restic's `FindSnapshot`.
pub fn find_snapshot<'a>(
    snaps: &'a [(SnapshotId, Snapshot)],
    spec: &str,
    filter: &SnapshotFilter,
) -> Result<&'a (SnapshotId, Snapshot)> {
    if spec == "latest" {
        return filter
            .latest(snaps)
            .ok_or_else(|| EngineError::NotFound("no snapshot found".into()));
    }
    let spec_lower = spec.to_ascii_lowercase();
    let mut found = snaps
        .iter()
        .filter(|(id, _)| id.to_string().starts_with(&spec_lower));
    match (found.next(), found.next()) {
        (Some(s), None) if !spec.is_empty() => Ok(s),
        (Some(_), Some(_)) => Err(EngineError::NotFound(format!(
            "multiple snapshots match the prefix {spec:?}"
        ))),
        _ => Err(EngineError::NotFound(format!(
            "no matching ID found for prefix {spec:?}"
        ))),
    }
}
