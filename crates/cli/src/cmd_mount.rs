//! `restash mount`: the repository as a read-only file system, laid out as restic's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use restash_engine::events::Cancel;
use restash_engine::Snapshots;
use restash_mount::{MountModel, MountOptions, Settings};

use crate::args::FilterArgs;
use crate::exit::Done;
use crate::global::GlobalOpts;

/// `restash mount`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Where to mount: an existing directory.
    pub mountpoint: PathBuf,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Allow other users to access the data in the mounted directory.
    #[arg(long)]
    pub allow_other: bool,
    /// For --allow-other, ignore Unix permissions and allow users to read all snapshot files.
    #[arg(long)]
    pub no_default_permissions: bool,
    /// Use 'root' as the owner of files and dirs.
    #[arg(long)]
    pub owner_root: bool,
    /// Set template for path names (repeatable; %i %I %u %h %t %T).
    #[arg(long = "path-template", value_name = "template")]
    pub path_templates: Vec<String>,
    /// Set template to use for times (a Go time layout).
    #[arg(
        long = "time-template",
        value_name = "template",
        default_value = restash_mount::layout::DEFAULT_TIME_TEMPLATE
    )]
    pub time_template: String,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<Done> {
    let mp = &a.mountpoint;
    match std::fs::metadata(mp) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("Mountpoint {} is not a directory", mp.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("Mountpoint {} doesn't exist", mp.display())
        }
        Err(e) => return Err(e).with_context(|| format!("Mountpoint {}", mp.display())),
    }
    let mut repo = g.open()?;
    // The lock is taken and the snapshots listed while the index loads: their round trips
    // overlap. restic holds its read lock for as long as the repository is mounted.
    let (locked, index) = repo.load_index_with(|repo| {
        let lock = g.read_lock(repo, "mount")?;
        let all = Snapshots::load(repo).context("load snapshots")?;
        anyhow::Ok((lock, all))
    });
    let (_lock, all) = locked?;
    index?;
    let mut settings = Settings {
        filter: a.filter.to_filter(),
        owner_root: a.owner_root,
        time_template: a.time_template,
        ..Settings::default()
    };
    if !a.path_templates.is_empty() {
        settings.templates = a.path_templates;
    }
    let warn = Box::new(|w: &str| eprintln!("{w}"));
    let model = Arc::new(MountModel::with_snapshots(repo, settings, warn, all)?);
    let cancel = Cancel::new();
    crate::signals::cancel_on(&cancel, true)?;
    let opts = MountOptions {
        allow_other: a.allow_other,
        no_default_permissions: a.no_default_permissions,
    };
    let session = restash_mount::spawn(model, mp, opts)
        .with_context(|| format!("unable to mount {}", mp.display()))?;
    println!("Now serving the repository at {}", mp.display());
    println!("Use another terminal or tool to browse the contents of this folder.");
    println!("When finished, quit with Ctrl-c here or umount the mountpoint.");
    // An unmount from elsewhere (fusermount3 -u) ends the session thread too.
    while !cancel.is_cancelled() && !session.guard.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    if session.guard.is_finished() {
        session
            .join()
            .with_context(|| format!("serving {}", mp.display()))?;
        return Ok(Done::Ok);
    }
    session
        .umount_and_join()
        .with_context(|| format!("unable to umount {}", mp.display()))?;
    // restic ends a mount stopped by Ctrl-C with 130, as every command a signal stops.
    Ok(match cancel.is_terminated() {
        true => Done::Terminated,
        false => Done::Interrupted,
    })
}
