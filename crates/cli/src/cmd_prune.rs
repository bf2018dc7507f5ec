//! `restash prune`: restic 0.14's prune, with its flags and its output.

use clap::Args as ClapArgs;
use restash_engine::prune::prune_locked;
use restash_engine::EngineError;

use crate::args::PruneFlags;
use crate::global::GlobalOpts;
use crate::ui::Ui;

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
pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    let opts = a.flags.options(g, a.dry_run)?;
    let ctl = Ui::new(g, "prune", false).control();
    // SIGINT/SIGTERM stop prune at a safe point and release the lock (exit 130); a second
    // signal ends the process at once.
    crate::signals::interrupt_on(&ctl.cancel)?;
    let mut repo = g.open()?;
    match prune_locked(&mut repo, &opts, &g.write_lock_policy(), &ctl) {
        Ok(_) => Ok(()),
        // restic's wording; the exit code (11) comes from the engine error in the chain.
        Err(e @ EngineError::Locked(_)) => {
            Err(anyhow::Error::new(e).context("unable to create lock in backend"))
        }
        Err(e) => Err(e.into()),
    }
}
