//! `restash tag`: add, remove or set snapshot tags, as restic 0.14 does it.

use std::sync::Arc;

use clap::Args as ClapArgs;
use restash_engine::events::{Control, Event};
use restash_engine::tag::{modify, TagOptions};
use restash_engine::{SnapshotFilter, TagList};

use crate::global::GlobalOpts;

/// `restash tag`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Snapshots to change (ids, prefixes or `latest`); all filtered snapshots if none.
    #[arg(value_name = "snapshot ID")]
    pub ids: Vec<String>,
    /// `tags` which will replace the existing tags in the format `tag[,tag,...]`.
    #[arg(long = "set", value_name = "tags")]
    pub set: Vec<String>,
    /// `tags` which will be added to the existing tags in the format `tag[,tag,...]`.
    #[arg(long = "add", value_name = "tags")]
    pub add: Vec<String>,
    /// `tags` which will be removed from the existing tags in the format `tag[,tag,...]`.
    #[arg(long = "remove", value_name = "tags")]
    pub remove: Vec<String>,
    /// Only consider snapshots for this `host`, when no snapshot ID is given.
    #[arg(short = 'H', long = "host", value_name = "host")]
    pub hosts: Vec<String>,
    /// Only consider snapshots which include this `taglist`, when no snapshot-ID is given.
    #[arg(long = "tag", value_name = "taglist")]
    pub tags: Vec<String>,
    /// Only consider snapshots which include this (absolute) `path`, when no snapshot-ID is given.
    #[arg(long = "path", value_name = "path")]
    pub paths: Vec<String>,
}

fn lists(v: &[String]) -> Vec<TagList> {
    v.iter().map(|t| TagList::parse(t)).collect()
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    let opts = TagOptions {
        filter: SnapshotFilter::new(&a.hosts, &a.tags, &a.paths),
        ids: a.ids,
        set: lists(&a.set),
        add: lists(&a.add),
        remove: lists(&a.remove),
        lock: g.lock_policy(),
    };
    opts.check()?;
    let repo = g.open()?;
    let verbose = !g.quiet;
    if verbose && !g.no_lock {
        println!("create exclusive lock for repository");
    }
    let ctl = Control::new(Arc::new(|e: &Event<'_>| match e {
        Event::Warning(w) => eprintln!("{w}"),
        Event::Error(e) => eprintln!("{e}"),
        _ => {}
    }));
    let summary = modify(&repo, &opts, &ctl)?;
    if verbose {
        if summary.changed.is_empty() {
            println!("no snapshots were modified");
        } else {
            println!("modified tags on {} snapshots", summary.changed.len());
        }
    }
    Ok(())
}
