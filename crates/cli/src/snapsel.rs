//! restic's `FindFilteredSnapshots`: explicit ids (each resolved, bad ones warned about and
//! skipped) or every snapshot passing the `--host/--tag/--path` filter.

use restash_engine::{find_snapshot, Repository, SnapshotEntry};

use crate::cmd_snapshots::FilterArgs;

/// The snapshots a command works on, in listing order for filtered lists, in argument order
/// (duplicates dropped) for explicit ids.
pub fn filtered_snapshots(
    repo: &Repository,
    filter: &FilterArgs,
    ids: &[String],
) -> anyhow::Result<Vec<SnapshotEntry>> {
    let (all, errors) = repo.load_snapshots()?;
    let f = filter.to_filter();
    if ids.is_empty() {
        for e in &errors {
            eprintln!("could not load snapshot: {e}");
        }
        // restic visits snapshots in the backend's listing order (directory order for a
        // local repository); `find` prints them in that order.
        let order: Vec<String> = repo
            .backend()
            .list(restash_backend::FileType::Snapshot)
            .map(|l| l.into_iter().map(|i| i.name).collect())
            .unwrap_or_default();
        let mut v: Vec<SnapshotEntry> = all.into_iter().filter(|(_, s)| f.matches(s)).collect();
        v.sort_by_key(|(id, _)| order.iter().position(|n| *n == id.to_string()));
        return Ok(v);
    }
    let mut out: Vec<SnapshotEntry> = Vec::new();
    let mut used_filter = false;
    for spec in ids {
        let found = if spec == "latest" {
            used_filter = true;
            match f.latest(&all) {
                Some(s) => s,
                None => {
                    eprintln!(
                        "Ignoring {spec:?}, no snapshot matched given filter (Paths:{:?} Tags:{:?} Hosts:{:?})",
                        filter.paths, filter.tags, filter.hosts
                    );
                    continue;
                }
            }
        } else {
            match find_snapshot(&all, spec, &Default::default()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("Ignoring {spec:?}: {e}");
                    continue;
                }
            }
        };
        if !out.iter().any(|(id, _)| *id == found.0) {
            out.push(found.clone());
        }
    }
    let has_filter =
        !(filter.hosts.is_empty() && filter.tags.is_empty() && filter.paths.is_empty());
    if !used_filter && has_filter {
        eprintln!("Ignoring filters as there are explicit snapshot ids given");
    }
    Ok(out)
}
