//! How a backup's results look: restic's summary text, its `--json` summary, the agent's
//! log lines, and the agent's termination report and metrics.

use std::sync::Arc;
use std::time::Duration;

use restash_engine::archiver::{BackupOptions, BackupSummary, OnAbandon, Source, Watchdog};
use restash_engine::events::Control;
use restash_engine::events::Phase;
use restash_engine::forget::Retention;
use restash_engine::EngineError;
use serde_json::{json, Value};

use super::agent::Agent;
use super::metrics::Sample;
use super::termlog::Report;
use crate::exit::Done;
use restash_engine::units::format_bytes;

use super::{Style, Ui};

/// restic's `--json` summary message.
fn summary_json(s: &BackupSummary, dry_run: bool) -> Value {
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

/// The end of a backup that ran to completion (its warnings and errors were events).
pub fn summary(ui: &Ui, s: &BackupSummary, dry_run: bool) {
    match ui.style {
        Style::ResticJson => ui.json_message(&summary_json(s, dry_run)),
        Style::AgentJson => ui.log.info("backup finished", Value::Null),
        Style::Text if ui.quiet => {}
        Style::Text => {
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
                format_bytes(s.data_added),
                format_bytes(s.data_added_packed)
            );
            println!(
                "processed {} files, {} in {:.0}:{:02}",
                s.total_files_processed,
                format_bytes(s.total_bytes_processed),
                (s.total_duration / 60.0).floor(),
                (s.total_duration as u64) % 60
            );
            match s.snapshot_id {
                Some(id) => println!("snapshot {} saved", id.short()),
                // restic 0.17's words.
                None if s.skipped_unchanged => println!("skipped creating snapshot"),
                None => println!("would have saved a snapshot (dry run)"),
            }
        }
    }
}

/// The agent's first log line, said once the backup holds its lock.
pub fn announce(ui: &Ui, opts: &BackupOptions, source: &Source) {
    let paths: Vec<String> = match source {
        Source::Paths(p) => p.iter().map(|p| p.display().to_string()).collect(),
        Source::Stdin { name, .. } => vec![format!("/{name}")],
    };
    ui.announce(
        Phase::Backup,
        "backup started",
        json!({"host": opts.host, "tags": opts.tags, "paths": paths}),
    );
}

/// restic's closing line of a backup that could not read everything.
pub fn partial(ui: &Ui) {
    if !ui.agent_json() {
        eprintln!("Warning: at least one source file could not be read");
    }
}

/// The result of `--forget` after a backup, in the output and in the agent report.
pub fn retention(ui: &Ui, host: &str, r: &Retention, report: &mut Report) {
    report.counters.push(("snapshots_kept", r.kept as u64));
    report
        .counters
        .push(("snapshots_removed", r.removed.len() as u64));
    report.counters.push(("forget_by_hint", r.by_hint as u64));
    let removed: Vec<String> = r.removed.iter().map(|id| id.short()).collect();
    match ui.style {
        Style::AgentJson => ui.log.info(
            "forget finished",
            json!({"host": host, "kept": r.kept, "removed": removed, "by_hint": r.by_hint}),
        ),
        Style::ResticJson => ui.json_message(
            &json!({"message_type": "forget", "host": host, "kept": r.kept, "removed": removed,
                    "by_hint": r.by_hint}),
        ),
        Style::Text if ui.quiet => {}
        Style::Text => println!(
            "forget: kept {} snapshots of host {host}, removed {}{}",
            r.kept,
            removed.len(),
            if removed.is_empty() {
                String::new()
            } else {
                format!(": {}", removed.join(" "))
            }
        ),
    }
}

/// The agent report and metrics of a finished backup.
pub fn report(s: &BackupSummary, host: &str, code: i32) -> (Report, Vec<Sample>) {
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
            // 1 when --skip-if-unchanged saved no snapshot: the volume is backed up by
            // its parent, which is not a failure.
            ("snapshot_skipped", u64::from(s.skipped_unchanged)),
            // 1 when the parent came from its hint: this Job read its own volume's
            // metadata only, not every volume's.
            ("parent_by_hint", u64::from(s.parent_by_hint)),
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

/// Kubernetes kills a pod 30 s after SIGTERM by default: uploads still in flight after
/// `grace` are given up, the run is reported, and the process ends at once.
pub fn watchdog(
    agent: &Agent,
    ui: &Arc<Ui>,
    host: &str,
    grace: Duration,
    ctl: &Control,
) -> anyhow::Result<Watchdog> {
    let (agent, ui, host) = (agent.clone(), ui.clone(), host.to_string());
    let on_abandon: OnAbandon = Arc::new(move |e| {
        agent.finish(&ui, stopped(&ui, &host, e), &[]);
        crate::end_now(Done::Terminated)
    });
    Ok(Watchdog::start(ctl.cancel.clone(), grace, on_abandon)?)
}

/// A backup stopped by SIGTERM: what happened to its uploads, and the agent report with
/// how far it got.
pub fn stopped(ui: &Ui, host: &str, e: &EngineError) -> Report {
    let why = match e {
        EngineError::Abandoned { .. } => {
            let why = e.to_string();
            ui.log.warn(&why, Value::Null);
            why
        }
        _ => {
            ui.notice(
                "terminated: uploaded data was indexed and will be reused by the next backup",
            );
            "terminated by SIGTERM".to_string()
        }
    };
    let counts = ui.counts();
    Report {
        exit_code: 143,
        host: Some(host.to_string()),
        counters: vec![
            ("files_done", counts.items_done),
            ("bytes_done", counts.bytes_done),
        ],
        fatal: Some(why),
        ..Default::default()
    }
}
