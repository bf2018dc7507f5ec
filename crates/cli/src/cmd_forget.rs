//! `restash forget`: remove snapshots by restic 0.14's keep policy or by id.

use std::collections::BTreeSet;
use std::time::{Duration as StdDuration, Instant};

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use restash_backend::{FileType, Handle};
use restash_engine::forget::{
    apply_policy, group_snapshots, matches_filter, Duration, ExpirePolicy, GroupBy, GroupKey,
    KeepReason, TagList,
};
use restash_engine::{EngineError, RepoLock, Repository, SnapshotEntry, Snapshots};

use crate::snapsel::load_all;
use restash_format::SnapshotId;

use crate::display::{print_snapshots, snapshot_json};
use crate::global::GlobalOpts;

fn duration(s: &str) -> Result<Duration, String> {
    Duration::parse(s).map_err(|e| e.to_string())
}

/// restic's `--keep-*` policy flags, shared by `forget` (and later `backup --forget`).
#[derive(ClapArgs, Debug, Default, Clone)]
pub struct KeepArgs {
    /// Keep the last `n` snapshots.
    #[arg(
        short = 'l',
        long = "keep-last",
        value_name = "n",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub last: i64,
    /// Keep the last `n` hourly snapshots.
    #[arg(
        short = 'H',
        long = "keep-hourly",
        value_name = "n",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub hourly: i64,
    /// Keep the last `n` daily snapshots.
    #[arg(
        short = 'd',
        long = "keep-daily",
        value_name = "n",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub daily: i64,
    /// Keep the last `n` weekly snapshots.
    #[arg(
        short = 'w',
        long = "keep-weekly",
        value_name = "n",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub weekly: i64,
    /// Keep the last `n` monthly snapshots.
    #[arg(
        short = 'm',
        long = "keep-monthly",
        value_name = "n",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub monthly: i64,
    /// Keep the last `n` yearly snapshots.
    #[arg(
        short = 'y',
        long = "keep-yearly",
        value_name = "n",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub yearly: i64,
    /// Keep snapshots that are newer than `duration` (eg. 1y5m7d2h) relative to the latest snapshot.
    #[arg(long = "keep-within", value_name = "duration", value_parser = duration, allow_hyphen_values = true)]
    pub within: Option<Duration>,
    /// Keep hourly snapshots that are newer than `duration` relative to the latest snapshot.
    #[arg(long = "keep-within-hourly", value_name = "duration", value_parser = duration, allow_hyphen_values = true)]
    pub within_hourly: Option<Duration>,
    /// Keep daily snapshots that are newer than `duration` relative to the latest snapshot.
    #[arg(long = "keep-within-daily", value_name = "duration", value_parser = duration, allow_hyphen_values = true)]
    pub within_daily: Option<Duration>,
    /// Keep weekly snapshots that are newer than `duration` relative to the latest snapshot.
    #[arg(long = "keep-within-weekly", value_name = "duration", value_parser = duration, allow_hyphen_values = true)]
    pub within_weekly: Option<Duration>,
    /// Keep monthly snapshots that are newer than `duration` relative to the latest snapshot.
    #[arg(long = "keep-within-monthly", value_name = "duration", value_parser = duration, allow_hyphen_values = true)]
    pub within_monthly: Option<Duration>,
    /// Keep yearly snapshots that are newer than `duration` relative to the latest snapshot.
    #[arg(long = "keep-within-yearly", value_name = "duration", value_parser = duration, allow_hyphen_values = true)]
    pub within_yearly: Option<Duration>,
    /// Keep snapshots with this `taglist` (can be specified multiple times).
    #[arg(long = "keep-tag", value_name = "taglist")]
    pub keep_tags: Vec<String>,
}

impl KeepArgs {
    /// The engine policy these flags describe.
    pub fn policy(&self) -> ExpirePolicy {
        ExpirePolicy {
            last: self.last,
            hourly: self.hourly,
            daily: self.daily,
            weekly: self.weekly,
            monthly: self.monthly,
            yearly: self.yearly,
            within: self.within.unwrap_or_default(),
            within_hourly: self.within_hourly.unwrap_or_default(),
            within_daily: self.within_daily.unwrap_or_default(),
            within_weekly: self.within_weekly.unwrap_or_default(),
            within_monthly: self.within_monthly.unwrap_or_default(),
            within_yearly: self.within_yearly.unwrap_or_default(),
            tags: self.keep_tags.iter().map(|t| TagList::parse(t)).collect(),
        }
    }
}

/// `restash forget`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Snapshots to remove (ids, prefixes or `latest`); then no policy applies.
    #[arg(value_name = "snapshot ID")]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub keep: KeepArgs,
    /// Only consider snapshots with the given `host` (can be specified multiple times).
    #[arg(long = "host", value_name = "host")]
    pub hosts: Vec<String>,
    /// Deprecated alias of --host.
    #[arg(long = "hostname", value_name = "hostname", hide = true)]
    pub hostnames: Vec<String>,
    /// Only consider snapshots which include this `taglist` in the format `tag[,tag,...]`.
    #[arg(long = "tag", value_name = "taglist")]
    pub tags: Vec<String>,
    /// Only consider snapshots which include this (absolute) `path`.
    #[arg(long = "path", value_name = "path")]
    pub paths: Vec<String>,
    /// Use compact output format.
    #[arg(short = 'c', long)]
    pub compact: bool,
    /// Group snapshots by host, paths and/or tags, separated by comma (disable grouping with '').
    #[arg(
        short = 'g',
        long = "group-by",
        value_name = "group",
        default_value = "host,paths"
    )]
    pub group_by: String,
    /// Do not delete anything, just print what would be done.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// Automatically run the 'prune' command if snapshots have been removed.
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub prune_flags: crate::cmd_prune::PruneFlags,
}

/// restic's snapshot selection for `forget` and `tag` (`FindFilteredSnapshots`): explicit
/// ids (prefixes or `latest`, which honours the filters) or every snapshot passing them.
/// Ids that do not resolve are warned about and skipped, as restic does.
pub fn find_filtered(
    all: &Snapshots,
    hosts: &[String],
    tags: &[TagList],
    paths: &[String],
    ids: &[String],
) -> Vec<SnapshotEntry> {
    if ids.is_empty() {
        return all
            .readable()
            .iter()
            .filter(|(_, s)| matches_filter(s, hosts, tags, paths))
            .cloned()
            .collect();
    }
    let tl: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    let filter_text = format!(
        "(Paths:[{}] Tags:[{}] Hosts:[{}])",
        paths.join(" "),
        tl.join(" "),
        hosts.join(" ")
    );
    let has_filter = !hosts.is_empty() || !tags.is_empty() || !paths.is_empty();
    crate::snapsel::by_ids(
        all,
        ids,
        |s| matches_filter(s, hosts, tags, paths),
        &filter_text,
        has_filter,
    )
}

/// What `backup --forget` did.
#[derive(Debug, Default)]
pub struct Retention {
    /// Snapshots of the host that the policy keeps.
    pub kept: usize,
    /// Snapshots it removed.
    pub removed: Vec<SnapshotId>,
}

/// `backup --forget`: applies the policy to the snapshots of `host` only, grouped by host
/// and paths as `forget` does by default, so one volume's Job never touches another's
/// snapshots. Removal needs restic's exclusive lock; the backups of other volumes hold
/// shared locks for a minute or two each, so this waits up to `wait` for them, calling
/// `waiting` with the reason before each pause.
pub fn forget_host(
    repo: &Repository,
    host: &str,
    keep: &KeepArgs,
    ignore_stale: bool,
    wait: StdDuration,
    mut waiting: impl FnMut(&str),
) -> anyhow::Result<Retention> {
    let policy = keep.policy();
    if policy.is_empty() {
        bail!("--forget needs a policy: at least one --keep-* option");
    }
    let deadline = Instant::now() + wait;
    let lock = loop {
        match RepoLock::acquire(repo, true, ignore_stale) {
            Ok(l) => break l,
            Err(EngineError::Locked(why)) if Instant::now() < deadline => {
                waiting(&why);
                std::thread::sleep(StdDuration::from_secs(5).min(wait));
            }
            Err(e) => return Err(e).context("forget: cannot lock the repository exclusively"),
        }
    };
    let all = load_all(repo)?;
    let mine = find_filtered(&all, &[host.to_string()], &[], &[], &[]);
    let mut out = Retention::default();
    let now = chrono::Utc::now();
    for (_, list) in group_snapshots(mine, GroupBy::parse("host,paths")?) {
        let r = apply_policy(list, &policy, now);
        out.kept += r.keep.len();
        out.removed.extend(r.remove.iter().map(|(id, _)| *id));
    }
    for id in &out.removed {
        let h = Handle::new(FileType::Snapshot, *id);
        repo.backend()
            .remove(&h)
            .with_context(|| format!("forget: remove {h}"))?;
    }
    lock.release();
    Ok(out)
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    if !a.hostnames.is_empty() {
        eprintln!("Flag --hostname has been deprecated, use --host");
    }
    // restic checks the prune options before it removes anything.
    let prune_opts = if a.prune {
        Some(crate::cmd_prune::options(g, a.dry_run, &a.prune_flags)?)
    } else {
        None
    };
    let mut repo = g.open()?;
    if g.no_lock && !a.dry_run {
        bail!("--no-lock is only applicable in combination with --dry-run for forget command");
    }
    let _lock = if a.dry_run && g.no_lock {
        None
    } else {
        Some(RepoLock::acquire(&repo, true, false)?)
    };
    let verbose = !g.quiet && !g.json;
    let mut hosts = a.hosts.clone();
    hosts.extend(a.hostnames.iter().cloned());
    let tags: Vec<TagList> = a.tags.iter().map(|t| TagList::parse(t)).collect();
    let all = load_all(&repo)?;
    let snaps = find_filtered(&all, &hosts, &tags, &a.paths, &a.ids);

    let mut remove_ids: BTreeSet<SnapshotId> = BTreeSet::new();
    let mut json_groups = Vec::new();
    if !a.ids.is_empty() {
        remove_ids.extend(snaps.iter().map(|(id, _)| *id));
    } else {
        let groups = group_snapshots(snaps, GroupBy::parse(&a.group_by)?);
        let policy = a.keep.policy();
        if policy.is_empty() {
            if verbose {
                println!("no policy was specified, no snapshots will be removed");
            }
        } else {
            if verbose {
                println!("Applying Policy: {policy}");
            }
            let now = chrono::Utc::now();
            for (key, list) in groups {
                if g.verbose >= 1 && !g.json {
                    print_group_header(&key);
                }
                let r = apply_policy(list, &policy, now);
                if !r.keep.is_empty() && verbose {
                    println!("keep {} snapshots:", r.keep.len());
                    print_snapshots(&r.keep, Some(&r.reasons), a.compact);
                    println!();
                }
                if !r.remove.is_empty() && verbose {
                    println!("remove {} snapshots:", r.remove.len());
                    print_snapshots(&r.remove, None, a.compact);
                    println!();
                }
                remove_ids.extend(r.remove.iter().map(|(id, _)| *id));
                json_groups.push(group_json(&key, &r.keep, &r.remove, &r.reasons));
            }
        }
    }

    if !remove_ids.is_empty() {
        if a.dry_run {
            if !g.json {
                let short: Vec<String> = remove_ids.iter().map(|id| id.short()).collect();
                println!(
                    "Would have removed the following snapshots:\n{{{}}}\n",
                    short.join(" ")
                );
            }
        } else {
            let start = Instant::now();
            for id in &remove_ids {
                let h = Handle::new(FileType::Snapshot, *id);
                if let Err(e) = repo.backend().remove(&h) {
                    if !g.json {
                        eprintln!("unable to remove {h} from the repository");
                    }
                    return Err(e).with_context(|| format!("remove {h}"));
                }
            }
            if verbose {
                let secs = start.elapsed().as_secs();
                let n = remove_ids.len();
                println!(
                    "[{}:{:02}] 100.00%  {n} / {n} files deleted\n",
                    secs / 60,
                    secs % 60
                );
            }
        }
    }
    if g.json && !json_groups.is_empty() {
        println!("{}", serde_json::to_string(&json_groups)?);
    }
    if let Some(mut opts) = prune_opts {
        if !remove_ids.is_empty() {
            if !g.json {
                println!(
                    "{} snapshots have been removed, running prune",
                    remove_ids.len()
                );
            }
            // In a dry run the snapshots are still there: prune plans as if they were not.
            opts.ignore_snapshots = remove_ids.iter().copied().collect();
            let mut out = crate::cmd_prune::printer(g);
            // Under forget's exclusive lock, as restic does.
            restash_engine::prune::prune(&mut repo, &opts, &mut out)?;
        }
    }
    Ok(())
}

fn list_json(list: &[SnapshotEntry]) -> serde_json::Value {
    if list.is_empty() {
        return serde_json::Value::Null;
    }
    list.iter().map(|(id, s)| snapshot_json(id, s)).collect()
}

/// One group of `forget --json`, field for field restic's `ForgetGroup` (Go's nil slices
/// are `null`).
fn group_json(
    key: &GroupKey,
    keep: &[SnapshotEntry],
    remove: &[SnapshotEntry],
    reasons: &[KeepReason],
) -> serde_json::Value {
    serde_json::json!({
        "tags": key.tags,
        "host": key.hostname,
        "paths": key.paths,
        "keep": list_json(keep),
        "remove": list_json(remove),
        "reasons": if reasons.is_empty() { serde_json::Value::Null } else { serde_json::to_value(reasons).unwrap_or_default() },
    })
}

/// restic's `PrintSnapshotGroupHeader` (printed with `-v`).
fn print_group_header(key: &GroupKey) {
    if key.hostname.is_empty() && key.tags.is_none() && key.paths.is_none() {
        return;
    }
    let mut info = Vec::new();
    if !key.hostname.is_empty() {
        info.push(format!("host [{}]", key.hostname));
    }
    if let Some(t) = &key.tags {
        info.push(format!("tags [{}]", t.join(", ")));
    }
    if let Some(p) = &key.paths {
        info.push(format!("paths [{}]", p.join(", ")));
    }
    println!("snapshots for ({}):", info.join(", "));
}
