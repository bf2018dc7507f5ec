//! Runners for the real `restic` and `restash` binaries.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// Password of every fixture repository and of the repositories the tests create.
pub const PASSWORD: &str = "geheim";

/// Variables that would make a run depend on the developer's shell rather than the test.
const SCRUBBED_ENV: &[&str] = &[
    "RESTIC_REPOSITORY",
    "RESTIC_REPOSITORY_FILE",
    "RESTIC_PASSWORD",
    "RESTIC_PASSWORD_FILE",
    "RESTIC_PASSWORD_COMMAND",
    "RESTIC_KEY_HINT",
    "RESTIC_COMPRESSION",
    "RESTIC_PACK_SIZE",
    "RESTIC_CACHE_DIR",
    "RESTIC_HOST",
    "RESTIC_CACERT",
    "RESTIC_TLS_CLIENT_CERT",
    "RESTASH_SERVE_TOKEN",
];

/// Outcome of one command run; `code` is the exit status, or 128+signal if it was killed.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// Shell-like rendering of the command line, for failure messages.
    pub cmd: String,
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl CmdOutput {
    /// Panics unless the command exited 0.
    #[track_caller]
    pub fn success(self) -> Self {
        self.expect_code(0)
    }

    /// Panics unless the command exited with `code`.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Self {
        if self.code != code {
            panic!("expected exit code {code}\n{}", self.describe());
        }
        self
    }

    /// Multi-line summary (command, code, stderr, start of stdout) for assertion messages.
    pub fn describe(&self) -> String {
        let stdout = String::from_utf8_lossy(&self.stdout);
        format!(
            "command: {}\nexit code: {}\n--- stderr ---\n{}\n--- stdout (first 2000 bytes) ---\n{}",
            self.cmd,
            self.code,
            tail(&self.stderr, 6000),
            head(&stdout, 2000)
        )
    }

    /// Stdout as UTF-8; panics otherwise.
    #[track_caller]
    pub fn stdout_str(&self) -> &str {
        std::str::from_utf8(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not UTF-8 ({e})\n{}", self.describe()))
    }

    /// Stdout's non-empty lines, trimmed.
    #[track_caller]
    pub fn lines(&self) -> Vec<String> {
        self.stdout_str()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Sorted ids of the snapshots `snapshots --json` listed.
    #[track_caller]
    pub fn snapshot_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .json()
            .as_array()
            .unwrap_or_else(|| panic!("no snapshot array\n{}", self.describe()))
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_string())
            .collect();
        ids.sort();
        ids
    }

    /// Stdout parsed as one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", self.describe()))
    }

    /// Stdout parsed as one JSON document per non-empty line (restic's `ls --json` style).
    #[track_caller]
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout_str()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("stdout line is not JSON ({e}): {l:?}\n{}", self.describe())
                })
            })
            .collect()
    }
}

fn head(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Path of the restic binary; `RESTASH_TEST_RESTIC` overrides it for local experiments.
pub fn restic_bin() -> PathBuf {
    std::env::var_os("RESTASH_TEST_RESTIC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/restic"))
}

/// Path of the restash binary under test. `RESTASH_TEST_BIN` overrides it, e.g.
/// `RESTASH_TEST_BIN=/usr/bin/restic` checks a test against restic itself before restash
/// implements the command it drives.
pub fn restash_bin() -> PathBuf {
    std::env::var_os("RESTASH_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_restash")))
}

/// Runs `program args…` with the password, TZ=UTC and a scrubbed environment; `env` entries
/// are applied last so a test can override the password or add variables.
pub fn run_cmd<I, S>(program: &Path, args: I, env: &[(&str, &str)]) -> CmdOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let (mut cmd, rendered) = prepare_cmd(program, args, env);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {rendered}: {e}"));
    cmd_output(rendered, out)
}

/// The command [`run_cmd`] would run (password, TZ=UTC, scrubbed environment, stdin from
/// /dev/null), not yet started, and its rendering for messages; for callers that need to
/// feed stdin, change the working directory or run it in the background.
pub fn prepare_cmd<I, S>(program: &Path, args: I, env: &[(&str, &str)]) -> (Command, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut cmd = Command::new(program);
    cmd.args(&args).stdin(Stdio::null());
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    // TZ=UTC makes any human-readable times deterministic; JSON keeps the stored offsets.
    // restash caches, as it does for users, but in a directory of this test process
    // rather than the developer's ~/.cache (restic runs with --no-cache).
    cmd.env("RESTIC_PASSWORD", PASSWORD)
        .env("TZ", "UTC")
        .env("RESTIC_CACHE_DIR", test_cache_dir());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let rendered = std::iter::once(program.as_os_str())
        .chain(args.iter().map(|a| a.as_os_str()))
        .map(|a| format!("{:?}", a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    (cmd, rendered)
}

/// The cache directory of this test process: under cargo's temporary directory for
/// integration tests, one per process, so runs and test binaries never share a cache.
pub fn test_cache_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("restash-cache")
            .join(std::process::id().to_string());
        // A directory left by an earlier process with the same pid.
        let _ = std::fs::remove_dir_all(&dir);
        dir
    })
}

/// Turns a finished process into a [`CmdOutput`]; a signal `s` becomes code 128+s.
pub fn cmd_output(rendered: String, out: std::process::Output) -> CmdOutput {
    let code = match out.status.code() {
        Some(c) => c,
        None => {
            use std::os::unix::process::ExitStatusExt;
            128 + out.status.signal().unwrap_or(0)
        }
    };
    CmdOutput {
        cmd: rendered,
        code,
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs restic 0.14. `--no-cache` keeps runs independent of each other and of `~/.cache`.
pub fn restic<I, S>(args: I, env: &[(&str, &str)]) -> CmdOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let all = std::iter::once(OsString::from("--no-cache"))
        .chain(args.into_iter().map(|a| a.as_ref().to_owned()));
    run_cmd(&restic_bin(), all, env)
}

/// Runs restash exactly as given: it must accept restic's command lines unchanged, so no
/// extra flags are added that could mask a parsing difference.
pub fn restash<I, S>(args: I, env: &[(&str, &str)]) -> CmdOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_cmd(&restash_bin(), args, env)
}

/// Where restic restores an absolutely-backed-up `source` when given `--target target`.
pub fn restored_path(target: &Path, source: &Path) -> PathBuf {
    assert!(source.is_absolute(), "{source:?} must be absolute");
    target.join(source.strip_prefix("/").expect("absolute path"))
}

/// A repository location plus the temporary directory that owns it (if any).
pub struct Repo {
    pub path: PathBuf,
    _owner: Option<TempDir>,
}

impl Repo {
    /// Wraps an existing repository; `owner` keeps its temporary directory alive.
    pub fn new(path: PathBuf, owner: Option<TempDir>) -> Self {
        Repo {
            path,
            _owner: owner,
        }
    }

    /// `restic init --repository-version 2` in a fresh temporary directory.
    pub fn init_v2() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("repo");
        restic(
            crate::common::osargs!["-r", path, "init", "--repository-version", "2"],
            &[],
        )
        .success();
        Repo::new(path, Some(dir))
    }

    fn with_repo<I, S>(&self, args: I) -> Vec<OsString>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all = vec![OsString::from("-r"), self.path.clone().into_os_string()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        all
    }

    /// restic against this repository (no expectation on the exit code).
    pub fn restic<I, S>(&self, args: I) -> CmdOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        restic(self.with_repo(args), &[])
    }

    /// restash against this repository (no expectation on the exit code).
    pub fn restash<I, S>(&self, args: I) -> CmdOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        restash(self.with_repo(args), &[])
    }

    /// `restic backup` of one absolute path with the given `--compression` mode.
    pub fn restic_backup(&self, source: &Path, compression: &str) -> CmdOutput {
        assert!(source.is_absolute(), "{source:?} must be absolute");
        self.restic(crate::common::osargs![
            "--compression",
            compression,
            "backup",
            "--host",
            "restash-e2e",
            source
        ])
        .success()
    }

    /// Snapshot list as parsed by `restic snapshots --json`.
    pub fn restic_snapshots(&self) -> Vec<serde_json::Value> {
        match self.restic(["snapshots", "--json"]).success().json() {
            serde_json::Value::Array(v) => v,
            other => panic!("restic snapshots --json is not an array: {other}"),
        }
    }
}

/// The seed in `$var`, or one from the clock; printed as `var=SEED` so a failing run can
/// be repeated.
pub fn seed_from_env(var: &str) -> u64 {
    let seed = std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
                % 1_000_000_007
        });
    eprintln!("{var}={seed}");
    seed
}
