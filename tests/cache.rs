//! The local cache end to end: the real binary fills a cache laid out as restic's, serves
//! later runs from it, replaces damaged entries with the repository's bytes, leaves it
//! alone under `--no-cache` and for `check`, forgets what `restic forget` removed, and
//! runs on without it when it cannot be created.
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::*;
use tempfile::TempDir;

/// A restic-written repository with two snapshots of a small tree of directories.
struct Fixture {
    dir: TempDir,
    repo: Repo,
    src: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    for i in 0..20 {
        let d = src.join(format!("d{i}/sub"));
        fs::create_dir_all(&d).expect("mkdir");
        fs::write(d.join("f"), format!("file {i}\n")).expect("write");
    }
    let repo = Repo::init_v2();
    repo.restic_backup(&src, "auto");
    fs::write(src.join("d0/new"), "second snapshot\n").expect("write");
    repo.restic_backup(&src, "auto");
    Fixture { dir, repo, src }
}

impl Fixture {
    fn cache_base(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// restash with `RESTIC_CACHE_DIR` pointing at this fixture's cache.
    fn cached(&self, args: &[&str]) -> CmdOutput {
        let base = self.cache_base();
        let mut all = osargs!["-r", self.repo.path];
        all.extend(args.iter().map(Into::into));
        restash(
            all,
            &[("RESTIC_CACHE_DIR", base.to_str().expect("utf-8 path"))],
        )
    }

    fn repo_id(&self) -> String {
        let cfg = self.repo.restic(["cat", "config"]).success().json();
        cfg["id"].as_str().expect("config id").to_string()
    }

    fn cache_dir(&self) -> PathBuf {
        self.cache_base().join(self.repo_id())
    }

    /// `(cache path, repository path)` of every file of `sub` (snapshots, index, data)
    /// in the cache.
    fn cached_files(&self, sub: &str) -> Vec<(PathBuf, PathBuf)> {
        let mut out = Vec::new();
        let root = self.cache_dir().join(sub);
        for xx in fs::read_dir(&root).expect("cache type dir").flatten() {
            let two = xx.file_name().to_string_lossy().into_owned();
            for f in fs::read_dir(xx.path()).expect("cache subdir").flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                assert_eq!(name.len(), 64, "only ids in the cache: {:?}", f.path());
                assert_eq!(&name[..2], two, "restic's <xx>/<id> layout");
                let in_repo = match sub {
                    "data" => self.repo.path.join("data").join(&two).join(&name),
                    _ => self.repo.path.join(sub).join(&name),
                };
                out.push((f.path(), in_repo));
            }
        }
        out.sort();
        out
    }
}

fn ls_lines(out: &CmdOutput) -> Vec<String> {
    out.stdout_str().lines().map(str::to_string).collect()
}

fn flip_byte(path: &Path) {
    let mut data = fs::read(path).expect("read cache file");
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    fs::write(path, data).expect("damage cache file");
}

#[test]
fn second_run_uses_verified_cache_entries_in_restics_layout() {
    let fx = fixture();
    let snaps = fx.cached(&["snapshots", "--json"]).success().json();
    let ls = fx.cached(&["ls", "latest"]).success();
    assert!(ls.stdout_str().contains("d0/new"), "{}", ls.describe());

    assert_eq!(
        fs::read_to_string(fx.cache_base().join("CACHEDIR.TAG")).expect("CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n"
    );
    assert_eq!(
        fs::read_to_string(fx.cache_dir().join("version")).expect("version"),
        "1"
    );
    let snapshots = fx.cached_files("snapshots");
    let index = fx.cached_files("index");
    let packs = fx.cached_files("data");
    assert_eq!(snapshots.len(), 2);
    assert!(!index.is_empty());
    assert!(!packs.is_empty(), "the packs holding trees are cached");
    for (cached, orig) in snapshots.iter().chain(&index).chain(&packs) {
        assert!(
            fs::read(cached).expect("cached") == fs::read(orig).expect("repository file"),
            "{cached:?} holds the bytes of {orig:?}"
        );
    }

    // A warm run uses the entries as they are: none is rewritten.
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).expect("mtime");
    let before: Vec<_> = packs.iter().map(|(c, _)| mtime(c)).collect();
    assert_eq!(
        ls_lines(&fx.cached(&["ls", "latest"]).success()),
        ls_lines(&ls)
    );
    let after: Vec<_> = packs.iter().map(|(c, _)| mtime(c)).collect();
    assert_eq!(before, after);

    // Damaged entries are caught, and replaced by the repository's bytes.
    flip_byte(&snapshots[0].0);
    flip_byte(&packs[0].0);
    fs::write(&index[0].0, b"").expect("truncate index entry");
    assert_eq!(fx.cached(&["snapshots", "--json"]).success().json(), snaps);
    assert_eq!(
        ls_lines(&fx.cached(&["ls", "latest"]).success()),
        ls_lines(&ls)
    );
    for (cached, orig) in [&snapshots[0], &packs[0], &index[0]] {
        assert!(
            fs::read(cached).expect("cached") == fs::read(orig).expect("repository file"),
            "{cached:?} was replaced by the repository's bytes"
        );
    }

    // A backup through the cache stores its snapshot in both places, and restic agrees
    // with what is in the repository.
    fs::write(fx.src.join("d1/third"), "third\n").expect("write");
    let backup_src = fx.src.to_str().expect("utf-8").to_string();
    fx.cached(&["backup", "--host", "restash-e2e", &backup_src, "-q"])
        .success();
    let snapshots = fx.cached_files("snapshots");
    assert_eq!(snapshots.len(), 3);
    for (cached, orig) in &snapshots {
        assert!(fs::read(cached).expect("cached") == fs::read(orig).expect("repo"));
    }
    fx.repo.restic(["check"]).success();
}

#[test]
fn no_cache_and_check_write_nothing() {
    let fx = fixture();
    for args in [
        &["--no-cache", "snapshots"][..],
        &["--no-cache", "ls", "latest"],
        &["check"],
    ] {
        fx.cached(args).success();
    }
    assert!(
        !fx.cache_base().exists(),
        "nothing was created at {:?}",
        fx.cache_base()
    );
    fx.cached(&["check", "--with-cache"]).success();
    assert!(fx.cache_dir().join("snapshots").is_dir());
}

#[test]
fn cache_dir_flag_wins_over_the_environment() {
    let fx = fixture();
    let flag_dir = fx.dir.path().join("from-flag");
    let flag = flag_dir.to_str().expect("utf-8");
    fx.cached(&["--cache-dir", flag, "snapshots"]).success();
    assert!(flag_dir.join(fx.repo_id()).join("snapshots").is_dir());
    assert!(!fx.cache_base().exists());
}

#[test]
fn forgotten_snapshots_leave_the_cache_at_the_next_listing() {
    let fx = fixture();
    fx.cached(&["snapshots"]).success();
    let cached = fx.cached_files("snapshots");
    assert_eq!(cached.len(), 2);
    let (gone_cache, gone_repo) = &cached[0];
    let id = gone_repo
        .file_name()
        .expect("name")
        .to_str()
        .expect("utf-8");
    fx.repo.restic(["forget", id]).success();
    fx.cached(&["snapshots"]).success();
    assert!(!gone_cache.exists(), "{gone_cache:?} left the cache");
    assert!(cached[1].0.exists());

    // Damage to the repository's copy is not hidden by the good one in the cache: the
    // listing sees another size and drops the entry, and the read reports the damage.
    let (kept_cache, kept_repo) = &cached[1];
    let mut data = fs::read(kept_repo).expect("read");
    data.extend_from_slice(b"garbage");
    fs::set_permissions(kept_repo, fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::write(kept_repo, data).expect("damage");
    let id = kept_repo
        .file_name()
        .expect("name")
        .to_str()
        .expect("utf-8");
    let out = fx.cached(&["ls", "latest"]).expect_code(1);
    assert!(out.stderr.contains(&id[..8]), "{}", out.describe());
    assert!(!kept_cache.exists());
}

#[test]
fn an_unusable_cache_is_warned_about_once_and_the_command_runs() {
    let fx = fixture();
    let expected = ls_lines(&fx.repo.restash(["ls", "latest"]).success());
    // A cache directory below a regular file can never be created.
    let blocker = fx.dir.path().join("plain-file");
    fs::write(&blocker, b"").expect("write");
    let bad = blocker.join("cache");
    let out = fx
        .cached(&["--cache-dir", bad.to_str().expect("utf-8"), "ls", "latest"])
        .success();
    assert_eq!(ls_lines(&out), expected);
    assert_eq!(
        out.stderr.matches("warning").count(),
        1,
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains(bad.to_str().expect("utf-8")),
        "{}",
        out.describe()
    );

    // No HOME and no cache variables, as in a bare pod.
    let out = restash(
        osargs!["-r", fx.repo.path, "ls", "latest"],
        &[
            ("HOME", ""),
            ("XDG_CACHE_HOME", ""),
            ("RESTIC_CACHE_DIR", ""),
        ],
    )
    .success();
    assert_eq!(ls_lines(&out), expected);
    assert!(
        out.stderr.contains("unable to locate cache directory"),
        "{}",
        out.describe()
    );
}

#[test]
fn cache_command_lists_and_removes_old_directories() {
    let fx = fixture();
    fx.cached(&["snapshots"]).success();
    let base = fx.cache_base();
    let old = base.join("ab".repeat(32));
    fs::create_dir_all(old.join("snapshots")).expect("mkdir");
    let forty_days = Duration::from_secs(40 * 24 * 3600);
    fs::File::open(&old)
        .and_then(|d| d.set_modified(SystemTime::now() - forty_days))
        .expect("age the directory");

    let listing = fx.cached(&["cache"]).success();
    let text = listing.stdout_str();
    assert!(text.contains(&fx.repo_id()[..10]), "{text}");
    assert!(text.contains("abababab"), "{text}");
    assert!(text.contains("40 days ago"), "{text}");
    assert!(
        text.contains(&format!("2 cache dirs in {}", base.display())),
        "{text}"
    );

    let out = fx.cached(&["cache", "--cleanup"]).success();
    assert!(out.stdout_str().contains("remove 1 old cache directories"));
    assert!(!old.exists());
    assert!(fx.cache_dir().exists(), "a directory in use stays");
    let out = fx.cached(&["cache", "--cleanup"]).success();
    assert!(out.stdout_str().contains("no old cache dirs found"));
    fx.cached(&["cache", "--cleanup", "--max-age", "0"])
        .success();
    assert!(!fx.cache_dir().exists());

    fx.cached(&["--no-cache", "cache"]).expect_code(1);
}
