//! The one place where the command line turns an operation's events into output, in one
//! of three styles: terminal text (with a progress line on an interactive stderr),
//! restic's `--json` messages, and the in-pod agent's JSON log lines. Commands print their
//! results (tables, summaries) through the functions here too, so no command branches on
//! the output style itself.

pub mod agent;
pub mod backup;
mod copy;
pub mod find;
pub mod log;
mod maint;
pub mod metrics;
pub mod restore;
pub mod termlog;

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use restash_engine::events::{Control, Counts, Event, EventSink, Phase};
use restash_engine::units::format_bytes;
use serde_json::{json, Value};

use crate::global::GlobalOpts;
pub use log::Log;

/// How often the agent logs a progress line.
const AGENT_PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How often restic's `--json` prints a status line.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// How often the terminal progress line is redrawn.
const BAR_EVERY: Duration = Duration::from_millis(250);

/// Which output a run produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Text for a person.
    Text,
    /// restic's `--json`: JSON messages on stdout.
    ResticJson,
    /// The agent's JSON log lines on stdout (agent mode, stdout not a terminal).
    AgentJson,
}

/// Renders one command's events.
pub struct Ui {
    /// Log lines (text on stderr, or JSON lines).
    pub log: Log,
    /// The output style.
    pub style: Style,
    /// `-q`.
    pub quiet: bool,
    /// Whose events these are: it words lock waits and errors.
    command: &'static str,
    bar: bool,
    progress_every: Option<Duration>,
    /// restic's verbosity: 0 with `-q`, 1 by default, 2 with `-v`.
    verbosity: u8,
    /// Check's live progress line on an interactive stderr.
    live_line: bool,
    /// When the renderer was made: progress is first shown one interval after it.
    started: Instant,
    state: State,
}

/// What a renderer remembers while a command runs.
#[derive(Default)]
struct State {
    last_progress: Mutex<Option<Instant>>,
    counts: Mutex<Counts>,
    /// A log line said when the given phase starts (the agent's "backup started").
    announce: Mutex<Option<(Phase, String, Value)>>,
    /// What the agent's start line and the termination log say about the snapshot.
    selected: Mutex<Option<(String, String)>>,
    /// The directory a restore writes to, for its first line.
    target: Mutex<Option<String>>,
    line: Mutex<maint::Line>,
    /// When the current step of a maintenance command began (its last message).
    phase_start: Mutex<Option<Instant>>,
}

impl Ui {
    /// The renderer for `command` under the global flags; `agent` is agent mode.
    pub fn new(g: &GlobalOpts, command: &'static str, agent: bool) -> Arc<Ui> {
        let log = Log {
            json: g.json || (agent && !std::io::stdout().is_terminal()),
            to_stderr: g.json,
            quiet: g.quiet,
        };
        let style = if g.json {
            Style::ResticJson
        } else if log.json {
            Style::AgentJson
        } else {
            Style::Text
        };
        let bar = style == Style::Text && !g.quiet && std::io::stderr().is_terminal();
        let progress_every = match style {
            Style::ResticJson if !g.quiet => Some(STATUS_EVERY),
            Style::ResticJson => None,
            Style::AgentJson => Some(AGENT_PROGRESS_EVERY),
            Style::Text => bar.then_some(BAR_EVERY),
        };
        Arc::new(Ui {
            log,
            style,
            quiet: g.quiet,
            command,
            bar,
            progress_every,
            verbosity: if g.quiet { 0 } else { 1 + g.verbose },
            live_line: !g.quiet && !g.json && std::io::stderr().is_terminal(),
            started: Instant::now(),
            state: State::default(),
        })
    }

    /// The same output settings for another command's step (`backup --forget`).
    pub fn step(&self, command: &'static str) -> Arc<Ui> {
        Arc::new(Ui {
            log: self.log,
            style: self.style,
            quiet: self.quiet,
            command,
            bar: false,
            progress_every: None,
            verbosity: self.verbosity,
            live_line: self.live_line,
            started: Instant::now(),
            state: State::default(),
        })
    }

    /// A control whose events come here.
    pub fn control(self: &Arc<Self>) -> Control {
        Control::new(self.clone())
    }

    /// Whether log lines are the agent's JSON on stdout.
    pub fn agent_json(&self) -> bool {
        self.style == Style::AgentJson
    }

    /// Logs `msg` with `fields` when `phase` starts.
    pub fn announce(&self, phase: Phase, msg: &str, fields: Value) {
        *lock(&self.state.announce) = Some((phase, msg.to_string(), fields));
    }

    /// The directory a restore writes to.
    pub fn set_target(&self, target: &str) {
        *lock(&self.state.target) = Some(target.to_string());
    }

    /// When the current step began: its last message or phase start, else the renderer's
    /// start.
    fn step_started(&self) -> Instant {
        lock(&self.state.phase_start).unwrap_or(self.started)
    }

    fn start_step(&self) {
        *lock(&self.state.phase_start) = Some(Instant::now());
    }

    /// The last progress counts seen.
    pub fn counts(&self) -> Counts {
        *lock(&self.state.counts)
    }

    /// The chosen snapshot's (id, host), once chosen.
    pub fn selected(&self) -> Option<(String, String)> {
        lock(&self.state.selected).clone()
    }

    /// A restic `--json` message on stdout.
    pub fn json_message(&self, v: &Value) {
        println!("{v}");
    }

    /// Something the user should know that is not an error, in the run's style.
    pub fn notice(&self, msg: &str) {
        if self.agent_json() {
            self.log.warn(msg, Value::Null);
        } else {
            eprintln!("{msg}");
        }
    }

    fn progress(&self, counts: Counts, elapsed: Duration) {
        *lock(&self.state.counts) = counts;
        let Some(every) = self.progress_every else {
            return;
        };
        {
            let mut last = lock(&self.state.last_progress);
            if last.unwrap_or(self.started).elapsed() < every {
                return;
            }
            *last = Some(Instant::now());
        }
        let percent = if counts.bytes_total == 0 {
            0.0
        } else {
            (counts.bytes_done as f64 / counts.bytes_total as f64).min(1.0)
        };
        let fields = json!({
            "seconds_elapsed": elapsed.as_secs(),
            "percent_done": percent,
            "total_files": counts.items_total,
            "files_done": counts.items_done,
            "total_bytes": counts.bytes_total,
            "bytes_done": counts.bytes_done,
        });
        match self.style {
            Style::ResticJson => {
                let mut v = json!({"message_type": "status"});
                merge(&mut v, fields);
                self.json_message(&v);
            }
            Style::AgentJson => self.log.info("progress", fields),
            Style::Text => {
                let secs = elapsed.as_secs();
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[2K[{}:{:02}] {:5.1}%  {} / {} files  {} / {}",
                    secs / 60,
                    secs % 60,
                    percent * 100.0,
                    counts.items_done,
                    counts.items_total,
                    format_bytes(counts.bytes_done),
                    format_bytes(counts.bytes_total),
                );
                let _ = err.flush();
            }
        }
    }

    fn phase_started(&self, phase: Phase) {
        if phase == Phase::Scan && self.command == "stats" && self.style == Style::Text {
            println!("scanning...");
        }
        let mut announce = lock(&self.state.announce);
        if announce.as_ref().is_some_and(|(p, _, _)| *p == phase) {
            if let Some((_, msg, fields)) = announce.take() {
                self.log.info(&msg, fields);
            }
        }
    }

    fn phase_finished(&self, phase: Phase) {
        // Only the backup draws the terminal progress line.
        if self.bar && phase == Phase::Backup {
            eprint!("\r\x1b[2K");
        }
    }

    fn error(&self, msg: &str) {
        match (self.command, self.style) {
            ("backup", Style::AgentJson) => self.log.error("cannot read", json!({ "error": msg })),
            ("backup", Style::ResticJson) => eprintln!(
                "{}",
                json!({"message_type": "error", "error": {"message": msg}, "during": "archival"})
            ),
            ("backup", Style::Text) => eprintln!("error: {msg}"),
            ("restore", Style::AgentJson) => {
                self.log.error("cannot restore", json!({ "error": msg }))
            }
            ("restore", _) => eprintln!("ignoring error: {msg}"),
            (_, Style::AgentJson) => self.log.error(msg, Value::Null),
            _ => eprintln!("error: {msg}"),
        }
    }
}

impl Ui {
    /// A wait for another process's lock (`--retry-lock`).
    fn blocked(&self, reason: &str, wait: Duration, first: bool) {
        let what = format!("{} waits for a lock", self.command);
        let wait = restash_engine::units::format_duration(wait);
        if self.agent_json() {
            self.log
                .info(&what, json!({ "lock": reason, "waiting_up_to": wait }));
        } else if first && !self.quiet && self.style == Style::Text {
            // restic's line, once; then who holds the lock, which restic keeps to its
            // debug log but a person waiting wants to know.
            eprintln!("repo already locked, waiting up to {wait} for the lock");
            eprintln!("{reason}");
        }
    }
}

impl EventSink for Ui {
    fn event(&self, event: &Event<'_>) {
        // Every command that locks may wait, whatever else it renders its own way.
        if let Event::Blocked {
            reason,
            wait,
            first,
        } = event
        {
            return self.blocked(reason, *wait, *first);
        }
        if self.command == "copy" {
            return copy::event(self, event);
        }
        if maint::is_maintenance(self.command) {
            match event {
                Event::Message { level, text } => maint::message(self, *level, text),
                Event::Warning(t) | Event::Error(t) => maint::problem(self, t),
                Event::Progress { unit, counts, .. } => {
                    maint::progress(self, unit, counts.items_done, counts.items_total)
                }
                Event::PhaseFinished(_) => maint::phase_finished(self),
                Event::Selected { id, snapshot } => maint::message(
                    self,
                    1,
                    &format!(
                        "\nsnapshot {} of [{}] at {})",
                        id.short(),
                        snapshot.paths.join(" "),
                        crate::display::go_time_string(&snapshot.time)
                    ),
                ),
                _ => {}
            }
            return;
        }
        match event {
            Event::PhaseStarted(p) => self.phase_started(*p),
            Event::PhaseFinished(p) => self.phase_finished(*p),
            Event::Progress {
                counts, elapsed, ..
            } => self.progress(*counts, *elapsed),
            Event::Selected { id, .. } if self.command == "diff" => {
                // restic names both snapshots before the first change.
                let mut first = lock(&self.state.selected);
                match first.take() {
                    None => *first = Some((id.short(), String::new())),
                    Some((from, _)) if self.style == Style::Text && !self.quiet => {
                        println!("comparing snapshot {from} to {}:\n", id.short())
                    }
                    Some(_) => {}
                }
            }
            Event::Selected { id, snapshot } => {
                *lock(&self.state.selected) = Some((id.to_string(), snapshot.hostname.clone()));
                if self.command == "restore" {
                    restore::started(self, id, snapshot);
                }
            }
            Event::ItemDone {
                kind: "lock",
                action: "removed stale",
                name,
            } => self.log.warn("removed stale lock", json!({ "lock": name })),
            Event::ItemDone { .. } => {}
            Event::Restored { action, item, size } => restore::item(self, *action, item, *size),
            // Standard output stays one JSON value per line with --json.
            Event::Message { level, text } if self.verbosity >= *level => match self.style {
                Style::Text => println!("{text}"),
                _ => eprintln!("{text}"),
            },
            Event::Warning(w) if self.agent_json() => self.log.warn(w, json!({})),
            // restic prefixes the archiver's warnings; the others say what they are.
            Event::Warning(w) if self.command == "backup" => eprintln!("warning: {w}"),
            Event::Warning(w) => eprintln!("{w}"),
            Event::Error(e) => self.error(e),
            _ => {}
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}
