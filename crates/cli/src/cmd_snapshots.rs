use clap::Args as ClapArgs;
use restash_engine::select_snapshots;

use crate::args::FilterArgs;
use crate::display::snapshot_json;
use crate::global::GlobalOpts;
use crate::ui::Ui;

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

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    let repo = g.open()?;
    let ctl = Ui::new(g, "snapshots", false).control();
    let mut snaps = select_snapshots(&repo, &a.filter.to_filter(), &a.ids, &ctl)?;
    // restic lists oldest first, whatever order the snapshots were chosen in.
    snaps.sort_by(|a, b| a.1.time.0.cmp(&b.1.time.0).then(a.0.cmp(&b.0)));
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
