//! The damage matrix: one repository file (config, key, snapshot, index or pack) damaged in
//! one way (a flipped byte, truncation, a zeroed range, same-length random bytes, an empty
//! file, appended garbage, deletion), then one command (`snapshots`, `ls latest`,
//! `restore latest`, `check --read-data`, `backup`) run by restash and by restic 0.14 on
//! identical copies. restash must not panic or hang, must exit with restic's code (every
//! difference is in [`ALLOWED`] with its reason, or in [`KNOWN`] as a defect not yet
//! fixed), must name the damaged file when it fails, and must never restore a file with
//! the wrong content.
//!
//! The sampled test covers every file kind, damage and command; `DAMAGE_SEED` repeats a
//! run's cases and damage positions (the seed is printed; the base repository's keys and
//! ids are new on every run) and `DAMAGE_CASES` sets its size. restic 0.14 retries a read
//! that fails (a missing or short pack) for about a minute: the sample stops it at its first
//! retry and judges that case without its exit code, while the full matrix waits for it:
//!
//! ```text
//! cargo test --release -p restash --test damage_matrix -- --ignored --nocapture
//! ```
//!
//! (about 7 minutes for its 525 cases in a debug build on 2 cores, most of it restic
//! sleeping between retries; `DAMAGE_POSITIONS` and `DAMAGE_JOBS` size it).
mod common;
#[path = "damage_matrix/tools.rs"]
mod tools;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::backup::{with_repo, Tool};
use common::tree::{post_order, write_random_file, Prng};
use common::{compare_trees, osargs, restic, restored_path, seed_from_env, summarize, PASSWORD};
use restash_backend::LocalBackend;
use restash_crypto::KdfParams;
use restash_engine::Repository;
use tempfile::TempDir;
use tools::{apply, cp_a, files_of, pick, run_limited, Run, RETRYING};

const HOST: &str = "damage-matrix";
/// A command still running after this long hangs.
const TIMEOUT: Duration = Duration::from_secs(60);
/// restic 0.14 gives up retrying a read after 15 minutes at most.
const RESTIC_PATIENCE: Duration = Duration::from_secs(16 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Config,
    Key,
    Snapshot,
    Index,
    Pack,
}
use Kind::*;

const KINDS: [Kind; 5] = [Config, Key, Snapshot, Index, Pack];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    Flip,
    Truncate,
    Zero,
    Random,
    Empty,
    Append,
    Delete,
}
use Damage::*;

const DAMAGES: [Damage; 7] = [Flip, Truncate, Zero, Random, Empty, Append, Delete];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Snapshots,
    Ls,
    Restore,
    Check,
    Backup,
}
use Cmd::*;

const CMDS: [Cmd; 5] = [Snapshots, Ls, Restore, Check, Backup];

impl Kind {
    fn name(self) -> &'static str {
        ["config", "key", "snapshot", "index", "pack"][self as usize]
    }
}

impl Damage {
    fn name(self) -> &'static str {
        [
            "flip", "truncate", "zero", "random", "empty", "append", "delete",
        ][self as usize]
    }
}

impl Cmd {
    fn name(self) -> &'static str {
        [
            "snapshots",
            "ls latest",
            "restore latest",
            "check --read-data",
            "backup",
        ][self as usize]
    }
}

/// What a case found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Exit codes differ: (restic 0.14's, restash's).
    Exit(i32, i32),
    /// restash failed (with this code), or exited 0 where restic failed, without naming
    /// the damaged file on stderr.
    Naming(i32),
    Panic,
    Hang,
    /// A restored file with the wrong content: never allowed, never a known failure.
    Content,
    /// restic itself hung: the case has no oracle.
    Oracle,
}

/// A difference from restic 0.14 (or a defect) for the cases it matches; `None` matches any.
struct Rule {
    kind: Option<Kind>,
    damage: Option<Damage>,
    cmd: Option<Cmd>,
    check: Check,
    reason: &'static str,
}

const fn rule(
    kind: Option<Kind>,
    damage: Option<Damage>,
    cmd: Option<Cmd>,
    check: Check,
    reason: &'static str,
) -> Rule {
    Rule {
        kind,
        damage,
        cmd,
        check,
        reason,
    }
}

/// Where restash rightly differs from restic 0.14.
const ALLOWED: &[Rule] = &[
    rule(
        Some(Config),
        Some(Delete),
        None,
        Check::Exit(1, 10),
        "no config file: restic 0.17's exit code 10 (no repository); 0.14 exits 1 for all errors",
    ),
    rule(
        Some(Key),
        None,
        None,
        Check::Exit(1, 12),
        "no key opens while every key file reads (the only key deleted, or its salt or data \
         damaged): restic 0.17's exit code 12 (wrong password or no key found); 0.14 exits 1",
    ),
    rule(
        Some(Key),
        Some(Flip),
        None,
        Check::Naming(12),
        "a key whose JSON still parses but whose salt or data is damaged fails exactly as a \
         wrong password does: no tool can tell which key the password was meant for",
    ),
    rule(
        None,
        None,
        Some(Restore),
        Check::Exit(1, 3),
        "a restore that restored all it could and named what it could not exits 3 (README, \
         Safety), as a partial backup does; restic 0.14 exits 1",
    ),
    rule(
        Some(Snapshot),
        None,
        Some(Ls),
        Check::Exit(0, 1),
        "restic 0.14's ls ignores a `latest` it cannot resolve and exits 0 (restic #4087, fixed \
         in 0.15); restash fails naming the unreadable snapshot, which may be the latest \
         (README, Safety)",
    ),
    rule(
        None,
        Some(Truncate),
        None,
        Check::Exit(2, 1),
        "restic 0.14 panics (slice bounds out of range [16:n], exit 2) on an encrypted file \
         cut shorter than its 16-byte IV; restash fails naming it",
    ),
    rule(
        Some(Key),
        None,
        None,
        Check::Exit(2, 1),
        "restic 0.14 panics (slice bounds out of range [:16], exit 2, key.go:89) on a key file \
         whose JSON parses without its `data` field; restash fails naming the key",
    ),
    rule(
        Some(Key),
        None,
        Some(Check),
        Check::Exit(0, 1),
        "a key file whose bytes no longer match its name, though it still opens: restic 0.14's \
         check does not read key files; restash's check names the damaged key, since it may \
         be the one that holds someone else's password (crates/engine/src/check)",
    ),
    rule(
        Some(Pack),
        None,
        Some(Backup),
        Check::Exit(3, 0),
        "a parent tree that cannot be read: restic 0.14 reads the files again and exits 3, \
         which says source files could not be read (restic #5376); the snapshot is complete, \
         so restash exits 0 and names the damaged tree and pack (tests/damaged_repo.rs)",
    ),
    rule(
        Some(Index),
        Some(Delete),
        Some(Backup),
        Check::Exit(3, 0),
        "before a backup restash indexes packs that no index lists, from their headers \
         (README), so the parent's trees and data are found; restic 0.14 stores the files \
         again and exits 3 (restic #5376)",
    ),
];

/// Defects found and not yet fixed: the matrix documents them until they are.
const KNOWN: &[Rule] = &[];

impl Rule {
    fn matches(&self, case: &Case, check: Check) -> bool {
        self.kind.is_none_or(|k| k == case.kind)
            && self.damage.is_none_or(|d| d == case.damage)
            && self.cmd.is_none_or(|c| c == case.cmd)
            && self.check == check
    }
}

#[derive(Debug, Clone, Copy)]
struct Case {
    kind: Kind,
    damage: Damage,
    cmd: Cmd,
    /// Picks the damaged file and where it is damaged.
    seed: u64,
}

/// The repository every case copies, and the trees its two snapshots hold.
struct Base {
    dir: TempDir,
    repo: PathBuf,
    /// The backed-up directory, as the newest snapshot holds it.
    src: PathBuf,
    /// `src` as the older snapshot holds it.
    state1: PathBuf,
    newest: String,
}

/// A small tree: nested directories, an empty file, a symlink and a file of several
/// chunks. `version` 2 changes a file (to a new size, so no tool may take it as unchanged)
/// and adds one.
fn write_tree(src: &Path, version: u64) {
    for d in ["docs/deep", "media", "empty-dir"] {
        fs::create_dir_all(src.join(d)).expect("mkdir");
    }
    let text = "readme\n".repeat(version as usize);
    fs::write(src.join("docs/readme.txt"), text).expect("write");
    fs::write(src.join("empty.txt"), "").expect("write");
    write_random_file(&src.join("docs/deep/notes.bin"), 20_000, 1);
    write_random_file(&src.join("media/big.bin"), 3_000_000, 2);
    write_random_file(
        &src.join("media/mid.bin"),
        300_000 + version * 999,
        2 + version,
    );
    if version == 1 {
        std::os::unix::fs::symlink("docs/readme.txt", src.join("link")).expect("symlink");
    } else {
        fs::write(src.join("docs/new.txt"), "new\n").expect("write");
    }
}

/// Builds the base repository: `restash init` with a cheap key derivation (restic opens it
/// all the same; each of the many runs would otherwise spend most of its time in scrypt),
/// then two restash backups of `src`.
fn build_base() -> Base {
    let dir = tempfile::Builder::new()
        .prefix("damage-matrix-")
        .tempdir()
        .expect("tempdir");
    let repo = dir.path().join("repo");
    let cheap = KdfParams {
        n: 1024,
        r: 8,
        p: 1,
    };
    let backend = Arc::new(LocalBackend::new(&repo));
    Repository::init(backend, PASSWORD.as_bytes(), 2, cheap).expect("init");
    let src = dir.path().join("src");
    let state1 = dir.path().join("state1");
    let backup = || {
        run_limited(
            Tool::Restash,
            backup_args(&repo, &src, true),
            TIMEOUT,
            false,
        )
        .out
        .success();
    };
    write_tree(&src, 1);
    backup();
    cp_a(&src, &state1);
    write_tree(&src, 2);
    backup();
    let listed = restic(osargs!["-r", &repo, "snapshots", "--json"], &[])
        .success()
        .json();
    let mut snaps: Vec<(String, String)> = listed
        .as_array()
        .expect("snapshot list")
        .iter()
        .map(|s| {
            let field = |f: &str| s[f].as_str().expect("snapshot field").to_owned();
            (field("time"), field("id"))
        })
        .collect();
    snaps.sort();
    assert_eq!(snaps.len(), 2, "{listed}");
    // The premises: the undamaged repository passes restic's check, and restores as `src`
    // under both tools' restore, as the comparison below sees it.
    restic(osargs!["-r", &repo, "check", "--read-data"], &[]).success();
    let target = dir.path().join("restored");
    let args = restash_args(&repo, osargs!["restore", "latest", "--target", &target]);
    run_limited(Tool::Restash, args, TIMEOUT, false)
        .out
        .success();
    if let Err(d) = compare_trees(&src, &restored_path(&target, &src)) {
        panic!("the undamaged restore differs:{}", summarize(&d, 20));
    }
    fs::remove_dir_all(&target).expect("rm restored");
    Base {
        newest: snaps[1].1.clone(),
        dir,
        repo,
        src,
        state1,
    }
}

/// restash gets `--no-cache` too: the cache of an earlier case holds the same repository's
/// undamaged files.
fn restash_args(repo: &Path, args: Vec<OsString>) -> Vec<OsString> {
    let mut all = osargs!["--no-cache"];
    all.extend(with_repo(repo, args));
    all
}

/// restash's backups here find their parent restic's way (`--no-parent-hint`): every
/// snapshot and the whole index, the files restic reads too, so that both meet the same
/// damage. A backup by its hint reads its parent alone; tests/backup_interop.rs and the
/// engine's hint tests cover its damaged, stale and missing cases.
fn backup_args(repo: &Path, src: &Path, restash: bool) -> Vec<OsString> {
    let args = osargs!["backup", "--host", HOST, src];
    if restash {
        let mut args = args;
        args.push("--no-parent-hint".into());
        restash_args(repo, args)
    } else {
        with_repo(repo, args)
    }
}

/// The command line for `cmd` on `repo`; `target` receives a restore.
fn cmd_args(cmd: Cmd, base: &Base, repo: &Path, target: &Path, tool: Tool) -> Vec<OsString> {
    let args = match cmd {
        Snapshots => osargs!["snapshots"],
        Ls => osargs!["ls", "latest"],
        Restore => osargs!["restore", "latest", "--target", target],
        Check => osargs!["check", "--read-data"],
        Backup => return backup_args(repo, &base.src, tool == Tool::Restash),
    };
    match tool {
        Tool::Restash => restash_args(repo, args),
        Tool::Restic => with_repo(repo, args),
    }
}

/// A restore that exited 0 must equal the snapshot's source; one that failed may leave
/// files out, but every file it left must be whole and right.
fn check_restore(target: &Path, src: &Path, expected: &Path, code: i32) -> Result<(), String> {
    let root = restored_path(target, src);
    if code == 0 {
        return compare_trees(expected, &root)
            .map_err(|d| format!("exit 0, but the restore differs:{}", summarize(&d, 10)));
    }
    if !root.exists() {
        return Ok(());
    }
    for p in post_order(&root) {
        if !fs::symlink_metadata(&p).expect("lstat").is_file() {
            continue;
        }
        let rel = p.strip_prefix(&root).expect("below root");
        let want = fs::read(expected.join(rel)).ok();
        if want.as_deref() != Some(&fs::read(&p).expect("read restored")[..]) {
            return Err(format!(
                "exit {code}, and restored {rel:?} has the wrong content"
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Agree,
    /// restic was stopped retrying a read: everything but the exit code was judged.
    NoOracle,
    Allowed,
    Known,
    Fail,
}

struct Outcome {
    case: Case,
    verdict: Verdict,
    codes: (i32, i32),
    /// One line: the case, the damage, both exit codes and any finding with its reason.
    line: String,
    /// Indices into [`ALLOWED`] and [`KNOWN`] of the rules the case used.
    rules: Vec<(bool, usize)>,
}

/// `patient`: wait for restic's retries to end (up to [`RESTIC_PATIENCE`]) instead of
/// stopping it at its first retry.
fn run_case(base: &Base, case: Case, patient: bool) -> Outcome {
    let dir = tempfile::tempdir_in(base.dir.path()).expect("case dir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    cp_a(&base.repo, &a);
    let mut rng = Prng::new(case.seed);
    let files = files_of(&a, case.kind);
    let victim = &files[pick(&mut rng, files.len())];
    let name = victim
        .file_name()
        .and_then(|n| n.to_str())
        .expect("file name")
        .to_owned();
    let what = apply(victim, case.damage, &mut rng);
    cp_a(&a, &b);

    let (t_ours, t_theirs) = (
        dir.path().join("out-restash"),
        dir.path().join("out-restic"),
    );
    let args = cmd_args(case.cmd, base, &a, &t_ours, Tool::Restash);
    let Run {
        out: ours, hung, ..
    } = run_limited(Tool::Restash, args, TIMEOUT, false);
    let args = cmd_args(case.cmd, base, &b, &t_theirs, Tool::Restic);
    let (limit, stop) = if patient {
        (RESTIC_PATIENCE, false)
    } else {
        (TIMEOUT, true)
    };
    let theirs = run_limited(Tool::Restic, args, limit, stop);
    let (restic_hung, no_oracle) = (theirs.hung, theirs.retried);
    let theirs = theirs.out;

    let mut found: Vec<(Check, String)> = Vec::new();
    if hung {
        found.push((Check::Hang, format!("killed after {TIMEOUT:?}")));
    }
    if restic_hung {
        found.push((Check::Oracle, format!("restic killed after {limit:?}")));
    }
    if ours.code == 101 || ours.stderr.contains("panicked at") {
        found.push((Check::Panic, "panicked".into()));
    }
    if case.cmd == Restore {
        // Without the newest snapshot, `latest` is the older one.
        let expected = if case.kind == Snapshot && case.damage == Delete && name == base.newest {
            &base.state1
        } else {
            &base.src
        };
        if let Err(e) = check_restore(&t_ours, &base.src, expected, ours.code) {
            found.push((Check::Content, e));
        }
    }
    if ours.code != theirs.code && !hung && !restic_hung && !no_oracle {
        found.push((
            Check::Exit(theirs.code, ours.code),
            "exit codes differ".into(),
        ));
    }
    // A deleted key, snapshot or index file is referred to by nothing left to name it.
    let nameable = !(case.damage == Delete && matches!(case.kind, Key | Snapshot | Index));
    let short = &name[..name.len().min(8)];
    // Exit 0 where restic failed (a rule above allows that for backups) still owes the
    // user the damaged file's name.
    let failed = ours.code != 0 || (theirs.code != 0 && !no_oracle && !restic_hung);
    if failed && nameable && !ours.stderr.contains(short) {
        found.push((
            Check::Naming(ours.code),
            format!("stderr does not name {short}"),
        ));
    }

    let mut verdict = Verdict::Agree;
    let mut rules = Vec::new();
    let mut notes = Vec::new();
    if no_oracle {
        verdict = Verdict::NoOracle;
        notes.push(format!(
            "no oracle: restic 0.14 retries its read of the damaged file (\"{RETRYING}\") for \
             about a minute; judged without its exit code"
        ));
    }
    for (check, msg) in found {
        let allowed = ALLOWED.iter().position(|r| r.matches(&case, check));
        let known = KNOWN.iter().position(|r| r.matches(&case, check));
        let (v, note) = match (check, allowed, known) {
            (Check::Content | Check::Oracle, _, _) => (Verdict::Fail, format!("FAIL {msg}")),
            (_, Some(i), _) => {
                rules.push((true, i));
                (Verdict::Allowed, format!("allowed: {}", ALLOWED[i].reason))
            }
            (_, None, Some(i)) => {
                rules.push((false, i));
                (Verdict::Known, format!("KNOWN {msg}: {}", KNOWN[i].reason))
            }
            _ => (Verdict::Fail, format!("FAIL {msg}")),
        };
        verdict = verdict.max(v);
        notes.push(note);
    }
    let mut line = format!(
        "{} {} ({what}) × {}: restash {}, restic {}",
        case.kind.name(),
        &name[..name.len().min(8)],
        case.cmd.name(),
        ours.code,
        theirs.code
    );
    for n in &notes {
        line.push_str("\n    ");
        line.push_str(n);
    }
    if verdict == Verdict::Fail {
        line.push_str(&format!(
            "\n    restash stderr: {}\n    restic stderr: {}",
            tail_lines(&ours.stderr, 6),
            tail_lines(&theirs.stderr, 6)
        ));
    }
    Outcome {
        case,
        verdict,
        codes: (theirs.code, ours.code),
        line,
        rules,
    }
}

fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n      ")
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?}: {e}")),
    )
}

fn seed() -> u64 {
    seed_from_env("DAMAGE_SEED")
}

fn case_seed(seed: u64, i: usize) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

/// `n` cases: the first 35 pair every file kind with every damage once, commands turning so
/// that each is used 7 times (and the first 7 cases alone cover every kind, damage and
/// command); any beyond 35 are drawn at random.
fn sample(seed: u64, n: usize) -> Vec<Case> {
    let turn = (seed % 5) as usize;
    let mut cases = Vec::new();
    for round in 0..5 {
        for d in 0..7 {
            cases.push(Case {
                kind: KINDS[(d + round) % 5],
                damage: DAMAGES[d],
                cmd: CMDS[(2 * d + round + turn) % 5],
                seed: case_seed(seed, cases.len()),
            });
        }
    }
    cases.truncate(n);
    let mut rng = Prng::new(seed);
    while cases.len() < n {
        cases.push(Case {
            kind: KINDS[pick(&mut rng, 5)],
            damage: DAMAGES[pick(&mut rng, 7)],
            cmd: CMDS[pick(&mut rng, 5)],
            seed: case_seed(seed, cases.len()),
        });
    }
    cases
}

/// Every kind × damage × command, each at `positions` seeds.
fn full(seed: u64, positions: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    for _ in 0..positions {
        for kind in KINDS {
            for damage in DAMAGES {
                for cmd in CMDS {
                    let seed = case_seed(seed, cases.len());
                    cases.push(Case {
                        kind,
                        damage,
                        cmd,
                        seed,
                    });
                }
            }
        }
    }
    cases
}

/// Runs the cases on `jobs` workers (each case waits on processes most of the time),
/// prints every case and the summary table, and fails on any failure.
fn run_matrix(seed: u64, cases: Vec<Case>, jobs: usize, patient: bool) {
    let start = Instant::now();
    println!(
        "damage matrix: {} cases, seed {seed} (DAMAGE_SEED={seed} repeats them)",
        cases.len()
    );
    let base = build_base();
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&case) = cases.get(i) else { break };
                let out = run_case(&base, case, patient);
                println!("#{i} {}", out.line);
                outcomes.lock().expect("outcomes").push(out);
            });
        }
    });
    let outcomes = outcomes.into_inner().expect("outcomes");
    assert_eq!(outcomes.len(), cases.len(), "a worker died");
    print_summary(&outcomes);
    println!("damage matrix took {:.1} s", start.elapsed().as_secs_f64());
    let failures: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.verdict == Verdict::Fail)
        .map(|o| o.line.as_str())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed (DAMAGE_SEED={seed}):\n{}",
        failures.len(),
        outcomes.len(),
        failures.join("\n")
    );
}

fn print_summary(outcomes: &[Outcome]) {
    let mut table = format!("{:<18}", "");
    for c in CMDS {
        table.push_str(&format!("{:<19}", c.name()));
    }
    for kind in KINDS {
        for damage in DAMAGES {
            table.push_str(&format!(
                "\n{:<18}",
                format!("{} {}", kind.name(), damage.name())
            ));
            for cmd in CMDS {
                let mut n = [0; 5];
                for o in outcomes {
                    if (o.case.kind, o.case.damage, o.case.cmd) == (kind, damage, cmd) {
                        n[o.verdict as usize] += 1;
                    }
                }
                let cell: Vec<String> = n
                    .iter()
                    .zip(["=", "n", "a", "k", "F"])
                    .filter(|(n, _)| **n > 0)
                    .map(|(n, s)| format!("{n}{s}"))
                    .collect();
                let cell = if cell.is_empty() {
                    ".".into()
                } else {
                    cell.join(" ")
                };
                table.push_str(&format!("{cell:<19}"));
            }
        }
    }
    let count = |v: Verdict| outcomes.iter().filter(|o| o.verdict == v).count();
    let same = outcomes
        .iter()
        .filter(|o| o.codes.0 == o.codes.1 && o.verdict != Verdict::NoOracle)
        .count();
    println!(
        "\n{table}\n\n(= agrees with restic 0.14, n: restic stopped retrying a read, a: allowed \
         difference, k: known failure, F: failure)\ncases {}, same exit code {same}, agree {}, \
         no oracle {}, allowed {}, known failures {}, failures {}",
        outcomes.len(),
        count(Verdict::Agree),
        count(Verdict::NoOracle),
        count(Verdict::Allowed),
        count(Verdict::Known),
        count(Verdict::Fail)
    );
    for (allowed, table) in [(true, ALLOWED), (false, KNOWN)] {
        for (i, r) in table.iter().enumerate() {
            let hits = outcomes
                .iter()
                .filter(|o| o.rules.contains(&(allowed, i)))
                .count();
            let label = if allowed { "allowed" } else { "known" };
            println!("{label} #{i} used by {hits} case(s): {}", r.reason);
        }
    }
}

/// The CI-sized sample: see the module comment.
#[test]
fn damaged_repositories_sample() {
    let seed = seed();
    let n = env_u64("DAMAGE_CASES").unwrap_or(100) as usize;
    run_matrix(seed, sample(seed, n), 2, false);
}

/// Every combination at several positions (`DAMAGE_POSITIONS`, default 3), waiting for
/// restic's retries to end so that every case has its oracle; the workers (`DAMAGE_JOBS`,
/// default 6) mostly wait on restic sleeping between retries. Run it with
/// `cargo test --release -p restash --test damage_matrix -- --ignored --nocapture`.
#[test]
#[ignore = "the full matrix takes minutes; run it by hand"]
fn damaged_repositories_full() {
    let seed = seed();
    let positions = env_u64("DAMAGE_POSITIONS").unwrap_or(3) as usize;
    let jobs = env_u64("DAMAGE_JOBS").unwrap_or(6) as usize;
    run_matrix(seed, full(seed, positions), jobs, true);
}
