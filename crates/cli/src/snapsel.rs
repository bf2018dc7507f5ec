//! How commands choose snapshots. Every command loads them through here, so a snapshot
//! file that cannot be read is always named on stderr, and choosing one snapshot goes
//! through the engine's single rule ([`Snapshots::find`]), which refuses to guess while
//! an unreadable snapshot could be the one asked for.

use restash_engine::{Repository, SnapshotEntry, SnapshotFilter, Snapshots};

use crate::cmd_snapshots::FilterArgs;

/// Every snapshot, with each unreadable one named on stderr (for listings and policies,
/// which work on the readable ones).
pub fn load_all(repo: &Repository) -> anyhow::Result<Snapshots> {
    let all = repo.load_snapshots()?;
    warn_unreadable(&all);
    Ok(all)
}

/// Names each unreadable snapshot on stderr, as restic's "could not load snapshot".
pub fn warn_unreadable(all: &Snapshots) {
    for bad in all.unreadable() {
        eprintln!("could not load snapshot {}: {}", bad.id.short(), bad.error);
    }
}

/// One snapshot named by `latest` (through `filter`) or an id prefix.
pub fn resolve(
    repo: &Repository,
    spec: &str,
    filter: &SnapshotFilter,
) -> anyhow::Result<SnapshotEntry> {
    let all = repo.load_snapshots()?;
    match all.find(spec, filter) {
        Ok(found) => {
            // Unreadable snapshots did not matter for this choice, but the user should
            // still learn that the repository holds some.
            warn_unreadable(&all);
            Ok(found.clone())
        }
        // The error names the unreadable snapshot that made the choice impossible.
        Err(e) => Err(e.into()),
    }
}

/// restic's `FindFilteredSnapshots`: explicit ids (each resolved; bad ones warned about
/// and skipped, as restic does) or every snapshot passing the `--host/--tag/--path`
/// filter. Filtered lists come in listing order, explicit ids in argument order
/// (duplicates dropped).
pub fn filtered_snapshots(
    repo: &Repository,
    filter: &FilterArgs,
    ids: &[String],
) -> anyhow::Result<Vec<SnapshotEntry>> {
    let all = load_all(repo)?;
    let f = filter.to_filter();
    if ids.is_empty() {
        // restic visits snapshots in the backend's listing order (directory order for a
        // local repository); `find` prints them in that order.
        let order: std::collections::HashMap<restash_format::Id, usize> = repo
            .backend()
            .list(restash_backend::FileType::Snapshot)?
            .into_iter()
            .enumerate()
            .map(|(i, f)| (f.id, i))
            .collect();
        let mut v: Vec<SnapshotEntry> = all
            .into_readable()
            .into_iter()
            .filter(|(_, s)| f.matches(s))
            .collect();
        v.sort_by_cached_key(|(id, _)| order.get(&id.0).copied());
        return Ok(v);
    }
    let has_filter =
        !(filter.hosts.is_empty() && filter.tags.is_empty() && filter.paths.is_empty());
    let filter_text = format!(
        "(Paths:{:?} Tags:{:?} Hosts:{:?})",
        filter.paths, filter.tags, filter.hosts
    );
    Ok(by_ids(
        &all,
        ids,
        |s| f.matches(s),
        &filter_text,
        has_filter,
    ))
}

/// The explicit-id half of restic's `FindFilteredSnapshots`, for every command that takes
/// snapshot ids: `latest` (the newest passing `matches`) or an id prefix, each that does not
/// resolve warned about and skipped as restic does, duplicates dropped, argument order
/// kept. `filter_text` is how the command prints its filter.
pub fn by_ids(
    all: &Snapshots,
    ids: &[String],
    matches: impl Fn(&restash_format::Snapshot) -> bool,
    filter_text: &str,
    has_filter: bool,
) -> Vec<SnapshotEntry> {
    let mut out: Vec<&SnapshotEntry> = Vec::new();
    let mut used_filter = false;
    for spec in ids {
        let found = if spec == "latest" {
            used_filter = true;
            match all.latest_where(&matches) {
                Ok(Some(s)) => s,
                Ok(None) => {
                    eprintln!("Ignoring {spec:?}, no snapshot matched given filter {filter_text}");
                    continue;
                }
                Err(e) => {
                    eprintln!("Ignoring {spec:?}: {e}");
                    continue;
                }
            }
        } else {
            match all.find_prefix(spec) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("Ignoring {spec:?}: {e}");
                    continue;
                }
            }
        };
        if !out.iter().any(|(id, _)| *id == found.0) {
            out.push(found);
        }
    }
    if !used_filter && has_filter {
        eprintln!("Ignoring filters as there are explicit snapshot ids given");
    }
    out.into_iter().cloned().collect()
}
