use clap::Args as ClapArgs;
use restash_engine::SnapshotFilter;

use crate::display::snapshot_json;
use crate::global::GlobalOpts;

/// `restash snapshots`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Only show these snapshots (ids or prefixes, or `latest`).
    pub ids: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only show the latest N snapshots per group.
    #[arg(long)]
    pub latest: Option<usize>,
    /// Use compact output format (tags one per line, no paths).
    #[arg(short = 'c', long)]
    pub compact: bool,
}

/// restic's snapshot filter flags.
#[derive(ClapArgs, Debug, Default)]
pub struct FilterArgs {
    /// Only consider snapshots of this host (repeatable).
    #[arg(short = 'H', long = "host")]
    pub hosts: Vec<String>,
    /// Only consider snapshots with these tags (comma-separated: all of them; repeat: any).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only consider snapshots including this absolute path (repeatable).
    #[arg(long = "path")]
    pub paths: Vec<String>,
}

impl FilterArgs {
    /// As an engine filter.
    pub fn to_filter(&self) -> SnapshotFilter {
        SnapshotFilter {
            hosts: self.hosts.clone(),
            tags: self.tags.clone(),
            paths: self.paths.clone(),
        }
    }
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    let repo = g.open()?;
    let all = crate::snapsel::load_all(&repo)?;
    let filter = a.filter.to_filter();
    let mut snaps: Vec<_> = if a.ids.is_empty() {
        all.readable()
            .iter()
            .filter(|(_, s)| filter.matches(s))
            .cloned()
            .collect()
    } else {
        let mut v = Vec::new();
        for spec in &a.ids {
            v.push(all.find(spec, &filter)?.clone());
        }
        v
    };
    if let Some(n) = a.latest {
        let skip = snaps.len().saturating_sub(n);
        snaps.drain(..skip);
    }
    // restic 0.14 sorts each snapshot's paths while grouping, so both the table and the
    // JSON show them sorted, whatever order they were stored in.
    for (_, s) in &mut snaps {
        s.paths.sort();
    }
    if g.json {
        let v: Vec<_> = snaps.iter().map(|(id, s)| snapshot_json(id, s)).collect();
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    // restic's table, shared with forget (column widths, multi-line paths).
    crate::display::print_snapshots(&snaps, None, a.compact);
    Ok(())
}
