//! Log lines for a batch job: JSON lines (`{"time":…,"level":…,"msg":…}`) when nobody
//! watches a terminal, plain text on stderr otherwise.

use serde_json::{Map, Value};

/// Where log lines go and how they look.
#[derive(Debug, Clone, Copy)]
pub struct Log {
    /// JSON lines instead of text.
    pub json: bool,
    /// JSON lines go to stderr (restic's `--json` owns stdout) instead of stdout.
    pub to_stderr: bool,
    /// Suppress informational text (`-q`); warnings and errors still show.
    pub quiet: bool,
}

/// Now in RFC 3339 UTC with milliseconds, as log collectors expect.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Log {
    /// An informational message with extra fields (an object, or `Value::Null`).
    pub fn info(&self, msg: &str, fields: Value) {
        if !self.quiet || self.json {
            self.emit("info", msg, fields);
        }
    }

    /// Something went wrong but the run goes on.
    pub fn warn(&self, msg: &str, fields: Value) {
        self.emit("warning", msg, fields);
    }

    /// A failure.
    pub fn error(&self, msg: &str, fields: Value) {
        self.emit("error", msg, fields);
    }

    fn emit(&self, level: &str, msg: &str, fields: Value) {
        if self.json {
            let mut line = Map::new();
            line.insert("time".into(), now_rfc3339().into());
            line.insert("level".into(), level.into());
            line.insert("msg".into(), msg.into());
            if let Value::Object(f) = fields {
                line.extend(f);
            }
            let text = Value::Object(line).to_string();
            if self.to_stderr {
                eprintln!("{text}");
            } else {
                println!("{text}");
            }
            return;
        }
        let mut text = match level {
            "info" => msg.to_string(),
            other => format!("{other}: {msg}"),
        };
        if let Value::Object(f) = fields {
            for (k, v) in f {
                match v {
                    Value::String(s) => text.push_str(&format!(" {k}={s}")),
                    v => text.push_str(&format!(" {k}={v}")),
                }
            }
        }
        eprintln!("{text}");
    }
}
