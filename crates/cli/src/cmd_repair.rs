//! `restash repair index|snapshots` and restic 0.14's name `rebuild-index`.

use clap::{Args as ClapArgs, Subcommand};
use restash_engine::check::Reporter;
use restash_engine::repair::{
    repair_index, RepairIndexOptions, RepairSnapshotsOptions, SnapshotRepairer,
};
use restash_engine::RepoLock;

use crate::cmd_check::CliReporter;
use crate::cmd_snapshots::FilterArgs;
use crate::display::go_time_string;
use crate::global::GlobalOpts;

/// `restash repair`
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

/// What to repair.
#[derive(Subcommand, Debug)]
pub enum What {
    /// Build a new index from the pack files.
    Index(IndexArgs),
    /// Repair snapshots whose trees or file contents are missing.
    Snapshots(SnapshotsArgs),
}

/// `restash repair index` / `restash rebuild-index`
#[derive(ClapArgs, Debug)]
pub struct IndexArgs {
    /// Read all pack files to generate the new index from scratch.
    #[arg(long = "read-all-packs")]
    pub read_all_packs: bool,
}

/// `restash repair snapshots`
#[derive(ClapArgs, Debug)]
pub struct SnapshotsArgs {
    /// Do not do anything, just print what would be done.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// Remove original snapshots after creating new ones.
    #[arg(long)]
    pub forget: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Snapshots to repair (ids, prefixes or `latest`); all when none are given.
    pub ids: Vec<String>,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    match a.what {
        What::Index(i) => index(g, i),
        What::Snapshots(s) => snapshots(g, s),
    }
}

pub fn index(g: &GlobalOpts, a: IndexArgs) -> anyhow::Result<()> {
    let rep = CliReporter::new(g);
    let repo = g.open()?;
    let _lock = RepoLock::acquire(&repo, true, false)?;
    let opts = RepairIndexOptions {
        read_all_packs: a.read_all_packs,
    };
    repair_index(&repo, &opts, &rep)?;
    Ok(())
}

pub fn snapshots(g: &GlobalOpts, a: SnapshotsArgs) -> anyhow::Result<()> {
    let rep = CliReporter::new(g);
    let mut repo = g.open()?;
    let _lock = if a.dry_run {
        None
    } else {
        Some(RepoLock::acquire(&repo, true, false)?)
    };
    let all = repo.load_snapshots()?;
    for bad in all.unreadable() {
        rep.warn(&format!(
            "could not load snapshot {}: {}",
            bad.id.short(),
            bad.error
        ));
    }
    repo.load_index()?;
    let filter = a.filter.to_filter();
    let chosen: Vec<_> = if a.ids.is_empty() {
        all.readable()
            .iter()
            .filter(|(_, s)| filter.matches(s))
            .collect()
    } else {
        let mut v = Vec::new();
        for spec in &a.ids {
            v.push(all.find(spec, &filter)?);
        }
        v
    };
    let opts = RepairSnapshotsOptions {
        dry_run: a.dry_run,
        forget: a.forget,
    };
    let mut repairer = SnapshotRepairer::new(&repo, opts);
    let mut changed = 0;
    for (id, snap) in chosen {
        rep.info(
            1,
            &format!(
                "\nsnapshot {} of [{}] at {})",
                id.short(),
                snap.paths.join(" "),
                go_time_string(&snap.time)
            ),
        );
        match repairer.repair(id, snap, &rep) {
            Ok(true) => changed += 1,
            Ok(false) => {}
            Err(e) => anyhow::bail!("unable to rewrite snapshot ID {:?}: {e}", id.short()),
        }
    }
    rep.info(1, "");
    let msg = match (changed, a.dry_run) {
        (0, false) => "no snapshots were modified".to_string(),
        (0, true) => "no snapshots would be modified".to_string(),
        (n, false) => format!("modified {n} snapshots"),
        (n, true) => format!("would modify {n} snapshots"),
    };
    rep.info(1, &msg);
    Ok(())
}
