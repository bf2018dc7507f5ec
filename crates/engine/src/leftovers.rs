//! Files that writes of killed processes left behind (`<id>-tmp-<random>` in a local
//! repository). They are no part of the repository, so nothing else looks at them: `check`
//! names them and `prune`, under its exclusive lock, removes the ones too old to belong
//! to a write still running.

use std::time::{Duration, SystemTime};

use restash_backend::Leftover;

use crate::{EngineError, Repository, Result, STALE_AFTER};

/// Every leftover in the repository, sorted by path.
pub fn list(repo: &Repository) -> Result<Vec<Leftover>> {
    repo.backend()
        .list_leftovers()
        .map_err(EngineError::backend("list temporary files"))
}

/// How long ago `l` was last written (zero for a time in the future).
pub fn age(l: &Leftover, now: SystemTime) -> Duration {
    now.duration_since(l.modified).unwrap_or_default()
}

/// Whether `l` is older than a stale lock: a process still writing it would have refreshed
/// its lock, and an exclusive lock is only taken once no fresh lock is left.
pub fn is_stale(l: &Leftover, now: SystemTime) -> bool {
    age(l, now) > STALE_AFTER
}

/// One line for a leftover: its path, size and age.
pub fn describe(l: &Leftover, now: SystemTime) -> String {
    let mins = age(l, now).as_secs() / 60;
    let age = if mins >= 120 {
        format!("{} h", mins / 60)
    } else {
        format!("{mins} min")
    };
    format!(
        "{} ({}, written {age} ago)",
        l.path,
        crate::units::format_bytes(l.size)
    )
}

/// Removes the stale leftovers (all of them with `dry_run` false) and returns them.
pub fn remove_stale(repo: &Repository, now: SystemTime, dry_run: bool) -> Result<Vec<Leftover>> {
    let stale: Vec<Leftover> = list(repo)?
        .into_iter()
        .filter(|l| is_stale(l, now))
        .collect();
    if !dry_run {
        for l in &stale {
            repo.backend()
                .remove_leftover(l)
                .map_err(EngineError::backend(format!("remove {}", l.path)))?;
        }
    }
    Ok(stale)
}
