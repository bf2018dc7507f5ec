//! `restash check`.

use anyhow::bail;
use clap::Args as ClapArgs;
use restash_engine::check::{check, CheckOptions, ReadDataSubset};
use restash_engine::{EngineError, RepoLock};

use crate::global::GlobalOpts;
use crate::ui::Ui;

/// `restash check`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Read all data blobs.
    #[arg(long = "read-data")]
    pub read_data: bool,
    /// Read a subset of data packs: `n/t` for a specific group, `x%` or `x.y%` or a size
    /// with suffix k/K, m/M, g/G, t/T for a random subset.
    #[arg(long = "read-data-subset", value_name = "subset")]
    pub read_data_subset: Option<String>,
    /// Find unused blobs (reported as errors, as restic up to 0.13 did).
    #[arg(long = "check-unused")]
    pub check_unused: bool,
    /// Check through the local cache instead of reading the repository itself.
    #[arg(long = "with-cache")]
    pub with_cache: bool,
    /// check takes no arguments; kept to give restic's message.
    #[arg(hide = true)]
    pub args: Vec<String>,
}

/// Prints messages like restic: `Printf` always, `Verbosef` unless quiet, `Verboseff`
/// with -v, problems on stderr, and a progress line on stderr when it is a terminal.
pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    if !a.args.is_empty() {
        bail!("the check command expects no arguments, only options - please see `restic help check` for usage and flags");
    }
    if a.read_data && a.read_data_subset.is_some() {
        bail!("check flags --read-data and --read-data-subset cannot be used together");
    }
    let read_data = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => Some(ReadDataSubset::parse(s)?),
        (None, true) => Some(ReadDataSubset::All),
        (None, false) => None,
    };
    let ui = Ui::new(g, "check", false);
    let ctl = ui.control();
    // check judges the repository's own files, not verified copies of what they once were:
    // restic's check also leaves the cache alone unless asked (`--with-cache`).
    let mut repo = g.open_with_cache(a.with_cache)?;
    if !g.no_lock {
        // restic 0.14 checks under an exclusive lock.
        ctl.say(1, "create exclusive lock for repository");
    }
    let _lock = RepoLock::take(&repo, true, &g.lock_policy(), &ctl)?;
    let opts = CheckOptions {
        read_data,
        check_unused: a.check_unused,
    };
    let outcome = check(&mut repo, &opts, &ctl)?;
    if outcome.errors_found {
        return Err(EngineError::Corrupt("repository contains errors".into()).into());
    }
    Ok(())
}
