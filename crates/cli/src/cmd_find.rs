use anyhow::bail;
use clap::Args as ClapArgs;
use restash_engine::find::{self, FindHit, FindJob, FindOptions};
use restash_format::{BlobType, GoTime};

use crate::args::FilterArgs;
use crate::global::GlobalOpts;
use crate::ui::find::{object_pack, Output};
use crate::ui::Ui;

/// `restash find`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Patterns (or ids with --blob, --tree, --pack).
    #[arg(required = true)]
    pub patterns: Vec<String>,
    /// Oldest modification date/time.
    #[arg(short = 'O', long)]
    pub oldest: Option<String>,
    /// Newest modification date/time.
    #[arg(short = 'N', long)]
    pub newest: Option<String>,
    /// Snapshot id to search in (repeatable).
    #[arg(short = 's', long = "snapshot")]
    pub snapshots: Vec<String>,
    /// Pattern is a blob id.
    #[arg(long)]
    pub blob: bool,
    /// Pattern is a tree id.
    #[arg(long)]
    pub tree: bool,
    /// Pattern is a pack id.
    #[arg(long)]
    pub pack: bool,
    /// Display the pack id the blobs belong to (with --blob or --tree).
    #[arg(long = "show-pack-id")]
    pub show_pack_id: bool,
    /// Ignore case for pattern.
    #[arg(short = 'i', long = "ignore-case")]
    pub ignore_case: bool,
    /// Long listing format showing size and mode.
    #[arg(short = 'l', long = "long")]
    pub long: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    let mut patterns = a.patterns.clone();
    if a.ignore_case {
        for p in &mut patterns {
            *p = p.to_lowercase();
        }
    }
    let oldest = a
        .oldest
        .as_deref()
        .map(GoTime::parse_local)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let newest = a
        .newest
        .as_deref()
        .map(GoTime::parse_local)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if [a.blob, a.tree, a.pack].iter().filter(|b| **b).count() > 1 {
        bail!("cannot have several ID types");
    }
    let job = FindJob {
        options: FindOptions {
            patterns,
            ignore_case: a.ignore_case,
            oldest,
            newest,
            blob: a.blob,
            tree: a.tree,
            pack: a.pack,
        },
        ids: a.snapshots,
        filter: a.filter.to_filter(),
        lock: g.lock_policy(),
    };
    let mut repo = g.open()?;
    let ctl = Ui::new(g, "find", false).control();
    let mut out = Output::new(g.json, a.long, !g.quiet);
    let mut written = Ok(());
    let finder = find::run(&mut repo, &job, &ctl, &mut |entry, hit| {
        if written.is_err() {
            return;
        }
        // What one snapshot found is written before the next is searched.
        if out.snapshot(entry) {
            written = out.flush();
        }
        match hit {
            FindHit::Node { path, node } => out.pattern(path, node),
            FindHit::Object {
                kind,
                id,
                path,
                parent_tree,
            } => out.object(kind, &id, path, parent_tree.as_ref().map(|t| &t.0)),
        }
    })?;
    written?;
    out.flush()?;
    out.finish();
    if a.show_pack_id && finder.by_id() {
        for id in finder.blob_ids.iter().flatten() {
            out.push(&object_pack(&repo, id, BlobType::Data));
        }
        for id in finder.tree_ids.iter().flatten() {
            out.push(&object_pack(&repo, id, BlobType::Tree));
        }
    }
    out.flush()?;
    Ok(())
}
