use clap::Args as ClapArgs;
use restash_engine::stats::{StatsCounter, StatsMode};
use restash_engine::units::format_bytes_above;
use restash_engine::RepoLock;

use crate::args::FilterArgs;
use crate::global::GlobalOpts;
use crate::snapsel::filtered_snapshots;

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
    let mode = StatsMode::parse(&a.mode)?;
    let mut repo = g.open()?;
    let (lock, index) = repo.load_index_with(|repo| {
        (!g.no_lock)
            .then(|| RepoLock::acquire(repo, false, false))
            .transpose()
    });
    let _lock = lock?;
    index?;
    if !g.json {
        println!("scanning...");
    }
    let mut counter = StatsCounter::new(mode);
    for (_, sn) in filtered_snapshots(&repo, &a.filter, &a.snapshots)? {
        counter
            .add_snapshot(&repo, &sn)
            .map_err(|e| anyhow::anyhow!("error walking snapshot: {e}"))?;
    }
    let t = counter.finish(&repo)?;
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
