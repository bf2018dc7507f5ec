use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Args as ClapArgs;
use restash_backend::FileType;
use restash_engine::archiver::sources::{chunker_from_spec, targets};
use restash_engine::archiver::{BackupOptions, JobOptions, Source, Watchdog};
use restash_engine::forget::{retain_host, Retention};
use restash_engine::{EngineError, LockPolicy, Repository};
use restash_format::SnapshotId;

use crate::exit::Done;
use crate::global::GlobalOpts;
use crate::select_args::SelectArgs;
use crate::ui::agent::{Agent, AgentArgs};
use crate::ui::termlog::Report;
use crate::ui::{self, Ui};

/// `restash backup`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Files and directories to back up.
    pub paths: Vec<PathBuf>,
    /// Host name for the snapshot (default: this machine's).
    #[arg(short = 'H', long = "host", env = "RESTIC_HOST")]
    pub host: Option<String>,
    /// Tags for the snapshot (comma-separated, repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Parent snapshot (default: latest of the same host and paths).
    #[arg(long)]
    pub parent: Option<String>,
    /// Read every file, ignoring the parent.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Skip snapshot creation if identical to parent snapshot.
    #[arg(long = "skip-if-unchanged")]
    pub skip_if_unchanged: bool,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Read the data from standard input.
    #[arg(long)]
    pub stdin: bool,
    /// File name for --stdin.
    #[arg(long = "stdin-filename", default_value = "stdin")]
    pub stdin_filename: String,
    /// Do not write anything; report what would be done.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// Store the real access times.
    #[arg(long = "with-atime")]
    pub with_atime: bool,
    /// Chunker: `rabin` (restic's, default) or `fastcdc[:MIN,AVG,MAX]` (sizes like 512K,1M,8M).
    #[arg(long, default_value = "rabin")]
    pub chunker: String,
    /// After SIGTERM, seconds to wait for in-flight uploads before abandoning them (the
    /// next backup adopts what arrived); keep it below the pod's termination grace period.
    #[arg(long = "term-grace", env = "RESTASH_TERM_GRACE", default_value = "15")]
    pub term_grace: u64,
    #[command(flatten)]
    pub agent: AgentArgs,
    /// After the snapshot is saved, remove this host's snapshots that the --keep-* policy
    /// does not keep (like `restic forget --host H --keep-…`); prune stays a separate job.
    #[arg(long)]
    pub forget: bool,
    /// Seconds `--forget` waits for other processes' locks to go.
    #[arg(long = "forget-lock-wait", default_value = "300")]
    pub forget_lock_wait: u64,
    #[command(flatten)]
    pub keep: crate::args::KeepArgs,
    /// Neither use nor write parent hints (`restash/hints/`, which restic ignores): find
    /// the parent among every snapshot and deduplicate against the whole index, as restic
    /// does. With hints, a backup of a volume in a repository that many volumes share reads
    /// its own parent and blobs only; new data is then deduplicated against its own blobs.
    #[arg(long = "no-parent-hint", env = "RESTASH_NO_PARENT_HINT")]
    pub no_parent_hint: bool,
}

/// The snapshot host: `--host`, else the PVC's name (never the pod's host name, which
/// changes with every Job run), else this machine's name as restic does.
fn host(a: &Args) -> String {
    match (&a.host, &a.agent.pvc) {
        (Some(h), _) => h.clone(),
        (None, Some(pvc)) => pvc.clone(),
        (None, None) => restash_engine::whoami::host_name(),
    }
}

fn options(g: &GlobalOpts, a: &Args) -> anyhow::Result<BackupOptions> {
    let mut o = BackupOptions::new(host(a));
    o.tags = a
        .tags
        .iter()
        .flat_map(|t| t.split(','))
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    if let Some(pvc) = &a.agent.pvc {
        let tag = format!("pvc={pvc}");
        if !o.tags.contains(&tag) {
            o.tags.push(tag);
        }
    }
    a.select.apply(&mut o)?;
    o.force = a.force;
    o.skip_if_unchanged = a.skip_if_unchanged;
    o.dry_run = a.dry_run;
    o.with_atime = a.with_atime;
    o.compression = g.compression()?;
    o.pack_size = g.pack_size()?;
    o.chunker = chunker_from_spec(&a.chunker)?;
    Ok(o)
}

fn source(a: &Args) -> anyhow::Result<Source> {
    if a.stdin {
        if !a.paths.is_empty() {
            bail!("--stdin was specified and files/dirs were listed as arguments");
        }
        return Ok(Source::Stdin {
            name: a.stdin_filename.clone(),
            reader: Box::new(std::io::stdin()),
        });
    }
    let (p, skipped) = targets(&a.paths, &a.select.lists())?;
    for s in skipped {
        eprintln!("{s}");
    }
    if p.is_empty() {
        bail!("nothing to backup, please specify target files/dirs");
    }
    Ok(Source::Paths(p))
}

fn job(g: &GlobalOpts, a: &Args, agent: &Agent, watchdog: Watchdog) -> JobOptions {
    JobOptions {
        lock: LockPolicy {
            // A pod killed on a drained node never removes its lock; after restic's
            // stale limit nobody refreshes it, so it is safe to clear.
            remove_stale: agent.on,
            ignore_stale: agent.on,
            ..g.lock_policy()
        },
        parent: a.parent.clone(),
        watchdog: Some(watchdog),
        parent_hints: !a.no_parent_hint,
    }
}

/// `--forget`: the keep policy on this host's snapshots, after the backup released its lock,
/// in the repository the backup opened.
fn retention(
    g: &GlobalOpts,
    a: &Args,
    agent: &Agent,
    ui: &Ui,
    repo: &Repository,
    host: &str,
    latest: Option<SnapshotId>,
) -> anyhow::Result<Retention> {
    // With the latest snapshot's hint, the policy needs no listing of every snapshot.
    let latest = latest.filter(|_| !a.no_parent_hint);
    // `--retry-lock` when it is longer: a Job told to wait for a prune waits here too.
    let lock = LockPolicy {
        wait: Duration::from_secs(a.forget_lock_wait).max(g.retry_lock.unwrap_or_default()),
        ignore_stale: agent.on,
        ..g.write_lock_policy()
    };
    let ctl = ui.step("forget").control();
    let r =
        retain_host(repo, host, latest, &a.keep.policy(), &lock, &ctl).map_err(|e| match e {
            e @ EngineError::Locked(_) => {
                anyhow::Error::new(e).context("forget: cannot lock the repository exclusively")
            }
            e => e.into(),
        })?;
    Ok(r)
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<Done> {
    let agent = Agent::new("backup", &a.agent);
    if a.forget && a.keep.policy().is_empty() {
        bail!("--forget needs a policy: at least one --keep-* option");
    }
    if !a.forget && !a.keep.policy().is_empty() {
        bail!("--keep-* options need --forget");
    }
    let ui = Ui::new(g, "backup", agent.on);
    let host = host(&a);
    let fail = |e: anyhow::Error| {
        let report = Report {
            host: Some(host.clone()),
            ..Default::default()
        };
        agent.fail(&ui, report, &[], e)
    };
    let opts = options(g, &a).map_err(fail)?;
    let ctl = ui.control();
    crate::signals::cancel_on(&ctl.cancel, true).map_err(fail)?;
    // Started before the repository is opened (see Watchdog).
    let grace = Duration::from_secs(a.term_grace);
    let watchdog = ui::backup::watchdog(&agent, &ui, &host, grace, &ctl).map_err(fail)?;
    let source = source(&a).map_err(fail)?;
    // A backup that looks for its parent hint lists neither snapshots nor index files
    // unless the hint fails it: in a shared repository those listings grow with the fleet.
    let by_hint = !a.no_parent_hint && !a.stdin && !a.dry_run && !a.force && a.parent.is_none();
    let ahead: &[FileType] = if by_hint {
        &[]
    } else {
        &[FileType::Snapshot, FileType::Index]
    };
    let mut repo = g.open_listing(true, ahead).map_err(fail)?;
    if agent.on {
        ui::backup::announce(&ui, &opts, &source);
    }
    let job = job(g, &a, &agent, watchdog);
    let summary = match restash_engine::archiver::run(&mut repo, source, opts, &job, &ctl) {
        Ok(s) => s,
        Err(e @ (EngineError::Terminated | EngineError::Abandoned { .. })) => {
            let report = ui::backup::stopped(&ui, &host, &e);
            agent.finish(&ui, report, &[]);
            return Ok(Done::Terminated);
        }
        Err(e) => return Err(fail(e.into())),
    };
    ui::backup::summary(&ui, &summary, a.dry_run);
    let done = if summary.errors.is_empty() {
        Done::Ok
    } else {
        Done::Partial
    };
    let (mut report, samples) = ui::backup::report(&summary, &host, done.code() as i32);
    // An unchanged volume still has its policy applied: its snapshots age all the same.
    if a.forget && (summary.snapshot_id.is_some() || summary.skipped_unchanged) {
        let latest = summary.snapshot_id.or(summary.parent);
        match retention(g, &a, &agent, &ui, &repo, &host, latest) {
            Ok(r) => ui::backup::retention(&ui, &host, &r, &mut report),
            // The snapshot is saved, but the Job did not do all it was asked.
            Err(e) => {
                let e = match summary.skipped_unchanged {
                    false => e.context("snapshot saved, but --forget failed"),
                    true => e.context("nothing changed (no new snapshot), but --forget failed"),
                };
                return Err(agent.fail(&ui, report, &samples, e));
            }
        }
    }
    if done == Done::Partial {
        ui::backup::partial(&ui);
    }
    agent.finish(&ui, report, &samples);
    Ok(done)
}
