//! How a restore's start and end look in each style, and its agent report.

use restash_engine::events::RestoreAction;
use restash_engine::restore::RestoreSummary;
use restash_engine::units::format_bytes;
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

/// One entry restored, updated, left unchanged or deleted: restic's lines at `-vv`.
pub(super) fn item(ui: &Ui, action: RestoreAction, item: &str, size: Option<u64>) {
    if ui.verbosity < 3 {
        return;
    }
    match ui.style {
        Style::ResticJson => ui.json_message(&json!({
            "message_type": "verbose_status",
            "action": action.as_str(),
            "item": item,
            "size": size.unwrap_or(0),
        })),
        Style::Text => match size {
            Some(n) => println!(
                "{:<9} {item} with size {}",
                action.as_str(),
                format_bytes(n)
            ),
            None => println!("{:<9} {item}", action.as_str()),
        },
        Style::AgentJson => {}
    }
}

/// The end of a restore that ran to completion (its errors were events).
pub fn summary(ui: &Ui, s: &RestoreSummary) {
    let stats = &s.stats;
    let restored = stats.files + stats.dirs + stats.others;
    match ui.style {
        Style::ResticJson => ui.json_message(&json!({
            "message_type": "summary",
            "seconds_elapsed": ui.started.elapsed().as_secs(),
            "total_files": stats.files,
            "total_dirs": stats.dirs,
            "files_restored": restored,
            "files_skipped": stats.skipped,
            "files_deleted": stats.deleted,
            "total_bytes": stats.bytes,
            "bytes_restored": stats.bytes,
            "bytes_skipped": stats.bytes_skipped,
            "errors": stats.errors.len(),
        })),
        Style::AgentJson => ui.log.info("restore finished", Value::Null),
        Style::Text if !ui.quiet => {
            // restic 0.17's closing line.
            let secs = ui.started.elapsed().as_secs();
            let mut line = format!(
                "Summary: Restored {restored} files/dirs ({}) in {}",
                format_bytes(stats.bytes),
                duration(secs)
            );
            if stats.skipped > 0 {
                line += &format!(
                    ", skipped {} files/dirs {}",
                    stats.skipped,
                    format_bytes(stats.bytes_skipped)
                );
            }
            if stats.deleted > 0 {
                line += &format!(", deleted {} files/dirs", stats.deleted);
            }
            println!("{line}");
        }
        Style::Text => {}
    }
}

/// restic's `FormatDuration`: `m:ss`, or `h:mm:ss` from an hour on.
fn duration(secs: u64) -> String {
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else {
        format!("{}:{:02}", secs / 60, secs % 60)
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
        ("files_skipped", s.skipped),
        ("files_deleted", s.deleted),
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
