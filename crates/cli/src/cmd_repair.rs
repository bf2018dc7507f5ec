//! `restash repair index|snapshots` and restic 0.14's name `rebuild-index`.

use clap::{Args as ClapArgs, Subcommand};
use restash_engine::repair::{
    repair_index, repair_snapshots, RepairIndexOptions, RepairSnapshotsJob, RepairSnapshotsOptions,
};
use restash_engine::RepoLock;

use crate::args::FilterArgs;
use crate::global::GlobalOpts;
use crate::ui::Ui;

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
    let ctl = Ui::new(g, "repair", false).control();
    let repo = g.open()?;
    let _lock = RepoLock::take(&repo, true, &g.write_lock_policy(), &ctl)?;
    let opts = RepairIndexOptions {
        read_all_packs: a.read_all_packs,
    };
    repair_index(&repo, &opts, &ctl)?;
    Ok(())
}

pub fn snapshots(g: &GlobalOpts, a: SnapshotsArgs) -> anyhow::Result<()> {
    let ctl = Ui::new(g, "repair", false).control();
    let mut repo = g.open()?;
    let job = RepairSnapshotsJob {
        ids: a.ids,
        filter: a.filter.to_filter(),
        options: RepairSnapshotsOptions {
            dry_run: a.dry_run,
            forget: a.forget,
        },
        lock: g.write_lock_policy(),
    };
    let changed = repair_snapshots(&mut repo, &job, &ctl)?;
    ctl.say(1, "");
    let msg = match (changed, a.dry_run) {
        (0, false) => "no snapshots were modified".to_string(),
        (0, true) => "no snapshots would be modified".to_string(),
        (n, false) => format!("modified {n} snapshots"),
        (n, true) => format!("would modify {n} snapshots"),
    };
    ctl.say(1, &msg);
    Ok(())
}
