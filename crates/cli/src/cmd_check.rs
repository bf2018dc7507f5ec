//! `restash check`, and the reporter that prints check and repair messages where restic
//! prints them.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args as ClapArgs;
use restash_engine::check::{check, CheckOptions, ReadDataSubset, Reporter};
use restash_engine::{EngineError, RepoLock};

use crate::global::GlobalOpts;

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
pub struct CliReporter {
    verbosity: u8,
    progress: Option<Mutex<ProgressLine>>,
}

pub struct ProgressLine {
    started: Instant,
    last: Option<Instant>,
    shown: bool,
}

impl CliReporter {
    pub fn new(g: &GlobalOpts) -> Self {
        let verbosity = if g.quiet { 0 } else { 1 + g.verbose };
        let progress = (!g.quiet && !g.json && std::io::stderr().is_terminal()).then(|| {
            Mutex::new(ProgressLine {
                started: Instant::now(),
                last: None,
                shown: false,
            })
        });
        CliReporter {
            verbosity,
            progress,
        }
    }

    fn clear_progress(&self) {
        if let Some(p) = &self.progress {
            let mut p = p.lock().expect("progress");
            if p.shown {
                eprint!("\r\x1b[2K");
                p.shown = false;
            }
        }
    }
}

impl Reporter for CliReporter {
    fn info(&self, level: u8, msg: &str) {
        if level == 0 || self.verbosity >= level {
            self.clear_progress();
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{msg}");
            let _ = out.flush();
        }
    }

    fn warn(&self, msg: &str) {
        self.clear_progress();
        eprintln!("{msg}");
    }

    fn progress(&self, unit: &str, done: u64, total: u64) {
        let Some(p) = &self.progress else { return };
        let mut p = p.lock().expect("progress");
        let now = Instant::now();
        if p.last.is_none() {
            p.started = now;
        }
        if done < total && p.last.is_some_and(|l| now - l < Duration::from_millis(100)) {
            return;
        }
        p.last = Some(now);
        let secs = (now - p.started).as_secs();
        let status = if total == 0 {
            format!("[{}:{:02}]          {done} {unit}", secs / 60, secs % 60)
        } else {
            format!(
                "[{}:{:02}] {:.2}%  {done} / {total} {unit}",
                secs / 60,
                secs % 60,
                done as f64 * 100.0 / total as f64
            )
        };
        eprint!("\r\x1b[2K{status}");
        p.shown = true;
    }

    fn progress_done(&self) {
        self.clear_progress();
        if let Some(p) = &self.progress {
            p.lock().expect("progress").last = None;
        }
    }
}

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
    let rep = CliReporter::new(g);
    // check judges the repository's own files, not verified copies of what they once were:
    // restic's check also leaves the cache alone unless asked (`--with-cache`).
    let mut repo = g.open_with_cache(a.with_cache)?;
    let _lock = if g.no_lock {
        None
    } else {
        // restic 0.14 checks under an exclusive lock.
        rep.info(1, "create exclusive lock for repository");
        Some(RepoLock::acquire(&repo, true, false)?)
    };
    let opts = CheckOptions {
        read_data,
        check_unused: a.check_unused,
    };
    let outcome = check(&mut repo, &opts, &rep)?;
    if outcome.errors_found {
        return Err(EngineError::Corrupt("repository contains errors".into()).into());
    }
    Ok(())
}
