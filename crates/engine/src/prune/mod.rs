//! `prune` as restic 0.14 does it: find the blobs the snapshots use, decide per pack
//! whether to keep, repack or delete it, then — in an order that leaves a valid repository
//! after a crash at any point — delete unindexed packs, copy the still needed blobs of the
//! repacked packs into new packs (indexed at once), write a complete new index, delete the
//! old index files and last delete the packs no index names any more.
//!
//! The caller holds an exclusive lock ([`prune_locked`] takes one).

mod beside;
mod blobs;
mod execute;
mod plan;

use restash_format::{BlobId, Compression, SnapshotId};

use crate::events::{Control, Phase};
use crate::units::{format_bytes, parse_size};
use crate::{EngineError, RepoLock, Repository, Result};

/// How much unused space may stay behind (restic's `--max-unused`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxUnused {
    /// Any amount: only packs with no used blob are deleted.
    Unlimited,
    /// A percentage of the total size after pruning (below 100).
    Percent(f64),
    /// An absolute number of bytes.
    Bytes(u64),
}

impl MaxUnused {
    /// Parses `unlimited`, `5%` or a size like `1G` (restic's k/m/g/t suffixes).
    pub fn parse(s: &str) -> Result<MaxUnused> {
        let t = s.trim();
        if t.is_empty() {
            return Err(EngineError::Usage(format!(
                "invalid value for --max-unused: {s:?}"
            )));
        }
        if t == "unlimited" {
            return Ok(MaxUnused::Unlimited);
        }
        if let Some(p) = t.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|e| {
                EngineError::Usage(format!(
                    "invalid percentage {s:?} passed for --max-unused: {e}"
                ))
            })?;
            if p < 0.0 {
                return Err(EngineError::Usage(
                    "percentage for --max-unused must be positive".into(),
                ));
            }
            if p >= 100.0 {
                return Err(EngineError::Usage(
                    "percentage for --max-unused must be below 100%".into(),
                ));
            }
            return Ok(MaxUnused::Percent(p));
        }
        parse_size(t).map(MaxUnused::Bytes).map_err(|e| {
            EngineError::Usage(format!(
                "invalid number of bytes {s:?} for --max-unused: {e}"
            ))
        })
    }

    /// The unused bytes tolerated after pruning, given the used bytes.
    pub fn bytes(&self, used: u64) -> u64 {
        match *self {
            MaxUnused::Unlimited => u64::MAX,
            MaxUnused::Percent(p) => (p / (100.0 - p) * used as f64) as u64,
            MaxUnused::Bytes(b) => b,
        }
    }
}

/// restic's prune flags.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Only plan and report.
    pub dry_run: bool,
    /// `--max-unused`.
    pub max_unused: MaxUnused,
    /// `--max-repack-size` in bytes (`u64::MAX` when not given).
    pub max_repack_bytes: u64,
    /// `--repack-cacheable-only`: never repack data packs.
    pub repack_cacheable_only: bool,
    /// `--repack-small`: also repack packs below 80% of the target size.
    pub repack_small: bool,
    /// `--repack-uncompressed` (repository v2).
    pub repack_uncompressed: bool,
    /// Target pack size for repacked packs (restic's `--pack-size`).
    pub pack_size: usize,
    /// Compression of repacked data blobs (v2).
    pub compression: Compression,
    /// Snapshots to leave out although they are still listed: `forget --prune` passes the
    /// ones it just removed (a backend may list deleted files for a while).
    pub ignore_snapshots: Vec<SnapshotId>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            max_unused: MaxUnused::Percent(5.0),
            max_repack_bytes: u64::MAX,
            repack_cacheable_only: false,
            repack_small: false,
            repack_uncompressed: false,
            pack_size: 16 << 20,
            compression: Compression::Auto,
            ignore_snapshots: Vec::new(),
        }
    }
}

/// Blob counts of [`PruneStats`].
#[derive(Debug, Default, Clone)]
pub struct BlobCounts {
    /// Referenced blobs (one copy each).
    pub used: u64,
    /// Further copies of referenced blobs.
    pub duplicate: u64,
    /// Blobs no snapshot references.
    pub unused: u64,
    /// In packs that are deleted whole.
    pub remove: u64,
    /// In packs that are repacked.
    pub repack: u64,
    /// Dropped while repacking.
    pub repackrm: u64,
}

/// Byte counts of [`PruneStats`] (stored sizes).
#[derive(Debug, Default, Clone)]
pub struct SizeCounts {
    /// Referenced blobs, plus pack headers.
    pub used: u64,
    /// Further copies of referenced blobs.
    pub duplicate: u64,
    /// Unreferenced blobs.
    pub unused: u64,
    /// Deleted with whole packs.
    pub remove: u64,
    /// Repacked packs.
    pub repack: u64,
    /// Dropped while repacking.
    pub repackrm: u64,
    /// Packs no index names.
    pub unref: u64,
}

/// Pack counts of [`PruneStats`].
#[derive(Debug, Default, Clone)]
pub struct PackCounts {
    /// Every blob used.
    pub used: u64,
    /// No blob used.
    pub unused: u64,
    /// Some blobs used.
    pub partly_used: u64,
    /// Not in any index.
    pub unref: u64,
    /// Kept as they are.
    pub keep: u64,
    /// Repacked.
    pub repack: u64,
    /// Deleted.
    pub remove: u64,
}

/// restic's prune statistics.
#[derive(Debug, Default, Clone)]
pub struct PruneStats {
    /// Blob counts.
    pub blobs: BlobCounts,
    /// Sizes.
    pub size: SizeCounts,
    /// Pack counts.
    pub packs: PackCounts,
    /// Packs written by repacking.
    pub packs_written: u64,
    /// Index files written.
    pub index_files_written: u64,
    /// Files deleted (index and packs).
    pub files_deleted: u64,
    /// Temporary files of interrupted writes removed (or, on a dry run, to remove).
    pub leftovers_removed: u64,
}

/// What prune says, in restic's verbosity levels: `Info` by default (restic's
/// `Verbosef`), `Detail` with `-v` (`Verboseff`), `Warn` always, on stderr. Each becomes
/// an event of the run's [`Control`] (see [`say`]).
#[derive(Debug, Clone)]
pub(crate) enum Msg {
    /// Normal output.
    Info(String),
    /// Verbose output.
    Detail(String),
    /// A warning.
    Warn(String),
    /// Progress: done of total, and what is counted.
    Progress(u64, u64, &'static str),
}

/// Sends `m` as the event it is.
pub(crate) fn say(ctl: &Control, m: Msg) {
    match m {
        Msg::Info(t) => ctl.say(1, &t),
        Msg::Detail(t) => ctl.say(2, &t),
        Msg::Warn(t) => ctl.warn(&t),
        Msg::Progress(done, total, unit) => ctl.progress(Phase::Prune, unit, done, total),
    }
}

/// Prunes like `restic prune`. With a lock wait (`--retry-lock`), beside running backups:
/// a shared lock while it plans and repacks, the exclusive one only to delete (see
/// `beside.rs`), waiting up to that long for each. Without one (and for a dry run), under
/// the exclusive lock throughout, as restic does. Exit code 11 when another process still
/// holds a lock after the wait.
pub fn prune_locked(
    repo: &mut Repository,
    opts: &PruneOptions,
    lock: &crate::LockPolicy,
    out: &Control,
) -> Result<PruneStats> {
    let policy = crate::LockPolicy {
        skip: false,
        ..lock.clone()
    };
    // Beside backups only when told to wait for locks (`--retry-lock`, as the prune
    // CronJob is): it waits for the backups running beside it to end before it deletes.
    // Without a wait, restic's way: refuse at once if anything holds a lock.
    if !opts.dry_run && policy.works_beside() {
        return beside::prune_beside(repo, opts, &policy, out).map(|(stats, _)| stats);
    }
    let held = RepoLock::take(repo, true, &policy, out)?;
    let r = prune(repo, opts, out);
    if let Some(lock) = held {
        lock.release();
    }
    r
}

/// Prunes like `restic prune`. The caller must hold an exclusive lock (as `forget --prune`
/// does). The repository's loaded index, if any, is dropped: prune builds its own.
pub fn prune(repo: &mut Repository, opts: &PruneOptions, out: &Control) -> Result<PruneStats> {
    let mut stats = PruneStats::default();
    let Some(p) = prepare(repo, opts, &mut stats, out)? else {
        return Ok(stats);
    };
    out.cancel.check()?;
    execute::execute(repo, &p.idx, &p.plan, opts, &mut stats, out)?;
    remove_leftovers(repo, false, &mut stats, out)?;
    say(out, Msg::Info("done".into()));
    Ok(stats)
}

/// What prune decided, and from what.
pub(crate) struct Prepared {
    idx: blobs::BlobIndex,
    plan: plan::Plan,
    /// The snapshots whose blobs were marked used.
    snapshots: Vec<SnapshotId>,
}

/// Loads the index and the snapshots, marks what is used and plans; a dry run reports
/// here and returns None.
fn prepare(
    repo: &mut Repository,
    opts: &PruneOptions,
    stats: &mut PruneStats,
    out: &Control,
) -> Result<Option<Prepared>> {
    if opts.repack_uncompressed && repo.version() < 2 {
        return Err(EngineError::Usage(
            "compression requires at least repository format version 2".into(),
        ));
    }
    if opts.repack_uncompressed && opts.compression == Compression::Off {
        return Err(EngineError::Usage(
            "disabled compression and `--repack-uncompressed` are mutually exclusive".into(),
        ));
    }
    // The saver that writes repacked blobs skips blobs the loaded index knows: all of them.
    repo.unload_index();
    say(out, Msg::Info("loading indexes...".into()));
    let mut idx = blobs::BlobIndex::load(repo)?;

    say(out, Msg::Info("loading all snapshots...".into()));
    let ids: Vec<SnapshotId> = repo
        .list_ids(restash_backend::FileType::Snapshot)?
        .into_iter()
        .map(SnapshotId)
        .filter(|id| !opts.ignore_snapshots.contains(id))
        .collect();
    // One round trip each: as many at once as the store takes, not one per core.
    let roots: Vec<BlobId> = crate::ahead::map_io(&ids, |id| {
        repo.load_snapshot(id)
            .map(|sn| sn.tree)
            .map_err(|e| EngineError::Corrupt(format!("failed loading snapshot: {e}")))
    })
    .into_iter()
    .collect::<Result<_>>()?;
    say(
        out,
        Msg::Info(format!(
            "finding data that is still in use for {} snapshots",
            roots.len()
        )),
    );
    let total = roots.len() as u64;
    let missing = idx.mark_used(repo, &roots, &out.cancel, |n| {
        say(out, Msg::Progress(n as u64, total, "snapshots"));
    })?;
    if !missing.is_empty() {
        let list: Vec<String> = missing
            .iter()
            .map(|(t, id)| format!("<{}/{}>", t.as_str(), id.short()))
            .collect();
        say(
            out,
            Msg::Warn(format!(
                "{{{}}} not found in the index\n\n\
             Integrity check failed: Data seems to be missing.\n\
             Will not start prune to prevent (additional) data loss!\n\
             Please report this error (along with the output of the 'prune' run) at\n\
             https://github.com/restic/restic/issues/new/choose",
                list.join(" ")
            )),
        );
        return Err(EngineError::Corrupt("index is not complete".into()));
    }

    say(out, Msg::Info("searching used packs...".into()));
    say(
        out,
        Msg::Info("collecting packs for deletion and repacking".into()),
    );
    let plan = plan::plan(repo, &mut idx, opts, stats, out)?;
    print_stats(stats, out);
    if opts.dry_run {
        if !plan.remove_first.is_empty() {
            say(
                out,
                Msg::Detail(format!(
                    "Would have removed the following unreferenced packs:\n{}\n",
                    id_list(plan.remove_first.iter().map(|p| p.short()))
                )),
            );
        }
        let packs_with = |a: plan::Action| {
            id_list(
                plan.actions
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| **x == a)
                    .map(|(n, _)| idx.pack_id(n as u32).short()),
            )
        };
        say(
            out,
            Msg::Detail(format!(
                "Would have repacked and removed the following packs:\n{}\n",
                packs_with(plan::Action::Repack)
            )),
        );
        say(
            out,
            Msg::Detail(format!(
                "Would have removed the following no longer used packs:\n{}\n",
                packs_with(plan::Action::Remove)
            )),
        );
        remove_leftovers(repo, true, stats, out)?;
        return Ok(None);
    }
    Ok(Some(Prepared {
        idx,
        plan,
        snapshots: ids,
    }))
}

/// Temporary files of killed writes: removed here because prune holds the exclusive lock,
/// and only those older than a stale lock, which no live writer can still be filling.
fn remove_leftovers(
    repo: &Repository,
    dry_run: bool,
    stats: &mut PruneStats,
    out: &Control,
) -> Result<()> {
    let now = std::time::SystemTime::now();
    let removed = crate::leftovers::remove_stale(repo, now, dry_run)?;
    if removed.is_empty() {
        return Ok(());
    }
    stats.leftovers_removed = removed.len() as u64;
    let verb = if dry_run { "would remove" } else { "removed" };
    say(
        out,
        Msg::Info(format!(
            "{verb} {} temporary files left by interrupted writes",
            removed.len()
        )),
    );
    for l in &removed {
        say(
            out,
            Msg::Detail(format!("  {}", crate::leftovers::describe(l, now))),
        );
    }
    Ok(())
}

fn id_list(ids: impl Iterator<Item = String>) -> String {
    let mut v: Vec<String> = ids.collect();
    v.sort();
    format!("{{{}}}", v.join(" "))
}

fn format_percent(num: u64, den: u64) -> String {
    if den == 0 {
        return String::new();
    }
    let p = (100.0 * num as f64 / den as f64).min(100.0);
    format!("{p:3.2}%")
}

/// restic's `printPruneStats`, line for line.
fn print_stats(s: &PruneStats, out: &Control) {
    let (b, z, p) = (&s.blobs, &s.size, &s.packs);
    let d = |t: String| say(out, Msg::Detail(t));
    d(format!(
        "\nused:         {:10} blobs / {}",
        b.used,
        format_bytes(z.used)
    ));
    if b.duplicate > 0 {
        d(format!(
            "duplicates:   {:10} blobs / {}",
            b.duplicate,
            format_bytes(z.duplicate)
        ));
    }
    d(format!(
        "unused:       {:10} blobs / {}",
        b.unused,
        format_bytes(z.unused)
    ));
    if z.unref > 0 {
        d(format!(
            "unreferenced:                    {}",
            format_bytes(z.unref)
        ));
    }
    let total_blobs = b.used + b.unused + b.duplicate;
    let total_size = z.used + z.duplicate + z.unused + z.unref;
    let unused_size = z.duplicate + z.unused;
    d(format!(
        "total:        {:10} blobs / {}",
        total_blobs,
        format_bytes(total_size)
    ));
    d(format!(
        "unused size: {} of total size",
        format_percent(unused_size, total_size)
    ));
    let i = |t: String| say(out, Msg::Info(t));
    i(format!(
        "\nto repack:    {:10} blobs / {}",
        b.repack,
        format_bytes(z.repack)
    ));
    i(format!(
        "this removes: {:10} blobs / {}",
        b.repackrm,
        format_bytes(z.repackrm)
    ));
    i(format!(
        "to delete:    {:10} blobs / {}",
        b.remove,
        format_bytes(z.remove + z.unref)
    ));
    let total_prune = z.remove + z.repackrm + z.unref;
    i(format!(
        "total prune:  {:10} blobs / {}",
        b.remove + b.repackrm,
        format_bytes(total_prune)
    ));
    i(format!(
        "remaining:    {:10} blobs / {}",
        total_blobs.saturating_sub(b.remove + b.repackrm),
        format_bytes(total_size.saturating_sub(total_prune))
    ));
    let unused_after = unused_size.saturating_sub(z.remove + z.repackrm);
    i(format!(
        "unused size after prune: {} ({} of remaining size)",
        format_bytes(unused_after),
        format_percent(unused_after, total_size.saturating_sub(total_prune))
    ));
    i(String::new());
    let d = |t: String| say(out, Msg::Detail(t));
    d(format!("totally used packs: {:10}", p.used));
    d(format!("partly used packs:  {:10}", p.partly_used));
    d(format!("unused packs:       {:10}\n", p.unused));
    d(format!("to keep:      {:10} packs", p.keep));
    d(format!("to repack:    {:10} packs", p.repack));
    d(format!("to delete:    {:10} packs", p.remove));
    if p.unref > 0 {
        d(format!("to delete:    {:10} unreferenced packs\n", p.unref));
    }
}

/// Test hook for the crash tests: in debug builds, `RESTASH_PRUNE_CRASH_AFTER=<step>`
/// aborts the process (like `kill -9`: no cleanup, the lock stays) right after `step`.
fn crash_point(step: &str) {
    if cfg!(debug_assertions) && std::env::var("RESTASH_PRUNE_CRASH_AFTER").is_ok_and(|s| s == step)
    {
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_unused_parses_like_restic() {
        assert_eq!(MaxUnused::parse("5%").unwrap(), MaxUnused::Percent(5.0));
        assert_eq!(
            MaxUnused::parse(" unlimited ").unwrap(),
            MaxUnused::Unlimited
        );
        assert_eq!(MaxUnused::parse("1G").unwrap(), MaxUnused::Bytes(1 << 30));
        assert_eq!(MaxUnused::parse("10k").unwrap(), MaxUnused::Bytes(10 << 10));
        assert_eq!(MaxUnused::parse("0").unwrap(), MaxUnused::Bytes(0));
        assert_eq!(MaxUnused::parse("512B").unwrap(), MaxUnused::Bytes(512));
        for bad in ["", "100%", "-1%", "x%", "12q", "99999999999T"] {
            assert!(MaxUnused::parse(bad).is_err(), "{bad:?} accepted");
        }
        // p / (100 - p) of the used size: 5% of the total after pruning.
        assert_eq!(MaxUnused::Percent(5.0).bytes(95_000), 5_000);
        assert_eq!(MaxUnused::Unlimited.bytes(1), u64::MAX);
    }

    #[test]
    fn percentages_are_formatted_like_restic() {
        assert_eq!(format_percent(1, 3), "33.33%");
        assert_eq!(format_percent(0, 0), "");
        assert_eq!(format_percent(5, 4), "100.00%");
    }
}
