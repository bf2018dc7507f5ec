//! Prometheus text exposition of a run: written atomically to a file (for node-exporter's
//! textfile collector or a sidecar) and/or pushed to a Pushgateway.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::termlog::Report;

/// One sample of a gauge.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Metric name without the `restash_<command>_` prefix.
    pub name: &'static str,
    /// HELP text.
    pub help: &'static str,
    /// Extra labels besides `host`.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// A sample without extra labels.
    pub fn new(name: &'static str, help: &'static str, value: f64) -> Sample {
        Sample {
            name,
            help,
            labels: Vec::new(),
            value,
        }
    }
}

/// Escapes a label value: backslash, double quote and line feed, as the format requires.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn fmt_value(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The last-success timestamp a previous metrics file recorded, if any.
pub fn previous_last_success(text: &str, command: &str) -> Option<f64> {
    let name = format!("restash_{command}_last_success_timestamp_seconds");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(&name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The exposition text: the common gauges of every run plus `extra`. `last_success` is
/// the time of the last run with exit code 0 (this one, or one before), if known.
pub fn render(report: &Report, extra: &[Sample], now: f64, last_success: Option<f64>) -> String {
    let mut samples = vec![
        Sample::new(
            "last_run_timestamp_seconds",
            "Unix time the last run ended.",
            now,
        ),
        Sample::new(
            "last_run_exit_code",
            "Exit code of the last run (0 ok, 3 partial, 130/143 interrupted).",
            report.exit_code as f64,
        ),
        Sample::new(
            "duration_seconds",
            "Wall time of the last run.",
            report.duration,
        ),
        Sample::new(
            "errors",
            "Files the last run could not read or write.",
            report.errors.len() as f64,
        ),
    ];
    if let Some(t) = last_success {
        samples.insert(
            0,
            Sample::new(
                "last_success_timestamp_seconds",
                "Unix time the last fully successful run (exit code 0) ended.",
                t,
            ),
        );
    }
    samples.extend_from_slice(extra);
    let host = report.host.as_deref().unwrap_or("");
    let mut out = String::new();
    let mut seen: Vec<&str> = Vec::new();
    for s in &samples {
        let full = format!("restash_{}_{}", report.command, s.name);
        if !seen.contains(&s.name) {
            seen.push(s.name);
            let _ = writeln!(out, "# HELP {full} {}", s.help);
            let _ = writeln!(out, "# TYPE {full} gauge");
        }
        let mut labels = format!("host=\"{}\"", escape_label(host));
        for (k, v) in &s.labels {
            let _ = write!(labels, ",{k}=\"{}\"", escape_label(v));
        }
        let _ = writeln!(out, "{full}{{{labels}}} {}", fmt_value(s.value));
    }
    out
}

/// Writes `text` to `path` through a temporary file and a rename, so a collector never
/// reads half a file.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.unwrap_or_else(|| "metrics".into()),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Percent-encodes one URL path segment (everything but RFC 3986 unreserved characters).
fn path_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The Pushgateway URL of this run's group: `BASE/metrics/job/restash/host/<host>`.
pub fn push_url(base: &str, host: &str) -> String {
    format!(
        "{}/metrics/job/restash/host/{}",
        base.trim_end_matches('/'),
        path_segment(host)
    )
}

/// Sends the text to a Pushgateway. A full set (with the last-success time) replaces the
/// group (PUT); a set without it is POSTed, which replaces only the metrics it names, so
/// the gateway keeps the previous last-success time.
pub fn push(base: &str, host: &str, text: &str, complete: bool) -> anyhow::Result<()> {
    let method = if complete {
        restash_backend::push::Method::Put
    } else {
        restash_backend::push::Method::Post
    };
    restash_backend::push::send(
        method,
        &push_url(base, host),
        text.as_bytes().to_vec(),
        "text/plain; version=0.0.4",
        Duration::from_secs(30),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_help_comes_once() {
        let r = Report {
            command: "backup",
            host: Some("a\"b\\c\nd".into()),
            ..Default::default()
        };
        let extra = [
            Sample {
                labels: vec![("state", "new".into())],
                ..Sample::new("files", "Files.", 2.0)
            },
            Sample {
                labels: vec![("state", "changed".into())],
                ..Sample::new("files", "Files.", 3.0)
            },
        ];
        let t = render(&r, &extra, 1700000000.5, Some(1600000000.0));
        assert!(
            t.contains(r#"restash_backup_files{host="a\"b\\c\nd",state="new"} 2"#),
            "{t}"
        );
        assert_eq!(t.matches("# HELP restash_backup_files ").count(), 1);
        assert!(t.contains("} 1700000000.5\n"), "{t}");
        assert_eq!(previous_last_success(&t, "backup"), Some(1600000000.0));
        assert_eq!(previous_last_success(&t, "restore"), None);
    }

    #[test]
    fn push_url_encodes_the_host() {
        assert_eq!(
            push_url("http://gw:9091/", "claim-a/b c"),
            "http://gw:9091/metrics/job/restash/host/claim-a%2Fb%20c"
        );
    }
}
