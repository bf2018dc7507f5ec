use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use restash_engine::archiver::Saver;
use restash_engine::copy::{already_copied, by_original, copy_tree, save_copy, CopyState};
use restash_engine::{RepoLock, Repository};

use crate::cmd_snapshots::FilterArgs;
use crate::display::go_time_string;
use crate::global::{open_backend, GlobalOpts, Secret};
use crate::snapsel::filtered_snapshots;

/// `restash copy`: the destination is `-r`, the source `--from-repo`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Snapshots to copy (ids or `latest`); all matching ones when none is given.
    pub snapshots: Vec<String>,
    /// Source repository to copy snapshots from.
    #[arg(long = "from-repo", env = "RESTIC_FROM_REPOSITORY")]
    pub from_repo: Option<String>,
    /// File from which to read the source repository location.
    #[arg(long = "from-repository-file", env = "RESTIC_FROM_REPOSITORY_FILE")]
    pub from_repository_file: Option<PathBuf>,
    /// File to read the source repository password from.
    #[arg(long = "from-password-file", env = "RESTIC_FROM_PASSWORD_FILE")]
    pub from_password_file: Option<PathBuf>,
    /// Key id of the key to try first for the source repository.
    #[arg(long = "from-key-hint", env = "RESTIC_FROM_KEY_HINT")]
    pub from_key_hint: Option<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

fn source_password(a: &Args) -> anyhow::Result<Secret> {
    if let Some(f) = &a.from_password_file {
        let s = std::fs::read_to_string(f)
            .with_context(|| format!("{} does not exist", f.display()))?;
        return Ok(Secret(s.trim().to_string()));
    }
    if let Ok(p) = std::env::var("RESTIC_FROM_PASSWORD") {
        return Ok(Secret(p));
    }
    crate::global::prompt_password("enter password for source repository: ")
}

/// Opens the source repository named by the `--from-*` flags (backend options `-o` apply
/// to it as well, as in restic).
pub fn open_source(g: &GlobalOpts, a: &Args) -> anyhow::Result<Repository> {
    let url = match (&a.from_repo, &a.from_repository_file) {
        (Some(_), Some(_)) => bail!(
            "Options --from-repo and --from-repository-file are mutually exclusive, please specify only one"
        ),
        (Some(r), None) => r.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading repository file {}", f.display()))?
            .trim_end_matches(['\n', '\r'])
            .to_string(),
        (None, None) => bail!(
            "Please specify a source repository location (--from-repo or --from-repository-file)"
        ),
    };
    let password = source_password(a)?;
    let backend = open_backend(&url, &g.options)?;
    Ok(Repository::open(
        backend,
        password.0.as_bytes(),
        a.from_key_hint.as_deref(),
    )?)
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    let mut src = open_source(g, &a)?;
    let mut dst = g.open()?;
    let _src_lock = if g.no_lock {
        None
    } else {
        Some(RepoLock::acquire(&src, false, false)?)
    };
    let _dst_lock = RepoLock::acquire(&dst, false, false)?;
    src.load_index()?;
    dst.load_index()?;
    let dst_snaps = filtered_snapshots(&dst, &a.filter, &[])?;
    let copied = by_original(&dst_snaps);
    let src_snaps = filtered_snapshots(&src, &a.filter, &a.snapshots)?;
    let verbose = !g.quiet;
    let saver = Saver::new(&dst, g.compression()?, g.pack_size()?, false);
    let mut state = CopyState::default();
    for (id, sn) in &src_snaps {
        if verbose {
            println!(
                "\nsnapshot {} of [{}] at {})",
                id.short(),
                sn.paths.join(" "),
                go_time_string(&sn.time)
            );
        }
        if let Some(existing) = already_copied(&copied, id, sn) {
            if verbose {
                println!(
                    "skipping source snapshot {}, was already copied to snapshot {}",
                    id.short(),
                    existing.short()
                );
            }
            continue;
        }
        if verbose {
            println!("  copy started, this may take a while...");
        }
        let start = std::time::Instant::now();
        let counts = copy_tree(&src, &dst, &saver, &mut state, &sn.tree)?;
        if verbose {
            // restic's final progress line when stdout is not a terminal.
            let secs = start.elapsed().as_secs();
            let t = if secs >= 3600 {
                format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
            } else {
                format!("{}:{:02}", secs / 60, secs % 60)
            };
            let n = counts.packs;
            if n == 0 {
                println!("[{t}]          0 packs copied\n");
            } else {
                println!("[{t}] 100.00%  {n} / {n} packs copied\n");
            }
        }
        let new_id = save_copy(&dst, id, sn)?;
        if verbose {
            println!("snapshot {} saved", new_id.short());
        }
    }
    Ok(())
}
