use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use restash_chunker::{ChunkerParams, FastCdcParams};
use restash_engine::archiver::{BackupOptions, JobOptions, Source};
use restash_engine::events::{Cancel, Event, EventSink, Phase};
use restash_engine::{EngineError, LockPolicy, PatternSet};
use serde_json::json;

use crate::exit::{self, Done};
use crate::global::GlobalOpts;
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
    /// Exclude a pattern (repeatable).
    #[arg(short = 'e', long = "exclude")]
    pub exclude: Vec<String>,
    /// Like --exclude, ignoring case.
    #[arg(long = "iexclude")]
    pub iexclude: Vec<String>,
    /// Read exclude patterns from a file (repeatable).
    #[arg(long = "exclude-file")]
    pub exclude_file: Vec<PathBuf>,
    /// Read case-insensitive exclude patterns from a file (repeatable).
    #[arg(long = "iexclude-file")]
    pub iexclude_file: Vec<PathBuf>,
    /// Exclude directories holding this file (`name[:header]`, repeatable).
    #[arg(long = "exclude-if-present")]
    pub exclude_if_present: Vec<String>,
    /// Exclude CACHEDIR.TAG directories.
    #[arg(long = "exclude-caches")]
    pub exclude_caches: bool,
    /// Exclude files larger than this size (e.g. 100M, 2G).
    #[arg(long = "exclude-larger-than")]
    pub exclude_larger_than: Option<String>,
    /// Stay on the file system of each target.
    #[arg(short = 'x', long = "one-file-system")]
    pub one_file_system: bool,
    /// Read the paths to back up from a file, one per line ('#' comments).
    #[arg(long = "files-from")]
    pub files_from: Vec<PathBuf>,
    /// Read the paths from a file, one per line, taken literally.
    #[arg(long = "files-from-verbatim")]
    pub files_from_verbatim: Vec<PathBuf>,
    /// Read NUL-separated paths from a file.
    #[arg(long = "files-from-raw")]
    pub files_from_raw: Vec<PathBuf>,
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
    pub keep: crate::cmd_forget::KeepArgs,
}

/// Parses restic's size strings: a number with an optional k/m/g/t suffix (binary units).
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_lowercase()) {
        Some('k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('m') => (&s[..s.len() - 1], 1 << 20),
        Some('g') => (&s[..s.len() - 1], 1 << 30),
        Some('t') => (&s[..s.len() - 1], 1 << 40),
        Some('b') => (&s[..s.len() - 1], 1),
        _ => (s, 1),
    };
    let n: u64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    Ok(n * mult)
}

fn read_lines(path: &PathBuf, comments: bool) -> anyhow::Result<Vec<String>> {
    let f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut out = Vec::new();
    for line in std::io::BufReader::new(f).lines() {
        let line = line?;
        let t = if comments { line.trim() } else { line.as_str() };
        if t.is_empty() || (comments && t.starts_with('#')) {
            continue;
        }
        out.push(t.to_string());
    }
    Ok(out)
}

fn chunker(spec: &str) -> anyhow::Result<Option<ChunkerParams>> {
    let (name, sizes) = spec.split_once(':').unwrap_or((spec, ""));
    match name {
        "rabin" if sizes.is_empty() => Ok(None),
        "fastcdc" if sizes.is_empty() => Ok(Some(FastCdcParams::default().into())),
        "fastcdc" => {
            let v: Vec<u64> = sizes
                .split(',')
                .map(parse_size)
                .collect::<anyhow::Result<_>>()?;
            let [min, avg, max] = v[..] else {
                bail!("--chunker fastcdc:MIN,AVG,MAX needs three sizes");
            };
            let p = FastCdcParams::new(min as u32, avg as u32, max as u32)?;
            Ok(Some(p.into()))
        }
        _ => bail!("unknown chunker {spec:?} (rabin or fastcdc[:MIN,AVG,MAX])"),
    }
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
    let mut excludes = a.exclude.clone();
    for f in &a.exclude_file {
        excludes.extend(read_lines(f, true)?);
    }
    let mut iexcludes = a.iexclude.clone();
    for f in &a.iexclude_file {
        iexcludes.extend(read_lines(f, true)?);
    }
    o.excludes = PatternSet::parse(&excludes)?;
    o.excludes.add_insensitive(&iexcludes)?;
    // restic 0.14 records only the --exclude patterns in the snapshot.
    o.exclude_strings = a.exclude.clone();
    o.exclude_if_present = a.exclude_if_present.clone();
    if a.exclude_caches {
        o.exclude_if_present
            .push("CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55".into());
    }
    o.exclude_larger_than = a
        .exclude_larger_than
        .as_deref()
        .map(parse_size)
        .transpose()?;
    o.one_file_system = a.one_file_system;
    o.force = a.force;
    o.dry_run = a.dry_run;
    o.with_atime = a.with_atime;
    o.compression = g.compression()?;
    o.pack_size = g.pack_size()?;
    o.chunker = chunker(&a.chunker)?;
    Ok(o)
}

/// restic's `--files-from`: each line is trimmed and may be a glob pattern; a pattern that
/// matches nothing is reported and skipped.
fn expand_files_from(lines: Vec<String>, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for line in lines {
        if !line.contains(['*', '?', '[']) {
            out.push(PathBuf::from(line));
            continue;
        }
        let mut found = false;
        for entry in glob::glob(&line).with_context(|| format!("invalid pattern {line:?}"))? {
            out.push(entry?);
            found = true;
        }
        if !found {
            eprintln!("pattern {line:?} does not match any files, skipping");
        }
    }
    Ok(())
}

fn paths(a: &Args) -> anyhow::Result<Vec<PathBuf>> {
    let mut p = a.paths.clone();
    for f in &a.files_from {
        expand_files_from(read_lines(f, true)?, &mut p)?;
    }
    for f in &a.files_from_verbatim {
        p.extend(read_lines(f, false)?.into_iter().map(PathBuf::from));
    }
    for f in &a.files_from_raw {
        use std::os::unix::ffi::OsStrExt;
        let data = std::fs::read(f).with_context(|| format!("open {}", f.display()))?;
        p.extend(
            data.split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| PathBuf::from(std::ffi::OsStr::from_bytes(s))),
        );
    }
    Ok(p)
}

/// SIGINT and SIGTERM cancel the backup; a second signal while the first is handled
/// ends the process at once.
fn signals(cancel: &Cancel) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let (stop, term) = cancel.flags();
    signal_hook::flag::register_conditional_shutdown(SIGINT, 130, stop.clone())?;
    signal_hook::flag::register_conditional_shutdown(SIGTERM, 143, stop.clone())?;
    signal_hook::flag::register(SIGINT, stop.clone())?;
    signal_hook::flag::register(SIGTERM, stop)?;
    signal_hook::flag::register(SIGTERM, term)?;
    Ok(())
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
    let p = paths(a)?;
    if p.is_empty() {
        bail!("nothing to backup, please specify target files/dirs");
    }
    Ok(Source::Paths(p))
}

fn job(g: &GlobalOpts, a: &Args, agent: &Agent) -> JobOptions {
    JobOptions {
        lock: LockPolicy {
            skip: g.no_lock,
            // A pod killed on a drained node never removes its lock; after restic's
            // stale limit nobody refreshes it, so it is safe to clear.
            remove_stale: agent.on,
            ignore_stale: agent.on,
            ..Default::default()
        },
        parent: a.parent.clone(),
        term_grace: Some(Duration::from_secs(a.term_grace)),
    }
}

/// `--forget`: the keep policy on this host's snapshots, after the backup released its lock.
fn retention(
    g: &GlobalOpts,
    a: &Args,
    agent: &Agent,
    ui: &Ui,
    host: &str,
) -> anyhow::Result<crate::cmd_forget::Retention> {
    let repo = g.open()?;
    let wait = Duration::from_secs(a.forget_lock_wait);
    let step = ui.step("forget");
    let r = crate::cmd_forget::forget_host(&repo, host, &a.keep, agent.on, wait, |why| {
        step.event(&Event::Blocked { reason: why })
    })?;
    ui::backup::retention(ui, host, &r);
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
    let fail = |e: anyhow::Error| -> anyhow::Error {
        let report = Report {
            exit_code: exit::error_code(&e) as i32,
            host: Some(host.clone()),
            fatal: Some(exit::message(&e)),
            ..Default::default()
        };
        agent.finish(&ui, report, &[]);
        e
    };
    let opts = options(g, &a).map_err(fail)?;
    let ctl = ui.control();
    signals(&ctl.cancel).map_err(fail)?;
    let source = source(&a).map_err(fail)?;
    let repo = g.open().map_err(fail)?;
    if agent.on {
        let paths: Vec<String> = match &source {
            Source::Paths(p) => p.iter().map(|p| p.display().to_string()).collect(),
            Source::Stdin { name, .. } => vec![format!("/{name}")],
        };
        ui.announce(
            Phase::Backup,
            "backup started",
            json!({"host": opts.host, "tags": opts.tags, "paths": paths}),
        );
    }
    let summary = match restash_engine::archiver::run(repo, source, opts, &job(g, &a, &agent), &ctl)
    {
        Ok(s) => s,
        Err(EngineError::Terminated) => {
            ui.notice(
                "terminated: uploaded data was indexed and will be reused by the next backup",
            );
            let report = ui::backup::terminated_report(&ui, &host, "terminated by SIGTERM");
            agent.finish(&ui, report, &[]);
            return Ok(Done::Terminated);
        }
        Err(e @ EngineError::Abandoned { .. }) => {
            let why = e.to_string();
            ui.log.warn(&why, serde_json::Value::Null);
            agent.finish(&ui, ui::backup::terminated_report(&ui, &host, &why), &[]);
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
    if a.forget && summary.snapshot_id.is_some() {
        match retention(g, &a, &agent, &ui, &host) {
            Ok(r) => {
                report.counters.push(("snapshots_kept", r.kept as u64));
                report
                    .counters
                    .push(("snapshots_removed", r.removed.len() as u64));
            }
            Err(e) => {
                // The snapshot is saved, but the Job did not do all it was asked.
                let e = e.context("snapshot saved, but --forget failed");
                report.exit_code = exit::error_code(&e) as i32;
                report.fatal = Some(exit::message(&e));
                agent.finish(&ui, report, &samples);
                return Err(e);
            }
        }
    }
    if done == Done::Partial {
        ui::backup::partial(&ui);
    }
    agent.finish(&ui, report, &samples);
    Ok(done)
}
