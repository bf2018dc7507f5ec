use std::io::Write;

use anyhow::bail;
use clap::Args as ClapArgs;
use restash_backend::FileType;
use restash_engine::cat::{find_file, read_blob, read_lock, read_raw, read_tree};
use restash_engine::dump::{self, DumpJob};
use restash_engine::{select_one, ArchiveFormat, EngineError, SnapshotFilter};
use restash_format::{master_key_json, BlobId, Id, KeyId};

use crate::args::FilterArgs;
use crate::display::restic_014_view;
use crate::global::GlobalOpts;
use crate::ui::Ui;

/// `restash cat`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// One of config, masterkey, key, snapshot, index, lock, pack, blob, tree.
    pub kind: String,
    /// The id (or for `tree`, `SNAPSHOT[:PATH]`).
    pub id: Option<String>,
}

/// `restash dump`
#[derive(ClapArgs, Debug)]
pub struct DumpArgs {
    /// Snapshot id, prefix or `latest`.
    pub snapshot: String,
    /// Path of a file or directory in the snapshot.
    pub file: String,
    /// Set archive format as "tar" or "zip".
    #[arg(short = 'a', long, default_value = "tar", value_name = "format")]
    pub archive: String,
    #[command(flatten)]
    pub filter: FilterArgs,
}

fn pretty(v: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(v)?)
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    let mut repo = g.open()?;
    let _lock = g.read_lock(&repo, "cat")?;
    let need_id = || {
        a.id.clone()
            .ok_or_else(|| EngineError::Usage(format!("cat {} needs an ID", a.kind)))
    };
    let mut out = std::io::stdout().lock();
    match a.kind.as_str() {
        "config" => writeln!(out, "{}", pretty(repo.config())?)?,
        "masterkey" => {
            let v: serde_json::Value = serde_json::from_str(&master_key_json(repo.key()))?;
            writeln!(out, "{}", pretty(&v)?)?
        }
        "key" => {
            let id = find_file(&repo, FileType::Key, &need_id()?)?;
            let key = restash_engine::keys::read_key(&repo, KeyId(id))?;
            writeln!(out, "{}", pretty(&key)?)?
        }
        "snapshot" => {
            let (_, s) = select_one(&repo, &need_id()?, &SnapshotFilter::default(), &ctl(g))?;
            writeln!(out, "{}", pretty(&restic_014_view(&s))?)?
        }
        "lock" => {
            let id = find_file(&repo, FileType::Lock, &need_id()?)?;
            writeln!(out, "{}", pretty(&read_lock(&repo, &id)?)?)?
        }
        "index" => {
            let id = find_file(&repo, FileType::Index, &need_id()?)?;
            out.write_all(&repo.load_unpacked(FileType::Index, &id)?)?
        }
        "pack" => {
            let id = find_file(&repo, FileType::Pack, &need_id()?)?;
            out.write_all(&read_raw(&repo, FileType::Pack, &id)?)?
        }
        "blob" => {
            repo.load_index()?;
            let id = BlobId(Id::parse(&need_id()?)?);
            out.write_all(&read_blob(&repo, &id)?)?
        }
        "tree" => {
            repo.load_index()?;
            let spec = need_id()?;
            let (snap, path) = spec.split_once(':').unwrap_or((&spec, ""));
            let (_, s) = select_one(&repo, snap, &SnapshotFilter::default(), &ctl(g))?;
            let raw = read_tree(&repo, &s.tree, path)?;
            let v: serde_json::Value = serde_json::from_slice(&raw)?;
            writeln!(out, "{}", pretty(&v)?)?
        }
        other => bail!("invalid type {other:?}: use config, masterkey, key, snapshot, index, lock, pack, blob or tree"),
    }
    Ok(())
}

pub fn dump(g: &GlobalOpts, a: DumpArgs) -> anyhow::Result<()> {
    let job = DumpJob {
        archive: ArchiveFormat::parse(&a.archive)?,
        snapshot: a.snapshot,
        filter: a.filter.to_filter(),
        path: a.file,
        lock: g.lock_policy(),
    };
    let mut repo = g.open()?;
    let ctl = Ui::new(g, "dump", false).control();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    dump::run(&mut repo, &job, &ctl, &mut out)?;
    out.flush()?;
    Ok(())
}

/// Where `cat` reports what it meets on the way (snapshots that cannot be read).
fn ctl(g: &GlobalOpts) -> restash_engine::events::Control {
    Ui::new(g, "cat", false).control()
}
