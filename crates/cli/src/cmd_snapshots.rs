use clap::Args as ClapArgs;
use restash_engine::forget::{group_snapshots, GroupBy};
use restash_engine::{list_snapshots, SnapshotEntry};

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
    /// Only show the last N snapshots for each host and path (with --group-by: for
    /// each group).
    #[arg(long, value_name = "N")]
    pub latest: Option<usize>,
    /// Use compact output format (tags one per line, no paths).
    #[arg(short = 'c', long)]
    pub compact: bool,
    /// Group snapshots by host, paths and/or tags, separated by comma.
    #[arg(
        short = 'g',
        long = "group-by",
        value_name = "GROUP",
        default_value = ""
    )]
    pub group_by: String,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    let by = GroupBy::parse(&a.group_by)?;
    let repo = g.open()?;
    let ctl = Ui::new(g, "snapshots", false).control();
    let snaps = list_snapshots(&repo, &a.filter.to_filter(), &a.ids, &g.lock_policy(), &ctl)?;
    let grouped = by != GroupBy::default();
    // restic 0.14 sorts each snapshot's paths while grouping, so both the table and the
    // JSON show them sorted, whatever order they were stored in.
    let mut groups = group_snapshots(snaps, by);
    for (_, list) in &mut groups {
        // restic lists oldest first, whatever order the snapshots were chosen in.
        list.sort_by(|a, b| a.1.time.0.cmp(&b.1.time.0).then(a.0.cmp(&b.0)));
        if let Some(n) = a.latest {
            *list = if grouped {
                newest(std::mem::take(list), n)
            } else {
                // restic's `filterLatestSnapshots`: the newest n of each host and path list.
                let by = GroupBy::parse("host,paths")?;
                let mut kept: Vec<SnapshotEntry> = group_snapshots(std::mem::take(list), by)
                    .into_iter()
                    .flat_map(|(_, l)| newest(l, n))
                    .collect();
                kept.sort_by(|a, b| a.1.time.0.cmp(&b.1.time.0).then(a.0.cmp(&b.0)));
                kept
            };
        }
    }
    if g.json {
        let json = |l: &[SnapshotEntry]| -> Vec<_> {
            l.iter().map(|(id, s)| snapshot_json(id, s)).collect()
        };
        let v = if grouped {
            serde_json::Value::Array(
                groups
                    .iter()
                    .map(|(k, l)| serde_json::json!({"group_key": k, "snapshots": json(l)}))
                    .collect(),
            )
        } else {
            serde_json::Value::Array(groups.iter().flat_map(|(_, l)| json(l)).collect())
        };
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    for (key, list) in &groups {
        if grouped && !key.is_empty() {
            println!("snapshots for ({key}):");
        }
        // restic's table, shared with forget (column widths, multi-line paths).
        crate::display::print_snapshots(list, None, a.compact);
    }
    Ok(())
}

/// The last `n` of `list`, which is sorted oldest first.
fn newest(mut list: Vec<SnapshotEntry>, n: usize) -> Vec<SnapshotEntry> {
    list.split_off(list.len().saturating_sub(n))
}
