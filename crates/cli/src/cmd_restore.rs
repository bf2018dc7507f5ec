use clap::Args as ClapArgs;
use restash_engine::restore::{self, RestoreJob};
use restash_engine::{EngineError, Overwrite, PatternSet, RestoreOptions};

use crate::args::FilterArgs;
use crate::exit::{self, Done};
use crate::global::GlobalOpts;
use crate::ui::agent::{Agent, AgentArgs};
use crate::ui::{self, Ui};

/// `restash restore`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Snapshot id, prefix or `latest`, optionally `:subfolder`.
    pub snapshot: String,
    /// Directory to extract data to.
    #[arg(short = 't', long = "target")]
    pub target: String,
    /// Exclude a pattern (repeatable).
    #[arg(short = 'e', long = "exclude")]
    pub exclude: Vec<String>,
    /// Include a pattern, exclude everything else (repeatable).
    #[arg(short = 'i', long = "include")]
    pub include: Vec<String>,
    /// Same as --exclude but ignores the casing of filenames.
    #[arg(long = "iexclude")]
    pub iexclude: Vec<String>,
    /// Same as --include but ignores the casing of filenames.
    #[arg(long = "iinclude")]
    pub iinclude: Vec<String>,
    /// Verify restored files' content (restash always verifies every blob).
    #[arg(long)]
    pub verify: bool,
    /// Overwrite behavior, one of (always|if-changed|if-newer|never).
    #[arg(long, value_name = "behavior", default_value = "always", value_parser = parse_overwrite)]
    pub overwrite: Overwrite,
    /// Delete files from target directory if they do not exist in snapshot. Use
    /// '--dry-run -vv' to check what would be deleted.
    #[arg(long)]
    pub delete: bool,
    /// Do not write any data, just show what would be done.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// Whether the restore ended because a signal cancelled it, not because of a failure
/// that happened to come after the signal (that one is reported as it is).
fn stopped_by_signal(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<EngineError>(),
        Some(EngineError::Interrupted | EngineError::Terminated)
    )
}

fn stopped(cancel: &restash_engine::events::Cancel) -> Done {
    if cancel.is_terminated() {
        Done::Terminated
    } else {
        Done::Interrupted
    }
}

fn parse_overwrite(s: &str) -> Result<Overwrite, String> {
    s.parse().map_err(|e: EngineError| e.to_string())
}

fn job(g: &GlobalOpts, a: &Args) -> anyhow::Result<RestoreJob> {
    if a.dry_run && a.verify {
        return Err(
            EngineError::Usage("--dry-run and --verify are mutually exclusive".into()).into(),
        );
    }
    let mut options = RestoreOptions::new(&a.target);
    options.overwrite = a.overwrite;
    options.delete = a.delete;
    options.dry_run = a.dry_run;
    // restic lists every entry from `-vv` on.
    options.item_events = !g.quiet && g.verbose >= 2;
    options.include = PatternSet::parse(&a.include)?;
    options.include.add_insensitive(&a.iinclude)?;
    options.exclude = PatternSet::parse(&a.exclude)?;
    options.exclude.add_insensitive(&a.iexclude)?;
    Ok(RestoreJob {
        snapshot: a.snapshot.clone(),
        filter: a.filter.to_filter(),
        options,
        lock: g.lock_policy(),
    })
}

pub fn run(g: &GlobalOpts, mut a: Args) -> anyhow::Result<Done> {
    let agent = Agent::new("restore", &a.agent);
    if a.filter.hosts.is_empty() {
        if let Some(pvc) = &a.agent.pvc {
            a.filter.hosts.push(pvc.clone());
        }
    }
    let ui = Ui::new(g, "restore", agent.on);
    ui.set_target(&a.target);
    let ctl = ui.control();
    if agent.reports() {
        // The report is written even when a signal stops the restore.
        crate::signals::cancel_on(&ctl.cancel, false)?;
    }
    let result = job(g, &a).and_then(|job| {
        let mut repo = g.open()?;
        Ok(restore::run(&mut repo, &job, &ctl)?)
    });
    let host = a.filter.hosts.first().cloned();
    let outcome = match &result {
        Ok(s) => Ok(s),
        Err(e) if stopped_by_signal(e) => Err((
            stopped(&ctl.cancel).code() as i32,
            "interrupted: the target holds a partial restore".to_string(),
        )),
        Err(e) => Err((exit::error_code(e) as i32, exit::message(e))),
    };
    let (report, samples) = ui::restore::report(&ui, host, outcome);
    if let Ok(s) = &result {
        ui::restore::summary(&ui, s);
    }
    agent.finish(&ui, report, &samples);
    let summary = match result {
        Err(e) if stopped_by_signal(&e) => return Ok(stopped(&ctl.cancel)),
        r => r?,
    };
    if !summary.stats.errors.is_empty() {
        return Err(EngineError::Partial(summary.stats.errors).into());
    }
    Ok(Done::Ok)
}
