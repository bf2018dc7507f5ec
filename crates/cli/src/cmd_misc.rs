//! Small commands: `unlock` and `list`.

use clap::Args as ClapArgs;
use restash_backend::FileType;

use crate::global::GlobalOpts;

/// `restash unlock`
#[derive(ClapArgs, Debug)]
pub struct UnlockArgs {
    /// Remove all locks, even those still in use.
    #[arg(long = "remove-all")]
    pub remove_all: bool,
}

pub fn unlock(g: &GlobalOpts, a: UnlockArgs) -> anyhow::Result<()> {
    let repo = g.open()?;
    let n = restash_engine::unlock(&repo, a.remove_all)?;
    if !g.quiet {
        println!("successfully removed {n} locks");
    }
    Ok(())
}

/// `restash list`
#[derive(ClapArgs, Debug)]
pub struct ListArgs {
    /// One of keys, snapshots, index, packs, blobs, locks.
    pub kind: String,
}

pub fn list(g: &GlobalOpts, a: ListArgs) -> anyhow::Result<()> {
    let mut repo = g.open()?;
    // Listing the locks must work while someone holds an exclusive one.
    let _lock = match a.kind.as_str() {
        "locks" => None,
        _ => g.read_lock(&repo, "list")?,
    };
    let t = match a.kind.as_str() {
        "keys" => FileType::Key,
        "snapshots" => FileType::Snapshot,
        "index" => FileType::Index,
        "packs" => FileType::Pack,
        "locks" => FileType::Lock,
        "blobs" => {
            repo.load_index()?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            use std::io::Write;
            for (id, t, _) in repo.index().iter() {
                writeln!(out, "{} {id}", t.as_str())?;
            }
            return Ok(());
        }
        other => anyhow::bail!(
            "invalid type {other:?}: use keys, snapshots, index, packs, blobs or locks"
        ),
    };
    for id in repo.list_ids(t)? {
        println!("{id}");
    }
    Ok(())
}
