//! `restash tag`: add, remove or set snapshot tags, as restic 0.14 does it: the changed
//! snapshot is saved as a new file that remembers its first id in `original`, then the old
//! file is removed.

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use restash_backend::{FileType, Handle};
use restash_engine::forget::{flatten_tag_lists, TagList};
use restash_engine::{RepoLock, Repository};
use restash_format::{Snapshot, SnapshotId};

use crate::cmd_forget::find_filtered;
use crate::global::GlobalOpts;
use crate::snapsel::load_all;

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

fn flat(v: &[String]) -> Vec<String> {
    let lists: Vec<TagList> = v.iter().map(|t| TagList::parse(t)).collect();
    flatten_tag_lists(&lists)
}

/// restic's `changeTags` on a snapshot in memory; true if anything changed. The removal
/// order (swap with the last tag) is restic's, so the resulting tag order matches.
pub fn change_tags(s: &mut Snapshot, set: &[String], add: &[String], remove: &[String]) -> bool {
    if !set.is_empty() {
        s.tags = set.to_vec();
        return true;
    }
    let mut changed = false;
    for t in add {
        if !s.has_tag(t) {
            s.tags.push(t.clone());
            changed = true;
        }
    }
    for t in remove {
        if let Some(i) = s.tags.iter().position(|x| x == t) {
            s.tags.swap_remove(i);
            changed = true;
        }
    }
    changed
}

fn save_changed(repo: &Repository, id: &SnapshotId, s: &mut Snapshot) -> anyhow::Result<()> {
    if s.original.is_none() {
        s.original = Some(*id);
    }
    repo.save_unpacked(FileType::Snapshot, &s.to_json())
        .context("save snapshot")?;
    let h = Handle::new(FileType::Snapshot, *id);
    repo.backend()
        .remove(&h)
        .with_context(|| format!("remove {h}"))?;
    Ok(())
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    if a.set.is_empty() && a.add.is_empty() && a.remove.is_empty() {
        bail!("nothing to do!");
    }
    if !a.set.is_empty() && (!a.add.is_empty() || !a.remove.is_empty()) {
        bail!("--set and --add/--remove cannot be given at the same time");
    }
    let repo = g.open()?;
    let verbose = !g.quiet;
    let _lock = if g.no_lock {
        None
    } else {
        if verbose {
            println!("create exclusive lock for repository");
        }
        Some(RepoLock::acquire(&repo, true, false)?)
    };
    let tags: Vec<TagList> = a.tags.iter().map(|t| TagList::parse(t)).collect();
    let all = load_all(&repo)?;
    // Flattening drops empty tags, so `--set ''` changes nothing in restic 0.14.
    let (set, add, remove) = (flat(&a.set), flat(&a.add), flat(&a.remove));
    let mut changed = 0;
    for (id, mut s) in find_filtered(&all, &a.hosts, &tags, &a.paths, &a.ids) {
        if !change_tags(&mut s, &set, &add, &remove) {
            continue;
        }
        match save_changed(&repo, &id, &mut s) {
            Ok(()) => changed += 1,
            Err(e) => {
                eprintln!("unable to modify the tags for snapshot ID \"{id}\", ignoring: {e:#}")
            }
        }
    }
    if verbose {
        if changed == 0 {
            println!("no snapshots were modified");
        } else {
            println!("modified tags on {changed} snapshots");
        }
    }
    Ok(())
}
