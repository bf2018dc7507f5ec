//! How the maintenance commands (check, repair, prune) look as they run: restic's
//! messages on stdout at their verbosity, problems on stderr as they are, check's live
//! progress line on an interactive stderr, and prune's finished bar on stdout.

use std::io::Write;
use std::time::{Duration, Instant};

use super::{lock, Ui};

/// The live line of check and repair.
#[derive(Debug, Default)]
pub(super) struct Line {
    started: Option<Instant>,
    last: Option<Instant>,
    shown: bool,
}

/// Whether `command` renders through this module.
pub(super) fn is_maintenance(command: &str) -> bool {
    matches!(command, "check" | "repair" | "rebuild-index" | "prune")
}

pub(super) fn clear(ui: &Ui) {
    let mut line = lock(&ui.state.line);
    if line.shown {
        eprint!("\r\x1b[2K");
        line.shown = false;
    }
}

/// A message at `level`: prune's bar measures its phase from the last default-level one.
pub(super) fn message(ui: &Ui, level: u8, text: &str) {
    if ui.verbosity < level {
        return;
    }
    clear(ui);
    if level <= 1 {
        ui.start_step();
    }
    // A closed stdout must not stop a prune half way: output is best effort.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// A problem, printed as restic words it.
pub(super) fn problem(ui: &Ui, text: &str) {
    clear(ui);
    eprintln!("{text}");
}

/// `done` of `total` `unit`s of the current phase.
pub(super) fn progress(ui: &Ui, unit: &str, done: u64, total: u64) {
    if ui.command == "prune" {
        // restic shows a finished bar with the time the phase took, then a blank line.
        if ui.verbosity >= 1 && done == total {
            let secs = ui.step_started().elapsed().as_secs();
            let pct = if total == 0 {
                100.0
            } else {
                100.0 * done as f64 / total as f64
            };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "[{}:{:02}] {pct:.2}%  {done} / {total} {unit}\n",
                secs / 60,
                secs % 60
            );
        }
        return;
    }
    if !ui.live_line {
        return;
    }
    let mut line = lock(&ui.state.line);
    let now = Instant::now();
    if line.last.is_none() {
        line.started = Some(now);
    }
    if done < total
        && line
            .last
            .is_some_and(|l| now - l < Duration::from_millis(100))
    {
        return;
    }
    line.last = Some(now);
    let secs = (now - line.started.unwrap_or(now)).as_secs();
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
    line.shown = true;
}

/// The phase whose progress was shown is over.
pub(super) fn phase_finished(ui: &Ui) {
    clear(ui);
    lock(&ui.state.line).last = None;
}
