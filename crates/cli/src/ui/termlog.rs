//! The run's summary as one compact JSON object: written to the Kubernetes termination
//! log (shown by `kubectl get pod -o yaml`, at most 4096 bytes) and printed as the last
//! line on stdout.

use std::path::Path;

use serde_json::{Map, Value};

/// Kubernetes keeps at most this many bytes of a termination message.
pub const TERMINATION_LOG_LIMIT: usize = 4096;
/// The summary is kept below this, leaving room for a trailing newline.
const BUDGET: usize = TERMINATION_LOG_LIMIT - 96;
/// A single error message is cut to this many bytes.
const ERROR_CHARS: usize = 300;
/// The fatal error message is cut to this many bytes.
const FATAL_CHARS: usize = 1024;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit 0.
    Success,
    /// Exit 3: snapshot written, some files missing.
    Partial,
    /// Stopped by SIGINT or SIGTERM.
    Interrupted,
    /// Any other exit code.
    Failed,
}

impl Status {
    /// The status for an exit code.
    pub fn of(exit_code: i32) -> Status {
        match exit_code {
            0 => Status::Success,
            3 => Status::Partial,
            130 | 143 => Status::Interrupted,
            _ => Status::Failed,
        }
    }

    /// The `status` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Partial => "partial",
            Status::Interrupted => "interrupted",
            Status::Failed => "failed",
        }
    }
}

/// Everything the summary, the metrics and the last log line say about one run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `backup` or `restore`.
    pub command: &'static str,
    /// The process exit code.
    pub exit_code: i32,
    /// The snapshot host (backup) or host filter (restore), if known.
    pub host: Option<String>,
    /// The claim being backed up or restored.
    pub pvc: Option<String>,
    /// The snapshot written or restored (full id).
    pub snapshot_id: Option<String>,
    /// Command-specific counters, in output order.
    pub counters: Vec<(&'static str, u64)>,
    /// Wall time in seconds.
    pub duration: f64,
    /// Per-file errors (the run went on without those files).
    pub errors: Vec<String>,
    /// The error that ended the run, if any.
    pub fatal: Option<String>,
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

impl Report {
    /// The summary object, at most [`BUDGET`] bytes when serialized: the first errors are
    /// kept as long as they fit, the rest only counted.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("command".into(), self.command.into());
        m.insert("status".into(), Status::of(self.exit_code).as_str().into());
        m.insert("exit_code".into(), self.exit_code.into());
        if let Some(h) = &self.host {
            m.insert("host".into(), cut(h, 253).into());
        }
        if let Some(p) = &self.pvc {
            m.insert("pvc".into(), cut(p, 253).into());
        }
        if let Some(id) = &self.snapshot_id {
            m.insert("snapshot_id".into(), id.clone().into());
        }
        for (k, v) in &self.counters {
            m.insert((*k).into(), (*v).into());
        }
        m.insert(
            "duration".into(),
            ((self.duration * 1000.0).round() / 1000.0).into(),
        );
        m.insert("errors".into(), self.errors.len().into());
        if let Some(f) = &self.fatal {
            m.insert("error".into(), cut(f, FATAL_CHARS).into());
        }
        let base = Value::Object(m.clone()).to_string().len();
        // `,"first_errors":[]` and the truncation flag.
        let mut used = base + 40;
        let mut first = Vec::new();
        for e in &self.errors {
            let e = cut(e, ERROR_CHARS);
            let len = Value::String(e.clone()).to_string().len() + 1;
            if used + len > BUDGET {
                break;
            }
            used += len;
            first.push(Value::String(e));
        }
        if !self.errors.is_empty() {
            let all = first.len() == self.errors.len();
            m.insert("first_errors".into(), Value::Array(first));
            if !all {
                m.insert("errors_truncated".into(), true.into());
            }
        }
        Value::Object(m)
    }
}

/// The termination log to write: the flag or variable, else `/dev/termination-log` when it
/// exists and is writable (inside a Kubernetes container).
pub fn resolve(explicit: Option<&Path>) -> Option<std::path::PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let default = Path::new("/dev/termination-log");
    let writable = std::fs::OpenOptions::new()
        .append(true)
        .open(default)
        .is_ok();
    writable.then(|| default.to_path_buf())
}

/// Writes the summary (replacing what was there: Kubernetes shows the whole file).
pub fn write(path: &Path, summary: &Value) -> std::io::Result<()> {
    let mut text = summary.to_string();
    text.push('\n');
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_long_errors_stay_under_the_limit() {
        let r = Report {
            command: "backup",
            exit_code: 3,
            host: Some("claim-alice".into()),
            counters: vec![("files_new", 5)],
            errors: (0..1000)
                .map(|i| format!("open /data/{}/{i}: permission denied", "x".repeat(400)))
                .collect(),
            fatal: Some("é".repeat(3000)),
            ..Default::default()
        };
        let v = r.to_json();
        let text = v.to_string();
        assert!(text.len() < TERMINATION_LOG_LIMIT, "{}", text.len());
        assert_eq!(v["errors"], 1000);
        assert_eq!(v["status"], "partial");
        assert_eq!(v["errors_truncated"], true);
        assert!(!v["first_errors"].as_array().unwrap().is_empty());
    }

    #[test]
    fn cut_respects_char_boundaries() {
        assert_eq!(cut("ééé", 5), "é...");
        assert_eq!(cut("abc", 3), "abc");
    }
}
