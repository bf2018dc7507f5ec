//! Helpers for the backup tests: sources whose ancestors stay put, either tool run with
//! stdin / a working directory / in the background, restic's JSON summary, and views of a
//! repository (snapshots, `ls --json` nodes, files on disk, complete pack files).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::common::run::{cmd_output, prepare_cmd, restash_bin, restic_bin};
use crate::common::tree::{make_tricky_tree, set_all_mtimes, write_random_file, TrickyTree};
use crate::common::{fixture_path, CmdOutput, Repo};

/// Host name given to every backup that should find (or be) another's parent.
pub const HOST: &str = "restash-e2e";

/// Which binary runs a command; both get the same command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Restash,
    Restic,
}

impl Tool {
    pub fn program(self) -> PathBuf {
        match self {
            Tool::Restash => restash_bin(),
            Tool::Restic => restic_bin(),
        }
    }

    /// The command line as run: restic gets `--no-cache` (as `run::restic` does) so runs
    /// never share state through `~/.cache`; restash gets exactly what the test wrote.
    pub fn argv<I, S>(self, args: I) -> Vec<OsString>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all = Vec::new();
        if self == Tool::Restic {
            all.push(OsString::from("--no-cache"));
        }
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        all
    }
}

/// `-r repo args…` as one argument vector.
pub fn with_repo<I, S>(repo: &Path, args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut all = vec![OsString::from("-r"), repo.as_os_str().to_owned()];
    all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
    all
}

/// Runs `tool args…` like `run::run_cmd`, optionally feeding `stdin` and in `cwd`.
pub fn run_tool<I, S>(
    tool: Tool,
    args: I,
    stdin: Option<&[u8]>,
    cwd: Option<&Path>,
    env: &[(&str, &str)],
) -> CmdOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let (mut cmd, rendered) = prepare_cmd(&tool.program(), tool.argv(args), env);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let Some(data) = stdin else {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot start {rendered}: {e}"));
        return cmd_output(rendered, out);
    };
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {rendered}: {e}"));
    // Written from a thread: a tool that prints before reading all of stdin must not
    // deadlock against us filling the pipe.
    let mut pipe = child.stdin.take().expect("stdin pipe");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || {
        // A tool that exits early closes the pipe; its exit code tells the story.
        let _ = pipe.write_all(&data);
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {rendered}: {e}"));
    writer.join().expect("stdin writer");
    cmd_output(rendered, out)
}

/// A command running in the background, its output going to files. Dropping it kills and
/// reaps the process, so a failing test leaves nothing running.
pub struct Background {
    child: Child,
    pub cmd: String,
    stdin: Option<ChildStdin>,
    out_dir: TempDir,
}

impl Background {
    /// Starts `tool args…`; with `pipe_stdin` its stdin stays open until
    /// [`Background::close_stdin`], so a tool that reads stdin waits for us.
    pub fn spawn<I, S>(tool: Tool, args: I, env: &[(&str, &str)], pipe_stdin: bool) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let (mut cmd, rendered) = prepare_cmd(&tool.program(), tool.argv(args), env);
        let out_dir = tempfile::tempdir().expect("tempdir");
        let file = |name: &str| File::create(out_dir.path().join(name)).expect("output file");
        cmd.stdout(file("stdout")).stderr(file("stderr"));
        if pipe_stdin {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {rendered}: {e}"));
        let stdin = child.stdin.take();
        Background {
            child,
            cmd: rendered,
            stdin,
            out_dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (not yet reaped).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Writes to the piped stdin (spawned with `pipe_stdin`).
    pub fn write_stdin(&mut self, data: &[u8]) {
        let pipe = self.stdin.as_mut().expect("spawned with pipe_stdin");
        pipe.write_all(data).expect("write to stdin");
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends `sig` to this process only (by its id).
    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid > 0");
        rustix::process::kill_process(pid, sig)
            .unwrap_or_else(|e| panic!("kill {sig:?} {}: {e}", self.cmd));
    }

    /// What the process wrote to stdout so far.
    pub fn stdout_so_far(&self) -> String {
        self.so_far("stdout")
    }

    /// What the process wrote to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.so_far("stderr")
    }

    fn so_far(&self, name: &str) -> String {
        String::from_utf8_lossy(&fs::read(self.out_dir.path().join(name)).unwrap_or_default())
            .into_owned()
    }

    /// Waits at most `limit` for the process to end by itself, then kills it; the outcome
    /// (code 137 if the kill landed).
    pub fn wait_at_most(mut self, limit: std::time::Duration) -> CmdOutput {
        let deadline = std::time::Instant::now() + limit;
        while self.running() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.kill()
    }

    /// SIGKILL (if still running), then the outcome; code 137 means the kill landed.
    pub fn kill(mut self) -> CmdOutput {
        let _ = self.child.kill();
        self.finish()
    }

    /// Waits for the process to end by itself.
    pub fn wait(mut self) -> CmdOutput {
        self.finish()
    }

    fn finish(&mut self) -> CmdOutput {
        self.stdin = None;
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("wait for {}: {e}", self.cmd));
        let read = |name: &str| fs::read(self.out_dir.path().join(name)).unwrap_or_default();
        cmd_output(
            self.cmd.clone(),
            std::process::Output {
                status,
                stdout: read("stdout"),
                stderr: read("stderr"),
            },
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// restic's `backup --json` summary line, with typed access to its counters.
#[derive(Debug, Clone)]
pub struct Summary {
    pub json: Value,
    /// The run it came from, for assertion messages.
    pub context: String,
}

impl Summary {
    /// The one `{"message_type":"summary",…}` line of a `backup --json` run. Every stdout
    /// line must be JSON, as restic's are: scripts parse them line by line.
    #[track_caller]
    pub fn of(out: &CmdOutput) -> Summary {
        let summaries: Vec<Value> = out
            .json_lines()
            .into_iter()
            .filter(|v| v["message_type"] == "summary")
            .collect();
        match summaries.as_slice() {
            [one] => Summary {
                json: one.clone(),
                context: out.describe(),
            },
            _ => panic!(
                "expected exactly one summary line, got {}\n{}",
                summaries.len(),
                out.describe()
            ),
        }
    }

    /// A counter; panics if it is missing or not a non-negative integer.
    #[track_caller]
    pub fn n(&self, field: &str) -> u64 {
        self.json[field].as_u64().unwrap_or_else(|| {
            panic!(
                "summary field {field:?} missing or not a count: {}\n{}",
                self.json, self.context
            )
        })
    }

    /// Asserts `field == want`, showing the whole summary otherwise.
    #[track_caller]
    pub fn expect(&self, field: &str, want: u64) {
        let got = self.n(field);
        assert_eq!(
            got, want,
            "summary {field} = {got}, want {want}; summary: {}\n{}",
            self.json, self.context
        );
    }
}

/// The field names of restic 0.14's summary line; restash must print all of them.
pub const SUMMARY_FIELDS: &[&str] = &[
    "files_new",
    "files_changed",
    "files_unmodified",
    "dirs_new",
    "dirs_changed",
    "dirs_unmodified",
    "data_blobs",
    "tree_blobs",
    "data_added",
    "total_files_processed",
    "total_bytes_processed",
    "total_duration",
    "snapshot_id",
];

/// A directory whose ancestors nobody else modifies while the tests run.
///
/// restic stores every directory on the way to an absolute target (`/tmp`, `/tmp/x`, …)
/// with its mtime and ctime in the snapshot's trees. Under /tmp, any other test or compiler
/// creating a file changes /tmp's mtime between two backups, so two correct tools would
/// produce different root trees and add bytes. A fresh directory directly in `/` has no
/// stored ancestor but itself (the root tree is a listing, `/` has no node), so root uses
/// that; otherwise the cargo target tmp dir is the best available and tree-id comparisons
/// can flake if something creates files next to it.
pub fn stable_base() -> TempDir {
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("restash-e2e-");
        b
    };
    if crate::common::is_root() {
        if let Ok(dir) = builder.tempdir_in("/") {
            return dir;
        }
    }
    eprintln!(
        "NOTICE: cannot create a directory in /; sources live under CARGO_TARGET_TMPDIR, and \
         root tree ids can differ if its ancestors change during the test"
    );
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(base).expect("CARGO_TARGET_TMPDIR");
    builder.tempdir_in(base).expect("tempdir")
}

/// The tricky tree at `base/tricky`.
pub fn tricky_in(base: &Path) -> TrickyTree {
    let root = base.join("tricky");
    fs::create_dir(&root).expect("mkdir tricky");
    make_tricky_tree(&root)
}

/// Unpacks a fixture archive into `dest` (created; the archive's `./` entry gives it its
/// metadata), keeping modes, owners (as root), mtimes, xattrs and hard links like
/// `fixtures::unpack_fixture`, but at a path of the caller's choosing.
pub fn unpack_fixture_into(name: &str, dest: &Path) {
    let path = fixture_path(name);
    fs::create_dir(dest).unwrap_or_else(|e| panic!("mkdir {dest:?}: {e}"));
    let file = File::open(&path).unwrap_or_else(|e| panic!("open {path:?}: {e}"));
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(crate::common::is_root());
    archive.set_unpack_xattrs(true);
    archive
        .unpack(dest)
        .unwrap_or_else(|e| panic!("unpack {path:?}: {e}"));
}

/// Regular files below `dir`, one per name (hard links count once per name, as restic's
/// `files_*` counters do; symlinks, fifos and devices are not files there).
pub fn count_regular_files(dir: &Path) -> u64 {
    crate::common::tree::post_order(dir)
        .iter()
        .filter(|p| fs::symlink_metadata(p).expect("lstat").is_file())
        .count() as u64
}

/// `count` files of pseudo-random data totalling about `total` bytes in `dir`, sizes
/// varying ±50% around the mean so packs and chunk boundaries fall at odd places.
pub fn write_dataset(dir: &Path, count: u64, total: u64, seed: u64) {
    fs::create_dir_all(dir).expect("mkdir dataset");
    let mean = total / count;
    for i in 0..count {
        let sub = dir.join(format!("d{:02}", i % 16));
        fs::create_dir_all(&sub).expect("mkdir");
        let len = mean / 2 + (i * 7919 + seed) % mean;
        write_random_file(&sub.join(format!("f{i:04}.bin")), len, seed * 100_000 + i);
    }
}

/// Total size of the regular files below `dir`.
pub fn tree_bytes(dir: &Path) -> u64 {
    crate::common::tree::post_order(dir)
        .iter()
        .map(|p| fs::symlink_metadata(p).expect("lstat"))
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// `restash init` (or restic's) of a new repository at `path`.
pub fn init_repo(tool: Tool, path: &Path, version: Option<&str>) -> Repo {
    let mut args = vec!["init"];
    if let Some(v) = version {
        args.extend(["--repository-version", v]);
    }
    run_tool(tool, with_repo(path, args), None, None, &[]).success();
    Repo::new(path.to_path_buf(), None)
}

/// The repository format version, from `restic cat config`.
pub fn repo_version(repo: &Repo) -> u64 {
    repo.restic(["cat", "config"]).success().json()["version"]
        .as_u64()
        .expect("config version")
}

/// Snapshots as `restic snapshots --json --no-lock` lists them (oldest first); `--no-lock`
/// so that it also works while someone holds an exclusive lock.
pub fn snapshots(repo: &Repo) -> Vec<Value> {
    match repo
        .restic(["--no-lock", "snapshots", "--json"])
        .success()
        .json()
    {
        Value::Array(v) => v,
        other => panic!("snapshots --json is not an array: {other}"),
    }
}

/// The snapshot file `id` (a full id) as stored, decrypted: both tools' `cat snapshot` print
/// only the fields restic 0.14 knows.
pub fn stored_snapshot(repo: &Repo, id: &str) -> Value {
    let backend = std::sync::Arc::new(restash_backend::LocalBackend::new(&repo.path));
    let r = restash_engine::Repository::open(backend, crate::common::PASSWORD.as_bytes(), None)
        .expect("open repository");
    let id = restash_format::Id::parse(id).expect("snapshot id");
    let raw = r
        .load_unpacked(restash_backend::FileType::Snapshot, &id)
        .expect("load snapshot");
    serde_json::from_slice(&raw).expect("snapshot JSON")
}

/// The snapshot whose id is not among `before`; panics unless there is exactly one.
#[track_caller]
pub fn new_snapshot(repo: &Repo, before: &[Value]) -> Value {
    let old: BTreeSet<&str> = before.iter().filter_map(|s| s["id"].as_str()).collect();
    let new: Vec<Value> = snapshots(repo)
        .into_iter()
        .filter(|s| !old.contains(s["id"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(new.len(), 1, "expected one new snapshot, got {new:?}");
    new.into_iter().next().expect("one")
}

pub fn snapshot_id(sn: &Value) -> String {
    sn["id"].as_str().expect("snapshot id").to_owned()
}

/// The nodes of `restic ls --json <snapshot>`, keyed by path (the snapshot line dropped).
pub fn ls_nodes(repo: &Repo, snapshot: &str) -> BTreeMap<String, Value> {
    let out = repo
        .restic(["--no-lock", "ls", "--json", snapshot])
        .success();
    out.json_lines()
        .into_iter()
        .filter(|v| v["struct_type"] == "node")
        .map(|v| (v["path"].as_str().expect("node path").to_owned(), v))
        .collect()
}

/// Differences between two `ls_nodes` maps, at most `max` of them, `a` and `b` named.
pub fn node_diffs(
    a: &BTreeMap<String, Value>,
    b: &BTreeMap<String, Value>,
    (name_a, name_b): (&str, &str),
    max: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for (path, x) in a {
        match b.get(path) {
            None => out.push(format!("{path}: only in {name_a}")),
            Some(y) if x != y => out.push(format!("{path}:\n    {name_a}: {x}\n    {name_b}: {y}")),
            Some(_) => {}
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        out.push(format!("{path}: only in {name_b}"));
    }
    let n = out.len();
    if n > max {
        out.truncate(max);
        out.push(format!("… and {} more", n - max));
    }
    out
}

/// Every file below the repository with its size: what "nothing was written" compares.
pub fn repo_listing(repo: &Path) -> BTreeMap<PathBuf, u64> {
    crate::common::tree::post_order(repo)
        .into_iter()
        .filter_map(|p| {
            let md = fs::symlink_metadata(&p).expect("lstat");
            let rel = p.strip_prefix(repo).expect("below repo").to_path_buf();
            md.is_file().then_some((rel, md.len()))
        })
        .collect()
}

/// Files under `repo/data`, whole or not.
pub fn data_files(repo: &Path) -> Vec<PathBuf> {
    let data = repo.join("data");
    if !data.is_dir() {
        return Vec::new();
    }
    crate::common::tree::post_order(&data)
        .into_iter()
        .filter(|p| {
            fs::symlink_metadata(p)
                .map(|m| m.is_file())
                .unwrap_or(false)
        })
        .collect()
}

/// Whether a pack file is complete: a pack is named by the SHA-256 of its whole content,
/// so a file caught mid-write (or a temporary file) does not match its name.
pub fn pack_is_complete(path: &Path) -> bool {
    let Ok(data) = fs::read(path) else {
        return false;
    };
    let name = path.file_name().and_then(OsStr::to_str).unwrap_or("");
    hex::encode(Sha256::digest(&data)) == name
}

/// Data blob count from `restic list blobs` (one `data <id>` or `tree <id>` per line).
pub fn data_blob_count(repo: &Repo) -> usize {
    repo.restic(["list", "blobs"])
        .success()
        .stdout_str()
        .lines()
        .filter(|l| l.starts_with("data "))
        .count()
}

/// Lock ids from `restic list locks --no-lock` (restic lists locks without taking one).
pub fn lock_ids(repo: &Repo) -> Vec<String> {
    repo.restic(["--no-lock", "list", "locks"])
        .success()
        .lines()
}

/// Copies a directory tree (files and directories only, as a fresh repository has).
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {to:?}: {e}"));
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("read_dir {from:?}: {e}")) {
        let entry = entry.expect("dir entry");
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {src:?}: {e}"));
        }
    }
}

/// A small tree with something for every selection flag to bite on.
pub fn make_flags_tree(root: &Path) {
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, data).unwrap_or_else(|e| panic!("write {p:?}: {e}"));
    };
    w("docs/readme.TXT", b"read me\n");
    w("docs/notes.txt", b"notes\n");
    w("docs/Photo.JPG", &[0x11; 50_000]);
    write_random_file(&root.join("docs/big.bin"), 1_500_000, 11);
    write_random_file(&root.join("docs/small.bin"), 10_000, 12);
    // --exclude-larger-than 1k keeps 1024 bytes and drops 1025.
    w("exactly-1k.bin", &[7; 1024]);
    w("one-more.bin", &[8; 1025]);
    w("logs/a.log", b"a\n");
    w("logs/b.LOG", b"b\n");
    w("logs/sub/c.Log", b"c\n");
    w(
        "cache/CACHEDIR.TAG",
        b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache directory tag\n",
    );
    w("cache/blob.dat", &[3; 100_000]);
    w("fake-cache/CACHEDIR.TAG", b"not a cache directory tag\n");
    w("fake-cache/keep.dat", b"keep\n");
    w("marked/.nobackup", b"");
    w("marked/data.txt", b"data\n");
    w("marked/sub/deep.txt", b"deep\n");
    w("code/main.rs", b"fn main() {}\n");
    w("code/lib.rs", b"\n");
    w("code/target/debug.o", &[0; 2_000]);
    w("names/ünïcødé.txt", b"u\n");
    w("names/with space.txt", b"s\n");
    w("names/README.txt", b"r\n");
    std::os::unix::fs::symlink("../docs", root.join("names/to-docs")).expect("symlink");
    set_all_mtimes(root);
}

/// Restores `latest` with `run` (either tool, already pointed at one repository) into a
/// fresh directory and asserts the result equals `source`.
pub fn assert_latest_restores(
    run: &dyn Fn(Vec<OsString>) -> CmdOutput,
    source: &Path,
    opts: &crate::common::CompareOptions,
) {
    let target = tempfile::tempdir().unwrap();
    let mut args: Vec<OsString> = ["restore", "latest", "--target"]
        .iter()
        .map(OsString::from)
        .collect();
    args.push(target.path().into());
    run(args).success();
    crate::common::assert_trees_equal(
        source,
        &crate::common::restored_path(target.path(), source),
        opts,
    );
}
