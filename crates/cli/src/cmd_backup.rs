use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use restash_chunker::{ChunkerParams, FastCdcParams};
use restash_engine::archiver::{backup, BackupOptions, BackupSummary, Source};
use restash_engine::{EngineError, PatternSet, RepoLock};
use serde_json::json;

use crate::agent::metrics::Sample;
use crate::agent::termlog::Report;
use crate::agent::{failure, Agent, AgentArgs};
use crate::global::GlobalOpts;

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

/// Installs SIGINT/SIGTERM flags; returns (interrupt, terminated) so the exit code can say
/// which one arrived.
fn signals() -> anyhow::Result<(Arc<AtomicBool>, Arc<AtomicBool>)> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let interrupt = Arc::new(AtomicBool::new(false));
    let term = Arc::new(AtomicBool::new(false));
    // A second signal while the first is being handled ends the process at once.
    signal_hook::flag::register_conditional_shutdown(SIGINT, 130, interrupt.clone())?;
    signal_hook::flag::register_conditional_shutdown(SIGTERM, 143, interrupt.clone())?;
    signal_hook::flag::register(SIGINT, interrupt.clone())?;
    signal_hook::flag::register(SIGTERM, interrupt.clone())?;
    signal_hook::flag::register(SIGTERM, term.clone())?;
    Ok((interrupt, term))
}

fn summary_json(s: &BackupSummary, dry_run: bool) -> serde_json::Value {
    let mut v = json!({
        "message_type": "summary",
        "files_new": s.files_new,
        "files_changed": s.files_changed,
        "files_unmodified": s.files_unmodified,
        "dirs_new": s.dirs_new,
        "dirs_changed": s.dirs_changed,
        "dirs_unmodified": s.dirs_unmodified,
        "data_blobs": s.data_blobs,
        "tree_blobs": s.tree_blobs,
        "data_added": s.data_added,
        "data_added_packed": s.data_added_packed,
        "total_files_processed": s.total_files_processed,
        "total_bytes_processed": s.total_bytes_processed,
        "total_duration": s.total_duration,
        "snapshot_id": s.snapshot_id.map(|id| id.short()),
        "errors": s.errors.len(),
    });
    let obj = v.as_object_mut().expect("object");
    if dry_run {
        obj.insert("dry_run".into(), true.into());
    }
    if s.snapshot_id.is_none() {
        obj.remove("snapshot_id");
    }
    v
}

/// restic's `--json` status lines, one a second while the backup runs.
fn status_lines(
    p: Arc<restash_engine::archiver::Progress>,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let start = std::time::Instant::now();
    let handle = std::thread::spawn(move || {
        let mut last = std::time::Instant::now();
        while !flag.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(50));
            if last.elapsed() < std::time::Duration::from_secs(1) {
                continue;
            }
            last = std::time::Instant::now();
            let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            let (total, done) = (get(&p.bytes_seen), get(&p.bytes_done));
            let percent = if total == 0 {
                0.0
            } else {
                done as f64 / total as f64
            };
            println!(
                "{}",
                json!({
                    "message_type": "status",
                    "seconds_elapsed": start.elapsed().as_secs(),
                    "percent_done": percent.min(1.0),
                    "total_files": get(&p.files_seen),
                    "files_done": get(&p.files_done),
                    "total_bytes": total,
                    "bytes_done": done,
                })
            );
        }
    });
    (stop, handle)
}

/// restic's `humanize`-style sizes: 1.234 MiB.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.3} {}", UNITS[u])
    }
}

/// How a backup that did not fail ended.
enum Outcome {
    Done(Box<BackupSummary>),
    /// SIGTERM: uploaded packs are indexed, the lock is gone.
    Terminated,
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

fn backup_run(
    g: &GlobalOpts,
    a: &Args,
    agent: &Agent,
    opts: &mut BackupOptions,
    term: &AtomicBool,
    held: &Mutex<Option<Arc<RepoLock>>>,
) -> anyhow::Result<Outcome> {
    let source = source(a)?;
    let mut repo = g.open()?;
    if !a.dry_run {
        // For the packs a killed run left unindexed, looked for once the lock is held.
        repo.list_ahead(restash_backend::FileType::Pack);
    }
    // Taking the lock waits for other processes' new locks to show; the index loads
    // meanwhile.
    let (lock, index) = repo.load_index_with(|repo| -> anyhow::Result<_> {
        if g.no_lock || a.dry_run {
            return Ok(None);
        }
        if agent.on {
            // A pod killed on a drained node never removes its lock; after restic's stale
            // limit nobody refreshes it, so it is safe to clear.
            for removed in restash_engine::remove_stale(repo)? {
                agent
                    .log
                    .warn("removed stale lock", json!({ "lock": removed }));
            }
        }
        let lock = Arc::new(RepoLock::acquire(repo, false, agent.on)?);
        *held.lock().unwrap_or_else(|e| e.into_inner()) = Some(lock.clone());
        Ok(Some(lock))
    });
    let lock = lock?;
    index.context("loading index")?;
    if let Some(p) = &a.parent {
        let (id, _) = crate::snapsel::resolve(&repo, p, &Default::default())?;
        opts.parent = Some(id);
    }
    if agent.on {
        let paths = match &source {
            Source::Paths(p) => p.iter().map(|p| p.display().to_string()).collect(),
            Source::Stdin { name, .. } => vec![format!("/{name}")],
        };
        agent.log.info(
            "backup started",
            json!({"host": opts.host, "tags": opts.tags, "paths": paths}),
        );
    }
    let status = (g.json && !g.quiet).then(|| status_lines(opts.progress.clone()));
    let reporter = (!g.json).then(|| {
        crate::agent::logging::Reporter::start(
            agent.log,
            opts.progress.clone(),
            crate::agent::PROGRESS_EVERY,
        )
    });
    let result = backup(&mut repo, source, opts);
    if let Some((stop, handle)) = status {
        stop.store(true, Ordering::SeqCst);
        let _ = handle.join();
    }
    if let Some(r) = reporter {
        r.stop();
    }
    if let Some(l) = lock {
        l.release();
    }
    held.lock().unwrap_or_else(|e| e.into_inner()).take();
    match result {
        Ok(s) => Ok(Outcome::Done(Box::new(s))),
        Err(EngineError::Interrupted) if term.load(Ordering::SeqCst) => Ok(Outcome::Terminated),
        Err(e) => Err(e.into()),
    }
}

fn print_summary(g: &GlobalOpts, a: &Args, agent: &Agent, summary: &BackupSummary) {
    for w in &summary.warnings {
        if agent.json_logs() {
            agent.log.warn(w, json!({}));
        } else {
            eprintln!("warning: {w}");
        }
    }
    for e in &summary.errors {
        if agent.json_logs() {
            agent.log.error("cannot read", json!({ "error": e }));
        } else if g.json {
            eprintln!(
                "{}",
                json!({"message_type": "error", "error": {"message": e}, "during": "archival"})
            );
        } else {
            eprintln!("error: {e}");
        }
    }
    if g.json {
        println!("{}", summary_json(summary, a.dry_run));
    } else if agent.json_logs() {
        agent.log.info("backup finished", serde_json::Value::Null);
    } else if !g.quiet {
        let s = summary;
        println!(
            "\nFiles:       {:5} new, {:5} changed, {:5} unmodified",
            s.files_new, s.files_changed, s.files_unmodified
        );
        println!(
            "Dirs:        {:5} new, {:5} changed, {:5} unmodified",
            s.dirs_new, s.dirs_changed, s.dirs_unmodified
        );
        println!(
            "Added to the repository: {} ({} stored)\n",
            human(s.data_added),
            human(s.data_added_packed)
        );
        println!(
            "processed {} files, {} in {:.0}:{:02}",
            s.total_files_processed,
            human(s.total_bytes_processed),
            (s.total_duration / 60.0).floor(),
            (s.total_duration as u64) % 60
        );
        match s.snapshot_id {
            Some(id) => println!("snapshot {} saved", id.short()),
            None => println!("would have saved a snapshot (dry run)"),
        }
    }
}

/// The agent report and metrics of a finished backup.
fn report_of(s: &BackupSummary, host: &str, code: i32) -> (Report, Vec<Sample>) {
    let report = Report {
        exit_code: code,
        host: Some(host.to_string()),
        snapshot_id: s.snapshot_id.map(|id| id.to_string()),
        counters: vec![
            ("files_new", s.files_new),
            ("files_changed", s.files_changed),
            ("files_unmodified", s.files_unmodified),
            ("dirs_new", s.dirs_new),
            ("dirs_changed", s.dirs_changed),
            ("dirs_unmodified", s.dirs_unmodified),
            ("data_added", s.data_added),
            ("data_added_packed", s.data_added_packed),
            ("total_files_processed", s.total_files_processed),
            ("total_bytes_processed", s.total_bytes_processed),
        ],
        errors: s.errors.clone(),
        ..Default::default()
    };
    let state = |name: &'static str, help: &'static str, st: &str, v: u64| Sample {
        labels: vec![("state", st.to_string())],
        ..Sample::new(name, help, v as f64)
    };
    const FILES: &str = "Files of the last backup by state.";
    const DIRS: &str = "Directories of the last backup by state.";
    let samples = vec![
        Sample::new(
            "bytes_added",
            "Bytes of new data the last backup added (before compression).",
            s.data_added as f64,
        ),
        Sample::new(
            "bytes_added_packed",
            "Bytes the last backup added to the repository as stored.",
            s.data_added_packed as f64,
        ),
        Sample::new(
            "bytes_processed",
            "Bytes in the files of the last snapshot.",
            s.total_bytes_processed as f64,
        ),
        state("files", FILES, "new", s.files_new),
        state("files", FILES, "changed", s.files_changed),
        state("files", FILES, "unmodified", s.files_unmodified),
        state("dirs", DIRS, "new", s.dirs_new),
        state("dirs", DIRS, "changed", s.dirs_changed),
        state("dirs", DIRS, "unmodified", s.dirs_unmodified),
    ];
    (report, samples)
}

/// Set by whoever reports the end of the run first: the main thread, or the SIGTERM
/// watchdog when in-flight uploads outlast the grace period.
static REPORTED: AtomicBool = AtomicBool::new(false);

fn terminated_report(
    host: &str,
    progress: &restash_engine::archiver::Progress,
    why: &str,
) -> Report {
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    Report {
        exit_code: 143,
        host: Some(host.to_string()),
        counters: vec![
            ("files_done", get(&progress.files_done)),
            ("bytes_done", get(&progress.bytes_done)),
        ],
        fatal: Some(why.to_string()),
        ..Default::default()
    }
}

struct TermWatch {
    term: Arc<AtomicBool>,
    grace: Duration,
    agent: Agent,
    host: String,
    progress: Arc<restash_engine::archiver::Progress>,
    held: Arc<Mutex<Option<Arc<RepoLock>>>>,
}

/// Kubernetes kills a pod 30 s after SIGTERM by default. The backup stops reading at once,
/// but uploads already under way finish first; on a slow link they could outlast the pod.
/// After `grace` this gives up on them: the lock is removed, the summary and metrics are
/// written, and the process exits 143. Packs that arrived but are not yet indexed are
/// adopted by the next backup.
fn term_watchdog(w: TermWatch) {
    std::thread::spawn(move || {
        while !w.term.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(w.grace);
        if REPORTED.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(lock) = w.held.lock().unwrap_or_else(|e| e.into_inner()).take() {
            lock.release();
        }
        let why = format!(
            "terminated by SIGTERM; uploads still in flight after {} s were abandoned \
             (the next backup adopts what arrived)",
            w.grace.as_secs()
        );
        w.agent.log.warn(&why, serde_json::Value::Null);
        w.agent
            .finish(terminated_report(&w.host, &w.progress, &why), &[]);
        std::process::exit(143);
    });
}

/// `--forget`: the keep policy on this host's snapshots, after the backup released its lock.
fn retention(
    g: &GlobalOpts,
    a: &Args,
    agent: &Agent,
    host: &str,
) -> anyhow::Result<crate::cmd_forget::Retention> {
    let repo = g.open()?;
    let wait = Duration::from_secs(a.forget_lock_wait);
    let r = crate::cmd_forget::forget_host(&repo, host, &a.keep, agent.on, wait, |why| {
        if agent.json_logs() {
            agent
                .log
                .info("forget waits for a lock", json!({ "lock": why }));
        } else if !g.quiet {
            eprintln!("forget waits for a lock: {why}");
        }
    })?;
    let removed: Vec<String> = r.removed.iter().map(|id| id.short()).collect();
    if agent.json_logs() {
        agent.log.info(
            "forget finished",
            json!({"host": host, "kept": r.kept, "removed": removed}),
        );
    } else if g.json {
        println!(
            "{}",
            json!({"message_type": "forget", "host": host, "kept": r.kept, "removed": removed})
        );
    } else if !g.quiet {
        println!(
            "forget: kept {} snapshots of host {host}, removed {}{}",
            r.kept,
            removed.len(),
            if removed.is_empty() {
                String::new()
            } else {
                format!(": {}", removed.join(" "))
            }
        );
    }
    Ok(r)
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    let agent = Agent::new("backup", g, &a.agent);
    if a.forget && a.keep.policy().is_empty() {
        bail!("--forget needs a policy: at least one --keep-* option");
    }
    if !a.forget && !a.keep.policy().is_empty() {
        bail!("--keep-* options need --forget");
    }
    let host = host(&a);
    let fail = |e: anyhow::Error| -> anyhow::Error {
        let (code, msg) = failure(&e);
        agent.finish(
            Report {
                exit_code: code,
                host: Some(host.clone()),
                fatal: Some(msg),
                ..Default::default()
            },
            &[],
        );
        e
    };
    let mut opts = options(g, &a).map_err(fail)?;
    let (interrupt, term) = signals().map_err(fail)?;
    opts.interrupt = interrupt;
    let progress = opts.progress.clone();
    let held = Arc::new(Mutex::new(None));
    term_watchdog(TermWatch {
        term: term.clone(),
        grace: Duration::from_secs(a.term_grace),
        agent: agent.clone(),
        host: host.clone(),
        progress: progress.clone(),
        held: held.clone(),
    });
    let outcome = backup_run(g, &a, &agent, &mut opts, &term, &held);
    if REPORTED.swap(true, Ordering::SeqCst) {
        // The watchdog is reporting and ends the process.
        std::thread::park();
    }
    match outcome {
        Err(e) => Err(fail(e)),
        Ok(Outcome::Terminated) => {
            let msg = "terminated: uploaded data was indexed and will be reused by the next backup";
            if agent.json_logs() {
                agent.log.warn(msg, serde_json::Value::Null);
            } else {
                eprintln!("{msg}");
            }
            agent.finish(
                terminated_report(&host, &progress, "terminated by SIGTERM"),
                &[],
            );
            std::process::exit(143);
        }
        Ok(Outcome::Done(summary)) => {
            print_summary(g, &a, &agent, &summary);
            let code = if summary.errors.is_empty() { 0 } else { 3 };
            let (mut report, samples) = report_of(&summary, &host, code);
            if a.forget && summary.snapshot_id.is_some() {
                match retention(g, &a, &agent, &host) {
                    Ok(r) => {
                        report.counters.push(("snapshots_kept", r.kept as u64));
                        report
                            .counters
                            .push(("snapshots_removed", r.removed.len() as u64));
                    }
                    Err(e) => {
                        // The snapshot is saved, but the Job did not do all it was asked.
                        let e = e.context("snapshot saved, but --forget failed");
                        let (code, msg) = failure(&e);
                        report.exit_code = code;
                        report.fatal = Some(msg);
                        agent.finish(report, &samples);
                        return Err(e);
                    }
                }
            }
            if code == 3 && !agent.json_logs() {
                eprintln!("Warning: at least one source file could not be read");
            }
            agent.finish(report, &samples);
            if code == 3 {
                std::process::exit(3);
            }
            Ok(())
        }
    }
}
