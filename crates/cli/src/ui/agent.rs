//! The in-pod agent mode of `backup` and `restore`: a PVC's name as the snapshot identity,
//! a summary in the Kubernetes termination log and as the last stdout line, Prometheus
//! metrics (file and Pushgateway), JSON log lines, and stale-lock removal.
//!
//! Agent mode is on with `--agent` (`RESTASH_AGENT`) or `--pvc` (`RESTASH_PVC`). The
//! termination log and metrics are written whenever asked for (or, for the termination
//! log, whenever `/dev/termination-log` is writable), in either mode.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args as ClapArgs;
use serde_json::json;

use super::metrics::{self, Sample};
use super::termlog::{self, Report};
use super::Ui;

/// Flags of the agent mode, shared by `backup` and `restore`.
#[derive(ClapArgs, Debug, Default, Clone)]
pub struct AgentArgs {
    /// Kubernetes PVC this run is for: the snapshot host (backup) or host filter (restore)
    /// unless --host is given, tag `pvc=NAME` on backups; turns on agent mode.
    #[arg(long, env = "RESTASH_PVC", value_name = "NAME")]
    pub pvc: Option<String>,
    /// Agent mode: JSON log lines when stdout is not a terminal, the summary as the last
    /// stdout line, stale locks of vanished processes removed before locking.
    #[arg(long, env = "RESTASH_AGENT")]
    pub agent: bool,
    /// Write a JSON summary (< 4 KiB) here at the end (default: /dev/termination-log if
    /// it is writable).
    #[arg(long = "termination-log", env = "RESTASH_TERMINATION_LOG")]
    pub termination_log: Option<PathBuf>,
    /// Write Prometheus metrics (text format) to this file, atomically.
    #[arg(long = "metrics-file", env = "RESTASH_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Push the metrics to this Prometheus Pushgateway (base URL).
    #[arg(
        long = "metrics-push",
        env = "RESTASH_PUSHGATEWAY_URL",
        value_name = "URL"
    )]
    pub metrics_push: Option<String>,
}

/// One run's agent context: where to report.
#[derive(Clone)]
pub struct Agent {
    /// The flags.
    pub args: AgentArgs,
    /// Agent mode on.
    pub on: bool,
    /// When the run started.
    pub started: Instant,
    /// `backup` or `restore`.
    pub command: &'static str,
}

impl Agent {
    /// The context for `command` with these flags.
    pub fn new(command: &'static str, args: &AgentArgs) -> Agent {
        Agent {
            args: args.clone(),
            on: args.agent || args.pvc.is_some(),
            started: Instant::now(),
            command,
        }
    }

    /// Whether the end of the run is reported anywhere (summary line, termination log,
    /// metrics).
    pub fn reports(&self) -> bool {
        self.on
            || self.args.metrics_file.is_some()
            || self.args.metrics_push.is_some()
            || termlog::resolve(self.args.termination_log.as_deref()).is_some()
    }

    /// Writes the termination log and metrics, pushes them, and prints the summary as the
    /// last stdout line in agent mode. Failures here are warnings (through `ui`): the run's
    /// outcome stands.
    pub fn finish(&self, ui: &Ui, mut report: Report, extra: &[Sample]) {
        report.command = self.command;
        report.pvc = self.args.pvc.clone();
        report.duration = self.started.elapsed().as_secs_f64();
        let summary = report.to_json();
        let failed = termlog::Status::of(report.exit_code) == termlog::Status::Failed;
        if let (Some(fatal), true) = (&report.fatal, failed && ui.agent_json()) {
            // main() still says `Fatal:` on stderr, as restic does; this is the same as a
            // log line for collectors that parse stdout.
            ui.log.error(
                &format!("{} failed", self.command),
                json!({ "error": fatal, "exit_code": report.exit_code }),
            );
        }
        if let Some(path) = termlog::resolve(self.args.termination_log.as_deref()) {
            if let Err(e) = termlog::write(&path, &summary) {
                ui.log.warn(
                    "cannot write the termination log",
                    json!({"path": path.display().to_string(), "error": e.to_string()}),
                );
            }
        }
        if self.args.metrics_file.is_some() || self.args.metrics_push.is_some() {
            self.metrics(ui, &report, extra);
        }
        if self.on {
            println!("{summary}");
        }
    }

    /// Reports a run that failed with `e` (its exit code and message as `main` gives
    /// them), on top of what `report` already says, and hands the error back.
    pub fn fail(
        &self,
        ui: &Ui,
        mut report: Report,
        extra: &[Sample],
        e: anyhow::Error,
    ) -> anyhow::Error {
        report.exit_code = crate::exit::error_code(&e) as i32;
        report.fatal = Some(crate::exit::message(&e));
        self.finish(ui, report, extra);
        e
    }

    fn metrics(&self, ui: &Ui, report: &Report, extra: &[Sample]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let previous = self
            .args
            .metrics_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| metrics::previous_last_success(&t, self.command));
        let last_success = if report.exit_code == 0 {
            Some(now)
        } else {
            previous
        };
        let text = metrics::render(report, extra, now, last_success);
        if let Some(path) = &self.args.metrics_file {
            if let Err(e) = metrics::write_atomic(path, &text) {
                ui.log.warn(
                    "cannot write the metrics file",
                    json!({"path": path.display().to_string(), "error": e.to_string()}),
                );
            }
        }
        if let Some(url) = &self.args.metrics_push {
            let host = report.host.as_deref().unwrap_or("");
            match metrics::push(url, host, &text, last_success.is_some()) {
                Ok(()) => ui.log.info("metrics pushed", serde_json::Value::Null),
                Err(e) => ui.log.warn(
                    "cannot push metrics (the run's result is unchanged)",
                    json!({"error": format!("{e:#}")}),
                ),
            }
        }
    }
}
