//! Helpers for the `restash serve` tests: the server running in the background (ready once
//! it prints its address), requests made with the system's curl as any client would, URLs
//! of snapshot paths, the ages the pages should show, and archives unpacked with the
//! system's tar and unzip.

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

use crate::common::backup::{Background, Tool};
use crate::common::tree::{post_order, set_mtime};
use crate::common::CmdOutput;

/// The line `restash serve` prints once it listens; the URL follows it.
pub const READY: &str = "serving the repository at ";

/// `restash serve` running in the background; dropping it kills and reaps the process.
pub struct Server {
    bg: Background,
    /// `http://127.0.0.1:PORT/`.
    pub base: String,
}

impl Server {
    /// Starts `restash ARGS…` (the args include `serve` and `--listen 127.0.0.1:0`) and
    /// waits until it prints its address. `RESTASH_SERVE_TOKEN` is only set when `env`
    /// gives it (the runners scrub it), so a developer's own token never changes what a
    /// test sees.
    #[track_caller]
    pub fn start(args: Vec<OsString>, env: &[(&str, &str)]) -> Server {
        let mut bg = Background::spawn(Tool::Restash, args, env, false);
        let start = Instant::now();
        loop {
            let out = bg.stdout_so_far();
            if let Some(line) = out.lines().find(|l| l.starts_with(READY)) {
                let base = line[READY.len()..].trim().to_string();
                assert!(
                    base.starts_with("http://") && base.ends_with('/'),
                    "address line {line:?}"
                );
                return Server { bg, base };
            }
            if !bg.running() {
                panic!("serve ended before it was ready\n{}", bg.wait().describe());
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!("serve not ready after 60 s\n{}", bg.kill().describe());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `base` followed by `path` (which has no leading `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        let rest = self.base.trim_end_matches('/');
        rest.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {:?}", self.base))
    }

    /// What it printed so far.
    pub fn stdout(&self) -> String {
        self.bg.stdout_so_far()
    }

    /// What it logged so far.
    pub fn stderr(&self) -> String {
        self.bg.stderr_so_far()
    }

    /// Sends `sig` to this process only.
    pub fn signal(&self, sig: rustix::process::Signal) {
        self.bg.signal(sig);
    }

    /// Waits (at most 30 s, then kills it) for the process to end; its outcome.
    pub fn wait(self) -> CmdOutput {
        self.bg.wait_at_most(Duration::from_secs(30))
    }
}

/// One request's outcome as curl saw it.
#[derive(Debug)]
pub struct Fetched {
    /// curl's exit code: 0, or why the transfer failed (18: the body ended short).
    pub curl: i32,
    /// The HTTP status (0 when none arrived).
    pub status: u16,
    /// The response headers, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// The body bytes that arrived.
    pub body: Vec<u8>,
    /// curl's own message.
    pub stderr: String,
}

impl Fetched {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `curl URL` with `extra` arguments (headers, `-u`); never follows redirects.
pub fn curl(url: &str, extra: &[&str]) -> Fetched {
    let dir = tempfile::tempdir().expect("tempdir");
    let (body, head) = (dir.path().join("body"), dir.path().join("head"));
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "120", "-w", "%{http_code}", "-o"])
        .arg(&body)
        .arg("-D")
        .arg(&head)
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl (install Debian's curl): {e}"));
    let headers = fs::read_to_string(&head)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Fetched {
        curl: out.status.code().unwrap_or(-1),
        status: String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        headers,
        body: fs::read(&body).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `curl URL` that must answer 200 and arrive whole; the body.
#[track_caller]
pub fn get(url: &str, extra: &[&str]) -> Vec<u8> {
    let f = curl(url, extra);
    assert!(
        f.curl == 0 && f.status == 200,
        "GET {url}: curl exit {}, status {}: {}{}",
        f.curl,
        f.status,
        f.stderr,
        String::from_utf8_lossy(&f.body[..f.body.len().min(2000)])
    );
    f.body
}

/// `GET url` parsed as JSON.
#[track_caller]
pub fn get_json(url: &str, extra: &[&str]) -> serde_json::Value {
    let body = get(url, extra);
    serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{url} is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })
}

/// A URL path segment for raw name bytes: everything but unreserved characters escaped.
pub fn seg(name: &[u8]) -> String {
    name.iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The URL path of an absolute file system path inside a snapshot: one segment per name.
pub fn path_url(abs: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    abs.components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(seg(n.as_bytes())),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The id of `host`'s newest snapshot, as `restic snapshots` lists them.
#[track_caller]
pub fn newest_id(repo: &Path, host: &str) -> String {
    let out = crate::common::restic(
        crate::common::backup::with_repo(repo, ["snapshots", "--json", "--host", host]),
        &[],
    )
    .success()
    .json();
    let all = out.as_array().expect("snapshot list");
    let newest = all
        .iter()
        .max_by_key(|s| s["time"].as_str().unwrap_or("").to_string())
        .unwrap_or_else(|| panic!("no snapshot of {host}"));
    newest["id"].as_str().expect("id").to_string()
}

/// Seconds since the epoch.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Gives every entry below `root` (and `root`) a whole, even second as its mtime: zip
/// stores times to two seconds and tar to one, so an unpacked archive can then match the
/// source exactly.
pub fn whole_second_mtimes(root: &Path) {
    for (i, path) in post_order(root).iter().enumerate() {
        set_mtime(path, 1_600_000_000 + 2 * 3_607 * i as i64, 0);
    }
}

/// Which kind of archive a folder was downloaded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archive {
    TarGz,
    Zip,
}

/// Unpacks `archive` into `dest` (created) with the system's tar or unzip, as a person
/// would; unzip runs under TZ=UTC because zip stores local times.
#[track_caller]
pub fn unpack(archive: &Path, kind: Archive, dest: &Path) {
    fs::create_dir_all(dest).expect("mkdir");
    let mut cmd = match kind {
        Archive::TarGz => {
            let mut c = Command::new("tar");
            c.arg("-xzf").arg(archive).arg("-C").arg(dest);
            c
        }
        Archive::Zip => {
            let mut c = Command::new("unzip");
            c.arg("-q")
                .arg(archive)
                .arg("-d")
                .arg(dest)
                .env("TZ", "UTC");
            c
        }
    };
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (Debian's tar and unzip are needed): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `restash ARGS…` that must end by itself (within 30 s, else it is killed).
pub fn run_to_end(args: Vec<OsString>, env: &[(&str, &str)]) -> CmdOutput {
    Background::spawn(Tool::Restash, args, env, false).wait_at_most(Duration::from_secs(30))
}

/// What the volumes page must say of one host, known from how the test made it.
#[derive(Debug, Clone)]
pub struct HostExpect {
    pub host: String,
    /// Earliest and latest possible time of its newest snapshot (equal when backdated).
    pub last: (i64, i64),
    pub count: usize,
    /// Regular files and their bytes in its newest snapshot's source.
    pub files: u64,
    pub bytes: u64,
    pub stale: bool,
    pub partial: bool,
}

/// A repository with hosts written by restash and by restic 0.14, backdated or not.
pub struct Fleet {
    pub dir: TempDir,
    pub repo: std::path::PathBuf,
    /// By host name.
    pub hosts: Vec<HostExpect>,
    /// The source of `app-restash`'s newest snapshot (absolute, as stored).
    pub app: std::path::PathBuf,
}

/// The name of a file below `app` that is not UTF-8.
pub const ODD_NAME: &[u8] = b"caf\xe9 \xff.bin";
/// A file name that needs escaping in a URL.
pub const ESCAPED_NAME: &str = "a b#c?d%e&f.txt";

/// The source of `app-restash`: nested folders, a file of several chunks, an empty file,
/// an executable, a symlink, names needing URL escapes and one that is not UTF-8.
pub fn make_app_tree(root: &Path) {
    use crate::common::tree::write_random_file;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let docs = root.join("docs");
    fs::create_dir_all(docs.join("data")).expect("mkdir");
    fs::create_dir_all(docs.join("sub/deeper")).expect("mkdir");
    fs::create_dir_all(root.join("odd")).expect("mkdir");
    fs::write(docs.join("report.txt"), "quarterly numbers\n".repeat(200)).expect("write");
    write_random_file(&docs.join("data/big.bin"), (5 << 20) + 12_345, 41);
    fs::write(docs.join("data/empty"), b"").expect("write");
    write_random_file(&docs.join("sub/deeper/x.csv"), 70_001, 42);
    fs::write(docs.join(ESCAPED_NAME), b"escaped name\n").expect("write");
    fs::write(docs.join("run.sh"), b"#!/bin/sh\necho hi\n").expect("write");
    fs::set_permissions(docs.join("run.sh"), fs::Permissions::from_mode(0o750)).expect("chmod");
    std::os::unix::fs::symlink("report.txt", docs.join("link")).expect("symlink");
    let odd = root.join("odd").join(std::ffi::OsStr::from_bytes(ODD_NAME));
    write_random_file(&odd, 4_321, 43);
    write_random_file(&root.join("top.bin"), 100_000, 44);
}

fn utc_text(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .expect("time in range")
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Backs up `src` as `host`: with restash (now) or with restic 0.14 (at `at`, seconds since
/// the epoch, when given); returns the earliest and latest time the snapshot can have.
pub fn backup_as(
    tool: Tool,
    repo: &Path,
    host: &str,
    src: &Path,
    at: Option<i64>,
    tags: &[&str],
) -> (i64, i64) {
    use crate::common::backup::{run_tool, with_repo};
    let mut args: Vec<OsString> = crate::common::osargs!["backup", "--host", host];
    for t in tags {
        args.extend(crate::common::osargs!["--tag", t]);
    }
    if let Some(at) = at {
        args.extend(crate::common::osargs!["--time", utc_text(at)]);
    }
    args.push(src.as_os_str().to_owned());
    let before = now_unix();
    run_tool(tool, with_repo(repo, args), None, None, &[]).success();
    match at {
        Some(at) => (at, at),
        None => (before, now_unix()),
    }
}

/// Five hosts: `app-restash` (restash, two snapshots), `db-restic` (restic, now),
/// `lab-restic` (restic, five hours ago), `old-restic` (restic, four and three days ago:
/// stale) and `half-restash` (restash, tagged `partial`).
pub fn fleet() -> Fleet {
    use crate::common::backup::{count_regular_files, init_repo, tree_bytes, write_dataset};
    let dir = tempfile::Builder::new()
        .prefix("serve-")
        .tempdir()
        .expect("tempdir");
    let base = dir.path().canonicalize().expect("canonical");
    let repo = base.join("repo");
    init_repo(Tool::Restash, &repo, Some("2"));
    let now = now_unix();
    let mut hosts = Vec::new();
    let mut expect = |host: &str, src: &Path, last, count, stale, partial| {
        hosts.push(HostExpect {
            host: host.into(),
            last,
            count,
            files: count_regular_files(src),
            bytes: tree_bytes(src),
            stale,
            partial,
        })
    };

    let app = base.join("app");
    make_app_tree(&app);
    whole_second_mtimes(&app);
    backup_as(Tool::Restash, &repo, "app-restash", &app, None, &[]);
    crate::common::tree::write_random_file(&app.join("docs/sub/added.bin"), 250_000, 45);
    whole_second_mtimes(&app);
    let last = backup_as(Tool::Restash, &repo, "app-restash", &app, None, &[]);
    expect("app-restash", &app, last, 2, false, false);

    let db = base.join("db");
    write_dataset(&db, 24, 3 << 20, 7);
    let last = backup_as(Tool::Restic, &repo, "db-restic", &db, None, &[]);
    expect("db-restic", &db, last, 1, false, false);

    let lab = base.join("lab");
    write_dataset(&lab, 6, 600_000, 8);
    let last = backup_as(
        Tool::Restic,
        &repo,
        "lab-restic",
        &lab,
        Some(now - 5 * 3600),
        &[],
    );
    expect("lab-restic", &lab, last, 1, false, false);

    let old = base.join("old");
    write_dataset(&old, 5, 300_000, 9);
    backup_as(
        Tool::Restic,
        &repo,
        "old-restic",
        &old,
        Some(now - 4 * 86_400),
        &[],
    );
    write_dataset(&old.join("more"), 3, 200_000, 10);
    let last = backup_as(
        Tool::Restic,
        &repo,
        "old-restic",
        &old,
        Some(now - 3 * 86_400),
        &[],
    );
    expect("old-restic", &old, last, 2, true, false);

    let half = base.join("half");
    write_dataset(&half, 4, 120_000, 11);
    let last = backup_as(
        Tool::Restash,
        &repo,
        "half-restash",
        &half,
        None,
        &["partial"],
    );
    expect("half-restash", &half, last, 1, false, true);

    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    Fleet {
        dir,
        repo,
        hosts,
        app,
    }
}
