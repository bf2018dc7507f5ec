use anyhow::Context;
use clap::Args as ClapArgs;
use restash_engine::{find_snapshot, find_subtree, EngineError, PatternSet, RestoreOptions};

use crate::cmd_snapshots::FilterArgs;
use crate::display::go_time_string;
use crate::global::GlobalOpts;

/// `restash restore`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Snapshot id, prefix or `latest`, optionally `:subfolder`.
    pub snapshot: String,
    /// Directory to extract data to.
    #[arg(short = 't', long = "target")]
    pub target: String,
    /// Exclude a pattern (repeatable).
    #[arg(short = 'e', long = "exclude")]
    pub exclude: Vec<String>,
    /// Include a pattern, exclude everything else (repeatable).
    #[arg(short = 'i', long = "include")]
    pub include: Vec<String>,
    /// Same as --exclude but ignores the casing of filenames.
    #[arg(long = "iexclude")]
    pub iexclude: Vec<String>,
    /// Same as --include but ignores the casing of filenames.
    #[arg(long = "iinclude")]
    pub iinclude: Vec<String>,
    /// Verify restored files' content (restash always verifies every blob).
    #[arg(long)]
    pub verify: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    let mut repo = g.open()?;
    let (snaps, _) = repo.load_snapshots()?;
    let (spec, sub) = a.snapshot.split_once(':').unwrap_or((&a.snapshot, ""));
    let (id, snap) = find_snapshot(&snaps, spec, &a.filter.to_filter())?.clone();
    repo.load_index().context("loading index")?;
    let root = find_subtree(&repo, &snap.tree, sub)?;
    let mut opts = RestoreOptions::new(&a.target);
    opts.include = PatternSet::parse(&a.include)?;
    opts.include.add_insensitive(&a.iinclude)?;
    opts.exclude = PatternSet::parse(&a.exclude)?;
    opts.exclude.add_insensitive(&a.iexclude)?;
    if !g.quiet && !g.json {
        eprintln!(
            "restoring <Snapshot {} of [{}] at {} by {}@{}> to {}",
            id.short(),
            snap.paths.join(" "),
            go_time_string(&snap.time),
            snap.username,
            snap.hostname,
            a.target
        );
    }
    let stats = restash_engine::restore(&repo, &root, &opts)?;
    for e in &stats.errors {
        eprintln!("ignoring error: {e}");
    }
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "message_type": "summary",
                "total_files": stats.files,
                "total_dirs": stats.dirs,
                "total_bytes": stats.bytes,
                "errors": stats.errors.len(),
            })
        );
    }
    if !stats.errors.is_empty() {
        return Err(EngineError::Partial(stats.errors).into());
    }
    Ok(())
}
