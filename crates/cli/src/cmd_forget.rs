//! `restash forget`: remove snapshots by restic 0.14's keep policy or by id.

use anyhow::bail;
use clap::Args as ClapArgs;
use restash_backend::{FileType, Handle};
use restash_engine::forget::{forget, ForgetGroup, ForgetOptions, GroupBy};
use restash_engine::SnapshotFilter;
use restash_engine::{LockPolicy, RepoLock, SnapshotEntry};

use crate::args::KeepArgs;
use crate::display::{print_snapshots, snapshot_json};
use crate::global::GlobalOpts;

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
    pub prune_flags: crate::args::PruneFlags,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    if !a.hostnames.is_empty() {
        eprintln!("Flag --hostname has been deprecated, use --host");
    }
    // restic checks the prune options before it removes anything.
    let prune_opts = if a.prune {
        Some(a.prune_flags.options(g, a.dry_run)?)
    } else {
        None
    };
    let mut repo = g.open()?;
    if g.no_lock && !a.dry_run {
        bail!("--no-lock is only applicable in combination with --dry-run for forget command");
    }
    let mut hosts = a.hosts.clone();
    hosts.extend(a.hostnames.iter().cloned());
    let mut lock = LockPolicy {
        skip: a.dry_run && g.no_lock,
        ..g.lock_policy()
    };
    let ctl = crate::ui::Ui::new(g, "forget", false).control();
    // prune runs under forget's exclusive lock, as in restic: then it is taken here.
    // With a lock wait, each works beside backups and takes the exclusive lock only to
    // delete (see `prune_locked`).
    let beside = !a.dry_run && lock.works_beside();
    let held = match prune_opts {
        Some(_) if !beside => RepoLock::take(&repo, true, &lock, &ctl)?,
        _ => None,
    };
    let prune_lock = lock.clone();
    lock.skip |= held.is_some();
    let opts = ForgetOptions {
        filter: SnapshotFilter::new(&hosts, &a.tags, &a.paths),
        ids: a.ids.clone(),
        // With explicit ids restic never looks at --group-by.
        group_by: match a.ids.is_empty() {
            true => GroupBy::parse(&a.group_by)?,
            false => GroupBy::default(),
        },
        policy: a.keep.policy(),
        dry_run: a.dry_run,
        lock,
    };
    let verbose = !g.quiet && !g.json;
    let sum = forget(&repo, &opts, &ctl)?;
    if a.ids.is_empty() && opts.policy.is_empty() && verbose {
        println!("no policy was specified, no snapshots will be removed");
    } else if a.ids.is_empty() && !opts.policy.is_empty() {
        if verbose {
            println!("Applying Policy: {}", opts.policy);
        }
        for group in &sum.groups {
            print_group(g, group, a.compact);
        }
    }
    if !sum.remove.is_empty() && a.dry_run && !g.json {
        let short: Vec<String> = sum.remove.iter().map(|id| id.short()).collect();
        println!(
            "Would have removed the following snapshots:\n{{{}}}\n",
            short.join(" ")
        );
    } else if !sum.remove.is_empty() && !a.dry_run {
        if let Some((id, e)) = sum.failed {
            if !g.json {
                let h = Handle::new(FileType::Snapshot, id);
                eprintln!("unable to remove {h} from the repository");
            }
            return Err(e.into());
        }
        let (secs, n) = (sum.remove_time.as_secs(), sum.remove.len());
        if verbose {
            println!(
                "[{}:{:02}] 100.00%  {n} / {n} files deleted\n",
                secs / 60,
                secs % 60
            );
        }
    }
    if g.json && !sum.groups.is_empty() {
        let groups: Vec<_> = sum.groups.iter().map(group_json).collect();
        println!("{}", serde_json::to_string(&groups)?);
    }
    if let (Some(mut opts), false) = (prune_opts, sum.remove.is_empty()) {
        if !g.json {
            println!(
                "{} snapshots have been removed, running prune",
                sum.remove.len()
            );
        }
        // In a dry run the snapshots are still there: prune plans as if they were not.
        opts.ignore_snapshots = sum.remove.iter().copied().collect();
        let prune_ctl = crate::ui::Ui::new(g, "prune", false).control();
        if beside {
            restash_engine::prune::prune_locked(&mut repo, &opts, &prune_lock, &prune_ctl)?;
        } else {
            restash_engine::prune::prune(&mut repo, &opts, &prune_ctl)?;
        }
    }
    drop(held);
    Ok(())
}

/// One group as restic prints it: header with `-v`, then the kept and removed snapshots.
fn print_group(g: &GlobalOpts, group: &ForgetGroup, compact: bool) {
    // restic's `PrintSnapshotGroupHeader`, printed with `-v`.
    if g.verbose >= 1 && !g.json && !group.key.is_empty() {
        println!("snapshots for ({}):", group.key);
    }
    if g.quiet || g.json {
        return;
    }
    let r = &group.result;
    if !r.keep.is_empty() {
        println!("keep {} snapshots:", r.keep.len());
        print_snapshots(&r.keep, Some(&r.reasons), compact);
        println!();
    }
    if !r.remove.is_empty() {
        println!("remove {} snapshots:", r.remove.len());
        print_snapshots(&r.remove, None, compact);
        println!();
    }
}

/// One group of `forget --json`, field for field restic's `ForgetGroup` (Go's nil slices
/// are `null`).
fn group_json(group: &ForgetGroup) -> serde_json::Value {
    let (key, r) = (&group.key, &group.result);
    let list = |l: &[SnapshotEntry]| -> Option<Vec<_>> {
        (!l.is_empty()).then(|| l.iter().map(|(id, s)| snapshot_json(id, s)).collect())
    };
    serde_json::json!({
        "tags": key.tags,
        "host": key.hostname,
        "paths": key.paths,
        "keep": list(&r.keep),
        "remove": list(&r.remove),
        "reasons": (!r.reasons.is_empty()).then_some(&r.reasons),
    })
}
