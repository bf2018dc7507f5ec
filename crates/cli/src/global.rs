//! Global flags, environment, password and repository opening, as restic does them.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use restash_backend::{Backend, FileType, LimitedBackend, Limits, LocalBackend, TlsConfig};
use restash_engine::{EngineError, Repository};

/// Options every command accepts.
#[derive(Args, Debug)]
pub struct GlobalOpts {
    /// Repository to back up to or restore from.
    #[arg(short = 'r', long = "repo", env = "RESTIC_REPOSITORY", global = true)]
    pub repo: Option<String>,
    /// File to read the repository location from.
    #[arg(
        long = "repository-file",
        env = "RESTIC_REPOSITORY_FILE",
        global = true
    )]
    pub repository_file: Option<PathBuf>,
    /// File to read the repository password from.
    #[arg(
        short = 'p',
        long = "password-file",
        env = "RESTIC_PASSWORD_FILE",
        global = true
    )]
    pub password_file: Option<PathBuf>,
    /// Shell command to obtain the repository password from (default:
    /// $RESTIC_PASSWORD_COMMAND).
    #[arg(
        long = "password-command",
        value_name = "COMMAND",
        env = "RESTIC_PASSWORD_COMMAND",
        global = true
    )]
    pub password_command: Option<String>,
    /// Key ID prefix to try first.
    #[arg(long = "key-hint", env = "RESTIC_KEY_HINT", global = true)]
    pub key_hint: Option<String>,
    /// Set output mode to JSON for commands that support it.
    #[arg(long, global = true)]
    pub json: bool,
    /// Do not lock the repository (read-only operations).
    #[arg(long = "no-lock", global = true)]
    pub no_lock: bool,
    /// Retry to lock the repository if it is already locked, takes a value like 5m or 2h
    /// (default: no retries).
    #[arg(
        long = "retry-lock",
        value_name = "DURATION",
        global = true,
        value_parser = parse_retry_lock
    )]
    pub retry_lock: Option<std::time::Duration>,
    /// Do not use a local cache.
    #[arg(long = "no-cache", global = true)]
    pub no_cache: bool,
    /// Set the cache directory (default: $RESTIC_CACHE_DIR, else $XDG_CACHE_HOME/restash,
    /// else ~/.cache/restash).
    #[arg(long = "cache-dir", value_name = "DIRECTORY", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Be verbose (repeat for more).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Do not output comprehensive progress report.
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
    /// Compression mode for data: auto, off or max (repository v2 only).
    #[arg(
        long,
        env = "RESTIC_COMPRESSION",
        global = true,
        default_value = "auto"
    )]
    pub compression: String,
    /// Backend option `key=value` (repeatable), e.g. `s3.connections=8`, `s3.layout=s3legacy`.
    #[arg(short = 'o', long = "option", global = true)]
    pub options: Vec<String>,
    /// Target pack size in MiB (4 to 128).
    #[arg(long = "pack-size", env = "RESTIC_PACK_SIZE", global = true)]
    pub pack_size: Option<usize>,
    /// Limits uploads to a maximum rate in KiB/s (default: unlimited).
    // restic has no environment variable for the limits (checked up to 0.18), so neither
    // do we. Negative numbers reach the parser, which names the problem.
    #[arg(
        long = "limit-upload",
        value_name = "RATE",
        global = true,
        allow_negative_numbers = true,
        value_parser = parse_rate_kib
    )]
    pub limit_upload: Option<u64>,
    /// Limits downloads to a maximum rate in KiB/s (default: unlimited).
    #[arg(
        long = "limit-download",
        value_name = "RATE",
        global = true,
        allow_negative_numbers = true,
        value_parser = parse_rate_kib
    )]
    pub limit_download: Option<u64>,
    /// File to load root certificates from, instead of the system's (repeatable, or
    /// comma-separated; default: $RESTIC_CACERT).
    // restic reads RESTIC_CACERT as a comma-separated list (0.16 on; 0.14 ignores it), and
    // its StringSlice flag splits each value on commas too.
    #[arg(
        long = "cacert",
        value_name = "FILE",
        env = "RESTIC_CACERT",
        value_delimiter = ',',
        global = true
    )]
    pub cacert: Vec<PathBuf>,
    /// Path to a file containing PEM encoded TLS client certificate and private key.
    #[arg(
        long = "tls-client-cert",
        value_name = "FILE",
        env = "RESTIC_TLS_CLIENT_CERT",
        global = true
    )]
    pub tls_client_cert: Option<PathBuf>,
    /// Skip TLS certificate verification when connecting to the repository (insecure).
    #[arg(long = "insecure-tls", global = true)]
    pub insecure_tls: bool,
    /// The TLS flags' files, read once.
    #[arg(skip)]
    tls_loaded: std::sync::OnceLock<TlsConfig>,
}

fn parse_retry_lock(s: &str) -> Result<std::time::Duration, String> {
    restash_engine::units::parse_duration(s).map_err(|e| e.to_string())
}

/// A `--limit-upload`/`--limit-download` rate: a whole number of KiB/s, 0 for unlimited.
fn parse_rate_kib(s: &str) -> Result<u64, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n < 0 => Err("a rate cannot be negative (KiB/s, 0 for unlimited)".into()),
        Ok(n) => u64::try_from(n).map_err(|_| "the rate is too large".into()),
        Err(_) => Err("not a whole number of KiB/s (0 for unlimited)".into()),
    }
}

impl GlobalOpts {
    /// The repository location, from `-r`, `--repository-file` or the environment.
    pub fn repository(&self) -> anyhow::Result<String> {
        if let Some(r) = &self.repo {
            return Ok(r.clone());
        }
        if let Some(f) = &self.repository_file {
            let s = std::fs::read_to_string(f)
                .with_context(|| format!("reading repository file {}", f.display()))?;
            return Ok(s.trim_end_matches(['\n', '\r']).to_string());
        }
        bail!("Please specify repository location (-r or --repository-file)")
    }

    /// The password, in restic's order: `--password-command` or `--password-file` (not
    /// both), `RESTIC_PASSWORD`, or asked for.
    pub fn password(&self) -> anyhow::Result<Secret> {
        if self.password_file.is_some() && self.password_command.is_some() {
            bail!("Password file and command are mutually exclusive options");
        }
        if let Some(cmd) = &self.password_command {
            return password_from_command(cmd);
        }
        if let Some(f) = &self.password_file {
            let s = std::fs::read_to_string(f)
                .with_context(|| format!("Resolving password failed: {}", f.display()))?;
            return Ok(Secret(first_line(&s)));
        }
        if let Ok(p) = std::env::var("RESTIC_PASSWORD") {
            return Ok(Secret(p));
        }
        read_password("enter password for repository: ")
    }

    /// The password for a new repository: like [`GlobalOpts::password`], but asked twice
    /// on a terminal.
    pub fn new_password(&self) -> anyhow::Result<Secret> {
        if self.password_file.is_some()
            || self.password_command.is_some()
            || std::env::var_os("RESTIC_PASSWORD").is_some()
            || !std::io::stdin().is_terminal()
        {
            return self.password();
        }
        let a = read_password("enter password for new repository: ")?;
        let b = read_password("enter password again: ")?;
        if a.0 != b.0 {
            bail!("passwords do not match");
        }
        Ok(a)
    }

    /// `--compression`.
    pub fn compression(&self) -> anyhow::Result<restash_format::Compression> {
        use restash_format::Compression;
        Ok(match self.compression.as_str() {
            "auto" => Compression::Auto,
            "off" => Compression::Off,
            "max" => Compression::Max,
            other => bail!("invalid compression mode {other:?} (auto, off or max)"),
        })
    }

    /// `--pack-size` in bytes (default 16 MiB).
    pub fn pack_size(&self) -> anyhow::Result<usize> {
        let mib = self.pack_size.unwrap_or(16);
        if !(4..=128).contains(&mib) {
            bail!("pack size {mib} MiB is out of range (4 to 128 MiB)");
        }
        Ok(mib << 20)
    }

    /// The backend of the repository named by the flags, with the `-o` options applied,
    /// held to `--limit-upload`/`--limit-download`, and a network store's calls retried.
    pub fn backend(&self) -> anyhow::Result<Arc<dyn Backend>> {
        self.open_backend_at(&self.repository()?)
    }

    /// The backend at `url` with these flags' `-o` options and rate limits: restic applies
    /// both to every repository a command opens (`copy`'s source too).
    ///
    /// The layers, outermost first, as restic stacks them: the cache (added by
    /// [`Self::open`]), retries, limits, the store. Retries sit outside the limits so that
    /// every attempt takes an in-flight slot and pays for its bytes like any request, and a
    /// call waiting to retry holds no slot; the cache sits outside everything, so that a
    /// file it holds costs no request at all.
    pub fn open_backend_at(&self, url: &str) -> anyhow::Result<Arc<dyn Backend>> {
        let (store, retry) = open_store(url, &self.options, &self.tls()?)?;
        Ok(with_retries(self.limit(store), retry))
    }

    /// The TLS flags, their files read and checked once per run (`copy` opens two
    /// repositories). Like restic, bad files fail every command, even on a local
    /// repository; `--insecure-tls` is warned about.
    pub fn tls(&self) -> anyhow::Result<TlsConfig> {
        if let Some(tls) = self.tls_loaded.get() {
            return Ok(tls.clone());
        }
        let cacert: Vec<PathBuf> = self
            .cacert
            .iter()
            .filter(|p| !p.as_os_str().is_empty())
            .cloned()
            .collect();
        let tls = TlsConfig::load(&cacert, self.tls_client_cert.as_deref(), self.insecure_tls)?;
        if tls.insecure() {
            eprintln!(
                "warning: --insecure-tls: TLS certificates are not verified; anyone between \
                 here and the server can read and change what is sent"
            );
        }
        Ok(self.tls_loaded.get_or_init(|| tls).clone())
    }

    /// `backend` wrapped in a [`LimitedBackend`] when a rate limit is set.
    pub fn limit(&self, backend: Arc<dyn Backend>) -> Arc<dyn Backend> {
        let limits = Limits::from_kib_per_sec(
            self.limit_upload.unwrap_or(0),
            self.limit_download.unwrap_or(0),
        );
        if limits.is_unlimited() {
            return backend;
        }
        Arc::new(LimitedBackend::new(backend, limits))
    }

    /// The lock a command takes: none with `--no-lock`, else waiting up to
    /// `--retry-lock` for other processes' locks to go.
    pub fn lock_policy(&self) -> restash_engine::LockPolicy {
        restash_engine::LockPolicy {
            skip: self.no_lock,
            wait: self.retry_lock.unwrap_or_default(),
            ..Default::default()
        }
    }

    /// restic's read lock for a command whose engine calls take none of their own (`cat`,
    /// `list`, `key list`): shared, waiting as `--retry-lock` says, none with `--no-lock`.
    pub fn read_lock(
        &self,
        repo: &Repository,
        command: &'static str,
    ) -> anyhow::Result<Option<restash_engine::RepoLock>> {
        let ctl = crate::ui::Ui::new(self, command, false).control();
        Ok(restash_engine::RepoLock::take(
            repo,
            false,
            &self.lock_policy(),
            &ctl,
        )?)
    }

    /// [`Self::lock_policy`] for a command that writes: `--no-lock` does not apply, as
    /// in restic, which ignores it where a lock protects what the command changes.
    pub fn write_lock_policy(&self) -> restash_engine::LockPolicy {
        restash_engine::LockPolicy {
            skip: false,
            ..self.lock_policy()
        }
    }

    /// Creates the repository named by the flags with a new password; returns it and its
    /// location as the backend describes it (credentials in the URL are never shown).
    pub fn init(&self, version: u32) -> anyhow::Result<(Repository, String)> {
        let backend = self.backend()?;
        let location = backend.location();
        let password = self.new_password()?;
        let kdf = restash_crypto::KdfParams::calibrate();
        let repo = Repository::init(backend, password.0.as_bytes(), version, kdf)?;
        Ok((repo, location))
    }

    /// Opens the repository named by the flags, with the local cache unless `--no-cache`;
    /// does not load the index.
    pub fn open(&self) -> anyhow::Result<Repository> {
        self.open_with_cache(true)
    }

    /// [`Self::open`], with the cache only if `cache` and not `--no-cache`.
    pub fn open_with_cache(&self, cache: bool) -> anyhow::Result<Repository> {
        self.open_listing(cache, &[FileType::Snapshot, FileType::Index])
    }

    /// [`Self::open_with_cache`], listing ahead only the types in `ahead` (see
    /// [`Repository::open_listing`]).
    pub fn open_listing(&self, cache: bool, ahead: &[FileType]) -> anyhow::Result<Repository> {
        let backend = self.backend()?;
        let password = self.password()?;
        let mut repo = Repository::open_listing(
            backend,
            password.0.as_bytes(),
            self.key_hint.as_deref(),
            ahead,
        )?;
        warn_unreadable_keys(&repo);
        if cache && !self.no_cache {
            self.use_cache(&mut repo);
        }
        Ok(repo)
    }

    /// The base directory of all repositories' caches, in restic's order: `--cache-dir`,
    /// `$RESTIC_CACHE_DIR`, `$XDG_CACHE_HOME/restash`, `$HOME/.cache/restash` (restic's
    /// own directory is `restic`; ours is separate so neither tool's cleanup surprises the
    /// other). Fails when none of them is set.
    pub fn cache_base(&self) -> anyhow::Result<PathBuf> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(d) = &self.cache_dir {
            return Ok(d.clone());
        }
        if let Some(d) = var("RESTIC_CACHE_DIR") {
            return Ok(PathBuf::from(d));
        }
        // Like Go's os.UserCacheDir: a relative XDG_CACHE_HOME is ignored.
        if let Some(d) = var("XDG_CACHE_HOME").map(PathBuf::from) {
            if d.is_absolute() {
                return Ok(d.join("restash"));
            }
        }
        if let Some(home) = var("HOME") {
            return Ok(PathBuf::from(home).join(".cache").join("restash"));
        }
        bail!("unable to locate cache directory: neither $XDG_CACHE_HOME nor $HOME is set")
    }

    /// Wraps the repository's backend in its cache. A cache that cannot be set up (no
    /// HOME in a pod, a read-only root) is warned about once and the command runs without
    /// it, as restic does: this is not a fallback to other data, because the cache only
    /// ever holds verified copies of the repository's own files.
    fn use_cache(&self, repo: &mut Repository) {
        let opened = self
            .cache_base()
            .and_then(|base| Ok(restash_engine::cache::attach(repo, &base)?));
        match opened {
            Ok(dir) => {
                if self.verbose > 1 {
                    eprintln!("using cache {}", dir.display());
                }
            }
            Err(e) => eprintln!(
                "warning: unable to open cache: {}; continuing without it",
                crate::exit::message(&e)
            ),
        }
    }
}

/// Names the key files that could not be read while another key opened the repository.
pub fn warn_unreadable_keys(repo: &Repository) {
    for bad in repo.unreadable_keys() {
        eprintln!("warning: {bad}");
    }
}

/// A password that never shows up in Debug output.
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: overwrite the bytes before the allocation is freed.
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&bytes);
    }
}

/// Runs `--password-command` as restic does: split like a shell would (quotes, no
/// expansion), run without a shell, stderr passed through, stdout trimmed. Its output
/// never appears in an error.
fn password_from_command(cmd: &str) -> anyhow::Result<Secret> {
    let words = split_shell_words(cmd)
        .map_err(|e| anyhow::anyhow!("Resolving password failed: --password-command: {e}"))?;
    let (prog, args) = words.split_first().expect("at least one word");
    let out = std::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("Resolving password failed: running {prog:?}"))?;
    if !out.status.success() {
        bail!("Resolving password failed: {prog:?} {}", out.status);
    }
    let text = String::from_utf8(out.stdout)
        .map_err(|_| anyhow::anyhow!("Resolving password failed: {prog:?} printed non-UTF-8"))?;
    Ok(Secret(text.trim().to_string()))
}

/// restic's `SplitShellStrings`, quirks included so that a command that works with
/// restic works here: blanks and backslashes outside quotes separate words, a single or
/// double quote starts or ends a quoted part and also separates words, and a quote right
/// after a backslash is kept as it is (backslash too).
fn split_shell_words(s: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut quote: Option<char> = None;
    let mut last = '\0';
    let mut field: Option<String> = None;
    for c in s.chars() {
        let mut split = None;
        if last != '\\' {
            if quote == Some(c) {
                quote = None;
                split = Some(true);
            } else if quote.is_none() && (c == '"' || c == '\'') {
                quote = Some(c);
                split = Some(true);
            }
        }
        let split = split.unwrap_or_else(|| {
            last = c;
            quote.is_none() && (c == '\\' || c.is_whitespace())
        });
        if split {
            words.extend(field.take());
        } else {
            field.get_or_insert_with(String::new).push(c);
        }
    }
    words.extend(field);
    match quote {
        Some('\'') => Err("single-quoted string not terminated"),
        Some(_) => Err("double-quoted string not terminated"),
        None if words.is_empty() => Err("command string is empty"),
        None => Ok(words),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// Asks for a password (or reads a line from a non-terminal stdin).
pub fn prompt_password(prompt: &str) -> anyhow::Result<Secret> {
    read_password(prompt)
}

fn read_password(prompt: &str) -> anyhow::Result<Secret> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        if line.is_empty() {
            bail!("Resolving password failed: no password given (set RESTIC_PASSWORD or --password-file)");
        }
        return Ok(Secret(first_line(&line)));
    }
    eprint!("{prompt}");
    let fd = rustix::stdio::stdin();
    let old = rustix::termios::tcgetattr(fd).context("reading terminal settings")?;
    let mut quiet = old.clone();
    quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
    rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &quiet)?;
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &old)?;
    eprintln!();
    r?;
    Ok(Secret(first_line(&line)))
}

/// `backend` in a [`restash_backend::RetryBackend`] with `retry`'s budget, if it is a
/// network store's.
fn with_retries(
    backend: Arc<dyn Backend>,
    retry: Option<restash_backend::BackendOptions>,
) -> Arc<dyn Backend> {
    match retry {
        Some(opts) => Arc::new(restash_backend::RetryBackend::new(backend, &opts)),
        None => backend,
    }
}

/// The store a restic repository URL names, without layers, and for a network store the
/// options its retries are to use. A local directory is not retried: its failures are
/// not the passing kind a retry cures.
fn open_store(
    url: &str,
    options: &[String],
    tls: &TlsConfig,
) -> anyhow::Result<(Arc<dyn Backend>, Option<restash_backend::BackendOptions>)> {
    let with_options = |scheme: &str| -> anyhow::Result<restash_backend::BackendOptions> {
        let mut o = restash_backend::BackendOptions::from_env(scheme)?;
        o.tls = tls.clone();
        for kv in options {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                EngineError::Usage(format!("invalid option {kv:?}: use key=value"))
            })?;
            o.set(k, v)?;
        }
        Ok(o)
    };
    if let Some(rest) = url.strip_prefix("local:") {
        return Ok((Arc::new(LocalBackend::new(rest)), None));
    }
    // Backend options: RESTASH_* variables, then restic's `-o key=value` flags on top.
    if url.starts_with("s3:") {
        let opts = with_options("s3")?;
        let store = restash_backend::S3Backend::open(url, opts.clone())?;
        return Ok((Arc::new(store), Some(opts)));
    }
    if url.starts_with("rest:") {
        let opts = with_options("rest")?;
        let store = restash_backend::RestBackend::open(url, opts.clone())?;
        return Ok((Arc::new(store), Some(opts)));
    }
    for scheme in ["sftp:", "b2:", "azure:", "gs:", "swift:", "rclone:"] {
        if url.starts_with(scheme) {
            return Err(EngineError::Usage(format!(
                "the {} backend is not available in this build yet",
                scheme.trim_end_matches(':')
            ))
            .into());
        }
    }
    Ok((Arc::new(LocalBackend::new(url)), None))
}

#[cfg(test)]
mod tests {
    use super::parse_rate_kib;

    #[test]
    fn shell_words_split_like_restic() {
        // The cases of restic's shell_split_test.go.
        let cases: &[(&str, &[&str])] = &[
            ("foo", &["foo"]),
            ("'foo'", &["foo"]),
            ("foo bar baz", &["foo", "bar", "baz"]),
            ("foo 'bar' baz", &["foo", "bar", "baz"]),
            ("'bar box' baz", &["bar box", "baz"]),
            (r#""bar 'box'" baz"#, &["bar 'box'", "baz"]),
            (r#"'bar "box"' baz"#, &[r#"bar "box""#, "baz"]),
            (r#"\"bar box baz"#, &[r#""bar"#, "box", "baz"]),
            (r#""bar/foo/x" "box baz""#, &["bar/foo/x", "box baz"]),
        ];
        for (input, want) in cases {
            assert_eq!(&super::split_shell_words(input).unwrap(), want, "{input}");
        }
        let invalid = [
            ("foo'", "single-quoted string not terminated"),
            ("foo\"", "double-quoted string not terminated"),
            ("foo 'bar", "single-quoted string not terminated"),
            ("foo \"bar", "double-quoted string not terminated"),
            ("", "command string is empty"),
        ];
        for (input, err) in invalid {
            assert_eq!(super::split_shell_words(input), Err(err), "{input}");
        }
    }

    #[test]
    fn rates_are_whole_non_negative_kib() {
        assert_eq!(parse_rate_kib("0"), Ok(0));
        assert_eq!(parse_rate_kib("1024"), Ok(1024));
        for bad in ["-1", "abc", "1.5", "", "99999999999999999999999"] {
            assert!(parse_rate_kib(bad).is_err(), "{bad:?}");
        }
    }
}
