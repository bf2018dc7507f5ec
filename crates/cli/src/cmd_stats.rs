use clap::Args as ClapArgs;
use restash_engine::stats::{self, StatsJob, StatsMode};
use restash_engine::units::format_bytes_above;

use crate::args::FilterArgs;
use crate::global::GlobalOpts;
use crate::ui::Ui;

/// `restash stats`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Snapshot ids (or `latest`); all matching snapshots when none is given.
    pub snapshots: Vec<String>,
    /// Counting mode: restore-size (default), files-by-contents, blobs-per-file or raw-data.
    #[arg(long, default_value = "restore-size")]
    pub mode: String,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    let job = StatsJob {
        mode: StatsMode::parse(&a.mode)?,
        ids: a.snapshots,
        filter: a.filter.to_filter(),
        lock: g.lock_policy(),
    };
    let mut repo = g.open()?;
    let ui = Ui::new(g, "stats", false);
    let t = stats::run(&mut repo, &job, &ui.control())?;
    let mode = job.mode;
    if g.json {
        let mut v = serde_json::json!({
            "total_size": t.total_size,
            "total_file_count": t.total_file_count,
        });
        if t.total_blob_count > 0 {
            v["total_blob_count"] = t.total_blob_count.into();
        }
        v["snapshots_count"] = t.snapshots_count.into();
        println!("{v}");
        return Ok(());
    }
    println!("Stats in {} mode:", mode.as_str());
    println!("Snapshots processed:   {}", t.snapshots_count);
    if t.total_blob_count > 0 {
        println!("   Total Blob Count:   {}", t.total_blob_count);
    }
    if t.total_file_count > 0 {
        println!("   Total File Count:   {}", t.total_file_count);
    }
    println!(
        "         Total Size:   {:<5}",
        format_bytes_above(t.total_size)
    );
    Ok(())
}
