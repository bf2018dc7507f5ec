//! Real network servers for the S3 and REST backend tests: SeaweedFS (`scripts/s3-server.sh`),
//! Ceph RGW (`scripts/ceph-rgw.sh`; what Open Storage Network runs), both with SigV4 enforced
//! (key `testkey` / secret `testsecret`), and `rclone serve restic`.
//!
//! One server of each kind per test binary, started on first use. A watchdog stops it
//! (and deletes its data) once the test process is gone. Under CI (`CI=true`) a server
//! that cannot start fails the test; elsewhere the test is skipped with a loud notice.
//! Included by the network test files with `#[path = "common/servers.rs"] mod servers;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Access key of the SeaweedFS identity.
pub const S3_KEY: &str = "testkey";
/// Its secret.
pub const S3_SECRET: &str = "testsecret";

/// Whether this is a CI run, where a missing server is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Fails under CI, otherwise prints a loud notice; returns `None` for the caller to skip.
pub fn unavailable<T>(what: &str, why: &str) -> Option<T> {
    if in_ci() {
        panic!("{what} is required under CI but could not be started: {why}");
    }
    eprintln!(
        "\n************************************************************\n\
         SKIPPED: {what} is not available: {why}\n\
         (under CI=true this is a failure)\n\
         ************************************************************\n"
    );
    None
}

/// `vars` as the `(&str, &str)` pairs the command runners take.
pub fn env_refs<'a>(vars: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn on_repo(url: &str, args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut all = crate::common::osargs!["-r", url];
    all.extend(args);
    all
}

/// restash on the repository at `url` with `vars` as extra environment.
pub fn restash_s3(
    url: &str,
    args: Vec<std::ffi::OsString>,
    vars: &[(&str, String)],
) -> crate::common::CmdOutput {
    crate::common::restash(on_repo(url, args), &env_refs(vars))
}

/// restic on the repository at `url` with `vars` as extra environment.
pub fn restic_s3(
    url: &str,
    args: Vec<std::ffi::OsString>,
    vars: &[(&str, String)],
) -> crate::common::CmdOutput {
    crate::common::restic(on_repo(url, args), &env_refs(vars))
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// A distinct lower-case name (bucket, sub-path) for one test.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("restash-{tag}-{}-{n}", std::process::id())
}

/// An S3 server of this test binary (SeaweedFS or Ceph RGW).
#[derive(Debug)]
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Its directory (data, log, pid).
    pub dir: PathBuf,
}

/// The first S3 server the tests had; most tests still run on it alone.
pub type SeaweedFs = S3Server;

impl S3Server {
    /// `s3:http://127.0.0.1:PORT/bucket[/prefix]`.
    pub fn url(&self, bucket: &str) -> String {
        format!("s3:{}/{bucket}", self.endpoint)
    }

    /// Environment with the right credentials and nothing else from the developer's AWS
    /// setup mattering (explicit keys take precedence over profiles).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", S3_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET.to_string()),
            ("AWS_DEFAULT_REGION", "us-east-1".to_string()),
        ]
    }
}

/// Starts SeaweedFS once for this process (about 1 s; the first run installs it into
/// `.venv`, about 10 s), or `None` outside CI when that fails.
pub fn seaweedfs() -> Option<&'static SeaweedFs> {
    static SERVER: OnceLock<Result<SeaweedFs, String>> = OnceLock::new();
    match SERVER.get_or_init(start_seaweedfs) {
        Ok(s) => Some(s),
        Err(why) => unavailable("SeaweedFS (scripts/s3-server.sh)", why),
    }
}

fn start_seaweedfs() -> Result<SeaweedFs, String> {
    start_s3_server("s3-server.sh", "SeaweedFS")
}

/// Starts Ceph RGW (one monitor, one memstore OSD, radosgw) once for this process, about
/// 15 s, or `None` outside CI when that fails (Debian's radosgw, ceph-mon and ceph-osd are
/// needed; .ci/run installs them).
pub fn ceph_rgw() -> Option<&'static S3Server> {
    static SERVER: OnceLock<Result<S3Server, String>> = OnceLock::new();
    match SERVER.get_or_init(|| start_s3_server("ceph-rgw.sh", "Ceph RGW")) {
        Ok(s) => Some(s),
        Err(why) => unavailable("Ceph RGW (scripts/ceph-rgw.sh)", why),
    }
}

fn start_s3_server(script: &str, what: &str) -> Result<S3Server, String> {
    let dir = tempfile::Builder::new()
        .prefix("restash-s3-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let port = free_port();
    let script = repo_root().join("scripts").join(script);
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .arg("start")
        .arg(&dir)
        .arg(port.to_string())
        .env("S3_SERVER_OWNER_PID", std::process::id().to_string())
        .env("S3_SERVER_CLEANUP", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {script:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{script:?} start failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    eprintln!(
        "{what} on 127.0.0.1:{port} ready after {:.1?}",
        started.elapsed()
    );
    Ok(S3Server {
        endpoint: format!("http://127.0.0.1:{port}"),
        dir,
    })
}

/// The `rclone serve restic` server of this test binary (basic auth `restash` / `pw-rest`).
#[derive(Debug)]
pub struct RcloneRest {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The directory it serves.
    pub dir: PathBuf,
}

/// User and password of the REST server.
pub const REST_USER: &str = "restash";
/// The REST password; tests check it never shows up in output.
pub const REST_PASS: &str = "pw-rest-Secr3t";

impl RcloneRest {
    /// `rest:http://user:pass@127.0.0.1:PORT/name/`: one repository per name.
    pub fn url(&self, name: &str) -> String {
        format!("rest:http://{REST_USER}:{REST_PASS}@{}/{name}/", self.addr)
    }
}

/// Starts `rclone serve restic` once for this process, or `None` outside CI when rclone
/// is missing or does not come up.
pub fn rclone_rest() -> Option<&'static RcloneRest> {
    static SERVER: OnceLock<Result<RcloneRest, String>> = OnceLock::new();
    match SERVER.get_or_init(start_rclone) {
        Ok(s) => Some(s),
        Err(why) => unavailable("rclone serve restic", why),
    }
}

fn start_rclone() -> Result<RcloneRest, String> {
    let ok = Command::new("rclone")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        return Err("rclone is not installed (apt-get install rclone)".into());
    }
    let dir = tempfile::Builder::new()
        .prefix("restash-rclone-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // A shell keeps watch: when this test process is gone, rclone is stopped and its
    // directory removed. Its output goes to a log file so no pipe of ours stays open.
    let script = r#"
        rclone serve restic --addr "$1" --user "$2" --pass "$3" "$4/data" \
            </dev/null >"$4/rclone.log" 2>&1 &
        r=$!
        while kill -0 "$5" 2>/dev/null && kill -0 "$r" 2>/dev/null; do sleep 1; done
        kill "$r" 2>/dev/null; wait "$r" 2>/dev/null
        rm -rf "$4"
    "#;
    std::fs::create_dir_all(dir.join("data")).map_err(|e| e.to_string())?;
    Command::new("bash")
        .args(["-c", script, "rclone-watch", &addr, REST_USER, REST_PASS])
        .arg(&dir)
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start rclone: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(&addr).is_ok() {
            return Ok(RcloneRest { addr, dir });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(dir.join("rclone.log")).unwrap_or_default();
    Err(format!(
        "rclone serve restic did not listen on {addr} within 30 s: {log}"
    ))
}

/// The `fault` executable (fault-cli, a TCP fault proxy), installed by
/// `scripts/s3-server.sh fault-bin` on first use (about 75 s), or `None` outside CI when that
/// fails.
pub fn fault_bin() -> Option<&'static Path> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    tool(&BIN, "fault-cli", "s3-server.sh", "fault-bin")
}

/// A tool that `scripts/SCRIPT ARG` installs when missing and whose path it prints (once per
/// test binary, kept in `cell`), or `None` outside CI when that fails.
pub fn tool(
    cell: &'static OnceLock<Result<PathBuf, String>>,
    what: &str,
    script: &str,
    arg: &str,
) -> Option<&'static Path> {
    let r = cell.get_or_init(|| {
        let script = repo_root().join("scripts").join(script);
        let out = Command::new("bash")
            .arg(&script)
            .arg(arg)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {script:?}: {e}"))?;
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{script:?} {arg} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    match r {
        Ok(p) => Some(p.as_path()),
        Err(why) => unavailable(what, why),
    }
}

/// A running `fault` TCP proxy from `127.0.0.1:<port>` to an upstream, with one fault
/// chain (YAML list items under `faults:`) active for as long as it lives.
pub struct FaultProxy {
    child: std::process::Child,
    /// `127.0.0.1:PORT`, where clients connect instead of the upstream.
    pub listen: String,
    dir: tempfile::TempDir,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`host:port`) that goes through `phases` in order: each
    /// an optional duration (`"1s"`; the last one has none and lasts) and a fault chain in
    /// YAML (list items, e.g. `"- type: blackhole\n  flow: both"`).
    pub fn start(bin: &Path, upstream: &str, phases: &[(Option<&str>, &str)]) -> FaultProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let listen = format!("127.0.0.1:{}", free_port());
        let mut yaml = format!(
            "schema_version: 1\nname: restash test\nproxies:\n  - name: s\n    protocol: tcp\n    \
             listen: {listen}\n    upstream: {upstream}\nphases:\n"
        );
        for (i, (duration, faults)) in phases.iter().enumerate() {
            yaml.push_str(&format!("  - name: phase{i}\n"));
            if let Some(d) = duration {
                yaml.push_str(&format!("    duration: {d}\n"));
            }
            yaml.push_str("    proxies:\n      - proxy: s\n        faults:\n");
            for l in faults.lines() {
                yaml.push_str(&format!("          {l}\n"));
            }
        }
        let file = dir.path().join("run.yaml");
        std::fs::write(&file, yaml).expect("write run.yaml");
        let log = std::fs::File::create(dir.path().join("fault.log")).expect("fault.log");
        let child = Command::new(bin)
            .args(["--output", "json", "--color", "never", "run"])
            .arg(&file)
            .arg("--journal")
            .arg(dir.path().join("journal.ndjson"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin:?}: {e}"));
        let mut p = FaultProxy { child, listen, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(&p.listen).is_ok() {
                return p;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("fault exited ({status}): {}", p.log());
            }
            if Instant::now() > deadline {
                panic!(
                    "fault did not listen on {} within 20 s: {}",
                    p.listen,
                    p.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What fault printed so far (NDJSON progress with effect counters).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fault.log")).unwrap_or_default()
    }

    /// The journal of completed streams (one JSON record per line).
    pub fn journal(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("journal.ndjson")).unwrap_or_default()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// mitmproxy's `mitmdump`, installed into the repository's venv by scripts/s3-server.sh
/// (about 10 s on first use), or `None` outside CI when that fails.
pub fn mitmdump_bin() -> Option<&'static Path> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    tool(&BIN, "mitmproxy", "s3-server.sh", "mitmdump-bin")
}

/// A running `mitmdump` reverse proxy in front of an HTTP server, with an addon script (a
/// Python source) that changes requests or answers. The addon finds a directory of its
/// own in `$ADDON_DIR`, e.g. for counts the test reads.
pub struct MitmProxy {
    child: std::process::Child,
    /// `127.0.0.1:PORT`, where clients connect instead of the upstream.
    pub listen: String,
    dir: tempfile::TempDir,
}

impl MitmProxy {
    /// Starts a proxy to `upstream` (`http://host:port`) running `addon`, with `env` as
    /// extra environment of the addon.
    pub fn start(bin: &Path, upstream: &str, addon: &str, env: &[(&str, String)]) -> MitmProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("addon.py");
        std::fs::write(&script, addon).expect("write addon");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("mitm.log")).expect("mitm.log");
        let mut cmd = Command::new(bin);
        cmd.arg("--mode")
            .arg(format!("reverse:{upstream}"))
            .args(["--listen-host", "127.0.0.1", "--listen-port"])
            .arg(port.to_string())
            // SigV4 signs the Host header: it must reach the server unchanged.
            .args(["--set", "keep_host_header=true", "--set", "flow_detail=0"])
            .arg("-s")
            .arg(&script)
            .env("ADDON_DIR", dir.path())
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin:?}: {e}"));
        let mut p = MitmProxy {
            child,
            listen: format!("127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(&p.listen).is_err() {
            if let Ok(Some(st)) = p.child.try_wait() {
                panic!("mitmdump exited ({st}): {}", p.log());
            }
            assert!(Instant::now() < deadline, "mitmdump silent: {}", p.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// The addon's directory (`$ADDON_DIR`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What mitmdump printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mitm.log")).unwrap_or_default()
    }
}

impl Drop for MitmProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
