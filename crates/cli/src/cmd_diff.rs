use std::io::Write;

use anyhow::bail;
use clap::Args as ClapArgs;
use restash_engine::diff::{self, DiffJob, DiffStat};
use restash_engine::units::format_bytes_above;
use restash_format::write_go_string;

use crate::global::GlobalOpts;
use crate::ui::Ui;

/// `restash diff`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The two snapshots (id prefixes) to compare.
    pub snapshots: Vec<String>,
    /// Print changes in metadata.
    #[arg(long)]
    pub metadata: bool,
}

fn stat_json(s: &DiffStat) -> serde_json::Value {
    serde_json::json!({
        "files": s.files,
        "dirs": s.dirs,
        "others": s.others,
        "data_blobs": s.data_blobs,
        "tree_blobs": s.tree_blobs,
        "bytes": s.bytes,
    })
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    if a.snapshots.len() != 2 {
        bail!("specify two snapshot IDs");
    }
    let job = DiffJob {
        from: a.snapshots[0].clone(),
        to: a.snapshots[1].clone(),
        metadata: a.metadata,
        lock: g.lock_policy(),
    };
    let mut repo = g.open()?;
    let ctl = Ui::new(g, "diff", false).control();
    let mut out = std::io::stdout().lock();
    let (json, quiet) = (g.json, g.quiet);
    let mut write_err = None;
    let stats = diff::run(&mut repo, &job, &ctl, &mut |path, modifier| {
        if quiet {
            return;
        }
        let line = if json {
            let mut s = String::from("{\"message_type\":\"change\",\"path\":");
            write_go_string(&mut s, path);
            s.push_str(",\"modifier\":");
            write_go_string(&mut s, modifier);
            s.push('}');
            s
        } else {
            format!("{modifier:<5}{path}")
        };
        if let Err(e) = writeln!(out, "{line}") {
            write_err.get_or_insert(e);
        }
    })?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    if json {
        let v = serde_json::json!({
            "message_type": "statistics",
            "source_snapshot": a.snapshots[0],
            "target_snapshot": a.snapshots[1],
            "changed_files": stats.changed_files,
            "added": stat_json(&stats.added),
            "removed": stat_json(&stats.removed),
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    let (ad, rm) = (&stats.added, &stats.removed);
    writeln!(out)?;
    writeln!(
        out,
        "Files:       {:5} new, {:5} removed, {:5} changed",
        ad.files, rm.files, stats.changed_files
    )?;
    writeln!(out, "Dirs:        {:5} new, {:5} removed", ad.dirs, rm.dirs)?;
    writeln!(
        out,
        "Others:      {:5} new, {:5} removed",
        ad.others, rm.others
    )?;
    writeln!(
        out,
        "Data Blobs:  {:5} new, {:5} removed",
        ad.data_blobs, rm.data_blobs
    )?;
    writeln!(
        out,
        "Tree Blobs:  {:5} new, {:5} removed",
        ad.tree_blobs, rm.tree_blobs
    )?;
    writeln!(out, "  Added:   {:<5}", format_bytes_above(ad.bytes))?;
    writeln!(out, "  Removed: {:<5}", format_bytes_above(rm.bytes))?;
    Ok(())
}
