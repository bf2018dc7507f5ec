//! Log lines for a batch job: JSON lines (`{"time":…,"level":…,"msg":…}`) when nobody
//! watches a terminal, plain text on stderr otherwise, and a live progress line on an
//! interactive stderr.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use restash_engine::archiver::Progress;
use serde_json::{json, Map, Value};

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

/// A progress reporter running beside the backup; stop it with [`Reporter::stop`].
pub struct Reporter {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Reporter {
    /// JSON `progress` log lines every `every` when `log.json`; a `\r` progress line on
    /// stderr when stderr is a terminal; otherwise nothing.
    pub fn start(log: Log, progress: Arc<Progress>, every: Duration) -> Reporter {
        let tty = !log.json && !log.quiet && std::io::stderr().is_terminal();
        let stop = Arc::new(AtomicBool::new(false));
        if !log.json && !tty {
            return Reporter { stop, handle: None };
        }
        let flag = stop.clone();
        let tick = if tty {
            Duration::from_millis(250)
        } else {
            every
        };
        let handle = std::thread::spawn(move || {
            let start = Instant::now();
            let mut last = Instant::now();
            while !flag.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
                if last.elapsed() < tick {
                    continue;
                }
                last = Instant::now();
                let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                let (files, files_done) = (get(&progress.files_seen), get(&progress.files_done));
                let (bytes, bytes_done) = (get(&progress.bytes_seen), get(&progress.bytes_done));
                let percent = if bytes == 0 {
                    0.0
                } else {
                    (bytes_done as f64 / bytes as f64).min(1.0)
                };
                if tty {
                    let secs = start.elapsed().as_secs();
                    let mut err = std::io::stderr().lock();
                    let _ = write!(
                        err,
                        "\r\x1b[2K[{}:{:02}] {:5.1}%  {files_done} / {files} files  {} / {}",
                        secs / 60,
                        secs % 60,
                        percent * 100.0,
                        crate::cmd_backup::human(bytes_done),
                        crate::cmd_backup::human(bytes),
                    );
                    let _ = err.flush();
                } else {
                    log.info(
                        "progress",
                        json!({
                            "seconds_elapsed": start.elapsed().as_secs(),
                            "percent_done": percent,
                            "total_files": files,
                            "files_done": files_done,
                            "total_bytes": bytes,
                            "bytes_done": bytes_done,
                        }),
                    );
                }
            }
            if tty {
                eprint!("\r\x1b[2K");
            }
        });
        Reporter {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the reporter and clears its terminal line.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
