//! How `copy` looks as it runs: restic's lines per snapshot on stdout (not with `-q`),
//! and warnings about snapshots that cannot be chosen on stderr as restic words them.

use restash_engine::events::{Event, Phase};

use super::{lock, Ui};
use crate::display::go_time_string;

pub(super) fn event(ui: &Ui, e: &Event<'_>) {
    let verbose = ui.verbosity >= 1;
    match e {
        Event::Selected { id, snapshot } => {
            *lock(&ui.state.selected) = Some((id.short(), snapshot.hostname.clone()));
            if verbose {
                println!(
                    "\nsnapshot {} of [{}] at {})",
                    id.short(),
                    snapshot.paths.join(" "),
                    go_time_string(&snapshot.time)
                );
            }
        }
        Event::ItemDone {
            action: "already copied",
            name,
            ..
        } if verbose => {
            let source = ui.selected().map(|(id, _)| id).unwrap_or_default();
            println!("skipping source snapshot {source}, was already copied to snapshot {name}");
        }
        Event::PhaseStarted(Phase::Copy) => {
            ui.start_step();
            if verbose {
                println!("  copy started, this may take a while...");
            }
        }
        Event::Progress {
            phase: Phase::Copy,
            unit,
            counts,
            ..
        } if verbose => {
            // restic's final progress line when stdout is not a terminal.
            let secs = ui.step_started().elapsed().as_secs();
            let t = if secs >= 3600 {
                format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
            } else {
                format!("{}:{:02}", secs / 60, secs % 60)
            };
            let n = counts.items_done;
            if n == 0 {
                println!("[{t}]          0 {unit}\n");
            } else {
                println!("[{t}] 100.00%  {n} / {n} {unit}\n");
            }
        }
        Event::ItemDone {
            action: "saved",
            name,
            ..
        } if verbose => println!("snapshot {name} saved"),
        Event::Warning(w) | Event::Error(w) => eprintln!("{w}"),
        _ => {}
    }
}
