//! The crash matrix: chains of `restash backup` runs into one repository (local or S3),
//! each run killed with SIGKILL either at a random moment or the moment the n-th pack,
//! index or snapshot file of that run appears in the repository. After every kill restic
//! checks the repository exactly as the kill left it, the next `restash backup` must
//! complete without anyone unlocking first, and restic must then find no lock left but the
//! killed run's stale one, which its `unlock` removes. At the end of a chain: `check
//! --read-data` and a restore compared with the source.
//!
//! Files appear to the watcher in two ways. Local repositories: inotify on `data/xx/`,
//! `index/` and `snapshots/`; the local backend writes `<id>-tmp-<random>` and hard-links
//! the finished file to its name, so the event for the name is the moment the file is
//! complete. S3 (SeaweedFS keeps objects in its own volume files, not as files to watch):
//! the bucket's listing, polled; a PUT is visible once it completed.
//!
//! Included by the crash test files with `#[path = "common/crash.rs"] mod crash;`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use restash_backend::{Backend, FileType, Id};
use rustix::fd::OwnedFd;
use rustix::fs::inotify;
use tempfile::TempDir;

use crate::common::backup::{count_regular_files, run_tool, Background, Summary, Tool, HOST};
use crate::common::tree::{write_random_file, Prng};
use crate::common::{assert_trees_equal, osargs, restored_path, CmdOutput, CompareOptions};

/// A kind of repository file whose appearance can trigger a kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Pack,
    Index,
    Snapshot,
}

impl Kind {
    fn file_type(self) -> FileType {
        match self {
            Kind::Pack => FileType::Pack,
            Kind::Index => FileType::Index,
            Kind::Snapshot => FileType::Snapshot,
        }
    }
}

/// When a backup is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    /// At a uniformly drawn moment within an uninterrupted run's duration.
    Random,
    /// As the n-th file of this kind that the run writes appears (n drawn from the count an
    /// uninterrupted run writes).
    Appears(Kind),
}

/// The kinds of kill in turn: half random, the rest on packs, indexes and snapshots.
pub const ROTATION: [Trigger; 6] = [
    Trigger::Random,
    Trigger::Appears(Kind::Pack),
    Trigger::Random,
    Trigger::Appears(Kind::Index),
    Trigger::Appears(Kind::Pack),
    Trigger::Appears(Kind::Snapshot),
];

/// Sees the repository files that appear after it was made.
pub trait Watch {
    /// The files that appeared since the last call, by kind; with `only`, a watcher that
    /// has to ask the store looks at that kind alone, so that it sees it sooner.
    fn poll(&mut self, only: Option<Kind>) -> Vec<Kind>;
}

/// inotify on a local repository's `data/xx/`, `index/` and `snapshots/`.
struct Inotify {
    fd: OwnedFd,
    kinds: HashMap<i32, Kind>,
    buf: Vec<MaybeUninit<u8>>,
}

impl Inotify {
    fn new(repo: &Path) -> Inotify {
        let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)
            .expect("inotify_init1");
        let mut dirs = vec![
            (repo.join("index"), Kind::Index),
            (repo.join("snapshots"), Kind::Snapshot),
        ];
        for entry in std::fs::read_dir(repo.join("data")).expect("read data/") {
            dirs.push((entry.expect("data/ entry").path(), Kind::Pack));
        }
        let mut kinds = HashMap::new();
        for (dir, kind) in dirs {
            // The local backend hard-links a finished file to its name (IN_CREATE) and
            // renames it there where links fail (IN_MOVED_TO).
            let wd = inotify::add_watch(
                &fd,
                &dir,
                inotify::WatchFlags::CREATE | inotify::WatchFlags::MOVED_TO,
            )
            .unwrap_or_else(|e| panic!("inotify watch {dir:?}: {e}"));
            kinds.insert(wd, kind);
        }
        Inotify {
            fd,
            kinds,
            buf: vec![MaybeUninit::uninit(); 64 << 10],
        }
    }
}

impl Watch for Inotify {
    fn poll(&mut self, _only: Option<Kind>) -> Vec<Kind> {
        let mut out = Vec::new();
        let mut reader = inotify::Reader::new(&self.fd, &mut self.buf);
        loop {
            let event = match reader.next() {
                Ok(e) => e,
                Err(rustix::io::Errno::AGAIN) => return out,
                Err(e) => panic!("read inotify events: {e}"),
            };
            let name = event
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // Temporary files are writes under way; the file appears with its own name.
            if name.contains("-tmp-") {
                continue;
            }
            if let Some(kind) = self.kinds.get(&event.wd()) {
                out.push(*kind);
            }
        }
    }
}

/// The store's listing of packs, indexes and snapshots, compared with the previous one.
struct Listing {
    backend: Arc<dyn Backend>,
    seen: HashMap<Kind, HashSet<Id>>,
}

impl Listing {
    fn new(backend: Arc<dyn Backend>) -> Listing {
        let mut l = Listing {
            backend,
            seen: HashMap::new(),
        };
        l.poll(None);
        l
    }
}

impl Watch for Listing {
    fn poll(&mut self, only: Option<Kind>) -> Vec<Kind> {
        let mut out = Vec::new();
        let all = [Kind::Pack, Kind::Index, Kind::Snapshot];
        for kind in all.into_iter().filter(|k| only.is_none_or(|o| o == *k)) {
            let files = self
                .backend
                .list(kind.file_type())
                .unwrap_or_else(|e| panic!("list {kind:?}: {e}"));
            let seen = self.seen.entry(kind).or_default();
            for f in files {
                if seen.insert(f.id) {
                    out.push(kind);
                }
            }
        }
        out
    }
}

/// A repository the matrix writes into: a local path or an S3 URL with its credentials.
pub struct Store {
    /// `local` or `s3`, for messages.
    pub label: &'static str,
    /// What `-r` gets.
    pub location: OsString,
    /// Extra environment of every command (S3 credentials).
    pub env: Vec<(&'static str, String)>,
    local: Option<PathBuf>,
    lister: Option<Arc<dyn Backend>>,
}

impl Store {
    /// A local repository at `path` (not created yet).
    pub fn local(path: PathBuf) -> Store {
        Store {
            label: "local",
            location: path.clone().into_os_string(),
            env: Vec::new(),
            local: Some(path),
            lister: None,
        }
    }

    /// A repository at `url` that the test process lists through `lister`.
    pub fn remote(
        label: &'static str,
        url: &str,
        env: Vec<(&'static str, String)>,
        lister: Arc<dyn Backend>,
    ) -> Store {
        Store {
            label,
            location: url.into(),
            env,
            local: None,
            lister: Some(lister),
        }
    }

    /// `-r location args…`.
    pub fn args(&self, args: Vec<OsString>) -> Vec<OsString> {
        let mut all = vec![OsString::from("-r"), self.location.clone()];
        all.extend(args);
        all
    }

    fn env_refs(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    /// Runs `tool -r location args…` to completion.
    pub fn run(&self, tool: Tool, args: Vec<OsString>) -> CmdOutput {
        run_tool(tool, self.args(args), None, None, &self.env_refs())
    }

    /// Starts `tool -r location args…` in the background.
    pub fn spawn(&self, tool: Tool, args: Vec<OsString>) -> Background {
        Background::spawn(tool, self.args(args), &self.env_refs(), false)
    }

    fn watch(&self) -> Box<dyn Watch> {
        match (&self.local, &self.lister) {
            (Some(path), _) => Box::new(Inotify::new(path)),
            (None, Some(lister)) => Box::new(Listing::new(lister.clone())),
            (None, None) => unreachable!("a store is local or listed"),
        }
    }

    /// Lock ids as `restic list locks --no-lock` shows them.
    pub fn locks(&self) -> Vec<String> {
        self.run(Tool::Restic, osargs!["--no-lock", "list", "locks"])
            .success()
            .lines()
    }
}

/// What an uninterrupted run of a round writes and how long it takes.
#[derive(Debug, Clone)]
struct Estimate {
    full: Duration,
    counts: BTreeMap<Kind, usize>,
}

/// Counters of a matrix run, by trigger.
#[derive(Debug, Default)]
pub struct Tally {
    /// Kills that landed before the backup ended by itself.
    pub kills: BTreeMap<Trigger, usize>,
    /// Runs that ended (successfully) before their kill.
    pub missed: BTreeMap<Trigger, usize>,
    /// Failures after a kill: a check, the next backup, the final restore.
    pub damaged: Vec<String>,
    /// Chains completed, with their final `check --read-data` and restore.
    pub chains: usize,
    /// Kills whose run had at least one pack file appear before it.
    pub after_packs: usize,
}

impl Tally {
    /// All kills that landed.
    pub fn total(&self) -> usize {
        self.kills.values().sum()
    }

    /// One line per trigger kind, for the test's output.
    pub fn report(&self) -> String {
        let mut s = String::new();
        for (t, n) in &self.kills {
            s.push_str(&format!(
                "  {t:?}: {n} kill(s), {} run(s) ended before their kill\n",
                self.missed.get(t).copied().unwrap_or(0)
            ));
        }
        s.push_str(&format!(
            "  {} kill(s) after pack files appeared; {} chain(s) restored and read back; {} \
             damaged",
            self.after_packs,
            self.chains,
            self.damaged.len()
        ));
        s
    }
}

/// `--pack-size 4` (restic's smallest) so that each round writes several packs.
const PACK_MIB: &str = "4";
/// Files of the source; each round rewrites [`CHANGED`] of them.
const FILES: u64 = 24;
const CHANGED: u64 = 8;
/// Mean file size: a round adds about 10 MiB, two or three packs and a tree pack.
const MEAN: u64 = 5 << 18;

/// One repository and the source that a chain of killed and completing backups stores.
pub struct Chain<'s> {
    store: &'s Store,
    _dir: TempDir,
    src: PathBuf,
    rng: Prng,
    round: u64,
    est: Estimate,
    seed: u64,
}

fn backup_args(src: &Path) -> Vec<OsString> {
    osargs![
        "--pack-size",
        PACK_MIB,
        "backup",
        "--json",
        "--host",
        HOST,
        src
    ]
}

impl<'s> Chain<'s> {
    /// Initialises the repository, backs up the first version of the source and measures
    /// an uninterrupted round.
    pub fn start(store: &'s Store, seed: u64) -> Chain<'s> {
        let dir = tempfile::Builder::new()
            .prefix("crash-src-")
            .tempdir()
            .expect("tempdir");
        let src = dir.path().canonicalize().expect("canonicalize").join("src");
        std::fs::create_dir(&src).expect("mkdir src");
        store.run(Tool::Restash, osargs!["init"]).success();
        let mut chain = Chain {
            store,
            _dir: dir,
            src,
            rng: Prng::new(seed),
            round: 0,
            est: Estimate {
                full: Duration::ZERO,
                counts: BTreeMap::new(),
            },
            seed,
        };
        for i in 0..FILES {
            chain.write_file(i);
        }
        store.run(Tool::Restash, backup_args(&chain.src)).success();
        chain.est = chain.calibrate();
        eprintln!(
            "{}: an uninterrupted round takes {:?} and writes {:?}",
            store.label, chain.est.full, chain.est.counts
        );
        chain
    }

    fn write_file(&mut self, i: u64) {
        let sub = self.src.join(format!("d{}", i % 4));
        std::fs::create_dir_all(&sub).expect("mkdir");
        let len = MEAN / 2 + self.rng.next_u64() % MEAN;
        let content = self.rng.next_u64();
        write_random_file(&sub.join(format!("f{i:02}.bin")), len, content);
    }

    /// The next version of the source: [`CHANGED`] files get new content.
    fn mutate(&mut self) {
        self.round += 1;
        let mut picked = BTreeSet::new();
        while (picked.len() as u64) < CHANGED {
            picked.insert(self.rng.next_u64() % FILES);
        }
        for i in picked {
            self.write_file(i);
        }
    }

    /// A watched, uninterrupted round.
    fn calibrate(&mut self) -> Estimate {
        self.mutate();
        let mut watch = self.store.watch();
        let started = Instant::now();
        let mut bg = self.store.spawn(Tool::Restash, backup_args(&self.src));
        let mut counts = BTreeMap::new();
        loop {
            let running = bg.running();
            for k in watch.poll(None) {
                *counts.entry(k).or_insert(0) += 1;
            }
            if !running {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let full = started.elapsed();
        bg.wait().success();
        Estimate { full, counts }
    }

    /// One round: a new version of the source, a backup killed by `trigger`, the checks and
    /// the next backup. Returns whether the kill landed; a failure goes to `tally.damaged`
    /// and ends the chain (returns `Err`).
    pub fn round(&mut self, trigger: Trigger, tally: &mut Tally) -> Result<bool, ()> {
        self.mutate();
        let nth = match trigger {
            Trigger::Random => 0,
            Trigger::Appears(k) => {
                let n = self.est.counts.get(&k).copied().unwrap_or(1).max(1);
                1 + (self.rng.next_u64() as usize) % n
            }
        };
        let unit = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let delay = self.est.full.mul_f64(unit);
        let mut watch = self.store.watch();
        let started = Instant::now();
        let mut bg = self.store.spawn(Tool::Restash, backup_args(&self.src));
        let mut seen: BTreeMap<Kind, usize> = BTreeMap::new();
        match trigger {
            Trigger::Random => {
                std::thread::sleep(delay);
            }
            Trigger::Appears(kind) => 'watch: loop {
                let running = bg.running();
                for k in watch.poll(Some(kind)) {
                    let n = seen.entry(k).or_insert(0);
                    *n += 1;
                    if k == kind && *n == nth {
                        break 'watch;
                    }
                }
                if !running {
                    break;
                }
                std::thread::sleep(Duration::from_micros(500));
            },
        }
        let out = bg.kill();
        let at = started.elapsed();
        for k in watch.poll(None) {
            *seen.entry(k).or_insert(0) += 1;
        }
        let context = format!(
            "{} chain (seed {}), round {}: {trigger:?} (n = {nth}, delay {delay:?}), killed \
             after {at:?} with {seen:?} seen, exit code {}",
            self.store.label, self.seed, self.round, out.code
        );
        // 137 = 128 + SIGKILL: the kill landed before the backup finished by itself.
        if out.code != 137 {
            if out.code != 0 {
                tally
                    .damaged
                    .push(format!("{context}: backup failed\n{}", out.describe()));
                return Err(());
            }
            *tally.missed.entry(trigger).or_insert(0) += 1;
            // Timing on two busy cores is noisy: a random kill that came too late shrinks
            // the estimate.
            if trigger == Trigger::Random {
                self.est.full = self.est.full.mul_f64(0.9);
            }
            return Ok(false);
        }
        *tally.kills.entry(trigger).or_insert(0) += 1;
        tally.after_packs += usize::from(seen.get(&Kind::Pack).is_some_and(|n| *n > 0));
        match self.recover(&context) {
            Ok(()) => Ok(true),
            Err(e) => {
                tally.damaged.push(e);
                Err(())
            }
        }
    }

    /// After a kill: restic checks what the kill left (without a lock: the killed run's
    /// stale lock is still there, and restic 0.14's exclusive `check` would refuse it), the
    /// next backup completes past that stale lock, restic finds only stale locks (which
    /// its `unlock` removes) and its locked `check` passes.
    fn recover(&mut self, context: &str) -> Result<(), String> {
        let expect = |out: CmdOutput, what: &str| -> Result<CmdOutput, String> {
            if out.code == 0 {
                Ok(out)
            } else {
                Err(format!("{context}: {what}\n{}", out.describe()))
            }
        };
        let s = self.store;
        expect(
            s.run(Tool::Restic, osargs!["--no-lock", "check"]),
            "restic check of the repository as the kill left it failed",
        )?;
        let next = expect(
            s.run(Tool::Restash, backup_args(&self.src)),
            "the next backup failed",
        )?;
        let files = Summary::of(&next).n("total_files_processed");
        if files != count_regular_files(&self.src) {
            return Err(format!(
                "{context}: the next backup processed {files} files\n{}",
                next.describe()
            ));
        }
        expect(
            s.run(Tool::Restic, osargs!["unlock"]),
            "restic unlock failed",
        )?;
        let left = s.locks();
        if !left.is_empty() {
            return Err(format!(
                "{context}: locks left after restic unlock (not stale?): {left:?}"
            ));
        }
        expect(
            s.run(Tool::Restic, osargs!["check"]),
            "restic check after the next backup failed",
        )?;
        Ok(())
    }

    /// The end of a chain: `check --read-data` and the latest snapshot restored equal to
    /// the source.
    pub fn finish(self, tally: &mut Tally) {
        let context = format!(
            "{} chain (seed {}) after round {}",
            self.store.label, self.seed, self.round
        );
        let out = self
            .store
            .run(Tool::Restic, osargs!["check", "--read-data"]);
        if out.code != 0 {
            tally.damaged.push(format!(
                "{context}: check --read-data failed\n{}",
                out.describe()
            ));
            return;
        }
        let target = tempfile::tempdir().expect("tempdir");
        self.store
            .run(
                Tool::Restic,
                osargs!["restore", "latest", "--target", target.path()],
            )
            .success();
        let restored = restored_path(target.path(), &self.src);
        let cmp = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_trees_equal(&self.src, &restored, &CompareOptions::default())
        }));
        match cmp {
            Ok(()) => tally.chains += 1,
            Err(_) => tally
                .damaged
                .push(format!("{context}: the restore differs from the source")),
        }
    }
}

/// The seed of a run: `RESTASH_CRASH_SEED` replays one, else the clock.
pub fn seed() -> u64 {
    crate::common::seed_from_env("RESTASH_CRASH_SEED")
}

/// [`matrix`] with a fresh seed ([`seed`]), its report printed; fails on any damage or
/// when fewer than `kills` kills landed.
pub fn run_matrix(
    label: &str,
    kills: usize,
    per_chain: usize,
    new_store: &mut dyn FnMut(usize) -> Store,
    drop_store: &mut dyn FnMut(&Store),
) {
    let started = Instant::now();
    let seed = seed();
    let tally = matrix(kills, per_chain, seed, new_store, drop_store);
    eprintln!(
        "{label} crash matrix: {} kills in {:?}\n{}",
        tally.total(),
        started.elapsed(),
        tally.report()
    );
    assert!(
        tally.damaged.is_empty(),
        "{} damaged (RESTASH_CRASH_SEED={seed}):\n{}",
        tally.damaged.len(),
        tally.damaged.join("\n\n")
    );
    assert_eq!(tally.total(), kills);
}

/// Runs `kills` kills in chains of at most `per_chain` rounds, each chain in a fresh
/// repository that `new_store(i)` names; the trigger kinds take turns ([`ROTATION`]).
/// `drop_store` removes a finished chain's repository.
pub fn matrix(
    kills: usize,
    per_chain: usize,
    seed: u64,
    new_store: &mut dyn FnMut(usize) -> Store,
    drop_store: &mut dyn FnMut(&Store),
) -> Tally {
    let mut tally = Tally::default();
    let mut chain_no = 0;
    let mut attempts = 0;
    while tally.total() < kills {
        let store = new_store(chain_no);
        let mut chain = Chain::start(&store, seed.wrapping_add(chain_no as u64));
        chain_no += 1;
        let mut in_chain = 0;
        let mut broken = false;
        while in_chain < per_chain && tally.total() < kills {
            attempts += 1;
            assert!(
                attempts <= 3 * kills,
                "only {} of {attempts} kills landed before their backup ended\n{}",
                tally.total(),
                tally.report()
            );
            let trigger = ROTATION[tally.total() % ROTATION.len()];
            match chain.round(trigger, &mut tally) {
                Ok(true) => in_chain += 1,
                Ok(false) => {}
                Err(()) => {
                    broken = true;
                    break;
                }
            }
        }
        if broken {
            drop(chain);
        } else {
            chain.finish(&mut tally);
        }
        drop_store(&store);
    }
    tally
}
