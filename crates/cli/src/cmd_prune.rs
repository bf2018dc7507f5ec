//! `restash prune`: restic 0.14's prune, with its flags and its output.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Args as ClapArgs;
use restash_engine::prune::{prune_locked, MaxUnused, Msg, PruneOptions};
use restash_engine::units::parse_size;
use restash_engine::EngineError;
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::global::GlobalOpts;

/// `restash prune`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Do not modify the repository, just print what would be done.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    #[command(flatten)]
    pub flags: PruneFlags,
}

/// The prune flags `forget --prune` accepts as well.
#[derive(ClapArgs, Debug, Clone)]
pub struct PruneFlags {
    /// Tolerate given limit of unused data (absolute value in bytes with suffixes k/K, m/M,
    /// g/G, t/T, a value in % or the word 'unlimited').
    #[arg(long = "max-unused", default_value = "5%")]
    pub max_unused: String,
    /// Maximum size to repack (allowed suffixes: k/K, m/M, g/G, t/T).
    #[arg(long = "max-repack-size")]
    pub max_repack_size: Option<String>,
    /// Only repack packs which are cacheable.
    #[arg(long = "repack-cacheable-only")]
    pub repack_cacheable_only: bool,
    /// Repack pack files below 80% of target pack size.
    #[arg(long = "repack-small")]
    pub repack_small: bool,
    /// Repack all uncompressed data.
    #[arg(long = "repack-uncompressed")]
    pub repack_uncompressed: bool,
}

/// The prune options the flags describe.
pub fn options(g: &GlobalOpts, dry_run: bool, a: &PruneFlags) -> anyhow::Result<PruneOptions> {
    Ok(PruneOptions {
        dry_run,
        max_unused: MaxUnused::parse(&a.max_unused)?,
        max_repack_bytes: match &a.max_repack_size {
            Some(s) => parse_size(s)?,
            None => u64::MAX,
        },
        repack_cacheable_only: a.repack_cacheable_only,
        repack_small: a.repack_small,
        repack_uncompressed: a.repack_uncompressed,
        pack_size: g.pack_size()?,
        compression: g.compression()?,
        ignore_snapshots: Vec::new(),
        interrupt: None,
    })
}

/// Prints engine messages with restic's verbosity levels: default 1, `-q` 0, `-v` 2.
pub fn printer(g: &GlobalOpts) -> impl FnMut(Msg) {
    let verbosity = if g.quiet { 0 } else { 1 + g.verbose as u32 };
    // restic shows a finished bar with the time the phase took, then a blank line.
    let mut phase = std::time::Instant::now();
    move |m| match m {
        Msg::Info(s) if verbosity >= 1 => {
            phase = std::time::Instant::now();
            say(&s)
        }
        Msg::Detail(s) if verbosity >= 2 => say(&s),
        Msg::Warn(s) => eprintln!("{s}"),
        Msg::Progress(done, total, what) if verbosity >= 1 && done == total => {
            let secs = phase.elapsed().as_secs();
            let pct = if total == 0 {
                100.0
            } else {
                100.0 * done as f64 / total as f64
            };
            say(&format!(
                "[{}:{:02}] {pct:.2}%  {done} / {total} {what}\n",
                secs / 60,
                secs % 60
            ));
        }
        _ => {}
    }
}

/// A closed stdout must not stop a prune half way: output is best effort.
fn say(s: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{s}");
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    let mut opts = options(g, a.dry_run, &a.flags)?;
    // SIGINT/SIGTERM stop prune at a safe point and release the lock (exit 130); a second
    // signal ends the process at once.
    let interrupt = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, interrupt.clone())?;
        signal_hook::flag::register(sig, interrupt.clone())?;
    }
    opts.interrupt = Some(interrupt);
    let mut repo = g.open()?;
    let mut out = printer(g);
    match prune_locked(&mut repo, &opts, &mut out) {
        Ok(_) => Ok(()),
        // restic's wording; the exit code (11) comes from the engine error in the chain.
        Err(e @ EngineError::Locked(_)) => {
            Err(anyhow::Error::new(e).context("unable to create lock in backend"))
        }
        Err(e) => Err(e.into()),
    }
}
