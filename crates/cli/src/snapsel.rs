//! How commands choose snapshots. The choice is the engine's ([`Snapshots::select`] for
//! several, [`Snapshots::find`] for one, which refuses to guess while an unreadable snapshot
//! could be the one asked for); here its warnings are printed, so a snapshot file that
//! cannot be read is always named on stderr.

use std::sync::Arc;

use restash_engine::events::{Control, Event};
use restash_engine::{Repository, SnapshotEntry, SnapshotFilter, Snapshots};

use crate::args::FilterArgs;

/// Every snapshot, with each unreadable one named on stderr (for listings and policies,
/// which work on the readable ones).
pub fn load_all(repo: &Repository) -> anyhow::Result<Snapshots> {
    let all = Snapshots::load(repo)?;
    warn(&all.load_warnings());
    Ok(all)
}

fn warn(lines: &[String]) {
    for w in lines {
        eprintln!("{w}");
    }
}

/// A [`Control`] that prints an operation's warnings on stderr and drops its other events.
pub fn warnings_on_stderr() -> Control {
    Control::new(Arc::new(|e: &Event<'_>| {
        if let Event::Warning(w) = e {
            eprintln!("{w}");
        }
    }))
}

/// One snapshot named by `latest` (through `filter`) or an id prefix.
pub fn resolve(
    repo: &Repository,
    spec: &str,
    filter: &SnapshotFilter,
) -> anyhow::Result<SnapshotEntry> {
    let all = Snapshots::load(repo)?;
    // On failure the error names the unreadable snapshot that made the choice impossible;
    // on success the user still learns that the repository holds some.
    let found = all.find(spec, filter)?.clone();
    warn(&all.load_warnings());
    Ok(found)
}

/// restic's `FindFilteredSnapshots`: explicit ids (bad ones warned about and skipped) or
/// every snapshot passing the `--host/--tag/--path` filter, in listing order.
pub fn filtered_snapshots(
    repo: &Repository,
    filter: &FilterArgs,
    ids: &[String],
) -> anyhow::Result<Vec<SnapshotEntry>> {
    let all = load_all(repo)?;
    let sel = all.select(&filter.to_filter(), ids);
    warn(&sel.warnings());
    Ok(sel.snapshots)
}
