//! How a restore's start and end look in each style, and its agent report.

use restash_engine::restore::RestoreSummary;
use restash_format::{Snapshot, SnapshotId};
use serde_json::{json, Value};

use super::metrics::Sample;
use super::termlog::Report;
use super::{lock, Style, Ui};
use crate::display::go_time_string;

/// The first line, once the snapshot is chosen.
pub(super) fn started(ui: &Ui, id: &SnapshotId, snap: &Snapshot) {
    let target = lock(&ui.state.target).clone().unwrap_or_default();
    match ui.style {
        Style::AgentJson => ui.log.info(
            "restore started",
            json!({
                "snapshot_id": id.to_string(),
                "host": snap.hostname,
                "paths": snap.paths,
                "time": snap.time.to_string(),
                "target": target,
            }),
        ),
        Style::Text if !ui.quiet => eprintln!(
            "restoring <Snapshot {} of [{}] at {} by {}@{}> to {}",
            id.short(),
            snap.paths.join(" "),
            go_time_string(&snap.time),
            snap.username,
            snap.hostname,
            target
        ),
        _ => {}
    }
}

/// The end of a restore that ran to completion (its errors were events).
pub fn summary(ui: &Ui, s: &RestoreSummary) {
    let stats = &s.stats;
    match ui.style {
        Style::ResticJson => ui.json_message(&json!({
            "message_type": "summary",
            "total_files": stats.files,
            "total_dirs": stats.dirs,
            "total_bytes": stats.bytes,
            "errors": stats.errors.len(),
        })),
        Style::AgentJson => ui.log.info("restore finished", Value::Null),
        Style::Text => {}
    }
}

/// The agent report of a restore; `outcome` is its summary or its exit code and message,
/// `host` the host asked for when no snapshot was chosen.
pub fn report(
    ui: &Ui,
    host: Option<String>,
    outcome: Result<&RestoreSummary, (i32, String)>,
) -> (Report, Vec<Sample>) {
    let (id, chosen_host) = ui
        .selected()
        .map_or((None, None), |(i, h)| (Some(i), Some(h)));
    let mut report = Report {
        host: chosen_host.or(host),
        snapshot_id: id,
        ..Default::default()
    };
    let s = match outcome {
        Ok(s) => &s.stats,
        Err((code, msg)) => {
            report.exit_code = code;
            report.fatal = Some(msg);
            return (report, Vec::new());
        }
    };
    report.exit_code = if s.errors.is_empty() { 0 } else { 3 };
    report.counters = vec![
        ("files_restored", s.files),
        ("dirs_restored", s.dirs),
        ("others_restored", s.others),
        ("bytes_restored", s.bytes),
    ];
    report.errors = s.errors.clone();
    let samples = vec![
        Sample::new("files", "Files the last restore wrote.", s.files as f64),
        Sample::new(
            "bytes",
            "Content bytes the last restore wrote.",
            s.bytes as f64,
        ),
    ];
    (report, samples)
}
