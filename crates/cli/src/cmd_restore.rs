use anyhow::Context;
use clap::Args as ClapArgs;
use restash_engine::{find_subtree, EngineError, PatternSet, RestoreOptions};

use crate::agent::metrics::Sample;
use crate::agent::termlog::Report;
use crate::agent::{failure, Agent, AgentArgs};
use crate::cmd_snapshots::FilterArgs;
use crate::display::go_time_string;
use crate::global::GlobalOpts;

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
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// What the report says about the restore before it is done: the snapshot and its host.
#[derive(Default, Clone)]
struct Chosen {
    id: Option<String>,
    host: Option<String>,
}

/// A SIGTERM or SIGINT during a reported restore still leaves a termination log and
/// metrics (status `interrupted`) before the process ends with 143 or 130.
fn report_signals(agent: &Agent, chosen: &std::sync::Arc<std::sync::Mutex<Chosen>>) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    let agent = agent.clone();
    let chosen = chosen.clone();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let code = if sig == SIGTERM { 143 } else { 130 };
            let c = chosen.lock().map(|c| c.clone()).unwrap_or_default();
            agent.finish(
                Report {
                    exit_code: code,
                    host: c.host,
                    snapshot_id: c.id,
                    fatal: Some("interrupted: the target holds a partial restore".into()),
                    ..Default::default()
                },
                &[],
            );
            std::process::exit(code);
        }
    });
}

pub fn run(g: &GlobalOpts, mut a: Args) -> anyhow::Result<()> {
    let agent = Agent::new("restore", g, &a.agent);
    if a.filter.hosts.is_empty() {
        if let Some(pvc) = &a.agent.pvc {
            a.filter.hosts.push(pvc.clone());
        }
    }
    let chosen = std::sync::Arc::new(std::sync::Mutex::new(Chosen {
        id: None,
        host: a.filter.hosts.first().cloned(),
    }));
    if agent.reports() {
        report_signals(&agent, &chosen);
    }
    let result = restore_run(g, &a, &agent, &chosen);
    let c = chosen.lock().map(|c| c.clone()).unwrap_or_default();
    let mut report = Report {
        host: c.host,
        snapshot_id: c.id,
        ..Default::default()
    };
    let mut samples = Vec::new();
    match &result {
        Ok(stats) => {
            report.exit_code = if stats.errors.is_empty() { 0 } else { 3 };
            report.counters = vec![
                ("files_restored", stats.files),
                ("dirs_restored", stats.dirs),
                ("others_restored", stats.others),
                ("bytes_restored", stats.bytes),
            ];
            report.errors = stats.errors.clone();
            samples = vec![
                Sample::new("files", "Files the last restore wrote.", stats.files as f64),
                Sample::new(
                    "bytes",
                    "Content bytes the last restore wrote.",
                    stats.bytes as f64,
                ),
            ];
        }
        Err(e) => {
            let (code, msg) = failure(e);
            report.exit_code = code;
            report.fatal = Some(msg);
        }
    }
    if let Ok(stats) = &result {
        for e in &stats.errors {
            if agent.json_logs() {
                agent
                    .log
                    .error("cannot restore", serde_json::json!({ "error": e }));
            } else {
                eprintln!("ignoring error: {e}");
            }
        }
        if g.json {
            println!(
                "{}",
                serde_json::json!({
                    "message_type": "summary",
                    "total_files": stats.files,
                    "total_dirs": stats.dirs,
                    "total_bytes": stats.bytes,
                    "errors": stats.errors.len(),
                })
            );
        } else if agent.json_logs() {
            agent.log.info("restore finished", serde_json::Value::Null);
        }
    }
    agent.finish(report, &samples);
    let stats = result?;
    if !stats.errors.is_empty() {
        return Err(EngineError::Partial(stats.errors).into());
    }
    Ok(())
}

fn restore_run(
    g: &GlobalOpts,
    a: &Args,
    agent: &Agent,
    chosen: &std::sync::Mutex<Chosen>,
) -> anyhow::Result<restash_engine::RestoreStats> {
    let mut repo = g.open()?;
    let (spec, sub) = a.snapshot.split_once(':').unwrap_or((&a.snapshot, ""));
    let (selected, index) =
        repo.load_index_with(|repo| crate::snapsel::resolve(repo, spec, &a.filter.to_filter()));
    let (id, snap) = selected?;
    if let Ok(mut c) = chosen.lock() {
        c.id = Some(id.to_string());
        c.host = Some(snap.hostname.clone());
    }
    index.context("loading index")?;
    let root = find_subtree(&repo, &snap.tree, sub)?;
    let mut opts = RestoreOptions::new(&a.target);
    opts.include = PatternSet::parse(&a.include)?;
    opts.include.add_insensitive(&a.iinclude)?;
    opts.exclude = PatternSet::parse(&a.exclude)?;
    opts.exclude.add_insensitive(&a.iexclude)?;
    if agent.json_logs() {
        agent.log.info(
            "restore started",
            serde_json::json!({
                "snapshot_id": id.to_string(),
                "host": snap.hostname,
                "paths": snap.paths,
                "time": snap.time.to_string(),
                "target": a.target,
            }),
        );
    } else if !g.quiet && !g.json {
        eprintln!(
            "restoring <Snapshot {} of [{}] at {} by {}@{}> to {}",
            id.short(),
            snap.paths.join(" "),
            go_time_string(&snap.time),
            snap.username,
            snap.hostname,
            a.target
        );
    }
    Ok(restash_engine::restore(&repo, &root, &opts)?)
}
